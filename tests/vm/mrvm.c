/*
 * mrvm.c - the Moirai side of the VM tests and benchmarks (tools/vm runs
 * them inside a qemu guest whose kernel has sched_ext; the shell tests in
 * tests/vm/ drive it together with moiraictl).
 *
 *   mrvm workers            4-worker runtime: every worker is SCHED_EXT and
 *                           registered (tid, pid, runtime, index, home node,
 *                           load line); after destroy none is left.
 *   mrvm busy SECS [N]      N workers (default 4) run verified parallel
 *                           reductions for SECS seconds; exit 1 on a wrong sum.
 *   mrvm spin SECS N MIN [F]
 *                           N workers run F fibers (default N) that compute
 *                           for SECS seconds without yielding (with F > N the
 *                           others wait in the deques: the workers always
 *                           report queued work); fails if they used less
 *                           than MIN CPUs on average. MRVM_DEPTH=D: their
 *                           load lines say "running, D queued" throughout;
 *                           MRVM_YIELD_US=U: each fiber calls sched_yield()
 *                           every U us.
 *   mrvm numa SECS          4 workers saturate the machine; worker run time on
 *                           the home node from the scheduler's node_stats and
 *                           from sampling /proc/<tid>/stat (the CPU of workers
 *                           in state R) must be >= 99%.
 *   mrvm hog SECS MIN_PCT   one busy thread; fails if it got less than MIN_PCT
 *                           percent of one CPU.
 *   mrvm affinity SECS MASK...
 *                           4 workers that never sleep; for each hex MASK in
 *                           turn, every thread of the process is restricted to
 *                           MASK (what `taskset -a -p` does) for SECS seconds.
 *                           Fails if in some phase a worker got less than a
 *                           tenth of its share of the allowed CPUs, or was
 *                           seen on a CPU outside MASK.
 *   mrvm full               every free worker_load line is taken (by fake
 *                           registrations of this process), then a 4-worker runtime
 *                           starts: none of its workers may register, and
 *                           meta.reg_full must grow by 4. Prints how long
 *                           the workers took to start.
 *   mrvm hold SECS N        N-worker runtime that exists for SECS seconds;
 *                           prints "ready pid P" once its workers run.
 *   mrvm registered PID N   waits (5 s at most) until exactly N threads of
 *                           process PID are registered, each SCHED_EXT and
 *                           with its own worker_load line; fails otherwise.
 *   mrvm reg TID...         whether each thread is registered; the exit
 *                           status is the number of those that are not.
 *   mrvm intrude TID WTID   as an unprivileged process: tries to register
 *                           another process's thread TID and to remove
 *                           the registration of another process's worker
 *                           WTID, through the workers map and through the
 *                           `register` program, and to change WTID's
 *                           worker_load line (writing the map, or claiming
 *                           the line through `register`); fails if a write
 *                           went through (the caller checks the maps after).
 *   mrvm execreg            registers the main thread (hints saying depth 77),
 *                           checks that its line says 77, then execs itself as
 *                           `mrvm execprobe`, which maps the same address and
 *                           writes depth 55 there: the line must never say 55
 *                           (the scheduler must not read the new program's
 *                           memory). Exit 4: the address could not be mapped.
 *   mrvm wake N             benchmark: latency from posting a fiber to it running,
 *                           on an idle 4-worker runtime; prints p50/p99 (ns)
 *                           and how long the post itself took. With
 *                           MRVM_WAKE_TRACE=NS, each wake-up slower than NS
 *                           ns is listed (poster's CPU, worker and CPU).
 *   mrvm pfor SECS          benchmark: parallel_for rounds per second (median
 *                           of 1-second windows).
 *
 * Diagnostics go to stdout prefixed with "# "; the exit status is the verdict
 * (0 pass, 1 fail, 4 skip). The pinned maps are read with raw bpf() calls.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/types.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <moirai/moirai.h>

#include "../../bpf/moirai_shared.h"

#define SCHED_EXT 7
#define MAXW 64

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static long sys_bpf(int cmd, union bpf_attr *a)
{
	return syscall(SYS_bpf, cmd, a, sizeof(*a));
}

static int map_open(const char *name)
{
	char path[128];
	union bpf_attr a;

	snprintf(path, sizeof(path), "%s/%s", MOIRAI_PIN_DIR, name);
	memset(&a, 0, sizeof(a));
	a.pathname = (uint64_t)(uintptr_t)path;
	return (int)sys_bpf(BPF_OBJ_GET, &a);
}

static int map_lookup(int fd, const void *key, void *val)
{
	union bpf_attr a;

	memset(&a, 0, sizeof(a));
	a.map_fd = (uint32_t)fd;
	a.key = (uint64_t)(uintptr_t)key;
	a.value = (uint64_t)(uintptr_t)val;
	return sys_bpf(BPF_MAP_LOOKUP_ELEM, &a) < 0 ? -errno : 0;
}

static mr_runtime_t *make_rt(unsigned n)
{
	MR_OPTS(mr_config, cfg, .workers = n);
	mr_runtime_t *rt = mr_runtime_create(&cfg);
	if (!rt) {
		printf("# mr_runtime_create: %s\n", strerror(errno));
		exit(1);
	}
	return rt;
}

/* Worker threads of this process (comm "moirai-wN"): tid and N. */
static int find_workers(pid_t *tids, unsigned *idx, int max)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)) && n < max) {
		char path[300], comm[32] = "";
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(comm, sizeof(comm), f) && strncmp(comm, "moirai-w", 8) == 0) {
			tids[n] = atoi(e->d_name);
			idx[n] = (unsigned)atoi(comm + 8);
			n++;
		}
		fclose(f);
	}
	closedir(d);
	return n;
}

/* The worker threads name themselves and register as they start: wait for
 * all n of them (5 s at most). */
static int wait_workers(pid_t *tids, unsigned *idx, int n, int wfd)
{
	int found = 0;
	for (int tries = 0; tries < 500; tries++) {
		found = find_workers(tids, idx, MAXW);
		int reg = 0;
		for (int i = 0; i < found && wfd >= 0; i++) {
			struct moirai_worker w;
			reg += map_lookup(wfd, &tids[i], &w) == 0;
		}
		if (found == n && (wfd < 0 || reg == n))
			break;
		usleep(10000);
	}
	return found;
}

/* Field 39 of /proc/<tid>/stat: the CPU the thread last ran on; *state
 * (if not NULL) gets field 3, e.g. 'R' running or waiting for a CPU, 'S'. */
static int last_cpu(pid_t tid, char *state)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (r <= 0)
		return -1;
	buf[r] = 0;
	char *p = strrchr(buf, ')'); /* comm may hold spaces */
	if (!p || !p[1] || !p[2])
		return -1;
	if (state)
		*state = p[2];
	int field = 2;
	for (; *p && field < 39; p++)
		if (*p == ' ')
			field++;
	return atoi(p);
}

static int node_of_cpu(int cpu)
{
	for (int node = 0; node < MOIRAI_MAX_NODES; node++) {
		char path[80], buf[256];
		snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/cpulist", node);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		char *ok = fgets(buf, sizeof(buf), f);
		fclose(f);
		if (!ok)
			continue;
		for (char *s = buf; *s && *s != '\n';) {
			char *end;
			long a = strtol(s, &end, 10), b = a;
			if (*end == '-')
				b = strtol(end + 1, &end, 10);
			if (cpu >= a && cpu <= b)
				return node;
			s = *end == ',' ? end + 1 : end;
			if (end == s && *s != ',')
				break;
		}
	}
	return 0;
}

/* ---- busy work: verified parallel reductions ------------------------------ */

static void sum_body(size_t lo, size_t hi, void *acc, void *ctx)
{
	uint64_t s = 0;
	(void)ctx;
	for (size_t i = lo; i < hi; i++)
		s += (uint64_t)i * i % 7919;
	*(uint64_t *)acc += s;
}

static void sum_combine(void *acc, const void *other, void *ctx)
{
	(void)ctx;
	*(uint64_t *)acc += *(const uint64_t *)other;
}

struct busy {
	int64_t until;
	size_t n;
	uint64_t expect;
	long rounds;
	int bad;
};

static void busy_main(void *arg)
{
	struct busy *b = arg;
	uint64_t zero = 0;

	while (now_ns() < b->until) {
		uint64_t r = 0;
		mr_parallel_reduce(0, b->n, b->n / 16, &r, sizeof(r), &zero, sum_body, sum_combine, NULL);
		if (r != b->expect)
			b->bad++;
		b->rounds++;
	}
}

static uint64_t expected_sum(size_t n)
{
	uint64_t s = 0, zero = 0;
	sum_body(0, n, &s, &zero);
	return s;
}

static int cmd_busy(double secs, unsigned n)
{
	struct busy b = { .n = 1 << 22 };
	b.expect = expected_sum(b.n);
	b.until = now_ns() + (int64_t)(secs * 1e9);
	mr_runtime_t *rt = make_rt(n);
	int64_t t0 = now_ns();
	mr_runtime_install(rt, busy_main, &b);
	mr_runtime_destroy(rt);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
		     ru.ru_stime.tv_usec / 1e6;
	printf("# busy: %ld rounds, %d wrong, %.2f CPUs busy on average\n", b.rounds, b.bad,
	       cpu / ((now_ns() - t0) / 1e9));
	return b.bad || b.rounds == 0 ? 1 : 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: mrvm workers | busy SECS [N] | spin SECS N MIN_CPUS [F] | numa SECS | "
			"hog SECS MIN_PCT | affinity SECS MASK... | full | hold SECS N | registered PID N | "
			"reg TID... | intrude TID WTID | wake N | pfor SECS\n");
	return 2;
}

/* N fibers that compute until the deadline: N workers that never sleep. */
/* MRVM_YIELD_US=U: spinning workers call sched_yield() every U us, so that
 * each of them is enqueued again many times per slice (a runtime's searching
 * worker yields like this); 0 = never. */
static int64_t spin_yield_ns;

static void spin_fiber(void *arg)
{
	struct busy *b = arg;
	volatile uint64_t x = 0;
	int64_t next = spin_yield_ns ? now_ns() + spin_yield_ns : INT64_MAX;

	while (now_ns() < b->until) {
		for (unsigned i = 0; i < 100000; i++)
			x += i;
		if (now_ns() >= next) {
			sched_yield();
			next = now_ns() + spin_yield_ns;
		}
	}
}

/* MRVM_DEPTH=D: the workers' hints say "running, D jobs queued" the whole
 * time (rewritten every 1 ms), whatever the runtime published. The hints
 * are in this process (the address each worker registered), and the
 * scheduler copies them into the workers' lines when they stop: `seen`
 * counts the looks that found the faked depth in a line. */
struct fake_depth {
	struct busy *b;
	unsigned n, depth;
	unsigned long writes; /* hints rewritten (0: the faker could not run) */
	unsigned long seen;   /* lines found saying depth D */
};

static void *fake_depth_thread(void *arg)
{
	struct fake_depth *fd = arg;
	size_t len = (sizeof(struct moirai_load) * MOIRAI_LOAD_SLOTS + 4095) & ~(size_t)4095;
	int wfd = map_open("workers"), lfd = map_open("worker_load");
	pid_t tids[MAXW];
	unsigned idx[MAXW];
	const struct moirai_load *lines;

	if (wfd < 0 || lfd < 0)
		return NULL;
	lines = mmap(NULL, len, PROT_READ, MAP_SHARED, lfd, 0);
	if (lines == MAP_FAILED)
		return NULL;
	int n = wait_workers(tids, idx, (int)fd->n, wfd);
	while (now_ns() < fd->b->until) {
		for (int i = 0; i < n; i++) {
			struct moirai_worker w;
			if (map_lookup(wfd, &tids[i], &w) == 0 && w.slot < MOIRAI_LOAD_SLOTS &&
			    w.pid == (uint32_t)getpid() && w.hints) {
				struct moirai_hints *h = (struct moirai_hints *)(uintptr_t)w.hints;
				__atomic_store_n(&h->state, MOIRAI_W_RUNNING, __ATOMIC_RELAXED);
				__atomic_store_n(&h->depth, fd->depth, __ATOMIC_RELAXED);
				fd->writes++;
				fd->seen += __atomic_load_n(&lines[w.slot].depth, __ATOMIC_RELAXED) ==
					    fd->depth;
			}
		}
		usleep(1000);
	}
	return NULL;
}

static int cmd_spin(double secs, unsigned n, double min_cpus, unsigned nf)
{
	struct busy b = { .until = now_ns() + (int64_t)(secs * 1e9) };
	mr_fiber_t *f[4 * MAXW];

	if (n == 0 || n > MAXW || nf < n || nf > 4 * MAXW)
		return usage();
	mr_runtime_t *rt = make_rt(n);
	int64_t t0 = now_ns();
	struct fake_depth fd = { .b = &b, .n = n };
	pthread_t faker;
	if (getenv("MRVM_YIELD_US"))
		spin_yield_ns = (int64_t)atoi(getenv("MRVM_YIELD_US")) * 1000;
	bool faking = getenv("MRVM_DEPTH") &&
		      (fd.depth = (unsigned)atoi(getenv("MRVM_DEPTH"))) > 0 &&
		      pthread_create(&faker, NULL, fake_depth_thread, &fd) == 0;
	for (unsigned i = 0; i < nf; i++)
		f[i] = mr_go_opts(spin_fiber, &b, &(struct mr_fiber_opts){
			.sz = sizeof(struct mr_fiber_opts), .runtime = rt });
	for (unsigned i = 0; i < nf; i++)
		mr_fiber_join(f[i]);
	if (faking) {
		pthread_join(faker, NULL);
		printf("# spin: hints of %u workers rewritten %lu times, their lines said so "
		       "%lu times\n", n, fd.writes, fd.seen);
		if (fd.writes == 0 || fd.seen == 0)
			return 1;
	}
	mr_runtime_destroy(rt);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
		     ru.ru_stime.tv_usec / 1e6;
	double busy = cpu / ((now_ns() - t0) / 1e9);
	printf("# spin: %u workers, %.2f CPUs busy on average (want >= %.2f)\n", n, busy, min_cpus);
	return busy >= min_cpus ? 0 : 1;
}

/* ---- registration --------------------------------------------------------- */

static int cmd_workers(void)
{
	int wfd = map_open("workers"), lfd = map_open("worker_load");
	pid_t tids[MAXW];
	unsigned idx[MAXW];
	int fails = 0, per_node[MOIRAI_MAX_NODES] = { 0 };

	if (wfd < 0 || lfd < 0) {
		printf("# no pinned maps under %s: %s\nSKIP: scheduler never loaded\n", MOIRAI_PIN_DIR,
		       strerror(errno));
		return 4;
	}
	mr_runtime_t *rt = make_rt(4);
	int n = wait_workers(tids, idx, 4, wfd);
	if (n != 4) {
		printf("# found %d worker threads, want 4\n", n);
		fails++;
	}
	for (int i = 0; i < n; i++) {
		struct moirai_worker w;
		struct moirai_load l;
		int pol = sched_getscheduler(tids[i]);
		int r = map_lookup(wfd, &tids[i], &w);
		printf("# worker %u tid %d policy %d registered %s", idx[i], tids[i], pol,
		       r ? "no" : "yes");
		if (!r)
			printf(" pid %u rt %u index %u node %d slot %u", w.pid, w.rt_id, w.index, w.node,
			       w.slot);
		printf("\n");
		if (pol != SCHED_EXT || r || w.pid != (uint32_t)getpid() || w.index != idx[i] ||
		    w.rt_id == 0) {
			fails++;
			continue;
		}
		if (w.node >= 0 && w.node < MOIRAI_MAX_NODES)
			per_node[w.node]++;
		if (map_lookup(lfd, &w.slot, &l) || l.tid != (uint32_t)tids[i] ||
		    l.state < MOIRAI_W_RUNNING || l.state > MOIRAI_W_PARKED) {
			printf("# load line %u: tid %u state %u\n", w.slot, l.tid, l.state);
			fails++;
		}
	}
	/* Homes follow the CPUs: with 2 nodes of 2 CPUs, 2 workers per node. */
	int node0 = node_of_cpu(0), node_last = node_of_cpu((int)sysconf(_SC_NPROCESSORS_ONLN) - 1);
	if (node0 != node_last && (per_node[node0] != 2 || per_node[node_last] != 2)) {
		printf("# homes: %d on node %d, %d on node %d (want 2 and 2)\n", per_node[node0], node0,
		       per_node[node_last], node_last);
		fails++;
	}
	mr_runtime_destroy(rt);
	for (int i = 0; i < n; i++) {
		struct moirai_worker w;
		if (map_lookup(wfd, &tids[i], &w) != -ENOENT) {
			printf("# tid %d still registered after destroy\n", tids[i]);
			fails++;
		}
	}
	printf("# %d problems\n", fails);
	return fails ? 1 : 0;
}

/* ---- NUMA locality -------------------------------------------------------- */

struct numa_sum {
	uint64_t home_ns, remote_ns, migrations;
};

/* Possible CPUs (/sys/devices/system/cpu/possible, "0-N"): the number of
 * values a lookup in a per-CPU map returns. */
static int possible_cpus(void)
{
	FILE *f = fopen("/sys/devices/system/cpu/possible", "r");
	int lo = 0, hi = -1;

	if (f) {
		if (fscanf(f, "%d-%d", &lo, &hi) < 1)
			hi = -1;
		else if (hi < lo)
			hi = lo;
		fclose(f);
	}
	return hi + 1;
}

/* node_stats is per-CPU (moirai_shared.h): each node's entry summed over
 * the CPUs' copies. */
static struct numa_sum node_sum(int fd)
{
	struct numa_sum s = { 0 };
	int ncpu = possible_cpus();
	struct moirai_node_stats *ns = ncpu > 0 ? calloc((size_t)ncpu, sizeof(*ns)) : NULL;

	_Static_assert(sizeof(*ns) % 8 == 0, "per-CPU values are 8-byte aligned");
	if (!ns) {
		printf("# cannot size node_stats' per-CPU values\n");
		exit(1);
	}
	for (uint32_t k = 0; k < MOIRAI_MAX_NODES; k++) {
		if (map_lookup(fd, &k, ns))
			break;
		for (int c = 0; c < ncpu; c++) {
			s.home_ns += ns[c].worker_home_ns;
			s.remote_ns += ns[c].worker_remote_ns;
			s.migrations += ns[c].migrations;
		}
	}
	free(ns);
	return s;
}

static int cmd_numa(double secs)
{
	int wfd = map_open("workers"), nfd = map_open("node_stats");
	pid_t tids[MAXW];
	unsigned idx[MAXW];
	int home[MAXW];
	long on_home = 0, samples = 0, asleep = 0;

	if (wfd < 0 || nfd < 0) {
		printf("SKIP: no pinned maps (scheduler not loaded)\n");
		return 4;
	}
	struct busy b = { .n = 1 << 22 };
	b.expect = expected_sum(b.n);
	b.until = now_ns() + (int64_t)(secs * 1e9);
	mr_runtime_t *rt = make_rt(4);
	int n = wait_workers(tids, idx, 4, wfd);
	for (int i = 0; i < n; i++) {
		struct moirai_worker w;
		if (map_lookup(wfd, &tids[i], &w)) {
			printf("# worker tid %d not registered\n", tids[i]);
			return 1;
		}
		home[i] = w.node;
	}
	struct numa_sum before = node_sum(nfd);
	/* The reductions run on an outside thread's behalf (install blocks):
	 * sample from a second thread. */
	mr_fiber_t *f = mr_go_opts(busy_main, &b, &(struct mr_fiber_opts){
		.sz = sizeof(struct mr_fiber_opts), .runtime = rt });
	while (now_ns() < b.until) {
		for (int i = 0; i < n; i++) {
			char st = 0;
			int cpu = last_cpu(tids[i], &st);
			/* Only where it runs or waits to: a parked worker's
			 * CPU is where it last ran, maybe before the stats
			 * snapshot above (seen: one of the four parked on the
			 * other node for the whole run, 75.00%). */
			if (cpu < 0 || st != 'R') {
				asleep++;
				continue;
			}
			samples++;
			on_home += node_of_cpu(cpu) == home[i];
		}
		usleep(10000);
	}
	mr_fiber_join(f);
	struct numa_sum after = node_sum(nfd);
	mr_runtime_destroy(rt);

	uint64_t h = after.home_ns - before.home_ns, r = after.remote_ns - before.remote_ns;
	double pct_stats = h + r ? 100.0 * (double)h / (double)(h + r) : 0;
	double pct_samples = samples ? 100.0 * (double)on_home / (double)samples : 0;
	printf("# node_stats: worker run time home %.3f s remote %.3f s = %.2f%% home, "
	       "%llu migrations\n",
	       h / 1e9, r / 1e9, pct_stats,
	       (unsigned long long)(after.migrations - before.migrations));
	printf("# /proc sampling: %ld of %ld samples on the home node = %.2f%% (%ld more asleep)\n",
	       on_home, samples, pct_samples, asleep);
	printf("# reductions: %ld rounds, %d wrong\n", b.rounds, b.bad);
	return pct_stats >= 99.0 && pct_samples >= 99.0 && h > 0 && !b.bad ? 0 : 1;
}

/* ---- a non-Moirai CPU hog ------------------------------------------------- */

static int cmd_hog(double secs, double min_pct)
{
	int64_t t0 = now_ns(), until = t0 + (int64_t)(secs * 1e9);
	volatile uint64_t x = 0;
	while (now_ns() < until)
		for (int i = 0; i < 100000; i++)
			x += (uint64_t)i;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
		     ru.ru_stime.tv_usec / 1e6;
	double pct = 100.0 * cpu / ((now_ns() - t0) / 1e9);
	printf("# hog: %.1f%% of one CPU (want >= %.1f%%)\n", pct, min_pct);
	return pct >= min_pct ? 0 : 1;
}

/* ---- affinity changes ------------------------------------------------------ */

/* Fields 14 and 15 of /proc/self/task/<tid>/stat: user + system time, in ticks. */
static long thread_ticks(pid_t tid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (r <= 0)
		return -1;
	buf[r] = 0;
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	int field = 2;
	for (; *p && field < 14; p++)
		if (*p == ' ')
			field++;
	char *end;
	long ut = strtol(p, &end, 10);
	return ut + strtol(end, NULL, 10);
}

/* Every thread of this process to mask (taskset -a -p). */
static int restrict_all(unsigned long mask)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	cpu_set_t set;
	int err = 0;

	CPU_ZERO(&set);
	for (int c = 0; c < 64; c++)
		if (mask & (1ul << c))
			CPU_SET(c, &set);
	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (sched_setaffinity(atoi(e->d_name), sizeof(set), &set) < 0 && errno != ESRCH)
			err = -errno;
	}
	closedir(d);
	return err;
}

static int cmd_affinity(double secs, int nmasks, char **masks)
{
	struct busy b = { .until = INT64_MAX };
	pid_t tids[MAXW];
	unsigned idx[MAXW];
	mr_fiber_t *f[4];
	long hz = sysconf(_SC_CLK_TCK);
	int fails = 0, n;

	mr_runtime_t *rt = make_rt(4);
	n = wait_workers(tids, idx, 4, map_open("workers"));
	if (n != 4) {
		printf("# affinity: found %d workers, want 4\n", n);
		return 1;
	}
	for (unsigned i = 0; i < 4; i++)
		f[i] = mr_go_opts(spin_fiber, &b, &(struct mr_fiber_opts){
			.sz = sizeof(struct mr_fiber_opts), .runtime = rt });
	usleep(500000);
	for (int m = 0; m < nmasks; m++) {
		unsigned long mask = strtoul(masks[m], NULL, 16);
		long t0[4];
		int outside = 0, err = restrict_all(mask);
		double share = __builtin_popcountl(mask) / 4.0;

		if (err) {
			printf("# affinity: cannot restrict to %#lx: %s\n", mask, strerror(-err));
			fails++;
			continue;
		}
		if (share > 1)
			share = 1;
		for (int i = 0; i < 4; i++)
			t0[i] = thread_ticks(tids[i]);
		int64_t end = now_ns() + (int64_t)(secs * 1e9);
		/* Where the workers are seen running (sampled; after a settling pause). */
		usleep(200000);
		while (now_ns() < end) {
			for (int i = 0; i < 4; i++) {
				int cpu = last_cpu(tids[i], NULL);
				if (cpu >= 0 && cpu < 64 && !(mask & (1ul << cpu)))
					outside++;
			}
			usleep(100000);
		}
		printf("# affinity %#lx for %.1f s: CPU seconds per worker:", mask, secs);
		for (int i = 0; i < 4; i++) {
			double got = (double)(thread_ticks(tids[i]) - t0[i]) / (double)hz;
			printf(" w%u %.2f", idx[i], got);
			if (got < share * secs / 10)
				fails++;
		}
		printf(" (want >= %.2f each); seen outside the mask %d times\n", share * secs / 10,
		       outside);
		fails += outside > 0;
	}
	b.until = 0;
	for (unsigned i = 0; i < 4; i++)
		mr_fiber_join(f[i]);
	mr_runtime_destroy(rt);
	return fails ? 1 : 0;
}

/* ---- a full worker_load --------------------------------------------------- */

static void *map_shared(const char *name, size_t len)
{
	int fd = map_open(name);
	void *m;

	if (fd < 0)
		return NULL;
	m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	return m == MAP_FAILED ? NULL : m;
}

/* Thread ids above any pid_max, for the lines cmd_full() holds. */
#define FAKE_TID(i) (0x7fff0000u + (i))

static int cmd_full(void)
{
	size_t len = (sizeof(struct moirai_load) * MOIRAI_LOAD_SLOTS + 4095) & ~(size_t)4095;
	struct moirai_load *lines = map_shared("worker_load", len);
	struct moirai_meta *meta = map_shared("meta", 4096);
	uint32_t taken = 0;
	pid_t tids[MAXW];
	unsigned idx[MAXW];
	int wfd = map_open("workers"), reg = 0;

	if (!lines || !meta || wfd < 0) {
		printf("# full: the pinned maps cannot be opened or mapped\n");
		return 1;
	}
	/* Every free line held as `register` would hold it: by a thread
	 * whose registration points at the line (root writes both maps). */
	for (uint32_t i = 0; i < MOIRAI_LOAD_SLOTS; i++) {
		uint32_t zero = 0, fake = FAKE_TID(i);
		struct moirai_worker fw = { .pid = (uint32_t)getpid(), .slot = i, .tid = fake,
					    .hints = 1 };
		if (sys_bpf(BPF_MAP_UPDATE_ELEM, &(union bpf_attr){
				    .map_fd = (uint32_t)wfd,
				    .key = (uint64_t)(uintptr_t)&fake,
				    .value = (uint64_t)(uintptr_t)&fw,
			    }) != 0)
			continue;
		if (__atomic_compare_exchange_n(&lines[i].tid, &zero, fake, false, __ATOMIC_ACQ_REL,
						__ATOMIC_RELAXED)) {
			lines[i].pid = (uint32_t)getpid();
			taken++;
		}
	}
	uint64_t before = __atomic_load_n(&meta->reg_full, __ATOMIC_RELAXED);
	int64_t t0 = now_ns();
	mr_runtime_t *rt = make_rt(4);
	int n = wait_workers(tids, idx, 4, -1);
	int64_t t1 = now_ns();
	/* The registration is done before a worker names itself... or not at
	 * all: give the refusals a moment to be counted. */
	for (int tries = 0; tries < 100; tries++) {
		if (__atomic_load_n(&meta->reg_full, __ATOMIC_RELAXED) - before >= 4)
			break;
		usleep(10000);
	}
	uint64_t refused = __atomic_load_n(&meta->reg_full, __ATOMIC_RELAXED) - before;
	for (int i = 0; i < n; i++) {
		struct moirai_worker w;
		reg += map_lookup(wfd, &tids[i], &w) == 0;
	}
	printf("# full: took %u free lines; %d workers started in %.1f ms, %d registered, "
	       "%llu refusals counted\n",
	       taken, n, (t1 - t0) / 1e6, reg, (unsigned long long)refused);
	mr_runtime_destroy(rt);
	for (uint32_t i = 0; i < MOIRAI_LOAD_SLOTS; i++) {
		uint32_t fake = FAKE_TID(i), mine = fake;
		sys_bpf(BPF_MAP_DELETE_ELEM, &(union bpf_attr){
				.map_fd = (uint32_t)wfd, .key = (uint64_t)(uintptr_t)&fake });
		__atomic_compare_exchange_n(&lines[i].tid, &mine, 0, false, __ATOMIC_RELEASE,
					    __ATOMIC_RELAXED);
	}
	return n == 4 && reg == 0 && refused == 4 ? 0 : 1;
}

/* ---- who may register ------------------------------------------------------ */

static int cmd_hold(double secs, unsigned n)
{
	pid_t tids[MAXW];
	unsigned idx[MAXW];
	mr_runtime_t *rt = make_rt(n);
	int found = wait_workers(tids, idx, (int)n, -1);

	printf("ready pid %d: %d workers\n", (int)getpid(), found);
	for (int64_t until = now_ns() + (int64_t)(secs * 1e9); now_ns() < until;)
		usleep(100000);
	mr_runtime_destroy(rt);
	return 0;
}

/* Threads of process pid registered in the workers map, checked one by one. */
static int registered_of(int wfd, int lfd, pid_t pid, bool verbose)
{
	uint32_t key, next;
	bool first = true;
	int n = 0;

	while (sys_bpf(BPF_MAP_GET_NEXT_KEY, &(union bpf_attr){
			       .map_fd = (uint32_t)wfd,
			       .key = first ? 0 : (uint64_t)(uintptr_t)&key,
			       .next_key = (uint64_t)(uintptr_t)&next,
		       }) == 0) {
		struct moirai_worker w;
		struct moirai_load l = { 0 };
		char path[64];

		first = false;
		key = next;
		if (map_lookup(wfd, &key, &w) || w.pid != (uint32_t)pid)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%u", (int)pid, key);
		int pol = sched_getscheduler((pid_t)key);
		bool ok = access(path, F_OK) == 0 && pol == SCHED_EXT &&
			  map_lookup(lfd, &w.slot, &l) == 0 && l.tid == key;
		if (verbose)
			printf("# tid %u of %d: policy %d, line %u (tid %u state %u)%s\n", key,
			       (int)pid, pol, w.slot, l.tid, l.state, ok ? "" : " WRONG");
		n += ok ? 1 : 1000;
	}
	return n;
}

static int cmd_registered(pid_t pid, int want)
{
	int wfd = map_open("workers"), lfd = map_open("worker_load"), n = -1;

	if (wfd < 0 || lfd < 0) {
		printf("# the pinned maps cannot be opened: %s\n", strerror(errno));
		return 1;
	}
	for (int tries = 0; tries < 50 && n != want; tries++) {
		if (tries)
			usleep(100000);
		n = registered_of(wfd, lfd, pid, false);
	}
	registered_of(wfd, lfd, pid, true);
	printf("# %d threads of %d registered, want %d\n", n, (int)pid, want);
	return n == want ? 0 : 1;
}

static int cmd_reg(int argc, char **argv)
{
	int wfd = map_open("workers"), missing = 0;

	if (wfd < 0) {
		printf("# the workers map cannot be opened: %s\n", strerror(errno));
		return 100;
	}
	for (int i = 0; i < argc; i++) {
		uint32_t tid = (uint32_t)atoi(argv[i]);
		struct moirai_worker w;
		if (map_lookup(wfd, &tid, &w) == 0) {
			printf("# tid %u registered (pid %u)\n", tid, w.pid);
		} else {
			printf("# tid %u not registered\n", tid);
			missing++;
		}
	}
	return missing;
}

/* The pid (thread group) of thread tid, from /proc/<tid>/status; 0 if unknown. */
static uint32_t tgid_of(pid_t tid)
{
	char path[64], line[128];
	uint32_t tgid = 0;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)tid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Tgid: %u", &tgid) == 1)
			break;
	fclose(f);
	return tgid;
}

/* Runs `register` in this thread: what it returns, or -errno when it
 * could not run. */
static int run_register(uint32_t op, uint32_t slot, struct moirai_hints *h)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", MOIRAI_PIN_DIR, MOIRAI_REGISTER_PROG);
	int rfd = (int)sys_bpf(BPF_OBJ_GET, &(union bpf_attr){ .pathname = (uint64_t)(uintptr_t)path });
	struct moirai_reg r = { .op = op, .rt_id = 1, .slot = slot, .hints = (uint64_t)(uintptr_t)h };
	union bpf_attr a = { 0 };

	if (rfd < 0)
		return -errno;
	a.test.prog_fd = (uint32_t)rfd;
	a.test.ctx_in = (uint64_t)(uintptr_t)&r;
	a.test.ctx_size_in = sizeof(r);
	long rc = sys_bpf(BPF_PROG_TEST_RUN, &a);
	close(rfd);
	return rc < 0 ? -errno : (int)a.test.retval;
}

static int cmd_intrude(pid_t tid, pid_t wtid)
{
	int wfd = map_open("workers"), fails = 0;

	printf("# intruder: uid %d, pid %d\n", (int)getuid(), (int)getpid());
	if (wfd < 0) {
		printf("# workers map: cannot open it for writing (%s)\n", strerror(errno));
	} else {
		struct moirai_worker w = { .pid = tgid_of(tid), .rt_id = 1 };
		uint32_t k = (uint32_t)tid;
		union bpf_attr a = {
			.map_fd = (uint32_t)wfd,
			.key = (uint64_t)(uintptr_t)&k,
			.value = (uint64_t)(uintptr_t)&w,
		};
		if (sys_bpf(BPF_MAP_UPDATE_ELEM, &a) == 0) {
			printf("# workers map: registered tid %d of process %u\n", (int)tid, w.pid);
			fails++;
		} else {
			printf("# workers map: update refused (%s)\n", strerror(errno));
		}
		k = (uint32_t)wtid;
		a.value = 0;
		if (sys_bpf(BPF_MAP_DELETE_ELEM, &a) == 0) {
			printf("# workers map: removed the registration of tid %d\n", (int)wtid);
			fails++;
		} else {
			printf("# workers map: delete refused (%s)\n", strerror(errno));
		}
	}
	/* WTID's line: readable by the group (lookups: a read-only
	 * descriptor cannot be mapped shared), writable by nobody but root. */
	size_t len = (sizeof(struct moirai_load) * MOIRAI_LOAD_SLOTS + 4095) & ~(size_t)4095;
	int ro = (int)sys_bpf(BPF_OBJ_GET, &(union bpf_attr){
		.pathname = (uint64_t)(uintptr_t)MOIRAI_PIN_DIR "/worker_load",
		.file_flags = BPF_F_RDONLY,
	});
	uint32_t wslot = MOIRAI_LOAD_SLOTS;
	struct moirai_load l;
	if (ro < 0) {
		printf("# worker_load: cannot open it to read (%s)\n", strerror(errno));
	} else {
		for (uint32_t i = 0; i < MOIRAI_LOAD_SLOTS; i++)
			if (map_lookup(ro, &i, &l) == 0 && l.tid == (uint32_t)wtid)
				wslot = i;
		printf("# worker_load: line %u is worker %d's\n", wslot, (int)wtid);
	}
	int lfd = (int)sys_bpf(BPF_OBJ_GET, &(union bpf_attr){
		.pathname = (uint64_t)(uintptr_t)MOIRAI_PIN_DIR "/worker_load",
	});
	struct moirai_load *rw =
		lfd < 0 ? MAP_FAILED : mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, lfd, 0);
	if (lfd < 0) {
		printf("# worker_load: cannot open it for writing (%s)\n", strerror(errno));
	} else if (rw == MAP_FAILED) {
		printf("# worker_load: cannot map it for writing (%s)\n", strerror(errno));
	} else if (wslot < MOIRAI_LOAD_SLOTS) {
		__atomic_store_n(&rw[wslot].depth, 99, __ATOMIC_RELAXED);
		__atomic_store_n(&rw[wslot].preempted, 1, __ATOMIC_RELAXED);
		printf("# worker_load: wrote worker %d's line\n", (int)wtid);
		fails++;
	}
	if (lfd >= 0) {
		uint32_t k = wslot;
		struct moirai_load fake = { .tid = (uint32_t)wtid, .state = MOIRAI_W_RUNNING, .depth = 99 };
		union bpf_attr a = {
			.map_fd = (uint32_t)lfd,
			.key = (uint64_t)(uintptr_t)&k,
			.value = (uint64_t)(uintptr_t)&fake,
		};
		if (wslot < MOIRAI_LOAD_SLOTS && sys_bpf(BPF_MAP_UPDATE_ELEM, &a) == 0) {
			printf("# worker_load: updated worker %d's line\n", (int)wtid);
			fails++;
		}
	}
	/* The program takes no thread id: all it can do is act on its caller.
	 * Asked to start at WTID's line, it must claim another. */
	struct moirai_hints mine = { .state = MOIRAI_W_RUNNING, .depth = 99 };
	for (uint32_t op = MOIRAI_REG_ADD; op <= MOIRAI_REG_DEL; op++) {
		int rc = run_register(op, wslot < MOIRAI_LOAD_SLOTS ? wslot : 0, &mine);
		printf("# register %s: returned %d\n", op == MOIRAI_REG_ADD ? "add" : "del", rc);
		if (op == MOIRAI_REG_ADD && wslot < MOIRAI_LOAD_SLOTS && rc == (int)wslot) {
			printf("# register: took worker %d's line\n", (int)wtid);
			fails++;
		}
	}
	if (ro >= 0 && wslot < MOIRAI_LOAD_SLOTS && map_lookup(ro, &wslot, &l) == 0) {
		printf("# worker_load: line %u now: tid %u, depth %u, preempted %u\n", wslot, l.tid,
		       l.depth, l.preempted);
		if (l.tid != (uint32_t)wtid || l.depth == 99) {
			printf("# worker_load: worker %d's line changed\n", (int)wtid);
			fails++;
		}
	}
	return fails ? 1 : 0;
}

/* ---- a registered thread that runs execve --------------------------------- */

/* Sleep in short naps for ms milliseconds: many stops (and runs), each a
 * chance for the scheduler to copy hints (a yield with nothing else to run
 * may not stop at all). */
static void yield_for(int ms)
{
	for (int64_t until = now_ns() + (int64_t)ms * 1000000; now_ns() < until;)
		usleep(500);
}

static int cmd_execreg(void)
{
	int lfd = map_open("worker_load");
	struct moirai_hints *h = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct moirai_load l;

	if (lfd < 0 || h == MAP_FAILED)
		return 1;
	*h = (struct moirai_hints){ .state = MOIRAI_W_RUNNING, .depth = 77, .updates = 1 };
	int slot = run_register(MOIRAI_REG_ADD, 0, h);
	if (slot < 0 || slot >= MOIRAI_LOAD_SLOTS) {
		printf("# execreg: register failed: %d\n", slot);
		return 1;
	}
	uint32_t k = (uint32_t)slot;
	yield_for(200);
	if (map_lookup(lfd, &k, &l) || l.depth != 77) {
		printf("# execreg: line %d says depth %u, not the registered 77\n", slot, l.depth);
		return 1;
	}
	printf("# execreg: line %d copied depth 77 from %p; now execve\n", slot, (void *)h);
	fflush(stdout);
	char a1[16], a2[32];
	snprintf(a1, sizeof(a1), "%d", slot);
	snprintf(a2, sizeof(a2), "%lu", (unsigned long)(uintptr_t)h);
	execl("/proc/self/exe", "mrvm", "execprobe", a1, a2, (char *)NULL);
	perror("execl");
	return 1;
}

/* After the execve: the same thread, another program, which puts other
 * values at the registered address. The scheduler must not copy them. */
static int cmd_execprobe(int slot, unsigned long addr)
{
	int lfd = map_open("worker_load");
	struct moirai_hints *h = mmap((void *)addr, 4096, PROT_READ | PROT_WRITE,
				      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	struct moirai_load l;
	uint32_t k = (uint32_t)slot;

	if (lfd < 0)
		return 1;
	if (h != (void *)addr) {
		printf("# execprobe: cannot map %#lx in the new program\n", addr);
		return 4;
	}
	*h = (struct moirai_hints){ .state = MOIRAI_W_RUNNING, .depth = 55, .updates = 999 };
	yield_for(300);
	int bad = map_lookup(lfd, &k, &l) || l.depth == 55 || l.updates == 999;
	printf("# execprobe: line %d after execve: depth %u, updates %llu%s\n", slot, l.depth,
	       (unsigned long long)l.updates,
	       bad ? ": the scheduler read the new program's memory" : "");
	run_register(MOIRAI_REG_DEL, 0, NULL);
	return bad;
}

/* ---- benchmarks ----------------------------------------------------------- */

struct wake {
	int64_t posted;
	int64_t lat;
	int cpu, worker;
	_Atomic int done;
};

static void wake_fn(void *arg)
{
	struct wake *w = arg;
	w->lat = now_ns() - w->posted;
	w->cpu = sched_getcpu();
	w->worker = mr_worker_index();
	atomic_store_explicit(&w->done, 1, memory_order_release);
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static int cmd_wake(int n)
{
	mr_runtime_t *rt = make_rt(4);
	int64_t *lat = calloc((size_t)n, sizeof(*lat));
	int64_t *post = calloc((size_t)n, sizeof(*post));
	const char *trace = getenv("MRVM_WAKE_TRACE");
	unsigned seed = 1;

	if (!lat || !post) {
		fprintf(stderr, "mrvm wake: out of memory\n");
		return 1;
	}

	for (int i = 0; i < n; i++) {
		/* Let the workers finish spinning and park (spin is 50 us). */
		usleep(2000 + rand_r(&seed) % 2000);
		struct wake w = { .posted = now_ns() };
		mr_fiber_t *f = mr_go_opts(wake_fn, &w, &(struct mr_fiber_opts){
			.sz = sizeof(struct mr_fiber_opts), .runtime = rt });
		post[i] = now_ns() - w.posted;
		int pc = sched_getcpu();
		mr_fiber_join(f);
		lat[i] = w.lat;
		if (trace && w.lat >= atoll(trace))
			printf("# wake %d: poster cpu %d, fiber on worker %d cpu %d, %lld us\n", i, pc,
			       w.worker, w.cpu, (long long)(w.lat / 1000));
	}
	qsort(post, (size_t)n, sizeof(*post), cmp_i64);
	printf("# wake: the post itself (mr_go_opts) p50 %lld ns, p99 %lld ns\n",
	       (long long)post[n / 2], (long long)post[(n * 99) / 100]);
	free(post);
	mr_runtime_destroy(rt);
	qsort(lat, (size_t)n, sizeof(*lat), cmp_i64);
	printf("RESULT wake n=%d p50_ns=%lld p99_ns=%lld max_ns=%lld\n", n,
	       (long long)lat[n / 2], (long long)lat[(n * 99) / 100], (long long)lat[n - 1]);
	free(lat);
	return 0;
}

static void pfor_body(size_t lo, size_t hi, void *ctx)
{
	double *out = ctx;
	for (size_t i = lo; i < hi; i++) {
		double x = (double)i;
		for (int k = 0; k < 20; k++)
			x = x * 0.999 + 1.0;
		out[i] = x;
	}
}

struct pfor {
	double secs;
	double *buf;
	size_t n;
	int windows;
	double per_sec[64];
};

static void pfor_main(void *arg)
{
	struct pfor *p = arg;
	for (int w = 0; w < p->windows; w++) {
		int64_t t0 = now_ns(), end = t0 + 1000000000;
		long rounds = 0;
		while (now_ns() < end) {
			mr_parallel_for(0, p->n, 0, pfor_body, p->buf);
			rounds++;
		}
		p->per_sec[w] = rounds / ((now_ns() - t0) / 1e9);
	}
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int cmd_pfor(double secs)
{
	struct pfor p = { .n = 1 << 16 };
	p.windows = secs < 1 ? 1 : secs > 64 ? 64 : (int)secs;
	p.buf = calloc(p.n, sizeof(double));
	mr_runtime_t *rt = make_rt(4);
	mr_runtime_install(rt, pfor_main, &p);
	mr_runtime_destroy(rt);
	qsort(p.per_sec, (size_t)p.windows, sizeof(double), cmp_d);
	printf("RESULT pfor windows=%d median_rounds_per_s=%.1f\n", p.windows,
	       p.per_sec[p.windows / 2]);
	free(p.buf);
	return 0;
}


int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2)
		return usage();
	const char *c = argv[1];
	if (!strcmp(c, "workers"))
		return cmd_workers();
	if (!strcmp(c, "busy") && argc >= 3)
		return cmd_busy(atof(argv[2]), argc >= 4 ? (unsigned)atoi(argv[3]) : 4);
	if (!strcmp(c, "spin") && argc >= 5)
		return cmd_spin(atof(argv[2]), (unsigned)atoi(argv[3]), atof(argv[4]),
				argc >= 6 ? (unsigned)atoi(argv[5]) : (unsigned)atoi(argv[3]));
	if (!strcmp(c, "numa") && argc >= 3)
		return cmd_numa(atof(argv[2]));
	if (!strcmp(c, "hog") && argc >= 4)
		return cmd_hog(atof(argv[2]), atof(argv[3]));
	if (!strcmp(c, "affinity") && argc >= 4)
		return cmd_affinity(atof(argv[2]), argc - 3, argv + 3);
	if (!strcmp(c, "full"))
		return cmd_full();
	if (!strcmp(c, "hold") && argc >= 4)
		return cmd_hold(atof(argv[2]), (unsigned)atoi(argv[3]));
	if (!strcmp(c, "registered") && argc >= 4)
		return cmd_registered((pid_t)atoi(argv[2]), atoi(argv[3]));
	if (!strcmp(c, "reg") && argc >= 3)
		return cmd_reg(argc - 2, argv + 2);
	if (!strcmp(c, "intrude") && argc >= 4)
		return cmd_intrude((pid_t)atoi(argv[2]), (pid_t)atoi(argv[3]));
	if (!strcmp(c, "execreg"))
		return cmd_execreg();
	if (!strcmp(c, "execprobe") && argc >= 4)
		return cmd_execprobe(atoi(argv[2]), strtoul(argv[3], NULL, 10));
	if (!strcmp(c, "wake") && argc >= 3)
		return cmd_wake(atoi(argv[2]));
	if (!strcmp(c, "pfor") && argc >= 3)
		return cmd_pfor(atof(argv[2]));
	return usage();
}
