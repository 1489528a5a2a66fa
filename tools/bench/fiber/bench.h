/*
 * bench.h - what the C and C++ fiber benchmark programs share: the command
 * line, a clock, the median, the RESULT line, resident memory.
 *
 * Every program measures one implementation and is called as
 *
 *	PROG BENCH WORKERS REPS SIZE
 *
 * It runs BENCH once to warm up, then REPS timed times, and prints
 *
 *	RESULT <bench> <impl> <workers> <median_ms> <check> [<bytes>]
 *
 * the format of tools/bench/run.sh. median_ms is the time of SIZE
 * operations (round trips, yields, spawns, lock/unlock pairs): run.sh turns
 * it into ns per operation. check is the count the program verified (it
 * fails instead of printing when the count is wrong) and run.sh compares it
 * with the count it asked for. The memory benchmark (parked) adds a 7th
 * field, the growth of VmRSS in bytes, and runs once per process: run.sh
 * starts it REPS times and takes the medians itself, because freed stacks
 * stay resident in a process that has been through the benchmark once.
 * tools/bench/fiber/go/main.go follows the same conventions.
 */
#ifndef MOIRAI_BENCH_FIBER_BENCH_H
#define MOIRAI_BENCH_FIBER_BENCH_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FB_MAX_REPS 101

struct fb_args {
	const char *bench;
	unsigned workers;
	int reps;
	uint64_t size;
};

static inline double fb_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static inline int fb_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Median of t[0..n); sorts t. */
static inline double fb_median(double *t, int n)
{
	qsort(t, (size_t)n, sizeof t[0], fb_cmp_double);
	return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

static inline void fb_parse(int argc, char **argv, const char *benches, struct fb_args *a)
{
	char *end;
	if (argc != 5) {
		fprintf(stderr, "usage: %s %s WORKERS REPS SIZE\n", argv[0], benches);
		exit(2);
	}
	a->bench = argv[1];
	a->workers = (unsigned)strtoul(argv[2], &end, 10);
	if (*end || a->workers < 1)
		goto bad;
	a->reps = (int)strtol(argv[3], &end, 10);
	if (*end || a->reps < 1 || a->reps > FB_MAX_REPS)
		goto bad;
	a->size = strtoull(argv[4], &end, 10);
	if (*end || a->size < 1)
		goto bad;
	return;
bad:
	fprintf(stderr, "%s: bad argument (workers >= 1, 1 <= reps <= %d, size >= 1)\n", argv[0],
		FB_MAX_REPS);
	exit(2);
}

static inline void fb_fail(const char *bench, const char *impl, const char *what)
{
	fprintf(stderr, "FAIL %s %s: %s\n", bench, impl, what);
	exit(1);
}

static inline void fb_result(const struct fb_args *a, const char *impl, double median_ms,
			     uint64_t check)
{
	printf("RESULT %s %s %u %.3f %llu\n", a->bench, impl, a->workers, median_ms,
	       (unsigned long long)check);
	fflush(stdout);
}

static inline void fb_result_mem(const struct fb_args *a, const char *impl, double ms,
				 uint64_t check, int64_t bytes)
{
	printf("RESULT %s %s %u %.3f %llu %lld\n", a->bench, impl, a->workers, ms,
	       (unsigned long long)check, (long long)bytes);
	fflush(stdout);
}

/* A "Key:   N kB" line of a /proc file, in bytes; -1 when missing. */
static inline int64_t fb_proc_kb(const char *path, const char *key)
{
	char line[256];
	size_t klen = strlen(key);
	int64_t v = -1;
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, key, klen) && line[klen] == ':') {
			v = strtoll(line + klen + 1, NULL, 10) * 1024;
			break;
		}
	fclose(f);
	return v;
}

/* Resident memory of this process (VmRSS), in bytes. */
static inline int64_t fb_rss(void)
{
	return fb_proc_kb("/proc/self/status", "VmRSS");
}

/*
 * How far the memory benchmark may let the process grow: 3/4 of what the
 * machine has available when it starts. Past it the program stops with a
 * message rather than bring the OOM killer onto the machine.
 */
static inline int64_t fb_mem_budget(void)
{
	int64_t avail = fb_proc_kb("/proc/meminfo", "MemAvailable");
	return avail > 0 ? avail / 4 * 3 : INT64_MAX;
}

#endif /* MOIRAI_BENCH_FIBER_BENCH_H */
