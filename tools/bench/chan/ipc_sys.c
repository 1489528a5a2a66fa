/*
 * ipc_sys.c - the kernel's own channels between two processes, as peers of
 * Moirai's shm:// channels in the cross-process benchmark (ipc.sh):
 *   pipe   two pipes, A to B and B to A (one-way: the first only), default
 *          size (64 KiB)
 *   uds    a Unix domain stream socket pair (socketpair), default buffers
 *   mq     two POSIX message queues (mq_open), 8-byte messages only, as
 *          deep as the system lets an unprivileged process make them:
 *          /proc/sys/fs/mqueue/msg_max (10 by default), or 1024 when the
 *          caller may exceed it (root); the depth is printed on a NOTE line
 * Every message is one write (mq_send) and one read (mq_receive) call; a
 * short read or write of a stream (a big message through a pipe or
 * socket) is continued until the whole message has passed. Everything is
 * made by A before the fork and inherited by B. See ipc.h for the command
 * line, the messages, the checks and the output.
 */
#include "ipc.h"

#include <fcntl.h>
#include <mqueue.h>
#include <sys/socket.h>

static size_t bytes;
static void *buf;
/* pipes, the socket pair, queues: [0] carries A to B, [1] B to A; out / in: this side's ends */
static int fd_ab[2] = { -1, -1 }, fd_ba[2] = { -1, -1 };
static int out_fd = -1, in_fd = -1;
static mqd_t mq[2] = { (mqd_t)-1, (mqd_t)-1 };
static mqd_t mq_out = (mqd_t)-1, mq_in = (mqd_t)-1;
static char mq_name[2][64];

static void fd_put(uint64_t seq)
{
	ipc_fill(buf, bytes, seq);
	ipc_write_all(out_fd, buf, bytes, "send");
}

static void fd_get(uint64_t seq)
{
	ipc_read_all(in_fd, buf, bytes, "receive");
	ipc_check(buf, bytes, seq);
}

static void fd_close(void)
{
	close(out_fd);
	close(in_fd);
	free(buf);
}

/* ---- pipe ------------------------------------------------------------------ */

static void pipe_prepare(const struct ipc_args *a)
{
	if (pipe(fd_ab) != 0 || (a->rtt && pipe(fd_ba) != 0))
		ipc_failf(errno, "pipe");
}

/* Keep the ends this side uses, close the others (so a peer's exit is EOF / EPIPE). */
static void pipe_open(const struct ipc_args *a)
{
	bytes = a->bytes;
	buf = ipc_buffer(bytes);
	if (a->side == IPC_A) {
		out_fd = fd_ab[1], in_fd = fd_ba[0];
		close(fd_ab[0]);
		close(fd_ba[1]);
	} else {
		out_fd = fd_ba[1], in_fd = fd_ab[0];
		close(fd_ab[1]);
		close(fd_ba[0]);
	}
}

/* ---- uds ------------------------------------------------------------------- */

static void uds_prepare(const struct ipc_args *a)
{
	(void)a;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, fd_ab) != 0)
		ipc_failf(errno, "socketpair");
}

static void uds_open(const struct ipc_args *a)
{
	bytes = a->bytes;
	buf = ipc_buffer(bytes);
	out_fd = fd_ab[a->side];
	in_fd = dup(out_fd); /* fd_close closes both */
	close(fd_ab[!a->side]);
}

/* ---- mq -------------------------------------------------------------------- */

static long mq_depth(void)
{
	FILE *f = fopen("/proc/sys/fs/mqueue/msg_max", "r");
	long m = 10;
	if (f) {
		if (fscanf(f, "%ld", &m) != 1)
			m = 10;
		fclose(f);
	}
	return m;
}

static void mq_prepare(const struct ipc_args *a)
{
	struct mq_attr attr = { .mq_maxmsg = CB_QUEUE_CAP, .mq_msgsize = 8 };
	if (a->bytes != 8)
		ipc_fail("message queues carry 8-byte messages here");
	for (int d = 0; d < 1 + a->rtt; d++) {
		snprintf(mq_name[d], sizeof mq_name[d], "/moirai-ipc-%d-%s", (int)a->parent,
			 d ? "ba" : "ab");
		attr.mq_maxmsg = CB_QUEUE_CAP;
		mq[d] = mq_open(mq_name[d], O_RDWR | O_CREAT | O_EXCL, 0600, &attr);
		if (mq[d] == (mqd_t)-1 && errno == EINVAL) {
			/* deeper than msg_max needs CAP_SYS_RESOURCE */
			attr.mq_maxmsg = mq_depth();
			mq[d] = mq_open(mq_name[d], O_RDWR | O_CREAT | O_EXCL, 0600, &attr);
		}
		if (mq[d] == (mqd_t)-1) {
			int err = errno;
			mq_name[d][0] = 0; /* not ours to unlink */
			ipc_failf(err, "mq_open(depth %ld)", attr.mq_maxmsg);
		}
	}
	printf("NOTE mq: queue depth %ld\n", attr.mq_maxmsg);
}

static void mq_open_side(const struct ipc_args *a)
{
	bytes = a->bytes;
	buf = ipc_buffer(bytes);
	mq_out = a->side == IPC_A ? mq[0] : mq[1];
	mq_in = a->side == IPC_A ? mq[1] : mq[0];
}

static void mq_put(uint64_t seq)
{
	ipc_fill(buf, bytes, seq);
	while (mq_send(mq_out, buf, bytes, 0) != 0)
		if (errno != EINTR)
			ipc_failf(errno, "mq_send");
}

static void mq_get(uint64_t seq)
{
	ssize_t n;
	while ((n = mq_receive(mq_in, buf, bytes, NULL)) < 0)
		if (errno != EINTR)
			ipc_failf(errno, "mq_receive");
	if ((size_t)n != bytes)
		ipc_fail("mq_receive returned %zd bytes", n);
	ipc_check(buf, bytes, seq);
}

static void mq_close_side(void)
{
	for (int d = 0; d < 2; d++)
		if (mq[d] != (mqd_t)-1)
			mq_close(mq[d]);
	free(buf);
}

static void mq_cleanup(void)
{
	for (int d = 0; d < 2; d++)
		if (mq_name[d][0])
			mq_unlink(mq_name[d]);
}

static const struct ipc_impl pipe_impl = { "pipe", pipe_prepare, pipe_open, fd_put, fd_get,
					   fd_close, NULL };
static const struct ipc_impl uds_impl = { "uds", uds_prepare, uds_open, fd_put, fd_get,
					  fd_close, NULL };
static const struct ipc_impl mq_impl = { "mq", mq_prepare, mq_open_side, mq_put, mq_get,
					 mq_close_side, mq_cleanup };

int main(int argc, char **argv)
{
	static const struct ipc_impl *const impls[] = { &pipe_impl, &uds_impl, &mq_impl, NULL };
	return ipc_main(argc, argv, impls);
}
