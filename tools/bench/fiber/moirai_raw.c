/*
 * moirai_raw.c - Moirai's raw context switch (user/fiber/switch.h, the
 * internal mr__ctx_switch/mr__ctx_make that fibers are built on), without
 * the scheduler:
 *   switch   the main context and one context on a 64 KiB malloc'd stack
 *            switch to each other SIZE times each (SIZE round trips, 2*SIZE
 *            switches); the second context counts the round trips.
 * Single-threaded: WORKERS must be 1. boost.cpp and ucontext.c measure the
 * same ping-pong with their own switch. The symbols are hidden in the
 * shared library but global in libmoirai.a, which this program links.
 * See bench.h for the command line and output.
 */
#include "bench.h"

#include "../../../user/fiber/switch.h"

#define STACK_SIZE (64 * 1024)

static void *main_sp, *pong_sp;
static uint64_t pongs; /* written only by the pong context */

static void __attribute__((noreturn)) pong(void *arg)
{
	(void)arg;
	for (;;) {
		pongs++;
		mr__ctx_switch(&pong_sp, main_sp, NULL);
	}
}

static double ping(uint64_t n)
{
	pongs = 0;
	double t0 = fb_now_ms();
	for (uint64_t i = 0; i < n; i++)
		mr__ctx_switch(&main_sp, pong_sp, NULL);
	return fb_now_ms() - t0;
}

int main(int argc, char **argv)
{
	struct fb_args a;
	double t[FB_MAX_REPS];
	const char *impl = "moirai-raw";

	fb_parse(argc, argv, "switch", &a);
	if (strcmp(a.bench, "switch"))
		fb_fail(a.bench, impl, "unknown benchmark (switch)");
	if (a.workers != 1)
		fb_fail(a.bench, impl, "a raw switch runs on one thread: WORKERS must be 1");
	char *stack = aligned_alloc(64, STACK_SIZE);
	if (!stack)
		fb_fail(a.bench, impl, "out of memory");
	/* The pong context stays suspended inside its loop between the runs. */
	pong_sp = mr__ctx_make(stack + STACK_SIZE, pong);
	ping(a.size); /* warm-up */
	for (int r = 0; r < a.reps; r++) {
		t[r] = ping(a.size);
		if (pongs != a.size)
			fb_fail(a.bench, impl, "the pong context did not run once per round trip");
	}
	fb_result(&a, impl, fb_median(t, a.reps), pongs);
	free(stack);
	return 0;
}
