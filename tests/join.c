/*
 * join.c - mr_join: results equal the sequential ones at several worker
 * counts, each half runs exactly once with its own argument, calls from
 * outside any runtime, jobs that a() leaves above b in the deque (group
 * tasks not waited for), recursion deeper than the deque, the abort on
 * a NULL function, and latent joins: heartbeat promotions racing joins,
 * deep recursion promoted all the way, a promoted frame stolen while a()
 * runs, and a blocking context's latent frames shared before it sleeps.
 */
#include <pthread.h>
#include <stdatomic.h>

#include <moirai/moirai.h>

#include "harness.h"

static long ld(_Atomic long *p)
{
	return atomic_load(p);
}

static int ld_int(_Atomic int *p)
{
	return atomic_load(p);
}

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

static long fib_seq(int n)
{
	long a = 0, b = 1;
	for (int i = 0; i < n; i++) {
		long t = a + b;
		a = b;
		b = t;
	}
	return a;
}

static mr_runtime_t *make_rt(unsigned workers, unsigned deque_log2)
{
	MR_OPTS(mr_config, cfg, .workers = workers, .deque_log2 = deque_log2);
	return mr_runtime_create(&cfg);
}

TEST(fib25_equals_sequential)
{
	static const unsigned workers[] = { 1, 2, 8 };

	ASSERT_EQ(fib_seq(25), 75025);
	for (size_t k = 0; k < sizeof(workers) / sizeof(workers[0]); k++) {
		mr_runtime_t *rt = make_rt(workers[k], 0);
		ASSERT_NONNULL(rt);
		for (int rep = 0; rep < 3; rep++) {
			struct fib f = { 25, -1 };
			ASSERT_EQ(mr_runtime_install(rt, fib, &f), 0);
			EXPECT_EQ(f.r, 75025);
		}
		for (int n = 0; n <= 20; n++) {
			struct fib f = { n, -1 };
			ASSERT_EQ(mr_runtime_install(rt, fib, &f), 0);
			EXPECT_EQ(f.r, fib_seq(n));
		}
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	}
}

TEST(fib_from_outside_any_runtime)
{
	struct fib a = { 25, -1 }, b = { 20, -1 };

	/* Enters the default runtime; the caller blocks until both are done. */
	mr_join(fib, &a, fib, &b);
	EXPECT_EQ(a.r, 75025);
	EXPECT_EQ(b.r, 6765);
	EXPECT_EQ(mr_worker_index(), -1);
}

/* Each half records its argument, its runtime and how often it ran. */
struct half {
	_Atomic long runs;
	void *seen_arg;
	mr_runtime_t *rt;
	int worker;
	pthread_t thread;
};

struct halves {
	struct half a, b;
};

static void half_a(void *arg)
{
	struct halves *h = arg;
	atomic_fetch_add(&h->a.runs, 1);
	h->a.seen_arg = arg;
	h->a.rt = mr_runtime_current();
	h->a.worker = mr_worker_index();
	h->a.thread = pthread_self();
}

static void half_b(void *arg)
{
	struct halves *h = (struct halves *)((char *)arg - offsetof(struct halves, b));
	atomic_fetch_add(&h->b.runs, 1);
	h->b.seen_arg = arg;
	h->b.rt = mr_runtime_current();
	h->b.worker = mr_worker_index();
	h->b.thread = pthread_self();
}

TEST(halves_see_their_args_and_run_once_outside)
{
	for (int rep = 0; rep < 100; rep++) {
		struct halves h;
		memset(&h, 0, sizeof(h));
		/* Different pointers for a and b. */
		mr_join(half_a, &h, half_b, &h.b);
		ASSERT_EQ(ld(&h.a.runs), 1);
		ASSERT_EQ(ld(&h.b.runs), 1);
		ASSERT_TRUE(h.a.seen_arg == &h);
		ASSERT_TRUE(h.b.seen_arg == &h.b);
		ASSERT_TRUE(h.a.rt == mr_runtime_default());
		ASSERT_TRUE(h.b.rt == mr_runtime_default());
		ASSERT_GE(h.a.worker, 0);
		ASSERT_GE(h.b.worker, 0);
		ASSERT_FALSE(pthread_equal(h.a.thread, pthread_self()));
	}
}

struct many_halves {
	mr_runtime_t *rt;
	int n;
	struct halves *h;
	_Atomic long bad;
};

static void join_many(void *arg)
{
	struct many_halves *m = arg;
	for (int i = 0; i < m->n; i++) {
		mr_join(half_a, &m->h[i], half_b, &m->h[i].b);
		/* Both done when mr_join returns. */
		if (ld(&m->h[i].a.runs) != 1 || ld(&m->h[i].b.runs) != 1)
			atomic_fetch_add(&m->bad, 1);
	}
}

TEST(halves_see_their_args_and_run_once_inside)
{
	for (unsigned nw = 1; nw <= 4; nw++) {
		mr_runtime_t *rt = make_rt(nw, 0);
		struct many_halves m = { 0 };

		ASSERT_NONNULL(rt);
		m.rt = rt;
		m.n = 2000;
		m.h = calloc((size_t)m.n, sizeof(*m.h));
		ASSERT_NONNULL(m.h);
		ASSERT_EQ(mr_runtime_install(rt, join_many, &m), 0);
		EXPECT_EQ(ld(&m.bad), 0);
		for (int i = 0; i < m.n; i++) {
			ASSERT_EQ(ld(&m.h[i].a.runs), 1);
			ASSERT_EQ(ld(&m.h[i].b.runs), 1);
			ASSERT_TRUE(m.h[i].a.seen_arg == &m.h[i]);
			ASSERT_TRUE(m.h[i].b.seen_arg == &m.h[i].b);
			ASSERT_TRUE(m.h[i].a.rt == rt);
			ASSERT_TRUE(m.h[i].b.rt == rt);
			ASSERT_LT(m.h[i].a.worker, (int)nw);
			ASSERT_LT(m.h[i].b.worker, (int)nw);
		}
		free(m.h);
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	}
}

/* A binary tree of joins where every node counts itself: each node once. */
struct tree_ctx {
	_Atomic unsigned char *seen;
	_Atomic long dup;
};

struct tnode {
	struct tree_ctx *c;
	size_t id; /* heap numbering: children 2id+1, 2id+2 */
	int depth;
};

static void tree(void *arg)
{
	struct tnode *t = arg;
	if (atomic_fetch_add(&t->c->seen[t->id], 1) != 0)
		atomic_fetch_add(&t->c->dup, 1);
	if (t->depth == 0)
		return;
	struct tnode l = { t->c, 2 * t->id + 1, t->depth - 1 };
	struct tnode r = { t->c, 2 * t->id + 2, t->depth - 1 };
	mr_join(tree, &l, tree, &r);
}

TEST(every_node_of_a_join_tree_runs_once)
{
	int depth = mr_test_scale() > 1 ? 15 : 18;
	size_t n = ((size_t)1 << (depth + 1)) - 1;
	struct tree_ctx c = { 0 };
	mr_runtime_t *rt = make_rt(3, 0);

	ASSERT_NONNULL(rt);
	c.seen = calloc(n, 1);
	ASSERT_NONNULL(c.seen);
	struct tnode root = { &c, 0, depth };
	ASSERT_EQ(mr_runtime_install(rt, tree, &root), 0);
	EXPECT_EQ(ld(&c.dup), 0);
	for (size_t i = 0; i < n; i++)
		ASSERT_EQ(atomic_load(&c.seen[i]), 1);
	free(c.seen);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/*
 * a() spawns group tasks and does not wait: they sit above b in the deque
 * when a returns. mr_join must still run b (and return), and the group's
 * wait later sees every task.
 */
struct left_above {
	mr_group_t g;
	int ntasks;
	_Atomic long spawned_done, b_runs, a_runs;
	long after_wait;
};

static void la_task(void *arg)
{
	struct left_above *la = arg;
	atomic_fetch_add(&la->spawned_done, 1);
}

static void la_a(void *arg)
{
	struct left_above *la = arg;
	atomic_fetch_add(&la->a_runs, 1);
	for (int i = 0; i < la->ntasks; i++)
		mr_group_spawn(&la->g, la_task, la);
}

static void la_b(void *arg)
{
	struct left_above *la = arg;
	atomic_fetch_add(&la->b_runs, 1);
}

static void la_fib_b(void *arg)
{
	struct fib *f = arg;
	fib(f);
}

struct la_outer {
	struct left_above la;
	struct fib f;
};

static void la_run(void *arg)
{
	struct la_outer *o = arg;
	struct left_above *la = &o->la;

	mr_join(la_a, la, la_b, la);
	/* And with a b that forks itself while the tasks are still around. */
	mr_join(la_a, la, la_fib_b, &o->f);
	la->after_wait = -1;
	mr_group_wait(&la->g);
	la->after_wait = ld(&la->spawned_done);
}

TEST(join_with_group_tasks_left_above_b)
{
	for (unsigned nw = 1; nw <= 3; nw++) {
		for (int ntasks = 1; ntasks <= 2000; ntasks *= 7) {
			mr_runtime_t *rt = make_rt(nw, 0);
			struct la_outer o;

			ASSERT_NONNULL(rt);
			memset(&o, 0, sizeof(o));
			mr_group_init(&o.la.g);
			o.la.ntasks = ntasks;
			o.f.n = 18;
			ASSERT_EQ(mr_runtime_install(rt, la_run, &o), 0);
			EXPECT_EQ(ld(&o.la.a_runs), 2);
			EXPECT_EQ(ld(&o.la.b_runs), 1);
			EXPECT_EQ(o.f.r, 2584);
			EXPECT_EQ(o.la.after_wait, 2L * ntasks);
			ASSERT_EQ(mr_runtime_destroy(rt), 0);
		}
	}
}

TEST(join_with_group_tasks_left_above_b_from_outside)
{
	struct left_above la;

	memset(&la, 0, sizeof(la));
	mr_group_init(&la.g);
	la.ntasks = 500;
	mr_join(la_a, &la, la_b, &la);
	EXPECT_EQ(ld(&la.a_runs), 1);
	EXPECT_EQ(ld(&la.b_runs), 1);
	/* The caller (outside) waits for the group later. */
	ASSERT_EQ(mr_group_wait(&la.g), 0);
	EXPECT_EQ(ld(&la.spawned_done), 500);
}

/*
 * a() waits for a group spawned before the join: the wait runs what is on
 * top of the worker's deque - b first, then the group's task. a() then
 * spawns two tasks that it does not wait for, which land in the slots the
 * group's task and b occupied. b must still run exactly once, and both new
 * tasks must run (mr_join must not take the task now at b's old index for b).
 */
struct refill {
	mr_group_t g1, g2;
	_Atomic long b_runs, t_runs, u_runs;
	int nspawn;
	long b_after_join, u_after_wait;
};

static void refill_t(void *arg)
{
	struct refill *r = arg;
	atomic_fetch_add(&r->t_runs, 1);
}

static void refill_u(void *arg)
{
	struct refill *r = arg;
	atomic_fetch_add(&r->u_runs, 1);
}

static void refill_a(void *arg)
{
	struct refill *r = arg;
	mr_group_wait(&r->g1);
	for (int i = 0; i < r->nspawn; i++)
		mr_group_spawn(&r->g2, refill_u, r);
}

static void refill_b(void *arg)
{
	struct refill *r = arg;
	atomic_fetch_add(&r->b_runs, 1);
}

static void refill_run(void *arg)
{
	struct refill *r = arg;
	mr_group_spawn(&r->g1, refill_t, r);
	mr_join(refill_a, r, refill_b, r);
	r->b_after_join = ld(&r->b_runs);
	if (r->b_after_join != 1)
		return; /* a task was lost: waiting for g2 would hang */
	mr_group_wait(&r->g2);
	r->u_after_wait = ld(&r->u_runs);
}

TEST_TIMEOUT(join_b_run_by_nested_wait_then_a_spawns, 20)
{
	for (unsigned nw = 1; nw <= 2; nw++) {
		for (int nspawn = 1; nspawn <= 4; nspawn++) {
			mr_runtime_t *rt = make_rt(nw, 0);
			struct refill r;

			ASSERT_NONNULL(rt);
			memset(&r, 0, sizeof(r));
			mr_group_init(&r.g1);
			mr_group_init(&r.g2);
			r.nspawn = nspawn;
			r.u_after_wait = -1;
			ASSERT_EQ(mr_runtime_install(rt, refill_run, &r), 0);
			if (r.b_after_join != 1 || r.u_after_wait != nspawn)
				TH_LOG("%u worker(s), %d spawned after the wait: b ran %ld times, "
				       "%ld of %d tasks ran",
				       nw, nspawn, r.b_after_join, ld(&r.u_runs), nspawn);
			EXPECT_EQ(r.b_after_join, 1);
			EXPECT_EQ(ld(&r.t_runs), 1);
			EXPECT_EQ(r.u_after_wait, nspawn);
			ASSERT_EQ(mr_runtime_destroy(rt), 0);
		}
	}
}

/*
 * A chain of joins deeper than the deque: a() recurses, so every level's b
 * stays in the deque until the chain unwinds. Beyond the capacity, pushes
 * fail and the halves run inline.
 */
struct chain {
	_Atomic long *leaves;
	unsigned char *seen; /* plain: each leaf owns its byte (a second run is a race) */
	int depth;
};

static void chain_leaf(void *arg)
{
	struct chain *c = arg;
	atomic_fetch_add(c->leaves, 1);
	c->seen[c->depth]++;
}

static void chain_a(void *arg)
{
	struct chain *c = arg;
	if (c->depth == 0)
		return;
	struct chain next = { c->leaves, c->seen, c->depth - 1 };
	mr_join(chain_a, &next, chain_leaf, c);
}

/* The same depth with the recursion in b: the deque stays shallow. */
static void chain_b(void *arg)
{
	struct chain *c = arg;
	if (c->depth == 0)
		return;
	struct chain next = { c->leaves, c->seen, c->depth - 1 };
	mr_join(chain_leaf, c, chain_b, &next);
}

struct chain_run {
	void (*fn)(void *);
	struct chain root;
};

static void chain_start(void *arg)
{
	struct chain_run *r = arg;
	r->fn(&r->root);
}

static void deep_chain(unsigned workers, unsigned log2, void (*fn)(void *), int depth)
{
	mr_runtime_t *rt = make_rt(workers, log2);
	_Atomic long leaves = 0;
	struct chain_run r;

	ASSERT_NONNULL(rt);
	r.fn = fn;
	r.root.leaves = &leaves;
	r.root.depth = depth;
	r.root.seen = calloc((size_t)depth + 1, 1);
	ASSERT_NONNULL(r.root.seen);
	ASSERT_EQ(mr_runtime_install(rt, chain_start, &r), 0);
	EXPECT_EQ(ld(&leaves), depth);
	for (int i = 1; i <= depth; i++)
		ASSERT_EQ(r.root.seen[i], 1);
	EXPECT_EQ(r.root.seen[0], 0);
	free(r.root.seen);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

TEST(deep_join_chain_overflows_default_deque)
{
	/* 10000 > 8192 = the default deque. */
	deep_chain(1, 0, chain_a, 10000);
	deep_chain(2, 0, chain_a, 10000);
	deep_chain(4, 0, chain_a, 10000);
	deep_chain(2, 0, chain_b, 10000);
}

TEST(deep_join_chain_small_deque)
{
	/* deque_log2 6: 64 slots, overflowed many times over. */
	deep_chain(1, 6, chain_a, 10000);
	deep_chain(2, 6, chain_a, 10000);
	deep_chain(3, 6, chain_a, 10000);
	deep_chain(2, 6, chain_b, 10000);
}

TEST(fib_with_small_deque)
{
	for (unsigned nw = 1; nw <= 3; nw++) {
		mr_runtime_t *rt = make_rt(nw, 6);
		struct fib f = { 24, -1 };

		ASSERT_NONNULL(rt);
		ASSERT_EQ(mr_runtime_install(rt, fib, &f), 0);
		EXPECT_EQ(f.r, fib_seq(24));
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	}
}

/* Concurrent joins from outside on the same runtime, each with its own tree. */
static void *outside_fib_thread(void *arg)
{
	long *ok = arg;
	for (int i = 0; i < 20; i++) {
		struct fib a = { 18, 0 }, b = { 17, 0 };
		mr_join(fib, &a, fib, &b);
		if (a.r == 2584 && b.r == 1597)
			(*ok)++;
	}
	return NULL;
}

TEST(joins_from_several_outside_threads)
{
	pthread_t th[3];
	long ok[3] = { 0 };

	for (int i = 0; i < 3; i++)
		ASSERT_EQ(pthread_create(&th[i], NULL, outside_fib_thread, &ok[i]), 0);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 3; i++)
		EXPECT_EQ(ok[i], 20);
}

/* ---- NULL functions abort ---------------------------------------------- */

static void nop(void *arg)
{
	(void)arg;
}

static void join_null_a_outside(void *arg)
{
	(void)arg;
	mr_join(NULL, NULL, nop, NULL);
}

static void join_null_b_outside(void *arg)
{
	(void)arg;
	mr_join(nop, NULL, NULL, NULL);
}

static void join_null_inside(void *arg)
{
	uintptr_t which = (uintptr_t)arg;
	if (which == 0)
		mr_join(NULL, NULL, nop, NULL);
	else
		mr_join(nop, NULL, NULL, NULL);
}

static void join_null_on_worker(void *arg)
{
	mr_runtime_t *rt = make_rt(2, 0);
	if (!rt)
		_exit(3);
	mr_runtime_install(rt, join_null_inside, arg);
	_exit(0);
}

static void expect_join_abort(void (*fn)(void *), void *arg)
{
	char buf[1024];
	int st = mr_test_run_child(fn, arg, buf, sizeof(buf));

	if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT))
		TH_LOG("status %#x, stderr: %s", st, buf);
	ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
	ASSERT_STR_CONTAINS(buf, "mr_join");
}

TEST(null_function_aborts)
{
	expect_join_abort(join_null_a_outside, NULL);
	expect_join_abort(join_null_b_outside, NULL);
	expect_join_abort(join_null_on_worker, (void *)(uintptr_t)0);
	expect_join_abort(join_null_on_worker, (void *)(uintptr_t)1);
}

/*
 * Latent joins and the heartbeat (join.c). mr__beat_ticks = 0 makes every
 * join look at the clock and promote the oldest latent frame, so
 * promotions race the owner's joins all the time.
 */
extern uint64_t mr__beat_ticks;

struct leafcount {
	int n;
	_Atomic long *leaves;
};

static void fib_leaves(void *arg)
{
	struct leafcount *l = arg;
	if (l->n < 2) {
		atomic_fetch_add_explicit(l->leaves, 1, memory_order_relaxed);
		return;
	}
	struct leafcount a = { l->n - 1, l->leaves }, b = { l->n - 2, l->leaves };
	mr_join(fib_leaves, &a, fib_leaves, &b);
}

/* Every other level through the library's mr_join (what a caller built
 * with MR_NO_INLINE_JOIN, or through a pointer, gets), the others through
 * the inline fast path of <moirai/par.h>: both share one latent stack. */
static void fib_leaves_mixed(void *arg)
{
	struct leafcount *l = arg;
	if (l->n < 2) {
		atomic_fetch_add_explicit(l->leaves, 1, memory_order_relaxed);
		return;
	}
	struct leafcount a = { l->n - 1, l->leaves }, b = { l->n - 2, l->leaves };
	if (l->n & 1)
		(mr_join)(fib_leaves_mixed, &a, fib_leaves_mixed, &b);
	else
		mr_join(fib_leaves_mixed, &a, fib_leaves_mixed, &b);
}

TEST(promotions_race_joins)
{
	int n = mr_test_scale() > 1 ? 18 : 22;

	for (unsigned nw = 1; nw <= 3; nw++) {
		mr_runtime_t *rt = make_rt(nw, 0);
		ASSERT_NONNULL(rt);
		mr__beat_ticks = 0;
		for (int rep = 0; rep < 20; rep++) {
			_Atomic long leaves = 0;
			struct leafcount l = { n, &leaves };
			ASSERT_EQ(mr_runtime_install(rt, fib_leaves, &l), 0);
			/* fib(n+1) leaves: each b ran exactly once. */
			ASSERT_EQ(ld(&leaves), fib_seq(n + 1));
			atomic_store(&leaves, 0);
			l.leaves = &leaves;
			ASSERT_EQ(mr_runtime_install(rt, fib_leaves_mixed, &l), 0);
			ASSERT_EQ(ld(&leaves), fib_seq(n + 1));
		}
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	}
}

/*
 * A fiber that parks between two joins of one function may resume on the
 * other worker: its second join must use that worker's latent stack, not
 * the one its first join read (the inline fast path reads the thread's
 * afresh; see <moirai/par.h>). Each fiber joins, sleeps, and joins again,
 * many times, with promotions racing the joins.
 */
struct mover {
	_Atomic long *bad, *moves;
	mr_sem_t sem; /* posts from the other worker's fibers move us there */
};

static void mover_fiber(void *arg)
{
	struct mover *m = arg;
	int last = mr_worker_index();

	for (int i = 0; i < 300; i++) {
		struct fib f = { 12 + i % 4, 0 };
		fib(&f);
		if (f.r != fib_seq(12 + i % 4))
			atomic_fetch_add(m->bad, 1);
		if (i % 3 == 0)
			mr_sleep_ns(20000);
		mr_sem_wait(&m->sem);
		mr_sem_post(&m->sem);
		struct fib g = { 10, 0 };
		mr_join(fib, &g, fib, &f);
		if (g.r != fib_seq(10) || f.r != fib_seq(12 + i % 4))
			atomic_fetch_add(m->bad, 1);
		if (mr_worker_index() != last) {
			atomic_fetch_add(m->moves, 1);
			last = mr_worker_index();
		}
	}
}

static void movers_run(void *arg)
{
	mr_fiber_t *fs[16];

	for (int i = 0; i < 16; i++)
		fs[i] = mr_go(mover_fiber, arg);
	for (int i = 0; i < 16; i++)
		if (!fs[i] || mr_fiber_join(fs[i]) != 0)
			atomic_fetch_add(((struct mover *)arg)->bad, 1);
}

TEST(joins_of_a_fiber_that_moves_between_workers)
{
	_Atomic long bad = 0, moves = 0;
	struct mover m = { .bad = &bad, .moves = &moves };
	mr_runtime_t *rt = make_rt(2, 0);

	mr_sem_init(&m.sem, 1);
	ASSERT_NONNULL(rt);
	mr__beat_ticks = 0;
	ASSERT_EQ(mr_runtime_install(rt, movers_run, &m), 0);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
	TH_LOG("%ld moves between workers", ld(&moves));
	EXPECT_EQ(ld(&bad), 0);
}

/*
 * A coarse tree: 16 leaves, each busy until some leaf ran on the other
 * worker (or 300 ms passed). The heartbeat must look at the clock within a
 * few of its joins, not after a fixed count of them: with 64 joins per
 * look (as before), no look came in 15 joins, nothing was promoted and
 * every leaf ran on one worker, each waiting out its 300 ms.
 */
struct coarse {
	int lo, hi;
	_Atomic int *first_worker, *other_ran, *leaves;
};

static void coarse_run(void *arg)
{
	struct coarse *c = arg;
	if (c->hi - c->lo > 1) {
		int mid = (c->lo + c->hi) / 2;
		struct coarse a = { c->lo, mid, c->first_worker, c->other_ran, c->leaves };
		struct coarse b = { mid, c->hi, c->first_worker, c->other_ran, c->leaves };
		mr_join(coarse_run, &a, coarse_run, &b);
		return;
	}
	int me = mr_worker_index(), first = -1;
	atomic_compare_exchange_strong(c->first_worker, &first, me);
	if (atomic_load(c->first_worker) != me)
		atomic_store(c->other_ran, 1);
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do
		clock_gettime(CLOCK_MONOTONIC, &t);
	while (!atomic_load(c->other_ran) &&
	       (t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 300000000L);
	atomic_fetch_add(c->leaves, 1);
}

TEST(coarse_tree_is_shared_early)
{
	mr_runtime_t *rt = make_rt(2, 0);
	ASSERT_NONNULL(rt);
	for (int rep = 0; rep < 3; rep++) {
		_Atomic int first = -1, other = 0, leaves = 0;
		struct coarse c = { 0, 16, &first, &other, &leaves };
		ASSERT_EQ(mr_runtime_install(rt, coarse_run, &c), 0);
		EXPECT_EQ(ld_int(&leaves), 16);
		EXPECT_EQ(ld_int(&other), 1);
	}
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

TEST(deep_recursion_with_promotions)
{
	/* Deeper than the latent stack (1024), promoted all the way down. */
	mr_runtime_t *rt = make_rt(1, 0);
	ASSERT_NONNULL(rt);
	mr__beat_ticks = 0;
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
	deep_chain(1, 0, chain_a, 5000);
	deep_chain(2, 0, chain_a, 5000);
	deep_chain(2, 6, chain_b, 5000);
	deep_chain(3, 0, chain_b, 5000);
}

/*
 * b's frame is promoted by a heartbeat in the joins that a() makes, and
 * stolen while a() still runs: a() ends only once b has run elsewhere, and
 * the join returns only once b has returned.
 */
struct stolen {
	_Atomic int b_started, b_done, b_worker, gave_up;
};

static void stolen_a(void *arg)
{
	struct stolen *s = arg;
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!atomic_load(&s->b_started)) {
		mr_join(nop, NULL, nop, NULL);
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec > 10) {
			atomic_store(&s->gave_up, 1);
			return;
		}
	}
}

static void stolen_b(void *arg)
{
	struct stolen *s = arg;
	atomic_store(&s->b_worker, mr_worker_index());
	atomic_store(&s->b_started, 1);
	usleep(20000);
	atomic_store(&s->b_done, 1);
}

static void stolen_run(void *arg)
{
	struct stolen *s = arg;
	int me = mr_worker_index();
	mr_join(stolen_a, s, stolen_b, s);
	EXPECT_EQ(ld_int(&s->b_done), 1);
	EXPECT_NE(ld_int(&s->b_worker), me);
}

TEST(promoted_frame_is_stolen_while_a_runs)
{
	for (int heartbeat_default = 0; heartbeat_default <= 1; heartbeat_default++) {
		mr_runtime_t *rt = make_rt(2, 0);
		struct stolen s;

		ASSERT_NONNULL(rt);
		if (!heartbeat_default)
			mr__beat_ticks = 0;
		memset(&s, 0, sizeof(s));
		ASSERT_EQ(mr_runtime_install(rt, stolen_run, &s), 0);
		EXPECT_EQ(ld_int(&s.gave_up), 0);
		EXPECT_EQ(ld_int(&s.b_done), 1);
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	}
}

/*
 * A context with latent frames that blocks (here a() waits for what only
 * b() posts; no join runs meanwhile, so no heartbeat) must not hide b
 * behind its sleeping thread: the block promotes every latent frame, and
 * the other worker runs b. Without that, a() waits for ever.
 */
struct blocker {
	mr_sem_t sem;
	_Atomic int b_runs;
};

static void blocker_a(void *arg)
{
	struct blocker *k = arg;
	mr_sem_wait(&k->sem);
}

static void blocker_b(void *arg)
{
	struct blocker *k = arg;
	atomic_fetch_add(&k->b_runs, 1);
	mr_sem_post(&k->sem);
}

static void blocker_count(void *arg)
{
	struct blocker *k = arg;
	atomic_fetch_add(&k->b_runs, 1);
}

static void blocker_nested(void *arg)
{
	/* Two latent frames under the waiting a(): both must come out. */
	struct blocker *k = arg;
	mr_join(blocker_a, k, blocker_b, k);
}

static void blocker_fiber(void *arg)
{
	struct blocker *k = arg;
	mr_join(blocker_nested, k, blocker_count, k);
}

static void blocker_run(void *arg)
{
	struct blocker *k = arg;
	/* From the installed job, then from a fiber of its own. */
	mr_join(blocker_nested, k, blocker_count, k);
	mr_fiber_t *f = mr_go(blocker_fiber, k);
	ASSERT_NONNULL(f);
	ASSERT_EQ(mr_fiber_join(f), 0);
}

TEST_TIMEOUT(blocking_with_latent_frames_promotes_them, 30)
{
	for (unsigned nw = 2; nw <= 3; nw++) {
		mr_runtime_t *rt = make_rt(nw, 0);
		struct blocker k;

		ASSERT_NONNULL(rt);
		memset(&k, 0, sizeof(k));
		ASSERT_EQ(mr_sem_init(&k.sem, 0), 0);
		ASSERT_EQ(mr_runtime_install(rt, blocker_run, &k), 0);
		EXPECT_EQ(ld_int(&k.b_runs), 4);
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	}
}

/*
 * A join whose a() waits for a group: the wait may sleep, and b, latent
 * in the waiting context, must not hide behind it. Here the group's task
 * (stolen by the other worker) waits for b: before the wait promoted the
 * latent frames, nobody ran b and the task spun until it gave up.
 */
struct gw {
	mr_group_t g;
	_Atomic int t_started, b_ran, gave_up;
};

static void gw_task(void *arg)
{
	struct gw *s = arg;
	struct timespec t0, t;
	atomic_store(&s->t_started, 1);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!atomic_load(&s->b_ran)) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec > 5) {
			atomic_store(&s->gave_up, 1);
			return;
		}
		sched_yield();
	}
}

static void gw_a(void *arg)
{
	struct gw *s = arg;
	mr_group_wait(&s->g);
}

static void gw_b(void *arg)
{
	struct gw *s = arg;
	atomic_store(&s->b_ran, 1);
}

static void gw_run(void *arg)
{
	struct gw *s = arg;
	mr_group_spawn(&s->g, gw_task, s);
	/* Joins make heartbeats, which publish the task: let it be stolen. */
	while (!atomic_load(&s->t_started))
		mr_join(nop, NULL, nop, NULL);
	mr_join(gw_a, s, gw_b, s);
}

TEST(group_wait_in_a_shares_latent_b)
{
	mr_runtime_t *rt = make_rt(2, 0);
	struct gw s;

	ASSERT_NONNULL(rt);
	mr__beat_ticks = 0;
	memset(&s, 0, sizeof(s));
	mr_group_init(&s.g);
	ASSERT_EQ(mr_runtime_install(rt, gw_run, &s), 0);
	EXPECT_EQ(ld_int(&s.gave_up), 0);
	EXPECT_EQ(ld_int(&s.b_ran), 1);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

TEST_HARNESS_MAIN
