/*
 * moiraictl - load, watch and unload Moirai's sched_ext scheduler.
 *
 *   moiraictl [-v] load [--partial] [--slice-us N] [--group NAME]
 *   moiraictl [-v] run [--partial] [--slice-us N] [--group NAME] -- CMD [ARGS...]
 *   moiraictl unload
 *   moiraictl status [--json]
 *   moiraictl top [--iterations N]
 *   moiraictl dump [--json]
 *   moiraictl dump -p PID
 *   moiraictl clean
 *   moiraictl trace -p PID [-d SECONDS] [-o FILE]
 *   moiraictl -h | --help
 *
 * load attaches the scheduler (bpf/moirai.bpf.c, embedded in this binary by
 * bpfobj.S) and stays in the foreground holding it: the kernel keeps a
 * struct_ops scheduler only as long as its link is open, so the scheduler
 * lives exactly as long as this process. SIGINT, SIGTERM or SIGHUP unloads
 * it and exits 0; if the scheduler exits by itself (an error it raised, a stall the
 * kernel's watchdog caught, SysRq-S) moiraictl prints the kernel's exit
 * reason and exits 1 for errors, 0 otherwise. If moiraictl is killed with
 * SIGKILL the kernel unloads the scheduler when the link's last fd closes.
 * The usual way to use it: `moiraictl load &`, then poll `moiraictl status`
 * until it says "enabled"; `moiraictl unload` (or kill %1) ends it.
 *
 * --partial switches only the tasks that ask for SCHED_EXT (Moirai's
 * workers) to the scheduler. The kernel ranks SCHED_EXT below the normal
 * class in that mode, so any busy process starves the workers: it is meant
 * for dedicated hosts. The default, full switch, schedules every task.
 * --slice-us N sets the time slice, 100..100000 microseconds (default 5000).
 * --group NAME (or a numeric gid) lets the processes of that group have
 * their workers steered, not only root's: the registration program and the
 * maps a runtime needs are pinned group-accessible (see load.c). A load
 * without it makes them root's again.
 *
 * run loads the scheduler, runs CMD under it, unloads it when CMD ends and
 * exits with CMD's status (128 + signal if it was killed). SIGINT and SIGTERM
 * sent to moiraictl are passed to CMD.
 *
 * unload signals the loader named in /run/moiraictl.pid and waits (10 s at
 * most) until it is gone and the kernel says "disabled".
 *
 * status prints the kernel's sched_ext state, which scheduler is loaded, the
 * loader's pid and mode, and the workers that Moirai runtimes registered in
 * the pinned maps under /sys/fs/bpf/moirai, grouped by runtime, with each
 * worker's published state, queue depth, the CPU it last ran on and
 * "preempted" while it waits for a CPU (the scheduler marks it). top shows
 * the same with per-CPU, per-node and latency statistics, refreshed every
 * second (q or Ctrl-C quits; one plain snapshot a second when stdout is not a
 * terminal). dump prints everything once, as JSON with --json; the
 * statistics of the last load stay pinned after it ends, so dump works
 * without a loaded scheduler.
 *
 * status, top and dump also show every runtime's own counters
 * (<moirai/stats.h>: jobs, steals, parks, fibers, channel blocks, timers,
 * I/O per worker), on any kernel, sched_ext or not: each runtime exports
 * them as a BPF map pinned at /sys/fs/bpf/moirai/<pid>/rt<id> or as a file
 * /dev/shm/moirai-stats.<pid>.<id> (rt.c). top shows them as rates per
 * second, dump --json as numbers under "runtimes". An export whose process
 * is gone (killed before it could remove it) shows as STALE; clean removes
 * those.
 *
 * dump -p PID asks a live process for its fiber dump (mr_runtime_dump():
 * every worker and fiber, what each waits on, its stack): the process must
 * have been started with MOIRAI_DUMP_SIGNAL (read from /proc/PID/environ;
 * moiraictl refuses rather than send a signal that could kill it) and have
 * installed the handler (SigCgt). With MOIRAI_DUMP_FILE set the dump is
 * appended there and moiraictl prints it; otherwise it goes to the
 * process's stderr.
 *
 * trace attaches BPF programs to the USDT probes of process PID (its
 * libmoirai.so, or its executable when linked statically) for SECONDS
 * (default 5; 0: until SIGINT or the process exits) and writes a
 * Chrome/Perfetto trace-event JSON to FILE (default trace.json; - for
 * stdout): a track per thread with a slice per fiber run, job and sleep,
 * instants for steals, parks, channel blocks and I/O, and flows from each
 * wake-up of a fiber to its run (trace.c). Needs root.
 *
 * -v makes libbpf print its debug messages (its warnings are always shown).
 *
 * Exit status: 0 success (load: unloaded as asked), 1 failure or refusal
 * (not root, no sched_ext in this kernel, another scheduler loaded, load
 * error, scheduler error or stall), 2 bad arguments, 3 (load) the kernel
 * asked for a restart that failed; run: CMD's status, 127 if CMD could not
 * be started.
 *
 * This file parses the command line and holds the helpers the commands
 * share: sysfs and /proc readers, the kernel's sched_ext state and the pid
 * file. The pid file is written only after the scheduler attached, by the
 * one loader that won the attach (the kernel allows one scheduler), with a
 * rename so readers never see half of it. A stale pid file (its process gone
 * or not a moiraictl) is ignored.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "moiraictl.h"

int mc_verbose;

void mc_usage(FILE *f)
{
	fputs("usage: moiraictl [-v] COMMAND [OPTIONS]\n"
	      "\n"
	      "  load [--partial] [--slice-us N] [--group NAME]\n"
	      "                                     load the Moirai scheduler and hold it until\n"
	      "                                     SIGINT/SIGTERM (run it with &)\n"
	      "  run [--partial] [--slice-us N] [--group NAME] -- CMD [ARGS...]\n"
	      "                                     load, run CMD, unload, exit with CMD's status\n"
	      "  unload                             stop the running `moiraictl load`\n"
	      "  status [--json]                    kernel state, loader, registered workers\n"
	      "  top [--iterations N]               live workers, per-CPU, per-node, latency\n"
	      "  dump [--json]                      everything in the pinned maps, once\n"
	      "  dump -p PID                        PID's fibers and workers, with their stacks\n"
	      "                                     (PID started with MOIRAI_DUMP_SIGNAL set)\n"
	      "  clean                              remove the counters of runtimes whose\n"
	      "                                     process is gone\n"
	      "  trace -p PID [-d SECONDS] [-o FILE]\n"
	      "                                     a Perfetto/Chrome JSON timeline of PID's\n"
	      "                                     workers (default 5 s, trace.json)\n"
	      "\n"
	      "  --partial      only Moirai workers are scheduled by moirai (SCHED_EXT then ranks\n"
	      "                 below normal tasks: for dedicated hosts)\n"
	      "  --slice-us N   time slice in microseconds, 100..100000 (default 5000)\n"
	      "  --group NAME   processes of group NAME (or gid) may have their workers steered\n"
	      "                 too (default: root's only)\n"
	      "  -v             libbpf debug output\n"
	      "  -h, --help     this text\n",
	      f);
}

static int usage_error(const char *fmt, const char *arg)
{
	if (fmt) {
		fputs("moiraictl: ", stderr);
		fprintf(stderr, fmt, arg);
		fputc('\n', stderr);
	}
	mc_usage(stderr);
	return MC_EXIT_USAGE;
}

int mc_read_file(const char *path, char *buf, size_t size)
{
	size_t len = 0;
	int fd;

	if (size == 0)
		return -EINVAL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (len < size - 1) {
		ssize_t n = read(fd, buf + len, size - 1 - len);

		if (n < 0) {
			int err = -errno;

			if (err == -EINTR)
				continue;
			close(fd);
			return err;
		}
		if (n == 0)
			break;
		len += n;
	}
	buf[len] = '\0';
	close(fd);
	return (int)len;
}

/* The file's first line, without its newline and trailing blanks. */
int mc_read_line(const char *path, char *buf, size_t size)
{
	int len = mc_read_file(path, buf, size);
	char *nl;

	if (len < 0) {
		buf[0] = '\0';
		return len;
	}
	nl = strchr(buf, '\n');
	if (nl)
		*nl = '\0';
	len = strlen(buf);
	while (len > 0 && (buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		buf[--len] = '\0';
	return len;
}

/* A decimal number in 0..max, the whole string. */
int mc_parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
	unsigned long long v;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

void mc_scx_read(struct mc_scx *scx)
{
	char buf[64];
	struct stat st;

	memset(scx, 0, sizeof(*scx));
	scx->enable_seq = -1;
	scx->supported = stat(MC_SCX_DIR, &st) == 0 && S_ISDIR(st.st_mode);
	if (!scx->supported)
		return;
	if (mc_read_line(MC_SCX_DIR "/state", scx->state, sizeof(scx->state)) < 0)
		snprintf(scx->state, sizeof(scx->state), "unknown");
	/* root/ exists only while a scheduler is loaded. */
	if (mc_read_line(MC_SCX_DIR "/root/ops", scx->ops, sizeof(scx->ops)) < 0)
		scx->ops[0] = '\0';
	if (mc_read_line(MC_SCX_DIR "/enable_seq", buf, sizeof(buf)) > 0)
		scx->enable_seq = strtoll(buf, NULL, 10);
}

bool mc_scx_is_moirai(const struct mc_scx *scx)
{
	return scx->supported && strcmp(scx->ops, MOIRAI_OPS_NAME) == 0;
}

bool mc_pid_alive(pid_t pid)
{
	char path[64], buf[512], *p;

	if (pid <= 0)
		return false;
	if (kill(pid, 0) < 0 && errno != EPERM)
		return false;
	/* A zombie has exited: its links and fds are gone. */
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (mc_read_file(path, buf, sizeof(buf)) < 0)
		return false;
	p = strrchr(buf, ')');
	return !(p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'));
}

bool mc_pid_is_moiraictl(pid_t pid)
{
	char path[64], comm[32];

	if (!mc_pid_alive(pid))
		return false;
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	if (mc_read_line(path, comm, sizeof(comm)) < 0)
		return false;
	return strcmp(comm, "moiraictl") == 0;
}

int mc_pidfile_write(pid_t pid, bool partial, unsigned long slice_us)
{
	char tmp[64], buf[96];
	int fd, len, err = 0;

	if (mkdir("/run", 0755) < 0 && errno != EEXIST)
		return -errno;
	snprintf(tmp, sizeof(tmp), MC_PIDFILE ".%d", (int)pid);
	len = snprintf(buf, sizeof(buf), "%d\n%s\n%lu\n", (int)pid, partial ? "partial" : "full",
		       slice_us);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (write(fd, buf, len) != len)
		err = errno ? -errno : -EIO;
	if (close(fd) < 0 && !err)
		err = -errno;
	if (!err && rename(tmp, MC_PIDFILE) < 0)
		err = -errno;
	if (err)
		unlink(tmp);
	return err;
}

/* Removes the pid file if it is still ours (a later loader may own it). */
void mc_pidfile_remove(pid_t pid)
{
	char buf[96];

	if (mc_read_file(MC_PIDFILE, buf, sizeof(buf)) < 0)
		return;
	if (atoi(buf) == (int)pid)
		unlink(MC_PIDFILE);
}

int mc_loader_read(struct mc_loader *ld)
{
	char buf[96], *line2, *line3;
	long pid;

	memset(ld, 0, sizeof(*ld));
	if (mc_read_file(MC_PIDFILE, buf, sizeof(buf)) < 0)
		return -ENOENT;
	pid = strtol(buf, &line2, 10);
	if (pid <= 0 || pid > INT_MAX || !mc_pid_is_moiraictl((pid_t)pid))
		return -ESRCH;
	ld->pid = (pid_t)pid;
	if (*line2 == '\n') {
		line2++;
		line3 = strchr(line2, '\n');
		if (line3)
			*line3++ = '\0';
		if (!strcmp(line2, "full") || !strcmp(line2, "partial"))
			snprintf(ld->mode, sizeof(ld->mode), "%s", line2);
		if (line3)
			ld->slice_us = strtoul(line3, NULL, 10);
	}
	return 0;
}

/* --group's value: a group name or a numeric gid. */
static int parse_group(const char *val, struct mc_load_opts *opts)
{
	unsigned long long v;
	struct group *g;

	if (!val || !*val)
		return usage_error("--group needs a group name or id", NULL);
	g = getgrnam(val);
	if (g) {
		opts->gid = g->gr_gid;
	} else if (mc_parse_uint(val, UINT_MAX - 1, &v) == 0) {
		opts->gid = (gid_t)v;
	} else {
		return usage_error("--group: no group named '%s'", val);
	}
	opts->group = val;
	return 0;
}

/* load and run share these: [--partial] [--slice-us N] [--group NAME].
 * Returns args used. */
static int parse_load_opts(int argc, char **argv, struct mc_load_opts *opts, bool is_run,
			   int *end)
{
	unsigned long long v;
	int i;

	opts->partial = false;
	opts->slice_us = 5000;
	opts->group = NULL;
	opts->gid = (gid_t)-1;
	for (i = 0; i < argc; i++) {
		const char *a = argv[i], *val = NULL;

		if (!strcmp(a, "--partial")) {
			opts->partial = true;
			continue;
		}
		if (!strcmp(a, "--group") || !strncmp(a, "--group=", 8)) {
			if (a[7] == '=')
				val = a + 8;
			else if (i + 1 < argc)
				val = argv[++i];
			int err = parse_group(val, opts);
			if (err)
				return err;
			continue;
		}
		if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
			mc_verbose = 1;
			continue;
		}
		if (!strcmp(a, "--slice-us")) {
			if (i + 1 >= argc)
				return usage_error("--slice-us needs a value", NULL);
			val = argv[++i];
		} else if (!strncmp(a, "--slice-us=", 11)) {
			val = a + 11;
		} else if (is_run && !strcmp(a, "--")) {
			i++;
			break;
		} else if (is_run && a[0] != '-') {
			break;
		} else {
			return usage_error("unknown option: %s", a);
		}
		if (mc_parse_uint(val, ULLONG_MAX, &v) < 0 || v < 100 || v > 100000)
			return usage_error("--slice-us must be 100..100000 (microseconds), not '%s'",
					   val);
		opts->slice_us = (unsigned long)v;
	}
	*end = i;
	return 0;
}

int main(int argc, char **argv)
{
	struct mc_load_opts lopts;
	const char *cmd;
	int i = 1, end, err;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose")) {
			mc_verbose = 1;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			mc_usage(stdout);
			return MC_EXIT_OK;
		} else {
			return usage_error("unknown option: %s", argv[i]);
		}
	}
	if (i >= argc)
		return usage_error("no command", NULL);
	cmd = argv[i++];
	argc -= i;
	argv += i;

	if (!strcmp(cmd, "help")) {
		mc_usage(stdout);
		return MC_EXIT_OK;
	}
	if (!strcmp(cmd, "load")) {
		err = parse_load_opts(argc, argv, &lopts, false, &end);
		if (err)
			return err;
		return cmd_load(&lopts);
	}
	if (!strcmp(cmd, "run")) {
		err = parse_load_opts(argc, argv, &lopts, true, &end);
		if (err)
			return err;
		if (end >= argc)
			return usage_error("run: no command to run (moiraictl run -- CMD ...)", NULL);
		return cmd_run(&lopts, argv + end);
	}
	if (!strcmp(cmd, "unload")) {
		if (argc)
			return usage_error("unload takes no arguments: %s", argv[0]);
		return cmd_unload();
	}
	if (!strcmp(cmd, "status") || !strcmp(cmd, "dump")) {
		bool json = false;
		unsigned long long pid = 0;

		for (i = 0; i < argc; i++) {
			if (!strcmp(argv[i], "--json"))
				json = true;
			else if (cmd[0] == 'd' && !strcmp(argv[i], "-p") && i + 1 < argc) {
				if (mc_parse_uint(argv[++i], INT_MAX, &pid) < 0 || !pid)
					return usage_error("dump: -p needs a pid, not '%s'", argv[i]);
			} else
				return usage_error("unknown option: %s", argv[i]);
		}
		if (pid) {
			if (json)
				return usage_error("dump -p prints the process's own dump (no --json)",
						   NULL);
			return cmd_dump_pid((pid_t)pid);
		}
		return cmd[0] == 's' ? cmd_status(json) : cmd_dump(json);
	}
	if (!strcmp(cmd, "clean")) {
		if (argc)
			return usage_error("clean takes no arguments: %s", argv[0]);
		return cmd_clean();
	}
	if (!strcmp(cmd, "trace")) {
		unsigned long long pid = 0;
		double secs = 5;
		const char *out = "trace.json";

		for (i = 0; i < argc; i++) {
			if (!strcmp(argv[i], "-p") && i + 1 < argc) {
				if (mc_parse_uint(argv[++i], INT_MAX, &pid) < 0 || !pid)
					return usage_error("trace: -p needs a pid, not '%s'", argv[i]);
			} else if (!strcmp(argv[i], "-d") && i + 1 < argc) {
				char *rest;
				secs = strtod(argv[++i], &rest);
				if (*rest || rest == argv[i] || !(secs >= 0 && secs <= 86400))
					return usage_error("trace: -d needs seconds, 0..86400, not '%s'",
							   argv[i]);
			} else if (!strcmp(argv[i], "-o") && i + 1 < argc) {
				out = argv[++i];
			} else {
				return usage_error("trace: bad argument: %s", argv[i]);
			}
		}
		if (!pid)
			return usage_error("trace: which process? (-p PID)", NULL);
		return cmd_trace((pid_t)pid, secs, out);
	}
	if (!strcmp(cmd, "top")) {
		unsigned long long n = 0;

		for (i = 0; i < argc; i++) {
			const char *val;

			if (!strcmp(argv[i], "--iterations") && i + 1 < argc)
				val = argv[++i];
			else if (!strncmp(argv[i], "--iterations=", 13))
				val = argv[i] + 13;
			else
				return usage_error("top: bad argument: %s", argv[i]);
			if (mc_parse_uint(val, LONG_MAX, &n) < 0 || n == 0)
				return usage_error("--iterations needs a positive number, not '%s'",
						   val);
		}
		return cmd_top((long)n);
	}
	return usage_error("unknown command: %s", cmd);
}
