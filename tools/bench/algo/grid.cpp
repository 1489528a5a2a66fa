/*
 * grid.cpp - oneTBB's side of the 2-D loop benchmark (see run.sh, grid.h):
 * the same transpose with tbb::parallel_for over a blocked_range2d with
 * grains 64 x 64 (the default auto_partitioner), at most WORKERS threads.
 * Called as   bench_grid_tbb grid:tbb WORKERS REPS N.
 */
#include "../work.h"
#include "grid.h"

#include <oneapi/tbb/blocked_range2d.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_for.h>

int main(int argc, char **argv)
{
	struct bench_args a;
	double t[BENCH_MAX_REPS];

	bench_parse(argc, argv, &a);
	tbb::global_control gc(tbb::global_control::max_allowed_parallelism, a.workers);
	size_t n = (size_t)a.size;
	double *in = (double *)malloc(n * n * sizeof(double));
	double *out = (double *)malloc(n * n * sizeof(double));
	if (!in || !out)
		bench_fail("tbb", "grid", "no memory");
	for (size_t i = 0; i < n * n; i++)
		in[i] = (double)i;
	memset(out, 0, n * n * sizeof(double));
	struct grid g = { in, out, n };
	for (int r = -1; r < a.reps; r++) {
		double t0 = bench_now_ms();
		tbb::parallel_for(tbb::blocked_range2d<size_t>(0, n, GRID_TILE, 0, n, GRID_TILE),
				  [&](const tbb::blocked_range2d<size_t> &rg) {
					  grid_tile(&g, rg.rows().begin(), rg.rows().end(),
						    rg.cols().begin(), rg.cols().end());
				  });
		double ms = bench_now_ms() - t0;
		if (r >= 0)
			t[r] = ms;
	}
	bench_result_u64("grid", "tbb", a.workers, bench_median(t, a.reps), grid_check(&g));
	free(in);
	free(out);
	return 0;
}
