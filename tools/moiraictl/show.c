/*
 * show.c - `moiraictl status`, `dump` and `top`: snapshots, printed.
 *
 * status and dump print one snapshot (snap.c), as text or JSON. top prints
 * one every second with rates: each counter's difference from the previous
 * snapshot over the time between them. A scheduler reloaded between two
 * snapshots starts its counters at zero again; a counter that went down is
 * taken as restarted and its whole value counts as the difference.
 *
 * On a terminal, top draws each frame into a memory buffer and writes it at
 * once after a clear (no flicker), cut to the window's height. The terminal
 * is put in non-canonical mode without echo so that q works without Enter;
 * its settings are restored on every way out: q, Ctrl-C (SIGINT, which stays
 * enabled: it is read from a signalfd like SIGTERM, SIGHUP and SIGQUIT, so
 * no handler runs and the loop ends normally), an error, or the end of
 * --iterations. When stdout is not a terminal, top prints a plain snapshot
 * each second with no escape codes, for logs and tests.
 *
 * The latency line gives p50 and p99 estimated from the scheduler's log2
 * histogram (snap.c: linear inside a bucket, so within a factor of two);
 * "1s" are the wake-ups of the last interval, "all" those since the load.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "moiraictl.h"

static const char *state_str(const struct mc_snap *s)
{
	return s->scx.supported ? s->scx.state : "not supported";
}

static void proc_comm(__u32 pid, char *buf, size_t size)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%u/comm", pid);
	if (mc_read_line(path, buf, size) < 0)
		buf[0] = '\0';
}

static const char *map_err_str(const struct mc_snap *s)
{
	static char buf[160];

	if (s->map_err == -EPROTO)
		snprintf(buf, sizeof(buf),
			 "the pinned map %s has another layout than this moiraictl expects "
			 "(made by another version)",
			 s->map_err_name);
	else
		snprintf(buf, sizeof(buf), "cannot read the pinned map %s: %s%s", s->map_err_name,
			 strerror(-s->map_err),
			 s->map_err == -EACCES || s->map_err == -EPERM ? " (run as root)" : "");
	return buf;
}

/* Counter difference; a counter that went down was restarted by a reload. */
static __u64 delta(__u64 cur, __u64 prev)
{
	return cur >= prev ? cur - prev : cur;
}

static void fmt_ns(char *buf, size_t size, double ns)
{
	if (ns < 1000)
		snprintf(buf, size, "%.0fns", ns);
	else if (ns < 1e6)
		snprintf(buf, size, "%.*fus", ns < 1e4 ? 1 : 0, ns / 1e3);
	else if (ns < 1e9)
		snprintf(buf, size, "%.*fms", ns < 1e7 ? 1 : 0, ns / 1e6);
	else
		snprintf(buf, size, "%.1fs", ns / 1e9);
}

/* The scheduler and loader lines that status, dump and top share. */
static void print_header(FILE *f, const struct mc_snap *s)
{
	const struct mc_scx *scx = &s->scx;

	if (!scx->supported) {
		fprintf(f, "sched_ext: not supported by this kernel (no CONFIG_SCHED_CLASS_EXT)\n");
	} else {
		fprintf(f, "sched_ext: %s\n", scx->state);
		if (scx->ops[0])
			fprintf(f, "scheduler: %s (%s)\n", scx->ops,
				mc_scx_is_moirai(scx) ? "moirai" : "not moirai");
		else
			fprintf(f, "scheduler: none\n");
		if (scx->enable_seq >= 0)
			fprintf(f, "enable_seq: %lld\n", scx->enable_seq);
	}
	if (s->loader.pid) {
		fprintf(f, "loader: moiraictl pid %d", (int)s->loader.pid);
		if (s->loader.mode[0])
			fprintf(f, ", %s switch", s->loader.mode);
		if (s->loader.slice_us)
			fprintf(f, ", slice %lu us", s->loader.slice_us);
		fputc('\n', f);
	} else {
		fprintf(f, "loader: none\n");
	}
}

struct prev_upd {
	__u32 tid;
	__u64 updates;
};

static int cmp_prev(const void *a, const void *b)
{
	const struct prev_upd *x = a, *y = b;

	return x->tid < y->tid ? -1 : x->tid > y->tid;
}

/*
 * The workers grouped by runtime. With prev (top), a column of state
 * updates per second.
 */
static void print_workers(FILE *f, const struct mc_snap *s, const struct mc_snap *prev)
{
	struct prev_upd *pu = NULL;
	double dt = prev ? s->when - prev->when : 0;
	unsigned int i, j, nrt = 0;

	if (!s->pinned) {
		fprintf(f, "no Moirai maps pinned (no scheduler loaded since boot)\n");
		return;
	}
	if (s->map_err)
		fprintf(f, "%s\n", map_err_str(s));
	if (!s->workers_ok)
		return;
	for (i = 0; i < s->nr_workers; i++)
		if (!i || s->workers[i].w.pid != s->workers[i - 1].w.pid ||
		    s->workers[i].w.rt_id != s->workers[i - 1].w.rt_id)
			nrt++;
	fprintf(f, "workers: %u registered in %u runtime%s\n", s->nr_workers, nrt,
		nrt == 1 ? "" : "s");
	if (prev && prev->nr_workers) {
		pu = malloc(prev->nr_workers * sizeof(*pu));
		for (i = 0; pu && i < prev->nr_workers; i++) {
			pu[i].tid = prev->workers[i].tid;
			pu[i].updates = prev->workers[i].have_load ? prev->workers[i].load.updates : 0;
		}
		if (pu)
			qsort(pu, prev->nr_workers, sizeof(*pu), cmp_prev);
	}
	for (i = 0; i < s->nr_workers; i = j) {
		const struct mc_worker *w0 = &s->workers[i];
		unsigned int stale = 0;
		char comm[32];

		for (j = i; j < s->nr_workers && s->workers[j].w.pid == w0->w.pid &&
			    s->workers[j].w.rt_id == w0->w.rt_id;
		     j++)
			stale += s->workers[j].stale;
		proc_comm(w0->w.pid, comm, sizeof(comm));
		fprintf(f, "runtime pid %u rt %u: %u worker%s", w0->w.pid, w0->w.rt_id, j - i,
			j - i == 1 ? "" : "s");
		if (comm[0])
			fprintf(f, " (%s)", comm);
		else
			fprintf(f, " (process gone)");
		if (stale)
			fprintf(f, ", %u stale", stale);
		fputc('\n', f);
		fprintf(f, "  %8s %5s %5s %-10s %6s %5s%s\n", "TID", "INDEX", "NODE", "STATE",
			"DEPTH", "CPU", prev ? "   UPD/s" : "");
		for (; i < j; i++) {
			const struct mc_worker *w = &s->workers[i];
			char cpu[16] = "-", depth[16] = "-";

			if (w->cpu >= 0)
				snprintf(cpu, sizeof(cpu), "%d", w->cpu);
			if (w->have_load)
				snprintf(depth, sizeof(depth), "%u", w->load.depth);
			fprintf(f, "  %8u %5u %5d %-10s %6s %5s", w->tid, w->w.index, w->w.node,
				w->have_load ? mc_worker_state_name(w->load.state) : "unpublished",
				depth, cpu);
			if (prev) {
				struct prev_upd key = { .tid = w->tid }, *p = NULL;

				if (pu)
					p = bsearch(&key, pu, prev->nr_workers, sizeof(*pu), cmp_prev);
				if (p && w->have_load && dt > 0)
					fprintf(f, " %8.0f", delta(w->load.updates, p->updates) / dt);
				else
					fprintf(f, " %8s", "-");
			}
			if (w->have_load && w->load.preempted)
				fprintf(f, "  preempted");
			if (w->stale)
				fprintf(f, "  stale");
			fputc('\n', f);
		}
	}
	free(pu);
}

static void print_exit(FILE *f, const struct mc_snap *s)
{
	if (!s->have_exit || !s->exit.kind)
		return;
	mc_exit_print(f, "last load", &s->exit);
}

/* Per-second rates with prev, totals without. */
static void print_stats(FILE *f, const struct mc_snap *s, const struct mc_snap *prev)
{
	double dt = prev ? s->when - prev->when : 0;
	const char *unit = prev ? "/s" : "";
	unsigned int i;

#define RATE(field, cur, old)                                                                 \
	(prev ? (dt > 0 ? delta((cur).field, (old).field) / dt : 0.0) : (double)(cur).field)

	if (s->cpu) {
		static const struct moirai_cpu_stats zero_cpu;

		fprintf(f, "%5s %10s%s %10s%s %10s%s %10s%s %10s%s %10s%s %10s%s %10s%s\n", "CPU",
			"LOCAL", unit, "REMOTE", unit, "DIRECT", unit, "WRUNS", unit, "ORUNS", unit,
			"KICKS", unit, "PKICKS", unit, "WAKEPRE", unit);
		for (i = 0; i < s->nr_cpu; i++) {
			const struct moirai_cpu_stats *c = &s->cpu[i];
			const struct moirai_cpu_stats *o =
				prev && prev->cpu && i < prev->nr_cpu ? &prev->cpu[i] : &zero_cpu;
			int w = prev ? 12 : 10;

			fprintf(f, "%5u %*.0f %*.0f %*.0f %*.0f %*.0f %*.0f %*.0f %*.0f\n", i, w,
				RATE(dispatch_local, *c, *o), w, RATE(dispatch_remote, *c, *o), w,
				RATE(direct, *c, *o), w, RATE(worker_runs, *c, *o), w,
				RATE(other_runs, *c, *o), w, RATE(kicks, *c, *o), w,
				RATE(preempt_kicks, *c, *o), w, RATE(wake_preempts, *c, *o));
		}
	}
	if (s->node) {
		static const struct moirai_node_stats zero_node;

		fprintf(f, "%5s %5s %10s%s %7s %7s %10s%s %10s%s %9s\n", "NODE", "CPUS", "DISP", unit,
			"HOME%", "REMOTE%", "MIGR", unit, "PULLS", unit, "RUNNABLE");
		for (i = 0; i < s->nr_node; i++) {
			const struct moirai_node_stats *n = &s->node[i];
			const struct moirai_node_stats *o =
				prev && prev->node && i < prev->nr_node ? &prev->node[i] : &zero_node;
			__u64 home = prev ? delta(n->worker_home_ns, o->worker_home_ns) :
					    n->worker_home_ns;
			__u64 remote = prev ? delta(n->worker_remote_ns, o->worker_remote_ns) :
					      n->worker_remote_ns;
			int w = prev ? 12 : 10;
			char hp[16] = "-", rp[16] = "-";

			if (home + remote) {
				snprintf(hp, sizeof(hp), "%.1f", 100.0 * home / (home + remote));
				snprintf(rp, sizeof(rp), "%.1f", 100.0 * remote / (home + remote));
			}
			fprintf(f, "%5u %5llu %*.0f %7s %7s %*.0f %*.0f %9lld\n", i,
				(unsigned long long)n->cpus, w, RATE(dispatches, *n, *o), hp, rp, w,
				RATE(migrations, *n, *o), w, RATE(remote_pulls, *n, *o),
				(long long)n->runnable_workers);
		}
	}
	if (s->have_lat) {
		char p50[16], p99[16], mx[16];

		if (prev && prev->have_lat) {
			__u64 b[MOIRAI_LAT_BUCKETS], n = 0;
			bool reset = s->lat.count < prev->lat.count;

			for (i = 0; i < MOIRAI_LAT_BUCKETS; i++) {
				b[i] = reset ? s->lat.log2_ns[i] :
					       delta(s->lat.log2_ns[i], prev->lat.log2_ns[i]);
				n += b[i];
			}
			fmt_ns(p50, sizeof(p50), mc_lat_quantile(b, 0, 0.5));
			fmt_ns(p99, sizeof(p99), mc_lat_quantile(b, 0, 0.99));
			if (n)
				fprintf(f, "latency 1s: %llu wake-ups, p50 %s, p99 %s\n",
					(unsigned long long)n, p50, p99);
			else
				fprintf(f, "latency 1s: no wake-ups\n");
		}
		fmt_ns(p50, sizeof(p50), mc_lat_quantile(s->lat.log2_ns, s->lat.max_ns, 0.5));
		fmt_ns(p99, sizeof(p99), mc_lat_quantile(s->lat.log2_ns, s->lat.max_ns, 0.99));
		fmt_ns(mx, sizeof(mx), s->lat.max_ns);
		fprintf(f, "latency all: %llu wake-ups, p50 %s, p99 %s, max %s\n",
			(unsigned long long)s->lat.count, p50, p99, mx);
	}
#undef RATE
}

static void json_exit(struct mc_json *j, const char *key, const struct mc_snap *s)
{
	if (!s->have_exit) {
		mc_json_null(j, key);
		return;
	}
	mc_json_obj(j, key);
	mc_json_s64(j, "kind", s->exit.kind);
	mc_json_str(j, "kind_name", mc_exit_kind_name(s->exit.kind));
	mc_json_bool(j, "error", s->exit.kind >= 1024);
	mc_json_s64(j, "exit_code", s->exit.exit_code);
	mc_json_str(j, "reason", s->exit.reason);
	mc_json_str(j, "msg", s->exit.msg);
	mc_json_end_obj(j);
}

/* The members status --json and dump --json share. */
static void json_common(struct mc_json *j, const struct mc_snap *s)
{
	unsigned int i;

	mc_json_str(j, "state", state_str(s));
	if (s->scx.ops[0])
		mc_json_str(j, "ops", s->scx.ops);
	else
		mc_json_null(j, "ops");
	mc_json_bool(j, "moirai", mc_scx_is_moirai(&s->scx));
	if (s->loader.mode[0])
		mc_json_str(j, "mode", s->loader.mode);
	else
		mc_json_null(j, "mode");
	if (s->loader.pid) {
		mc_json_s64(j, "loader_pid", s->loader.pid);
		mc_json_u64(j, "slice_us", s->loader.slice_us);
	} else {
		mc_json_null(j, "loader_pid");
		mc_json_null(j, "slice_us");
	}
	if (s->scx.enable_seq >= 0)
		mc_json_s64(j, "enable_seq", s->scx.enable_seq);
	else
		mc_json_null(j, "enable_seq");
	mc_rts_json(j, &s->rts);
	mc_json_bool(j, "maps_pinned", s->pinned);
	if (s->map_err)
		mc_json_str(j, "map_error", map_err_str(s));
	else
		mc_json_null(j, "map_error");
	mc_json_arr(j, "workers");
	for (i = 0; i < s->nr_workers; i++) {
		const struct mc_worker *w = &s->workers[i];

		mc_json_obj(j, NULL);
		mc_json_u64(j, "tid", w->tid);
		mc_json_u64(j, "pid", w->w.pid);
		mc_json_u64(j, "rt", w->w.rt_id);
		mc_json_u64(j, "index", w->w.index);
		mc_json_s64(j, "node", w->w.node);
		mc_json_u64(j, "slot", w->w.slot);
		if (w->have_load) {
			mc_json_str(j, "state", mc_worker_state_name(w->load.state));
			mc_json_u64(j, "depth", w->load.depth);
			mc_json_u64(j, "updates", w->load.updates);
			mc_json_bool(j, "preempted", w->load.preempted != 0);
		} else {
			mc_json_str(j, "state", "unpublished");
			mc_json_null(j, "depth");
			mc_json_null(j, "updates");
			mc_json_null(j, "preempted");
		}
		if (w->cpu >= 0)
			mc_json_s64(j, "cpu", w->cpu);
		else
			mc_json_null(j, "cpu");
		mc_json_bool(j, "stale", w->stale);
		mc_json_end_obj(j);
	}
	mc_json_end_arr(j);
}

int cmd_status(bool json)
{
	struct mc_snap s;
	int err = mc_snap_take(&s, MC_SNAP_WORKERS | MC_SNAP_RUNTIMES);

	if (err == -ENOMEM) {
		fprintf(stderr, "moiraictl: out of memory\n");
		return MC_EXIT_FAIL;
	}
	if (json) {
		struct mc_json j;

		mc_json_init(&j, stdout);
		mc_json_obj(&j, NULL);
		json_common(&j, &s);
		json_exit(&j, "last_exit", &s);
		mc_json_end_obj(&j);
	} else {
		print_header(stdout, &s);
		print_workers(stdout, &s, NULL);
		print_exit(stdout, &s);
		mc_rts_print(stdout, &s.rts, NULL);
	}
	mc_snap_free(&s);
	return MC_EXIT_OK;
}

int cmd_dump(bool json)
{
	struct mc_snap s;
	struct mc_json j;
	unsigned int i;
	int err = mc_snap_take(&s, MC_SNAP_WORKERS | MC_SNAP_STATS | MC_SNAP_RUNTIMES);

	if (err == -ENOMEM) {
		fprintf(stderr, "moiraictl: out of memory\n");
		return MC_EXIT_FAIL;
	}
	if (!json) {
		print_header(stdout, &s);
		print_workers(stdout, &s, NULL);
		print_stats(stdout, &s, NULL);
		print_exit(stdout, &s);
		mc_rts_print(stdout, &s.rts, NULL);
		mc_snap_free(&s);
		return MC_EXIT_OK;
	}

	mc_json_init(&j, stdout);
	mc_json_obj(&j, NULL);
	json_common(&j, &s);
	if (s.cpu) {
		mc_json_arr(&j, "cpu_stats");
		for (i = 0; i < s.nr_cpu; i++) {
			const struct moirai_cpu_stats *c = &s.cpu[i];

			mc_json_obj(&j, NULL);
			mc_json_u64(&j, "cpu", i);
			mc_json_u64(&j, "dispatch_local", c->dispatch_local);
			mc_json_u64(&j, "dispatch_remote", c->dispatch_remote);
			mc_json_u64(&j, "direct", c->direct);
			mc_json_u64(&j, "worker_runs", c->worker_runs);
			mc_json_u64(&j, "other_runs", c->other_runs);
			mc_json_u64(&j, "kicks", c->kicks);
			mc_json_u64(&j, "preempt_kicks", c->preempt_kicks);
			mc_json_u64(&j, "wake_preempts", c->wake_preempts);
			mc_json_end_obj(&j);
		}
		mc_json_end_arr(&j);
	} else {
		mc_json_null(&j, "cpu_stats");
	}
	if (s.node) {
		mc_json_arr(&j, "node_stats");
		for (i = 0; i < s.nr_node; i++) {
			const struct moirai_node_stats *n = &s.node[i];

			mc_json_obj(&j, NULL);
			mc_json_u64(&j, "node", i);
			mc_json_u64(&j, "dispatches", n->dispatches);
			mc_json_u64(&j, "worker_home_runs", n->worker_home_runs);
			mc_json_u64(&j, "worker_remote_runs", n->worker_remote_runs);
			mc_json_u64(&j, "worker_home_ns", n->worker_home_ns);
			mc_json_u64(&j, "worker_remote_ns", n->worker_remote_ns);
			mc_json_u64(&j, "migrations", n->migrations);
			mc_json_u64(&j, "remote_pulls", n->remote_pulls);
			mc_json_s64(&j, "runnable_workers", n->runnable_workers);
			mc_json_u64(&j, "cpus", n->cpus);
			mc_json_end_obj(&j);
		}
		mc_json_end_arr(&j);
	} else {
		mc_json_null(&j, "node_stats");
	}
	if (s.have_lat) {
		mc_json_obj(&j, "latency");
		mc_json_u64(&j, "count", s.lat.count);
		mc_json_u64(&j, "sum_ns", s.lat.sum_ns);
		mc_json_u64(&j, "max_ns", s.lat.max_ns);
		mc_json_u64(&j, "p50_ns", mc_lat_quantile(s.lat.log2_ns, s.lat.max_ns, 0.5));
		mc_json_u64(&j, "p99_ns", mc_lat_quantile(s.lat.log2_ns, s.lat.max_ns, 0.99));
		mc_json_arr(&j, "log2_ns");
		for (i = 0; i < MOIRAI_LAT_BUCKETS; i++)
			mc_json_u64(&j, NULL, s.lat.log2_ns[i]);
		mc_json_end_arr(&j);
		mc_json_end_obj(&j);
	} else {
		mc_json_null(&j, "latency");
	}
	json_exit(&j, "exit_info", &s);
	mc_json_end_obj(&j);
	mc_snap_free(&s);
	return MC_EXIT_OK;
}

/* One frame of top. */
static void render(FILE *f, const struct mc_snap *s, const struct mc_snap *prev)
{
	fprintf(f, "moirai top: sched_ext %s, scheduler %s", state_str(s),
		s->scx.ops[0] ? s->scx.ops : "none");
	if (s->loader.pid)
		fprintf(f, ", %s switch, loader pid %d", s->loader.mode[0] ? s->loader.mode : "?",
			(int)s->loader.pid);
	fprintf(f, "%s\n", prev ? "" : " (rates from the next frame)");
	print_workers(f, s, prev);
	print_stats(f, s, prev);
	print_exit(f, s);
	mc_rts_print(f, &s->rts, prev ? &prev->rts : NULL);
}

static int window_rows(void)
{
	struct winsize ws;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 2)
		return ws.ws_row;
	return 24;
}

/* Writes the frame, cut to the window's height on a terminal. */
static void show_frame(const char *buf, size_t len, bool screen)
{
	if (screen) {
		int rows = window_rows() - 1;
		size_t i, cut = len;

		for (i = 0; i < len; i++)
			if (buf[i] == '\n' && --rows == 0) {
				cut = i + 1;
				break;
			}
		fputs("\033[H\033[2J", stdout);
		fwrite(buf, 1, cut, stdout);
		if (cut < len)
			fputs("...\n", stdout);
	} else {
		fwrite(buf, 1, len, stdout);
		fputc('\n', stdout);
	}
	fflush(stdout);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int cmd_top(long iterations)
{
	struct mc_snap snaps[2], *cur, *prev = NULL;
	struct termios old_tio, tio;
	bool screen = isatty(STDOUT_FILENO), keys = isatty(STDIN_FILENO), raw = false;
	sigset_t set, old_mask;
	double next;
	long frames = 0;
	int sfd, ret = MC_EXIT_OK, k = 0;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGQUIT);
	sigprocmask(SIG_BLOCK, &set, &old_mask);
	sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		fprintf(stderr, "moiraictl: signalfd: %s\n", strerror(errno));
		return MC_EXIT_FAIL;
	}
	if (keys && tcgetattr(STDIN_FILENO, &old_tio) == 0) {
		tio = old_tio;
		tio.c_lflag &= ~(ICANON | ECHO);
		tio.c_cc[VMIN] = 1;
		tio.c_cc[VTIME] = 0;
		raw = tcsetattr(STDIN_FILENO, TCSANOW, &tio) == 0;
	}
	if (screen)
		fputs("\033[?25l", stdout);	/* hide the cursor */

	next = now_s();
	for (;;) {
		struct pollfd pfd[2] = { { .fd = sfd, .events = POLLIN },
					 { .fd = keys ? STDIN_FILENO : -1, .events = POLLIN } };
		double wait = next - now_s();
		bool quit = false;

		if (wait > 0 && poll(pfd, 2, (int)(wait * 1000) + 1) > 0) {
			if (pfd[0].revents & POLLIN) {
				struct signalfd_siginfo si;

				/* Consume it, so that unblocking below does not deliver it. */
				ssize_t n = read(sfd, &si, sizeof(si));

				(void)n;
				break;
			}
			if (pfd[1].revents & (POLLIN | POLLHUP)) {
				char c;
				ssize_t n = read(STDIN_FILENO, &c, 1);

				if (n <= 0)
					keys = false;	/* EOF: stop watching */
				else if (c == 'q' || c == 'Q')
					quit = true;
			}
			if (quit)
				break;
			continue;
		}
		if (now_s() < next)
			continue;

		cur = &snaps[k];
		if (mc_snap_take(cur, MC_SNAP_WORKERS | MC_SNAP_STATS | MC_SNAP_RUNTIMES) ==
		    -ENOMEM) {
			ret = MC_EXIT_FAIL;
			break;
		}
		{
			char *buf = NULL;
			size_t len = 0;
			FILE *mf = open_memstream(&buf, &len);

			if (!mf) {
				mc_snap_free(cur);
				ret = MC_EXIT_FAIL;
				break;
			}
			render(mf, cur, prev);
			fclose(mf);
			show_frame(buf, len, screen);
			free(buf);
		}
		if (prev)
			mc_snap_free(prev);
		prev = cur;
		k ^= 1;
		if (iterations && ++frames >= iterations)
			break;
		next += 1.0;
		if (next < now_s())
			next = now_s() + 1.0;
	}
	if (prev)
		mc_snap_free(prev);
	if (screen)
		fputs("\033[?25h", stdout);
	if (raw)
		tcsetattr(STDIN_FILENO, TCSANOW, &old_tio);
	fflush(stdout);
	close(sfd);
	sigprocmask(SIG_SETMASK, &old_mask, NULL);
	return ret;
}
