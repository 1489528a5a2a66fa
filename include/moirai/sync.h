/*
 * moirai/sync.h - synchronisation that parks fibers and puts threads to
 * sleep: mutex, condition variable, counting semaphore, wait group, one-shot
 * event.
 *
 * Who may call: every function here may be called from fibers, from plain
 * threads (no runtime needed) and from jobs, on the same object at once. A
 * call that blocks parks a fiber (its worker runs other work meanwhile)
 * and puts a thread to sleep on a futex. A job that blocks, and a fiber
 * inside the parallel API (mr_join, a group or loop of its own still
 * running), block their worker thread instead, after handing its queued
 * work to the other workers. Calls marked "never blocks" may still spin
 * briefly on an internal lock. None is async-signal-safe: do not call them
 * from a signal handler.
 *
 * Fibers move between threads. A fiber that blocks (any wait here, a
 * channel operation, mr_sleep_*, mr_yield, mr_fiber_join) may resume on
 * another worker thread. Across such a call, errno, __thread variables,
 * pthread_self() and whatever belongs to a thread may change: re-read them
 * after the call, and never hold a pthread mutex (or anything else that
 * must be released by the thread that took it) across it. The objects here
 * belong to the fiber, not the thread: a fiber may lock an mr_mutex_t,
 * block, and unlock it from whatever thread it resumed on. Errors are
 * results, never errno, so nothing here needs errno after a call.
 *
 * Plain blocking system calls block the worker, not just the fiber: read()
 * on a socket or pipe, sleep()/nanosleep(), pthread_mutex_lock(),
 * pthread_cond_wait() and the like keep that worker from running anything
 * else until they return, and if every worker does so the runtime stops
 * (a fiber waiting for another fiber through a pthread primitive can
 * deadlock it). Use mr_sleep_ns(), the objects here and channels.
 *
 * Objects are plain structs (initialise with *_init or the static
 * initialiser; all but the mutex need no destroy); they must not be moved
 * or copied while in use. The memory of a semaphore, wait group, event or
 * condition variable may be freed as soon as nobody uses it, even right
 * after the wait that the last post, done, set or signal released returns;
 * that of a mutex after mr_mutex_destroy().
 *
 * Deadlines follow common.h: CLOCK_MONOTONIC nanoseconds (mr_now_ns() +
 * timeout); a negative deadline is none (the _until call waits as the call
 * without it); 0 or any passed time does not wait: an object that is
 * available is still taken, else -ETIMEDOUT at once. A deadline never ends
 * a wait early.
 *
 * NULL objects: the int calls return -EINVAL, the void ones abort naming
 * the call. Misuse that would corrupt state (unlocking a mutex the caller
 * does not hold, waiting on a condition without its mutex, a wait group
 * count below zero) aborts with a message naming the call the user made.
 */
#ifndef MOIRAI_SYNC_H
#define MOIRAI_SYNC_H

#include <moirai/common.h>

MR_EXTERN_C_BEGIN

/* ---- mutex ---------------------------------------------------------------------------- */

/*
 * Held by the fiber that locked it (or by the thread, outside a fiber).
 * Not recursive. Lock spins briefly, then the waiter parks (fiber) or
 * sleeps (thread) in a FIFO queue. A running locker may take the mutex
 * ahead of queued waiters (throughput), but a waiter that has waited 1 ms
 * switches the mutex to hand-off, oldest waiter first, so nobody starves.
 */
typedef struct mr_mutex {
	uint64_t mr__opaque[5];
} mr_mutex_t;
#define MR_MUTEX_INIT { { 0 } }

/* Make m a free mutex (as MR_MUTEX_INIT). Never blocks. */
MR_API void mr_mutex_init(mr_mutex_t *m);

/*
 * Lock m, waiting as long as it takes. Blocks. Aborts naming the call when
 * the caller already holds m (it would wait for itself for ever).
 */
MR_API void mr_mutex_lock(mr_mutex_t *m);

/*
 * Lock m if it is free. Never blocks.
 * ERRORS: -EBUSY held (by anyone, the caller included); -EINVAL NULL m.
 */
MR_API int mr_mutex_trylock(mr_mutex_t *m);

/*
 * Lock m, waiting until the deadline at most. Blocks.
 * ERRORS: -ETIMEDOUT the deadline passed first (not locked); -EDEADLK the
 * caller already holds m (whatever the deadline, as an error-checking
 * pthread mutex); -EINVAL NULL m.
 */
MR_API int mr_mutex_lock_until(mr_mutex_t *m, int64_t deadline_ns);

/*
 * Unlock m; wakes one waiter, if any. Never blocks. Aborts naming the call
 * when the caller does not hold m (a fiber unlocks what it locked, from
 * whatever thread it runs on now).
 */
MR_API void mr_mutex_unlock(mr_mutex_t *m);

/*
 * Check that m is free and wait for an unlock that is still finishing, so
 * that its memory may be reused. Aborts naming the call when m is held.
 */
MR_API void mr_mutex_destroy(mr_mutex_t *m);

/* ---- condition variable -------------------------------------------------------- */

/*
 * Used with an mr_mutex_t, as a pthread condition variable. Waiters queue
 * FIFO; a signal wakes the oldest, a broadcast all; a signal nobody waits
 * for is not remembered. There are no spurious wake-ups (a wait returns 0
 * only after a signal or broadcast chose it), but the waiter must retake
 * the mutex and another locker may get there first and change the state:
 * wait in a loop over the predicate, as always.
 */
typedef struct mr_cond {
	uint64_t mr__opaque[4];
} mr_cond_t;
#define MR_COND_INIT { { 0 } }

/* Make c a condition variable nobody waits on. Never blocks. */
MR_API void mr_cond_init(mr_cond_t *c);

/*
 * The caller must hold m (else abort naming the call). Atomically unlock m
 * and wait for a signal or broadcast, then lock m again (waiting for it as
 * mr_mutex_lock). Blocks; returns with m held.
 */
MR_API void mr_cond_wait(mr_cond_t *c, mr_mutex_t *m);

/*
 * mr_cond_wait until the deadline at most. Returns with m held, whatever
 * the result (retaking m is not bounded by the deadline). Blocks.
 * ERRORS: -ETIMEDOUT the deadline passed before a signal chose this
 * waiter; -EINVAL NULL c or m (m untouched).
 */
MR_API int mr_cond_wait_until(mr_cond_t *c, mr_mutex_t *m, int64_t deadline_ns);

/* Wake the oldest waiter / every waiter. The caller may hold the mutex or
 * not. Never block. */
MR_API void mr_cond_signal(mr_cond_t *c);
MR_API void mr_cond_broadcast(mr_cond_t *c);

/* ---- counting semaphore ------------------------------------------------------------ */

/*
 * A count of units, at most MR_SEM_VALUE_MAX. A post with waiters hands its
 * unit to the oldest one (FIFO, no overtaking by later waiters). No static
 * initialiser: mr_sem_init.
 */
typedef struct mr_sem {
	uint64_t mr__opaque[4];
} mr_sem_t;
#define MR_SEM_VALUE_MAX ((uint32_t)INT32_MAX)

/*
 * Make s a semaphore holding count units. Never blocks.
 * ERRORS: -EINVAL NULL s or count > MR_SEM_VALUE_MAX.
 */
MR_API int mr_sem_init(mr_sem_t *s, uint32_t count);

/* Take one unit, waiting as long as it takes for a post. Blocks. */
MR_API void mr_sem_wait(mr_sem_t *s);

/*
 * Take one unit if there is one. Never blocks.
 * ERRORS: -EAGAIN no unit; -EINVAL NULL s.
 */
MR_API int mr_sem_trywait(mr_sem_t *s);

/*
 * Take one unit, waiting until the deadline at most. Blocks.
 * ERRORS: -ETIMEDOUT the deadline passed first (nothing taken); -EINVAL
 * NULL s.
 */
MR_API int mr_sem_wait_until(mr_sem_t *s, int64_t deadline_ns);

/*
 * Add one unit, or hand it to the oldest waiter. Never blocks.
 * ERRORS: -EOVERFLOW the count is MR_SEM_VALUE_MAX and nobody waits (the
 * count is unchanged); -EINVAL NULL s.
 */
MR_API int mr_sem_post(mr_sem_t *s);

/* ---- wait group ------------------------------------------------------------------------ */

/*
 * A signed 64-bit count: add before starting work, done when it finishes,
 * wait for zero. Reaching zero releases every waiter; the group may be
 * reused (add again) as soon as the waits return.
 */
typedef struct mr_wg {
	uint64_t mr__opaque[4];
} mr_wg_t;
#define MR_WG_INIT { { 0 } }

/* Make wg a wait group with count 0. Never blocks. */
MR_API void mr_wg_init(mr_wg_t *wg);

/*
 * Add n (may be negative) to the count; reaching zero wakes every waiter.
 * Never blocks. The count going below zero or past INT64_MAX aborts naming
 * the call.
 */
MR_API void mr_wg_add(mr_wg_t *wg, int64_t n);

/* mr_wg_add(wg, -1); below zero aborts naming mr_wg_done. Never blocks. */
MR_API void mr_wg_done(mr_wg_t *wg);

/* Wait until the count is zero (at once if it is). Blocks. */
MR_API void mr_wg_wait(mr_wg_t *wg);

/*
 * mr_wg_wait until the deadline at most. Blocks.
 * ERRORS: -ETIMEDOUT the deadline passed with the count not zero; -EINVAL
 * NULL wg.
 */
MR_API int mr_wg_wait_until(mr_wg_t *wg, int64_t deadline_ns);

/* ---- one-shot event ------------------------------------------------------------------- */

/* Set once, releases every waiter, past and future; never unset. */
typedef struct mr_event {
	uint64_t mr__opaque[4];
} mr_event_t;
#define MR_EVENT_INIT { { 0 } }

/* Make e an event not set. Never blocks. */
MR_API void mr_event_init(mr_event_t *e);

/* Set e and wake every waiter; setting it again does nothing. Never blocks. */
MR_API void mr_event_set(mr_event_t *e);

/* Whether e is set (a snapshot that stays true once true). Never blocks. */
MR_API bool mr_event_is_set(const mr_event_t *e);

/* Wait until e is set (at once if it is). Blocks. */
MR_API void mr_event_wait(mr_event_t *e);

/*
 * mr_event_wait until the deadline at most. Blocks.
 * ERRORS: -ETIMEDOUT the deadline passed with e not set; -EINVAL NULL e.
 */
MR_API int mr_event_wait_until(mr_event_t *e, int64_t deadline_ns);

MR_EXTERN_C_END

#endif /* MOIRAI_SYNC_H */
