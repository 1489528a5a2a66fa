/*
 * pipeline.c - mr_pipeline: a linear pipeline of stages run as jobs on the
 * workers, TBB parallel_pipeline's model.
 *
 * An item is carried by a token from the input stage (stage 0) to the
 * last; at most max_tokens tokens are alive. A token's journey is one
 * task of a private group: it runs stage after stage on its worker until
 * a serial stage is busy (or, in order, not yet at its sequence number);
 * then the token parks in that stage and its task ends. The task that
 * leaves a serial stage hands the stage to the next parked token (the
 * next sequence number for an in-order stage, the oldest parked for an
 * out-of-order one) by spawning a task that resumes it there, holding the
 * stage. No thread or fiber belongs to a stage; a stage that is idle costs
 * nothing.
 *
 * The input: at most one "fetch" task at a time calls stage 0. A fetch
 * that got an item numbers it, spawns the next fetch while fewer than
 * max_tokens are alive (so input overlaps the later stages), and carries
 * its item on; when max_tokens are alive the input stops, and the token
 * that ends first spawns the next fetch. A NULL from stage 0 ends the
 * input; the pipeline is over when the group's count reaches 0, and it
 * can only reach 0 when no token is running or parked (a parked token's
 * stage is held by a running task, which spawns its resumption).
 *
 * Stopping: a stage that returns MR_PIPELINE_STOP sets `done` (no fetch
 * starts any more; one already past its look at `done` still calls stage
 * 0 once and carries what it got) and `stopped`, and its token goes on
 * carrying the mark as its item: it calls no stage function any more, and
 * passes through the later in-order stages only to keep their sequence
 * (parallel and out-of-order stages it skips). The other tokens drain.
 *
 * Parked tokens of an in-order stage live in a ring of max_tokens slots
 * indexed by sequence number: the tokens parked there are numbered from
 * the stage's next number on, and all those numbers are alive, so they
 * differ by less than max_tokens. An out-of-order stage parks tokens on
 * a FIFO list. Each serial stage has a spinlock held for a few stores;
 * the pipeline has one for the token count and the free tokens.
 *
 * Behaves badly: every item costs a task per serial stage it waits at
 * plus one fetch, a few hundred nanoseconds: stages should do more work
 * than that. A stage function that blocks its thread holds a worker (use
 * mr_pipeline_fibers for stages that block).
 */
#include <stdlib.h>
#include <string.h>

#include <moirai/algo.h>

#include "algo.h"

struct token {
	void *item;
	uint64_t seq;
	struct token *next; /* free list, or an out-of-order stage's list */
	struct pipe *p;
	size_t stage; /* where a resumed token goes on */
};

struct sstage {
	_Atomic uint32_t lock;
	bool busy;	      /* a token is in the stage (or handed it) */
	uint64_t next;	      /* in order: the number the stage takes next */
	struct token **ring;  /* in order: parked tokens by seq % cap */
	struct token *head, *tail; /* out of order: parked tokens, oldest first */
};

struct pipe {
	const struct mr_stage *stages;
	size_t n, cap;
	struct sstage *ss; /* one per stage (stage 0's unused: one fetch at a time) */
	mr_group_t group;
	_Atomic uint32_t lock; /* the fields below */
	size_t alive;
	bool done, fetching, stopped;
	uint64_t next_seq;
	struct token *free;
};

static void fetch(void *arg);
static void resume(void *arg);

/*
 * Spawning from a worker cannot fail (a pool that cannot grow aborts). A
 * group task is pushed privately (stealable once a thief asks), but an
 * idle worker sleeps and asks nothing, and the task that spawned goes on
 * with a whole stage: publish it now and wake a sleeper, one fetch_add
 * per spawn (as share_before_leaf() in loop.c), so that a parallel stage
 * does not run on one worker while the other sleeps.
 */
static void spawn(struct pipe *p, void (*fn)(void *), void *arg)
{
	struct mr__worker *w = mr__self();

	if (mr_group_spawn(&p->group, fn, arg))
		mr__die("mr_pipeline", "cannot spawn a task");
	if (w && (int32_t)(w->dq.head - w->dq.o_split) > 0 &&
	    mr__deque_publish(&w->dq) == MR__PUSH_PUBLIC)
		mr__notify(w->rt);
}

/* Enter serial stage s, or park t there (false). */
static bool enter(struct pipe *p, size_t s, struct token *t)
{
	struct sstage *st = &p->ss[s];
	bool in_order = p->stages[s].mode == MR_STAGE_SERIAL_IN_ORDER;

	mr__spin_lock(&st->lock);
	if (!st->busy && (!in_order || t->seq == st->next)) {
		st->busy = true;
		mr__spin_unlock(&st->lock);
		return true;
	}
	if (in_order) {
		st->ring[t->seq % p->cap] = t;
	} else {
		t->next = NULL;
		if (st->tail)
			st->tail->next = t;
		else
			st->head = t;
		st->tail = t;
	}
	/* release (the unlock): t's item, written by this task, is read by
	 * the task that resumes t after taking the lock. */
	mr__spin_unlock(&st->lock);
	return false;
}

/* Leave serial stage s: the parked token that takes it over, or NULL. */
static struct token *leave(struct pipe *p, size_t s)
{
	struct sstage *st = &p->ss[s];
	struct token *t = NULL;

	mr__spin_lock(&st->lock);
	if (p->stages[s].mode == MR_STAGE_SERIAL_IN_ORDER) {
		struct token **slot = &st->ring[++st->next % p->cap];
		if (*slot && (*slot)->seq == st->next) {
			t = *slot;
			*slot = NULL;
		}
	} else if (st->head) {
		t = st->head;
		st->head = t->next;
		if (!st->head)
			st->tail = NULL;
	}
	st->busy = t != NULL; /* handed over: still busy */
	mr__spin_unlock(&st->lock);
	return t;
}

/* Token t finished the last stage. */
static void token_done(struct pipe *p, struct token *t)
{
	bool refetch;

	mr__spin_lock(&p->lock);
	p->alive--;
	t->next = p->free;
	p->free = t;
	refetch = !p->done && !p->fetching;
	if (refetch)
		p->fetching = true;
	mr__spin_unlock(&p->lock);
	if (refetch)
		spawn(p, fetch, p);
}

/* Call stage st on item; a stop ends the input. */
static void *call(struct pipe *p, const struct mr_stage *st, void *item)
{
	void *r = st->fn(item, st->ctx);

	if (r == MR_PIPELINE_STOP) {
		mr__spin_lock(&p->lock);
		p->done = p->stopped = true;
		mr__spin_unlock(&p->lock);
	}
	return r;
}

/* Carry t from stage s on; `held`: t already holds stage s. */
static void carry(struct pipe *p, struct token *t, size_t s, bool held)
{
	for (; s < p->n; s++, held = false) {
		const struct mr_stage *st = &p->stages[s];
		bool skip = t->item == MR_PIPELINE_STOP;
		if (st->mode == MR_STAGE_PARALLEL ||
		    (skip && st->mode == MR_STAGE_SERIAL_OUT_OF_ORDER)) {
			if (!skip)
				t->item = call(p, st, t->item);
			continue;
		}
		if (!held && !enter(p, s, t))
			return; /* parked: the stage's holder resumes it */
		if (!skip)
			t->item = call(p, st, t->item);
		struct token *nx = leave(p, s);
		if (nx) {
			nx->stage = s;
			spawn(p, resume, nx);
		}
	}
	token_done(p, t);
}

static void resume(void *arg)
{
	struct token *t = arg;

	carry(t->p, t, t->stage, true);
}

/* The one running call of the input stage. */
static void fetch(void *arg)
{
	struct pipe *p = arg;
	struct token *t = NULL;
	bool more = false;

	/* A stop ends the input: no call of stage 0 starts after it is seen. */
	mr__spin_lock(&p->lock);
	if (p->done) {
		p->fetching = false;
		mr__spin_unlock(&p->lock);
		return;
	}
	mr__spin_unlock(&p->lock);
	void *item = call(p, &p->stages[0], NULL);
	mr__spin_lock(&p->lock);
	if (!item || item == MR_PIPELINE_STOP) {
		p->done = true;
		p->fetching = false;
	} else {
		t = p->free; /* never NULL: alive < cap here */
		p->free = t->next;
		t->seq = p->next_seq++;
		p->alive++;
		more = p->alive < p->cap && !p->done;
		p->fetching = more;
	}
	mr__spin_unlock(&p->lock);
	if (!t)
		return;
	if (more)
		spawn(p, fetch, p);
	t->item = item;
	carry(p, t, 1, false);
}

static void root(void *arg)
{
	struct pipe *p = arg;

	p->fetching = true;
	spawn(p, fetch, p);
	mr_group_wait(&p->group);
}

int mr_pipeline(const struct mr_stage *stages, size_t nstages, size_t max_tokens)
{
	size_t rings = 0;

	if (!stages || nstages == 0 || nstages > MR_PIPELINE_STAGES_MAX || max_tokens == 0 ||
	    max_tokens > MR_PIPELINE_TOKENS_MAX)
		return -EINVAL;
	for (size_t s = 0; s < nstages; s++) {
		if (!stages[s].fn || stages[s].mode > MR_STAGE_SERIAL_OUT_OF_ORDER ||
		    (s == 0 && stages[s].mode == MR_STAGE_PARALLEL))
			return -EINVAL;
		rings += s > 0 && stages[s].mode == MR_STAGE_SERIAL_IN_ORDER;
	}
	struct mr_runtime *rt = mr__algo_runtime();
	if (!rt)
		return -errno;

	/* One block: the stages' state, the tokens, the in-order rings. */
	size_t bytes = nstages * sizeof(struct sstage) + max_tokens * sizeof(struct token) +
		       rings * max_tokens * sizeof(struct token *);
	char *mem = calloc(1, bytes);
	if (!mem)
		return -ENOMEM;
	struct pipe p = { .stages = stages, .n = nstages, .cap = max_tokens };
	p.ss = (struct sstage *)mem;
	struct token *tokens = (struct token *)(mem + nstages * sizeof(struct sstage));
	struct token **ring = (struct token **)(tokens + max_tokens);
	for (size_t s = 1; s < nstages; s++)
		if (stages[s].mode == MR_STAGE_SERIAL_IN_ORDER) {
			p.ss[s].ring = ring;
			ring += max_tokens;
		}
	for (size_t i = 0; i < max_tokens; i++) {
		tokens[i].p = &p;
		tokens[i].next = i + 1 < max_tokens ? &tokens[i + 1] : NULL;
	}
	p.free = tokens;
	mr_group_init(&p.group);
	mr__algo_run(rt, root, &p);
	free(mem);
	return p.stopped ? -ECANCELED : 0;
}
