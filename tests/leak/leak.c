/*
 * leak.c - the program tests/valgrind.sh runs under valgrind: runtimes with
 * 1 and 3 workers created and destroyed, fork-join, a group of 10,000
 * tasks (some left for destroy to drain), parallel_for and parallel_reduce
 * (with an element big enough for heap accumulators), work from outside on
 * the default runtime. Exits non-zero if a result is wrong; valgrind reports
 * leaks and memory errors.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <moirai/moirai.h>

static int failures;

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "leak.c:%d: check failed: %s\n", __LINE__, #c);           \
			failures++;                                                                \
		}                                                                                  \
	} while (0)

struct fib {
	int n;
	long r;
};

static void fib(void *p)
{
	struct fib *f = p;
	if (f->n < 2) {
		f->r = f->n;
		return;
	}
	struct fib a = { f->n - 1, 0 }, b = { f->n - 2, 0 };
	mr_join(fib, &a, fib, &b);
	f->r = a.r + b.r;
}

static void inc(void *arg)
{
	atomic_fetch_add_explicit((_Atomic long *)arg, 1, memory_order_relaxed);
}

static void count_body(size_t lo, size_t hi, void *ctx)
{
	atomic_fetch_add_explicit((_Atomic long *)ctx, (long)(hi - lo), memory_order_relaxed);
}

static void sum_body(size_t lo, size_t hi, void *acc, void *ctx)
{
	(void)ctx;
	for (size_t i = lo; i < hi; i++)
		*(unsigned long *)acc += i;
}

static void sum_combine(void *acc, const void *other, void *ctx)
{
	(void)ctx;
	*(unsigned long *)acc += *(const unsigned long *)other;
}

struct big {
	unsigned long v[128]; /* 1024 bytes: accumulators on the heap */
};

static void big_body(size_t lo, size_t hi, void *acc, void *ctx)
{
	struct big *b = acc;
	(void)ctx;
	for (size_t i = lo; i < hi; i++)
		b->v[i % 128] += i;
}

static void big_combine(void *acc, const void *other, void *ctx)
{
	struct big *a = acc;
	const struct big *o = other;
	(void)ctx;
	for (int k = 0; k < 128; k++)
		a->v[k] += o->v[k];
}

struct work {
	mr_group_t *detached;
	_Atomic long grouped, looped, left;
	long fib;
	unsigned long sum;
	int big_ok;
};

static void work(void *arg)
{
	struct work *w = arg;
	struct fib f = { 20, 0 };
	mr_group_t g;
	unsigned long zero = 0;
	struct big *id = calloc(1, sizeof(*id)), *r = malloc(sizeof(*r));

	fib(&f);
	w->fib = f.r;
	mr_group_init(&g);
	for (int i = 0; i < 10000; i++)
		mr_group_spawn(&g, inc, &w->grouped);
	mr_group_wait(&g);
	mr_parallel_for(0, 100000, 0, count_body, &w->looped);
	mr_parallel_for(0, 1000, 1, count_body, &w->looped);
	mr_parallel_reduce(0, 100000, 0, &w->sum, sizeof(w->sum), &zero, sum_body, sum_combine,
			   NULL);
	if (id && r) {
		mr_parallel_reduce(0, 10000, 16, r, sizeof(*r), id, big_body, big_combine, NULL);
		unsigned long total = 0;
		for (int k = 0; k < 128; k++)
			total += r->v[k];
		w->big_ok = total == 10000ul * 9999 / 2;
	}
	free(id);
	free(r);
	/* Tasks nobody waits for: destroy drains them. */
	for (int i = 0; i < 1000; i++)
		mr_group_spawn(w->detached, inc, &w->left);
}

int main(void)
{
	static const unsigned workers[] = { 1, 3 };
	mr_group_t detached;

	mr_group_init(&detached);
	for (int rep = 0; rep < 2; rep++)
		for (size_t k = 0; k < sizeof(workers) / sizeof(workers[0]); k++) {
			MR_OPTS(mr_config, cfg, .workers = workers[k]);
			mr_runtime_t *rt = mr_runtime_create(&cfg);
			struct work w;

			CHECK(rt != NULL);
			if (!rt)
				return 1;
			memset(&w, 0, sizeof(w));
			w.detached = &detached;
			CHECK(mr_runtime_install(rt, work, &w) == 0);
			CHECK(mr_runtime_destroy(rt) == 0);
			CHECK(w.fib == 6765);
			CHECK(atomic_load(&w.grouped) == 10000);
			CHECK(atomic_load(&w.looped) == 101000);
			CHECK(w.sum == 100000ul * 99999 / 2);
			CHECK(w.big_ok);
			CHECK(atomic_load(&w.left) == 1000);
		}

	/* A runtime destroyed without ever running anything. */
	{
		MR_OPTS(mr_config, cfg, .workers = 3);
		mr_runtime_t *rt = mr_runtime_create(&cfg);
		CHECK(rt != NULL);
		if (rt)
			CHECK(mr_runtime_destroy(rt) == 0);
	}

	/* From outside: the default runtime, then destroyed too. */
	{
		struct fib f = { 18, 0 };
		_Atomic long n = 0;
		mr_group_t g;

		mr_join(fib, &f, fib, &f);
		CHECK(f.r == 2584);
		mr_group_init(&g);
		for (int i = 0; i < 1000; i++)
			mr_group_spawn(&g, inc, (void *)&n);
		CHECK(mr_group_wait(&g) == 0);
		CHECK(atomic_load(&n) == 1000);
		mr_runtime_t *def = mr_runtime_default();
		CHECK(def != NULL);
		if (def)
			CHECK(mr_runtime_destroy(def) == 0);
	}

	if (failures)
		fprintf(stderr, "leak.c: %d checks failed\n", failures);
	return failures ? 2 : 0;
}
