/*
 * omp.c - the OpenMP (libgomp) side of the tree benchmark: each inner node
 * creates one `omp task` per child and waits with `omp taskwait`; a run is
 * one parallel region whose single thread searches from the root.
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
