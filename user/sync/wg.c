/*
 * wg.c - mr_wg_t (wait group) and mr_event_t (one-shot event): both release
 * every waiter when a condition becomes true for good (count reaches zero,
 * the event is set). The condition is checked again under the queue lock
 * before a waiter queues, and the setter wakes under that lock after making
 * it true, so no waiter is missed.
 *
 * The condition becomes true only under the queue lock, in the critical
 * section that takes the waiters off the queue, and a waiter that finds it
 * true without locking returns only once the lock is free. So (1) the unlock
 * is the setter's last access to the object: a waiter may free it as soon
 * as its wait returns; (2) a wait group reused at once (add after the wait
 * returned) cannot have its new waiters taken by the previous round's wake.
 */
#include <errno.h>
#include <string.h>

#include "sync.h"

/* With q locked: take every waiter off q, for wake_list(). */
static struct mr__waiter *take_all(struct mr__waitq *q)
{
	struct mr__waiter *list = NULL, *wt;

	while ((wt = mr__waitq_take(q))) {
		wt->next = list;
		list = wt;
	}
	return list;
}

/* After take_all(), q unlocked: wake them (q is not touched). */
static void wake_list(struct mr__waiter *list)
{
	struct mr__waiter *wt;

	while (list) {
		wt = list;
		list = wt->next; /* read before the wake: wt may vanish after it */
		mr__waiter_wake(wt);
	}
}

void mr__waitq_wake_all(struct mr__waitq *q)
{
	mr__waitq_lock(q);
	struct mr__waiter *list = take_all(q);
	mr__waitq_unlock(q);
	wake_list(list);
}

/* Wait on q until cond(obj) holds (checked under q's lock). */
/* cancellable: the _until forms, which can report -ECANCELED. */
static int wait_cond(struct mr__waitq *q, bool (*cond)(void *), void *obj, int64_t deadline,
		     bool cancellable, unsigned kind, const char *call)
{
	struct mr__waiter wt = { .front = false, .cancellable = cancellable };

	/* acquire: a setter that made cond true (under the lock) still holds
	 * the lock, or has released it: its last access to obj. */
	if (cond(obj) && !atomic_load_explicit(&q->lock, memory_order_acquire))
		return 0;
	mr__waitq_lock(q);
	if (cond(obj)) {
		mr__waitq_unlock(q);
		return 0;
	}
	if (deadline >= 0 && mr_now_ns() >= deadline) {
		mr__waitq_unlock(q);
		return -ETIMEDOUT;
	}
	mr__wait_note(kind, obj, deadline);
	int r = mr__waitq_wait(q, &wt, deadline, call);
	return r == MR__W_WOKEN ? 0 : r == MR__W_CANCELLED ? -ECANCELED : -ETIMEDOUT;
}

/* ---- wait group -------------------------------------------------------------- */

static struct mr__wg *G(mr_wg_t *wg)
{
	return (struct mr__wg *)wg;
}

void mr_wg_init(mr_wg_t *wg)
{
	if (unlikely(!wg))
		mr__die("mr_wg_init", "NULL wait group");
	memset(wg, 0, sizeof(*wg));
}

static void __attribute__((noreturn, cold)) negative(mr_wg_t *wg, int64_t v, const char *call)
{
	mr__die(call, "wait group %p count went negative (%lld)", (void *)wg, (long long)v);
}

static void __attribute__((noreturn, cold)) overflow(mr_wg_t *wg, int64_t c, int64_t n,
						     const char *call)
{
	mr__die(call, "wait group %p count would overflow (%lld + %lld)", (void *)wg,
		(long long)c, (long long)n);
}

/* mr_wg_add(wg, n), named `call` in an abort. */
static void wg_add(mr_wg_t *wg, int64_t n, const char *call)
{
	struct mr__wg *g = G(wg);
	int64_t c = atomic_load_explicit(&g->count, memory_order_relaxed), v;

	/* A change that does not reach zero takes no lock. acq_rel: the last
	 * done() releases what every worker did; waiters acquire it (load in
	 * wg_zero()). The sum is checked: a signed overflow is undefined. */
	for (;;) {
		if (__builtin_add_overflow(c, n, &v))
			overflow(wg, c, n, call);
		if (v == 0)
			break;
		if (v < 0)
			negative(wg, v, call);
		if (atomic_compare_exchange_weak_explicit(&g->count, &c, v, memory_order_acq_rel,
							  memory_order_relaxed))
			return;
	}
	/* Reaching zero: under the queue lock, the waiters taken in the same
	 * critical section (see the top of the file). The count may still
	 * change meanwhile (changes that do not reach zero take no lock). */
	mr__waitq_lock(&g->q);
	c = atomic_load_explicit(&g->count, memory_order_relaxed);
	do {
		if (__builtin_add_overflow(c, n, &v))
			overflow(wg, c, n, call);
	} while (!atomic_compare_exchange_weak_explicit(&g->count, &c, v, memory_order_acq_rel,
							memory_order_relaxed));
	struct mr__waiter *list = v == 0 ? take_all(&g->q) : NULL;
	mr__waitq_unlock(&g->q);
	if (v < 0)
		negative(wg, v, call);
	wake_list(list);
}

void mr_wg_add(mr_wg_t *wg, int64_t n)
{
	if (unlikely(!wg))
		mr__die("mr_wg_add", "NULL wait group");
	wg_add(wg, n, "mr_wg_add");
}

void mr_wg_done(mr_wg_t *wg)
{
	if (unlikely(!wg))
		mr__die("mr_wg_done", "NULL wait group");
	wg_add(wg, -1, "mr_wg_done");
}

static bool wg_zero(void *obj)
{
	return atomic_load_explicit(&((struct mr__wg *)obj)->count, memory_order_acquire) == 0;
}

int mr_wg_wait_until(mr_wg_t *wg, int64_t deadline_ns)
{
	if (!wg)
		return -EINVAL;
	return wait_cond(&G(wg)->q, wg_zero, G(wg), mr__deadline(deadline_ns), true, MR__WAIT_WG,
			 "mr_wg_wait_until");
}

void mr_wg_wait(mr_wg_t *wg)
{
	if (unlikely(!wg))
		mr__die("mr_wg_wait", "NULL wait group");
	wait_cond(&G(wg)->q, wg_zero, G(wg), -1, false, MR__WAIT_WG, "mr_wg_wait");
}

/* ---- event --------------------------------------------------------------------- */

static struct mr__event *E(mr_event_t *e)
{
	return (struct mr__event *)e;
}

void mr_event_init(mr_event_t *e)
{
	if (unlikely(!e))
		mr__die("mr_event_init", "NULL event");
	memset(e, 0, sizeof(*e));
}

void mr_event_set(mr_event_t *e)
{
	struct mr__event *ev = E(e);

	if (unlikely(!e))
		mr__die("mr_event_set", "NULL event");
	if (atomic_load_explicit(&ev->set, memory_order_acquire))
		return; /* set before: nothing more to do */
	/* Set under the queue lock (see the top of the file). release: waiters
	 * that see it set see what came before. */
	mr__waitq_lock(&ev->q);
	uint32_t was = atomic_exchange_explicit(&ev->set, 1, memory_order_acq_rel);
	struct mr__waiter *list = was ? NULL : take_all(&ev->q);
	mr__waitq_unlock(&ev->q);
	wake_list(list);
}

bool mr_event_is_set(const mr_event_t *e)
{
	if (unlikely(!e))
		mr__die("mr_event_is_set", "NULL event");
	return atomic_load_explicit(&((const struct mr__event *)e)->set, memory_order_acquire);
}

static bool ev_set(void *obj)
{
	return atomic_load_explicit(&((struct mr__event *)obj)->set, memory_order_acquire);
}

int mr_event_wait_until(mr_event_t *e, int64_t deadline_ns)
{
	if (!e)
		return -EINVAL;
	return wait_cond(&E(e)->q, ev_set, E(e), mr__deadline(deadline_ns), true, MR__WAIT_EVENT,
			 "mr_event_wait_until");
}

void mr_event_wait(mr_event_t *e)
{
	if (unlikely(!e))
		mr__die("mr_event_wait", "NULL event");
	wait_cond(&E(e)->q, ev_set, E(e), -1, false, MR__WAIT_EVENT, "mr_event_wait");
}
