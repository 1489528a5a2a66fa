/*
 * seq.c - the sequential baselines: fib (fib_seq.c) and the two loops run
 * over their whole range by one thread. WORKERS must be 1.
 * See work.h for the command line and the output.
 */
#include "fib_seq.h"
#include "work.h"

int main(int argc, char **argv)
{
	struct bench_args a;
	double t[BENCH_MAX_REPS];

	bench_parse(argc, argv, &a);
	if (a.workers != 1)
		bench_fail("seq", a.bench, "the sequential baseline runs with 1 worker only");

	if (!strcmp(a.bench, "fib")) {
		int n = (int)a.size;
		long first = fib_seq((int)bench_opaque((size_t)n)); /* warm-up */
		for (int r = 0; r < a.reps; r++) {
			double t0 = bench_now_ms();
			long v = fib_seq((int)bench_opaque((size_t)n));
			t[r] = bench_now_ms() - t0;
			if (v != first)
				bench_fail("seq", "fib", "results differ between repetitions");
		}
		bench_result_u64("fib", "seq", 1, bench_median(t, a.reps), (uint64_t)first);
	} else if (!strcmp(a.bench, "balanced")) {
		double first = bal_range(0, bench_opaque(a.size));
		for (int r = 0; r < a.reps; r++) {
			double t0 = bench_now_ms();
			double v = bal_range(0, bench_opaque(a.size));
			t[r] = bench_now_ms() - t0;
			if (v != first)
				bench_fail("seq", "balanced", "results differ between repetitions");
		}
		bench_result_f64("balanced", "seq", 1, bench_median(t, a.reps), first);
	} else if (!strcmp(a.bench, "unbalanced")) {
		uint64_t first = unbal_range(0, bench_opaque(a.size));
		for (int r = 0; r < a.reps; r++) {
			double t0 = bench_now_ms();
			uint64_t v = unbal_range(0, bench_opaque(a.size));
			t[r] = bench_now_ms() - t0;
			if (v != first)
				bench_fail("seq", "unbalanced", "results differ between repetitions");
		}
		bench_result_u64("unbalanced", "seq", 1, bench_median(t, a.reps), first);
	} else {
		bench_fail("seq", a.bench, "unknown benchmark (fib, balanced, unbalanced)");
	}
	return 0;
}
