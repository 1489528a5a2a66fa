/*
 * algo.c - the algorithms of <moirai/algo.h> against their sequential
 * definitions.
 *
 * Sort: random inputs of sizes 0, 1, 2, around each cut-off of
 * user/par/sort.c (insertion sort 16, median of nine 128, stable runs 24,
 * sequential 4096) and large; many duplicates, sorted, reversed, all
 * equal; elements of 4, 8, 16 bytes (the fast paths) and 3, 24, 100
 * (generic); the typed integer sorts; records by a uint64 key
 * (mr_parallel_sort_key_u64); the _r forms' context; stability of records
 * sorted by key; the typed and keyed radix sorts on keys that differ in
 * few bytes, in one, in all, skewed, at the types' extremes;
 * bad arguments; -ENOMEM with the array unchanged.
 *
 * Scan: inclusive and exclusive, in place and out of place, for sizes
 * around its cut-offs (blocks of 2048, sequential up to 4096) and large,
 * with two non-commutative operations: adjacent intervals (an operation
 * that only accepts its left operand ending where the right one starts)
 * and 2x2 matrix products against the sequential loop; on 1 and 2 workers.
 * The typed sums (mr_parallel_scan_sum_*) against the loop, exactly for
 * integers, bit for bit from run to run for doubles.
 *
 * Searches: find_first, find_any, any_of, all_of against a sequential scan
 * of random arrays (hit nowhere, first, last, anywhere, many hits), with
 * and without a grain; early exit counted in predicate calls: on one worker
 * find_first calls it exactly up to the hit, on two it skips most of the
 * range (logged, with the time against a sequential scan).
 *
 * Accumulators: a histogram (and min, max, count) built in a parallel_for
 * equals the sequential one, from outside and on 1 and 2 workers; slots
 * are cache-line separated, one per worker, found only from that
 * runtime's workers; reset, identity, bad arguments.
 */
#include <stdatomic.h>
#include <sys/resource.h>

#include <moirai/moirai.h>

#include "harness.h"
#include "util.h"

/* ---- sort ---------------------------------------------------------------- */

/* An element of `size` bytes whose key is its first 4 bytes (little end),
 * the rest a tag: equal keys with different tags tell stability apart. */
static uint32_t key_of(const void *p)
{
	uint32_t k = 0;
	memcpy(&k, p, 3); /* 3 bytes: also fits the 3-byte elements */
	return k;
}

static int cmp_key(const void *a, const void *b)
{
	uint32_t x = key_of(a), y = key_of(b);
	return (x > y) - (x < y);
}

/* The context of the _r forms: a tag that proves it is ours, and a count. */
struct rctx {
	uint64_t tag;
	_Atomic long calls;
};
#define RCTX_TAG 0x5a5a1234u

static int cmp_key_r(const void *a, const void *b, void *ctx)
{
	struct rctx *r = ctx;
	if (!r || r->tag != RCTX_TAG)
		abort();
	atomic_fetch_add_explicit(&r->calls, 1, memory_order_relaxed);
	return cmp_key(a, b);
}

enum shape { RANDOM, FEW_KEYS, SORTED, REVERSED, ALL_EQUAL, SHAPES };
static const char *const shape_name[] = { "random", "few keys", "sorted", "reversed", "equal" };

/* Fill n elements: key by shape in the first 3 bytes, then the index as a tag. */
static unsigned char *make_input(size_t n, size_t size, enum shape sh, uint64_t seed)
{
	unsigned char *a = malloc(n * size + 1);
	uint64_t r = seed | 1;

	if (!a)
		abort();
	for (size_t i = 0; i < n; i++) {
		unsigned char *e = a + i * size;
		uint32_t k;
		switch (sh) {
		case RANDOM: k = (uint32_t)rnd(&r) & 0xffffff; break;
		case FEW_KEYS: k = (uint32_t)(rnd(&r) % 7); break;
		case SORTED: k = (uint32_t)(i * 3) & 0xffffff; break;
		case REVERSED: k = (uint32_t)((n - i) * 3) & 0xffffff; break;
		default: k = 42; break;
		}
		memset(e, (int)(i * 31 + 7), size);
		memcpy(e, &k, 3);
		for (size_t b = 3; b < size && b < 3 + sizeof(size_t); b++)
			e[b] = (unsigned char)(i >> (8 * (b - 3)));
	}
	return a;
}

/*
 * The sorted array must be a permutation of the input in key order; with
 * `stable`, equal keys keep their input order. Checked against a
 * sequential stable sort of (key, index) pairs: the stable result is that
 * exactly; an unstable one has the same keys and the same multiset of
 * elements per run of equal keys.
 */
struct ki {
	uint32_t key;
	size_t idx;
};

static int cmp_ki(const void *a, const void *b)
{
	const struct ki *x = a, *y = b;
	if (x->key != y->key)
		return (x->key > y->key) - (x->key < y->key);
	return (x->idx > y->idx) - (x->idx < y->idx);
}

static int cmp_bytes(const void *a, const void *b, void *size)
{
	return memcmp(a, b, *(size_t *)size);
}

static bool check_sorted(const unsigned char *in, const unsigned char *out, size_t n, size_t size,
			 bool stable)
{
	struct ki *ref = malloc((n ? n : 1) * sizeof(*ref));
	bool ok = true;

	if (!ref)
		abort();
	for (size_t i = 0; i < n; i++)
		ref[i] = (struct ki){ key_of(in + i * size), i };
	qsort(ref, n, sizeof(*ref), cmp_ki); /* ties by index: the stable order */
	for (size_t i = 0; i < n && ok; i++) {
		if (key_of(out + i * size) != ref[i].key) {
			printf("# n %zu size %zu: key at %zu is %u, want %u\n", n, size, i,
			       key_of(out + i * size), ref[i].key);
			ok = false;
		} else if (stable && memcmp(out + i * size, in + ref[i].idx * size, size)) {
			printf("# n %zu size %zu: element at %zu is not input %zu (stability)\n", n,
			       size, i, ref[i].idx);
			ok = false;
		}
	}
	if (ok && !stable && n) {
		/* Same elements: compare both sides sorted bytewise. */
		unsigned char *x = malloc(n * size), *y = malloc(n * size);
		if (!x || !y)
			abort();
		memcpy(x, in, n * size);
		memcpy(y, out, n * size);
		qsort_r(x, n, size, cmp_bytes, &size);
		qsort_r(y, n, size, cmp_bytes, &size);
		if (memcmp(x, y, n * size)) {
			printf("# n %zu size %zu: elements lost or duplicated\n", n, size);
			ok = false;
		}
		free(x);
		free(y);
	}
	free(ref);
	return ok;
}

/* Sort one input each way (unstable, stable, and _r forms); count faults. */
static long sort_case(size_t n, size_t size, enum shape sh, uint64_t seed)
{
	unsigned char *in = make_input(n, size, sh, seed);
	unsigned char *a = malloc(n * size + 1);
	long faults = 0;

	if (!a)
		abort();
	for (int v = 0; v < 4; v++) {
		bool stable = v & 1, with_ctx = v & 2;
		int r;
		struct rctx rc = { RCTX_TAG, 0 };
		memcpy(a, in, n * size);
		if (with_ctx)
			r = stable ? mr_parallel_stable_sort_r(a, n, size, cmp_key_r, &rc)
				   : mr_parallel_sort_r(a, n, size, cmp_key_r, &rc);
		else
			r = stable ? mr_parallel_stable_sort(a, n, size, cmp_key)
				   : mr_parallel_sort(a, n, size, cmp_key);
		if (r != 0) {
			printf("# n %zu size %zu: returned %d\n", n, size, r);
			faults++;
		} else if (!check_sorted(in, a, n, size, stable)) {
			printf("# ... %s, %s%s\n", shape_name[sh], stable ? "stable" : "unstable",
			       with_ctx ? ", _r" : "");
			faults++;
		} else if (with_ctx && n > 1 && atomic_load(&rc.calls) == 0) {
			faults++;
		}
	}
	free(a);
	free(in);
	return faults;
}

static const size_t small_sizes[] = { 0, 1, 2, 3, 5, 15, 16, 17, 23, 24, 25, 31, 33, 49, 100,
				      127, 128, 129, 500, 4095, 4096, 4097, 8191, 8193, 20000 };

static long sort_sizes(size_t size)
{
	long faults = 0;

	for (size_t k = 0; k < sizeof(small_sizes) / sizeof(small_sizes[0]); k++)
		for (int sh = 0; sh < SHAPES; sh++)
			faults += sort_case(small_sizes[k], size, sh, 1000 + k * 7 + sh);
	return faults;
}

TEST(sort_fast_path_sizes)
{
	EXPECT_EQ(sort_sizes(4), 0);
	EXPECT_EQ(sort_sizes(8), 0);
	EXPECT_EQ(sort_sizes(16), 0);
}

TEST(sort_odd_sizes)
{
	EXPECT_EQ(sort_sizes(3), 0);
	EXPECT_EQ(sort_sizes(24), 0);
	EXPECT_EQ(sort_sizes(100), 0);
}

/* Inside a runtime, from a job (nested: the sort's joins under the caller's). */
struct in_rt {
	long faults;
};

static void sort_in_runtime(void *arg)
{
	struct in_rt *x = arg;
	x->faults += sort_case(50000, 8, RANDOM, 77);
	x->faults += sort_case(30000, 24, FEW_KEYS, 78);
}

TEST(sort_inside_a_runtime)
{
	mr_runtime_t *rt = make_rt(2);
	struct in_rt x = { 0 };

	ASSERT_NONNULL(rt);
	ASSERT_EQ(mr_runtime_install(rt, sort_in_runtime, &x), 0);
	EXPECT_EQ(x.faults, 0);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/*
 * The parallel partition of the top levels (ranges of 2 * 65536 elements
 * and more, shared by several workers): every shape, generic and typed,
 * on runtimes of 2, 3 (uneven shares) and 4 workers. Not scaled down: a
 * smaller array would not reach it.
 */
static void ppart_run(void *arg)
{
	struct in_rt *x = arg;
	size_t n = 140000;
	uint64_t *a = malloc(n * 8), *b = malloc(n * 8), r = 4242;

	for (int sh = 0; sh < SHAPES; sh++)
		x->faults += sort_case(n, 8, sh, 300 + sh);
	x->faults += sort_case(2 * n, 12, FEW_KEYS, 310);
	if (!a || !b)
		abort();
	/* Typed (block partition, equal keys set aside after a pivot equal
	 * to its predecessor): random, 3 keys, reversed, sorted, all equal,
	 * a sawtooth; large, and small enough to sort sequentially. */
	for (int k = 0; k < 12; k++) {
		size_t m = k < 6 ? n : 3000;
		for (size_t i = 0; i < m; i++)
			a[i] = b[i] = k % 6 == 0   ? rnd(&r)
				      : k % 6 == 1 ? rnd(&r) % 3
				      : k % 6 == 2 ? m - i
				      : k % 6 == 3 ? i
				      : k % 6 == 4 ? 7
						   : i % 1000;
		qsort(b, m, 8, cmp_u64);
		if (mr_parallel_sort_u64(a, m) != 0 || memcmp(a, b, m * 8)) {
			printf("# typed shape %d, n %zu: differs from qsort\n", k % 6, m);
			x->faults++;
		}
	}
	free(a);
	free(b);
}

TEST(sort_parallel_partition)
{
	for (unsigned w = 2; w <= 4; w++) {
		mr_runtime_t *rt = make_rt(w);
		struct in_rt x = { 0 };
		ASSERT_NONNULL(rt);
		ASSERT_EQ(mr_runtime_install(rt, ppart_run, &x), 0);
		EXPECT_EQ(x.faults, 0);
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	}
}

/* 10^6 random 64-bit keys against qsort, both forms; 10^6 records stably. */
TEST(sort_large)
{
	size_t n = (size_t)scaled(1000000);
	uint64_t *a = malloc(n * 8), *b = malloc(n * 8), r = 99;

	ASSERT_NONNULL(a);
	ASSERT_NONNULL(b);
	for (size_t i = 0; i < n; i++)
		a[i] = b[i] = rnd(&r);
	qsort(b, n, 8, cmp_u64);
	ASSERT_EQ(mr_parallel_sort(a, n, 8, cmp_u64), 0);
	EXPECT_EQ(memcmp(a, b, n * 8), 0);
	for (size_t i = 0; i < n; i++)
		a[i] = b[(i * 7919) % n];
	ASSERT_EQ(mr_parallel_stable_sort(a, n, 8, cmp_u64), 0);
	EXPECT_EQ(memcmp(a, b, n * 8), 0);
	free(a);
	free(b);
	EXPECT_EQ(sort_case(n / 4, 16, FEW_KEYS, 5), 0);
	EXPECT_EQ(sort_case(n / 10, 100, RANDOM, 6), 0);
}

/* A comparator that is no order at all: some permutation, nothing outside
 * the array touched (ASan's build watches the bounds). */
static _Atomic uint64_t liar_state = 12345;
static int cmp_liar(const void *a, const void *b)
{
	uint64_t x = atomic_fetch_add_explicit(&liar_state, 0x9e3779b97f4a7c15ull,
					       memory_order_relaxed);
	(void)a;
	(void)b;
	return (int)((x >> 29) % 3) - 1;
}

TEST(sort_inconsistent_comparator)
{
	static const size_t sizes[] = { 4, 8, 16, 3, 24 };
	size_t n = 20000;

	for (size_t k = 0; k < 5; k++) {
		size_t size = sizes[k];
		unsigned char *in = make_input(n, size, RANDOM, 31 + k);
		unsigned char *a = malloc(n * size);
		ASSERT_NONNULL(a);
		for (int stable = 0; stable < 2; stable++) {
			memcpy(a, in, n * size);
			ASSERT_EQ((stable ? mr_parallel_stable_sort : mr_parallel_sort)(a, n, size,
											cmp_liar),
				  0);
			qsort_r(a, n, size, cmp_bytes, &size);
			unsigned char *b = malloc(n * size);
			ASSERT_NONNULL(b);
			memcpy(b, in, n * size);
			qsort_r(b, n, size, cmp_bytes, &size);
			EXPECT_EQ(memcmp(a, b, n * size), 0);
			free(b);
		}
		free(a);
		free(in);
	}
}

/*
 * The keyed sort: make_input's elements with their 3-byte key also
 * written as a uint64_t at off (over the end of the tag; off >= 6 keeps 3
 * tag bytes, enough to tell the elements apart), sorted by that key,
 * unstably and stably, checked as the comparator sorts are. Sizes 16
 * (the two-word instance) and others (generic), the key aligned or not.
 */
static long keyed_case(size_t n, size_t size, size_t off, enum shape sh, uint64_t seed)
{
	unsigned char *in = make_input(n, size, sh, seed);
	unsigned char *a = malloc(n * size + 1);
	long faults = 0;

	if (!a)
		abort();
	for (size_t i = 0; i < n; i++) {
		uint64_t k = key_of(in + i * size);
		memcpy(in + i * size + off, &k, 8);
	}
	for (int stable = 0; stable < 2; stable++) {
		memcpy(a, in, n * size);
		int r = mr_parallel_sort_key_u64(a, n, size, off, stable ? MR_SORT_STABLE : 0, NULL);
		if (r != 0 || !check_sorted(in, a, n, size, stable)) {
			printf("# keyed n %zu size %zu off %zu %s %s: returned %d\n", n, size, off,
			       shape_name[sh], stable ? "stable" : "unstable", r);
			faults++;
		}
	}
	free(a);
	free(in);
	return faults;
}

static void keyed_in_runtime(void *arg)
{
	struct in_rt *x = arg;

	/* The parallel partition and parallel merges (2 * 65536 and more). */
	for (int sh = 0; sh < SHAPES; sh++)
		x->faults += keyed_case(140000, 16, 8, sh, 400 + sh);
	x->faults += keyed_case(140000, 20, 12, FEW_KEYS, 410);
}

TEST(sort_keyed_records)
{
	static const size_t lay[][2] = { { 16, 8 }, { 20, 12 }, { 24, 16 }, { 16, 6 } };
	long faults = 0;

	for (size_t l = 0; l < sizeof(lay) / sizeof(lay[0]); l++)
		for (size_t k = 0; k < sizeof(small_sizes) / sizeof(small_sizes[0]); k++)
			for (int sh = 0; sh < SHAPES; sh++)
				faults += keyed_case(small_sizes[k], lay[l][0], lay[l][1], sh,
						     2000 + k * 7 + sh);
	EXPECT_EQ(faults, 0);
	for (unsigned w = 1; w <= 2; w++) {
		mr_runtime_t *rt = make_rt(w);
		struct in_rt x = { 0 };
		ASSERT_NONNULL(rt);
		ASSERT_EQ(mr_runtime_install(rt, keyed_in_runtime, &x), 0);
		EXPECT_EQ(x.faults, 0);
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	}
	/* Bad layouts (the array untouched), and the key at either end. */
	uint64_t v[4] = { 4, 3, 2, 1 };
	EXPECT_EQ(mr_parallel_sort_key_u64(v, 2, 16, 9, 0, NULL), -EINVAL);
	EXPECT_EQ(mr_parallel_sort_key_u64(v, 4, 4, 0, 0, NULL), -EINVAL);
	EXPECT_EQ(mr_parallel_sort_key_u64(v, 2, 16, 0, 4, NULL), -EINVAL);
	EXPECT_EQ(v[0], 4u);
	EXPECT_EQ(mr_parallel_sort_key_u64(v, 2, 16, 8, 0, NULL), 0); /* keys 3, 1 */
	EXPECT_EQ(v[1], 1u);
	EXPECT_EQ(v[3], 3u);
	EXPECT_EQ(mr_parallel_sort_key_u64(v, 4, 8, 0, MR_SORT_STABLE, NULL), 0);
	EXPECT_EQ(v[0], 1u);
	EXPECT_EQ(v[3], 4u);
}

/* The typed sorts against qsort, signed keys negative too. */
static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

static int cmp_i32(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	return (x > y) - (x < y);
}

TEST(sort_typed_keys)
{
	static const size_t extra[] = { 100000, 500000 };
	size_t nsizes = sizeof(small_sizes) / sizeof(small_sizes[0]);
	uint64_t r = 4242;

	for (size_t k = 0; k < nsizes + 2; k++) {
		size_t n = k < nsizes ? small_sizes[k] : (size_t)scaled((long)extra[k - nsizes]);
		uint64_t *a = malloc((n + 1) * 8), *b = malloc((n + 1) * 8);
		ASSERT_NONNULL(a);
		ASSERT_NONNULL(b);
		for (int t = 0; t < 4; t++) {
			size_t sz = t < 2 ? 8 : 4;
			for (size_t i = 0; i < n; i++) {
				uint64_t v = rnd(&r);
				if (k % 3 == 1)
					v %= 5; /* many duplicates */
				if (sz == 8)
					a[i] = v;
				else
					((uint32_t *)a)[i] = (uint32_t)v;
			}
			memcpy(b, a, n * sz);
			int ret;
			switch (t) {
			case 0:
				ret = mr_parallel_sort_u64(a, n);
				qsort(b, n, 8, cmp_u64);
				break;
			case 1:
				ret = mr_parallel_sort_i64((int64_t *)a, n);
				qsort(b, n, 8, cmp_i64);
				break;
			case 2:
				ret = mr_parallel_sort_u32((uint32_t *)a, n);
				qsort(b, n, 4, cmp_u32);
				break;
			default:
				ret = mr_parallel_sort_i32((int32_t *)a, n);
				qsort(b, n, 4, cmp_i32);
				break;
			}
			EXPECT_EQ(ret, 0);
			if (memcmp(a, b, n * sz)) {
				printf("# typed sort %d, n %zu: differs from qsort\n", t, n);
				EXPECT_TRUE(false);
			}
		}
		free(a);
		free(b);
	}
	EXPECT_EQ(mr_parallel_sort_u64(NULL, 3), -EINVAL);
	EXPECT_EQ(mr_parallel_sort_i32(NULL, 3), -EINVAL);
	EXPECT_EQ(mr_parallel_sort_i64(NULL, 0), 0);
	EXPECT_EQ(mr_parallel_sort_u32((uint32_t *)&r, SIZE_MAX / 2), -EINVAL);
}

/*
 * The typed and keyed sorts are radix sorts (user/par/radix_impl.h): keys
 * whose bytes differ only in some places, so that levels are skipped,
 * buckets are one, a few or all 256, and recursion goes down all 8 bytes;
 * sizes around its cut-offs (introsort at 64, one count table below 2048,
 * a shared distribution from 131072). Against qsort, u64, i64 (negative
 * and positive), u32, i32 and records of 8, 16 and 24 bytes by a u64 key,
 * unstably and stably (the stable radix sort: merge sort up to 64).
 */
enum kshape { K_RANDOM, K_LOW3, K_TOP1, K_BYTES01, K_SKEW, K_FEW_SPREAD, K_DESC, K_EXTREMES, KSHAPES };

static uint64_t kshape_key(enum kshape ks, size_t i, size_t n, uint64_t *r)
{
	uint64_t x = rnd(r);

	switch (ks) {
	case K_RANDOM:
		return x;
	case K_LOW3: /* five shared top bytes */
		return 0x1234567890000000ull | (x & 0xffffff);
	case K_TOP1: /* only the top byte differs */
		return (x << 56) | 0x00abcdef01234567ull;
	case K_BYTES01: /* every byte 0 or 255: two buckets per level, 8 levels */
		return (x & 0x0101010101010101ull) * 255;
	case K_SKEW: /* 99% one key */
		return x % 100 ? 0x8000000000000000ull : x;
	case K_FEW_SPREAD:
		return (x % 7) << 40 | (x % 3);
	case K_DESC:
		return (uint64_t)(n - i) * 0x9e3779b1ull;
	default: { /* the extremes of each type, and around the sign */
		static const uint64_t ext[] = { 0, 1, ~0ull, 0x7fffffffffffffffull,
						0x8000000000000000ull, 0x7fffffffull, 0x80000000ull,
						0xffffffffull, 0xffffffff80000000ull };
		return ext[x % (sizeof(ext) / sizeof(ext[0]))];
	}
	}
}

/* The u64 at byte off of two records, compared. */
static int cmp_u64_at(const void *a, const void *b, size_t off)
{
	uint64_t x, y;
	memcpy(&x, (const char *)a + off, 8);
	memcpy(&y, (const char *)b + off, 8);
	return (x > y) - (x < y);
}

/* radix_case's records: 16 bytes, key then tag; 24: tag, tag, key. */
static int cmp_rec16(const void *a, const void *b)
{
	return cmp_u64_at(a, b, 0);
}

static int cmp_rec24(const void *a, const void *b)
{
	return cmp_u64_at(a, b, 16);
}

/* Stable order of those records: key, then tag (the input's order). */
static int cmp_rec16_tag(const void *a, const void *b)
{
	int c = cmp_u64_at(a, b, 0);
	return c ? c : cmp_u64_at(a, b, 8);
}

static int cmp_rec24_tag(const void *a, const void *b)
{
	int c = cmp_u64_at(a, b, 16);
	return c ? c : cmp_u64_at(a, b, 0);
}

/*
 * One size and shape through the typed and keyed entry points, the keyed
 * ones unstable and stable (the stable ones must equal the input sorted
 * by key, then by its index).
 */
static long radix_case(size_t n, enum kshape ks, uint64_t seed)
{
	unsigned char *a = malloc(n * 24 + 1), *b = malloc(n * 24 + 1);
	uint64_t r = seed;
	long faults = 0;

	if (!a || !b)
		abort();
	for (int t = 0; t < 10; t++) {
		static const size_t esz[] = { 8, 8, 4, 4, 16, 24, 16, 24, 8, 8 };
		size_t sz = esz[t];
		for (size_t i = 0; i < n; i++) {
			uint64_t k = kshape_key(ks, i, n, &r);
			unsigned char *e = a + i * sz;
			if (sz == 4) {
				/* the 32-bit types: the shape in their width */
				uint32_t k32 = (uint32_t)(k >> 32) ^ (uint32_t)k;
				if (ks == K_LOW3 || ks == K_FEW_SPREAD || ks == K_SKEW)
					k32 = (uint32_t)k;
				memcpy(e, &k32, 4);
			} else if (sz == 8) {
				memcpy(e, &k, 8);
			} else {
				/* records: the key, and the index as a payload */
				uint64_t tag = i * 0x100000001ull;
				memcpy(e + (sz == 16 ? 0 : 16), &k, 8);
				memcpy(e + (sz == 16 ? 8 : 0), &tag, 8);
				if (sz == 24)
					memcpy(e + 8, &tag, 8);
			}
		}
		memcpy(b, a, n * sz);
		int ret;
		switch (t) {
		case 0:
			ret = mr_parallel_sort_u64((uint64_t *)a, n);
			qsort(b, n, 8, cmp_u64);
			break;
		case 1:
			ret = mr_parallel_sort_i64((int64_t *)a, n);
			qsort(b, n, 8, cmp_i64);
			break;
		case 2:
			ret = mr_parallel_sort_u32((uint32_t *)a, n);
			qsort(b, n, 4, cmp_u32);
			break;
		case 3:
			ret = mr_parallel_sort_i32((int32_t *)a, n);
			qsort(b, n, 4, cmp_i32);
			break;
		case 4:
			ret = mr_parallel_sort_key_u64(a, n, 16, 0, 0, NULL);
			qsort(b, n, 16, cmp_rec16);
			break;
		case 5:
			ret = mr_parallel_sort_key_u64(a, n, 24, 16, 0, NULL);
			qsort(b, n, 24, cmp_rec24);
			break;
		case 6:
			ret = mr_parallel_sort_key_u64(a, n, 16, 0, MR_SORT_STABLE, NULL);
			qsort(b, n, 16, cmp_rec16_tag);
			break;
		case 7:
			ret = mr_parallel_sort_key_u64(a, n, 24, 16, MR_SORT_STABLE, NULL);
			qsort(b, n, 24, cmp_rec24_tag);
			break;
		default: /* 8-byte records: bare keys */
			ret = mr_parallel_sort_key_u64(a, n, 8, 0, t == 9 ? MR_SORT_STABLE : 0, NULL);
			qsort(b, n, 8, cmp_u64);
			break;
		}
		bool ok = ret == 0;
		if (ok && (t < 4 || t >= 6)) {
			ok = !memcmp(a, b, n * sz);
		} else if (ok) {
			/* keys in order, and the same records (by their tags) */
			uint64_t *ta = malloc((n + 1) * 8), *tb = malloc((n + 1) * 8);
			if (!ta || !tb)
				abort();
			for (size_t i = 0; i < n && ok; i++) {
				ok = (sz == 16 ? cmp_rec16 : cmp_rec24)(a + i * sz, b + i * sz) == 0;
				memcpy(&ta[i], a + i * sz + (sz == 16 ? 8 : 0), 8);
				memcpy(&tb[i], b + i * sz + (sz == 16 ? 8 : 0), 8);
			}
			if (ok) {
				qsort(ta, n, 8, cmp_u64);
				qsort(tb, n, 8, cmp_u64);
				ok = !memcmp(ta, tb, n * 8);
			}
			free(ta);
			free(tb);
		}
		if (!ok) {
			printf("# radix: entry %d, n %zu, shape %d: returned %d, differs from qsort\n",
			       t, n, (int)ks, ret);
			faults++;
		}
	}
	free(a);
	free(b);
	return faults;
}

static const size_t radix_sizes[] = { 0, 1, 2, 63, 64, 65, 66, 200, 2047, 2048, 2049, 4097, 20000 };

struct radix_rt {
	long faults;
	bool few; /* the large size only, three shapes */
};

static void radix_in_runtime(void *arg)
{
	struct radix_rt *x = arg;
	size_t big[] = { (size_t)scaled(300000), 131073 };

	for (size_t k = 0; k < (x->few ? 1 : 2); k++)
		for (int ks = 0; ks < KSHAPES; ks++)
			if (!x->few || ks == K_RANDOM || ks == K_BYTES01 || ks == K_SKEW)
				x->faults += radix_case(big[k], ks, 900 + k * 16 + ks);
}

TEST(sort_typed_radix_shapes)
{
	long faults = 0;

	for (size_t k = 0; k < sizeof(radix_sizes) / sizeof(radix_sizes[0]); k++)
		for (int ks = 0; ks < KSHAPES; ks++)
			faults += radix_case(radix_sizes[k], ks, 500 + k * 16 + ks);
	EXPECT_EQ(faults, 0);
	/* The shared count, distribution and scatter: 2 workers, and 5 (an
	 * odd split, and stripes of uneven length). */
	for (unsigned w = 2; w <= 5; w += 3) {
		mr_runtime_t *rt = make_rt(w);
		struct radix_rt x = { 0, w > 2 };
		ASSERT_NONNULL(rt);
		ASSERT_EQ(mr_runtime_install(rt, radix_in_runtime, &x), 0);
		EXPECT_EQ(x.faults, 0);
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	}
}

TEST(sort_bad_arguments)
{
	uint64_t a[4] = { 4, 3, 2, 1 };
	int (*const sorts[])(void *, size_t, size_t, mr_cmp_fn) = { mr_parallel_sort,
								      mr_parallel_stable_sort };

	for (int k = 0; k < 2; k++) {
		EXPECT_EQ(sorts[k](a, 4, 8, NULL), -EINVAL);
		EXPECT_EQ(sorts[k](a, 4, 0, cmp_u64), -EINVAL);
		EXPECT_EQ(sorts[k](NULL, 4, 8, cmp_u64), -EINVAL);
		EXPECT_EQ(sorts[k](a, SIZE_MAX / 4, 8, cmp_u64), -EINVAL);
		EXPECT_EQ(sorts[k](NULL, 0, 8, cmp_u64), 0);
		EXPECT_EQ(a[0], 4);
	}
	EXPECT_EQ(mr_parallel_sort_r(a, 4, 8, NULL, NULL), -EINVAL);
	EXPECT_EQ(mr_parallel_stable_sort_r(a, 4, 0, cmp_key_r, NULL), -EINVAL);
	EXPECT_EQ(a[0], 4);
}

/* A buffer that cannot exist: -ENOMEM before the array is looked at (the
 * pointer is to 4 elements; any access past them would fault or be caught). */
TEST(stable_sort_enomem_huge)
{
	uint64_t a[4] = { 4, 3, 2, 1 };

	EXPECT_EQ(mr_parallel_stable_sort(a, SIZE_MAX / 8 / 2 + 1, 8, cmp_u64), -ENOMEM);
	EXPECT_EQ(mr_parallel_stable_sort(a, SIZE_MAX / 100, 100, cmp_u64), -ENOMEM);
	EXPECT_EQ(a[0], 4);
	EXPECT_EQ(a[3], 1);
}

/*
 * A real array whose buffer does not fit under RLIMIT_AS: -ENOMEM, array
 * unchanged. The sanitizers' shadow memory cannot run under the limit.
 */
static void enomem_child(void *arg)
{
	size_t n = (size_t)24 << 20; /* 192 MiB of uint64_t; the buffer would be as much */
	uint64_t *a, r = 5;
	struct rlimit rl;

	(void)arg;
	a = malloc(n * 8);
	if (!a)
		_exit(10);
	for (size_t i = 0; i < n; i++)
		a[i] = rnd(&r);
	a[0] = 77;
	/* Leave ~128 MiB of headroom: the workers' stacks fit, the buffer does not. */
	if (getrlimit(RLIMIT_AS, &rl) != 0)
		_exit(11);
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long pages = 0;
	if (!f || fscanf(f, "%lu", &pages) != 1)
		_exit(12);
	fclose(f);
	rl.rlim_cur = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + ((rlim_t)128 << 20);
	if (setrlimit(RLIMIT_AS, &rl) != 0)
		_exit(13);
	int ret = mr_parallel_stable_sort(a, n, 8, cmp_u64);
	if (ret != -ENOMEM) {
		fprintf(stderr, "stable sort returned %d\n", ret);
		_exit(14);
	}
	r = 5;
	rnd(&r);
	for (size_t i = 1; i < n; i++)
		if (rnd(&r), a[i] != r)
			_exit(15);
	if (a[0] != 77)
		_exit(15);
	_exit(0);
}

TEST(stable_sort_enomem_leaves_array)
{
	char buf[1024];

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	(void)enomem_child;
	(void)buf;
	SKIP("needs RLIMIT_AS, which the sanitizers' shadow memory cannot run under");
#else
	int st = mr_test_run_child(enomem_child, NULL, buf, sizeof(buf));
	if (buf[0])
		printf("# child: %s", buf);
	ASSERT_TRUE(WIFEXITED(st));
	EXPECT_EQ(WEXITSTATUS(st), 0);
#endif
}

/* ---- scan ---------------------------------------------------------------- */

/* [lo, hi) and how many elements were folded in; EMPTY is the identity. */
struct ival {
	uint64_t lo, hi, count;
};
#define EMPTY UINT64_MAX

/* The scan's context: bad joins and calls, per case. */
struct ictx {
	uint64_t tag;
	_Atomic long bad, calls;
};

static void ival_op(void *acc, const void *x, void *ctx)
{
	struct ival *a = acc;
	const struct ival *b = x;
	struct ictx *c = ctx;

	if (!c || c->tag != RCTX_TAG)
		abort();
	atomic_fetch_add_explicit(&c->calls, 1, memory_order_relaxed);
	if (b->lo == EMPTY)
		return;
	if (a->lo == EMPTY) {
		*a = *b;
		return;
	}
	if (a->hi != b->lo)
		atomic_fetch_add_explicit(&c->bad, 1, memory_order_relaxed);
	a->hi = b->hi;
	a->count += b->count;
}

/* Scan intervals [i, i+1) every way; count wrong outputs. */
static long scan_ival_case(size_t n)
{
	struct ival *in = malloc((n + 1) * sizeof(*in)), *out = malloc((n + 1) * sizeof(*out));
	const struct ival id = { EMPTY, EMPTY, 0 };
	long faults = 0;

	if (!in || !out)
		abort();
	for (int v = 0; v < 4; v++) {
		bool excl = v & 1, inplace = v & 2;
		for (size_t i = 0; i < n; i++)
			in[i] = (struct ival){ i, i + 1, 1 };
		memset(out, 0xa5, (n + 1) * sizeof(*out));
		out[n] = (struct ival){ 7, 7, 7 }; /* past the end: must stay */
		struct ictx c = { RCTX_TAG, 0, 0 };
		struct ival *dst = inplace ? in : out;
		int r = mr_parallel_scan(in, dst, n, sizeof(*in), &id, ival_op, &c,
					 excl ? MR_SCAN_EXCLUSIVE : MR_SCAN_INCLUSIVE);
		if (r != 0) {
			printf("# scan n %zu: %d\n", n, r);
			faults++;
			continue;
		}
		for (size_t i = 0; i < n; i++) {
			struct ival want = { 0, i + 1, i + 1 };
			if (excl)
				want = i ? (struct ival){ 0, i, i } : id;
			if (memcmp(&dst[i], &want, sizeof(want))) {
				printf("# scan n %zu %s%s: out[%zu] = [%" PRIu64 ", %" PRIu64
				       ") x%" PRIu64 "\n",
				       n, excl ? "exclusive" : "inclusive", inplace ? " in place" : "",
				       i, dst[i].lo, dst[i].hi, dst[i].count);
				faults++;
				break;
			}
		}
		if (atomic_load(&c.bad) || out[n].lo != 7 || (inplace && n && out[0].lo != 0xa5a5a5a5a5a5a5a5ull)) {
			printf("# scan n %zu: %ld bad joins, or a write out of bounds\n", n,
			       atomic_load(&c.bad));
			faults++;
		}
	}
	free(in);
	free(out);
	return faults;
}

static const size_t scan_sizes[] = { 0, 1, 2, 3, 100, 2047, 2048, 2049, 4095, 4096, 4097,
				     6143, 8192, 8193, 16383, 16385, 40000, 123457 };

static void scan_sizes_run(void *arg)
{
	long *faults = arg;

	for (size_t k = 0; k < sizeof(scan_sizes) / sizeof(scan_sizes[0]); k++)
		*faults += scan_ival_case(scan_sizes[k]);
	*faults += scan_ival_case((size_t)scaled(1000000));
}

TEST(scan_intervals_from_outside)
{
	long faults = 0;
	scan_sizes_run(&faults);
	EXPECT_EQ(faults, 0);
}

TEST(scan_intervals_on_1_and_2_workers)
{
	for (unsigned w = 1; w <= 2; w++) {
		mr_runtime_t *rt = make_rt(w);
		long faults = 0;
		ASSERT_NONNULL(rt);
		ASSERT_EQ(mr_runtime_install(rt, scan_sizes_run, &faults), 0);
		EXPECT_EQ(faults, 0);
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	}
}

/* One worker runs the sequential loop: n operations, not 2n. */
struct one_worker {
	int r;
	long calls;
};

static void scan_one_worker(void *arg)
{
	struct one_worker *x = arg;
	size_t n = 100000;
	struct ival *a = malloc(n * sizeof(*a));
	const struct ival id = { EMPTY, EMPTY, 0 };

	if (!a)
		abort();
	for (size_t i = 0; i < n; i++)
		a[i] = (struct ival){ i, i + 1, 1 };
	struct ictx c = { RCTX_TAG, 0, 0 };
	x->r = mr_parallel_scan(a, a, n, sizeof(*a), &id, ival_op, &c, 0);
	x->calls = atomic_load(&c.calls);
	free(a);
}

TEST(scan_one_worker_is_sequential)
{
	mr_runtime_t *rt = make_rt(1);
	struct one_worker x = { -1, 0 };

	ASSERT_NONNULL(rt);
	ASSERT_EQ(mr_runtime_install(rt, scan_one_worker, &x), 0);
	EXPECT_EQ(x.r, 0);
	EXPECT_EQ(x.calls, 100000);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* 2x2 matrices mod 2^32: associative, not commutative. */
struct m2 {
	uint32_t a, b, c, d;
};

static void m2_mul(void *acc, const void *x, void *ctx)
{
	struct m2 *p = acc;
	const struct m2 *q = x;
	struct m2 r = { p->a * q->a + p->b * q->c, p->a * q->b + p->b * q->d,
			p->c * q->a + p->d * q->c, p->c * q->b + p->d * q->d };
	(void)ctx;
	*p = r;
}

TEST(scan_matrix_products)
{
	size_t n = (size_t)scaled(300000);
	struct m2 *in = malloc(n * sizeof(*in)), *out = malloc(n * sizeof(*out));
	struct m2 *ref = malloc(n * sizeof(*ref)), id = { 1, 0, 0, 1 };
	uint64_t r = 3;

	ASSERT_NONNULL(in);
	ASSERT_NONNULL(out);
	ASSERT_NONNULL(ref);
	for (size_t i = 0; i < n; i++)
		in[i] = (struct m2){ (uint32_t)rnd(&r), (uint32_t)rnd(&r), (uint32_t)rnd(&r),
				     (uint32_t)rnd(&r) };
	for (int excl = 0; excl < 2; excl++) {
		struct m2 acc = id;
		for (size_t i = 0; i < n; i++) {
			if (excl)
				ref[i] = acc;
			m2_mul(&acc, &in[i], NULL);
			if (!excl)
				ref[i] = acc;
		}
		ASSERT_EQ(mr_parallel_scan(in, out, n, sizeof(*in), &id, m2_mul, NULL,
					   excl ? MR_SCAN_EXCLUSIVE : MR_SCAN_INCLUSIVE),
			  0);
		EXPECT_EQ(memcmp(out, ref, n * sizeof(*ref)), 0);
		memcpy(out, in, n * sizeof(*in));
		ASSERT_EQ(mr_parallel_scan(out, out, n, sizeof(*in), &id, m2_mul, NULL,
					   excl ? MR_SCAN_EXCLUSIVE : MR_SCAN_INCLUSIVE),
			  0);
		EXPECT_EQ(memcmp(out, ref, n * sizeof(*ref)), 0);
	}
	free(in);
	free(out);
	free(ref);
}

static void add_u64(void *acc, const void *x, void *ctx)
{
	*(uint64_t *)acc += *(const uint64_t *)x;
	(void)ctx;
}

TEST(scan_bad_arguments)
{
	uint64_t a[16] = { 1 }, id = 0;

	EXPECT_EQ(mr_parallel_scan(a, a, 4, 8, &id, NULL, NULL, 0), -EINVAL);
	EXPECT_EQ(mr_parallel_scan(a, a, 4, 8, NULL, m2_mul, NULL, 0), -EINVAL);
	EXPECT_EQ(mr_parallel_scan(a, a, 4, 0, &id, m2_mul, NULL, 0), -EINVAL);
	EXPECT_EQ(mr_parallel_scan(a, a, 4, MR_REDUCE_MAX_ELEM + 1, &id, m2_mul, NULL, 0),
		  -EINVAL);
	EXPECT_EQ(mr_parallel_scan(NULL, a, 4, 8, &id, m2_mul, NULL, 0), -EINVAL);
	EXPECT_EQ(mr_parallel_scan(a, NULL, 4, 8, &id, m2_mul, NULL, 0), -EINVAL);
	EXPECT_EQ(mr_parallel_scan(a, a + 1, 4, 8, &id, m2_mul, NULL, 0), -EINVAL);
	EXPECT_EQ(mr_parallel_scan(a + 3, a, 4, 8, &id, m2_mul, NULL, 0), -EINVAL);
	EXPECT_EQ(mr_parallel_scan(a, a, 4, 8, &id, m2_mul, NULL, 2), -EINVAL);
	EXPECT_EQ(mr_parallel_scan(a, a, SIZE_MAX / 4, 8, &id, m2_mul, NULL, 0), -EINVAL);
	EXPECT_EQ(mr_parallel_scan(NULL, NULL, 0, 8, &id, m2_mul, NULL, 0), 0);
	EXPECT_EQ(a[0], 1);
	/* Adjacent but apart is fine. */
	a[1] = 2;
	a[2] = 3;
	a[3] = 4;
	EXPECT_EQ(mr_parallel_scan(a, a + 4, 4, 8, &id, add_u64, NULL, MR_SCAN_EXCLUSIVE), 0);
	EXPECT_EQ(a[4], 0);
	EXPECT_EQ(a[7], 6);
}

/* ---- typed prefix sums ------------------------------------------------- */

/*
 * mr_parallel_scan_sum_*: sizes around the block (65536) and the
 * sequential cut-off (262144); integers exactly equal to the loop's (with
 * wrap-around); doubles that are small integers exactly, random doubles
 * within rounding of the loop and bit for bit the same from run to run.
 */
static const size_t tsizes[] = { 0, 1, 2, 65535, 65536, 65537, 262143, 262144, 262145,
				 5 * 65536 + 7, 1000003 };

static void typed_scan_run(void *arg)
{
	long *bad = arg;
	uint64_t seed = 99;
	size_t nmax = 1000003;
	uint64_t *u = malloc(nmax * 8), *uo = malloc(nmax * 8), *ur = malloc(nmax * 8);
	double *d = malloc(nmax * 8), *dout = malloc(nmax * 8), *dr = malloc(nmax * 8);

	if (!u || !uo || !ur || !d || !dout || !dr)
		abort();
	for (size_t si = 0; si < sizeof(tsizes) / sizeof(tsizes[0]); si++) {
		size_t n = tsizes[si];
		for (unsigned flags = 0; flags < 2; flags++) {
			for (int inplace = 0; inplace < 2; inplace++) {
				for (size_t i = 0; i < n; i++)
					u[i] = rnd(&seed); /* sums wrap */
				uint64_t acc = 0;
				for (size_t i = 0; i < n; i++) {
					uint64_t x = u[i];
					ur[i] = flags ? acc : acc + x;
					acc += x;
				}
				uint64_t *o = inplace ? u : uo;
				if (mr_parallel_scan_sum_u64(u, o, n, flags) != 0 ||
				    (n && memcmp(o, ur, n * 8)))
					(*bad)++;
				/* i64, the same bits */
				for (size_t i = 0; i < n; i++)
					u[i] = ur[i] ^ 0x8000000000000001ull;
				acc = 0;
				for (size_t i = 0; i < n; i++) {
					uint64_t x = u[i];
					ur[i] = flags ? acc : acc + x;
					acc += x;
				}
				if (mr_parallel_scan_sum_i64((int64_t *)u, (int64_t *)o, n, flags) != 0 ||
				    (n && memcmp(o, ur, n * 8)))
					(*bad)++;
				/* doubles: small integers are exact in any order */
				for (size_t i = 0; i < n; i++)
					d[i] = (double)(rnd(&seed) % 100) - 50;
				double dacc = 0;
				for (size_t i = 0; i < n; i++) {
					double x = d[i];
					dr[i] = flags ? dacc : dacc + x;
					dacc += x;
				}
				double *od = inplace ? d : dout;
				if (mr_parallel_scan_sum_double(d, od, n, flags) != 0 ||
				    (n && memcmp(od, dr, n * 8)))
					(*bad)++;
			}
		}
		/* Random doubles: close to the loop, and the same twice. */
		for (size_t i = 0; i < n; i++)
			d[i] = (double)(rnd(&seed) >> 11) / 9007199254740992.0;
		double dacc = 0;
		for (size_t i = 0; i < n; i++)
			dacc += d[i];
		if (mr_parallel_scan_sum_double(d, dout, n, 0) != 0 ||
		    mr_parallel_scan_sum_double(d, dr, n, 0) != 0 || (n && memcmp(dout, dr, n * 8)))
			(*bad)++;
		if (n && (dout[n - 1] - dacc > 1e-9 * dacc || dacc - dout[n - 1] > 1e-9 * dacc))
			(*bad)++;
	}
	free(u);
	free(uo);
	free(ur);
	free(d);
	free(dout);
	free(dr);
}

TEST(scan_sum_typed)
{
	long bad = 0;
	typed_scan_run(&bad);
	EXPECT_EQ(bad, 0);
	for (unsigned w = 1; w <= 2; w++) {
		mr_runtime_t *rt = make_rt(w);
		ASSERT_NONNULL(rt);
		ASSERT_EQ(mr_runtime_install(rt, typed_scan_run, &bad), 0);
		EXPECT_EQ(bad, 0);
		struct actor a;
		actor_start(&a, rt, true, typed_scan_run, &bad);
		actor_join(&a);
		EXPECT_EQ(bad, 0);
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	}
}

/* Never waiting for the block before (the path a preempted worker's
 * neighbour takes): the same bits as the chain. */
extern int mr__test_scan_no_wait;

struct walk {
	long bad;
};

static void walk_back_run(void *arg)
{
	struct walk *x = arg;
	size_t n = 1000003;
	uint64_t seed = 5;
	double *d = malloc(n * 8), *a = malloc(n * 8), *b = malloc(n * 8);

	if (!d || !a || !b)
		abort();
	for (size_t i = 0; i < n; i++)
		d[i] = (double)(rnd(&seed) >> 11) / 9007199254740992.0;
	mr__test_scan_no_wait = 0;
	if (mr_parallel_scan_sum_double(d, a, n, 0))
		x->bad++;
	mr__test_scan_no_wait = 1;
	if (mr_parallel_scan_sum_double(d, b, n, 0) || memcmp(a, b, n * 8))
		x->bad++;
	typed_scan_run(&x->bad); /* integers exact, doubles within rounding */
	mr__test_scan_no_wait = 0;
	free(d);
	free(a);
	free(b);
}

TEST(scan_sum_typed_walk_back)
{
	mr_runtime_t *rt = make_rt(2);
	struct walk x = { 0 };

	ASSERT_NONNULL(rt);
	ASSERT_EQ(mr_runtime_install(rt, walk_back_run, &x), 0);
	EXPECT_EQ(x.bad, 0);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

TEST(scan_sum_typed_bad_arguments)
{
	uint64_t a[8] = { 1, 2, 3, 4 };
	double d[4] = { 1 };

	EXPECT_EQ(mr_parallel_scan_sum_u64(NULL, a, 4, 0), -EINVAL);
	EXPECT_EQ(mr_parallel_scan_sum_u64(a, NULL, 4, 0), -EINVAL);
	EXPECT_EQ(mr_parallel_scan_sum_u64(a, a + 1, 4, 0), -EINVAL);
	EXPECT_EQ(mr_parallel_scan_sum_u64(a, a, 4, 2), -EINVAL);
	EXPECT_EQ(mr_parallel_scan_sum_i64((int64_t *)a, (int64_t *)a, SIZE_MAX / 4, 0), -EINVAL);
	EXPECT_EQ(mr_parallel_scan_sum_double(d, d, 4, 4), -EINVAL);
	EXPECT_EQ(mr_parallel_scan_sum_u64(NULL, NULL, 0, 0), 0);
	EXPECT_EQ(a[0], 1);
	EXPECT_EQ(mr_parallel_scan_sum_u64(a, a + 4, 4, 0), 0);
	EXPECT_EQ(a[7], 10);
}

/* ---- searches ------------------------------------------------------------ */

struct hay {
	const unsigned char *a;
	unsigned char needle;
	_Atomic long calls;
	_Atomic unsigned char *seen; /* NULL, or a count of calls per index */
};

static bool is_needle(size_t i, void *ctx)
{
	struct hay *h = ctx;

	atomic_fetch_add_explicit(&h->calls, 1, memory_order_relaxed);
	if (h->seen)
		atomic_fetch_add_explicit(&h->seen[i], 1, memory_order_relaxed);
	return h->a[i] == h->needle;
}

/* Every search on a[0..n) for needle, against the sequential answers. */
static long search_case(const unsigned char *a, size_t n, unsigned char needle, size_t grain)
{
	struct hay h = { a, needle, 0, NULL };
	size_t first = n, got = SIZE_MAX;
	long faults = 0;
	int r;

	h.seen = calloc(n ? n : 1, 1);
	if (!h.seen)
		abort();
	for (size_t i = 0; i < n; i++)
		if (a[i] == needle) {
			first = i;
			break;
		}
	r = mr_parallel_find_first(0, n, grain, is_needle, &h, &got);
	if (r != (first < n) || (r == 1 && got != first)) {
		printf("# find_first n %zu grain %zu: %d at %zu, want %zu\n", n, grain, r, got, first);
		faults++;
	}
	for (size_t i = 0; i < n; i++)
		if (h.seen[i] > 1) {
			printf("# find_first: pred called %u times for %zu\n", h.seen[i], i);
			faults++;
			break;
		}
	got = SIZE_MAX;
	r = mr_parallel_find_any(0, n, grain, is_needle, &h, &got);
	if (r != (first < n) || (r == 1 && (got >= n || a[got] != needle))) {
		printf("# find_any n %zu grain %zu: %d at %zu\n", n, grain, r, got);
		faults++;
	}
	if (mr_parallel_any_of(0, n, grain, is_needle, &h) != (first < n)) {
		printf("# any_of n %zu grain %zu\n", n, grain);
		faults++;
	}
	/* all_of(not needle) is !any_of(needle); all_of(a[i] == needle) on a
	 * run of needles is 1. */
	h.needle = (unsigned char)(needle + 1);
	bool all = true;
	for (size_t i = 0; i < n; i++)
		all = all && a[i] == h.needle;
	if (mr_parallel_all_of(0, n, grain, is_needle, &h) != all) {
		printf("# all_of n %zu grain %zu, want %d\n", n, grain, all);
		faults++;
	}
	free(h.seen);
	return faults;
}

static long search_sizes(void)
{
	static const size_t sizes[] = { 0, 1, 2, 3, 31, 1023, 1024, 1025, 4000, 70000, 300001 };
	static const size_t grains[] = { 0, 1, 100, 5000 };
	long faults = 0;
	uint64_t r = 11;

	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t n = sizes[k];
		unsigned char *a = malloc(n + 1);
		if (!a)
			abort();
		for (size_t g = 0; g < sizeof(grains) / sizeof(grains[0]); g++) {
			/* Sparse: needle 7 about once in 4096; dense: 0..3. */
			for (size_t i = 0; i < n; i++)
				a[i] = (unsigned char)(rnd(&r) % 4096 == 0 ? 7 : 8 + rnd(&r) % 200);
			faults += search_case(a, n, 7, grains[g]); /* sparse or none */
			faults += search_case(a, n, 250, grains[g]); /* none */
			if (n) {
				a[n - 1] = 250;
				faults += search_case(a, n, 250, grains[g]); /* last */
				a[0] = 250;
				faults += search_case(a, n, 250, grains[g]); /* first */
			}
			for (size_t i = 0; i < n; i++)
				a[i] = (unsigned char)(rnd(&r) % 4);
			faults += search_case(a, n, 2, grains[g]); /* dense */
			memset(a, 5, n);
			faults += search_case(a, n, 4, grains[g]); /* all_of true */
		}
		free(a);
	}
	return faults;
}

TEST(search_random_from_outside)
{
	EXPECT_EQ(search_sizes(), 0);
}

static void search_sizes_run(void *arg)
{
	*(long *)arg = search_sizes();
}

TEST(search_random_on_1_and_2_workers)
{
	for (unsigned w = 1; w <= 2; w++) {
		mr_runtime_t *rt = make_rt(w);
		long faults = -1;
		ASSERT_NONNULL(rt);
		ASSERT_EQ(mr_runtime_install(rt, search_sizes_run, &faults), 0);
		EXPECT_EQ(faults, 0);
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	}
}

/* A hit at 1% of n, every search: predicate calls and time. */
struct early {
	size_t n, hit;
	unsigned char *a;
	long calls[4];
	int r[4];
	size_t at[2];
	double secs[4], seq_secs, plain_secs, plain_seq_secs;
};

static bool plain_needle(size_t i, void *ctx)
{
	return ((const unsigned char *)ctx)[i] == 1;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void early_run(void *arg)
{
	struct early *e = arg;
	struct hay h = { e->a, 1, 0, NULL };
	double t;

	for (int pass = 0; pass < 2; pass++) { /* the first maps the pages */
		t = now_s();
		for (size_t i = 0; i < e->n; i++)
			if (is_needle(i, &h))
				break;
		e->seq_secs = now_s() - t;
	}
	/* Time without the shared call counter, which costs more than the search. */
	for (int pass = 0; pass < 3; pass++) {
		bool (*volatile pred)(size_t, void *) = plain_needle; /* called as the search does */
		size_t i, at = 0;
		t = now_s();
		for (i = 0; i < e->n && !pred(i, e->a); i++)
			;
		e->plain_seq_secs = now_s() - t;
		t = now_s();
		if (mr_parallel_find_first(0, e->n, 0, plain_needle, e->a, &at) != 1 || at != i)
			abort();
		e->plain_secs = now_s() - t;
	}
	for (int k = 0; k < 4; k++) {
		atomic_store(&h.calls, 0);
		h.needle = 1;
		t = now_s();
		switch (k) {
		case 0: e->r[k] = mr_parallel_find_first(0, e->n, 0, is_needle, &h, &e->at[0]); break;
		case 1: e->r[k] = mr_parallel_find_any(0, e->n, 0, is_needle, &h, &e->at[1]); break;
		case 2: e->r[k] = mr_parallel_any_of(0, e->n, 0, is_needle, &h); break;
		default:
			h.needle = 0; /* all_of(a[i] == 0): false at the hit */
			e->r[k] = mr_parallel_all_of(0, e->n, 0, is_needle, &h);
			break;
		}
		e->secs[k] = now_s() - t;
		e->calls[k] = atomic_load(&h.calls);
	}
}

static void early_exit(unsigned workers, struct early *e)
{
	mr_runtime_t *rt = make_rt(workers);

	e->n = (size_t)scaled(10000000);
	e->hit = e->n / 100;
	e->a = calloc(e->n, 1);
	ASSERT_NONNULL(rt);
	ASSERT_NONNULL(e->a);
	e->a[e->hit] = 1;
	e->a[e->n - 1] = 1;
	ASSERT_EQ(mr_runtime_install(rt, early_run, e), 0);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
	free(e->a);
	EXPECT_EQ(e->r[0], 1);
	EXPECT_EQ(e->at[0], e->hit);
	EXPECT_EQ(e->r[1], 1);
	EXPECT_TRUE(e->at[1] == e->hit || e->at[1] == e->n - 1);
	EXPECT_EQ(e->r[2], 1);
	EXPECT_EQ(e->r[3], 0);
	TH_LOG("%u worker(s), n %zu, hit at %zu: calls find_first %ld, find_any %ld, any_of %ld, "
	       "all_of %ld; ms %.2f %.2f %.2f %.2f, sequential scan to the hit %.2f",
	       workers, e->n, e->hit, e->calls[0], e->calls[1], e->calls[2], e->calls[3],
	       e->secs[0] * 1e3, e->secs[1] * 1e3, e->secs[2] * 1e3, e->secs[3] * 1e3,
	       e->seq_secs * 1e3);
	TH_LOG("%u worker(s): find_first with a plain predicate %.3f ms, the sequential loop %.3f ms",
	       workers, e->plain_secs * 1e3, e->plain_seq_secs * 1e3);
}

/* One worker: a sequential scan that stops at the hit, so every later
 * chunk was skipped. */
TEST(search_early_exit_one_worker)
{
	struct early e = { 0 };

	early_exit(1, &e);
	EXPECT_EQ(e.calls[0], (long)e.hit + 1);
	EXPECT_EQ(e.calls[1], (long)e.hit + 1);
	EXPECT_EQ(e.calls[2], (long)e.hit + 1);
	EXPECT_EQ(e.calls[3], (long)e.hit + 1);
}

/* Two workers: the other searcher scans chunks right of the hit meanwhile,
 * but none is started after it is published and the chunks are short, so
 * fewer calls than indices whatever the schedule (logged). */
TEST(search_early_exit_two_workers)
{
	struct early e = { 0 };

	early_exit(2, &e);
	for (int k = 0; k < 4; k++)
		EXPECT_LT(e.calls[k], (long)e.n);
}

static bool never(size_t i, void *ctx)
{
	(void)i;
	(void)ctx;
	return false;
}

TEST(search_bad_arguments)
{
	size_t at = 77;

	EXPECT_EQ(mr_parallel_find_first(0, 10, 0, NULL, NULL, &at), -EINVAL);
	EXPECT_EQ(mr_parallel_find_any(0, 10, 0, NULL, NULL, &at), -EINVAL);
	EXPECT_EQ(mr_parallel_any_of(0, 10, 0, NULL, NULL), -EINVAL);
	EXPECT_EQ(mr_parallel_all_of(0, 10, 0, NULL, NULL), -EINVAL);
	EXPECT_EQ(mr_parallel_find_first(5, 4, 0, never, NULL, &at), -EINVAL);
	EXPECT_EQ(mr_parallel_all_of(5, 4, 0, never, NULL), -EINVAL);
	EXPECT_EQ(mr_parallel_find_first(4, 4, 0, never, NULL, &at), 0);
	EXPECT_EQ(mr_parallel_find_first(0, 100000, 0, never, NULL, &at), 0);
	EXPECT_EQ(mr_parallel_find_any(0, 100000, 0, never, NULL, NULL), 0);
	EXPECT_EQ(at, 77);
	EXPECT_EQ(mr_parallel_any_of(4, 4, 0, never, NULL), 0);
	EXPECT_EQ(mr_parallel_all_of(4, 4, 0, never, NULL), 1);
	EXPECT_EQ(mr_parallel_all_of(SIZE_MAX - 3000, SIZE_MAX, 0, never, NULL), 0);
}

/* ---- accumulators --------------------------------------------------------- */

struct hist {
	uint64_t bin[256];
	uint64_t count, min, max;
};

static const struct hist hist_id = { .min = UINT64_MAX };

static void hist_add(void *acc, const void *x, void *ctx)
{
	struct hist *a = acc;
	const struct hist *b = x;

	for (int i = 0; i < 256; i++)
		a->bin[i] += b->bin[i];
	a->count += b->count;
	a->min = b->min < a->min ? b->min : a->min;
	a->max = b->max > a->max ? b->max : a->max;
	(void)ctx;
}

struct hist_job {
	const uint64_t *v;
	size_t n;
	mr_accum_t *acc;
	_Atomic long no_slot;
	long faults;
};

static void hist_body(size_t lo, size_t hi, void *ctx)
{
	struct hist_job *j = ctx;
	struct hist *h = mr_accum_local(j->acc);

	if (!h) {
		atomic_fetch_add(&j->no_slot, 1);
		return;
	}
	for (size_t i = lo; i < hi; i++) {
		uint64_t x = j->v[i];
		h->bin[x & 255]++;
		h->count++;
		h->min = x < h->min ? x : h->min;
		h->max = x > h->max ? x : h->max;
	}
}

static void slot_sum(void *slot, unsigned worker, void *ctx)
{
	uint64_t *total = ctx;
	(void)worker;
	*total += ((struct hist *)slot)->count;
}

/* Build the histogram of v with the given grain, twice (reset between). */
static void hist_check(void *arg)
{
	struct hist_job *j = arg;
	struct hist seq = hist_id, par;

	for (size_t i = 0; i < j->n; i++) {
		struct hist one = hist_id;
		one.bin[j->v[i] & 255] = 1;
		one.count = 1;
		one.min = one.max = j->v[i];
		hist_add(&seq, &one, NULL);
	}
	j->acc = mr_accum_create(NULL, sizeof(struct hist), &hist_id);
	if (!j->acc) {
		j->faults++;
		return;
	}
	for (int round = 0; round < 2; round++) {
		size_t grain = round ? 1000 : 0;
		uint64_t total = 0;
		if (mr_parallel_for(0, j->n, grain, hist_body, j) != 0 ||
		    mr_accum_combine(j->acc, &par, hist_add, NULL) != 0 ||
		    mr_accum_for_each(j->acc, slot_sum, &total) != 0)
			j->faults++;
		if (memcmp(&par, &seq, sizeof(seq)) || total != j->n) {
			printf("# histogram differs (grain %zu): count %" PRIu64 " of %zu\n", grain,
			       par.count, j->n);
			j->faults++;
		}
		if (mr_accum_reset(j->acc) != 0)
			j->faults++;
		if (mr_accum_combine(j->acc, &par, hist_add, NULL) != 0 ||
		    memcmp(&par, &hist_id, sizeof(par)))
			j->faults++;
	}
	if (atomic_load(&j->no_slot))
		j->faults++;
	mr_accum_destroy(j->acc);
}

static uint64_t *random_u64(size_t n, uint64_t seed)
{
	uint64_t *v = malloc(n * sizeof(*v));
	if (!v)
		abort();
	for (size_t i = 0; i < n; i++)
		v[i] = rnd(&seed) >> (i % 40); /* some small values, some large */
	return v;
}

TEST(accum_histogram_from_outside)
{
	struct hist_job j = { 0 };

	j.n = (size_t)scaled(2000000);
	j.v = random_u64(j.n, 17);
	hist_check(&j);
	EXPECT_EQ(j.faults, 0);
	free((void *)j.v);
}

TEST(accum_histogram_on_1_and_2_workers)
{
	for (unsigned w = 1; w <= 2; w++) {
		mr_runtime_t *rt = make_rt(w);
		struct hist_job j = { 0 };
		ASSERT_NONNULL(rt);
		j.n = (size_t)scaled(1000000);
		j.v = random_u64(j.n, 23 + w);
		ASSERT_EQ(mr_runtime_install(rt, hist_check, &j), 0);
		EXPECT_EQ(j.faults, 0);
		free((void *)j.v);
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	}
}

/* Where each worker's slot is, seen from the worker and from for_each. */
struct where {
	mr_accum_t *acc, *other;
	void *seen[3];
	_Atomic long wrong;
};

static void where_body(size_t lo, size_t hi, void *ctx)
{
	struct where *w = ctx;
	int me = mr_worker_index();
	void *slot = mr_accum_local(w->acc);

	if (me < 0 || me >= 3 || !slot || mr_accum_local(w->other) != NULL) {
		atomic_fetch_add(&w->wrong, 1);
		return;
	}
	w->seen[me] = slot; /* the same value from every body on this worker */
	for (size_t i = lo; i < hi; i++)
		*(uint64_t *)slot += 1;
}

static void record_slot(void *slot, unsigned worker, void *ctx)
{
	void **at = ctx;
	at[worker] = slot;
}

static void where_run(void *arg)
{
	struct where *w = arg;
	mr_parallel_for(0, 300000, 100, where_body, w);
}

TEST(accum_slots_one_per_worker_on_own_lines)
{
	mr_runtime_t *rt = make_rt(3), *rt2 = make_rt(1);
	struct where w = { 0 };
	void *at[3] = { 0 };
	uint64_t sum = 0, seven = 7;

	ASSERT_NONNULL(rt);
	ASSERT_NONNULL(rt2);
	w.acc = mr_accum_create(rt, 8, &seven);
	w.other = mr_accum_create(rt2, 8, NULL);
	ASSERT_NONNULL(w.acc);
	ASSERT_NONNULL(w.other);
	EXPECT_EQ(mr_accum_slots(w.acc), 3);
	EXPECT_EQ(mr_accum_slots(w.other), 1);
	EXPECT_TRUE(mr_accum_local(w.acc) == NULL); /* not a worker */
	ASSERT_EQ(mr_runtime_install(rt, where_run, &w), 0);
	EXPECT_EQ(atomic_load(&w.wrong), 0);
	ASSERT_EQ(mr_accum_for_each(w.acc, record_slot, at), 0);
	for (int i = 0; i < 3; i++) {
		EXPECT_EQ((uintptr_t)at[i] % 64, 0);
		if (w.seen[i])
			EXPECT_TRUE(w.seen[i] == at[i]);
		for (int k = 0; k < i; k++) {
			uintptr_t d = (uintptr_t)at[i] > (uintptr_t)at[k] ? (uintptr_t)at[i] - (uintptr_t)at[k]
									  : (uintptr_t)at[k] - (uintptr_t)at[i];
			EXPECT_GE(d, 64);
		}
		sum += *(uint64_t *)at[i];
	}
	EXPECT_EQ(sum, 300000 + 3 * 7);
	ASSERT_EQ(mr_accum_reset(w.acc), 0);
	EXPECT_EQ(*(uint64_t *)at[2], 7);
	EXPECT_EQ(*(uint64_t *)at[0], 7);
	mr_accum_destroy(w.acc);
	mr_accum_destroy(w.other);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
	ASSERT_EQ(mr_runtime_destroy(rt2), 0);
}

TEST(accum_bad_arguments)
{
	uint64_t r;

	errno = 0;
	EXPECT_TRUE(mr_accum_create(NULL, 0, NULL) == NULL);
	EXPECT_EQ(errno, EINVAL);
	errno = 0;
	EXPECT_TRUE(mr_accum_create(NULL, SIZE_MAX / 2, NULL) == NULL);
	EXPECT_EQ(errno, EINVAL);
	mr_accum_t *a = mr_accum_create(NULL, 8, NULL);
	ASSERT_NONNULL(a);
	EXPECT_EQ(mr_accum_combine(a, &r, NULL, NULL), -EINVAL);
	EXPECT_EQ(mr_accum_combine(a, NULL, add_u64, NULL), -EINVAL);
	EXPECT_EQ(mr_accum_combine(NULL, &r, add_u64, NULL), -EINVAL);
	EXPECT_EQ(mr_accum_for_each(a, NULL, NULL), -EINVAL);
	EXPECT_EQ(mr_accum_for_each(NULL, record_slot, NULL), -EINVAL);
	EXPECT_EQ(mr_accum_reset(NULL), -EINVAL);
	EXPECT_TRUE(mr_accum_local(NULL) == NULL);
	EXPECT_EQ(mr_accum_slots(NULL), 0);
	r = 5;
	EXPECT_EQ(mr_accum_combine(a, &r, add_u64, NULL), 0);
	EXPECT_EQ(r, 0); /* zero identity, zero slots */
	mr_accum_destroy(a);
	mr_accum_destroy(NULL);
}

/* ---- from fibers ---------------------------------------------------------- */

/*
 * Every algorithm from two fibers at once with the default 64 KiB stacks:
 * the recursion of the sorts (partitions, merges, joins) and the waits run
 * on the fiber's stack, so depth matters here. A stack overflow aborts.
 */
struct fib_algos {
	uint64_t seed;
	long faults;
};

static void algos_in_fiber(void *arg)
{
	struct fib_algos *x = arg;
	size_t n = (size_t)scaled(100000);

	/* Reversed input: the deepest partitions; 24 bytes: the generic code. */
	x->faults += sort_case(n, 8, REVERSED, x->seed);
	x->faults += sort_case(n, 24, FEW_KEYS, x->seed + 1);
	/* The radix sorts' deepest recursion: all 8 bytes, 2 buckets each. */
	x->faults += radix_case(n * 3, K_BYTES01, x->seed + 2);
	x->faults += scan_ival_case(n);

	unsigned char *a = calloc(n, 1);
	size_t at = 0;
	if (!a)
		abort();
	a[n / 3] = 1;
	struct hay h = { a, 1, 0, NULL };
	int fr = mr_parallel_find_first(0, n, 0, is_needle, &h, &at);
	if (fr != 1 || at != n / 3) {
		printf("# find_first from a fiber: %d at %zu\n", fr, at);
		x->faults++;
	}
	free(a);

	mr_accum_t *acc = mr_accum_create(NULL, 8, NULL);
	uint64_t *slot = acc ? mr_accum_local(acc) : NULL;
	if (!slot) {
		printf("# no accumulator slot from a fiber\n");
		x->faults++;
	} else
		*slot += 1;
	mr_accum_destroy(acc);
}

TEST(algorithms_from_fibers)
{
	mr_runtime_t *rt = make_rt(2);
	struct fib_algos x[2] = { { 100, 0 }, { 200, 0 } };
	struct actor act[2];

	ASSERT_NONNULL(rt);
	for (int i = 0; i < 2; i++)
		actor_start(&act[i], rt, true, algos_in_fiber, &x[i]);
	for (int i = 0; i < 2; i++)
		actor_join(&act[i]);
	EXPECT_EQ(x[0].faults, 0);
	EXPECT_EQ(x[1].faults, 0);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

TEST_HARNESS_MAIN
