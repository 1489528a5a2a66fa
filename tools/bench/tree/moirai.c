/*
 * moirai.c - the Moirai side of the tree benchmark: each inner node spawns
 * one task per child into a group on its stack (mr_group_spawn) and waits
 * (mr_group_wait); a run is one mr_runtime_install of the root.
 */
#include <stdio.h>
#include <stdlib.h>

#include <moirai/moirai.h>

#include "tree.h"

struct node {
	const struct tree_shape *s;
	uint64_t h;
	unsigned depth;
	uint64_t r;
};

static void node_run(void *p)
{
	struct node *n = p;
	const struct tree_shape *s = n->s;
	uint64_t sum = tree_work(n->h, s->work);

	if (n->depth > 0) {
		struct node c[TREE_MAX_K];
		mr_group_t g;

		mr_group_init(&g);
		for (unsigned i = 0; i < s->k; i++) {
			c[i] = (struct node){ s, tree_child(n->h, i), n->depth - 1, 0 };
			if (mr_group_spawn(&g, node_run, &c[i]) != 0)
				abort();
		}
		if (mr_group_wait(&g) != 0)
			abort();
		for (unsigned i = 0; i < s->k; i++)
			sum += c[i].r;
	}
	n->r = sum;
}

static mr_runtime_t *rt;

void tree_moirai_init(unsigned workers)
{
	MR_OPTS(mr_config, cfg, .workers = workers);
	rt = mr_runtime_create(&cfg);
	if (!rt || mr_runtime_workers(rt) != workers) {
		perror("mr_runtime_create");
		exit(1);
	}
}

void tree_moirai_fini(void)
{
	mr_runtime_destroy(rt);
}

uint64_t tree_moirai(const struct tree_shape *s, uint64_t h)
{
	struct node root = { s, h, s->depth, 0 };

	if (mr_runtime_install(rt, node_run, &root) != 0)
		abort();
	return root.r;
}
