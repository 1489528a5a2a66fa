/*
 * tools/bench/io/epoll.c - the ceiling of the HTTP hello benchmark: a
 * hand-written epoll server with nothing but the loop.
 *
 *	bench_io_epoll [-p PORT] [-w THREADS] [-d SECONDS]
 *
 * THREADS threads (default 2), each with its own listening socket on the
 * same port (SO_REUSEPORT: the kernel spreads connections over them) and
 * its own level-triggered epoll set, so no two threads share anything but
 * the request counters. Each answers every request of a keep-alive
 * connection with the same response as examples/httpd (GET / ->
 * "Hello, World!\n", text/plain). A request is counted at its blank line
 * ("\r\n\r\n"); pipelined requests are answered in one write. Nothing is
 * parsed beyond that: this is the cost of the system calls alone.
 *
 * Prints "listening on PORT" when ready (-p 0: an ephemeral port) and, on
 * exit (after -d SECONDS, or SIGINT/SIGTERM), "epoll: requests=N
 * seconds=S". tools/bench/io/run.sh runs it.
 *
 * Behaves badly with a request bigger than its 16 KiB buffer without a
 * blank line in it (the connection is closed): wrk never sends one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RESPONSE                                                                                    \
	"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, World!\n"
#define MAX_THREADS 64
#define BUF 16384

struct conn {
	int fd;
	size_t have;	 /* bytes of an unfinished request kept at the front of buf */
	char buf[BUF];
};

static int port_arg = 8080;
static int listeners[MAX_THREADS];
static _Atomic unsigned long long served[MAX_THREADS];

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static int listen_on(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((unsigned short)port) };

	if (fd < 0)
		die("socket");
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		die("SO_REUSEPORT");
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("bind");
	if (listen(fd, 1024) < 0)
		die("listen");
	return fd;
}

/* Answer every complete request in c->buf; false when the connection must close. */
static bool answer(struct conn *c, unsigned t)
{
	static const char resp[] = RESPONSE;
	char out[64 * (sizeof(resp) - 1)];
	size_t n = 0, start = 0, i;

	for (i = 3; i < c->have; i++) {
		if (memcmp(c->buf + i - 3, "\r\n\r\n", 4))
			continue;
		if (n + sizeof(resp) - 1 > sizeof(out))
			return false; /* more than 64 pipelined requests: wrk never does that */
		memcpy(out + n, resp, sizeof(resp) - 1);
		n += sizeof(resp) - 1;
		start = i + 1;
	}
	if (start == 0 && c->have == BUF)
		return false;
	memmove(c->buf, c->buf + start, c->have - start);
	c->have -= start;
	if (n) {
		/* relaxed: a count read once at exit, after the threads stopped caring */
		atomic_fetch_add_explicit(&served[t], n / (sizeof(resp) - 1), memory_order_relaxed);
		/* A 64-byte-per-request answer fits the socket buffer: a short
		 * write would mean a client that stopped reading. */
		if (write(c->fd, out, n) != (ssize_t)n)
			return false;
	}
	return true;
}

static void *loop(void *arg)
{
	unsigned t = (unsigned)(size_t)arg;
	int ep = epoll_create1(EPOLL_CLOEXEC), lfd = listeners[t];
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL }, evs[256];

	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0)
		die("epoll");
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);

		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;

			if (!c) {
				int fd, one = 1;

				while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					c = malloc(sizeof(*c));
					if (!c)
						die("malloc");
					c->fd = fd;
					c->have = 0;
					ev.events = EPOLLIN;
					ev.data.ptr = c;
					if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
						die("epoll_ctl");
				}
				continue;
			}
			ssize_t r = read(c->fd, c->buf + c->have, BUF - c->have);

			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (r > 0) {
				c->have += (size_t)r;
				if (answer(c, t))
					continue;
			}
			close(c->fd); /* also leaves the epoll set */
			free(c);
		}
	}
	return NULL;
}

static struct timespec t0;

static void finish(int sig)
{
	struct timespec t1;
	unsigned long long n = 0;
	char line[128];
	int len;

	(void)sig;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	for (int i = 0; i < MAX_THREADS; i++)
		n += atomic_load_explicit(&served[i], memory_order_relaxed);
	/* snprintf of integers and doubles: fine in a handler in glibc in practice,
	 * and the process ends right after. */
	len = snprintf(line, sizeof(line), "epoll: requests=%llu seconds=%.3f\n", n,
		       (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	if (write(1, line, (size_t)len) < 0)
		_exit(1);
	_exit(0);
}

int main(int argc, char **argv)
{
	unsigned threads = 2, seconds = 0;
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	pthread_t th[MAX_THREADS];
	int o;

	while ((o = getopt(argc, argv, "p:w:d:")) != -1) {
		switch (o) {
		case 'p': port_arg = atoi(optarg); break;
		case 'w': threads = (unsigned)atoi(optarg); break;
		case 'd': seconds = (unsigned)atoi(optarg); break;
		default:
			fprintf(stderr, "usage: %s [-p PORT] [-w THREADS] [-d SECONDS]\n", argv[0]);
			return 2;
		}
	}
	if (threads < 1 || threads > MAX_THREADS)
		threads = 2;
	signal(SIGPIPE, SIG_IGN);
	/* The first socket picks the port (-p 0), the others join it. */
	listeners[0] = listen_on(port_arg);
	if (getsockname(listeners[0], (struct sockaddr *)&a, &alen) < 0)
		die("getsockname");
	for (unsigned i = 1; i < threads; i++)
		listeners[i] = listen_on(ntohs(a.sin_port));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	signal(SIGINT, finish);
	signal(SIGTERM, finish);
	signal(SIGALRM, finish);
	for (unsigned i = 0; i < threads; i++)
		if (pthread_create(&th[i], NULL, loop, (void *)(size_t)i))
			die("pthread_create");
	printf("listening on %d\n", ntohs(a.sin_port));
	fflush(stdout);
	if (seconds)
		alarm(seconds);
	for (;;)
		pause();
}
