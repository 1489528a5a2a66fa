/*
 * moirai/runtime.h - creating, entering and destroying a runtime.
 *
 * A runtime is a set of worker threads (named moirai-w0, moirai-w1, ...),
 * each with its own work-stealing deque, plus an injector queue for work
 * submitted from threads outside the runtime. Idle workers spin briefly and
 * then sleep on a futex: an idle runtime uses no CPU.
 *
 * Several runtimes may exist at once. The parallel API (moirai/par.h) runs on
 * the runtime of the calling worker; called from any other thread it uses a
 * process-wide default runtime, created on first use with MOIRAI_WORKERS
 * workers if that environment variable is set, else one per CPU of the
 * process's affinity mask, and pinned as MOIRAI_PIN says (unset: the
 * default of mr_runtime_create, 0: MR_PIN_NONE, 1: MR_PIN_HOME). To run
 * code on a runtime you created, enter it with mr_runtime_install().
 * MOIRAI_STACK sets the stack size of the workers of every runtime whose
 * mr_config leaves stack_size 0, the default runtime's included.
 *
 * Fork: the child of fork() has only the thread that called it, so none of
 * the parent's runtimes works there (none of their workers exists): passing
 * one to any call aborts, as for a destroyed runtime (its memory stays the
 * parent's business, never freed in the child). The child gets a new
 * default runtime on first use, and mr_runtime_create works in it. There
 * mr_runtime_current() is NULL and mr_worker_index() -1, even in a child
 * forked on a worker. What else a child keeps: <moirai/fiber.h>.
 */
#ifndef MOIRAI_RUNTIME_H
#define MOIRAI_RUNTIME_H

#include <stdio.h>

#include <moirai/common.h>

MR_EXTERN_C_BEGIN

typedef struct mr_runtime mr_runtime_t;

/* The most workers one runtime may have. */
#define MR_MAX_WORKERS 4096

/* mr_config.pin: whether each worker is pinned to its home CPU. */
enum {
	MR_PIN_DEFAULT = 0, /* the library's choice: MR_PIN_NONE (see mr_runtime_create) */
	MR_PIN_NONE = 1,    /* every worker may run on any CPU of the set */
	MR_PIN_HOME = 2,    /* each worker runs on its home CPU only */
};

struct mr_config {
	size_t sz;		/* sizeof(struct mr_config); MR_OPTS sets it */
	unsigned workers;	/* 0: one per CPU of the CPU set; at most MR_MAX_WORKERS */
	unsigned deque_log2;	/* log2 of each worker's deque capacity; 0: 13 (8192 jobs), 6..24 */
	unsigned spin_us;	/* microseconds an idle worker searches before it sleeps; 0: 50 */
	/*
	 * Bytes of each worker thread's stack, where jobs run (a deep recursion
	 * in a job needs it: mr_join, groups and loop bodies run there). 0:
	 * MOIRAI_STACK from the environment if set (bytes, or with a K, M or G
	 * suffix: "256M"), else the system's default for threads (the
	 * RLIMIT_STACK soft limit, usually 8 MiB). At least PTHREAD_STACK_MIN;
	 * rounded up to pages. Address space is reserved for all of it; pages
	 * become resident as they are touched. A 64 KiB guard lies below: an
	 * overflow aborts with "moirai: worker stack overflow" naming the
	 * worker and the size. (Fibers have their own stacks: fiber.h.)
	 */
	size_t stack_size;
	/* Placement. */
	const void *cpus;	/* a cpu_set_t (CPU_ALLOC or a plain one): the CPUs the workers
				 * run on; NULL: the caller's affinity mask */
	size_t cpus_size;	/* its size in bytes (sizeof(cpu_set_t), CPU_ALLOC_SIZE(n)) */
	unsigned pin;		/* MR_PIN_* */
};

/*
 * Create a runtime and start its workers. cfg may be NULL for the defaults.
 *
 * Placement: the workers run on the CPUs of cfg->cpus, or of the calling
 * thread's affinity mask (its runtime's set, when it is a worker). Worker i
 * of n has the CPU at position i*c/n of the set's c CPUs as its home CPU,
 * whose NUMA node (from /sys/devices/system/node; node 0 without it) is
 * the worker's node: an idle worker steals from the workers of its own node
 * before the others. MR_PIN_HOME pins each worker to its home CPU;
 * MR_PIN_NONE (and MR_PIN_DEFAULT) lets each run anywhere in the set. Pin
 * when the runtime has its CPUs to itself and runs one worker per CPU:
 * the kernel places a woken thread next to its waker and can leave two
 * workers on one CPU for milliseconds while another idles
 * (tools/bench/placement.sh). Do not pin when other busy threads or
 * processes share the CPUs (a load generator, another service): a pinned
 * worker cannot move away from a busy CPU, and an HTTP server sharing 2
 * CPUs with its load generator served 45k requests/s pinned against 79k
 * unpinned (tools/bench/io). Threads and
 * processes created from a pinned worker (from a fiber or job) inherit
 * its one-CPU mask, except that a child forked there gets the whole set
 * back: give threads you create there their own mask
 * (pthread_attr_setaffinity_np). MOIRAI_PIN=1 pins the default runtime's
 * workers.
 *
 * Callable from any thread; blocks while the threads start.
 * ERRORS: EINVAL (more than MR_MAX_WORKERS workers, deque_log2 out of
 * range, sz too small, a stack_size below PTHREAD_STACK_MIN or
 * MOIRAI_STACK not a size, an unknown pin, cpus with no CPU or a
 * cpus_size of 0, a CPU of cpus that the thread may not run on), ENOMEM,
 * EAGAIN (a worker thread or its stack cannot be created).
 */
MR_API mr_runtime_t *mr_runtime_create(const struct mr_config *cfg);

/*
 * Wait until all work submitted to rt (and everything that work spawned) has
 * finished, stop and join the workers, free everything, and return 0.
 * Blocks the caller: a plain thread sleeps on a futex; a worker of another
 * runtime runs its own runtime's work meanwhile (as mr_join does), so work
 * of that runtime that rt's work waits for still runs. Fibers parked on a
 * timer (mr_sleep_*, a wait with a deadline) are waited for.
 *
 * Fibers parked for good are not: when every worker of rt sleeps with no
 * timer pending and nothing queued while fibers of rt are still parked (on
 * a sync object, a channel, a join: something only code outside rt can
 * end), destroy returns -EBUSY and rt stays alive and usable. Wake them
 * and call it again. A wake-up from outside rt that races with the call
 * may or may not be seen in time. Any thread or worker but rt's own.
 * Passing a runtime that is not alive, or destroying one concurrently from
 * two threads, aborts.
 * ERRORS: EDEADLK (called from one of rt's workers), EBUSY (fibers parked
 * for good); nothing is changed with either.
 */
MR_API int mr_runtime_destroy(mr_runtime_t *rt);

/*
 * Run fn(arg) on a worker of rt and return when it has returned; inside fn,
 * mr_join, groups and parallel loops use rt. Blocks the caller: a plain
 * thread sleeps on a futex; a worker of another runtime runs its own
 * runtime's work until fn has returned (as mr_join does), so fn may wait
 * for work of the caller's runtime; from a worker of rt it simply calls fn.
 * Returns 0, -EINVAL for a NULL fn. Passing a runtime that is not alive
 * aborts.
 */
MR_API int mr_runtime_install(mr_runtime_t *rt, void (*fn)(void *), void *arg);

/*
 * The process-wide default runtime, created on first use (MOIRAI_WORKERS
 * workers, else one per CPU of the affinity mask), or NULL and errno; a
 * failed creation is tried again at the next call. Any thread; blocks only
 * while the runtime is created. The calls of par.h that return nothing
 * (mr_join, mr_group_spawn) abort with a message naming themselves when
 * they need the default runtime and it cannot be created.
 * ERRORS: EINVAL (MOIRAI_WORKERS is not a number 0..MR_MAX_WORKERS, or
 * MOIRAI_PIN is set to neither 0 nor 1), and those of mr_runtime_create():
 * ENOMEM, EAGAIN.
 */
MR_API mr_runtime_t *mr_runtime_default(void);

/* The runtime whose worker is calling, or NULL from any other thread.
 * Async-signal-safe. */
MR_API mr_runtime_t *mr_runtime_current(void);

/* Number of workers of rt. */
MR_API unsigned mr_runtime_workers(const mr_runtime_t *rt);

/* Index of the calling worker in its runtime, or -1 outside any runtime.
 * Async-signal-safe. */
MR_API int mr_worker_index(void);

/*
 * Write what rt is doing to out: each worker (the fiber it runs, idle, or
 * blocked inside a job and on what), then each live fiber:
 *
 *	fiber 0x7f..40 "name" parked 12.003 ms: waits on chan 0x55..a0
 *	    #0 0x7f..12 mr_chan_recv+0x42 (libmoirai.so.0.1.0+0x1a2b2)
 *	    #1 0x55..34 consumer+0x1c (prog+0x1234)
 *
 * The state is running, runnable or parked, and the time since the fiber
 * last parked or was created: for a parked fiber how long it has waited
 * (CLOCK_MONOTONIC_COARSE, read at each park and spawn: a vDSO read of
 * a few ns, and a few ms of resolution). A parked fiber waits on one
 * of: chan (a send or receive), select (the first channel of the select),
 * shm-chan (a shm:// channel), mutex, cond, sem, wg, event (the object's
 * address), join (the fiber joined), sleep, io (the descriptor), blocking
 * (the function run on the blocking pool), with "deadline in N ms" if it
 * has one. The frames of a fiber that is not running come from its saved
 * frame pointers (the library keeps them; code built without
 * -fno-omit-frame-pointer shows fewer frames); names come from dladdr(),
 * so an executable's own functions are named only if it was linked with
 * -rdynamic, and "module+0xoffset" is what `addr2line -e module` takes. Lines of fibers
 * that run meanwhile may be stale. Blocks nobody for long: each list of
 * fibers is locked while it is copied (fiber exits wait), and the printing
 * is done after. Not async-signal-safe. Returns 0, -EINVAL (rt or out
 * NULL) or -ENOMEM; aborts if rt is not a live runtime.
 *
 * A dump on a signal, for a live process: MOIRAI_DUMP_SIGNAL=SIGQUIT (a
 * name, with or without SIG, or a number), read at the first fiber spawn
 * of the process, makes that signal dump every live runtime to stderr, or
 * appends it to the file MOIRAI_DUMP_FILE names (read at each dump). The
 * handler only writes a byte to a pipe; a thread of the library
 * ("moirai-dump", started then, with the signal blocked) does the dump.
 * Runtimes are not created or destroyed while it dumps. Off by default:
 * the signal's own action is left alone.
 *
 * Deadlocks, checked when the last worker of a runtime goes to sleep (or
 * the last one blocks inside a job), never on a fast path:
 *   - every fiber of the runtime waits for ever (no deadline) on an object
 *     of this process (channel, select, mutex, cond, semaphore, wait group,
 *     event, join), no timer or I/O is pending, no job runs, every other
 *     runtime is idle, and every thread of the process is the library's
 *     own or blocked for ever in a Moirai wait (mr_run()'s, a thread's
 *     mr_fiber_join(), a thread waiting on a mutex, cond, semaphore, wait
 *     group or event);
 *   - the same with every worker blocked inside a job (a loop body waiting
 *     on a channel only a fiber would feed): the report names each worker
 *     and what its job waits on;
 *   - a cycle of fibers each waiting for ever for a mutex the next one
 *     holds, whatever the rest of the runtime does (looked for at most once
 *     a second while timers keep it ticking): the report names each fiber,
 *     the mutex it waits for and who holds it.
 * The runtime then writes "moirai: deadlock: ..." and its dump to stderr,
 * once. A thread the library cannot account for (sleeping, in a system
 * call, blocked on a channel or with a deadline) might still post, and
 * shm:// peers, I/O and the blocking pool are outside: then nothing is
 * said (a miss rather than a false report; under TSan, whose runtime has
 * threads of its own, the first two kinds are never reported).
 * MOIRAI_DEADLOCK=abort aborts after the report; MOIRAI_DEADLOCK=off turns
 * the check off. Both are read at each check.
 */
MR_API int mr_runtime_dump(mr_runtime_t *rt, FILE *out);

MR_EXTERN_C_END

#endif /* MOIRAI_RUNTIME_H */
