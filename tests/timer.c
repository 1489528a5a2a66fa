/*
 * timer.c - the per-worker timer heap against the locks of the objects its
 * timers wake: a worker firing a blocked worker's timers while a fiber of
 * that worker starts a timed wait on the same object (the lock order of
 * user/LOCKING), and cancels racing fires.
 */
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>

#include <moirai/moirai.h>

#include "../user/fiber/fiber.h"
#include "harness.h"
#include "util.h"

/* ---- a fire of a blocked worker's timer against a timed wait ------------- */

static mr_sem_t obj;	 /* what both fibers wait on with a deadline */
static mr_sem_t release; /* what the blocked worker's job waits on */
static struct mr__worker *_Atomic home; /* the worker of the main fiber */
static _Atomic int first_started, first_worker, first_result, hook_fired;

/*
 * Runs in the thread firing a timer of `home` while home's thread is
 * blocked: let home go on (it starts a timed wait on obj at once), and give
 * it all the time it needs to reach the heap lock while this fire is still
 * on its way to obj's lock.
 */
static void fire_hook(struct mr__timer *t)
{
	struct mr__worker *h = atomic_load(&home);

	if (t->w != h || mr__self() == h || atomic_exchange(&hook_fired, 1))
		return;
	mr_sem_post(&release);
	usleep(100 * 1000);
}

static void first(void *arg)
{
	int64_t wait_ns = (int64_t)(intptr_t)arg;

	atomic_store(&first_worker, mr_worker_index());
	atomic_store(&first_started, 1);
	atomic_store(&first_result, mr_sem_wait_until(&obj, mr_now_ns() + wait_ns));
}

/* Half a of a join: blocks the worker's thread (a job does not park). */
static void wait_release(void *arg)
{
	mr_sem_wait(&release);
}

static void nothing(void *arg)
{
}

/* The calling fiber's worker, read afresh: a fiber may resume on another
 * thread after mr_yield(), and an inlined thread-local read may reuse the
 * thread pointer of before (aarch64). */
static __attribute__((noinline)) struct mr__worker *current_worker(void)
{
	return mr__self();
}

static void fire_vs_wait_main(void *arg)
{
	int *rounds = arg;
	int64_t wait_ns = 50 * 1000 * 1000 * (int64_t)mr_test_scale();

	for (;;) {
		atomic_store(&first_started, 0);
		atomic_store(&home, current_worker());
		mr_fiber_t *f = mr_go(first, (void *)(intptr_t)wait_ns);
		ASSERT_NONNULL(f);
		/* The new fiber waits in this worker's private deque: it runs
		 * (and parks with its timer in this worker's heap) when we yield. */
		while (!atomic_load(&first_started))
			mr_yield();
		++*rounds;
		if (atomic_load(&first_worker) != mr_worker_index()) {
			/* Taken by the other worker: its timer is not ours. */
			ASSERT_EQ(mr_fiber_join(f), 0);
			ASSERT_LT(*rounds, 20);
			continue;
		}
		/* Block this worker's thread until the other worker fires the
		 * timer (the hook posts release), then start a timed wait on
		 * the object whose waiter that fire is about to time out. */
		mr_join(wait_release, NULL, nothing, NULL);
		EXPECT_EQ(mr_sem_wait_until(&obj, mr_now_ns() + 20 * 1000 * 1000), -ETIMEDOUT);
		ASSERT_EQ(mr_fiber_join(f), 0);
		EXPECT_EQ(atomic_load(&first_result), -ETIMEDOUT);
		break;
	}
}

TEST_TIMEOUT(fire_of_blocked_worker_timer_vs_timed_wait, 30)
{
	mr_runtime_t *rt = make_rt(2);
	int rounds = 0;

	ASSERT_NONNULL(rt);
	mr_sem_init(&obj, 0);
	mr_sem_init(&release, 0);
	mr__test_timer_fire_hook = fire_hook;
	ASSERT_EQ(mr_run(rt, fire_vs_wait_main, &rounds), 0);
	mr__test_timer_fire_hook = NULL;
	/* The fire ran on the other worker while this one was blocked. */
	EXPECT_EQ(atomic_load(&hook_fired), 1);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* ---- a cancel waits out a fire in progress ------------------------------ */

static sem_t poster_go;
static _Atomic int fire_over, woken_saw_fire_over = -1;
static struct mr__timer *_Atomic slow_timer;
static void (*slow_timer_fire)(struct mr__timer *t);

static void slow_fire(struct mr__timer *t)
{
	slow_timer_fire(t);
	atomic_store(&fire_over, 1);
}

/* Before the fire of the waiter's timer: have an outside thread wake the
 * waiter now, and let it run on the other worker and cancel this timer
 * while the fire is still to come. */
static void slow_hook(struct mr__timer *t)
{
	if (t != atomic_load(&slow_timer))
		return;
	slow_timer_fire = t->fire;
	t->fire = slow_fire;
	sem_post(&poster_go);
	usleep(50 * 1000);
}

static void *poster(void *arg)
{
	while (sem_wait(&poster_go) != 0)
		;
	mr_sem_post(&obj);
	return NULL;
}

static void timed_waiter(void *arg)
{

	int r = mr_sem_wait_until(&obj, mr_now_ns() + 100 * 1000 * 1000 * (int64_t)mr_test_scale());
	/* Woken by the post while its timer was being fired: the wait must
	 * not return (and free the timer in its frame) before the fire is
	 * over. */
	atomic_store(&woken_saw_fire_over, atomic_load(&fire_over));
	EXPECT_EQ(r, 0);
}

/* The pending timer of rt (it has one at most), or NULL. */
static struct mr__timer *find_timer(struct mr_runtime *rt)
{
	struct mr__timer *t = NULL;

	for (unsigned i = 0; i < rt->nworkers && !t; i++) {
		struct mr__worker *w = rt->workers[i];
		mr__spin_lock(&w->tlock);
		if (w->tn)
			t = w->theap[0];
		mr__spin_unlock(&w->tlock);
	}
	return t;
}

static void cancel_vs_fire_main(void *arg)
{
	mr_fiber_t *f = mr_go(timed_waiter, NULL);
	struct mr__timer *t;

	ASSERT_NONNULL(f);
	/* The waiter parks with its timer in the heap of a worker (the only
	 * timer of this runtime), then or later (it did not start yet). */
	while (!(t = find_timer(current_worker()->rt)) && atomic_load(&woken_saw_fire_over) < 0)
		mr_yield();
	atomic_store(&slow_timer, t);
	ASSERT_EQ(mr_fiber_join(f), 0);
}

TEST_TIMEOUT(cancel_waits_out_a_fire_in_progress, 30)
{
	mr_runtime_t *rt = make_rt(2);
	pthread_t th;

	ASSERT_NONNULL(rt);
	mr_sem_init(&obj, 0);
	sem_init(&poster_go, 0, 0);
	ASSERT_EQ(pthread_create(&th, NULL, poster, NULL), 0);
	mr__test_timer_fire_hook = slow_hook;
	ASSERT_EQ(mr_run(rt, cancel_vs_fire_main, NULL), 0);
	mr__test_timer_fire_hook = NULL;
	sem_post(&poster_go); /* if the hook never ran (a test too slow) */
	ASSERT_EQ(pthread_join(th, NULL), 0);
	EXPECT_EQ(atomic_load(&fire_over), 1);
	EXPECT_EQ(atomic_load(&woken_saw_fire_over), 1);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

TEST_HARNESS_MAIN
