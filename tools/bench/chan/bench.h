/*
 * bench.h - what the C and C++ channel benchmark programs share: the
 * command line, the values producers send, the tally every consumer keeps
 * and checks, threads, and a spin that does not starve a 2-CPU machine.
 * The clock, the median and the RESULT line come from ../fiber/bench.h.
 *
 * Every program measures one implementation and is called as
 *
 *	PROG BENCH WORKERS REPS SIZE
 *
 * BENCH is one of
 *	1p1c           1 producer, 1 consumer through a queue of about 1024
 *	2p2c           2 producers, 2 consumers through one such queue
 *	pingpong-cap1  A sends i on one queue of capacity 1, B echoes it back on
 *	               a second one, A checks it: SIZE round trips
 *	pingpong-rdv   the same through rendezvous (capacity 0) channels
 *	uncontended    one fiber or thread: send then receive, SIZE times, on a
 *	               queue of 1024 nobody else touches
 * WORKERS is 0 for plain threads; otherwise the number of workers of the
 * Moirai runtime the fibers run on (GOMAXPROCS for go/main.go).
 *
 * SIZE is the number of elements (throughput: all producers together),
 * round trips or send+receive pairs. The program runs the benchmark once to
 * warm up, then REPS timed times, and prints
 *
 *	RESULT <bench> <impl> <workers> <median_ms> <check>
 *
 * check being the count it verified (run.sh compares it with SIZE). A
 * program never prints a RESULT for a wrong answer: it fails.
 *
 * The throughput check: producer p of P sends the SIZE/P values
 * i*P + p + 1 (i = 0, 1, ...), so together they send 1..SIZE once each.
 * Every consumer adds up what it receives and checks that the values of
 * each producer arrive in increasing order (channels and the peers here are
 * FIFO per sender); the counts and sums of all consumers must add up to
 * SIZE and SIZE*(SIZE+1)/2. Every implementation does the same work per
 * element (cb_take), so the bookkeeping costs them all alike.
 */
#ifndef MOIRAI_BENCH_CHAN_BENCH_H
#define MOIRAI_BENCH_CHAN_BENCH_H

#include "../fiber/bench.h"

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>

#define CB_QUEUE_CAP 1024 /* capacity of the throughput and uncontended queues */
#define CB_MAX_PRODUCERS 2 /* a power of two: cb_take masks with it */

static inline void cb_parse(int argc, char **argv, struct fb_args *a)
{
	char *end;
	if (argc != 5) {
		fprintf(stderr, "usage: %s BENCH WORKERS REPS SIZE\n"
				"  BENCH: 1p1c 2p2c pingpong-cap1 pingpong-rdv uncontended\n"
				"  WORKERS 0: plain threads\n",
			argv[0]);
		exit(2);
	}
	a->bench = argv[1];
	a->workers = (unsigned)strtoul(argv[2], &end, 10);
	if (*end || a->workers > 64)
		goto bad;
	a->reps = (int)strtol(argv[3], &end, 10);
	if (*end || a->reps < 1 || a->reps > FB_MAX_REPS)
		goto bad;
	a->size = strtoull(argv[4], &end, 10);
	if (*end || a->size < 1)
		goto bad;
	return;
bad:
	fprintf(stderr, "%s: bad argument (0 <= workers <= 64, 1 <= reps <= %d, size >= 1)\n",
		argv[0], FB_MAX_REPS);
	exit(2);
}

/* Producers and consumers of a throughput benchmark: 1p1c -> 1, 2p2c -> 2, else 0. */
static inline unsigned cb_pairs(const char *bench)
{
	return !strcmp(bench, "1p1c") ? 1 : !strcmp(bench, "2p2c") ? 2 : 0;
}

/* The i-th value producer p of np sends. */
static inline uint64_t cb_value(uint64_t i, unsigned p, unsigned np)
{
	return i * np + p + 1;
}

/* What one consumer has received. */
struct cb_tally {
	uint64_t count, sum;
	uint64_t last[CB_MAX_PRODUCERS]; /* the last value seen from each producer */
	bool out_of_order;		 /* a value no greater than its producer's last */
};

/* Account for v, sent by one of np producers (np a power of two <= CB_MAX_PRODUCERS). */
static inline void cb_take(struct cb_tally *t, uint64_t v, unsigned np)
{
	uint64_t p = (v - 1) & (np - 1); /* v == 0 (never sent) gives some p and fails below */
	t->out_of_order |= v <= t->last[p];
	t->last[p] = v;
	t->count++;
	t->sum += v;
}

/* Check the tallies of all consumers against 1..size; fail or return the count. */
static inline uint64_t cb_check(const struct fb_args *a, const char *impl,
				const struct cb_tally *t, unsigned nc)
{
	uint64_t count = 0, sum = 0;
	for (unsigned c = 0; c < nc; c++) {
		if (t[c].out_of_order)
			fb_fail(a->bench, impl, "a producer's values arrived out of order");
		count += t[c].count;
		sum += t[c].sum;
	}
	if (count != a->size)
		fb_fail(a->bench, impl, "the consumers received the wrong number of elements");
	if (sum != a->size * (a->size + 1) / 2)
		fb_fail(a->bench, impl, "the sum of the received elements is wrong");
	return count;
}

static inline void cb_thread_start(pthread_t *th, void *(*fn)(void *), void *arg,
				   const char *bench, const char *impl)
{
	if (pthread_create(th, NULL, fn, arg) != 0)
		fb_fail(bench, impl, "pthread_create failed");
}

static inline void cb_thread_join(pthread_t th)
{
	pthread_join(th, NULL);
}

static inline void cb_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/*
 * One round of waiting in a spinning peer (Boost.Lockfree, ck_ring): a
 * pause, and every 64th time sched_yield(), so that a spinner whose partner
 * was preempted gives the CPU back instead of burning its time slice (2P/2C
 * runs four spinning threads on two CPUs). Reset *spins after progress.
 */
static inline void cb_spin(unsigned *spins)
{
	if (++*spins % 64 == 0)
		sched_yield();
	else
		cb_cpu_relax();
}

#endif /* MOIRAI_BENCH_CHAN_BENCH_H */
