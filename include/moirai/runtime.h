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
 * process's affinity mask. MOIRAI_STACK sets the stack size of the workers
 * of every runtime whose mr_config leaves stack_size 0, the default
 * runtime's included. To run code on a runtime you created, enter it
 * with mr_runtime_install().
 */
#ifndef MOIRAI_RUNTIME_H
#define MOIRAI_RUNTIME_H

#include <moirai/common.h>

MR_EXTERN_C_BEGIN

typedef struct mr_runtime mr_runtime_t;

/* The most workers one runtime may have. */
#define MR_MAX_WORKERS 4096

struct mr_config {
	size_t sz;		/* sizeof(struct mr_config); MR_OPTS sets it */
	unsigned workers;	/* 0: one per CPU in the affinity mask; at most MR_MAX_WORKERS */
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
};

/*
 * Create a runtime and start its workers. cfg may be NULL for the defaults.
 * Returns NULL and sets errno: EINVAL for a bad config (more than
 * MR_MAX_WORKERS workers, deque_log2 out of range, sz too small, a
 * stack_size below PTHREAD_STACK_MIN, or MOIRAI_STACK not a size), ENOMEM,
 * EAGAIN when a thread (or its stack) cannot be created. Callable from any
 * thread.
 */
MR_API mr_runtime_t *mr_runtime_create(const struct mr_config *cfg);

/*
 * Wait until all work submitted to rt (and everything that work spawned) has
 * finished, stop and join the workers, free everything. Blocks the caller.
 * Returns 0, or -EDEADLK when called from one of rt's own workers (nothing
 * is changed then). Passing a runtime that is not alive aborts.
 */
MR_API int mr_runtime_destroy(mr_runtime_t *rt);

/*
 * Run fn(arg) on a worker of rt and return when it has returned; inside fn,
 * mr_join, groups and parallel loops use rt. Blocks the calling thread (on a
 * futex); from a worker of rt it simply calls fn. Returns 0, -EINVAL for a
 * NULL fn. Passing a runtime that is not alive aborts.
 */
MR_API int mr_runtime_install(mr_runtime_t *rt, void (*fn)(void *), void *arg);

/* The process-wide default runtime (created on first use), or NULL and errno. */
MR_API mr_runtime_t *mr_runtime_default(void);

/* The runtime whose worker is calling, or NULL from any other thread. */
MR_API mr_runtime_t *mr_runtime_current(void);

/* Number of workers of rt. */
MR_API unsigned mr_runtime_workers(const mr_runtime_t *rt);

/* Index of the calling worker in its runtime, or -1 outside any runtime. */
MR_API int mr_worker_index(void);

MR_EXTERN_C_END

#endif /* MOIRAI_RUNTIME_H */
