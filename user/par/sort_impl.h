/*
 * sort_impl.h - the body of the sorts of sort.c, included once per element
 * size class: SZ is the element size (a constant for the fast paths, so
 * that a move is one load and one store; s->size for the generic one) and
 * F(name) names this instance's functions. FIXED is defined when SZ is a
 * constant: the instance may then keep an element in a local variable;
 * the generic one moves elements only by swapping, so that no element of
 * unknown size is ever copied to the stack.
 *
 * Every loop that scans for a comparison result is bounded by the range as
 * well, so a comparator that is not a consistent order (a user bug) gives
 * an unsorted array, never an access outside it.
 *
 * CMP(x, y) compares two elements (qsort's sign). The typed instances
 * also define KEY(p), the key of the element at p, of type KEYT, so that
 * the partition loads the pivot's key once.
 */

#define AT(p, i) ((char *)(p) + (size_t)(i) * (SZ))

static inline void F(swap)(char *a, char *b, const struct srt *s)
{
#ifdef FIXED
	unsigned char t[SZ];
	memcpy(t, a, SZ);
	memcpy(a, b, SZ);
	memcpy(b, t, SZ);
#else
	size_t k = SZ;
	for (; k >= 8; k -= 8, a += 8, b += 8) {
		uint64_t x, y;
		memcpy(&x, a, 8);
		memcpy(&y, b, 8);
		memcpy(a, &y, 8);
		memcpy(b, &x, 8);
	}
	for (; k; k--, a++, b++) {
		char x = *a;
		*a = *b;
		*b = x;
	}
#endif
	(void)s;
}

/* Stable insertion sort of a[0..n). */
static void F(insertion)(char *a, size_t n, const struct srt *s)
{
	for (size_t i = 1; i < n; i++) {
#ifdef FIXED
		unsigned char t[SZ];
		size_t j = i;
		if (CMP(AT(a, i - 1), AT(a, i)) <= 0)
			continue;
		memcpy(t, AT(a, i), SZ);
		do {
			memcpy(AT(a, j), AT(a, j - 1), SZ);
			j--;
		} while (j > 0 && CMP(AT(a, j - 1), t) > 0);
		memcpy(AT(a, j), t, SZ);
#else
		for (size_t j = i; j > 0 && CMP(AT(a, j - 1), AT(a, j)) > 0; j--)
			F(swap)(AT(a, j - 1), AT(a, j), s);
#endif
	}
}

static void F(sift)(char *a, size_t root, size_t n, const struct srt *s)
{
	for (;;) {
		size_t c = 2 * root + 1;
		if (c >= n)
			return;
		if (c + 1 < n && CMP(AT(a, c), AT(a, c + 1)) < 0)
			c++;
		if (CMP(AT(a, root), AT(a, c)) >= 0)
			return;
		F(swap)(AT(a, root), AT(a, c), s);
		root = c;
	}
}

/* The fallback of an introsort whose partitions keep going bad. */
static void F(heapsort)(char *a, size_t n, const struct srt *s)
{
	for (size_t i = n / 2; i-- > 0;)
		F(sift)(a, i, n, s);
	for (size_t end = n; end-- > 1;) {
		F(swap)(a, AT(a, end), s);
		F(sift)(a, 0, end, s);
	}
}

static inline size_t F(median3)(char *a, size_t i, size_t j, size_t k, const struct srt *s)
{
	if (CMP(AT(a, i), AT(a, j)) < 0) {
		if (CMP(AT(a, j), AT(a, k)) < 0)
			return j;
		return CMP(AT(a, i), AT(a, k)) < 0 ? k : i;
	}
	if (CMP(AT(a, i), AT(a, k)) < 0)
		return i;
	return CMP(AT(a, j), AT(a, k)) < 0 ? k : j;
}

/* The index of the pivot: a median of three, or of nine from NINTHER_MIN. */
static size_t F(pivot)(char *a, size_t n, const struct srt *s)
{
	if (n >= NINTHER_MIN) {
		size_t e = n / 8;
		size_t m1 = F(median3)(a, 0, e, 2 * e, s);
		size_t m2 = F(median3)(a, n / 2 - e, n / 2, n / 2 + e, s);
		size_t m3 = F(median3)(a, n - 1 - 2 * e, n - 1 - e, n - 1, s);
		return F(median3)(a, m1, m2, m3, s);
	}
	return F(median3)(a, 0, n / 2, n - 1, s);
}

/*
 * Every instance partitions in blocks, as BlockQuicksort (Edelkamp and
 * Weiss, 2016) and pdqsort do: the comparisons of a block of BLK elements
 * on each side are made first, branch-free, recording the offsets of the
 * elements on the wrong side, and then those are swapped in pairs. A
 * Hoare scan mispredicts its loop branch on about every other random key;
 * with the comparison inlined (typed) that branch was most of the time,
 * and through a pointer it still cost a third (callgrind and wall clock:
 * see the commit). Elements equal to the pivot go right, so a run of
 * equal keys would make every partition lopsided: as pdqsort does, a
 * range whose pivot equals the element just left of it (its predecessor,
 * <= all of it) puts the keys equal to the pivot first, in one pass, and
 * goes on with the rest only.
 *
 * LT_PV(x) is x < pivot and PV_LT(x) pivot < x, the pivot being the
 * element at pvp (which the block loop does not move); the typed
 * instances load its key once into pv.
 */
#ifdef KEY
#define PV_DECL KEYT pv = KEY(pvp)
#define LT_PV(x) (KEY(x) < pv)
#define PV_LT(x) (pv < KEY(x))
#else
#define PV_DECL (void)0
#define LT_PV(x) (CMP((x), pvp) < 0)
#define PV_LT(x) (CMP(pvp, (x)) < 0)
#endif
#define BLK 64

/* Returns k: a[0..k) < *pvp <= a[k..n); pvp outside the range. */
static size_t F(bsplit)(char *a, size_t n, const char *pvp, const struct srt *s)
{
	PV_DECL;
	size_t l = 0, r = n, nl = 0, nr = 0, sl = 0, sr = 0, bl = BLK, br = BLK;
	unsigned char offl[BLK], offr[BLK];

	for (;;) {
		/* The last round: the blocks shrink to cover what is left,
		 * a pending block (some of its swaps not done) keeping its size. */
		bool last = r - l <= 2 * BLK;
		if (last) {
			if (nl)
				br = r - l - BLK;
			else if (nr)
				bl = r - l - BLK;
			else
				bl = (r - l) / 2, br = r - l - bl;
		}
		if (nl == 0) {
			sl = 0;
			for (unsigned i = 0; i < bl; i++) {
				offl[nl] = (unsigned char)i;
				nl += !LT_PV(AT(a, l + i));
			}
		}
		if (nr == 0) {
			sr = 0;
			for (unsigned i = 0; i < br; i++) {
				offr[nr] = (unsigned char)i;
				nr += LT_PV(AT(a, r - 1 - i));
			}
		}
		size_t m = nl < nr ? nl : nr;
		for (size_t k = 0; k < m; k++)
			F(swap)(AT(a, l + offl[sl + k]), AT(a, r - 1 - offr[sr + k]), s);
		nl -= m;
		nr -= m;
		sl += m;
		sr += m;
		if (nl == 0)
			l += bl;
		if (nr == 0)
			r -= br;
		if (last)
			break;
	}
	/* a[0..l) < pivot <= a[r..n), and l == r unless one block still has
	 * elements on the wrong side: move them to its far end. */
	if (nl) {
		for (size_t k = nl; k-- > 0;)
			F(swap)(AT(a, l + offl[sl + k]), AT(a, --r), s);
		l = r;
	} else if (nr) {
		for (size_t k = nr; k-- > 0;)
			F(swap)(AT(a, r - 1 - offr[sr + k]), AT(a, l++), s);
	}
	return l;
}

/* Partition a[0..n) around the pivot in a[0]: a[0..p) < a[p] <= a[p+1..n). */
static size_t F(bpartition)(char *a, size_t n, const struct srt *s)
{
	size_t p = F(bsplit)(AT(a, 1), n - 1, a, s);
	F(swap)(a, AT(a, p), s);
	return p;
}

/* All of a[0..n) are >= the pivot in a[0]: the ones equal to it first. */
static size_t F(lpartition)(char *a, size_t n, const struct srt *s)
{
	const char *pvp = a;
	PV_DECL;
	size_t i = 1, j = n;

	while (i < j) {
		if (!PV_LT(AT(a, i))) {
			i++;
		} else {
			j--;
			F(swap)(AT(a, i), AT(a, j), s);
		}
	}
	return i; /* a[0..i) equal the pivot */
}
#undef BLK
#undef PV_DECL
#undef LT_PV
#undef PV_LT

/*
 * One partition step of a[0..n) with predecessor pred (NULL: none).
 * Returns the pivot's place p, or sets *skip to how many leading elements
 * are in place (equal to the predecessor) and returns SIZE_MAX.
 */
static inline size_t F(step)(char *a, size_t n, const char *pred, size_t *skip,
			     const struct srt *s)
{
	F(swap)(a, AT(a, F(pivot)(a, n, s)), s);
	if (pred && CMP(pred, a) >= 0) {
		*skip = F(lpartition)(a, n, s);
		return SIZE_MAX;
	}
	return F(bpartition)(a, n, s);
}

/* Sequential introsort: recurse into the smaller side, loop on the larger. */
static void F(introsort)(char *a, size_t n, unsigned depth, const struct srt *s,
			 const char *pred)
{
	while (n > INSERTION_MAX) {
		if (depth == 0) {
			F(heapsort)(a, n, s);
			return;
		}
		depth--;
		size_t skip = 0, p = F(step)(a, n, pred, &skip, s);
		if (p == SIZE_MAX) {
			a = AT(a, skip);
			n -= skip;
		} else if (p < n - 1 - p) {
			F(introsort)(a, p, depth, s, pred);
			pred = AT(a, p);
			a = AT(a, p + 1);
			n = n - 1 - p;
		} else {
			F(introsort)(AT(a, p + 1), n - 1 - p, depth, s, AT(a, p));
			n = p;
		}
	}
	F(insertion)(a, n, s);
}

/* Parallel partition of t->a[0..n) around *pv by t->ways workers. */
static void F(ppart)(void *arg)
{
	struct ptask *t = arg;
	const struct srt *s = t->s;

	if (t->ways < 2 || t->n < 2 * PPART_MIN) {
		t->k = F(bsplit)(t->a, t->n, t->pv, s);
		return;
	}
	size_t h = t->n / 2;
	struct ptask l = { t->a, h, t->pv, t->ways / 2, 0, s };
	struct ptask r = { AT(t->a, h), t->n - h, t->pv, t->ways - t->ways / 2, 0, s };
	mr_join(F(ppart), &l, F(ppart), &r);
	/* [ < | >= ][ < | >= ]: swap the smaller middle piece across. */
	size_t r1 = h - l.k, l2 = r.k, m = r1 < l2 ? r1 : l2;
	struct btask b = { AT(t->a, l.k), AT(t->a, h + l2 - m), m * (SZ) };
	swap_blocks(&b);
	t->k = l.k + l2;
}

/* Parallel quicksort: partition here, sort both sides with mr_join. */
/* (Unused by the typed and keyed instances, which sort by radix.) */
static __attribute__((unused)) void F(psort)(void *arg)
{
	struct stask *t = arg;
	const struct srt *s = t->s;
	size_t p;

	if (sort_stopped(s))
		return;
	if (t->n <= PAR_MIN || t->depth == 0) {
		F(introsort)(t->a, t->n, t->depth, s, t->pred);
		return;
	}
	if (t->ways > 1 && t->n >= 2 * PPART_MIN) {
		/* The pivot to a[0], the rest split by the workers, then the
		 * pivot to its place: the last of the elements below it. */
		F(swap)(t->a, AT(t->a, F(pivot)(t->a, t->n, s)), s);
		struct ptask pt = { AT(t->a, 1), t->n - 1, t->a, t->ways, 0, s };
		F(ppart)(&pt);
		p = pt.k;
		F(swap)(t->a, AT(t->a, p), s);
	} else {
		size_t skip = 0;
		p = F(step)(t->a, t->n, t->pred, &skip, s);
		if (p == SIZE_MAX) {
			struct stask rest = { AT(t->a, skip), NULL, t->n - skip, t->depth - 1,
					      false, s, t->ways, t->pred };
			F(psort)(&rest);
			return;
		}
	}
	unsigned wl = t->ways / 2 ? t->ways / 2 : 1, wr = t->ways - t->ways / 2;
	struct stask l = { t->a, NULL, p, t->depth - 1, false, s, wl, t->pred };
	struct stask r = { AT(t->a, p + 1), NULL, t->n - 1 - p, t->depth - 1, false, s, wr,
			   AT(t->a, p) };
	mr_join(F(psort), &l, F(psort), &r);
}

/* ---- stable: merge sort through a buffer of n elements ---- */

/* Merge a[0..na) and b[0..nb) into d; on ties a's element goes first. */
static void F(merge)(const char *a, size_t na, const char *b, size_t nb, char *d,
		     const struct srt *s)
{
	/* Already in order (sorted input, or the halves do not interleave). */
	if (na && nb && CMP(AT(a, na - 1), b) <= 0) {
		memcpy(d, a, na * (SZ));
		memcpy(AT(d, na), b, nb * (SZ));
		return;
	}
	/* Branch-free: which run gives the next element is a coin toss on
	 * random input, so a branch on it mispredicts half the time; the
	 * pointer is selected instead and both runs advance by 0 or 1. */
	while (na && nb) {
#ifdef KEY
		size_t tb = KEY(b) < KEY(a);
#else
		size_t tb = CMP(b, a) < 0;
#endif
		memcpy(d, tb ? b : a, SZ);
		b = AT(b, tb);
		nb -= tb;
		a = AT(a, 1 - tb);
		na -= 1 - tb;
		d = AT(d, 1);
	}
	if (na)
		memcpy(d, a, na * (SZ));
	else if (nb)
		memcpy(d, b, nb * (SZ));
}

/* First index of b[0..n) whose element is not less than x (upper: greater). */
static size_t F(bound)(const char *b, size_t n, const char *x, bool upper, const struct srt *s)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = CMP(AT(b, mid), x);
		if (upper ? c <= 0 : c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * Parallel merge: split the longer run at its middle element x, find where
 * x falls in the other (before the other's equal keys when x is from the
 * left run, after them when from the right, which keeps ties in order),
 * and merge the two pairs of pieces side by side.
 */
static void F(pmerge)(void *arg)
{
	struct mtask *t = arg;
	const struct srt *s = t->s;
	size_t i, j;

	if (t->na + t->nb <= PAR_MERGE_MIN) {
		F(merge)(t->a, t->na, t->b, t->nb, t->d, s);
		return;
	}
	if (t->na >= t->nb) {
		i = t->na / 2;
		j = F(bound)(t->b, t->nb, AT(t->a, i), false, s);
	} else {
		j = t->nb / 2;
		i = F(bound)(t->a, t->na, AT(t->b, j), true, s);
	}
	struct mtask l = { t->a, i, t->b, j, t->d, s };
	struct mtask r = { AT(t->a, i), t->na - i, AT(t->b, j), t->nb - j, AT(t->d, i + j), s };
	mr_join(F(pmerge), &l, F(pmerge), &r);
}

/*
 * Sort t->a[0..n) stably, the result in a (to_b false) or in the buffer b
 * (to_b true): sort each half into the other array, then merge back.
 */
__attribute__((unused)) /* the typed instances sort unstably only */
static void F(msort)(void *arg)
{
	struct stask *t = arg;
	const struct srt *s = t->s;
	size_t n = t->n, h = n / 2;

	if (n <= RUN_MAX) {
		F(insertion)(t->a, n, s);
		if (t->to_b)
			memcpy(t->b, t->a, n * (SZ));
		return;
	}
	struct stask l = { t->a, t->b, h, 0, !t->to_b, s, 1, NULL };
	struct stask r = { AT(t->a, h), AT(t->b, h), n - h, 0, !t->to_b, s, 1, NULL };
	if (n > PAR_MIN) {
		/* A range that gives up leaves its elements in a, permuted;
		 * so does one whose halves did (see sort.c). */
		if (sort_stopped(s))
			return;
		mr_join(F(msort), &l, F(msort), &r);
		if (sort_stopped(s))
			return;
	} else {
		F(msort)(&l);
		F(msort)(&r);
	}
	char *src = t->to_b ? t->a : t->b, *dst = t->to_b ? t->b : t->a;
	struct mtask m = { src, h, AT(src, h), n - h, dst, s };
	F(pmerge)(&m);
}

#undef AT
