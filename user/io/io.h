/*
 * io.h - the I/O layer's private interface. For now: the blocking pool
 * (blocking.c), which the fallback I/O backend uses for what it cannot do
 * without blocking (a regular file's read and write, open, fsync).
 *
 * Two levels:
 *  - mr__blocking_run(): run fn(arg) on the pool and park the calling
 *    fiber until it returns (or run it inline where parking is not
 *    possible), what mr_blocking() is built on.
 *  - mr__blocking_submit(): queue a work item and return; the pool thread
 *    calls its `done` when fn has returned. For a caller that parks
 *    itself (with its own commit, a deadline, a cancellation later).
 */
#ifndef MR_IO_IO_H
#define MR_IO_IO_H

#include <pthread.h>
#include <stdint.h>

#include <moirai/blocking.h>

/*
 * A call for the pool. The submitter owns the memory (its stack: nothing
 * is allocated per call) and must keep it until `done` runs. The pool
 * links it through `next` while it is queued.
 */
struct mr__blocking_work {
	struct mr__blocking_work *next;
	void (*fn)(void *arg);
	void *arg;
	/*
	 * On the pool thread, after fn returned, with no lock held. The pool
	 * does not touch w after calling it, so done may end w's lifetime
	 * (ready the fiber whose stack holds it).
	 */
	void (*done)(struct mr__blocking_work *w);
};

/*
 * Queue w for a pool thread: an idle one is woken, else one is created
 * below the maximum, else w waits its turn (FIFO). Never blocks but on the
 * pool's lock. Any thread or fiber.
 * ERRORS: -EAGAIN no pool thread exists and none can be created (w was
 * not queued); -EINVAL MOIRAI_BLOCKING_THREADS is invalid (not queued).
 */
int mr__blocking_submit(struct mr__blocking_work *w);

/*
 * fn(arg) on a pool thread while the calling fiber parks; inline on the
 * calling thread when it may not park (mr__fiber_parkable(): a thread, a
 * job, a pinned fiber, a forked child), see mr_blocking(). Returns 0 once
 * fn has returned, or mr__blocking_submit()'s error (fn did not run).
 * `call` names the public call in abort messages.
 */
int mr__blocking_run(void (*fn)(void *), void *arg, const char *call);

/* Test hooks: the keep-alive of idle threads (default 10 s), effective
 * for threads that go idle after the call; the number of pool threads;
 * the number of calls queued (not yet taken by a thread). */
void mr__blocking_set_keepalive(uint64_t ns);
unsigned mr__blocking_nthreads(void);
unsigned mr__blocking_nqueued(void);
/* Test hook: when set, the pool creates its threads with it instead of
 * pthread_create() (same contract: 0 or an error number). */
extern int (*mr__test_blocking_create)(pthread_t *th, const pthread_attr_t *attr,
				       void *(*start)(void *), void *arg);

#endif /* MR_IO_IO_H */
