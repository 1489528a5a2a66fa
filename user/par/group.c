/*
 * group.c - task groups: spawn any number of tasks, wait for all of them.
 *
 * The group is a 31-bit count of unfinished tasks plus a WAITERS bit, in one
 * 32-bit word, and a list of waiters under a tiny spinlock that only waiters
 * and the last finishing task touch. A waiter adds itself to the list and
 * sets WAITERS (only while the count is non-zero, under the lock); the task
 * whose decrement leaves 0 with WAITERS set takes the list, clears the bit,
 * unlocks, and only then flags each waiter. A waiter returns only once it is
 * flagged (or found the count 0 under the lock), so the group's memory is
 * never touched after its waiter may have returned and freed it.
 *
 * A waiting worker keeps running work (its own group's tasks first: they are
 * on top of its deque) and sleeps in the scheduler when there is none; a
 * waiting thread sleeps on a futex in its waiter node.
 */
#include <stdlib.h>

#include <moirai/par.h>

#include "../sched/sched.h"

#define GROUP_MAGIC 0x6d72677270000000ull
#define WAITERS 0x80000000u
#define COUNT_MASK 0x7fffffffu

struct gwaiter {
	struct gwaiter *next;
	struct mr__worker *worker; /* NULL: a thread, woken through `flag` */
	_Atomic uint32_t flag;
};

struct group {
	uint64_t magic;
	_Atomic uint32_t state; /* count | WAITERS */
	_Atomic uint32_t lock;
	struct gwaiter *waiters;
	uint64_t spare;
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

static void spin_lock(_Atomic uint32_t *l)
{
	uint32_t z;
	for (;;) {
		z = 0;
		if (atomic_compare_exchange_weak_explicit(l, &z, 1, memory_order_acquire,
							  memory_order_relaxed))
			return;
		while (atomic_load_explicit(l, memory_order_relaxed))
			mr__cpu_relax();
	}
}

static void spin_unlock(_Atomic uint32_t *l)
{
	atomic_store_explicit(l, 0, memory_order_release);
}

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
	atomic_init(&g->lock, 0);
	g->waiters = NULL;
	g->spare = 0;
}

static void wake_waiters(struct group *g)
{
	struct gwaiter *list;

	spin_lock(&g->lock);
	list = g->waiters;
	g->waiters = NULL;
	atomic_fetch_and_explicit(&g->state, ~WAITERS, memory_order_relaxed);
	spin_unlock(&g->lock);
	/* From here on g may be gone; only the nodes (alive until flagged) remain. */
	while (list) {
		struct gwaiter *next = list->next;
		struct mr__worker *w = list->worker;
		/* seq_cst: pairs with the sleeping worker's idle-bit RMW + fence +
		 * load of flag (park()); for threads, with the futex wait. */
		atomic_store_explicit(&list->flag, 1, memory_order_seq_cst);
		if (w)
			mr__wake_worker(w, MR__TOK_LATCH);
		else
			mr__futex_wake(&list->flag, 1);
		list = next;
	}
}

static void group_finish_one(struct group *g)
{
	/* release: the task's effects happen before the waiter's acquire load
	 * that sees the count reach 0; acquire: for wake_waiters(). */
	uint32_t old = atomic_fetch_sub_explicit(&g->state, 1, memory_order_acq_rel);
	if ((old & COUNT_MASK) == 1 && (old & WAITERS))
		wake_waiters(g);
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
	fn(arg);
	group_finish_one(g);
}

int mr_group_spawn(mr_group_t *gp, void (*fn)(void *), void *arg)
{
	struct group *g = to_group(gp);
	struct mr__worker *w = mr__self();
	struct group_task *t;

	if (!gp || !fn || g->magic != GROUP_MAGIC)
		return -EINVAL;
	uint32_t old = atomic_fetch_add_explicit(&g->state, 1, memory_order_relaxed);
	if (unlikely((old & COUNT_MASK) == COUNT_MASK)) {
		atomic_fetch_sub_explicit(&g->state, 1, memory_order_relaxed);
		return -EOVERFLOW;
	}
	if (likely(w)) {
		t = mr__job_alloc(w);
		t->hdr.exec = group_task_exec;
		t->fn = fn;
		t->arg = arg;
		t->g = g;
		t->heap = 0;
		if (unlikely(!mr__push(w, &t->hdr)))
			group_task_exec(&t->hdr, w); /* deque full: run it now */
		return 0;
	}
	t = malloc(sizeof(*t));
	if (!t) {
		group_finish_one(g);
		return -ENOMEM;
	}
	t->hdr.exec = group_task_exec;
	t->fn = fn;
	t->arg = arg;
	t->g = g;
	t->heap = 1;
	mr__inject(mr__default_runtime("mr_group_spawn"), &t->hdr);
	return 0;
}

/* Add n to g's waiters unless the count is already 0. */
static bool enqueue_waiter(struct group *g, struct gwaiter *n)
{
	bool queued = false;

	spin_lock(&g->lock);
	uint32_t s = atomic_load_explicit(&g->state, memory_order_acquire);
	while (s & COUNT_MASK) {
		/* Set WAITERS only while tasks remain, atomically with that check,
		 * so the last task's fetch_sub sees it (no lost wakeup). */
		if (atomic_compare_exchange_weak_explicit(&g->state, &s, s | WAITERS,
							  memory_order_acq_rel,
							  memory_order_acquire)) {
			n->next = g->waiters;
			g->waiters = n;
			queued = true;
			break;
		}
	}
	spin_unlock(&g->lock);
	return queued;
}

static bool waiter_flagged(void *arg)
{
	struct gwaiter *n = arg;
	/* acquire: pairs with the seq_cst store in wake_waiters(). */
	return atomic_load_explicit(&n->flag, memory_order_acquire) != 0;
}

int mr_group_wait(mr_group_t *gp)
{
	struct group *g = to_group(gp);
	struct mr__worker *w = mr__self();
	struct gwaiter node = { .worker = w };

	if (!gp || g->magic != GROUP_MAGIC)
		return -EINVAL;
	atomic_init(&node.flag, 0);
	if (w) {
		/* Run the group's own tasks (top of our deque) before queuing:
		 * most waits end here without touching the lock. */
		w->pinned++; /* the tasks we run must not park a fiber we run on */
		while (atomic_load_explicit(&g->state, memory_order_acquire) & COUNT_MASK) {
			struct mr__job *job = mr__pop_sharing(w);
			if (!job)
				break;
			job->exec(job, w);
		}
		w->pinned--;
	}
	if (!enqueue_waiter(g, &node))
		return 0;
	if (w) {
		mr__work_until(w, waiter_flagged, &node);
		return 0;
	}
	while (!atomic_load_explicit(&node.flag, memory_order_acquire))
		mr__futex_wait(&node.flag, 0);
	return 0;
}
