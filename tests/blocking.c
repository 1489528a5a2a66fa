/*
 * blocking.c - the blocking pool (mr_blocking): the result (an error as
 * -errno) comes back; a fiber's call runs on a pool thread named
 * "moirai-blk" while its worker runs other fibers (a one-worker runtime
 * makes progress while a call waits on a pipe that the test writes only
 * after seeing that progress); many concurrent calls from 1 and 2 workers
 * finish; a saturated pool queues (never more threads than the maximum,
 * FIFO) and a raised maximum starts threads for what is queued; threads,
 * jobs and pinned fibers run the call inline; a forked child gets a
 * working pool; idle threads exit after the keep-alive; configuration
 * errors and a pool without threads.
 *
 * Waits for a state of the pool poll with a bound (wait_for()): a hang is
 * a failure with a message, and no test asserts a timing.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>

#include <moirai/moirai.h>

#include "../user/io/io.h"
#include "harness.h"
#include "util.h"

#if defined(__SANITIZE_THREAD__)
#define THREADS_IN_CHILD 0 /* tests/fork.c: TSan cannot start threads there */
#else
#define THREADS_IN_CHILD 1
#endif

static pid_t tid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Poll cond(arg) every millisecond for up to 20 s: true once it holds. */
static bool wait_for(bool (*cond)(void *), void *arg)
{
	for (int i = 0; i < 20000; i++) {
		if (cond(arg))
			return true;
		sleep_ms(1);
	}
	return cond(arg);
}

static bool at_least(void *p)
{
	long *args = p;
	return atomic_load((_Atomic long *)args[0]) >= args[1];
}

/* Wait until *counter >= n. */
static bool wait_count(_Atomic long *counter, long n)
{
	long args[2] = { (long)(intptr_t)counter, n };
	return wait_for(at_least, args);
}

static mr_fiber_t *go_on(mr_runtime_t *rt, void (*fn)(void *), void *arg)
{
	MR_OPTS(mr_fiber_opts, o, .runtime = rt);
	return mr_go_opts(fn, arg, &o);
}

/* The comm of thread t of this process ("" if it has gone). */
static void comm_of(pid_t t, char *buf, size_t cap)
{
	char path[64];
	ssize_t n = 0;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%d/comm", (int)t);
	buf[0] = 0;
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return;
	n = read(fd, buf, cap - 1);
	close(fd);
	if (n < 0)
		n = 0;
	buf[n] = 0;
	if (n > 0 && buf[n - 1] == '\n')
		buf[n - 1] = 0;
}

/* Threads of this process named "moirai-blk". */
static unsigned count_pool_threads(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	unsigned n = 0;
	char name[32];

	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.') {
			comm_of((pid_t)atoi(e->d_name), name, sizeof(name));
			n += strcmp(name, "moirai-blk") == 0;
		}
	closedir(d);
	return n;
}

/* ---- result, errno, where it runs ----------------------------------------- */

struct probe {
	pid_t tid;     /* thread fn ran on */
	char comm[32]; /* its name */
	pid_t caller;  /* the caller's thread, just before the call */
	int r;
	long result;
	int r2;
	long result2; /* of a failing open(), as -errno */
};

static long probe_fn(void *p)
{
	struct probe *pr = p;

	pr->tid = tid();
	comm_of(pr->tid, pr->comm, sizeof(pr->comm));
	return 42;
}

static long open_missing(void *p)
{
	int fd = open("/nonexistent/moirai-blocking-test", O_RDONLY);

	if (fd >= 0)
		close(fd);
	return fd < 0 ? -errno : fd;
}

static void probe_call(void *p)
{
	struct probe *pr = p;

	pr->caller = tid();
	pr->result = pr->result2 = -1;
	pr->r = mr_blocking(probe_fn, pr, &pr->result);
	pr->r2 = mr_blocking(open_missing, NULL, &pr->result2);
}

TEST(fiber_gets_the_result_from_a_pool_thread)
{
	mr_runtime_t *rt = make_rt(1);
	struct probe pr = { 0 };

	ASSERT_NONNULL(rt);
	mr_fiber_t *f = go_on(rt, probe_call, &pr);
	ASSERT_NONNULL(f);
	ASSERT_EQ(mr_fiber_join(f), 0);
	ASSERT_EQ(pr.r, 0);
	EXPECT_EQ(pr.result, 42);
	EXPECT_EQ(pr.r2, 0);
	EXPECT_EQ(pr.result2, -ENOENT);
	EXPECT_NE(pr.tid, pr.caller);
	EXPECT_EQ(strcmp(pr.comm, "moirai-blk"), 0);
	if (strcmp(pr.comm, "moirai-blk"))
		TH_LOG("pool thread named \"%s\"", pr.comm);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

TEST(thread_runs_the_call_inline)
{
	struct probe pr = { 0 };

	probe_call(&pr);
	ASSERT_EQ(pr.r, 0);
	EXPECT_EQ(pr.result, 42);
	EXPECT_EQ(pr.r2, 0);
	EXPECT_EQ(pr.result2, -ENOENT);
	EXPECT_EQ(pr.tid, pr.caller);
	EXPECT_EQ(mr__blocking_nthreads(), 0);
}

/* A loop body (a job) and the a() of a fiber's mr_join (a pinned fiber). */
static struct probe job_probes[8];

static void job_body(size_t lo, size_t hi, void *ctx)
{
	for (size_t i = lo; i < hi; i++)
		probe_call(&job_probes[i]);
}

static struct probe pinned_probe;

static void pinned_a(void *p)
{
	probe_call(&pinned_probe);
}

static void nothing(void *p)
{
}

static void pinned_fiber(void *p)
{
	mr_join(pinned_a, NULL, nothing, NULL);
}

TEST(job_and_pinned_fiber_run_the_call_inline)
{
	mr_runtime_t *rt = make_rt(2);

	ASSERT_NONNULL(rt);
	ASSERT_EQ(mr_parallel_for(0, 8, 1, job_body, NULL), 0);
	for (int i = 0; i < 8; i++) {
		EXPECT_EQ(job_probes[i].r, 0);
		EXPECT_EQ(job_probes[i].result, 42);
		EXPECT_EQ(job_probes[i].result2, -ENOENT);
		EXPECT_EQ(job_probes[i].tid, job_probes[i].caller);
	}
	mr_fiber_t *f = go_on(rt, pinned_fiber, NULL);
	ASSERT_NONNULL(f);
	ASSERT_EQ(mr_fiber_join(f), 0);
	EXPECT_EQ(pinned_probe.r, 0);
	EXPECT_EQ(pinned_probe.tid, pinned_probe.caller);
	EXPECT_EQ(mr__blocking_nthreads(), 0);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

TEST(null_fn_is_einval)
{
	errno = EILSEQ;
	ASSERT_EQ(mr_blocking(NULL, NULL, NULL), -EINVAL);
	EXPECT_EQ(errno, EILSEQ);
}

/* ---- many calls ---------------------------------------------------------------- */

struct sleeper {
	long in, out;
	int r;
};

static long sleep_fn(void *p)
{
	struct sleeper *s = p;

	usleep(1000);
	return s->in + 1;
}

static void sleeper_fiber(void *p)
{
	struct sleeper *s = p;

	s->r = mr_blocking(sleep_fn, s, &s->out);
}

static void many_calls(unsigned workers)
{
	enum { N = 200 };
	static struct sleeper s[N];
	static mr_fiber_t *f[N];
	mr_runtime_t *rt = make_rt(workers);

	ASSERT_NONNULL(rt);
	for (int i = 0; i < N; i++) {
		s[i] = (struct sleeper){ .in = i, .r = 1 };
		f[i] = go_on(rt, sleeper_fiber, &s[i]);
		ASSERT_NONNULL(f[i]);
	}
	for (int i = 0; i < N; i++) {
		ASSERT_EQ(mr_fiber_join(f[i]), 0);
		EXPECT_EQ(s[i].r, 0);
		EXPECT_EQ(s[i].out, i + 1);
	}
	EXPECT_LE(mr__blocking_nthreads(), MR_BLOCKING_THREADS_DEFAULT);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

TEST(many_fibers_one_worker)
{
	many_calls(1);
}

TEST(many_fibers_two_workers)
{
	many_calls(2);
}

/* ---- the worker runs other fibers while a call blocks ------------------------ */

static int gate[2];		  /* a pipe: calls read one byte from it */
static _Atomic long in_fn;	  /* calls inside their fn */
static _Atomic long ran_max;	  /* the most at once */
static _Atomic long finished;	  /* calls returned */
static _Atomic long progress;	  /* a fiber's steps while a call waits */
static _Atomic bool call_done;

static long gate_fn(void *p)
{
	char c;
	long n = atomic_fetch_add(&in_fn, 1) + 1;
	long m = atomic_load(&ran_max);

	while (n > m && !atomic_compare_exchange_weak(&ran_max, &m, n))
		;
	if (p)
		atomic_fetch_add((_Atomic long *)p, 1);
	ssize_t r = read(gate[0], &c, 1);
	atomic_fetch_sub(&in_fn, 1);
	return r;
}

static void gate_fiber(void *p)
{
	long res = 0;

	if (mr_blocking(gate_fn, p, &res) == 0 && res == 1)
		atomic_fetch_add(&finished, 1);
	atomic_store(&call_done, true);
}

static void stepper(void *p)
{
	while (!atomic_load(&call_done)) {
		/* Count only steps taken while the call is inside fn. */
		if (atomic_load(&in_fn) > 0)
			atomic_fetch_add(&progress, 1);
		mr_yield();
	}
}

TEST(one_worker_runs_fibers_while_a_call_blocks)
{
	mr_runtime_t *rt = make_rt(1);

	ASSERT_NONNULL(rt);
	ASSERT_EQ(pipe(gate), 0);
	mr_fiber_t *a = go_on(rt, gate_fiber, NULL);
	mr_fiber_t *b = go_on(rt, stepper, NULL);
	ASSERT_NONNULL(a);
	ASSERT_NONNULL(b);
	/* If the call held the only worker, the stepper could not step while
	 * it waits, and the call waits until we see steps. */
	bool stepped = wait_count(&progress, 100);
	ASSERT_EQ(write(gate[1], "x", 1), 1);
	ASSERT_EQ(mr_fiber_join(a), 0);
	ASSERT_EQ(mr_fiber_join(b), 0);
	ASSERT_TRUE(stepped);
	EXPECT_EQ(atomic_load(&finished), 1);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* ---- a saturated pool --------------------------------------------------------- */

static bool two_in_rest_queued(void *p)
{
	return atomic_load(&in_fn) == 2 && mr__blocking_nqueued() == (unsigned)(intptr_t)p;
}

TEST(saturated_pool_queues_and_never_exceeds_the_maximum)
{
	enum { N = 50 };
	mr_runtime_t *rt = make_rt(2);
	mr_fiber_t *f[N];
	char bytes[N];

	ASSERT_NONNULL(rt);
	ASSERT_EQ(pipe(gate), 0);
	ASSERT_EQ(mr_blocking_set_max(2), (int)MR_BLOCKING_THREADS_DEFAULT);
	for (int i = 0; i < N; i++) {
		f[i] = go_on(rt, gate_fiber, NULL);
		ASSERT_NONNULL(f[i]);
	}
	/* Two calls in fn, the others queued behind them: had the pool
	 * started more threads, more would be in fn and fewer queued. */
	ASSERT_TRUE(wait_for(two_in_rest_queued, (void *)(intptr_t)(N - 2)));
	EXPECT_EQ(count_pool_threads(), 2);
	memset(bytes, 'x', sizeof(bytes));
	ASSERT_EQ(write(gate[1], bytes, N), N);
	for (int i = 0; i < N; i++)
		ASSERT_EQ(mr_fiber_join(f[i]), 0);
	EXPECT_EQ(atomic_load(&finished), N);
	EXPECT_EQ(atomic_load(&ran_max), 2);
	EXPECT_LE(mr__blocking_nthreads(), 2);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* Items run in the order queued: one thread, held on the gate while the
 * test queues more through the internal interface. */
static _Atomic long order[8];
static _Atomic long norder;

static void order_fn(void *p)
{
	atomic_store(&order[atomic_fetch_add(&norder, 1)], (long)(intptr_t)p);
}

static void gate_work_fn(void *p)
{
	gate_fn(NULL);
}

static void count_done(struct mr__blocking_work *w)
{
	atomic_fetch_add(&finished, 1);
}

TEST(queued_calls_run_in_order)
{
	struct mr__blocking_work held = { .fn = gate_work_fn, .done = count_done };
	struct mr__blocking_work w[6];

	ASSERT_EQ(pipe(gate), 0);
	ASSERT_EQ(mr_blocking_set_max(1), (int)MR_BLOCKING_THREADS_DEFAULT);
	ASSERT_EQ(mr__blocking_submit(&held), 0);
	ASSERT_TRUE(wait_count(&in_fn, 1));
	for (int i = 0; i < 6; i++) {
		w[i] = (struct mr__blocking_work){ .fn = order_fn, .arg = (void *)(intptr_t)i,
						   .done = count_done };
		ASSERT_EQ(mr__blocking_submit(&w[i]), 0);
	}
	ASSERT_EQ(write(gate[1], "x", 1), 1);
	ASSERT_TRUE(wait_count(&finished, 7));
	for (int i = 0; i < 6; i++)
		EXPECT_EQ(atomic_load(&order[i]), i);
	EXPECT_EQ(mr__blocking_nthreads(), 1);
}

static bool one_in_rest_queued(void *p)
{
	return atomic_load(&in_fn) == 1 && mr__blocking_nqueued() == (unsigned)(intptr_t)p;
}

TEST(raised_maximum_starts_threads_for_queued_calls)
{
	enum { N = 4 };
	mr_runtime_t *rt = make_rt(1);
	mr_fiber_t *f[N];

	ASSERT_NONNULL(rt);
	ASSERT_EQ(pipe(gate), 0);
	ASSERT_EQ(mr_blocking_set_max(1), (int)MR_BLOCKING_THREADS_DEFAULT);
	for (int i = 0; i < N; i++) {
		f[i] = go_on(rt, gate_fiber, NULL);
		ASSERT_NONNULL(f[i]);
	}
	ASSERT_TRUE(wait_for(one_in_rest_queued, (void *)(intptr_t)(N - 1)));
	ASSERT_EQ(mr_blocking_set_max(4 * N), 1);
	/* Every call enters fn while the first still holds its thread, and
	 * only the queued calls got a thread. */
	ASSERT_TRUE(wait_count(&in_fn, N));
	EXPECT_EQ(mr__blocking_nthreads(), N);
	ASSERT_EQ(write(gate[1], "xxxx", N), N);
	for (int i = 0; i < N; i++)
		ASSERT_EQ(mr_fiber_join(f[i]), 0);
	EXPECT_EQ(atomic_load(&finished), N);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* ---- configuration and failures -------------------------------------------- */

TEST(set_max_checks_its_argument)
{
	EXPECT_EQ(mr_blocking_set_max(0), -EINVAL);
	EXPECT_EQ(mr_blocking_set_max(MR_BLOCKING_THREADS_MAX + 1), -EINVAL);
	EXPECT_EQ(mr_blocking_set_max(MR_BLOCKING_THREADS_MAX), (int)MR_BLOCKING_THREADS_DEFAULT);
	EXPECT_EQ(mr_blocking_set_max(3), (int)MR_BLOCKING_THREADS_MAX);
}

TEST(environment_sets_the_maximum)
{
	setenv("MOIRAI_BLOCKING_THREADS", "5", 1);
	EXPECT_EQ(mr_blocking_set_max(7), 5);
}

static void call_probe_fiber(void *p)
{
	probe_call(p);
}

TEST(bad_environment_fails_fiber_calls_until_set_max)
{
	mr_runtime_t *rt = make_rt(1);
	struct probe pr = { 0 };

	ASSERT_NONNULL(rt);
	setenv("MOIRAI_BLOCKING_THREADS", "lots", 1);
	ASSERT_EQ(mr_run(rt, call_probe_fiber, &pr), 0);
	EXPECT_EQ(pr.r, -EINVAL);
	EXPECT_EQ(pr.tid, 0); /* fn did not run */
	EXPECT_EQ(pr.result, -1);
	ASSERT_EQ(mr_blocking_set_max(2), (int)MR_BLOCKING_THREADS_DEFAULT);
	ASSERT_EQ(mr_run(rt, call_probe_fiber, &pr), 0);
	EXPECT_EQ(pr.r, 0);
	EXPECT_NE(pr.tid, 0);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

static int no_threads(pthread_t *th, const pthread_attr_t *attr, void *(*start)(void *),
		      void *arg)
{
	return EAGAIN;
}

TEST(no_thread_to_run_the_call_is_eagain)
{
	mr_runtime_t *rt = make_rt(1);
	struct probe pr = { 0 };

	ASSERT_NONNULL(rt);
	mr__test_blocking_create = no_threads;
	ASSERT_EQ(mr_run(rt, call_probe_fiber, &pr), 0);
	EXPECT_EQ(pr.r, -EAGAIN);
	EXPECT_EQ(pr.tid, 0); /* fn did not run */
	EXPECT_EQ(pr.result, -1);
	mr__test_blocking_create = NULL;
	ASSERT_EQ(mr_run(rt, call_probe_fiber, &pr), 0);
	EXPECT_EQ(pr.r, 0);
	EXPECT_NE(pr.tid, 0);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* ---- threads come and go ---------------------------------------------------- */

static bool pool_empty(void *p)
{
	return mr__blocking_nthreads() == 0 && count_pool_threads() == 0;
}

TEST(idle_threads_exit_after_the_keepalive)
{
	enum { N = 4 };
	mr_runtime_t *rt = make_rt(1);
	mr_fiber_t *f[N];

	ASSERT_NONNULL(rt);
	ASSERT_EQ(pipe(gate), 0);
	mr__blocking_set_keepalive(20 * 1000000ull);
	for (int i = 0; i < N; i++) {
		f[i] = go_on(rt, gate_fiber, NULL);
		ASSERT_NONNULL(f[i]);
	}
	ASSERT_TRUE(wait_count(&in_fn, N));
	EXPECT_EQ(mr__blocking_nthreads(), N);
	EXPECT_EQ(count_pool_threads(), N);
	ASSERT_EQ(write(gate[1], "xxxx", N), N);
	for (int i = 0; i < N; i++)
		ASSERT_EQ(mr_fiber_join(f[i]), 0);
	ASSERT_TRUE(wait_for(pool_empty, NULL));
	/* And the pool grows again afterwards. */
	struct probe pr = { 0 };
	ASSERT_EQ(mr_run(rt, call_probe_fiber, &pr), 0);
	EXPECT_EQ(pr.r, 0);
	EXPECT_EQ(strcmp(pr.comm, "moirai-blk"), 0);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* ---- fork ---------------------------------------------------------------------- */

TEST(forked_child_uses_the_pool)
{
	mr_runtime_t *rt = make_rt(1);
	struct probe pr = { 0 };
	int status;

	ASSERT_NONNULL(rt);
	/* The parent's pool has a thread, idle at the fork. */
	ASSERT_EQ(mr_run(rt, call_probe_fiber, &pr), 0);
	ASSERT_EQ(pr.r, 0);
	ASSERT_EQ(mr__blocking_nthreads(), 1);
	fflush(stdout);
	pid_t pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		alarm(10);
		if (!THREADS_IN_CHILD)
			_exit(0);
		if (mr__blocking_nthreads() != 0)
			_exit(2);
		mr_runtime_t *crt = make_rt(1);
		struct probe cp = { 0 };
		if (!crt || mr_run(crt, call_probe_fiber, &cp) != 0)
			_exit(3);
		if (cp.r != 0 || cp.tid == cp.caller || cp.tid == 0 ||
		    strcmp(cp.comm, "moirai-blk") != 0)
			_exit(4);
		_exit(0);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status))
		TH_LOG("child killed by signal %d", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

TEST_HARNESS_MAIN
