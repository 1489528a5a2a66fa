/*
 * wg.c - mr_wg_t (wait group) and mr_event_t (one-shot event): both release
 * every waiter when a condition becomes true for good (count reaches zero,
 * the event is set). The condition is checked again under the queue lock
 * before a waiter queues, and the setter wakes under that lock after making
 * it true, so no waiter is missed.
 */
#include <errno.h>
#include <string.h>

#include "sync.h"

void mr__waitq_wake_all(struct mr__waitq *q)
{
	struct mr__waiter *list = NULL, *wt;

	mr__waitq_lock(q);
	while ((wt = mr__waitq_take(q))) {
		wt->next = list;
		list = wt;
	}
	mr__waitq_unlock(q);
	while (list) {
		wt = list;
		list = wt->next; /* read before the wake: wt may vanish after it */
		mr__waiter_wake(wt);
	}
}

/* Wait on q until cond(obj) holds (checked under q's lock). */
static int wait_cond(struct mr__waitq *q, bool (*cond)(void *), void *obj, int64_t deadline,
		     const char *call)
{
	struct mr__waiter wt = { .front = false };

	if (cond(obj))
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
	return mr__waitq_wait(q, &wt, deadline, call) == MR__W_WOKEN ? 0 : -ETIMEDOUT;
}

/* ---- wait group -------------------------------------------------------------- */

static struct mr__wg *G(mr_wg_t *wg)
{
	return (struct mr__wg *)wg;
}

void mr_wg_init(mr_wg_t *wg)
{
	memset(wg, 0, sizeof(*wg));
}

void mr_wg_add(mr_wg_t *wg, int64_t n)
{
	/* acq_rel: the last done() releases what every worker did; waiters
	 * acquire it (load in wg_zero()). */
	int64_t v = atomic_fetch_add_explicit(&G(wg)->count, n, memory_order_acq_rel) + n;

	if (v < 0)
		mr__die("mr_wg_add", "wait group %p count went negative (%lld)", (void *)wg,
			(long long)v);
	if (v == 0)
		mr__waitq_wake_all(&G(wg)->q);
}

void mr_wg_done(mr_wg_t *wg)
{
	mr_wg_add(wg, -1);
}

static bool wg_zero(void *obj)
{
	return atomic_load_explicit(&((struct mr__wg *)obj)->count, memory_order_acquire) == 0;
}

int mr_wg_wait_until(mr_wg_t *wg, int64_t deadline_ns)
{
	if (!wg)
		return -EINVAL;
	return wait_cond(&G(wg)->q, wg_zero, G(wg), deadline_ns, "mr_wg_wait");
}

void mr_wg_wait(mr_wg_t *wg)
{
	if (mr_wg_wait_until(wg, -1) == -EINVAL)
		mr__die("mr_wg_wait", "NULL wait group");
}

/* ---- event --------------------------------------------------------------------- */

static struct mr__event *E(mr_event_t *e)
{
	return (struct mr__event *)e;
}

void mr_event_init(mr_event_t *e)
{
	memset(e, 0, sizeof(*e));
}

void mr_event_set(mr_event_t *e)
{
	/* release: waiters that see it set see what came before. */
	if (atomic_exchange_explicit(&E(e)->set, 1, memory_order_acq_rel) == 0)
		mr__waitq_wake_all(&E(e)->q);
}

bool mr_event_is_set(const mr_event_t *e)
{
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
	return wait_cond(&E(e)->q, ev_set, E(e), deadline_ns, "mr_event_wait");
}

void mr_event_wait(mr_event_t *e)
{
	if (mr_event_wait_until(e, -1) == -EINVAL)
		mr__die("mr_event_wait", "NULL event");
}
