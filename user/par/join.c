/*
 * join.c - mr_join: binary fork-join with latent frames and a heartbeat.
 *
 * mr_join does not push b where thieves could see it. Its frame (struct
 * mr__jframe, b and its argument, then the job header a promotion fills
 * in) lives in the caller's stack frame and is recorded in the worker's
 * latent stack (mr__worker.ls, owner-only memory, plain stores): when a()
 * returns and nobody promoted the frame meanwhile, b runs inline. That
 * fast path is inlined from <moirai/par.h> into the caller on x86-64 (the
 * library's mr_join below does the same for other targets and callers that
 * opt out): a TLS load, five stores, two decrements and three predictable
 * branches beyond the calls, and a and b become direct calls where the
 * caller names them. This is the heartbeat scheduling of Acar et al.
 * (PLDI 2018) as Spice applies it: every so many joins (adapted so that
 * it looks about MR__BEAT_LOOKS times per interval) the worker reads its
 * cycle counter, and once per interval (MOIRAI_BEAT_US, 50 us by
 * default; also at once when a thief asks the owner to share) it promotes
 * its OLDEST latent frame - the biggest piece of work - into the split
 * deque, publishes it and wakes a sleeping worker. The same look polls the
 * worker's I/O and timers, so a fork-join tree never starves them (issue
 * 19).
 *
 * A promoted frame is joined as before: the pop after a() hands the header
 * straight back if nobody stole it, else the worker runs other work until
 * the thief's seq_cst store of `done`, sleeping if there is none (the thief
 * then wakes it by name). Jobs that a() left above it (group tasks it
 * spawned and did not wait for) are run first.
 *
 * The cost: work is only shared once per interval per worker, so a thief
 * waits up to one interval for its first job, and a() that runs long
 * without joining keeps its latent frames to itself (as the deque's private
 * part does). A context whose thread blocks promotes all its latent frames
 * first (mr__worker_block()), and one with latent frames never parks its
 * fiber (mr__pinned()). Deeper than MR__LAT_CAP, joins push on the deque.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>

#include <moirai/par.h>

#include "../sched/sched.h"

/*
 * state: 0 while b runs, JOIN_DONE once it returned, or the address of the
 * owner once the owner waits for it (it then needs a wake-up).
 */
#define JOIN_DONE ((uintptr_t)1)

struct join_job {
	/* struct mr__jframe's public part (<moirai/par.h>): */
	void (*fn)(void *);
	void *arg;
	struct mr__lstack *ls; /* latent: the stack that holds it */
	/* and its priv_: */
	struct mr__job hdr;
	_Atomic uintptr_t state;
	uint32_t idx; /* deque index it was pushed at */
};

_Static_assert(sizeof(struct join_job) == sizeof(struct mr__jframe), "join_job is a jframe");
_Static_assert(offsetof(struct join_job, fn) == offsetof(struct mr__jframe, fn) &&
		       offsetof(struct join_job, arg) == offsetof(struct mr__jframe, arg) &&
		       offsetof(struct join_job, ls) == offsetof(struct mr__jframe, ls) &&
		       offsetof(struct join_job, hdr) == offsetof(struct mr__jframe, priv_),
	       "join_job is a jframe");
_Static_assert(_Alignof(struct join_job) <= _Alignof(struct mr__jframe), "jframe alignment");

static inline struct join_job *job_of(struct mr__job *job)
{
	return (struct join_job *)((char *)job - offsetof(struct join_job, hdr));
}

static inline struct mr__worker *worker_of(struct mr__lstack *ls)
{
	return (struct mr__worker *)((char *)ls - offsetof(struct mr__worker, ls));
}

uint64_t mr__beat_ticks;
uint64_t mr__yield_ticks;

_Static_assert(sizeof(struct join_job) <= MR__JOB_BLOCK, "join job fits a block");

static void join_exec(struct mr__job *job, struct mr__worker *w)
{
	struct join_job *j = job_of(job);

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

static pthread_once_t beat_once = PTHREAD_ONCE_INIT;

/* Ticks per interval: the counter measured against the clock over 200 us. */
static void beat_calibrate(void)
{
	uint64_t us = 50;
	const char *s = getenv("MOIRAI_BEAT_US");

	if (s && *s) {
		char *end;
		unsigned long v = strtoul(s, &end, 10);
		if (!*end && v > 0 && v <= 1000000)
			us = v;
	}
	uint64_t yus = 100;
	s = getenv("MOIRAI_YIELD_US");
	if (s && *s) {
		char *end;
		unsigned long v = strtoul(s, &end, 10);
		if (!*end && v <= 1000000)
			yus = v;
	}
	uint64_t t0 = mr__now_ns(), c0 = mr__cycles(), t1, c1;
	do {
		t1 = mr__now_ns();
		c1 = mr__cycles();
	} while (t1 - t0 < 200000);
	__atomic_store_n(&mr__beat_ticks, (c1 - c0) * us * 1000 / (t1 - t0), __ATOMIC_RELAXED);
	__atomic_store_n(&mr__yield_ticks, (c1 - c0) * yus * 1000 / (t1 - t0), __ATOMIC_RELAXED);
}

void mr__beat_init(void)
{
	pthread_once(&beat_once, beat_calibrate);
}

/*
 * Promote the oldest latent frame of w: push its header, make it (and
 * anything private below it) stealable, wake a sleeper. False when there is
 * none or the deque is full.
 */
static bool promote(struct mr__worker *w)
{
	/* bot > top while a promoted frame's join is on its way out. */
	if (w->ls.bot >= w->ls.top)
		return false;
	struct join_job *j = (struct join_job *)w->ls.frame[w->ls.bot];
	j->hdr.exec = join_exec;
	atomic_init(&j->state, 0);
	j->idx = w->dq.head;
	int r = mr__deque_push(&w->dq, &j->hdr);
	if (r == MR__PUSH_FULL)
		return false;
	w->ls.bot++;
	if (r == MR__PUSH_PRIVATE)
		mr__deque_publish_to(&w->dq, w->dq.head);
	mr__notify(w->rt);
	return true;
}

void mr__promote_all(struct mr__worker *w)
{
	while (promote(w))
		;
}

/*
 * Scale the countdown so that the next looks come about MR__BEAT_LOOKS
 * times per interval: `gap` ticks passed since the last look. Up by at most
 * 2x a look (one short gap says little), down at once.
 */
static uint32_t beat_countdown(uint32_t n, uint64_t gap, uint64_t ticks)
{
	uint64_t target = ticks / MR__BEAT_LOOKS;

	if (gap < target / 2)
		return n < MR__BEAT_JOINS_MAX / 2 ? 2 * n : MR__BEAT_JOINS_MAX;
	if (gap > 2 * target) {
		/* n * target <= 4096 * ticks: no overflow for any sane interval. */
		uint64_t m = gap ? (uint64_t)n * target / gap : n;
		return m > 1 ? (uint32_t)m : 1;
	}
	return n;
}

/*
 * Every w->beat_n joins. A worker deep in fork-join (a fiber's
 * mr_join: its frames never return to the worker loop until the whole tree
 * is done) still reaps its I/O and fires its timers here, and the fibers
 * those ready land on top of the deque, so the next promoted join's pop
 * runs them first, or the worker loop does.
 */
__attribute__((noinline, cold)) void mr__beat(struct mr__worker *w)
{
	const struct mr__io_ops *io = mr__worker_io(w);
	uint32_t head = w->dq.head;

	w->ls.beat = w->beat_n; /* for the joins of what runs here */
	if (io && atomic_load_explicit(&w->io_inflight, memory_order_relaxed))
		io->poll(w);
	if (atomic_load_explicit(&w->tnext, memory_order_relaxed) >= 0)
		mr__timers_run(w);
	/*
	 * What they readied was pushed on our deque. The joins of a tree
	 * whose frames stay latent never pop it (the old mr_join found it
	 * above b): run it now, with our caller's frame still latent, so a
	 * job that blocks here promotes it first.
	 */
	if (unlikely(w->dq.head != head)) {
		w->pinned++; /* the jobs we run must not park a fiber we run on */
		while ((int32_t)(w->dq.head - head) > 0) {
			struct mr__job *job = mr__deque_pop(&w->dq);
			if (!job)
				break;
			mr__job_run(w, job);
		}
		w->pinned--;
	}
	uint64_t now = mr__cycles();
	uint64_t ticks = __atomic_load_n(&mr__beat_ticks, __ATOMIC_RELAXED);
	if (w->beat_look)
		w->beat_n = beat_countdown(w->beat_n, now - w->beat_look, ticks);
	w->beat_look = now;
	w->ls.beat = w->beat_n;
	/* relaxed: a thief asked to share (it is awake and looking). */
	if (now - w->beat_last >= ticks ||
	    atomic_load_explicit(&w->dq.movesplit, memory_order_relaxed)) {
		w->beat_last = now;
		promote(w);
	}
	if (unlikely(atomic_load_explicit(&w->scx_on, memory_order_relaxed)))
		mr__scx_refresh(w);
	mr__cpu_yield_due(w, now);
}

/* After a() returned: run b here if nobody took it, else finish the slow way. */
static void join_finish(struct mr__worker *w, struct join_job *j)
{
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

void mr__join_beat(struct mr__lstack *ls)
{
	mr__beat(worker_of(ls));
}

/*
 * The frame at latent index ls->top was promoted, and so were all below it
 * (oldest first). The latent stack is ls->top deep now.
 */
void mr__join_promoted(struct mr__lstack *ls)
{
	ls->bot = ls->top;
	join_finish(worker_of(ls), (struct join_job *)ls->frame[ls->top]);
}

/* Latent stack full (recursion deeper than MR__LAT_CAP): push b on the deque. */
__attribute__((noinline)) static void join_deque(struct mr__worker *w, void (*a)(void *),
						 void *a_arg, struct join_job *j)
{
	j->hdr.exec = join_exec;
	atomic_init(&j->state, 0);
	j->idx = w->dq.head;
	if (unlikely(!mr__push(w, &j->hdr))) {
		/* Deque full: run both halves here. */
		a(a_arg);
		j->fn(j->arg);
		return;
	}
	w->pinned++; /* while b is in the deque: see sched.h */
	a(a_arg);
	/* Same worker: a pinned fiber does not move. */
	w = mr__self();
	w->pinned--;
	join_finish(w, j);
}

/*
 * The library's mr_join: what the inline fast path (<moirai/par.h>) falls
 * back to, and what a caller built with MR_NO_INLINE_JOIN (or taking its
 * address) calls. The same protocol as the fast path, plus the rare cases.
 */
void(mr_join)(void (*a)(void *), void *a_arg, void (*b)(void *), void *b_arg)
{
	struct mr__worker *w = mr__self();

	if (unlikely(!w || !a || !b)) {
		join_slow(a, a_arg, b, b_arg);
		return;
	}
	struct join_job jb;
	jb.fn = b;
	jb.arg = b_arg;
	jb.ls = &w->ls;
	uint32_t t = w->ls.top;
	if (unlikely(t >= MR__LAT_CAP)) {
		join_deque(w, a, a_arg, &jb);
		return;
	}
	struct mr__jframe *f = (struct mr__jframe *)&jb;
	w->ls.frame[t] = f;
	w->ls.top = t + 1;
	if (unlikely(--w->ls.beat == 0))
		mr__join_beat(&w->ls);
	a(a_arg);
	/* See mr__join_inline(): same worker, our frame on top. */
	struct mr__lstack *ls = jb.ls;
	if (likely(--ls->top >= ls->bot))
		jb.fn(jb.arg);
	else
		mr__join_promoted(ls);
}
