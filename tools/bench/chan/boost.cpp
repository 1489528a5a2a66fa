/*
 * boost.cpp - Boost.Lockfree's multi-producer multi-consumer queue,
 * boost::lockfree::queue<uint64_t, capacity<1024>>: fixed-sized (its nodes
 * are preallocated, push fails when they are all in use), lock-free
 * (Michael-Scott with tagged indices). Neither side ever sleeps: a failed
 * push or pop is retried with cb_spin() (pause, sched_yield every 64th try).
 *   1p1c, 2p2c   producers push their values; consumers pop until the
 *                queue is empty after the main thread has seen every
 *                producer return and raised `done`
 * Threads only (WORKERS 0). See bench.h for the rest.
 */
#include "bench.h"

#include <atomic>
#include <boost/lockfree/queue.hpp>

static const char *impl = "boost";

typedef boost::lockfree::queue<uint64_t, boost::lockfree::capacity<CB_QUEUE_CAP>> queue_t;

static queue_t *queue;
static std::atomic<bool> done;

struct producer {
	uint64_t per;
	unsigned p, np;
};

struct consumer {
	unsigned np;
	struct cb_tally tally;
};

static void *produce(void *arg)
{
	producer *p = static_cast<producer *>(arg);
	for (uint64_t i = 0; i < p->per; i++) {
		unsigned spins = 0;
		uint64_t v = cb_value(i, p->p, p->np);
		while (!queue->push(v))
			cb_spin(&spins);
	}
	return nullptr;
}

static void *consume(void *arg)
{
	consumer *c = static_cast<consumer *>(arg);
	unsigned spins = 0;
	for (;;) {
		uint64_t v;
		if (queue->pop(v)) {
			cb_take(&c->tally, v, c->np);
			spins = 0;
			continue;
		}
		/* acquire: pairs with the release store in run(), after every
		 * producer was joined: all pushes are visible, empty is final */
		if (done.load(std::memory_order_acquire)) {
			if (queue->pop(v)) {
				cb_take(&c->tally, v, c->np);
				continue;
			}
			return nullptr;
		}
		cb_spin(&spins);
	}
}

static double run(const struct fb_args *a, unsigned pairs, uint64_t *count)
{
	producer prod[CB_MAX_PRODUCERS];
	consumer cons[CB_MAX_PRODUCERS];
	cb_tally t[CB_MAX_PRODUCERS];
	pthread_t pt[CB_MAX_PRODUCERS], ct[CB_MAX_PRODUCERS];

	queue = new queue_t;
	done.store(false);
	for (unsigned i = 0; i < pairs; i++) {
		prod[i] = producer{ a->size / pairs, i, pairs };
		cons[i] = consumer{ pairs, cb_tally() };
	}
	double t0 = fb_now_ms();
	for (unsigned i = 0; i < pairs; i++)
		cb_thread_start(&ct[i], consume, &cons[i], a->bench, impl);
	for (unsigned i = 0; i < pairs; i++)
		cb_thread_start(&pt[i], produce, &prod[i], a->bench, impl);
	for (unsigned i = 0; i < pairs; i++)
		cb_thread_join(pt[i]);
	/* release: pairs with the acquire load of done in consume() */
	done.store(true, std::memory_order_release);
	for (unsigned i = 0; i < pairs; i++)
		cb_thread_join(ct[i]);
	double ms = fb_now_ms() - t0;
	for (unsigned i = 0; i < pairs; i++)
		t[i] = cons[i].tally;
	delete queue;
	*count = cb_check(a, impl, t, pairs);
	return ms;
}

int main(int argc, char **argv)
{
	struct fb_args a;
	double t[FB_MAX_REPS];
	uint64_t count = 0;

	cb_parse(argc, argv, &a);
	unsigned pairs = cb_pairs(a.bench);
	if (!pairs)
		fb_fail(a.bench, impl, "unknown benchmark (1p1c, 2p2c)");
	if (a.workers != 0)
		fb_fail(a.bench, impl, "threads only: WORKERS must be 0");
	if (a.size % pairs)
		fb_fail(a.bench, impl, "SIZE must be a multiple of the number of producers");
	for (int r = -1; r < a.reps; r++) { /* r == -1: warm-up */
		double ms = run(&a, pairs, &count);
		if (r >= 0)
			t[r] = ms;
	}
	fb_result(&a, impl, fb_median(t, a.reps), count);
	return 0;
}
