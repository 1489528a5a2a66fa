/*
 * join.c - mr_join: binary fork-join.
 *
 * The second half's job header lives in mr_join's frame. It is pushed on the
 * worker's deque, the first half runs, and the pop that follows almost always
 * hands the header straight back (a private pop: no atomic RMW, no fence),
 * so b runs inline. Jobs that a() left above it (group tasks it spawned and
 * did not wait for) are run first. If the pop finds everything stolen, b is
 * running elsewhere: the worker runs other work until the thief's
 * seq_cst store of `done`, sleeping if there is none (the thief then wakes
 * it by name).
 */
#include <moirai/par.h>

#include "../sched/sched.h"

struct join_job {
	struct mr__job hdr;
	void (*fn)(void *);
	void *arg;
	struct mr__worker *owner;
	_Atomic uint32_t done;
};

_Static_assert(sizeof(struct join_job) <= MR__JOB_BLOCK, "join job fits a block");

static void join_exec(struct mr__job *job, struct mr__worker *w)
{
	struct join_job *j = (struct join_job *)job;
	struct mr__worker *owner = j->owner;

	(void)w;
	j->fn(j->arg);
	/* seq_cst: pairs with the owner's idle-bit RMW + fence + load of done
	 * in park(). After this store j may be gone (it lives in the owner's
	 * frame): touch only `owner`. */
	atomic_store_explicit(&j->done, 1, memory_order_seq_cst);
	mr__wake_worker(owner, MR__TOK_LATCH);
}

static bool join_done(void *arg)
{
	struct join_job *j = arg;
	/* acquire: b's effects are visible once we see done. */
	return atomic_load_explicit(&j->done, memory_order_acquire) != 0;
}

struct outside_join {
	void (*a)(void *), *a_arg, (*b)(void *), *b_arg;
};

static void outside_join_run(void *arg)
{
	struct outside_join *oj = arg;
	mr_join(oj->a, oj->a_arg, oj->b, oj->b_arg);
}

void mr_join(void (*a)(void *), void *a_arg, void (*b)(void *), void *b_arg)
{
	struct mr__worker *w = mr__self();

	if (unlikely(!a || !b))
		mr__die("mr_join", "NULL function (a=%p, b=%p)", (void *)a, (void *)b);
	if (unlikely(!w)) {
		struct outside_join oj = { a, a_arg, b, b_arg };
		mr__run_outside(mr__default_runtime("mr_join"), outside_join_run, &oj);
		return;
	}

	struct join_job jb = { .hdr = { .exec = join_exec }, .fn = b, .arg = b_arg, .owner = w };
	atomic_init(&jb.done, 0);
	if (unlikely(!mr__push(w, &jb.hdr))) {
		a(a_arg); /* deque full: run both here */
		b(b_arg);
		return;
	}
	a(a_arg);
	for (;;) {
		struct mr__job *job = mr__deque_pop(&w->dq);
		if (likely(job == &jb.hdr)) {
			b(b_arg);
			return;
		}
		if (!job)
			break; /* everything below head was stolen, b included */
		job->exec(job, w);
	}
	mr__work_until(w, join_done, &jb);
}
