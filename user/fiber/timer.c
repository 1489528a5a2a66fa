/*
 * timer.c - per-worker timers: a binary min-heap on the deadline.
 *
 * Fibers sleeping (or waiting with a deadline) on a worker put a timer in
 * that worker's heap: O(log n) insert and cancel, a million pending timers
 * is a 8 MB array. Only the owning worker adds timers and fires them; any
 * thread may cancel one (a fiber woken early cancels its timeout from
 * whichever worker resumed it), so the heap is under a spinlock, which is
 * uncontended except for those cancels. A timer fires with the lock held:
 * that is what lets a cancel wait out a fire in progress before the timer's
 * memory (in the waiter's frame) goes away.
 *
 * Other workers fire the timers of a worker whose thread is blocked (a job
 * waiting on a sync object, mr__worker_block). So a timer is added only once
 * its fiber may be readied: after the switch (sleep adds it in its commit),
 * or under the wait queue lock that its fire must take (waitq.c).
 *
 * The owner looks at its heap whenever it runs out of local work, and sleeps
 * no longer than its nearest deadline (see park() in runtime.c). A timer
 * fires late when its worker is busy in a long job; never early.
 */
#include <stdlib.h>

#include "fiber.h"

static void tlock(struct mr__worker *w)
{
	/* acquire: pairs with the release in tunlock(). */
	while (atomic_exchange_explicit(&w->tlock, 1, memory_order_acquire))
		while (atomic_load_explicit(&w->tlock, memory_order_relaxed))
			mr__cpu_relax();
}

static void tunlock(struct mr__worker *w)
{
	atomic_store_explicit(&w->tlock, 0, memory_order_release);
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

	t->idx = -1;
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
			mr__die("mr_sleep_until", "out of memory for %u timers", cap);
		w->theap = h;
		w->tcap = cap;
	}
	t->w = w;
	set_at(w, w->tn++, t);
	sift_up(w, (uint32_t)t->idx);
	publish_next(w);
	tunlock(w);
}

bool mr__timer_cancel(struct mr__timer *t)
{
	struct mr__worker *w = t->w;
	bool removed = false;

	tlock(w);
	if (t->idx >= 0) {
		remove_at(w, (uint32_t)t->idx);
		publish_next(w);
		removed = true;
	}
	tunlock(w);
	return removed;
}

int64_t mr__timers_run(struct mr__worker *w)
{
	int64_t next = atomic_load_explicit(&w->tnext, memory_order_relaxed);

	if (next < 0)
		return -1;
	int64_t now = (int64_t)mr__now_ns();
	if (next > now)
		return next;
	tlock(w);
	/*
	 * Fire the due timers latest first: they ready fibers onto this
	 * worker's LIFO deque, which then runs them earliest first (and
	 * thieves, who take the oldest, take the earliest too).
	 */
	struct mr__timer *due = NULL;
	while (w->tn && w->theap[0]->deadline <= now) {
		struct mr__timer *t = w->theap[0];
		remove_at(w, 0);
		t->next = due;
		due = t;
	}
	while (due) {
		struct mr__timer *t = due;
		due = t->next; /* read first: fire may let t's owner free it */
		t->fire(t);
	}
	publish_next(w);
	next = w->tn ? w->theap[0]->deadline : -1;
	tunlock(w);
	return next;
}

void mr__timers_fini(struct mr__worker *w)
{
	free(w->theap);
	w->theap = NULL;
	w->tn = w->tcap = 0;
}
