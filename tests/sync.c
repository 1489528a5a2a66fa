/*
 * sync.c - mutex, condvar, semaphore, wait group and event from fibers and
 * threads (mixed on one object), deadlines, timers and idle CPU with
 * sleeping fibers, memory per parked fiber.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <moirai/moirai.h>

#include "harness.h"
#include "util.h"

static int live_fibers(int n)
{
	n = (int)(n / (long)mr_test_scale());
#if defined(__SANITIZE_THREAD__)
	if (n > 4000)
		n = 4000;
#endif
	return n > 0 ? n : 1;
}

/* ---- mutex: 10,000 fibers and 2 threads on one counter ----------------------- */

struct counter {
	mr_mutex_t m;
	long value; /* protected by m */
	int iters;
};

static void add_locked(void *arg)
{
	struct counter *c = arg;
	for (int i = 0; i < c->iters; i++) {
		mr_mutex_lock(&c->m);
		long v = c->value;
		if (i % 7 == 0)
			mr_yield(); /* hold it across a switch now and then */
		c->value = v + 1;
		mr_mutex_unlock(&c->m);
	}
}

static void *add_thread(void *arg)
{
	add_locked(arg);
	return NULL;
}

struct many {
	int n;
	void (*fn)(void *);
	void *arg;
};

static void go_many(void *arg)
{
	struct many *m = arg;
	mr_fiber_t **fs = calloc((size_t)m->n, sizeof(*fs));
	for (int i = 0; i < m->n; i++)
		fs[i] = mr_go(m->fn, m->arg);
	for (int i = 0; i < m->n; i++)
		mr_fiber_join(fs[i]);
	free(fs);
}

TEST_TIMEOUT(mutex_fibers_and_threads_exact_count, 120)
{
	mr_runtime_t *rt = make_rt(2);
	struct counter c = { .m = MR_MUTEX_INIT, .iters = 20 };
	struct many m = { live_fibers(10000), add_locked, &c };
	pthread_t th[2];

	ASSERT_NONNULL(rt);
	for (int i = 0; i < 2; i++)
		ASSERT_EQ(pthread_create(&th[i], NULL, add_thread, &c), 0);
	ASSERT_EQ(mr_run(rt, go_many, &m), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	EXPECT_EQ(c.value, (long)(m.n + 2) * c.iters);
	EXPECT_EQ(mr_mutex_trylock(&c.m), 0);
	EXPECT_EQ(mr_mutex_trylock(&c.m), -EBUSY);
	mr_mutex_unlock(&c.m);
	mr_mutex_destroy(&c.m);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* ---- condvar: producers and consumers, fibers and threads mixed ---------------- */

#define QCAP 16

struct queue {
	mr_mutex_t m;
	mr_cond_t not_empty, not_full;
	long buf[QCAP];
	int head, len;
	long per_producer;
	_Atomic long consumed_sum, consumed_n;
	long stop_after;
};

static void produce(struct queue *q, long base)
{
	for (long i = 1; i <= q->per_producer; i++) {
		mr_mutex_lock(&q->m);
		while (q->len == QCAP)
			mr_cond_wait(&q->not_full, &q->m);
		q->buf[(q->head + q->len++) % QCAP] = base + i;
		mr_cond_signal(&q->not_empty);
		mr_mutex_unlock(&q->m);
	}
}

static bool consume_one(struct queue *q)
{
	mr_mutex_lock(&q->m);
	while (q->len == 0) {
		if (atomic_load(&q->consumed_n) >= q->stop_after) {
			mr_mutex_unlock(&q->m);
			return false;
		}
		mr_cond_wait(&q->not_empty, &q->m);
	}
	long v = q->buf[q->head];
	q->head = (q->head + 1) % QCAP;
	q->len--;
	mr_cond_signal(&q->not_full);
	long n = atomic_fetch_add(&q->consumed_n, 1) + 1;
	atomic_fetch_add(&q->consumed_sum, v);
	if (n == q->stop_after)
		mr_cond_broadcast(&q->not_empty); /* release the other consumers */
	mr_mutex_unlock(&q->m);
	return true;
}

struct role {
	struct queue *q;
	long base;
};

static void producer_fn(void *arg)
{
	struct role *r = arg;
	produce(r->q, r->base);
}

static void consumer_fn(void *arg)
{
	struct role *r = arg;
	while (consume_one(r->q))
		;
}

static void *producer_thread(void *arg)
{
	producer_fn(arg);
	return NULL;
}

static void *consumer_thread(void *arg)
{
	consumer_fn(arg);
	return NULL;
}

static void pc_main(void *arg)
{
	struct role *roles = arg;
	mr_fiber_t *fs[4];
	/* fibers: producers 0,1 and consumers 0,1 */
	fs[0] = mr_go(producer_fn, &roles[0]);
	fs[1] = mr_go(producer_fn, &roles[1]);
	fs[2] = mr_go(consumer_fn, &roles[4]);
	fs[3] = mr_go(consumer_fn, &roles[5]);
	for (int i = 0; i < 4; i++)
		mr_fiber_join(fs[i]);
}

TEST_TIMEOUT(condvar_producers_consumers_mixed, 120)
{
	mr_runtime_t *rt = make_rt(2);
	struct queue q;
	struct role roles[8];
	pthread_t th[4];

	ASSERT_NONNULL(rt);
	memset(&q, 0, sizeof(q));
	mr_mutex_init(&q.m);
	mr_cond_init(&q.not_empty);
	mr_cond_init(&q.not_full);
	q.per_producer = (long)(50000 / mr_test_scale());
	q.stop_after = 4 * q.per_producer;
	for (int i = 0; i < 8; i++)
		roles[i] = (struct role){ &q, (long)i * 1000000000L };
	/* threads: producers 2,3 and consumers 2,3 */
	ASSERT_EQ(pthread_create(&th[0], NULL, producer_thread, &roles[2]), 0);
	ASSERT_EQ(pthread_create(&th[1], NULL, producer_thread, &roles[3]), 0);
	ASSERT_EQ(pthread_create(&th[2], NULL, consumer_thread, &roles[6]), 0);
	ASSERT_EQ(pthread_create(&th[3], NULL, consumer_thread, &roles[7]), 0);
	ASSERT_EQ(mr_run(rt, pc_main, roles), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	long want = 0;
	for (int p = 0; p < 4; p++)
		want += p * 1000000000L * q.per_producer + q.per_producer * (q.per_producer + 1) / 2;
	EXPECT_EQ(atomic_load(&q.consumed_n), q.stop_after);
	EXPECT_EQ(atomic_load(&q.consumed_sum), want);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* ---- wait group with many parked fibers; memory per parked fiber ---------------- */

struct parked {
	mr_wg_t started, release;
	_Atomic long after;
};

static void park_fn(void *arg)
{
	struct parked *p = arg;
	mr_wg_done(&p->started);
	mr_wg_wait(&p->release);
	atomic_fetch_add(&p->after, 1);
}

static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

struct park_run {
	struct parked *p;
	int n;
	long rss_before, rss_parked;
};

static void park_main(void *arg)
{
	struct park_run *r = arg;
	mr_fiber_t **fs = calloc((size_t)r->n, sizeof(*fs));
	r->rss_before = rss_kib();
	mr_wg_add(&r->p->started, r->n);
	mr_wg_add(&r->p->release, 1);
	for (int i = 0; i < r->n; i++)
		fs[i] = mr_go(park_fn, r->p);
	mr_wg_wait(&r->p->started);
	r->rss_parked = rss_kib();
	mr_wg_done(&r->p->release);
	for (int i = 0; i < r->n; i++)
		mr_fiber_join(fs[i]);
	free(fs);
}

TEST_TIMEOUT(wait_group_100k_parked_fibers, 120)
{
	mr_runtime_t *rt = make_rt(2);
	struct parked p;
	struct park_run r = { &p, live_fibers(100000), 0, 0 };
#if defined(__SANITIZE_THREAD__)
	r.n = 1000; /* TSan shadows every stack: ~1 MB of RSS per fiber */
#endif

	ASSERT_NONNULL(rt);
	memset(&p, 0, sizeof(p));
	mr_wg_init(&p.started);
	mr_wg_init(&p.release);
	ASSERT_EQ(mr_run(rt, park_main, &r), 0);
	EXPECT_EQ(atomic_load(&p.after), r.n);
	double per = (double)(r.rss_parked - r.rss_before) * 1024.0 / r.n;
	TH_LOG("%d parked fibers: RSS %ld -> %ld KiB, %.0f bytes per fiber", r.n, r.rss_before,
	       r.rss_parked, per);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
	EXPECT_LE(per, 12.0 * 1024);
#endif
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* ---- timers ------------------------------------------------------------------------ */

struct sleeper {
	int64_t deadline, woke, armed;
	int order;
	_Atomic int *seq;
};

static void sleep_fn(void *arg)
{
	struct sleeper *s = arg;
	s->armed = mr_now_ns();
	mr_sleep_until(s->deadline);
	s->woke = mr_now_ns();
	s->order = atomic_fetch_add(s->seq, 1);
}

struct sleepers {
	struct sleeper *s;
	int n;
};

static void sleepers_main(void *arg)
{
	struct sleepers *ss = arg;
	mr_fiber_t **fs = calloc((size_t)ss->n, sizeof(*fs));
	for (int i = 0; i < ss->n; i++)
		fs[i] = mr_go(sleep_fn, &ss->s[i]);
	for (int i = 0; i < ss->n; i++)
		mr_fiber_join(fs[i]);
	free(fs);
}

TEST(timers_fire_in_deadline_order_never_early)
{
	mr_runtime_t *rt = make_rt(1);
#if defined(__SANITIZE_THREAD__)
	int n = 40; /* a fiber's first switch costs milliseconds under TSan */
#else
	int n = 200;
#endif
	struct sleeper *s = calloc((size_t)n, sizeof(*s));
	_Atomic int seq = 0;
	struct sleepers ss = { s, n };
	/* Far enough ahead that every fiber has started (and set its timer)
	 * before the first deadline, sanitizers included. */
	int64_t t0 = mr_now_ns() + 50 * 1000 * 1000 * (int64_t)mr_test_scale();
	uint64_t rng = 12345;

	ASSERT_NONNULL(rt);
	for (int i = 0; i < n; i++) {
		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		/* distinct deadlines 0.5 ms apart, in a shuffled order of creation */
		s[i].deadline = t0 + (int64_t)((rng >> 33) % 1000) * 500000 + i;
		s[i].seq = &seq;
	}
	ASSERT_EQ(mr_run(rt, sleepers_main, &ss), 0);
	int late = 0;
	for (int i = 0; i < n; i++)
		late += s[i].armed >= s[i].deadline;
	TH_LOG("%d of %d timers armed after their deadline (slow start)", late, n);
	EXPECT_LT(late, n / 2);
	for (int i = 0; i < n; i++) {
		EXPECT_GE(s[i].woke, s[i].deadline);
		for (int j = 0; j < n; j++) {
			/* Both pending before the earlier deadline (a slow start, as
			 * under TSan, may arm a timer after an earlier one fired). */
			bool both_pending = s[i].armed < s[i].deadline && s[j].armed < s[i].deadline;
			if (both_pending && s[i].deadline + 500000 <= s[j].deadline &&
			    s[i].order > s[j].order) {
				TH_LOG("deadline +%lld us ran %d-th, after +%lld us (%d-th); woke at "
				       "+%lld and +%lld us",
				       (long long)(s[i].deadline - t0) / 1000, s[i].order,
				       (long long)(s[j].deadline - t0) / 1000, s[j].order,
				       (long long)(s[i].woke - t0) / 1000,
				       (long long)(s[j].woke - t0) / 1000);
				ASSERT_TRUE(!"a later deadline fired first");
			}
		}
	}
	free(s);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

TEST(sleep_from_a_thread_never_early)
{
	int64_t t = mr_now_ns();
	EXPECT_EQ(mr_sleep_ns(2000000), 0);
	EXPECT_GE(mr_now_ns() - t, 2000000);
	EXPECT_EQ(mr_sleep_until(0), 0);
}

/* The process's CPU time (clock_gettime: qemu-user fakes /proc/self/stat). */
static long cpu_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct idle_run {
	int n;
	long cpu_used;
	int64_t deadline;
	mr_wg_t started;
};

static void nap(void *arg)
{
	struct idle_run *r = arg;
	mr_wg_done(&r->started);
	mr_sleep_until(r->deadline);
}

static void idle_main(void *arg)
{
	struct idle_run *r = arg;
	mr_fiber_t **fs = calloc((size_t)r->n, sizeof(*fs));
	/* Starting them costs page faults (~11 us each here): measure after. */
	r->deadline = mr_now_ns() + 3000000000LL;
	mr_wg_add(&r->started, r->n);
	for (int i = 0; i < r->n; i++)
		fs[i] = mr_go(nap, r);
	mr_wg_wait(&r->started);
	mr_sleep_ns(50000000ull);
	long c0 = cpu_ms();
	mr_sleep_ns(1000000000ull);
	r->cpu_used = cpu_ms() - c0;
	for (int i = 0; i < r->n; i++)
		mr_fiber_join(fs[i]);
	free(fs);
}

TEST_TIMEOUT(sleeping_fibers_leave_workers_idle, 60)
{
	mr_runtime_t *rt = make_rt(2);
	struct idle_run r = { .n = live_fibers(10000) };

	ASSERT_NONNULL(rt);
	ASSERT_EQ(mr_run(rt, idle_main, &r), 0);
	TH_LOG("%d sleeping fibers: the process used %ld ms of CPU in 1 s", r.n, r.cpu_used);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
	EXPECT_LE(r.cpu_used, 10); /* 1% of 1 s */
#endif
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* ---- deadlines ----------------------------------------------------------------------- */

struct timeouts {
	mr_mutex_t m;
	mr_sem_t sem;
	mr_wg_t wg;
	mr_event_t ev;
	mr_cond_t cv;
	int r_mutex, r_sem, r_wg, r_ev, r_cv, r_cv_held;
};

static void try_timeouts(void *arg)
{
	struct timeouts *t = arg;
	int64_t soon = mr_now_ns() + 5 * 1000 * 1000;

	t->r_mutex = mr_mutex_lock_until(&t->m, soon);
	t->r_sem = mr_sem_wait_until(&t->sem, mr_now_ns() + 5000000);
	t->r_wg = mr_wg_wait_until(&t->wg, mr_now_ns() + 5000000);
	t->r_ev = mr_event_wait_until(&t->ev, mr_now_ns() + 5000000);
	mr_mutex_t m2 = MR_MUTEX_INIT;
	mr_mutex_lock(&m2);
	t->r_cv = mr_cond_wait_until(&t->cv, &m2, mr_now_ns() + 5000000);
	t->r_cv_held = mr_mutex_trylock(&m2); /* -EBUSY: wait_until re-took it */
	mr_mutex_unlock(&m2);
}

static void timeouts_fiber(void *arg)
{
	mr_fiber_t *f = mr_go(try_timeouts, arg);
	mr_fiber_join(f);
}

TEST(deadlines_time_out_from_fibers_and_threads)
{
	for (int from_fiber = 0; from_fiber <= 1; from_fiber++) {
		struct timeouts t;
		memset(&t, 0, sizeof(t));
		mr_mutex_init(&t.m);
		mr_sem_init(&t.sem, 0);
		mr_wg_init(&t.wg);
		mr_wg_add(&t.wg, 1);
		mr_event_init(&t.ev);
		mr_cond_init(&t.cv);
		mr_mutex_lock(&t.m); /* held by this thread */
		if (from_fiber)
			ASSERT_EQ(mr_run(NULL, timeouts_fiber, &t), 0);
		else
			try_timeouts(&t);
		/* Held by this thread: a fiber times out, the thread itself
		 * would wait for itself (-EDEADLK, mutex_locked_twice_...). */
		EXPECT_EQ(t.r_mutex, from_fiber ? -ETIMEDOUT : -EDEADLK);
		EXPECT_EQ(t.r_sem, -ETIMEDOUT);
		EXPECT_EQ(t.r_wg, -ETIMEDOUT);
		EXPECT_EQ(t.r_ev, -ETIMEDOUT);
		EXPECT_EQ(t.r_cv, -ETIMEDOUT);
		EXPECT_EQ(t.r_cv_held, -EBUSY);
		mr_mutex_unlock(&t.m);
		/* Nothing was left queued: the objects still work. */
		EXPECT_EQ(mr_mutex_trylock(&t.m), 0);
		mr_mutex_unlock(&t.m);
		mr_sem_post(&t.sem);
		EXPECT_EQ(mr_sem_trywait(&t.sem), 0);
		EXPECT_EQ(mr_sem_trywait(&t.sem), -EAGAIN);
		mr_wg_done(&t.wg);
		EXPECT_EQ(mr_wg_wait_until(&t.wg, 0), 0);
		mr_event_set(&t.ev);
		EXPECT_TRUE(mr_event_is_set(&t.ev));
		EXPECT_EQ(mr_event_wait_until(&t.ev, 0), 0);
	}
	EXPECT_EQ(mr_sem_init(NULL, 0), -EINVAL);
}

/*
 * A negative deadline is no deadline (common.h), for every _until call: a
 * waiter on an object that is not available waits until another party
 * releases it, for deadline -1, another negative value and INT64_MIN; the
 * releaser marks `released` before it releases, so a waiter that returns 0
 * having seen it waited (no timing is asserted). mr_mutex_lock_until used
 * to treat a negative deadline as passed.
 */
enum { K_MUTEX, K_SEM, K_COND, K_WG, K_EVENT, K_NKINDS };
static const char *const kind_name[] = { "mutex", "sem", "cond", "wg", "event" };

struct nodl {
	int kind;
	int64_t deadline;
	mr_mutex_t m;
	mr_sem_t sem;
	mr_cond_t cv;
	mr_wg_t wg;
	mr_event_t ev;
	bool ready;		 /* cond's predicate, under m */
	_Atomic int waiting;	 /* the waiter is about to wait */
	_Atomic int released;	 /* set before the release */
	int r, seen_released;
};

static void nodl_wait(void *arg)
{
	struct nodl *t = arg;

	if (t->kind == K_COND)
		mr_mutex_lock(&t->m);
	atomic_store(&t->waiting, 1);
	switch (t->kind) {
	case K_MUTEX:
		t->r = mr_mutex_lock_until(&t->m, t->deadline);
		break;
	case K_SEM:
		t->r = mr_sem_wait_until(&t->sem, t->deadline);
		break;
	case K_COND:
		t->r = 0;
		while (!t->ready && t->r == 0)
			t->r = mr_cond_wait_until(&t->cv, &t->m, t->deadline);
		break;
	case K_WG:
		t->r = mr_wg_wait_until(&t->wg, t->deadline);
		break;
	case K_EVENT:
		t->r = mr_event_wait_until(&t->ev, t->deadline);
		break;
	}
	t->seen_released = atomic_load(&t->released);
	if ((t->kind == K_MUTEX && t->r == 0) || t->kind == K_COND)
		mr_mutex_unlock(&t->m);
}

static void nodl_release(struct nodl *t)
{
	while (!atomic_load(&t->waiting))
		mr_sleep_ns(100000);
	mr_sleep_ns(2000000); /* let it wait; it must not matter how long */
	switch (t->kind) {
	case K_MUTEX:
		atomic_store(&t->released, 1);
		mr_mutex_unlock(&t->m);
		break;
	case K_SEM:
		atomic_store(&t->released, 1);
		mr_sem_post(&t->sem);
		break;
	case K_COND:
		mr_mutex_lock(&t->m);
		t->ready = true;
		atomic_store(&t->released, 1);
		mr_cond_signal(&t->cv);
		mr_mutex_unlock(&t->m);
		break;
	case K_WG:
		atomic_store(&t->released, 1);
		mr_wg_done(&t->wg);
		break;
	case K_EVENT:
		atomic_store(&t->released, 1);
		mr_event_set(&t->ev);
		break;
	}
}

static void nodl_setup(struct nodl *t, int kind, int64_t deadline)
{
	memset(t, 0, sizeof(*t));
	t->kind = kind;
	t->deadline = deadline;
	mr_mutex_init(&t->m);
	mr_sem_init(&t->sem, 0);
	mr_cond_init(&t->cv);
	mr_wg_init(&t->wg);
	mr_wg_add(&t->wg, 1);
	mr_event_init(&t->ev);
	if (kind == K_MUTEX)
		mr_mutex_lock(&t->m); /* held by the releaser, this thread */
}

TEST(negative_deadline_waits_for_the_release)
{
	static const int64_t dls[] = { MR_DEADLINE_NONE, -1000000, INT64_MIN };
	mr_runtime_t *rt = make_rt(2);

	ASSERT_NONNULL(rt);
	for (int kind = 0; kind < K_NKINDS; kind++)
		for (int fiber = 0; fiber <= 1; fiber++)
			for (size_t d = 0; d < sizeof(dls) / sizeof(dls[0]); d++) {
				struct nodl t;
				struct actor a;
				nodl_setup(&t, kind, dls[d]);
				actor_start(&a, rt, fiber, nodl_wait, &t);
				nodl_release(&t);
				actor_join(&a);
				if (t.r != 0 || !t.seen_released)
					TH_LOG("%s from a %s, deadline %" PRId64 ": %d, released %d",
					       kind_name[kind], fiber ? "fiber" : "thread", dls[d],
					       t.r, t.seen_released);
				EXPECT_EQ(t.r, 0);
				EXPECT_EQ(t.seen_released, 1);
			}
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* A deadline that has passed (0, or a moment ago) does not wait: -ETIMEDOUT
 * on an object that is not available, success on one that is. */
static void past_deadlines(void *arg)
{
	int64_t past[] = { 0, mr_now_ns() - 1 };
	int *bad = arg;

	for (int i = 0; i < 2; i++) {
		struct nodl t;
		/* The mutex: past_deadline_mutex() (another thread holds it). */
		for (int kind = K_SEM; kind < K_NKINDS; kind++) {
			nodl_setup(&t, kind, past[i]);
			nodl_wait(&t);
			if (t.r != -ETIMEDOUT) {
				(*bad)++;
				TH_LOG("%s, deadline %" PRId64 ": %d", kind_name[kind], past[i], t.r);
			}
		}
		/* Available: the call completes without waiting. */
		nodl_setup(&t, K_SEM, past[i]);
		mr_sem_post(&t.sem);
		*bad += mr_sem_wait_until(&t.sem, past[i]) != 0;
		mr_wg_done(&t.wg);
		*bad += mr_wg_wait_until(&t.wg, past[i]) != 0;
		mr_event_set(&t.ev);
		*bad += mr_event_wait_until(&t.ev, past[i]) != 0;
		*bad += mr_mutex_lock_until(&t.m, past[i]) != 0;
		mr_mutex_unlock(&t.m);
	}
}

struct held_mutex {
	mr_mutex_t m;
	_Atomic int state; /* 1 locked by the holder thread, 2 let go */
};

static void *hold_mutex(void *arg)
{
	struct held_mutex *h = arg;

	mr_mutex_lock(&h->m);
	atomic_store(&h->state, 1);
	while (atomic_load(&h->state) != 2)
		mr_sleep_ns(100000);
	mr_mutex_unlock(&h->m);
	return NULL;
}

static void past_deadline_mutex(void *arg)
{
	struct held_mutex *h = arg;

	h->m = (mr_mutex_t)MR_MUTEX_INIT;
	EXPECT_EQ(mr_mutex_lock_until(&h->m, 0), 0);
	mr_mutex_unlock(&h->m);
	pthread_t th;
	ASSERT_EQ(pthread_create(&th, NULL, hold_mutex, h), 0);
	while (atomic_load(&h->state) != 1)
		mr_sleep_ns(100000);
	EXPECT_EQ(mr_mutex_lock_until(&h->m, 0), -ETIMEDOUT);
	EXPECT_EQ(mr_mutex_lock_until(&h->m, mr_now_ns() - 1), -ETIMEDOUT);
	EXPECT_EQ(mr_mutex_lock_until(&h->m, mr_now_ns() + 2000000), -ETIMEDOUT); /* not passed */
	atomic_store(&h->state, 2);
	pthread_join(th, NULL);
	/* Nothing left queued. */
	EXPECT_EQ(mr_mutex_trylock(&h->m), 0);
	mr_mutex_unlock(&h->m);
}

static void past_deadlines_fiber(void *arg)
{
	past_deadlines(arg);
}

static void past_deadline_mutex_fiber(void *arg)
{
	past_deadline_mutex(arg);
}

TEST(past_deadline_times_out_at_once)
{
	int bad = 0;
	struct held_mutex h = { .state = 0 };

	past_deadlines(&bad);
	EXPECT_EQ(bad, 0);
	past_deadline_mutex(&h);
	bad = 0;
	atomic_store(&h.state, 0);
	ASSERT_EQ(mr_run(NULL, past_deadlines_fiber, &bad), 0);
	EXPECT_EQ(bad, 0);
	ASSERT_EQ(mr_run(NULL, past_deadline_mutex_fiber, &h), 0);
}

/* mr_sleep_until waits for its deadline only: a passed one, negative
 * included, returns 0 at once (common.h). */
static void sleep_past(void *arg)
{
	int *bad = arg;
	int64_t dls[] = { MR_DEADLINE_NONE, INT64_MIN, 0, mr_now_ns() - 1 };

	for (int i = 0; i < 4; i++)
		*bad += mr_sleep_until(dls[i]) != 0;
}

TEST(sleep_until_a_passed_or_negative_deadline_returns)
{
	int bad = 0;

	sleep_past(&bad);
	ASSERT_EQ(mr_run(NULL, sleep_past, &bad), 0);
	EXPECT_EQ(bad, 0);
}

TEST(null_arguments_einval)
{
	mr_mutex_t m = MR_MUTEX_INIT;
	int64_t later = mr_now_ns() + 1000000;

	EXPECT_EQ(mr_mutex_trylock(NULL), -EINVAL);
	EXPECT_EQ(mr_mutex_lock_until(NULL, later), -EINVAL);
	EXPECT_EQ(mr_cond_wait_until(NULL, &m, later), -EINVAL);
	EXPECT_EQ(mr_sem_trywait(NULL), -EINVAL);
	EXPECT_EQ(mr_sem_wait_until(NULL, later), -EINVAL);
	EXPECT_EQ(mr_wg_wait_until(NULL, later), -EINVAL);
	EXPECT_EQ(mr_event_wait_until(NULL, later), -EINVAL);
	/* The mutex was not touched. */
	EXPECT_EQ(mr_mutex_trylock(&m), 0);
	mr_mutex_unlock(&m);
}

/* Each void call (and mr_event_is_set) given NULL, by number. */
static const char *const null_calls[] = {
	"mr_mutex_init", "mr_mutex_lock", "mr_mutex_unlock", "mr_mutex_destroy",
	"mr_cond_init", "mr_cond_wait", "mr_cond_signal", "mr_cond_broadcast",
	"mr_sem_wait", "mr_wg_init", "mr_wg_add", "mr_wg_done",
	"mr_wg_wait", "mr_event_init", "mr_event_set", "mr_event_is_set",
	"mr_event_wait",
};

static void null_call_child(void *arg)
{
	mr_mutex_t m = MR_MUTEX_INIT;

	switch (*(int *)arg) {
	case 0: mr_mutex_init(NULL); break;
	case 1: mr_mutex_lock(NULL); break;
	case 2: mr_mutex_unlock(NULL); break;
	case 3: mr_mutex_destroy(NULL); break;
	case 4: mr_cond_init(NULL); break;
	case 5: mr_mutex_lock(&m); mr_cond_wait(NULL, &m); break;
	case 6: mr_cond_signal(NULL); break;
	case 7: mr_cond_broadcast(NULL); break;
	case 8: mr_sem_wait(NULL); break;
	case 9: mr_wg_init(NULL); break;
	case 10: mr_wg_add(NULL, 1); break;
	case 11: mr_wg_done(NULL); break;
	case 12: mr_wg_wait(NULL); break;
	case 13: mr_event_init(NULL); break;
	case 14: mr_event_set(NULL); break;
	case 15: (void)mr_event_is_set(NULL); break;
	case 16: mr_event_wait(NULL); break;
	}
	_exit(0);
}

TEST(null_object_in_void_call_aborts)
{
	char buf[2048], want[64];

	for (int i = 0; i < (int)(sizeof(null_calls) / sizeof(null_calls[0])); i++) {
		int st = mr_test_run_child(null_call_child, &i, buf, sizeof(buf));
		if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT))
			TH_LOG("%s(NULL): status %#x", null_calls[i], st);
		ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
		snprintf(want, sizeof(want), "moirai: %s: NULL", null_calls[i]);
		ASSERT_STR_CONTAINS(buf, want);
	}
}

/*
 * Locking a mutex the caller already holds used to hang for good, silently.
 * mr_mutex_lock aborts naming the call; mr_mutex_lock_until reports
 * -EDEADLK whatever its deadline (as an error-checking pthread mutex);
 * mr_mutex_trylock says -EBUSY as for any held mutex. Fiber and thread.
 */
static void relock_until(void *arg)
{
	int *bad = arg;
	mr_mutex_t m = MR_MUTEX_INIT;
	int64_t dls[] = { MR_DEADLINE_NONE, INT64_MIN, 0, mr_now_ns() - 1, mr_now_ns() + 1000000 };

	mr_mutex_lock(&m);
	for (int i = 0; i < 5; i++) {
		int r = mr_mutex_lock_until(&m, dls[i]);
		if (r != -EDEADLK) {
			TH_LOG("lock_until(held by me, %" PRId64 "): %d", dls[i], r);
			(*bad)++;
		}
	}
	*bad += mr_mutex_trylock(&m) != -EBUSY;
	mr_mutex_unlock(&m);
	/* Still a working mutex. */
	*bad += mr_mutex_lock_until(&m, MR_DEADLINE_NONE) != 0;
	mr_mutex_unlock(&m);
	mr_mutex_destroy(&m);
}

static void relock(void *arg)
{
	mr_mutex_t *m = arg;

	mr_mutex_lock(m);
	mr_mutex_lock(m);
}

static void relock_child(void *arg)
{
	static mr_mutex_t m = MR_MUTEX_INIT;

	if (*(int *)arg)
		mr_run(NULL, relock, &m);
	else
		relock(&m);
	_exit(0);
}

TEST_TIMEOUT(mutex_locked_twice_by_its_holder, 10) /* a hang before the fix */
{
	char buf[2048];
	int bad = 0;

	/* The forks first, while this process has one thread (TSan refuses
	 * to start threads in a child forked from a threaded process). */
	for (int fiber = 0; fiber <= 1; fiber++) {
		int st = mr_test_run_child(relock_child, &fiber, buf, sizeof(buf));
		if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT))
			TH_LOG("from a %s: status %#x, stderr: %s", fiber ? "fiber" : "thread", st, buf);
		ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
		ASSERT_STR_CONTAINS(buf, "moirai: mr_mutex_lock: ");
		ASSERT_STR_CONTAINS(buf, "already held by the caller");
	}
	relock_until(&bad);
	ASSERT_EQ(mr_run(NULL, relock_until, &bad), 0);
	EXPECT_EQ(bad, 0);
}

/*
 * The count stops at MR_SEM_VALUE_MAX: a post there fails with -EOVERFLOW
 * and counts nothing (it used to count on and wrap to 0 past UINT32_MAX,
 * losing every unit), one that a waiter takes never overflows.
 */
static void sem_max(void *arg)
{
	int *bad = arg;
	mr_sem_t s;

	*bad += mr_sem_init(&s, MR_SEM_VALUE_MAX + 1u) != -EINVAL;
	*bad += mr_sem_init(&s, MR_SEM_VALUE_MAX) != 0;
	for (int i = 0; i < 3; i++)
		*bad += mr_sem_post(&s) != -EOVERFLOW;
	*bad += mr_sem_trywait(&s) != 0;
	*bad += mr_sem_post(&s) != 0; /* back at the maximum */
	*bad += mr_sem_post(&s) != -EOVERFLOW;
	*bad += mr_sem_trywait(&s) != 0;
	*bad += mr_sem_trywait(&s) != 0;
	*bad += mr_sem_post(&s) != 0;
	*bad += mr_sem_post(&s) != 0;
	*bad += mr_sem_post(&s) != -EOVERFLOW;
	*bad += mr_sem_post(NULL) != -EINVAL;
}

TEST(sem_post_at_the_maximum_overflows)
{
	int bad = 0;

	sem_max(&bad);
	EXPECT_EQ(bad, 0);
	bad = 0;
	ASSERT_EQ(mr_run(NULL, sem_max, &bad), 0);
	EXPECT_EQ(bad, 0);
}

/* Many waiters on one event, fibers and threads, all released by one set. */
static void ev_wait(void *arg)
{
	mr_event_wait(arg);
}

static void *ev_wait_thread(void *arg)
{
	mr_event_wait(arg);
	return NULL;
}

static void ev_main(void *arg)
{
	mr_event_t *ev = arg;
	int n = live_fibers(1000);
	mr_fiber_t **fs = calloc((size_t)n, sizeof(*fs));
	for (int i = 0; i < n; i++)
		fs[i] = mr_go(ev_wait, ev);
	mr_sleep_ns(1000000);
	mr_event_set(ev);
	for (int i = 0; i < n; i++)
		mr_fiber_join(fs[i]);
	free(fs);
}

TEST(event_releases_every_waiter)
{
	mr_event_t ev = MR_EVENT_INIT;
	pthread_t th[3];

	for (int i = 0; i < 3; i++)
		ASSERT_EQ(pthread_create(&th[i], NULL, ev_wait_thread, &ev), 0);
	ASSERT_EQ(mr_run(NULL, ev_main, &ev), 0);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	EXPECT_TRUE(mr_event_is_set(&ev));
}

static void wg_negative_child(void *arg)
{
	mr_wg_t wg = MR_WG_INIT;
	(void)arg;
	mr_wg_done(&wg);
	_exit(0);
}

static void wg_add_negative_child(void *arg)
{
	mr_wg_t wg = MR_WG_INIT;
	(void)arg;
	mr_wg_add(&wg, 1);
	mr_wg_add(&wg, -2);
	_exit(0);
}

static void wg_overflow_child(void *arg)
{
	mr_wg_t wg = MR_WG_INIT;
	(void)arg;
	mr_wg_add(&wg, INT64_MAX);
	mr_wg_done(&wg);
	mr_wg_add(&wg, 1); /* INT64_MAX again: fine */
	mr_wg_add(&wg, 1);
	_exit(0);
}

/* A count past INT64_MAX was a signed overflow (undefined; in practice it
 * wrapped and aborted as "went negative"): it aborts naming the call. */
TEST(wait_group_overflow_aborts)
{
	char buf[2048];
	int st = mr_test_run_child(wg_overflow_child, NULL, buf, sizeof(buf));
	ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
	ASSERT_STR_CONTAINS(buf, "moirai: mr_wg_add: ");
	ASSERT_STR_CONTAINS(buf, "would overflow");
}

TEST(wait_group_negative_aborts)
{
	char buf[2048];
	int st = mr_test_run_child(wg_negative_child, NULL, buf, sizeof(buf));
	ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
	ASSERT_STR_CONTAINS(buf, "moirai: mr_wg_done: ");
	ASSERT_STR_CONTAINS(buf, "negative");
	st = mr_test_run_child(wg_add_negative_child, NULL, buf, sizeof(buf));
	ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
	ASSERT_STR_CONTAINS(buf, "moirai: mr_wg_add: ");
}

/*
 * Every abort names the call the user made. A condition wait without the
 * mutex used to abort as "mr_mutex_unlock" (the unlock inside the wait);
 * from a thread, from a fiber, mutex free or held by someone else.
 */
struct cond_misuse {
	bool until, fiber, held_elsewhere;
};

static mr_mutex_t misuse_m = MR_MUTEX_INIT;
static mr_cond_t misuse_cv = MR_COND_INIT;
static _Atomic int misuse_locked;

static void cond_misuse_body(void *arg)
{
	struct cond_misuse *cm = arg;

	if (cm->until)
		mr_cond_wait_until(&misuse_cv, &misuse_m, mr_now_ns() + 1000000000);
	else
		mr_cond_wait(&misuse_cv, &misuse_m);
}

/* Holds the mutex until the process ends. */
static void *cond_misuse_holder(void *arg)
{
	(void)arg;
	mr_mutex_lock(&misuse_m);
	atomic_store(&misuse_locked, 1);
	for (;;)
		pause();
	return NULL;
}

static void cond_misuse_child(void *arg)
{
	struct cond_misuse *cm = arg;
	pthread_t th;

	if (cm->held_elsewhere) {
		if (pthread_create(&th, NULL, cond_misuse_holder, NULL) != 0)
			_exit(3);
		while (!atomic_load(&misuse_locked))
			usleep(100);
	}
	if (cm->fiber)
		mr_run(NULL, cond_misuse_body, cm);
	else
		cond_misuse_body(cm);
	_exit(0);
}

TEST(misuse_aborts_name_the_call)
{
	char buf[2048];

	for (int until = 0; until <= 1; until++)
		for (int fiber = 0; fiber <= 1; fiber++)
			for (int held = 0; held <= 1; held++) {
				struct cond_misuse cm = { until, fiber, held };
				int st = mr_test_run_child(cond_misuse_child, &cm, buf, sizeof(buf));
				ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
				ASSERT_STR_CONTAINS(buf, until ? "moirai: mr_cond_wait_until: "
							       : "moirai: mr_cond_wait: ");
				ASSERT_STR_CONTAINS(buf, "not held");
			}
}

TEST_HARNESS_MAIN
