/*
 * moirai.c - the Moirai side of every benchmark:
 *   fib         fib(SIZE) by mr_join on both halves, no cutoff
 *   spawn       SIZE empty tasks spawned into one mr_group_t by one task,
 *               then mr_group_wait
 *   balanced    sum of sqrt(i), mr_parallel_reduce with grain 0
 *   unbalanced  index i costs i units, mr_parallel_reduce with grain 0
 * Each run enters a runtime of WORKERS workers with mr_runtime_install and
 * is timed around that call. See work.h for the command line and output.
 */
#include "work.h"

#include <moirai/moirai.h>

/* ---- fib ---------------------------------------------------------------- */

struct fib_arg {
	int n;
	long r;
};

static void fib_par(void *p)
{
	struct fib_arg *f = p;
	if (f->n < 2) {
		f->r = f->n;
		return;
	}
	struct fib_arg a = { f->n - 1, 0 }, b = { f->n - 2, 0 };
	mr_join(fib_par, &a, fib_par, &b);
	f->r = a.r + b.r;
}

/* ---- spawn -------------------------------------------------------------- */

struct spawn_arg {
	unsigned char *flags; /* one per task: the task sets its own */
	size_t n;
	int err;
};

static void set_flag(void *p)
{
	*(unsigned char *)p = 1;
}

static void spawn_all(void *p)
{
	struct spawn_arg *s = p;
	mr_group_t g;
	mr_group_init(&g);
	for (size_t i = 0; i < s->n; i++)
		if (mr_group_spawn(&g, set_flag, &s->flags[i]) != 0)
			s->err = 1;
	if (mr_group_wait(&g) != 0)
		s->err = 1;
}

/* ---- loops -------------------------------------------------------------- */

struct loop_arg {
	size_t n;
	double dsum;
	uint64_t usum;
	int err;
};

static void bal_body(size_t lo, size_t hi, void *acc, void *ctx)
{
	(void)ctx;
	*(double *)acc += bal_range(lo, hi);
}

static void bal_combine(void *acc, const void *other, void *ctx)
{
	(void)ctx;
	*(double *)acc += *(const double *)other;
}

static void bal_run(void *p)
{
	struct loop_arg *l = p;
	const double zero = 0.0;
	l->dsum = 0.0;
	if (mr_parallel_reduce(0, l->n, 0, &l->dsum, sizeof(double), &zero, bal_body, bal_combine,
			       NULL) != 0)
		l->err = 1;
}

static void unbal_body(size_t lo, size_t hi, void *acc, void *ctx)
{
	(void)ctx;
	*(uint64_t *)acc += unbal_range(lo, hi);
}

static void unbal_combine(void *acc, const void *other, void *ctx)
{
	(void)ctx;
	*(uint64_t *)acc += *(const uint64_t *)other;
}

static void unbal_run(void *p)
{
	struct loop_arg *l = p;
	const uint64_t zero = 0;
	l->usum = 0;
	if (mr_parallel_reduce(0, l->n, 0, &l->usum, sizeof(uint64_t), &zero, unbal_body,
			       unbal_combine, NULL) != 0)
		l->err = 1;
}

/* ---- driver ------------------------------------------------------------- */

static double timed_install(mr_runtime_t *rt, void (*fn)(void *), void *arg)
{
	double t0 = bench_now_ms();
	if (mr_runtime_install(rt, fn, arg) != 0)
		bench_fail("moirai", "install", "mr_runtime_install failed");
	return bench_now_ms() - t0;
}

int main(int argc, char **argv)
{
	struct bench_args a;
	double t[BENCH_MAX_REPS];
	const char *impl = "moirai";

	bench_parse(argc, argv, &a);
	MR_OPTS(mr_config, cfg, .workers = a.workers);
	mr_runtime_t *rt = mr_runtime_create(&cfg);
	if (!rt) {
		perror("mr_runtime_create");
		return 1;
	}
	if (mr_runtime_workers(rt) != a.workers)
		bench_fail(impl, a.bench, "runtime has the wrong number of workers");

	if (!strcmp(a.bench, "fib")) {
		struct fib_arg f = { (int)a.size, 0 };
		timed_install(rt, fib_par, &f);
		long first = f.r;
		for (int r = 0; r < a.reps; r++) {
			f.r = 0;
			t[r] = timed_install(rt, fib_par, &f);
			if (f.r != first)
				bench_fail(impl, a.bench, "results differ between repetitions");
		}
		bench_result_u64(a.bench, impl, a.workers, bench_median(t, a.reps), (uint64_t)first);
	} else if (!strcmp(a.bench, "spawn")) {
		struct spawn_arg s = { calloc(a.size, 1), a.size, 0 };
		if (!s.flags)
			bench_fail(impl, a.bench, "out of memory");
		uint64_t ran = 0;
		for (int r = -1; r < a.reps; r++) { /* r == -1: warm-up */
			memset(s.flags, 0, s.n);
			double ms = timed_install(rt, spawn_all, &s);
			if (r >= 0)
				t[r] = ms;
			ran = 0;
			for (size_t i = 0; i < s.n; i++)
				ran += s.flags[i];
			if (s.err || ran != s.n)
				bench_fail(impl, a.bench, "not every task ran exactly once");
		}
		free(s.flags);
		bench_result_u64(a.bench, impl, a.workers, bench_median(t, a.reps), ran);
	} else if (!strcmp(a.bench, "balanced") || !strcmp(a.bench, "unbalanced")) {
		int bal = !strcmp(a.bench, "balanced");
		void (*fn)(void *) = bal ? bal_run : unbal_run;
		struct loop_arg l = { a.size, 0, 0, 0 };
		timed_install(rt, fn, &l);
		double dfirst = l.dsum;
		uint64_t ufirst = l.usum;
		for (int r = 0; r < a.reps; r++) {
			t[r] = timed_install(rt, fn, &l);
			/* a parallel float sum may differ in the last bits between runs */
			if (l.err || (!bal && l.usum != ufirst) ||
			    (bal && fabs(l.dsum - dfirst) > 1e-9 * fabs(dfirst)))
				bench_fail(impl, a.bench, "results differ between repetitions");
		}
		if (bal)
			bench_result_f64(a.bench, impl, a.workers, bench_median(t, a.reps), dfirst);
		else
			bench_result_u64(a.bench, impl, a.workers, bench_median(t, a.reps), ufirst);
	} else {
		bench_fail(impl, a.bench, "unknown benchmark (fib, spawn, balanced, unbalanced)");
	}
	if (mr_runtime_destroy(rt) != 0)
		bench_fail(impl, a.bench, "mr_runtime_destroy failed");
	return 0;
}
