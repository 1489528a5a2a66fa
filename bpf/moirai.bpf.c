/*
 * moirai.bpf.c - the Moirai sched_ext scheduler.
 *
 * What it does. Every task gets a sound weighted-vtime policy (as in the
 * kernel's scx_simple, with actual run time charged at 100/weight), and
 * Moirai's worker threads - each registered in the pinned `workers` hash by
 * running moirai_register() (below), which acts on its caller only, their
 * state and queue depth copied into the `worker_load` array from the
 * worker's own memory while it runs (refresh_hints()) - are steered on top
 * of it:
 *
 *  - Queues. Two vtime-ordered dispatch queues per NUMA node: WORKER_DSQ(n)
 *    holds workers whose home node is n, OTHER_DSQ(n) everything else that
 *    last ran on n. A CPU of node n runs the lower-vtime head of its own two
 *    queues, so workers and other tasks share the node fairly by weight;
 *    nothing can starve, because every task's vtime only grows by what it
 *    ran and a waking task gets at most one slice of credit.
 *  - Locality. A waking worker goes straight to an idle CPU of its home node:
 *    with SMT, a CPU whose whole core is idle first (its previous CPU when
 *    that one's core is idle), found by the kernel's idle-CPU kfuncs on the
 *    node's mask; then its previous CPU, then any idle CPU of the node. An idle CPU with empty node queues pulls other
 *    tasks from any node, but pulls a worker from another node only when
 *    that node has more runnable workers than CPUs: kernel-level stealing
 *    that mirrors the runtime's own, so worker run time stays on the home
 *    node (NUMA-local memory) unless the node is overloaded.
 *  - Fairness and priority. Every task's vtime (task_ctx.vtime) grows by
 *    what it ran, scaled by 100/weight, and is never set back; on enqueue it
 *    is raised to the lag floor vtime_now - slice (a sleeper gains at most a
 *    slice, once, as in scx_bpfland). A worker that holds queued work (its
 *    siblings wait to steal it) is queued half a slice earlier than its
 *    vtime - on the queue key only - so it runs before searching workers and
 *    most other tasks, but never more than half a slice ahead of its fair
 *    share, however often it is enqueued. A worker preempted while searching
 *    (spinning over the others' deques) keeps its fair place but gets a
 *    quarter slice. The runtime
 *    counts it as a searcher and would wake nobody else for new work until
 *    it has looked or parked, so a worker's line in worker_load says when it
 *    waits for a CPU (`preempted`, set in stopping(), cleared in running()):
 *    a waker that finds only preempted searchers wakes a parked worker,
 *    which a CPU takes at once (below). A worker woken for work with no
 *    idle CPU on its node preempts (kick) a CPU of its node that runs a
 *    searching worker, or a non-worker whose key is later than the woken
 *    worker's; the vtime order then decides. The waker's own CPU is taken
 *    at once only on a synchronous wake-up (never from an interrupt, which
 *    would preempt whatever task happened to run).
 *  - Per-CPU kthreads go to their CPU's local queue (they must not wait
 *    behind the node queues, and cannot run anywhere else).
 *  - Affinity. A worker whose allowed CPUs (sched_setaffinity, a cpuset)
 *    hold no online CPU of its home node waits in the queue of the next
 *    node it may run on (queue_node()), chosen again when its mask changes
 *    (set_cpumask()); a migration-disabled worker waits on its CPU's node.
 *    Otherwise it would sit in a queue that none of its CPUs reads until
 *    the watchdog stopped the scheduler.
 *  - Hotplug. cpu_online()/cpu_offline() keep each node's mask and count of
 *    online CPUs. A CPU that was offline when the loader read the topology
 *    has no known node: when it comes online the scheduler exits asking
 *    for a restart (SCX_ECODE_ACT_RESTART), and moiraictl loads it again.
 *
 * Statistics. cpu_stats is a per-CPU array of one entry, CPU c's copy
 * being CPU c's counters, updated with atomic adds: a kick is counted on
 * the CPU kicked, by its kicker, but no two CPUs' counters share a cache
 * line (an array of 64-byte entries straddled lines: its values start 40
 * bytes into one, so every run and dispatch wrote lines of the
 * neighbouring CPUs' entries). node_stats and latency, which every CPU
 * updates on every run, stop and dispatch, are per-CPU arrays too: each
 * CPU adds to its own copy with plain adds (every callback that counts
 * runs with interrupts off, under a runqueue lock or p->pi_lock, so
 * nothing else on the CPU interleaves), and readers sum the copies
 * (moirai_shared.h). What decisions read across CPUs
 * - each node's runnable workers and online CPUs - is kept apart in
 * node_ctxs, one atomic per transition, on a line of its own per node.
 * exit_info receives the kernel's exit reason and message when the
 * scheduler stops, exit_dump the kernel's dump of its state on an error
 * exit (moiraictl prints them).
 *
 * Kernel compatibility: every kfunc is declared in compat.bpf.h, whatever
 * vmlinux.h declares; the ones renamed or reshaped since 6.12 (insert,
 * insert_vtime, move_to_local, set_vtime) go through its wrappers, which
 * call the newest shape the running kernel has (weak ksyms, resolved at
 * load). `make check-bpf-kernels` compiles this file against the BTF of the
 * oldest and the newest kernel the VM lab runs, and without any kfunc
 * declarations from vmlinux.h.
 *
 * When it behaves badly. A worker woken with no idle CPU on its node scans
 * that node's CPUs (node_cpus) for one to preempt: linear in the node's
 * size, fine for tens of CPUs per node. The runnable-worker count of a
 * node is one shared atomic, written whenever one of its workers wakes or
 * sleeps; cpu_stats' kick counters are written by the kicking CPU. LLC is
 * assumed to be the node (one socket per node); a node of several LLCs is
 * placed by SMT only. Tasks restricted to CPUs of one node may sit in
 * another node's OTHER_DSQ until a CPU there or an idle CPU anywhere takes
 * them.
 * Sparse node numbers are treated as nodes without CPUs.
 */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "moirai_shared.h"
#include "compat.bpf.h"

char _license[] SEC("license") = "GPL";

#define READ_ONCE(x) (*(const volatile typeof(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile typeof(x) *)&(x) = (v))

#define PF_EXITING 0x00000004
#define PF_KTHREAD 0x00200000

#define BPF_STRUCT_OPS(name, args...) SEC("struct_ops/" #name) BPF_PROG(name, ##args)
#define BPF_STRUCT_OPS_SLEEPABLE(name, args...) SEC("struct_ops.s/" #name) BPF_PROG(name, ##args)

/* ---- configuration (set by the loader before load) ---------------------- */

const volatile u64 slice_ns = 5000000;
const volatile u32 nr_cpus = 1;
const volatile u32 nr_nodes = 1;
const volatile s32 cpu_to_node[MOIRAI_MAX_CPUS];

#define WORKER_DSQ(n) (0x100ull + (n))
#define OTHER_DSQ(n) (0x200ull + (n))

/* ---- maps ---------------------------------------------------------------- */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MOIRAI_MAX_WORKERS);
	__type(key, u32);
	__type(value, struct moirai_worker);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} workers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MOIRAI_LOAD_SLOTS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, u32);
	__type(value, struct moirai_load);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} worker_load SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, u32);
	__type(value, struct moirai_meta);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} meta SEC(".maps");

/* CPU c's counters are CPU c's copy of the one entry (cstats()). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct moirai_cpu_stats);
} cpu_stats SEC(".maps");

/* Per-CPU (see moirai_shared.h); the loader sizes it to the node count. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MOIRAI_MAX_NODES);
	__type(key, u32);
	__type(value, struct moirai_node_stats);
} node_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct moirai_latency);
} latency SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct moirai_exit_info);
} exit_info SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct moirai_exit_dump);
} exit_dump SEC(".maps");

/*
 * Set to 1 (bpftool map update name .data.test ...) to make the scheduler
 * stop with an error at the next dispatch: how the VM tests reach the
 * error path. Its own section, so that writing it touches nothing else;
 * only root can reach an unpinned map.
 */
volatile u32 test_error SEC(".data.test");

/* Per-task scheduler state. */
struct task_ctx {
	u64 runnable_at;  /* when a worker became runnable (latency), 0 = none */
	u64 started_at;	  /* when it last started running */
	u64 vtime;	  /* virtual run time: grows by what it ran, scaled by
			   * 100/weight, and is never set back; the queue key
			   * (p->scx.dsq_vtime) may be a little earlier */
	s32 counted_node; /* node whose runnable_workers counts us, or -1 */
	s32 last_node;	  /* node a worker last ran on, or -1 */
	s32 home;	  /* home node of the worker while it runs, or -1 */
	s32 away_node;	  /* node a worker queues on when none of its allowed CPUs
			   * is an online CPU of its home node; -1 = choose again */
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_ctx);
} task_ctxs SEC(".maps");

/*
 * Each node's online CPUs, kept by cpu_online()/cpu_offline(), and what the
 * overload test compares: its runnable workers and online CPUs. The mask
 * pointer, read by every worker wake-up, and the runnable count, written by
 * every worker wake-up and sleep of the node, are 64 bytes apart: never on
 * one cache line.
 */
struct node_ctx {
	struct bpf_cpumask __kptr *online;
	u64 pad0[7];
	s64 runnable; /* workers queued on this node now runnable (atomic) */
	s64 cpus;     /* online CPUs (atomic; hotplug only) */
	u64 pad1[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MOIRAI_MAX_NODES);
	__type(key, u32);
	__type(value, struct node_ctx);
} node_ctxs SEC(".maps");

/* What each CPU runs now: lets a woken worker choose whom to preempt. */
enum { KIND_IDLE = 0, KIND_WORKER = 1, KIND_SEARCHING = 2, KIND_OTHER = 3, KIND_OFFLINE = 4 };

/* Per-CPU: written by the CPU itself in running()/stopping() (no line
 * shared with other CPUs' writes), read by others when they look for a CPU
 * to preempt (bpf_map_lookup_percpu_elem()). */
struct cpu_ctx {
	u64 key;  /* queue key the current task ran with: a woken task preempts
		   * only a CPU whose task has a later one */
	u32 kind; /* KIND_* of what runs there */
	u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct cpu_ctx);
} cpu_ctxs SEC(".maps");

/* Largest vtime that has started running: the fair "now". */
u64 vtime_now;

/*
 * The CPUs of each node, grouped (built by init() from cpu_to_node): node
 * n's are node_cpus[node_first[n] .. node_first[n + 1]). A scan for a CPU
 * to preempt looks at its node's CPUs only, not at every possible CPU.
 */
u16 node_cpus[MOIRAI_MAX_CPUS];
u32 node_first[MOIRAI_MAX_NODES + 1];
u32 node_fill[MOIRAI_MAX_NODES]; /* init()'s scratch */

/* ---- helpers ------------------------------------------------------------- */

/* An index into a MOIRAI_MAX_CPUS array that the verifier can see is in
 * bounds: the empty asm stops the compiler from dropping the mask after an
 * earlier range check that the verifier tracked on another register. */
static __always_inline u32 cpu_idx(u32 c)
{
	asm volatile("" : "+r"(c));
	return c & (MOIRAI_MAX_CPUS - 1);
}

/* The same for a node index. */
static __always_inline u32 node_idx(u32 n)
{
	asm volatile("" : "+r"(n));
	return n & (MOIRAI_MAX_NODES - 1);
}

static __always_inline s32 node_of(s32 cpu)
{
	u32 c = (u32)cpu;

	if (c >= MOIRAI_MAX_CPUS)
		return 0;
	s32 n = cpu_to_node[cpu_idx(c)];
	return n >= 0 && n < (s32)nr_nodes && n < MOIRAI_MAX_NODES ? n : 0;
}

static __always_inline struct moirai_worker *worker_of(struct task_struct *p)
{
	u32 tid = p->pid;
	struct moirai_worker *w = bpf_map_lookup_elem(&workers, &tid);

	/* A stale entry of a thread id that was reused by another process,
	 * or of a thread that has run execve since it registered: the
	 * program it runs now registered nothing, and its memory must not be
	 * read as hints (it may be a setuid program's). */
	if (w && (w->pid != (u32)p->tgid || w->exec_id != p->self_exec_id))
		return NULL;
	return w;
}

/* w's line, if it still holds it: an entry and a line may disagree for a
 * moment (a line freed and taken again while the entry still points at it),
 * and a worker must never read or write another's line. */
static __always_inline struct moirai_load *load_of(struct moirai_worker *w)
{
	u32 slot = w->slot;
	struct moirai_load *l = bpf_map_lookup_elem(&worker_load, &slot);

	return l && READ_ONCE(l->tid) == w->tid ? l : NULL;
}

static __always_inline u32 worker_state(struct moirai_worker *w, u32 *depth)
{
	struct moirai_load *l = load_of(w);

	if (!l)
		return MOIRAI_W_NONE;
	if (depth)
		*depth = READ_ONCE(l->depth);
	return READ_ONCE(l->state);
}

/*
 * Copy worker w's hints (its struct moirai_hints, in its own process) into
 * its line l, if w is the thread running on this CPU: the address is read in
 * the current task's address space, so only the worker's own memory is ever
 * read, and what its process wrote there is all a line can say about it. A
 * page not present (nothing may fault here) leaves the line as it was.
 */
static __always_inline void refresh_hints(struct task_struct *p, struct moirai_worker *w,
					  struct moirai_load *l)
{
	struct moirai_hints h;
	u64 at = w->hints;

	if (!at || (u32)bpf_get_current_pid_tgid() != (u32)p->pid)
		return;
	if (bpf_probe_read_user(&h, sizeof(h), (const void *)at))
		return;
	WRITE_ONCE(l->state, h.state <= MOIRAI_W_PARKED ? h.state : MOIRAI_W_NONE);
	WRITE_ONCE(l->depth, h.depth);
	WRITE_ONCE(l->updates, h.updates);
}

static __always_inline s32 home_node(struct moirai_worker *w)
{
	s32 n = w->node;
	return n >= 0 && n < (s32)nr_nodes && n < MOIRAI_MAX_NODES ? n : 0;
}

/*
 * Is p migration-disabled (it may run only where it is, whatever its mask
 * says)? A BPF program runs with migration disabled in the context of the
 * current task, so for current a count of 1 is ours, not the task's.
 */
static __always_inline bool migration_disabled(struct task_struct *p)
{
	if (!bpf_core_field_exists(p->migration_disabled))
		return false;
	if (p->migration_disabled == 1)
		return bpf_get_current_task_btf() != p;
	return p->migration_disabled > 1;
}

/* May p run on some online CPU of node n? */
static __always_inline bool node_allows(struct task_struct *p, s32 n)
{
	u32 key = (u32)n;
	struct node_ctx *nc = bpf_map_lookup_elem(&node_ctxs, &key);
	struct bpf_cpumask *online;

	if (!nc)
		return false;
	online = nc->online;
	return online && bpf_cpumask_intersects((const struct cpumask *)online, p->cpus_ptr);
}

/*
 * The node whose queue a worker waits in: its home node while it may run on
 * an online CPU there. Otherwise (its affinity or a cpuset excludes the home
 * node, or the node's CPUs went offline) the first node after home that it
 * may run on, remembered until its mask changes (set_cpumask()) or the node
 * stops allowing it; a worker in no node's queue that a CPU of it reads
 * would stall until the watchdog disables the scheduler. A migration-disabled
 * worker waits on its CPU's node.
 */
static s32 queue_node(struct task_struct *p, struct moirai_worker *w, struct task_ctx *tc)
{
	s32 home = home_node(w), n;
	u32 nn = nr_nodes < MOIRAI_MAX_NODES ? nr_nodes : MOIRAI_MAX_NODES, i;

	if (migration_disabled(p))
		return node_of(scx_bpf_task_cpu(p));
	if (node_allows(p, home))
		return home;
	if (tc && tc->away_node >= 0 && node_allows(p, tc->away_node))
		return tc->away_node;
	n = node_of(scx_bpf_task_cpu(p));
	bpf_for(i, 1, nn)
	{
		s32 m = (s32)((home + i) % nn);
		if (node_allows(p, m)) {
			n = m;
			break;
		}
	}
	if (tc)
		tc->away_node = n;
	return n;
}

/* CPU cpu's counters (its copy of cpu_stats), from any CPU. */
static __always_inline struct moirai_cpu_stats *cstats(s32 cpu)
{
	u32 zero = 0;
	return bpf_map_lookup_percpu_elem(&cpu_stats, &zero, (u32)cpu);
}

/* This CPU's copy of node's counters (node_stats is per-CPU). */
static __always_inline struct moirai_node_stats *nstats(s32 node)
{
	u32 k = node;
	return bpf_map_lookup_elem(&node_stats, &k);
}

static __always_inline struct node_ctx *nctx(s32 node)
{
	u32 k = node;
	return bpf_map_lookup_elem(&node_ctxs, &k);
}

/* A shared counter, written by several CPUs (cpu_stats, node_ctxs). */
#define STAT_ADD(ptr, field, v)                                                         \
	do {                                                                             \
		typeof(ptr) ___s = (ptr);                                                \
		if (___s)                                                                \
			__sync_fetch_and_add(&___s->field, (v));                         \
	} while (0)

/*
 * A counter in this CPU's copy of a per-CPU map: a plain add. Only this CPU
 * writes it, and only from callbacks that run with interrupts off (under a
 * runqueue lock or p->pi_lock), so no other writer interleaves; readers may
 * see it a moment late.
 */
#define PCPU_ADD(ptr, field, v)                                                         \
	do {                                                                             \
		typeof(ptr) ___s = (ptr);                                                \
		if (___s)                                                                \
			___s->field += (v);                                              \
	} while (0)

/* Node n's runnable workers went up or down by d: the shared count the
 * overload test reads, and the per-CPU statistic readers sum. */
static __always_inline void count_runnable(s32 n, s64 d)
{
	STAT_ADD(nctx(n), runnable, d);
	PCPU_ADD(nstats(n), runnable_workers, d);
}

static __always_inline struct task_ctx *tctx_of(struct task_struct *p)
{
	return bpf_task_storage_get(&task_ctxs, p, 0, 0);
}

/* The per-CPU context of cpu (any CPU's, read from here). */
static __always_inline struct cpu_ctx *cctx(s32 cpu)
{
	u32 zero = 0;
	return bpf_map_lookup_percpu_elem(&cpu_ctxs, &zero, (u32)cpu);
}

static __always_inline u32 kind_of(s32 cpu)
{
	struct cpu_ctx *cc = cctx(cpu);
	return cc ? READ_ONCE(cc->kind) : KIND_OFFLINE;
}

/* May a task queued with key preempt what runs on cpu? Only an earlier key. */
static __always_inline bool earlier_than_current(s32 cpu, u64 key)
{
	struct cpu_ctx *cc = cctx(cpu);
	return cc && (s64)(key - READ_ONCE(cc->key)) < 0;
}

/* Runnable workers of node n, compared with its CPUs: overloaded? */
static __always_inline bool node_is_overloaded(s32 n)
{
	struct node_ctx *nc = nctx(n);

	return nc && READ_ONCE(nc->runnable) > READ_ONCE(nc->cpus);
}

static __always_inline void kick(s32 cpu, u64 flags)
{
	struct moirai_cpu_stats *cs = cstats(cpu);

	STAT_ADD(cs, kicks, 1);
	if (flags & SCX_KICK_PREEMPT)
		STAT_ADD(cs, preempt_kicks, 1);
	scx_bpf_kick_cpu(cpu, flags);
}

/* Where a scan of node n's CPUs starts: a different CPU each time, so
 * that victims and idle CPUs are not always taken from the first. */
static __always_inline u32 scan_start(u32 cnt)
{
	return cnt ? bpf_get_prandom_u32() % cnt : 0;
}

/*
 * An idle CPU of node n that p may run on, claimed (its idle bit cleared);
 * or -1. With SMT, a CPU whose whole core is idle first (its sibling busy
 * would halve what it gets): prev (`first`) when its core is idle, then
 * any idle core of the node, then prev, then any idle CPU of the node.
 * The kernel's idle-CPU kfuncs search the node's mask (word by word, not a
 * loop over every possible CPU here); a task whose affinity leaves out
 * some of the node's CPUs is matched against the node's CPU list instead.
 */
static s32 claim_idle_in_node(struct task_struct *p, s32 n, s32 first)
{
	u32 key = (u32)n;
	struct node_ctx *nc = bpf_map_lookup_elem(&node_ctxs, &key);
	struct bpf_cpumask *online = nc ? nc->online : NULL;
	bool prev_ok = first >= 0 && node_of(first) == n &&
		       bpf_cpumask_test_cpu(first, p->cpus_ptr);
	s32 cpu;

	if (!online)
		return -1;
	if (prev_ok) {
		const struct cpumask *smt = scx_bpf_get_idle_smtmask();
		bool core_idle = bpf_cpumask_test_cpu(first, smt);
		scx_bpf_put_idle_cpumask(smt);
		if (core_idle && scx_bpf_test_and_clear_cpu_idle(first))
			return first;
	}
	if (bpf_cpumask_subset((const struct cpumask *)online, p->cpus_ptr)) {
		cpu = scx_bpf_pick_idle_cpu((const struct cpumask *)online, SCX_PICK_IDLE_CORE);
		if (cpu >= 0)
			return cpu;
		if (prev_ok && scx_bpf_test_and_clear_cpu_idle(first))
			return first;
		return scx_bpf_pick_idle_cpu((const struct cpumask *)online, 0);
	}
	if (prev_ok && scx_bpf_test_and_clear_cpu_idle(first))
		return first;

	u32 nk = node_idx(key), lo = node_first[nk], cnt = node_first[nk + 1] - lo, i;
	u32 start = scan_start(cnt);
	const struct cpumask *idle = scx_bpf_get_idle_cpumask();
	s32 found = -1;
	bpf_for(i, 0, cnt)
	{
		cpu = node_cpus[cpu_idx(lo + (start + i) % cnt)];
		if (!bpf_cpumask_test_cpu(cpu, idle) || !bpf_cpumask_test_cpu(cpu, p->cpus_ptr))
			continue;
		if (scx_bpf_test_and_clear_cpu_idle(cpu)) {
			found = cpu;
			break;
		}
	}
	scx_bpf_put_idle_cpumask(idle);
	return found;
}

/*
 * A CPU of node n to preempt for a woken worker: one that runs a searching
 * worker (or went idle), else one that runs a non-worker - the waker's own
 * CPU `here` first among those, since preempting it needs no IPI. The
 * waker's CPU is never taken for a searching worker: that is the waker
 * itself, which just found the work it is waking us for.
 */
static s32 victim_in_node(struct task_struct *p, s32 n, s32 here, u64 key)
{
	s32 other = -1;
	u32 nk = node_idx((u32)n), lo = node_first[nk], cnt = node_first[nk + 1] - lo, i;
	u32 start = scan_start(cnt);

	if (here >= 0 && node_of(here) == n && bpf_cpumask_test_cpu(here, p->cpus_ptr) &&
	    kind_of(here) == KIND_OTHER && earlier_than_current(here, key))
		other = here;
	/* The node's CPUs only, from a random one on: a victim is not always
	 * the node's first CPU. */
	bpf_for(i, 0, cnt)
	{
		s32 cpu = node_cpus[cpu_idx(lo + (start + i) % cnt)];
		if (cpu == here || !bpf_cpumask_test_cpu(cpu, p->cpus_ptr))
			continue;
		u32 k = kind_of(cpu);
		if (k == KIND_SEARCHING || k == KIND_IDLE)
			return cpu;
		/* A non-worker only when it ran past the woken worker's key:
		 * no task loses its fair turn to a wake-up. */
		if (k == KIND_OTHER && other < 0 && earlier_than_current(cpu, key))
			other = cpu;
	}
	return other;
}

static __always_inline u32 log2_u64(u64 v)
{
	u32 r = 0;

	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) r += 1;
	return r;
}

static __always_inline void record_latency(u64 ns)
{
	u32 zero = 0, b = log2_u64(ns);
	struct moirai_latency *l = bpf_map_lookup_elem(&latency, &zero);

	if (!l)
		return;
	if (b >= MOIRAI_LAT_BUCKETS)
		b = MOIRAI_LAT_BUCKETS - 1;
	/* This CPU's copy (latency is per-CPU), from running(): plain
	 * updates, see PCPU_ADD. Readers sum, and take the largest max_ns. */
	l->count++;
	l->sum_ns += ns;
	l->log2_ns[b]++;
	if (ns > l->max_ns)
		l->max_ns = ns;
}

/*
 * The fair place of p in a queue: its vtime, raised to the lag floor
 * vtime_now - slice (a sleeper gains at most one slice on those that ran
 * meanwhile, as bpfland's lag floor). The floor is kept in tc->vtime: the
 * credit is given once, not again on each enqueue.
 */
static __always_inline u64 fair_vtime(struct task_struct *p, struct task_ctx *tc)
{
	u64 now = READ_ONCE(vtime_now), v;

	if (!tc)
		return now; /* no storage (ENOMEM at init_task): a newcomer's place */
	v = tc->vtime;
	if ((s64)(v - (now - slice_ns)) < 0)
		v = now - slice_ns;
	tc->vtime = v;
	return v;
}

/*
 * The queue key of worker w: its fair vtime, half a slice earlier while it
 * holds queued work that its siblings wait to steal. The head start is on
 * the key only, never on tc->vtime: what the worker runs is charged in
 * full, so it runs ahead of its fair share by half a slice at most, however
 * often it is enqueued and however long it reports queued work.
 */
static __always_inline u64 worker_key(struct task_struct *p, struct task_ctx *tc,
				      struct moirai_worker *w, u32 *state)
{
	u32 depth = 0;
	u64 v = fair_vtime(p, tc);

	*state = worker_state(w, &depth);
	if (*state == MOIRAI_W_RUNNING && depth > 0)
		v -= slice_ns / 2;
	return v;
}

/* ---- callbacks ------------------------------------------------------------ */

s32 BPF_STRUCT_OPS(moirai_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
	struct moirai_worker *w = worker_of(p);
	bool is_idle = false;
	s32 cpu;

	if (w) {
		struct task_ctx *tc = tctx_of(p);
		s32 home = queue_node(p, w, tc);
		cpu = claim_idle_in_node(p, home, prev_cpu);
		if (cpu < 0 && node_is_overloaded(home)) {
			cpu = scx_bpf_pick_idle_cpu(p->cpus_ptr, 0);
		}
		if (cpu >= 0) {
			u32 st = worker_state(w, NULL);
			insert(p, SCX_DSQ_LOCAL, st == MOIRAI_W_SEARCHING ? slice_ns / 4 : slice_ns, 0);
			STAT_ADD(cstats(cpu), direct, 1);
			return cpu;
		}
		/* No idle CPU where it belongs: enqueue() queues it on its home
		 * node and preempts someone there. Waking it on this CPU when
		 * that is in its node keeps the enqueue here (a remote CPU would
		 * get an IPI to do it) and lets it preempt the waker locally. */
		s32 here = bpf_get_smp_processor_id();
		if (node_of(here) != home || !bpf_cpumask_test_cpu(here, p->cpus_ptr))
			return prev_cpu;
		/* Woken synchronously by a thread outside the runtimes (it
		 * posted work and waits for it): take its CPU now if the waker
		 * ran past our key. A local preemption needs no IPI. Never on
		 * another kind of wake-up: one from an interrupt would preempt
		 * whatever task happens to run here. */
		u32 st;
		u64 key = worker_key(p, tc, w, &st);
		if ((wake_flags & SCX_WAKE_SYNC) && kind_of(here) == KIND_OTHER &&
		    earlier_than_current(here, key)) {
			insert(p, SCX_DSQ_LOCAL, slice_ns, SCX_ENQ_PREEMPT);
			STAT_ADD(cstats(here), wake_preempts, 1);
		}
		return here;
	}

	cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);
	if (is_idle) {
		insert(p, SCX_DSQ_LOCAL, slice_ns, 0);
		STAT_ADD(cstats(cpu), direct, 1);
	}
	return cpu;
}

void BPF_STRUCT_OPS(moirai_enqueue, struct task_struct *p, u64 enq_flags)
{
	struct moirai_worker *w;
	s32 cpu = scx_bpf_task_cpu(p);

	/* Per-CPU kthreads (ksoftirqd, kworkers): their CPU, now. */
	if ((p->flags & PF_KTHREAD) && p->nr_cpus_allowed == 1) {
		insert(p, SCX_DSQ_LOCAL, slice_ns, enq_flags);
		return;
	}

	w = worker_of(p);
	if (!w) {
		s32 n = node_of(cpu);
		insert_vtime(p, OTHER_DSQ(n), slice_ns, fair_vtime(p, tctx_of(p)), enq_flags);
		/* Work conservation: wake an idle CPU to take it. */
		s32 idle = scx_bpf_pick_idle_cpu(p->cpus_ptr, 0);
		if (idle >= 0)
			kick(idle, SCX_KICK_IDLE);
		return;
	}

	struct task_ctx *tc = tctx_of(p);
	s32 home = queue_node(p, w, tc);
	u32 state;
	u64 vtime = worker_key(p, tc, w, &state), slice = slice_ns;

	if (state == MOIRAI_W_SEARCHING) {
		/* Preempted while searching: stopping() marked its line, so
		 * the runtime wakes a parked worker for new work rather than
		 * wait for this one. Keep its fair place, but only for a short
		 * slice. */
		slice = slice_ns / 4;
	}
	insert_vtime(p, WORKER_DSQ(home), slice, vtime, enq_flags);

	if (!(enq_flags & SCX_ENQ_WAKEUP))
		return;
	/* Woken for work and select_cpu found no idle CPU on its node:
	 * preempt a searching worker, or a non-worker that ran past our key,
	 * there (the vtime order then decides who runs). Inserting straight into the victim's local
	 * queue with SCX_ENQ_PREEMPT instead was tried: no better wake-up
	 * latency and parallel_for throughput down to 0.61x in the VM. */
	s32 victim = victim_in_node(p, home, bpf_get_smp_processor_id(), vtime);
	if (victim >= 0) {
		kick(victim, kind_of(victim) == KIND_IDLE ? SCX_KICK_IDLE : SCX_KICK_PREEMPT);
		return;
	}
	if (node_is_overloaded(home)) {
		s32 idle = scx_bpf_pick_idle_cpu(p->cpus_ptr, 0);
		if (idle >= 0)
			kick(idle, SCX_KICK_IDLE);
	}
}

/* vtime of the first task of dsq, or ~0 when empty. */
static __always_inline u64 head_vtime(u64 dsq)
{
	struct task_struct *p;
	u64 v = ~0ull;

	bpf_for_each(scx_dsq, p, dsq, 0) {
		v = p->scx.dsq_vtime;
		break;
	}
	return v;
}

/* What take_from_node() moved. */
enum { TOOK_NONE = 0, TOOK_OTHER = 1, TOOK_WORKER = 2 };

/* Move the better of node n's heads to this CPU; workers only if allowed. */
static __always_inline int take_from_node(s32 n, bool workers_too)
{
	u64 vw = workers_too ? head_vtime(WORKER_DSQ(n)) : ~0ull;
	u64 vo = head_vtime(OTHER_DSQ(n));

	if (vw == ~0ull && vo == ~0ull)
		return TOOK_NONE;
	if (vw != ~0ull && (vo == ~0ull || (s64)(vw - vo) <= 0)) {
		if (move_to_local(WORKER_DSQ(n)))
			return TOOK_WORKER;
		return move_to_local(OTHER_DSQ(n)) ? TOOK_OTHER : TOOK_NONE;
	}
	if (move_to_local(OTHER_DSQ(n)))
		return TOOK_OTHER;
	return workers_too && move_to_local(WORKER_DSQ(n)) ? TOOK_WORKER : TOOK_NONE;
}

void BPF_STRUCT_OPS(moirai_dispatch, s32 cpu, struct task_struct *prev)
{
	s32 node = node_of(cpu);
	struct moirai_cpu_stats *cs = cstats(cpu);
	u32 nn = nr_nodes < MOIRAI_MAX_NODES ? nr_nodes : MOIRAI_MAX_NODES;
	u32 i;

	if (test_error) {
		scx_error("moirai: error asked for through test_error");
		return;
	}

	if (take_from_node(node, true)) {
		STAT_ADD(cs, dispatch_local, 1);
		PCPU_ADD(nstats(node), dispatches, 1);
		return;
	}
	/* Own node empty: help the others. Workers only from overloaded nodes. */
	bpf_for(i, 1, nn)
	{
		s32 m = (s32)((node + i) % nn);
		bool overloaded = node_is_overloaded(m);
		int took = take_from_node(m, overloaded);
		if (took != TOOK_NONE) {
			STAT_ADD(cs, dispatch_remote, 1);
			PCPU_ADD(nstats(m), dispatches, 1);
			/* A worker of node m runs here: its overload pulled. */
			if (took == TOOK_WORKER)
				PCPU_ADD(nstats(m), remote_pulls, 1);
			return;
		}
	}
}

void BPF_STRUCT_OPS(moirai_runnable, struct task_struct *p, u64 enq_flags)
{
	struct moirai_worker *w = worker_of(p);
	struct task_ctx *tc;

	if (!w || !(tc = tctx_of(p)))
		return;
	tc->runnable_at = bpf_ktime_get_ns();
	if (tc->counted_node < 0) {
		s32 n = queue_node(p, w, tc);
		tc->counted_node = n;
		count_runnable(n, 1);
	}
}

void BPF_STRUCT_OPS(moirai_running, struct task_struct *p)
{
	s32 cpu = scx_bpf_task_cpu(p);
	struct task_ctx *tc = tctx_of(p);
	struct moirai_worker *w = worker_of(p);
	struct moirai_cpu_stats *cs = cstats(cpu);
	u64 now = bpf_ktime_get_ns();
	u8 kind = KIND_OTHER;

	u64 v = READ_ONCE(vtime_now);

	if (tc) {
		tc->started_at = now;
		v = tc->vtime;
	}
	if ((s64)(v - READ_ONCE(vtime_now)) > 0)
		WRITE_ONCE(vtime_now, v);

	if (w) {
		s32 home = home_node(w), here = node_of(cpu);
		kind = worker_state(w, NULL) == MOIRAI_W_SEARCHING ? KIND_SEARCHING : KIND_WORKER;
		STAT_ADD(cs, worker_runs, 1);
		struct moirai_node_stats *ns = nstats(home);
		if (here == home)
			PCPU_ADD(ns, worker_home_runs, 1);
		else
			PCPU_ADD(ns, worker_remote_runs, 1);
		/* Running: no longer preempted (see moirai_shared.h). */
		struct moirai_load *l = load_of(w);
		if (l && READ_ONCE(l->preempted))
			WRITE_ONCE(l->preempted, 0);
		if (tc) {
			if (tc->last_node >= 0 && tc->last_node != here)
				PCPU_ADD(ns, migrations, 1);
			tc->last_node = here;
			tc->home = home;
			if (tc->runnable_at) {
				record_latency(now - tc->runnable_at);
				tc->runnable_at = 0;
			}
			/* Registered while already runnable: count it from now. */
			if (tc->counted_node < 0) {
				s32 q = queue_node(p, w, tc);
				tc->counted_node = q;
				count_runnable(q, 1);
			}
		}
	} else {
		STAT_ADD(cs, other_runs, 1);
		if (tc)
			tc->home = -1;
	}
	struct cpu_ctx *cc = cctx(cpu);
	if (cc) {
		WRITE_ONCE(cc->key, v);
		WRITE_ONCE(cc->kind, kind);
	}
}

void BPF_STRUCT_OPS(moirai_stopping, struct task_struct *p, bool runnable)
{
	s32 cpu = scx_bpf_task_cpu(p);
	struct task_ctx *tc = tctx_of(p);
	u64 now = bpf_ktime_get_ns(), ran;
	u32 weight = p->scx.weight ? p->scx.weight : 100;

	struct cpu_ctx *cc = cctx(cpu);

	if (cc)
		WRITE_ONCE(cc->kind, KIND_IDLE);
	if (!tc || !tc->started_at)
		return;
	ran = now - tc->started_at;
	tc->started_at = 0;
	/* Charge what it ran, scaled by its weight (nice). */
	tc->vtime += ran * 100 / weight;
	if (tc->home >= 0) {
		struct moirai_worker *w = worker_of(p);
		struct moirai_load *l = w ? load_of(w) : NULL;
		if (l) {
			refresh_hints(p, w, l);
			/* A worker that stops while still runnable waits for
			 * a CPU: tell its runtime, which would otherwise rely
			 * on it if it was searching (searchers_stalled() in
			 * user/sched/runtime.c). */
			if (runnable)
				WRITE_ONCE(l->preempted, 1);
		}
		struct moirai_node_stats *ns = nstats(tc->home);
		if (node_of(cpu) == tc->home)
			PCPU_ADD(ns, worker_home_ns, ran);
		else
			PCPU_ADD(ns, worker_remote_ns, ran);
	}
}

void BPF_STRUCT_OPS(moirai_quiescent, struct task_struct *p, u64 deq_flags)
{
	struct task_ctx *tc = tctx_of(p);

	if (tc && tc->counted_node >= 0) {
		count_runnable(tc->counted_node, -1);
		tc->counted_node = -1;
	}
}

void BPF_STRUCT_OPS(moirai_enable, struct task_struct *p)
{
	struct task_ctx *tc = tctx_of(p);
	u64 now = READ_ONCE(vtime_now);

	if (tc)
		tc->vtime = now;
	set_vtime(p, now);
}

s32 BPF_STRUCT_OPS(moirai_init_task, struct task_struct *p, struct scx_init_task_args *args)
{
	struct task_ctx *tc =
		bpf_task_storage_get(&task_ctxs, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (!tc)
		return -12 /* ENOMEM */;
	tc->counted_node = -1;
	tc->last_node = -1;
	tc->home = -1;
	tc->away_node = -1;
	return 0;
}

/* Frees worker_load line slot if thread tid holds it. */
static __always_inline void free_line(u32 slot, u32 tid)
{
	struct moirai_load *l = bpf_map_lookup_elem(&worker_load, &slot);

	if (!l || READ_ONCE(l->tid) != tid)
		return;
	WRITE_ONCE(l->state, MOIRAI_W_NONE);
	WRITE_ONCE(l->depth, 0);
	WRITE_ONCE(l->preempted, 0);
	__sync_val_compare_and_swap(&l->tid, tid, 0);
}

void BPF_STRUCT_OPS(moirai_exit_task, struct task_struct *p, struct scx_exit_task_args *args)
{
	struct task_ctx *tc = tctx_of(p);

	if (tc && tc->counted_node >= 0) {
		count_runnable(tc->counted_node, -1);
		tc->counted_node = -1;
	}
	/* A worker thread that exits without unregistering (its process
	 * crashed): forget it. Not on unload (the task lives on). */
	if (!(p->flags & PF_EXITING))
		return;
	u32 tid = p->pid;
	struct moirai_worker *w = bpf_map_lookup_elem(&workers, &tid);
	if (!w || w->pid != (u32)p->tgid)
		return;
	free_line(w->slot, tid);
	bpf_map_delete_elem(&workers, &tid);
}

/* Affinity or cpuset changes: a worker's queue node is chosen again. */
void BPF_STRUCT_OPS(moirai_set_cpumask, struct task_struct *p, const struct cpumask *mask)
{
	struct task_ctx *tc = tctx_of(p);

	if (tc)
		tc->away_node = -1;
}

/* Online CPUs per node: the node masks workers are checked against, and the
 * CPU counts node_is_overloaded() compares with. */
static void note_cpu(s32 cpu, bool online)
{
	u32 key = (u32)node_of(cpu);
	struct node_ctx *nc = bpf_map_lookup_elem(&node_ctxs, &key);
	struct bpf_cpumask *m;

	/* The kptr is RCU-protected; init() is sleepable, so say so. */
	bpf_rcu_read_lock();
	if (nc && (m = nc->online)) {
		if (online)
			bpf_cpumask_set_cpu((u32)cpu, m);
		else
			bpf_cpumask_clear_cpu((u32)cpu, m);
	}
	bpf_rcu_read_unlock();
	/* Hotplug and the sleepable init() only: atomics, also in this CPU's
	 * copy of node_stats (init() runs with preemption on). */
	STAT_ADD(nctx(node_of(cpu)), cpus, online ? 1 : -1);
	STAT_ADD(nstats(node_of(cpu)), cpus, online ? 1 : -1);
	struct cpu_ctx *cc = cctx(cpu);
	if (cc)
		WRITE_ONCE(cc->kind, online ? KIND_IDLE : KIND_OFFLINE);
}

void BPF_STRUCT_OPS(moirai_cpu_online, s32 cpu)
{
	/* The loader read the nodes' CPU lists while this CPU was offline
	 * (they list online CPUs only): its node is unknown, so ask for a
	 * restart, which reads the topology again. */
	if ((u32)cpu < MOIRAI_MAX_CPUS && cpu_to_node[cpu_idx(cpu)] < 0) {
		scx_exit(SCX_ECODE_ACT_RESTART | SCX_ECODE_RSN_HOTPLUG,
			 "moirai: cpu %d came online, its node was unknown at load", cpu);
		return;
	}
	note_cpu(cpu, true);
}

void BPF_STRUCT_OPS(moirai_cpu_offline, s32 cpu)
{
	note_cpu(cpu, false);
}

s32 BPF_STRUCT_OPS_SLEEPABLE(moirai_init)
{
	u32 nn = nr_nodes, ncpu = nr_cpus < MOIRAI_MAX_CPUS ? nr_cpus : MOIRAI_MAX_CPUS;
	u32 i;
	s32 err;

	compat_record();
	if (nn == 0 || nn > MOIRAI_MAX_NODES) {
		scx_error("moirai: bad node count %u", nn);
		return -22; /* EINVAL */
	}
	bpf_for(i, 0, nn)
	{
		err = scx_bpf_create_dsq(WORKER_DSQ(i), -1);
		if (!err)
			err = scx_bpf_create_dsq(OTHER_DSQ(i), -1);
		if (err) {
			scx_error("moirai: cannot create the queues of node %u: %d", i, err);
			return err;
		}
	}
	/* Group the CPUs by node (a counting sort of cpu_to_node). */
	bpf_for(i, 0, ncpu)
	{
		s32 n = cpu_to_node[cpu_idx(i)];
		if (n >= 0 && (u32)n < nn)
			node_first[node_idx((u32)n) + 1]++;
	}
	bpf_for(i, 0, nn)
		node_first[node_idx(i) + 1] += node_first[node_idx(i)];
	bpf_for(i, 0, ncpu)
	{
		s32 n = cpu_to_node[cpu_idx(i)];
		if (n < 0 || (u32)n >= nn)
			continue;
		u32 k = node_first[node_idx((u32)n)] + node_fill[node_idx((u32)n)]++;
		node_cpus[cpu_idx(k)] = (u16)i;
	}
	bpf_for(i, 0, nn)
	{
		struct node_ctx *nc = bpf_map_lookup_elem(&node_ctxs, &i);
		struct bpf_cpumask *m = bpf_cpumask_create(), *old;
		if (!m) {
			scx_error("moirai: cannot allocate a cpumask");
			return -12; /* ENOMEM */
		}
		if (!nc) {
			bpf_cpumask_release(m);
			continue;
		}
		old = bpf_kptr_xchg(&nc->online, m);
		if (old)
			bpf_cpumask_release(old);
	}
	/* Online CPUs now; hotplug from here on goes to cpu_online/offline
	 * (the loader set hotplug_seq: one in between makes the kernel ask
	 * for a restart). */
	const struct cpumask *online = scx_bpf_get_online_cpumask();
	bpf_for(i, 0, ncpu)
	{
		if (bpf_cpumask_test_cpu(i, online))
			note_cpu((s32)i, true);
	}
	scx_bpf_put_cpumask(online);
	return 0;
}

void BPF_STRUCT_OPS(moirai_exit, struct scx_exit_info *ei)
{
	u32 zero = 0;
	struct moirai_exit_info *x = bpf_map_lookup_elem(&exit_info, &zero);

	if (!x)
		return;
	x->exit_code = ei->exit_code;
	bpf_probe_read_kernel_str(x->reason, sizeof(x->reason), ei->reason);
	bpf_probe_read_kernel_str(x->msg, sizeof(x->msg), ei->msg);
	/* The kernel's dump of its state (on an error exit): what ran, what
	 * waited and for how long on each CPU, which tells a stall's cause. */
	struct moirai_exit_dump *d = bpf_map_lookup_elem(&exit_dump, &zero);
	if (d && ei->dump)
		bpf_probe_read_kernel_str(d->text, sizeof(d->text), ei->dump);
	/* Nobody sets or clears `preempted` from now on, and runtimes cannot
	 * write their lines: a flag left set would mark a searcher as stalled
	 * for good. */
	u32 i;
	bpf_for(i, 0, MOIRAI_LOAD_SLOTS)
	{
		struct moirai_load *l = bpf_map_lookup_elem(&worker_load, &i);
		if (l && READ_ONCE(l->preempted))
			WRITE_ONCE(l->preempted, 0);
	}
	/* kind last: the loader polls it and then reads the text. */
	__sync_lock_test_and_set(&x->kind, (s64)ei->kind);
}

/* ---- registration ---------------------------------------------------------- */

static __always_inline void count_full(void)
{
	u32 zero = 0;
	struct moirai_meta *m = bpf_map_lookup_elem(&meta, &zero);

	if (m)
		__sync_fetch_and_add(&m->reg_full, 1);
}

/*
 * Can line i, held by thread tid, be taken? Only if tid's registration does
 * not point at it: tid exited (its entry deleted) or registered again
 * elsewhere. An entry still claiming (MOIRAI_SLOT_CLAIMING) holds whatever
 * line its thread took. A thread that exited while no scheduler was loaded
 * keeps its entry, so its line, until the next load's sweep.
 */
static __always_inline bool line_free(u32 i, u32 tid)
{
	struct moirai_worker *o;

	if (tid == 0)
		return true;
	o = bpf_map_lookup_elem(&workers, &tid);
	return !o || (o->slot != i && o->slot != MOIRAI_SLOT_CLAIMING);
}

/* A free line for thread tid of process pid, from `start` on: its index,
 * or -1 when every line is held. */
static __always_inline s32 claim_line(u32 tid, u32 pid, struct moirai_reg *r)
{
	u32 k, start = r->slot;

	bpf_for(k, 0, MOIRAI_LOAD_SLOTS)
	{
		u32 i = (start + k) % MOIRAI_LOAD_SLOTS;
		struct moirai_load *l = bpf_map_lookup_elem(&worker_load, &i);
		if (!l)
			continue;
		u32 cur = READ_ONCE(l->tid);
		if (!line_free(i, cur) || __sync_val_compare_and_swap(&l->tid, cur, tid) != cur)
			continue;
		/* The program sleeps (it may be preempted): between the look
		 * and the CAS, cur may have freed the line and claimed it again
		 * (ABA). Then its entry points here once more: give it back. */
		if (cur && !line_free(i, cur)) {
			__sync_val_compare_and_swap(&l->tid, tid, cur);
			continue;
		}
		WRITE_ONCE(l->pid, pid);
		WRITE_ONCE(l->rt_id, r->rt_id);
		WRITE_ONCE(l->index, r->index);
		WRITE_ONCE(l->state, MOIRAI_W_RUNNING);
		WRITE_ONCE(l->depth, 0);
		WRITE_ONCE(l->updates, 0);
		WRITE_ONCE(l->preempted, 0);
		return (s32)i;
	}
	return -1;
}

/*
 * What a worker thread runs (bpf(BPF_PROG_TEST_RUN) on the pinned
 * `register`, see moirai_shared.h) to register or unregister itself. It runs
 * in the caller's context: the thread it acts on is the caller, whatever the
 * context says, so a process that may run it can steer its own threads and
 * touch no other process's registration or line. ADD returns the index of
 * the worker_load line it claimed. The caller has switched to SCHED_EXT
 * before (user/sched/scx.c). Runtimes register while no scheduler is loaded
 * too: the program needs none, only the kept maps.
 */
SEC("syscall")
int moirai_register(struct moirai_reg *r)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tid = (u32)id, pid = (u32)(id >> 32);
	struct moirai_worker *old, w = {};
	long err;
	s32 slot;

	switch (r->op) {
	case MOIRAI_REG_ADD:
		if (r->slot >= MOIRAI_LOAD_SLOTS || !r->hints)
			return -22; /* EINVAL */
		/* Registered before (a thread id reused since a thread exited
		 * unseen, or a second registration): its line goes, once the
		 * entry no longer points at it. */
		old = bpf_map_lookup_elem(&workers, &tid);
		u32 old_slot = old ? old->slot : MOIRAI_SLOT_CLAIMING;
		/* The entry first, marked claiming: a line this thread takes
		 * is then never free in another claimer's eyes. */
		struct task_struct *me = bpf_get_current_task_btf();
		w.pid = pid;
		w.rt_id = r->rt_id;
		w.index = r->index;
		w.node = r->node;
		w.slot = MOIRAI_SLOT_CLAIMING;
		w.tid = tid;
		w.hints = r->hints;
		w.exec_id = me->self_exec_id;
		err = bpf_map_update_elem(&workers, &tid, &w, BPF_ANY);
		if (err == -7 /* E2BIG */ || err == -12 /* ENOMEM */)
			count_full();
		if (old_slot != MOIRAI_SLOT_CLAIMING)
			free_line(old_slot, tid);
		if (err)
			return (int)err;
		slot = claim_line(tid, pid, r);
		old = bpf_map_lookup_elem(&workers, &tid);
		if (slot < 0 || !old) {
			bpf_map_delete_elem(&workers, &tid);
			if (slot >= 0)
				free_line((u32)slot, tid);
			count_full();
			return -28; /* ENOSPC */
		}
		WRITE_ONCE(old->slot, (u32)slot);
		return slot;
	case MOIRAI_REG_DEL:
		old = bpf_map_lookup_elem(&workers, &tid);
		if (!old || old->pid != pid)
			return -2; /* ENOENT */
		/* The line first: while the entry points at it, nobody else
		 * can take it, so its fields are cleared for us alone. */
		free_line(old->slot, tid);
		return (int)bpf_map_delete_elem(&workers, &tid);
	case MOIRAI_REG_FULL:
		count_full();
		return 0;
	}
	return -22; /* EINVAL */
}

#define MOIRAI_OPS(var, ops_flags)                                                   \
	SEC(".struct_ops.link") struct sched_ext_ops var = {                         \
		.select_cpu = (void *)moirai_select_cpu,                             \
		.enqueue = (void *)moirai_enqueue,                                   \
		.dispatch = (void *)moirai_dispatch,                                 \
		.runnable = (void *)moirai_runnable,                                 \
		.running = (void *)moirai_running,                                   \
		.stopping = (void *)moirai_stopping,                                 \
		.quiescent = (void *)moirai_quiescent,                               \
		.enable = (void *)moirai_enable,                                     \
		.set_cpumask = (void *)moirai_set_cpumask,                           \
		.cpu_online = (void *)moirai_cpu_online,                             \
		.cpu_offline = (void *)moirai_cpu_offline,                           \
		.init_task = (void *)moirai_init_task,                               \
		.exit_task = (void *)moirai_exit_task,                               \
		.init = (void *)moirai_init,                                         \
		.exit = (void *)moirai_exit,                                         \
		.flags = (ops_flags),                                                \
		.timeout_ms = MOIRAI_TIMEOUT_MS,                                     \
		.exit_dump_len = MOIRAI_EXIT_DUMP_LEN,                               \
		.name = MOIRAI_OPS_NAME,                                             \
	}

MOIRAI_OPS(moirai_ops, 0);
MOIRAI_OPS(moirai_ops_partial, SCX_OPS_SWITCH_PARTIAL);
