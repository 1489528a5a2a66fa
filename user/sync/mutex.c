/*
 * mutex.c - mr_mutex_t and mr_cond_t.
 *
 * The mutex word holds LOCKED, WAITERS (the queue may be non-empty; changed
 * only under the queue lock), WOKEN (a waiter was woken and has not yet
 * competed) and STARVING. Waiters queue FIFO in the wait queue.
 *
 * Normal mode lets a running locker barge: unlock clears LOCKED and, if
 * there are waiters and none is already on its way, wakes the oldest one to
 * compete. A hand-off on every unlock would cost a park and a resume per
 * critical section (a lock convoy: 1.3 us per lock/unlock here, measured,
 * against 33 ns for pthreads); barging keeps the lock with whoever runs.
 * Starvation mode bounds the unfairness: a woken waiter that still finds the
 * lock taken after waiting STARVE_NS in all re-queues at the head and sets
 * STARVING; from then on unlock hands the lock straight to the oldest waiter
 * (LOCKED stays set, the waiter learns it owns the lock), until the queue
 * empties. Lock first spins briefly (less than one futex round trip here)
 * when the mutex is not starving.
 *
 * No lost wake-up: a waiter sets WAITERS with a CAS that also sees LOCKED
 * set, under the queue lock, before it queues; the unlock that clears LOCKED
 * therefore sees WAITERS and takes the queue lock, which the waiter releases
 * only after it has parked. A woken waiter that fails to take the lock has
 * lost to a locker that will unlock, and wake, later.
 *
 * The owner word names the holding fiber (or thread) for the checks that
 * make misuse loud instead of silent: unlock and condition waits by a
 * caller that does not hold the mutex abort, and a lock by the holder
 * itself (a wait for ever) aborts or returns -EDEADLK. Only the holder
 * writes it, so a caller that reads its own id holds the mutex; the fast
 * paths pay one relaxed store for it.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "sync.h"

#define SPIN 64
#define STARVE_NS 1000000 /* 1 ms, as Go's sync.Mutex */

enum { LOCKED = 1, WOKEN = 2, STARVING = 4, WAITERS = 8 };
#define HANDOFF ((uintptr_t)1) /* waiter.data: the lock was handed to you */

static struct mr__mutex *M(mr_mutex_t *m)
{
	return (struct mr__mutex *)m;
}

void mr_mutex_init(mr_mutex_t *m)
{
	if (unlikely(!m))
		mr__die("mr_mutex_init", "NULL mutex");
	memset(m, 0, sizeof(*m));
}

/* Who is calling: the running fiber, else the thread. */
static uintptr_t me(void)
{
	struct mr_fiber *f = mr__fiber_current();
	return f ? (uintptr_t)f : (uintptr_t)pthread_self();
}

/*
 * The holder, 0 when free. Written only by the holder (lock, unlock), read
 * by anyone: a caller that reads its own id wrote it and still holds the
 * mutex; any other value means "not mine" whatever its age. Relaxed: the
 * word is checked only against the caller's own id.
 */
static uintptr_t owner(struct mr__mutex *mx)
{
	return atomic_load_explicit(&mx->owner, memory_order_relaxed);
}

/* For the deadlock check (fiber.h): who holds the mutex at m. */
static uintptr_t owner_of(const void *m)
{
	return atomic_load_explicit(&((const struct mr__mutex *)m)->owner, memory_order_relaxed);
}

static void set_owner(struct mr__mutex *mx, uintptr_t who)
{
	atomic_store_explicit(&mx->owner, who, memory_order_relaxed);
}

static void __attribute__((noreturn, cold)) not_held(mr_mutex_t *m, const char *call)
{
	mr__die(call, "mutex %p is not held by the caller (%s %p)", (void *)m,
		mr__fiber_current() ? "fiber" : "thread", (void *)me());
}

static bool try_lock(struct mr__mutex *mx)
{
	uint32_t z = 0;
	/* acquire: pairs with the release in mr_mutex_unlock(). */
	return atomic_compare_exchange_strong_explicit(&mx->state, &z, LOCKED, memory_order_acquire,
						       memory_order_relaxed);
}

/* Take the lock if it is free, whatever the other bits say. */
static bool grab(struct mr__mutex *mx, uint32_t *s)
{
	while (!(*s & LOCKED))
		if (atomic_compare_exchange_weak_explicit(&mx->state, s, *s | LOCKED,
							  memory_order_acquire, memory_order_relaxed))
			return true;
	return false;
}

/* cancellable: the _until form, which can report -ECANCELED. */
static int lock_slow(struct mr__mutex *mx, int64_t deadline, bool cancellable, const char *call)
{
	struct mr__waiter wt = { .front = false, .cancellable = cancellable };
	int64_t start = 0;

	for (;;) {
		uint32_t s = atomic_load_explicit(&mx->state, memory_order_relaxed);
		for (unsigned i = 0; i < SPIN && !(s & STARVING); i++) {
			if (grab(mx, &s))
				return 0;
			mr__cpu_relax();
			s = atomic_load_explicit(&mx->state, memory_order_relaxed);
		}
		mr__waitq_lock(&mx->q);
		s = atomic_load_explicit(&mx->state, memory_order_relaxed);
		bool starve = start && mr_now_ns() - start > STARVE_NS;
		for (;;) {
			if (grab(mx, &s)) {
				mr__waitq_unlock(&mx->q);
				return 0;
			}
			/* Held: announce ourselves (while it is still held). */
			uint32_t want = s | WAITERS | (starve ? STARVING : 0);
			if (want == s ||
			    atomic_compare_exchange_weak_explicit(&mx->state, &s, want,
								  memory_order_relaxed,
								  memory_order_relaxed))
				break;
		}
		if (deadline >= 0 && mr_now_ns() >= deadline) {
			/* WAITERS may now be stale: the next unlock clears it. */
			mr__waitq_unlock(&mx->q);
			return -ETIMEDOUT;
		}
		if (!start)
			start = mr_now_ns();
		wt.data = 0;
		atomic_store_explicit(&mr__mutex_owner_fn, owner_of, memory_order_relaxed);
		mr__wait_note(MR__WAIT_MUTEX, mx, deadline);
		int r = mr__waitq_wait(&mx->q, &wt, deadline, call);
		if (r != MR__W_WOKEN)
			return r == MR__W_CANCELLED ? -ECANCELED : -ETIMEDOUT;
		if (wt.data == HANDOFF) {
			/* acquire: pairs with the unlocker's release fence. */
			atomic_thread_fence(memory_order_acquire);
			return 0;
		}
		/* Woken to compete: let the next unlock wake someone again. */
		atomic_fetch_and_explicit(&mx->state, ~(uint32_t)WOKEN, memory_order_relaxed);
		wt.front = true; /* we keep our place if we lose */
		if (deadline >= 0 && mr_now_ns() >= deadline) {
			uint32_t s2 = atomic_load_explicit(&mx->state, memory_order_relaxed);
			return grab(mx, &s2) ? 0 : -ETIMEDOUT;
		}
	}
}

/*
 * Lock without a deadline; `call` names the user's call in a park, `who`
 * is me() as read before any park. A fiber may resume on another thread,
 * and the compiler may keep the address of a thread-local it computed
 * before the park (aarch64 does: the thread pointer is a register it
 * reads once per function), so me() must not be read again after one.
 */
static void lock(struct mr__mutex *mx, const char *call, uintptr_t who)
{
	if (unlikely(!try_lock(mx))) {
		/* Waiting for ourselves would hang for good, silently. */
		if (unlikely(owner(mx) == who))
			mr__die(call, "mutex %p is already held by the caller (%s %p): not recursive",
				(void *)mx, mr__fiber_current() ? "fiber" : "thread", (void *)who);
		lock_slow(mx, -1, false, call);
	}
	set_owner(mx, who);
}

void mr_mutex_lock(mr_mutex_t *m)
{
	if (unlikely(!m))
		mr__die("mr_mutex_lock", "NULL mutex");
	lock(M(m), "mr_mutex_lock", me());
}

int mr_mutex_trylock(mr_mutex_t *m)
{
	if (!m)
		return -EINVAL;
	if (!try_lock(M(m)))
		return -EBUSY;
	set_owner(M(m), me());
	return 0;
}

int mr_mutex_lock_until(mr_mutex_t *m, int64_t deadline_ns)
{
	if (!m)
		return -EINVAL;
	uintptr_t who = me(); /* not again after a park: see lock() */

	if (unlikely(!try_lock(M(m)))) {
		if (unlikely(owner(M(m)) == who))
			return -EDEADLK; /* as an error-checking pthread mutex */
		int r = lock_slow(M(m), mr__deadline(deadline_ns), true, "mr_mutex_lock_until");
		if (r < 0)
			return r;
	}
	set_owner(M(m), who);
	return 0;
}

void mr_mutex_unlock(mr_mutex_t *m)
{
	struct mr__mutex *mx = M(m);
	uint32_t one = LOCKED;

	if (unlikely(!m))
		mr__die("mr_mutex_unlock", "NULL mutex");
	if (unlikely(owner(mx) != me()))
		not_held(m, "mr_mutex_unlock");
	set_owner(mx, 0);
	/* release: pairs with the acquire of the next locker. */
	if (likely(atomic_compare_exchange_strong_explicit(&mx->state, &one, 0,
							   memory_order_release,
							   memory_order_relaxed)))
		return;
	/*
	 * Nobody waits, or a woken waiter is on its way: clearing LOCKED is
	 * our last access (a locker may take it and free the mutex at once).
	 * release: pairs with the acquire of the next locker.
	 */
	uint32_t s = one;
	while (!(s & STARVING) && (!(s & WAITERS) || (s & WOKEN)))
		if (atomic_compare_exchange_weak_explicit(&mx->state, &s, s & ~(uint32_t)LOCKED,
							  memory_order_release,
							  memory_order_relaxed))
			return;
	/*
	 * Waiters: decide under the queue lock, still holding the mutex (no
	 * locker can take it meanwhile, nobody else can wake), and let it go
	 * in that critical section, so that our unlock of the queue is our
	 * last access to the mutex (mr_mutex_destroy() waits for it).
	 */
	mr__waitq_lock(&mx->q);
	s = atomic_load_explicit(&mx->state, memory_order_relaxed);
	if (!(s & STARVING)) {
		/* Wake the oldest waiter to compete for the lock we free. */
		struct mr__waiter *wt = mr__waitq_take(&mx->q);
		uint32_t clear = LOCKED | ((!wt || !mx->q.head) ? WAITERS : 0);
		uint32_t set = wt ? WOKEN : 0;
		while (!atomic_compare_exchange_weak_explicit(&mx->state, &s, (s & ~clear) | set,
							      memory_order_release,
							      memory_order_relaxed))
			;
		mr__waitq_unlock(&mx->q);
		if (wt)
			mr__waiter_wake(wt);
		return;
	}
	/* Starving: hand the lock to the oldest waiter; LOCKED stays set. */
	struct mr__waiter *wt = mr__waitq_take(&mx->q);
	if (!wt) {
		/* Every waiter timed out. */
		atomic_fetch_and_explicit(&mx->state, ~(uint32_t)(LOCKED | STARVING | WAITERS),
					  memory_order_release);
		mr__waitq_unlock(&mx->q);
		return;
	}
	if (!mx->q.head)
		atomic_fetch_and_explicit(&mx->state, ~(uint32_t)(STARVING | WAITERS),
					  memory_order_relaxed);
	wt->data = HANDOFF;
	/* release: the new owner sees our critical section. */
	atomic_thread_fence(memory_order_release);
	mr__waitq_unlock(&mx->q);
	mr__waiter_wake(wt);
}

void mr_mutex_destroy(mr_mutex_t *m)
{
	if (unlikely(!m))
		mr__die("mr_mutex_destroy", "NULL mutex");
	/* A cancel hook that saw a waiter still waiting may be about to
	 * take the queue lock (fiber.h); an unlock may still be finishing:
	 * its last access is the release of the queue lock. acquire: pairs
	 * with that release. */
	mr__cancel_hooks_quiesce();
	mr__waitq_wait_unlocked(&M(m)->q);
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
	if (unlikely(!c))
		mr__die("mr_cond_init", "NULL condition variable");
	memset(c, 0, sizeof(*c));
}

/* mr_cond_wait(_until), named `call` in an abort. */
static int cond_wait(mr_cond_t *c, mr_mutex_t *m, int64_t deadline, bool cancellable,
		     const char *call)
{
	struct mr__cond *cv = C(c);
	struct mr__waiter wt = { .front = false, .cancellable = cancellable };

	/* Checked here, not by the unlock below, so that the abort names the
	 * call the user made. */
	uintptr_t who = me(); /* not again after the park: see lock() */

	if (unlikely(owner(M(m)) != who))
		not_held(m, call);
	/* Queue first, then release the mutex: a signal sent after our
	 * unlock finds us queued. Lock order: cond queue, then mutex queue. */
	mr__waitq_lock(&cv->q);
	mr_mutex_unlock(m);
	mr__wait_note(MR__WAIT_COND, cv, deadline);
	int r = mr__waitq_wait(&cv->q, &wt, deadline, call);
	lock(M(m), call, who);
	return r == MR__W_WOKEN ? 0 : r == MR__W_CANCELLED ? -ECANCELED : -ETIMEDOUT;
}

int mr_cond_wait_until(mr_cond_t *c, mr_mutex_t *m, int64_t deadline_ns)
{
	if (!c || !m)
		return -EINVAL;
	return cond_wait(c, m, mr__deadline(deadline_ns), true, "mr_cond_wait_until");
}

void mr_cond_wait(mr_cond_t *c, mr_mutex_t *m)
{
	if (unlikely(!c || !m))
		mr__die("mr_cond_wait", "NULL condition variable or mutex");
	cond_wait(c, m, -1, false, "mr_cond_wait");
}

void mr_cond_signal(mr_cond_t *c)
{
	struct mr__cond *cv = C(c);

	if (unlikely(!c))
		mr__die("mr_cond_signal", "NULL condition variable");
	mr__waitq_lock(&cv->q);
	struct mr__waiter *wt = mr__waitq_take(&cv->q);
	mr__waitq_unlock(&cv->q);
	if (wt)
		mr__waiter_wake(wt);
}

void mr_cond_broadcast(mr_cond_t *c)
{
	if (unlikely(!c))
		mr__die("mr_cond_broadcast", "NULL condition variable");
	mr__waitq_wake_all(&C(c)->q);
}
