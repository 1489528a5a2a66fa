/*
 * waitq.c - the wait queue under every primitive of sync.h, and sleeping.
 *
 * A waitq is a spinlock and a FIFO of waiters. A waiter is a fiber (it
 * parks; its worker runs other work) or a thread, including a job on a
 * worker (it sleeps on the futex word `state`: a job must not run other work
 * while it waits for an object another job may hold, or it could bury the
 * holder under itself).
 *
 * Wake-up: the waker takes the waiter off the queue with the lock held, then
 * mr__waiter_wake() reads what it needs and stores WOKEN (seq_cst) before
 * readying the fiber or waking the futex. A fiber that queues itself parks
 * with the lock still held and its resumer releases it after the switch
 * (fiber.h), so nobody can ready it before its registers are saved.
 *
 * Deadlines: a fiber puts a timer on its worker; a fire takes the queue lock
 * and, if the waiter is still queued, unqueues it as TIMEDOUT and readies it.
 * Whoever unqueues the waiter decides the outcome, so a waiter that was
 * woken (e.g. handed a mutex) in the same instant as its deadline passed
 * reports WOKEN and keeps what it was given. A thread uses a timed futex
 * wait and settles the same race under the lock.
 */
#include <errno.h>
#include <sched.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "fiber.h"

void mr__waitq_lock(struct mr__waitq *q)
{
	mr__spin_lock(&q->lock);
}

void mr__waitq_wait_unlocked(struct mr__waitq *q)
{
	mr__spin_wait_unlocked(&q->lock);
}

void mr__waitq_unlock(struct mr__waitq *q)
{
	mr__spin_unlock(&q->lock);
}

static void unlink_waiter(struct mr__waitq *q, struct mr__waiter *wt)
{
	if (wt->prev)
		wt->prev->next = wt->next;
	else
		q->head = wt->next;
	if (wt->next)
		wt->next->prev = wt->prev;
	else
		q->tail = wt->prev;
	wt->next = wt->prev = NULL;
}

/* With q locked: is wt still on q? (a waker unlinks before it stores WOKEN) */
static bool is_queued(const struct mr__waitq *q, const struct mr__waiter *wt)
{
	return wt->prev || q->head == wt;
}

struct mr__waiter *mr__waitq_take(struct mr__waitq *q)
{
	struct mr__waiter *wt = q->head;

	if (wt)
		unlink_waiter(q, wt);
	return wt;
}

void mr__waiter_wake(struct mr__waiter *wt)
{
	struct mr_fiber *f = wt->fiber;
	struct mr__worker *helper = wt->helper;
	struct mr__worker *helping = wt->helping;

	/* Before WOKEN: the thread is no longer blocked for ever as soon as
	 * we decided to wake it (the deadlock check, sched.h). */
	if (wt->counted)
		atomic_fetch_sub_explicit(&mr__nthreads_blocked, 1, memory_order_seq_cst);

	/* seq_cst store: pairs with the waiting thread's load (it may return
	 * and free wt right after; only its address is used below), and with
	 * a helping worker's fence before it sleeps (mr__work_until). */
	atomic_store_explicit(&wt->state, MR__W_WOKEN, memory_order_seq_cst);
	if (f) {
		mr__fiber_ready(f);
	} else if (helper) {
		if (unlikely(mr__test_waiter_wake_hook != NULL))
			mr__test_waiter_wake_hook();
		/* The helper may be a worker of another runtime, which its
		 * job could let go idle and destroy once it sees WOKEN: it
		 * waits until we say we no longer touch it (nor wt). */
		mr__wake_worker(helper, MR__TOK_LATCH);
		/* release: pairs with the acquire in mr__waiter_helped(). */
		atomic_store_explicit(&wt->waker_out, 1, memory_order_release);
	} else if (helping) {
		/* A blocked worker's thread that runs fibers while it waits:
		 * it waits for waker_out too (its runtime could go next). */
		mr__helper_wake(helping);
		/* release: pairs with the acquire in mr__waiter_helped(). */
		atomic_store_explicit(&wt->waker_out, 1, memory_order_release);
	} else {
		mr__futex_wake(&wt->state, 1);
	}
}

void (*mr__test_waiter_wake_hook)(void);

void mr__waiter_helped(struct mr__waiter *wt)
{
	unsigned spins = 0;

	/* acquire: pairs with the release in mr__waiter_wake(). A few
	 * instructions and a futex wake at most, unless it is preempted. */
	while (!atomic_load_explicit(&wt->waker_out, memory_order_acquire))
		mr__backoff(&spins);
}

static bool commit_unlock(void *arg)
{
	mr__waitq_unlock(arg);
	return true;
}

/*
 * End a parked fiber's wait as `how` (TIMEDOUT, CANCELLED) if it still
 * waits: whoever unqueues the waiter decides, so a waker that took it off
 * the queue first wins and this does nothing. No lock held on entry.
 */
static void waiter_end(struct mr__waiter *wt, uint32_t how)
{
	struct mr__waitq *q = wt->q;
	bool mine = false;

	mr__waitq_lock(q);
	if (atomic_load_explicit(&wt->state, memory_order_relaxed) == MR__W_WAITING &&
	    is_queued(q, wt)) {
		unlink_waiter(q, wt);
		atomic_store_explicit(&wt->state, how, memory_order_relaxed);
		mine = true;
	}
	mr__waitq_unlock(q);
	if (mine)
		mr__fiber_ready(wt->fiber);
}

/* A fiber's deadline passed (no lock held: see sched/timer.c). */
static void waiter_timeout(struct mr__timer *t)
{
	waiter_end((struct mr__waiter *)((char *)t - offsetof(struct mr__waiter, timer)),
		   MR__W_TIMEDOUT);
}

/* mr_fiber_cancel() of a waiting fiber (its cancel_lock held). A woken
 * waiter's object may be gone (fiber.h): look at the state first.
 * mr_mutex_destroy() quiesces the hooks; the other sync objects have no
 * destroy call, so a program that frees one at once after the post that
 * woke a waiter still races a canceller's lock here, in a window of a
 * few instructions. */
static void waiter_cancel(struct mr__cancel_hook *h)
{
	struct mr__waiter *wt = (struct mr__waiter *)((char *)h - offsetof(struct mr__waiter, cancel));

	if (atomic_load_explicit(&wt->state, memory_order_seq_cst) != MR__W_WAITING)
		return;
	waiter_end(wt, MR__W_CANCELLED);
}

static bool waiter_woken(void *arg)
{
	struct mr__waiter *wt = arg;
	/* acquire: pairs with the seq_cst store in mr__waiter_wake(). */
	return atomic_load_explicit(&wt->state, memory_order_acquire) != MR__W_WAITING;
}

int mr__waitq_wait(struct mr__waitq *q, struct mr__waiter *wt, int64_t deadline,
		   const char *call)
{
	struct mr_fiber *self = mr__fiber_parkable();
	struct mr__worker *w = mr__self();

	wt->q = q;
	wt->fiber = self;
	/* A plain thread waiting for ever: only a waker ends it (sched.h). */
	wt->counted = !self && !w && deadline < 0;
	if (wt->counted)
		atomic_fetch_add_explicit(&mr__nthreads_blocked, 1, memory_order_seq_cst);
	/* A job or pinned fiber on a worker helps while it waits. */
	wt->helping = self ? NULL : w;
	atomic_store_explicit(&wt->waker_out, 0, memory_order_relaxed);
	atomic_store_explicit(&wt->state, MR__W_WAITING, memory_order_relaxed);
	if (wt->front) {
		wt->prev = NULL;
		wt->next = q->head;
		if (q->head)
			q->head->prev = wt;
		else
			q->tail = wt;
		q->head = wt;
	} else {
		wt->next = NULL;
		wt->prev = q->tail;
		if (q->tail)
			q->tail->next = wt;
		else
			q->head = wt;
		q->tail = wt;
	}

	if (self) {
		/* The hook takes q's lock, which our park's commit releases:
		 * it cannot ready us before we have switched out. */
		wt->cancel.fn = waiter_cancel;
		if (wt->cancellable && mr__cancel_arm(self, &wt->cancel)) {
			unlink_waiter(q, wt);
			mr__waitq_unlock(q);
			mr__cancel_disarm(self);
			mr__cancel_take(self);
			return MR__W_CANCELLED;
		}
		if (deadline >= 0) {
			wt->timer.deadline = deadline;
			wt->timer.fire = waiter_timeout;
			wt->timer.call = call;
			mr__timer_add(w, &wt->timer);
		}
		mr__fiber_park(commit_unlock, q, call);
		int st = (int)atomic_load_explicit(&wt->state, memory_order_acquire);
		if (deadline >= 0 && st != MR__W_TIMEDOUT)
			mr__timer_cancel(&wt->timer);
		if (wt->cancellable) {
			mr__cancel_disarm(self);
			if (st == MR__W_CANCELLED)
				mr__cancel_take(self);
		}
		return st;
	}

	mr__waitq_unlock(q);
	if (w)
		mr__worker_block(w);
	/* Counted as blocked for ever: the workers may all be asleep already,
	 * and nobody else would look now (the deadlock check, sched.h). */
	if (wt->counted)
		mr__stuck_poke_all();
	for (;;) {
		/* acquire: pairs with the seq_cst store in mr__waiter_wake(). */
		uint32_t st = atomic_load_explicit(&wt->state, memory_order_acquire);
		if (st != MR__W_WAITING) {
			if (w) {
				/* Only a waker stores WOKEN (a timeout is ours). */
				if (st == MR__W_WOKEN)
					mr__waiter_helped(wt);
				mr__worker_unblock(w);
			}
			return (int)st;
		}
		if (w)
			mr__worker_help(w, waiter_woken, wt, deadline);
		else
			mr__futex_wait_until(&wt->state, MR__W_WAITING, deadline);
		if (deadline >= 0 && (int64_t)mr__now_ns() >= deadline) {
			mr__waitq_lock(q);
			/* Still queued: the timeout wins. Unqueued but not yet
			 * WOKEN: a waker is on its way; wait for its store. */
			if (atomic_load_explicit(&wt->state, memory_order_relaxed) ==
				    MR__W_WAITING &&
			    is_queued(q, wt)) {
				unlink_waiter(q, wt);
				atomic_store_explicit(&wt->state, MR__W_TIMEDOUT,
						      memory_order_relaxed);
			}
			mr__waitq_unlock(q);
		}
	}
}

/* ---- sleeping ---------------------------------------------------------------- */

int64_t mr_now_ns(void)
{
	return (int64_t)mr__now_ns();
}

/*
 * A sleeping fiber ends its sleep when its timer fires or when it is
 * cancelled: each claims the waiter with a CAS of `state` from WAITING, and
 * the winner readies the fiber. The timer is added in the park's commit
 * (after the switch: a fire may come from any thread of the runtime), and
 * the cancel hook is armed there too, before the timer (armed after it, a
 * fire in between could have readied and resumed the fiber, which would
 * find a hook it no longer owns). Either may ready the fiber while the
 * commit still runs, so the commit's last access to wt is its release
 * store of waker_out, and the woken fiber waits for it before it lets wt
 * go.
 */
static void sleep_fire(struct mr__timer *t)
{
	struct mr__waiter *wt = (struct mr__waiter *)((char *)t - offsetof(struct mr__waiter, timer));
	uint32_t expect = MR__W_WAITING;

	if (atomic_compare_exchange_strong_explicit(&wt->state, &expect, MR__W_WOKEN,
						    memory_order_relaxed, memory_order_relaxed))
		mr__fiber_ready(wt->fiber);
}

static void sleep_cancel(struct mr__cancel_hook *h)
{
	struct mr__waiter *wt = (struct mr__waiter *)((char *)h - offsetof(struct mr__waiter, cancel));
	uint32_t expect = MR__W_WAITING;

	if (atomic_compare_exchange_strong_explicit(&wt->state, &expect, MR__W_CANCELLED,
						    memory_order_relaxed, memory_order_relaxed))
		mr__fiber_ready(wt->fiber);
}

/* After the sleeper switched out; same thread, same worker. */
static bool commit_sleep(void *arg)
{
	struct mr__waiter *wt = arg;
	uint32_t expect = MR__W_WAITING;

	if (mr__cancel_arm(wt->fiber, &wt->cancel) &&
	    atomic_compare_exchange_strong_explicit(&wt->state, &expect, MR__W_CANCELLED,
						    memory_order_relaxed, memory_order_relaxed)) {
		atomic_store_explicit(&wt->waker_out, 1, memory_order_release);
		return false;
	}
	mr__timer_add(mr__self(), &wt->timer);
	/* release: the last touch of wt; pairs with the sleeper's acquire. */
	atomic_store_explicit(&wt->waker_out, 1, memory_order_release);
	return true;
}

static bool never(void *arg)
{
	(void)arg;
	return false;
}

int mr_sleep_until(int64_t deadline)
{
	struct mr_fiber *self = mr__fiber_parkable();

	if (deadline <= mr_now_ns())
		return 0;
	if (self) {
		struct mr__waiter wt = { .fiber = self };
		unsigned spins = 0;

		if (mr__cancel_pending(self))
			return mr__cancel_take(self);
		atomic_init(&wt.state, MR__W_WAITING);
		atomic_init(&wt.waker_out, 0);
		wt.timer.idx = MR__TIMER_IDLE;
		wt.timer.deadline = deadline;
		wt.timer.fire = sleep_fire;
		wt.timer.call = "mr_sleep_until";
		wt.cancel.fn = sleep_cancel;
		mr__wait_note(MR__WAIT_SLEEP, NULL, deadline);
		mr__fiber_park(commit_sleep, &wt, "mr_sleep_until");
		/* acquire: pairs with the commit's last store (above). */
		while (!atomic_load_explicit(&wt.waker_out, memory_order_acquire))
			mr__backoff(&spins);
		mr__cancel_disarm(self);
		if (atomic_load_explicit(&wt.state, memory_order_relaxed) != MR__W_CANCELLED)
			return 0;
		/* Cancelled: the timer (if it was added) must not fire into wt. */
		if (wt.timer.w)
			mr__timer_cancel(&wt.timer);
		return mr__cancel_take(self);
	}
	struct timespec ts = { deadline / 1000000000, deadline % 1000000000 };
	struct mr__worker *w = mr__self();
	if (w) {
		/* A job or pinned fiber: run fibers meanwhile, as any blocked wait. */
		mr__wait_note(MR__WAIT_SLEEP, NULL, deadline);
		mr__worker_block(w);
		mr__worker_help(w, never, NULL, deadline);
		mr__worker_unblock(w);
		return 0;
	}
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
	return 0;
}

int mr_sleep_ns(uint64_t ns)
{
	if (ns > (uint64_t)INT64_MAX / 2)
		ns = (uint64_t)INT64_MAX / 2;
	return mr_sleep_until(mr_now_ns() + (int64_t)ns);
}
