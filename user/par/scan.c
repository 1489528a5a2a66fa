/*
 * scan.c - mr_parallel_scan: inclusive and exclusive prefix over an
 * associative operation, in place or out of place.
 *
 * The classic two passes over B blocks (B about four per worker, each at
 * least BLOCK_MIN elements): the first folds each block but the last into
 * its sum, in parallel; the block sums are scanned sequentially into each
 * block's starting value (B operations); the second pass rescans every
 * block from its start, in parallel, writing the output. The operation is
 * applied about 2n times in all against n for the sequential loop, so one
 * worker, or n below PAR_MIN, runs the sequential loop on the calling
 * thread instead. The operation is only ever applied as acc = acc (+) x
 * with acc to the left of x, so it need not be commutative.
 *
 * Each block keeps two elements of scratch (its running value and, for an
 * exclusive scan in place, the input element it is about to overwrite),
 * plus its sum: one malloc of (3B) * size bytes, made before anything is
 * written.
 *
 * Stopping (mr_parallel_scan_opts): both passes are mr_parallel_for_opts
 * loops over the blocks with the caller's group and stop, so no block
 * starts once either is set; the sequential loop looks at them every
 * BLOCK_MIN elements. A stopped scan has written some of out and not the
 * rest.
 */
#include <stdlib.h>
#include <string.h>

#include <moirai/algo.h>
#include <moirai/par.h>

#include "algo.h"

#define BLOCK_MIN 2048		   /* elements of a block at least */
#define PAR_MIN (2 * BLOCK_MIN) /* sequential up to here */
#define BLOCKS_PER_WORKER 4

struct scan {
	const char *in;
	char *out;
	size_t n, size, nblocks, per; /* per: elements of each block but the last */
	const void *identity;
	mr_combine_fn op;
	void *ctx;
	bool exclusive;
	char *scratch; /* per block: sum, running value, held input */
};

static char *slot(const struct scan *sc, size_t b, int k)
{
	return sc->scratch + (3 * b + (size_t)k) * sc->size;
}

/*
 * Scan in[lo, hi) into out from the value acc holds (which it updates).
 * The loop is compiled once per common element size, where a copy is one
 * load and store, and once for any size, where it is a call to memcpy:
 * that call cost as much as the operation's for 8-byte elements.
 */
#define SCAN_LOOP(SZ)                                                                              \
	for (size_t i = lo; i < hi; i++) {                                                         \
		const char *x = sc->in + i * (SZ);                                                 \
		char *y = sc->out + i * (SZ);                                                      \
		if (!sc->exclusive) {                                                              \
			sc->op(acc, x, sc->ctx);                                                   \
			memcpy(y, acc, SZ);                                                        \
		} else {                                                                           \
			if (x == y) { /* in place: keep x before it is overwritten */              \
				memcpy(held, x, SZ);                                               \
				x = held;                                                          \
			}                                                                          \
			memcpy(y, acc, SZ);                                                        \
			sc->op(acc, x, sc->ctx);                                                   \
		}                                                                                  \
	}

static void scan_range(const struct scan *sc, size_t lo, size_t hi, char *acc, char *held)
{
	switch (sc->size) {
	case 4:
		SCAN_LOOP(4)
		break;
	case 8:
		SCAN_LOOP(8)
		break;
	case 16:
		SCAN_LOOP(16)
		break;
	default:
		SCAN_LOOP(sc->size)
		break;
	}
}

static void block_range(const struct scan *sc, size_t b, size_t *lo, size_t *hi)
{
	*lo = b * sc->per;
	*hi = b + 1 == sc->nblocks ? sc->n : *lo + sc->per;
}

/* Pass 1: fold block b into its sum. */
static void fold_blocks(size_t b0, size_t b1, void *arg)
{
	const struct scan *sc = arg;

	for (size_t b = b0; b < b1; b++) {
		size_t lo, hi;
		char *sum = slot(sc, b, 0);
		block_range(sc, b, &lo, &hi);
		memcpy(sum, sc->identity, sc->size);
		for (size_t i = lo; i < hi; i++)
			sc->op(sum, sc->in + i * sc->size, sc->ctx);
	}
}

/* Pass 2: rescan block b from its start value (left in its sum slot). */
static void scan_blocks(size_t b0, size_t b1, void *arg)
{
	const struct scan *sc = arg;

	for (size_t b = b0; b < b1; b++) {
		size_t lo, hi;
		block_range(sc, b, &lo, &hi);
		scan_range(sc, lo, hi, slot(sc, b, 0), slot(sc, b, 2));
	}
}

/* The sequential scan, in pieces between which it looks at o's stop. */
static int scan_seq(struct scan *sc, const struct mr_loop_opts *o)
{
	bool cancellable = o && (o->group || o->stop);
	char *acc = slot(sc, 0, 0);

	memcpy(acc, sc->identity, sc->size);
	if (!cancellable) {
		scan_range(sc, 0, sc->n, acc, slot(sc, 0, 2));
		return 0;
	}
	for (size_t lo = 0; lo < sc->n; lo += BLOCK_MIN) {
		if (mr__loop_opts_stopped(o))
			return -ECANCELED;
		size_t hi = sc->n - lo > BLOCK_MIN ? lo + BLOCK_MIN : sc->n;
		scan_range(sc, lo, hi, acc, slot(sc, 0, 2));
	}
	return 0;
}

static int scan(const void *in, void *out, size_t n, size_t size, const void *identity,
		mr_combine_fn op, void *ctx, unsigned flags, const struct mr_loop_opts *o)
{
	if (!op || !identity || size == 0 || size > MR_REDUCE_MAX_ELEM ||
	    (flags & ~(unsigned)MR_SCAN_EXCLUSIVE) || (n && (!in || !out)))
		return -EINVAL;
	if (n > SIZE_MAX / size)
		return -EINVAL;
	if (n == 0)
		return 0;
	/* In place, or apart: a partial overlap would read what was written. */
	const char *ci = in, *co = out;
	if (ci != co && ci < co + n * size && co < ci + n * size)
		return -EINVAL;

	struct scan sc = { .in = in, .out = out, .n = n, .size = size, .identity = identity,
			   .op = op, .ctx = ctx, .exclusive = flags & MR_SCAN_EXCLUSIVE };
	struct mr_runtime *rt = NULL;
	unsigned workers = 1;

	if (n > PAR_MIN) {
		if (!(rt = mr__algo_runtime()))
			return -errno;
		workers = rt->nworkers;
	}
	size_t nb = 1;
	if (workers > 1) {
		nb = (size_t)workers * BLOCKS_PER_WORKER;
		if (nb > n / BLOCK_MIN)
			nb = n / BLOCK_MIN;
	}
	sc.nblocks = nb;
	sc.per = n / nb;
	if (nb > SIZE_MAX / 3 / size || !(sc.scratch = malloc(3 * nb * size)))
		return -ENOMEM;

	if (nb == 1) {
		int r = scan_seq(&sc, o);
		free(sc.scratch);
		return r;
	}
	/* Blocks of one grain each; the options' stop and group apply. */
	MR_OPTS(mr_loop_opts, lo, .grain = 1, .group = o ? o->group : NULL,
		.stop = o ? o->stop : NULL);
	/* The last block's sum is never needed. */
	int r = mr_parallel_for_opts(0, nb - 1, fold_blocks, &sc, &lo);
	if (r == 0) {
		/* Block sums to start values, in order: start[b] = start[b-1] (+) sum[b-1]. */
		char *run = slot(&sc, 0, 1);
		memcpy(run, identity, size);
		for (size_t b = 0; b < nb; b++) {
			char *sum = slot(&sc, b, 0);
			if (b + 1 < nb) {
				char *tmp = slot(&sc, b + 1, 1);
				memcpy(tmp, run, size);
				op(tmp, sum, ctx);
				memcpy(sum, run, size);
				run = tmp;
			} else {
				memcpy(sum, run, size);
			}
		}
		r = mr_parallel_for_opts(0, nb, scan_blocks, &sc, &lo);
	}
	free(sc.scratch);
	return r;
}

int mr_parallel_scan(const void *in, void *out, size_t n, size_t size, const void *identity,
		     mr_combine_fn op, void *ctx, unsigned flags)
{
	return scan(in, out, n, size, identity, op, ctx, flags, NULL);
}

int mr_parallel_scan_opts(const void *in, void *out, size_t n, size_t size,
			  const void *identity, mr_combine_fn op, void *ctx, unsigned flags,
			  const struct mr_loop_opts *opts)
{
	struct mr_loop_opts o;

	if (mr__loop_opts_get(opts, &o))
		return -EINVAL;
	return scan(in, out, n, size, identity, op, ctx, flags, &o);
}
