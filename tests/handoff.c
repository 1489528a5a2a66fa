/*
 * handoff.c - jobs that block their worker's thread on something only a
 * fiber does: parallel loops whose bodies receive from a channel that a
 * fiber started before the loop feeds, or wait on a semaphore a fiber
 * posts, with 1 and 2 workers, and a stress mix of both (channel
 * capacities, grains, several feeders, feeders that sleep on timers, so
 * that their timers are due while every worker is blocked). Before a
 * blocked job's thread ran fibers meanwhile (mr__worker_help), every case
 * but chan_fed_loop_unbuffered_bigger hung until the harness's timeout:
 * once each worker's thread was blocked in a body, nothing ran the fiber.
 * Bodies and feeders also check that mr_worker_index() stays within
 * [0, mr_runtime_workers()) while they run on a helping thread.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include <moirai/moirai.h>

#include "harness.h"
#include "util.h"

struct scen {
	mr_runtime_t *rt;
	mr_chan_t *ch;
	mr_sem_t sem;
	size_t n;	   /* items (loop bodies) */
	size_t grain;	   /* of the loop */
	unsigned feeders;  /* fibers that feed, n / feeders each (the last the rest) */
	unsigned sleep_us; /* a feeder sleeps this long every few items */
	bool use_sem;
	_Atomic long sum;
	_Atomic size_t got;
	_Atomic int bad_index; /* a worker index out of range was seen */
	int loop_ret;
};

struct feeder {
	struct scen *s;
	size_t lo, hi;
};

static void check_index(struct scen *s)
{
	int i = mr_worker_index();

	if (i < 0 || (unsigned)i >= mr_runtime_workers(s->rt))
		atomic_store(&s->bad_index, 1);
}

static void feed(void *arg)
{
	struct feeder *fd = arg;
	struct scen *s = fd->s;

	for (size_t i = fd->lo; i < fd->hi; i++) {
		check_index(s);
		if (s->sleep_us && i % 4 == 0)
			mr_sleep_ns((uint64_t)s->sleep_us * 1000);
		if (s->use_sem) {
			if (mr_sem_post(&s->sem) != 0)
				abort();
		} else {
			long v = (long)i + 1;
			if (mr_chan_send(s->ch, &v) != 0)
				abort();
		}
	}
}

static void body(size_t lo, size_t hi, void *ctx)
{
	struct scen *s = ctx;

	for (size_t i = lo; i < hi; i++) {
		long v = 1;
		check_index(s);
		if (s->use_sem)
			mr_sem_wait(&s->sem);
		else if (mr_chan_recv(s->ch, &v) != 0)
			abort();
		check_index(s);
		atomic_fetch_add(&s->sum, v);
		atomic_fetch_add(&s->got, 1);
	}
}

/* The main fiber of the user's program: start the feeders, then the loop. */
static void scenario(void *arg)
{
	struct scen *s = arg;
	struct feeder fd[8];
	mr_fiber_t *f[8];
	unsigned nf = s->feeders;
	size_t per = s->n / nf;

	for (unsigned k = 0; k < nf; k++) {
		fd[k].s = s;
		fd[k].lo = k * per;
		fd[k].hi = k + 1 == nf ? s->n : (k + 1) * per;
		f[k] = mr_go(feed, &fd[k]);
		if (!f[k])
			abort();
	}
	s->loop_ret = mr_parallel_for(0, s->n, s->grain, body, s);
	for (unsigned k = 0; k < nf; k++)
		if (mr_fiber_join(f[k]) != 0)
			abort();
}

static int run_scen(mr_runtime_t *rt, struct scen *s, size_t capacity)
{
	s->rt = rt;
	if (s->use_sem) {
		if (mr_sem_init(&s->sem, 0) != 0)
			return -1;
	} else {
		s->ch = mr_chan_create(sizeof(long), capacity, 0);
		if (!s->ch)
			return -1;
	}
	atomic_init(&s->sum, 0);
	atomic_init(&s->got, 0);
	atomic_init(&s->bad_index, 0);
	int r = mr_run(rt, scenario, s);
	if (!s->use_sem)
		mr_chan_destroy(s->ch);
	return r;
}

static void chan_case(struct mr_test *_t, unsigned workers, size_t capacity, size_t n,
		      unsigned sleep_us)
{
	mr_runtime_t *rt = make_rt(workers);
	struct scen s = { .n = n, .grain = 1, .feeders = 1, .sleep_us = sleep_us };

	ASSERT_NONNULL(rt);
	ASSERT_EQ(run_scen(rt, &s, capacity), 0);
	EXPECT_EQ(s.loop_ret, 0);
	EXPECT_EQ(atomic_load(&s.got), n);
	EXPECT_EQ(atomic_load(&s.sum), (long)(n * (n + 1) / 2));
	EXPECT_EQ(atomic_load(&s.bad_index), 0);
	EXPECT_EQ(mr_runtime_destroy(rt), 0);
}

/* The user's program: the loop's bodies receive what a fiber sends. With
 * two workers the feeder sleeps first (and now and then): both workers are
 * blocked in bodies when its timer is due. */
TEST_TIMEOUT(chan_fed_loop_1_worker, 20)
{
	chan_case(_t, 1, 1, 64, 0);
}

TEST_TIMEOUT(chan_fed_loop_2_workers, 20)
{
	chan_case(_t, 2, 1, 64, 100);
}

TEST_TIMEOUT(chan_fed_loop_unbuffered_1_worker, 20)
{
	chan_case(_t, 1, 0, 64, 0);
}

/* Often passed before too (the feeder may run before the bodies block):
 * kept as a regression check. */
TEST_TIMEOUT(chan_fed_loop_unbuffered_bigger, 20)
{
	chan_case(_t, 2, 0, 500, 0);
}

static void sem_case(struct mr_test *_t, unsigned workers, size_t n, unsigned sleep_us)
{
	mr_runtime_t *rt = make_rt(workers);
	struct scen s = { .n = n, .grain = 1, .feeders = 1, .use_sem = true, .sleep_us = sleep_us };

	ASSERT_NONNULL(rt);
	ASSERT_EQ(run_scen(rt, &s, 0), 0);
	EXPECT_EQ(s.loop_ret, 0);
	EXPECT_EQ(atomic_load(&s.got), n);
	EXPECT_EQ(atomic_load(&s.bad_index), 0);
	EXPECT_EQ(mr_runtime_destroy(rt), 0);
}

/* Jobs wait on a semaphore that a fiber posts. */
TEST_TIMEOUT(sem_posted_by_fiber_1_worker, 20)
{
	sem_case(_t, 1, 64, 0);
}

TEST_TIMEOUT(sem_posted_by_fiber_2_workers, 20)
{
	sem_case(_t, 2, 64, 100);
}

/* The poster sleeps now and then: its timer is due while every worker is blocked. */
TEST_TIMEOUT(sem_posted_by_sleeping_fiber, 20)
{
	sem_case(_t, 2, 32, 200);
}

/* Many rounds, mixed: both kinds, capacities, grains, feeders, sleeps, 1-3 workers. */
TEST_TIMEOUT(stress_mixed, 60)
{
	mr_runtime_t *rts[3] = { make_rt(1), make_rt(2), make_rt(3) };
	uint64_t seed = 0x9e3779b97f4a7c15ull ^ (uint64_t)time(NULL);
	long rounds = scaled(300);

	for (int i = 0; i < 3; i++)
		ASSERT_NONNULL(rts[i]);
	for (long r = 0; r < rounds; r++) {
		struct scen s = { 0 };
		size_t caps[] = { 0, 1, 4, MR_CHAN_UNBOUNDED };
		mr_runtime_t *rt = rts[rnd(&seed) % 3];

		s.n = 1 + (size_t)(rnd(&seed) % 96);
		s.grain = 1 + (size_t)(rnd(&seed) % 4);
		s.feeders = 1 + (unsigned)(rnd(&seed) % 3);
		if (s.feeders > s.n)
			s.feeders = 1;
		s.use_sem = rnd(&seed) % 2;
		s.sleep_us = rnd(&seed) % 8 == 0 ? 50 : 0;
		ASSERT_EQ(run_scen(rt, &s, caps[rnd(&seed) % 4]), 0);
		ASSERT_EQ(s.loop_ret, 0);
		ASSERT_EQ(atomic_load(&s.got), s.n);
		if (!s.use_sem)
			ASSERT_EQ(atomic_load(&s.sum), (long)(s.n * (s.n + 1) / 2));
		ASSERT_EQ(atomic_load(&s.bad_index), 0);
	}
	for (int i = 0; i < 3; i++)
		EXPECT_EQ(mr_runtime_destroy(rts[i]), 0);
}

TEST_HARNESS_MAIN
