/*
 * sched.h - the scheduler's private interface: runtimes, workers, the
 * injector, parking, and the job pool. Used by user/sched and user/par.
 *
 * Parking protocol (no lost wakeup, no thundering herd), after Go's:
 *  - A worker that runs out of local work becomes "searching" (counted in
 *    rt->nsearching) and steals for a bounded number of rounds.
 *  - Whoever makes work visible to others (a publishing push, an injector
 *    push) calls mr__notify(): after a seq_cst fence it wakes one sleeping
 *    worker only if nobody is searching. A searcher that finds work and was
 *    the last searcher calls mr__notify() too if more work is visible, so
 *    wake-ups ripple one worker at a time while there is work for them.
 *    With the BPF scheduler on a NUMA machine, a waker wakes a sleeper of
 *    its own node first.
 *  - To sleep, a worker sets its bit in the idle set (seq_cst RMW), stops
 *    searching, fences, and looks everywhere once more; only then does it
 *    futex-wait on its own park word. A waker claims the bit (CAS) before
 *    writing the park word, so each sleeper is woken by exactly one waker,
 *    and a sleeper whose last look found work takes its bit back or, if a
 *    waker got there first, consumes that waker's token.
 * The Dekker pairs: (work store; fence; load nsearching / idle set) against
 * (RMW on idle set / nsearching; fence; load of the queues).
 *
 * Latches (a stolen join half, a group) name the worker waiting on them; the
 * job that completes the latch stores it (seq_cst) and then wakes that worker
 * through the same idle-set claim, so a waiting worker also stays available
 * for new work while it sleeps.
 */
#ifndef MR_SCHED_H
#define MR_SCHED_H

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <moirai/par.h>
#include <moirai/runtime.h>

#include "../base/base.h"
#include "../metrics/metrics.h"
#include "../metrics/probes.h"
#include "deque.h"
#include "scx.h"

#define MR__RT_MAGIC 0x6d72727475ull /* "mrrtu" */
#define MR__DEFAULT_DEQUE_LOG2 13
#define MR__DEFAULT_SPIN_US 50 /* ~3 futex wake-ups here (KERNEL-LAB.md) */

/* Park tokens: what a waker wrote into a sleeper's park word. */
enum {
	MR__TOK_NONE = 0,
	MR__TOK_WORK = 1,  /* woken to search; the waker counted us in nsearching */
	MR__TOK_LATCH = 2, /* a latch we wait on was set */
	MR__TOK_EXIT = 3,  /* runtime exiting */
};

/* Pooled job blocks: at most this big, this aligned. */
#define MR__JOB_BLOCK 64
#define MR__POOL_BATCH 256	   /* blocks moved between a worker and the runtime at once */
#define MR__POOL_SLAB_BLOCKS 1024 /* blocks per slab allocation */

struct mr__pool_batch {
	struct mr__pool_batch *next; /* list of batches */
	struct mr__job *jobs;	     /* MR__POOL_BATCH blocks linked through ->next */
};

#define MR__STACK_CACHE 32

struct mr_fiber;
struct mr__timer;
struct mr__worker;

/*
 * What the worker loop calls on a worker that has an I/O backend (user/io
 * sets w->io_ops; the layer above is reached only through these).
 *  - poll: submit what the worker's fibers queued and ready the fibers
 *    whose operations completed, without waiting. True if it readied any.
 *  - wait: sleep until w->park holds a token, an operation completes (its
 *    fiber readied onto w's deque) or the deadline (-1: none) passes; may
 *    return early. True if it readied fibers. Called instead of the futex
 *    wait on w->park, so a waker reaches a worker asleep in its ring with
 *    mr__futex_wake(&w->park) (an io_uring futex wait), or through wake()
 *    where that does not exist.
 *  - wake: after a token was stored in w->park, wake w if it sleeps in
 *    wait(); NULL when the futex wake reaches it.
 *  - rescue: called by another worker `self` of w's runtime (on self's
 *    thread) that found w busy in one job for MR__IO_HANDOFF_NS with
 *    operations in flight: take w's completions and ready their fibers on
 *    self. True if it readied any. NULL (or false every time) where only
 *    w's thread can reap (a DEFER_TASKRUN ring, MOIRAI_IO_HANDOFF=0).
 *  - fini: when the runtime is freed (its workers have exited, and no
 *    waker touches them any more), from the destroying thread.
 */
struct mr__io_ops {
	bool (*poll)(struct mr__worker *w);
	bool (*wait)(struct mr__worker *w, int64_t deadline);
	void (*wake)(struct mr__worker *w);
	bool (*rescue)(struct mr__worker *w, struct mr__worker *self);
	void (*fini)(struct mr__worker *w);
};
/* Jobs a worker with I/O in flight runs between two polls of its ring. */
#define MR__IO_INTERVAL 32
/* Every worker blocked in a job with no timer: a sleeping helper looks for
 * a deadlock again this often (runtime.c help_sleep()). */
#define MR__STUCK_RELOOK_NS 1000000000
/*
 * A worker that has not polled its ring for this long while it runs (not
 * idle, not blocked) with I/O in flight is stuck in one job: a searching
 * worker reaps its ring for it (io_handoff() in runtime.c), and a parked
 * one sleeps no longer than this while such a worker exists. 2 ms: the
 * ring posts completions at the owner's next tick (4 ms at HZ=250), so
 * fibers wait about tick + 2 ms at worst instead of the job's length,
 * and a parked worker beside a busy one wakes 500 times a second, well
 * under a percent of a CPU. Test hook: mr__io_handoff_ns.
 */
#define MR__IO_HANDOFF_NS 2000000
extern uint64_t mr__io_handoff_ns __attribute__((visibility("hidden")));
/* w runs with I/O it may get stuck on (from the backend when its first
 * operation in flight is queued): wake a parked worker to watch, unless
 * one watches already (runtime.c). */
void mr__io_watch_check(struct mr__worker *w);

/*
 * Latent joins (par/join.c, and the fast path inlined from <moirai/par.h>):
 * the mr_join frames of the running context that no other worker can see
 * yet, oldest first in ls.frame[0..ls.top). Frames below
 * ls.bot have been promoted into the deque by a heartbeat (always the
 * oldest first, so they are a prefix). ls.base: where the running fiber's
 * own frames start (resume() sets it); a context with frames above it must
 * not park. ls.beat counts joins down to the next look at the clock
 * (mr__beat()). mr__tls_lstack points at the thread's worker's ls.
 */
#define MR__LAT_CAP MR__LSTACK_CAP
/*
 * The countdown adapts (mr__beat()): it aims at MR__BEAT_LOOKS looks at the
 * clock per interval, between 1 and MR__BEAT_JOINS_MAX joins per look,
 * starting from 1 whenever the worker parked. Fine-grained joins then pay
 * for the cycle counter (20-30 ns in this VM) once in thousands of joins,
 * and coarse ones still look several times per interval. A tree that turns
 * from fine to coarse can wait up to MR__BEAT_JOINS_MAX of its joins for
 * the next look.
 */
#define MR__BEAT_JOINS_MAX 4096
#define MR__BEAT_LOOKS 8

struct mr__worker {
	struct mr__deque dq; /* first: the owner's hot line */

	/* Owner-only: the heartbeat (see above). */
	uint64_t beat_last; /* cycle counter at the last promotion */
	uint64_t beat_look; /* ... at the last look (0: none yet) */
	uint32_t beat_n;    /* joins per look now */
	uint64_t yield_last; /* cycle counter at the last mr__cpu_yield() look */

	/* Owner-only state. */
	struct mr_runtime *rt;
	struct mr_worker_stats *st; /* our counters (<moirai/stats.h>), owner writes */
	unsigned idx;
	bool searching;
	uint64_t rng;
	struct mr__job *free_jobs; /* job block free list */
	unsigned nfree;
	pid_t tid;
	pthread_t thread;
	/* The scheduler's line of this worker, mapped read-only, or NULL (not
	 * registered, or the lines could not be mapped: see scx.h). Set and
	 * cleared by the worker; other workers and wakers read it
	 * (searchers_stalled()). */
	const struct mr__scx_line *_Atomic scx;
	struct mr__scx_hints scx_hints; /* what the worker publishes (scx.h) */
	_Atomic bool scx_on;		/* registered: publish (set by the owner;
					 * relaxed, a test fakes it) */
	uint32_t scx_state;	  /* last state published there */
	bool scx_queued;	  /* last depth published there was not 0 */
	uint32_t wstate;	  /* last MR_WSTATE_* stored in st->state */
	int home_node;		  /* NUMA node of the home CPU (place.c) */
	int home_cpu;		  /* see place.c */
	unsigned node_lo, node_n; /* our node's workers: rt->node_members[node_lo..+node_n) */
	bool io_primary;	  /* the first of its node's workers: mr__push_io() */

	/*
	 * > 0 while the running context is inside the parallel API with work
	 * outstanding: in a() of mr_join (b is in the deque), or running other
	 * jobs while it waits (mr__work_until, join and group waits). A fiber
	 * must not park then - it would resume on another worker, its frames
	 * still holding this worker's deque entries and pointer - so it blocks
	 * like a thread (and so do the jobs it runs). resume() gives each fiber
	 * its own count, starting at 0.
	 */
	unsigned pinned;

	/* Fibers (user/fiber): yielded fibers run after the deque empties. */
	struct mr_fiber *yield_head, *yield_tail;
	void *stack_cache[MR__STACK_CACHE]; /* default-size fiber stacks */
	unsigned nstack_cache;
	void *altstack; /* sigaltstack for the stack-overflow handler */

	/* Timers: a min-heap, locked so that other threads can cancel (and
	 * fire, while this worker's thread is blocked: see mr__worker_block). */
	mr__cacheline_aligned _Atomic uint32_t tlock;
	_Atomic uint32_t blocked; /* the thread sleeps in a job's wait */
	/* Set (1) while the blocked thread sleeps in mr__worker_help(); a waker
	 * claims it with a CAS to 0, then writes hpark, the futex it sleeps on. */
	_Atomic uint32_t hsleep;
	_Atomic uint32_t hpark;
	/* Set while that sleep is in its ring or epoll (help_sleep()): the
	 * claimer then also wakes the backend's wait (mr__io_ops.wake, or the
	 * ring's FUTEX_WAIT on `park`), which looks at hpark before it
	 * sleeps (mr__help_claimed()). */
	_Atomic uint32_t hring;
	struct mr__timer **theap;
	uint32_t tn, tcap;
	struct mr__timer *tdue;	/* due, being fired one by one (timer.c) */
	struct mr__timer *_Atomic tfiring; /* the one whose fire runs now */
	_Atomic uint32_t tfirer; /* a thread fires this heap's timers */
	_Atomic int64_t tnext; /* nearest deadline, or -1 (a hint for the owner) */

	/* I/O (user/io): the backend's state for this worker, set up by the
	 * worker's first fiber that does I/O; NULL before. io_inflight: its
	 * operations not yet completed (owner writes, destroy reads). */
	void *io;
	const struct mr__io_ops *_Atomic io_ops;
	uint32_t io_tick;
	_Atomic uint32_t io_inflight;
	/* Polls of the ring so far (the backend bumps it in poll and wait;
	 * owner writes, helpers read: io_handoff()). */
	_Atomic uint32_t io_polls;

	struct mr__lstack ls; /* latent mr_join frames: owner-only (see above) */

	/* For dumps (fiber/dump.c): the fiber this worker runs (NULL: none),
	 * and what its thread last waited on (mr__wait_note(): shown while
	 * `blocked`). Owner writes, a dump reads. */
	struct mr_fiber *_Atomic cur;
	_Atomic uint8_t wait_kind;
	const void *_Atomic wait_obj;
	_Atomic int64_t wait_deadline;

	/* Written by wakers: the futex this worker sleeps on. */
	mr__cacheline_aligned _Atomic uint32_t park;
	/* Written by helpers (io_handoff()): io_polls as they last saw it,
	 * and when it last changed. Hints: a race costs one needless try. */
	_Atomic uint32_t io_seen_polls;
	_Atomic int64_t io_seen_ns;
	/* ... and the worker thread's CPU time at io_cpu_ns (io_ran()). */
	_Atomic int64_t io_cpu_ns, io_cpu;
	char pad_[MR_CACHELINE - 2 * sizeof(uint32_t) - 3 * sizeof(int64_t)];
};

struct mr_runtime {
	uint64_t magic;
	unsigned nworkers;
	uint64_t spin_ns;
	unsigned deque_log2;
	uint32_t scx_id; /* runtime number for the BPF scheduler; 0: not registered */
	uint32_t id;	 /* number in this process, from 1: names its metrics export */
	struct mr__metrics metrics; /* the workers' counters, then the outside record */
	struct mr__worker **workers;
	struct mr_runtime *next_live; /* registry of live runtimes */

	/* Searching workers. */
	mr__cacheline_aligned _Atomic uint32_t nsearching;

	/*
	 * Sleeping workers: one bit per worker and two counts. nidle never
	 * undercounts the bits (wakers use it to skip the scan); nactive never
	 * undercounts the workers whose bit is clear (0 means every worker is
	 * asleep: quiescence, used by destroy).
	 */
	mr__cacheline_aligned _Atomic uint32_t nidle;
	_Atomic uint32_t nactive;
	/* The parked worker that wakes every mr__io_handoff_ns to look for
	 * workers stuck in one job with I/O (its index + 1; 0: none). One at
	 * most, so a runtime of many idle workers does not wake them all. */
	_Atomic uint32_t io_watcher;
	/* Workers past their last look, asleep on their park word (with or
	 * without a timeout): all of them, with no timer and nothing visible,
	 * is a runtime that only something outside it can wake (destroy). */
	_Atomic uint32_t nasleep;
	_Atomic uint64_t *idle_mask;
	unsigned idle_words;
	/* With the BPF scheduler on a machine of several NUMA nodes: for node
	 * n, idle_words words at node_workers[n * idle_words] with the bits
	 * of the workers homed there, so that a waker wakes a worker of its
	 * own node first (see scx.c). NULL otherwise. Read-only after
	 * creation. */
	uint64_t *node_workers;
	unsigned nnodes;
	/* Placement (place.c), read-only after creation: the CPU set of the
	 * workers, whether each is pinned to its home CPU, and the workers
	 * grouped by home node, for stealing near first. */
	cpu_set_t *cpus;
	size_t cpus_size;
	bool pin;
	unsigned *node_members;

	/* Injector: jobs from threads outside the runtime. */
	mr__cacheline_aligned pthread_mutex_t inj_lock;
	/* Threads outside rt inside mr__inject(): once their job is queued
	 * it may run, finish and let a destroy through, which then waits for
	 * this to be 0 before it frees rt (their notify still reads it). */
	_Atomic uint32_t ninjecting;
	struct mr__job *inj_head, *inj_tail;
	_Atomic size_t inj_len;

	/* Fibers alive (not yet returned): destroy waits for them. */
	_Atomic uint64_t nfibers;
	/* The deadlock check (fiber/dump.c): reported once; when it last
	 * looked for mutex cycles (coarse ns). */
	_Atomic uint32_t deadlock_said;
	_Atomic int64_t deadlock_looked;
	/* Workers whose thread is blocked (mr__worker_block): others fire their timers. */
	_Atomic uint32_t nblocked;
	/* Blocked workers asleep in mr__worker_help() (hsleep set); never
	 * undercounts them, so 0 lets a waker skip the scan. */
	_Atomic uint32_t nhsleep;

	/* Lifecycle. */
	mr__cacheline_aligned _Atomic uint32_t draining; /* destroy waits for quiescence */
	_Atomic uint32_t quiesced; /* futex: bumped when destroy should look again */
	_Atomic uint32_t exiting;
	/* A worker of another runtime that destroys this one: it runs its own
	 * work meanwhile, and maybe_quiesced() wakes it by name, counted in
	 * nwaking while it may touch it. */
	struct mr__worker *_Atomic destroyer;
	_Atomic uint32_t nwaking;

	/* Job blocks shared between workers, and every slab for freeing. */
	pthread_mutex_t pool_lock;
	struct mr__pool_batch *pool_batches;	/* full batches */
	struct mr__pool_batch *pool_spare;	/* empty batch descriptors */
	void **slabs;
	size_t nslabs, slabs_cap;
};

/* The calling thread's worker, or NULL outside any runtime. */
extern __thread struct mr__worker *mr__tls_worker __attribute__((tls_model("initial-exec")));

/*
 * > 0 while the calling thread is where a call into the library from a
 * signal handler would deadlock or lose work: waiting for or holding a
 * library mutex (registry, default runtime, injector, stack pool,
 * scheduler registration: mr__lock()), or a worker going to sleep in
 * mr__work_until() (a fiber readied onto its deque meanwhile would wait
 * until something else woke it). mr_go aborts when it finds it set
 * (<moirai/fiber.h>: nothing in the library is async-signal-safe). Only
 * this thread touches it: a plain thread-local.
 */
extern __thread unsigned mr__tls_inside __attribute__((tls_model("initial-exec")));

static inline void mr__inside_enter(void)
{
	mr__tls_inside++;
	/* Compiler-only: the count is up before what follows, for the read in
	 * mr_go_opts() by a signal handler on this thread. */
	atomic_signal_fence(memory_order_seq_cst);
}

static inline void mr__inside_leave(void)
{
	/* Compiler-only: what came before is over before the count drops
	 * (pairs as in mr__inside_enter()). */
	atomic_signal_fence(memory_order_seq_cst);
	mr__tls_inside--;
}

static inline void mr__lock(pthread_mutex_t *m)
{
	mr__inside_enter();
	pthread_mutex_lock(m);
}

static inline void mr__unlock(pthread_mutex_t *m)
{
	pthread_mutex_unlock(m);
	mr__inside_leave();
}

/*
 * The calling worker's thread is about to wait (a job or a pinned fiber
 * waiting on a sync object, a channel, a sleep): hand over what only this
 * worker runs - every job of its deque and its yielded fibers go to the
 * injector, other workers fire our timers - so that the holder of what we
 * wait for can run elsewhere. mr__worker_unblock() when it wakes.
 */
void mr__worker_block(struct mr__worker *w);
void mr__worker_unblock(struct mr__worker *w);

/*
 * Between mr__worker_block() and mr__worker_unblock(): wait until done(arg)
 * or the deadline (-1: none), running FIBERS on w meanwhile (never jobs: a
 * job run on top of the blocked one could wait for a lock it holds; a fiber
 * parks instead and comes back here). It runs them only while every worker
 * of the runtime is blocked, when nobody else could: the injector's fibers,
 * what they ready here, and the due timers of blocked workers. Sleeps when
 * there is nothing to run; whoever makes done() true must then call
 * mr__helper_wake(w), and must not touch w after the waiter may be gone
 * unless the waiter waits for it (waitq.c's waker_out).
 */
void mr__worker_help(struct mr__worker *w, bool (*done)(void *arg), void *arg, int64_t deadline);
void mr__helper_wake(struct mr__worker *w);

static inline struct mr__worker *mr__self(void)
{
	return mr__tls_worker;
}

/* rt's record for threads outside it (<moirai/stats.h>). */
static inline struct mr_worker_stats *mr__stats_outside(struct mr_runtime *rt)
{
	return &rt->metrics.recs[rt->nworkers];
}

/*
 * Add n to a counter of the calling thread's worker if it is one of rt's,
 * else (another runtime's worker, a plain thread) to rt's outside record.
 */
#define MR__STAT_BY(rt_, field, n)                                                                \
	do {                                                                                       \
		struct mr__worker *w_ = mr__self();                                                \
		if (w_ && w_->rt == (rt_))                                                         \
			MR__STAT_ADD(w_->st, field, n);                                            \
		else                                                                               \
			MR__STAT_ATOMIC_ADD(mr__stats_outside(rt_), field, n);                     \
	} while (0)

/*
 * The calling thread's worker, read afresh: out of line, so that a fiber
 * that parked (and may resume on another thread) never uses a thread
 * pointer read before the park (aarch64 keeps it in a register: see
 * self_after_switch() in fiber.c).
 */
struct mr__worker *mr__self_fresh(void);

/* Add n to a counter of the calling thread's worker; nothing on other
 * threads. For slow paths (it calls mr__self_fresh()). */
#define MR__STAT_SELF(field, n)                                                                    \
	do {                                                                                       \
		struct mr__worker *w_ = mr__self_fresh();                                          \
		if (w_)                                                                            \
			MR__STAT_ADD(w_->st, field, n);                                            \
	} while (0)

/* Run a job taken from a queue, counting it (fibers count in fiber_runs). */
void mr__fiber_exec(struct mr__job *job, struct mr__worker *w);
static inline void mr__job_run(struct mr__worker *w, struct mr__job *job)
{
	if (job->exec == mr__fiber_exec) {
		job->exec(job, w); /* probed as fiber_run / fiber_stop */
		return;
	}
	MR__STAT_ADD(w->st, jobs_run, 1);
	MR_PROBE3(job_start, job, w->idx, job->exec);
	job->exec(job, w); /* may free job: only its address is used below */
	MR_PROBE2(job_end, job, w->idx);
}

/* w's I/O backend, or NULL (owner only: it is the only writer). */
static inline const struct mr__io_ops *mr__worker_io(struct mr__worker *w)
{
	return atomic_load_explicit(&w->io_ops, memory_order_relaxed);
}

/*
 * For a backend's wait(), on w's thread, once it has said that it sleeps
 * (its store of `sleeping` and the fence after it), or once its futex wait
 * is in the kernel: was w claimed while it sleeps in help_sleep()? Then it
 * must not sleep: the claimer may have looked for a sleeper before there
 * was one (help_claim()). hring is w's own; acquire on hpark pairs with
 * the claimer's release.
 */
static inline bool mr__help_claimed(struct mr__worker *w)
{
	return atomic_load_explicit(&w->hring, memory_order_relaxed) &&
	       atomic_load_explicit(&w->hpark, memory_order_acquire);
}

/*
 * The default runtime, created on first use (a failed creation is tried
 * again at the next call). _try: NULL and errno (EINVAL for a bad
 * MOIRAI_WORKERS, or mr_runtime_create()'s) if it cannot be, for calls that
 * report errors; the other aborts naming `call`, for calls that return
 * nothing (mr_join, mr_group_spawn).
 */
struct mr_runtime *mr__default_runtime_try(void);
/* The default runtime if it exists (never creates it), or NULL. */
struct mr_runtime *mr__default_runtime_peek(void);
struct mr_runtime *mr__default_runtime(const char *call);

/* Abort naming `call` unless rt is a live runtime. */
void mr__check_live(const struct mr_runtime *rt, const char *call);

/* Push a job that a thief may take, waking a worker if it became visible. */
static inline bool mr__push(struct mr__worker *w, struct mr__job *job);

/* Make work visible to others has happened: wake one sleeper if nobody searches. */
void mr__notify(struct mr_runtime *rt);

/* Submit a job from outside the runtime (or from another runtime). */
void mr__inject(struct mr_runtime *rt, struct mr__job *job);
/* Test hook: called by mr__inject() between queueing and notifying. */
extern void (*mr__test_inject_hook)(void) __attribute__((visibility("hidden")));

/*
 * Run other work on w until done(arg) returns true. Sleeps (staying
 * available for new work) when there is none; whoever makes done() true must
 * then call mr__wake_worker(w, MR__TOK_LATCH).
 */
void mr__work_until(struct mr__worker *w, bool (*done)(void *arg), void *arg);

/* Wake w if it sleeps (after a latch it waits on was set, seq_cst). */
void mr__wake_worker(struct mr__worker *w, uint32_t tok);

/* Run fn(arg) on a worker of rt from an outside thread; block until it returns. */
void mr__run_outside(struct mr_runtime *rt, void (*fn)(void *), void *arg);

/*
 * Deadlock checks (fiber/dump.c). Threads of the library that wait for
 * work (workers, idle blocking-pool threads, the dump thread) count
 * themselves in mr__nthreads_internal; a thread that blocks for ever (no
 * deadline) in a wait only a waker can end counts itself in
 * mr__nthreads_blocked and its waker uncounts it. mr__stuck_hook, when
 * set, is called by the last worker going to sleep (MR__STUCK_ASLEEP) or
 * by a blocked worker asleep when every worker is (MR__STUCK_IN_JOBS).
 * mr__rt_stuck(): every worker asleep, no timer, no I/O, nothing queued,
 * fibers alive (destroy's DRAIN_STUCK). mr__others_idle(): no other live
 * runtime is busy.
 */
enum { MR__STUCK_ASLEEP, MR__STUCK_IN_JOBS };
extern _Atomic int mr__nthreads_internal, mr__nthreads_blocked;
extern void (*_Atomic mr__stuck_hook)(struct mr_runtime *rt, int why);
bool mr__rt_stuck(struct mr_runtime *rt);
/* A thread counted itself blocked for ever on something of rt's: if rt's
 * workers are all asleep already, nobody else will look (their look may
 * have come before our count), so look from here. */
void mr__stuck_poke(struct mr_runtime *rt);
/* The same for every live runtime (a thread blocked on something, like a
 * channel, that belongs to no runtime). */
void mr__stuck_poke_all(void);
bool mr__others_idle(struct mr_runtime *rt);
/* fn(rt, arg) for each live runtime, under the registry lock (the dump
 * signal's thread: a runtime is not destroyed while it is dumped). */
void mr__runtime_each(void (*fn)(struct mr_runtime *rt, void *arg), void *arg);

/* ---- placement (place.c) ---- */

/* NUMA node of a CPU (0 when unknown). */
int mr__cpu_node(int cpu);
/* The runtime's CPU set: a copy of cpus (size bytes) if not NULL, else the
 * caller's (its runtime's, for a worker). 0, -EINVAL (empty), -ENOMEM. */
int mr__place_cpus(const void *cpus, size_t size, cpu_set_t **out, size_t *out_size);
unsigned mr__place_ncpus(const struct mr_runtime *rt);
/* Home CPUs and nodes of the workers, node_members. 0 or -ENOMEM. */
int mr__place_init(struct mr_runtime *rt);
/* From the creator, once w's thread exists: set its affinity. 0 or an errno. */
int mr__place_worker(struct mr_runtime *rt, struct mr__worker *w);
/* In the worker's thread, at its start. */
void mr__place_thread_start(struct mr__worker *w);
/* Test hooks: a fake topology (node of CPU c), and a call for each victim
 * a thief tries (k: its rank in the pass). */
extern const int *mr__test_cpu_nodes __attribute__((visibility("hidden")));
extern int mr__test_ncpu_nodes __attribute__((visibility("hidden")));
extern void (*mr__test_steal_probe)(struct mr__worker *w, unsigned victim, unsigned k)
	__attribute__((visibility("hidden")));

/* Job blocks of MR__JOB_BLOCK bytes from w's pool (never fails: aborts on ENOMEM). */
static inline void *mr__job_alloc(struct mr__worker *w);
static inline void mr__job_free(struct mr__worker *w, void *job);
void mr__pool_fini(struct mr_runtime *rt);
/* The pool's slow paths (pool.c): refill an empty list, spill a long one. */
void *mr__job_refill(struct mr__worker *w);
void mr__job_spill(struct mr__worker *w);

/* Inline: a group spawn's allocation and its task's free are a list pop
 * and push, and a call each would cost as much again. */
static inline void *mr__job_alloc(struct mr__worker *w)
{
	struct mr__job *j = w->free_jobs;

	if (likely(j)) {
		w->free_jobs = j->next;
		w->nfree--;
		return j;
	}
	return mr__job_refill(w);
}

static inline void mr__job_free(struct mr__worker *w, void *job)
{
	struct mr__job *j = job;

	j->next = w->free_jobs;
	w->free_jobs = j;
	if (unlikely(++w->nfree > 2 * MR__POOL_BATCH))
		mr__job_spill(w);
}

/* Must the running context block its thread rather than park its fiber?
 * (inside the parallel API, or latent joins of its own: see above) */
static inline bool mr__pinned(const struct mr__worker *w)
{
	return w->pinned || w->ls.top != w->ls.base;
}

/*
 * The heartbeat (par/join.c), every w->beat_n joins: poll I/O and
 * timers, and once per interval promote the oldest latent join. Owner only.
 * mr__promote_all(): promote every latent join (before the thread blocks).
 */
void mr__beat(struct mr__worker *w);
/* Publish the depth (deque and latent joins) on the load line if it
 * flipped between empty and not (runtime.c); only with a line. */
void mr__scx_refresh(struct mr__worker *w);
void mr__promote_all(struct mr__worker *w);
/* Heartbeat interval in cycle-counter ticks (set at the first runtime's
 * creation from MOIRAI_BEAT_US, default 50 us); tests may set it to 0. */
extern uint64_t mr__beat_ticks __attribute__((visibility("hidden")));
void mr__beat_init(void);

/* The cycle counter the heartbeat reads: a few ns, no system call. */
static inline uint64_t mr__cycles(void)
{
#if defined(__x86_64__) || defined(__i386__)
	return __builtin_ia32_rdtsc();
#elif defined(__aarch64__)
	uint64_t v;
	__asm__ volatile("mrs %0, cntvct_el0" : "=r"(v));
	return v;
#else
	return mr__now_ns();
#endif
}

/*
 * A worker that computes gives its CPU to the other runnable threads every
 * MOIRAI_YIELD_US (100 us; 0: never) of fork-join or jobs, while its
 * runtime has I/O in flight. The kernel switches between threads that do
 * not sleep at its tick (4 ms at HZ=250): a worker whose connections are
 * ready waits that long, twice over, behind a worker (or any thread) that
 * computes on its CPU, and a service that also computes had its p99 at
 * 7.8 ms beside wrk on 2 CPUs. sched_yield() moves the caller behind the
 * threads waiting for its CPU (under EEVDF its deadline moves by a slice,
 * its fair share does not change) and returns at once when none waits.
 * mr__yield_ticks: the interval in cycle-counter ticks (mr__beat_init()).
 */
extern uint64_t mr__yield_ticks __attribute__((visibility("hidden")));
void mr__cpu_yield(struct mr__worker *w, uint64_t now);
/* Test hook: the yields mr__cpu_yield() made. */
extern _Atomic unsigned long mr__test_cpu_yields __attribute__((visibility("hidden")));

static inline void mr__cpu_yield_due(struct mr__worker *w, uint64_t now)
{
	uint64_t ticks = __atomic_load_n(&mr__yield_ticks, __ATOMIC_RELAXED);

	if (unlikely(now - w->yield_last >= ticks) && ticks)
		mr__cpu_yield(w, now);
}

static inline bool mr__push(struct mr__worker *w, struct mr__job *job)
{
	int r = mr__deque_push(&w->dq, job);

	if (likely(r == MR__PUSH_PRIVATE))
		return true;
	if (r == MR__PUSH_PUBLIC) {
		mr__notify(w->rt);
		return true;
	}
	return false;
}

/*
 * Connections stay on as few workers as keep up with them. A fiber's
 * socket operations go to the ring (or epoll) of the worker it runs on,
 * and only that worker's thread reaps them: while the kernel runs
 * something else on that thread's CPU, none of its connections moves. So
 * the fibers that I/O readies on the first worker of a node (io_primary)
 * stay private to it, where a push would otherwise publish them (onto an
 * empty deque, or at a thief's request), as long as it keeps up: until
 * one of them has waited mr__io_pack_ns (mr__io_share_ok()). Fibers that
 * I/O readies on the other workers are published as any push is, and a
 * primary that runs out of work steals them: the connections gather on the
 * primaries while those have time to spare, and spread when they do not.
 * Everything else (jobs, spawns, wake-ups by channels and locks) is shared
 * as before.
 *
 * Why: with connections spread evenly over every worker, every worker is
 * runnable most of the time, and on a machine whose CPUs are all busy
 * (a load generator, other services) each one's connections wait out the
 * slices the kernel gives to the others. HTTP hello on 2 CPUs beside wrk:
 * p99 4.8-5.4 ms spread, 0.57 ms gathered (see tools/bench/io).
 */
#define MR__IO_PACK_NS 1000000
extern uint64_t mr__io_pack_ns __attribute__((visibility("hidden")));

/* Owner only. A thief asked w to share, and everything private may be
 * fibers readied by I/O: should w share now? False clears the request. */
bool mr__io_share_ok(struct mr__worker *w);

/* mr__push() for a fiber that I/O readied (f->io_ready_ns set). */
static inline bool mr__push_io(struct mr__worker *w, struct mr__job *job)
{
	struct mr__deque *dq = &w->dq;

	if (!w->io_primary)
		return mr__push(w, job);
	if (mr__deque_push_private(dq, job) != MR__PUSH_PRIVATE)
		return false;
	if (unlikely(atomic_load_explicit(&dq->movesplit, memory_order_relaxed)) &&
	    mr__io_share_ok(w) && mr__deque_publish(dq) == MR__PUSH_PUBLIC)
		mr__notify(w->rt);
	return true;
}

/*
 * Owner only. Pop, but first honour a thief's request to share (and wake a
 * sleeper for what becomes stealable): for loops that pop many jobs without
 * pushing, such as a group's wait and the worker loop.
 */
static inline struct mr__job *mr__pop_sharing(struct mr__worker *w)
{
	struct mr__deque *dq = &w->dq;

	if (unlikely(atomic_load_explicit(&dq->movesplit, memory_order_relaxed)) &&
	    (int32_t)(dq->head - dq->o_split) > 1 && (!w->io_primary || mr__io_share_ok(w)) &&
	    mr__deque_publish(dq) == MR__PUSH_PUBLIC)
		mr__notify(w->rt);
	return mr__deque_pop(dq);
}

/* ---- timers (timer.c): a min-heap per worker under a spinlock, fired by park() ---- */
enum { MR__TIMER_IDLE = -1, MR__TIMER_DUE = -2 };

struct mr__timer {
	int64_t deadline;
	int32_t idx; /* position in the heap, or MR__TIMER_IDLE / _DUE (in the batch to fire) */
	struct mr__worker *w;
	struct mr__timer *next, *prev; /* the batch of due timers in mr__timers_run() */
	const char *call; /* the user's call that set it, for an abort's message */
	/*
	 * Called WITHOUT any lock held (the heap lock is innermost: see
	 * user/README.md), from any thread of the runtime. It may take a wait
	 * queue's or a channel's lock. Once it has readied its fiber, t may be
	 * gone: it must not touch t after that.
	 */
	void (*fire)(struct mr__timer *t);
};

/* Add t (deadline, fire set) to the calling worker's heap. */
void mr__timer_add(struct mr__worker *w, struct mr__timer *t);
/*
 * Remove t if still pending; if it is being fired, wait until the fire has
 * returned. True if it was removed before firing. Must not be called with
 * a lock that a fire may take (a wait queue's, a channel's).
 */
bool mr__timer_cancel(struct mr__timer *t);
/* Fire every due timer of w; returns the nearest remaining deadline or -1. */
int64_t mr__timers_run(struct mr__worker *w);
void mr__timers_fini(struct mr__worker *w);
/* Test hook: called before each fire, without the heap lock. */
extern void (*mr__test_timer_fire_hook)(struct mr__timer *t);

#endif /* MR_SCHED_H */
