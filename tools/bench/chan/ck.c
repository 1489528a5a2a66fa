/*
 * ck.c - Concurrency Kit's single-producer single-consumer ring (ck_ring.h,
 * libck-dev): ck_ring_enqueue_spsc / ck_ring_dequeue_spsc on a ring of 1024
 * slots (a ck_ring keeps one slot free: 1023 elements fit). The ring holds
 * pointers; the 8-byte values travel as pointer-sized integers. Neither side
 * ever sleeps: a full or empty ring is retried with cb_spin() (pause,
 * sched_yield every 64th try). The bound on what ck_ring can do here.
 *   1p1c   one producer thread, one consumer thread; the consumer stops
 *          when the ring is empty after the main thread has seen the
 *          producer return and raised `done`
 * Threads only (WORKERS 0). See bench.h for the rest.
 */
#include "bench.h"

#include <ck_ring.h>
#include <stdatomic.h>

static const char *impl = "ck";

static struct ck_ring ring;
static struct ck_ring_buffer slots[CB_QUEUE_CAP];
static atomic_bool done;
static struct cb_tally tally;

static void *produce(void *arg)
{
	uint64_t n = *(uint64_t *)arg;
	for (uint64_t i = 0; i < n; i++) {
		unsigned spins = 0;
		void *v = (void *)(uintptr_t)cb_value(i, 0, 1);
		while (!ck_ring_enqueue_spsc(&ring, slots, v))
			cb_spin(&spins);
	}
	return NULL;
}

static void *consume(void *arg)
{
	(void)arg;
	unsigned spins = 0;
	for (;;) {
		void *v;
		if (ck_ring_dequeue_spsc(&ring, slots, &v)) {
			cb_take(&tally, (uint64_t)(uintptr_t)v, 1);
			spins = 0;
			continue;
		}
		/* acquire: pairs with the release store in run(), after the producer
		 * was joined: every enqueue is visible, so an empty ring is final */
		if (atomic_load_explicit(&done, memory_order_acquire)) {
			if (ck_ring_dequeue_spsc(&ring, slots, &v)) {
				cb_take(&tally, (uint64_t)(uintptr_t)v, 1);
				continue;
			}
			return NULL;
		}
		cb_spin(&spins);
	}
}

static double run(const struct fb_args *a, uint64_t *count)
{
	pthread_t pt, ct;
	uint64_t n = a->size;
	ck_ring_init(&ring, CB_QUEUE_CAP);
	atomic_store(&done, false);
	memset(&tally, 0, sizeof tally);
	double t0 = fb_now_ms();
	cb_thread_start(&ct, consume, NULL, a->bench, impl);
	cb_thread_start(&pt, produce, &n, a->bench, impl);
	cb_thread_join(pt);
	/* release: pairs with the acquire load of done in consume() */
	atomic_store_explicit(&done, true, memory_order_release);
	cb_thread_join(ct);
	double ms = fb_now_ms() - t0;
	*count = cb_check(a, impl, &tally, 1);
	return ms;
}

int main(int argc, char **argv)
{
	struct fb_args a;
	double t[FB_MAX_REPS];
	uint64_t count = 0;

	cb_parse(argc, argv, &a);
	if (strcmp(a.bench, "1p1c"))
		fb_fail(a.bench, impl,
			"unknown benchmark (1p1c: the ring is single-producer single-consumer)");
	if (a.workers != 0)
		fb_fail(a.bench, impl, "threads only: WORKERS must be 0");
	for (int r = -1; r < a.reps; r++) { /* r == -1: warm-up */
		double ms = run(&a, &count);
		if (r >= 0)
			t[r] = ms;
	}
	fb_result(&a, impl, fb_median(t, a.reps), count);
	return 0;
}
