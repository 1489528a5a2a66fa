/*
 * sort.h - what both sort benchmark programs share: the input (SIZE
 * random 64-bit keys from a fixed xorshift seed, the same in C and C++),
 * the answer check (a position-weighted hash of the sorted array, equal
 * for every correct sort), and the timing loop: each repetition copies the
 * input afresh and times the sort alone.
 *
 * Two inputs: SIZE keys (uint64_t), or SIZE 16-byte records (struct
 * sort_rec: the same keys, each with its input position as payload) sorted
 * by key. An IMPL named "rec:NAME" sorts records, its RESULT line says
 * sort-rec; the keys are distinct, so stable and unstable sorts agree.
 */
#ifndef MOIRAI_BENCH_SORT_H
#define MOIRAI_BENCH_SORT_H

#include "../work.h"

static inline uint64_t *sort_input(size_t n)
{
	uint64_t *a = (uint64_t *)malloc(n * sizeof(*a)), s = 0x9e3779b97f4a7c15ull;

	if (!a) {
		fprintf(stderr, "no memory for %zu keys\n", n);
		exit(1);
	}
	for (size_t i = 0; i < n; i++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		a[i] = s;
	}
	return a;
}

struct sort_rec {
	uint64_t key, val;
};

static inline struct sort_rec *sort_rec_input(size_t n)
{
	uint64_t *k = sort_input(n);
	struct sort_rec *r = (struct sort_rec *)malloc(n * sizeof(*r));

	if (!r) {
		fprintf(stderr, "no memory for %zu records\n", n);
		exit(1);
	}
	for (size_t i = 0; i < n; i++) {
		r[i].key = k[i];
		r[i].val = i;
	}
	free(k);
	return r;
}

/* 0 if a is not ascending, else a hash that depends on every position. */
static inline uint64_t sort_check(const uint64_t *a, size_t n)
{
	uint64_t h = 1;

	for (size_t i = 0; i < n; i++) {
		if (i && a[i - 1] > a[i])
			return 0;
		h = h * 0x100000001b3ull + a[i];
	}
	return h;
}

/* As sort_check, of the records' keys and payloads. */
static inline uint64_t sort_rec_check(const struct sort_rec *a, size_t n)
{
	uint64_t h = 1;

	for (size_t i = 0; i < n; i++) {
		if (i && a[i - 1].key > a[i].key)
			return 0;
		h = h * 0x100000001b3ull + a[i].key;
		h = h * 0x100000001b3ull + a[i].val;
	}
	return h;
}

static inline int sort_cmp_rec(const void *x, const void *y)
{
	uint64_t a = ((const struct sort_rec *)x)->key, b = ((const struct sort_rec *)y)->key;
	return (a > b) - (a < b);
}

static inline int sort_cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return (a > b) - (a < b);
}

/* Run sort(work, n, ctx) once to warm up and reps timed times; print RESULT. */
static inline void sort_bench(const char *impl, unsigned workers, int reps, size_t n,
			      void (*sort)(uint64_t *, size_t, void *), void *ctx)
{
	uint64_t *in = sort_input(n), *work = (uint64_t *)malloc(n * sizeof(*work));
	double t[BENCH_MAX_REPS];
	uint64_t check = 0;

	if (!work)
		bench_fail(impl, "sort", "no memory");
	for (int r = -1; r < reps; r++) {
		memcpy(work, in, n * sizeof(*in));
		double t0 = bench_now_ms();
		sort(work, n, ctx);
		double ms = bench_now_ms() - t0;
		uint64_t c = sort_check(work, n);
		if (!c)
			bench_fail(impl, "sort", "not sorted");
		if (r < 0)
			check = c;
		else
			t[r] = ms;
	}
	bench_result_u64("sort", impl, workers, bench_median(t, reps), check);
	free(in);
	free(work);
}

/* sort_bench for records: sort(work, n, ctx) on n struct sort_rec. */
static inline void sort_rec_bench(const char *impl, unsigned workers, int reps, size_t n,
				  void (*sort)(struct sort_rec *, size_t, void *), void *ctx)
{
	struct sort_rec *in = sort_rec_input(n), *work = (struct sort_rec *)malloc(n * sizeof(*work));
	double t[BENCH_MAX_REPS];
	uint64_t check = 0;

	if (!work)
		bench_fail(impl, "sort-rec", "no memory");
	for (int r = -1; r < reps; r++) {
		memcpy(work, in, n * sizeof(*in));
		double t0 = bench_now_ms();
		sort(work, n, ctx);
		double ms = bench_now_ms() - t0;
		uint64_t c = sort_rec_check(work, n);
		if (!c)
			bench_fail(impl, "sort-rec", "not sorted");
		if (r < 0)
			check = c;
		else
			t[r] = ms;
	}
	bench_result_u64("sort-rec", impl, workers, bench_median(t, reps), check);
	free(in);
	free(work);
}

#endif /* MOIRAI_BENCH_SORT_H */
