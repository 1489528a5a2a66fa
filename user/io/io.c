/*
 * io.c - the calls of <moirai/io.h>: each becomes a struct mr__io_req,
 * which a fiber that may park hands to the process's backend on its
 * current worker, and anyone else runs as the plain system call
 * (mr__io_sync()).
 *
 * The backend is chosen once per process, at the first call: io_uring
 * unless MOIRAI_IO=epoll, or the kernel refuses to set up a ring and run a
 * NOP on it (io_uring_disabled, a seccomp filter), in which case epoll.
 *
 * Waiting on an O_NONBLOCK fd: the kernel answers -EAGAIN at once, which
 * io.h does not return (a call waits until it can complete, as it does on
 * a blocking fd), so the call then waits for readiness (a poll request)
 * and tries again, unless the caller passed MSG_DONTWAIT.
 *
 * SIGPIPE: sends carry MSG_NOSIGNAL. write and writev on a socket would
 * raise it, so they are sent as send / sendmsg with MSG_NOSIGNAL, and only
 * an fd that answers -ENOTSOCK is written with write(2); what each fd is
 * is remembered (fd_kind) until mr_close, mr_accept, mr_openat or
 * mr_connect hands out or reuses its number. An fd closed with close(2)
 * and reused as a socket by socket(2) keeps the old answer: writes to it
 * raise SIGPIPE again if the peer is gone (documented in io.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <moirai/io.h>

#include "backend.h"

/* ---- the backend --------------------------------------------------------- */

static pthread_once_t backend_once = PTHREAD_ONCE_INIT;
static const struct mr__io_backend *backend;
static char backend_reason[128];

static void choose_backend(void)
{
	const char *env = getenv("MOIRAI_IO");

	if (env && strcmp(env, "epoll") == 0) {
		snprintf(backend_reason, sizeof(backend_reason), "MOIRAI_IO=epoll");
		backend = &mr__io_epoll_backend;
		return;
	}
	int err = mr__io_uring_probe();
	if (err) {
		snprintf(backend_reason, sizeof(backend_reason), "io_uring_setup: %s",
			 strerror(-err));
		backend = &mr__io_epoll_backend;
		return;
	}
	backend = &mr__io_uring_backend;
}

const struct mr__io_backend *mr__io_backend_get(void)
{
	pthread_once(&backend_once, choose_backend);
	return backend;
}

MR_API const char *mr_io_backend(void)
{
	return mr__io_backend_get()->name;
}

MR_API const char *mr_io_backend_reason(void)
{
	return mr__io_backend_get() == &mr__io_uring_backend ? NULL : backend_reason;
}

/* ---- one call ------------------------------------------------------------- */

static inline int64_t deadline_of(int64_t deadline_ns)
{
	return deadline_ns < 0 ? -1 : deadline_ns;
}

/*
 * One attempt of q: parked on the backend, or the system call. noinline:
 * it reads the calling fiber's worker (a thread-local) before it parks,
 * and a caller that loops must read it afresh after each (the fiber may
 * resume on another thread; see user/README.md on thread-locals).
 */
static __attribute__((noinline)) long attempt(const struct mr__io_req *q, int64_t deadline)
{
	struct mr_fiber *f = mr__fiber_parkable();

	if (!f)
		return mr__io_sync(q, deadline);
	const struct mr__io_backend *b = mr__io_backend_get();
	struct mr__worker *w = mr__self();
	/* A worker that cannot set up its ring or epoll (out of fds or
	 * memory: tried again at its next call) makes the plain call rather
	 * than fail it: an mr_close that did nothing would leak the fd. */
	if (unlikely(!w->io) && b->worker_init(w) < 0)
		return mr__io_sync(q, deadline);
	return b->call(w, f, q, deadline);
}

static long io(const struct mr__io_req *q, int64_t deadline_ns)
{
	int64_t deadline = deadline_of(deadline_ns);

	for (;;) {
		long r = attempt(q, deadline);
		if (r != -EAGAIN || !mr__io_req_waits(q) || mr__io_req_dontwait(q) ||
			q->op == MR__IO_POLL || !mr__fiber_parkable())
			return r;
		/* An O_NONBLOCK fd that is not ready: wait until it is. */
		struct mr__io_req p = {
			.op = MR__IO_POLL, .fd = q->fd, .flags = mr__io_req_events(q), .call = q->call };
		r = attempt(&p, deadline);
		if (r < 0)
			return r;
	}
}

/* ---- what each fd is, for write(2) on sockets ----------------------------- */

/* FD_NOZC: a socket that refused a zero-copy send (-EOPNOTSUPP: a Unix
 * socket, ...); its sends are made the ordinary way. */
enum { FD_UNKNOWN = 0, FD_SOCKET = 1, FD_OTHER = 2, FD_NOZC = 3 };
#define FD_KINDS 65536
static _Atomic uint8_t fd_kind[FD_KINDS];

static int kind_of(int fd)
{
	/* relaxed: a cache; a stale answer costs a retry or is documented. */
	return fd >= 0 && fd < FD_KINDS ? atomic_load_explicit(&fd_kind[fd], memory_order_relaxed)
					: FD_UNKNOWN;
}

static void set_kind(int fd, int kind)
{
	if (fd >= 0 && fd < FD_KINDS)
		atomic_store_explicit(&fd_kind[fd], (uint8_t)kind, memory_order_relaxed);
}

/* ---- the calls ------------------------------------------------------------ */

#define REQ(...) ((struct mr__io_req){ __VA_ARGS__ })

static ssize_t rw(uint8_t op, int fd, const void *buf, size_t len, off_t off, int64_t dl,
		  const char *call)
{
	if (!buf && len)
		return -EINVAL;
	struct mr__io_req q =
		REQ(.op = op, .fd = fd, .buf = (void *)buf, .len = len, .off = off, .call = call);
	return io(&q, dl);
}

MR_API ssize_t mr_read_until(int fd, void *buf, size_t len, int64_t deadline_ns)
{
	return rw(MR__IO_READ, fd, buf, len, -1, deadline_ns, "mr_read");
}

MR_API ssize_t mr_read(int fd, void *buf, size_t len)
{
	return mr_read_until(fd, buf, len, MR_DEADLINE_NONE);
}

MR_API ssize_t mr_pread_until(int fd, void *buf, size_t len, off_t off, int64_t deadline_ns)
{
	if (off < 0)
		return -EINVAL;
	return rw(MR__IO_READ, fd, buf, len, off, deadline_ns, "mr_pread");
}

MR_API ssize_t mr_pread(int fd, void *buf, size_t len, off_t off)
{
	return mr_pread_until(fd, buf, len, off, MR_DEADLINE_NONE);
}

MR_API ssize_t mr_pwrite_until(int fd, const void *buf, size_t len, off_t off, int64_t deadline_ns)
{
	if (off < 0)
		return -EINVAL;
	return rw(MR__IO_WRITE, fd, buf, len, off, deadline_ns, "mr_pwrite");
}

MR_API ssize_t mr_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	return mr_pwrite_until(fd, buf, len, off, MR_DEADLINE_NONE);
}

/*
 * A send: zero-copy when it is big enough (MOIRAI_IO_SEND_ZC, io.h) and
 * the fd has not refused it; a refusal (-EOPNOTSUPP: the socket does not
 * do zero-copy) is remembered in fd_kind, and the send made the ordinary
 * way. A send that may not wait (MSG_DONTWAIT) is tried at once instead
 * (uring.c's send_now()), which a zero-copy one would not be.
 */
static ssize_t send_req(struct mr__io_req *q, int64_t deadline_ns)
{
	mr__io_backend_get(); /* orders the read of mr__io_send_zc_min */
	size_t zc_min = mr__io_send_zc_min;

	if (zc_min && q->len >= zc_min && !(q->flags & MSG_DONTWAIT) && kind_of(q->fd) != FD_NOZC) {
		q->zc = true;
		ssize_t r = io(q, deadline_ns);
		if (r != -EOPNOTSUPP)
			return r;
		set_kind(q->fd, FD_NOZC);
		q->zc = false;
	}
	return io(q, deadline_ns);
}

MR_API ssize_t mr_send_until(int fd, const void *buf, size_t len, int flags, int64_t deadline_ns)
{
	if (!buf && len)
		return -EINVAL;
	struct mr__io_req q = REQ(.op = MR__IO_SEND, .fd = fd, .buf = (void *)buf, .len = len,
				  .flags = flags | MSG_NOSIGNAL, .call = "mr_send");
	return send_req(&q, deadline_ns);
}

MR_API ssize_t mr_send(int fd, const void *buf, size_t len, int flags)
{
	return mr_send_until(fd, buf, len, flags, MR_DEADLINE_NONE);
}

MR_API ssize_t mr_write_until(int fd, const void *buf, size_t len, int64_t deadline_ns)
{
	if (!buf && len)
		return -EINVAL;
	int kind = kind_of(fd);
	if (kind != FD_OTHER) {
		struct mr__io_req q = REQ(.op = MR__IO_SEND, .fd = fd, .buf = (void *)buf,
					  .len = len, .flags = MSG_NOSIGNAL, .call = "mr_write");
		ssize_t r = send_req(&q, deadline_ns);
		if (r != -ENOTSOCK) {
			/* kind_of() again: send_req() may have said FD_NOZC. */
			if (kind_of(fd) == FD_UNKNOWN && r != -EBADF)
				set_kind(fd, FD_SOCKET);
			return r;
		}
		set_kind(fd, FD_OTHER);
	}
	return rw(MR__IO_WRITE, fd, buf, len, -1, deadline_ns, "mr_write");
}

MR_API ssize_t mr_write(int fd, const void *buf, size_t len)
{
	return mr_write_until(fd, buf, len, MR_DEADLINE_NONE);
}

static ssize_t vec(uint8_t op, int fd, const struct iovec *iov, int iovcnt, int64_t dl,
		   const char *call)
{
	if (iovcnt < 0 || (!iov && iovcnt))
		return -EINVAL;
	struct mr__io_req q = REQ(.op = op, .fd = fd, .buf = (void *)iov, .len = (size_t)iovcnt,
				  .off = -1, .call = call);
	return io(&q, dl);
}

MR_API ssize_t mr_readv_until(int fd, const struct iovec *iov, int iovcnt, int64_t deadline_ns)
{
	return vec(MR__IO_READV, fd, iov, iovcnt, deadline_ns, "mr_readv");
}

MR_API ssize_t mr_readv(int fd, const struct iovec *iov, int iovcnt)
{
	return mr_readv_until(fd, iov, iovcnt, MR_DEADLINE_NONE);
}

MR_API ssize_t mr_writev_until(int fd, const struct iovec *iov, int iovcnt, int64_t deadline_ns)
{
	if (iovcnt < 0 || (!iov && iovcnt))
		return -EINVAL;
	int kind = kind_of(fd);
	if (kind != FD_OTHER) {
		struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };
		struct mr__io_req q = REQ(.op = MR__IO_SENDMSG, .fd = fd, .buf = &m,
					  .flags = MSG_NOSIGNAL, .call = "mr_writev");
		ssize_t r = io(&q, deadline_ns);
		if (r != -ENOTSOCK) {
			if (kind == FD_UNKNOWN && r != -EBADF)
				set_kind(fd, FD_SOCKET);
			return r;
		}
		set_kind(fd, FD_OTHER);
	}
	return vec(MR__IO_WRITEV, fd, iov, iovcnt, deadline_ns, "mr_writev");
}

MR_API ssize_t mr_writev(int fd, const struct iovec *iov, int iovcnt)
{
	return mr_writev_until(fd, iov, iovcnt, MR_DEADLINE_NONE);
}

MR_API ssize_t mr_recv_until(int fd, void *buf, size_t len, int flags, int64_t deadline_ns)
{
	if (!buf && len)
		return -EINVAL;
	struct mr__io_req q = REQ(.op = MR__IO_RECV, .fd = fd, .buf = buf, .len = len,
				  .flags = flags, .call = "mr_recv");
	return io(&q, deadline_ns);
}

MR_API ssize_t mr_recv(int fd, void *buf, size_t len, int flags)
{
	return mr_recv_until(fd, buf, len, flags, MR_DEADLINE_NONE);
}

MR_API ssize_t mr_recvmsg_until(int fd, struct msghdr *msg, int flags, int64_t deadline_ns)
{
	if (!msg)
		return -EINVAL;
	struct mr__io_req q =
		REQ(.op = MR__IO_RECVMSG, .fd = fd, .buf = msg, .flags = flags, .call = "mr_recvmsg");
	return io(&q, deadline_ns);
}

MR_API ssize_t mr_recvmsg(int fd, struct msghdr *msg, int flags)
{
	return mr_recvmsg_until(fd, msg, flags, MR_DEADLINE_NONE);
}

MR_API ssize_t mr_sendmsg_until(int fd, const struct msghdr *msg, int flags, int64_t deadline_ns)
{
	if (!msg)
		return -EINVAL;
	struct mr__io_req q = REQ(.op = MR__IO_SENDMSG, .fd = fd, .buf = (void *)msg,
				  .flags = flags | MSG_NOSIGNAL, .call = "mr_sendmsg");
	return io(&q, deadline_ns);
}

MR_API ssize_t mr_sendmsg(int fd, const struct msghdr *msg, int flags)
{
	return mr_sendmsg_until(fd, msg, flags, MR_DEADLINE_NONE);
}

MR_API int mr_accept_until(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags,
			   int64_t deadline_ns)
{
	if (addr && !addrlen)
		return -EINVAL;
	if (flags & ~(SOCK_CLOEXEC | SOCK_NONBLOCK))
		return -EINVAL;
	struct mr__io_req q = REQ(.op = MR__IO_ACCEPT, .fd = fd, .buf = addr, .ptr = addrlen,
				  .flags = flags, .call = "mr_accept");
	long r = io(&q, deadline_ns);
	if (r >= 0)
		set_kind((int)r, FD_SOCKET);
	return (int)r;
}

MR_API int mr_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags)
{
	return mr_accept_until(fd, addr, addrlen, flags, MR_DEADLINE_NONE);
}

MR_API int mr_connect_until(int fd, const struct sockaddr *addr, socklen_t addrlen,
				int64_t deadline_ns)
{
	if (!addr)
		return -EINVAL;
	set_kind(fd, FD_SOCKET);
	struct mr__io_req q = REQ(.op = MR__IO_CONNECT, .fd = fd, .buf = (void *)addr,
				  .len = addrlen, .call = "mr_connect");
	return (int)io(&q, deadline_ns);
}

MR_API int mr_connect(int fd, const struct sockaddr *addr, socklen_t addrlen)
{
	return mr_connect_until(fd, addr, addrlen, MR_DEADLINE_NONE);
}

MR_API int mr_shutdown(int fd, int how)
{
	struct mr__io_req q =
		REQ(.op = MR__IO_SHUTDOWN, .fd = fd, .flags = how, .call = "mr_shutdown");
	return (int)io(&q, MR_DEADLINE_NONE);
}

MR_API int mr_close(int fd)
{
	struct mr__io_req q = REQ(.op = MR__IO_CLOSE, .fd = fd, .call = "mr_close");

	set_kind(fd, FD_UNKNOWN);
	return (int)io(&q, MR_DEADLINE_NONE);
}

MR_API int mr_openat_until(int dirfd, const char *path, int flags, mode_t mode, int64_t deadline_ns)
{
	if (!path)
		return -EINVAL;
	struct mr__io_req q = REQ(.op = MR__IO_OPENAT, .fd = dirfd, .buf = (void *)path,
				  .flags = flags, .len = mode, .call = "mr_openat");
	long r = io(&q, deadline_ns);
	if (r >= 0)
		set_kind((int)r, FD_UNKNOWN);
	return (int)r;
}

MR_API int mr_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	return mr_openat_until(dirfd, path, flags, mode, MR_DEADLINE_NONE);
}

MR_API int mr_statx_until(int dirfd, const char *path, int flags, unsigned int mask,
			  struct statx *buf, int64_t deadline_ns)
{
	if (!path || !buf)
		return -EINVAL;
	struct mr__io_req q = REQ(.op = MR__IO_STATX, .fd = dirfd, .buf = (void *)path,
				  .flags = flags, .len = mask, .ptr = buf, .call = "mr_statx");
	return (int)io(&q, deadline_ns);
}

MR_API int mr_statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *buf)
{
	return mr_statx_until(dirfd, path, flags, mask, buf, MR_DEADLINE_NONE);
}

MR_API int mr_fsync_until(int fd, int64_t deadline_ns)
{
	struct mr__io_req q = REQ(.op = MR__IO_FSYNC, .fd = fd, .call = "mr_fsync");
	return (int)io(&q, deadline_ns);
}

MR_API int mr_fsync(int fd)
{
	return mr_fsync_until(fd, MR_DEADLINE_NONE);
}

MR_API int mr_fdatasync_until(int fd, int64_t deadline_ns)
{
	struct mr__io_req q = REQ(.op = MR__IO_FSYNC, .fd = fd, .flags = 1, .call = "mr_fdatasync");
	return (int)io(&q, deadline_ns);
}

MR_API int mr_fdatasync(int fd)
{
	return mr_fdatasync_until(fd, MR_DEADLINE_NONE);
}

MR_API int mr_poll_until(int fd, short events, int64_t deadline_ns)
{
	struct mr__io_req q =
		REQ(.op = MR__IO_POLL, .fd = fd, .flags = (uint16_t)events, .call = "mr_poll");
	return (int)io(&q, deadline_ns);
}

MR_API int mr_poll(int fd, short events)
{
	return mr_poll_until(fd, events, MR_DEADLINE_NONE);
}
