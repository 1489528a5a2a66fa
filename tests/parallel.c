/*
 * parallel.c - mr_parallel_for and mr_parallel_reduce: every index exactly
 * once for many sizes and grains, range lengths bounded by the grain, bad
 * input, nested loops, calls from outside and from inside a runtime; the
 * reduction equals the sequential fold for a sum, for non-commutative
 * combines (matrix product, adjacency of ranges), for an element bigger than
 * the stack accumulator, with the result aliasing the identity, and the
 * empty range; repeated loops from inside a runtime keep waking parked
 * workers.
 */
#include <pthread.h>
#include <stdatomic.h>

#include <moirai/moirai.h>

#include "harness.h"

static long ld(_Atomic long *p)
{
	return atomic_load(p);
}

static mr_runtime_t *make_rt(unsigned workers)
{
	MR_OPTS(mr_config, cfg, .workers = workers);
	return mr_runtime_create(&cfg);
}

/* ---- parallel_for coverage --------------------------------------------- */

struct cover {
	size_t begin, end, grain;
	_Atomic unsigned char *hits;
	_Atomic long calls, bad_range, too_long, off_runtime;
	mr_runtime_t *rt; /* expected runtime of the body, or NULL: any */
};

static void cover_body(size_t lo, size_t hi, void *ctx)
{
	struct cover *c = ctx;

	atomic_fetch_add(&c->calls, 1);
	if (lo >= hi || lo < c->begin || hi > c->end) {
		atomic_fetch_add(&c->bad_range, 1);
		return;
	}
	if (c->grain && hi - lo > c->grain)
		atomic_fetch_add(&c->too_long, 1);
	if (mr_worker_index() < 0 || (c->rt && mr_runtime_current() != c->rt))
		atomic_fetch_add(&c->off_runtime, 1);
	for (size_t i = lo; i < hi; i++)
		atomic_fetch_add_explicit(&c->hits[i - c->begin], 1, memory_order_relaxed);
}

/* Run one loop over [begin, begin + n) and check it; returns the number of faults. */
static long cover_check(size_t begin, size_t n, size_t grain, mr_runtime_t *rt)
{
	struct cover c = { 0 };
	long faults = 0;

	c.begin = begin;
	c.end = begin + n;
	c.grain = grain;
	c.rt = rt;
	c.hits = calloc(n ? n : 1, 1);
	if (!c.hits)
		abort();
	if (mr_parallel_for(begin, begin + n, grain, cover_body, &c) != 0)
		faults++;
	for (size_t i = 0; i < n; i++)
		if (atomic_load_explicit(&c.hits[i], memory_order_relaxed) != 1) {
			if (!faults)
				printf("# size %zu grain %zu: index %zu hit %u times\n", n, grain,
				       begin + i, (unsigned)c.hits[i]);
			faults++;
		}
	if (n == 0 && ld(&c.calls) != 0)
		faults++;
	if (ld(&c.bad_range) || ld(&c.too_long) || ld(&c.off_runtime)) {
		printf("# size %zu grain %zu: bad ranges %ld, longer than grain %ld, "
		       "off runtime %ld\n",
		       n, grain, ld(&c.bad_range), ld(&c.too_long), ld(&c.off_runtime));
		faults++;
	}
	free((void *)c.hits);
	return faults;
}

static const size_t sizes[] = { 0, 1, 2, 3, 1000, 1000003 };
static const size_t grains[] = { 0, 1, 7, 1000, SIZE_MAX };

static size_t scaled(size_t n)
{
	/* The big size stays odd-sized (and large) under sanitizers. */
	return n > 100000 ? n / mr_test_scale() | 1 : n;
}

struct cover_all {
	size_t begin;
	mr_runtime_t *rt;
	long faults;
};

static void cover_all_sizes(void *arg)
{
	struct cover_all *a = arg;

	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
		for (size_t g = 0; g < sizeof(grains) / sizeof(grains[0]); g++)
			a->faults += cover_check(a->begin, scaled(sizes[s]), grains[g], a->rt);
}

TEST(for_covers_every_index_once_from_outside)
{
	struct cover_all a = { 0, NULL, 0 };

	cover_all_sizes(&a);
	EXPECT_EQ(a.faults, 0);
	/* Not starting at 0. */
	a.begin = 12345;
	cover_all_sizes(&a);
	EXPECT_EQ(a.faults, 0);
}

TEST(for_covers_every_index_once_inside)
{
	for (unsigned nw = 1; nw <= 4; nw += 3) {
		mr_runtime_t *rt = make_rt(nw);
		struct cover_all a = { 7, rt, 0 };

		ASSERT_NONNULL(rt);
		ASSERT_EQ(mr_runtime_install(rt, cover_all_sizes, &a), 0);
		EXPECT_EQ(a.faults, 0);
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	}
}

TEST(for_indices_at_the_top_of_size_t)
{
	/* No overflow in the split arithmetic near SIZE_MAX. */
	EXPECT_EQ(cover_check(SIZE_MAX - 100000, 100000, 0, NULL), 0);
	EXPECT_EQ(cover_check(SIZE_MAX - 100000, 100000, 3, NULL), 0);
	EXPECT_EQ(cover_check(SIZE_MAX - 7, 7, 1, NULL), 0);
	EXPECT_EQ(cover_check(SIZE_MAX / 2 - 5000, 10001, 0, NULL), 0);
}

/* Uneven work: later indices cost much more (grain 0 must still cover). */
static void uneven_body(size_t lo, size_t hi, void *ctx)
{
	struct cover *c = ctx;
	for (size_t i = lo; i < hi; i++) {
		volatile unsigned long x = 0;
		for (size_t k = 0; k < i / 64; k++)
			x += k;
		atomic_fetch_add_explicit(&c->hits[i], 1, memory_order_relaxed);
	}
}

TEST(for_uneven_work_adaptive_grain)
{
	struct cover c = { 0 };
	size_t n = 20000 / (mr_test_scale() > 1 ? 4 : 1);

	c.hits = calloc(n, 1);
	ASSERT_NONNULL(c.hits);
	ASSERT_EQ(mr_parallel_for(0, n, 0, uneven_body, &c), 0);
	for (size_t i = 0; i < n; i++)
		ASSERT_EQ(atomic_load(&c.hits[i]), 1);
	free((void *)c.hits);
}

static _Atomic long never_called;

static void never(size_t lo, size_t hi, void *ctx)
{
	(void)lo;
	(void)hi;
	(void)ctx;
	atomic_fetch_add(&never_called, 1);
}

TEST(for_bad_input)
{
	EXPECT_EQ(mr_parallel_for(10, 9, 0, never, NULL), -EINVAL);
	EXPECT_EQ(mr_parallel_for(SIZE_MAX, 0, 1, never, NULL), -EINVAL);
	EXPECT_EQ(mr_parallel_for(0, 10, 0, NULL, NULL), -EINVAL);
	EXPECT_EQ(mr_parallel_for(0, 0, 0, NULL, NULL), -EINVAL);
	EXPECT_EQ(mr_parallel_for(5, 5, 0, never, NULL), 0);
	EXPECT_EQ(mr_parallel_for(0, 0, 1, never, NULL), 0);
	EXPECT_EQ(mr_parallel_for(SIZE_MAX, SIZE_MAX, 0, never, NULL), 0);
	EXPECT_EQ(ld(&never_called), 0);
}

/* ---- nested loops ------------------------------------------------------ */

enum { ROWS = 100, COLS = 1000 };

struct grid {
	_Atomic unsigned char cell[ROWS][COLS];
	_Atomic long bad;
	size_t inner_grain;
};

struct row_ctx {
	struct grid *g;
	size_t row;
};

static void inner_body(size_t lo, size_t hi, void *ctx)
{
	struct row_ctx *r = ctx;
	for (size_t j = lo; j < hi; j++)
		atomic_fetch_add_explicit(&r->g->cell[r->row][j], 1, memory_order_relaxed);
}

static void outer_body(size_t lo, size_t hi, void *ctx)
{
	struct grid *g = ctx;
	for (size_t i = lo; i < hi; i++) {
		struct row_ctx r = { g, i };
		if (mr_parallel_for(0, COLS, g->inner_grain, inner_body, &r) != 0)
			atomic_fetch_add(&g->bad, 1);
	}
}

static long grid_faults(struct grid *g)
{
	long f = ld(&g->bad);
	for (size_t i = 0; i < ROWS; i++)
		for (size_t j = 0; j < COLS; j++)
			if (atomic_load_explicit(&g->cell[i][j], memory_order_relaxed) != 1)
				f++;
	return f;
}

static void grid_run(void *arg)
{
	struct grid *g = arg;
	static const size_t og[] = { 0, 1, 7 }, ig[] = { 0, 1, 64 };

	for (size_t a = 0; a < 3; a++)
		for (size_t b = 0; b < 3; b++) {
			memset((void *)g->cell, 0, sizeof(g->cell));
			g->inner_grain = ig[b];
			if (mr_parallel_for(0, ROWS, og[a], outer_body, g) != 0 || grid_faults(g)) {
				atomic_fetch_add(&g->bad, 1);
				return;
			}
		}
}

TEST(nested_parallel_for_2d)
{
	struct grid *g = calloc(1, sizeof(*g));

	ASSERT_NONNULL(g);
	grid_run(g); /* from outside */
	EXPECT_EQ(ld(&g->bad), 0);
	for (unsigned nw = 1; nw <= 3; nw++) {
		mr_runtime_t *rt = make_rt(nw);
		ASSERT_NONNULL(rt);
		ASSERT_EQ(mr_runtime_install(rt, grid_run, g), 0);
		EXPECT_EQ(ld(&g->bad), 0);
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	}
	free(g);
}

/* ---- reduce: integer sum ----------------------------------------------- */

static void sum_body(size_t lo, size_t hi, void *acc, void *ctx)
{
	uint64_t *a = acc;
	(void)ctx;
	for (size_t i = lo; i < hi; i++)
		*a += (uint64_t)i * i + 1;
}

static void sum_combine(void *acc, const void *other, void *ctx)
{
	(void)ctx;
	*(uint64_t *)acc += *(const uint64_t *)other;
}

static uint64_t sum_seq(size_t begin, size_t end, uint64_t init)
{
	uint64_t s = init;
	for (size_t i = begin; i < end; i++)
		s += (uint64_t)i * i + 1;
	return s;
}

struct sum_all {
	long faults;
};

static void sum_all_sizes(void *arg)
{
	struct sum_all *a = arg;
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
		for (size_t g = 0; g < sizeof(grains) / sizeof(grains[0]); g++) {
			size_t n = scaled(sizes[s]);
			uint64_t zero = 0, result = 0xdeadbeef;
			if (mr_parallel_reduce(3, 3 + n, grains[g], &result, sizeof(result), &zero,
					       sum_body, sum_combine, NULL) != 0 ||
			    result != sum_seq(3, 3 + n, 0)) {
				printf("# sum size %zu grain %zu: %" PRIu64 "\n", n, grains[g],
				       result);
				a->faults++;
			}
		}
}

TEST(reduce_integer_sum)
{
	struct sum_all a = { 0 };

	sum_all_sizes(&a);
	EXPECT_EQ(a.faults, 0);
	for (unsigned nw = 1; nw <= 3; nw++) {
		mr_runtime_t *rt = make_rt(nw);
		ASSERT_NONNULL(rt);
		ASSERT_EQ(mr_runtime_install(rt, sum_all_sizes, &a), 0);
		EXPECT_EQ(a.faults, 0);
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	}
}

/* ---- reduce: non-commutative combines ---------------------------------- */

/* 2x2 matrices over Z/2^64: associative, not commutative. */
struct mat {
	uint64_t a, b, c, d;
};

static struct mat mat_mul(struct mat x, struct mat y)
{
	return (struct mat){ x.a * y.a + x.b * y.c, x.a * y.b + x.b * y.d,
			     x.c * y.a + x.d * y.c, x.c * y.b + x.d * y.d };
}

static struct mat mat_of(size_t i)
{
	uint64_t h = (uint64_t)i * 0x9E3779B97F4A7C15ull;
	h ^= h >> 29;
	return (struct mat){ h | 1, (h >> 7) + 3, (h >> 13) + 5, (h >> 3) | 1 };
}

static void mat_body(size_t lo, size_t hi, void *acc, void *ctx)
{
	struct mat *m = acc;
	(void)ctx;
	for (size_t i = lo; i < hi; i++)
		*m = mat_mul(*m, mat_of(i));
}

static void mat_combine(void *acc, const void *other, void *ctx)
{
	(void)ctx;
	*(struct mat *)acc = mat_mul(*(struct mat *)acc, *(const struct mat *)other);
}

static int mat_eq(struct mat x, struct mat y)
{
	return x.a == y.a && x.b == y.b && x.c == y.c && x.d == y.d;
}

static void mat_all(void *arg)
{
	long *faults = arg;
	const struct mat id = { 1, 0, 0, 1 };

	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
		for (size_t g = 0; g < sizeof(grains) / sizeof(grains[0]); g++) {
			size_t n = scaled(sizes[s]);
			struct mat want = id, got = { 0, 0, 0, 0 };
			for (size_t i = 0; i < n; i++)
				want = mat_mul(want, mat_of(i));
			if (mr_parallel_reduce(0, n, grains[g], &got, sizeof(got), &id, mat_body,
					       mat_combine, NULL) != 0 ||
			    !mat_eq(got, want)) {
				printf("# matrix product size %zu grain %zu differs\n", n, grains[g]);
				(*faults)++;
			}
		}
}

TEST(reduce_matrix_product_keeps_order)
{
	long faults = 0;
	struct mat x = mat_of(1), y = mat_of(2);

	/* The test is meaningful only if the product does not commute. */
	ASSERT_FALSE(mat_eq(mat_mul(x, y), mat_mul(y, x)));
	mat_all(&faults);
	EXPECT_EQ(faults, 0);
	for (unsigned nw = 2; nw <= 4; nw += 2) {
		mr_runtime_t *rt = make_rt(nw);
		ASSERT_NONNULL(rt);
		ASSERT_EQ(mr_runtime_install(rt, mat_all, &faults), 0);
		EXPECT_EQ(faults, 0);
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	}
}

/*
 * Ranges as (first, last, count): combine asserts that acc ends just left of
 * where other starts, so any reordering or overlap is caught where it
 * happens.
 */
struct span {
	size_t first, last, count;
	int empty;
};

struct span_ctx {
	_Atomic long misordered;
};

static void span_body(size_t lo, size_t hi, void *acc, void *ctx)
{
	struct span *s = acc;
	struct span_ctx *c = ctx;
	for (size_t i = lo; i < hi; i++) {
		if (s->empty) {
			*s = (struct span){ i, i, 1, 0 };
			continue;
		}
		if (s->last + 1 != i)
			atomic_fetch_add(&c->misordered, 1);
		s->last = i;
		s->count++;
	}
}

static void span_combine(void *acc, const void *other, void *ctx)
{
	struct span *a = acc;
	const struct span *o = other;
	struct span_ctx *c = ctx;

	if (o->empty)
		return;
	if (a->empty) {
		*a = *o;
		return;
	}
	if (a->last + 1 != o->first)
		atomic_fetch_add(&c->misordered, 1);
	a->last = o->last;
	a->count += o->count;
}

static void span_all(void *arg)
{
	long *faults = arg;
	const struct span empty = { 0, 0, 0, 1 };

	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
		for (size_t g = 0; g < sizeof(grains) / sizeof(grains[0]); g++) {
			size_t n = scaled(sizes[s]);
			struct span got;
			struct span_ctx c = { 0 };
			memset(&got, 0xa5, sizeof(got));
			if (mr_parallel_reduce(100, 100 + n, grains[g], &got, sizeof(got), &empty,
					       span_body, span_combine, &c) != 0 ||
			    ld(&c.misordered) ||
			    (n == 0 ? !got.empty
				    : (got.empty || got.first != 100 || got.last != 99 + n ||
				       got.count != n))) {
				printf("# span size %zu grain %zu: misordered %ld, first %zu last "
				       "%zu count %zu\n",
				       n, grains[g], ld(&c.misordered), got.first, got.last,
				       got.count);
				(*faults)++;
			}
		}
}

TEST(reduce_ranges_combine_left_to_right)
{
	long faults = 0;

	span_all(&faults);
	EXPECT_EQ(faults, 0);
	for (unsigned nw = 1; nw <= 4; nw++) {
		mr_runtime_t *rt = make_rt(nw);
		ASSERT_NONNULL(rt);
		ASSERT_EQ(mr_runtime_install(rt, span_all, &faults), 0);
		EXPECT_EQ(faults, 0);
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	}
}

/* ---- reduce: a 1024-byte element (heap accumulators) ------------------- */

enum { LANES = 64 };

/* Polynomial hashes of the sequence per lane: (h, P^len); concatenation is
 * associative and order-sensitive. */
struct big {
	uint64_t h[LANES];
	uint64_t p[LANES];
};

_Static_assert(sizeof(struct big) == 1024, "1024-byte element");

static uint64_t lane_mul(int k)
{
	return 0x100000001B3ull + 2 * (uint64_t)k;
}

static uint64_t lane_val(size_t i, int k)
{
	uint64_t x = (uint64_t)i * 0x9E3779B97F4A7C15ull + (uint64_t)k;
	x ^= x >> 31;
	return x;
}

static void big_body(size_t lo, size_t hi, void *acc, void *ctx)
{
	struct big *b = acc;
	(void)ctx;
	for (size_t i = lo; i < hi; i++)
		for (int k = 0; k < LANES; k++) {
			b->h[k] = b->h[k] * lane_mul(k) + lane_val(i, k);
			b->p[k] *= lane_mul(k);
		}
}

static void big_combine(void *acc, const void *other, void *ctx)
{
	struct big *a = acc;
	const struct big *o = other;
	(void)ctx;
	for (int k = 0; k < LANES; k++) {
		a->h[k] = a->h[k] * o->p[k] + o->h[k];
		a->p[k] *= o->p[k];
	}
}

static void big_identity(struct big *b)
{
	for (int k = 0; k < LANES; k++) {
		b->h[k] = 0;
		b->p[k] = 1;
	}
}

static long big_check(size_t n, size_t grain, int alias)
{
	struct big *id = malloc(sizeof(*id)), *want = malloc(sizeof(*want)),
		   *got = malloc(sizeof(*got));
	long faults = 0;

	if (!id || !want || !got)
		abort();
	big_identity(id);
	big_identity(want);
	big_body(0, n, want, NULL);
	if (alias) {
		/* result and identity are the same object. */
		big_identity(got);
		if (mr_parallel_reduce(0, n, grain, got, sizeof(*got), got, big_body, big_combine,
				       NULL) != 0)
			faults++;
	} else {
		memset(got, 0x5a, sizeof(*got));
		if (mr_parallel_reduce(0, n, grain, got, sizeof(*got), id, big_body, big_combine,
				       NULL) != 0)
			faults++;
	}
	if (memcmp(got, want, sizeof(*got)) != 0) {
		printf("# big element size %zu grain %zu alias %d differs\n", n, grain, alias);
		faults++;
	}
	free(id);
	free(want);
	free(got);
	return faults;
}

static void big_all(void *arg)
{
	long *faults = arg;
	static const size_t ns[] = { 0, 1, 2, 3, 1000, 30001 };
	static const size_t gs[] = { 0, 1, 7, 1000 };

	for (size_t s = 0; s < sizeof(ns) / sizeof(ns[0]); s++)
		for (size_t g = 0; g < sizeof(gs) / sizeof(gs[0]); g++) {
			size_t n = ns[s] > 10000 ? ns[s] / mr_test_scale() : ns[s];
			*faults += big_check(n, gs[g], 0);
			*faults += big_check(n, gs[g], 1);
		}
}

TEST(reduce_element_larger_than_256_bytes)
{
	long faults = 0;

	big_all(&faults);
	EXPECT_EQ(faults, 0);
	mr_runtime_t *rt = make_rt(3);
	ASSERT_NONNULL(rt);
	ASSERT_EQ(mr_runtime_install(rt, big_all, &faults), 0);
	EXPECT_EQ(faults, 0);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* The largest element allowed: MR_REDUCE_MAX_ELEM bytes. */
static void max_body(size_t lo, size_t hi, void *acc, void *ctx)
{
	uint64_t *a = acc;
	(void)ctx;
	for (size_t i = lo; i < hi; i++)
		a[i % (MR_REDUCE_MAX_ELEM / 8)] += i;
}

static void max_combine(void *acc, const void *other, void *ctx)
{
	uint64_t *a = acc;
	const uint64_t *o = other;
	(void)ctx;
	for (size_t k = 0; k < MR_REDUCE_MAX_ELEM / 8; k++)
		a[k] += o[k];
}

TEST(reduce_largest_element)
{
	uint64_t *id = calloc(1, MR_REDUCE_MAX_ELEM), *got = malloc(MR_REDUCE_MAX_ELEM),
		 *want = calloc(1, MR_REDUCE_MAX_ELEM);
	size_t n = 100000;

	ASSERT_NONNULL(id);
	ASSERT_NONNULL(got);
	ASSERT_NONNULL(want);
	max_body(0, n, want, NULL);
	ASSERT_EQ(mr_parallel_reduce(0, n, 5000, got, MR_REDUCE_MAX_ELEM, id, max_body,
				     max_combine, NULL),
		  0);
	EXPECT_EQ(memcmp(got, want, MR_REDUCE_MAX_ELEM), 0);
	free(id);
	free(got);
	free(want);
}

/* ---- reduce: aliasing, empty range, bad input -------------------------- */

static void alias_all(void *arg)
{
	long *faults = arg;
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
		for (size_t g = 0; g < sizeof(grains) / sizeof(grains[0]); g++) {
			size_t n = scaled(sizes[s]);
			/* The identity is also the result: every range must start from
			 * the identity's value before the call, not from a partial sum. */
			uint64_t x = 0;
			if (mr_parallel_reduce(0, n, grains[g], &x, sizeof(x), &x, sum_body,
					       sum_combine, NULL) != 0 ||
			    x != sum_seq(0, n, 0)) {
				printf("# aliased sum size %zu grain %zu: %" PRIu64 "\n", n,
				       grains[g], x);
				(*faults)++;
			}
			struct mat m = { 1, 0, 0, 1 }, want = m;
			for (size_t i = 0; i < n; i++)
				want = mat_mul(want, mat_of(i));
			if (mr_parallel_reduce(0, n, grains[g], &m, sizeof(m), &m, mat_body,
					       mat_combine, NULL) != 0 ||
			    !mat_eq(m, want)) {
				printf("# aliased matrix size %zu grain %zu differs\n", n, grains[g]);
				(*faults)++;
			}
		}
}

TEST(reduce_result_aliasing_identity)
{
	long faults = 0;

	alias_all(&faults);
	EXPECT_EQ(faults, 0);
	mr_runtime_t *rt = make_rt(2);
	ASSERT_NONNULL(rt);
	ASSERT_EQ(mr_runtime_install(rt, alias_all, &faults), 0);
	EXPECT_EQ(faults, 0);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

static _Atomic long reduce_calls;

static void counting_body(size_t lo, size_t hi, void *acc, void *ctx)
{
	(void)lo;
	(void)hi;
	(void)acc;
	(void)ctx;
	atomic_fetch_add(&reduce_calls, 1);
}

static void counting_combine(void *acc, const void *other, void *ctx)
{
	(void)acc;
	(void)other;
	(void)ctx;
	atomic_fetch_add(&reduce_calls, 1);
}

TEST(reduce_empty_range_gives_identity)
{
	uint64_t id = 42, r = 7;
	struct mat mid = { 1, 2, 3, 4 }, mr = { 0, 0, 0, 0 };
	struct big *bid = malloc(sizeof(*bid)), *br = malloc(sizeof(*br));

	ASSERT_NONNULL(bid);
	ASSERT_NONNULL(br);
	EXPECT_EQ(mr_parallel_reduce(5, 5, 0, &r, sizeof(r), &id, counting_body, counting_combine,
				     NULL),
		  0);
	EXPECT_EQ(r, 42);
	EXPECT_EQ(mr_parallel_reduce(0, 0, 1, &mr, sizeof(mr), &mid, counting_body,
				     counting_combine, NULL),
		  0);
	EXPECT_TRUE(mat_eq(mr, mid));
	big_identity(bid);
	memset(br, 0x77, sizeof(*br));
	EXPECT_EQ(mr_parallel_reduce(9, 9, 0, br, sizeof(*br), bid, counting_body,
				     counting_combine, NULL),
		  0);
	EXPECT_EQ(memcmp(br, bid, sizeof(*br)), 0);
	/* Aliased and empty: unchanged. */
	r = 99;
	EXPECT_EQ(mr_parallel_reduce(1, 1, 0, &r, sizeof(r), &r, counting_body, counting_combine,
				     NULL),
		  0);
	EXPECT_EQ(r, 99);
	EXPECT_EQ(ld(&reduce_calls), 0);
	free(bid);
	free(br);
}

TEST(reduce_bad_input)
{
	uint64_t id = 0, r = 17;

#define BAD(...) EXPECT_EQ(mr_parallel_reduce(__VA_ARGS__), -EINVAL)
	BAD(0, 10, 0, NULL, sizeof(r), &id, counting_body, counting_combine, NULL);
	BAD(0, 10, 0, &r, sizeof(r), NULL, counting_body, counting_combine, NULL);
	BAD(0, 10, 0, &r, sizeof(r), &id, NULL, counting_combine, NULL);
	BAD(0, 10, 0, &r, sizeof(r), &id, counting_body, NULL, NULL);
	BAD(0, 10, 0, &r, 0, &id, counting_body, counting_combine, NULL);
	BAD(0, 10, 0, &r, (size_t)MR_REDUCE_MAX_ELEM + 1, &id, counting_body, counting_combine,
	    NULL);
	BAD(0, 10, 0, &r, SIZE_MAX, &id, counting_body, counting_combine, NULL);
	BAD(10, 9, 0, &r, sizeof(r), &id, counting_body, counting_combine, NULL);
	/* Bad input with an empty range is still bad input. */
	BAD(3, 3, 0, NULL, sizeof(r), &id, counting_body, counting_combine, NULL);
	BAD(3, 3, 0, &r, 0, &id, counting_body, counting_combine, NULL);
	BAD(3, 3, 0, &r, sizeof(r), &id, NULL, counting_combine, NULL);
#undef BAD
	EXPECT_EQ(r, 17);
	EXPECT_EQ(ld(&reduce_calls), 0);
}

/* ---- from outside, inside, and several threads at once ----------------- */

struct loop_where {
	mr_runtime_t *want;
	_Atomic long bad, n;
};

static void where_body(size_t lo, size_t hi, void *ctx)
{
	struct loop_where *w = ctx;
	if (mr_runtime_current() != w->want || mr_worker_index() < 0)
		atomic_fetch_add(&w->bad, 1);
	atomic_fetch_add(&w->n, (long)(hi - lo));
}

static void where_inside(void *arg)
{
	struct loop_where *w = arg;
	mr_parallel_for(0, 50000, 0, where_body, w);
}

TEST(for_runs_on_the_callers_runtime)
{
	struct loop_where w = { 0 };
	mr_runtime_t *rt = make_rt(3);

	ASSERT_NONNULL(rt);
	w.want = rt;
	ASSERT_EQ(mr_runtime_install(rt, where_inside, &w), 0);
	EXPECT_EQ(ld(&w.bad), 0);
	EXPECT_EQ(ld(&w.n), 50000);
	w.want = mr_runtime_default();
	ASSERT_EQ(mr_parallel_for(0, 50000, 0, where_body, &w), 0);
	EXPECT_EQ(ld(&w.bad), 0);
	EXPECT_EQ(ld(&w.n), 100000);
	EXPECT_EQ(mr_worker_index(), -1);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/*
 * A loop called over and over from inside a runtime must keep waking the
 * other workers: each round's leaves wait (bounded) until both workers of a
 * 2-worker runtime have run one. A worker whose join latch completed while
 * it searched once stayed counted as a searcher, and from then on no push
 * woke a parked worker: one CPU ran every loop.
 */
struct both {
	_Atomic int seen[2];
	_Atomic int stuck; /* rounds where one worker ran alone until the deadline */
	int rounds;
};

static void both_body(size_t lo, size_t hi, void *arg)
{
	struct both *b = arg;
	int me = mr_worker_index();
	(void)lo, (void)hi;

	if (me < 0 || me > 1 || atomic_load(&b->stuck))
		return;
	atomic_store(&b->seen[me], 1);
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	time_t deadline = ts.tv_sec + 20;
	while (!atomic_load(&b->seen[1 - me])) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		if (ts.tv_sec > deadline) {
			atomic_store(&b->stuck, 1);
			return;
		}
		sched_yield();
	}
	/* Worker 1 ends a little later, so that worker 0's join often finds
	 * its stolen half still running and searches while it completes. */
	if (me == 1) {
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		do
			clock_gettime(CLOCK_MONOTONIC, &t1);
		while ((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) < 20000);
	}
}

static void both_rounds(void *arg)
{
	struct both *b = arg;
	for (int r = 0; r < b->rounds && !atomic_load(&b->stuck); r++) {
		atomic_store(&b->seen[0], 0);
		atomic_store(&b->seen[1], 0);
		mr_parallel_for(0, 4096, 0, both_body, b);
		/* Let the other worker run out of search time and sleep. */
		usleep(300);
	}
}

TEST(for_keeps_waking_parked_workers)
{
	struct both b = { .rounds = 200 };
	mr_runtime_t *rt = make_rt(2);

	ASSERT_NONNULL(rt);
	ASSERT_EQ(mr_runtime_install(rt, both_rounds, &b), 0);
	int stuck = atomic_load(&b.stuck);
	EXPECT_EQ(stuck, 0);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

static void *loops_thread(void *arg)
{
	long *faults = arg;
	for (int i = 0; i < 5; i++) {
		*faults += cover_check((size_t)i * 1000, 100000 / mr_test_scale(), (size_t)i, NULL);
		uint64_t zero = 0, r = 0;
		mr_parallel_reduce(0, 100000, 0, &r, sizeof(r), &zero, sum_body, sum_combine, NULL);
		if (r != sum_seq(0, 100000, 0))
			(*faults)++;
	}
	return NULL;
}

TEST(loops_from_several_outside_threads)
{
	pthread_t th[4];
	long faults[4] = { 0 };

	for (int i = 0; i < 4; i++)
		ASSERT_EQ(pthread_create(&th[i], NULL, loops_thread, &faults[i]), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 4; i++)
		EXPECT_EQ(faults[i], 0);
}

TEST_HARNESS_MAIN
