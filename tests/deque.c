/*
 * deque.c - the split work-stealing deque on its own: LIFO for the owner,
 * FIFO for thieves, the split protocol (a thief's request makes private jobs
 * stealable), a full ring, indices that cross 2^32, and a concurrent stress
 * test in which every job must be taken exactly once.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "../user/sched/deque.h"
#include "harness.h"

static struct mr__job *jobs_new(size_t n)
{
	struct mr__job *j = calloc(n, sizeof(*j));
	if (!j)
		abort();
	return j;
}

TEST(owner_lifo)
{
	struct mr__deque dq;
	struct mr__job *j = jobs_new(100);

	ASSERT_EQ(mr__deque_init(&dq, 8, 0), 0);
	ASSERT_NULL(mr__deque_pop(&dq));
	for (int i = 0; i < 100; i++)
		ASSERT_NE(mr__deque_push(&dq, &j[i]), MR__PUSH_FULL);
	for (int i = 99; i >= 0; i--)
		ASSERT_TRUE(mr__deque_pop(&dq) == &j[i]);
	ASSERT_NULL(mr__deque_pop(&dq));
	mr__deque_fini(&dq);
	free(j);
}

TEST(first_push_is_public_rest_private)
{
	struct mr__deque dq;
	struct mr__job *j = jobs_new(4);

	ASSERT_EQ(mr__deque_init(&dq, 6, 0), 0);
	ASSERT_EQ(mr__deque_push(&dq, &j[0]), MR__PUSH_PUBLIC);
	ASSERT_EQ(mr__deque_push(&dq, &j[1]), MR__PUSH_PRIVATE);
	ASSERT_EQ(mr__deque_push(&dq, &j[2]), MR__PUSH_PRIVATE);
	/* The thief gets the oldest, then nothing: the rest is private. */
	ASSERT_TRUE(mr__deque_steal(&dq) == &j[0]);
	ASSERT_NULL(mr__deque_steal(&dq));
	/* Its request makes the owner share on the next push. */
	ASSERT_EQ(mr__deque_push(&dq, &j[3]), MR__PUSH_PUBLIC);
	ASSERT_TRUE(mr__deque_steal(&dq) == &j[1]);
	ASSERT_TRUE(mr__deque_pop(&dq) == &j[3]);
	ASSERT_TRUE(mr__deque_pop(&dq) == &j[2]);
	ASSERT_NULL(mr__deque_pop(&dq)); /* j[0], j[1] were stolen */
	ASSERT_NULL(mr__deque_steal(&dq));
	mr__deque_fini(&dq);
	free(j);
}

/* publish_to: everything private below the index becomes stealable (a
 * fiber readied by a caller that kept going), nothing above it. Indices
 * start near 2^32 to cross the wrap. */
TEST(publish_to_shares_up_to_an_index)
{
	struct mr__deque dq;
	struct mr__job *j = jobs_new(5);
	const uint32_t start = UINT32_MAX - 2;

	ASSERT_EQ(mr__deque_init(&dq, 6, start), 0);
	ASSERT_EQ(mr__deque_push(&dq, &j[0]), MR__PUSH_PUBLIC);
	ASSERT_TRUE(mr__deque_steal(&dq) == &j[0]);
	for (int i = 1; i < 5; i++)
		ASSERT_NE(mr__deque_push(&dq, &j[i]), MR__PUSH_FULL);
	ASSERT_NULL(mr__deque_steal(&dq)); /* j[1..4] private */
	/* j[3] was pushed at start + 3: share j[1..3], exactly. */
	ASSERT_EQ(mr__deque_publish_to(&dq, start + 4), MR__PUSH_PUBLIC);
	ASSERT_EQ(MR__TS_SPLIT(atomic_load(&dq.ts)), start + 4);
	ASSERT_TRUE(mr__deque_steal(&dq) == &j[1]);
	ASSERT_TRUE(mr__deque_steal(&dq) == &j[2]);
	ASSERT_TRUE(mr__deque_steal(&dq) == &j[3]);
	ASSERT_NULL(mr__deque_steal(&dq)); /* j[4] is still private */
	ASSERT_TRUE(mr__deque_pop(&dq) == &j[4]);
	ASSERT_NULL(mr__deque_pop(&dq));
	mr__deque_fini(&dq);
	free(j);
}

TEST(pop_takes_back_shared_half)
{
	struct mr__deque dq;
	struct mr__job *j = jobs_new(8);

	ASSERT_EQ(mr__deque_init(&dq, 6, 0), 0);
	ASSERT_EQ(mr__deque_push(&dq, &j[0]), MR__PUSH_PUBLIC);
	/* Make everything shared: request + push repeatedly. */
	for (int i = 1; i < 8; i++) {
		atomic_store(&dq.movesplit, 1);
		ASSERT_EQ(mr__deque_push(&dq, &j[i]), MR__PUSH_PUBLIC);
	}
	ASSERT_TRUE(mr__deque_stealable(&dq));
	/* The owner pops everything back in LIFO order through the shared part. */
	for (int i = 7; i >= 1; i--)
		ASSERT_TRUE(mr__deque_pop(&dq) == &j[i]);
	ASSERT_TRUE(mr__deque_steal(&dq) == &j[0]);
	ASSERT_NULL(mr__deque_pop(&dq));
	mr__deque_fini(&dq);
	free(j);
}

TEST(full_ring_reports_full)
{
	struct mr__deque dq;
	struct mr__job *j = jobs_new(65);

	ASSERT_EQ(mr__deque_init(&dq, 6, 0), 0);
	for (int i = 0; i < 64; i++)
		ASSERT_NE(mr__deque_push(&dq, &j[i]), MR__PUSH_FULL);
	ASSERT_EQ(mr__deque_push(&dq, &j[64]), MR__PUSH_FULL);
	/* Freeing one slot by stealing the oldest makes room again. */
	ASSERT_TRUE(mr__deque_steal(&dq) == &j[0]);
	ASSERT_NE(mr__deque_push(&dq, &j[64]), MR__PUSH_FULL);
	for (int i = 64; i >= 1; i--)
		ASSERT_TRUE(mr__deque_pop(&dq) == &j[i]);
	ASSERT_NULL(mr__deque_pop(&dq));
	mr__deque_fini(&dq);
	free(j);
}

TEST(indices_cross_2_pow_32)
{
	struct mr__deque dq;
	struct mr__job *j = jobs_new(16);

	ASSERT_EQ(mr__deque_init(&dq, 4, UINT32_MAX - 37), 0);
	for (int round = 0; round < 200; round++) {
		for (int i = 0; i < 10; i++)
			ASSERT_NE(mr__deque_push(&dq, &j[i]), MR__PUSH_FULL);
		ASSERT_TRUE(mr__deque_steal(&dq) == &j[0]);
		atomic_store(&dq.movesplit, 1);
		ASSERT_NE(mr__deque_push(&dq, &j[10]), MR__PUSH_FULL);
		ASSERT_TRUE(mr__deque_steal(&dq) == &j[1]);
		ASSERT_TRUE(mr__deque_pop(&dq) == &j[10]);
		for (int i = 9; i >= 2; i--)
			ASSERT_TRUE(mr__deque_pop(&dq) == &j[i]);
		ASSERT_NULL(mr__deque_pop(&dq));
	}
	mr__deque_fini(&dq);
	free(j);
}

/* ---- concurrent stress ---------------------------------------------------- */

struct stress {
	struct mr__deque dq;
	struct mr__job *jobs;
	_Atomic uint32_t *taken;
	size_t n;
	_Atomic int stop;
	_Atomic size_t stolen;
};

static void take(struct stress *s, struct mr__job *j)
{
	size_t i = (size_t)(j - s->jobs);
	if (j < s->jobs || i >= s->n)
		abort(); /* a pointer that was never pushed */
	atomic_fetch_add_explicit(&s->taken[i], 1, memory_order_relaxed);
}

static void *thief(void *arg)
{
	struct stress *s = arg;
	while (!atomic_load_explicit(&s->stop, memory_order_acquire)) {
		struct mr__job *j = mr__deque_steal(&s->dq);
		if (j) {
			take(s, j);
			atomic_fetch_add_explicit(&s->stolen, 1, memory_order_relaxed);
		}
	}
	return NULL;
}

static void stress_run(unsigned log2, unsigned nthieves, uint32_t start)
{
	/* TSan too runs millions of operations here: scale by at most 2. */
	struct stress s = { .n = 2000000 / (mr_test_scale() > 2 ? 2 : mr_test_scale()) };
	pthread_t th[4];
	uint64_t rng = 88172645463325252ull;
	size_t next = 0;

	ASSERT_EQ(mr__deque_init(&s.dq, log2, start), 0);
	s.jobs = jobs_new(s.n);
	s.taken = calloc(s.n, sizeof(*s.taken));
	ASSERT_NONNULL(s.taken);
	for (unsigned i = 0; i < nthieves; i++)
		ASSERT_EQ(pthread_create(&th[i], NULL, thief, &s), 0);
	while (next < s.n) {
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		unsigned burst = (unsigned)(rng % 8) + 1;
		for (unsigned b = 0; b < burst && next < s.n; b++) {
			struct mr__job *j = &s.jobs[next++];
			if (mr__deque_push(&s.dq, j) == MR__PUSH_FULL)
				take(&s, j); /* what the runtime does: run it inline */
		}
		unsigned pops = (unsigned)((rng >> 8) % 8);
		for (unsigned p = 0; p < pops; p++) {
			struct mr__job *j = mr__deque_pop(&s.dq);
			if (!j)
				break;
			take(&s, j);
		}
	}
	struct mr__job *j;
	while ((j = mr__deque_pop(&s.dq)))
		take(&s, j);
	atomic_store(&s.stop, 1);
	for (unsigned i = 0; i < nthieves; i++)
		pthread_join(th[i], NULL);
	/* The deque is empty for everyone. */
	ASSERT_NULL(mr__deque_steal(&s.dq));
	size_t bad = 0;
	for (size_t i = 0; i < s.n; i++)
		if (atomic_load(&s.taken[i]) != 1) {
			if (bad++ < 5)
				TH_LOG("job %zu taken %u times", i, atomic_load(&s.taken[i]));
		}
	TH_LOG("%zu jobs, %zu stolen", s.n, (size_t)atomic_load(&s.stolen));
	ASSERT_EQ(bad, 0);
	mr__deque_fini(&s.dq);
	free(s.jobs);
	free(s.taken);
}

TEST_TIMEOUT(stress_one_thief, 120)
{
	stress_run(13, 1, 0);
}

TEST_TIMEOUT(stress_three_thieves, 120)
{
	stress_run(13, 3, 0);
}

TEST_TIMEOUT(stress_tiny_ring_wrapping, 120)
{
	/* 16 slots: the ring wraps constantly and fills, and indices cross 2^32. */
	stress_run(4, 2, UINT32_MAX - 1000);
}

TEST_HARNESS_MAIN
