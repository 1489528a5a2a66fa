/*
 * ucontext.c - glibc's swapcontext, the portable POSIX (now withdrawn)
 * user-space switch:
 *   switch   the main context and one context on a 64 KiB malloc'd stack
 *            swapcontext to each other SIZE times each (SIZE round trips,
 *            2*SIZE switches); the second context counts the round trips.
 * swapcontext saves and restores the signal mask with an rt_sigprocmask
 * system call on every switch: that, not the register shuffle, is its cost.
 * WORKERS must be 1. See bench.h for the command line and output.
 */
#include "bench.h"

#include <ucontext.h>

#define STACK_SIZE (64 * 1024)

static ucontext_t main_uc, pong_uc;
static uint64_t pongs; /* written only by the pong context */

static void pong(void)
{
	for (;;) {
		pongs++;
		if (swapcontext(&pong_uc, &main_uc) != 0)
			abort();
	}
}

static double ping(uint64_t n)
{
	pongs = 0;
	double t0 = fb_now_ms();
	for (uint64_t i = 0; i < n; i++)
		if (swapcontext(&main_uc, &pong_uc) != 0)
			fb_fail("switch", "ucontext", "swapcontext failed");
	return fb_now_ms() - t0;
}

int main(int argc, char **argv)
{
	struct fb_args a;
	double t[FB_MAX_REPS];
	const char *impl = "ucontext";

	fb_parse(argc, argv, "switch", &a);
	if (strcmp(a.bench, "switch"))
		fb_fail(a.bench, impl, "unknown benchmark (switch)");
	if (a.workers != 1)
		fb_fail(a.bench, impl, "a raw switch runs on one thread: WORKERS must be 1");
	char *stack = aligned_alloc(64, STACK_SIZE);
	if (!stack || getcontext(&pong_uc) != 0)
		fb_fail(a.bench, impl, "out of memory or getcontext failed");
	pong_uc.uc_stack.ss_sp = stack;
	pong_uc.uc_stack.ss_size = STACK_SIZE;
	pong_uc.uc_link = NULL; /* pong never returns */
	makecontext(&pong_uc, pong, 0);
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
