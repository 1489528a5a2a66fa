/*
 * stats.c - the per-worker counters of <moirai/stats.h>: exact for known
 * workloads, consistent between workers, exported to /dev/shm or a pinned
 * BPF map with the same numbers, removed when the runtime or the process
 * ends, and bad arguments refused.
 */
#include "harness.h"
#include "util.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <linux/bpf.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>

#include <moirai/moirai.h>

extern int mr__test_metrics_kind; /* user/metrics/metrics.h */

static void total(mr_runtime_t *rt, struct mr_runtime_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->sz = sizeof(*st);
	if (mr_runtime_stats(rt, st) != 0)
		abort();
}

/* Wait (no time bound: the harness's timeout is the bound) until every
 * worker of rt is asleep: then nothing counts any more. */
static void wait_quiet(mr_runtime_t *rt)
{
	struct mr_runtime_stats st;

	for (;;) {
		total(rt, &st);
		if (st.workers_parked == st.nworkers)
			return;
		usleep(1000);
	}
}

static _Atomic long ran;

static void task(void *arg)
{
	(void)arg;
	atomic_fetch_add(&ran, 1);
}

struct spawn_arg {
	long n;
};

static void spawn_n(void *arg)
{
	struct spawn_arg *a = arg;
	mr_group_t g;

	mr_group_init(&g);
	for (long i = 0; i < a->n; i++)
		mr_group_spawn(&g, task, NULL);
	mr_group_wait(&g);
}

TEST(jobs_run_counts_every_task_once)
{
	mr_runtime_t *rt = make_rt(2);
	struct mr_runtime_stats a, b;
	struct spawn_arg sa = { scaled(100000) };

	ASSERT_NONNULL(rt);
	wait_quiet(rt);
	total(rt, &a);
	/* The installed function is one job (from the injector), its
	 * tasks n more. */
	ASSERT_EQ(mr_runtime_install(rt, spawn_n, &sa), 0);
	ASSERT_EQ(atomic_load(&ran), sa.n);
	wait_quiet(rt);
	total(rt, &b);
	EXPECT_EQ(b.total.jobs_run - a.total.jobs_run, (uint64_t)sa.n + 1);
	EXPECT_GE(b.total.injector_pops - a.total.injector_pops, 1);
	/* Every steal is counted by its thief and at its victim. */
	EXPECT_EQ(b.total.jobs_stolen, b.total.jobs_stolen_from);
	EXPECT_GE(b.total.steal_attempts, b.total.jobs_stolen);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

static mr_chan_t *gate;

static void parker(void *arg)
{
	int v;

	(void)arg;
	if (mr_chan_recv(gate, &v) != 0)
		abort();
}

struct fibers_arg {
	long n;
};

static void fibers_main(void *arg)
{
	struct fibers_arg *a = arg;
	mr_fiber_t **f = calloc((size_t)a->n, sizeof(*f));

	for (long i = 0; i < a->n; i++)
		f[i] = mr_go(parker, NULL);
	/* Let them all park on the empty channel (the gauge must get
	 * there: the harness's timeout bounds the wait), then feed them. */
	for (;;) {
		struct mr_runtime_stats st = { .sz = sizeof(st) };
		if (mr_runtime_stats(NULL, &st) != 0)
			abort();
		if (st.fibers_parked == (uint64_t)a->n && st.fibers_runnable == 1)
			break;
		mr_yield();
	}
	for (long i = 0; i < a->n; i++) {
		int v = (int)i;
		if (mr_chan_send(gate, &v) != 0)
			abort();
	}
	for (long i = 0; i < a->n; i++)
		mr_fiber_join(f[i]);
	free(f);
}

TEST(fiber_counters_balance)
{
	mr_runtime_t *rt = make_rt(2);
	struct mr_runtime_stats a, b;
	struct fibers_arg fa = { scaled(2000) };

	ASSERT_NONNULL(rt);
	gate = mr_chan_create(sizeof(int), 0, 0); /* rendezvous: every recv waits */
	ASSERT_NONNULL(gate);
	wait_quiet(rt);
	total(rt, &a);
	ASSERT_EQ(mr_run(rt, fibers_main, &fa), 0);
	wait_quiet(rt);
	total(rt, &b);
	/* mr_run's own fiber and the n parkers. */
	EXPECT_EQ(b.total.fibers_spawned - a.total.fibers_spawned, (uint64_t)fa.n + 1);
	EXPECT_EQ(b.total.fiber_exits - a.total.fiber_exits, (uint64_t)fa.n + 1);
	EXPECT_EQ(b.fibers_live, 0);
	/* Every park was followed by a run; the ones who blocked on the
	 * channel counted. */
	EXPECT_EQ(b.total.fiber_parks, b.total.fiber_wakeups);
	EXPECT_EQ(b.total.fiber_readies - b.total.fibers_spawned, b.total.fiber_parks);
	EXPECT_EQ(b.fibers_parked, 0);
	EXPECT_EQ(b.fibers_runnable, 0);
	EXPECT_GE(b.total.fiber_runs - a.total.fiber_runs, (uint64_t)fa.n + 1);
	EXPECT_GE(b.total.chan_blocks - a.total.chan_blocks, 1);
	/* mr_run spawns from outside: the outside record has it. */
	struct mr_worker_stats out;
	ASSERT_EQ(mr_worker_stats(rt, 2, &out), 0);
	EXPECT_GE(out.fibers_spawned, 1);
	EXPECT_EQ(out.worker, 2);
	mr_chan_destroy(gate);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

static void sleeper(void *arg)
{
	(void)arg;
	for (int i = 0; i < 5; i++)
		mr_sleep_ns(1000000);
}

TEST(parks_timers_and_identity)
{
	mr_runtime_t *rt = make_rt(2);
	struct mr_worker_stats w;
	struct mr_runtime_stats a;

	ASSERT_NONNULL(rt);
	ASSERT_EQ(mr_run(rt, sleeper, NULL), 0);
	wait_quiet(rt);
	total(rt, &a);
	EXPECT_GE(a.total.timer_fires, 5);
	EXPECT_GE(a.total.parks, 2);
	EXPECT_GT(a.total.park_ns, 0);
	EXPECT_GE(a.total.wakeups_received, 1);
	EXPECT_EQ(a.total.version, MR_STATS_VERSION);
	EXPECT_EQ(a.total.pid, getpid());
	for (unsigned i = 0; i < 2; i++) {
		/* A worker woken for nothing (a spurious futex return) says
		 * PARKED with no start until it parks again: wait for both. */
		do
			ASSERT_EQ(mr_worker_stats(rt, i, &w), 0);
		while (w.state != MR_WSTATE_PARKED || !w.parked_since_ns);
		EXPECT_EQ(w.version, MR_STATS_VERSION);
		EXPECT_EQ(w.size, sizeof(w));
		EXPECT_EQ(w.worker, i);
		EXPECT_EQ(w.nworkers, 2);
		EXPECT_EQ(w.runtime, a.total.runtime);
		EXPECT_GT(w.tid, 0);
		EXPECT_EQ(w.state, MR_WSTATE_PARKED);
		EXPECT_GT(w.parked_since_ns, 0);
		EXPECT_GE(w.start_ns, 1);
	}
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

TEST(bad_arguments)
{
	mr_runtime_t *rt = make_rt(1);
	struct mr_runtime_stats st = { .sz = sizeof(st) };
	struct mr_worker_stats w;

	ASSERT_NONNULL(rt);
	EXPECT_EQ(mr_runtime_stats(rt, NULL), -EINVAL);
	st.sz = sizeof(st) - 1;
	EXPECT_EQ(mr_runtime_stats(rt, &st), -EINVAL);
	st.sz = 0;
	EXPECT_EQ(mr_runtime_stats(rt, &st), -EINVAL);
	EXPECT_EQ(mr_worker_stats(rt, 0, NULL), -EINVAL);
	EXPECT_EQ(mr_worker_stats(rt, 2, &w), -ERANGE);
	EXPECT_EQ(mr_worker_stats(rt, 1, &w), 0); /* the outside record */
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
	/* No runtime at all from a plain thread: nothing to speak of. */
	st.sz = sizeof(st);
	EXPECT_EQ(mr_runtime_stats(NULL, &st), -ESRCH);
	EXPECT_EQ(mr_worker_stats(NULL, 0, &w), -ESRCH);
}

static int io_pipe[2];

static void *late_writer(void *arg)
{
	(void)arg;
	usleep(20000);
	if (write(io_pipe[1], "x", 1) != 1)
		abort();
	return NULL;
}

static void reader(void *arg)
{
	char c;

	(void)arg;
	if (mr_read(io_pipe[0], &c, 1) != 1)
		abort();
	/* A deadline that passes: the operation is cancelled in the kernel. */
	if (mr_read_until(io_pipe[0], &c, 1, mr_now_ns() + 1000000) != -ETIMEDOUT)
		abort();
}

TEST(io_counters_and_backend)
{
	mr_runtime_t *rt = make_rt(1);
	struct mr_runtime_stats st;
	struct mr_worker_stats w;
	pthread_t th;

	ASSERT_NONNULL(rt);
	ASSERT_EQ(pipe(io_pipe), 0);
	ASSERT_EQ(pthread_create(&th, NULL, late_writer, NULL), 0);
	ASSERT_EQ(mr_run(rt, reader, NULL), 0);
	ASSERT_EQ(pthread_join(th, NULL), 0);
	wait_quiet(rt);
	total(rt, &st);
	EXPECT_GE(st.total.io_submitted, 2);
	EXPECT_GE(st.total.io_completed, 2);
	EXPECT_GE(st.total.io_cancelled + st.total.io_completed, st.total.io_submitted);
	EXPECT_EQ(st.total.io_rescued, 0); /* one worker: nobody to hand off to */
	ASSERT_EQ(mr_worker_stats(rt, 0, &w), 0);
	EXPECT_EQ(w.io_backend, strcmp(mr_io_backend(), "io_uring") == 0 ? MR_IO_BACKEND_URING :
									   MR_IO_BACKEND_EPOLL);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
	close(io_pipe[0]);
	close(io_pipe[1]);
}

static _Atomic int yielders_left;

static void yielder(void *arg)
{
	(void)arg;
	mr_sleep_ns(1000000); /* one park */
	for (int i = 0; i < 1000; i++)
		mr_yield(); /* straight to the other yielder, mostly */
	atomic_fetch_sub(&yielders_left, 1);
}

static void two_yielders(void *arg)
{
	(void)arg;
	mr_fiber_t *a = mr_go(yielder, NULL), *b = mr_go(yielder, NULL);
	mr_fiber_join(a);
	mr_fiber_join(b);
}

/* A fiber that yields runs again without having parked: a fiber that
 * yields straight to another one must not count a wake-up each time. */
TEST(yields_are_not_wakeups)
{
	mr_runtime_t *rt = make_rt(1);
	struct mr_runtime_stats st;

	ASSERT_NONNULL(rt);
	atomic_store(&yielders_left, 2);
	ASSERT_EQ(mr_run(rt, two_yielders, NULL), 0);
	wait_quiet(rt);
	total(rt, &st);
	EXPECT_EQ(st.total.fiber_parks, st.total.fiber_wakeups);
	EXPECT_GE(st.total.fiber_runs, 2000);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* A full /dev/shm (a container's small tmpfs) must not crash the runtime
 * when it writes its counters: the export falls back to plain memory. */
TEST(full_dev_shm_falls_back)
{
	struct mr_runtime_stats st;

	if (geteuid() != 0)
		SKIP("needs root (a private mount namespace)");
	if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
	    mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=8k") != 0)
		SKIP("cannot mount a private tmpfs on /dev/shm");
	int fd = open("/dev/shm/filler", O_CREAT | O_WRONLY, 0600);
	ASSERT_GE(fd, 0);
	char page[4096] = { 0 };
	while (write(fd, page, sizeof(page)) > 0)
		;
	close(fd);
	mr__test_metrics_kind = 2;
	mr_runtime_t *rt = make_rt(2);
	ASSERT_NONNULL(rt);
	total(rt, &st);
	EXPECT_TRUE(st.export_path == NULL);
	ASSERT_EQ(mr_runtime_install(rt, task, NULL), 0);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* A pin directory that someone else made (a bpffs is 1777 by default)
 * is not used: the export goes to /dev/shm instead. */
TEST(untrusted_pin_dir_is_not_used)
{
	struct mr_runtime_stats st;
	char mine[64], target[] = "/tmp/moirai-stats-test-XXXXXX";

	if (geteuid() != 0)
		SKIP("needs root (a private mount namespace with a bpffs)");
	if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
	    mount("bpf", "/sys/fs/bpf", "bpf", 0, NULL) != 0)
		SKIP("cannot mount a private bpffs");
	mr__test_metrics_kind = 1;
	/* Another user's moirai/. */
	ASSERT_EQ(mkdir("/sys/fs/bpf/moirai", 0777), 0);
	ASSERT_EQ(chown("/sys/fs/bpf/moirai", 65534, 65534), 0);
	mr_runtime_t *rt = make_rt(1);
	ASSERT_NONNULL(rt);
	total(rt, &st);
	ASSERT_NONNULL(st.export_path);
	EXPECT_EQ(strncmp(st.export_path, "/dev/shm/", 9), 0);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
	/* Ours, but our pid's directory is a link planted elsewhere. */
	ASSERT_EQ(chown("/sys/fs/bpf/moirai", 0, 0), 0);
	ASSERT_EQ(chmod("/sys/fs/bpf/moirai", 0755), 0);
	ASSERT_NONNULL(mkdtemp(target));
	snprintf(mine, sizeof(mine), "/sys/fs/bpf/moirai/%d", getpid());
	if (symlink(target, mine) != 0) {
		rmdir(target);
		return; /* this bpffs takes no symlinks: nothing to plant */
	}
	rt = make_rt(1);
	ASSERT_NONNULL(rt);
	total(rt, &st);
	ASSERT_NONNULL(st.export_path);
	EXPECT_EQ(strncmp(st.export_path, "/dev/shm/", 9), 0);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
	unlink(mine);
	rmdir(target);
}

/* The exported file holds what mr_worker_stats() says. */
static void check_shm_file(mr_runtime_t *rt, const char *path, unsigned nworkers)
{
	struct stat sb;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &sb) != 0 || (sb.st_mode & 0777) != 0600)
		abort();
	size_t len = (nworkers + 1) * sizeof(struct mr_worker_stats);
	if ((size_t)sb.st_size < len)
		abort();
	const struct mr_worker_stats *r = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (r == MAP_FAILED)
		abort();
	for (unsigned i = 0; i <= nworkers; i++) {
		struct mr_worker_stats w;
		if (mr_worker_stats(rt, i, &w) != 0 || r[i].version != MR_STATS_VERSION ||
		    r[i].worker != i || r[i].nworkers != nworkers || r[i].pid != getpid() ||
		    r[i].jobs_run != w.jobs_run || r[i].tid != w.tid)
			abort();
	}
	munmap((void *)r, len);
}

TEST(shm_export_matches_and_goes_away)
{
	struct mr_runtime_stats st;
	struct spawn_arg sa = { 1000 };
	char path[128];

	mr__test_metrics_kind = 2; /* MR__METRICS_SHM */
	mr_runtime_t *rt = make_rt(2);
	ASSERT_NONNULL(rt);
	total(rt, &st);
	ASSERT_NONNULL(st.export_path);
	snprintf(path, sizeof(path), "/dev/shm/moirai-stats.%d.%u", getpid(), st.total.runtime);
	EXPECT_EQ(strcmp(st.export_path, path), 0);
	ASSERT_EQ(mr_runtime_install(rt, spawn_n, &sa), 0);
	wait_quiet(rt);
	check_shm_file(rt, path, 2);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
	EXPECT_NE(access(path, F_OK), 0);
}

TEST(metrics_off_exports_nothing)
{
	struct mr_runtime_stats st;

	mr__test_metrics_kind = 0; /* MR__METRICS_HEAP */
	mr_runtime_t *rt = make_rt(1);
	ASSERT_NONNULL(rt);
	total(rt, &st);
	EXPECT_TRUE(st.export_path == NULL);
	ASSERT_EQ(mr_runtime_install(rt, task, NULL), 0);
	wait_quiet(rt);
	total(rt, &st);
	EXPECT_GE(st.total.jobs_run, 1);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* exit() removes the exports of the runtimes alive then. The child forks
 * before any thread exists here (TSan cannot start threads in the child of
 * a multithreaded process). */
TEST(exit_removes_exports)
{
	char cpath[128] = "";
	int status, p[2];

	mr__test_metrics_kind = 2;
	ASSERT_EQ(pipe(p), 0);
	pid_t pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		mr_runtime_t *c = make_rt(1);
		struct mr_runtime_stats cs;
		if (!c)
			_exit(3);
		total(c, &cs);
		if (!cs.export_path || access(cs.export_path, F_OK) != 0)
			_exit(4);
		if (write(p[1], cs.export_path, strlen(cs.export_path) + 1) < 0)
			_exit(5);
		exit(0); /* with c alive */
	}
	close(p[1]);
	ssize_t n = read(p[0], cpath, sizeof(cpath) - 1);
	close(p[0]);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ASSERT_GT(n, 0);
	EXPECT_NE(access(cpath, F_OK), 0);
}

/* A forked child's exit() leaves its parent's exports alone. */
TEST(child_exit_keeps_parents_exports)
{
	char ppath[128];
	struct mr_runtime_stats st;
	int status;

	mr__test_metrics_kind = 2;
	mr_runtime_t *rt = make_rt(1);
	ASSERT_NONNULL(rt);
	total(rt, &st);
	ASSERT_NONNULL(st.export_path);
	snprintf(ppath, sizeof(ppath), "%s", st.export_path);
	pid_t pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0)
		exit(0);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	EXPECT_EQ(access(ppath, F_OK), 0);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
	EXPECT_NE(access(ppath, F_OK), 0);
}

static long sys_bpf(int cmd, union bpf_attr *a)
{
	return syscall(SYS_bpf, cmd, a, sizeof(*a));
}

TEST(bpf_export_matches)
{
	struct statfs sf;
	struct mr_runtime_stats st;
	struct spawn_arg sa = { 1000 };
	char want[128];

	if (geteuid() != 0)
		SKIP("needs root (or CAP_BPF) to create BPF maps");
	if (statfs("/sys/fs/bpf", &sf) != 0 || (unsigned long)sf.f_type != 0xcafe4a11)
		SKIP("no bpffs at /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf)");
	mr__test_metrics_kind = 1; /* MR__METRICS_BPF */
	mr_runtime_t *rt = make_rt(2);
	ASSERT_NONNULL(rt);
	total(rt, &st);
	ASSERT_NONNULL(st.export_path);
	if (strncmp(st.export_path, "/sys/fs/bpf/", 12)) {
		/* Root and a bpffs, yet no map: bpf() refused (an emulator such
		 * as qemu-user, a seccomp filter). tests/metrics_host.sh checks
		 * the BPF export in a bpffs of its own. */
		mr_runtime_destroy(rt);
		SKIP("bpf() refused to create the map here");
	}
	snprintf(want, sizeof(want), "/sys/fs/bpf/moirai/%d/rt%u", getpid(), st.total.runtime);
	EXPECT_EQ(strcmp(st.export_path, want), 0);
	ASSERT_EQ(mr_runtime_install(rt, spawn_n, &sa), 0);
	wait_quiet(rt);

	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.pathname = (uint64_t)(uintptr_t)want;
	int fd = (int)sys_bpf(BPF_OBJ_GET, &a);
	ASSERT_GE(fd, 0);
	for (uint32_t k = 0; k <= 2; k++) {
		struct mr_worker_stats v, w;
		memset(&a, 0, sizeof(a));
		a.map_fd = (uint32_t)fd;
		a.key = (uint64_t)(uintptr_t)&k;
		a.value = (uint64_t)(uintptr_t)&v;
		ASSERT_EQ(sys_bpf(BPF_MAP_LOOKUP_ELEM, &a), 0);
		ASSERT_EQ(mr_worker_stats(rt, k, &w), 0);
		EXPECT_EQ(v.version, MR_STATS_VERSION);
		EXPECT_EQ(v.worker, k);
		EXPECT_EQ(v.jobs_run, w.jobs_run);
		EXPECT_EQ(v.tid, w.tid);
	}
	close(fd);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
	EXPECT_NE(access(want, F_OK), 0);
}

TEST_HARNESS_MAIN
