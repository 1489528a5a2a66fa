/*
 * ipc.h - what the cross-process channel benchmark programs (ipc_*.c)
 * share: the command line, two processes pinned to two CPUs, the messages
 * and their checks, the timing and the RESULT line. ipc.sh runs them.
 *
 * Every program measures one transport between a parent process (A) and a
 * child it forks (B), and is called as
 *
 *	PROG BENCH IMPL REPS COUNT BYTES
 *
 * BENCH is one of
 *	rtt      A sends message i, B receives it and sends message i back, A
 *	         receives and checks it: COUNT round trips, ns each
 *	oneway   A sends messages 0 .. COUNT-1, B receives and checks each in
 *	         turn: timed from A's first send to B's last receive (both
 *	         read CLOCK_MONOTONIC, one clock for the whole machine)
 * IMPL names the transport (each program knows a few), BYTES the size of a
 * message: 8, or from IPC_BIG_MIN up.
 *
 * The messages. An 8-byte message is its sequence number. A bigger one
 * carries, in its first cache line, the sequence number, six words that
 * hash it with their index and the sum of those and of the message's last
 * word, a seventh such hash: a receiver checks all of it, so a message that
 * is stale, torn, misplaced or cut short fails the run. The rest of the
 * message is not written: the sender writes what a producer that builds a
 * message in place writes at least (a header, and the end that proves the
 * size), and a transport that copies moves every byte, which is the cost
 * zero-copy avoids. (Sampling words spread over the message instead would
 * make every message cost one cache miss per sample to the receiver of a
 * loan, and nothing to one that copies, which reads its own copy; with 16
 * samples a 1 MiB loan took 0.54 us instead of 0.2.) Sequence numbers run
 * on across repetitions (rep r starts at r << 40), so a message left over
 * from an earlier run fails as well.
 *
 * The processes. Each transport sets up what must exist before the fork
 * (ipc_impl.prepare), then each process opens its own side after it
 * (.open: ZeroMQ, NNG and Moirai handles do not survive a fork). With two
 * or more CPUs A runs on the first CPU of its affinity mask and B on the
 * second (ZeroMQ's and NNG's I/O threads inherit them); with one, both
 * share it. Before every run B tells A through a control pipe that it is
 * waiting; after it B reports its count (and, one-way, the time of its
 * last receive) through the same pipe. Each program runs its benchmark
 * once to warm up (connections made, pages faulted in) and REPS timed
 * times, and prints
 *
 *	RESULT <bench> <impl> <bytes> <median_ms> <count>
 *
 * count being the messages (round trips) both sides checked: ipc.sh
 * compares it with COUNT. Anything wrong (a bad message, a failed call, B
 * dying) prints FAIL and exits 1; A kills B when it fails or is stopped
 * by SIGTERM (a timeout), SIGINT or SIGHUP, and B dies with A
 * (PR_SET_PDEATHSIG), so a failure never leaves a process behind; A then
 * removes the names it made (ipc_impl.cleanup).
 */
#ifndef MOIRAI_BENCH_CHAN_IPC_H
#define MOIRAI_BENCH_CHAN_IPC_H

/* sched_setaffinity and CPU_SET; ipc.h comes first in every ipc_*.c */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "bench.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define IPC_A 0 /* the parent: sends first, times */
#define IPC_B 1 /* the child: receives (and echoes) */

#define IPC_BIG_MIN 128 /* smallest message with a header line and a checksum */

struct ipc_args {
	const char *bench, *impl;
	int reps;
	uint64_t count;
	size_t bytes;
	bool rtt;     /* bench == "rtt" */
	pid_t parent; /* A's pid, for names both sides compute */
	int side;     /* IPC_A or IPC_B, once forked */
};

/* A transport. Every hook fails the run itself (ipc_fail) when a call fails. */
struct ipc_impl {
	const char *name;
	/* in A before the fork: what both processes inherit (may be NULL) */
	void (*prepare)(const struct ipc_args *a);
	/* in each process after the fork: its side of the transport */
	void (*open)(const struct ipc_args *a);
	/* send message seq: A to B, or (rtt) B to A */
	void (*put)(uint64_t seq);
	/* receive the next message and check that it is message seq */
	void (*get)(uint64_t seq);
	/* in each process when done */
	void (*close)(void);
	/* in A at the end, and when it fails: remove names (may be NULL) */
	void (*cleanup)(void);
};

static const struct ipc_args *ipc_a;
static const struct ipc_impl *ipc_impl_cur;
static pid_t ipc_child;				 /* in A: B's pid */
static volatile sig_atomic_t ipc_child_reaped; /* B exited 0, reaped by the handler */

/* Fail the run: say what, who and (err > 0) the errno string; A kills B. */
static inline void ipc_failf(int err, const char *fmt, ...)
{
	char what[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	fprintf(stderr, "FAIL %s %s %zu (%s): %s%s%s\n", ipc_a ? ipc_a->bench : "?",
		ipc_a ? ipc_a->impl : "?", ipc_a ? ipc_a->bytes : 0,
		ipc_a && ipc_a->side == IPC_B ? "B, the child" : "A, the parent", what,
		err > 0 ? ": " : "", err > 0 ? strerror(err) : "");
	fflush(stderr);
	if (ipc_a && ipc_a->side == IPC_A) {
		if (ipc_child > 0)
			kill(ipc_child, SIGKILL);
		if (ipc_impl_cur && ipc_impl_cur->cleanup)
			ipc_impl_cur->cleanup();
	}
	/* _exit: other threads (ZeroMQ's, NNG's) may hold locks atexit would need */
	_exit(1);
}

#define ipc_fail(...) ipc_failf(0, __VA_ARGS__)

static inline int64_t ipc_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- messages --------------------------------------------------------------- */

/* splitmix64's finaliser: a different-looking word for every input */
static inline uint64_t ipc_mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* The k-th hashed word of message seq (k < 7: word k + 1; k == 7: the last word). */
static inline uint64_t ipc_word(uint64_t seq, unsigned k)
{
	return ipc_mix(seq * 8 + k);
}

/* Write message seq into buf (n bytes, 8-byte aligned). */
static inline void ipc_fill(void *buf, size_t n, uint64_t seq)
{
	uint64_t *w = buf, sum = 0;
	w[0] = seq;
	if (n < IPC_BIG_MIN)
		return;
	for (unsigned k = 0; k < 6; k++)
		sum += w[k + 1] = ipc_word(seq, k);
	sum += w[n / 8 - 1] = ipc_word(seq, 7);
	w[7] = sum;
}

/* Check that buf holds message seq; fail the run otherwise. */
static inline void ipc_check(const void *buf, size_t n, uint64_t seq)
{
	const uint64_t *w = buf;
	uint64_t sum;
	if (w[0] != seq)
		ipc_fail("expected message %llu, received %llu", (unsigned long long)seq,
			 (unsigned long long)w[0]);
	if (n < IPC_BIG_MIN)
		return;
	for (unsigned k = 0; k < 6; k++)
		if (w[k + 1] != ipc_word(seq, k))
			ipc_fail("message %llu: word %u is wrong: a torn or stale message",
				 (unsigned long long)seq, k + 1);
	if (w[n / 8 - 1] != ipc_word(seq, 7))
		ipc_fail("message %llu: its last word is wrong: a torn, stale or short message",
			 (unsigned long long)seq);
	sum = w[1] + w[2] + w[3] + w[4] + w[5] + w[6] + w[n / 8 - 1];
	if (sum != w[7])
		ipc_fail("message %llu: bad checksum", (unsigned long long)seq);
}

/* A buffer for one message, touched once so that its pages are in. */
static inline void *ipc_buffer(size_t n)
{
	void *p = NULL;
	if (posix_memalign(&p, 64, n) != 0)
		ipc_fail("no memory for a %zu-byte buffer", n);
	memset(p, 0, n);
	return p;
}

/* ---- processes -------------------------------------------------------------- */

/*
 * The CPUs this process may run on, as they were before ipc_pin() narrowed
 * the mask of the first thread it pinned (a thread started later inherits
 * the narrowed one). The first call takes it.
 */
static inline const cpu_set_t *ipc_cpus(void)
{
	static cpu_set_t set;
	static bool taken;
	if (!taken) {
		if (sched_getaffinity(0, sizeof set, &set) != 0)
			CPU_ZERO(&set);
		taken = true;
	}
	return &set;
}

static inline int ipc_ncpu(void)
{
	return CPU_COUNT(ipc_cpus());
}

/* Pin the calling thread to the which-th CPU (0, 1) of ipc_cpus(); nothing with one CPU. */
static inline void ipc_pin(int which)
{
	const cpu_set_t *all = ipc_cpus();
	int seen = 0;
	if (CPU_COUNT(all) < 2)
		return;
	for (int c = 0; c < CPU_SETSIZE; c++) {
		cpu_set_t one;
		if (!CPU_ISSET(c, all) || seen++ != which)
			continue;
		CPU_ZERO(&one);
		CPU_SET(c, &one);
		if (sched_setaffinity(0, sizeof one, &one) != 0)
			ipc_failf(errno, "sched_setaffinity(CPU %d)", c);
		return;
	}
}

/*
 * One round of waiting in a spinning receiver (or a sender facing a full
 * queue): a pause, and every 256th time sched_yield(), so that a spinner
 * sharing its CPU gives it back. Pinned to CPUs of their own the two
 * processes almost never get there. Reset *spins after progress.
 */
static inline void ipc_spin(unsigned *spins)
{
	if (++*spins % 256 == 0)
		sched_yield();
	else
		cb_cpu_relax();
}

/* In A: B exited. Status 0 (B is done) is noted; anything else fails the run at once. */
static void ipc_on_sigchld(int sig)
{
	int st;
	(void)sig;
	if (waitpid(ipc_child, &st, WNOHANG) != ipc_child)
		return;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
		ipc_child_reaped = 1;
		return;
	}
	static const char msg[] = "FAIL: B, the child, died (see above)\n";
	if (write(2, msg, sizeof msg - 1) < 0) {
		/* nothing left to tell */
	}
	if (ipc_impl_cur && ipc_impl_cur->cleanup)
		ipc_impl_cur->cleanup();
	_exit(1);
}

/* In A: SIGTERM (ipc.sh's timeout), SIGINT, SIGHUP: take B and the names along. */
static void ipc_on_term(int sig)
{
	static const char msg[] = "FAIL: A, the parent, was stopped by a signal\n";
	if (write(2, msg, sizeof msg - 1) < 0) {
		/* nothing left to tell */
	}
	if (ipc_child > 0)
		kill(ipc_child, SIGKILL);
	if (ipc_impl_cur && ipc_impl_cur->cleanup)
		ipc_impl_cur->cleanup();
	_exit(128 + sig);
}

static inline void ipc_write_all(int fd, const void *buf, size_t n, const char *what)
{
	const char *p = buf;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			ipc_failf(w < 0 ? errno : 0, "%s: write", what);
		p += w;
		n -= (size_t)w;
	}
}

static inline void ipc_read_all(int fd, void *buf, size_t n, const char *what)
{
	char *p = buf;
	while (n) {
		ssize_t r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			ipc_fail("%s: the other side closed it", what);
		if (r < 0)
			ipc_failf(errno, "%s: read", what);
		p += r;
		n -= (size_t)r;
	}
}

/* What B reports after a run. */
struct ipc_report {
	int64_t end_ns; /* when its last receive returned */
	uint64_t count; /* messages it received and checked */
};

static inline void ipc_parse(int argc, char **argv, struct ipc_args *a)
{
	char *end;
	if (argc != 6) {
		fprintf(stderr, "usage: %s rtt|oneway IMPL REPS COUNT BYTES\n", argv[0]);
		exit(2);
	}
	a->bench = argv[1];
	a->impl = argv[2];
	if (strcmp(a->bench, "rtt") && strcmp(a->bench, "oneway"))
		goto bad;
	a->rtt = !strcmp(a->bench, "rtt");
	a->reps = (int)strtol(argv[3], &end, 10);
	if (*end || a->reps < 1 || a->reps > FB_MAX_REPS)
		goto bad;
	a->count = strtoull(argv[4], &end, 10);
	if (*end || a->count < 1 || a->count >= (uint64_t)1 << 40)
		goto bad;
	a->bytes = strtoull(argv[5], &end, 10);
	if (*end || (a->bytes != 8 && (a->bytes < IPC_BIG_MIN || a->bytes % 8)))
		goto bad;
	a->parent = getpid();
	a->side = IPC_A;
	return;
bad:
	fprintf(stderr,
		"%s: bad argument (rtt or oneway; 1 <= reps <= %d; 1 <= count < 2^40; "
		"bytes 8, or a multiple of 8 from %d)\n",
		argv[0], FB_MAX_REPS, IPC_BIG_MIN);
	exit(2);
}

/* B: open its side, then for every run say it is ready, receive (and echo), report. */
static void ipc_run_b(struct ipc_args *a, const struct ipc_impl *im, int up)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != a->parent)
		_exit(1); /* A is gone already */
	ipc_pin(1);
	im->open(a);
	for (int r = 0; r <= a->reps; r++) {
		uint64_t base = (uint64_t)r << 40;
		struct ipc_report rep = { 0, 0 };
		char ready = 'r';
		ipc_write_all(up, &ready, 1, "the control pipe");
		for (uint64_t i = 0; i < a->count; i++) {
			im->get(base + i);
			if (a->rtt)
				im->put(base + i);
			rep.count++;
		}
		rep.end_ns = ipc_now_ns();
		ipc_write_all(up, &rep, sizeof rep, "the control pipe");
	}
	im->close();
	_exit(0);
}

/* Run benchmark a on transport im in two processes, print its RESULT line. */
static inline int ipc_run(struct ipc_args *a, const struct ipc_impl *im)
{
	double t[FB_MAX_REPS];
	int ctl[2];
	struct sigaction sa;

	ipc_a = a;
	ipc_impl_cur = im;
	signal(SIGPIPE, SIG_IGN); /* a peer gone is EPIPE, which fails the run */
	if (pipe(ctl) != 0)
		ipc_failf(errno, "pipe");
	if (im->prepare)
		im->prepare(a);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = ipc_on_sigchld;
	sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
	sigaction(SIGCHLD, &sa, NULL);
	sa.sa_handler = ipc_on_term;
	sa.sa_flags = 0;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	(void)ipc_cpus(); /* the mask before anyone is pinned */
	fflush(stdout);
	ipc_child = fork();
	if (ipc_child < 0)
		ipc_failf(errno, "fork");
	if (ipc_child == 0) {
		a->side = IPC_B;
		signal(SIGCHLD, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		close(ctl[0]);
		ipc_run_b(a, im, ctl[1]);
	}
	close(ctl[1]);
	ipc_pin(0);
	im->open(a);
	for (int r = 0; r <= a->reps; r++) {
		uint64_t base = (uint64_t)r << 40;
		struct ipc_report rep;
		char ready;
		int64_t t0, t1;
		ipc_read_all(ctl[0], &ready, 1, "the control pipe (B gone?)");
		t0 = ipc_now_ns();
		for (uint64_t i = 0; i < a->count; i++) {
			im->put(base + i);
			if (a->rtt)
				im->get(base + i);
		}
		t1 = ipc_now_ns();
		ipc_read_all(ctl[0], &rep, sizeof rep, "the control pipe (B gone?)");
		if (rep.count != a->count)
			ipc_fail("B checked %llu messages, not %llu", (unsigned long long)rep.count,
				 (unsigned long long)a->count);
		if (!a->rtt)
			t1 = rep.end_ns;
		if (r > 0)
			t[r - 1] = (double)(t1 - t0) / 1e6;
	}
	im->close();
	/* B exits after its last report: wait for it (the handler may have reaped it) */
	for (;;) {
		int st;
		pid_t p = waitpid(ipc_child, &st, 0);
		if (p == ipc_child) {
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
				ipc_fail("B exited with status %d", st);
			break;
		}
		if (p < 0 && errno == EINTR)
			continue;
		if (ipc_child_reaped)
			break;
		ipc_failf(errno, "waitpid");
	}
	ipc_child = 0;
	if (im->cleanup)
		im->cleanup();
	printf("RESULT %s %s %zu %.3f %llu\n", a->bench, a->impl, a->bytes,
	       fb_median(t, a->reps), (unsigned long long)a->count);
	fflush(stdout);
	return 0;
}

/* main() of a program: pick IMPL among impls (NULL-terminated), run. */
static inline int ipc_main(int argc, char **argv, const struct ipc_impl *const *impls)
{
	static struct ipc_args a;
	ipc_parse(argc, argv, &a);
	for (; *impls; impls++)
		if (!strcmp((*impls)->name, a.impl))
			return ipc_run(&a, *impls);
	fprintf(stderr, "%s: unknown transport '%s'\n", argv[0], a.impl);
	return 2;
}

/* Where ZeroMQ and NNG put their ipc:// socket files: $TMPDIR when its path is short enough. */
static inline void ipc_socket_path(char *buf, size_t n, pid_t pid, const char *what)
{
	const char *dir = getenv("TMPDIR");
	if (!dir || !*dir || strlen(dir) > 60)
		dir = "/tmp";
	snprintf(buf, n, "%s/moirai-ipc-%d-%s", dir, (int)pid, what);
}

#endif /* MOIRAI_BENCH_CHAN_IPC_H */
