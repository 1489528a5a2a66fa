/*
 * grid.c - the C side of the 2-D loop benchmark (see run.sh, grid.h): the
 * transpose of an N x N matrix of doubles in 64 x 64 tiles.
 *   seq      the tiles in a loop
 *   moirai   mr_parallel_for_2d with grains 64 x 64
 * Called as   bench_grid_c grid:IMPL WORKERS REPS N.
 */
#include "../work.h"
#include "grid.h"

#include <moirai/moirai.h>

static void tile(size_t r0, size_t r1, size_t c0, size_t c1, void *ctx)
{
	grid_tile(ctx, r0, r1, c0, c1);
}

static void run_job(void *p)
{
	struct grid *g = p;
	if (mr_parallel_for_2d(0, g->n, GRID_TILE, 0, g->n, GRID_TILE, tile, g))
		bench_fail("moirai", "grid", "mr_parallel_for_2d failed");
}

int main(int argc, char **argv)
{
	struct bench_args a;
	double t[BENCH_MAX_REPS];
	mr_runtime_t *rt = NULL;
	const char *impl;

	bench_parse(argc, argv, &a);
	impl = strchr(a.bench, ':') ? strchr(a.bench, ':') + 1 : "";
	bool seq = !strcmp(impl, "seq");
	if (!seq) {
		if (strcmp(impl, "moirai"))
			bench_fail(impl, "grid", "unknown implementation");
		MR_OPTS(mr_config, cfg, .workers = a.workers);
		if (!(rt = mr_runtime_create(&cfg)))
			bench_fail(impl, "grid", "mr_runtime_create failed");
	}
	size_t n = (size_t)a.size;
	double *in = malloc(n * n * sizeof(double)), *out = malloc(n * n * sizeof(double));
	if (!in || !out)
		bench_fail(impl, "grid", "no memory");
	for (size_t i = 0; i < n * n; i++)
		in[i] = (double)i;
	memset(out, 0, n * n * sizeof(double));
	struct grid g = { in, out, n };
	for (int r = -1; r < a.reps; r++) {
		double t0 = bench_now_ms();
		if (seq) {
			for (size_t i = 0; i < n; i += GRID_TILE)
				for (size_t j = 0; j < n; j += GRID_TILE)
					grid_tile(&g, i, i + GRID_TILE < n ? i + GRID_TILE : n, j,
						  j + GRID_TILE < n ? j + GRID_TILE : n);
		} else {
			mr_runtime_install(rt, run_job, &g);
		}
		double ms = bench_now_ms() - t0;
		if (r >= 0)
			t[r] = ms;
	}
	bench_result_u64("grid", impl, a.workers, bench_median(t, a.reps), grid_check(&g));
	free(in);
	free(out);
	if (rt)
		mr_runtime_destroy(rt);
	return 0;
}
