/*
 * node.c - the per-node work and the sequential recursion of the tree
 * benchmark, compiled once and linked into its program (see tree.h).
 */
#include "tree.h"

uint64_t tree_work(uint64_t h, unsigned rounds)
{
	for (unsigned i = 0; i < rounds; i++) {
		h ^= h >> 29;
		h *= 0xbf58476d1ce4e5b9ull;
	}
	return h;
}

uint64_t tree_seq_node(const struct tree_shape *s, uint64_t h, unsigned depth);

uint64_t tree_seq_node(const struct tree_shape *s, uint64_t h, unsigned depth)
{
	uint64_t sum = tree_work(h, s->work);

	if (depth > 0) {
		uint64_t r[TREE_MAX_K];
		for (unsigned i = 0; i < s->k; i++)
			r[i] = tree_seq_node(s, tree_child(h, i), depth - 1);
		for (unsigned i = 0; i < s->k; i++)
			sum += r[i];
	}
	return sum;
}

uint64_t tree_seq(const struct tree_shape *s, uint64_t h)
{
	return tree_seq_node(s, h, s->depth);
}
