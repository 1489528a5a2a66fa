/*
 * moiraictl.h - what the files of moiraictl share.
 *
 * moiraictl.c parses the command line and holds the helpers every command
 * uses (sysfs and /proc readers, the pid file, the kernel's sched_ext state);
 * topo.c reads the CPU and NUMA topology from sysfs; load.c opens, configures,
 * loads and attaches the embedded BPF scheduler and holds it (load, run,
 * unload); snap.c reads the pinned maps into a struct mc_snap; show.c prints
 * snapshots (status, dump, top); json.c is a small JSON writer.
 *
 * Functions return >= 0 on success and a negative errno on failure, like the
 * rest of Moirai. Messages for the user are printed by the command functions
 * (cmd_*), which return the process exit status.
 */
#ifndef MOIRAICTL_H
#define MOIRAICTL_H

#include <linux/types.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "moirai_shared.h"
#include <moirai/stats.h>

#define MC_SCX_DIR "/sys/kernel/sched_ext"
#define MC_PIDFILE "/run/moiraictl.pid"
#define MC_BPFFS "/sys/fs/bpf"

/* Exit statuses. */
#define MC_EXIT_OK 0
#define MC_EXIT_FAIL 1
#define MC_EXIT_USAGE 2
#define MC_EXIT_RESTART 3	/* load: the kernel asked for a restart that failed */

extern int mc_verbose;

/* moiraictl.c: helpers. */
void mc_usage(FILE *f);
int mc_read_file(const char *path, char *buf, size_t size);
int mc_read_line(const char *path, char *buf, size_t size);
int mc_parse_uint(const char *s, unsigned long long max, unsigned long long *out);

/* The kernel's view of sched_ext, from /sys/kernel/sched_ext. */
struct mc_scx {
	bool supported;	      /* the kernel has sched_ext */
	char state[32];	      /* "enabled", "disabled", "enabling", "disabling" */
	char ops[64];	      /* name of the loaded scheduler, "" if none */
	long long enable_seq; /* -1 if unknown */
};
void mc_scx_read(struct mc_scx *scx);
bool mc_scx_is_moirai(const struct mc_scx *scx);

/* The loader's pid file: pid, switch mode ("full" or "partial"), slice in us. */
struct mc_loader {
	pid_t pid;	/* 0: no live loader */
	char mode[16];	/* "" if unknown */
	unsigned long slice_us;
};
int mc_pidfile_write(pid_t pid, bool partial, unsigned long slice_us);
void mc_pidfile_remove(pid_t pid);
int mc_loader_read(struct mc_loader *ld);
bool mc_pid_is_moiraictl(pid_t pid);
bool mc_pid_alive(pid_t pid);

/* topo.c: the machine's CPUs and NUMA nodes. */
struct mc_topo {
	unsigned int nr_cpus;	/* possible CPUs: highest possible CPU id + 1 */
	unsigned int nr_nodes;	/* highest node id + 1; 1 without NUMA in sysfs */
	unsigned int nr_online_nodes; /* node directories found */
	int *cpu_to_node;	/* nr_cpus entries; 0 where unknown */
};
int mc_topo_read(struct mc_topo *topo);
void mc_topo_free(struct mc_topo *topo);
int mc_cpulist_parse(const char *s, void (*fn)(unsigned int cpu, void *arg), void *arg,
		     unsigned int *max_cpu);
int mc_nr_possible_cpus(void);

/* load.c: the commands that load the scheduler. */
struct mc_load_opts {
	bool partial;
	unsigned long slice_us;
	const char *group; /* --group: who may be steered besides root, or NULL */
	gid_t gid;	   /* its id */
};
int cmd_load(const struct mc_load_opts *opts);
int cmd_run(const struct mc_load_opts *opts, char **argv);
int cmd_unload(void);

struct mc_json;

/* rt.c: the runtimes' own counters (<moirai/stats.h>), exported on any kernel. */
struct mc_rt {
	pid_t pid;
	unsigned id;			/* the runtime's number in its process */
	char path[640];			/* the pin or the file */
	bool bpf;			/* a pinned map (else a /dev/shm file) */
	bool alive;			/* its process (and worker 0's thread) exists */
	int bad;			/* -EPROTO: records of a version we cannot read */
	char comm[32];
	struct mr_worker_stats *recs;	/* nworkers, then the outside record */
	size_t nrecs;
};
struct mc_rts {
	struct mc_rt *rt;
	size_t n, cap;
	uint64_t now_ns;		/* CLOCK_MONOTONIC when read */
	int err;			/* first error reading one, 0 if none */
};
int mc_rts_read(struct mc_rts *rts);
void mc_rts_free(struct mc_rts *rts);
void mc_rts_print(FILE *f, const struct mc_rts *rts, const struct mc_rts *prev);
void mc_rts_json(struct mc_json *j, const struct mc_rts *rts);
const char *mc_wstate_name(uint32_t state);
int cmd_clean(void);
int cmd_dump_pid(pid_t pid);

/* trace.c: a Perfetto timeline of a live runtime from its USDT probes. */
int cmd_trace(pid_t pid, double seconds, const char *out);

/* snap.c: a snapshot of the pinned maps and the kernel's state. */
struct mc_worker {
	__u32 tid;
	struct moirai_worker w;
	bool have_load;		/* worker_load[w.slot] is this worker's */
	struct moirai_load load;
	int cpu;		/* CPU it last ran on, -1 if unknown */
	bool stale;		/* the thread does not exist any more */
};

struct mc_snap {
	struct mc_scx scx;
	struct mc_loader loader;
	bool pinned;		/* the workers map is pinned */
	bool workers_ok;	/* ... and could be read */
	int map_err;		/* first error opening a pinned map, 0 if none */
	const char *map_err_name;
	struct mc_worker *workers;
	unsigned int nr_workers;
	struct moirai_cpu_stats *cpu;	/* NULL if cpu_stats is not pinned */
	unsigned int nr_cpu;
	struct moirai_node_stats *node;	/* NULL if node_stats is not pinned */
	unsigned int nr_node;
	bool have_lat;
	struct moirai_latency lat;
	bool have_exit;
	struct moirai_exit_info exit;
	struct mc_rts rts;		/* the runtimes' counters (MC_SNAP_RUNTIMES) */
	double when;		/* CLOCK_MONOTONIC seconds */
};

#define MC_SNAP_WORKERS 0x1
#define MC_SNAP_STATS 0x2
#define MC_SNAP_RUNTIMES 0x4
int mc_snap_take(struct mc_snap *snap, unsigned int what);
void mc_snap_free(struct mc_snap *snap);
const char *mc_worker_state_name(__u32 state);
const char *mc_exit_kind_name(long long kind);
void mc_exit_print(FILE *f, const char *prefix, const struct moirai_exit_info *ei);
__u64 mc_lat_quantile(const __u64 *buckets, __u64 max_ns, double q);

/* show.c: the commands that print. */
int cmd_status(bool json);
int cmd_dump(bool json);
int cmd_top(long iterations);

/* json.c: a JSON writer with comma and nesting bookkeeping. */
#define MC_JSON_DEPTH 16
struct mc_json {
	FILE *f;
	int depth;
	bool first[MC_JSON_DEPTH];
};
void mc_json_init(struct mc_json *j, FILE *f);
void mc_json_obj(struct mc_json *j, const char *key);
void mc_json_arr(struct mc_json *j, const char *key);
void mc_json_end_obj(struct mc_json *j);
void mc_json_end_arr(struct mc_json *j);
void mc_json_str(struct mc_json *j, const char *key, const char *val);
void mc_json_u64(struct mc_json *j, const char *key, unsigned long long val);
void mc_json_s64(struct mc_json *j, const char *key, long long val);
void mc_json_dbl(struct mc_json *j, const char *key, double val);
void mc_json_bool(struct mc_json *j, const char *key, bool val);
void mc_json_null(struct mc_json *j, const char *key);

#endif /* MOIRAICTL_H */
