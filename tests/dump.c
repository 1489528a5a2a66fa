/*
 * dump.c - mr_runtime_dump() and the deadlock report.
 *
 * The dump of a runtime whose fibers are parked on one object of each kind
 * names each kind and object, and the stack of a parked fiber holds the
 * function that parked it (the binary is linked with -rdynamic so that
 * dladdr names its functions). The deadlock cases run in a forked child
 * with MOIRAI_DEADLOCK=abort and their stderr captured; the cases that must
 * stay silent run with it set too, so a false report aborts the test.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <moirai/moirai.h>

#include "harness.h"

static mr_runtime_t *make_rt(unsigned workers)
{
	MR_OPTS(mr_config, cfg, .workers = workers);
	mr_runtime_t *rt = mr_runtime_create(&cfg);

	if (!rt) {
		fprintf(stdout, "# mr_runtime_create: %s\n", strerror(errno));
		_exit(1);
	}
	return rt;
}

static mr_fiber_t *go_named(void (*fn)(void *), void *arg, const char *name)
{
	MR_OPTS(mr_fiber_opts, o, .name = name);
	mr_fiber_t *f = mr_go_opts(fn, arg, &o);

	if (!f)
		_exit(1);
	return f;
}

/* The dump of rt as a string (malloc'd). */
static char *dump_str(mr_runtime_t *rt)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);

	if (!m || mr_runtime_dump(rt, m) != 0)
		_exit(1);
	fclose(m);
	return buf;
}

/* The line of the fiber named `name` in dump d (a static copy), or NULL. */
static const char *fiber_line(const char *d, const char *name)
{
	static char line[512];
	char key[64];

	snprintf(key, sizeof(key), "\"%s\"", name);
	const char *p = strstr(d, key);
	if (!p)
		return NULL;
	while (p > d && p[-1] != '\n')
		p--;
	size_t n = strcspn(p, "\n");
	if (n >= sizeof(line))
		n = sizeof(line) - 1;
	memcpy(line, p, n);
	line[n] = 0;
	return line;
}

/* The frames printed under the fiber named `name` (a static copy). */
static const char *fiber_frames(const char *d, const char *name)
{
	static char frames[8192];
	char key[64];

	snprintf(key, sizeof(key), "\"%s\"", name);
	const char *p = strstr(d, key);
	if (!p)
		return "";
	p += strcspn(p, "\n");
	if (*p)
		p++;
	size_t n = 0;
	while (*p == ' ' && n + 1 < sizeof(frames)) {
		size_t l = strcspn(p, "\n");
		if (n + l + 2 >= sizeof(frames))
			break;
		memcpy(frames + n, p, l);
		n += l;
		frames[n++] = '\n';
		p += l;
		if (*p)
			p++;
	}
	frames[n] = 0;
	return frames;
}

/* ---- a fiber parked on each kind of object --------------------------------------- */

struct kinds {
	mr_runtime_t *rt;
	mr_chan_t *ch, *s1, *s2;
	mr_mutex_t mx, cmx;
	mr_cond_t cv;
	bool cv_go;
	mr_sem_t sem;
	mr_wg_t wg;
	mr_event_t ev, ev2;
	mr_fiber_t *target;
	int pfd[2];
};

static void on_chan(void *p)
{
	struct kinds *k = p;
	int v;
	mr_chan_recv(k->ch, &v);
}

static void on_select(void *p)
{
	struct kinds *k = p;
	int a, b;
	struct mr_select_case c[2] = { { k->s1, MR_SELECT_RECV, &a, 0 },
				       { k->s2, MR_SELECT_RECV, &b, 0 } };
	mr_select(c, 2, MR_SELECT_FOREVER);
}

/* Not static: -rdynamic exports it, so the dump can name it. */
__attribute__((noinline)) void dump_test_parks_on_mutex(mr_mutex_t *m)
{
	mr_mutex_lock(m);
	mr_mutex_unlock(m);
	__asm__ volatile(""); /* not a tail call */
}

static void on_mutex(void *p)
{
	struct kinds *k = p;
	dump_test_parks_on_mutex(&k->mx);
}

static void on_cond(void *p)
{
	struct kinds *k = p;
	mr_mutex_lock(&k->cmx);
	while (!k->cv_go)
		mr_cond_wait(&k->cv, &k->cmx);
	mr_mutex_unlock(&k->cmx);
}

static void on_sem(void *p)
{
	mr_sem_wait(&((struct kinds *)p)->sem);
}

static void on_wg(void *p)
{
	mr_wg_wait(&((struct kinds *)p)->wg);
}

static void on_event(void *p)
{
	mr_event_wait(&((struct kinds *)p)->ev);
}

static void on_event2(void *p)
{
	mr_event_wait(&((struct kinds *)p)->ev2);
}

static void on_join(void *p)
{
	mr_fiber_join(((struct kinds *)p)->target);
}

static void on_sleep(void *p)
{
	(void)p;
	mr_sleep_ns(3600ull * 1000000000); /* cancelled */
}

static void on_io(void *p)
{
	struct kinds *k = p;
	char c;
	mr_read(k->pfd[0], &c, 1);
}

static const char *const names[] = { "w-chan", "w-select", "w-mutex", "w-cond",  "w-sem",
				     "w-wg",	 "w-event",  "w-join",	"w-sleep", "w-io" };
#define NKINDS (sizeof(names) / sizeof(names[0]))

static void kinds_main(void *p)
{
	struct kinds *k = p;
	void (*fns[NKINDS])(void *) = { on_chan, on_select, on_mutex, on_cond,	on_sem,
					on_wg,	 on_event,  on_join,  on_sleep, on_io };
	mr_fiber_t *f[NKINDS];
	char want[NKINDS][128];

	mr_mutex_lock(&k->mx);
	k->target = go_named(on_event2, k, "w-target");
	mr_wg_add(&k->wg, 1);
	for (size_t i = 0; i < NKINDS; i++)
		f[i] = go_named(fns[i], k, names[i]);
	snprintf(want[0], 128, "waits on chan %p", (void *)k->ch);
	snprintf(want[1], 128, "waits on select %p", (void *)k->s1);
	snprintf(want[2], 128, "waits on mutex %p", (void *)&k->mx);
	snprintf(want[3], 128, "waits on cond %p", (void *)&k->cv);
	snprintf(want[4], 128, "waits on sem %p", (void *)&k->sem);
	snprintf(want[5], 128, "waits on wg %p", (void *)&k->wg);
	snprintf(want[6], 128, "waits on event %p", (void *)&k->ev);
	snprintf(want[7], 128, "waits on join %p", (void *)k->target);
	snprintf(want[8], 128, "waits on sleep");
	snprintf(want[9], 128, "waits on io fd %d", k->pfd[0]);

	/* Until every one is parked where it should be (no timing asserted). */
	char *d = NULL;
	for (int tries = 0;; tries++) {
		free(d);
		d = dump_str(k->rt);
		size_t ok = 0;
		for (size_t i = 0; i < NKINDS; i++) {
			const char *l = fiber_line(d, names[i]);
			if (l && strstr(l, " parked ") && strstr(l, want[i]))
				ok++;
		}
		if (ok == NKINDS)
			break;
		if (tries == 2000) {
			fprintf(stdout, "# last dump:\n%s", d);
			for (size_t i = 0; i < NKINDS; i++)
				fprintf(stdout, "# want %s: %s\n", names[i], want[i]);
			_exit(1);
		}
		mr_sleep_ns(5000000);
	}
	ASSERT_STR_CONTAINS(fiber_line(d, "w-sleep"), "deadline in ");
	ASSERT_STR_CONTAINS(fiber_line(d, "main"), " running ");
	ASSERT_STR_CONTAINS(fiber_frames(d, "w-mutex"), "dump_test_parks_on_mutex+0x");
	ASSERT_STR_CONTAINS(fiber_frames(d, "w-chan"), "    #2 0x"); /* rv_sleep, on_chan, ... */
	ASSERT_STR_CONTAINS(d, "worker 0 (tid ");
	free(d);

	/* Let every one go. */
	int v = 1;
	mr_chan_send(k->ch, &v);
	mr_chan_send(k->s2, &v);
	mr_mutex_unlock(&k->mx);
	mr_mutex_lock(&k->cmx);
	k->cv_go = true;
	mr_cond_signal(&k->cv);
	mr_mutex_unlock(&k->cmx);
	mr_sem_post(&k->sem);
	mr_wg_done(&k->wg);
	mr_event_set(&k->ev);
	mr_event_set(&k->ev2);
	mr_fiber_cancel(f[8]);
	ASSERT_EQ(write(k->pfd[1], "x", 1), 1);
	for (size_t i = 0; i < NKINDS; i++)
		ASSERT_EQ(mr_fiber_join(f[i]), 0);
}

TEST(dump_names_each_kind_and_the_parking_function)
{
	struct kinds k;

	memset(&k, 0, sizeof(k));
	k.rt = make_rt(2);
	k.ch = mr_chan_create(sizeof(int), 0, 0);
	k.s1 = mr_chan_create(sizeof(int), 1, 0);
	k.s2 = mr_chan_create(sizeof(int), 1, 0);
	ASSERT_TRUE(k.ch && k.s1 && k.s2);
	mr_mutex_init(&k.mx);
	mr_mutex_init(&k.cmx);
	mr_cond_init(&k.cv);
	mr_sem_init(&k.sem, 0);
	mr_wg_init(&k.wg);
	mr_event_init(&k.ev);
	mr_event_init(&k.ev2);
	ASSERT_EQ(pipe(k.pfd), 0);
	ASSERT_EQ(mr_run(k.rt, kinds_main, &k), 0);
	mr_chan_destroy(k.ch);
	mr_chan_destroy(k.s1);
	mr_chan_destroy(k.s2);
	close(k.pfd[0]);
	close(k.pfd[1]);
	ASSERT_EQ(mr_runtime_destroy(k.rt), 0);
}

TEST(dump_rejects_null)
{
	mr_runtime_t *rt = make_rt(1);

	ASSERT_EQ(mr_runtime_dump(NULL, stderr), -EINVAL);
	ASSERT_EQ(mr_runtime_dump(rt, NULL), -EINVAL);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* ---- deadlocks -------------------------------------------------------------------------- */

/*
 * The check counts the threads of the process (every one must be the
 * library's or blocked for ever in a Moirai wait); TSan's runtime starts
 * threads of its own, so under TSan the check never sees that and stays
 * silent (a miss, not a false report).
 */
#if defined(__SANITIZE_THREAD__)
#define SKIP_UNDER_TSAN() SKIP("TSan's own threads keep the thread count from matching")
#else
#define SKIP_UNDER_TSAN() ((void)0)
#endif

/* Run fn in a forked child with MOIRAI_DEADLOCK=abort; its stderr in buf. */
static int run_deadlock_child(void (*fn)(void *), void *arg, char *buf, size_t cap)
{
	setenv("MOIRAI_DEADLOCK", "abort", 1);
	return mr_test_run_child(fn, arg, buf, cap);
}

static bool aborted(int status)
{
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

static mr_chan_t *nobody;

static void recv_forever(void *p)
{
	int v;
	(void)p;
	mr_chan_recv(nobody, &v);
}

static void chan_main(void *p)
{
	(void)p;
	mr_fiber_t *f = go_named(recv_forever, NULL, "stuck-rx");
	recv_forever(NULL);
	mr_fiber_join(f);
}

static void chan_child(void *p)
{
	(void)p;
	mr_runtime_t *rt = make_rt(2);
	mr_run(rt, chan_main, NULL);
	printf("# mr_run returned\n");
	_exit(1);
}

TEST(deadlock_all_fibers_on_a_channel_nobody_can_send_to)
{
	static char buf[65536];
	SKIP_UNDER_TSAN();
	nobody = mr_chan_create(sizeof(int), 0, 0);
	int st = run_deadlock_child(chan_child, NULL, buf, sizeof(buf));
	char want[64];

	ASSERT_TRUE(aborted(st));
	ASSERT_STR_CONTAINS(buf, "moirai: deadlock: all 2 fibers of runtime");
	ASSERT_STR_CONTAINS(buf, "\"stuck-rx\" parked");
	ASSERT_STR_CONTAINS(buf, "\"main\" parked");
	snprintf(want, sizeof(want), "waits on chan %p", (void *)nobody);
	ASSERT_STR_CONTAINS(buf, want);
}

/*
 * The workers fall asleep (and look) before this thread blocks: while it
 * sleeps it is a thread that might post, so their look says nothing; its
 * block must count it and look again. How it blocks: on the fiber (a
 * join), on a channel of no runtime, on a semaphore (a wait queue).
 */
enum { LATE_JOIN, LATE_CHAN, LATE_SEM };

static void late_block_child(void *p)
{
	static mr_sem_t never;
	int how = (int)(intptr_t)p, v;
	mr_runtime_t *rt = make_rt(2);
	MR_OPTS(mr_fiber_opts, o, .name = "stuck-rx", .runtime = rt);
	mr_fiber_t *f = mr_go_opts(recv_forever, NULL, &o);
	mr_chan_t *other = mr_chan_create(sizeof(int), 4, 0);
	mr_sem_init(&never, 0);
	usleep(200000);
	if (how == LATE_JOIN)
		mr_fiber_join(f);
	else if (how == LATE_CHAN)
		mr_chan_recv(other, &v);
	else
		mr_sem_wait(&never);
	_exit(1);
}

static void late_block(int how)
{
	static char buf[65536];
	nobody = mr_chan_create(sizeof(int), 0, 0);
	int st = run_deadlock_child(late_block_child, (void *)(intptr_t)how, buf, sizeof(buf));

	ASSERT_TRUE(aborted(st));
	ASSERT_STR_CONTAINS(buf, "moirai: deadlock: all 1 fibers of runtime");
}

TEST(deadlock_seen_when_the_thread_joins_after_the_workers_slept)
{
	SKIP_UNDER_TSAN();
	late_block(LATE_JOIN);
}

TEST(deadlock_seen_when_the_thread_waits_on_a_channel_after_the_workers_slept)
{
	SKIP_UNDER_TSAN();
	late_block(LATE_CHAN);
}

TEST(deadlock_seen_when_the_thread_waits_on_a_semaphore_after_the_workers_slept)
{
	SKIP_UNDER_TSAN();
	late_block(LATE_SEM);
}

static mr_mutex_t m1, m2;
static mr_sem_t s1, s2;

static void lock_12(void *p)
{
	(void)p;
	mr_mutex_lock(&m1);
	mr_sem_post(&s1);
	mr_sem_wait(&s2);
	mr_mutex_lock(&m2);
}

static void lock_21(void *p)
{
	(void)p;
	mr_mutex_lock(&m2);
	mr_sem_post(&s2);
	mr_sem_wait(&s1);
	mr_mutex_lock(&m1);
}

static int ticks;

/* Keeps a timer going: the runtime is not stuck, the cycle still is. */
static void ticker(void *p)
{
	(void)p;
	for (;;) {
		mr_sleep_ns(1000000);
		ticks++;
	}
}

static void cycle_main(void *p)
{
	(void)p;
	mr_fiber_t *t = go_named(ticker, NULL, "ticker");
	mr_fiber_t *a = go_named(lock_12, NULL, "locks-1-2");
	mr_fiber_t *b = go_named(lock_21, NULL, "locks-2-1");
	mr_fiber_join(a);
	mr_fiber_join(b);
	mr_fiber_join(t);
}

static void cycle_child(void *p)
{
	(void)p;
	mr_runtime_t *rt = make_rt(2);
	mr_mutex_init(&m1);
	mr_mutex_init(&m2);
	mr_sem_init(&s1, 0);
	mr_sem_init(&s2, 0);
	mr_run(rt, cycle_main, NULL);
	_exit(1);
}

TEST(deadlock_mutex_cycle_names_both_fibers_and_mutexes)
{
	static char buf[65536];
	int st = run_deadlock_child(cycle_child, NULL, buf, sizeof(buf));
	char want[160];

	ASSERT_TRUE(aborted(st));
	ASSERT_STR_CONTAINS(buf, "moirai: deadlock: a cycle of fibers waiting for mutexes");
	snprintf(want, sizeof(want), "\"locks-1-2\" waits for mutex %p, held by fiber", (void *)&m2);
	ASSERT_STR_CONTAINS(buf, want);
	snprintf(want, sizeof(want), "\"locks-2-1\" waits for mutex %p, held by fiber", (void *)&m1);
	ASSERT_STR_CONTAINS(buf, want);
}

/* Loop bodies, jobs: each waits on a channel that only a fiber would feed. */
static void body_recv(size_t lo, size_t hi, void *ctx)
{
	int v;
	(void)lo;
	(void)hi;
	mr_chan_recv(ctx, &v);
}

static void jobs_main(void *p)
{
	(void)p;
	mr_parallel_for(0, 64, 1, body_recv, nobody);
}

static void jobs_child(void *p)
{
	(void)p;
	mr_runtime_t *rt = make_rt(2);
	mr_run(rt, jobs_main, NULL);
	_exit(1);
}

TEST(deadlock_all_workers_blocked_in_jobs)
{
	static char buf[65536];
	SKIP_UNDER_TSAN();
	nobody = mr_chan_create(sizeof(int), 0, 0);
	int st = run_deadlock_child(jobs_child, NULL, buf, sizeof(buf));
	char want[64];

	ASSERT_TRUE(aborted(st));
	ASSERT_STR_CONTAINS(buf, "every worker is blocked inside a job");
	snprintf(want, sizeof(want), "worker 0 (tid");
	ASSERT_STR_CONTAINS(buf, want);
	snprintf(want, sizeof(want), "waits on chan %p", (void *)nobody);
	ASSERT_STR_CONTAINS(buf, want);
}

/* ---- and silence ---------------------------------------------------------------------- */

static void pingpong(void *p)
{
	mr_chan_t **c = p;
	int v = 0;
	for (int i = 0; i < 20000; i++) {
		mr_chan_send(c[0], &v);
		mr_chan_recv(c[1], &v);
	}
}

static void pongping(void *p)
{
	mr_chan_t **c = p;
	int v;
	for (int i = 0; i < 20000; i++) {
		mr_chan_recv(c[0], &v);
		mr_chan_send(c[1], &v);
	}
}

static void busy_main(void *p)
{
	mr_chan_t *c[2] = { mr_chan_create(sizeof(int), 0, 0), mr_chan_create(sizeof(int), 1, 0) };
	(void)p;
	for (int round = 0; round < 10; round++) {
		mr_fiber_t *a = mr_go(pingpong, c), *b = mr_go(pongping, c);
		mr_fiber_join(a);
		mr_fiber_join(b);
		mr_sleep_ns(1000000);
	}
	mr_chan_destroy(c[0]);
	mr_chan_destroy(c[1]);
}

static void timer_rx(void *p)
{
	int v;
	mr_chan_recv(p, &v);
}

static void timer_main(void *p)
{
	mr_chan_t *c = mr_chan_create(sizeof(int), 0, 0);
	mr_fiber_t *f[4];
	int v = 1;
	(void)p;
	for (int i = 0; i < 4; i++)
		f[i] = mr_go(timer_rx, c);
	/* Everyone else waits on the channel; only our timer can go on. */
	mr_sleep_ns(300000000);
	for (int i = 0; i < 4; i++)
		mr_chan_send(c, &v);
	for (int i = 0; i < 4; i++)
		mr_fiber_join(f[i]);
	mr_chan_destroy(c);
}

static int io_pipe[2];

static void *late_writer(void *p)
{
	(void)p;
	usleep(300000);
	if (write(io_pipe[1], "x", 1) != 1)
		_exit(1);
	return NULL;
}

static void io_main(void *p)
{
	char c;
	(void)p;
	ASSERT_EQ(mr_read(io_pipe[0], &c, 1), 1);
}

static mr_chan_t *later;

static void *late_sender(void *p)
{
	int v = 7;
	(void)p;
	usleep(300000);
	mr_chan_send(later, &v);
	return NULL;
}

static void later_main(void *p)
{
	int v = 0;
	(void)p;
	mr_chan_recv(later, &v);
	ASSERT_EQ(v, 7);
}

/* In-process with MOIRAI_DEADLOCK=abort: a false report aborts the test. */
static void run_silent(void (*fn)(void *), void *(*thread)(void *))
{
	mr_runtime_t *rt;
	pthread_t t;

	setenv("MOIRAI_DEADLOCK", "abort", 1);
	rt = make_rt(2);
	if (thread)
		ASSERT_EQ(pthread_create(&t, NULL, thread, NULL), 0);
	ASSERT_EQ(mr_run(rt, fn, NULL), 0);
	if (thread)
		pthread_join(t, NULL);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

TEST(no_report_for_a_busy_program)
{
	run_silent(busy_main, NULL);
}

TEST(no_report_while_a_timer_is_pending)
{
	run_silent(timer_main, NULL);
}

TEST(no_report_while_io_is_pending)
{
	ASSERT_EQ(pipe(io_pipe), 0);
	run_silent(io_main, late_writer);
}

TEST(no_report_while_a_thread_may_post)
{
	later = mr_chan_create(sizeof(int), 0, 0);
	run_silent(later_main, late_sender);
}

/* ---- the dump signal -------------------------------------------------------------------- */

static void sig_waiter(void *p)
{
	int v;
	mr_chan_recv(p, &v);
}

TEST(dump_signal_writes_the_dump_to_the_file)
{
	char path[] = "/tmp/moirai-dump-test-XXXXXX";
	int fd = mkstemp(path);
	int v = 1;

	ASSERT_GE(fd, 0);
	close(fd);
	setenv("MOIRAI_DUMP_SIGNAL", "SIGUSR1", 1);
	setenv("MOIRAI_DUMP_FILE", path, 1);
	mr_runtime_t *rt = make_rt(1);
	mr_chan_t *c = mr_chan_create(sizeof(int), 0, 0);
	MR_OPTS(mr_fiber_opts, o, .name = "sig-waiter", .runtime = rt);
	mr_fiber_t *f = mr_go_opts(sig_waiter, c, &o);
	ASSERT_NONNULL(f);
	/* Once it waits on the channel, ask for a dump until one shows it. */
	char want[64], buf[8192];
	snprintf(want, sizeof(want), "waits on chan %p", (void *)c);
	bool seen = false;
	for (int tries = 0; tries < 1000 && !seen; tries++) {
		ASSERT_EQ(raise(SIGUSR1), 0);
		usleep(10000);
		FILE *in = fopen(path, "r");
		ASSERT_NONNULL(in);
		size_t n = fread(buf, 1, sizeof(buf) - 1, in);
		fclose(in);
		buf[n] = 0;
		const char *l = strstr(buf, "\"sig-waiter\" parked");
		seen = l && strstr(l, want);
		if (!seen && n > 4096) {
			FILE *tr = fopen(path, "w"); /* keep it small */
			if (tr)
				fclose(tr);
		}
	}
	unlink(path);
	ASSERT_TRUE(seen);
	ASSERT_STR_CONTAINS(buf, "moirai: dump of process");
	mr_chan_send(c, &v);
	ASSERT_EQ(mr_fiber_join(f), 0);
	mr_chan_destroy(c);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

TEST_HARNESS_MAIN
