/*
 * moirai_shared.h - what the sched_ext scheduler (bpf/moirai.bpf.c), the
 * runtime (user/sched/scx.c) and moiraictl (tools/moiraictl) agree on: the
 * pinned map names, the layouts of their values, and the worker states.
 *
 * Included by BPF code (after vmlinux.h) and by user space (after
 * <linux/types.h>); it uses only __u32-style types and no libc.
 *
 * The maps live under MOIRAI_PIN_DIR while a scheduler has ever been loaded
 * on this boot:
 *  - register (a BPF_PROG_TYPE_SYSCALL program, not a map): what a worker
 *    thread runs with bpf(BPF_PROG_TEST_RUN) and a struct moirai_reg to
 *    register or unregister itself. It runs in the caller's context and
 *    acts on the calling thread only (bpf_get_current_pid_tgid()), so a
 *    process can register its own threads and no others. Pinned anew by
 *    each load, like the statistics.
 *  - workers (hash, tid -> struct moirai_worker): written by `register`
 *    when a worker thread starts and deleted when it exits; the scheduler
 *    deletes entries of threads that exit without doing so (a crashed
 *    process). Kept across loads (pinned by name, reused). Only root may
 *    open it: whoever can write it could register any thread.
 *
 * Who may be steered: `register` is pinned mode 0600 (root's runtimes
 * only), or 0660 with the group an operator names (`moiraictl load --group
 * NAME`); worker_load and meta are pinned 0600, or 0640 with that group.
 * Since Linux 6.5, running a pinned program and using a pinned map need
 * only the pin's file permissions, no capability.
 *  - worker_load (array, BPF_F_MMAPABLE, MOIRAI_LOAD_SLOTS x struct
 *    moirai_load): one line per registered worker, written by BPF only.
 *    `register` claims a line for its caller and fills in who holds it;
 *    the scheduler copies the worker's state, queue depth and update count
 *    into it from the worker's own memory (the struct moirai_hints whose
 *    address the worker registered), and only while that very thread runs
 *    on the CPU (stopping(), current == the worker): what a line says about
 *    a worker is what that worker's process wrote in its own address space,
 *    so no process can state another's hints. It sets `preempted` too.
 *    Pinned 0600 (root's), or 0640 with the operator's group: members may
 *    read it (lookups), nobody but root may write it. Root's runtimes map
 *    it read-only to read `preempted` (the kernel maps a BPF map shared
 *    only through a descriptor open for writing). Kept across loads.
 *    A line whose thread exited while no scheduler was loaded stays held
 *    (its workers entry says so) until the next load's sweep.
 *  - meta (array, BPF_F_MMAPABLE, one struct moirai_meta): the layout
 *    version of all of these, written by the loader after each load and
 *    checked by the loader (a pin of another version is refused) and by the
 *    runtime (it registers only with maps of its own version, which it
 *    reads through a read-only descriptor); and the count of registrations
 *    refused because a map was full, which `register` keeps (the loader
 *    reports it). Kept across loads.
 *  - cpu_stats, node_stats, latency, exit_info, exit_dump: the scheduler's
 *    statistics and last words, fresh for each load, left pinned after
 *    unload so that they can be read. All three statistics maps are
 *    BPF_MAP_TYPE_PERCPU_ARRAY (a lookup from user space returns a copy of
 *    the entry per possible CPU, each rounded up to 8 bytes). cpu_stats
 *    has one entry: CPU c's copy holds CPU c's counters, read as they are.
 *    node_stats (an entry per node) and latency (one entry): every CPU
 *    counts what it sees in its own copy, with no atomic, and a reader
 *    sums the copies of an entry, except latency.max_ns, of which it takes
 *    the largest. The gauges node_stats.runnable_workers and .cpus are
 *    sums of +1s and -1s counted on whichever CPU saw the change: exact at
 *    rest, they can be off (even below zero) by the changes made while a
 *    reader walks the copies. None of these maps is mmappable (nor was
 *    one before): read them with lookups.
 * Every value type has BTF in the object, so `bpftool map dump pinned
 * /sys/fs/bpf/moirai/<map>` prints the fields by name.
 */
#ifndef MOIRAI_SHARED_H
#define MOIRAI_SHARED_H

#define MOIRAI_PIN_DIR "/sys/fs/bpf/moirai"
#define MOIRAI_OPS_NAME "moirai"

/* Bump when the layout or the meaning of a pinned map changes.
 * 2: workers is written by the `register` program, not by runtimes.
 * 3: cpu_stats, node_stats and latency are per-CPU arrays (a lookup
 *    returns a value for each possible CPU); cpu_stats has one entry,
 *    node_stats one per node.
 * 4: worker_load is written by BPF only: `register` claims the line and
 *    records the address of the worker's struct moirai_hints, which
 *    struct moirai_reg and struct moirai_worker carry; moirai_worker also
 *    holds its tid and the thread's exec id. */
#define MOIRAI_LAYOUT_VERSION 4
#define MOIRAI_REGISTER_PROG "register" /* pin name of the registration program */

#define MOIRAI_MAX_WORKERS 4096 /* entries of the workers hash */
#define MOIRAI_LOAD_SLOTS 1024	/* entries of worker_load */
#define MOIRAI_MAX_CPUS 1024	/* CPUs the scheduler knows the node of */
#define MOIRAI_MAX_NODES 64	/* node_stats entries */
#define MOIRAI_LAT_BUCKETS 40	/* bucket i counts latencies in [2^i, 2^(i+1)) ns */
/* The watchdog: a task runnable this long without running stops the scheduler. */
#define MOIRAI_TIMEOUT_MS 10000

/* A worker's state as the runtime publishes it (struct moirai_load.state). */
enum moirai_worker_state {
	MOIRAI_W_NONE = 0,	/* slot free, or not yet published */
	MOIRAI_W_RUNNING = 1,	/* running a job or fiber */
	MOIRAI_W_SEARCHING = 2, /* out of local work, spinning over the others' deques */
	MOIRAI_W_PARKED = 3,	/* about to sleep, or asleep, on its futex */
};

/* workers: key __u32 tid. */
struct moirai_worker {
	__u32 pid;    /* process (thread group) id */
	__u32 rt_id;  /* runtime number within the process, from 1 */
	__u32 index;  /* worker index within the runtime */
	__s32 node;   /* NUMA node of the worker's home CPUs */
	__u32 slot;   /* index in worker_load; MOIRAI_SLOT_CLAIMING while
		       * `register` claims one */
	__u32 tid;    /* the key: a line is this worker's only while its tid
		       * field says so */
	__u64 hints;  /* address of the worker's struct moirai_hints, in its
		       * own process */
	__u64 exec_id; /* the thread's self_exec_id at registration: after an
			* execve the entry is void (another program, which
			* registered nothing, runs in that thread) */
};

#define MOIRAI_SLOT_CLAIMING 0xffffffffu

/*
 * What a worker publishes about itself, in its own memory (the runtime's
 * struct mr__worker), with plain stores; the scheduler copies it into the
 * worker's worker_load line while the worker runs (moirai_shared.h's
 * worker_load). 16 bytes.
 */
struct moirai_hints {
	__u32 state;   /* enum moirai_worker_state */
	__u32 depth;   /* jobs queued in its deque (see struct moirai_load) */
	__u64 updates; /* number of updates published (monitoring) */
};

/* What a thread asks of `register` (the context of BPF_PROG_TEST_RUN); the
 * program returns 0 or a negative errno. */
enum moirai_reg_op {
	MOIRAI_REG_ADD = 1,  /* register the calling thread as worker index of
			      * runtime rt_id, home node, publishing at hints;
			      * the program claims a free worker_load line,
			      * looking from slot on, and returns its index */
	MOIRAI_REG_DEL = 2,  /* unregister the calling thread */
	MOIRAI_REG_FULL = 3, /* count a registration refused for want of a free
			      * worker_load line (meta.reg_full) */
};

struct moirai_reg {
	__u32 op;     /* enum moirai_reg_op */
	__u32 rt_id;
	__u32 index;
	__s32 node;
	__u32 slot;   /* where to start looking for a free line */
	__u32 pad;    /* 0 */
	__u64 hints;  /* the caller's struct moirai_hints */
};

/*
 * worker_load: one 64-byte line per slot, written by BPF only: tid, pid,
 * rt_id and index by `register`; state, depth and updates copied from the
 * worker's struct moirai_hints whenever it stops running; `preempted` set
 * while the worker is runnable but not running (stopping() with runnable)
 * and cleared when it runs again or the scheduler exits. The runtime reads
 * it to tell a searcher that is preempted (it finds no work until it runs
 * again) from one that is searching.
 */
struct moirai_load {
	__u32 tid;	/* owner; 0 = free (claimed by CAS) */
	__u32 state;	/* enum moirai_worker_state */
	__u32 depth;	/* jobs queued in the worker's deque at the last update
			 * (published on each state change, and when the deque
			 * becomes empty or stops being empty), as of the
			 * worker's last stop */
	__u32 pid;
	__u32 rt_id;
	__u32 index;
	__u64 updates;	/* number of updates published (monitoring), as of the
			 * worker's last stop */
	__u32 preempted; /* 1: runnable and waiting for a CPU (the scheduler's) */
	__u32 pad0;
	__u64 pad[3];
};

/* meta: one entry, mapped by the runtime and the loader. */
struct moirai_meta {
	__u32 version;	 /* MOIRAI_LAYOUT_VERSION of the maps; 0 until a loader sets it */
	__u32 pad0;
	__u64 reg_full;	 /* worker registrations refused: no free worker_load line, or
			  * the workers hash full (the worker runs unsteered);
			  * counted by `register` */
	__u64 pad[6];
};

/* cpu_stats: key 0, per-CPU: CPU c's copy is CPU c's. */
struct moirai_cpu_stats {
	__u64 dispatch_local;	/* tasks this CPU took from its own node's queues */
	__u64 dispatch_remote;	/* tasks it pulled from another node's queues */
	__u64 direct;		/* tasks placed straight onto this idle CPU on wake-up */
	__u64 worker_runs;	/* times a Moirai worker started running here */
	__u64 other_runs;	/* times any other task started running here */
	__u64 kicks;		/* kicks sent to this CPU (idle wake-ups and preemptions) */
	__u64 preempt_kicks;	/* of which preemptions on behalf of a woken worker */
	__u64 wake_preempts;	/* a worker woken by a non-worker here took this CPU at once */
};

/* node_stats: key = NUMA node, per-CPU (see above). Worker counts are by
 * the worker's home node. */
struct moirai_node_stats {
	__u64 dispatches;	   /* tasks moved from this node's queues to a CPU */
	__u64 worker_home_runs;	   /* a worker started running on a CPU of its home node */
	__u64 worker_remote_runs;  /* ... on a CPU of another node */
	__u64 worker_home_ns;	   /* worker run time on its home node */
	__u64 worker_remote_ns;	   /* worker run time elsewhere */
	__u64 migrations;	   /* a worker ran on a different node than the time before */
	__u64 remote_pulls;	   /* workers taken by another node's idle CPU (overload) */
	__s64 runnable_workers;	   /* workers of this home node now runnable (gauge) */
	__u64 cpus;		   /* CPUs of this node (as the loader configured) */
};

/* latency: one entry, per-CPU (see above); wake-up to run of workers. */
struct moirai_latency {
	__u64 count;
	__u64 sum_ns;
	__u64 max_ns;
	__u64 log2_ns[MOIRAI_LAT_BUCKETS];
};

/* exit_info: one entry, written by ops.exit. kind 0 = still running. */
struct moirai_exit_info {
	__s64 kind;		/* enum scx_exit_kind: 1 done, 64+ unregistered, 1024+ error */
	__s64 exit_code;
	char reason[128];
	char msg[1024];
};

/* exit_dump: one entry, written by ops.exit: the kernel's dump of the
 * scheduler's state on an error exit (SCX_EXIT_ERROR and above), "" else. */
#define MOIRAI_EXIT_DUMP_LEN 32768
struct moirai_exit_dump {
	char text[MOIRAI_EXIT_DUMP_LEN];
};

/*
 * kfunc_shapes (the scheduler's ".data.kfuncs" section, not a pinned map):
 * which shape of each reshaped kfunc the running kernel bound
 * (bpf/compat.bpf.h), one byte per kfunc, written by ops.init and printed by
 * `moiraictl load`. 0: none fits; else the kernel generation of the shape:
 * 1 its 6.12 form, 2 the 6.13 renaming, 3 the form of 6.19 (insert,
 * insert_vtime) or 7.1 (move_to_local). For set_vtime 1 is a plain write of
 * p->scx.dsq_vtime, 2 the 6.19 kfunc.
 */
enum moirai_kfunc {
	MOIRAI_KF_INSERT,
	MOIRAI_KF_INSERT_VTIME,
	MOIRAI_KF_MOVE_TO_LOCAL,
	MOIRAI_KF_SET_VTIME,
	MOIRAI_KF_NR
};

#endif /* MOIRAI_SHARED_H */
