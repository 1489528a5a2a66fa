/*
 * algo_cancel.c - stopping the sort, the scan and the searches of
 * <moirai/algo.h> early (their _opts forms, with mr_loop_opts' stop or
 * group, the typed sorts and sums' too), and stops that race the end of
 * the work.
 *
 * Each case runs an algorithm on a random input of a size from 0 to
 * 100000 (around the 4096 cut-off) and stops it: before the call, from
 * inside a user function after a random number of calls (a stop flag or
 * a group's cancel), or from another thread after a random delay, which
 * races the end of the work. The rule checked is the contract: a result
 * of 0 (or an answer) is the full, right one; -ECANCELED leaves a sort's
 * array a permutation of its input and a scan's output partly written,
 * and a search gives no answer. A stop set before the call returns
 * -ECANCELED without calling the user function (for a scan: out
 * untouched). Both outcomes must be seen over the racing cases (else the
 * race was not exercised; reported, not asserted). On runtimes of 1 and
 * 2 workers, and from outside (the default runtime).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include <moirai/moirai.h>

#include "harness.h"
#include "util.h"

static const size_t sizes[] = { 0, 1, 2, 100, 4096, 4097, 9000, 30000, 100000 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

/* How a case stops: never, before the call, from a user function, racing. */
enum how { NEVER, BEFORE, INSIDE, INSIDE_GROUP, RACING, NHOW };

struct stopper {
	int stop;		/* the options' flag */
	mr_group_t group;	/* the options' group (INSIDE_GROUP) */
	enum how how;
	_Atomic long calls, after; /* user calls; INSIDE: stop after this many */
	unsigned delay_us;	/* RACING */
	pthread_t th;
};

static void stopper_trip(struct stopper *s)
{
	if (s->how == INSIDE_GROUP)
		mr_group_cancel(&s->group);
	else
		__atomic_store_n(&s->stop, 1, __ATOMIC_RELAXED);
}

/* Every user function calls this once per call. */
static inline void stopper_call(struct stopper *s)
{
	if (s->how == NEVER || s->how == RACING)
		return; /* no count: a shared counter would serialise the workers */
	long c = atomic_fetch_add_explicit(&s->calls, 1, memory_order_relaxed);
	if (s->how != BEFORE && c == s->after)
		stopper_trip(s);
}

static void *racer(void *arg)
{
	struct stopper *s = arg;
	struct timespec ts = { 0, (long)s->delay_us * 1000 };

	nanosleep(&ts, NULL);
	__atomic_store_n(&s->stop, 1, __ATOMIC_RELAXED);
	return NULL;
}

static void stopper_start(struct stopper *s, enum how how, uint64_t *seed, size_t n,
			  unsigned max_delay_us)
{
	memset(s, 0, sizeof(*s));
	s->group = (mr_group_t)MR_GROUP_INIT;
	s->how = how;
	s->after = (long)(rnd(seed) % (2 * n + 2));
	s->delay_us = (unsigned)(rnd(seed) % max_delay_us);
	if (how == BEFORE)
		s->stop = 1;
	if (how == RACING && pthread_create(&s->th, NULL, racer, s))
		abort();
}

static void stopper_opts(struct stopper *s, struct mr_loop_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->sz = sizeof(*o);
	if (s->how == INSIDE_GROUP)
		o->group = &s->group;
	else
		o->stop = &s->stop;
}

static void stopper_end(struct stopper *s)
{
	if (s->how == RACING)
		pthread_join(s->th, NULL);
	if (s->how == INSIDE_GROUP)
		(void)mr_group_wait(&s->group); /* clears the mark */
}

struct tally {
	long bad, cases, cancelled[NHOW], done[NHOW];
};

static void tally(struct tally *t, enum how how, int r, bool ok, const char *what, size_t n)
{
	t->cases++;
	if (r == -ECANCELED)
		t->cancelled[how]++;
	else if (r >= 0)
		t->done[how]++;
	bool allowed = how == NEVER ? r >= 0 : how == BEFORE ? r == -ECANCELED || n < 2
				  : r >= 0 || r == -ECANCELED;
	if (!ok || !allowed) {
		t->bad++;
		printf("# %s n %zu how %d: r %d, %s\n", what, n, how, r, ok ? "ok" : "WRONG");
	}
}

/* ---- sort ---------------------------------------------------------------- */

struct rec {
	uint32_t key, pos; /* few keys: ties; pos: the input position */
	uint32_t pad;	   /* 12 bytes: the generic instance */
};

static int cmp_rec(const void *a, const void *b, void *ctx)
{
	const struct rec *x = a, *y = b;
	stopper_call(ctx);
	return (x->key > y->key) - (x->key < y->key);
}

static int cmp_all(const void *a, const void *b)
{
	const struct rec *x = a, *y = b;
	if (x->key != y->key)
		return (x->key > y->key) - (x->key < y->key);
	return (x->pos > y->pos) - (x->pos < y->pos);
}

static void sort_cases(struct tally *t, uint64_t seed)
{
	for (size_t si = 0; si < NSIZES; si++)
		for (int stable = 0; stable < 2; stable++)
			for (enum how how = NEVER; how < NHOW; how++) {
				size_t n = sizes[si];
				struct rec *a = malloc((n + 1) * sizeof(*a)),
					   *ref = malloc((n + 1) * sizeof(*a));
				struct stopper s;
				struct mr_loop_opts o;
				if (!a || !ref)
					abort();
				for (size_t i = 0; i < n; i++)
					a[i] = (struct rec){ (uint32_t)(rnd(&seed) % 50), (uint32_t)i, 0 };
				memcpy(ref, a, n * sizeof(*a));
				stopper_start(&s, how, &seed, n, 3000);
				stopper_opts(&s, &o);
				int r = mr_parallel_sort_opts(a, n, sizeof(*a), cmp_rec, &s,
							      stable ? MR_SORT_STABLE : 0, &o);
				stopper_end(&s);
				bool ok = true;
				if (r == 0)
					for (size_t i = 1; i < n && ok; i++)
						ok = a[i - 1].key < a[i].key ||
						     (a[i - 1].key == a[i].key &&
						      (!stable || a[i - 1].pos < a[i].pos));
				if (how == BEFORE && n >= 2)
					ok = ok && atomic_load(&s.calls) == 0 &&
					     !memcmp(a, ref, n * sizeof(*a));
				/* Every outcome: a permutation of the input. */
				qsort(a, n, sizeof(*a), cmp_all);
				qsort(ref, n, sizeof(*a), cmp_all);
				ok = ok && !memcmp(a, ref, n * sizeof(*a));
				tally(t, how, r, ok, stable ? "stable sort" : "sort", n);
				free(a);
				free(ref);
			}
}

/*
 * The typed and keyed sorts (no user function: a stop from inside never
 * trips, so those cases must finish): uint64 keys; 16-byte records by the
 * key at 0, unstable and stable; 24-byte records (the generic keyed
 * instance) by the key at 8, stable. A record's position is a uint32 at
 * the other end.
 */
struct klayout {
	size_t size, off, pos;
};

static uint64_t kkey(const unsigned char *r, const struct klayout *l)
{
	uint64_t k;
	memcpy(&k, r + l->off, 8);
	return k;
}

static uint32_t kpos(const unsigned char *r, const struct klayout *l)
{
	uint32_t p;
	memcpy(&p, r + l->pos, 4);
	return p;
}

static int cmp_kall(const void *a, const void *b, void *ctx)
{
	uint64_t x = kkey(a, ctx), y = kkey(b, ctx);
	uint32_t p = kpos(a, ctx), q = kpos(b, ctx);
	if (x != y)
		return (x > y) - (x < y);
	return (p > q) - (p < q);
}

static void typed_sort_cases(struct tally *t, uint64_t seed)
{
	static const struct klayout lay[] = { { 8, 0, 0 }, { 16, 0, 8 }, { 16, 0, 8 }, { 24, 8, 0 } };
	static const char *const what[] = { "sort_u64", "sort_key_u64 16", "sort_key_u64 16 stable",
					     "sort_key_u64 24 stable" };

	for (size_t si = 0; si < NSIZES; si++)
		for (int v = 0; v < 4; v++)
			for (enum how how = NEVER; how < NHOW; how++) {
				const struct klayout *l = &lay[v];
				size_t n = sizes[si], sz = l->size;
				bool stable = v >= 2;
				unsigned char *a = calloc(n + 1, sz), *ref = calloc(n + 1, sz);
				struct stopper s;
				struct mr_loop_opts o;
				int r;
				if (!a || !ref)
					abort();
				for (size_t i = 0; i < n; i++) {
					uint64_t k = v ? rnd(&seed) % 50 : rnd(&seed);
					uint32_t p = (uint32_t)i;
					memcpy(a + i * sz + l->off, &k, 8);
					if (v)
						memcpy(a + i * sz + l->pos, &p, 4);
				}
				memcpy(ref, a, n * sz);
				stopper_start(&s, how, &seed, n, 3000);
				stopper_opts(&s, &o);
				if (v == 0)
					r = mr_parallel_sort_u64_opts((uint64_t *)a, n, &o);
				else
					r = mr_parallel_sort_key_u64(a, n, sz, l->off,
								     stable ? MR_SORT_STABLE : 0, &o);
				stopper_end(&s);
				bool ok = true;
				if (r == 0)
					for (size_t i = 1; i < n && ok; i++) {
						const unsigned char *x = a + (i - 1) * sz, *y = a + i * sz;
						ok = kkey(x, l) < kkey(y, l) ||
						     (kkey(x, l) == kkey(y, l) &&
						      (!stable || kpos(x, l) < kpos(y, l)));
					}
				if (how == BEFORE && n >= 2)
					ok = ok && r == -ECANCELED && !memcmp(a, ref, n * sz);
				/* A stop from inside never trips: there is no user call. */
				if (how == INSIDE || how == INSIDE_GROUP)
					ok = ok && r == 0;
				qsort_r(a, n, sz, cmp_kall, (void *)l);
				qsort_r(ref, n, sz, cmp_kall, (void *)l);
				ok = ok && !memcmp(a, ref, n * sz);
				tally(t, how, r, ok, what[v], n);
				free(a);
				free(ref);
			}
}

/* ---- scan ---------------------------------------------------------------- */

/* Non-commutative: 2x2 integer matrices modulo 2^64, as a pair of rows. */
struct m2 {
	uint64_t a, b, c, d;
};

static void m2_mul(void *acc, const void *x, void *ctx)
{
	struct m2 *p = acc;
	const struct m2 *q = x;
	struct m2 r = { p->a * q->a + p->b * q->c, p->a * q->b + p->b * q->d,
			p->c * q->a + p->d * q->c, p->c * q->b + p->d * q->d };
	stopper_call(ctx);
	*p = r;
}

static void scan_cases(struct tally *t, uint64_t seed)
{
	static const struct m2 id = { 1, 0, 0, 1 };

	for (size_t si = 0; si < NSIZES; si++)
		for (enum how how = NEVER; how < NHOW; how++) {
			size_t n = sizes[si];
			struct m2 *in = malloc((n + 1) * sizeof(*in)),
				  *out = malloc((n + 1) * sizeof(*in));
			struct stopper s;
			struct mr_loop_opts o;
			if (!in || !out)
				abort();
			for (size_t i = 0; i < n; i++)
				in[i] = (struct m2){ rnd(&seed) % 5, 1, 1, rnd(&seed) % 3 };
			memset(out, 0xa5, n * sizeof(*out));
			stopper_start(&s, how, &seed, n, 3000);
			stopper_opts(&s, &o);
			int r = mr_parallel_scan_opts(in, out, n, sizeof(*in), &id, m2_mul, &s,
						      MR_SCAN_INCLUSIVE, &o);
			stopper_end(&s);
			bool ok = true;
			if (r == 0) {
				struct m2 acc = id;
				struct stopper none = { .how = NEVER };
				for (size_t i = 0; i < n && ok; i++) {
					m2_mul(&acc, &in[i], &none);
					ok = !memcmp(&acc, &out[i], sizeof(acc));
				}
			}
			if (how == BEFORE && n > 0)
				for (size_t i = 0; i < n && ok; i++)
					ok = out[i].a == 0xa5a5a5a5a5a5a5a5ull;
			tally(t, how, r, ok, "scan", n);
			free(in);
			free(out);
		}
}

/*
 * The typed sums (no user function: a stop from inside never trips): sizes
 * up to several blocks of 65536 beyond the sequential cut-off (262144),
 * in place or not. On -ECANCELED, out holds the scan of a prefix of the
 * blocks and the rest is untouched.
 */
static void typed_scan_cases(struct tally *t, uint64_t seed)
{
	static const size_t tsizes[] = { 0, 1, 100, 65536, 65537, 262144, 262145, 600000 };

	for (size_t si = 0; si < sizeof(tsizes) / sizeof(tsizes[0]); si++)
		for (int v = 0; v < 4; v++)
			for (enum how how = NEVER; how < NHOW; how++) {
				size_t n = tsizes[si];
				bool in_place = v & 1, excl = v & 2;
				uint64_t *in = malloc((n + 1) * 8), *out = malloc((n + 1) * 8);
				const uint64_t fill = 0xa5a5a5a5a5a5a5a5ull;
				struct stopper s;
				struct mr_loop_opts o;
				if (!in || !out)
					abort();
				for (size_t i = 0; i < n; i++)
					in[i] = rnd(&seed);
				if (in_place)
					memcpy(out, in, n * 8);
				else
					for (size_t i = 0; i < n; i++)
						out[i] = fill;
				stopper_start(&s, how, &seed, n, 3000);
				stopper_opts(&s, &o);
				int r;
				if (v == 1) /* one in place case each signed, and double */
					r = mr_parallel_scan_sum_i64_opts((int64_t *)out, (int64_t *)out,
									  n, 0, &o);
				else
					r = mr_parallel_scan_sum_u64_opts(in_place ? out : in, out, n,
									  excl ? MR_SCAN_EXCLUSIVE : 0,
									  &o);
				stopper_end(&s);
				/* Scanned up to done (whole blocks when stopped), untouched
				 * (the input, or the fill) after. */
				uint64_t acc = 0;
				size_t done = 0;
				bool ok = true;
				for (; done < n; done++) {
					uint64_t want = excl ? acc : acc + in[done];
					if (out[done] != want)
						break;
					acc += in[done];
				}
				if (r == 0)
					ok = done == n;
				else
					done -= done % 65536;
				for (size_t i = done; i < n && ok; i++)
					ok = out[i] == (in_place ? in[i] : fill);
				if (how == BEFORE && n > 0)
					ok = ok && r == -ECANCELED && done == 0;
				if (how == INSIDE || how == INSIDE_GROUP)
					ok = ok && r == 0;
				tally(t, how, r, ok, "scan_sum", n);
				free(in);
				free(out);
			}
	/* The double form: done, and stopped before. */
	double d[3] = { 1, 2, 3 }, dout[3] = { 0, 0, 0 };
	int stop = 1;
	struct mr_loop_opts o = { .sz = sizeof(o), .stop = &stop };
	int r = mr_parallel_scan_sum_double_opts(d, dout, 3, 0, &o);
	tally(t, BEFORE, r, dout[2] == 0, "scan_sum_double", 3);
	r = mr_parallel_scan_sum_double_opts(d, dout, 3, 0, NULL);
	tally(t, NEVER, r, dout[2] == 6, "scan_sum_double", 3);
}

/* ---- find ---------------------------------------------------------------- */

struct hay {
	const unsigned char *a;
	struct stopper *s;
};

static bool is_hit(size_t i, void *ctx)
{
	struct hay *h = ctx;
	stopper_call(h->s);
	return h->a[i] != 0;
}

static void find_cases(struct tally *t, uint64_t seed)
{
	for (size_t si = 0; si < NSIZES; si++)
		for (int any = 0; any < 2; any++)
			for (enum how how = NEVER; how < NHOW; how++) {
				size_t n = sizes[si];
				unsigned char *a = calloc(n + 1, 1);
				struct stopper s;
				struct mr_loop_opts o;
				size_t first = n, at = (size_t)-1;
				if (!a)
					abort();
				/* no hit, one hit, or a few */
				for (unsigned k = (unsigned)(rnd(&seed) % 4); n && k; k--)
					a[rnd(&seed) % n] = 1;
				for (size_t i = 0; i < n; i++)
					if (a[i] && first == n)
						first = i;
				struct hay h = { a, &s };
				stopper_start(&s, how, &seed, n, 200);
				stopper_opts(&s, &o);
				o.grain = rnd(&seed) % 3 ? 0 : 1 + rnd(&seed) % 5000;
				int r = any ? mr_parallel_find_any_opts(0, n, is_hit, &h, &at, &o)
					    : mr_parallel_find_first_opts(0, n, is_hit, &h, &at, &o);
				stopper_end(&s);
				bool ok;
				if (r == 1)
					ok = at < n && a[at] && (any || at == first);
				else if (r == 0)
					ok = first == n && at == (size_t)-1;
				else
					ok = at == (size_t)-1;
				if (how == BEFORE && n > 0)
					ok = ok && r == -ECANCELED && atomic_load(&s.calls) == 0;
				tally(t, how, r, ok,
				      any ? "find_any" : "find_first", n);
				free(a);
			}
}

/* ---- drivers ------------------------------------------------------------- */

struct run {
	int which; /* 0 sort, 1 scan, 2 find, 3 typed and keyed sorts, 4 typed sums */
	uint64_t seed;
	long rounds;
	struct tally t;
};

static void run_cases(void *arg)
{
	struct run *x = arg;

	for (long i = 0; i < x->rounds; i++) {
		uint64_t seed = x->seed + 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
		if (x->which == 0)
			sort_cases(&x->t, seed);
		else if (x->which == 1)
			scan_cases(&x->t, seed);
		else if (x->which == 3)
			typed_sort_cases(&x->t, seed);
		else if (x->which == 4)
			typed_scan_cases(&x->t, seed);
		else
			find_cases(&x->t, seed);
	}
}

static void run_all(int which)
{
	struct run all = { 0 };

	for (unsigned w = 0; w <= 2; w++) {
		struct run x = { .which = which, .seed = 0x5eed + w, .rounds = scaled(2) };
		if (w == 0) {
			run_cases(&x); /* from this thread: the default runtime */
		} else {
			mr_runtime_t *rt = make_rt(w);
			ASSERT_NONNULL(rt);
			ASSERT_EQ(mr_runtime_install(rt, run_cases, &x), 0);
			ASSERT_EQ(mr_runtime_destroy(rt), 0);
		}
		EXPECT_EQ(x.t.bad, 0);
		all.t.cases += x.t.cases;
		for (int h = 0; h < NHOW; h++) {
			all.t.cancelled[h] += x.t.cancelled[h];
			all.t.done[h] += x.t.done[h];
		}
	}
	printf("# %ld cases; stopped inside: %ld cancelled, %ld done; racing: %ld cancelled, "
	       "%ld done\n",
	       all.t.cases, all.t.cancelled[INSIDE] + all.t.cancelled[INSIDE_GROUP],
	       all.t.done[INSIDE] + all.t.done[INSIDE_GROUP], all.t.cancelled[RACING],
	       all.t.done[RACING]);
	EXPECT_EQ(all.t.cancelled[NEVER], 0);
}

TEST(sort_stop_racing_completion)
{
	run_all(0);
}

TEST(typed_sort_stop_racing_completion)
{
	run_all(3);
}

TEST(typed_scan_stop_racing_completion)
{
	run_all(4);
}

TEST(scan_stop_racing_completion)
{
	run_all(1);
}

TEST(find_stop_racing_completion)
{
	run_all(2);
}

static int cmp_u64(const void *a, const void *b, void *ctx)
{
	(void)ctx;
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

static bool never(size_t i, void *ctx)
{
	(void)i;
	(void)ctx;
	return false;
}

static void add_u64(void *acc, const void *x, void *ctx)
{
	(void)ctx;
	*(uint64_t *)acc += *(const uint64_t *)x;
}

TEST(opts_bad_arguments)
{
	uint64_t v[4] = { 3, 1, 2, 0 }, out[4], zero = 0;
	struct mr_loop_opts bad = { .sz = 1 };
	size_t at;

	EXPECT_EQ(mr_parallel_sort_opts(v, 4, 8, cmp_u64, NULL, 0, &bad), -EINVAL);
	EXPECT_EQ(mr_parallel_sort_opts(v, 4, 8, cmp_u64, NULL, 2, NULL), -EINVAL);
	EXPECT_EQ(mr_parallel_sort_opts(v, 4, 8, NULL, NULL, 0, NULL), -EINVAL);
	EXPECT_EQ(v[0], 3u);
	EXPECT_EQ(mr_parallel_sort_opts(v, 4, 8, cmp_u64, NULL, MR_SORT_STABLE, NULL), 0);
	EXPECT_EQ(v[0], 0u);
	EXPECT_EQ(v[3], 3u);
	EXPECT_EQ(mr_parallel_sort_u64_opts(v, 4, &bad), -EINVAL);
	EXPECT_EQ(mr_parallel_sort_i64_opts((int64_t *)v, 4, &bad), -EINVAL);
	EXPECT_EQ(mr_parallel_sort_u32_opts((uint32_t *)v, 4, &bad), -EINVAL);
	EXPECT_EQ(mr_parallel_sort_i32_opts((int32_t *)v, 4, &bad), -EINVAL);
	EXPECT_EQ(mr_parallel_sort_key_u64(v, 4, 8, 0, 0, &bad), -EINVAL);
	EXPECT_EQ(mr_parallel_sort_key_u64(v, 4, 8, 0, 2, NULL), -EINVAL);
	EXPECT_EQ(mr_parallel_sort_key_u64(v, 4, 7, 0, 0, NULL), -EINVAL);
	EXPECT_EQ(mr_parallel_sort_key_u64(v, 2, 16, 9, 0, NULL), -EINVAL);
	EXPECT_EQ(mr_parallel_sort_key_u64(NULL, 2, 16, 0, 0, NULL), -EINVAL);
	EXPECT_EQ(mr_parallel_sort_key_u64(v, SIZE_MAX / 8, 16, 0, 0, NULL), -EINVAL);
	EXPECT_EQ(v[0], 0u);
	EXPECT_EQ(mr_parallel_sort_u64_opts(v, 4, NULL), 0);
	EXPECT_EQ(mr_parallel_scan_sum_u64_opts(v, out, 4, 0, &bad), -EINVAL);
	EXPECT_EQ(mr_parallel_scan_sum_i64_opts((int64_t *)v, (int64_t *)out, 4, 0, &bad), -EINVAL);
	EXPECT_EQ(mr_parallel_scan_sum_double_opts((double *)v, (double *)out, 4, 0, &bad),
		  -EINVAL);
	EXPECT_EQ(mr_parallel_scan_sum_u64_opts(v, out, 4, 4, NULL), -EINVAL);
	EXPECT_EQ(mr_parallel_scan_opts(v, out, 4, 8, &zero, add_u64, NULL, 0, &bad), -EINVAL);
	EXPECT_EQ(mr_parallel_scan_opts(v, out, 4, 8, &zero, add_u64, NULL, 0, NULL), 0);
	EXPECT_EQ(out[3], 6u);
	EXPECT_EQ(mr_parallel_find_first_opts(0, 10, never, NULL, &at, &bad), -EINVAL);
	EXPECT_EQ(mr_parallel_find_any_opts(0, 10, never, NULL, &at, &bad), -EINVAL);
	EXPECT_EQ(mr_parallel_find_first_opts(0, 10, NULL, NULL, &at, NULL), -EINVAL);
	EXPECT_EQ(mr_parallel_find_first_opts(0, 10, never, NULL, &at, NULL), 0);
	EXPECT_EQ(mr_parallel_find_any_opts(5, 4, never, NULL, &at, NULL), -EINVAL);
}

TEST_HARNESS_MAIN
