/*
 * kernels.h - the divide-and-conquer kernels of the join benchmark, written
 * once and compiled twice by join.c: with JOIN() a plain pair of calls (the
 * sequential recursion, suffix _seq) and with JOIN() mr_join (suffix _par).
 * Every kernel takes its argument through a struct, as a function run by
 * mr_join must; CUT(x) is the hand-written cut-off test, and with the
 * cut-off the _par kernel calls the _seq one below it.
 *
 *   fib      fib(n), both calls kept; cut-off: n < cut runs fib_seq()
 *   queens   n-queens solutions, the free columns of a row split in halves
 *            (a binary tree over the candidates); cut-off: the last `cut`
 *            rows run sequentially
 *   msort    merge sort of n 32-bit keys, halves joined, sequential merge;
 *            without a cut-off down to one element, with it below `cut`
 *            elements the sequential recursion
 *   uts      an unbalanced tree (a node's child count from a hash of its
 *            id: most nodes are leaves, a few have 4 children, so the
 *            subtrees differ wildly in size) counted by a join over each
 *            node's children; cut-off: below depth `cut`, sequential
 *   matmul   C += A * B for n x n doubles, recursive quadrants, four
 *            products in parallel twice, down to 8 x 8 blocks; cut-off:
 *            at most `cut` x `cut`, the sequential recursion
 */
#ifndef K
#error "include from join.c with K() and JOIN() defined"
#endif

/* Without a cut-off: exactly tools/bench/moirai.c's fib (a cut field it
 * never reads cost ~10% more instructions per join). */
struct K(fib) {
	int n;
	long r;
};

static void K(fib_run)(void *p)
{
	struct K(fib) *f = p;

	if (f->n < 2) {
		f->r = f->n;
		return;
	}
	struct K(fib) a = { f->n - 1, 0 }, b = { f->n - 2, 0 };
	JOIN(K(fib_run), &a, K(fib_run), &b);
	f->r = a.r + b.r;
}

struct K(fibc) {
	int n, cut;
	long r;
};

static void K(fibc_run)(void *p)
{
	struct K(fibc) *f = p;

	if (f->n < 2 || CUT(f->n < f->cut)) {
		f->r = fib_seq(f->n);
		return;
	}
	struct K(fibc) a = { f->n - 1, f->cut, 0 }, b = { f->n - 2, f->cut, 0 };
	JOIN(K(fibc_run), &a, K(fibc_run), &b);
	f->r = a.r + b.r;
}

/* ---- queens ---- */

struct K(queens) {
	int n, row, cut;
	uint32_t cols, d1, d2, avail; /* avail: columns still to try in this row */
	long r;
};

static void K(queens_run)(void *p)
{
	struct K(queens) *q = p;
	uint32_t all = (1u << q->n) - 1;

	if (q->row == q->n) {
		q->r = 1;
		return;
	}
	if (CUT(q->n - q->row <= q->cut)) {
		q->r = queens_seq_rows(q);
		return;
	}
	if (!q->avail) {
		q->r = 0;
		return;
	}
	if (!(q->avail & (q->avail - 1))) { /* one column: place it */
		uint32_t bit = q->avail;
		struct K(queens) c = { q->n, q->row + 1, q->cut, q->cols | bit, (q->d1 | bit) << 1,
				       (q->d2 | bit) >> 1, 0, 0 };
		c.avail = all & ~(c.cols | c.d1 | c.d2);
		K(queens_run)(&c);
		q->r = c.r;
		return;
	}
	/* Split the candidates: the lower half of the set bits, the rest. */
	int k = __builtin_popcount(q->avail) / 2;
	uint32_t lo = 0, rest = q->avail;
	for (int i = 0; i < k; i++) {
		uint32_t bit = rest & -rest;
		lo |= bit;
		rest &= rest - 1;
	}
	struct K(queens) a = *q, b = *q;
	a.avail = lo;
	b.avail = rest;
	JOIN(K(queens_run), &a, K(queens_run), &b);
	q->r = a.r + b.r;
}

/* ---- msort ---- */

struct K(msort) {
	uint32_t *a, *tmp;
	size_t n, cut;
};

static void K(msort_run)(void *p)
{
	struct K(msort) *m = p;

	if (m->n < 2)
		return;
	if (CUT(m->n < m->cut)) {
		msort_seq(m->a, m->tmp, m->n);
		return;
	}
	size_t h = m->n / 2;
	struct K(msort) l = { m->a, m->tmp, h, m->cut }, r = { m->a + h, m->tmp + h, m->n - h, m->cut };
	JOIN(K(msort_run), &l, K(msort_run), &r);
	merge(m->a, h, m->n, m->tmp);
}

/* ---- uts ---- */

struct K(uts) {
	uint64_t id;
	int depth, cut;
	uint32_t lo, hi; /* children [lo, hi) of id to count */
	long r;
};

static void K(uts_run)(void *p)
{
	struct K(uts) *u = p;

	if (CUT(u->depth >= u->cut)) {
		u->r = uts_seq_children(u->id, u->depth, u->lo, u->hi);
		return;
	}
	if (u->hi - u->lo == 1) {
		uint64_t c = uts_child(u->id, u->lo);
		struct K(uts) s = { c, u->depth + 1, u->cut, 0, uts_nchildren(c, u->depth + 1), 0 };
		s.r = 0;
		if (s.hi)
			K(uts_run)(&s);
		u->r = 1 + s.r;
		return;
	}
	uint32_t mid = u->lo + (u->hi - u->lo) / 2;
	struct K(uts) a = *u, b = *u;
	a.hi = mid;
	b.lo = mid;
	JOIN(K(uts_run), &a, K(uts_run), &b);
	u->r = a.r + b.r;
}

/* ---- matmul ---- */

#define MM_BASE 8

struct K(mm) {
	double *c;
	const double *a, *b;
	size_t n, ld, cut;
};

static void K(mm_run)(void *p);

struct K(mm2) {
	struct K(mm) x, y;
};

static void K(mm_pair)(void *p)
{
	struct K(mm2) *q = p;
	JOIN(K(mm_run), &q->x, K(mm_run), &q->y);
}

static void K(mm_run)(void *p)
{
	struct K(mm) *m = p;

	if (m->n <= MM_BASE) {
		mm_block(m->c, m->a, m->b, m->n, m->ld);
		return;
	}
	if (CUT(m->n <= m->cut)) {
		struct mm_seq s = { m->c, m->a, m->b, m->n, m->ld, 0 };
		mm_run_seq(&s);
		return;
	}
	size_t h = m->n / 2, ld = m->ld;
	double *c11 = m->c, *c12 = m->c + h, *c21 = m->c + h * ld, *c22 = c21 + h;
	const double *a11 = m->a, *a12 = m->a + h, *a21 = m->a + h * ld, *a22 = a21 + h;
	const double *b11 = m->b, *b12 = m->b + h, *b21 = m->b + h * ld, *b22 = b21 + h;
	/* C11 += A11 B11, C12 += A11 B12, C21 += A21 B11, C22 += A21 B12; then the
	 * same with A12/A22 and B21/B22: each quadrant of C written by one task
	 * at a time. */
	struct K(mm2) s = { { c11, a11, b11, h, ld, m->cut }, { c12, a11, b12, h, ld, m->cut } },
		      t = { { c21, a21, b11, h, ld, m->cut }, { c22, a21, b12, h, ld, m->cut } };
	JOIN(K(mm_pair), &s, K(mm_pair), &t);
	struct K(mm2) u = { { c11, a12, b21, h, ld, m->cut }, { c12, a12, b22, h, ld, m->cut } },
		      v = { { c21, a22, b21, h, ld, m->cut }, { c22, a22, b22, h, ld, m->cut } };
	JOIN(K(mm_pair), &u, K(mm_pair), &v);
}
