/*
 * radix_impl.h - the in-place radix sort of sort.c's typed and keyed
 * unstable sorts, included once per instance after sort_impl.h, with the
 * same SZ, F(name) and FIXED, and RKEY(p): the key of the element at p as
 * a uint64_t that orders as the keys do (the sign bit flipped for signed
 * types), of RBITS significant bits (32 or 64).
 *
 * A most-significant-digit-first radix sort on bytes (an American flag
 * sort). A range of more than RADIX_MIN elements counts its keys' digits
 * at the current shift, then moves every element into its digit's bucket
 * by following cycles: each element is read once and written once, and
 * 256 write heads stay in cache. Each bucket is then sorted on the next
 * digit; ranges of RADIX_MIN elements or fewer are left to the introsort.
 * The count also ORs every key's difference from the range's first key:
 * the digits that all the keys of a range share are skipped without a
 * pass (keys that fit in 32 bits cost the same as 32-bit keys), and a
 * range of equal keys is done once counted. At most RBITS / 8 levels:
 * O(n * RBITS / 8) moves whatever the keys.
 *
 * Parallel: the buckets of a range are sorted with mr_join, split where
 * their elements divide in half, so each range distributes alone and its
 * buckets spread over the workers; a range that ways workers share counts
 * its digits in ways pieces at once. The distribution itself is one pass
 * on one worker.
 */

#define AT(p, i) ((char *)(p) + (size_t)(i) * (SZ))

/* Count RKEY's digit at h->shift over h->a[0..n), in h->ways pieces. */
static void F(rcount)(void *arg)
{
	struct rhist *h = arg;
	const struct srt *s = h->s;
	const unsigned sh = h->shift;
	const uint64_t k0 = h->k0;

	if (h->ways > 1 && h->n >= 2 * RHIST_PAR_MIN) {
		size_t m = h->n / 2;
		struct rhist l = { h->a, m, sh, h->ways / 2, s, k0, 0, { 0 } };
		struct rhist r = { AT(h->a, m), h->n - m, sh, h->ways - h->ways / 2, s, k0, 0, { 0 } };
		mr_join(F(rcount), &l, F(rcount), &r);
		for (unsigned b = 0; b < 256; b++)
			h->cnt[b] = l.cnt[b] + r.cnt[b];
		h->diff = l.diff | r.diff;
		return;
	}
	uint32_t c[4][256];
	uint64_t diff = 0;
	const char *p = h->a;
	size_t left = h->n;

	memset(h->cnt, 0, sizeof(h->cnt));
	if (left < RCOUNT_SMALL) {
		/* A short range: one table (the others cost more to clear). */
		for (size_t i = 0; i < left; i++) {
			uint64_t x = RKEY(AT(p, i));
			h->cnt[(x >> sh) & 255]++;
			diff |= x ^ k0;
		}
		h->diff = diff;
		return;
	}
	/* Four tables, so that runs of one digit do not wait on each other's
	 * increments; flushed into the size_t totals every 2^30 elements. */
	while (left) {
		size_t n = left < ((size_t)1 << 30) ? left : (size_t)1 << 30, i = 0;
		memset(c, 0, sizeof(c));
		for (; i + 4 <= n; i += 4) {
			uint64_t x0 = RKEY(AT(p, i)), x1 = RKEY(AT(p, i + 1));
			uint64_t x2 = RKEY(AT(p, i + 2)), x3 = RKEY(AT(p, i + 3));
			c[0][(x0 >> sh) & 255]++;
			c[1][(x1 >> sh) & 255]++;
			c[2][(x2 >> sh) & 255]++;
			c[3][(x3 >> sh) & 255]++;
			diff |= (x0 ^ k0) | (x1 ^ k0) | (x2 ^ k0) | (x3 ^ k0);
		}
		for (; i < n; i++) {
			uint64_t x = RKEY(AT(p, i));
			c[0][(x >> sh) & 255]++;
			diff |= x ^ k0;
		}
		for (unsigned b = 0; b < 256; b++)
			h->cnt[b] += (size_t)c[0][b] + c[1][b] + c[2][b] + c[3][b];
		p = AT(p, n);
		left -= n;
	}
	h->diff = diff;
	(void)s;
}

/*
 * Move the elements of the regions a[from[b]..to[b]) into their buckets'
 * regions: follow each misplaced element to its bucket's next free place,
 * pick up what was there, and so on. When each region has room for all
 * the elements of its digit (rsort's case) all end in place. Otherwise
 * (rdistribute's stripes) an element whose bucket has no room left stays
 * in the hole it came out of: out of place, for the caller to find.
 */
static __attribute__((noinline)) void F(rpermute)(char *a, const size_t *from, const size_t *to,
						  unsigned sh, const struct srt *s)
{
	size_t head[256];

	memcpy(head, from, sizeof(head));
	for (unsigned b = 0; b < 256; b++) {
		const size_t end = to[b];
#ifdef FIXED
		/*
		 * RCHAINS cycles at once, so that their loads overlap: each
		 * takes a hole at the front of bucket b and carries its
		 * element on until it carries one of b (or one without room),
		 * which fills the hole. No chain writes into bucket b, so the
		 * holes stay theirs; each place elsewhere is taken by one chain.
		 */
		while (end - head[b] >= RCHAINS) {
			size_t hole[RCHAINS];
			unsigned char v[RCHAINS][SZ];
			unsigned d[RCHAINS];
			bool live = false;
#pragma GCC unroll 8
			for (unsigned i = 0; i < RCHAINS; i++) {
				hole[i] = head[b]++;
				memcpy(v[i], AT(a, hole[i]), SZ);
				d[i] = (unsigned)(RKEY(v[i]) >> sh) & 255;
				live |= d[i] != b;
			}
			while (live) {
				live = false;
#pragma GCC unroll 8
				for (unsigned i = 0; i < RCHAINS; i++) {
					if (d[i] == b)
						continue;
					if (head[d[i]] >= to[d[i]]) {
						d[i] = b; /* no room: stays */
						continue;
					}
					unsigned char t[SZ];
					char *q = AT(a, head[d[i]]++);
					/* 256 write streams are more than the
					 * hardware tracks: fetch ahead. */
					__builtin_prefetch(q + RPF_BYTES, 1);
					memcpy(t, q, SZ);
					memcpy(q, v[i], SZ);
					memcpy(v[i], t, SZ);
					d[i] = (unsigned)(RKEY(v[i]) >> sh) & 255;
					live |= d[i] != b;
				}
			}
#pragma GCC unroll 8
			for (unsigned i = 0; i < RCHAINS; i++)
				memcpy(AT(a, hole[i]), v[i], SZ);
		}
		while (head[b] < end) {
			unsigned char v[SZ], t[SZ];
			memcpy(v, AT(a, head[b]), SZ);
			unsigned d = (unsigned)(RKEY(v) >> sh) & 255;
			while (d != b && head[d] < to[d]) {
				char *q = AT(a, head[d]++);
				__builtin_prefetch(q + RPF_BYTES, 1);
				memcpy(t, q, SZ);
				memcpy(q, v, SZ);
				memcpy(v, t, SZ);
				d = (unsigned)(RKEY(v) >> sh) & 255;
			}
			memcpy(AT(a, head[b]++), v, SZ);
		}
#else
		while (head[b] < end) {
			char *p = AT(a, head[b]);
			unsigned d = (unsigned)(RKEY(p) >> sh) & 255;
			if (d == b || head[d] >= to[d])
				head[b]++;
			else
				F(swap)(p, AT(a, head[d]++), s);
		}
#endif
	}
	(void)s;
}

/*
 * The parallel distribution of a long range that several workers share.
 * Each round splits what is left of every bucket's region into one stripe
 * per worker, and each worker moves elements between its own stripes as
 * rpermute does, but only while the target stripe has room: an element it
 * cannot place stays where it was. Then each bucket's region is
 * partitioned into the elements that belong there and the rest, which the
 * next round (or, once few are left, rpermute) distributes. On random keys
 * the first round leaves about sqrt(n) elements; a round that the input
 * defeats costs one pass, and there are at most RPAR_ROUNDS.
 */
struct F(rstripe) {
	char *a;
	const size_t *h, *e; /* what is left of each bucket's region */
	unsigned sh, i, cnt; /* workers i .. i + cnt - 1 */
	unsigned p;
	const struct srt *s;
};

/* Where stripe i of p of [h, e) starts. */
static inline size_t F(rcut)(size_t h, size_t e, unsigned i, unsigned p)
{
	size_t len = e - h, q = len / p, r = len % p;
	return h + q * i + (i < r ? i : r);
}

static void F(rstripe_run)(const struct F(rstripe) *t)
{
	size_t hi[256], ei[256];

	for (unsigned b = 0; b < 256; b++) {
		hi[b] = F(rcut)(t->h[b], t->e[b], t->i, t->p);
		ei[b] = F(rcut)(t->h[b], t->e[b], t->i + 1, t->p);
	}
	F(rpermute)(t->a, hi, ei, t->sh, t->s);
}

static void F(rstripes)(void *arg)
{
	struct F(rstripe) *t = arg;

	if (t->cnt == 1) {
		F(rstripe_run)(t);
		return;
	}
	struct F(rstripe) l = *t, r = *t;
	l.cnt = t->cnt / 2;
	r.i = t->i + l.cnt;
	r.cnt = t->cnt - l.cnt;
	mr_join(F(rstripes), &l, F(rstripes), &r);
}

/* Buckets [lo, hi): what is left of each region, its own digit first. */
struct F(rfix) {
	char *a;
	size_t *h;
	const size_t *e;
	unsigned lo, hi, sh;
	const struct srt *s;
	size_t left; /* out: elements still out of place */
};

static void F(rfixup)(void *arg)
{
	struct F(rfix) *k = arg;
	const struct srt *s = k->s;
	const unsigned sh = k->sh;
	size_t total = 0;

	for (unsigned b = k->lo; b < k->hi; b++)
		total += k->e[b] - k->h[b];
	if (k->hi - k->lo > 1 && total > PAR_MIN) {
		unsigned m = k->lo + (k->hi - k->lo) / 2;
		struct F(rfix) l = *k, r = *k;
		l.hi = m;
		r.lo = m;
		mr_join(F(rfixup), &l, F(rfixup), &r);
		k->left = l.left + r.left;
		return;
	}
	k->left = 0;
	for (unsigned b = k->lo; b < k->hi; b++) {
		size_t i = k->h[b], j = k->e[b];
		for (;;) {
			while (i < j && ((RKEY(AT(k->a, i)) >> sh) & 255) == b)
				i++;
			while (i < j && ((RKEY(AT(k->a, j - 1)) >> sh) & 255) != b)
				j--;
			if (j - i < 2)
				break;
			F(swap)(AT(k->a, i), AT(k->a, j - 1), s);
			i++;
			j--;
		}
		k->h[b] = i;
		k->left += k->e[b] - i;
	}
}

static __attribute__((noinline)) void F(rdistribute)(const struct rtask *t, const size_t *start,
						     unsigned sh)
{
	const struct srt *s = t->s;
	size_t h[256], e[256], left = t->n;
	/* Stripes of RPAR_PIECE elements at least per worker: thinner ones
	 * leave more out of place than they place. */
	unsigned p = t->n / RPAR_PIECE < t->ways ? (unsigned)(t->n / RPAR_PIECE) : t->ways;

	memcpy(h, start, sizeof(h));
	memcpy(e, start + 1, sizeof(e));
	for (unsigned round = 0;
	     p > 1 && round < RPAR_ROUNDS && left >= RPAR_MIN && left > t->n / 64; round++) {
		struct F(rstripe) st = { t->a, h, e, sh, 0, p, p, s };
		F(rstripes)(&st);
		struct F(rfix) fx = { t->a, h, e, 0, 256, sh, s, 0 };
		F(rfixup)(&fx);
		left = fx.left;
	}
	if (left)
		F(rpermute)(t->a, h, e, sh, s);
}

static void F(rsort)(void *arg);
#ifdef RSTABLE
static void F(rssort)(void *arg);
#endif

/* Sort the buckets [lo, hi) of a range on the next digit. */
static void F(rbuckets)(void *arg)
{
	struct rbk *k = arg;
	const struct srt *s = k->s; /* for SZ */
	const size_t *st = k->start;

	(void)s;
	size_t total = st[k->hi] - st[k->lo];

	if (k->hi - k->lo > 1 && total > PAR_MIN) {
		/* Split where the elements divide in half, each side non-empty. */
		unsigned m = k->lo + 1;
		while (m < k->hi - 1 && st[m + 1] - st[k->lo] <= total / 2)
			m++;
		struct rbk l = *k, r = *k;
		l.hi = m;
		r.lo = m;
		mr_join(F(rbuckets), &l, F(rbuckets), &r);
		return;
	}
	for (unsigned b = k->lo; b < k->hi; b++) {
		size_t n = st[b + 1] - st[b];
#ifdef RSTABLE
		if (k->b) {
			if (!n)
				continue;
			struct rstask t = { AT(k->a, st[b]), AT(k->b, st[b]), n, k->shift,
					    n > k->whole / 2 ? k->ways : 1, k->in_b, k->s };
			F(rssort)(&t);
			continue;
		}
#endif
		if (n < 2)
			continue;
		/* A bucket holding most of the range keeps its workers for
		 * its count (a skewed input); the others count alone. */
		struct rtask t = { AT(k->a, st[b]), n, k->shift, n > k->whole / 2 ? k->ways : 1,
				   k->s };
		F(rsort)(&t);
	}
}

/*
 * Count t's keys on the highest digit at or below t->shift where they
 * differ and fill start[0..256] with the buckets' offsets: returns that
 * digit's shift, or -1 when all the keys are equal. Not inlined: its
 * counts stay out of the frames that live while the buckets are sorted.
 */
static __attribute__((noinline)) int F(rclassify)(const struct rtask *t, size_t *start)
{
	const struct srt *s = t->s;
	struct rhist h = { t->a, t->n, t->shift, t->ways, s, RKEY(t->a), 0, { 0 } };

	F(rcount)(&h);
	if (!h.diff)
		return -1;
	/* The digits above the highest one where some keys differ are
	 * shared by every key of the range: count that one instead. */
	unsigned top = (unsigned)(63 - __builtin_clzll(h.diff)) & ~7u;
	if (top < t->shift) {
		h.shift = top;
		F(rcount)(&h);
	}
	start[0] = 0;
	for (unsigned b = 0; b < 256; b++)
		start[b + 1] = start[b] + h.cnt[b];
	return (int)h.shift;
}

static void F(rsort)(void *arg)
{
	struct rtask *t = arg;
	const struct srt *s = t->s;
	size_t start[257];

	if (sort_stopped(s))
		return;
	if (t->n <= RADIX_MIN) {
		F(introsort)(t->a, t->n, depth_budget(t->n), s, NULL);
		return;
	}
	int sh = F(rclassify)(t, start);
	if (sh < 0)
		return; /* all equal */
	if (t->ways > 1 && t->n >= RPAR_MIN)
		F(rdistribute)(t, start, (unsigned)sh);
	else
		F(rpermute)(t->a, start, start + 1, (unsigned)sh, s);
	if (sh == 0)
		return;
	struct rbk k = { t->a, start, 0, 256, (unsigned)sh - 8, t->ways, t->n, s, NULL, false };
	F(rbuckets)(&k);
}

/* The root: a stask from sort.c, sorted from the top digit. */
static void F(radix)(void *arg)
{
	struct stask *r = arg;
	struct rtask t = { r->a, r->n, RBITS - 8, r->ways, r->s };

	F(rsort)(&t);
}

#ifdef RSTABLE
/*
 * The stable radix sort (the keyed sort's MR_SORT_STABLE), through the
 * merge sort's buffer of n elements: most significant byte first, each
 * level scatters a range from the array into the buffer or back, in order,
 * so equal keys keep their order; ranges of RSTABLE_MIN elements or fewer
 * go to the merge sort, which leaves them in the array. As the unstable
 * sort, bytes shared by a whole range cost no pass and a range of equal
 * keys stops (copied back when it is in the buffer). A range of RPAR_MIN
 * elements or more that several workers share is counted in one piece per
 * worker, and each piece scatters its elements to its own places in every
 * bucket (after the pieces before it): with the scratch of 256 counts per
 * piece that the root allocates, or on one worker if it could not.
 */

/* Count (dst NULL) or scatter pieces [i, i + cnt) of src. */
static void F(rpieces)(void *arg)
{
	struct rpiece *t = arg;
	const struct srt *s = t->s;

	if (t->cnt > 1) {
		struct rpiece l = *t, r = *t;
		l.cnt = t->cnt / 2;
		r.i = t->i + l.cnt;
		r.cnt = t->cnt - l.cnt;
		mr_join(F(rpieces), &l, F(rpieces), &r);
		t->diff = l.diff | r.diff;
		return;
	}
	size_t lo = F(rcut)(0, t->n, t->i, t->p), hi = F(rcut)(0, t->n, t->i + 1, t->p);
	size_t *row = s->rscratch + (size_t)t->i * 256;
	if (!t->dst) {
		struct rhist h = { AT(t->src, lo), hi - lo, t->sh, 1, s, t->k0, 0, { 0 } };
		F(rcount)(&h);
		memcpy(row, h.cnt, sizeof(h.cnt));
		t->diff = h.diff;
		return;
	}
	for (size_t i = lo; i < hi; i++) {
		const char *e = AT(t->src, i);
		char *q = AT(t->dst, row[(RKEY(e) >> t->sh) & 255]++);
		__builtin_prefetch(q + RPF_BYTES, 1);
		memcpy(q, e, SZ);
	}
}

/*
 * Count t's source on the highest digit at or below t->shift where its
 * keys differ, fill start[0..256] and scatter it into the other array:
 * returns the digit's shift, or -1 (nothing moved) when all keys are equal.
 */
static __attribute__((noinline)) int F(rsscatter)(const struct rstask *t, size_t *start)
{
	const struct srt *s = t->s;
	const char *src = t->in_b ? t->b : t->a;
	char *dst = t->in_b ? t->a : t->b;
	unsigned p = t->ways < s->rpieces ? t->ways : s->rpieces, sh = t->shift;

	if (t->n / RPAR_PIECE < p)
		p = (unsigned)(t->n / RPAR_PIECE); /* pieces of RPAR_PIECE at least */

	if (p > 1 && t->n >= RPAR_MIN) {
		struct rpiece c = { src, NULL, t->n, sh, 0, p, p, RKEY(src), 0, s };
		F(rpieces)(&c);
		if (!c.diff)
			return -1;
		unsigned top = (unsigned)(63 - __builtin_clzll(c.diff)) & ~7u;
		if (top < sh) {
			c.sh = sh = top;
			F(rpieces)(&c);
		}
		/* Piece i's places in bucket b follow pieces 0 .. i - 1's. */
		size_t at = 0;
		start[0] = 0;
		for (unsigned b = 0; b < 256; b++) {
			for (unsigned i = 0; i < p; i++) {
				size_t *cell = s->rscratch + (size_t)i * 256 + b, n = *cell;
				*cell = at;
				at += n;
			}
			start[b + 1] = at;
		}
		c.dst = dst;
		F(rpieces)(&c);
		return (int)sh;
	}
	struct rtask rt = { (char *)src, t->n, sh, 1, s };
	int r = F(rclassify)(&rt, start);
	if (r < 0)
		return -1;
	size_t head[256];
	memcpy(head, start, sizeof(head));
	for (size_t i = 0; i < t->n; i++) {
		const char *e = AT(src, i);
		char *q = AT(dst, head[(RKEY(e) >> r) & 255]++);
		__builtin_prefetch(q + RPF_BYTES, 1);
		memcpy(q, e, SZ);
	}
	return r;
}

static void F(rssort)(void *arg)
{
	struct rstask *t = arg;
	const struct srt *s = t->s;
	size_t start[257];

	if (sort_stopped(s)) {
		/* Give up with the range's elements in the array. */
		if (t->in_b)
			memcpy(t->a, t->b, t->n * (SZ));
		return;
	}
	if (t->n <= RSTABLE_MIN) {
		/* The merge sort, from the range's array into a. */
		struct stask m = { t->in_b ? t->b : t->a, t->in_b ? t->a : t->b, t->n, 0,
				   t->in_b, s, 1, NULL };
		F(msort)(&m);
		return;
	}
	int sh = F(rsscatter)(t, start);
	if (sh < 0) {
		if (t->in_b)
			memcpy(t->a, t->b, t->n * (SZ));
		return;
	}
	/* The range is now in the other array, in buckets. */
	struct rbk k = { t->a, start, 0, 256, 0, t->ways, t->n, s, t->b, !t->in_b };
	if (sh == 0) {
		/* Each bucket holds one key: in order already. */
		if (k.in_b)
			memcpy(t->a, t->b, t->n * (SZ));
		return;
	}
	k.shift = (unsigned)sh - 8;
	F(rbuckets)(&k);
}

/* The root: a stask from sort.c (b its buffer), sorted from the top byte. */
static void F(rsradix)(void *arg)
{
	struct stask *r = arg;
	struct srt s2 = *r->s;

	if (r->n <= RUN_MAX) {
		F(msort)(r); /* no buffer below RUN_MAX */
		return;
	}
	s2.rscratch = NULL;
	s2.rpieces = 1;
	if (r->ways > 1 && r->n >= RPAR_MIN &&
	    (s2.rscratch = malloc((size_t)r->ways * 256 * sizeof(size_t))))
		s2.rpieces = r->ways;
	struct rstask t = { r->a, r->b, r->n, RBITS - 8, r->ways, false, &s2 };
	F(rssort)(&t);
	free(s2.rscratch);
}
#endif

#undef AT
