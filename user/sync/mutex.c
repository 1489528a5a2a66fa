/*
 * mutex.c - mr_mutex_t and mr_cond_t.
 *
 * The mutex is one word: 0 free, 1 locked, 2 locked with (maybe) waiters.
 * Lock: a CAS 0 -> 1; when taken, a bounded spin (about a microsecond, less
 * than one futex round trip here), then the waiter marks the word 2 and
 * queues itself under the wait queue's lock. Unlock: a CAS 1 -> 0; if the
 * word says 2, the lock is handed straight to the oldest waiter (the word
 * stays locked), so a waiter cannot be overtaken forever by newcomers: fair,
 * at the price of a wake-up per contended handoff. Waiters that time out
 * leave the queue; an unlock that finds the queue empty frees the word.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "sync.h"

#define SPIN 64

static struct mr__mutex *M(mr_mutex_t *m)
{
	return (struct mr__mutex *)m;
}

void mr_mutex_init(mr_mutex_t *m)
{
	memset(m, 0, sizeof(*m));
}

/* Who is calling: the running fiber, else the thread. */
static uintptr_t me(void)
{
	struct mr_fiber *f = mr__fiber_current();
	return f ? (uintptr_t)f : (uintptr_t)pthread_self();
}

static bool try_lock(struct mr__mutex *mx)
{
	uint32_t z = 0;
	/* acquire: pairs with the release in mr_mutex_unlock(). */
	return atomic_compare_exchange_strong_explicit(&mx->state, &z, 1, memory_order_acquire,
						       memory_order_relaxed);
}

static int lock_slow(struct mr__mutex *mx, int64_t deadline)
{
	for (unsigned i = 0; i < SPIN; i++) {
		if (atomic_load_explicit(&mx->state, memory_order_relaxed) == 0 && try_lock(mx))
			return 0;
		mr__cpu_relax();
	}
	for (;;) {
		mr__waitq_lock(&mx->q);
		/* Under the queue lock: either take a free lock or announce a
		 * waiter (2), then queue. unlock() looks at the queue under the
		 * same lock, so it cannot miss us. */
		uint32_t s = atomic_load_explicit(&mx->state, memory_order_relaxed);
		for (;;) {
			if (s == 0) {
				if (atomic_compare_exchange_weak_explicit(&mx->state, &s, 1,
									  memory_order_acquire,
									  memory_order_relaxed)) {
					mr__waitq_unlock(&mx->q);
					return 0;
				}
				continue;
			}
			if (s == 2 || atomic_compare_exchange_weak_explicit(&mx->state, &s, 2,
									    memory_order_relaxed,
									    memory_order_relaxed))
				break;
		}
		if (deadline >= 0 && mr_now_ns() >= deadline) {
			mr__waitq_unlock(&mx->q);
			return -ETIMEDOUT;
		}
		struct mr__waiter wt;
		int r = mr__waitq_wait(&mx->q, &wt, deadline, "mr_mutex_lock");
		if (r == MR__W_WOKEN) {
			/* Handed over: we own it. acquire: pairs with the
			 * unlocker's release fence below. */
			atomic_thread_fence(memory_order_acquire);
			return 0;
		}
		return -ETIMEDOUT;
	}
}

void mr_mutex_lock(mr_mutex_t *m)
{
	if (unlikely(!m))
		mr__die("mr_mutex_lock", "NULL mutex");
	if (unlikely(!try_lock(M(m))))
		lock_slow(M(m), -1);
	M(m)->owner = me();
}

int mr_mutex_trylock(mr_mutex_t *m)
{
	if (!m)
		return -EINVAL;
	if (!try_lock(M(m)))
		return -EBUSY;
	M(m)->owner = me();
	return 0;
}

int mr_mutex_lock_until(mr_mutex_t *m, int64_t deadline_ns)
{
	if (!m)
		return -EINVAL;
	if (unlikely(!try_lock(M(m)))) {
		int r = lock_slow(M(m), deadline_ns < 0 ? 0 : deadline_ns);
		if (r < 0)
			return r;
	}
	M(m)->owner = me();
	return 0;
}

void mr_mutex_unlock(mr_mutex_t *m)
{
	struct mr__mutex *mx = M(m);
	uint32_t one = 1;

	if (unlikely(!m))
		mr__die("mr_mutex_unlock", "NULL mutex");
	if (unlikely(mx->owner != me()))
		mr__die("mr_mutex_unlock", "mutex %p is not held by the caller (%s %p)", (void *)m,
			mr__fiber_current() ? "fiber" : "thread", (void *)me());
	mx->owner = 0;
	/* release: pairs with the acquire of the next locker. */
	if (likely(atomic_compare_exchange_strong_explicit(&mx->state, &one, 0,
							   memory_order_release,
							   memory_order_relaxed)))
		return;
	if (one == 0)
		mr__die("mr_mutex_unlock", "mutex %p is not locked", (void *)m);
	mr__waitq_lock(&mx->q);
	struct mr__waiter *wt = mr__waitq_take(&mx->q);
	if (wt) {
		/* Hand over: the word stays locked (2 while others queue). */
		if (!mx->q.head)
			atomic_store_explicit(&mx->state, 1, memory_order_relaxed);
		/* release: the new owner sees our critical section. */
		atomic_thread_fence(memory_order_release);
		mr__waitq_unlock(&mx->q);
		mr__waiter_wake(wt);
		return;
	}
	atomic_store_explicit(&mx->state, 0, memory_order_release);
	mr__waitq_unlock(&mx->q);
}

void mr_mutex_destroy(mr_mutex_t *m)
{
	if (atomic_load_explicit(&M(m)->state, memory_order_relaxed) != 0)
		mr__die("mr_mutex_destroy", "mutex %p is held", (void *)m);
}

/* ---- condition variable --------------------------------------------------- */

static struct mr__cond *C(mr_cond_t *c)
{
	return (struct mr__cond *)c;
}

void mr_cond_init(mr_cond_t *c)
{
	memset(c, 0, sizeof(*c));
}

int mr_cond_wait_until(mr_cond_t *c, mr_mutex_t *m, int64_t deadline_ns)
{
	struct mr__cond *cv = C(c);
	struct mr__waiter wt;

	if (!c || !m)
		return -EINVAL;
	/* Queue first, then release the mutex: a signal sent after our
	 * unlock finds us queued. Lock order: cond queue, then mutex queue. */
	mr__waitq_lock(&cv->q);
	mr_mutex_unlock(m);
	int r = mr__waitq_wait(&cv->q, &wt, deadline_ns, "mr_cond_wait");
	mr_mutex_lock(m);
	return r == MR__W_WOKEN ? 0 : -ETIMEDOUT;
}

void mr_cond_wait(mr_cond_t *c, mr_mutex_t *m)
{
	if (mr_cond_wait_until(c, m, -1) == -EINVAL)
		mr__die("mr_cond_wait", "NULL condition variable or mutex");
}

void mr_cond_signal(mr_cond_t *c)
{
	struct mr__cond *cv = C(c);

	mr__waitq_lock(&cv->q);
	struct mr__waiter *wt = mr__waitq_take(&cv->q);
	mr__waitq_unlock(&cv->q);
	if (wt)
		mr__waiter_wake(wt);
}

void mr_cond_broadcast(mr_cond_t *c)
{
	mr__waitq_wake_all(&C(c)->q);
}
