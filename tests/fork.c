/*
 * fork.c - fork() and the library: a child forked from a fiber is a plain
 * thread that can block (sleep, yield, channel receive with a deadline,
 * semaphore wait), run fibers on a new runtime and on a fresh default
 * runtime, and end by returning from the fiber's function; a fork while
 * another thread holds a library lock (the stack pool's, the scheduler
 * registration's) leaves the child a usable library; mr_go from a signal
 * handler that interrupted the library aborts naming the call.
 *
 * Every child arms an alarm, so a hang in the child is a failure (killed by
 * SIGALRM) that the parent reports, not a harness timeout.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#include <moirai/moirai.h>

#include "../user/fiber/fiber.h"
#include "harness.h"
#include "util.h"

/*
 * TSan (gcc 12's) cannot start threads in the child of a multi-threaded
 * fork: glibc gives a new thread the stack of a parent thread, whose id
 * TSan still has ("dup thread with used id"). Children that need threads
 * (a runtime) skip under TSan; the rest of each test still runs there.
 */
#if defined(__SANITIZE_THREAD__)
#define THREADS_IN_CHILD 0
#else
#define THREADS_IN_CHILD 1
#endif

#define CHILD_ALARM_S 5

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static bool exited_ok(int status)
{
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void log_status(const char *what, int status)
{
	if (exited_ok(status))
		return;
	if (WIFEXITED(status))
		TH_LOG("%s: child exited with %d", what, WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		TH_LOG("%s: child killed by signal %d (%s)", what, WTERMSIG(status),
		       strsignal(WTERMSIG(status)));
}

/* ---- a child forked from a fiber ------------------------------------------ */

struct from_fiber {
	int (*child)(struct from_fiber *ff); /* the child's checks: 0 when all hold */
	mr_fiber_t *self;		     /* the fiber that forks */
	bool child_returns;		     /* the child returns from the fiber instead */
	mr_mutex_t *lock;		     /* held by the fiber across the fork */
	int status;
};

static void forking_fiber(void *p)
{
	struct from_fiber *ff = p;

	ff->self = mr_fiber_self();
	if (ff->lock)
		mr_mutex_lock(ff->lock);
	pid_t pid = fork();
	if (pid == 0) {
		alarm(CHILD_ALARM_S);
		if (ff->child_returns)
			return; /* ends the child as exit(0) */
		_exit(ff->child(ff));
	}
	ASSERT_TRUE(pid > 0);
	ASSERT_EQ(waitpid(pid, &ff->status, 0), pid);
	if (ff->lock)
		mr_mutex_unlock(ff->lock);
}

/*
 * Until every worker of rt sleeps. ASan's (gcc 12) allocator is not
 * fork-safe: a child may hang in malloc, or in the leak check at exit, if
 * a parent thread was inside it at the fork (a worker just starting, say).
 */
static void wait_idle(mr_runtime_t *rt)
{
	while (atomic_load(&((struct mr_runtime *)rt)->nidle) != mr_runtime_workers(rt))
		sleep_ms(1);
}

/*
 * Fork from a fiber of a one-worker runtime run by mr_run (a program's main
 * under mr_run), with the default runtime alive in the parent too.
 */
static void fork_from_fiber(struct from_fiber *ff)
{
	mr_runtime_t *rt = make_rt(1);

	ASSERT_NONNULL(rt);
	ASSERT_NONNULL(mr_runtime_default());
	wait_idle(mr_runtime_default());
	ASSERT_EQ(mr_run(rt, forking_fiber, ff), 0);
	log_status("fork from a fiber", ff->status);
	EXPECT_TRUE(exited_ok(ff->status));
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

static int child_sleeps(struct from_fiber *ff)
{
	int64_t t0 = mr_now_ns();

	/* The child continues the fiber as a plain thread. */
	if (mr_fiber_self() != ff->self || mr_runtime_current() || mr_worker_index() != -1)
		return 2;
	if (mr_sleep_ns(2000000) != 0 || mr_now_ns() - t0 < 2000000)
		return 3;
	if (mr_sleep_until(mr_now_ns() + 1000000) != 0)
		return 4;
	return 0;
}

TEST(child_of_a_fiber_sleeps)
{
	struct from_fiber ff = { .child = child_sleeps };
	fork_from_fiber(&ff);
}

static int child_yields(struct from_fiber *ff)
{
	(void)ff;
	for (int i = 0; i < 10; i++)
		mr_yield();
	return 0;
}

TEST(child_of_a_fiber_yields)
{
	struct from_fiber ff = { .child = child_yields };
	fork_from_fiber(&ff);
}

static int child_receives(struct from_fiber *ff)
{
	static const size_t caps[] = { 4, MR_CHAN_UNBOUNDED, 0 };
	uint64_t v = 7;

	(void)ff;
	for (size_t k = 0; k < sizeof(caps) / sizeof(caps[0]); k++) {
		mr_chan_t *ch = mr_chan_create(sizeof(v), caps[k], 0);
		if (!ch)
			return 2;
		if (mr_chan_recv_until(ch, &v, mr_now_ns() + 2000000) != -ETIMEDOUT)
			return 3;
		if (caps[k] != 0 &&
		    (mr_chan_send(ch, &v) != 0 || mr_chan_recv(ch, &v) != 0 || v != 7))
			return 4;
		mr_chan_destroy(ch);
	}
	return 0;
}

TEST(child_of_a_fiber_receives_with_a_deadline)
{
	struct from_fiber ff = { .child = child_receives };
	fork_from_fiber(&ff);
}

static void *post_later(void *p)
{
	sleep_ms(5);
	mr_sem_post(p);
	return NULL;
}

static int child_waits_on_a_semaphore(struct from_fiber *ff)
{
	mr_sem_t s;
	pthread_t th;

	(void)ff;
	mr_sem_init(&s, 0);
	if (mr_sem_wait_until(&s, mr_now_ns() + 2000000) != -ETIMEDOUT)
		return 2;
	mr_sem_post(&s);
	mr_sem_wait(&s);
	if (!THREADS_IN_CHILD)
		return 0;
	if (pthread_create(&th, NULL, post_later, &s) != 0)
		return 3;
	mr_sem_wait(&s); /* blocks until the thread posts */
	pthread_join(th, NULL);
	return 0;
}

TEST(child_of_a_fiber_waits_on_a_semaphore)
{
	struct from_fiber ff = { .child = child_waits_on_a_semaphore };
	fork_from_fiber(&ff);
}

/* Fibers in the child: one sleeps, then sends to the other. */
struct pair {
	mr_chan_t *ch;
	uint64_t got;
};

static void pair_sender(void *p)
{
	struct pair *pr = p;
	uint64_t v = 42;

	mr_sleep_ns(1000000);
	mr_chan_send(pr->ch, &v);
}

static void pair_main(void *p)
{
	struct pair *pr = p;
	mr_fiber_t *s = mr_go(pair_sender, pr);

	if (s && mr_chan_recv(pr->ch, &pr->got) == 0)
		mr_fiber_join(s);
}

static int run_pair(mr_runtime_t *rt)
{
	struct pair pr = { mr_chan_create(8, 0, 0), 0 };

	if (!pr.ch)
		return 10;
	/* From the child's thread: mr_go + join, and mr_run. */
	MR_OPTS(mr_fiber_opts, o, .runtime = rt);
	mr_fiber_t *f = mr_go_opts(pair_main, &pr, &o);
	if (!f || mr_fiber_join(f) != 0 || pr.got != 42)
		return 11;
	pr.got = 0;
	if (mr_run(rt, pair_main, &pr) != 0 || pr.got != 42)
		return 12;
	mr_chan_destroy(pr.ch);
	return 0;
}

static int child_uses_a_new_runtime(struct from_fiber *ff)
{
	(void)ff;
	mr_runtime_t *rt = make_rt(2);
	if (!rt)
		return 2;
	int r = run_pair(rt);
	if (r)
		return r;
	return mr_runtime_destroy(rt) == 0 ? 0 : 3;
}

TEST(child_of_a_fiber_uses_a_new_runtime)
{
	if (!THREADS_IN_CHILD)
		SKIP("TSan cannot start threads in the child of a multi-threaded fork");
	struct from_fiber ff = { .child = child_uses_a_new_runtime };
	fork_from_fiber(&ff);
}

static int child_uses_the_default_runtime(struct from_fiber *ff)
{
	(void)ff;
	/* NULL options: the default runtime, created afresh in the child. */
	return run_pair(NULL);
}

TEST(child_of_a_fiber_uses_the_default_runtime)
{
	if (!THREADS_IN_CHILD)
		SKIP("TSan cannot start threads in the child of a multi-threaded fork");
	struct from_fiber ff = { .child = child_uses_the_default_runtime };
	fork_from_fiber(&ff);
}

/* A mutex the fiber held at the fork is held by the child's caller. */
static mr_mutex_t held_mutex = MR_MUTEX_INIT;

static int child_unlocks_a_mutex(struct from_fiber *ff)
{
	(void)ff;
	mr_mutex_unlock(&held_mutex); /* aborts if not held by the caller */
	mr_mutex_lock(&held_mutex);
	mr_mutex_unlock(&held_mutex);
	return 0;
}

TEST(child_of_a_fiber_unlocks_the_mutex_it_held)
{
	struct from_fiber ff = { .child = child_unlocks_a_mutex };

	ff.lock = &held_mutex;
	fork_from_fiber(&ff);
}

/*
 * Fibers of the parent that wait on objects the child shares: the child
 * wakes them (a post, a send to a waiting receiver) and goes on; the
 * wake-up goes nowhere (the fibers are not in the child).
 */
static struct {
	mr_sem_t sem;
	mr_chan_t *ch;
	atomic_int waiting;
} shared;

static void parent_sem_waiter(void *p)
{
	(void)p;
	atomic_fetch_add(&shared.waiting, 1);
	mr_sem_wait_until(&shared.sem, mr_now_ns() + 10000000000);
}

static void parent_chan_waiter(void *p)
{
	uint64_t v;

	(void)p;
	atomic_fetch_add(&shared.waiting, 1);
	mr_chan_recv_until(shared.ch, &v, mr_now_ns() + 10000000000);
}

static int child_wakes_the_parents_fibers(struct from_fiber *ff)
{
	uint64_t v = 1;

	(void)ff;
	mr_sem_post(&shared.sem);
	return mr_chan_send(shared.ch, &v) == 0 ? 0 : 2;
}

static void waiters_then_fork(void *p)
{
	struct from_fiber *ff = p;
	mr_fiber_t *a = mr_go(parent_sem_waiter, NULL), *b = mr_go(parent_chan_waiter, NULL);

	ASSERT_NONNULL(a);
	ASSERT_NONNULL(b);
	while (atomic_load(&shared.waiting) < 2)
		mr_sleep_ns(1000000);
	mr_sleep_ns(5000000); /* time to park */
	forking_fiber(ff);
	uint64_t v = 2;
	mr_sem_post(&shared.sem);
	ASSERT_EQ(mr_chan_send(shared.ch, &v), 0);
	ASSERT_EQ(mr_fiber_join(a), 0);
	ASSERT_EQ(mr_fiber_join(b), 0);
}

TEST(child_of_a_fiber_wakes_the_parents_fibers)
{
	struct from_fiber ff = { .child = child_wakes_the_parents_fibers };
	mr_runtime_t *rt = make_rt(2);

	ASSERT_NONNULL(rt);
	mr_sem_init(&shared.sem, 0);
	shared.ch = mr_chan_create(8, 0, 0);
	ASSERT_NONNULL(shared.ch);
	ASSERT_EQ(mr_run(rt, waiters_then_fork, &ff), 0);
	log_status("child wakes the parent's fibers", ff.status);
	EXPECT_TRUE(exited_ok(ff.status));
	mr_chan_destroy(shared.ch);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

TEST(child_of_a_fiber_returns_from_it)
{
	struct from_fiber ff = { .child_returns = true };
	fork_from_fiber(&ff);
}

/* ---- fork while another thread holds a library lock ------------------------ */

/* The test hooks mr__test_stack_pool_locked and mr__test_scx_locked (see
 * the private headers) are called with their lock held. */
static atomic_int held, release;

/* Hold the lock long enough for the other thread to fork meanwhile. */
static void hold_a_while(void)
{
	atomic_store(&held, 1);
	sleep_ms(200);
}

static void *hold_stack_pool(void *p)
{
	struct mr__stack st;

	(void)p;
	if (mr__stack_alloc(NULL, MR_FIBER_STACK_DEFAULT, &st) < 0)
		atomic_store(&held, -1);
	/* Stay still (no allocation) until the fork is done. */
	while (!atomic_load(&release))
		sleep_ms(1);
	mr__stack_free(NULL, &st);
	return NULL;
}

static void *hold_scx(void *p)
{
	static struct mr_runtime rt; /* no workers: registration only */

	(void)p;
	mr__scx_runtime_init(&rt);
	while (!atomic_load(&release))
		sleep_ms(1);
	return NULL;
}

static void nop(void *p)
{
	(void)p;
}

/* In the child: take the stack pool's lock as mr_go does. */
static void use_stack_pool(void)
{
	struct mr__stack st;

	if (mr__stack_alloc(NULL, MR_FIBER_STACK_DEFAULT, &st) < 0)
		_exit(3);
	mr__stack_free(NULL, &st);
}

/* In the child: take the registration lock as mr_runtime_create does. */
static void use_scx(void)
{
	static struct mr_runtime rt;

	mr__scx_runtime_init(&rt);
}

/*
 * Fork while holder() holds a lock through its hook. In the child, use()
 * takes that lock directly, then mr_go (which creates the child's default
 * runtime, taking it again) must complete.
 */
static void fork_while_held(void *(*holder)(void *), void (**hook)(void), void (*use)(void))
{
	pthread_t th;
	int status;

	unsetenv("MOIRAI_SCX"); /* registration takes the lock only when enabled */
	*hook = hold_a_while;
	ASSERT_EQ(pthread_create(&th, NULL, holder, NULL), 0);
	while (!atomic_load(&held))
		sleep_ms(1);
	ASSERT_EQ(atomic_load(&held), 1);
	pid_t pid = fork();
	if (pid == 0) {
		alarm(CHILD_ALARM_S);
		*hook = NULL;
		use();
		if (!THREADS_IN_CHILD)
			_exit(0);
		mr_fiber_t *f = mr_go(nop, NULL);
		_exit(f && mr_fiber_join(f) == 0 ? 0 : 2);
	}
	ASSERT_TRUE(pid > 0);
	atomic_store(&release, 1);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	log_status("fork while a lock is held", status);
	EXPECT_TRUE(exited_ok(status));
	ASSERT_EQ(pthread_join(th, NULL), 0);
	*hook = NULL;
}

TEST(fork_while_the_stack_pool_is_locked)
{
	fork_while_held(hold_stack_pool, &mr__test_stack_pool_locked, use_stack_pool);
}

TEST(fork_while_the_scheduler_registration_is_locked)
{
	fork_while_held(hold_scx, &mr__test_scx_locked, use_scx);
}

/* ---- mr_go from a signal handler ------------------------------------------ */

static pthread_t worker_thread;

static void record_worker(void *p)
{
	(void)p;
	worker_thread = pthread_self();
}

static void go_in_handler(int sig)
{
	(void)sig;
	mr_go(nop, NULL);
}

/*
 * mr_go is not async-signal-safe; where a handler interrupted the library
 * it must abort naming the call rather than hang.
 *
 * A signal caught by a sleeping worker, whose handler calls mr_go: the
 * fiber would sit in the private part of that worker's deque while it goes
 * back to sleep (a hang). It must abort naming mr_go.
 */
static void go_from_handler_child(void *p)
{
	(void)p;
	mr_runtime_t *rt = make_rt(1);
	struct sigaction sa;

	alarm(CHILD_ALARM_S);
	if (!rt || mr_run(rt, record_worker, NULL) != 0)
		_exit(2);
	wait_idle(rt); /* the worker sleeps (parked, counted idle) */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = go_in_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	pthread_kill(worker_thread, SIGUSR1);
	sleep_ms(500);
	_exit(3); /* mr_go returned in the handler */
}

TEST(mr_go_from_a_signal_handler_aborts)
{
	char buf[1024];
	int st = mr_test_run_child(go_from_handler_child, NULL, buf, sizeof(buf));

	if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT))
		log_status("mr_go in a handler", st);
	ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
	ASSERT_STR_CONTAINS(buf, "mr_go");
	ASSERT_STR_CONTAINS(buf, "signal handler");
}

/* The handler interrupts a thread that holds the stack pool's lock, which
 * mr_go takes too: a deadlock on itself without the check. */
static void raise_usr1(void)
{
	raise(SIGUSR1);
}

static void go_from_handler_in_lock_child(void *p)
{
	struct sigaction sa;
	struct mr__stack st;

	(void)p;
	alarm(CHILD_ALARM_S);
	mr_runtime_default(); /* mr_go's runtime exists: only the pool is in the way */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = go_in_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	mr__test_stack_pool_locked = raise_usr1;
	mr__stack_alloc(NULL, MR_FIBER_STACK_DEFAULT, &st);
	_exit(3);
}

TEST(mr_go_from_a_signal_handler_inside_a_library_lock_aborts)
{
	char buf[1024];
	int st = mr_test_run_child(go_from_handler_in_lock_child, NULL, buf, sizeof(buf));

	if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT))
		log_status("mr_go in a handler, lock held", st);
	ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
	ASSERT_STR_CONTAINS(buf, "mr_go");
	ASSERT_STR_CONTAINS(buf, "signal handler");
}

TEST_HARNESS_MAIN
