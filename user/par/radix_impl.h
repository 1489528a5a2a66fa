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

	memcpy(h, start, sizeof(h));
	memcpy(e, start + 1, sizeof(e));
	for (unsigned round = 0; round < RPAR_ROUNDS && left >= RPAR_MIN && left > t->n / 64;
	     round++) {
		struct F(rstripe) st = { t->a, h, e, sh, 0, t->ways, t->ways, s };
		F(rstripes)(&st);
		struct F(rfix) fx = { t->a, h, e, 0, 256, sh, s, 0 };
		F(rfixup)(&fx);
		left = fx.left;
	}
	if (left)
		F(rpermute)(t->a, h, e, sh, s);
}

static void F(rsort)(void *arg);

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
		struct rbk l = { k->a, st, k->lo, m, k->shift, k->ways, k->whole, k->s };
		struct rbk r = { k->a, st, m, k->hi, k->shift, k->ways, k->whole, k->s };
		mr_join(F(rbuckets), &l, F(rbuckets), &r);
		return;
	}
	for (unsigned b = k->lo; b < k->hi; b++) {
		size_t n = st[b + 1] - st[b];
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
	struct rbk k = { t->a, start, 0, 256, (unsigned)sh - 8, t->ways, t->n, s };
	F(rbuckets)(&k);
}

/* The root: a stask from sort.c, sorted from the top digit. */
static void F(radix)(void *arg)
{
	struct stask *r = arg;
	struct rtask t = { r->a, r->n, RBITS - 8, r->ways, r->s };

	F(rsort)(&t);
}

#undef AT
