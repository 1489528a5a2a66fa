/*
 * pipe.c - the C side of the pipeline benchmark (see run.sh, pipe.h): a
 * 3-stage pipeline (read in order, transform in parallel, write in
 * order) over a file of SIZE MiB, with at most 4 blocks per worker alive.
 *   seq            the three stages in a loop
 *   moirai         mr_pipeline (stages as jobs)
 *   moirai-fibers  mr_pipeline_fibers (stages as fibers, channels)
 * Called as   bench_pipe_c pipe:IMPL WORKERS REPS SIZE_MIB, with the
 * files named by PIPE_IN (created if missing) and PIPE_OUT.
 */
#include "../work.h"
#include "pipe.h"

#include <moirai/moirai.h>

static void *st_read(void *item, void *ctx)
{
	(void)item;
	return pipe_read(ctx);
}

static void *st_transform(void *item, void *ctx)
{
	(void)ctx;
	pipe_transform(item);
	return item;
}

static void *st_write(void *item, void *ctx)
{
	pipe_write(ctx, item);
	return NULL;
}

struct job {
	struct pfiles *f;
	size_t tokens;
	bool fibers;
};

static void run_job(void *p)
{
	struct job *j = p;
	const struct mr_stage st[3] = {
		{ MR_STAGE_SERIAL_IN_ORDER, st_read, j->f },
		{ MR_STAGE_PARALLEL, st_transform, NULL },
		{ MR_STAGE_SERIAL_IN_ORDER, st_write, j->f },
	};
	int r = j->fibers ? mr_pipeline_fibers(st, 3, j->tokens, 0) : mr_pipeline(st, 3, j->tokens);
	if (r)
		bench_fail("moirai", "pipe", "mr_pipeline failed");
}

int main(int argc, char **argv)
{
	struct bench_args a;
	double t[BENCH_MAX_REPS];
	const char *in = getenv("PIPE_IN"), *out = getenv("PIPE_OUT");
	const char *impl;
	mr_runtime_t *rt = NULL;
	struct pfiles f;

	bench_parse(argc, argv, &a);
	impl = strchr(a.bench, ':') ? strchr(a.bench, ':') + 1 : "";
	if (!in || !out)
		bench_fail(impl, "pipe", "set PIPE_IN and PIPE_OUT");
	if (pipe_make_input(in, (size_t)a.size << 20))
		bench_fail(impl, "pipe", "cannot create the input file");
	bool seq = !strcmp(impl, "seq");
	if (!seq) {
		if (strcmp(impl, "moirai") && strcmp(impl, "moirai-fibers"))
			bench_fail(impl, "pipe", "unknown implementation");
		MR_OPTS(mr_config, cfg, .workers = a.workers);
		if (!(rt = mr_runtime_create(&cfg)))
			bench_fail(impl, "pipe", "mr_runtime_create failed");
	}
	for (int r = -1; r < a.reps; r++) {
		pipe_open(&f, in, out);
		double t0 = bench_now_ms();
		if (seq) {
			struct pblock *b;
			while ((b = pipe_read(&f))) {
				pipe_transform(b);
				pipe_write(&f, b);
			}
		} else {
			struct job j = { &f, 4 * (size_t)a.workers, !strcmp(impl, "moirai-fibers") };
			if (j.fibers) { /* called from a fiber: it parks in the joins */
				MR_OPTS(mr_fiber_opts, fo, .runtime = rt);
				mr_fiber_t *fib = mr_go_opts(run_job, &j, &fo);
				if (!fib || mr_fiber_join(fib))
					bench_fail(impl, "pipe", "mr_go failed");
			} else {
				mr_runtime_install(rt, run_job, &j);
			}
		}
		double ms = bench_now_ms() - t0;
		if (r >= 0)
			t[r] = ms;
		pipe_close(&f);
	}
	bench_result_u64("pipe", impl, a.workers, bench_median(t, a.reps), f.hash);
	if (rt)
		mr_runtime_destroy(rt);
	return 0;
}
