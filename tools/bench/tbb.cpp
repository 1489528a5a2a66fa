/*
 * tbb.cpp - the oneTBB side of every benchmark:
 *   fib         fib(SIZE) by tbb::parallel_invoke on both halves, no cutoff
 *   spawn       one task runs SIZE empty tasks in a tbb::task_group, then
 *               waits for it
 *   balanced, unbalanced
 *               tbb::parallel_reduce over a blocked_range with the default
 *               (auto) partitioner, each range folded by the shared range
 *               function
 * Parallelism is capped with tbb::global_control(max_allowed_parallelism,
 * WORKERS) and every run executes inside a tbb::task_arena of WORKERS
 * slots, timed around arena.execute(). See work.h for the command line.
 */
#include "work.h"

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_invoke.h>
#include <oneapi/tbb/parallel_reduce.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

static long fib_tbb(int n)
{
	if (n < 2)
		return n;
	long a = 0, b = 0;
	tbb::parallel_invoke([&] { a = fib_tbb(n - 1); }, [&] { b = fib_tbb(n - 2); });
	return a + b;
}

static double bal_tbb(size_t n)
{
	return tbb::parallel_reduce(
		tbb::blocked_range<size_t>(0, n), 0.0,
		[](const tbb::blocked_range<size_t> &r, double acc) {
			return acc + bal_range(r.begin(), r.end());
		},
		std::plus<double>());
}

static uint64_t unbal_tbb(size_t n)
{
	return tbb::parallel_reduce(
		tbb::blocked_range<size_t>(0, n), uint64_t(0),
		[](const tbb::blocked_range<size_t> &r, uint64_t acc) {
			return acc + unbal_range(r.begin(), r.end());
		},
		std::plus<uint64_t>());
}

template <class F> static double timed(tbb::task_arena &arena, F &&f)
{
	double t0 = bench_now_ms();
	arena.execute(f);
	return bench_now_ms() - t0;
}

int main(int argc, char **argv)
{
	bench_args a;
	double t[BENCH_MAX_REPS];
	const char *impl = "tbb";

	bench_parse(argc, argv, &a);
	tbb::global_control gc(tbb::global_control::max_allowed_parallelism, a.workers);
	tbb::task_arena arena((int)a.workers);
	arena.initialize();
	if (arena.max_concurrency() != (int)a.workers)
		bench_fail(impl, a.bench, "the arena does not have WORKERS slots");

	if (!strcmp(a.bench, "fib")) {
		int n = (int)a.size;
		long v = 0;
		timed(arena, [&] { v = fib_tbb(n); });
		long first = v;
		for (int r = 0; r < a.reps; r++) {
			t[r] = timed(arena, [&] { v = fib_tbb((int)bench_opaque((size_t)n)); });
			if (v != first)
				bench_fail(impl, a.bench, "results differ between repetitions");
		}
		bench_result_u64(a.bench, impl, a.workers, bench_median(t, a.reps), (uint64_t)first);
	} else if (!strcmp(a.bench, "spawn")) {
		size_t n = a.size;
		std::vector<unsigned char> flags(n);
		unsigned char *fl = flags.data();
		uint64_t ran = 0;
		for (int r = -1; r < a.reps; r++) { // r == -1: warm-up
			std::fill(flags.begin(), flags.end(), 0);
			double ms = timed(arena, [&] {
				tbb::task_group tg;
				for (size_t i = 0; i < n; i++) {
					unsigned char *p = &fl[i];
					tg.run([p] { *p = 1; });
				}
				tg.wait();
			});
			if (r >= 0)
				t[r] = ms;
			ran = 0;
			for (size_t i = 0; i < n; i++)
				ran += fl[i];
			if (ran != n)
				bench_fail(impl, a.bench, "not every task ran exactly once");
		}
		bench_result_u64(a.bench, impl, a.workers, bench_median(t, a.reps), ran);
	} else if (!strcmp(a.bench, "balanced")) {
		size_t n = a.size;
		double v = 0;
		timed(arena, [&] { v = bal_tbb(n); });
		double first = v;
		for (int r = 0; r < a.reps; r++) {
			t[r] = timed(arena, [&] { v = bal_tbb(bench_opaque(n)); });
			if (std::fabs(v - first) > 1e-9 * std::fabs(first))
				bench_fail(impl, a.bench, "results differ between repetitions");
		}
		bench_result_f64(a.bench, impl, a.workers, bench_median(t, a.reps), first);
	} else if (!strcmp(a.bench, "unbalanced")) {
		size_t n = a.size;
		uint64_t v = 0;
		timed(arena, [&] { v = unbal_tbb(n); });
		uint64_t first = v;
		for (int r = 0; r < a.reps; r++) {
			t[r] = timed(arena, [&] { v = unbal_tbb(bench_opaque(n)); });
			if (v != first)
				bench_fail(impl, a.bench, "results differ between repetitions");
		}
		bench_result_u64(a.bench, impl, a.workers, bench_median(t, a.reps), first);
	} else {
		bench_fail(impl, a.bench, "unknown benchmark (fib, spawn, balanced, unbalanced)");
	}
	return 0;
}
