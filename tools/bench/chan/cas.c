/*
 * cas.c - the cost of one uncontended compare-and-swap, the atomic
 * read-modify-write a rendezvous hand-off cannot do without (run.sh prints
 * the floor it sets: two of them and a raw fiber switch).
 *   cas   one thread (WORKERS 0) does SIZE successful C11 strong CASes on
 *         a word alone on its cache line, which no other thread touches;
 *         each expects the value the one before it stored, so they run one
 *         after the other, as in a hand-off, not overlapped. On x86-64 each
 *         is one `lock cmpxchg`.
 * acq_rel, the strongest order a hand-off's CASes need (the claim is an
 * acquire, the publication a release); on x86-64 every order compiles to
 * the same instruction. See bench.h for the command line and output.
 */
#include "bench.h"

#include <stdatomic.h>

static const char *impl = "c11";

static struct {
	_Alignas(64) _Atomic uint64_t word;
	char pad[64 - sizeof(uint64_t)];
} line;

/* n CASes, each from the value the previous one stored; ms taken. */
static double run(uint64_t n)
{
	atomic_store_explicit(&line.word, 0, memory_order_relaxed);
	double t0 = fb_now_ms();
	for (uint64_t i = 0; i < n; i++) {
		uint64_t expect = i;
		atomic_compare_exchange_strong_explicit(&line.word, &expect, i + 1,
							memory_order_acq_rel, memory_order_relaxed);
	}
	return fb_now_ms() - t0;
}

int main(int argc, char **argv)
{
	struct fb_args a;
	double t[FB_MAX_REPS];

	cb_parse(argc, argv, &a);
	if (strcmp(a.bench, "cas"))
		fb_fail(a.bench, impl, "unknown benchmark (cas)");
	if (a.workers != 0)
		fb_fail(a.bench, impl, "one plain thread: WORKERS must be 0");
	run(a.size); /* warm-up */
	for (int r = 0; r < a.reps; r++) {
		t[r] = run(a.size);
		if (atomic_load_explicit(&line.word, memory_order_relaxed) != a.size)
			fb_fail(a.bench, impl, "a CAS failed: the word does not hold SIZE");
	}
	fb_result(&a, impl, fb_median(t, a.reps), a.size);
	return 0;
}
