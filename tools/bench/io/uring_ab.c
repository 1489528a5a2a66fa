/*
 * tools/bench/io/uring_ab.c - A/B prototypes of io_uring features that
 * Moirai's ring (user/io/uring.c) does not use, measured on a bare ring
 * before anything is built into the library: is the gain worth the
 * design cost?
 *
 *	bench_io_uring_ab accept MODE SECONDS
 *	    MODE single: one IORING_OP_ACCEPT in flight, re-armed after each
 *	    completion (what an accept loop on mr_accept does today);
 *	    multi: one IORING_OP_ACCEPT with IORING_ACCEPT_MULTISHOT, re-armed
 *	    only when the kernel ends it. A client thread connects and closes
 *	    as fast as it can; the server closes each accepted fd.
 *	bench_io_uring_ab recv MODE SECONDS [CONNS]
 *	    An echo server on one ring over CONNS (16) TCP loopback
 *	    connections, driven by a client thread (epoll, 64-byte messages,
 *	    one in flight per connection). The server receives with
 *	    MODE plain: IORING_OP_RECV into the connection's own buffer (what
 *	    mr_recv does); fixed: the same on registered files
 *	    (IOSQE_FIXED_FILE); pbuf: IORING_OP_RECV with a buffer picked from
 *	    a provided buffer ring, copied into the connection's buffer (what
 *	    mr_recv would have to do with a caller's buffer); pbuf-multi: one
 *	    multishot IORING_OP_RECV per connection on the buffer ring, copied
 *	    likewise. Replies are sent with send(MSG_DONTWAIT), as uring.c's
 *	    send_now() does.
 *
 *	bench_io_uring_ab read MODE SECONDS FILE
 *	    4 KiB O_DIRECT reads at random aligned offsets of FILE, 32 in
 *	    flight, on one ring: MODE plain: IORING_OP_READ (what mr_pread
 *	    does); fixed: on a registered file; fixedbuf: IORING_OP_READ_FIXED
 *	    into 32 registered buffers (the kernel pins them once, not per
 *	    read); both: the two.
 *
 * Prints "MODE ops=N seconds=S ops_per_s=R server_cpu_ns_per_op=C": the
 * server thread's own CPU time (RUSAGE_THREAD) per accept or per echoed
 * message, the number that says what the feature saves, since on 2 CPUs
 * the rate is bounded by the client as much as by the server.
 * tools/bench/io/uring_ab.sh runs the modes interleaved and prints
 * medians.
 *
 * Why multishot accept, which saves server CPU per connection here, is not
 * built into user/io/uring.c (yet):
 *  - The request holds a reference to the listening socket: after a
 *    close(2) of the listener the kernel goes on accepting into it until
 *    it is cancelled, and only the ring's owner may cancel it
 *    (SINGLE_ISSUER). mr_close would have to find and cancel it, and a
 *    listener closed with close(2) would go on taking connections that
 *    nobody serves (a single-shot accept in flight takes one at most).
 *  - Connections accepted while no fiber waits must be queued, and the
 *    queue must be the listener's, not the ring's: an accept loop's fiber
 *    may be stolen by another worker, which would strand the connections
 *    queued on the first. A queue shared by the workers and keyed by fd
 *    number needs a lock, readying across workers, and an identity check
 *    against a reused number (an fstat per accept).
 *  - Flags and the peer's address are per request, not per call
 *    (SOCK_NONBLOCK, SOCK_CLOEXEC; no address per connection): a fcntl or
 *    getpeername per accept for callers that differ.
 *  - The ring's teardown (runtime destroy) must cancel the request and
 *    drain its completions, each an installed fd, before it unmaps the
 *    ring, and queue or close those fds.
 *  - A waiting accept's deadline or cancellation leaves the request
 *    armed: it must be cancelled when the queue passes a bound, and
 *    re-armed by the next accept.
 * A listener object (open, accept, close) would answer the first, second
 * and fourth (an explicit close, identity by object, not by number): the
 * shape to build if an application's accept rate makes the saving matter.
 * In examples/httpd one request per connection costs ~265 us of server
 * CPU (uring_ab.sh's http group), of which the accept saving is ~1%.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MSG 64
#define MAXCONN 256
#define NBUF 1024
#define BUFSZ 2048

static void die(const char *what, int err)
{
	fprintf(stderr, "uring_ab: %s: %s\n", what, strerror(err));
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- a bare ring (the setup of user/io/uring.c, without its fallbacks) ---- */

struct ring {
	int fd;
	unsigned sq_mask, cq_mask, sq_entries;
	_Atomic unsigned *sq_head, *sq_tail, *cq_head, *cq_tail;
	struct io_uring_sqe *sqes;
	struct io_uring_cqe *cqes;
	unsigned tail;
};

static void ring_init(struct ring *r, unsigned entries)
{
	struct io_uring_params p;

	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
		  IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE;
	p.cq_entries = entries * 8;
	r->fd = (int)syscall(__NR_io_uring_setup, entries, &p);
	if (r->fd < 0)
		die("io_uring_setup", errno);
	size_t sl = p.sq_off.array + p.sq_entries * 4, cl = p.cq_off.cqes + p.cq_entries * 16;
	size_t len = sl > cl ? sl : cl;
	char *sq = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
			IORING_OFF_SQ_RING);
	r->sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
	if (sq == MAP_FAILED || r->sqes == MAP_FAILED)
		die("mmap", errno);
	r->sq_head = (void *)(sq + p.sq_off.head);
	r->sq_tail = (void *)(sq + p.sq_off.tail);
	r->sq_mask = *(unsigned *)(sq + p.sq_off.ring_mask);
	r->sq_entries = p.sq_entries;
	unsigned *array = (void *)(sq + p.sq_off.array);
	for (unsigned i = 0; i < p.sq_entries; i++)
		array[i] = i;
	r->cq_head = (void *)(sq + p.cq_off.head);
	r->cq_tail = (void *)(sq + p.cq_off.tail);
	r->cq_mask = *(unsigned *)(sq + p.cq_off.ring_mask);
	r->cqes = (void *)(sq + p.cq_off.cqes);
	r->tail = 0;
}

static int ring_enter(struct ring *r, unsigned min)
{
	atomic_store_explicit(r->sq_tail, r->tail, memory_order_release);
	unsigned n = r->tail - atomic_load_explicit(r->sq_head, memory_order_acquire);
	long ret = syscall(__NR_io_uring_enter, r->fd, n, min, min ? IORING_ENTER_GETEVENTS : 0,
			   NULL, 0);
	return ret < 0 ? -errno : (int)ret;
}

static struct io_uring_sqe *sqe(struct ring *r)
{
	if (r->tail - atomic_load_explicit(r->sq_head, memory_order_acquire) >= r->sq_entries)
		ring_enter(r, 0);
	struct io_uring_sqe *s = &r->sqes[r->tail++ & r->sq_mask];
	memset(s, 0, sizeof(*s));
	return s;
}

static int ring_register(struct ring *r, unsigned op, void *arg, unsigned n)
{
	long ret = syscall(__NR_io_uring_register, r->fd, op, arg, n);
	return ret < 0 ? -errno : (int)ret;
}

/* ---- sockets -------------------------------------------------------------- */

static int listen_lo(struct sockaddr_in *a)
{
	socklen_t len = sizeof(*a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)a, sizeof(*a)) || listen(fd, 4096) ||
	    getsockname(fd, (struct sockaddr *)a, &len))
		die("listen", errno);
	return fd;
}

static atomic_bool stop;
static struct sockaddr_in addr;

/* ---- accept --------------------------------------------------------------- */

static void *churn(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop)) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct linger l = { 1, 0 }; /* RST on close: no TIME_WAIT pile-up */
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
		if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) && errno != ECONNREFUSED)
			die("connect", errno);
		close(fd);
	}
	return NULL;
}

static uint64_t bench_accept(bool multi, double secs, uint64_t *cpu)
{
	struct ring r;
	int lfd = listen_lo(&addr);
	pthread_t th;
	uint64_t n = 0;

	ring_init(&r, 64);
	pthread_create(&th, NULL, churn, NULL);
	uint64_t t0 = now_ns(), c0 = thread_cpu_ns(), end = t0 + (uint64_t)(secs * 1e9);
	bool armed = false;
	while (now_ns() < end) {
		if (!armed) {
			struct io_uring_sqe *s = sqe(&r);
			s->opcode = IORING_OP_ACCEPT;
			s->fd = lfd;
			s->accept_flags = SOCK_CLOEXEC;
			s->ioprio = multi ? IORING_ACCEPT_MULTISHOT : 0;
			s->user_data = 1;
			armed = true;
		}
		int ret = ring_enter(&r, 1);
		if (ret < 0 && ret != -EINTR)
			die("io_uring_enter", -ret);
		unsigned head = atomic_load_explicit(r.cq_head, memory_order_relaxed);
		unsigned tail = atomic_load_explicit(r.cq_tail, memory_order_acquire);
		for (; head != tail; head++) {
			struct io_uring_cqe *c = &r.cqes[head & r.cq_mask];
			if (c->res >= 0) {
				close(c->res);
				n++;
			} else if (c->res != -ECONNABORTED) {
				die("accept", -c->res);
			}
			if (!(c->flags & IORING_CQE_F_MORE))
				armed = false;
		}
		atomic_store_explicit(r.cq_head, head, memory_order_release);
	}
	*cpu = thread_cpu_ns() - c0;
	atomic_store(&stop, true);
	shutdown(lfd, SHUT_RDWR);
	pthread_join(th, NULL);
	return n;
}

/* ---- recv ----------------------------------------------------------------- */

static int nconn;
static int cli[MAXCONN];

static void *pinger(void *arg)
{
	(void)arg;
	char buf[MSG];
	int ep = epoll_create1(EPOLL_CLOEXEC);

	memset(buf, 'x', sizeof(buf));
	for (int i = 0; i < nconn; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
		epoll_ctl(ep, EPOLL_CTL_ADD, cli[i], &ev);
		if (send(cli[i], buf, MSG, MSG_NOSIGNAL) != MSG)
			die("send", errno);
	}
	while (!atomic_load(&stop)) {
		struct epoll_event evs[MAXCONN];
		int k = epoll_wait(ep, evs, MAXCONN, 100);
		for (int j = 0; j < k; j++) {
			int fd = cli[evs[j].data.u32];
			ssize_t got = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (got <= 0)
				continue;
			/* one message out per message back (a reply may come
			 * in pieces: send what came) */
			if (send(fd, buf, (size_t)got, MSG_NOSIGNAL) != got)
				die("send", errno);
		}
	}
	close(ep);
	return NULL;
}

enum { PLAIN, FIXED, PBUF, PBUF_MULTI };

struct sconn {
	int fd;
	char buf[BUFSZ]; /* the "caller's buffer" */
};

static uint64_t bench_recv(int mode, double secs, uint64_t *cpu)
{
	struct ring r;
	static struct sconn sc[MAXCONN];
	int lfd = listen_lo(&addr), fds[MAXCONN], one = 1;
	uint64_t n = 0;
	struct io_uring_buf_ring *br = NULL;
	char *bufs = NULL;
	unsigned short btail = 0;

	ring_init(&r, 256);
	for (int i = 0; i < nconn; i++) {
		cli[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (connect(cli[i], (struct sockaddr *)&addr, sizeof(addr)))
			die("connect", errno);
		sc[i].fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		setsockopt(cli[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(sc[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		fds[i] = sc[i].fd;
	}
	if (mode == FIXED) {
		int err = ring_register(&r, IORING_REGISTER_FILES, fds, (unsigned)nconn);
		if (err < 0)
			die("IORING_REGISTER_FILES", -err);
	}
	if (mode == PBUF || mode == PBUF_MULTI) {
		br = mmap(NULL, NBUF * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		bufs = malloc((size_t)NBUF * BUFSZ);
		struct io_uring_buf_reg reg = { .ring_addr = (uintptr_t)br, .ring_entries = NBUF,
						.bgid = 0 };
		int err = ring_register(&r, IORING_REGISTER_PBUF_RING, &reg, 1);
		if (err < 0)
			die("IORING_REGISTER_PBUF_RING", -err);
		for (unsigned i = 0; i < NBUF; i++) {
			struct io_uring_buf *b = &br->bufs[btail++ & (NBUF - 1)];
			b->addr = (uintptr_t)(bufs + (size_t)i * BUFSZ);
			b->len = BUFSZ;
			b->bid = (unsigned short)i;
		}
		atomic_store_explicit((_Atomic unsigned short *)&br->tail, btail,
				      memory_order_release);
	}
	/* Arm a receive on connection i. */
#define ARM(i)                                                                                     \
	do {                                                                                       \
		struct io_uring_sqe *s = sqe(&r);                                                  \
		s->opcode = IORING_OP_RECV;                                                        \
		s->fd = mode == FIXED ? (i) : sc[i].fd;                                            \
		s->flags = mode == FIXED ? IOSQE_FIXED_FILE : 0;                                   \
		if (mode == PBUF || mode == PBUF_MULTI) {                                          \
			s->flags |= IOSQE_BUFFER_SELECT;                                           \
			s->buf_group = 0;                                                          \
			s->ioprio = mode == PBUF_MULTI ? IORING_RECV_MULTISHOT : 0;                \
		} else {                                                                           \
			s->addr = (uintptr_t)sc[i].buf;                                            \
			s->len = BUFSZ;                                                            \
		}                                                                                  \
		s->user_data = (uint64_t)(i);                                                      \
	} while (0)
	for (int i = 0; i < nconn; i++)
		ARM(i);
	pthread_t th;
	pthread_create(&th, NULL, pinger, NULL);
	uint64_t t0 = now_ns(), c0 = thread_cpu_ns(), end = t0 + (uint64_t)(secs * 1e9);
	while (now_ns() < end) {
		int ret = ring_enter(&r, 1);
		if (ret < 0 && ret != -EINTR)
			die("io_uring_enter", -ret);
		unsigned head = atomic_load_explicit(r.cq_head, memory_order_relaxed);
		unsigned tail = atomic_load_explicit(r.cq_tail, memory_order_acquire);
		bool returned = false;
		for (; head != tail; head++) {
			struct io_uring_cqe *c = &r.cqes[head & r.cq_mask];
			int i = (int)c->user_data;
			if (c->res <= 0)
				die("recv", c->res ? -c->res : EPIPE);
			if (c->flags & IORING_CQE_F_BUFFER) {
				unsigned bid = c->flags >> IORING_CQE_BUFFER_SHIFT;
				memcpy(sc[i].buf, bufs + (size_t)bid * BUFSZ, (size_t)c->res);
				struct io_uring_buf *b = &br->bufs[btail++ & (NBUF - 1)];
				b->addr = (uintptr_t)(bufs + (size_t)bid * BUFSZ);
				b->len = BUFSZ;
				b->bid = (unsigned short)bid;
				returned = true;
			}
			if (send(sc[i].fd, sc[i].buf, (size_t)c->res, MSG_DONTWAIT | MSG_NOSIGNAL) !=
			    c->res)
				die("send", errno);
			n++;
			if (mode != PBUF_MULTI || !(c->flags & IORING_CQE_F_MORE))
				ARM(i);
		}
		if (returned)
			atomic_store_explicit((_Atomic unsigned short *)&br->tail, btail,
					      memory_order_release);
		atomic_store_explicit(r.cq_head, head, memory_order_release);
	}
	*cpu = thread_cpu_ns() - c0;
	atomic_store(&stop, true);
	pthread_join(th, NULL);
	return n;
}

/* ---- O_DIRECT reads: registered files and buffers -------------------------- */

#define QD 32
#define BLK 4096

static uint64_t bench_read(const char *mode, const char *path, double secs, uint64_t *cpu)
{
	struct ring r;
	bool fixed = !strcmp(mode, "fixed") || !strcmp(mode, "both");
	bool fbuf = !strcmp(mode, "fixedbuf") || !strcmp(mode, "both");
	int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	struct iovec iov[QD];
	uint64_t n = 0, rng = 88172645463325252ull;

	if (fd < 0)
		die(path, errno);
	off_t size = lseek(fd, 0, SEEK_END);
	uint64_t blocks = (uint64_t)size / BLK;
	if (!blocks)
		die(path, EINVAL);
	ring_init(&r, 64);
	char *mem = aligned_alloc(BLK, (size_t)QD * BLK);
	for (int i = 0; i < QD; i++) {
		iov[i].iov_base = mem + (size_t)i * BLK;
		iov[i].iov_len = BLK;
	}
	if (fixed) {
		int err = ring_register(&r, IORING_REGISTER_FILES, &fd, 1);
		if (err < 0)
			die("IORING_REGISTER_FILES", -err);
	}
	if (fbuf) {
		int err = ring_register(&r, IORING_REGISTER_BUFFERS, iov, QD);
		if (err < 0)
			die("IORING_REGISTER_BUFFERS", -err);
	}
#define SUBMIT(i)                                                                                  \
	do {                                                                                       \
		struct io_uring_sqe *s = sqe(&r);                                                  \
		rng ^= rng << 13;                                                                  \
		rng ^= rng >> 7;                                                                   \
		rng ^= rng << 17;                                                                  \
		s->opcode = fbuf ? IORING_OP_READ_FIXED : IORING_OP_READ;                          \
		s->fd = fixed ? 0 : fd;                                                            \
		s->flags = fixed ? IOSQE_FIXED_FILE : 0;                                           \
		s->addr = (uintptr_t)iov[i].iov_base;                                              \
		s->len = BLK;                                                                      \
		s->off = (rng % blocks) * BLK;                                                     \
		s->buf_index = (unsigned short)(i);                                                \
		s->user_data = (uint64_t)(i);                                                      \
	} while (0)
	for (int i = 0; i < QD; i++)
		SUBMIT(i);
	uint64_t t0 = now_ns(), c0 = thread_cpu_ns(), end = t0 + (uint64_t)(secs * 1e9);
	while (now_ns() < end) {
		int ret = ring_enter(&r, 1);
		if (ret < 0 && ret != -EINTR)
			die("io_uring_enter", -ret);
		unsigned head = atomic_load_explicit(r.cq_head, memory_order_relaxed);
		unsigned tail = atomic_load_explicit(r.cq_tail, memory_order_acquire);
		for (; head != tail; head++) {
			struct io_uring_cqe *c = &r.cqes[head & r.cq_mask];
			if (c->res != BLK)
				die("read", c->res < 0 ? -c->res : EIO);
			n++;
			SUBMIT((int)c->user_data);
		}
		atomic_store_explicit(r.cq_head, head, memory_order_release);
	}
	*cpu = thread_cpu_ns() - c0;
	return n;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: bench_io_uring_ab accept single|multi SECONDS\n"
				"       bench_io_uring_ab recv plain|fixed|pbuf|pbuf-multi SECONDS [CONNS]\n"
				"       bench_io_uring_ab read plain|fixed|fixedbuf|both SECONDS FILE\n");
		return 2;
	}
	double secs = atof(argv[3]);
	uint64_t n, cpu;

	if (strcmp(argv[1], "accept") == 0) {
		n = bench_accept(strcmp(argv[2], "multi") == 0, secs, &cpu);
	} else if (strcmp(argv[1], "read") == 0 && argc > 4) {
		n = bench_read(argv[2], argv[4], secs, &cpu);
	} else if (strcmp(argv[1], "recv") == 0) {
		const char *m = argv[2];
		int mode = strcmp(m, "fixed") == 0	  ? FIXED
			   : strcmp(m, "pbuf") == 0	  ? PBUF
			   : strcmp(m, "pbuf-multi") == 0 ? PBUF_MULTI
							  : PLAIN;
		nconn = argc > 4 ? atoi(argv[4]) : 16;
		if (nconn < 1 || nconn > MAXCONN)
			return 2;
		n = bench_recv(mode, secs, &cpu);
	} else {
		return 2;
	}
	printf("%s-%s ops=%llu seconds=%.2f ops_per_s=%.0f server_cpu_ns_per_op=%.0f\n", argv[1],
	       argv[2], (unsigned long long)n, secs, (double)n / secs,
	       n ? (double)cpu / (double)n : 0.0);
	return 0;
}
