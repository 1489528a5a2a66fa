/*
 * boost.cpp - Boost.Context's lowest layer, the one Boost.Fiber and
 * Boost.Coroutine2 are built on: boost::context::detail::make_fcontext and
 * jump_fcontext (hand-written assembly, the fastest switch Boost offers;
 * callcc/fiber add a record and an ontop call around it).
 *   switch   the main context and one context on a 64 KiB malloc'd stack
 *            jump to each other SIZE times each (SIZE round trips, 2*SIZE
 *            switches); the second context counts the round trips.
 * WORKERS must be 1. See bench.h for the command line and output.
 */
#include "bench.h"

#include <boost/context/detail/fcontext.hpp>

namespace bc = boost::context::detail;

static const size_t STACK_SIZE = 64 * 1024;

static uint64_t pongs; /* written only by the pong context */

static void pong(bc::transfer_t t)
{
	for (;;) {
		pongs++;
		t = bc::jump_fcontext(t.fctx, nullptr); /* back to whoever jumped here */
	}
}

static bc::fcontext_t pong_ctx;

static double ping(uint64_t n)
{
	pongs = 0;
	double t0 = fb_now_ms();
	for (uint64_t i = 0; i < n; i++)
		pong_ctx = bc::jump_fcontext(pong_ctx, nullptr).fctx;
	return fb_now_ms() - t0;
}

int main(int argc, char **argv)
{
	struct fb_args a;
	double t[FB_MAX_REPS];
	const char *impl = "boost";

	fb_parse(argc, argv, "switch", &a);
	if (strcmp(a.bench, "switch"))
		fb_fail(a.bench, impl, "unknown benchmark (switch)");
	if (a.workers != 1)
		fb_fail(a.bench, impl, "a raw switch runs on one thread: WORKERS must be 1");
	char *stack = static_cast<char *>(aligned_alloc(64, STACK_SIZE));
	if (!stack)
		fb_fail(a.bench, impl, "out of memory");
	/* make_fcontext takes the top of the stack (stacks grow down). */
	pong_ctx = bc::make_fcontext(stack + STACK_SIZE, STACK_SIZE, pong);
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
