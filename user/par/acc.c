/*
 * acc.c - per-worker accumulators (mr_accum_*): one slot per worker of a
 * runtime, for reductions that do not fit mr_parallel_reduce's shape
 * (histograms, several outputs at once).
 *
 * The slots are one aligned allocation, each rounded up to a whole number
 * of cache lines so that two workers never write the same line. A worker
 * finds its own slot by its index, with no atomic and no lock: only that
 * worker's thread writes it, and nothing it runs nested (a job it picks up
 * while waiting, a fiber it helps run) runs at the same time. Reading the
 * slots together (combine, for-each) is for after the parallel work: the
 * join that ended it orders every slot write before the read.
 */
#include <stdlib.h>
#include <string.h>

#include <moirai/algo.h>

#include "algo.h"

struct mr_accum {
	struct mr_runtime *rt;
	unsigned nslots;
	size_t size, stride;
	char *slots;	/* nslots * stride bytes, cache-line aligned */
	char *identity; /* size bytes */
};

static void fill(mr_accum_t *a)
{
	for (unsigned i = 0; i < a->nslots; i++)
		memcpy(a->slots + (size_t)i * a->stride, a->identity, a->size);
}

mr_accum_t *mr_accum_create(mr_runtime_t *rt, size_t size, const void *identity)
{
	mr_accum_t *a;

	if (size == 0 || size > SIZE_MAX / 2 / MR_MAX_WORKERS) {
		errno = EINVAL;
		return NULL;
	}
	if (!rt && !(rt = mr__algo_runtime()))
		return NULL; /* errno from the default runtime */
	mr__check_live(rt, "mr_accum_create");
	if (!(a = calloc(1, sizeof(*a))))
		return NULL;
	a->rt = rt;
	a->nslots = rt->nworkers;
	a->size = size;
	a->stride = (size + MR_CACHELINE - 1) / MR_CACHELINE * MR_CACHELINE;
	a->slots = aligned_alloc(MR_CACHELINE, a->stride * a->nslots);
	a->identity = malloc(size);
	if (!a->slots || !a->identity) {
		free(a->slots);
		free(a->identity);
		free(a);
		errno = ENOMEM;
		return NULL;
	}
	if (identity)
		memcpy(a->identity, identity, size);
	else
		memset(a->identity, 0, size);
	fill(a);
	return a;
}

void *mr_accum_local(mr_accum_t *a)
{
	struct mr__worker *w = mr__self();

	if (!a || !w || w->rt != a->rt)
		return NULL;
	return a->slots + (size_t)w->idx * a->stride;
}

int mr_accum_combine(const mr_accum_t *a, void *result, mr_combine_fn combine, void *ctx)
{
	if (!a || !result || !combine)
		return -EINVAL;
	memcpy(result, a->identity, a->size);
	for (unsigned i = 0; i < a->nslots; i++)
		combine(result, a->slots + (size_t)i * a->stride, ctx);
	return 0;
}

int mr_accum_for_each(mr_accum_t *a, void (*fn)(void *slot, unsigned worker, void *ctx),
		      void *ctx)
{
	if (!a || !fn)
		return -EINVAL;
	for (unsigned i = 0; i < a->nslots; i++)
		fn(a->slots + (size_t)i * a->stride, i, ctx);
	return 0;
}

int mr_accum_reset(mr_accum_t *a)
{
	if (!a)
		return -EINVAL;
	fill(a);
	return 0;
}

unsigned mr_accum_slots(const mr_accum_t *a)
{
	return a ? a->nslots : 0;
}

void mr_accum_destroy(mr_accum_t *a)
{
	if (!a)
		return;
	free(a->slots);
	free(a->identity);
	free(a);
}
