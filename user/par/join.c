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

/*
 * state: 0 while b runs, JOIN_DONE once it returned, or the address of the
 * owner once the owner waits for it (it then needs a wake-up).
 */
#define JOIN_DONE ((uintptr_t)1)

struct join_job {
	struct mr__job hdr;
	void (*fn)(void *);
	void *arg;
	_Atomic uintptr_t state;
	uint32_t idx; /* deque index it was pushed at */
};

_Static_assert(sizeof(struct join_job) <= MR__JOB_BLOCK, "join job fits a block");

static void join_exec(struct mr__job *job, struct mr__worker *w)
{
	struct join_job *j = (struct join_job *)job;

	(void)w;
	j->fn(j->arg);
	/* seq_cst: pairs with the owner's CAS in join_wait() and its idle-bit
	 * RMW + fence + load of state in park(). After this j may be gone (it
	 * lives in the owner's frame); `old` names whom to wake. */
	uintptr_t old = atomic_exchange_explicit(&j->state, JOIN_DONE, memory_order_seq_cst);
	if (old != 0)
		mr__wake_worker((struct mr__worker *)old, MR__TOK_LATCH);
}

static bool join_done(void *arg)
{
	struct join_job *j = arg;
	/* acquire: b's effects are visible once we see it done. */
	return atomic_load_explicit(&j->state, memory_order_acquire) == JOIN_DONE;
}

/* b was stolen: run other work until the thief has finished it. */
__attribute__((noinline)) static void join_wait(struct mr__worker *w, struct join_job *j)
{
	uintptr_t expect = 0;

	/* Tell the thief whom to wake; if it finished already, we are done. */
	if (!atomic_compare_exchange_strong_explicit(&j->state, &expect, (uintptr_t)w,
						     memory_order_seq_cst, memory_order_acquire))
		return;
	mr__work_until(w, join_done, j);
}

struct outside_join {
	void (*a)(void *), *a_arg, (*b)(void *), *b_arg;
};

static void outside_join_run(void *arg)
{
	struct outside_join *oj = arg;
	mr_join(oj->a, oj->a_arg, oj->b, oj->b_arg);
}

/* The rare paths of mr_join, out of line to keep its frame small. */
__attribute__((noinline, cold)) static void join_slow(void (*a)(void *), void *a_arg,
						    void (*b)(void *), void *b_arg)
{
	if (!a || !b)
		mr__die("mr_join", "NULL function (a=%p, b=%p)", (void *)a, (void *)b);
	struct outside_join oj = { a, a_arg, b, b_arg };
	mr__run_outside(mr__default_runtime("mr_join"), outside_join_run, &oj);
}

/*
 * b is not on top of the deque: a() left jobs above it (run them), b was
 * stolen (wait for it), or a nested wait on this worker already popped and
 * ran it (then jobs older than b may lie below: leave them to their owners).
 */
__attribute__((noinline)) static void join_pop_slow(struct mr__worker *w, struct join_job *j)
{
	for (;;) {
		if (join_done(j))
			return;
		struct mr__job *job = mr__deque_pop(&w->dq);
		if (job == &j->hdr) {
			j->fn(j->arg);
			return;
		}
		if (!job)
			break; /* everything below head was stolen, b included */
		w->pinned++; /* b is still out */
		mr__job_run(w, job);
		w->pinned--;
	}
	join_wait(w, j);
}

/*
 * A worker deep in fork-join (a fiber's mr_join: its frames never return
 * to the worker loop until the whole tree is done) still reaps its I/O
 * and fires its timers: every MR__IO_INTERVAL joins it polls its ring and
 * runs its due timers, and the fibers those ready land on top of b, so
 * join_pop_slow() runs them before b, at once. A request's fiber, or a
 * sleeper, waits one interval of joins, not a whole computation.
 */
__attribute__((noinline)) static void join_poll(struct mr__worker *w)
{
	const struct mr__io_ops *io = mr__worker_io(w);

	w->io_tick = 0;
	if (io && atomic_load_explicit(&w->io_inflight, memory_order_relaxed))
		io->poll(w);
	if (atomic_load_explicit(&w->tnext, memory_order_relaxed) >= 0)
		mr__timers_run(w);
}

/* After a() returned: run b here if nobody took it, else finish the slow way. */
static inline __attribute__((always_inline)) void join_finish(struct join_job *j)
{
	/* Reloaded rather than kept across a(): no callee-saved register in
	 * mr_join's frame. a() ran on this thread, so it is the same worker. */
	struct mr__worker *w = mr__self();

	if (unlikely(++w->io_tick >= MR__IO_INTERVAL))
		join_poll(w);

	/*
	 * b is ours to run if it is still on top. A nested wait inside a() may
	 * have popped and run b already (state is then DONE, written by this
	 * thread: relaxed) and a later push may have reused its index.
	 */
	if (likely(atomic_load_explicit(&j->state, memory_order_relaxed) == 0) &&
	    likely(mr__deque_pop_at(&w->dq, j->idx))) {
		j->fn(j->arg);
		return;
	}
	join_pop_slow(w, j);
}

/* The push needs more than a store: a full deque, or a thief asked to share. */
__attribute__((noinline)) static void join_push_slow(struct mr__worker *w, void (*a)(void *),
						     void *a_arg, struct join_job *j)
{
	if (unlikely(!mr__push(w, &j->hdr))) {
		/* Deque full: run both halves here. */
		a(a_arg);
		j->fn(j->arg);
		return;
	}
	w->pinned++; /* while b is in the deque: see sched.h */
	a(a_arg);
	mr__self()->pinned--;
	join_finish(j);
}

void mr_join(void (*a)(void *), void *a_arg, void (*b)(void *), void *b_arg)
{
	struct mr__worker *w = mr__self();

	if (unlikely(!w || !a || !b)) {
		join_slow(a, a_arg, b, b_arg);
		return;
	}
	struct join_job jb;
	jb.hdr.exec = join_exec;
	jb.fn = b;
	jb.arg = b_arg;
	atomic_init(&jb.state, 0);
	jb.idx = w->dq.head;
	if (unlikely(!mr__deque_push_quiet(&w->dq, &jb.hdr))) {
		join_push_slow(w, a, a_arg, &jb);
		return;
	}
	w->pinned++; /* while b is in the deque: see sched.h */
	a(a_arg);
	/* Same worker: a pinned fiber does not move. */
	mr__self()->pinned--;
	join_finish(&jb);
}
