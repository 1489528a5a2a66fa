/*
 * pool.c - per-worker pools of 64-byte job blocks (group task headers).
 *
 * A worker allocates from and frees into its own free list: no atomics, no
 * lock. Blocks migrate with the work: the worker that runs a task frees its
 * block, so a worker that mostly steals accumulates blocks. When a list grows
 * past two batches, one batch of MR__POOL_BATCH blocks goes to the runtime's
 * shared list (one mutex acquisition per batch); an empty list refills from
 * there before it allocates a new slab. The number of live blocks is bounded
 * by the deques' capacity plus the jobs running, so a steady workload stops
 * allocating (and page-faulting) after warm-up. Slabs are freed when the
 * runtime is destroyed.
 */
#include <stdlib.h>
#include <string.h>

#include "sched.h"

_Static_assert(MR__POOL_BATCH * 2 < MR__POOL_SLAB_BLOCKS * 4, "pool batch sizes");

static void link_blocks(struct mr__worker *w, char *mem, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct mr__job *j = (struct mr__job *)(mem + i * MR__JOB_BLOCK);
		j->next = w->free_jobs;
		w->free_jobs = j;
	}
	w->nfree += (unsigned)n;
}

void *mr__job_refill(struct mr__worker *w)
{
	struct mr_runtime *rt = w->rt;
	struct mr__pool_batch *b;

	pthread_mutex_lock(&rt->pool_lock);
	b = rt->pool_batches;
	if (b) {
		rt->pool_batches = b->next;
		w->free_jobs = b->jobs;
		w->nfree = MR__POOL_BATCH;
		b->jobs = NULL;
		b->next = rt->pool_spare;
		rt->pool_spare = b;
		pthread_mutex_unlock(&rt->pool_lock);
	} else {
		char *slab;
		if (rt->nslabs == rt->slabs_cap) {
			size_t cap = rt->slabs_cap ? rt->slabs_cap * 2 : 16;
			void **s = realloc(rt->slabs, cap * sizeof(*s));
			if (!s)
				mr__die("mr_group_spawn", "out of memory for task headers");
			rt->slabs = s;
			rt->slabs_cap = cap;
		}
		slab = aligned_alloc(MR_CACHELINE, (size_t)MR__POOL_SLAB_BLOCKS * MR__JOB_BLOCK);
		if (!slab)
			mr__die("mr_group_spawn", "out of memory for task headers");
		rt->slabs[rt->nslabs++] = slab;
		pthread_mutex_unlock(&rt->pool_lock);
		link_blocks(w, slab, MR__POOL_SLAB_BLOCKS);
	}
	struct mr__job *j = w->free_jobs;
	w->free_jobs = j->next;
	w->nfree--;
	return j;
}

void mr__job_spill(struct mr__worker *w)
{
	struct mr_runtime *rt = w->rt;
	struct mr__job *first = w->free_jobs, *last = first;

	for (unsigned i = 1; i < MR__POOL_BATCH; i++)
		last = last->next;
	w->free_jobs = last->next;
	last->next = NULL;
	w->nfree -= MR__POOL_BATCH;

	pthread_mutex_lock(&rt->pool_lock);
	struct mr__pool_batch *b = rt->pool_spare;
	if (b)
		rt->pool_spare = b->next;
	else
		b = malloc(sizeof(*b));
	if (b) {
		b->jobs = first;
		b->next = rt->pool_batches;
		rt->pool_batches = b;
	}
	pthread_mutex_unlock(&rt->pool_lock);
	if (!b) {
		/* No descriptor: keep the blocks locally rather than lose them. */
		last->next = w->free_jobs;
		w->free_jobs = first;
		w->nfree += MR__POOL_BATCH;
	}
}

void mr__pool_fini(struct mr_runtime *rt)
{
	struct mr__pool_batch *b, *n;

	for (b = rt->pool_batches; b; b = n) {
		n = b->next;
		free(b);
	}
	for (b = rt->pool_spare; b; b = n) {
		n = b->next;
		free(b);
	}
	for (size_t i = 0; i < rt->nslabs; i++)
		free(rt->slabs[i]);
	free(rt->slabs);
	rt->pool_batches = rt->pool_spare = NULL;
	rt->slabs = NULL;
	rt->nslabs = rt->slabs_cap = 0;
}
