/*
 * moirai/io.h - I/O that parks the calling fiber, not its worker.
 *
 * Each call has the signature of the POSIX call it replaces and returns its
 * result or a negative errno (never -1 and errno). Called from a fiber, the
 * fiber parks while the kernel works and its worker runs other fibers and
 * jobs; the fiber may resume on the same worker only (its operation is
 * bound to that worker's ring) and, after the call returns, may be stolen
 * like any runnable fiber. Called from a plain thread, a job, or a fiber
 * inside the parallel API (a body of mr_parallel_for, an a() of mr_join),
 * it is the ordinary blocking system call on the calling thread.
 *
 * Backends (mr_io_backend()):
 *   "io_uring"  one ring per worker, touched only by that worker. A fiber's
 *               call fills a submission entry on its worker's ring and
 *               parks; the worker submits the entries of all its fibers in
 *               one io_uring_enter per scheduling round (or sooner, between
 *               jobs) and readies each fiber from its completion. An idle
 *               worker sleeps in its ring, so completions, timers and
 *               wake-ups from other workers arrive through one wait.
 *   "epoll"     where io_uring_setup is refused (kernel.io_uring_disabled,
 *               a seccomp filter such as container runtimes' default one)
 *               or MOIRAI_IO=epoll is set: the same calls through
 *               readiness. The calls on sockets, pipes and terminals try
 *               at once and, when the kernel says -EAGAIN, park until the
 *               fd is ready; the first such call on an fd sets O_NONBLOCK
 *               on it (as Go does), which a plain read() on it then sees.
 *               Regular-file calls (pread, fsync, openat, statx) run on the
 *               blocking pool (<moirai/blocking.h>), where deadlines and
 *               mr_fiber_cancel() do not reach them: they run to their end.
 * A worker that cannot set up its ring or epoll (no fd or memory left)
 * makes the plain, blocking system call instead, and tries again at its
 * next call.
 * The choice is made once per process, at the first call, by setting up a
 * real ring and running a NOP under the live seccomp filter. The library
 * prints nothing about it; mr_io_backend() says which won and why.
 *
 * Deadlines: every call has an _until form taking an absolute
 * CLOCK_MONOTONIC deadline in nanoseconds, read as common.h says (negative:
 * none; 0 or passed: complete if the kernel can at once, else -ETIMEDOUT).
 * -ETIMEDOUT means the operation was cancelled in the kernel and did
 * nothing: no byte was read or written, no connection accepted. The call
 * waits for the cancellation to complete before it returns, so the kernel
 * never writes the caller's buffer after the return. An operation that
 * completed just as its deadline passed returns its result. From a thread
 * or a job, a deadline is honoured by waiting for readiness (poll) up to
 * it and then trying once without blocking; regular-file calls from a
 * thread ignore deadlines (they do not wait for readiness).
 *
 * Sends never raise SIGPIPE: mr_send/mr_sendmsg add MSG_NOSIGNAL, and
 * mr_write/mr_writev on a socket are sent with it; a peer that reset the
 * connection gives -EPIPE or -ECONNRESET.
 *
 * Zero-copy sends (io_uring only, off by default): with MOIRAI_IO_SEND_ZC
 * set to a size in bytes, mr_send and mr_write on a socket of that many
 * bytes or more, from a fiber, are sent with IORING_OP_SEND_ZC: the kernel
 * sends from the caller's pages instead of copying them, and the call
 * returns only once it no longer reads them (its notification), so the
 * buffer may be reused at once as always. On TCP that is once the peer
 * has acknowledged the bytes: a peer that stops reading keeps the call
 * waiting, and the deadline and mr_fiber_cancel() stop only the wait for
 * room, not this one (the kernel still reads the buffer). It also costs a
 * submission and a park even when the socket has room (an ordinary send
 * is tried at once first), and over loopback the kernel copies anyway, so
 * there it loses (tools/bench/io/uring_ab.sh has the numbers); it may win
 * for large sends through a NIC. A socket that refuses it (a Unix socket)
 * is remembered and sent to the ordinary way. MOIRAI_IO_SEND_ZC is read
 * once, when the backend is chosen; MSG_DONTWAIT sends never use it.
 *
 * A worker busy in one long job (a loop that neither joins nor yields)
 * does not look at its ring or epoll until the job returns. Another worker
 * of the runtime that finds it so for about 2 ms with operations in flight
 * takes the completions (or ready fds) and runs those fibers itself. On
 * io_uring the kernel posts a busy worker's completions at its next
 * scheduler tick (4 ms at HZ=250), so such a fiber waits about that long,
 * not the job's length. For this the rings are set up without
 * DEFER_TASKRUN (with COOP_TASKRUN); MOIRAI_IO_HANDOFF=0 (read when a
 * worker sets up its ring or epoll) turns the hand-off off and the rings
 * back to DEFER_TASKRUN. The fibers a worker took so count in its
 * io_rescued (<moirai/stats.h>). What is handed over is completions, not
 * submissions: on io_uring only the owner submits, so mr_fiber_cancel() of
 * a fiber whose I/O is in flight on a busy worker takes effect when that
 * worker's job ends (a deadline still fires in the kernel); on epoll the
 * helper takes the cancel.
 *
 * Buffers and structures passed in (iovecs, msghdrs, sockaddrs, paths)
 * must stay valid until the call returns; the kernel may read them at any
 * time before that (not only at submission).
 *
 * Errors, besides the system call's own: -EINVAL for a NULL buffer with a
 * non-zero length or a bad argument the library checks; -ENOMEM when a
 * worker cannot set up its ring.
 */
#ifndef MOIRAI_IO_H
#define MOIRAI_IO_H

#include <moirai/common.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

MR_EXTERN_C_BEGIN

struct statx;

/*
 * "io_uring" or "epoll": the backend of this process (set up at the first
 * call of this header, or here). Never NULL.
 */
MR_API const char *mr_io_backend(void);

/*
 * Why io_uring is not the backend ("MOIRAI_IO=epoll", "io_uring_setup:
 * Operation not permitted", ...), or NULL when it is.
 */
MR_API const char *mr_io_backend_reason(void);

/* read(2), write(2), pread(2), pwrite(2), readv(2), writev(2). */
MR_API ssize_t mr_read(int fd, void *buf, size_t len);
MR_API ssize_t mr_read_until(int fd, void *buf, size_t len, int64_t deadline_ns);
MR_API ssize_t mr_write(int fd, const void *buf, size_t len);
MR_API ssize_t mr_write_until(int fd, const void *buf, size_t len, int64_t deadline_ns);
MR_API ssize_t mr_pread(int fd, void *buf, size_t len, off_t off);
MR_API ssize_t mr_pread_until(int fd, void *buf, size_t len, off_t off, int64_t deadline_ns);
MR_API ssize_t mr_pwrite(int fd, const void *buf, size_t len, off_t off);
MR_API ssize_t mr_pwrite_until(int fd, const void *buf, size_t len, off_t off, int64_t deadline_ns);
MR_API ssize_t mr_readv(int fd, const struct iovec *iov, int iovcnt);
MR_API ssize_t mr_readv_until(int fd, const struct iovec *iov, int iovcnt, int64_t deadline_ns);
MR_API ssize_t mr_writev(int fd, const struct iovec *iov, int iovcnt);
MR_API ssize_t mr_writev_until(int fd, const struct iovec *iov, int iovcnt, int64_t deadline_ns);

/* recv(2), send(2) (MSG_NOSIGNAL added), recvmsg(2), sendmsg(2) (likewise). */
MR_API ssize_t mr_recv(int fd, void *buf, size_t len, int flags);
MR_API ssize_t mr_recv_until(int fd, void *buf, size_t len, int flags, int64_t deadline_ns);
MR_API ssize_t mr_send(int fd, const void *buf, size_t len, int flags);
MR_API ssize_t mr_send_until(int fd, const void *buf, size_t len, int flags, int64_t deadline_ns);
MR_API ssize_t mr_recvmsg(int fd, struct msghdr *msg, int flags);
MR_API ssize_t mr_recvmsg_until(int fd, struct msghdr *msg, int flags, int64_t deadline_ns);
MR_API ssize_t mr_sendmsg(int fd, const struct msghdr *msg, int flags);
MR_API ssize_t mr_sendmsg_until(int fd, const struct msghdr *msg, int flags, int64_t deadline_ns);

/*
 * accept4(2): the new fd or -errno. flags: SOCK_CLOEXEC, SOCK_NONBLOCK.
 * addr and addrlen may be NULL.
 */
MR_API int mr_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags);
MR_API int mr_accept_until(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags,
			   int64_t deadline_ns);

/*
 * connect(2): 0 once connected, or -errno (-ECONNREFUSED, ...). A connect
 * that timed out was aborted: the socket is left unconnected, and as with
 * connect(2) its state is unspecified; close it.
 */
MR_API int mr_connect(int fd, const struct sockaddr *addr, socklen_t addrlen);
MR_API int mr_connect_until(int fd, const struct sockaddr *addr, socklen_t addrlen,
			    int64_t deadline_ns);

/* shutdown(2), close(2): 0 or -errno. mr_close never retries on EINTR. */
MR_API int mr_shutdown(int fd, int how);
MR_API int mr_close(int fd);

/* openat(2): the new fd or -errno. */
MR_API int mr_openat(int dirfd, const char *path, int flags, mode_t mode);
MR_API int mr_openat_until(int dirfd, const char *path, int flags, mode_t mode,
			   int64_t deadline_ns);

/* statx(2): 0 or -errno. */
MR_API int mr_statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *buf);
MR_API int mr_statx_until(int dirfd, const char *path, int flags, unsigned int mask,
			  struct statx *buf, int64_t deadline_ns);

/* fsync(2), fdatasync(2): 0 or -errno. */
MR_API int mr_fsync(int fd);
MR_API int mr_fsync_until(int fd, int64_t deadline_ns);
MR_API int mr_fdatasync(int fd);
MR_API int mr_fdatasync_until(int fd, int64_t deadline_ns);

/*
 * Wait until fd is ready for `events` (POLLIN, POLLOUT, ...: poll(2)'s).
 * Returns the events that are ready (POLLERR, POLLHUP and POLLNVAL can be
 * among them whether asked or not), never 0, or -errno; -ETIMEDOUT at the
 * deadline.
 */
MR_API int mr_poll(int fd, short events);
MR_API int mr_poll_until(int fd, short events, int64_t deadline_ns);

/* Sleeping is mr_sleep_ns() and mr_sleep_until() in <moirai/fiber.h>. */

MR_EXTERN_C_END

#endif /* MOIRAI_IO_H */
