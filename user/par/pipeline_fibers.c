/*
 * pipeline_fibers.c - mr_pipeline_fibers: the pipeline of mr_pipeline with
 * fibers for stages and channels between them, for stages that block.
 *
 * Built on the public API only: stage 0 is one fiber, a serial stage one
 * fiber, a parallel stage `width` fibers receiving from the same channel.
 * Each channel carries (item, sequence number) pairs and holds max_tokens
 * of them. The bound on items alive is a semaphore of max_tokens units:
 * the input takes one before each call of stage 0, the last stage gives
 * it back after each item. An in-order stage that follows a parallel one
 * gets items out of order: it keeps them in a ring of max_tokens slots by
 * sequence number (the numbers alive differ by less than max_tokens) and
 * runs them when their turn comes. When stage 0 returns NULL its fiber
 * closes its channel; the last fiber of each stage to see its input
 * channel closed and drained closes the next one; the caller joins every
 * fiber and frees the channels.
 *
 * A stage that returns MR_PIPELINE_STOP sets `stopped`; the input looks at
 * it before each call of stage 0 and ends as on NULL. The mark travels on
 * as the item (no stage function sees it) so that in-order stages keep
 * their count and the last stage gives its token back; the other items
 * drain.
 *
 * A stage function runs on a fiber of the default stack size
 * (MR_FIBER_STACK_DEFAULT) and may block in anything that parks a fiber
 * (channels, sync objects, sleeps, fiber I/O) without holding a worker.
 * Behaves badly: each item costs a channel send and receive per stage,
 * and a parked fiber's wake-up, about a microsecond or more: stages
 * should be coarse.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <moirai/algo.h>
#include <moirai/chan.h>
#include <moirai/fiber.h>
#include <moirai/sync.h>

#include "algo.h"

struct fmsg {
	void *item;
	uint64_t seq;
};

struct fstage {
	struct fpipe *p;
	size_t k;
	mr_chan_t *in, *out; /* in: NULL for stage 0; out: NULL for the last */
	_Atomic unsigned running; /* fibers of the stage that have not ended */
	struct fmsg *ring;	  /* in order after stage 0: parked items */
	bool *full;		  /* ring slot in use */
};

struct fpipe {
	const struct mr_stage *stages;
	size_t n, cap;
	mr_sem_t credits;
	struct fstage *fs;
	atomic_bool stopped; /* a stage returned MR_PIPELINE_STOP */
};

/* Call stage st on item, unless item is a stop mark; note a stop. */
static void *call(struct fpipe *p, const struct mr_stage *st, void *item)
{
	if (item == MR_PIPELINE_STOP)
		return item;
	item = st->fn(item, st->ctx);
	/* release: pairs with the acquire load in input_fiber(); only a
	 * hint there (no call of stage 0 starts once it is seen). */
	if (item == MR_PIPELINE_STOP)
		atomic_store_explicit(&p->stopped, true, memory_order_release);
	return item;
}

/* Item done with stage k: to the next stage, or its token back. */
static void pass(struct fstage *s, struct fmsg *m)
{
	if (s->out) {
		/* Cannot be closed: only this stage closes it, after us. */
		if (mr_chan_send(s->out, m))
			mr__die("mr_pipeline_fibers", "channel send failed");
	} else {
		mr_sem_post(&s->p->credits);
	}
}

static void input_fiber(void *arg)
{
	struct fstage *s = arg;
	const struct mr_stage *st = &s->p->stages[0];

	for (uint64_t seq = 0;; seq++) {
		mr_sem_wait(&s->p->credits);
		if (atomic_load_explicit(&s->p->stopped, memory_order_acquire)) {
			mr_sem_post(&s->p->credits);
			break;
		}
		struct fmsg m = { call(s->p, st, NULL), seq };
		if (!m.item || m.item == MR_PIPELINE_STOP) {
			mr_sem_post(&s->p->credits);
			break;
		}
		pass(s, &m);
	}
}

static void stage_fiber(void *arg)
{
	struct fstage *s = arg;
	const struct mr_stage *st = &s->p->stages[s->k];
	size_t cap = s->p->cap;
	uint64_t next = 0;
	struct fmsg m;

	while (mr_chan_recv(s->in, &m) == 0) {
		if (!s->ring) {
			m.item = call(s->p, st, m.item);
			pass(s, &m);
			continue;
		}
		/* In order: park it, then run every item whose turn it is. */
		s->ring[m.seq % cap] = m;
		s->full[m.seq % cap] = true;
		while (s->full[next % cap]) {
			s->full[next % cap] = false;
			m = s->ring[next % cap];
			m.item = call(s->p, st, m.item);
			pass(s, &m);
			next++;
		}
	}
}

static void stage_main(void *arg)
{
	struct fstage *s = arg;

	if (s->k == 0)
		input_fiber(s);
	else
		stage_fiber(s);
	/* acq_rel: the last fiber of the stage closes the next channel after
	 * the others' sends. */
	if (atomic_fetch_sub_explicit(&s->running, 1, memory_order_acq_rel) == 1 && s->out)
		mr_chan_close(s->out);
}

int mr_pipeline_fibers(const struct mr_stage *stages, size_t nstages, size_t max_tokens,
		       unsigned width)
{
	int r = 0;

	if (!stages || nstages == 0 || nstages > MR_PIPELINE_STAGES_MAX || max_tokens == 0 ||
	    max_tokens > MR_PIPELINE_TOKENS_MAX)
		return -EINVAL;
	for (size_t k = 0; k < nstages; k++)
		if (!stages[k].fn || stages[k].mode > MR_STAGE_SERIAL_OUT_OF_ORDER ||
		    (k == 0 && stages[k].mode == MR_STAGE_PARALLEL))
			return -EINVAL;
	struct mr_runtime *rt = mr__algo_runtime();
	if (!rt)
		return -errno;
	if (width == 0)
		width = mr_runtime_workers(rt);

	struct fpipe p = { .stages = stages, .n = nstages, .cap = max_tokens };
	size_t nfib = 0;
	for (size_t k = 0; k < nstages; k++)
		nfib += stages[k].mode == MR_STAGE_PARALLEL ? width : 1;
	p.fs = calloc(nstages, sizeof(*p.fs));
	mr_fiber_t **fib = calloc(nfib, sizeof(*fib));
	if (!p.fs || !fib) {
		r = -ENOMEM;
		goto out;
	}
	mr_sem_init(&p.credits, (uint32_t)max_tokens);
	atomic_init(&p.stopped, false);
	for (size_t k = 0; k < nstages; k++) {
		struct fstage *s = &p.fs[k];
		s->p = &p;
		s->k = k;
		s->in = k ? p.fs[k - 1].out : NULL;
		atomic_init(&s->running, stages[k].mode == MR_STAGE_PARALLEL ? width : 1);
		if (k + 1 < nstages) {
			s->out = mr_chan_create(sizeof(struct fmsg), max_tokens, 0);
			if (!s->out) {
				r = -ENOMEM;
				goto out;
			}
		}
		if (k > 0 && stages[k].mode == MR_STAGE_SERIAL_IN_ORDER) {
			s->ring = malloc(max_tokens * sizeof(*s->ring));
			s->full = calloc(max_tokens, sizeof(*s->full));
			if (!s->ring || !s->full) {
				r = -ENOMEM;
				goto out;
			}
		}
	}
	/* Start from the last stage so that a fiber that cannot be created
	 * leaves nothing running: undo by closing what was made. */
	MR_OPTS(mr_fiber_opts, fo, .runtime = rt, .name = "mr_pipeline");
	size_t started = 0;
	for (size_t k = nstages; k-- > 0 && !r;) {
		unsigned nf = stages[k].mode == MR_STAGE_PARALLEL ? width : 1;
		for (unsigned i = 0; i < nf; i++) {
			mr_fiber_t *f = mr_go_opts(stage_main, &p.fs[k], &fo);
			if (!f) {
				r = -errno;
				break;
			}
			fib[started++] = f;
		}
	}
	if (r)
		/* Stage 0 never started: close every channel, so that the
		 * fibers that did start see their input end at once. */
		for (size_t k = 0; k + 1 < nstages; k++)
			mr_chan_close(p.fs[k].out);
	for (size_t i = 0; i < started; i++)
		mr_fiber_join(fib[i]);
out:
	if (p.fs)
		for (size_t k = 0; k < nstages; k++) {
			mr_chan_destroy(p.fs[k].out);
			free(p.fs[k].ring);
			free(p.fs[k].full);
		}
	free(p.fs);
	free(fib);
	if (!r && atomic_load_explicit(&p.stopped, memory_order_relaxed))
		r = -ECANCELED; /* relaxed: the joins ordered every store before */
	return r;
}
