/*
 * omp.c - the OpenMP (libgomp) side of the tree benchmark: each inner node
 * creates one `omp task` per child and waits with `omp taskwait`; a run is
 * one parallel region whose single thread searches from the root.
 *
 * tree_omp_undeferred() runs the same code outside any parallel region:
 * libgomp then has no team and runs every task at once, inside `omp task`,
 * as a plain call (it does the same inside a region when a team has more
 * than 64 tasks per thread queued, or for `if(0)` tasks). Nothing can be
 * stolen then: it is the floor a 1-worker run could reach by not deferring.
 */
#include <omp.h>

#include "tree.h"

static uint64_t node_omp(const struct tree_shape *s, uint64_t h, unsigned depth)
{
	uint64_t sum = tree_work(h, s->work);

	if (depth > 0) {
		uint64_t r[TREE_MAX_K];
		for (unsigned i = 0; i < s->k; i++) {
#pragma omp task shared(r) firstprivate(i)
			r[i] = node_omp(s, tree_child(h, i), depth - 1);
		}
#pragma omp taskwait
		for (unsigned i = 0; i < s->k; i++)
			sum += r[i];
	}
	return sum;
}

void tree_omp_init(unsigned workers)
{
	omp_set_dynamic(0);
	omp_set_num_threads((int)workers);
}

uint64_t tree_omp(const struct tree_shape *s, uint64_t h)
{
	uint64_t r = 0;
#pragma omp parallel
#pragma omp single
	r = node_omp(s, h, s->depth);
	return r;
}

uint64_t tree_omp_undeferred(const struct tree_shape *s, uint64_t h)
{
	return node_omp(s, h, s->depth);
}
