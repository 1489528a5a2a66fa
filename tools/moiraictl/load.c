/*
 * load.c - load, hold and unload the scheduler: `moiraictl load`, `run`,
 * `unload`.
 *
 * Loading goes: refuse early with a message a person can act on (not
 * privileged; a kernel without sched_ext; another scheduler already
 * loaded), make sure bpffs is mounted and MOIRAI_PIN_DIR exists, read the
 * topology, open the BPF object embedded by bpfobj.S from memory (no
 * skeleton: bpftool 7.5's need libbpf 1.5, and we build against 1.4), write
 * the read-only globals into the .rodata map's initial value (found by name
 * in the object's BTF DATASEC, so the layout is the compiler's, not ours),
 * keep exactly one of the two struct_ops maps (moirai_ops, full switch;
 * moirai_ops_partial, SCX_OPS_SWITCH_PARTIAL), load, attach the struct_ops
 * map as a link, wait until the kernel says "enabled", and only then pin the
 * statistics maps afresh (a load that lost a race to the attach must not
 * replace the winner's pins).
 *
 * workers and worker_load are declared LIBBPF_PIN_BY_NAME and the object is
 * opened with pin_root_path = MOIRAI_PIN_DIR, so libbpf reuses the pinned
 * maps and running Moirai runtimes keep their registrations across reloads.
 * A pinned map of another layout (a scheduler from another version) would
 * make libbpf fail with a terse message; we compare first and say which
 * pin to remove.
 *
 * Who may be steered: after the attach, the registration program
 * (moirai_register, a BPF_PROG_TYPE_SYSCALL program that runtimes run to
 * register their own threads) is pinned as MOIRAI_PIN_DIR/register, and it,
 * worker_load and meta get their owner and mode: root's, 0600, or with
 * --group NAME, group NAME's: register 0660, worker_load and meta 0640 (only
 * BPF writes the lines). workers stays root's, 0600.
 *
 * The scheduler lives as long as its link fd: the loader stays in the
 * foreground. Signals (SIGINT, SIGTERM, SIGHUP) are blocked from the start
 * and read from a signalfd, so a signal that arrives while loading is acted
 * on as soon as the scheduler is up, and no handler runs in the middle of
 * libbpf. Every 100 ms the loader reads exit_info (ops.exit fills it; kind
 * != 0 means the scheduler is gone) and the kernel's state. After an error
 * exit it prints the reason and the kernel's dump of the scheduler's state
 * (exit_dump, also filled by ops.exit; ops.exit_dump_len sets its size).
 *
 * When the scheduler exits with SCX_ECODE_ACT_RESTART in its exit code (a
 * CPU went on or offline while loading: the loader hands the kernel the
 * hotplug sequence number it read before the topology; or a CPU whose node
 * was unknown at load came online), the loader closes and loads it again,
 * as scx's loaders do, at most MAX_RESTARTS times a minute. Exit statuses
 * tell an unload asked for (0) from an error (1) and a restart that could
 * not be done (3).
 *
 * A subtle case: when ops.init fails, the kernel records the error through
 * ops.exit and still lets the attach succeed (so that the details reach user
 * space through ops.exit rather than a bare errno). So a successful attach
 * is checked against exit_info before reporting success.
 *
 * The pid file (/run/moiraictl.pid; bpffs holds no regular files) names the
 * loader for `unload` and `status`; it is written after the attach succeeded
 * and removed on the way out. SIGKILL leaves it behind: readers check that
 * the pid is a live moiraictl.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/capability.h>
#include <linux/magic.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "moiraictl.h"

#ifndef CAP_BPF
#define CAP_BPF 39
#endif
#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif

/* bpfobj.S: the scheduler's BPF object file, as built. */
extern const char moirai_bpf_obj_start[];
extern const char moirai_bpf_obj_end[];

static const char *const stat_maps[] = { "cpu_stats", "node_stats", "latency", "exit_info",
					"exit_dump" };
static const char *const kept_maps[] = { "workers", "worker_load", "meta" };

struct sched {
	struct bpf_object *obj;
	struct bpf_link *link;
	int exit_fd;		/* exit_info, -1 if the object has none */
	int dump_fd;		/* exit_dump, -1 if the object has none */
	struct moirai_meta *meta; /* the meta map, mapped; NULL if it cannot be */
	__u64 reg_full;		/* meta->reg_full last reported */
	bool partial;
};

static int print_libbpf(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level != LIBBPF_WARN && !mc_verbose)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

static const char *errstr(int err)
{
	static char buf[128];

	libbpf_strerror(err, buf, sizeof(buf));
	return buf;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Waits until the kernel's state is want (or sched_ext vanished); true if it is. */
static bool wait_state(const char *want, long timeout_ms)
{
	struct mc_scx scx;
	long waited = 0;

	for (;;) {
		mc_scx_read(&scx);
		if (!scx.supported || !strcmp(scx.state, want))
			return true;
		if (waited >= timeout_ms)
			return false;
		sleep_ms(20);
		waited += 20;
	}
}

/* -EPERM naming what is missing, if the effective set lacks CAP_SYS_ADMIN or CAP_BPF. */
static int check_privileges(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
	bool admin, bpf;

	if (syscall(SYS_capget, &hdr, data) < 0)
		return -errno;
	admin = data[CAP_SYS_ADMIN / 32].effective & (1U << (CAP_SYS_ADMIN % 32));
	bpf = data[CAP_BPF / 32].effective & (1U << (CAP_BPF % 32));
	if (admin && bpf)
		return 0;
	fprintf(stderr,
		"moirai: loading a sched_ext scheduler needs root (effective CAP_SYS_ADMIN and "
		"CAP_BPF; missing:%s%s): run moiraictl as root\n",
		admin ? "" : " CAP_SYS_ADMIN", bpf ? "" : " CAP_BPF");
	return -EPERM;
}

/* Refusals that need no BPF: privileges, no sched_ext, a scheduler already loaded. */
static int check_can_load(void)
{
	struct mc_loader ld;
	struct mc_scx scx;

	if (check_privileges() < 0)
		return -EPERM;
	mc_scx_read(&scx);
	if (!scx.supported) {
		fprintf(stderr, "moirai: this kernel has no sched_ext (CONFIG_SCHED_CLASS_EXT); "
				"the Moirai library works without it, on the default scheduler\n");
		return -EOPNOTSUPP;
	}
	if (strcmp(scx.state, "disabled")) {
		if (mc_scx_is_moirai(&scx)) {
			if (mc_loader_read(&ld) == 0)
				fprintf(stderr, "moirai: already loaded (moiraictl pid %d)\n",
					(int)ld.pid);
			else
				fprintf(stderr, "moirai: already loaded (by a process other than "
						"moiraictl)\n");
		} else if (scx.ops[0]) {
			fprintf(stderr,
				"moirai: another sched_ext scheduler is loaded: %s (state %s); "
				"unload it first\n",
				scx.ops, scx.state);
		} else {
			fprintf(stderr, "moirai: sched_ext is busy (state %s); try again\n",
				scx.state);
		}
		return -EBUSY;
	}
	return 0;
}

static int ensure_pin_dir(void)
{
	struct statfs sfs;

	if (statfs(MC_BPFFS, &sfs) < 0) {
		fprintf(stderr, "moirai: %s: %s\n", MC_BPFFS, strerror(errno));
		return -errno;
	}
	if (sfs.f_type != BPF_FS_MAGIC && mount("bpf", MC_BPFFS, "bpf", 0, NULL) < 0) {
		fprintf(stderr, "moirai: cannot mount bpffs on %s: %s\n", MC_BPFFS,
			strerror(errno));
		return -errno;
	}
	if (mkdir(MOIRAI_PIN_DIR, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "moirai: cannot create %s: %s\n", MOIRAI_PIN_DIR, strerror(errno));
		return -errno;
	}
	return 0;
}

/*
 * Writes size bytes at the .rodata variable name (a const volatile global
 * of the BPF program) before load. The variable's offset comes from the
 * object's BTF: the DATASEC ".rodata" lists every variable with its offset
 * and size.
 */
static int set_rodata(struct bpf_object *obj, const char *name, const void *val, size_t size)
{
	const struct btf_var_secinfo *vs;
	const struct btf_type *sec;
	struct bpf_map *map;
	struct btf *btf = bpf_object__btf(obj);
	size_t map_size;
	char *data;
	__s32 id;
	int i;

	map = bpf_object__find_map_by_name(obj, ".rodata");
	if (!btf || !map) {
		fprintf(stderr, "moirai: the BPF object has no %s\n", btf ? ".rodata map" : "BTF");
		return -ENOENT;
	}
	data = bpf_map__initial_value(map, &map_size);
	id = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
	if (!data || id < 0) {
		fprintf(stderr, "moirai: the BPF object's .rodata has no %s\n",
			data ? "BTF DATASEC" : "initial value");
		return -ENOENT;
	}
	sec = btf__type_by_id(btf, id);
	vs = btf_var_secinfos(sec);
	for (i = 0; i < btf_vlen(sec); i++, vs++) {
		const struct btf_type *var = btf__type_by_id(btf, vs->type);

		if (!var || strcmp(btf__name_by_offset(btf, var->name_off), name))
			continue;
		if (vs->size != size || (size_t)vs->offset + size > map_size) {
			fprintf(stderr,
				"moirai: the BPF object's %s is %u bytes, moiraictl writes %zu: "
				"they were built from different sources\n",
				name, vs->size, size);
			return -EPROTO;
		}
		memcpy(data + vs->offset, val, size);
		return 0;
	}
	fprintf(stderr, "moirai: the BPF object has no read-only global %s\n", name);
	return -ENOENT;
}

static void mark_online(unsigned int cpu, void *arg)
{
	bool *online = arg;

	if (cpu < MOIRAI_MAX_CPUS)
		online[cpu] = true;
}

static int configure(struct bpf_object *obj, const struct mc_load_opts *opts,
		     const struct mc_topo *topo)
{
	static __s32 cpu_to_node[MOIRAI_MAX_CPUS];
	static bool online[MOIRAI_MAX_CPUS];
	__u64 slice_ns = (__u64)opts->slice_us * 1000;
	__u32 nr_cpus = topo->nr_cpus, nr_nodes = topo->nr_nodes;
	struct bpf_map *ns = bpf_object__find_map_by_name(obj, "node_stats");
	char buf[4096];
	unsigned int c;
	int err;

	/*
	 * The nodes' cpulists name online CPUs only: with several nodes, the
	 * node of a CPU offline now is unknown (-1), and the scheduler asks
	 * for a restart when it comes online (ops.cpu_online).
	 */
	memset(online, 0, sizeof(online));
	if (topo->nr_nodes < 2 || mc_read_file("/sys/devices/system/cpu/online", buf, sizeof(buf)) < 0 ||
	    mc_cpulist_parse(buf, mark_online, online, NULL) < 0)
		memset(online, 1, sizeof(online));
	for (c = 0; c < MOIRAI_MAX_CPUS; c++)
		cpu_to_node[c] = c >= topo->nr_cpus ? 0 : online[c] ? topo->cpu_to_node[c] : -1;
	err = set_rodata(obj, "slice_ns", &slice_ns, sizeof(slice_ns));
	if (!err)
		err = set_rodata(obj, "nr_cpus", &nr_cpus, sizeof(nr_cpus));
	if (!err)
		err = set_rodata(obj, "nr_nodes", &nr_nodes, sizeof(nr_nodes));
	if (!err)
		err = set_rodata(obj, "cpu_to_node", cpu_to_node, sizeof(cpu_to_node));
	/* node_stats is per-CPU, a copy of every entry for each possible CPU:
	 * as many entries as nodes, not MOIRAI_MAX_NODES (64 entries of 72
	 * bytes on 1024 CPUs would be 4.7 MB). */
	if (!err && ns && nr_nodes)
		err = bpf_map__set_max_entries(ns, nr_nodes);
	return err;
}

/* Keeps the struct_ops map of the chosen mode; the other is not created. */
static struct bpf_map *choose_ops(struct bpf_object *obj, bool partial)
{
	struct bpf_map *full = bpf_object__find_map_by_name(obj, "moirai_ops");
	struct bpf_map *part = bpf_object__find_map_by_name(obj, "moirai_ops_partial");
	struct bpf_map *use = partial ? part : full, *other = partial ? full : part;

	if (!use) {
		fprintf(stderr, "moirai: the BPF object has no struct_ops map %s\n",
			partial ? "moirai_ops_partial" : "moirai_ops");
		return NULL;
	}
	if (other)
		bpf_map__set_autocreate(other, false);
	return use;
}

/*
 * Writes size bytes at member name of the struct_ops map's struct
 * sched_ext_ops before load (offsets from the object's BTF; libbpf copies
 * the members to the kernel's layout by name).
 */
static int set_ops_field(struct bpf_object *obj, struct bpf_map *ops, const char *name,
			 const void *val, size_t size)
{
	struct btf *btf = bpf_object__btf(obj);
	const struct btf_member *m;
	const struct btf_type *t;
	size_t data_size;
	char *data = bpf_map__initial_value(ops, &data_size);
	int i;

	t = btf ? btf__type_by_id(btf, bpf_map__btf_value_type_id(ops)) : NULL;
	if (!data || !t || !btf_is_struct(t)) {
		fprintf(stderr, "moirai: cannot set %s: the struct_ops map has no BTF struct or "
				"initial value\n", name);
		return -ENOENT;
	}
	m = btf_members(t);
	for (i = 0; i < btf_vlen(t); i++, m++) {
		size_t off = btf_member_bit_offset(t, i) / 8;

		if (strcmp(btf__name_by_offset(btf, m->name_off), name))
			continue;
		if (btf__resolve_size(btf, m->type) != (__s64)size || off + size > data_size) {
			fprintf(stderr, "moirai: sched_ext_ops.%s is not %zu bytes\n", name, size);
			return -EPROTO;
		}
		memcpy(data + off, val, size);
		return 0;
	}
	fprintf(stderr, "moirai: the BPF object's sched_ext_ops has no member %s\n", name);
	return -ENOENT;
}

/*
 * The pinned meta map's layout version is ours, or 0 (just created, or a
 * load failed before setting it). Maps pinned before meta existed have
 * version 1's layout, which their sizes already vouch for.
 */
static bool same_version(const char *name, int fd)
{
	struct moirai_meta m;
	__u32 key = 0;

	if (strcmp(name, "meta"))
		return true;
	if (bpf_map_lookup_elem(fd, &key, &m) < 0)
		return false;
	if (m.version == 0 || m.version == MOIRAI_LAYOUT_VERSION)
		return true;
	fprintf(stderr, "moirai: the pinned maps have layout version %u, this moiraictl %d\n",
		m.version, MOIRAI_LAYOUT_VERSION);
	return false;
}

/*
 * A pinned workers or worker_load map that the object cannot reuse: libbpf
 * would fail with "couldn't reuse pinned map"; say which pin and what to do.
 */
static int check_kept_maps(struct bpf_object *obj)
{
	unsigned int i;

	for (i = 0; i < sizeof(kept_maps) / sizeof(kept_maps[0]); i++) {
		struct bpf_map *map = bpf_object__find_map_by_name(obj, kept_maps[i]);
		struct bpf_map_info info = {};
		__u32 len = sizeof(info);
		char path[128];
		int fd;

		if (!map)
			continue;
		snprintf(path, sizeof(path), MOIRAI_PIN_DIR "/%s", kept_maps[i]);
		fd = bpf_obj_get(path);
		if (fd < 0)
			continue;	/* not pinned yet: libbpf creates and pins it */
		if (bpf_map_get_info_by_fd(fd, &info, &len) == 0 &&
		    info.type == bpf_map__type(map) && info.key_size == bpf_map__key_size(map) &&
		    info.value_size == bpf_map__value_size(map) &&
		    info.max_entries == bpf_map__max_entries(map) &&
		    info.map_flags == bpf_map__map_flags(map) && same_version(kept_maps[i], fd)) {
			close(fd);
			continue;
		}
		close(fd);
		fprintf(stderr,
			"moirai: the pinned map %s was made by another version of the scheduler "
			"(its type, sizes, flags or layout version differ); stop the Moirai "
			"programs that use it, then remove it: rm %s\n",
			path, path);
		return -EEXIST;
	}
	return 0;
}

/*
 * After a failed load: the kfuncs the object refers to that the running
 * kernel's BTF does not have. libbpf names a missing strong kfunc itself; a
 * weak one resolves to nothing and the verifier then rejects the call with
 * a message that does not name it, so list them all. The shapes of a
 * reshaped kfunc (bpf/compat.bpf.h: <name>___mr, one per kernel generation)
 * are not listed: all but one are missing on any kernel, and the wrapper
 * stops the scheduler with a message naming the kfunc when none fits.
 */
static void note_missing_kfuncs(struct bpf_object *obj)
{
	struct btf *btf = bpf_object__btf(obj), *kernel;
	char list[1024];
	size_t len = 0;
	__u32 id;
	int n = 0;

	if (!btf)
		return;
	kernel = btf__load_vmlinux_btf();
	if (!kernel)
		return;
	list[0] = '\0';
	/*
	 * libbpf turns the extern FUNCs of .ksyms into global ones at open; the
	 * global FUNCs that are not programs of the object are the kfuncs.
	 */
	for (id = 1; id < btf__type_cnt(btf); id++) {
		const struct btf_type *t = btf__type_by_id(btf, id);
		const char *name;
		int w;

		if (!btf_is_func(t) || btf_vlen(t) == BTF_FUNC_STATIC)
			continue;
		name = btf__name_by_offset(btf, t->name_off);
		if (!name || strstr(name, "___") || bpf_object__find_program_by_name(obj, name) ||
		    btf__find_by_name_kind(kernel, name, BTF_KIND_FUNC) >= 0)
			continue;
		w = snprintf(list + len, sizeof(list) - len, "%s%s", n ? ", " : "", name);
		if (w < 0 || (size_t)w >= sizeof(list) - len) {
			snprintf(list + len, sizeof(list) - len, ", ...");
			n++;
			break;
		}
		len += w;
		n++;
	}
	btf__free(kernel);
	if (n)
		fprintf(stderr,
			"moirai: this kernel lacks kfuncs the scheduler refers to: %s (fine for those "
			"the scheduler guards with bpf_ksym_exists(); a call to another fails "
			"verification)\n",
			list);
}

/* Pins the statistics maps of this load in place of the last load's. */
static void pin_stats(struct bpf_object *obj)
{
	unsigned int i;

	for (i = 0; i < sizeof(stat_maps) / sizeof(stat_maps[0]); i++) {
		struct bpf_map *map = bpf_object__find_map_by_name(obj, stat_maps[i]);
		char path[128];
		int err;

		if (!map) {
			fprintf(stderr, "moirai: warning: the BPF object has no map %s\n",
				stat_maps[i]);
			continue;
		}
		snprintf(path, sizeof(path), MOIRAI_PIN_DIR "/%s", stat_maps[i]);
		if (unlink(path) < 0 && errno != ENOENT)
			fprintf(stderr, "moirai: warning: cannot remove %s: %s\n", path,
				strerror(errno));
		err = bpf_map__pin(map, path);
		if (err)
			fprintf(stderr, "moirai: warning: cannot pin %s: %s\n", path, errstr(err));
	}
}

/*
 * Pins the registration program of this load in place of the last load's,
 * with the access mode / gid: pinned under a temporary name, given its
 * owner and mode, then renamed over the old pin, so that a runtime starting
 * meanwhile finds one or the other, never none or one it may not run.
 */
static void pin_register(struct bpf_object *obj, mode_t mode, gid_t gid)
{
	struct bpf_program *prog = bpf_object__find_program_by_name(obj, "moirai_register");
	const char *path = MOIRAI_PIN_DIR "/" MOIRAI_REGISTER_PROG;
	const char *tmp = MOIRAI_PIN_DIR "/" MOIRAI_REGISTER_PROG "_new"; /* bpffs names have no dots */
	int err;

	if (!prog) {
		fprintf(stderr, "moirai: warning: the BPF object has no program moirai_register "
				"(runtimes cannot register)\n");
		return;
	}
	unlink(tmp);
	err = bpf_program__pin(prog, tmp);
	if (err) {
		fprintf(stderr, "moirai: warning: cannot pin %s: %s (runtimes cannot register)\n",
			tmp, errstr(err));
		return;
	}
	if (chown(tmp, 0, gid) < 0 || chmod(tmp, mode) < 0 || rename(tmp, path) < 0) {
		fprintf(stderr, "moirai: warning: cannot set up %s: %s (runtimes cannot register)\n",
			path, strerror(errno));
		unlink(tmp);
	}
}

/*
 * Who may have workers steered. A runtime needs to run `register` and read
 * worker_load and meta; the pins are root's, mode 0600, unless the operator
 * named a group (--group), which may run register and read worker_load and
 * meta. Nobody but root writes either: the scheduler writes every line of
 * worker_load (from each worker's own memory), and whoever may write
 * workers can register any thread. Done on every load: one without --group
 * takes the group's access back.
 */
static void set_access(struct bpf_object *obj, const struct mc_load_opts *opts)
{
	static const struct {
		const char *pin;
		mode_t group_mode;
	} pins[] = { { "worker_load", 0640 }, { "meta", 0640 } };
	gid_t gid = opts->group ? opts->gid : 0;
	struct stat st;
	unsigned int i;

	pin_register(obj, opts->group ? 0660 : 0600, gid);
	for (i = 0; i < sizeof(pins) / sizeof(pins[0]); i++) {
		char path[128];

		snprintf(path, sizeof(path), MOIRAI_PIN_DIR "/%s", pins[i].pin);
		if (chown(path, 0, gid) < 0 || chmod(path, opts->group ? pins[i].group_mode : 0600) < 0)
			fprintf(stderr, "moirai: warning: cannot set the access of %s: %s\n", path,
				strerror(errno));
	}
	if (!opts->group)
		return;
	if (chmod(MOIRAI_PIN_DIR, 0755) < 0)
		fprintf(stderr, "moirai: warning: chmod 755 %s: %s\n", MOIRAI_PIN_DIR,
			strerror(errno));
	/* systemd mounts bpffs mode 0700: nobody but root reaches the pins. */
	if (stat(MC_BPFFS, &st) == 0 && !(st.st_mode & S_IXOTH) &&
	    !(st.st_gid == gid && (st.st_mode & S_IXGRP)))
		fprintf(stderr,
			"moirai: warning: %s is mode %03o, owner %u:%u: group %s cannot reach %s; "
			"let it through with `chgrp %s %s && chmod g+x %s` (or chmod o+x %s)\n",
			MC_BPFFS, (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid,
			(unsigned)st.st_gid, opts->group, MOIRAI_PIN_DIR, opts->group, MC_BPFFS,
			MC_BPFFS, MC_BPFFS);
}

/* Is thread tid gone? With pid: is it gone from that process (tid reused
 * by another process counts as gone)? */
static bool thread_gone(__u32 pid, __u32 tid)
{
	long r = pid ? syscall(SYS_tgkill, (pid_t)pid, (pid_t)tid, 0)
		     : syscall(SYS_tkill, (pid_t)tid, 0);

	return r < 0 && errno == ESRCH;
}

/* Frees worker_load line l of thread tid (the CAS pairs with the claim, a
 * CAS of tid, in the `register` program, bpf/moirai.bpf.c). */
static bool free_line(struct moirai_load *l, __u32 tid)
{
	__atomic_store_n(&l->state, MOIRAI_W_NONE, __ATOMIC_RELAXED);
	__atomic_store_n(&l->preempted, 0, __ATOMIC_RELAXED);
	return __atomic_compare_exchange_n(&l->tid, &tid, 0, false, __ATOMIC_RELEASE,
					   __ATOMIC_RELAXED);
}

/*
 * Removes the registrations of threads that are gone. The scheduler's
 * exit_task() forgets a worker that exits without unregistering, but only
 * while a scheduler is loaded; the maps stay pinned across loads and
 * runtimes register in them meanwhile, so a process killed while none was
 * loaded left its entries and worker_load lines behind for good. Runs right
 * after the attach (from then on exit_task() does it). A line whose owner is
 * gone is freed too, whatever the workers hash says (a line of layout 3, or
 * an entry removed by hand); its pid may still be the previous owner's
 * then, so only the tid is checked.
 */
static void sweep_stale(const struct sched *s)
{
	struct bpf_map *wm = bpf_object__find_map_by_name(s->obj, "workers");
	struct bpf_map *lm = bpf_object__find_map_by_name(s->obj, "worker_load");
	size_t len = (sizeof(struct moirai_load) * MOIRAI_LOAD_SLOTS + 4095) & ~(size_t)4095;
	static __u32 gone[MOIRAI_MAX_WORKERS];
	struct moirai_load *lines;
	struct moirai_worker w;
	unsigned int n = 0, i, entries = 0, freed = 0;
	__u32 key, next;
	int wfd, lfd;
	bool first = true;

	if (!wm || !lm)
		return;
	wfd = bpf_map__fd(wm);
	lfd = bpf_map__fd(lm);
	lines = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, lfd, 0);
	if (lines == MAP_FAILED) {
		fprintf(stderr, "moirai: warning: cannot map worker_load: %s\n", strerror(errno));
		return;
	}
	/* Collect first: deleting while walking a hash can restart the walk. */
	while (n < MOIRAI_MAX_WORKERS && bpf_map_get_next_key(wfd, first ? NULL : &key, &next) == 0) {
		first = false;
		key = next;
		if (bpf_map_lookup_elem(wfd, &key, &w) == 0 && thread_gone(w.pid, key))
			gone[n++] = key;
	}
	for (i = 0; i < n; i++) {
		key = gone[i];
		/* Looked up again: the tid may have been registered anew meanwhile. */
		if (bpf_map_lookup_elem(wfd, &key, &w) < 0 || !thread_gone(w.pid, key))
			continue;
		/* The line first: while the entry points at it, `register`
		 * gives it to nobody else. */
		if (w.slot < MOIRAI_LOAD_SLOTS &&
		    __atomic_load_n(&lines[w.slot].tid, __ATOMIC_RELAXED) == key &&
		    free_line(&lines[w.slot], key))
			freed++;
		if (bpf_map_delete_elem(wfd, &key) == 0)
			entries++;
	}
	for (i = 0; i < MOIRAI_LOAD_SLOTS; i++) {
		__u32 tid = __atomic_load_n(&lines[i].tid, __ATOMIC_ACQUIRE);

		if (tid && thread_gone(0, tid) && free_line(&lines[i], tid))
			freed++;
	}
	munmap(lines, len);
	if (entries || freed)
		printf("moirai: removed %u registration%s and %u worker_load line%s of threads "
		       "that are gone\n",
		       entries, entries == 1 ? "" : "s", freed, freed == 1 ? "" : "s");
}

#define META_LEN 4096

/*
 * Maps meta, stamps it with our layout version (runtimes register only
 * with maps of their own version, so they start using maps created by this
 * load now) and remembers how many registrations were refused so far.
 */
static void open_meta(struct sched *s)
{
	struct bpf_map *map = bpf_object__find_map_by_name(s->obj, "meta");
	void *m;

	if (!map)
		return;
	m = mmap(NULL, META_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, bpf_map__fd(map), 0);
	if (m == MAP_FAILED) {
		fprintf(stderr, "moirai: warning: cannot map meta: %s (runtimes will not "
				"register)\n", strerror(errno));
		return;
	}
	s->meta = m;
	/* release: register is pinned before (set_access()); runtimes read the
	 * version first (try_open() in user/sched/scx.c). */
	__atomic_store_n(&s->meta->version, MOIRAI_LAYOUT_VERSION, __ATOMIC_RELEASE);
	s->reg_full = __atomic_load_n(&s->meta->reg_full, __ATOMIC_RELAXED);
	if (s->reg_full)
		printf("moirai: %llu worker registrations were refused before this load: the "
		       "maps were full\n", (unsigned long long)s->reg_full);
}

/* Says when runtimes were refused registrations since we last looked. */
static void note_refusals(struct sched *s)
{
	__u64 n;

	if (!s->meta)
		return;
	n = __atomic_load_n(&s->meta->reg_full, __ATOMIC_RELAXED);
	if (n == s->reg_full)
		return;
	printf("moirai: warning: %llu worker registration%s refused: worker_load (%d lines) or "
	       "workers (%d entries) is full; those workers run unsteered\n",
	       (unsigned long long)(n - s->reg_full), n - s->reg_full == 1 ? "" : "s",
	       MOIRAI_LOAD_SLOTS, MOIRAI_MAX_WORKERS);
	fflush(stdout);
	s->reg_full = n;
}

/* exit_info's kind, 0 while the scheduler runs (or if it cannot be read). */
static long long read_exit(const struct sched *s, struct moirai_exit_info *ei)
{
	__u32 key = 0;

	memset(ei, 0, sizeof(*ei));
	if (s->exit_fd < 0 || bpf_map_lookup_elem(s->exit_fd, &key, ei) < 0)
		return 0;
	ei->reason[sizeof(ei->reason) - 1] = '\0';
	ei->msg[sizeof(ei->msg) - 1] = '\0';
	return ei->kind;
}

/*
 * Prints the kernel's dump of the scheduler's state (what each CPU ran and
 * had queued, the tasks that waited and for how long), which ops.exit saved
 * on an error exit: the reason alone does not say why a task stalled.
 */
static void print_dump(const struct sched *s, FILE *f)
{
	static struct moirai_exit_dump d;
	__u32 key = 0;
	size_t len;

	if (s->dump_fd < 0 || bpf_map_lookup_elem(s->dump_fd, &key, &d) < 0)
		return;
	d.text[sizeof(d.text) - 1] = '\0';
	len = strlen(d.text);
	if (!len)
		return;
	fprintf(f, "moirai: the kernel's dump of the scheduler's state:\n%s%s", d.text,
		d.text[len - 1] == '\n' ? "" : "\n");
	if (len == sizeof(d.text) - 1)
		fprintf(f, "moirai: (the dump was cut at %d bytes)\n", MOIRAI_EXIT_DUMP_LEN);
}

/*
 * Which shape of each reshaped kfunc this kernel bound (ops.init records
 * it in .data.kfuncs: moirai_shared.h, bpf/compat.bpf.h), one line on
 * stdout: the VM tests check it on each kernel they boot.
 */
static void print_kfuncs(const struct sched *s)
{
	static const char *const names[MOIRAI_KF_NR][4] = {
		[MOIRAI_KF_INSERT] = { NULL, "scx_bpf_dispatch", "scx_bpf_dsq_insert",
				       "scx_bpf_dsq_insert___v2" },
		[MOIRAI_KF_INSERT_VTIME] = { NULL, "scx_bpf_dispatch_vtime",
					     "scx_bpf_dsq_insert_vtime",
					     "__scx_bpf_dsq_insert_vtime" },
		[MOIRAI_KF_MOVE_TO_LOCAL] = { NULL, "scx_bpf_consume", "scx_bpf_dsq_move_to_local",
					      "scx_bpf_dsq_move_to_local___v2" },
		[MOIRAI_KF_SET_VTIME] = { NULL, "p->scx.dsq_vtime=",
					  "scx_bpf_task_set_dsq_vtime" },
	};
	struct bpf_map *map = bpf_object__find_map_by_name(s->obj, ".data.kfuncs");
	unsigned char shape[64];
	__u32 key = 0;

	if (!map || bpf_map__value_size(map) < MOIRAI_KF_NR ||
	    bpf_map__value_size(map) > sizeof(shape) ||
	    bpf_map_lookup_elem(bpf_map__fd(map), &key, shape) < 0)
		return;
	printf("moirai: kernel kfuncs:");
	for (int k = 0; k < MOIRAI_KF_NR; k++)
		printf(" %s", shape[k] < 4 && names[k][shape[k]] ? names[k][shape[k]] : "(none)");
	printf("\n");
	fflush(stdout);
}

static void sched_close(struct sched *s)
{
	if (s->link) {
		/* Detaching is synchronous; the state settles right after. */
		bpf_link__destroy(s->link);
		s->link = NULL;
		if (!wait_state("disabled", 5000))
			fprintf(stderr, "moirai: warning: sched_ext still not disabled after 5 s\n");
	}
	if (s->meta)
		munmap(s->meta, META_LEN);
	s->meta = NULL;
	bpf_object__close(s->obj);
	s->obj = NULL;
}

/*
 * Loads and attaches the scheduler. Returns 0 with s holding it, or an exit
 * status (having said why).
 */
static int sched_open(const struct mc_load_opts *opts, struct sched *s)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo, .object_name = "moirai",
		    .pin_root_path = MOIRAI_PIN_DIR);
	struct moirai_exit_info ei;
	struct bpf_map *ops, *exit_map;
	struct mc_topo topo;
	struct mc_scx scx;
	char seqbuf[32];
	bool have_seq;
	__u64 seq = 0;
	int err;

	memset(s, 0, sizeof(*s));
	s->exit_fd = -1;
	s->dump_fd = -1;
	s->partial = opts->partial;
	if (check_can_load() < 0)
		return MC_EXIT_FAIL;
	if (ensure_pin_dir() < 0)
		return MC_EXIT_FAIL;

	/*
	 * A CPU that goes on or offline between reading the topology (next)
	 * and the attach is missed by cpu_online/cpu_offline: given the
	 * hotplug sequence number read before, the kernel then stops the
	 * scheduler at once, asking for a restart (cmd_load() restarts it).
	 */
	have_seq = mc_read_line(MC_SCX_DIR "/hotplug_seq", seqbuf, sizeof(seqbuf)) > 0;
	if (have_seq)
		seq = strtoull(seqbuf, NULL, 10);
	err = mc_topo_read(&topo);
	if (err == -ENOMEM)
		return MC_EXIT_FAIL;
	if (err)
		fprintf(stderr, "moirai: warning: cannot read every NUMA node's cpulist; CPUs not "
				"listed count as node 0\n");
	if (topo.nr_cpus > MOIRAI_MAX_CPUS || topo.nr_nodes > MOIRAI_MAX_NODES) {
		fprintf(stderr,
			"moirai: this machine has %u possible CPUs and %u NUMA nodes; the scheduler "
			"supports at most %d CPUs and %d nodes\n",
			topo.nr_cpus, topo.nr_nodes, MOIRAI_MAX_CPUS, MOIRAI_MAX_NODES);
		mc_topo_free(&topo);
		return MC_EXIT_FAIL;
	}

	libbpf_set_print(print_libbpf);
	s->obj = bpf_object__open_mem(moirai_bpf_obj_start,
				      moirai_bpf_obj_end - moirai_bpf_obj_start, &oo);
	if (!s->obj) {
		err = -errno;
		fprintf(stderr, "moirai: cannot open the embedded BPF object: %s\n", errstr(err));
		mc_topo_free(&topo);
		return MC_EXIT_FAIL;
	}
	err = configure(s->obj, opts, &topo);
	mc_topo_free(&topo);
	if (err)
		goto fail;
	ops = choose_ops(s->obj, opts->partial);
	if (!ops || check_kept_maps(s->obj) < 0)
		goto fail;
	if (have_seq && set_ops_field(s->obj, ops, "hotplug_seq", &seq, sizeof(seq)) < 0)
		goto fail;

	err = bpf_object__load(s->obj);
	if (err) {
		fprintf(stderr, "moirai: loading the BPF scheduler failed: %s (libbpf's messages "
				"above say where)\n",
			errstr(err));
		note_missing_kfuncs(s->obj);
		goto fail;
	}
	exit_map = bpf_object__find_map_by_name(s->obj, "exit_info");
	if (exit_map)
		s->exit_fd = bpf_map__fd(exit_map);
	exit_map = bpf_object__find_map_by_name(s->obj, "exit_dump");
	if (exit_map)
		s->dump_fd = bpf_map__fd(exit_map);

	s->link = bpf_map__attach_struct_ops(ops);
	if (!s->link) {
		err = -errno;
		fprintf(stderr, "moirai: attaching the scheduler failed: %s%s\n", errstr(err),
			err == -EBUSY ? " (another sched_ext scheduler was loaded meanwhile)" : "");
		if (read_exit(s, &ei))
			mc_exit_print(stderr, "moirai", &ei);
		goto fail;
	}
	/* ops.init failing still "succeeds" the attach: look at exit_info first. */
	for (int waited = 0;; waited += 20) {
		if (read_exit(s, &ei)) {
			fprintf(stderr, "moirai: the scheduler failed to start\n");
			mc_exit_print(stderr, "moirai", &ei);
			print_dump(s, stderr);
			goto fail;
		}
		mc_scx_read(&scx);
		if (!strcmp(scx.state, "enabled"))
			break;
		if (waited >= 5000) {
			fprintf(stderr, "moirai: attached, but sched_ext is %s after 5 s\n",
				scx.state);
			goto fail;
		}
		sleep_ms(20);
	}
	/*
	 * Only the load that won the attach pins its statistics: a load that
	 * raced it and lost would otherwise leave the pins on its own maps,
	 * which nothing updates.
	 */
	pin_stats(s->obj);
	print_kfuncs(s);
	sweep_stale(s);
	/* register before meta's version: a runtime that sees the version
	 * finds the program. */
	set_access(s->obj, opts);
	open_meta(s);
	if (!mc_scx_is_moirai(&scx))
		fprintf(stderr, "moirai: warning: the kernel names the scheduler '%s', not '%s' "
				"(status will not recognize it)\n",
			scx.ops, MOIRAI_OPS_NAME);
	err = mc_pidfile_write(getpid(), opts->partial, opts->slice_us);
	if (err)
		fprintf(stderr, "moirai: warning: cannot write %s: %s (unload will not find this "
				"process)\n",
			MC_PIDFILE, strerror(-err));
	return 0;
fail:
	sched_close(s);
	return MC_EXIT_FAIL;
}

static void print_loaded(const struct mc_load_opts *opts)
{
	struct mc_topo topo;

	if (opts->partial)
		printf("moirai: scheduler loaded (partial switch: only Moirai workers are scheduled "
		       "by moirai; in this mode SCHED_EXT tasks rank below normal tasks, so any "
		       "busy process can starve the workers (use it on dedicated hosts))\n");
	else
		printf("moirai: scheduler loaded (full switch: every task is scheduled by moirai)\n");
	if (mc_topo_read(&topo) != -ENOMEM)
		printf("moirai: slice %lu us, %u CPUs, %u NUMA node%s; maps in %s; pid %d\n",
		       opts->slice_us, topo.nr_cpus, topo.nr_nodes, topo.nr_nodes == 1 ? "" : "s",
		       MOIRAI_PIN_DIR, (int)getpid());
	mc_topo_free(&topo);
	if (opts->group)
		printf("moirai: runtimes of root and of group %s (gid %u) may register their "
		       "workers\n", opts->group, (unsigned)opts->gid);
	else
		printf("moirai: only root's runtimes may register their workers (--group NAME lets "
		       "a group's in)\n");
	fflush(stdout);
}

static int block_signals(sigset_t *old, bool with_chld)
{
	sigset_t set;
	int fd;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	if (with_chld)
		sigaddset(&set, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &set, old) < 0)
		return -errno;
	fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (fd < 0) {
		int err = -errno;
		fprintf(stderr, "moirai: signalfd: %s\n", strerror(-err));
		sigprocmask(SIG_SETMASK, old, NULL);
		return err;
	}
	return fd;
}

/*
 * What load and run start with: block the signals we read from a signalfd
 * (SIGCHLD too for run), load the scheduler, say so. Returns the signalfd,
 * or -1 with the exit status in *ret and nothing left blocked or open.
 */
static int start(const struct mc_load_opts *opts, struct sched *s, sigset_t *old,
		 bool with_chld, int *ret)
{
	int sfd = block_signals(old, with_chld), err;

	if (sfd < 0) {
		*ret = MC_EXIT_FAIL;
		return -1;
	}
	err = sched_open(opts, s);
	if (err) {
		close(sfd);
		sigprocmask(SIG_SETMASK, old, NULL);
		*ret = err;
		return -1;
	}
	print_loaded(opts);
	return sfd;
}

/* The next pending signal (its siginfo in *si), 0 if none. */
static int next_signal(int sfd, struct signalfd_siginfo *si)
{
	if (read(sfd, si, sizeof(*si)) != sizeof(*si))
		return 0;
	return (int)si->ssi_signo;
}

/*
 * The kernel's exit codes (include/linux/sched/ext.h, not in the uapi): bit
 * 48 asks the loader to restart the scheduler (a CPU went on or offline
 * during the load, or one whose node was unknown came online).
 */
#define ECODE_ACT_RESTART (1ULL << 48)
#define EXIT_SYSRQ 67	/* SCX_EXIT_SYSRQ: an operator's sysrq-S */

/* What check_alive() found. */
enum gone { ALIVE = 0, GONE_ERROR, GONE_ASKED, GONE_OTHER, GONE_RESTART };

static enum gone gone_kind(const struct moirai_exit_info *ei)
{
	if (ei->kind >= 1024)
		return GONE_ERROR;
	if ((__u64)ei->exit_code & ECODE_ACT_RESTART)
		return GONE_RESTART;
	return ei->kind == EXIT_SYSRQ ? GONE_ASKED : GONE_OTHER;
}

static enum gone report_exit(const struct sched *s, const struct moirai_exit_info *ei)
{
	mc_exit_print(stdout, "moirai", ei);
	if (ei->kind >= 1024)
		print_dump(s, stdout);
	return gone_kind(ei);
}

/* Checks whether the scheduler is still up; if not, reports why it went. */
static enum gone check_alive(const struct sched *s)
{
	struct moirai_exit_info ei;
	struct mc_scx scx;

	if (read_exit(s, &ei))
		return report_exit(s, &ei);
	mc_scx_read(&scx);
	if (scx.supported && strcmp(scx.state, "disabled"))
		return ALIVE;
	/* ops.exit runs before the state reads disabled: look once more. */
	if (read_exit(s, &ei))
		return report_exit(s, &ei);
	printf("moirai: the kernel disabled the scheduler (it left no exit info)\n");
	return GONE_ERROR;
}

/*
 * The kernel asked for a restart: load the scheduler again, as scx's
 * loaders do, unless it asked too often (more than MAX_RESTARTS times in
 * RESTART_WINDOW_S seconds: something keeps it from running). Returns 0
 * with the scheduler up again, or -1 with s closed.
 */
#define MAX_RESTARTS 5
#define RESTART_WINDOW_S 60

static int restart(const struct mc_load_opts *opts, struct sched *s, time_t *times)
{
	time_t now = time(NULL);
	int i;

	sched_close(s);
	if (now - times[0] < RESTART_WINDOW_S) {
		fprintf(stderr, "moirai: not restarting: the kernel asked %d times in %d s\n",
			MAX_RESTARTS + 1, RESTART_WINDOW_S);
		return -1;
	}
	for (i = 0; i < MAX_RESTARTS - 1; i++)
		times[i] = times[i + 1];
	times[MAX_RESTARTS - 1] = now;
	printf("moirai: restarting the scheduler, as the kernel asked\n");
	fflush(stdout);
	if (sched_open(opts, s)) {
		fprintf(stderr, "moirai: the restart failed\n");
		return -1;
	}
	printf("moirai: scheduler restarted\n");
	fflush(stdout);
	return 0;
}

/*
 * Exit status: MC_EXIT_OK when the scheduler was unloaded as asked (a signal,
 * `moiraictl unload`, sysrq-S), MC_EXIT_FAIL when it stopped otherwise (an
 * error, a stall, the kernel unregistered it), MC_EXIT_RESTART when the
 * kernel asked for a restart that could not be done.
 */
int cmd_load(const struct mc_load_opts *opts)
{
	struct signalfd_siginfo si;
	struct sched s;
	sigset_t old;
	time_t restarts[MAX_RESTARTS] = { 0 };
	enum gone gone = ALIVE;
	int sfd, ret, sig = 0;

	sfd = start(opts, &s, &old, false, &ret);
	if (sfd < 0)
		return ret;
	for (;;) {
		struct pollfd pfd = { .fd = sfd, .events = POLLIN };

		if (poll(&pfd, 1, 100) > 0)
			sig = next_signal(sfd, &si);
		if (sig)
			break;
		note_refusals(&s);
		gone = check_alive(&s);
		if (gone == GONE_RESTART && restart(opts, &s, restarts) == 0)
			continue;
		if (gone)
			break;
	}
	sched_close(&s);
	mc_pidfile_remove(getpid());
	close(sfd);
	if (sig) {
		printf("moirai: scheduler unloaded (%s)\n", strsignal(sig));
		return MC_EXIT_OK;
	}
	return gone == GONE_ASKED ? MC_EXIT_OK : gone == GONE_RESTART ? MC_EXIT_RESTART : MC_EXIT_FAIL;
}

int cmd_run(const struct mc_load_opts *opts, char **argv)
{
	struct signalfd_siginfo si;
	struct sched s;
	sigset_t old;
	pid_t child;
	time_t restarts[MAX_RESTARTS] = { 0 };
	int sfd, ret, status = 0;
	enum gone gone = ALIVE;
	bool reaped = false;

	sfd = start(opts, &s, &old, true, &ret);
	if (sfd < 0)
		return ret;
	fflush(stderr);

	child = fork();
	if (child < 0) {
		fprintf(stderr, "moirai: fork: %s\n", strerror(errno));
		sched_close(&s);
		mc_pidfile_remove(getpid());
		close(sfd);
		return MC_EXIT_FAIL;
	}
	if (child == 0) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		execvp(argv[0], argv);
		fprintf(stderr, "moirai: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}

	while (!reaped) {
		struct pollfd pfd = { .fd = sfd, .events = POLLIN };
		int sig;

		if (poll(&pfd, 1, 100) > 0) {
			while ((sig = next_signal(sfd, &si))) {
				/*
				 * A signal from the terminal (SI_KERNEL) reached the
				 * command too, being in our process group; pass on
				 * only those sent to us alone, by kill().
				 */
				if (sig != SIGCHLD && si.ssi_code != SI_KERNEL)
					kill(child, sig);
			}
		}
		if (!gone)
			note_refusals(&s);
		if (waitpid(child, &status, WNOHANG) == child) {
			reaped = true;
		} else if (!gone && (gone = check_alive(&s))) {
			if (gone == GONE_RESTART && restart(opts, &s, restarts) == 0)
				gone = ALIVE;
			else
				printf("moirai: %s keeps running, on the default scheduler\n", argv[0]);
		}
	}
	sched_close(&s);
	mc_pidfile_remove(getpid());
	close(sfd);
	if (!gone)
		printf("moirai: scheduler unloaded\n");
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

int cmd_unload(void)
{
	struct mc_loader ld;
	struct mc_scx scx;
	int waited;

	if (mc_loader_read(&ld) == 0) {
		if (kill(ld.pid, SIGTERM) < 0) {
			fprintf(stderr, "moirai: cannot signal the loader (pid %d): %s\n",
				(int)ld.pid, strerror(errno));
			return MC_EXIT_FAIL;
		}
		for (waited = 0; waited < 10000; waited += 50) {
			mc_scx_read(&scx);
			if (!mc_pid_alive(ld.pid) &&
			    (!scx.supported || !strcmp(scx.state, "disabled")))
				break;
			sleep_ms(50);
		}
		if (waited >= 10000) {
			fprintf(stderr, "moirai: the loader (pid %d) %s after 10 s (sched_ext %s)\n",
				(int)ld.pid, mc_pid_alive(ld.pid) ? "is still running" : "exited",
				scx.state);
			return MC_EXIT_FAIL;
		}
		printf("moirai: unloaded (loader pid %d exited)\n", (int)ld.pid);
		return MC_EXIT_OK;
	}
	mc_scx_read(&scx);
	if (mc_scx_is_moirai(&scx)) {
		fprintf(stderr,
			"moirai: the scheduler is %s but no moiraictl holds it (%s missing or "
			"stale); it ends when the process holding its link exits\n",
			scx.state, MC_PIDFILE);
		return MC_EXIT_FAIL;
	}
	if (scx.supported && scx.ops[0])
		printf("moirai: not loaded (the loaded sched_ext scheduler is %s)\n", scx.ops);
	else
		printf("moirai: not loaded\n");
	return MC_EXIT_OK;
}
