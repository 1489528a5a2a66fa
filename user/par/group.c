/*
 * group.c - task groups: spawn any number of tasks, wait for all of them.
 *
 * The group is one 32-bit state word - a 30-bit count of unfinished tasks,
 * a LOCK bit and a WAITERS bit - and a list of waiters. A round of the group
 * runs from the count leaving 0 to the count reaching 0 again; the waiters
 * of a round are exactly the nodes on the list when it ends.
 *
 *  - Spawn adds 1 to the count. A task that finishes subtracts 1 with a CAS,
 *    unless it would end the round (count 1) while WAITERS or LOCK is set:
 *    then it takes LOCK first, and one CAS both ends the round and drops
 *    LOCK and WAITERS (state 0), after it unlinked the list.
 *  - A waiter takes LOCK (only while the count is non-zero), pushes its node
 *    and sets WAITERS as it drops LOCK; it is released by its node's flag,
 *    or returns at once when it sees state 0.
 * So the count reaching 0 and the hand-over of the round's waiters are one
 * atomic step: a waiter that comes later - even one that saw the round end
 * and spawned again - is on the next round's list, never released with the
 * old one. And state 0 means that nobody touches the group any more (the
 * round's last access to it is the CAS that writes 0), so a waiter that saw
 * 0 may free or reuse the group at once. Invariant: count 0 <=> state 0.
 *
 * A waiting worker keeps running work (its own group's tasks first: they are
 * on top of its deque) and sleeps in the scheduler when there is none; a
 * waiting thread sleeps on a futex in its waiter node. A waiter that finds
 * LOCK held spins: the holder only links a node or unlinks the list.
 *
 * Cost of a task spawned and waited for on one worker: the spawn's
 * fetch_add, a pooled block, a private deque push and pop; the waiter that
 * pops its group's own tasks drops their count in one step for all of them
 * (see mr_group_wait()), so only a task that someone else runs pays a CAS
 * of its own.
 *
 * Cancellation is a word of its own beside the state, not a bit of it, so
 * the fast paths above keep their shape: mr_group_cancel() sets it, a task
 * reads it (relaxed) as it starts and skips its function when it (or an
 * ancestor's, for a group made with mr_group_init_nested) is set, and the
 * mark stays until a wait returns it. The task that ends a round with
 * waiters reads it under LOCK and flags each waiter's node "cancelled" (2)
 * instead of "done" (1); a waiter that found no round running, or ended
 * the round itself, reads the mark directly. Cancelled tasks still go
 * through the deque and the count (a skipped task costs a pop and a CAS):
 * the count stays the one truth about when a round ends.
 *
 * Behaves badly: a group shared by waiters on many threads serialises them
 * on LOCK; more than GROUP_MAX_TASKS unfinished tasks are refused; a cancel
 * racing a wait's return may be reported by that wait or by the next one.
 */
#include <stdlib.h>

#include <moirai/par.h>

#include "../sched/sched.h"

#define GROUP_MAGIC 0x6d72677270000000ull
#define WAITERS 0x80000000u
#define LOCK 0x40000000u
#define COUNT_MASK 0x3fffffffu
/* Spawn refuses beyond this: concurrent spawners that overshoot before
 * they undo can never carry the count into LOCK. */
#define GROUP_MAX_TASKS 0x20000000u

struct gwaiter {
	struct gwaiter *next;
	struct mr__worker *worker; /* NULL: a thread, woken through `flag` */
	_Atomic uint32_t flag;
};

struct group {
	uint64_t magic;
	_Atomic uint32_t state; /* count | LOCK | WAITERS */
	_Atomic uint32_t cancel; /* 1: cancelled, until a wait returns it */
	struct gwaiter *waiters; /* under LOCK */
	struct group *parent;	 /* mr_group_init_nested; NULL otherwise */
};

_Static_assert(sizeof(struct group) == sizeof(mr_group_t), "group layout");

struct group_task {
	struct mr__job hdr;
	void (*fn)(void *);
	void *arg;
	struct group *g;
	uint32_t heap; /* allocated with malloc (spawned from outside) */
};

_Static_assert(sizeof(struct group_task) <= MR__JOB_BLOCK, "group task fits a block");

/*
 * Test hook (tests/group.c): called by the task that ends a round with
 * waiters, holding LOCK, before the round ends. NULL outside tests.
 */
__attribute__((visibility("hidden"))) void (*mr__test_group_last_hook)(void);

static struct group *to_group(mr_group_t *g)
{
	return (struct group *)g;
}

void mr_group_init(mr_group_t *gp)
{
	struct group *g = to_group(gp);

	if (!gp)
		mr__die("mr_group_init", "NULL group");
	g->magic = GROUP_MAGIC;
	atomic_init(&g->state, 0);
	atomic_init(&g->cancel, 0);
	g->waiters = NULL;
	g->parent = NULL;
}

void mr_group_init_nested(mr_group_t *gp, mr_group_t *parent)
{
	if (!gp)
		mr__die("mr_group_init_nested", "NULL group");
	if (parent && to_group(parent)->magic != GROUP_MAGIC)
		mr__die("mr_group_init_nested", "parent not initialised");
	mr_group_init(gp);
	to_group(gp)->parent = parent ? to_group(parent) : NULL;
}

/* Whether g or one of its ancestors is cancelled. relaxed: the mark orders
 * nothing a skipped task would read (mr_group_cancelled() acquires). */
static inline bool group_is_cancelled(const struct group *g)
{
	do {
		if (unlikely(atomic_load_explicit(&g->cancel, memory_order_relaxed)))
			return true;
		g = g->parent;
	} while (unlikely(g != NULL));
	return false;
}

int mr_group_cancel(mr_group_t *gp)
{
	struct group *g = to_group(gp);

	if (!gp || g->magic != GROUP_MAGIC)
		return -EINVAL;
	/* release: pairs with the acquire in mr_group_cancelled(), so a task
	 * that sees the mark sees what the canceller wrote before it. */
	atomic_store_explicit(&g->cancel, 1, memory_order_release);
	return 0;
}

bool mr_group_cancelled(const mr_group_t *gp)
{
	const struct group *g = (const struct group *)gp;

	if (!gp || g->magic != GROUP_MAGIC)
		return false;
	for (; g; g = g->parent)
		/* acquire: pairs with the release store in mr_group_cancel(). */
		if (atomic_load_explicit(&g->cancel, memory_order_acquire))
			return true;
	return false;
}

/* The result of a wait whose round is over and that was not flagged: the
 * mark (which it clears: the wait returns it), or an ancestor's. */
static int wait_result(struct group *g)
{
	if (likely(!atomic_load_explicit(&g->cancel, memory_order_relaxed) && !g->parent))
		return 0;
	if (atomic_exchange_explicit(&g->cancel, 0, memory_order_relaxed))
		return -ECANCELED;
	return g->parent && group_is_cancelled(g->parent) ? -ECANCELED : 0;
}

/* Release the waiters of an ended round with `flag` (1 done, 2 cancelled).
 * g may be gone: only the nodes (alive until flagged) are touched. */
static void wake_list(struct gwaiter *list, uint32_t flag)
{
	while (list) {
		struct gwaiter *next = list->next;
		struct mr__worker *w = list->worker;
		/* seq_cst: pairs with the sleeping worker's idle-bit RMW + fence +
		 * load of flag (park()); for threads, with the futex wait. After
		 * it the node may be gone: next and w were read before. */
		atomic_store_explicit(&list->flag, flag, memory_order_seq_cst);
		if (w)
			mr__wake_worker(w, MR__TOK_LATCH);
		else
			mr__futex_wake(&list->flag, 1);
		list = next;
	}
}

/* Take LOCK; the caller holds a count or saw one. Returns the state with LOCK. */
static uint32_t take_lock(struct group *g, uint32_t s)
{
	unsigned spins = 0;

	for (;;) {
		if (s & LOCK) {
			mr__backoff(&spins);
			s = atomic_load_explicit(&g->state, memory_order_relaxed);
			continue;
		}
		/* acquire: pairs with the release that dropped LOCK (the list). */
		if (atomic_compare_exchange_weak_explicit(
			&g->state, &s, s | LOCK, memory_order_acquire, memory_order_relaxed))
			return s | LOCK;
	}
}

/* n finished tasks would end the round with waiters or a waiter at the lock. */
__attribute__((noinline)) static void finish_last(struct group *g, uint32_t s, uint32_t n)
{
	struct gwaiter *list;

	s = take_lock(g, s);
	if (unlikely(mr__test_group_last_hook))
		mr__test_group_last_hook();
	list = g->waiters; /* stable while we hold LOCK; NULL without WAITERS */
	uint32_t flag = list && group_is_cancelled(g) ? 2 : 1;
	for (;;) {
		if ((s & COUNT_MASK) == n) {
			g->waiters = NULL;
			/* acq_rel: releases this task's effects and the unlinking,
			 * acquires every other task's release decrement, so the
			 * waiters flagged below see them all. The last access to g. */
			if (atomic_compare_exchange_weak_explicit(
				&g->state, &s, 0, memory_order_acq_rel, memory_order_relaxed)) {
				/* The round ended cancelled: its waiters return
				 * the mark, so clear it here, while they still wait
				 * (g is alive: none of them has returned), and
				 * never after one has: a waiter that returned may
				 * start and cancel the next round, whose mark a
				 * late clear would erase (its tasks would run). */
				if (flag == 2)
					atomic_store_explicit(&g->cancel, 0, memory_order_relaxed);
				wake_list(list, flag);
				return;
			}
			g->waiters = list;
		} else {
			/* Spawned into meanwhile: the round goes on; its new last
			 * task ends it. release: as in group_finish(). */
			if (atomic_compare_exchange_weak_explicit(&g->state, &s, (s - n) & ~LOCK,
								  memory_order_release,
								  memory_order_relaxed))
				return;
		}
	}
}

/* n tasks of g finished (n <= their count: each is still counted). */
static inline void group_finish(struct group *g, uint32_t n)
{
	uint32_t s = atomic_load_explicit(&g->state, memory_order_relaxed);

	for (;;) {
		if (unlikely((s & COUNT_MASK) == n && (s & (WAITERS | LOCK)))) {
			finish_last(g, s, n);
			return;
		}
		/* release: the tasks' effects happen before the acquire of whoever
		 * sees the count lower (a waiter's load of state 0, or the
		 * acq_rel CAS that ends the round). */
		if (atomic_compare_exchange_weak_explicit(
			&g->state, &s, s - n, memory_order_release, memory_order_relaxed))
			return;
	}
}

static void group_task_exec(struct mr__job *job, struct mr__worker *w)
{
	struct group_task *t = (struct group_task *)job;
	void (*fn)(void *) = t->fn;
	void *arg = t->arg;
	struct group *g = t->g;

	if (t->heap)
		free(t);
	else
		mr__job_free(w, t);
	if (likely(!group_is_cancelled(g)))
		fn(arg);
	group_finish(g, 1);
}

/* From outside any runtime: a malloc'd task for the default runtime. */
__attribute__((noinline, cold)) static int spawn_outside(struct group *g, void (*fn)(void *),
							 void *arg)
{
	struct mr_runtime *rt = mr__default_runtime_try();
	struct group_task *t;

	if (!rt)
		return -errno; /* nothing counted */
	t = malloc(sizeof(*t));
	if (!t)
		return -ENOMEM;
	/* relaxed: as in mr_group_spawn(). */
	uint32_t old = atomic_fetch_add_explicit(&g->state, 1, memory_order_relaxed);
	if (unlikely((old & COUNT_MASK) >= GROUP_MAX_TASKS)) {
		atomic_fetch_sub_explicit(&g->state, 1, memory_order_relaxed);
		free(t);
		return -EOVERFLOW;
	}
	t->hdr.exec = group_task_exec;
	t->fn = fn;
	t->arg = arg;
	t->g = g;
	t->heap = 1;
	mr__inject(rt, &t->hdr);
	return 0;
}

/* Too many unfinished tasks: undo the count (it cannot end the round:
 * it stays far above 1). */
__attribute__((noinline, cold)) static int spawn_refused(struct group *g)
{
	atomic_fetch_sub_explicit(&g->state, 1, memory_order_relaxed);
	return -EOVERFLOW;
}

/* The deque needs its slow path (a thief asked to share, or a lap check). */
__attribute__((noinline)) static void spawn_push(struct mr__worker *w, struct group_task *t)
{
	if (unlikely(!mr__push(w, &t->hdr))) {
		MR__STAT_ADD(w->st, jobs_run, 1);
		MR_PROBE3(job_start, t, w->idx, group_task_exec);
		group_task_exec(&t->hdr, w); /* deque full: run it now */
		MR_PROBE2(job_end, t, w->idx);
	}
}

/*
 * The fast path, from a worker: no call but the pool's refill. It counts
 * the task before it allocates (the pool cannot fail: it aborts).
 */
/* A task of g popped by a waiter of g: run it; its count is the waiter's to drop. */
static inline void run_own(struct group *g, struct group_task *t, struct mr__worker *w)
{
	void (*fn)(void *) = t->fn;
	void *arg = t->arg;

	if (t->heap)
		free(t);
	else
		mr__job_free(w, t);
	MR__STAT_ADD(w->st, jobs_run, 1);
	MR_PROBE3(job_start, t, w->idx, group_task_exec);
	if (likely(!group_is_cancelled(g)))
		fn(arg);
	MR_PROBE2(job_end, t, w->idx);
}

int mr_group_spawn(mr_group_t *gp, void (*fn)(void *), void *arg)
{
	struct group *g = to_group(gp);
	struct mr__worker *w = mr__self();

	if (unlikely(!gp || !fn || g->magic != GROUP_MAGIC))
		return -EINVAL;
	if (unlikely(!w))
		return spawn_outside(g, fn, arg);
	/* relaxed: the task is published by the deque (or run here); its
	 * finish is ordered by the release CAS in group_finish(). */
	uint32_t old = atomic_fetch_add_explicit(&g->state, 1, memory_order_relaxed);
	if (unlikely((old & COUNT_MASK) >= GROUP_MAX_TASKS))
		return spawn_refused(g);
	struct group_task *t = mr__job_alloc(w);
	t->hdr.exec = group_task_exec;
	t->fn = fn;
	t->arg = arg;
	t->g = g;
	t->heap = 0;
	if (unlikely(!mr__deque_push_quiet(&w->dq, &t->hdr)))
		spawn_push(w, t);
	return 0;
}

/* Add n to g's waiters, unless the round is over (state 0). */
static bool enqueue_waiter(struct group *g, struct gwaiter *n)
{
	/* acquire: seeing 0 is seeing the round end (the tasks' effects). */
	uint32_t s = atomic_load_explicit(&g->state, memory_order_acquire);
	unsigned spins = 0;

	for (;;) {
		if (s == 0)
			return false;
		if (s & LOCK) {
			mr__backoff(&spins);
			s = atomic_load_explicit(&g->state, memory_order_acquire);
			continue;
		}
		/* acquire: pairs with the release that dropped LOCK. A task's
		 * finish that would take the count to 0 now waits for LOCK. */
		if (atomic_compare_exchange_weak_explicit(
			&g->state, &s, s | LOCK, memory_order_acquire, memory_order_acquire))
			break;
	}
	n->next = g->waiters;
	g->waiters = n;
	/* Drop LOCK and set WAITERS in one add: only LOCK's holder changes
	 * either bit, so s (read before we took it) tells whether WAITERS is
	 * set; the count moves under us and the add keeps it. release: pairs
	 * with take_lock()'s acquire (the link of n). */
	atomic_fetch_add_explicit(&g->state, (s & WAITERS ? 0u : WAITERS) - LOCK,
				  memory_order_release);
	return true;
}

static bool waiter_flagged(void *arg)
{
	struct gwaiter *n = arg;
	/* acquire: pairs with the seq_cst store in wake_list(). */
	return atomic_load_explicit(&n->flag, memory_order_acquire) != 0;
}

int mr_group_wait(mr_group_t *gp)
{
	struct group *g = to_group(gp);
	struct mr__worker *w = mr__self();

	if (!gp || g->magic != GROUP_MAGIC)
		return -EINVAL;
	if (w) {
		/*
		 * Run the group's own tasks (top of our deque) before queuing:
		 * most waits end here without touching the lock. The tasks of g
		 * we run here do not drop the count one by one: `mine` counts
		 * them and one group_finish() drops them all when the rest of
		 * the count is gone, or our deque has nothing left, or before
		 * we run any other job (that job may wait on g itself: it must
		 * see a true count). Meanwhile the count is too high, never too
		 * low: another waiter can only wait a little longer.
		 */
		uint32_t mine = 0;
		w->pinned++; /* the tasks we run must not park a fiber we run on */
		/* acquire: as in enqueue_waiter(). */
		while ((atomic_load_explicit(&g->state, memory_order_acquire) & COUNT_MASK) !=
		       mine) {
			struct mr__job *job = mr__pop_sharing(w);
			if (!job)
				break;
			if (job->exec == group_task_exec && ((struct group_task *)job)->g == g) {
				run_own(g, (struct group_task *)job, w);
				mine++;
			} else {
				if (mine)
					group_finish(g, mine);
				mine = 0;
				mr__job_run(w, job);
			}
		}
		w->pinned--;
		if (mine)
			group_finish(g, mine);
	}
	/* acquire: as in enqueue_waiter(). */
	if (atomic_load_explicit(&g->state, memory_order_acquire) == 0)
		return wait_result(g);
	struct gwaiter node = { .worker = w };
	atomic_init(&node.flag, 0);
	if (!enqueue_waiter(g, &node))
		return wait_result(g);
	if (w)
		mr__work_until(w, waiter_flagged, &node);
	else
		while (!atomic_load_explicit(&node.flag, memory_order_acquire))
			mr__futex_wait(&node.flag, 0);
	if (atomic_load_explicit(&node.flag, memory_order_relaxed) == 1)
		return 0;
	/* Cancelled: finish_last() cleared the mark before it flagged us;
	 * g is not touched after the flag (it may be gone, or in its next
	 * round). */
	return -ECANCELED;
}
