/*
 * timer.c - per-worker timers: a binary min-heap on the deadline.
 *
 * Fibers sleeping (or waiting with a deadline) on a worker put a timer in
 * that worker's heap: O(log n) insert and cancel, a million pending timers
 * is a 8 MB array. Only the owning worker adds timers; any thread may cancel
 * one (a fiber woken early cancels its timeout from whichever worker resumed
 * it), and other workers fire the timers of a worker whose thread is blocked
 * (a job waiting on a sync object, mr__worker_block). So the heap is under a
 * spinlock, uncontended but for those cancels and fires.
 *
 * A timer fires WITHOUT the heap lock. The lock is the innermost lock of the
 * library (user/README.md): nothing is taken while it is held, and a fire
 * takes the lock of the object its waiter waits on (a wait queue), which in
 * turn is held while a timed wait adds its timer. Firing under the heap lock
 * made those two orders opposite, and a worker firing a blocked worker's
 * timers deadlocked against a fiber of that worker starting a timed wait on
 * the same object. Instead the firer pops one due timer at a time under the
 * lock, notes it in w->tfiring, drops the lock and fires it. A cancel that
 * finds its timer out of the heap but noted there waits until the fire has
 * returned, so a timer's memory (in the waiter's frame) never goes away
 * under a fire. One thread fires a heap at a time (w->tfirer): a second
 * firer leaves the heap to the first.
 *
 * So a fire must not wait for anything a cancelling thread may hold: cancel
 * is never called with a wait queue or channel lock held.
 *
 * A timer is added only once its fiber may be readied: after the switch
 * (sleep adds it in its commit), or under the wait queue lock that its fire
 * must take (waitq.c).
 *
 * The owner looks at its heap whenever it runs out of local work, and sleeps
 * no longer than its nearest deadline (see park() in runtime.c). A timer
 * fires late when its worker is busy in a long job; never early.
 */
#include <stdlib.h>

#include "sched.h"

static void tlock(struct mr__worker *w)
{
	mr__spin_lock(&w->tlock);
}

static void tunlock(struct mr__worker *w)
{
	mr__spin_unlock(&w->tlock);
}

static void set_at(struct mr__worker *w, uint32_t i, struct mr__timer *t)
{
	w->theap[i] = t;
	t->idx = (int32_t)i;
}

static void sift_up(struct mr__worker *w, uint32_t i)
{
	struct mr__timer *t = w->theap[i];

	while (i > 0) {
		uint32_t p = (i - 1) / 2;
		if (w->theap[p]->deadline <= t->deadline)
			break;
		set_at(w, i, w->theap[p]);
		i = p;
	}
	set_at(w, i, t);
}

static void sift_down(struct mr__worker *w, uint32_t i)
{
	struct mr__timer *t = w->theap[i];

	for (;;) {
		uint32_t c = 2 * i + 1;
		if (c >= w->tn)
			break;
		if (c + 1 < w->tn && w->theap[c + 1]->deadline < w->theap[c]->deadline)
			c++;
		if (t->deadline <= w->theap[c]->deadline)
			break;
		set_at(w, i, w->theap[c]);
		i = c;
	}
	set_at(w, i, t);
}

static void remove_at(struct mr__worker *w, uint32_t i)
{
	struct mr__timer *t = w->theap[i];

	t->idx = MR__TIMER_IDLE;
	w->tn--;
	if (i == w->tn)
		return;
	set_at(w, i, w->theap[w->tn]);
	if (i > 0 && w->theap[i]->deadline < w->theap[(i - 1) / 2]->deadline)
		sift_up(w, i);
	else
		sift_down(w, i);
}

static void publish_next(struct mr__worker *w)
{
	atomic_store_explicit(&w->tnext, w->tn ? w->theap[0]->deadline : -1,
			      memory_order_relaxed);
}

void mr__timer_add(struct mr__worker *w, struct mr__timer *t)
{
	tlock(w);
	if (w->tn == w->tcap) {
		uint32_t cap = w->tcap ? w->tcap * 2 : 64;
		struct mr__timer **h = realloc(w->theap, cap * sizeof(*h));
		if (!h)
			mr__die(t->call, "out of memory for %u timers", cap);
		w->theap = h;
		w->tcap = cap;
	}
	t->w = w;
	set_at(w, w->tn++, t);
	sift_up(w, (uint32_t)t->idx);
	publish_next(w);
	tunlock(w);
}

/* With the heap lock: take t off the batch of due timers. */
static void unlink_due(struct mr__worker *w, struct mr__timer *t)
{
	if (t->prev)
		t->prev->next = t->next;
	else
		w->tdue = t->next;
	if (t->next)
		t->next->prev = t->prev;
	t->idx = MR__TIMER_IDLE;
}

bool mr__timer_cancel(struct mr__timer *t)
{
	struct mr__worker *w = t->w;
	bool removed = true, firing = false;

	tlock(w);
	if (t->idx >= 0) {
		remove_at(w, (uint32_t)t->idx);
		publish_next(w);
	} else if (t->idx == MR__TIMER_DUE) {
		unlink_due(w, t);
	} else {
		removed = false;
		/* acquire, although under the lock: a fire that is over
		 * stored NULL here without the lock; seeing that store must
		 * order its reads of t before the caller reuses t. */
		firing = atomic_load_explicit(&w->tfiring, memory_order_acquire) == t;
	}
	tunlock(w);
	if (firing) {
		unsigned spins = 0;
		/* acquire: pairs with the release in mr__timers_run() that ends
		 * the fire; the caller may free t once we return. */
		while (atomic_load_explicit(&w->tfiring, memory_order_acquire) == t)
			mr__backoff(&spins);
	}
	return removed;
}

void (*mr__test_timer_fire_hook)(struct mr__timer *t);

int64_t mr__timers_run(struct mr__worker *w)
{
	int64_t next = atomic_load_explicit(&w->tnext, memory_order_relaxed);

	if (next < 0)
		return -1;
	int64_t now = (int64_t)mr__now_ns();
	if (next > now)
		return next;
	/* acquire: pairs with the release at the end; a thread firing this
	 * heap now fires all that is due, so leave it to that one. */
	if (atomic_exchange_explicit(&w->tfirer, 1, memory_order_acquire))
		return next;
	tlock(w);
	/*
	 * Move the due timers to a batch, latest at its head, and fire them
	 * from there one at a time, latest first: they ready fibers onto this
	 * thread's LIFO deque, which then runs them earliest first (and
	 * thieves, who take the oldest, take the earliest too). A cancel
	 * takes its timer off the batch as it would off the heap.
	 */
	while (w->tn && w->theap[0]->deadline <= now) {
		struct mr__timer *t = w->theap[0];
		remove_at(w, 0);
		t->idx = MR__TIMER_DUE;
		t->prev = NULL;
		t->next = w->tdue;
		if (w->tdue)
			w->tdue->prev = t;
		w->tdue = t;
	}
	publish_next(w);
	struct mr__timer *t;
	while ((t = w->tdue)) {
		unlink_due(w, t);
		/* Read by a cancel under the heap lock. */
		atomic_store_explicit(&w->tfiring, t, memory_order_relaxed);
		tunlock(w);
		if (unlikely(mr__test_timer_fire_hook != NULL))
			mr__test_timer_fire_hook(t);
		MR__STAT_SELF(timer_fires, 1);
		t->fire(t);
		/* release: the fire is over and t is its owner's again; pairs
		 * with the acquire spin in mr__timer_cancel(). */
		atomic_store_explicit(&w->tfiring, NULL, memory_order_release);
		tlock(w);
	}
	next = w->tn ? w->theap[0]->deadline : -1;
	tunlock(w);
	/* release: pairs with the acquire exchange above. */
	atomic_store_explicit(&w->tfirer, 0, memory_order_release);
	return next;
}

void mr__timers_fini(struct mr__worker *w)
{
	free(w->theap);
	w->theap = NULL;
	w->tn = w->tcap = 0;
}
