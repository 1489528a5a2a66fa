/*
 * stress.c - longer mixed runs: several runtimes and external submitter
 * threads at once, evaluating random trees that mix mr_join, task groups,
 * parallel loops, reductions and installs into other runtimes, each checked
 * against a sequential evaluation of the same tree; runtimes created and
 * destroyed in a loop with work (and detached work) each time; concurrent
 * joins from plain threads on the default runtime.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include <moirai/moirai.h>

#include "harness.h"

static long ld(_Atomic long *p)
{
	return atomic_load(p);
}

static uint64_t mix(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ull;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}

#define HP 0x100000001B3ull /* order-sensitive folding of children */

/* ---- random trees ------------------------------------------------------ */

enum { NRT = 3 };
static mr_runtime_t *rts[NRT]; /* runtime i has i + 1 workers */
static _Atomic long tree_faults;

struct node {
	uint64_t seed;
	int depth;
	bool par;
	uint64_t out;
};

static uint64_t eval(uint64_t seed, int depth, bool par);

static void eval_job(void *arg)
{
	struct node *n = arg;
	n->out = eval(n->seed, n->depth, n->par);
}

struct kids {
	uint64_t seed;
	int depth;
	bool par;
	uint64_t *slot;
};

static void kids_body(size_t lo, size_t hi, void *ctx)
{
	struct kids *k = ctx;
	for (size_t i = lo; i < hi; i++)
		k->slot[i] = eval(mix(k->seed + i + 1), k->depth, k->par);
}

struct hcat {
	uint64_t h, p; /* hash of a sequence and HP^length */
};

static void hcat_body(size_t lo, size_t hi, void *acc, void *ctx)
{
	struct kids *k = ctx;
	struct hcat *a = acc;
	for (size_t i = lo; i < hi; i++) {
		a->h = a->h * HP + eval(mix(k->seed + i + 1), k->depth, k->par);
		a->p *= HP;
	}
}

static void hcat_combine(void *acc, const void *other, void *ctx)
{
	struct hcat *a = acc;
	const struct hcat *o = other;
	(void)ctx;
	a->h = a->h * o->p + o->h;
	a->p *= o->p;
}

static int current_rt_index(void)
{
	mr_runtime_t *cur = mr_runtime_current();
	for (int i = 0; i < NRT; i++)
		if (rts[i] && cur == rts[i])
			return i;
	return -1;
}

static uint64_t eval(uint64_t seed, int depth, bool par)
{
	uint64_t h = mix(seed);

	if (depth == 0 || h % 6 == 0) {
		uint64_t v = h;
		for (int i = 0; i < 48; i++)
			v = mix(v);
		return v;
	}
	unsigned k = 2 + (unsigned)((h >> 16) % 5);
	switch ((h >> 8) % 6) {
	case 0: { /* fork-join */
		struct node a = { mix(seed + 1), depth - 1, par, 0 };
		struct node b = { mix(seed + 2), depth - 1, par, 0 };
		if (par)
			mr_join(eval_job, &a, eval_job, &b);
		else {
			eval_job(&a);
			eval_job(&b);
		}
		return a.out * HP + b.out;
	}
	case 1: { /* a group, waited here */
		struct node n[8];
		mr_group_t g;
		uint64_t v = 1;
		mr_group_init(&g);
		for (unsigned i = 0; i < k; i++) {
			n[i] = (struct node){ mix(seed + i + 1), depth - 1, par, 0 };
			if (!par)
				eval_job(&n[i]);
			else if (mr_group_spawn(&g, eval_job, &n[i]) != 0)
				atomic_fetch_add(&tree_faults, 1);
		}
		if (par && mr_group_wait(&g) != 0)
			atomic_fetch_add(&tree_faults, 1);
		for (unsigned i = 0; i < k; i++)
			v = v * HP + n[i].out;
		return v;
	}
	case 2: { /* a parallel loop over the children */
		uint64_t slot[8], v = 2;
		struct kids kc = { seed, depth - 1, par, slot };
		if (par) {
			if (mr_parallel_for(0, k, (h >> 24) % 3, kids_body, &kc) != 0)
				atomic_fetch_add(&tree_faults, 1);
		} else {
			kids_body(0, k, &kc);
		}
		for (unsigned i = 0; i < k; i++)
			v = v * HP + slot[i];
		return v;
	}
	case 3: { /* an order-sensitive reduction over the children */
		struct kids kc = { seed, depth - 1, par, NULL };
		struct hcat id = { 0, 1 }, r = { 0, 0 };
		if (par) {
			if (mr_parallel_reduce(0, k, (h >> 24) % 3, &r, sizeof(r), &id, hcat_body,
					       hcat_combine, &kc) != 0)
				atomic_fetch_add(&tree_faults, 1);
		} else {
			r = id;
			hcat_body(0, k, &r, &kc);
		}
		return r.h ^ 0x5555;
	}
	case 4: { /* enter a runtime further down the list (no cycles) */
		struct node c = { mix(seed + 7), depth - 1, par, 0 };
		int i = par ? current_rt_index() : -1;
		if (i >= 0 && i < NRT - 1) {
			int j = i + 1 + (int)((h >> 20) % (unsigned)(NRT - 1 - i));
			pthread_t self = pthread_self();
			if (mr_runtime_install(rts[j], eval_job, &c) != 0 ||
			    current_rt_index() != i || !pthread_equal(self, pthread_self()))
				atomic_fetch_add(&tree_faults, 1);
		} else {
			eval_job(&c);
		}
		return c.out * 3 + 1;
	}
	default: { /* one child as a group task, the other inline meanwhile */
		struct node a = { mix(seed + 11), depth - 1, par, 0 };
		struct node b = { mix(seed + 12), depth - 1, par, 0 };
		if (par) {
			mr_group_t g;
			mr_group_init(&g);
			mr_group_spawn(&g, eval_job, &a);
			eval_job(&b);
			mr_group_wait(&g);
		} else {
			eval_job(&a);
			eval_job(&b);
		}
		return a.out ^ (b.out * 5);
	}
	}
}

struct submitter {
	uint64_t seed;
	int rounds, depth;
	long done, wrong;
};

static void *submitter_main(void *arg)
{
	struct submitter *s = arg;

	for (int r = 0; r < s->rounds; r++) {
		uint64_t seed = mix(s->seed + (uint64_t)r);
		struct node n = { seed, s->depth, true, 0 };
		uint64_t want = eval(seed, s->depth, false);
		unsigned where = (unsigned)(mix(seed ^ 0xabcdef) % (NRT + 1));

		if (where < NRT) {
			if (mr_runtime_install(rts[where], eval_job, &n) != 0)
				s->wrong++;
		} else {
			eval_job(&n); /* from outside: the default runtime */
		}
		if (n.out != want)
			s->wrong++;
		s->done++;
	}
	return NULL;
}

TEST_TIMEOUT(runtimes_and_submitters_random_trees, 120)
{
	enum { NS = 4 };
	struct submitter s[NS];
	pthread_t th[NS];

	for (int i = 0; i < NRT; i++) {
		MR_OPTS(mr_config, cfg, .workers = (unsigned)i + 1);
		rts[i] = mr_runtime_create(&cfg);
		ASSERT_NONNULL(rts[i]);
	}
	for (int i = 0; i < NS; i++) {
		s[i] = (struct submitter){ 0x1000 + (uint64_t)i * 0x777,
					   (int)(300 / mr_test_scale()) + 3, 8, 0, 0 };
		ASSERT_EQ(pthread_create(&th[i], NULL, submitter_main, &s[i]), 0);
	}
	for (int i = 0; i < NS; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < NS; i++) {
		EXPECT_EQ(s[i].wrong, 0);
		EXPECT_EQ(s[i].done, s[i].rounds);
	}
	EXPECT_EQ(ld(&tree_faults), 0);
	for (int i = 0; i < NRT; i++)
		ASSERT_EQ(mr_runtime_destroy(rts[i]), 0);
}

/* ---- create / destroy in a loop ---------------------------------------- */

struct fib {
	int n;
	long r;
};

static void fib(void *p)
{
	struct fib *f = p;
	if (f->n < 2) {
		f->r = f->n;
		return;
	}
	struct fib a = { f->n - 1, 0 }, b = { f->n - 2, 0 };
	mr_join(fib, &a, fib, &b);
	f->r = a.r + b.r;
}

static void inc(void *arg)
{
	atomic_fetch_add_explicit((_Atomic long *)arg, 1, memory_order_relaxed);
}

static void count_body(size_t lo, size_t hi, void *ctx)
{
	atomic_fetch_add_explicit((_Atomic long *)ctx, (long)(hi - lo), memory_order_relaxed);
}

struct cycle_work {
	struct fib f;
	_Atomic long grouped, looped, detached;
	mr_group_t *detached_g;
	int ndetached;
};

static void cycle_run(void *arg)
{
	struct cycle_work *w = arg;
	mr_group_t g;

	fib(&w->f);
	mr_group_init(&g);
	for (int i = 0; i < 100; i++)
		mr_group_spawn(&g, inc, &w->grouped);
	mr_parallel_for(0, 10000, 0, count_body, &w->looped);
	mr_group_wait(&g);
	/* Left running: destroy must wait for them. */
	for (int i = 0; i < w->ndetached; i++)
		mr_group_spawn(w->detached_g, inc, &w->detached);
}

TEST_TIMEOUT(create_destroy_loop_with_work, 120)
{
	int iters = (int)(200 / mr_test_scale()) + 2;
	mr_group_t dg;

	mr_group_init(&dg);
	for (int i = 0; i < iters; i++) {
		MR_OPTS(mr_config, cfg, .workers = 1 + (unsigned)i % 4,
			.deque_log2 = i % 3 == 0 ? 6 : 0);
		mr_runtime_t *rt = mr_runtime_create(&cfg);
		struct cycle_work w;

		ASSERT_NONNULL(rt);
		memset(&w, 0, sizeof(w));
		w.f.n = 15;
		w.detached_g = &dg;
		w.ndetached = i % 2 ? 300 : 0;
		if (i % 5 != 4) /* and now and then no work at all */
			ASSERT_EQ(mr_runtime_install(rt, cycle_run, &w), 0);
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
		if (i % 5 == 4)
			continue;
		ASSERT_EQ(w.f.r, 610);
		ASSERT_EQ(ld(&w.grouped), 100);
		ASSERT_EQ(ld(&w.looped), 10000);
		ASSERT_EQ(ld(&w.detached), w.ndetached);
	}
}

/* Create and destroy from several threads at once. */
static void *create_destroy_thread(void *arg)
{
	long *bad = arg;
	int iters = (int)(50 / mr_test_scale()) + 2;

	for (int i = 0; i < iters; i++) {
		MR_OPTS(mr_config, cfg, .workers = 1 + (unsigned)i % 3);
		mr_runtime_t *rt = mr_runtime_create(&cfg);
		struct fib f = { 16, 0 };
		if (!rt) {
			(*bad)++;
			continue;
		}
		if (mr_runtime_install(rt, fib, &f) != 0 || f.r != 987)
			(*bad)++;
		if (mr_runtime_destroy(rt) != 0)
			(*bad)++;
	}
	return NULL;
}

TEST_TIMEOUT(create_destroy_from_several_threads, 120)
{
	pthread_t th[4];
	long bad[4] = { 0 };

	for (int i = 0; i < 4; i++)
		ASSERT_EQ(pthread_create(&th[i], NULL, create_destroy_thread, &bad[i]), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 4; i++)
		EXPECT_EQ(bad[i], 0);
}

/* ---- concurrent joins from plain threads on the default runtime -------- */

struct joiner {
	int iters;
	long wrong;
};

static void *joiner_main(void *arg)
{
	struct joiner *j = arg;
	for (int i = 0; i < j->iters; i++) {
		struct fib a = { 18 + i % 5, 0 }, b = { 12 + i % 3, 0 };
		static const long fibs[] = { 0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144,
					     233, 377, 610, 987, 1597, 2584, 4181, 6765, 10946,
					     17711 };
		mr_join(fib, &a, fib, &b);
		if (a.r != fibs[a.n] || b.r != fibs[b.n])
			j->wrong++;
		if (mr_worker_index() != -1)
			j->wrong++;
	}
	return NULL;
}

TEST_TIMEOUT(concurrent_joins_from_plain_threads, 120)
{
	enum { NJ = 4 };
	struct joiner j[NJ];
	pthread_t th[NJ];

	for (int i = 0; i < NJ; i++) {
		j[i] = (struct joiner){ (int)(2000 / mr_test_scale()) + 2, 0 };
		ASSERT_EQ(pthread_create(&th[i], NULL, joiner_main, &j[i]), 0);
	}
	for (int i = 0; i < NJ; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < NJ; i++)
		EXPECT_EQ(j[i].wrong, 0);
}

/* ---- everything on the default runtime, from many threads -------------- */

struct mixer {
	uint64_t seed;
	int rounds;
	long wrong;
};

static void *mixer_main(void *arg)
{
	struct mixer *m = arg;
	for (int r = 0; r < m->rounds; r++) {
		uint64_t seed = mix(m->seed + (uint64_t)r);
		if (eval(seed, 7, true) != eval(seed, 7, false))
			m->wrong++;
	}
	return NULL;
}

TEST_TIMEOUT(random_trees_from_plain_threads, 120)
{
	enum { NM = 6 };
	struct mixer m[NM];
	pthread_t th[NM];

	for (int i = 0; i < NM; i++) {
		m[i] = (struct mixer){ 0x5000 + (uint64_t)i, (int)(200 / mr_test_scale()) + 2, 0 };
		ASSERT_EQ(pthread_create(&th[i], NULL, mixer_main, &m[i]), 0);
	}
	for (int i = 0; i < NM; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < NM; i++)
		EXPECT_EQ(m[i].wrong, 0);
	EXPECT_EQ(ld(&tree_faults), 0);
}

TEST_HARNESS_MAIN
