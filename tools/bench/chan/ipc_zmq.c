/*
 * ipc_zmq.c - ZeroMQ (libzmq3-dev) over ipc://, as a peer of Moirai's
 * shm:// channels in the cross-process benchmark (ipc.sh):
 *   zmq   one PAIR socket in each process, A's bound and B's connected to
 *         a socket file in $TMPDIR (or /tmp); default high-water marks
 *         (1000 messages each way). Each message is one zmq_send from A's
 *         buffer and one zmq_recv into B's: ZeroMQ copies it into a
 *         message of its own, and its I/O threads move it through the
 *         socket.
 * Each process makes its own context after the fork (a context does not
 * survive one), so its I/O thread runs on that process's CPU. See ipc.h
 * for the command line, the messages, the checks and the output.
 */
#include "ipc.h"

#include <zmq.h>

static size_t bytes;
static void *buf, *ctx, *sock;
static char path[128];

static void zcheck(int ok, const char *what)
{
	if (!ok)
		ipc_fail("%s: %s", what, zmq_strerror(zmq_errno()));
}

static void zmq_prepare(const struct ipc_args *a)
{
	ipc_socket_path(path, sizeof path, a->parent, "zmq");
}

static void zmq_open_side(const struct ipc_args *a)
{
	char url[160];
	int linger = 0;
	bytes = a->bytes;
	buf = ipc_buffer(bytes);
	snprintf(url, sizeof url, "ipc://%s", path);
	ctx = zmq_ctx_new();
	zcheck(ctx != NULL, "zmq_ctx_new");
	sock = zmq_socket(ctx, ZMQ_PAIR);
	zcheck(sock != NULL, "zmq_socket");
	zcheck(zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger) == 0, "ZMQ_LINGER");
	if (a->side == IPC_A)
		zcheck(zmq_bind(sock, url) == 0, "zmq_bind");
	else
		zcheck(zmq_connect(sock, url) == 0, "zmq_connect");
}

static void zmq_put(uint64_t seq)
{
	ipc_fill(buf, bytes, seq);
	while (zmq_send(sock, buf, bytes, 0) != (int)bytes)
		zcheck(zmq_errno() == EINTR, "zmq_send");
}

static void zmq_get(uint64_t seq)
{
	int n;
	while ((n = zmq_recv(sock, buf, bytes, 0)) < 0)
		zcheck(zmq_errno() == EINTR, "zmq_recv");
	if ((size_t)n != bytes)
		ipc_fail("zmq_recv: a message of %d bytes", n);
	ipc_check(buf, bytes, seq);
}

static void zmq_close_side(void)
{
	zmq_close(sock);
	zmq_ctx_term(ctx);
	free(buf);
}

static void zmq_cleanup(void)
{
	unlink(path);
}

static const struct ipc_impl zmq_impl = { "zmq", zmq_prepare, zmq_open_side, zmq_put, zmq_get,
					  zmq_close_side, zmq_cleanup };

int main(int argc, char **argv)
{
	static const struct ipc_impl *const impls[] = { &zmq_impl, NULL };
	return ipc_main(argc, argv, impls);
}
