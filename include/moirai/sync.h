/*
 * moirai/sync.h - synchronisation that parks fibers and puts threads to
 * sleep: mutex, condition variable, counting semaphore, wait group, one-shot
 * event. Every object works from fibers and plain threads at once.
 *
 * Objects are plain structs (initialise with *_init or the static
 * initialiser); they must not be moved or copied while in use. Deadlines are
 * CLOCK_MONOTONIC nanoseconds (mr_now_ns() + timeout); the _until variants
 * return -ETIMEDOUT when the deadline passes first. Functions returning int
 * give -EINVAL for a NULL object; the void ones abort naming the call.
 */
#ifndef MOIRAI_SYNC_H
#define MOIRAI_SYNC_H

#include <moirai/common.h>

MR_EXTERN_C_BEGIN

/* Mutex: a bounded spin, then the waiter parks; unlock hands the lock over
 * to the oldest waiter, so nobody starves. Not recursive. Unlocking a mutex
 * that the calling fiber (or thread) does not hold aborts naming the call. */
typedef struct mr_mutex {
	uint64_t mr__opaque[5];
} mr_mutex_t;
#define MR_MUTEX_INIT { { 0 } }
MR_API void mr_mutex_init(mr_mutex_t *m);
MR_API void mr_mutex_lock(mr_mutex_t *m);
MR_API int mr_mutex_trylock(mr_mutex_t *m); /* 0 or -EBUSY (held, by anyone) */
/* 0, -ETIMEDOUT, or -EDEADLK when the caller already holds m (mr_mutex_lock
 * aborts naming the call there). */
MR_API int mr_mutex_lock_until(mr_mutex_t *m, int64_t deadline_ns);
MR_API void mr_mutex_unlock(mr_mutex_t *m);
/* Destroying a held mutex aborts. */
MR_API void mr_mutex_destroy(mr_mutex_t *m);

/* Condition variable, used with an mr_mutex_t. */
typedef struct mr_cond {
	uint64_t mr__opaque[4];
} mr_cond_t;
#define MR_COND_INIT { { 0 } }
MR_API void mr_cond_init(mr_cond_t *c);
MR_API void mr_cond_wait(mr_cond_t *c, mr_mutex_t *m);
MR_API int mr_cond_wait_until(mr_cond_t *c, mr_mutex_t *m, int64_t deadline_ns);
MR_API void mr_cond_signal(mr_cond_t *c);
MR_API void mr_cond_broadcast(mr_cond_t *c);

/* Counting semaphore; the count never exceeds MR_SEM_VALUE_MAX. */
typedef struct mr_sem {
	uint64_t mr__opaque[4];
} mr_sem_t;
#define MR_SEM_VALUE_MAX ((uint32_t)INT32_MAX)
MR_API int mr_sem_init(mr_sem_t *s, uint32_t count); /* 0 or -EINVAL (> MR_SEM_VALUE_MAX) */
MR_API void mr_sem_wait(mr_sem_t *s);
MR_API int mr_sem_trywait(mr_sem_t *s); /* 0 or -EAGAIN */
MR_API int mr_sem_wait_until(mr_sem_t *s, int64_t deadline_ns);
/* 0, or -EOVERFLOW (count unchanged) when the count is MR_SEM_VALUE_MAX
 * and nobody waits. */
MR_API int mr_sem_post(mr_sem_t *s);

/* Wait group: add before starting work, done when it finishes, wait for zero. */
typedef struct mr_wg {
	uint64_t mr__opaque[4];
} mr_wg_t;
#define MR_WG_INIT { { 0 } }
MR_API void mr_wg_init(mr_wg_t *wg);
MR_API void mr_wg_add(mr_wg_t *wg, int64_t n); /* the count going below zero or past INT64_MAX aborts */
MR_API void mr_wg_done(mr_wg_t *wg);
MR_API void mr_wg_wait(mr_wg_t *wg);
MR_API int mr_wg_wait_until(mr_wg_t *wg, int64_t deadline_ns);

/* One-shot event: set once, releases every waiter, past and future. */
typedef struct mr_event {
	uint64_t mr__opaque[4];
} mr_event_t;
#define MR_EVENT_INIT { { 0 } }
MR_API void mr_event_init(mr_event_t *e);
MR_API void mr_event_set(mr_event_t *e);
MR_API bool mr_event_is_set(const mr_event_t *e);
MR_API void mr_event_wait(mr_event_t *e);
MR_API int mr_event_wait_until(mr_event_t *e, int64_t deadline_ns);

MR_EXTERN_C_END

#endif /* MOIRAI_SYNC_H */
