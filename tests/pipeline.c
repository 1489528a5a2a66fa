/*
 * pipeline.c - mr_pipeline (stages as jobs) and mr_pipeline_fibers (stages
 * as fibers on channels).
 *
 * Random pipelines of 1 to 6 stages of every mode, item counts 0, 1, 2 and
 * up to 3000, token bounds 1, 2, 3, 8 and 64, stages that spin a random
 * while so that items overtake each other. Each stage checks that it gets
 * the item the previous stage returned for it, once; a serial stage that
 * it is never entered twice at once; an in-order stage that items come
 * in input order. The items alive (from the input's return to the end of
 * the last stage) are counted with atomics and their maximum must not pass
 * the bound. The input is never called again after it returned NULL, and
 * stopping it early (NULL before the source is exhausted) ends the
 * pipeline cleanly. A quarter of them stop early: one stage returns
 * MR_PIPELINE_STOP for one item (stage 0 instead of an item); then the
 * call must return -ECANCELED, stage 0 must not be called more than once
 * after the stop (the one call that may have started before the pipeline
 * saw it: checked on one worker only, since on two the thread of the
 * stopping stage can be preempted between the test's mark and its return,
 * and the input goes on until the pipeline sees it; a CI run hit that),
 * every item read but the stopped one must go through every
 * stage (in order where in order), the stopped one through no later stage,
 * and the bound still holds. On 1 and 2 workers, from a fiber, a job and
 * a thread.
 */
#include <sched.h>
#include <stdatomic.h>

#include <moirai/moirai.h>

#include "harness.h"
#include "util.h"

#define MAXST 6
#define MAXN 3000

struct ptest {
	size_t n, stop_at, cap;
	unsigned nst, modes[MAXST];
	bool has_stop; /* stage stop_k returns MR_PIPELINE_STOP for item stop_id */
	bool one_worker; /* no call can run while the stopping one returns */
	unsigned stop_k;
	size_t stop_id;
	_Atomic bool stop_sent;
	_Atomic long late_calls, produced; /* input calls after stop_sent; items */
	unsigned spin[MAXST];
	_Atomic long input_calls, after_end;
	bool ended;
	uint64_t seed; /* the input's: it is serial */
	_Atomic long alive, max_alive;
	_Atomic int inside[MAXST];
	size_t next_in_order[MAXST];
	_Atomic unsigned char seen[MAXST][MAXN];
	_Atomic long bad;
	struct mr_stage st[MAXST];
	struct sctx {
		struct ptest *t;
		unsigned k;
	} ctx[MAXST];
};

static void spin(unsigned n)
{
	for (volatile unsigned i = 0; i < n; i++)
		;
}

#define ITEM(id, k) ((void *)(uintptr_t)(((uint64_t)(k) << 32) | ((id) + 1)))

static void note_alive(struct ptest *t, long d)
{
	long a = atomic_fetch_add(&t->alive, d) + d;
	long m = atomic_load(&t->max_alive);
	while (a > m && !atomic_compare_exchange_weak(&t->max_alive, &m, a))
		;
}

static void *stage_fn(void *item, void *arg)
{
	struct sctx *c = arg;
	struct ptest *t = c->t;
	unsigned k = c->k;
	bool serial = t->modes[k] != MR_STAGE_PARALLEL;

	if (serial && atomic_fetch_add(&t->inside[k], 1) != 0)
		atomic_fetch_add(&t->bad, 1);
	if (k == 0) {
		atomic_fetch_add(&t->input_calls, 1);
		if (item)
			atomic_fetch_add(&t->bad, 1);
		if (t->ended)
			atomic_fetch_add(&t->after_end, 1);
		if (atomic_load(&t->stop_sent))
			atomic_fetch_add(&t->late_calls, 1);
		size_t id = atomic_load(&t->input_calls) - 1;
		if (id >= t->n || id >= t->stop_at) {
			t->ended = true;
			atomic_fetch_sub(&t->inside[k], 1);
			return NULL;
		}
		if (t->has_stop && t->stop_k == 0 && id == t->stop_id) {
			atomic_store(&t->stop_sent, true);
			t->ended = true;
			atomic_fetch_sub(&t->inside[k], 1);
			return MR_PIPELINE_STOP;
		}
		atomic_fetch_add(&t->produced, 1);
		if (t->spin[k])
			spin((unsigned)(rnd(&t->seed) % t->spin[k]));
		if (t->nst > 1) /* else the item is through at once */
			note_alive(t, 1);
		atomic_fetch_sub(&t->inside[k], 1);
		return ITEM(id, 0);
	}
	uint64_t v = (uint64_t)(uintptr_t)item;
	size_t id = (size_t)(v & 0xffffffffu) - 1;
	if ((v >> 32) != k - 1 || id >= t->n) {
		atomic_fetch_add(&t->bad, 1);
		id = 0;
	}
	if (atomic_fetch_add(&t->seen[k][id], 1))
		atomic_fetch_add(&t->bad, 1);
	if (t->modes[k] == MR_STAGE_SERIAL_IN_ORDER) {
		/* Increasing (the stopped item leaves a gap); ptest_check
		 * checks that no other is missing. */
		if (t->next_in_order[k] > id)
			atomic_fetch_add(&t->bad, 1);
		t->next_in_order[k] = id + 1;
	}
	if (t->spin[k])
		spin((unsigned)((id * 2654435761u) % t->spin[k]));
	bool stop = t->has_stop && k == t->stop_k && id == t->stop_id;
	if (k == t->nst - 1 || stop)
		note_alive(t, -1);
	if (stop) {
		atomic_store(&t->stop_sent, true);
		if (serial)
			atomic_fetch_sub(&t->inside[k], 1);
		return MR_PIPELINE_STOP;
	}
	if (serial)
		atomic_fetch_sub(&t->inside[k], 1);
	return ITEM(id, k);
}

static struct ptest *ptest_new(uint64_t *seed)
{
	static const size_t ns[] = { 0, 1, 2, 5, 100, 1000, MAXN };
	static const size_t caps[] = { 1, 2, 3, 8, 64 };
	struct ptest *t = calloc(1, sizeof(*t));

	if (!t)
		abort();
	t->n = ns[rnd(seed) % 7];
	t->stop_at = rnd(seed) % 4 == 0 ? rnd(seed) % (t->n + 1) : (size_t)-1;
	t->cap = caps[rnd(seed) % 5];
	t->nst = 1 + (unsigned)(rnd(seed) % MAXST);
	t->seed = rnd(seed) | 1;
	for (unsigned k = 0; k < t->nst; k++) {
		t->modes[k] = k == 0 ? MR_STAGE_SERIAL_IN_ORDER : (unsigned)(rnd(seed) % 3);
		t->spin[k] = rnd(seed) % 2 ? (unsigned)(rnd(seed) % 3000) : 0;
		t->ctx[k] = (struct sctx){ t, k };
		t->st[k] = (struct mr_stage){ t->modes[k], stage_fn, &t->ctx[k] };
	}
	if (rnd(seed) % 2)
		t->modes[0] = t->st[0].mode = MR_STAGE_SERIAL_OUT_OF_ORDER;
	if (t->n && rnd(seed) % 4 == 0) {
		t->has_stop = true;
		t->stop_k = (unsigned)(rnd(seed) % t->nst);
		t->stop_id = rnd(seed) % t->n;
		t->stop_at = (size_t)-1;
	}
	return t;
}

/* The checks after the run: 0 when all held. */
static long ptest_check(struct ptest *t, int r, const char *how)
{
	long bad = atomic_load(&t->bad);
	size_t m = t->n < t->stop_at ? t->n : t->stop_at;

	if (t->has_stop) {
		/* Items 0 .. m-1 were read: the stopped one and those the
		 * input produced before it saw the stop. */
		m = (size_t)atomic_load(&t->produced) + (t->stop_k == 0);
		if (r != -ECANCELED || m <= t->stop_id || atomic_load(&t->after_end) ||
		    (t->one_worker && atomic_load(&t->late_calls) > 1))
			bad++;
	} else if (r != 0 || atomic_load(&t->input_calls) != (long)m + 1 ||
		   atomic_load(&t->after_end)) {
		bad++;
	}
	if (atomic_load(&t->max_alive) > (long)t->cap || atomic_load(&t->alive) != 0)
		bad++;
	for (unsigned k = 1; k < t->nst; k++)
		for (size_t i = 0; i < t->n; i++) {
			bool gone = t->has_stop && i == t->stop_id && k > t->stop_k;
			if (atomic_load(&t->seen[k][i]) != (i < m && !gone))
				bad++;
		}
	if (bad)
		printf("# %s: %u stages, n %zu stop %zd cap %zu stage stop %d at %zu (r %d): "
		       "%ld wrong (max alive %ld)\n",
		       how, t->nst, t->n, (ssize_t)t->stop_at, t->cap,
		       t->has_stop ? (int)t->stop_k : -1, t->stop_id, r, bad,
		       atomic_load(&t->max_alive));
	return bad;
}

struct prun {
	long bad, rounds;
	bool fibers, one_worker;
	long max_seen_full; /* rounds where max alive reached the bound */
};

static void pipelines_run(void *arg)
{
	struct prun *x = arg;
	uint64_t seed = 0x1234567 + (uint64_t)x->fibers;

	for (long i = 0; i < x->rounds; i++) {
		struct ptest *t = ptest_new(&seed);
		t->one_worker = x->one_worker;
		int r = x->fibers ? mr_pipeline_fibers(t->st, t->nst, t->cap, 0)
				  : mr_pipeline(t->st, t->nst, t->cap);
		x->bad += ptest_check(t, r, x->fibers ? "fibers" : "jobs");
		x->max_seen_full += atomic_load(&t->max_alive) == (long)t->cap;
		free(t);
	}
}

static void run_everywhere(bool fibers)
{
	for (unsigned w = 1; w <= 2; w++) {
		mr_runtime_t *rt = make_rt(w);
		struct prun x = { .rounds = scaled(300), .fibers = fibers, .one_worker = w == 1 };
		ASSERT_NONNULL(rt);
		ASSERT_EQ(mr_runtime_install(rt, pipelines_run, &x), 0);
		EXPECT_EQ(x.bad, 0);
		struct actor a;
		actor_start(&a, rt, true, pipelines_run, &x);
		actor_join(&a);
		EXPECT_EQ(x.bad, 0);
		printf("# %u workers: the bound was reached in %ld of %ld pipelines\n", w,
		       x.max_seen_full, 2 * x.rounds);
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	}
	struct prun x = { .rounds = scaled(300), .fibers = fibers };
	pipelines_run(&x); /* from this thread: the default runtime */
	EXPECT_EQ(x.bad, 0);
}

TEST(pipeline_jobs_random)
{
	run_everywhere(false);
}

TEST(pipeline_fibers_random)
{
	run_everywhere(true);
}

TEST(pipeline_bad_arguments)
{
	struct ptest *t = calloc(1, sizeof(*t));
	ASSERT_NONNULL(t);
	struct sctx c = { t, 0 };
	struct mr_stage st[2] = { { MR_STAGE_SERIAL_IN_ORDER, stage_fn, &c },
				  { MR_STAGE_PARALLEL, stage_fn, &c } };

	for (int f = 0; f < 2; f++) {
#define RUN(s, n, cap) (f ? mr_pipeline_fibers(s, n, cap, 0) : mr_pipeline(s, n, cap))
		EXPECT_EQ(RUN(NULL, 1, 1), -EINVAL);
		EXPECT_EQ(RUN(st, 0, 1), -EINVAL);
		EXPECT_EQ(RUN(st, 2, 0), -EINVAL);
		EXPECT_EQ(RUN(st, 2, MR_PIPELINE_TOKENS_MAX + 1), -EINVAL);
		EXPECT_EQ(RUN(st, MR_PIPELINE_STAGES_MAX + 1, 1), -EINVAL);
		st[0].mode = MR_STAGE_PARALLEL;
		EXPECT_EQ(RUN(st, 2, 1), -EINVAL);
		st[0].mode = 7;
		EXPECT_EQ(RUN(st, 2, 1), -EINVAL);
		st[0].mode = MR_STAGE_SERIAL_IN_ORDER;
		st[1].fn = NULL;
		EXPECT_EQ(RUN(st, 2, 1), -EINVAL);
		st[1].fn = stage_fn;
#undef RUN
	}
	EXPECT_EQ(atomic_load(&t->input_calls), 0);
	free(t);
}

TEST_HARNESS_MAIN
