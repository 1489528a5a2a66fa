/*
 * ipc_nng.c - NNG (libnng-dev) over ipc://, as a peer of Moirai's shm://
 * channels in the cross-process benchmark (ipc.sh):
 *   nng   one pair0 socket in each process, A listening and B dialling a
 *         socket file in $TMPDIR (or /tmp); default buffers, and no limit
 *         on the size of a received message (NNG_OPT_RECVMAXSZ 0: the
 *         default, 1 MiB, would drop the biggest message with its
 *         header). Each message is one nng_send from A's buffer and one
 *         nng_recv into B's: NNG copies it into a message of its own, and
 *         its threads move it through the socket.
 * Sockets are made after the fork (NNG's threads do not survive one). See
 * ipc.h for the command line, the messages, the checks and the output.
 */
#include "ipc.h"

#include <nng/nng.h>
#include <nng/protocol/pair0/pair.h>

static size_t bytes;
static void *buf;
static nng_socket sock = NNG_SOCKET_INITIALIZER;
static char path[128];

static void ncheck(int rv, const char *what)
{
	if (rv != 0)
		ipc_fail("%s: %s", what, nng_strerror(rv));
}

static void nng_prepare(const struct ipc_args *a)
{
	ipc_socket_path(path, sizeof path, a->parent, "nng");
}

static void nng_open_side(const struct ipc_args *a)
{
	char url[160];
	bytes = a->bytes;
	buf = ipc_buffer(bytes);
	snprintf(url, sizeof url, "ipc://%s", path);
	ncheck(nng_pair0_open(&sock), "nng_pair0_open");
	ncheck(nng_socket_set_size(sock, NNG_OPT_RECVMAXSZ, 0), "NNG_OPT_RECVMAXSZ");
	ncheck(nng_socket_set_int(sock, NNG_OPT_SENDBUF, 1024), "NNG_OPT_SENDBUF");
	ncheck(nng_socket_set_int(sock, NNG_OPT_RECVBUF, 1024), "NNG_OPT_RECVBUF");
	if (a->side == IPC_A)
		ncheck(nng_listen(sock, url, NULL, 0), "nng_listen");
	else /* non-blocking: keeps trying in the background until A listens */
		ncheck(nng_dial(sock, url, NULL, NNG_FLAG_NONBLOCK), "nng_dial");
}

static void nng_put(uint64_t seq)
{
	ipc_fill(buf, bytes, seq);
	ncheck(nng_send(sock, buf, bytes, 0), "nng_send");
}

static void nng_get(uint64_t seq)
{
	size_t n = bytes;
	ncheck(nng_recv(sock, buf, &n, 0), "nng_recv");
	if (n != bytes)
		ipc_fail("nng_recv: a message of %zu bytes", n);
	ipc_check(buf, bytes, seq);
}

static void nng_close_side(void)
{
	nng_close(sock);
	free(buf);
}

static void nng_cleanup(void)
{
	unlink(path);
}

static const struct ipc_impl nng_impl = { "nng", nng_prepare, nng_open_side, nng_put, nng_get,
					  nng_close_side, nng_cleanup };

int main(int argc, char **argv)
{
	static const struct ipc_impl *const impls[] = { &nng_impl, NULL };
	return ipc_main(argc, argv, impls);
}
