/*
 * util.h - helpers shared by the test programs (after harness.h): a runtime
 * of N workers, sizes divided by the test scale, a xorshift stream, and
 * "actors" that run a function as a fiber of a runtime or as a plain thread.
 */
#ifndef MR_TEST_UTIL_H
#define MR_TEST_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <moirai/moirai.h>

static inline mr_runtime_t *make_rt(unsigned workers)
{
	MR_OPTS(mr_config, cfg, .workers = workers);
	return mr_runtime_create(&cfg);
}

/* n divided by the scale, at least 1. */
static inline long scaled(long n)
{
	n /= (long)mr_test_scale();
	return n > 0 ? n : 1;
}

/* xorshift64: each participant draws from its own stream (seed not 0). */
static inline uint64_t rnd(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* Something that runs a function as a fiber of rt or as a plain thread. */
struct actor {
	void (*fn)(void *);
	void *arg;
	bool fiber;
	mr_fiber_t *f;
	pthread_t th;
};

static inline void *actor_thread(void *p)
{
	struct actor *a = p;

	a->fn(a->arg);
	return NULL;
}

static inline void actor_start(struct actor *a, mr_runtime_t *rt, bool fiber,
			       void (*fn)(void *), void *arg)
{
	a->fn = fn;
	a->arg = arg;
	a->fiber = fiber;
	if (fiber) {
		MR_OPTS(mr_fiber_opts, o, .runtime = rt);
		a->f = mr_go_opts(fn, arg, &o);
		ASSERT_NONNULL(a->f);
	} else {
		ASSERT_EQ(pthread_create(&a->th, NULL, actor_thread, a), 0);
	}
}

static inline void actor_join(struct actor *a)
{
	if (a->fiber)
		ASSERT_EQ(mr_fiber_join(a->f), 0);
	else
		ASSERT_EQ(pthread_join(a->th, NULL), 0);
}

#endif /* MR_TEST_UTIL_H */
