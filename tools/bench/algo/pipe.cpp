/*
 * pipe.cpp - oneTBB's side of the pipeline benchmark (see run.sh, pipe.h):
 * tbb::parallel_pipeline with the same three stages (read serial in order,
 * transform parallel, write serial in order), 4 tokens per worker, at
 * most WORKERS threads.
 * Called as   bench_pipe_tbb pipe:tbb WORKERS REPS SIZE_MIB.
 */
#include "../work.h"
#include "pipe.h"

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_pipeline.h>

int main(int argc, char **argv)
{
	struct bench_args a;
	double t[BENCH_MAX_REPS];
	const char *in = getenv("PIPE_IN"), *out = getenv("PIPE_OUT");
	struct pfiles f;

	bench_parse(argc, argv, &a);
	if (!in || !out)
		bench_fail("tbb", "pipe", "set PIPE_IN and PIPE_OUT");
	if (pipe_make_input(in, (size_t)a.size << 20))
		bench_fail("tbb", "pipe", "cannot create the input file");
	tbb::global_control gc(tbb::global_control::max_allowed_parallelism, a.workers);
	for (int r = -1; r < a.reps; r++) {
		pipe_open(&f, in, out);
		double t0 = bench_now_ms();
		tbb::parallel_pipeline(
			4 * (size_t)a.workers,
			tbb::make_filter<void, pblock *>(tbb::filter_mode::serial_in_order,
							 [&](tbb::flow_control &fc) -> pblock * {
								 pblock *b = pipe_read(&f);
								 if (!b)
									 fc.stop();
								 return b;
							 }) &
				tbb::make_filter<pblock *, pblock *>(tbb::filter_mode::parallel,
								     [](pblock *b) {
									     pipe_transform(b);
									     return b;
								     }) &
				tbb::make_filter<pblock *, void>(tbb::filter_mode::serial_in_order,
								 [&](pblock *b) { pipe_write(&f, b); }));
		double ms = bench_now_ms() - t0;
		if (r >= 0)
			t[r] = ms;
		pipe_close(&f);
	}
	bench_result_u64("pipe", "tbb", a.workers, bench_median(t, a.reps), f.hash);
	return 0;
}
