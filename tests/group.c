/*
 * group.c - task groups: a million tasks each run exactly once, transitive
 * spawns into the same group, nested groups, waits from outside threads and
 * from several waiters at once, reuse after wait, the empty group, bad
 * input, and the static initializer.
 */
#include <pthread.h>
#include <sched.h>
#include <unistd.h>
#include <stdatomic.h>

#include <moirai/moirai.h>

#include "harness.h"

static long ld(_Atomic long *p)
{
	return atomic_load(p);
}

static void inc(void *arg)
{
	atomic_fetch_add_explicit((_Atomic long *)arg, 1, memory_order_relaxed);
}

static mr_runtime_t *make_rt(unsigned workers)
{
	MR_OPTS(mr_config, cfg, .workers = workers);
	return mr_runtime_create(&cfg);
}

/* ---- many tasks, each exactly once ------------------------------------- */

struct flags {
	_Atomic unsigned char *flag;
	size_t n;
	mr_group_t g;
	int waited;
};

static void set_flag(void *arg)
{
	_Atomic unsigned char *f = arg;
	atomic_fetch_add_explicit(f, 1, memory_order_relaxed);
}

static void spawn_all(void *arg)
{
	struct flags *fl = arg;

	mr_group_init(&fl->g);
	for (size_t i = 0; i < fl->n; i++)
		if (mr_group_spawn(&fl->g, set_flag, (void *)&fl->flag[i]) != 0)
			abort();
	fl->waited = mr_group_wait(&fl->g) == 0;
}

static void check_flags(struct flags *fl)
{
	size_t bad = 0, first = 0;
	for (size_t i = 0; i < fl->n; i++)
		if (atomic_load_explicit(&fl->flag[i], memory_order_relaxed) != 1 && !bad++)
			first = i;
	if (bad)
		TH_LOG("%zu of %zu tasks did not run exactly once (first: %zu ran %u times)", bad,
		       fl->n, first, (unsigned)fl->flag[first]);
	ASSERT_EQ(bad, 0);
}

TEST(million_tasks_each_run_once)
{
	struct flags fl = { 0 };

	fl.n = 1000000 / mr_test_scale();
	fl.flag = calloc(fl.n, 1);
	ASSERT_NONNULL(fl.flag);
	for (unsigned nw = 1; nw <= 3; nw += 2) {
		mr_runtime_t *rt = make_rt(nw);
		ASSERT_NONNULL(rt);
		memset((void *)fl.flag, 0, fl.n);
		ASSERT_EQ(mr_runtime_install(rt, spawn_all, &fl), 0);
		ASSERT_TRUE(fl.waited);
		check_flags(&fl);
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	}
	free((void *)fl.flag);
}

TEST(many_tasks_spawned_from_outside)
{
	struct flags fl = { 0 };

	/* From a plain thread: every task goes through the default runtime's injector. */
	fl.n = 200000 / mr_test_scale();
	fl.flag = calloc(fl.n, 1);
	ASSERT_NONNULL(fl.flag);
	spawn_all(&fl);
	ASSERT_TRUE(fl.waited);
	check_flags(&fl);
	free((void *)fl.flag);
}

/* ---- transitive spawns ------------------------------------------------- */

struct tree {
	mr_group_t *g;
	_Atomic long *count;
	int depth;
	int fanout;
};

static void tree_task(void *arg)
{
	struct tree *t = arg;
	if (t->depth > 0) {
		for (int i = 0; i < t->fanout; i++) {
			struct tree *c = malloc(sizeof(*c));
			if (!c)
				abort();
			*c = (struct tree){ t->g, t->count, t->depth - 1, t->fanout };
			if (mr_group_spawn(t->g, tree_task, c) != 0)
				abort();
		}
	}
	atomic_fetch_add(t->count, 1);
	free(t);
}

static long tree_size(int depth, int fanout)
{
	long n = 1, level = 1;
	for (int d = 0; d < depth; d++) {
		level *= fanout;
		n += level;
	}
	return n;
}

struct tree_run {
	int depth, fanout;
	long after_wait;
	_Atomic long count;
};

static void tree_root(void *arg)
{
	struct tree_run *r = arg;
	mr_group_t g;
	struct tree *t = malloc(sizeof(*t));

	if (!t)
		abort();
	mr_group_init(&g);
	*t = (struct tree){ &g, &r->count, r->depth, r->fanout };
	mr_group_spawn(&g, tree_task, t);
	mr_group_wait(&g);
	/* Right after wait: every task of the tree, however deep, finished. */
	r->after_wait = ld(&r->count);
}

TEST(transitive_spawns_into_same_group)
{
	static const struct {
		int depth, fanout;
	} shapes[] = { { 0, 1 }, { 1, 1 }, { 200, 1 }, { 14, 2 }, { 6, 5 }, { 2, 300 } };
	int reps = mr_test_scale() > 1 ? 3 : 10;

	for (unsigned nw = 1; nw <= 4; nw++) {
		mr_runtime_t *rt = make_rt(nw);
		ASSERT_NONNULL(rt);
		for (size_t k = 0; k < sizeof(shapes) / sizeof(shapes[0]); k++) {
			for (int rep = 0; rep < reps; rep++) {
				struct tree_run r = { shapes[k].depth, shapes[k].fanout, -1, 0 };
				ASSERT_EQ(mr_runtime_install(rt, tree_root, &r), 0);
				ASSERT_EQ(r.after_wait, tree_size(r.depth, r.fanout));
			}
		}
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	}
}

TEST(transitive_spawns_waited_from_outside)
{
	for (int rep = 0; rep < 20; rep++) {
		_Atomic long count = 0;
		mr_group_t g;
		struct tree *t = malloc(sizeof(*t));

		ASSERT_NONNULL(t);
		mr_group_init(&g);
		*t = (struct tree){ &g, &count, 12, 2 };
		ASSERT_EQ(mr_group_spawn(&g, tree_task, t), 0);
		ASSERT_EQ(mr_group_wait(&g), 0);
		ASSERT_EQ(ld(&count), tree_size(12, 2));
	}
}

/* ---- nested groups ----------------------------------------------------- */

struct nest {
	_Atomic long leaves, bad, outer_done;
	int inner_n, outer_n, levels;
};

struct nest_arg {
	struct nest *n;
	int level;
};

static void nest_leaf(void *arg)
{
	struct nest *n = arg;
	atomic_fetch_add(&n->leaves, 1);
}

static void nest_task(void *arg)
{
	struct nest_arg *a = arg;
	struct nest *n = a->n;
	mr_group_t inner;
	_Atomic long mine = 0;

	mr_group_init(&inner);
	if (a->level == 0) {
		for (int i = 0; i < n->inner_n; i++) {
			mr_group_spawn(&inner, nest_leaf, n);
			mr_group_spawn(&inner, inc, &mine);
		}
		mr_group_wait(&inner);
		if (ld(&mine) != n->inner_n)
			atomic_fetch_add(&n->bad, 1);
	} else {
		struct nest_arg *kids = malloc(sizeof(*kids) * (size_t)n->outer_n);
		if (!kids)
			abort();
		for (int i = 0; i < n->outer_n; i++) {
			kids[i] = (struct nest_arg){ n, a->level - 1 };
			mr_group_spawn(&inner, nest_task, &kids[i]);
		}
		/* The task waits for its own inner group. */
		mr_group_wait(&inner);
		free(kids);
	}
	atomic_fetch_add(&n->outer_done, 1);
}

static void nest_root(void *arg)
{
	struct nest *n = arg;
	struct nest_arg a = { n, n->levels };
	mr_group_t outer;

	mr_group_init(&outer);
	mr_group_spawn(&outer, nest_task, &a);
	mr_group_wait(&outer);
}

TEST(nested_groups)
{
	for (unsigned nw = 1; nw <= 3; nw++) {
		mr_runtime_t *rt = make_rt(nw);
		struct nest n = { 0 };

		ASSERT_NONNULL(rt);
		n.inner_n = 50;
		n.outer_n = 6;
		n.levels = 3;
		ASSERT_EQ(mr_runtime_install(rt, nest_root, &n), 0);
		EXPECT_EQ(ld(&n.bad), 0);
		EXPECT_EQ(ld(&n.leaves), 6L * 6 * 6 * 50);
		EXPECT_EQ(ld(&n.outer_done), 1 + 6 + 36 + 216);
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	}
	/* From outside: the outermost wait is a thread's. */
	struct nest n = { 0 };
	n.inner_n = 20;
	n.outer_n = 4;
	n.levels = 2;
	nest_root(&n);
	EXPECT_EQ(ld(&n.bad), 0);
	EXPECT_EQ(ld(&n.leaves), 4L * 4 * 20);
}

/* ---- waits from outside ------------------------------------------------ */

static void slow_inc(void *arg)
{
	volatile unsigned long x = 0;
	for (int i = 0; i < 2000; i++)
		x += (unsigned long)i;
	inc(arg);
}

TEST(wait_from_outside_thread)
{
	_Atomic long count = 0;
	mr_group_t g;

	mr_group_init(&g);
	for (int round = 1; round <= 50; round++) {
		for (int i = 0; i < 100; i++)
			ASSERT_EQ(mr_group_spawn(&g, round % 2 ? slow_inc : inc, &count), 0);
		ASSERT_EQ(mr_group_wait(&g), 0);
		ASSERT_EQ(ld(&count), 100L * round);
	}
}

struct spawner {
	mr_group_t *g;
	_Atomic long *count;
	int n;
};

static void *spawn_thread(void *arg)
{
	struct spawner *s = arg;
	for (int i = 0; i < s->n; i++)
		if (mr_group_spawn(s->g, slow_inc, s->count) != 0)
			abort();
	return NULL;
}

TEST(spawn_from_several_threads_wait_from_another)
{
	enum { NT = 3 };
	_Atomic long count = 0;
	mr_group_t g;
	pthread_t th[NT];
	struct spawner s = { &g, &count, (int)(20000 / mr_test_scale()) };

	mr_group_init(&g);
	for (int i = 0; i < NT; i++)
		ASSERT_EQ(pthread_create(&th[i], NULL, spawn_thread, &s), 0);
	for (int i = 0; i < NT; i++)
		pthread_join(th[i], NULL);
	ASSERT_EQ(mr_group_wait(&g), 0);
	ASSERT_EQ(ld(&count), (long)NT * s.n);
}

/*
 * Several waiters on one group: two plain threads and a task. A gate task in
 * the group holds it open until both threads are about to wait, so they
 * really do wait (the gate depends on threads only, never on a worker).
 */
struct multi_wait {
	mr_group_t g, h;
	_Atomic long count;
	_Atomic int arrived;
	int ntasks;
	long seen[3];
	int ret[3];
};

static void gate(void *arg)
{
	struct multi_wait *m = arg;
	while (atomic_load(&m->arrived) < 2)
		sched_yield();
	slow_inc(&m->count);
}

struct waiter_arg {
	struct multi_wait *m;
	int id;
};

static void *waiter_thread(void *arg)
{
	struct multi_wait *m = ((struct waiter_arg *)arg)->m;
	int id = ((struct waiter_arg *)arg)->id;

	atomic_fetch_add(&m->arrived, 1);
	m->ret[id] = mr_group_wait(&m->g);
	m->seen[id] = ld(&m->count);
	return NULL;
}

static void waiter_task(void *arg)
{
	struct multi_wait *m = arg;
	m->ret[2] = mr_group_wait(&m->g);
	m->seen[2] = ld(&m->count);
}

TEST(multiple_waiters_on_one_group)
{
	int rounds = (int)(100 / mr_test_scale()) + 2;

	for (int round = 0; round < rounds; round++) {
		struct multi_wait m;
		struct waiter_arg args[2];
		pthread_t th[2];

		memset(&m, 0, sizeof(m));
		mr_group_init(&m.g);
		mr_group_init(&m.h);
		m.ntasks = 200;
		ASSERT_EQ(mr_group_spawn(&m.g, gate, &m), 0);
		for (int i = 1; i < m.ntasks; i++)
			ASSERT_EQ(mr_group_spawn(&m.g, slow_inc, &m.count), 0);
		/* The task waiter, in another group. */
		ASSERT_EQ(mr_group_spawn(&m.h, waiter_task, &m), 0);
		for (int i = 0; i < 2; i++) {
			args[i] = (struct waiter_arg){ &m, i };
			ASSERT_EQ(pthread_create(&th[i], NULL, waiter_thread, &args[i]), 0);
		}
		for (int i = 0; i < 2; i++)
			pthread_join(th[i], NULL);
		ASSERT_EQ(mr_group_wait(&m.h), 0);
		for (int i = 0; i < 3; i++) {
			EXPECT_EQ(m.ret[i], 0);
			EXPECT_EQ(m.seen[i], m.ntasks);
		}
	}
}

/* Many workers wait on one group, each from its own task. */
struct crowd {
	mr_group_t target, waiters;
	_Atomic long count, bad;
	long n;
};

static void crowd_waiter(void *arg)
{
	struct crowd *c = arg;
	mr_group_wait(&c->target);
	if (ld(&c->count) != c->n)
		atomic_fetch_add(&c->bad, 1);
}

static void crowd_run(void *arg)
{
	struct crowd *c = arg;
	mr_group_init(&c->target);
	mr_group_init(&c->waiters);
	/* Every task of target is spawned before the first waiter exists. */
	for (long i = 0; i < c->n; i++)
		mr_group_spawn(&c->target, slow_inc, &c->count);
	for (long i = 0; i < c->n; i += 50)
		mr_group_spawn(&c->waiters, crowd_waiter, c);
	mr_group_wait(&c->waiters);
	mr_group_wait(&c->target);
	if (ld(&c->count) != c->n)
		atomic_fetch_add(&c->bad, 1);
}

TEST(many_task_waiters_on_one_group)
{
	for (unsigned nw = 1; nw <= 4; nw++) {
		mr_runtime_t *rt = make_rt(nw);
		struct crowd c;

		ASSERT_NONNULL(rt);
		for (int rep = 0; rep < 10; rep++) {
			memset(&c, 0, sizeof(c));
			c.n = 2000;
			ASSERT_EQ(mr_runtime_install(rt, crowd_run, &c), 0);
			EXPECT_EQ(ld(&c.bad), 0);
		}
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	}
}

/* ---- a round ends while another waiter reuses the group ---------------- */

/*
 * Test hook in user/par/group.c: called by the task that ends a round that
 * has waiters, before that round's waiters are released (NULL otherwise).
 */
extern void (*mr__test_group_last_hook)(void);

static void wait_flag(_Atomic int *f, int ms)
{
	for (int i = 0; i < ms && !atomic_load(f); i++)
		usleep(1000);
}

/*
 * One round: gate task T holds g open until waiter A (a thread) sleeps in
 * mr_group_wait. T's end calls the hook; while the hook holds T there, a
 * second waiter B (a thread) waits on g (sees the round end), spawns U and
 * waits again. U only finishes well after the hook returns, so a second
 * wait that was released with the old round returns before U ran. With
 * `free_it`, B instead frees g as soon as its first wait returns: a round
 * whose end still touched g after that would use freed memory (ASan), or
 * hang on what free left there.
 */
struct reuse_race {
	mr_group_t *g;
	int free_it;
	_Atomic int a_arrived, window, b_in_wait, hook_done, u_done;
	int a_ret, b_ret1, b_ret2, b_saw_u;
};

static struct reuse_race *_Atomic race_now;
static _Atomic int race_hooked;

static void race_hook(void)
{
	struct reuse_race *r = atomic_load(&race_now);

	if (!r || atomic_exchange(&r->window, 1))
		return; /* not armed, or not the round's first end */
	atomic_fetch_add(&race_hooked, 1);
	/* Let B reach its first wait, then give it time to return (it must
	 * not), spawn U and wait again. */
	wait_flag(&r->b_in_wait, 2000);
	usleep(20000);
	atomic_store(&r->hook_done, 1);
}

static void race_gate(void *arg)
{
	struct reuse_race *r = arg;
	wait_flag(&r->a_arrived, 2000);
	usleep(20000); /* A goes to sleep in mr_group_wait meanwhile */
}

static void race_u(void *arg)
{
	struct reuse_race *r = arg;
	wait_flag(&r->hook_done, 2000);
	usleep(10000);
	atomic_store(&r->u_done, 1);
}

static void *race_a(void *arg)
{
	struct reuse_race *r = arg;
	atomic_store(&r->a_arrived, 1);
	r->a_ret = mr_group_wait(r->g);
	return NULL;
}

static void *race_b(void *arg)
{
	struct reuse_race *r = arg;
	wait_flag(&r->window, 2000);
	atomic_store(&r->b_in_wait, 1);
	r->b_ret1 = mr_group_wait(r->g);
	if (r->free_it) {
		/* The round is over for us: the memory is ours again. */
		free(r->g);
		r->g = NULL;
		return NULL;
	}
	r->b_ret2 = mr_group_spawn(r->g, race_u, r);
	if (r->b_ret2 == 0)
		r->b_ret2 = mr_group_wait(r->g);
	r->b_saw_u = atomic_load(&r->u_done);
	return NULL;
}

static void reuse_race_rounds(int free_it)
{
	int rounds = 4;

	atomic_store(&race_hooked, 0);
	mr__test_group_last_hook = race_hook;
	for (int round = 0; round < rounds; round++) {
		struct reuse_race r;
		pthread_t a, b;

		memset(&r, 0, sizeof(r));
		r.free_it = free_it;
		r.g = malloc(sizeof(*r.g));
		ASSERT_NONNULL(r.g);
		mr_group_init(r.g);
		atomic_store(&race_now, &r);
		ASSERT_EQ(mr_group_spawn(r.g, race_gate, &r), 0);
		ASSERT_EQ(pthread_create(&a, NULL, race_a, &r), 0);
		ASSERT_EQ(pthread_create(&b, NULL, race_b, &r), 0);
		pthread_join(b, NULL);
		pthread_join(a, NULL);
		atomic_store(&race_now, NULL);
		EXPECT_EQ(r.a_ret, 0);
		EXPECT_EQ(r.b_ret1, 0);
		if (!free_it) {
			EXPECT_EQ(r.b_ret2, 0);
			/* B's second wait covered U: U had finished. */
			EXPECT_EQ(r.b_saw_u, 1);
			/* Nothing is left in g: a third wait returns at once. */
			EXPECT_EQ(mr_group_wait(r.g), 0);
			free(r.g);
		}
	}
	mr__test_group_last_hook = NULL;
	/* The scenario happened (A was asleep in the wait when T ended). */
	EXPECT_GT(atomic_load(&race_hooked), 0);
}

TEST(waiter_reusing_the_group_as_a_round_ends_waits_for_its_own_tasks)
{
	reuse_race_rounds(0);
}

TEST(waiter_freeing_the_group_as_a_round_ends)
{
	reuse_race_rounds(1);
}

/*
 * Stress: several waiters (tasks on 3 workers and 2 plain threads) share
 * one group and reuse it round after round: each spawns a few tasks of its
 * own, waits, and checks that every one of them had finished.
 */
struct share {
	mr_group_t g, runners;
	int rounds;
	_Atomic long early, done;
};

struct sharer {
	struct share *s;
	_Atomic long mine;
	unsigned seed;
};

static void share_task(void *arg)
{
	struct sharer *me = arg;
	if (me->seed % 4 == 0) {
		volatile unsigned x = 0;
		for (unsigned i = 0; i < (me->seed & 0x3ff); i++)
			x += i;
	}
	atomic_fetch_add_explicit(&me->mine, 1, memory_order_relaxed);
}

static void share_loop(struct sharer *me)
{
	struct share *s = me->s;
	long spawned = 0;

	for (int round = 0; round < s->rounds; round++) {
		me->seed = me->seed * 1103515245u + 12345u;
		int n = (int)(me->seed >> 16) % 4; /* 0 .. 3 tasks: often empty rounds */
		for (int i = 0; i < n; i++)
			if (mr_group_spawn(&s->g, share_task, me) == 0)
				spawned++;
		if (mr_group_wait(&s->g) != 0 ||
		    atomic_load_explicit(&me->mine, memory_order_relaxed) != spawned)
			atomic_fetch_add(&s->early, 1);
		atomic_fetch_add(&s->done, 1);
	}
}

static void share_runner(void *arg)
{
	share_loop(arg);
}

static void *share_thread(void *arg)
{
	share_loop(arg);
	return NULL;
}

struct share_run {
	struct share *s;
	struct sharer *tasks;
	int ntasks;
};

static void share_inside(void *arg)
{
	struct share_run *sr = arg;
	for (int i = 0; i < sr->ntasks; i++)
		mr_group_spawn(&sr->s->runners, share_runner, &sr->tasks[i]);
	mr_group_wait(&sr->s->runners);
}

static void *share_install(void *arg)
{
	struct share_run *sr = arg;
	mr_runtime_t *rt = make_rt(3);
	if (!rt || mr_runtime_install(rt, share_inside, sr) != 0)
		abort();
	mr_runtime_destroy(rt);
	return NULL;
}

TEST(several_waiters_reuse_one_group_stress)
{
	enum { NTASK = 3, NTHREAD = 2 };
	struct share s;
	struct sharer tasks[NTASK], threads[NTHREAD];
	struct share_run sr = { &s, tasks, NTASK };
	pthread_t inst, th[NTHREAD];

	memset(&s, 0, sizeof(s));
	memset(tasks, 0, sizeof(tasks));
	memset(threads, 0, sizeof(threads));
	mr_group_init(&s.g);
	mr_group_init(&s.runners);
	s.rounds = (int)(5000 / mr_test_scale());
	for (int i = 0; i < NTASK; i++)
		tasks[i] = (struct sharer){ .s = &s, .seed = 7u + (unsigned)i };
	for (int i = 0; i < NTHREAD; i++)
		threads[i] = (struct sharer){ .s = &s, .seed = 100u + (unsigned)i };
	/* Tasks spawned from the threads run on the default runtime; those of
	 * the waiter tasks on the 3-worker one: one group, two runtimes. */
	ASSERT_EQ(pthread_create(&inst, NULL, share_install, &sr), 0);
	for (int i = 0; i < NTHREAD; i++)
		ASSERT_EQ(pthread_create(&th[i], NULL, share_thread, &threads[i]), 0);
	for (int i = 0; i < NTHREAD; i++)
		pthread_join(th[i], NULL);
	pthread_join(inst, NULL);
	EXPECT_EQ(atomic_load(&s.early), 0);
	EXPECT_EQ(atomic_load(&s.done), (long)(NTASK + NTHREAD) * s.rounds);
	EXPECT_EQ(mr_group_wait(&s.g), 0);
}

/*
 * A wait runs whatever is on top of its deque, not only its group's tasks:
 * here, between two tasks of g, a task of h that itself waits on g. That
 * inner wait must see g's true count (the outer wait's tasks that already
 * ran included), or it waits for the outer wait below it on the stack.
 */
struct inner_wait {
	mr_group_t g, h;
	_Atomic long ran;
	int inner_ret;
	long inner_saw;
};

static void iw_inc(void *arg)
{
	struct inner_wait *iw = arg;
	atomic_fetch_add(&iw->ran, 1);
}

static void iw_waits_on_g(void *arg)
{
	struct inner_wait *iw = arg;
	iw->inner_ret = mr_group_wait(&iw->g);
	iw->inner_saw = ld(&iw->ran);
}

static void iw_root(void *arg)
{
	struct inner_wait *iw = arg;

	mr_group_init(&iw->g);
	mr_group_init(&iw->h);
	/* Deque, bottom to top: g's first task, h's task, g's second task. */
	mr_group_spawn(&iw->g, iw_inc, iw);
	mr_group_spawn(&iw->h, iw_waits_on_g, iw);
	mr_group_spawn(&iw->g, iw_inc, iw);
	mr_group_wait(&iw->g);
	mr_group_wait(&iw->h);
}

TEST_TIMEOUT(a_task_run_by_a_wait_may_wait_on_the_same_group, 10)
{
	mr_runtime_t *rt = make_rt(1);
	struct inner_wait iw;

	ASSERT_NONNULL(rt);
	for (int rep = 0; rep < 10; rep++) {
		memset(&iw, 0, sizeof(iw));
		ASSERT_EQ(mr_runtime_install(rt, iw_root, &iw), 0);
		EXPECT_EQ(iw.inner_ret, 0);
		EXPECT_EQ(iw.inner_saw, 2);
		EXPECT_EQ(ld(&iw.ran), 2);
	}
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* ---- reuse, empty, bad input, static init ------------------------------ */

static void reuse_run(void *arg)
{
	long *result = arg;
	_Atomic long count = 0;
	mr_group_t g;

	mr_group_init(&g);
	for (long round = 1; round <= 200; round++) {
		for (long i = 0; i < round % 17; i++)
			mr_group_spawn(&g, inc, &count);
		mr_group_wait(&g);
		long expect = 0;
		for (long r = 1; r <= round; r++)
			expect += r % 17;
		if (ld(&count) != expect) {
			*result = round;
			return;
		}
	}
	*result = 0;
}

TEST(group_reuse_after_wait)
{
	mr_runtime_t *rt = make_rt(2);
	long result = -1;

	ASSERT_NONNULL(rt);
	ASSERT_EQ(mr_runtime_install(rt, reuse_run, &result), 0);
	EXPECT_EQ(result, 0);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
	/* And from outside. */
	result = -1;
	reuse_run(&result);
	EXPECT_EQ(result, 0);
}

static void empty_wait(void *arg)
{
	int *ret = arg;
	mr_group_t g;
	mr_group_init(&g);
	ret[0] = mr_group_wait(&g);
	ret[1] = mr_group_wait(&g);
}

TEST(empty_group_wait_returns_at_once)
{
	mr_group_t g;
	int ret[2] = { -1, -1 };
	mr_runtime_t *rt = make_rt(1);

	mr_group_init(&g);
	EXPECT_EQ(mr_group_wait(&g), 0);
	EXPECT_EQ(mr_group_wait(&g), 0);
	ASSERT_NONNULL(rt);
	ASSERT_EQ(mr_runtime_install(rt, empty_wait, ret), 0);
	EXPECT_EQ(ret[0], 0);
	EXPECT_EQ(ret[1], 0);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

static void bad_input_inside(void *arg)
{
	int *r = arg;
	mr_group_t g, zero;
	long n = 0;

	memset(&zero, 0, sizeof(zero));
	mr_group_init(&g);
	r[0] = mr_group_spawn(NULL, inc, &n);
	r[1] = mr_group_spawn(&g, NULL, &n);
	r[2] = mr_group_spawn(&zero, inc, &n);
	r[3] = mr_group_wait(NULL);
	r[4] = mr_group_wait(&zero);
	r[5] = mr_group_wait(&g);
	r[6] = (int)n;
}

TEST(bad_input_einval)
{
	mr_group_t g, zero;
	long n = 0;
	int r[7];

	memset(&zero, 0, sizeof(zero));
	mr_group_init(&g);
	EXPECT_EQ(mr_group_spawn(NULL, inc, &n), -EINVAL);
	EXPECT_EQ(mr_group_spawn(&g, NULL, &n), -EINVAL);
	EXPECT_EQ(mr_group_spawn(&zero, inc, &n), -EINVAL);
	EXPECT_EQ(mr_group_wait(NULL), -EINVAL);
	EXPECT_EQ(mr_group_wait(&zero), -EINVAL);
	/* The failed spawns left nothing behind: g waits for nothing. */
	EXPECT_EQ(mr_group_wait(&g), 0);
	EXPECT_EQ(n, 0);

	mr_runtime_t *rt = make_rt(2);
	ASSERT_NONNULL(rt);
	memset(r, 0x55, sizeof(r));
	ASSERT_EQ(mr_runtime_install(rt, bad_input_inside, r), 0);
	EXPECT_EQ(r[0], -EINVAL);
	EXPECT_EQ(r[1], -EINVAL);
	EXPECT_EQ(r[2], -EINVAL);
	EXPECT_EQ(r[3], -EINVAL);
	EXPECT_EQ(r[4], -EINVAL);
	EXPECT_EQ(r[5], 0);
	EXPECT_EQ(r[6], 0);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/*
 * A group holding the most unfinished tasks refuses one more with
 * -EOVERFLOW and is left as it was. The count is set through the group's
 * layout (user/par/group.c: the state word at byte 8, count in its low 30
 * bits): spawning 2^29 real tasks would take 32 GiB.
 */
static void set_group_count(mr_group_t *g, uint32_t n)
{
	memcpy((char *)g + 8, &n, sizeof(n));
}

static void overflow_inside(void *arg)
{
	int *r = arg;
	mr_group_t g;
	long n = 0;

	mr_group_init(&g);
	set_group_count(&g, (1u << 29) - 1);
	/* One below the limit: accepted (the task waits in our deque). */
	r[0] = mr_group_spawn(&g, inc, &n);
	r[1] = mr_group_spawn(&g, inc, &n);
	set_group_count(&g, 1); /* just the real task */
	r[2] = mr_group_wait(&g);
	r[3] = (int)n;
}

TEST(spawn_into_a_full_group_eoverflow)
{
	mr_group_t g;
	long n = 0;
	int r[4];
	mr_runtime_t *rt;

	/* From outside ... */
	mr_group_init(&g);
	set_group_count(&g, 1u << 29);
	EXPECT_EQ(mr_group_spawn(&g, inc, &n), -EOVERFLOW);
	set_group_count(&g, 0);
	EXPECT_EQ(mr_group_wait(&g), 0);
	EXPECT_EQ(n, 0);
	/* ... and from a worker. */
	rt = make_rt(1);
	ASSERT_NONNULL(rt);
	memset(r, 0x55, sizeof(r));
	ASSERT_EQ(mr_runtime_install(rt, overflow_inside, r), 0);
	EXPECT_EQ(r[0], 0);
	EXPECT_EQ(r[1], -EOVERFLOW);
	EXPECT_EQ(r[2], 0);
	EXPECT_EQ(r[3], 1);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

static mr_group_t static_group = MR_GROUP_INIT;

static void static_init_inside(void *arg)
{
	_Atomic long *count = arg;
	mr_group_t g = MR_GROUP_INIT;

	for (int i = 0; i < 1000; i++)
		mr_group_spawn(&g, inc, count);
	mr_group_wait(&g);
}

TEST(static_initializer)
{
	_Atomic long count = 0;
	mr_group_t local = MR_GROUP_INIT;
	mr_runtime_t *rt;

	EXPECT_EQ(mr_group_wait(&static_group), 0);
	for (int i = 0; i < 1000; i++)
		ASSERT_EQ(mr_group_spawn(&static_group, inc, &count), 0);
	ASSERT_EQ(mr_group_wait(&static_group), 0);
	ASSERT_EQ(ld(&count), 1000);

	for (int i = 0; i < 1000; i++)
		ASSERT_EQ(mr_group_spawn(&local, inc, &count), 0);
	ASSERT_EQ(mr_group_wait(&local), 0);
	ASSERT_EQ(ld(&count), 2000);

	rt = make_rt(2);
	ASSERT_NONNULL(rt);
	ASSERT_EQ(mr_runtime_install(rt, static_init_inside, &count), 0);
	ASSERT_EQ(ld(&count), 3000);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* A task sees the runtime it was spawned on. */
struct where_ctx {
	mr_runtime_t *want;
	_Atomic long bad, n;
};

static void where_task(void *arg)
{
	struct where_ctx *w = arg;
	if (mr_runtime_current() != w->want || mr_worker_index() < 0)
		atomic_fetch_add(&w->bad, 1);
	atomic_fetch_add(&w->n, 1);
}

static void where_spawn(void *arg)
{
	struct where_ctx *w = arg;
	mr_group_t g;
	mr_group_init(&g);
	for (int i = 0; i < 500; i++)
		mr_group_spawn(&g, where_task, w);
	mr_group_wait(&g);
}

TEST(tasks_run_on_the_spawners_runtime)
{
	mr_runtime_t *rt = make_rt(3);
	struct where_ctx w = { 0 };
	mr_group_t g;

	ASSERT_NONNULL(rt);
	w.want = rt;
	ASSERT_EQ(mr_runtime_install(rt, where_spawn, &w), 0);
	EXPECT_EQ(ld(&w.bad), 0);
	EXPECT_EQ(ld(&w.n), 500);
	/* From outside: the default runtime. */
	w.want = mr_runtime_default();
	mr_group_init(&g);
	for (int i = 0; i < 500; i++)
		ASSERT_EQ(mr_group_spawn(&g, where_task, &w), 0);
	ASSERT_EQ(mr_group_wait(&g), 0);
	EXPECT_EQ(ld(&w.bad), 0);
	EXPECT_EQ(ld(&w.n), 1000);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

TEST_HARNESS_MAIN
