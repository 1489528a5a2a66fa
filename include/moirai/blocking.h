/*
 * moirai/blocking.h - the blocking pool: run a call that can only block on
 * a thread of its own, so that the fiber waiting for it parks instead of
 * taking its worker with it (tokio's spawn_blocking, Go's hand-off of a
 * thread in a system call).
 *
 * What it is for: calls that block the thread and have no non-blocking
 * form Moirai could wait on: getaddrinfo() and other resolver calls, a
 * library doing its own blocking I/O (a database client, a compressor on
 * a pipe), a read of a regular file where the I/O backend has no
 * asynchronous file read, flock(), fsync(). A fiber that makes such a
 * call directly stops its worker for as long as the call lasts: with one
 * worker, every other fiber of the runtime waits. Through mr_blocking()
 * the worker runs other fibers meanwhile.
 *
 * What it is not for: computation (use the workers: mr_join, groups,
 * loops), waiting on Moirai's own objects (a fiber parks on them anyway),
 * or calls that wait for ever (each occupies a pool thread as long as it
 * waits; a bounded pool full of them makes every later call queue).
 *
 * The cost: a hand-off to a pool thread (a queue under a mutex and a
 * futex wake of an idle thread, or a thread creation when none is idle)
 * and two context switches of the fiber (parking, then resuming on a
 * worker when the call returns): a few microseconds, far more than a
 * direct call of a short function. Use it for calls that may block for
 * longer than that.
 *
 * The pool: one per process, shared by every runtime, created on first
 * use. Threads are created when a call finds none idle, up to a maximum
 * (MR_BLOCKING_THREADS_DEFAULT, 64; the MOIRAI_BLOCKING_THREADS environment
 * variable, read at first use, or mr_blocking_set_max()); beyond it, calls
 * wait in a FIFO queue without bound (each queued call lives on its
 * caller's stack: the pool allocates nothing per call). A thread idle for
 * 10 seconds exits. Pool threads are named "moirai-blk" and block every
 * signal that can be blocked, so a process-directed signal goes to a
 * thread of the application rather than interrupting a call running here.
 *
 * Fork: pool threads do not survive fork(). The child starts with an
 * empty pool (the maximum set in the parent kept) and creates threads as
 * it needs them. Calls the parent had queued or running are not in the
 * child. An fn that forks on a pool thread leaves its child on that
 * thread: the child should exec or _exit before fn returns (returning
 * ends that thread, the child's only one).
 *
 * Why 64 threads by default (tokio allows 512, Go has no bound short of
 * 10000): the pool serves the workers of a process on a machine with a
 * handful to a few dozen CPUs. Calls beyond what a device or a resolver
 * serves at once only queue in the kernel instead of here (a disk's queue
 * depth, a DNS server's replies), and each thread costs a kernel task, a
 * stack's address space and its touched pages. 64 is about the queue
 * depth at which an NVMe drive reaches its peak rate of small random
 * reads; raise it with MOIRAI_BLOCKING_THREADS or mr_blocking_set_max()
 * for calls that mostly wait on something remote.
 */
#ifndef MOIRAI_BLOCKING_H
#define MOIRAI_BLOCKING_H

#include <moirai/common.h>

MR_EXTERN_C_BEGIN

/* The pool's default maximum number of threads. */
#define MR_BLOCKING_THREADS_DEFAULT 64u
/* The largest maximum mr_blocking_set_max() and MOIRAI_BLOCKING_THREADS take. */
#define MR_BLOCKING_THREADS_MAX 4096u

/*
 * Call fn(arg) where it may block without holding up a worker, wait until
 * it returns, and store its return value in *result (when result is not
 * NULL). Return an error as a negative errno from fn, as a system call
 * does: fn may run on another thread, so errno set there is not the
 * caller's (and a fiber should not read errno across a call that may
 * park it anyway: it may resume on another thread, and compilers keep
 * errno's address, a thread-local one, for a whole function). A long holds
 * an ssize_t, an int or a pointer (as intptr_t); return more through arg:
 *
 *	static long do_read(void *p)
 *	{
 *		struct rd *r = p;
 *		ssize_t n = read(r->fd, r->buf, r->len);
 *		return n < 0 ? -errno : n;
 *	}
 *	...
 *	long n;
 *	int err = mr_blocking(do_read, &r, &n);	// err: did it run; n: read()'s answer
 *
 * Where fn runs, by caller:
 *  - A fiber that may park: on a pool thread; the fiber parks until fn
 *    returns and its worker runs other work meanwhile. If every pool
 *    thread is busy and the pool is at its maximum, the call waits in the
 *    queue (FIFO) first.
 *  - A plain thread, a job (a function run by mr_join, a group or a
 *    loop), a fiber inside the parallel API (in mr_join's a(), or running
 *    other jobs while it waits: it must not park there), or the child of
 *    a fork from a fiber: on the calling thread, directly. Nothing would
 *    be gained by handing it off: the caller blocks either way. On a
 *    worker, the worker's queued work is first made available to the
 *    other workers, as when a job waits on a mutex.
 * fn may call into Moirai as any thread may (a pool thread is a plain
 * thread); it should not wait for another mr_blocking() call that may be
 * queued behind it (with the pool full of such calls, none would return).
 *
 * There is no cancellation and no deadline: the caller waits until fn
 * returns. Make fn itself give up (a timeout of the call it makes) when
 * it may wait too long.
 *
 * Fiber or thread; blocks (parks a fiber) until fn returns.
 * Returns 0 when fn ran, else (fn did not run):
 * ERRORS: -EINVAL fn is NULL, or (from a fiber that may park)
 * MOIRAI_BLOCKING_THREADS is not a number in 1..MR_BLOCKING_THREADS_MAX
 * (until mr_blocking_set_max() sets one); -EAGAIN (from a fiber that may
 * park) the pool has no thread and cannot create one (pthread_create()
 * failed: the process's thread or memory limits). The call is not run
 * inline then: the caller may do so, knowing it holds up its worker.
 * The caller's errno is left alone by the pool; fn, when it runs on the
 * calling thread, may change it.
 */
MR_API int mr_blocking(long (*fn)(void *), void *arg, long *result);

/*
 * Set the pool's maximum number of threads to n (1..MR_BLOCKING_THREADS_MAX),
 * overriding MOIRAI_BLOCKING_THREADS; returns the previous maximum. A higher
 * maximum starts threads for calls already queued, up to it; a lower one
 * leaves calls running where they are, and threads above it exit when
 * their call returns. Any thread or fiber; never blocks but on the pool's
 * lock (held for at most a thread creation).
 * ERRORS: -EINVAL n is 0 or above MR_BLOCKING_THREADS_MAX.
 */
MR_API int mr_blocking_set_max(unsigned n);

MR_EXTERN_C_END

#endif /* MOIRAI_BLOCKING_H */
