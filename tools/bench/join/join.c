/*
 * join.c - what mr_join costs: fib and four divide-and-conquer kernels
 * (kernels.h) run sequentially and by mr_join, with and without a
 * hand-written cut-off, at 1 worker (pinned to one CPU, as is the
 * sequential run) and 2 workers (unpinned), all in one process and
 * interleaved: every round runs every configuration once, in an order that
 * rotates with the round, so a neighbour's load hits all of them alike.
 *
 *   bench_join [ROUNDS [CPU]]     (ROUNDS default 31, CPU default 0)
 *
 * Prints one markdown table: per kernel the median time of each
 * configuration, the ratios the targets of issue 18 name, and for fib the
 * ns per join beyond the sequential time. Sizes and cut-offs come from
 * JOIN_FIB (30), JOIN_FIB_SMALL (20), JOIN_QUEENS (11), JOIN_MSORT
 * (1000000), JOIN_UTS (20000 root children), JOIN_MM (256). Every result
 * is checked against the sequential one; a mismatch exits 1.
 * MOIRAI_BEAT_US sets the heartbeat interval (the library reads it).
 * JOIN_GAP_US (20000) is the sleep between two timed runs, long enough for
 * the workers to park, so that each run starts from sleeping workers; 0
 * runs them back to back, the workers still awake (searching) from the
 * run before: a busy service's steady state.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <moirai/moirai.h>

#include "../fib_seq.h"

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- the sequential pieces every variant shares ---- */

static long queens_seq(int n, int row, uint32_t cols, uint32_t d1, uint32_t d2, uint32_t avail)
{
	uint32_t all = (1u << n) - 1;
	long r = 0;

	if (row == n)
		return 1;
	while (avail) {
		uint32_t bit = avail & -avail;
		avail &= avail - 1;
		uint32_t c = cols | bit, e = (d1 | bit) << 1, f = (d2 | bit) >> 1;
		r += queens_seq(n, row + 1, c, e, f, all & ~(c | e | f));
	}
	return r;
}

#define queens_seq_rows(q) queens_seq((q)->n, (q)->row, (q)->cols, (q)->d1, (q)->d2, (q)->avail)

/* Merge the sorted runs a[0, h) and a[h, n) through tmp. */
static void merge(uint32_t *a, size_t h, size_t n, uint32_t *tmp)
{
	size_t i = 0, j = h, k = 0;

	while (i < h && j < n)
		tmp[k++] = a[j] < a[i] ? a[j++] : a[i++];
	while (i < h)
		tmp[k++] = a[i++];
	memcpy(a, tmp, k * sizeof(*a)); /* a[j, n) is in place */
}

static void msort_seq(uint32_t *a, uint32_t *tmp, size_t n)
{
	if (n < 2)
		return;
	size_t h = n / 2;
	msort_seq(a, tmp, h);
	msort_seq(a + h, tmp + h, n - h);
	merge(a, h, n, tmp);
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t uts_child(uint64_t id, uint32_t i)
{
	return mix(id * 31 + i + 1);
}

/* 4 children with probability 0.245 under depth 200: 0.98 expected. */
static uint32_t uts_nchildren(uint64_t id, int depth)
{
	return depth < 200 && mix(id ^ 0x5bd1e995) % 1000 < 245 ? 4 : 0;
}

static long uts_seq_node(uint64_t id, int depth)
{
	long r = 1;
	uint32_t n = uts_nchildren(id, depth);

	for (uint32_t i = 0; i < n; i++)
		r += uts_seq_node(uts_child(id, i), depth + 1);
	return r;
}

static long uts_seq_children(uint64_t id, int depth, uint32_t lo, uint32_t hi)
{
	long r = 0;

	for (uint32_t i = lo; i < hi; i++)
		r += uts_seq_node(uts_child(id, i), depth + 1);
	return r;
}

static void mm_block(double *c, const double *a, const double *b, size_t n, size_t ld)
{
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < n; k++) {
			double x = a[i * ld + k];
			for (size_t j = 0; j < n; j++)
				c[i * ld + j] += x * b[k * ld + j];
		}
}

/* ---- the kernels, twice ---- */

#define K(x) x##_seq
#define JOIN(a, aa, b, ba) ((a)(aa), (b)(ba))
#define CUT(x) 0
/* fib's sequential side is fib_seq() (../fib_seq.c); fib_run_seq, the same
 * struct-shaped code as the mr_join version with plain calls, is timed
 * apart (shape_floor()). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "kernels.h"
#pragma GCC diagnostic pop
#undef K
#undef JOIN
#undef CUT

#define K(x) x##_par
#define JOIN(a, aa, b, ba) mr_join(a, aa, b, ba)
#define CUT(x) (x)
#include "kernels.h"
#undef K
#undef JOIN
#undef CUT

/* ---- configurations ---- */


enum kind { FIB, FIB_SMALL, QUEENS, MSORT, UTS, MM, NKIND };
static const char *const kind_name[NKIND] = { "fib", "fib", "queens", "msort", "uts", "matmul" };

/* seq, then 1 and 2 workers without and with the cut-off. */
enum variant { SEQ, W1, W1_CUT, W2, W2_CUT, NVAR };

struct input {
	enum kind kind;
	long size, cut;
	long reps;	     /* runs of the kernel per timing (small fib) */
	uint32_t *keys, *work, *tmp; /* msort */
	double *a, *b, *c;	     /* matmul */
	long joins;		     /* fib: joins per run */
};

static long env_long(const char *name, long def)
{
	const char *s = getenv(name);
	return s && *s ? strtol(s, NULL, 10) : def;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Run in on variant v's code once (reps times for small fib); the check. */
static double run_kernel(struct input *in, bool par, bool cut)
{
	double check = 0;

	switch (in->kind) {
	case FIB:
	case FIB_SMALL:
		for (long i = 0; i < in->reps; i++) {
			if (par && cut) {
				struct fibc_par f = { (int)in->size, (int)in->cut, 0 };
				fibc_run_par(&f);
				check += (double)f.r;
			} else if (par) {
				struct fib_par f = { (int)in->size, 0 };
				fib_run_par(&f);
				check += (double)f.r;
			} else {
				check += (double)fib_seq((int)in->size);
			}
		}
		break;
	case QUEENS: {
		int n = (int)in->size;
		if (par) {
			struct queens_par q = { n, 0, cut ? (int)in->cut : 0, 0, 0, 0,
						(1u << n) - 1, 0 };
			queens_run_par(&q);
			check = (double)q.r;
		} else {
			struct queens_seq q = { n, 0, 0, 0, 0, 0, (1u << n) - 1, 0 };
			queens_run_seq(&q);
			check = (double)q.r;
		}
		break;
	}
	case MSORT: {
		size_t n = (size_t)in->size;
		memcpy(in->work, in->keys, n * sizeof(*in->work));
		if (par) {
			struct msort_par m = { in->work, in->tmp, n, cut ? (size_t)in->cut : 0 };
			msort_run_par(&m);
		} else {
			struct msort_seq m = { in->work, in->tmp, n, 0 };
			msort_run_seq(&m);
		}
		for (size_t i = 1; i < n; i++)
			if (in->work[i - 1] > in->work[i])
				return -1;
		check = (double)in->work[n / 2];
		break;
	}
	case UTS: {
		uint32_t roots = (uint32_t)in->size;
		if (par) {
			struct uts_par u = { 1, 0, cut ? (int)in->cut : INT_MAX, 0, roots, 0 };
			uts_run_par(&u);
			check = (double)u.r;
		} else {
			struct uts_seq u = { 1, 0, INT_MAX, 0, roots, 0 };
			uts_run_seq(&u);
			check = (double)u.r;
		}
		break;
	}
	case MM: {
		size_t n = (size_t)in->size;
		memset(in->c, 0, n * n * sizeof(*in->c));
		if (par) {
			struct mm_par m = { in->c, in->a, in->b, n, n, cut ? (size_t)in->cut : 0 };
			mm_run_par(&m);
		} else {
			struct mm_seq m = { in->c, in->a, in->b, n, n, 0 };
			mm_run_seq(&m);
		}
		for (size_t i = 0; i < n * n; i += n + 1)
			check += in->c[i];
		break;
	}
	default:
		break;
	}
	return check;
}

struct timed {
	struct input *in;
	bool cut;
	double ms, check;
};

static void timed_par(void *p)
{
	struct timed *t = p;
	double t0 = now_ms();
	t->check = run_kernel(t->in, true, t->cut);
	t->ms = now_ms() - t0;
}

static void pin(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	if (cpu >= 0) {
		CPU_SET(cpu, &set);
	} else {
		for (int c = 0; c < CPU_SETSIZE; c++)
			CPU_SET(c, &set);
	}
	if (sched_setaffinity(0, sizeof(set), &set) != 0 && cpu >= 0) {
		perror("bench_join: sched_setaffinity");
		exit(1);
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *t, int n)
{
	qsort(t, (size_t)n, sizeof(*t), cmp_double);
	return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

static long fib_joins(int n)
{
	/* joins(n) = joins(n-1) + joins(n-2) + 1 for n >= 2 */
	long a = 0, b = 0; /* joins(0), joins(1) */
	for (int i = 2; i <= n; i++) {
		long c = a + b + 1;
		a = b;
		b = c;
	}
	return n < 2 ? 0 : b;
}

/*
 * fib as mr_join runs it, without the join: its arguments in structs on the
 * stack, passed by address, plain calls (fib_run_seq). Against fib_seq, that
 * is what keeping a frame in memory costs on this CPU (each call stores
 * n and reloads it: a store-to-load forward on the critical path, cheap on
 * CPUs that rename memory, several cycles on others); mr_join at one
 * worker against it is what the join itself costs. Rounds interleaved,
 * pinned like the sequential run.
 */
static void shape_floor(const struct input *in, int rounds, int cpu, double w1_ms)
{
	static double ts[1001], tf[1001];

	pin(cpu);
	for (int r = 0; r < rounds; r++) {
		struct fib_seq f = { (int)in->size, 0 };
		double t0 = now_ms();
		long a = fib_seq((int)in->size);
		double t1 = now_ms();
		fib_run_seq(&f);
		double t2 = now_ms();
		if (a != f.r) {
			fprintf(stderr, "bench_join: fib_run_seq computed %ld, not %ld\n", f.r, a);
			exit(1);
		}
		ts[r] = t1 - t0;
		tf[r] = t2 - t1;
	}
	double s = median(ts, rounds), f = median(tf, rounds);
	printf("fib(%ld) shaped as mr_join runs it, without the join (struct arguments on the "
	       "stack, plain calls): %.3f ms, %.2fx fib_seq (%.3f ms): what a frame in memory "
	       "costs on this CPU. mr_join at 1 worker: %.2fx that (%.2f ns per join over "
	       "it).\n\n",
	       in->size, f, f / s, s, w1_ms / f, (w1_ms - f) * 1e6 / (double)in->joins);
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 31;
	int cpu = argc > 2 ? atoi(argv[2]) : 0;
	struct input in[NKIND];

	if (rounds < 1 || rounds > 1001) {
		fprintf(stderr, "usage: bench_join [ROUNDS (1..1001) [CPU]]\n");
		return 2;
	}
	memset(in, 0, sizeof(in));
	in[FIB] = (struct input){ .kind = FIB, .size = env_long("JOIN_FIB", 30), .cut = 16, .reps = 1 };
	in[FIB_SMALL] = (struct input){ .kind = FIB_SMALL, .size = env_long("JOIN_FIB_SMALL", 20),
					.cut = 12, .reps = 100 };
	in[QUEENS] = (struct input){ .kind = QUEENS, .size = env_long("JOIN_QUEENS", 11), .cut = 5 };
	in[MSORT] = (struct input){ .kind = MSORT, .size = env_long("JOIN_MSORT", 1000000),
				    .cut = 4096 };
	in[UTS] = (struct input){ .kind = UTS, .size = env_long("JOIN_UTS", 20000), .cut = 6 };
	in[MM] = (struct input){ .kind = MM, .size = env_long("JOIN_MM", 256), .cut = 64 };
	if (in[QUEENS].size < 4 || in[QUEENS].size > 16 || in[MM].size < 8 ||
	    (in[MM].size & (in[MM].size - 1)) || in[MSORT].size < 2 || in[FIB].size < 2 ||
	    in[FIB].size > 45 || in[FIB_SMALL].size < 2 || in[FIB_SMALL].size > 45 ||
	    in[UTS].size < 1) {
		fprintf(stderr, "bench_join: bad size (queens 4..16, matmul a power of 2)\n");
		return 2;
	}
	long gap_us = env_long("JOIN_GAP_US", 20000);
	if (gap_us < 0 || gap_us > 10000000) {
		fprintf(stderr, "bench_join: JOIN_GAP_US wants 0..10000000\n");
		return 2;
	}
	in[FIB].joins = fib_joins((int)in[FIB].size);
	in[FIB_SMALL].joins = fib_joins((int)in[FIB_SMALL].size) * in[FIB_SMALL].reps;
	size_t n = (size_t)in[MSORT].size;
	in[MSORT].keys = malloc(n * sizeof(uint32_t));
	in[MSORT].work = malloc(n * sizeof(uint32_t));
	in[MSORT].tmp = malloc(n * sizeof(uint32_t));
	size_t m = (size_t)in[MM].size;
	in[MM].a = malloc(m * m * sizeof(double));
	in[MM].b = malloc(m * m * sizeof(double));
	in[MM].c = malloc(m * m * sizeof(double));
	if (!in[MSORT].keys || !in[MSORT].work || !in[MSORT].tmp || !in[MM].a || !in[MM].b ||
	    !in[MM].c) {
		fprintf(stderr, "bench_join: out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < n; i++)
		in[MSORT].keys[i] = (uint32_t)next_rand();
	for (size_t i = 0; i < m * m; i++) {
		in[MM].a[i] = (double)(next_rand() % 1000) / 1000.0;
		in[MM].b[i] = (double)(next_rand() % 1000) / 1000.0;
	}

	/* The 1-worker runtime inherits the pinned mask; the 2-worker one the
	 * whole machine's. */
	pin(cpu);
	MR_OPTS(mr_config, c1, .workers = 1);
	mr_runtime_t *rt1 = mr_runtime_create(&c1);
	pin(-1);
	MR_OPTS(mr_config, c2, .workers = 2);
	mr_runtime_t *rt2 = mr_runtime_create(&c2);
	if (!rt1 || !rt2) {
		perror("bench_join: mr_runtime_create");
		return 1;
	}

	static double t[NKIND][NVAR][1001];
	double want[NKIND];
	for (int k = 0; k < NKIND; k++) {
		pin(cpu);
		want[k] = run_kernel(&in[k], false, false); /* warm-up and the answer */
	}
	for (int r = 0; r < rounds; r++) {
		for (int i = 0; i < NKIND * NVAR; i++) {
			int j = (i + r * 7) % (NKIND * NVAR);
			int k = j / NVAR, v = j % NVAR;
			struct timed x = { &in[k], v == W1_CUT || v == W2_CUT, 0, 0 };
			if (v == SEQ) {
				pin(cpu);
				double t0 = now_ms();
				x.check = run_kernel(&in[k], false, false);
				x.ms = now_ms() - t0;
			} else {
				pin(-1);
				if (mr_runtime_install(v <= W1_CUT ? rt1 : rt2, timed_par, &x) != 0) {
					perror("bench_join: mr_runtime_install");
					return 1;
				}
			}
			/* Let the workers of the run just timed park before the
			 * next one: searching, they take CPU from it. */
			if (gap_us)
				usleep((useconds_t)gap_us);
			if (x.check != want[k]) {
				fprintf(stderr, "bench_join: %s variant %d computed %.17g, not %.17g\n",
					kind_name[k], v, x.check, want[k]);
				return 1;
			}
			t[k][v][r] = x.ms;
		}
	}

	const char *beat = getenv("MOIRAI_BEAT_US");
	printf("## mr_join: divide and conquer, %d interleaved rounds, heartbeat %s us, "
	       "%ld us between runs\n\n",
	       rounds, beat && *beat ? beat : "50 (default)", gap_us);
	printf("Medians in ms. 1w: one worker pinned to CPU %d, as the sequential run; 2w: two "
	       "workers, unpinned. \"cut\": with the hand-written cut-off. seq/1w is the "
	       "overhead at one worker (target for fib: <= 1.3x); 1w/1w-cut is what leaving "
	       "the cut-off out costs (target <= 1.3x); 2w %% ideal is seq / (2 x 2w), and 2w "
	       "scaling 1w / (2 x 2w) (target for fib: >= 90%%).\n\n",
	       cpu);
	printf("| kernel | size | seq | 1w | 1w cut | 2w | 2w cut | 1w / seq | 1w / 1w cut | "
	       "2w %% ideal | 2w cut %% ideal | 2w scaling | ns per join (1w) |\n");
	printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
	for (int k = 0; k < NKIND; k++) {
		double md[NVAR];
		for (int v = 0; v < NVAR; v++)
			md[v] = median(t[k][v], rounds);
		char size[64], nsj[32] = "";
		if (k == FIB_SMALL)
			snprintf(size, sizeof(size), "%ld x%ld", in[k].size, in[k].reps);
		else
			snprintf(size, sizeof(size), "%ld", in[k].size);
		if (in[k].joins)
			snprintf(nsj, sizeof(nsj), "%.2f",
				 (md[W1] - md[SEQ]) * 1e6 / (double)in[k].joins);
		printf("| %s | %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.2fx | %.2fx | %.0f%% | "
		       "%.0f%% | %.0f%% | %s |\n",
		       kind_name[k], size, md[SEQ], md[W1], md[W1_CUT], md[W2], md[W2_CUT],
		       md[W1] / md[SEQ], md[W1] / md[W1_CUT], 100 * md[SEQ] / (2 * md[W2]),
		       100 * md[SEQ] / (2 * md[W2_CUT]), 100 * md[W1] / (2 * md[W2]), nsj);
	}
	printf("\n");
	shape_floor(&in[FIB], rounds, cpu, median(t[FIB][W1], rounds));
	mr_runtime_destroy(rt1);
	mr_runtime_destroy(rt2);
	return 0;
}
