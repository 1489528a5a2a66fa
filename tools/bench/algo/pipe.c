/*
 * pipe.c - the C side of the pipeline benchmark (see run.sh, pipe.h): a
 * 3-stage pipeline (read in order, transform in parallel, write in
 * order) over a file of SIZE MiB, with at most 4 blocks per worker alive.
 *   seq            the three stages in a loop
 *   moirai         mr_pipeline (stages as jobs)
 *   moirai-fibers  mr_pipeline_fibers (stages as fibers, channels)
 *   pthreads       a reader thread, WORKERS transform threads and the
 *                  calling thread as the writer, two mutex-and-condition
 *                  queues, a semaphore for the bound and a reorder ring
 *                  at the writer: the same pipeline by hand
 * Called as   bench_pipe_c pipe:IMPL WORKERS REPS SIZE_MIB, with the
 * files named by PIPE_IN (created if missing) and PIPE_OUT.
 */
#include "../work.h"
#include "pipe.h"

#include <pthread.h>
#include <semaphore.h>

#include <moirai/moirai.h>

/* ---- the pthreads version ---- */

struct bq { /* a bounded queue of blocks; capacity >= the blocks alive */
	pthread_mutex_t m;
	pthread_cond_t c;
	struct pblock **ring;
	size_t cap, head, tail;
	bool closed;
};

static void bq_init(struct bq *q, size_t cap)
{
	pthread_mutex_init(&q->m, NULL);
	pthread_cond_init(&q->c, NULL);
	q->ring = calloc(cap, sizeof(*q->ring));
	q->cap = cap;
	q->head = q->tail = 0;
	q->closed = false;
}

static void bq_push(struct bq *q, struct pblock *b)
{
	pthread_mutex_lock(&q->m);
	q->ring[q->tail++ % q->cap] = b; /* never full: the semaphore bounds it */
	pthread_cond_signal(&q->c);
	pthread_mutex_unlock(&q->m);
}

static void bq_close(struct bq *q)
{
	pthread_mutex_lock(&q->m);
	q->closed = true;
	pthread_cond_broadcast(&q->c);
	pthread_mutex_unlock(&q->m);
}

static struct pblock *bq_pop(struct bq *q) /* NULL: closed and empty */
{
	struct pblock *b = NULL;

	pthread_mutex_lock(&q->m);
	while (q->head == q->tail && !q->closed)
		pthread_cond_wait(&q->c, &q->m);
	if (q->head != q->tail)
		b = q->ring[q->head++ % q->cap];
	pthread_mutex_unlock(&q->m);
	return b;
}

struct pth {
	struct pfiles *f;
	struct bq q1, q2;
	sem_t tokens;
	pthread_mutex_t m;
	unsigned running; /* transform threads */
};

static void *pth_reader(void *arg)
{
	struct pth *p = arg;

	for (uint64_t seq = 0;; seq++) {
		sem_wait(&p->tokens);
		struct pblock *b = pipe_read(p->f);
		if (!b)
			break;
		b->seq = seq;
		bq_push(&p->q1, b);
	}
	bq_close(&p->q1);
	return NULL;
}

static void *pth_transform(void *arg)
{
	struct pth *p = arg;
	struct pblock *b;

	while ((b = bq_pop(&p->q1))) {
		pipe_transform(b);
		bq_push(&p->q2, b);
	}
	pthread_mutex_lock(&p->m);
	bool last = --p->running == 0;
	pthread_mutex_unlock(&p->m);
	if (last)
		bq_close(&p->q2);
	return NULL;
}

static void run_pthreads(struct pfiles *f, unsigned workers, size_t tokens)
{
	struct pth p = { .f = f, .running = workers };
	pthread_t th[1 + 64];
	struct pblock **order = calloc(tokens, sizeof(*order)), *b;
	uint64_t next = 0;

	if (workers > 64 || !order)
		bench_fail("pthreads", "pipe", "too many workers or no memory");
	bq_init(&p.q1, tokens);
	bq_init(&p.q2, tokens);
	sem_init(&p.tokens, 0, (unsigned)tokens);
	pthread_mutex_init(&p.m, NULL);
	pthread_create(&th[0], NULL, pth_reader, &p);
	for (unsigned i = 0; i < workers; i++)
		pthread_create(&th[1 + i], NULL, pth_transform, &p);
	while ((b = bq_pop(&p.q2))) { /* the writer, in reading order */
		order[b->seq % tokens] = b;
		while ((b = order[next % tokens]) && b->seq == next) {
			order[next % tokens] = NULL;
			pipe_write(f, b);
			sem_post(&p.tokens);
			next++;
		}
	}
	for (unsigned i = 0; i <= workers; i++)
		pthread_join(th[i], NULL);
	free(order);
	free(p.q1.ring);
	free(p.q2.ring);
	sem_destroy(&p.tokens);
}

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
	bool seq = !strcmp(impl, "seq"), pth = !strcmp(impl, "pthreads");
	if (!seq && !pth) {
		if (strcmp(impl, "moirai") && strcmp(impl, "moirai-fibers"))
			bench_fail(impl, "pipe", "unknown implementation");
		MR_OPTS(mr_config, cfg, .workers = a.workers);
		if (!(rt = mr_runtime_create(&cfg)))
			bench_fail(impl, "pipe", "mr_runtime_create failed");
	}
	for (int r = -1; r < a.reps; r++) {
		pipe_open(&f, in, out);
		double t0 = bench_now_ms();
		if (pth) {
			run_pthreads(&f, a.workers, 4 * (size_t)a.workers);
		} else if (seq) {
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
