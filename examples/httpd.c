/*
 * httpd.c - an HTTP/1.1 keep-alive server on fibers, and the "mixed"
 * benchmark: the same workers serve HTTP and run fork-join work.
 *
 *	httpd [-p PORT] [-w WORKERS] [-c] [-d SECONDS]
 *
 *	-p PORT     listen on PORT of every IPv4 address (default 8080; 0: the
 *	            kernel picks one)
 *	-w WORKERS  a runtime of that many workers (default: the default
 *	            runtime, MOIRAI_WORKERS or one worker per CPU)
 *	-c          also run the CPU job: a fiber computing fib(27) with
 *	            mr_join, over and over (each one is a "cpu chunk")
 *	-d SECONDS  exit after SECONDS (default: at SIGINT or SIGTERM)
 *
 * Prints "listening on PORT" once it accepts connections and, on exit,
 * "httpd: requests=N cpu_chunks=M seconds=S" (S: seconds since listening).
 *
 * Routes:
 *	GET /           200 "Hello, World!\n"
 *	GET /sum?n=N    200, the sum over i in [0, N) of (i * i) mod 1000003,
 *	                in decimal, for 1 <= N <= 10^9 (N in decimal, nothing
 *	                else in the query; else 400): a mr_parallel_reduce run
 *	                by the request's fiber
 *	anything else   404
 * HEAD is GET without the body. A request examples/http.h refuses gets 400
 * and the connection is closed.
 *
 * Structure: one fiber accepts and starts a fiber per connection; that
 * fiber reads, answers every complete request in what it has read (in
 * order: pipelining) with one write, and reads again. mr_recv and mr_send
 * park only the fiber. The main thread does no serving: it holds SIGINT and
 * SIGTERM blocked, as every worker does (they inherit its mask), and takes
 * them with sigtimedwait().
 *
 * Not done, for brevity: idle timeouts (a client that opens a connection
 * and sends nothing holds a fiber and an fd until it goes away), a Date
 * header, IPv6.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <moirai/moirai.h>

#include "http.h"

/* Relaxed: totals printed once at exit, nothing is ordered by them. */
static _Atomic uint64_t requests, cpu_chunks;

/* Connection fibers keep 16 KiB of buffers on their stack and run jobs of
 * mr_parallel_reduce there (and, while one waits, other workers' jobs):
 * reserve more than the 64 KiB default. Only touched pages cost memory. */
#define CONN_STACK (256u * 1024)
#define OUT_CAP 8192
#define OUT_ROOM 512 /* the longest response below fits in it */

/* ---- /sum: a parallel reduce in the request's fiber -------------------- */

#define SUM_MOD 1000003

static void sum_body(size_t lo, size_t hi, void *acc, void *ctx)
{
	uint64_t s = 0;

	for (uint64_t i = lo; i < hi; i++)
		s += i * i % SUM_MOD; /* i < 10^9: i * i < 2^64 */
	*(uint64_t *)acc += s;
}

static void sum_combine(void *acc, const void *other, void *ctx)
{
	*(uint64_t *)acc += *(const uint64_t *)other;
}

/* n from "n=DIGITS", 1 .. 10^9; 0 when the query is anything else. */
static uint64_t sum_arg(const char *q, size_t len)
{
	uint64_t n = 0;

	if (len < 3 || len > 2 + 10 || memcmp(q, "n=", 2) != 0)
		return 0;
	for (size_t i = 2; i < len; i++) {
		if (q[i] < '0' || q[i] > '9')
			return 0;
		n = n * 10 + (uint64_t)(q[i] - '0');
	}
	return n <= 1000000000 ? n : 0;
}

/* ---- answering a request ------------------------------------------------ */

/*
 * Append the response to req (NULL: a request the parser refused) to
 * out[*len]; the caller leaves OUT_ROOM bytes. Returns whether the
 * connection stays open.
 */
static bool respond(const struct http_request *req, char *out, size_t *len)
{
	const char *status = "200 OK", *body = "Hello, World!\n";
	char num[24];
	bool open = req && req->keep_alive;

	if (!req) {
		status = "400 Bad Request";
		body = "Bad Request\n";
	} else {
		const char *q = memchr(req->target, '?', req->target_len);
		size_t path_len = q ? (size_t)(q - req->target) : req->target_len;
		size_t q_len = q ? req->target_len - path_len - 1 : 0;

		if (path_len == 1) {
			/* "/", whatever the query */
		} else if (path_len == 4 && memcmp(req->target, "/sum", 4) == 0) {
			uint64_t n = q ? sum_arg(q + 1, q_len) : 0, sum = 0, zero = 0;
			if (n && mr_parallel_reduce(0, n, 0, &sum, sizeof(sum), &zero, sum_body,
						    sum_combine, NULL) == 0) {
				snprintf(num, sizeof(num), "%" PRIu64 "\n", sum);
				body = num;
			} else {
				status = "400 Bad Request";
				body = "Bad Request\n";
				open = false;
			}
		} else {
			status = "404 Not Found";
			body = "Not Found\n";
		}
	}
	const char *conn = ""; /* HTTP/1.1 keeps the connection unless told */
	if (!open)
		conn = "Connection: close\r\n";
	else if (req->minor == 0)
		conn = "Connection: keep-alive\r\n";
	bool head = req && req->method == HTTP_HEAD;
	*len += (size_t)snprintf(out + *len, OUT_ROOM,
				 "HTTP/1.1 %s\r\nContent-Type: text/plain\r\n"
				 "Content-Length: %zu\r\n%s\r\n%s",
				 status, strlen(body), conn, head ? "" : body);
	return open;
}

static bool send_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = mr_send(fd, buf, len, 0);
		if (n <= 0)
			return false; /* -EPIPE, -ECONNRESET: the peer is gone */
		buf += n;
		len -= (size_t)n;
	}
	return true;
}

/*
 * The server closes: send FIN, then read and drop what the client still
 * sends (for 2 s at most) before close(). Closing a socket with unread
 * bytes makes the kernel send RST, and a RST can reach the client before
 * it has read the response, which it then never sees.
 */
static void close_gracefully(int fd, char *buf, size_t cap)
{
	int64_t deadline = mr_now_ns() + 2000000000;

	mr_shutdown(fd, SHUT_WR);
	while (mr_recv_until(fd, buf, cap, 0, deadline) > 0)
		;
}

/* Count the answers in out[0, len) (before the client can see them: the
 * totals printed at exit include every response a client received), send
 * them, and say whether that worked. */
static bool flush(int fd, const char *out, size_t len, uint64_t answers)
{
	atomic_fetch_add_explicit(&requests, answers, memory_order_relaxed);
	return send_all(fd, out, len);
}

static void serve(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char in[HTTP_MAX_HEAD], out[OUT_CAP];
	size_t have = 0;
	bool open = true, ok = true;

	/* The parser refuses a head longer than in[], so in[] never fills
	 * up with an unfinished request. */
	while (open && ok) {
		ssize_t n = mr_recv(fd, in + have, sizeof(in) - have, 0);
		if (n <= 0)
			break; /* the peer closed (0) or reset the connection */
		have += (size_t)n;

		/* Answer every complete request read so far, in order, in as
		 * few writes as out[] allows. */
		size_t used = 0, olen = 0;
		uint64_t answers = 0;
		while (open && ok) {
			struct http_request req;
			int k = http_parse(in + used, have - used, &req);
			if (k == HTTP_NEED_MORE)
				break;
			if (olen > OUT_CAP - OUT_ROOM) {
				ok = flush(fd, out, olen, answers);
				olen = answers = 0;
			}
			open = respond(k == HTTP_BAD ? NULL : &req, out, &olen);
			answers++;
			if (k > 0)
				used += (size_t)k;
		}
		if (ok && olen)
			ok = flush(fd, out, olen, answers);
		memmove(in, in + used, have - used);
		have -= used;
	}
	if (!open && ok)
		close_gracefully(fd, in, sizeof(in));
	/* close(2), not mr_close(): a socket's close never blocks, and
	 * mr_close() fails (-EMFILE) on a worker that had no fd left to set
	 * up its ring, which would leak this one. */
	close(fd);
}

/* ---- accepting ----------------------------------------------------------- */

static void acceptor(void *arg)
{
	int lfd = (int)(intptr_t)arg, one = 1;
	MR_OPTS(mr_fiber_opts, opts, .stack_size = CONN_STACK, .name = "conn");

	for (;;) {
		int fd = mr_accept(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd == -ECONNABORTED || fd == -EINTR)
			continue;
		if (fd < 0) {
			/* Out of fds (-EMFILE, -ENFILE) or memory: the kernel
			 * keeps the connection queued. Wait for a connection
			 * to end and free one; the others go on meanwhile. */
			mr_sleep_ns(10 * 1000 * 1000);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		mr_fiber_t *f = mr_go_opts(serve, (void *)(intptr_t)fd, &opts);
		if (!f) {
			close(fd);
			mr_sleep_ns(10 * 1000 * 1000);
			continue;
		}
		mr_fiber_detach(f);
	}
}

/* ---- the CPU job (-c) ---------------------------------------------------- */

struct fib {
	int n;
	long r;
};

static long fib_seq(int n)
{
	return n < 2 ? n : fib_seq(n - 1) + fib_seq(n - 2);
}

static void fib_par(void *p)
{
	struct fib *f = p;

	if (f->n < 18) {
		f->r = fib_seq(f->n);
		return;
	}
	struct fib a = {f->n - 1, 0}, b = {f->n - 2, 0};
	mr_join(fib_par, &a, fib_par, &b); /* b may be stolen by a worker that has no request */
	f->r = a.r + b.r;
}

static void cpu_job(void *arg)
{
	for (;;) {
		struct fib f = {27, 0};
		fib_par(&f);
		if (f.r != 196418) {
			fprintf(stderr, "httpd: fib(27) = %ld, not 196418\n", f.r);
			abort();
		}
		atomic_fetch_add_explicit(&cpu_chunks, 1, memory_order_relaxed);
		/* A fiber waiting in mr_join does not park; between chunks, let
		 * the fibers queued on this worker run. */
		mr_yield();
	}
}

/* ---- main ---------------------------------------------------------------- */

/* A socket listening on *port of every IPv4 address; *port 0 becomes the
 * port the kernel chose. */
static int listen_on(int *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)*port)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, SOMAXCONN) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
		perror("httpd: listen");
		exit(1);
	}
	*port = ntohs(a.sin_port);
	return fd;
}

static void usage(void)
{
	fprintf(stderr, "usage: httpd [-p PORT] [-w WORKERS] [-c] [-d SECONDS]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	long workers = 0;
	int port = 8080;
	double duration = 0;
	bool cpu = false;
	char *end;
	int c;

	while ((c = getopt(argc, argv, "p:w:cd:")) != -1) {
		switch (c) {
		case 'p':
			port = (int)strtol(optarg, &end, 10);
			if (*end || !*optarg || port < 0 || port > 65535)
				usage();
			break;
		case 'w':
			workers = strtol(optarg, &end, 10);
			if (*end || workers < 1 || workers > MR_MAX_WORKERS)
				usage();
			break;
		case 'c':
			cpu = true;
			break;
		case 'd':
			duration = strtod(optarg, &end);
			if (*end || !(duration > 0))
				usage();
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();

	/* Before any worker exists: they inherit the mask, so only the
	 * sigtimedwait() below takes these signals. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);

	MR_OPTS(mr_config, cfg, .workers = (unsigned)workers);
	mr_runtime_t *rt = workers ? mr_runtime_create(&cfg) : mr_runtime_default();
	if (!rt) {
		perror("httpd: runtime");
		return 1;
	}

	int lfd = listen_on(&port);
	MR_OPTS(mr_fiber_opts, aopts, .runtime = rt, .name = "accept");
	MR_OPTS(mr_fiber_opts, copts, .runtime = rt, .name = "cpu", .stack_size = CONN_STACK);
	mr_fiber_t *a = mr_go_opts(acceptor, (void *)(intptr_t)lfd, &aopts);
	mr_fiber_t *b = cpu ? mr_go_opts(cpu_job, NULL, &copts) : NULL;
	if (!a || (cpu && !b)) {
		perror("httpd: mr_go");
		return 1;
	}
	mr_fiber_detach(a);
	if (b)
		mr_fiber_detach(b);
	printf("listening on %d\n", port);
	fflush(stdout);

	int64_t start = mr_now_ns(), deadline = start + (int64_t)(duration * 1e9);
	for (;;) {
		struct timespec ts = {0, 0}, *tmo = NULL;
		if (duration > 0) {
			int64_t left = deadline - mr_now_ns();
			if (left <= 0)
				break;
			ts.tv_sec = left / 1000000000;
			ts.tv_nsec = left % 1000000000;
			tmo = &ts;
		}
		if (sigtimedwait(&stop, NULL, tmo) >= 0)
			break;
		if (errno != EINTR && errno != EAGAIN)
			break;
	}
	/* The fibers are left running: exit() ends them with the process. */
	printf("httpd: requests=%" PRIu64 " cpu_chunks=%" PRIu64 " seconds=%.3f\n",
	       atomic_load(&requests), atomic_load(&cpu_chunks),
	       (double)(mr_now_ns() - start) / 1e9);
	return 0;
}
