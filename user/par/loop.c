/*
 * loop.c - mr_parallel_for and mr_parallel_reduce: recursive halving with
 * mr_join.
 *
 * With a grain, ranges split until they are at most grain long. Without one
 * (grain 0) the splitting adapts, as rayon's does: a range starts with a
 * split budget equal to the number of workers and halves it at each split,
 * so a balanced loop becomes about two ranges per worker and pays almost no
 * scheduling; a range that was stolen (it runs on a worker other than the
 * one that split it) gets a fresh budget, so the work of an uneven loop keeps
 * being divided where the thieves are. Reduction keeps the left-to-right
 * order of the combine: the left half folds into the parent's accumulator,
 * the right half into a temporary that is combined after the join.
 *
 * Stopping early (mr_loop_opts' group and stop): every range checks the
 * two before it splits or runs, so once either is set no new leaf starts
 * and the ranges still queued return at once; leaves already running
 * finish. A skipped range records it, and the call returns -ECANCELED.
 *
 * n-D ranges (mr_parallel_for_nd, _2d) split the same way, one dimension
 * at a time: the one longest in units of its grain (1 for grain 0), as
 * TBB's blocked_range2d does, so tiles stay about square in grain units.
 * With every grain set a range splits while some dimension is longer
 * than its grain; with any grain 0 the adaptive budget above decides
 * when, and a dimension with a grain still never splits below it.
 */
#include <stdlib.h>
#include <string.h>

#include <moirai/par.h>

#include "algo.h"

#define STACK_ACC 256 /* reduce accumulators up to this size live on the stack */

struct loop {
	mr_range_fn body;
	mr_range_nd_fn ndbody;
	mr_reduce_body_fn rbody;
	mr_combine_fn combine;
	void *ctx;
	const void *identity;
	size_t elem_size;
	size_t grain;
	unsigned nworkers;
	unsigned ndims;		    /* n-D loops */
	const size_t *dgrain;	    /* n-D loops: each dimension's grain */
	bool cancellable;	    /* group or stop is set */
	mr_group_t *group;	    /* stop once it is cancelled */
	const int *stop;	    /* stop once it is non-zero */
	_Atomic bool skipped;	    /* some range was not run */
};

struct part {
	struct loop *l;
	size_t lo, hi;
	unsigned splits;
	struct mr__worker *origin; /* worker that created this range */
	void *acc;		   /* reduce only */
};

/*
 * Whether the loop has been asked to stop; records that a range is skipped.
 * relaxed: stopping early orders nothing (the leaves that ran are joined
 * by the call's return as always); the flag is read after the joins.
 */
static inline bool loop_stopped(struct loop *l)
{
	if (likely(!l->cancellable))
		return false;
	if ((l->stop && __atomic_load_n(l->stop, __ATOMIC_RELAXED)) ||
	    (l->group && mr_group_cancelled(l->group))) {
		atomic_store_explicit(&l->skipped, true, memory_order_relaxed);
		return true;
	}
	return false;
}

static bool should_split(const struct loop *l, size_t len, unsigned *splits, bool stolen)
{
	if (len < 2)
		return false;
	if (l->grain)
		return len > l->grain;
	if (stolen) {
		unsigned half = *splits / 2;
		*splits = half > l->nworkers ? half : l->nworkers;
		return true;
	}
	if (*splits == 0)
		return false;
	*splits /= 2;
	return true;
}

/*
 * An adaptive leaf may run long. The right halves left on the way down are
 * latent joins (only a heartbeat between two joins would promote them) or
 * private deque jobs (the split deque shares only when its owner pushes or
 * pops), so a worker that runs dry during the leaf would wait for it to
 * end: make them stealable now. An adaptive loop has about two leaves per
 * worker, so this costs a few pushes per leaf. Leaves of a loop with a
 * grain are as small as the caller chose and keep the plain protocol.
 */
static inline void share_before_leaf(const struct loop *l, struct mr__worker *w)
{
	if (l->grain != 0 || !w)
		return;
	mr__promote_all(w);
	if ((int32_t)(w->dq.head - w->dq.o_split) > 0 &&
	    mr__deque_publish(&w->dq) == MR__PUSH_PUBLIC)
		mr__notify(w->rt);
}

static void for_run(void *arg)
{
	struct part *p = arg;
	struct loop *l = p->l;
	struct mr__worker *w = mr__self();
	unsigned splits = p->splits;

	if (unlikely(loop_stopped(l)))
		return;
	if (should_split(l, p->hi - p->lo, &splits, w != p->origin)) {
		size_t mid = p->lo + (p->hi - p->lo) / 2;
		struct part left = { l, p->lo, mid, splits, w, NULL };
		struct part right = { l, mid, p->hi, splits, w, NULL };
		mr_join(for_run, &left, for_run, &right);
		return;
	}
	share_before_leaf(l, w);
	l->body(p->lo, p->hi, l->ctx);
}

static void reduce_run(void *arg)
{
	struct part *p = arg;
	struct loop *l = p->l;
	struct mr__worker *w = mr__self();
	unsigned splits = p->splits;

	if (unlikely(loop_stopped(l))) {
		memcpy(p->acc, l->identity, l->elem_size); /* a skipped range folds to nothing */
		return;
	}
	if (should_split(l, p->hi - p->lo, &splits, w != p->origin)) {
		_Alignas(max_align_t) unsigned char stack_acc[STACK_ACC];
		void *racc = l->elem_size <= STACK_ACC ? stack_acc : malloc(l->elem_size);
		if (racc) {
			size_t mid = p->lo + (p->hi - p->lo) / 2;
			struct part left = { l, p->lo, mid, splits, w, p->acc };
			struct part right = { l, mid, p->hi, splits, w, racc };
			mr_join(reduce_run, &left, reduce_run, &right);
			l->combine(p->acc, racc, l->ctx);
			if (racc != stack_acc)
				free(racc);
			return;
		}
		/* No memory for a temporary: fold this range sequentially. */
	}
	memcpy(p->acc, l->identity, l->elem_size);
	share_before_leaf(l, w);
	l->rbody(p->lo, p->hi, p->acc, l->ctx);
}

/* Entry: from a worker run the root directly, else on the default runtime.
 * 0, or -errno when the default runtime cannot be created (nothing ran). */
static int run_root(struct loop *l, size_t begin, size_t end, void *acc, void (*run)(void *))
{
	struct mr__worker *w = mr__self();
	struct mr_runtime *rt = w ? w->rt : mr__default_runtime_try();

	if (!rt)
		return -errno;
	struct part root = { l, begin, end, rt->nworkers, w, acc };

	l->nworkers = rt->nworkers;
	if (w)
		run(&root);
	else
		mr__run_outside(rt, run, &root);
	return 0;
}

static void root_fixup(void *arg);

/* Copy the caller's options (any sz at least the size field) into *o. */
static int get_opts(const struct mr_loop_opts *opts, struct mr_loop_opts *o)
{
	return mr__loop_opts_get(opts, o);
}

static void set_stop(struct loop *l, const struct mr_loop_opts *o)
{
	l->group = o->group;
	l->stop = o->stop;
	l->cancellable = o->group || o->stop;
	atomic_init(&l->skipped, false);
}

/* The result of a loop that ran: -ECANCELED when a range was skipped. */
static int loop_result(struct loop *l, int r)
{
	if (r == 0 && l->cancellable && atomic_load_explicit(&l->skipped, memory_order_relaxed))
		return -ECANCELED;
	return r;
}

int mr_parallel_for(size_t begin, size_t end, size_t grain, mr_range_fn body, void *ctx)
{
	if (!body || begin > end)
		return -EINVAL;
	if (begin == end)
		return 0;
	struct loop l = { .body = body, .ctx = ctx, .grain = grain };
	return run_root(&l, begin, end, NULL, root_fixup);
}

int mr_parallel_for_opts(size_t begin, size_t end, mr_range_fn body, void *ctx,
			 const struct mr_loop_opts *opts)
{
	struct mr_loop_opts o;

	if (!body || begin > end || get_opts(opts, &o))
		return -EINVAL;
	if (begin == end)
		return 0;
	struct loop l = { .body = body, .ctx = ctx, .grain = o.grain };
	set_stop(&l, &o);
	return loop_result(&l, run_root(&l, begin, end, NULL, root_fixup));
}

/* The root part runs on whichever worker took it: that is not a theft. */
static void root_fixup(void *arg)
{
	struct part *p = arg;
	p->origin = mr__self();
	if (p->l->rbody)
		reduce_run(p);
	else
		for_run(p);
}

int mr_parallel_reduce(size_t begin, size_t end, size_t grain, void *result, size_t elem_size,
		       const void *identity, mr_reduce_body_fn body, mr_combine_fn combine,
		       void *ctx)
{
	MR_OPTS(mr_loop_opts, o, .grain = grain);
	return mr_parallel_reduce_opts(begin, end, result, elem_size, identity, body, combine, ctx,
				       &o);
}

int mr_parallel_reduce_opts(size_t begin, size_t end, void *result, size_t elem_size,
			    const void *identity, mr_reduce_body_fn body, mr_combine_fn combine,
			    void *ctx, const struct mr_loop_opts *opts)
{
	_Alignas(max_align_t) unsigned char id_copy[STACK_ACC];
	void *id_heap = NULL;
	struct mr_loop_opts o;

	if (!result || !identity || !body || !combine || begin > end || elem_size == 0 ||
	    elem_size > MR_REDUCE_MAX_ELEM || get_opts(opts, &o))
		return -EINVAL;
	if (begin == end) {
		memmove(result, identity, elem_size);
		return 0;
	}
	/* The fold overwrites *result: keep a copy of an identity that overlaps it. */
	if ((const char *)identity < (char *)result + elem_size &&
	    (char *)result < (const char *)identity + elem_size) {
		void *copy = elem_size <= STACK_ACC ? id_copy : (id_heap = malloc(elem_size));
		if (!copy)
			return -ENOMEM;
		memcpy(copy, identity, elem_size);
		identity = copy;
	}
	struct loop l = { .rbody = body, .combine = combine, .ctx = ctx, .identity = identity,
			  .elem_size = elem_size, .grain = o.grain };
	set_stop(&l, &o);
	int r = loop_result(&l, run_root(&l, begin, end, result, root_fixup));
	free(id_heap);
	return r;
}

/* ---- n-D ranges ------------------------------------------------------- */

struct ndpart {
	struct loop *l;
	size_t lo[MR_ND_MAX], hi[MR_ND_MAX];
	unsigned splits;
	struct mr__worker *origin;
};

/* The dimension to split: the longest in units of its grain (1 for 0)
 * among those longer than it, or -1. */
static int pick_dim(const struct loop *l, const struct ndpart *p)
{
	int best = -1;
	size_t blen = 0, bunit = 1;

	for (unsigned d = 0; d < l->ndims; d++) {
		size_t len = p->hi[d] - p->lo[d];
		size_t unit = l->dgrain[d] ? l->dgrain[d] : 1;
		if (len <= unit)
			continue;
		/* len / unit > blen / bunit, without dividing */
		if (best < 0 || (unsigned __int128)len * bunit > (unsigned __int128)blen * unit) {
			best = (int)d;
			blen = len;
			bunit = unit;
		}
	}
	return best;
}

static void nd_run(void *arg)
{
	struct ndpart *p = arg;
	struct loop *l = p->l;
	struct mr__worker *w = mr__self();
	unsigned splits = p->splits;
	int d;

	if (unlikely(loop_stopped(l)))
		return;
	d = pick_dim(l, p);
	/* should_split() on a length of 2 says yes unless the budget is
	 * spent (grain 0) - or always (grain 1): pick_dim() judged the length. */
	if (d >= 0 && should_split(l, 2, &splits, w != p->origin)) {
		size_t mid = p->lo[d] + (p->hi[d] - p->lo[d]) / 2;
		struct ndpart left = *p, right = *p;
		left.hi[d] = mid;
		right.lo[d] = mid;
		left.splits = right.splits = splits;
		left.origin = right.origin = w;
		mr_join(nd_run, &left, nd_run, &right);
		return;
	}
	share_before_leaf(l, w);
	l->ndbody(p->lo, p->hi, l->ctx);
}

static void nd_root(void *arg)
{
	struct ndpart *p = arg;
	p->origin = mr__self();
	nd_run(p);
}

int mr_parallel_for_nd(unsigned ndims, const mr_dim_t *dims, mr_range_nd_fn body, void *ctx,
		       const struct mr_loop_opts *opts)
{
	struct mr_loop_opts o;
	struct ndpart root = { 0 };
	size_t grains[MR_ND_MAX];
	bool empty = false, all_grains = true;

	if (!body || !dims || ndims == 0 || ndims > MR_ND_MAX || get_opts(opts, &o))
		return -EINVAL;
	for (unsigned d = 0; d < ndims; d++) {
		if (dims[d].begin > dims[d].end)
			return -EINVAL;
		empty |= dims[d].begin == dims[d].end;
		all_grains &= dims[d].grain != 0;
		root.lo[d] = dims[d].begin;
		root.hi[d] = dims[d].end;
		grains[d] = dims[d].grain;
	}
	if (empty)
		return 0;

	struct mr__worker *w = mr__self();
	struct mr_runtime *rt = w ? w->rt : mr__default_runtime_try();
	if (!rt)
		return -errno;
	/* grain 1 stands for "every dimension has a grain": should_split() then
	 * always splits what pick_dim() found long enough. */
	struct loop l = { .ndbody = body, .ctx = ctx, .grain = all_grains ? 1 : 0,
			  .ndims = ndims, .dgrain = grains, .nworkers = rt->nworkers };
	set_stop(&l, &o);
	root.l = &l;
	root.splits = rt->nworkers;
	root.origin = w;
	if (w)
		nd_run(&root);
	else
		mr__run_outside(rt, nd_root, &root);
	return loop_result(&l, 0);
}

struct tiles2d {
	mr_range2d_fn body;
	void *ctx;
};

static void body2d(const size_t *lo, const size_t *hi, void *ctx)
{
	const struct tiles2d *t = ctx;
	t->body(lo[0], hi[0], lo[1], hi[1], t->ctx);
}

int mr_parallel_for_2d(size_t r_begin, size_t r_end, size_t r_grain, size_t c_begin,
		       size_t c_end, size_t c_grain, mr_range2d_fn body, void *ctx)
{
	const mr_dim_t dims[2] = { { r_begin, r_end, r_grain }, { c_begin, c_end, c_grain } };
	struct tiles2d t = { body, ctx };

	if (!body)
		return -EINVAL;
	return mr_parallel_for_nd(2, dims, body2d, &t, NULL);
}
