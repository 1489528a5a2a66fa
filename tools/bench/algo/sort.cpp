/*
 * sort.cpp - the C++ side of the sort benchmark (see run.sh):
 *   std-sort         std::sort with operator<, inlined; one thread
 *   std-sort-fnptr   std::sort calling the qsort-form comparator through a
 *                    pointer, as every C sort must: the cost of that call
 *   std-stable       std::stable_sort, one thread
 *   tbb              tbb::parallel_sort with operator<, at most WORKERS
 *                    threads (tbb::global_control)
 *   std-par          std::sort(std::execution::par, ...): libstdc++'s
 *                    parallel algorithms on their oneTBB backend, at most
 *                    WORKERS threads (tbb::global_control)
 *   gnu-par          __gnu_parallel::sort, libstdc++'s OpenMP parallel
 *                    mode (a multiway merge sort), WORKERS OpenMP threads
 * and "rec:" before any but std-sort-fnptr sorts 16-byte records by key
 * (sort.h). Called as   bench_sort_cxx IMPL WORKERS REPS SIZE.  Built
 * with -fopenmp; with -DHAVE_TBB (and -ltbb) for tbb and std-par.
 */
#include "sort.h"

#include <algorithm>
#include <omp.h>
#include <parallel/algorithm>
#include <string>

#ifdef HAVE_TBB
#include <execution>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_sort.h>
#endif

static int (*volatile cmp_ptr)(const void *, const void *) = sort_cmp_u64;

static bool operator<(const sort_rec &x, const sort_rec &y)
{
	return x.key < y.key;
}

/* Time sorter(first, last) on keys or on records. */
template <typename F> static void bench_both(bool rec, const char *impl, unsigned w, int reps,
					     size_t n, F sorter)
{
	static F *f; /* the lambdas below have no captures: reach it through a static */
	f = &sorter;
	if (rec)
		sort_rec_bench(impl, w, reps, n,
			       [](sort_rec *v, size_t k, void *) { (*f)(v, v + k); }, nullptr);
	else
		sort_bench(impl, w, reps, n, [](uint64_t *v, size_t k, void *) { (*f)(v, v + k); },
			   nullptr);
}

/* A generic lambda, so that one sorter serves keys and records. */
#define SORTER(call) [](auto *b, auto *e) { call; }

int main(int argc, char **argv)
{
	struct bench_args a;
	std::string impl;
	bool rec;

	bench_parse(argc, argv, &a);
	impl = a.bench;
	rec = impl.compare(0, 4, "rec:") == 0;
	if (rec)
		impl = impl.substr(4);
	const char *name = impl.c_str();
	if (impl == "std-sort") {
		bench_both(rec, name, 1, a.reps, a.size, SORTER(std::sort(b, e)));
	} else if (impl == "std-sort-fnptr" && !rec) {
		sort_bench("std-sort-fnptr", 1, a.reps, a.size,
			   [](uint64_t *v, size_t n, void *) {
				   int (*cmp)(const void *, const void *) = cmp_ptr;
				   std::sort(v, v + n, [cmp](const uint64_t &x, const uint64_t &y) {
					   return cmp(&x, &y) < 0;
				   });
			   },
			   nullptr);
	} else if (impl == "std-stable") {
		bench_both(rec, name, 1, a.reps, a.size, SORTER(std::stable_sort(b, e)));
	} else if (impl == "gnu-par") {
		omp_set_num_threads((int)a.workers);
		omp_set_dynamic(0);
		bench_both(rec, name, a.workers, a.reps, a.size, SORTER(__gnu_parallel::sort(b, e)));
#ifdef HAVE_TBB
	} else if (impl == "tbb") {
		tbb::global_control gc(tbb::global_control::max_allowed_parallelism, a.workers);
		bench_both(rec, name, a.workers, a.reps, a.size, SORTER(tbb::parallel_sort(b, e)));
	} else if (impl == "std-par") {
		tbb::global_control gc(tbb::global_control::max_allowed_parallelism, a.workers);
		bench_both(rec, name, a.workers, a.reps, a.size,
			   SORTER(std::sort(std::execution::par, b, e)));
#endif
	} else {
		bench_fail(a.bench, "sort", "unknown implementation");
	}
	return 0;
}
