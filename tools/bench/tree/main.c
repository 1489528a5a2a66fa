/*
 * main.c - the tree benchmark's driver: one program holds every side
 * (sequential, Moirai, OpenMP, OpenMP undeferred) so that they run in turn on the same inputs
 * in the same process, and a neighbour's load hits them alike.
 *
 *	bench_tree K WORKERS REPS NODES WORK
 *
 * searches the deepest complete K-ary tree of at most NODES nodes, WORK
 * rounds of work per node, with WORKERS workers (Moirai) or threads
 * (OpenMP); the sequential side runs on the calling thread. After one
 * warm-up of each, REPS rounds run them all in a rotating order. Prints
 *
 *	RESULT tree-k<K> <impl> <workers> <median_ms> <check> <tasks>
 *	PAIR tree-k<K> <workers> <ratio> <overhead_ratio> <ratio_u> <overhead_ratio_u>
 *
 * for impl seq, moirai, omp and omp-undeferred (the OpenMP code outside a
 * parallel region, where libgomp runs each task at once: see omp.c; it
 * always runs on the calling thread) - check: the sum every side must
 * agree on; tasks: nodes below the root, one task each - where ratio is
 * the median over the rounds of Moirai's time / OpenMP's time in the same
 * round, overhead_ratio the median of (Moirai - seq) / (OpenMP - seq), and
 * the _u ones the same against omp-undeferred.
 *
 * BENCH_TREE_ONLY=seq|moirai|omp|omp-undeferred runs that side alone, once, untimed, and
 * prints its sum: for profilers (valgrind --tool=callgrind, perf record).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tree.h"

#define MAX_REPS 101

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *t, int n)
{
	qsort(t, (size_t)n, sizeof t[0], cmp_double);
	return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

static unsigned long parse(const char *s, const char *what, unsigned long min, unsigned long max)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (*end || v < min || v > max) {
		fprintf(stderr, "bench_tree: bad %s '%s' (%lu .. %lu)\n", what, s, min, max);
		exit(2);
	}
	return v;
}

enum { SEQ, MOIRAI, OMP, OMPU };

static uint64_t run(int impl, const struct tree_shape *s, uint64_t h)
{
	switch (impl) {
	case SEQ:
		return tree_seq(s, h);
	case MOIRAI:
		return tree_moirai(s, h);
	case OMP:
		return tree_omp(s, h);
	default:
		return tree_omp_undeferred(s, h);
	}
}

int main(int argc, char **argv)
{
	enum { NIMPL = 4 };
	static const char *const name[NIMPL] = { "seq", "moirai", "omp", "omp-undeferred" };
	double t[NIMPL][MAX_REPS], ratio[MAX_REPS], oratio[MAX_REPS], uratio[MAX_REPS],
		uoratio[MAX_REPS];
	uint64_t check[NIMPL];
	struct tree_shape s;

	if (argc != 6) {
		fprintf(stderr, "usage: %s K WORKERS REPS NODES WORK\n", argv[0]);
		return 2;
	}
	s.k = (unsigned)parse(argv[1], "K", 2, TREE_MAX_K);
	s.workers = (unsigned)parse(argv[2], "WORKERS", 1, 1024);
	int reps = (int)parse(argv[3], "REPS", 1, MAX_REPS);
	unsigned long max_nodes = parse(argv[4], "NODES", 1 + s.k, 1ul << 40);
	s.work = (unsigned)parse(argv[5], "WORK", 0, 1u << 20);

	/* The deepest complete tree within max_nodes. */
	unsigned long nodes = 1, level = 1;
	s.depth = 0;
	while (nodes + level * s.k <= max_nodes) {
		level *= s.k;
		nodes += level;
		s.depth++;
	}

	tree_moirai_init(s.workers);
	tree_omp_init(s.workers);
	const uint64_t h0 = 0x1234567ull;
	const char *only = getenv("BENCH_TREE_ONLY");
	if (only && *only) {
		uint64_t v;
		if (!strcmp(only, "seq"))
			v = tree_seq(&s, h0);
		else if (!strcmp(only, "moirai"))
			v = tree_moirai(&s, h0);
		else if (!strcmp(only, "omp"))
			v = tree_omp(&s, h0);
		else if (!strcmp(only, "omp-undeferred"))
			v = tree_omp_undeferred(&s, h0);
		else {
			fprintf(stderr, "bench_tree: BENCH_TREE_ONLY is seq, moirai, omp or "
					"omp-undeferred\n");
			return 2;
		}
		printf("ONLY tree-k%u %s %llu %lu\n", s.k, only, (unsigned long long)v, nodes - 1);
		tree_moirai_fini();
		return 0;
	}
	for (int i = 0; i < NIMPL; i++) {
		check[i] = run(i, &s, h0);
		if (check[i] != check[SEQ]) {
			fprintf(stderr, "FAIL tree-k%u %s: sum %llu, sequential %llu\n", s.k, name[i],
				(unsigned long long)check[i], (unsigned long long)check[SEQ]);
			return 1;
		}
	}
	for (int r = 0; r < reps; r++) {
		for (int j = 0; j < NIMPL; j++) {
			int i = (r + j) % NIMPL; /* rotate the order */
			double t0 = now_ms();
			uint64_t v = run(i, &s, h0);
			t[i][r] = now_ms() - t0;
			if (v != check[SEQ]) {
				fprintf(stderr, "FAIL tree-k%u %s: results differ between runs\n", s.k,
					name[i]);
				return 1;
			}
			if (s.workers > 1)
				usleep(20000); /* let the other side's idle workers go to sleep */
		}
		ratio[r] = t[MOIRAI][r] / t[OMP][r];
		oratio[r] = (t[MOIRAI][r] - t[SEQ][r]) / (t[OMP][r] - t[SEQ][r]);
		uratio[r] = t[MOIRAI][r] / t[OMPU][r];
		uoratio[r] = (t[MOIRAI][r] - t[SEQ][r]) / (t[OMPU][r] - t[SEQ][r]);
	}
	for (int i = 0; i < NIMPL; i++)
		printf("RESULT tree-k%u %s %u %.3f %llu %lu\n", s.k, name[i],
		       i == SEQ || i == OMPU ? 1 : s.workers, median(t[i], reps),
		       (unsigned long long)check[i], nodes - 1);
	printf("PAIR tree-k%u %u %.3f %.3f %.3f %.3f\n", s.k, s.workers, median(ratio, reps),
	       median(oratio, reps), median(uratio, reps), median(uoratio, reps));
	tree_moirai_fini();
	return 0;
}
