/*
 * scan.cpp - oneTBB's side of the scan benchmark (see run.sh): the
 * inclusive prefix sum of SIZE doubles (the same input as scan.c) with
 * tbb::parallel_scan's functional form, at most WORKERS threads.
 * Called as   bench_scan_tbb scan:tbb WORKERS REPS SIZE.
 */
#include "../work.h"

#include <functional>

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_scan.h>

int main(int argc, char **argv)
{
	struct bench_args a;
	double t[BENCH_MAX_REPS];
	uint64_t check = 0;

	bench_parse(argc, argv, &a);
	tbb::global_control gc(tbb::global_control::max_allowed_parallelism, a.workers);
	size_t n = (size_t)a.size;
	double *in = (double *)malloc(n * sizeof(double)), *out = (double *)malloc(n * sizeof(double));
	if (!in || !out)
		bench_fail("tbb", "scan", "no memory");
	for (size_t i = 0; i < n; i++)
		in[i] = (double)(i % 7);
	memset(out, 0, n * sizeof(double));
	for (int r = -1; r < a.reps; r++) {
		double t0 = bench_now_ms();
		tbb::parallel_scan(
			tbb::blocked_range<size_t>(0, n), 0.0,
			[&](const tbb::blocked_range<size_t> &rg, double sum, bool final) {
				for (size_t i = rg.begin(); i < rg.end(); i++) {
					sum += in[i];
					if (final)
						out[i] = sum;
				}
				return sum;
			},
			std::plus<double>());
		double ms = bench_now_ms() - t0;
		if (r >= 0)
			t[r] = ms;
		check = (uint64_t)out[n - 1];
	}
	bench_result_u64("scan", "tbb", a.workers, bench_median(t, a.reps), check);
	free(in);
	free(out);
	return 0;
}
