/*
 * sem.c - mr_sem_t, a counting semaphore. A post with waiters hands its unit
 * to the oldest one (FIFO, no overtaking); without waiters it counts.
 * wait takes a unit with a CAS when there is one, else queues. The count
 * stops at MR_SEM_VALUE_MAX: a post that would pass it fails (-EOVERFLOW)
 * and counts nothing, as POSIX's sem_post; it used to wrap to 0 past
 * UINT32_MAX, losing every unit.
 */
#include <errno.h>
#include <string.h>

#include "sync.h"

static struct mr__sem *S(mr_sem_t *s)
{
	return (struct mr__sem *)s;
}

int mr_sem_init(mr_sem_t *s, uint32_t count)
{
	if (!s || count > MR_SEM_VALUE_MAX)
		return -EINVAL;
	memset(s, 0, sizeof(*s));
	atomic_init(&S(s)->count, count);
	return 0;
}

static bool take_unit(struct mr__sem *sm)
{
	uint32_t c = atomic_load_explicit(&sm->count, memory_order_relaxed);
	/* acquire: pairs with the release in mr_sem_post(). */
	while (c > 0)
		if (atomic_compare_exchange_weak_explicit(&sm->count, &c, c - 1,
							  memory_order_acquire,
							  memory_order_relaxed))
			return true;
	return false;
}

/*
 * A unit taken without the queue lock may have been counted by a post that
 * still holds the lock (its unlock is its last access to the semaphore).
 * Wait for that unlock, so that the caller may free the semaphore as soon as
 * it returns. acquire: pairs with the release in mr__waitq_unlock().
 */
static bool take_unit_unlocked(struct mr__sem *sm)
{
	if (!take_unit(sm))
		return false;
	mr__waitq_wait_unlocked(&sm->q);
	return true;
}

int mr_sem_trywait(mr_sem_t *s)
{
	if (!s)
		return -EINVAL;
	return take_unit_unlocked(S(s)) ? 0 : -EAGAIN;
}

static int sem_wait(mr_sem_t *s, int64_t deadline_ns, bool cancellable, const char *call)
{
	struct mr__sem *sm = S(s);
	struct mr__waiter wt = { .front = false, .cancellable = cancellable };

	if (take_unit_unlocked(sm))
		return 0;
	mr__waitq_lock(&sm->q);
	/* post() counts only with the queue empty, under this lock. */
	if (take_unit(sm)) {
		mr__waitq_unlock(&sm->q);
		return 0;
	}
	if (deadline_ns >= 0 && mr_now_ns() >= deadline_ns) {
		mr__waitq_unlock(&sm->q);
		return -ETIMEDOUT;
	}
	mr__wait_note(MR__WAIT_SEM, sm, deadline_ns);
	int r = mr__waitq_wait(&sm->q, &wt, deadline_ns, call);
	if (r == MR__W_WOKEN) {
		/* acquire: pairs with the release fence in mr_sem_post(). */
		atomic_thread_fence(memory_order_acquire);
		return 0;
	}
	return r == MR__W_CANCELLED ? -ECANCELED : -ETIMEDOUT;
}

int mr_sem_wait_until(mr_sem_t *s, int64_t deadline_ns)
{
	if (!s)
		return -EINVAL;
	return sem_wait(s, mr__deadline(deadline_ns), true, "mr_sem_wait_until");
}

void mr_sem_wait(mr_sem_t *s)
{
	if (unlikely(!s))
		mr__die("mr_sem_wait", "NULL semaphore");
	sem_wait(s, -1, false, "mr_sem_wait");
}

int mr_sem_post(mr_sem_t *s)
{
	struct mr__sem *sm = S(s);

	if (!s)
		return -EINVAL;
	mr__waitq_lock(&sm->q);
	struct mr__waiter *wt = mr__waitq_take(&sm->q);
	if (!wt) {
		/* Only a post raises the count, and only under this lock: a
		 * wait may lower it meanwhile, never raise it past the check. */
		if (atomic_load_explicit(&sm->count, memory_order_relaxed) >= MR_SEM_VALUE_MAX) {
			mr__waitq_unlock(&sm->q);
			return -EOVERFLOW;
		}
		/* release: pairs with the acquire CAS in take_unit(). */
		atomic_fetch_add_explicit(&sm->count, 1, memory_order_release);
	} else {
		/* release: pairs with the waiter's acquire fence in sem_wait(). */
		atomic_thread_fence(memory_order_release);
	}
	mr__waitq_unlock(&sm->q);
	if (wt)
		mr__waiter_wake(wt);
	return 0;
}
