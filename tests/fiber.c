/*
 * fiber.c - fibers: lifecycle, yield, sleep and timers, the parallel API
 * from a fiber, memory per parked fiber, stack overflow, misuse.
 */
#include <signal.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <moirai/moirai.h>

#include "harness.h"
#include "util.h"

/* TSan counts each fiber as a thread and allows ~8k at once. */
static int live_fibers(int n)
{
	n = (int)(n / (long)mr_test_scale());
#if defined(__SANITIZE_THREAD__)
	if (n > 4000)
		n = 4000;
#endif
	return n > 0 ? n : 1;
}

static long ld(_Atomic long *p)
{
	return atomic_load(p);
}

/* ---- lifecycle --------------------------------------------------------- */

static void inc(void *arg)
{
	atomic_fetch_add((_Atomic long *)arg, 1);
}

struct spawn_many {
	int n;
	_Atomic long count;
	int join_errors;
};

static void spawn_many_main(void *arg)
{
	struct spawn_many *s = arg;
	mr_fiber_t **fs = calloc((size_t)s->n, sizeof(*fs));
	for (int i = 0; i < s->n; i++)
		fs[i] = mr_go(inc, &s->count);
	for (int i = 0; i < s->n; i++)
		if (!fs[i] || mr_fiber_join(fs[i]) != 0)
			s->join_errors++;
	free(fs);
}

TEST(go_and_join_from_a_fiber)
{
	for (unsigned nw = 1; nw <= 3; nw++) {
		mr_runtime_t *rt = make_rt(nw);
		struct spawn_many s = { .n = live_fibers(10000) };
		ASSERT_NONNULL(rt);
		ASSERT_EQ(mr_run(rt, spawn_many_main, &s), 0);
		EXPECT_EQ(ld(&s.count), s.n);
		EXPECT_EQ(s.join_errors, 0);
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	}
}

TEST(go_and_join_from_a_thread)
{
	_Atomic long count = 0;
	mr_fiber_t *fs[100];

	for (int i = 0; i < 100; i++)
		ASSERT_NONNULL(fs[i] = mr_go(inc, &count));
	for (int i = 0; i < 100; i++)
		ASSERT_EQ(mr_fiber_join(fs[i]), 0);
	EXPECT_EQ(ld(&count), 100);
}

static void detached_main(void *arg)
{
	mr_wg_t *wg = arg;
	for (int i = 0; i < 1000; i++) {
		mr_fiber_t *f = mr_go((void (*)(void *))mr_wg_done, wg);
		if (f)
			mr_fiber_detach(f);
	}
}

TEST(detached_fibers_free_themselves)
{
	mr_runtime_t *rt = make_rt(2);
	mr_wg_t wg = MR_WG_INIT;

	ASSERT_NONNULL(rt);
	mr_wg_add(&wg, 1000);
	ASSERT_EQ(mr_run(rt, detached_main, &wg), 0);
	mr_wg_wait(&wg);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

struct self_info {
	mr_fiber_t *seen;
	char name[32];
	int join_self;
};

static void self_fn(void *arg)
{
	struct self_info *si = arg;
	si->seen = mr_fiber_self();
	snprintf(si->name, sizeof(si->name), "%s", mr_fiber_name(si->seen));
	si->join_self = mr_fiber_join(si->seen);
}

TEST(self_name_and_join_self)
{
	struct self_info si = { 0 };
	MR_OPTS(mr_fiber_opts, o, .name = "worker-fiber-7", .stack_size = 128 * 1024);
	mr_fiber_t *f = mr_go_opts(self_fn, &si, &o);

	ASSERT_NONNULL(f);
	ASSERT_EQ(mr_fiber_join(f), 0);
	EXPECT_TRUE(si.seen == f);
	EXPECT_EQ(strcmp(si.name, "worker-fiber-7"), 0);
	EXPECT_EQ(si.join_self, -EDEADLK);
	EXPECT_TRUE(mr_fiber_self() == NULL);
}

TEST(bad_input)
{
	MR_OPTS(mr_fiber_opts, small, .stack_size = 1024);
	MR_OPTS(mr_fiber_opts, huge, .stack_size = (size_t)1 << 40);
	_Atomic long c = 0;

	errno = 0;
	EXPECT_TRUE(NULL == mr_go(NULL, NULL));
	EXPECT_EQ(errno, EINVAL);
	errno = 0;
	EXPECT_TRUE(NULL == mr_go_opts(inc, &c, &small));
	EXPECT_EQ(errno, EINVAL);
	errno = 0;
	EXPECT_TRUE(NULL == mr_go_opts(inc, &c, &huge));
	EXPECT_EQ(errno, EINVAL);
	EXPECT_EQ(mr_fiber_join(NULL), -EINVAL);
	EXPECT_EQ(mr_fiber_detach(NULL), -EINVAL);
	EXPECT_EQ(mr_run(NULL, NULL, NULL), -EINVAL);
	EXPECT_EQ(ld(&c), 0);
}

static void run_inside(void *arg)
{
	int *r = arg;
	*r = mr_run(mr_runtime_current(), (void (*)(void *))inc, NULL);
}

TEST(mr_run_from_own_worker_edeadlk)
{
	mr_runtime_t *rt = make_rt(1);
	int r = 0;

	ASSERT_NONNULL(rt);
	ASSERT_EQ(mr_runtime_install(rt, run_inside, &r), 0);
	EXPECT_EQ(r, -EDEADLK);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* A job (not a fiber) on the only worker starts fibers and joins them. */
static void job_joins(void *arg)
{
	struct spawn_many *s = arg;
	s->n = 100;
	spawn_many_main(s);
}

TEST(join_from_a_job_on_a_one_worker_runtime)
{
	mr_runtime_t *rt = make_rt(1);
	struct spawn_many s = { 0 };

	ASSERT_NONNULL(rt);
	ASSERT_EQ(mr_runtime_install(rt, job_joins, &s), 0);
	EXPECT_EQ(ld(&s.count), 100);
	EXPECT_EQ(s.join_errors, 0);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* ---- yield --------------------------------------------------------------- */

struct yielder {
	int id, rounds;
	int *log;
	_Atomic int *pos;
};

static void yield_fn(void *arg)
{
	struct yielder *y = arg;
	for (int i = 0; i < y->rounds; i++) {
		y->log[atomic_fetch_add(y->pos, 1)] = y->id;
		mr_yield();
	}
}

static void yield_main(void *arg)
{
	struct yielder *ys = arg;
	mr_fiber_t *a = mr_go(yield_fn, &ys[0]);
	mr_fiber_t *b = mr_go(yield_fn, &ys[1]);
	mr_fiber_join(a);
	mr_fiber_join(b);
}

TEST(yield_alternates_on_one_worker)
{
	mr_runtime_t *rt = make_rt(1);
	int rounds = 1000;
	int *log = calloc(2 * (size_t)rounds, sizeof(int));
	_Atomic int pos = 0;
	struct yielder ys[2] = { { 0, rounds, log, &pos }, { 1, rounds, log, &pos } };

	ASSERT_NONNULL(rt);
	ASSERT_EQ(mr_run(rt, yield_main, ys), 0);
	ASSERT_EQ(atomic_load(&pos), 2 * rounds);
	int switches = 0;
	for (int i = 1; i < 2 * rounds; i++)
		switches += log[i] != log[i - 1];
	TH_LOG("%d alternations in %d entries", switches, 2 * rounds);
	EXPECT_GE(switches, 2 * rounds - 3);
	free(log);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

TEST(yield_from_a_thread_returns)
{
	mr_yield();
	mr_yield();
}

/* ---- ping-pong with semaphores ------------------------------------------------ */

struct pingpong {
	mr_sem_t a, b;
	long n, pings, pongs;
};

static void ping(void *arg)
{
	struct pingpong *p = arg;
	for (long i = 0; i < p->n; i++) {
		mr_sem_post(&p->b);
		mr_sem_wait(&p->a);
		p->pings++;
	}
}

static void pong(void *arg)
{
	struct pingpong *p = arg;
	for (long i = 0; i < p->n; i++) {
		mr_sem_wait(&p->b);
		p->pongs++;
		mr_sem_post(&p->a);
	}
}

static void pingpong_main(void *arg)
{
	mr_fiber_t *a = mr_go(ping, arg), *b = mr_go(pong, arg);
	mr_fiber_join(a);
	mr_fiber_join(b);
}

TEST_TIMEOUT(ping_pong_million, 120)
{
	for (unsigned nw = 1; nw <= 2; nw++) {
		mr_runtime_t *rt = make_rt(nw);
		struct pingpong p = { .n = (long)(1000000 / mr_test_scale()) };
		ASSERT_NONNULL(rt);
		mr_sem_init(&p.a, 0);
		mr_sem_init(&p.b, 0);
		ASSERT_EQ(mr_run(rt, pingpong_main, &p), 0);
		EXPECT_EQ(p.pings, p.n);
		EXPECT_EQ(p.pongs, p.n);
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	}
}

/* ---- the parallel API on a fiber's stack ------------------------------------------ */

struct fibn {
	int n;
	long r;
};

static void fib(void *p)
{
	struct fibn *f = p;
	if (f->n < 2) {
		f->r = f->n;
		return;
	}
	struct fibn a = { f->n - 1, 0 }, b = { f->n - 2, 0 };
	mr_join(fib, &a, fib, &b);
	f->r = a.r + b.r;
}

static void sum_body(size_t lo, size_t hi, void *ctx)
{
	atomic_fetch_add((_Atomic long *)ctx, (long)(hi - lo));
}

struct par_in_fiber {
	struct fibn f;
	_Atomic long covered;
	mr_group_t g;
	_Atomic long tasks;
};

static void par_fiber(void *arg)
{
	struct par_in_fiber *p = arg;
	fib(&p->f);
	mr_parallel_for(0, 100000, 0, sum_body, &p->covered);
	mr_group_init(&p->g);
	for (int i = 0; i < 1000; i++)
		mr_group_spawn(&p->g, inc, &p->tasks);
	mr_group_wait(&p->g);
}

static void par_main(void *arg)
{
	struct par_in_fiber *ps = arg;
	mr_fiber_t *fs[8];
	for (int i = 0; i < 8; i++)
		fs[i] = mr_go(par_fiber, &ps[i]);
	for (int i = 0; i < 8; i++)
		mr_fiber_join(fs[i]);
}

TEST(parallel_api_from_fibers)
{
	mr_runtime_t *rt = make_rt(2);
	struct par_in_fiber ps[8];

	ASSERT_NONNULL(rt);
	memset(ps, 0, sizeof(ps));
	for (int i = 0; i < 8; i++)
		ps[i].f.n = 20;
	ASSERT_EQ(mr_run(rt, par_main, ps), 0);
	for (int i = 0; i < 8; i++) {
		EXPECT_EQ(ps[i].f.r, 6765);
		EXPECT_EQ(ld(&ps[i].covered), 100000);
		EXPECT_EQ(ld(&ps[i].tasks), 1000);
	}
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* ---- stack overflow ------------------------------------------------------------------ */

static int recurse(int n)
{
	volatile char buf[512];
	buf[0] = (char)n;
	return n <= 0 ? buf[0] : recurse(n - 1) + buf[0];
}

static void overflow_fn(void *arg)
{
	(void)arg;
	recurse(1 << 20);
}

static void overflow_child(void *arg)
{
	MR_OPTS(mr_fiber_opts, o, .name = "deep-recursion", .stack_size = 64 * 1024);
	mr_fiber_t *f = mr_go_opts(overflow_fn, NULL, &o);
	(void)arg;
	mr_fiber_join(f);
	_exit(0);
}

TEST(stack_overflow_is_reported)
{
	char buf[4096];
	int st = mr_test_run_child(overflow_child, NULL, buf, sizeof(buf));

	if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT))
		TH_LOG("status %#x, stderr: %s", st, buf);
	ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
	ASSERT_STR_CONTAINS(buf, "moirai: fiber stack overflow");
	ASSERT_STR_CONTAINS(buf, "deep-recursion");
	ASSERT_STR_CONTAINS(buf, "65536");
}

/*
 * A frame bigger than a page, near the bottom of the stack: built with
 * -fstack-clash-protection (the Makefile's CFLAGS) it touches each page on
 * its way down and faults in the guard; without that, its far end lands
 * below the guard (64 KiB catch it even so). Either way it must be reported,
 * not write over the stack below (another fiber's, with its control block).
 */
/* Write p[0]; the array escapes, so the compiler must allocate all of it
 * (clang shrinks a VLA of which only [0] is used to nothing). */
static __attribute__((noinline)) void touch_first(char *p)
{
	*(volatile char *)p = 1;
	__asm__ volatile("" : : "r"(p) : "memory");
}

static __attribute__((noinline)) int big_frame(size_t n)
{
	char buf[n];

	touch_first(buf); /* the far end: the lowest address of the frame */
	return buf[0];
}

static __attribute__((noinline)) int descend_then(size_t room, size_t frame)
{
	char pad[room];

	touch_first(pad);
	return big_frame(frame) + pad[0];
}

static void big_frame_fn(void *arg)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	/* The control block sits at the top of the stack (fiber.h). */
	uintptr_t top = ((uintptr_t)mr_fiber_self() + ps - 1) & ~(uintptr_t)(ps - 1);
	uintptr_t base = top - 64 * 1024;
	uintptr_t sp = (uintptr_t)__builtin_frame_address(0);

	(void)arg;
	/* Leave 3 KiB of stack, then call a 16 KiB frame. */
	descend_then(sp - base - 3 * 1024, 16 * 1024);
}

static void neighbour_fn(void *arg)
{
	mr_event_wait(arg);
}

static void big_frame_child(void *arg)
{
	mr_event_t ev = MR_EVENT_INIT;
	MR_OPTS(mr_fiber_opts, o, .name = "big-frame", .stack_size = 64 * 1024);
	(void)arg;
	/* Neighbours on both sides in the pool, parked meanwhile. */
	mr_fiber_t *n1 = mr_go(neighbour_fn, &ev);
	mr_fiber_t *f = mr_go_opts(big_frame_fn, NULL, &o);
	mr_fiber_t *n2 = mr_go(neighbour_fn, &ev);
	mr_fiber_join(f);
	mr_event_set(&ev);
	mr_fiber_join(n1);
	mr_fiber_join(n2);
	_exit(0);
}

TEST(big_frame_overflow_is_reported)
{
	char buf[4096];
	int st = mr_test_run_child(big_frame_child, NULL, buf, sizeof(buf));

	if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT))
		TH_LOG("status %#x, stderr: %s", st, buf);
	ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
	ASSERT_STR_CONTAINS(buf, "moirai: fiber stack overflow");
	ASSERT_STR_CONTAINS(buf, "big-frame");
}

/* ---- misuse ------------------------------------------------------------------------------ */

static void nop(void *arg)
{
	(void)arg;
}

static void join_twice_child(void *arg)
{
	mr_fiber_t *f = mr_go(nop, NULL);
	(void)arg;
	mr_fiber_join(f);
	mr_fiber_join(f);
	_exit(0);
}

static void join_detached_child(void *arg)
{
	mr_event_t *ev = malloc(sizeof(*ev));
	mr_event_init(ev);
	mr_fiber_t *f = mr_go((void (*)(void *))mr_event_wait, ev);
	(void)arg;
	mr_fiber_detach(f);
	mr_fiber_join(f);
	_exit(0);
}

static void destroy_held_child(void *arg)
{
	mr_mutex_t m = MR_MUTEX_INIT;
	(void)arg;
	mr_mutex_lock(&m);
	mr_mutex_destroy(&m);
	_exit(0);
}

static mr_mutex_t other_m = MR_MUTEX_INIT;

static mr_event_t other_locked = MR_EVENT_INIT, other_done = MR_EVENT_INIT;

/* Stays alive (so the next fiber cannot reuse its stack and address). */
static void lock_it(void *arg)
{
	(void)arg;
	mr_mutex_lock(&other_m);
	mr_event_set(&other_locked);
	mr_event_wait(&other_done);
}

static void unlock_it(void *arg)
{
	(void)arg;
	mr_mutex_unlock(&other_m);
}

static void unlock_other_fiber_child(void *arg)
{
	(void)arg;
	mr_fiber_t *a = mr_go(lock_it, NULL);
	mr_event_wait(&other_locked);
	mr_fiber_join(mr_go(unlock_it, NULL));
	mr_event_set(&other_done);
	mr_fiber_join(a);
	_exit(0);
}

static void on_usr1(int sig)
{
	(void)sig;
	mr_yield(); /* a fiber-only call from a signal handler */
}

static void raise_in_fiber(void *arg)
{
	struct sigaction sa;
	(void)arg;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_ONSTACK;
	sigaction(SIGUSR1, &sa, NULL);
	raise(SIGUSR1);
}

static void signal_handler_child(void *arg)
{
	(void)arg;
	mr_fiber_join(mr_go(raise_in_fiber, NULL));
	_exit(0);
}

TEST(misuse_aborts_naming_the_call)
{
	struct {
		void (*fn)(void *);
		const char *want;
	} cases[] = {
		{ join_twice_child, "mr_fiber_join" },
		{ join_detached_child, "detached" },
		{ destroy_held_child, "mr_mutex_destroy" },
		{ unlock_other_fiber_child, "mr_mutex_unlock" },
		{ signal_handler_child, "mr_yield" },
	};
	char buf[4096];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int st = mr_test_run_child(cases[i].fn, NULL, buf, sizeof(buf));
		if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT))
			TH_LOG("case %zu: status %#x, stderr: %s", i, st, buf);
		EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
		ASSERT_STR_CONTAINS(buf, cases[i].want);
	}
}

/*
 * A fiber with a stack of its own size has its control block in a mapping
 * that release unmaps: a second join, or a detach after the join, must
 * abort with the message a default-size fiber gets, not crash.
 */
static void join_twice_sized_child(void *arg)
{
	MR_OPTS(mr_fiber_opts, o, .stack_size = 256 * 1024);
	mr_fiber_t *f = mr_go_opts(nop, NULL, &o);

	mr_fiber_join(f);
	if (arg)
		mr_fiber_detach(f);
	else
		mr_fiber_join(f);
	_exit(0);
}

TEST(double_join_of_a_sized_fiber_aborts)
{
	static const char *calls[] = { "mr_fiber_join", "mr_fiber_detach" };
	char buf[4096];

	for (int i = 0; i < 2; i++) {
		int st = mr_test_run_child(join_twice_sized_child, i ? (void *)1 : NULL, buf,
					   sizeof(buf));
		if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT))
			TH_LOG("%s: status %#x, stderr: %s", calls[i], st, buf);
		EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
		ASSERT_STR_CONTAINS(buf, calls[i]);
		ASSERT_STR_CONTAINS(buf, "is not a fiber handle (or its fiber was released)");
	}
}

/*
 * mr_run's main fiber gets a stack a normal C main does not overflow (a
 * 64 KiB local array overflowed the old 64 KiB one), and mr_run_opts()
 * chooses another size.
 */
static __attribute__((noinline)) long sum_big_array(size_t n)
{
	volatile unsigned char a[n];
	long sum = 0;

	for (size_t i = 0; i < n; i += 256)
		a[i] = (unsigned char)(i / 256 + 1);
	a[n - 1] = 1;
	for (size_t i = 0; i < n; i += 256)
		sum += a[i];
	return sum + a[n - 1];
}

static void big_main(void *arg)
{
	size_t n = *(size_t *)arg;

	*(long *)arg = sum_big_array(n) > 0 ? 0 : -1;
	EXPECT_TRUE(strcmp(mr_fiber_name(mr_fiber_self()), "main") == 0);
}

TEST(mr_run_main_has_a_big_stack)
{
	mr_runtime_t *rt = make_rt(1);
	size_t arg = 64 * 1024;

	ASSERT_NONNULL(rt);
	ASSERT_EQ(mr_run(rt, big_main, &arg), 0);
	EXPECT_EQ((long)arg, 0);
	/* 6 MiB of locals: still under the 8 MiB default. */
	arg = 6 * 1024 * 1024;
	ASSERT_EQ(mr_run(rt, big_main, &arg), 0);
	EXPECT_EQ((long)arg, 0);
	/* A chosen size: 32 MiB holds 24 MiB of locals. */
	MR_OPTS(mr_fiber_opts, o, .runtime = rt, .stack_size = 32 * 1024 * 1024);
	arg = 24 * 1024 * 1024;
	ASSERT_EQ(mr_run_opts(big_main, &arg, &o), 0);
	EXPECT_EQ((long)arg, 0);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

static void small_main_child(void *arg)
{
	mr_runtime_t *rt = make_rt(1);
	MR_OPTS(mr_fiber_opts, o, .runtime = rt, .stack_size = 64 * 1024, .name = "small-main");
	size_t n = 96 * 1024; /* its far end lies in the guard */

	(void)arg;
	mr_run_opts(big_main, &n, &o);
	_exit(0);
}

TEST(mr_run_opts_small_stack_overflow_is_reported)
{
	char buf[4096];
	MR_OPTS(mr_fiber_opts, bad, .stack_size = 1024);

	/* Fork before this process has workers (a child of a threaded
	 * process may inherit a lock some worker held). */
	int st = mr_test_run_child(small_main_child, NULL, buf, sizeof(buf));
	if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT))
		TH_LOG("status %#x, stderr: %s", st, buf);
	EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
	ASSERT_STR_CONTAINS(buf, "moirai: fiber stack overflow in fiber \"small-main\"");
	EXPECT_EQ(mr_run_opts(big_main, NULL, &bad), -EINVAL);
	EXPECT_EQ(mr_run_opts(NULL, NULL, NULL), -EINVAL);
}

/* ---- worker stacks ------------------------------------------------------------------ */

/* About 1 KiB of stack per level; not a tail call (buf is read after). */
static __attribute__((noinline)) long deep(long n)
{
	volatile char buf[1000];

	buf[0] = 1;
	buf[sizeof(buf) - 1] = 1;
	if (n <= 0)
		return 0;
	return deep(n - 1) + buf[0];
}

static void deep_job(void *arg)
{
	long *n = arg;

	*n = deep(*n);
}

/* 24,000 levels: 24 MiB and more, three times the usual 8 MiB. */
#define DEEP_LEVELS 24000

TEST(job_recursion_on_a_big_worker_stack)
{
	MR_OPTS(mr_config, cfg, .workers = 2, .stack_size = 64 << 20);
	mr_runtime_t *rt = mr_runtime_create(&cfg);
	long n = DEEP_LEVELS;

	ASSERT_NONNULL(rt);
	ASSERT_EQ(mr_runtime_install(rt, deep_job, &n), 0);
	EXPECT_EQ(n, DEEP_LEVELS);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

TEST(moirai_stack_sets_the_worker_stack)
{
	MR_OPTS(mr_config, cfg, .workers = 1);
	MR_OPTS(mr_config, tiny, .workers = 1, .stack_size = 1024);
	long n = DEEP_LEVELS;

	ASSERT_EQ(setenv("MOIRAI_STACK", "64M", 1), 0);
	mr_runtime_t *rt = mr_runtime_create(&cfg);
	ASSERT_NONNULL(rt);
	ASSERT_EQ(mr_runtime_install(rt, deep_job, &n), 0);
	EXPECT_EQ(n, DEEP_LEVELS);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
	/* The default runtime too. */
	n = DEEP_LEVELS;
	ASSERT_EQ(mr_runtime_install(mr_runtime_default(), deep_job, &n), 0);
	EXPECT_EQ(n, DEEP_LEVELS);
	const char *bad[] = { "lots", "-1", "0", "12Q", "99999999999G" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ASSERT_EQ(setenv("MOIRAI_STACK", bad[i], 1), 0);
		errno = 0;
		EXPECT_TRUE(mr_runtime_create(&cfg) == NULL);
		EXPECT_EQ(errno, EINVAL);
	}
	ASSERT_EQ(unsetenv("MOIRAI_STACK"), 0);
	errno = 0;
	EXPECT_TRUE(mr_runtime_create(&tiny) == NULL);
	EXPECT_EQ(errno, EINVAL);
}

static void worker_overflow_child(void *arg)
{
	MR_OPTS(mr_config, cfg, .workers = 2, .stack_size = 256 * 1024);
	mr_runtime_t *rt = mr_runtime_create(&cfg);
	long n = 1 << 20;

	(void)arg;
	if (rt)
		mr_runtime_install(rt, deep_job, &n);
	_exit(0);
}

TEST(worker_stack_overflow_is_reported)
{
	char buf[4096];
	int st = mr_test_run_child(worker_overflow_child, NULL, buf, sizeof(buf));

	if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT))
		TH_LOG("status %#x, stderr: %s", st, buf);
	ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
	ASSERT_STR_CONTAINS(buf, "moirai: worker stack overflow in worker thread moirai-w");
	ASSERT_STR_CONTAINS(buf, "(stack size ");
}

/* ---- munmap failures in the stack pool --------------------------------------------- */

extern int (*mr__test_munmap)(void *addr, size_t len);
static _Atomic int munmap_fails, munmap_errno;

static int failing_munmap(void *addr, size_t len)
{
	if (atomic_load(&munmap_fails) > 0) {
		atomic_fetch_sub(&munmap_fails, 1);
		errno = atomic_load(&munmap_errno);
		return -1;
	}
	return munmap(addr, len);
}

static void touch_stack(void *arg)
{
	volatile char buf[64 * 1024];

	buf[0] = 1;
	buf[sizeof(buf) - 1] = 1;
	*(int *)arg += buf[0];
}

/*
 * munmap of a non-default stack failing with ENOMEM (a split of a merged
 * VMA at vm.max_map_count) keeps the stack for the next one of that size.
 */
TEST(stack_kept_when_munmap_fails_with_enomem)
{
	MR_OPTS(mr_fiber_opts, o, .stack_size = 192 * 1024);
	int ran = 0;

	mr__test_munmap = failing_munmap;
	atomic_store(&munmap_errno, ENOMEM);
	atomic_store(&munmap_fails, 1);
	mr_fiber_t *f = mr_go_opts(touch_stack, &ran, &o);
	ASSERT_NONNULL(f);
	ASSERT_EQ(mr_fiber_join(f), 0);
	EXPECT_EQ(atomic_load(&munmap_fails), 0);
	/* The same stack again (its control block at the same place), whole. */
	mr_fiber_t *g = mr_go_opts(touch_stack, &ran, &o);
	ASSERT_NONNULL(g);
	EXPECT_TRUE(g == f);
	ASSERT_EQ(mr_fiber_join(g), 0);
	EXPECT_EQ(ran, 2);
	/* Unmapped this time: the next one is a fresh mapping, and works. */
	mr_fiber_t *h = mr_go_opts(touch_stack, &ran, &o);
	ASSERT_NONNULL(h);
	ASSERT_EQ(mr_fiber_join(h), 0);
	EXPECT_EQ(ran, 3);
	mr__test_munmap = NULL;
}

static void munmap_einval_child(void *arg)
{
	MR_OPTS(mr_fiber_opts, o, .stack_size = 192 * 1024);
	int ran = 0;

	(void)arg;
	mr__test_munmap = failing_munmap;
	atomic_store(&munmap_errno, EINVAL);
	atomic_store(&munmap_fails, 1);
	mr_fiber_join(mr_go_opts(touch_stack, &ran, &o));
	_exit(0);
}

/* Any other failure means our own bookkeeping is broken: abort, saying so. */
TEST(munmap_failure_of_a_stack_aborts)
{
	char buf[4096];
	int st = mr_test_run_child(munmap_einval_child, NULL, buf, sizeof(buf));

	if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT))
		TH_LOG("status %#x, stderr: %s", st, buf);
	ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
	ASSERT_STR_CONTAINS(buf, "munmap of a fiber stack");
	ASSERT_STR_CONTAINS(buf, "Invalid argument");
}

TEST_HARNESS_MAIN
