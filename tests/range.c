/*
 * range.c - n-D parallel loops (mr_parallel_for_2d, mr_parallel_for_nd).
 *
 * Every cell of the box is visited exactly once, for many shapes (empty,
 * 1, primes that no grain divides, large) and grains (0: adaptive, 1,
 * odd, larger than the box), with begins other than 0; with every grain
 * set no tile is longer than its grain in any dimension; 3-D and 5-D
 * boxes; stopping early through the options; bad arguments; on 1 and 2
 * workers, from a fiber and from a thread outside any runtime.
 */
#include <stdatomic.h>

#include <moirai/moirai.h>

#include "harness.h"
#include "util.h"

struct box {
	size_t r0, c0, rows, cols, rg, cg;
	_Atomic unsigned char *cell;
	_Atomic long tiles, too_big, out;
};

static void visit2d(size_t rlo, size_t rhi, size_t clo, size_t chi, void *ctx)
{
	struct box *b = ctx;

	atomic_fetch_add(&b->tiles, 1);
	if ((b->rg && rhi - rlo > b->rg) || (b->cg && chi - clo > b->cg))
		if (b->rg && b->cg)
			atomic_fetch_add(&b->too_big, 1);
	if (rlo < b->r0 || rhi > b->r0 + b->rows || clo < b->c0 || chi > b->c0 + b->cols ||
	    rlo >= rhi || clo >= chi) {
		atomic_fetch_add(&b->out, 1);
		return;
	}
	for (size_t i = rlo; i < rhi; i++)
		for (size_t j = clo; j < chi; j++)
			atomic_fetch_add_explicit(&b->cell[(i - b->r0) * b->cols + (j - b->c0)], 1,
						  memory_order_relaxed);
}

/* 0 when every cell was visited exactly once, tiles in bounds. */
static long check_box(size_t rows, size_t cols, size_t rg, size_t cg)
{
	struct box b = { .r0 = 3, .c0 = 1000, .rows = rows, .cols = cols, .rg = rg, .cg = cg };
	long bad = 0;

	b.cell = calloc(rows * cols + 1, 1);
	if (!b.cell)
		abort();
	int r = mr_parallel_for_2d(b.r0, b.r0 + rows, rg, b.c0, b.c0 + cols, cg, visit2d, &b);
	if (r != 0)
		bad++;
	for (size_t k = 0; k < rows * cols; k++)
		if (b.cell[k] != 1)
			bad++;
	if (atomic_load(&b.too_big) || atomic_load(&b.out))
		bad++;
	if ((rows == 0 || cols == 0) && atomic_load(&b.tiles) != 0)
		bad++;
	if (bad)
		printf("# %zu x %zu, grains %zu %zu: %ld wrong\n", rows, cols, rg, cg, bad);
	free((void *)b.cell);
	return bad;
}

static void shapes_run(void *arg)
{
	long *bad = arg;
	static const size_t sizes[] = { 0, 1, 2, 3, 5, 17, 100, 257 };
	static const size_t grains[] = { 0, 1, 3, 64, 1000 };

	for (size_t a = 0; a < 8; a++)
		for (size_t c = 0; c < 8; c++)
			for (size_t g = 0; g < 5; g++)
				for (size_t h = 0; h < 5; h++)
					*bad += check_box(sizes[a], sizes[c], grains[g], grains[h]);
	/* Large and lopsided. */
	*bad += check_box(1000, scaled(3000), 0, 0);
	*bad += check_box(1000, scaled(3000), 32, 32);
	*bad += check_box(1, scaled(1000000), 0, 0);
	*bad += check_box(scaled(1000000), 1, 0, 100);
	*bad += check_box(scaled(300000), 3, 7, 0);
}

TEST(range2d_every_cell_once_from_outside)
{
	long bad = 0;
	shapes_run(&bad);
	EXPECT_EQ(bad, 0);
}

TEST(range2d_every_cell_once_on_1_and_2_workers)
{
	for (unsigned w = 1; w <= 2; w++) {
		mr_runtime_t *rt = make_rt(w);
		long bad = 0;
		ASSERT_NONNULL(rt);
		ASSERT_EQ(mr_runtime_install(rt, shapes_run, &bad), 0);
		EXPECT_EQ(bad, 0);
		struct actor a;
		actor_start(&a, rt, true, shapes_run, &bad);
		actor_join(&a);
		EXPECT_EQ(bad, 0);
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	}
}

/* n-D: a box of up to 5 dimensions, cells numbered row-major. */
struct ndbox {
	unsigned nd;
	mr_dim_t dims[MR_ND_MAX];
	_Atomic unsigned char *cell;
	_Atomic long out;
	bool all_grains; /* then no tile is longer than a grain */
	int stop;
	size_t stop_after; /* tiles, then set stop */
	_Atomic size_t tiles;
};

static void visit_nd(const size_t *lo, const size_t *hi, void *ctx)
{
	struct ndbox *b = ctx;
	size_t idx[MR_ND_MAX];

	if (atomic_fetch_add(&b->tiles, 1) + 1 == b->stop_after)
		__atomic_store_n(&b->stop, 1, __ATOMIC_RELAXED);
	for (unsigned d = 0; d < b->nd; d++) {
		if (lo[d] < b->dims[d].begin || hi[d] > b->dims[d].end || lo[d] >= hi[d] ||
		    (b->all_grains && hi[d] - lo[d] > b->dims[d].grain)) {
			atomic_fetch_add(&b->out, 1);
			return;
		}
		idx[d] = lo[d];
	}
	for (;;) {
		size_t k = 0;
		for (unsigned d = 0; d < b->nd; d++)
			k = k * (b->dims[d].end - b->dims[d].begin) + (idx[d] - b->dims[d].begin);
		atomic_fetch_add_explicit(&b->cell[k], 1, memory_order_relaxed);
		unsigned d = b->nd;
		while (d-- > 0) {
			if (++idx[d] < hi[d])
				break;
			idx[d] = lo[d];
		}
		if (d == (unsigned)-1)
			return;
	}
}

static void nd_run(void *arg)
{
	long *bad = arg;
	uint64_t seed = 77;

	for (int it = 0; it < 300; it++) {
		struct ndbox b = { .nd = 1 + (unsigned)(rnd(&seed) % 5) };
		size_t cells = 1;
		b.all_grains = true;
		for (unsigned d = 0; d < b.nd; d++) {
			size_t len = rnd(&seed) % (b.nd > 3 ? 9 : 40);
			size_t begin = rnd(&seed) % 5;
			size_t g = rnd(&seed) % 3 ? rnd(&seed) % 6 : 0;
			b.dims[d] = (mr_dim_t){ begin, begin + len, g };
			b.all_grains &= g != 0;
			cells *= len;
		}
		b.cell = calloc(cells + 1, 1);
		if (!b.cell)
			abort();
		if (mr_parallel_for_nd(b.nd, b.dims, visit_nd, &b, NULL) != 0)
			(*bad)++;
		for (size_t k = 0; k < cells; k++)
			if (b.cell[k] != 1)
				(*bad)++;
		if (atomic_load(&b.out))
			(*bad)++;
		free((void *)b.cell);
	}
	/* Stopped after 5 tiles of 1x1x1: fewer than all ran, none twice. */
	struct ndbox b = { .nd = 3, .dims = { { 0, 20, 1 }, { 0, 20, 1 }, { 0, 20, 1 } },
			   .all_grains = true, .stop_after = 5 };
	b.cell = calloc(8000, 1);
	MR_OPTS(mr_loop_opts, o, .stop = &b.stop);
	if (mr_parallel_for_nd(3, b.dims, visit_nd, &b, &o) != -ECANCELED)
		(*bad)++;
	long ran = 0;
	for (size_t k = 0; k < 8000; k++) {
		if (b.cell[k] > 1)
			(*bad)++;
		ran += b.cell[k];
	}
	if (ran < 5 || ran >= 8000)
		(*bad)++;
	free((void *)b.cell);
}

TEST(range_nd_every_cell_once)
{
	long bad = 0;
	nd_run(&bad);
	EXPECT_EQ(bad, 0);
	for (unsigned w = 1; w <= 2; w++) {
		mr_runtime_t *rt = make_rt(w);
		ASSERT_NONNULL(rt);
		ASSERT_EQ(mr_runtime_install(rt, nd_run, &bad), 0);
		EXPECT_EQ(bad, 0);
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	}
}

TEST(range_nd_bad_arguments)
{
	struct box b = { 0 };
	mr_dim_t d[MR_ND_MAX + 1] = { { 0, 4, 0 }, { 5, 2, 0 } };
	struct mr_loop_opts bad = { .sz = 1 };

	EXPECT_EQ(mr_parallel_for_2d(0, 4, 0, 0, 4, 0, NULL, &b), -EINVAL);
	EXPECT_EQ(mr_parallel_for_2d(5, 4, 0, 0, 4, 0, visit2d, &b), -EINVAL);
	EXPECT_EQ(mr_parallel_for_2d(0, 4, 0, 9, 4, 0, visit2d, &b), -EINVAL);
	EXPECT_EQ(mr_parallel_for_nd(2, d, visit_nd, &b, NULL), -EINVAL);
	EXPECT_EQ(mr_parallel_for_nd(0, d, visit_nd, &b, NULL), -EINVAL);
	EXPECT_EQ(mr_parallel_for_nd(MR_ND_MAX + 1, d, visit_nd, &b, NULL), -EINVAL);
	EXPECT_EQ(mr_parallel_for_nd(1, NULL, visit_nd, &b, NULL), -EINVAL);
	EXPECT_EQ(mr_parallel_for_nd(1, d, NULL, &b, NULL), -EINVAL);
	EXPECT_EQ(mr_parallel_for_nd(1, d, visit_nd, &b, &bad), -EINVAL);
	EXPECT_EQ(atomic_load(&b.tiles), 0);
}

TEST_HARNESS_MAIN
