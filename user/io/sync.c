/*
 * sync.c - the calls of <moirai/io.h> as plain system calls, for callers
 * that must not park (threads, jobs, fibers inside the parallel API) and
 * for what a backend cannot do asynchronously.
 *
 * A deadline is honoured by poll(2) before the call: wait until the fd is
 * ready (or the deadline: -ETIMEDOUT, nothing done), then make the call
 * once. Sends and receives add MSG_DONTWAIT then, so that a peer that
 * raced us to the data cannot make the call block past the deadline;
 * read, write and accept cannot say so per call and may block in that
 * race (documented in io.h). A call that finds an O_NONBLOCK fd not ready
 * (-EAGAIN) waits for it and tries again, as the fiber path does, unless
 * the caller passed MSG_DONTWAIT. A connect with a deadline
 * runs non-blocking for its duration. Regular files are always ready to
 * poll(2), so their calls ignore deadlines. EINTR is retried, except by
 * close (the fd is gone either way on Linux).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "backend.h"

short mr__io_req_events(const struct mr__io_req *r)
{
	switch (r->op) {
	case MR__IO_WRITE:
	case MR__IO_WRITEV:
	case MR__IO_SEND:
	case MR__IO_SENDMSG:
	case MR__IO_CONNECT:
		return POLLOUT;
	case MR__IO_POLL:
		return (short)r->flags;
	default:
		return POLLIN;
	}
}

bool mr__io_req_dontwait(const struct mr__io_req *r)
{
	switch (r->op) {
	case MR__IO_RECV:
	case MR__IO_SEND:
	case MR__IO_RECVMSG:
	case MR__IO_SENDMSG:
		return r->flags & MSG_DONTWAIT;
	default:
		return false;
	}
}

/* Does r wait for a peer (so that a deadline means polling first)? */
bool mr__io_req_waits(const struct mr__io_req *r)
{
	switch (r->op) {
	case MR__IO_READ:
	case MR__IO_WRITE:
	case MR__IO_READV:
	case MR__IO_WRITEV:
	case MR__IO_RECV:
	case MR__IO_SEND:
	case MR__IO_RECVMSG:
	case MR__IO_SENDMSG:
	case MR__IO_ACCEPT:
	case MR__IO_POLL:
		return true;
	default:
		return false;
	}
}

/* poll(2) fd for events until the deadline (-1: none): the revents, or
 * -ETIMEDOUT, or -errno. */
static int wait_ready(int fd, short events, int64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = events };

	for (;;) {
		struct timespec ts, *tp = NULL;
		if (deadline >= 0) {
			int64_t d = deadline - (int64_t)mr__now_ns();
			if (d < 0)
				d = 0;
			ts.tv_sec = d / 1000000000;
			ts.tv_nsec = d % 1000000000;
			tp = &ts;
		}
		int n = ppoll(&p, 1, tp, NULL);
		if (n > 0)
			return p.revents;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

/* connect(2) with a deadline: non-blocking while it lasts. */
static long connect_until(const struct mr__io_req *r, int64_t deadline)
{
	int fl = fcntl(r->fd, F_GETFL);

	if (fl < 0)
		return -errno;
	if (!(fl & O_NONBLOCK) && fcntl(r->fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	long ret = 0;
	if (connect(r->fd, r->buf, (socklen_t)r->len) < 0) {
		ret = -errno;
		if (ret == -EINPROGRESS && !(fl & O_NONBLOCK)) {
			int ev = wait_ready(r->fd, POLLOUT, deadline);
			if (ev < 0) {
				ret = ev;
			} else {
				int err = 0;
				socklen_t len = sizeof(err);
				ret = getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0
					  ? -errno
					  : -err;
			}
		}
	}
	if (!(fl & O_NONBLOCK))
		fcntl(r->fd, F_SETFL, fl);
	return ret;
}

static long call_once(const struct mr__io_req *r, int dontwait)
{
	switch (r->op) {
	case MR__IO_READ:
		return r->off < 0 ? read(r->fd, r->buf, r->len)
				  : pread(r->fd, r->buf, r->len, r->off);
	case MR__IO_WRITE:
		return r->off < 0 ? write(r->fd, r->buf, r->len)
				  : pwrite(r->fd, r->buf, r->len, r->off);
	case MR__IO_READV:
		return r->off < 0 ? readv(r->fd, r->buf, (int)r->len)
				  : preadv(r->fd, r->buf, (int)r->len, r->off);
	case MR__IO_WRITEV:
		return r->off < 0 ? writev(r->fd, r->buf, (int)r->len)
				  : pwritev(r->fd, r->buf, (int)r->len, r->off);
	case MR__IO_RECV:
		return recv(r->fd, r->buf, r->len, r->flags | dontwait);
	case MR__IO_SEND:
		return send(r->fd, r->buf, r->len, r->flags | dontwait);
	case MR__IO_RECVMSG:
		return recvmsg(r->fd, r->buf, r->flags | dontwait);
	case MR__IO_SENDMSG:
		return sendmsg(r->fd, r->buf, r->flags | dontwait);
	case MR__IO_ACCEPT:
		return accept4(r->fd, r->buf, r->ptr, r->flags);
	case MR__IO_CONNECT:
		return connect(r->fd, r->buf, (socklen_t)r->len);
	case MR__IO_SHUTDOWN:
		return shutdown(r->fd, r->flags);
	case MR__IO_OPENAT:
		return openat(r->fd, r->buf, r->flags, (mode_t)r->len);
	case MR__IO_STATX:
		return syscall(SYS_statx, r->fd, r->buf, r->flags, (unsigned)r->len, r->ptr);
	case MR__IO_FSYNC:
		return r->flags ? fdatasync(r->fd) : fsync(r->fd);
	default:
		mr__die(r->call, "unknown I/O operation %d", r->op);
	}
}

long mr__io_sync(const struct mr__io_req *r, int64_t deadline)
{
	bool poll_first = deadline >= 0 && mr__io_req_waits(r);

	if (r->op == MR__IO_CLOSE)
		return close(r->fd) < 0 && errno != EINTR ? -errno : 0;
	if (r->op == MR__IO_POLL)
		return wait_ready(r->fd, (short)r->flags, deadline);
	if (r->op == MR__IO_CONNECT && deadline >= 0)
		return connect_until(r, deadline);
	for (;;) {
		if (poll_first) {
			int ev = wait_ready(r->fd, mr__io_req_events(r), deadline);
			if (ev < 0)
				return ev;
		}
		long n = call_once(r, poll_first ? MSG_DONTWAIT : 0);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		/* Ready but raced, or an O_NONBLOCK fd: wait for it, as the
		 * fiber path does, unless the caller asked not to. */
		if (errno == EAGAIN && mr__io_req_waits(r) && !mr__io_req_dontwait(r)) {
			poll_first = true;
			continue;
		}
		return -errno;
	}
}
