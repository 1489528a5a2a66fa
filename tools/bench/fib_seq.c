/*
 * fib_seq.c - the sequential fib baseline, in its own translation unit.
 *
 * An honest recursive fib: both calls must stay real calls. gcc otherwise
 * turns fib(n - 2) into a loop (tail recursion with an accumulator), which
 * halves the number of calls and flatters the baseline. run.sh compiles
 * this file with -fno-optimize-sibling-calls; the attributes say the same
 * so that a different build still measures the same thing.
 */
#include "fib_seq.h"

#if defined(__clang__)
#define KEEP_CALLS __attribute__((noinline, disable_tail_calls))
#else
#define KEEP_CALLS __attribute__((noinline, optimize("no-optimize-sibling-calls")))
#endif

KEEP_CALLS long fib_seq(int n)
{
	if (n < 2)
		return n;
	return fib_seq(n - 1) + fib_seq(n - 2);
}
