/*
 * find.c - mr_parallel_find_first, mr_parallel_find_any, mr_parallel_any_of
 * and mr_parallel_all_of: searches over an index range that stop early.
 *
 * One searcher per worker is started (a tree of mr_join, so idle workers
 * take them); each repeatedly takes the next chunk of the range from a
 * shared counter, in index order, and runs it: chunks of the caller's
 * grain, or without one of n / (64 workers) indices, at most 4096. One
 * word, `best`, holds the lowest index found so far (end while none). Once
 * it says the answer is known - for find_first, a hit left of the chunk;
 * for the others, any hit - a searcher stops taking chunks (no range is
 * started any more), and a running chunk looks at the word every
 * CHECK_EVERY indices and gives up. find_first still finishes every chunk
 * left of its best hit, so its answer is the lowest index whatever the
 * schedule; the others answer with the first hit any chunk reports.
 * Handing out chunks in order keeps every searcher near the front, so a
 * hit early in a long range is found about p times sooner on p workers.
 *
 * On one worker the search is a sequential scan that stops at the hit:
 * pred is called exactly hit - begin + 1 times. With more, the others
 * scan chunks to the right of the hit meanwhile, until their next look at
 * the word after it is published: at most a chunk or CHECK_EVERY indices
 * each.
 *
 * Stopping (the _opts forms' group and stop): each chunk looks at them
 * before it starts and at each look at the answer, and a searcher that
 * sees either gives up, noting in `cut` the lowest index it left
 * unsearched. The search was complete when nothing left of its answer
 * was cut (find_first), or when it found any hit (find_any); otherwise it
 * returns -ECANCELED. So a stop that races the end of the search gives
 * the right answer or -ECANCELED, never a wrong one.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include <moirai/algo.h>
#include <moirai/par.h>

#include "algo.h"

#define CHECK_EVERY 1024 /* indices between two looks at the answer */
#define CHUNKS_PER_WORKER 64 /* grain 0: chunks of n / (64 workers) indices, */
#define CHUNK_MAX 4096	     /* at most this many */

struct find {
	mr_pred_fn pred;
	void *ctx;
	size_t begin, end, chunk, nchunks;
	bool first;  /* lowest index wanted: only hits to the left stop a range */
	bool negate; /* all_of: look for an index where pred is false */
	/* Lowest hit so far, or end. Relaxed throughout: it only steers the
	 * search, and the caller reads it after the joins, which order
	 * every store before the return. */
	_Atomic size_t best;
	_Atomic size_t next; /* the next chunk to hand out */
	bool cancellable;    /* stop or group set */
	const int *stop;
	mr_group_t *group;
	_Atomic size_t cut; /* lowest index left unsearched by a stop, or end */
};

struct frange {
	struct find *f;
	unsigned tasks; /* searchers to start for this part of the tree */
};

/* Is nothing at lo or right of it needed any more? */
static inline bool settled(struct find *f, size_t lo)
{
	size_t b = atomic_load_explicit(&f->best, memory_order_relaxed);
	return f->first ? b <= lo : b != f->end;
}

static void found(struct find *f, size_t i)
{
	size_t b = atomic_load_explicit(&f->best, memory_order_relaxed);
	while (i < b &&
	       !atomic_compare_exchange_weak_explicit(&f->best, &b, i, memory_order_relaxed,
						      memory_order_relaxed))
		;
}

/*
 * Has the caller asked to stop? Then note that lo and what follows it in
 * this chunk stay unsearched. Relaxed: as `best`, it only steers.
 */
static bool halted(struct find *f, size_t lo)
{
	if (!f->cancellable)
		return false;
	if (!(f->stop && __atomic_load_n(f->stop, __ATOMIC_RELAXED)) &&
	    !(f->group && mr_group_cancelled(f->group)))
		return false;
	size_t c = atomic_load_explicit(&f->cut, memory_order_relaxed);
	while (lo < c && !atomic_compare_exchange_weak_explicit(&f->cut, &c, lo,
								memory_order_relaxed,
								memory_order_relaxed))
		;
	return true;
}

/* Search [lo, hi); false when a stop cut it short. */
static bool leaf(struct find *f, size_t lo, size_t hi)
{
	for (size_t i = lo; i < hi;) {
		if (halted(f, i))
			return false;
		size_t stop = hi - i > CHECK_EVERY ? i + CHECK_EVERY : hi;
		for (; i < stop; i++)
			if (f->pred(i, f->ctx) != f->negate) {
				found(f, i);
				return true;
			}
		if (i < hi && settled(f, i))
			return true;
	}
	return true;
}

/* A searcher: take the next chunk, in index order, until none is needed. */
static void search_chunks(struct find *f)
{
	for (;;) {
		/* Relaxed: the counter only has to hand each chunk out once. */
		size_t k = atomic_fetch_add_explicit(&f->next, 1, memory_order_relaxed);
		if (k >= f->nchunks)
			return;
		size_t lo = f->begin + k * f->chunk;
		/* Chunks go out left to right: a settled one settles the rest. */
		if (settled(f, lo))
			return;
		if (!leaf(f, lo, f->end - lo > f->chunk ? lo + f->chunk : f->end))
			return;
	}
}

/* Start r->tasks searchers with a tree of joins (thieves take halves). */
static void spread(void *arg)
{
	struct frange *r = arg;

	if (r->tasks <= 1) {
		/* A searcher runs long without joining: the other searchers'
		 * halves, latent on the way down, must be stealable now. */
		struct mr__worker *w = mr__self();
		if (w)
			mr__promote_all(w);
		search_chunks(r->f);
		return;
	}
	struct frange left = { r->f, r->tasks / 2 }, right = { r->f, r->tasks - r->tasks / 2 };
	mr_join(spread, &left, spread, &right);
}

/* 1 and *at set when an index was found, 0 when none, or -errno. */
static int search(size_t begin, size_t end, size_t grain, mr_pred_fn pred, void *ctx, bool first,
		  bool negate, size_t *at, const struct mr_loop_opts *o)
{
	if (!pred || begin > end)
		return -EINVAL;
	if (begin == end)
		return 0;

	struct find f = { .pred = pred, .ctx = ctx, .begin = begin, .end = end, .first = first,
			  .negate = negate };
	size_t n = end - begin;

	atomic_init(&f.best, end);
	atomic_init(&f.next, 0);
	atomic_init(&f.cut, end);
	if (o) {
		f.stop = o->stop;
		f.group = o->group;
		f.cancellable = o->stop || o->group;
	}
	if (grain >= n) {
		leaf(&f, begin, end); /* one chunk: no runtime needed */
	} else {
		struct mr_runtime *rt = mr__algo_runtime();
		if (!rt)
			return -errno;
		f.chunk = grain;
		if (!grain) {
			f.chunk = n / ((size_t)rt->nworkers * CHUNKS_PER_WORKER);
			f.chunk = f.chunk < 1 ? 1 : f.chunk > CHUNK_MAX ? CHUNK_MAX : f.chunk;
		}
		f.nchunks = n / f.chunk + (n % f.chunk != 0);
		struct frange root = { &f, rt->nworkers };
		mr__algo_run(rt, spread, &root);
	}
	/* Relaxed: the joins (or this thread) ordered every store before. */
	size_t b = atomic_load_explicit(&f.best, memory_order_relaxed);
	size_t c = atomic_load_explicit(&f.cut, memory_order_relaxed);
	if (first ? c < b : c != end && b == end)
		return -ECANCELED; /* some index the answer depends on was cut */
	if (b == end)
		return 0;
	if (at)
		*at = b;
	return 1;
}

int mr_parallel_find_first(size_t begin, size_t end, size_t grain, mr_pred_fn pred, void *ctx,
			   size_t *index)
{
	return search(begin, end, grain, pred, ctx, true, false, index, NULL);
}

int mr_parallel_find_any(size_t begin, size_t end, size_t grain, mr_pred_fn pred, void *ctx,
			 size_t *index)
{
	return search(begin, end, grain, pred, ctx, false, false, index, NULL);
}

int mr_parallel_any_of(size_t begin, size_t end, size_t grain, mr_pred_fn pred, void *ctx)
{
	return search(begin, end, grain, pred, ctx, false, false, NULL, NULL);
}

int mr_parallel_all_of(size_t begin, size_t end, size_t grain, mr_pred_fn pred, void *ctx)
{
	int r = search(begin, end, grain, pred, ctx, false, true, NULL, NULL);
	return r < 0 ? r : !r;
}

int mr_parallel_find_first_opts(size_t begin, size_t end, mr_pred_fn pred, void *ctx,
				size_t *index, const struct mr_loop_opts *opts)
{
	struct mr_loop_opts o;

	if (mr__loop_opts_get(opts, &o))
		return -EINVAL;
	return search(begin, end, o.grain, pred, ctx, true, false, index, &o);
}

int mr_parallel_find_any_opts(size_t begin, size_t end, mr_pred_fn pred, void *ctx,
			      size_t *index, const struct mr_loop_opts *opts)
{
	struct mr_loop_opts o;

	if (mr__loop_opts_get(opts, &o))
		return -EINVAL;
	return search(begin, end, o.grain, pred, ctx, false, false, index, &o);
}
