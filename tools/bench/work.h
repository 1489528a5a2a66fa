/*
 * work.h - what every C and C++ benchmark program shares: the loop bodies
 * (the same functions for every implementation, so only the scheduling
 * differs), a clock, the median of the timed repetitions, and the
 * argument parsing and RESULT line format that run.sh collects.
 *
 * Every program is called as   PROG BENCH WORKERS REPS SIZE
 * runs BENCH once to warm up, then REPS timed times, and prints
 *
 *	RESULT <bench> <impl> <workers> <median_ms> <check>
 *
 * where check is the computed answer (fib value, number of tasks that ran,
 * or the loop's sum) that run.sh compares with the sequential one.
 */
#ifndef MOIRAI_BENCH_WORK_H
#define MOIRAI_BENCH_WORK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_MAX_REPS 101

/* ---- the loop bodies ---------------------------------------------------- */

/*
 * Defined in loops.c, compiled once (64-byte aligned) and linked into every
 * C and C++ program: the hot loop is the same machine code at the same
 * alignment everywhere, so only the scheduling differs. (Inlined into each
 * program, code layout alone moved the single-thread time of the balanced
 * loop by 8% between programs.) One call per range costs nothing next to
 * the range.
 */
#ifdef __cplusplus
extern "C" {
#endif
/* Balanced loop: sum of sqrt(i) over [lo, hi), in index order. */
double bal_range(size_t lo, size_t hi);
/*
 * Unbalanced loop: index i costs i rounds of a serially dependent
 * xor-shift-multiply step (a compiler can neither vectorise it nor compute
 * it in closed form). The per-range result is the wrapping sum of the
 * per-index values, so any split and combination order gives the same
 * integer. The Rust version in rayon/src/main.rs is the same function.
 */
uint64_t unbal_range(size_t lo, size_t hi);
#ifdef __cplusplus
}
#endif

/*
 * Hide a value from the optimiser, so that repeating a pure computation
 * (the timed repetitions) really recomputes it.
 */
static inline size_t bench_opaque(size_t v)
{
	__asm__ volatile("" : "+r"(v));
	return v;
}

/* ---- timing and output -------------------------------------------------- */

static inline double bench_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Median of t[0..n); sorts t. */
static inline double bench_median(double *t, int n)
{
	qsort(t, (size_t)n, sizeof t[0], bench_cmp_double);
	return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

struct bench_args {
	const char *bench;
	unsigned workers;
	int reps;
	unsigned long long size;
};

static inline void bench_parse(int argc, char **argv, struct bench_args *a)
{
	char *end;
	if (argc != 5) {
		fprintf(stderr, "usage: %s fib|spawn|balanced|unbalanced WORKERS REPS SIZE\n",
			argv[0]);
		exit(2);
	}
	a->bench = argv[1];
	a->workers = (unsigned)strtoul(argv[2], &end, 10);
	if (*end || a->workers < 1)
		goto bad;
	a->reps = (int)strtol(argv[3], &end, 10);
	if (*end || a->reps < 1 || a->reps > BENCH_MAX_REPS)
		goto bad;
	a->size = strtoull(argv[4], &end, 10);
	if (*end || a->size < 1)
		goto bad;
	return;
bad:
	fprintf(stderr, "%s: bad argument (workers >= 1, 1 <= reps <= %d, size >= 1)\n", argv[0],
		BENCH_MAX_REPS);
	exit(2);
}

static inline void bench_fail(const char *impl, const char *bench, const char *what)
{
	fprintf(stderr, "FAIL %s %s: %s\n", bench, impl, what);
	exit(1);
}

static inline void bench_result_u64(const char *bench, const char *impl, unsigned workers,
				    double median_ms, uint64_t check)
{
	printf("RESULT %s %s %u %.3f %llu\n", bench, impl, workers, median_ms,
	       (unsigned long long)check);
	fflush(stdout);
}

static inline void bench_result_f64(const char *bench, const char *impl, unsigned workers,
				    double median_ms, double check)
{
	printf("RESULT %s %s %u %.3f %.17g\n", bench, impl, workers, median_ms, check);
	fflush(stdout);
}

#endif /* MOIRAI_BENCH_WORK_H */
