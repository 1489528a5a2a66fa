/*
 * omp.c - the OpenMP (gcc's libgomp) side of every benchmark:
 *   fib         fib(SIZE): `omp task` for fib(n-1), fib(n-2) inline, then
 *               taskwait; no cutoff
 *   spawn       one thread (`omp single`) creates SIZE empty tasks, then
 *               taskwait
 *   balanced, unbalanced
 *               the loop as a parallel for with reduction, printed twice:
 *               impl omp-static (schedule(static)) and omp-dynamic
 *               (schedule(dynamic)). The loop runs over chunks of CHUNK
 *               indices so that every chunk calls the same range function
 *               as the other implementations: 65536 indices for the
 *               balanced loop (dynamic with one index per grab would
 *               measure only the shared counter) and 1 for the unbalanced
 *               one (plain schedule(dynamic)).
 * The thread count is set with omp_set_num_threads(WORKERS); each run is
 * timed around its parallel region. See work.h for the command line.
 */
#include "work.h"

#include <omp.h>

#define BAL_CHUNK 65536
#define UNBAL_CHUNK 1

static long fib_omp(int n)
{
	long a, b;
	if (n < 2)
		return n;
#pragma omp task shared(a) firstprivate(n)
	a = fib_omp(n - 1);
	b = fib_omp(n - 2);
#pragma omp taskwait
	return a + b;
}

static long fib_run(int n)
{
	long r = 0;
#pragma omp parallel
#pragma omp single
	r = fib_omp(n);
	return r;
}

static void spawn_run(unsigned char *flags, size_t n)
{
#pragma omp parallel
#pragma omp single
	{
		for (size_t i = 0; i < n; i++) {
#pragma omp task firstprivate(i)
			flags[i] = 1;
		}
#pragma omp taskwait
	}
}

static size_t chunk_end(size_t c, size_t chunk, size_t n)
{
	return (c + 1) * chunk < n ? (c + 1) * chunk : n;
}

static double bal_static(size_t n)
{
	size_t nc = (n + BAL_CHUNK - 1) / BAL_CHUNK;
	double s = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : s)
	for (size_t c = 0; c < nc; c++)
		s += bal_range(c * BAL_CHUNK, chunk_end(c, BAL_CHUNK, n));
	return s;
}

static double bal_dynamic(size_t n)
{
	size_t nc = (n + BAL_CHUNK - 1) / BAL_CHUNK;
	double s = 0.0;
#pragma omp parallel for schedule(dynamic) reduction(+ : s)
	for (size_t c = 0; c < nc; c++)
		s += bal_range(c * BAL_CHUNK, chunk_end(c, BAL_CHUNK, n));
	return s;
}

static uint64_t unbal_static(size_t n)
{
	size_t nc = (n + UNBAL_CHUNK - 1) / UNBAL_CHUNK;
	uint64_t s = 0;
#pragma omp parallel for schedule(static) reduction(+ : s)
	for (size_t c = 0; c < nc; c++)
		s += unbal_range(c * UNBAL_CHUNK, chunk_end(c, UNBAL_CHUNK, n));
	return s;
}

static uint64_t unbal_dynamic(size_t n)
{
	size_t nc = (n + UNBAL_CHUNK - 1) / UNBAL_CHUNK;
	uint64_t s = 0;
#pragma omp parallel for schedule(dynamic) reduction(+ : s)
	for (size_t c = 0; c < nc; c++)
		s += unbal_range(c * UNBAL_CHUNK, chunk_end(c, UNBAL_CHUNK, n));
	return s;
}

static void run_loop(const struct bench_args *a, const char *impl, double (*fd)(size_t),
		     uint64_t (*fu)(size_t))
{
	double t[BENCH_MAX_REPS];
	size_t n = a->size;
	double dfirst = fd ? fd(n) : 0.0;
	uint64_t ufirst = fu ? fu(n) : 0;
	for (int r = 0; r < a->reps; r++) {
		double t0 = bench_now_ms();
		double dv = fd ? fd(bench_opaque(n)) : 0.0;
		uint64_t uv = fu ? fu(bench_opaque(n)) : 0;
		t[r] = bench_now_ms() - t0;
		if (uv != ufirst || fabs(dv - dfirst) > 1e-9 * fabs(dfirst))
			bench_fail(impl, a->bench, "results differ between repetitions");
	}
	if (fd)
		bench_result_f64(a->bench, impl, a->workers, bench_median(t, a->reps), dfirst);
	else
		bench_result_u64(a->bench, impl, a->workers, bench_median(t, a->reps), ufirst);
}

int main(int argc, char **argv)
{
	struct bench_args a;
	double t[BENCH_MAX_REPS];
	const char *impl = "omp";

	bench_parse(argc, argv, &a);
	omp_set_dynamic(0);
	omp_set_num_threads((int)a.workers);
	int got = 0;
#pragma omp parallel
#pragma omp single
	got = omp_get_num_threads();
	if (got != (int)a.workers)
		bench_fail(impl, a.bench, "OpenMP did not start WORKERS threads");

	if (!strcmp(a.bench, "fib")) {
		int n = (int)a.size;
		long first = fib_run(n);
		for (int r = 0; r < a.reps; r++) {
			double t0 = bench_now_ms();
			long v = fib_run((int)bench_opaque((size_t)n));
			t[r] = bench_now_ms() - t0;
			if (v != first)
				bench_fail(impl, a.bench, "results differ between repetitions");
		}
		bench_result_u64(a.bench, impl, a.workers, bench_median(t, a.reps), (uint64_t)first);
	} else if (!strcmp(a.bench, "spawn")) {
		size_t n = a.size;
		unsigned char *flags = calloc(n, 1);
		uint64_t ran = 0;
		if (!flags)
			bench_fail(impl, a.bench, "out of memory");
		for (int r = -1; r < a.reps; r++) { /* r == -1: warm-up */
			memset(flags, 0, n);
			double t0 = bench_now_ms();
			spawn_run(flags, n);
			double ms = bench_now_ms() - t0;
			if (r >= 0)
				t[r] = ms;
			ran = 0;
			for (size_t i = 0; i < n; i++)
				ran += flags[i];
			if (ran != n)
				bench_fail(impl, a.bench, "not every task ran exactly once");
		}
		free(flags);
		bench_result_u64(a.bench, impl, a.workers, bench_median(t, a.reps), ran);
	} else if (!strcmp(a.bench, "balanced")) {
		run_loop(&a, "omp-static", bal_static, NULL);
		run_loop(&a, "omp-dynamic", bal_dynamic, NULL);
	} else if (!strcmp(a.bench, "unbalanced")) {
		run_loop(&a, "omp-static", NULL, unbal_static);
		run_loop(&a, "omp-dynamic", NULL, unbal_dynamic);
	} else {
		bench_fail(impl, a.bench, "unknown benchmark (fib, spawn, balanced, unbalanced)");
	}
	return 0;
}
