/*
 * sort.c - mr_parallel_sort and mr_parallel_stable_sort (and their _r
 * forms with a context argument).
 *
 * Unstable: a parallel introsort. Each range above PAR_MIN elements is
 * partitioned in place (in blocks, median of three or of nine) and its two
 * sides are sorted with mr_join, so the sides of every partition are
 * offered to thieves; PAR_MIN elements and fewer sort sequentially
 * (introsort, insertion sort below INSERTION_MAX, heapsort once the depth
 * budget of 2 log2 n partitions is spent, which bounds the worst case to
 * n log n whatever the input). The first partitions are parallel too: a
 * range that p workers share is cut into p pieces (each of at least
 * PPART_MIN elements) partitioned around the same pivot at once, and each
 * two neighbours' results are joined by swapping the smaller of the
 * right piece of the one and the left piece of the other across; the
 * two sides of that range then get half the workers each, so that below
 * the top log2(p) levels every partition runs alone. Without this the
 * first partition, one pass over the whole array on one worker, bounds
 * the speed-up to about log2(n) / (1 + (log2(n) - 1) / p).
 *
 * Stable: a merge sort that alternates between the array and a buffer of
 * n elements; halves sort in parallel with mr_join, merges above
 * PAR_MERGE_MIN elements split by binary search into independent merges,
 * and runs of RUN_MAX elements or fewer are insertion sorted.
 *
 * Both are compiled four times from sort_impl.h: for elements of 4, 8 and
 * 16 bytes an element moves with one load and store of that width; any
 * other size goes through the generic instance, which swaps in 8-byte
 * pieces. The comparator is still called through a pointer on every
 * comparison; that call, not the moves, is most of the cost for small
 * elements. The typed sorts and the keyed unstable sort are radix sorts
 * (radix_impl.h), with the introsort's code, the comparison inlined, for
 * ranges of RADIX_MIN keys or fewer; the keyed stable sort is a stable
 * radix sort through the merge sort's buffer, with the merge sort for
 * ranges of RSTABLE_MIN records or fewer. Partitions run in blocks, branch-free (see sort_impl.h), and
 * set the keys equal to a pivot aside when the pivot equals the range's
 * predecessor.
 *
 * Stopping (mr_parallel_sort_opts): a parallel range looks at the
 * caller's group and stop before it partitions, or sorts sequentially, or
 * (stable) before it sorts its halves and again before it merges them;
 * once either is set, it returns, and a sticky flag makes every other
 * range do the same. Ranges of PAR_MIN elements or fewer, once started,
 * finish. What is left is a permutation of the input: unstable, the
 * partitions only swap; stable, every range keeps in the array a
 * permutation of its elements whether it merges or not (its halves, done
 * or not, are permutations of theirs in the array; a merge into the
 * buffer only copies, and a merge back into the array runs to its end).
 *
 * Misbehaviour: a comparator that is not a strict weak order (or that
 * changes its answers) leaves the array in some order, every element still
 * there once; no access strays outside the array or the buffer.
 */
#include <stdlib.h>
#include <string.h>

#include <moirai/algo.h>
#include <moirai/par.h>

#include "algo.h"

#define INSERTION_MAX 16  /* introsort: ranges this short are insertion sorted */
#define NINTHER_MIN 128	  /* pivot: median of nine from this many elements on */
#define PAR_MIN 4096	  /* ranges this short sort sequentially */
#define RUN_MAX 24	  /* stable: runs this short are insertion sorted */
#define PAR_MERGE_MIN PAR_MIN /* merges this short run sequentially */
#define PPART_MIN 65536	  /* pieces of a parallel partition are at least this long */
#define SWAP_PAR_MIN (1u << 20) /* bytes: longer block swaps run in two halves */
#define RADIX_MIN 64	  /* radix: ranges this short go to the introsort */
#define RCHAINS 8	  /* radix: cycles followed at once */
#define RPF_BYTES 256	  /* radix: prefetch distance in a bucket */
#define RCOUNT_SMALL 2048  /* radix: shorter ranges count in one table */
#define RPAR_MIN 131072	  /* radix: shorter ranges distribute on one worker */
#define RPAR_PIECE 65536  /* radix: a worker's share of a shared pass, at least */
#define RPAR_ROUNDS 3	  /* radix: parallel distribution rounds at most */
#define RSTABLE_MIN 64	  /* stable radix: ranges this short go to the merge sort */
#define RHIST_PAR_MIN 65536 /* radix: pieces of a shared count are at least this long */

/* Swap x[0..n) with y[0..n) (bytes), halves in parallel when long. */
struct btask {
	char *x, *y;
	size_t n;
};

static void swap_blocks(void *arg)
{
	struct btask *t = arg;

	if (t->n > SWAP_PAR_MIN) {
		size_t h = t->n / 2;
		struct btask l = { t->x, t->y, h }, r = { t->x + h, t->y + h, t->n - h };
		mr_join(swap_blocks, &l, swap_blocks, &r);
		return;
	}
	for (size_t i = 0; i + 8 <= t->n; i += 8) {
		uint64_t u, v;
		memcpy(&u, t->x + i, 8);
		memcpy(&v, t->y + i, 8);
		memcpy(t->x + i, &v, 8);
		memcpy(t->y + i, &u, 8);
	}
	for (size_t i = t->n & ~(size_t)7; i < t->n; i++) {
		char c = t->x[i];
		t->x[i] = t->y[i];
		t->y[i] = c;
	}
}

struct srt {
	mr_cmp_fn cmp;
	mr_cmp_r_fn cmp_r;
	void *ctx;
	size_t size;
	size_t off;		 /* keyed: the key's offset in a record */
	bool cancellable;	 /* the fields below are set */
	const struct mr_loop_opts *o;
	_Atomic bool *stopped;	 /* sticky: some range gave up */
	size_t *rscratch;	 /* stable radix: 256 counts per piece, or NULL */
	unsigned rpieces;	 /* stable radix: pieces rscratch has rows for */
};

/*
 * Give up? Once the group or stop says so, the sticky flag makes every
 * later look say so too, whatever the caller does with its flag meanwhile.
 * Relaxed: a range that gave up set it before its join returned, and the
 * join orders it before the parent's look.
 */
static inline bool sort_stopped(const struct srt *s)
{
	if (likely(!s->cancellable))
		return false;
	if (atomic_load_explicit(s->stopped, memory_order_relaxed))
		return true;
	if (!mr__loop_opts_stopped(s->o))
		return false;
	atomic_store_explicit(s->stopped, true, memory_order_relaxed);
	return true;
}

/* The qsort form has no context; one well-predicted branch per comparison. */
#define CMP(x, y) (s->cmp ? s->cmp((x), (y)) : s->cmp_r((x), (y), s->ctx))

struct stask {
	char *a, *b; /* the range; the buffer's matching range (stable) */
	size_t n;
	unsigned depth; /* partitions left before heapsort (unstable) */
	bool to_b;	/* stable: leave the result in b */
	const struct srt *s;
	unsigned ways;	/* unstable: workers to partition this range (1: alone) */
	const char *pred; /* unstable: an element <= all of the range, or NULL */
};

/* A piece of a parallel partition (unstable): a[0..n) around *pv. */
struct ptask {
	char *a;
	size_t n;
	const char *pv;
	unsigned ways;
	size_t k; /* out: a[0..k) < *pv <= a[k..n) */
	const struct srt *s;
};


/* Radix (radix_impl.h): a count of keys' digits at shift over a[0..n). */
struct rhist {
	const char *a;
	size_t n;
	unsigned shift, ways;
	const struct srt *s;
	uint64_t k0;   /* the range's first key */
	uint64_t diff; /* out: every key XOR k0, ORed */
	size_t cnt[256]; /* out */
};

/* Radix: a range to sort from the digit at shift down. */
struct rtask {
	char *a;
	size_t n;
	unsigned shift, ways;
	const struct srt *s;
};

/* Radix: buckets [lo, hi) of a range, start[] their offsets in a. */
struct rbk {
	char *a;
	const size_t *start;
	unsigned lo, hi, shift, ways;
	size_t whole; /* the range's length */
	const struct srt *s;
	char *b;      /* stable: the buffer's matching range; NULL: unstable */
	bool in_b;    /* stable: the buckets' elements are in b */
};

/* Stable radix: a range of a, or of b when in_b, whose result goes to a. */
struct rstask {
	char *a, *b;
	size_t n;
	unsigned shift, ways;
	bool in_b;
	const struct srt *s;
};

/* Stable radix: pieces [i, i + cnt) of src[0..n) counted or scattered. */
struct rpiece {
	const char *src;
	char *dst;
	size_t n;
	unsigned sh, i, cnt, p;
	uint64_t k0, diff; /* count: the first key; out: keys XOR k0, ORed */
	const struct srt *s;
};

static unsigned depth_budget(size_t n)
{
	unsigned d = 0;
	while (n > 1) {
		n >>= 1;
		d += 2;
	}
	return d;
}

struct mtask {
	const char *a;
	size_t na;
	const char *b;
	size_t nb;
	char *d;
	const struct srt *s;
};

#define FIXED
#define SZ 4
#define F(name) name##_4
#include "sort_impl.h"
#undef SZ
#undef F
#define SZ 8
#define F(name) name##_8
#include "sort_impl.h"
#undef SZ
#undef F
#define SZ 16
#define F(name) name##_16
#include "sort_impl.h"
#undef SZ
#undef F
#undef FIXED
#define SZ (s->size)
#define F(name) name##_any
#include "sort_impl.h"
#undef SZ
#undef F

/*
 * The typed sorts: radix sorts, with the same code, the comparison
 * inlined, for short ranges (equal integers cannot be told apart, so no
 * stable form); the compiler drops the rest.
 */
#undef CMP
#define LD_(t) ld_##t
#define LD(t) LD_(t)
#define KEYT T
#define KEY(p) LD(T)(p)
#define CMP(x, y) (KEY(x) < KEY(y) ? -1 : KEY(x) > KEY(y))
#define FIXED
#define TYPED(T_, SZ_)                                                                             \
	static inline T_ ld_##T_(const void *p)                                                   \
	{                                                                                          \
		T_ v;                                                                              \
		memcpy(&v, p, sizeof(v));                                                          \
		return v;                                                                          \
	}
TYPED(uint64_t, 8)
TYPED(int64_t, 8)
TYPED(uint32_t, 4)
TYPED(int32_t, 4)
#define T uint64_t
#define SZ 8
#define F(name) name##_tu64
#define RBITS 64
#define RKEY(p) ld_uint64_t(p)
#include "sort_impl.h"
#include "radix_impl.h"
#undef RBITS
#undef RKEY
#undef T
#undef SZ
#undef F
#define T int64_t
#define SZ 8
#define F(name) name##_ti64
#define RBITS 64
#define RKEY(p) ((uint64_t)ld_int64_t(p) ^ ((uint64_t)1 << 63))
#include "sort_impl.h"
#include "radix_impl.h"
#undef RBITS
#undef RKEY
#undef T
#undef SZ
#undef F
#define T uint32_t
#define SZ 4
#define F(name) name##_tu32
#define RBITS 32
#define RKEY(p) (uint64_t)ld_uint32_t(p)
#include "sort_impl.h"
#include "radix_impl.h"
#undef RBITS
#undef RKEY
#undef T
#undef SZ
#undef F
#define T int32_t
#define SZ 4
#define F(name) name##_ti32
#define RBITS 32
#define RKEY(p) (uint64_t)((uint32_t)ld_int32_t(p) ^ 0x80000000u)
#include "sort_impl.h"
#include "radix_impl.h"
#undef RBITS
#undef RKEY
#undef T
#undef SZ
#undef F

/*
 * The keyed sorts (mr_parallel_sort_key_u64): records ordered by a
 * uint64_t at s->off, compared inline; 8- and 16-byte records move as
 * one word or one pair, other sizes in 8-byte pieces. Unstable: the radix sort;
 * stable: the stable radix sort.
 */
#undef KEY
#undef KEYT
#define KEYT uint64_t
#define KEY(p) ld_uint64_t((const char *)(p) + s->off)
#define SZ 16
#define F(name) name##_k16
#define RBITS 64
#define RKEY(p) KEY(p)
#define RSTABLE
#include "sort_impl.h"
#include "radix_impl.h"
#undef RSTABLE
#undef RBITS
#undef RKEY
#undef SZ
#undef F
#define SZ 8
#define F(name) name##_k8
#define RBITS 64
#define RKEY(p) KEY(p)
#define RSTABLE
#include "sort_impl.h"
#include "radix_impl.h"
#undef RSTABLE
#undef RBITS
#undef RKEY
#undef SZ
#undef F
#undef FIXED
#define SZ (s->size)
#define F(name) name##_kany
#define RBITS 64
#define RKEY(p) KEY(p)
#define RSTABLE
#include "sort_impl.h"
#include "radix_impl.h"
#undef RSTABLE
#undef RBITS
#undef RKEY
#undef SZ
#undef F

static void (*pick(size_t size, bool stable))(void *)
{
	switch (size) {
	case 4:
		return stable ? msort_4 : psort_4;
	case 8:
		return stable ? msort_8 : psort_8;
	case 16:
		return stable ? msort_16 : psort_16;
	default:
		return stable ? msort_any : psort_any;
	}
}

/* run: the typed psort, or NULL to pick by size and stability. */
static int sort(void *base, size_t n, size_t size, struct srt *s, bool stable,
		void (*run)(void *))
{
	_Atomic bool stopped = false;
	void *buf = NULL;

	if ((!base && n) || size == 0 || (!run && !s->cmp && !s->cmp_r))
		return -EINVAL;
	if (n > SIZE_MAX / size)
		return -EINVAL;
	if (n < 2)
		return 0;
	if (stable && n > RUN_MAX) {
		/* The only allocation, before the array is touched. */
		if (n > PTRDIFF_MAX / size || !(buf = malloc(n * size)))
			return -ENOMEM;
	}
	if (s->cancellable) {
		s->stopped = &stopped;
		if (sort_stopped(s)) {
			free(buf);
			return -ECANCELED;
		}
	}
	struct stask root = { base, buf, n, depth_budget(n), false, s, 1, NULL };
	if (!run)
		run = pick(size, stable);

	if (n <= PAR_MIN) {
		/* Sequential all the way down: no runtime needed. */
		run(&root);
	} else {
		struct mr_runtime *rt = mr__algo_runtime();
		if (!rt) {
			int e = errno;
			free(buf);
			return -e;
		}
		root.ways = rt->nworkers;
		mr__algo_run(rt, run, &root);
	}
	free(buf);
	/* Relaxed: the joins ordered every range's store before this. */
	return atomic_load_explicit(&stopped, memory_order_relaxed) ? -ECANCELED : 0;
}

int mr_parallel_sort(void *base, size_t n, size_t size, mr_cmp_fn cmp)
{
	struct srt s = { .cmp = cmp, .cmp_r = NULL, .ctx = NULL, .size = size };
	return sort(base, n, size, &s, false, NULL);
}

int mr_parallel_sort_r(void *base, size_t n, size_t size, mr_cmp_r_fn cmp, void *ctx)
{
	struct srt s = { .cmp = NULL, .cmp_r = cmp, .ctx = ctx, .size = size };
	return sort(base, n, size, &s, false, NULL);
}

int mr_parallel_stable_sort(void *base, size_t n, size_t size, mr_cmp_fn cmp)
{
	struct srt s = { .cmp = cmp, .cmp_r = NULL, .ctx = NULL, .size = size };
	return sort(base, n, size, &s, true, NULL);
}

int mr_parallel_stable_sort_r(void *base, size_t n, size_t size, mr_cmp_r_fn cmp, void *ctx)
{
	struct srt s = { .cmp = NULL, .cmp_r = cmp, .ctx = ctx, .size = size };
	return sort(base, n, size, &s, true, NULL);
}

/* The typed and keyed forms' options: *s made cancellable if they ask. */
static int typed_opts(struct srt *s, const struct mr_loop_opts *opts, struct mr_loop_opts *o)
{
	if (mr__loop_opts_get(opts, o))
		return -EINVAL;
	s->o = o;
	s->cancellable = o->group || o->stop;
	return 0;
}

#define TYPED_OPTS(name, T_, inst)                                                                 \
	int name(T_ *a, size_t n, const struct mr_loop_opts *opts)                                 \
	{                                                                                          \
		struct mr_loop_opts o;                                                             \
		struct srt s = { .size = sizeof(T_) };                                             \
		if (typed_opts(&s, opts, &o))                                                      \
			return -EINVAL;                                                            \
		return sort(a, n, sizeof(T_), &s, false, radix_##inst);                            \
	}
TYPED_OPTS(mr_parallel_sort_u64_opts, uint64_t, tu64)
TYPED_OPTS(mr_parallel_sort_i64_opts, int64_t, ti64)
TYPED_OPTS(mr_parallel_sort_u32_opts, uint32_t, tu32)
TYPED_OPTS(mr_parallel_sort_i32_opts, int32_t, ti32)

int mr_parallel_sort_key_u64(void *base, size_t n, size_t size, size_t off, unsigned flags,
			     const struct mr_loop_opts *opts)
{
	struct mr_loop_opts o;
	struct srt s = { .size = size, .off = off };
	bool stable = flags & MR_SORT_STABLE;

	if (size < 8 || off > size - 8 || (flags & ~(unsigned)MR_SORT_STABLE) ||
	    typed_opts(&s, opts, &o))
		return -EINVAL;
	if (size == 8)
		return sort(base, n, size, &s, stable, stable ? rsradix_k8 : radix_k8);
	if (size == 16)
		return sort(base, n, size, &s, stable, stable ? rsradix_k16 : radix_k16);
	return sort(base, n, size, &s, stable, stable ? rsradix_kany : radix_kany);
}

int mr_parallel_sort_u64(uint64_t *a, size_t n)
{
	struct srt s = { .cmp = NULL, .cmp_r = NULL, .ctx = NULL, .size = 8 };
	return sort(a, n, 8, &s, false, radix_tu64);
}

int mr_parallel_sort_i64(int64_t *a, size_t n)
{
	struct srt s = { .cmp = NULL, .cmp_r = NULL, .ctx = NULL, .size = 8 };
	return sort(a, n, 8, &s, false, radix_ti64);
}

int mr_parallel_sort_u32(uint32_t *a, size_t n)
{
	struct srt s = { .cmp = NULL, .cmp_r = NULL, .ctx = NULL, .size = 4 };
	return sort(a, n, 4, &s, false, radix_tu32);
}

int mr_parallel_sort_i32(int32_t *a, size_t n)
{
	struct srt s = { .cmp = NULL, .cmp_r = NULL, .ctx = NULL, .size = 4 };
	return sort(a, n, 4, &s, false, radix_ti32);
}

int mr_parallel_sort_opts(void *base, size_t n, size_t size, mr_cmp_r_fn cmp, void *ctx,
			  unsigned flags, const struct mr_loop_opts *opts)
{
	struct mr_loop_opts o;
	struct srt s = { .cmp = NULL, .cmp_r = cmp, .ctx = ctx, .size = size };

	if (!cmp || (flags & ~(unsigned)MR_SORT_STABLE) || mr__loop_opts_get(opts, &o))
		return -EINVAL;
	s.o = &o;
	s.cancellable = o.group || o.stop;
	return sort(base, n, size, &s, flags & MR_SORT_STABLE, NULL);
}
