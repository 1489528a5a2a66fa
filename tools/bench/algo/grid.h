/*
 * grid.h - the tile of the 2-D benchmark, shared by grid.c and grid.cpp so
 * that only the scheduling differs: out = transpose(in) for an N x N
 * matrix of doubles, a tile [r0, r1) x [c0, c1) at a time. Tiles of 64 x
 * 64 keep the rows read and the columns written in the cache; a 1-D split
 * by rows would stream a whole column range per row. The check is a sum
 * of sampled outputs (in[i][j] = i * N + j exactly).
 */
#ifndef MOIRAI_BENCH_GRID_H
#define MOIRAI_BENCH_GRID_H

#include <stddef.h>
#include <stdint.h>

#define GRID_TILE 64

struct grid {
	const double *in;
	double *out;
	size_t n;
};

static inline void grid_tile(const struct grid *g, size_t r0, size_t r1, size_t c0, size_t c1)
{
	for (size_t i = r0; i < r1; i++)
		for (size_t j = c0; j < c1; j++)
			g->out[j * g->n + i] = g->in[i * g->n + j];
}

static inline uint64_t grid_check(const struct grid *g)
{
	uint64_t s = 0;
	for (size_t k = 0; k < g->n; k++)
		s += (uint64_t)g->out[k * g->n + (k * 13) % g->n];
	return s;
}

#endif /* MOIRAI_BENCH_GRID_H */
