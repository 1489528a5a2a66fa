/*
 * backend.h - the I/O layer's private interface: a request that describes
 * one call of <moirai/io.h>, the two backends behind it (uring.c,
 * epoll.c), and the plain system call that threads and jobs make
 * (sync.c).
 *
 * io.c turns each public call into a struct mr__io_req. A fiber that may
 * park hands it to the process's backend on its current worker, which sets
 * up its per-worker state on the first call (w->io, w->io_ops: the worker
 * loop then polls and sleeps through it, see struct mr__io_ops in
 * sched.h). Everyone else, and a backend for what it cannot do
 * asynchronously, calls mr__io_sync().
 */
#ifndef MR_IO_BACKEND_H
#define MR_IO_BACKEND_H

#include <sys/socket.h>
#include <sys/types.h>

#include "../fiber/fiber.h"

enum mr__io_opcode {
	MR__IO_READ,	 /* fd, buf, len, off (-1: the file position) */
	MR__IO_WRITE,	 /* fd, buf, len, off */
	MR__IO_READV,	 /* fd, buf = iov, len = iovcnt, off */
	MR__IO_WRITEV,	 /* fd, buf = iov, len = iovcnt, off */
	MR__IO_RECV,	 /* fd, buf, len, flags */
	MR__IO_SEND,	 /* fd, buf, len, flags (MSG_NOSIGNAL already added) */
	MR__IO_RECVMSG,	 /* fd, buf = msghdr, flags */
	MR__IO_SENDMSG,	 /* fd, buf = msghdr, flags (MSG_NOSIGNAL added) */
	MR__IO_ACCEPT,	 /* fd, buf = sockaddr, ptr = socklen_t *, flags */
	MR__IO_CONNECT,	 /* fd, buf = sockaddr, len = socklen */
	MR__IO_SHUTDOWN, /* fd, flags = how */
	MR__IO_CLOSE,	 /* fd */
	MR__IO_OPENAT,	 /* fd = dirfd, buf = path, flags, len = mode */
	MR__IO_STATX,	 /* fd = dirfd, buf = path, flags, len = mask, ptr = statx buffer */
	MR__IO_FSYNC,	 /* fd, flags = 1 for fdatasync */
	MR__IO_POLL,	 /* fd, flags = poll events */
	MR__IO_NOPS
};

struct mr__io_req {
	uint8_t op;
	int fd;
	int flags;
	void *buf;
	size_t len;
	off_t off;
	void *ptr;
	/* MR__IO_SEND only: the backend may send it zero-copy (io_uring's
	 * SEND_ZC); io.c sets it for sends of mr__io_send_zc_min bytes or
	 * more. Others ignore it. */
	bool zc;
	const char *call; /* the user's call, for abort messages */
};

struct mr__io_backend {
	const char *name;
	/* Set up w->io and w->io_ops (release store) on w's own thread: 0 or
	 * -errno (-ENOMEM, or the kernel's refusal). */
	int (*worker_init)(struct mr__worker *w);
	/* Run r for fiber f (mr__fiber_parkable()) on its current worker w,
	 * parking f until it completes or the deadline (-1: none) cancels it.
	 * The result or -errno. */
	long (*call)(struct mr__worker *w, struct mr_fiber *f, const struct mr__io_req *r,
		     int64_t deadline);
};

extern const struct mr__io_backend mr__io_uring_backend;
extern const struct mr__io_backend mr__io_epoll_backend;

/*
 * The process's backend, chosen at the first call (io.c): io_uring unless
 * MOIRAI_IO=epoll, or the kernel refuses a real ring and a NOP on it.
 */
const struct mr__io_backend *mr__io_backend_get(void);

/* Can this kernel set up a ring and run a NOP on it? 0 or -errno (uring.c). */
int mr__io_uring_probe(void);

/*
 * Sends of at least this many bytes go zero-copy (IORING_OP_SEND_ZC);
 * 0: none do. Set by mr__io_uring_probe() from MOIRAI_IO_SEND_ZC when the
 * kernel has the operation, before the backend is published (read after
 * mr__io_backend_get(), which orders it). (uring.c)
 */
extern size_t mr__io_send_zc_min;

/* Test hook: fibers readied by a worker other than the one whose ring or
 * epoll they waited in (a hand-off), by both backends (uring.c). Relaxed:
 * a count read after the fact. */
extern _Atomic unsigned long mr__test_io_rescued;

/*
 * r as the plain system call on the calling thread, blocking it. With a
 * deadline (>= 0), calls that wait for a peer first poll the fd up to the
 * deadline and then try once; regular-file calls ignore it. The result or
 * -errno. (sync.c)
 */
long mr__io_sync(const struct mr__io_req *r, int64_t deadline);

/* Does r wait for a peer (a socket, pipe or terminal being ready)? Did
 * the caller ask it not to (MSG_DONTWAIT)? (sync.c) */
bool mr__io_req_waits(const struct mr__io_req *r);
bool mr__io_req_dontwait(const struct mr__io_req *r);

/* The poll(2) events that r waits for when it would block (POLLIN for a
 * read, POLLOUT for a write or connect), for readiness backends. */
short mr__io_req_events(const struct mr__io_req *r);

#endif /* MR_IO_BACKEND_H */
