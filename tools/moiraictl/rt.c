/*
 * rt.c - the runtimes' own counters (<moirai/stats.h>), on any kernel.
 *
 * Every runtime exports an array of struct mr_worker_stats (one record per
 * worker, then one for threads outside it) as a pinned BPF array map
 * /sys/fs/bpf/moirai/<pid>/rt<id> or a file /dev/shm/moirai-stats.<pid>.<id>
 * (the library's user/metrics/export.c). We find both kinds by listing
 * those directories, read each map with one lookup per record (opened
 * read-only, so we need no more than read permission on the pin) and each
 * file with one pread, and keep the records whose version and size we
 * know. The owner writes a counter with a plain store while we read: each
 * 8-byte field is whole, two fields are not of one instant.
 *
 * An export whose process is gone (it was killed, or died without exit())
 * is reported as stale; `moiraictl clean` removes those.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "moiraictl.h"

#define STATS_SHM_DIR "/dev/shm"
#define STATS_SHM_PREFIX "moirai-stats."
#define STATS_PIN_DIR MOIRAI_PIN_DIR

static bool all_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

/* Keep only records we can read: our version, our size, a sane count. */
static int check_recs(struct mc_rt *rt)
{
	const struct mr_worker_stats *r = rt->recs;

	if (rt->nrecs < 2 || r[0].version != MR_STATS_VERSION || r[0].size != sizeof(*r) ||
	    r[0].nworkers + 1 != rt->nrecs)
		return -EPROTO;
	return 0;
}

static int add_rt(struct mc_rts *rts, struct mc_rt *rt)
{
	if (rts->n == rts->cap) {
		size_t cap = rts->cap ? 2 * rts->cap : 8;
		struct mc_rt *p = realloc(rts->rt, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		rts->rt = p;
		rts->cap = cap;
	}
	rts->rt[rts->n++] = *rt;
	return 0;
}

/*
 * Anyone may create a file in /dev/shm (or, on a bpffs mounted 1777, a pin
 * under /sys/fs/bpf/moirai): an export counts as its process's only if the
 * file's owner is that process's owner (the effective uid that created it),
 * and as alive only if worker 0's thread is there too (a reused pid).
 */
static void finish(struct mc_rt *rt, uid_t owner)
{
	char path[64], comm[32] = "";
	struct stat sb;

	rt->alive = mc_pid_alive(rt->pid);
	rt->bad = check_recs(rt);
	snprintf(path, sizeof(path), "/proc/%d", (int)rt->pid);
	if (rt->alive && stat(path, &sb) == 0 && sb.st_uid != owner) {
		rt->bad = -EPERM; /* not made by that process */
		rt->alive = false;
	}
	/* A pid reused by another process: worker 0's thread is not there. */
	if (rt->alive && !rt->bad && rt->recs[0].tid > 0) {
		snprintf(path, sizeof(path), "/proc/%d/task/%d", (int)rt->pid, rt->recs[0].tid);
		rt->alive = stat(path, &sb) == 0;
	}
	if (!rt->alive)
		return;
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)rt->pid);
	if (mc_read_line(path, comm, sizeof(comm)) >= 0)
		snprintf(rt->comm, sizeof(rt->comm), "%s", comm);
}

/* A pinned map: one lookup per record. */
static int read_pin(struct mc_rts *rts, pid_t pid, unsigned id, const char *path)
{
	LIBBPF_OPTS(bpf_obj_get_opts, opts, .file_flags = BPF_F_RDONLY);
	struct bpf_map_info info;
	__u32 len = sizeof(info);
	struct mc_rt rt = { .pid = pid, .id = id };
	int fd = bpf_obj_get_opts(path, &opts), err = 0;

	if (fd < 0)
		return -errno;
	memset(&info, 0, sizeof(info));
	if (bpf_map_get_info_by_fd(fd, &info, &len) < 0) {
		err = -errno;
		goto out;
	}
	if (info.key_size != 4 || info.value_size != sizeof(struct mr_worker_stats) ||
	    info.max_entries < 2 || info.max_entries > 65536) {
		err = -EPROTO;
		goto out;
	}
	rt.recs = calloc(info.max_entries, sizeof(*rt.recs));
	if (!rt.recs) {
		err = -ENOMEM;
		goto out;
	}
	rt.nrecs = info.max_entries;
	for (__u32 k = 0; k < info.max_entries; k++)
		if (bpf_map_lookup_elem(fd, &k, &rt.recs[k]) < 0) {
			err = -errno;
			free(rt.recs);
			goto out;
		}
	snprintf(rt.path, sizeof(rt.path), "%s", path);
	rt.bpf = true;
	struct stat sb;
	finish(&rt, stat(path, &sb) == 0 ? sb.st_uid : (uid_t)-1);
	if ((err = add_rt(rts, &rt)) < 0)
		free(rt.recs);
out:
	close(fd);
	return err;
}

/* A file in /dev/shm: one read of the whole. */
static int read_shm(struct mc_rts *rts, pid_t pid, unsigned id, const char *path)
{
	struct mc_rt rt = { .pid = pid, .id = id };
	struct stat sb;
	/* O_NONBLOCK: a FIFO planted under that name must not hang us. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK), err = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		err = -EINVAL;
		goto out;
	}
	size_t n = (size_t)sb.st_size / sizeof(struct mr_worker_stats);
	if (n > 65536)
		n = 65536;
	rt.recs = calloc(n ? n : 1, sizeof(*rt.recs));
	if (!rt.recs) {
		err = -ENOMEM;
		goto out;
	}
	ssize_t got = pread(fd, rt.recs, n * sizeof(*rt.recs), 0);
	if (got < 0) {
		err = -errno;
		free(rt.recs);
		goto out;
	}
	/* The file is page-rounded: the records are what record 0 says. */
	rt.nrecs = (size_t)got / sizeof(*rt.recs);
	if (rt.nrecs && rt.recs[0].nworkers + 1 <= rt.nrecs)
		rt.nrecs = rt.recs[0].nworkers + 1;
	snprintf(rt.path, sizeof(rt.path), "%s", path);
	finish(&rt, sb.st_uid);
	if ((err = add_rt(rts, &rt)) < 0)
		free(rt.recs);
out:
	close(fd);
	return err;
}

static void scan_pins(struct mc_rts *rts)
{
	DIR *d = opendir(STATS_PIN_DIR);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (!all_digits(e->d_name))
			continue;
		char dir[300];
		snprintf(dir, sizeof(dir), STATS_PIN_DIR "/%s", e->d_name);
		DIR *pd = opendir(dir);
		struct dirent *f;
		if (!pd)
			continue;
		while ((f = readdir(pd))) {
			char path[600];
			if (strncmp(f->d_name, "rt", 2) || !all_digits(f->d_name + 2))
				continue;
			snprintf(path, sizeof(path), "%s/%s", dir, f->d_name);
			int r = read_pin(rts, (pid_t)atoi(e->d_name),
					 (unsigned)strtoul(f->d_name + 2, NULL, 10), path);
			if (r < 0 && !rts->err)
				rts->err = r;
		}
		closedir(pd);
	}
	closedir(d);
}

static void scan_shm(struct mc_rts *rts)
{
	DIR *d = opendir(STATS_SHM_DIR);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		const char *p = e->d_name;
		char pidbuf[16], path[300];
		const char *dot;

		if (strncmp(p, STATS_SHM_PREFIX, strlen(STATS_SHM_PREFIX)))
			continue;
		p += strlen(STATS_SHM_PREFIX);
		dot = strchr(p, '.');
		if (!dot || (size_t)(dot - p) >= sizeof(pidbuf))
			continue;
		memcpy(pidbuf, p, (size_t)(dot - p));
		pidbuf[dot - p] = 0;
		if (!all_digits(pidbuf) || !all_digits(dot + 1))
			continue;
		snprintf(path, sizeof(path), STATS_SHM_DIR "/%s", e->d_name);
		int r = read_shm(rts, (pid_t)atoi(pidbuf), (unsigned)strtoul(dot + 1, NULL, 10),
				 path);
		if (r < 0 && r != -EACCES && !rts->err)
			rts->err = r;
	}
	closedir(d);
}

static int cmp_rt(const void *a, const void *b)
{
	const struct mc_rt *x = a, *y = b;

	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

int mc_rts_read(struct mc_rts *rts)
{
	struct timespec ts;

	memset(rts, 0, sizeof(*rts));
	clock_gettime(CLOCK_MONOTONIC, &ts);
	rts->now_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	scan_pins(rts);
	scan_shm(rts);
	if (rts->n > 1)
		qsort(rts->rt, rts->n, sizeof(*rts->rt), cmp_rt);
	return rts->err == -ENOMEM ? -ENOMEM : 0;
}

void mc_rts_free(struct mc_rts *rts)
{
	for (size_t i = 0; i < rts->n; i++)
		free(rts->rt[i].recs);
	free(rts->rt);
	memset(rts, 0, sizeof(*rts));
}

static const struct mc_rt *find_rt(const struct mc_rts *rts, pid_t pid, unsigned id)
{
	if (!rts)
		return NULL;
	for (size_t i = 0; i < rts->n; i++)
		if (rts->rt[i].pid == pid && rts->rt[i].id == id)
			return &rts->rt[i];
	return NULL;
}

const char *mc_wstate_name(uint32_t s)
{
	static const char *names[] = { "starting", "running", "searching",
				       "parked",   "blocked", "exited" };
	return s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

/* Time the worker ran (was not asleep) up to now_ns. */
static uint64_t busy_ns(const struct mr_worker_stats *w, uint64_t now_ns)
{
	uint64_t parked = w->park_ns;

	if (!w->start_ns || now_ns < w->start_ns)
		return 0;
	if (w->parked_since_ns && w->parked_since_ns < now_ns)
		parked += now_ns - w->parked_since_ns;
	uint64_t up = now_ns - w->start_ns;
	return parked < up ? up - parked : 0;
}

static double rate(uint64_t cur, uint64_t prev, double dt)
{
	return dt > 0 && cur >= prev ? (double)(cur - prev) / dt : 0;
}

void mc_rts_print(FILE *f, const struct mc_rts *rts, const struct mc_rts *prev)
{
	double dt = prev ? (double)(rts->now_ns - prev->now_ns) / 1e9 : 0;

	if (!rts->n) {
		fprintf(f, "runtimes: none exported (" STATS_PIN_DIR "/<pid>/rt<id> or "
			   STATS_SHM_DIR "/" STATS_SHM_PREFIX "<pid>.<id>)\n");
		return;
	}
	fprintf(f, "runtimes: %zu%s\n", rts->n, prev ? " (rates per second)" : "");
	for (size_t i = 0; i < rts->n; i++) {
		const struct mc_rt *rt = &rts->rt[i];
		const struct mc_rt *p = find_rt(prev, rt->pid, rt->id);
		const struct mr_worker_stats *o;

		fprintf(f, "  pid %d (%s) runtime %u: %s%s\n", (int)rt->pid,
			rt->comm[0] ? rt->comm : "?", rt->id, rt->path,
			!rt->alive && rt->bad != -EPERM ? "  STALE: process gone (moiraictl clean)" :
							   "");
		if (rt->bad == -EPERM) {
			fprintf(f, "    ignored: the file's owner is not the process's\n");
			continue;
		}
		if (rt->bad) {
			fprintf(f, "    unreadable: %s (another version of Moirai?)\n",
				strerror(-rt->bad));
			continue;
		}
		o = &rt->recs[rt->nrecs - 1];
		uint64_t live, parked, woken, spawned = 0, exits = 0, parks = 0, readies = 0;
		for (size_t k = 0; k < rt->nrecs; k++) {
			spawned += rt->recs[k].fibers_spawned;
			exits += rt->recs[k].fiber_exits;
			parks += rt->recs[k].fiber_parks;
			readies += rt->recs[k].fiber_readies;
		}
		/* Live views (stats.h): two counters are not read at one instant. */
		live = spawned >= exits ? spawned - exits : 0;
		woken = readies > spawned ? readies - spawned : 0;
		parked = parks > woken ? parks - woken : 0;
		if (parked > live)
			parked = live;
		fprintf(f, "    %u workers; fibers: %llu live, %llu parked, %llu runnable or running; "
			   "from outside: %llu fibers spawned, %llu wake-ups\n",
			o->nworkers, (unsigned long long)live, (unsigned long long)parked,
			(unsigned long long)(live - parked),
			(unsigned long long)o->fibers_spawned, (unsigned long long)o->wakeups_sent);
		if (p)
			fprintf(f, "    %3s %7s %-9s %5s %9s %8s %8s %8s %8s %8s %8s %8s %8s\n", "w",
				"tid", "state", "busy%", "jobs/s", "stolen/s", "steals/s", "parks/s",
				"fibers/s", "chblk/s", "timers/s", "io/s", "rescue/s");
		else
			fprintf(f, "    %3s %7s %-9s %5s %10s %9s %9s %9s %10s %9s %9s %9s %10s\n",
				"w", "tid", "state", "busy%", "jobs", "stolen", "stolen_by", "parks",
				"fiber_runs", "chan_blk", "timers", "io_done", "io_rescued");
		for (size_t k = 0; k + 1 < rt->nrecs; k++) {
			const struct mr_worker_stats *w = &rt->recs[k];
			uint64_t up = w->start_ns && rts->now_ns > w->start_ns ?
					      rts->now_ns - w->start_ns :
					      0;
			double busy = up ? 100.0 * (double)busy_ns(w, rts->now_ns) / (double)up : 0;
			const struct mr_worker_stats *pw =
				p && k + 1 < p->nrecs && !p->bad ? &p->recs[k] : NULL;

			if (pw) {
				uint64_t b1 = busy_ns(w, rts->now_ns), b0 = busy_ns(pw, prev->now_ns);
				busy = dt > 0 && b1 >= b0 ? 100.0 * (double)(b1 - b0) / (dt * 1e9) : 0;
				if (busy > 100)
					busy = 100;
				fprintf(f,
					"    %3zu %7d %-9s %5.1f %9.0f %8.0f %8.0f %8.0f %8.0f %8.0f "
					"%8.0f %8.0f %8.0f\n",
					k, (int)w->tid, mc_wstate_name(w->state), busy,
					rate(w->jobs_run, pw->jobs_run, dt),
					rate(w->jobs_stolen, pw->jobs_stolen, dt),
					rate(w->steal_attempts, pw->steal_attempts, dt),
					rate(w->parks, pw->parks, dt),
					rate(w->fiber_runs, pw->fiber_runs, dt),
					rate(w->chan_blocks, pw->chan_blocks, dt),
					rate(w->timer_fires, pw->timer_fires, dt),
					rate(w->io_completed, pw->io_completed, dt),
					rate(w->io_rescued, pw->io_rescued, dt));
			} else {
				fprintf(f,
					"    %3zu %7d %-9s %5.1f %10llu %9llu %9llu %9llu %10llu %9llu "
					"%9llu %9llu %10llu\n",
					k, (int)w->tid, mc_wstate_name(w->state), busy,
					(unsigned long long)w->jobs_run,
					(unsigned long long)w->jobs_stolen,
					(unsigned long long)w->jobs_stolen_from,
					(unsigned long long)w->parks,
					(unsigned long long)w->fiber_runs,
					(unsigned long long)w->chan_blocks,
					(unsigned long long)w->timer_fires,
					(unsigned long long)w->io_completed,
					(unsigned long long)w->io_rescued);
			}
		}
	}
}

static void json_rec(struct mc_json *j, const struct mr_worker_stats *w, uint64_t now_ns)
{
	mc_json_obj(j, NULL);
	mc_json_u64(j, "worker", w->worker);
	mc_json_s64(j, "tid", w->tid);
	mc_json_str(j, "state", mc_wstate_name(w->state));
	mc_json_u64(j, "start_ns", w->start_ns);
	mc_json_u64(j, "parked_since_ns", w->parked_since_ns);
	mc_json_u64(j, "busy_ns", busy_ns(w, now_ns));
#define U(name) mc_json_u64(j, #name, w->name)
	U(jobs_run);
	U(jobs_stolen);
	U(jobs_stolen_from);
	U(steal_attempts);
	U(injector_pops);
	U(parks);
	U(park_ns);
	U(wakeups_sent);
	U(wakeups_received);
	U(fibers_spawned);
	U(fiber_exits);
	U(fiber_runs);
	U(fiber_parks);
	U(fiber_wakeups);
	U(fiber_readies);
	U(chan_blocks);
	U(timer_fires);
	U(io_submitted);
	U(io_completed);
	U(io_cancelled);
	U(io_rescued);
	mc_json_str(j, "io_backend", w->io_backend == MR_IO_BACKEND_URING ? "io_uring" :
				     w->io_backend == MR_IO_BACKEND_EPOLL ? "epoll" : "none");
#undef U
	mc_json_end_obj(j);
}

void mc_rts_json(struct mc_json *j, const struct mc_rts *rts)
{
	mc_json_u64(j, "now_ns", rts->now_ns);
	mc_json_arr(j, "runtimes");
	for (size_t i = 0; i < rts->n; i++) {
		const struct mc_rt *rt = &rts->rt[i];

		mc_json_obj(j, NULL);
		mc_json_s64(j, "pid", rt->pid);
		mc_json_str(j, "comm", rt->comm);
		mc_json_u64(j, "runtime", rt->id);
		mc_json_str(j, "export", rt->bpf ? "bpf" : "shm");
		mc_json_str(j, "path", rt->path);
		mc_json_bool(j, "alive", rt->alive);
		if (rt->bad) {
			mc_json_str(j, "error", strerror(-rt->bad));
			mc_json_end_obj(j);
			continue;
		}
		mc_json_null(j, "error");
		mc_json_u64(j, "nworkers", rt->recs[0].nworkers);
		mc_json_arr(j, "workers");
		for (size_t k = 0; k + 1 < rt->nrecs; k++)
			json_rec(j, &rt->recs[k], rts->now_ns);
		mc_json_end_arr(j);
		mc_json_obj(j, "outside");
		mc_json_u64(j, "fibers_spawned", rt->recs[rt->nrecs - 1].fibers_spawned);
		mc_json_u64(j, "wakeups_sent", rt->recs[rt->nrecs - 1].wakeups_sent);
		mc_json_end_obj(j);
		mc_json_end_obj(j);
	}
	mc_json_end_arr(j);
}

int cmd_clean(void)
{
	struct mc_rts rts;
	unsigned removed = 0, failed = 0;

	if (mc_rts_read(&rts) < 0) {
		fprintf(stderr, "moiraictl: out of memory\n");
		return MC_EXIT_FAIL;
	}
	for (size_t i = 0; i < rts.n; i++) {
		const struct mc_rt *rt = &rts.rt[i];
		if (rt->alive || rt->bad == -EPERM)
			continue; /* live, or not ours to judge (another user's name) */
		if (rt->bpf) {
			/* Its directory must be a real one: a planted link would
			 * make us unlink a live process's pin. */
			char dir[640];
			struct stat sb;
			snprintf(dir, sizeof(dir), "%s", rt->path);
			char *slash = strrchr(dir, '/');
			if (slash)
				*slash = 0;
			if (!slash || lstat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
				failed++;
				fprintf(stderr, "moiraictl: %s: not in a real directory, left alone\n",
					rt->path);
				continue;
			}
		}
		if (unlink(rt->path) == 0) {
			removed++;
			printf("removed %s (pid %d is gone)\n", rt->path, (int)rt->pid);
			if (rt->bpf) {
				char dir[640];
				snprintf(dir, sizeof(dir), "%s", rt->path);
				char *slash = strrchr(dir, '/');
				if (slash) {
					*slash = 0;
					rmdir(dir);
				}
			}
		} else {
			failed++;
			fprintf(stderr, "moiraictl: %s: %s\n", rt->path, strerror(errno));
		}
	}
	mc_rts_free(&rts);
	/* Pin directories of dead processes left empty (rmdir takes only
	 * an empty, real directory). */
	DIR *d = opendir(STATS_PIN_DIR);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char dir[300];
		if (!all_digits(e->d_name) || mc_pid_alive((pid_t)atoi(e->d_name)))
			continue;
		snprintf(dir, sizeof(dir), STATS_PIN_DIR "/%s", e->d_name);
		if (rmdir(dir) == 0) {
			removed++;
			printf("removed %s (pid %s is gone)\n", dir, e->d_name);
		}
	}
	if (d)
		closedir(d);
	if (!removed && !failed)
		printf("nothing to clean\n");
	return failed ? MC_EXIT_FAIL : MC_EXIT_OK;
}

/* ---- moiraictl dump -p PID: the fiber dump of a live process ---------------- */

/* NAME's value in PID's initial environment, into out; false if unset. */
static bool env_of(pid_t pid, const char *name, char *out, size_t size)
{
	char path[64], *buf;
	size_t len = strlen(name), cap = 1 << 20, n = 0;
	int fd;
	bool found = false;

	snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || !(buf = malloc(cap + 1))) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	for (ssize_t r; n < cap && (r = read(fd, buf + n, cap - n)) > 0;)
		n += (size_t)r;
	close(fd);
	buf[n] = 0;
	for (size_t i = 0; i < n; i += strlen(buf + i) + 1)
		if (!strncmp(buf + i, name, len) && buf[i + len] == '=') {
			snprintf(out, size, "%s", buf + i + len + 1);
			found = true;
			break;
		}
	free(buf);
	return found;
}

/* A signal by name (QUIT, SIGQUIT) or number, as the library reads it. */
static int signal_number(const char *s)
{
	static const struct {
		const char *name;
		int sig;
	} names[] = { { "QUIT", SIGQUIT }, { "USR1", SIGUSR1 }, { "USR2", SIGUSR2 },
		      { "HUP", SIGHUP },   { "INT", SIGINT },	{ "TERM", SIGTERM },
		      { "WINCH", SIGWINCH }, { "PWR", SIGPWR } };
	char *end;
	long n = strtol(s, &end, 10);

	if (*s && !*end)
		return n > 0 && n < 65 ? (int)n : -1;
	if (!strncmp(s, "SIG", 3))
		s += 3;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(s, names[i].name))
			return names[i].sig;
	return -1;
}

/* Does pid catch sig (SigCgt in /proc/PID/status)? */
static bool catches(pid_t pid, int sig)
{
	char path[64], line[256];
	bool yes = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (!(f = fopen(path, "r")))
		return false;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "SigCgt:", 7)) {
			unsigned long long mask = strtoull(line + 7, NULL, 16);
			yes = (mask >> (sig - 1)) & 1;
			break;
		}
	fclose(f);
	return yes;
}

int cmd_dump_pid(pid_t pid)
{
	char sigs[32], file[PATH_MAX];
	struct stat sb;
	off_t before = 0;
	int sig;

	if (!mc_pid_alive(pid)) {
		fprintf(stderr, "moiraictl: dump: no process %d\n", (int)pid);
		return MC_EXIT_FAIL;
	}
	if (!env_of(pid, "MOIRAI_DUMP_SIGNAL", sigs, sizeof(sigs))) {
		fprintf(stderr,
			"moiraictl: dump: process %d was not started with MOIRAI_DUMP_SIGNAL "
			"(e.g. MOIRAI_DUMP_SIGNAL=SIGQUIT): it would not dump, and the signal "
			"could kill it\n",
			(int)pid);
		return MC_EXIT_FAIL;
	}
	if ((sig = signal_number(sigs)) < 0) {
		fprintf(stderr, "moiraictl: dump: MOIRAI_DUMP_SIGNAL=%s names no signal\n", sigs);
		return MC_EXIT_FAIL;
	}
	if (!catches(pid, sig)) {
		fprintf(stderr,
			"moiraictl: dump: process %d does not catch signal %d yet (the runtime "
			"installs its handler at the first fiber it spawns)\n",
			(int)pid, sig);
		return MC_EXIT_FAIL;
	}
	bool to_file = env_of(pid, "MOIRAI_DUMP_FILE", file, sizeof(file)) && file[0];
	if (to_file) {
		char path[64];
		/* A relative name is relative to the process's directory. */
		if (file[0] != '/') {
			char rel[PATH_MAX];
			memcpy(rel, file, sizeof(rel));
			int k = snprintf(path, sizeof(path), "/proc/%d/cwd/", (int)pid);
			memcpy(file, path, (size_t)k);
			snprintf(file + k, sizeof(file) - (size_t)k, "%.*s",
				 (int)(sizeof(file) - (size_t)k - 1), rel);
		}
		if (stat(file, &sb) == 0)
			before = sb.st_size;
	}
	if (kill(pid, sig) < 0) {
		fprintf(stderr, "moiraictl: dump: kill %d: %s\n", (int)pid, strerror(errno));
		return MC_EXIT_FAIL;
	}
	if (!to_file) {
		printf("moiraictl: asked process %d for its dump: it writes it to its stderr "
		       "(MOIRAI_DUMP_FILE=PATH would let moiraictl print it)\n",
		       (int)pid);
		return MC_EXIT_OK;
	}
	/* Wait (5 s at most) until the file has grown and stopped growing. */
	off_t last = before;
	int still = 0;
	for (int i = 0; i < 100 && still < 3; i++) {
		usleep(50000);
		off_t now = stat(file, &sb) == 0 ? sb.st_size : before;
		still = now > before && now == last ? still + 1 : 0;
		last = now;
	}
	if (last <= before) {
		fprintf(stderr, "moiraictl: dump: nothing appeared in %s\n", file);
		return MC_EXIT_FAIL;
	}
	int fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		fprintf(stderr, "moiraictl: dump: %s: cannot read it\n", file);
		if (fd >= 0)
			close(fd);
		return MC_EXIT_FAIL;
	}
	char buf[65536];
	ssize_t r;
	off_t at = before;
	while ((r = pread(fd, buf, sizeof(buf), at)) > 0) {
		fwrite(buf, 1, (size_t)r, stdout);
		at += r;
	}
	close(fd);
	return MC_EXIT_OK;
}
