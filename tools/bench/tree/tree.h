/*
 * tree.h - the task-tree benchmark: a complete k-ary tree searched by one
 * task per node. Every node does a little work on its hash (tree_work(),
 * compiled once in node.c so that all sides run the same machine code),
 * spawns one task per child, waits for them and adds their results. The
 * tasks are small on purpose: the run measures what spawning and waiting
 * cost per task, Moirai's mr_group_spawn + mr_group_wait against OpenMP's
 * `omp task` + `omp taskwait`, next to the same recursion without tasks.
 */
#ifndef MOIRAI_BENCH_TREE_H
#define MOIRAI_BENCH_TREE_H

#include <stdint.h>

#define TREE_MAX_K 64

struct tree_shape {
	unsigned k;	 /* children per inner node */
	unsigned depth;	 /* levels below the root */
	unsigned work;	 /* rounds of tree_work() per node */
	unsigned workers;
};

/* rounds of a serially dependent xor-shift-multiply step on h (node.c). */
uint64_t tree_work(uint64_t h, unsigned rounds);

static inline uint64_t tree_child(uint64_t h, unsigned i)
{
	return (h ^ (i + 1)) * 0x9e3779b97f4a7c15ull;
}

/* Each returns the sum of tree_work() over the tree rooted at hash h. */
uint64_t tree_seq(const struct tree_shape *s, uint64_t h);
uint64_t tree_moirai(const struct tree_shape *s, uint64_t h); /* in its runtime */
uint64_t tree_omp(const struct tree_shape *s, uint64_t h);    /* in a parallel region */
uint64_t tree_omp_undeferred(const struct tree_shape *s, uint64_t h); /* outside any */

/* Set up (or tear down: fini) each side's workers outside the timing. */
void tree_moirai_init(unsigned workers);
void tree_moirai_fini(void);
void tree_omp_init(unsigned workers);

#endif /* MOIRAI_BENCH_TREE_H */
