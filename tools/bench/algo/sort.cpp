/*
 * sort.cpp - the C++ side of the sort benchmark (see run.sh):
 *   std-sort         std::sort with operator<, inlined; one thread
 *   std-sort-fnptr   std::sort calling the qsort-form comparator through a
 *                    pointer, as every C sort must: the cost of that call
 *   std-stable       std::stable_sort, one thread
 *   tbb              tbb::parallel_sort with operator<, at most WORKERS
 *                    threads (tbb::global_control)
 * Called as   bench_sort_cxx IMPL WORKERS REPS SIZE.
 */
#include "sort.h"

#include <algorithm>

#ifdef HAVE_TBB
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_sort.h>
#endif

static int (*volatile cmp_ptr)(const void *, const void *) = sort_cmp_u64;

int main(int argc, char **argv)
{
	struct bench_args a;
	std::string impl;

	bench_parse(argc, argv, &a);
	impl = a.bench;
	if (impl == "std-sort") {
		sort_bench("std-sort", 1, a.reps, a.size,
			   [](uint64_t *v, size_t n, void *) { std::sort(v, v + n); }, nullptr);
	} else if (impl == "std-sort-fnptr") {
		sort_bench("std-sort-fnptr", 1, a.reps, a.size,
			   [](uint64_t *v, size_t n, void *) {
				   int (*cmp)(const void *, const void *) = cmp_ptr;
				   std::sort(v, v + n, [cmp](const uint64_t &x, const uint64_t &y) {
					   return cmp(&x, &y) < 0;
				   });
			   },
			   nullptr);
	} else if (impl == "std-stable") {
		sort_bench("std-stable", 1, a.reps, a.size,
			   [](uint64_t *v, size_t n, void *) { std::stable_sort(v, v + n); }, nullptr);
#ifdef HAVE_TBB
	} else if (impl == "tbb") {
		tbb::global_control gc(tbb::global_control::max_allowed_parallelism, a.workers);
		sort_bench("tbb", a.workers, a.reps, a.size,
			   [](uint64_t *v, size_t n, void *) { tbb::parallel_sort(v, v + n); }, nullptr);
#endif
	} else {
		bench_fail(a.bench, "sort", "unknown implementation");
	}
	return 0;
}
