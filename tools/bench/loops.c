/*
 * loops.c - the loop bodies of the balanced and unbalanced benchmarks,
 * compiled once and linked into every C and C++ benchmark program (see
 * work.h for why they are not inline).
 */
#include "work.h"

/*
 * The sum runs in blocks of 4096 indices (aligned to multiples of 4096),
 * each an out-of-line call whose result is added into the total. As one
 * long loop, the same code was 7-9% slower on long ranges than on ranges
 * of 64K indices or less on these machines (AMD EPYC, measured: 465 ms for
 * one 200M range, 426 ms in 4096-index chunks; the cause is in the core,
 * not in the data - a blocked loop inlined into one function is still slow).
 * That rewarded an implementation for cutting the range finely rather than
 * for scheduling well. Blocked like this, the time no longer depends on the
 * ranges (428 +- 3 ms for ranges from 4096 to 200M indices).
 */
#define BAL_BLOCK 4096

__attribute__((noinline)) static double bal_block(size_t lo, size_t hi)
{
	double t = 0.0;
	for (size_t i = lo; i < hi; i++)
		t += sqrt((double)i);
	return t;
}

double bal_range(size_t lo, size_t hi)
{
	double s = 0.0;
	while (lo < hi) {
		size_t end = (lo / BAL_BLOCK + 1) * BAL_BLOCK;

		if (end > hi)
			end = hi;
		s += bal_block(lo, end);
		lo = end;
	}
	return s;
}

static uint64_t unbal_one(uint64_t i)
{
	uint64_t x = i;
	for (uint64_t j = 0; j < i; j++)
		x = (x ^ (x >> 31)) * 0x9e3779b97f4a7c15ull + j;
	return x;
}

uint64_t unbal_range(size_t lo, size_t hi)
{
	uint64_t s = 0;
	for (size_t i = lo; i < hi; i++)
		s += unbal_one(i);
	return s;
}
