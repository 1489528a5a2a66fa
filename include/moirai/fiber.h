/*
 * moirai/fiber.h - fibers: tasks with their own stacks that may block.
 *
 * A fiber runs on the same workers as jobs and sits in the same deques when
 * it is runnable, so it can be stolen. When it blocks (mr_fiber_join,
 * mr_yield, mr_sleep_*, the primitives of sync.h) it parks: its registers go
 * to its own stack and the worker runs something else. A fiber may use the
 * whole parallel API (mr_join, groups, loops) from its stack.
 *
 * Stacks are carved from large mappings and guarded below by 64 KiB that
 * are never readable; a stack overflow hits the guard and aborts with
 * "moirai: fiber stack overflow" naming the fiber and its stack size. An
 * idle parked fiber costs its touched stack pages plus a control block.
 *
 * Build code that runs on fibers with -fstack-clash-protection (GCC and
 * Clang; the library itself is built so). Without it, a function whose
 * frame is bigger than the guard (a big local array, a VLA or alloca) can
 * move the stack pointer past the guard without touching it, and then
 * silently writes over another fiber's stack instead of faulting. With it,
 * such a frame touches every page on its way down and the overflow is
 * reported.
 *
 * Functions marked "fiber or thread" block the calling fiber by parking it
 * and a plain thread (or a job) by sleeping on a futex.
 *
 * Fork. fork() may be called from a fiber, a job or any thread. The child
 * has only the calling thread: none of the parent's workers exists there,
 * so every runtime of the parent is dead in it (<moirai/runtime.h>). In
 * the child:
 *  - The calling thread is a plain thread, on no worker. Forked from a
 *    fiber, it goes on as that fiber: on its stack (of the fiber's size,
 *    not a main thread's), with its identity (mr_fiber_self() returns it,
 *    a mutex it held is held by the caller, an overflow is reported for
 *    it). Every blocking call (mr_sleep_*, mr_fiber_join, sync.h,
 *    channels) blocks the thread, as from any thread; mr_yield() is
 *    sched_yield(). Returning from that fiber's function ends the child
 *    as exit(0), as when a process's last thread returns. A child forked
 *    from a job (a function run by mr_join, a group or a loop) must end
 *    with exit(), _exit() or an exec before the job returns: there is no
 *    worker to return to.
 *  - mr_go, mr_run and the parallel API work: they use a default runtime
 *    created afresh in the child on first use. mr_runtime_create works.
 *    Naming a runtime of the parent aborts (it is not alive there).
 *  - Objects made before the fork (channels, sync objects, groups) are the
 *    child's own copies. They work when no other thread was inside one at
 *    the fork: one that another thread had locked at that moment may stay
 *    locked in the child. A parent's fiber waiting on one is not in the
 *    child: waking it does nothing (an element a channel hands straight
 *    to it is lost). A parent's fiber never finishes in the child: do not
 *    join its handle there.
 *  - The library's own locks (runtimes, the stack pool, the scheduler
 *    registration) are taken across the fork and free in the child; so a
 *    fork waits for a thread that holds one (a few system calls at most).
 *
 * Signals. Only mr_now_ns(), mr_fiber_self(), mr_runtime_current() and
 * mr_worker_index() (plain reads) are async-signal-safe. Call nothing else
 * of the library from a signal handler; let a thread or fiber take the
 * signal instead (signalfd(2), sigwait(2) in a plain thread, or a pipe the
 * handler write(2)s to) and call from there. mr_go from a handler that
 * interrupted the library on its thread (holding or waiting for a library
 * lock, or a worker going to sleep, the usual state of an idle runtime's
 * workers) aborts with "mr_go: called from a signal handler ..."; from
 * any other handler it may still corrupt the runtime. fork() from a
 * handler that interrupted the library may deadlock.
 */
#ifndef MOIRAI_FIBER_H
#define MOIRAI_FIBER_H

#include <moirai/common.h>
#include <moirai/runtime.h>

MR_EXTERN_C_BEGIN

typedef struct mr_fiber mr_fiber_t;

#define MR_FIBER_STACK_DEFAULT (64u * 1024)
#define MR_FIBER_STACK_MIN (16u * 1024)
#define MR_FIBER_STACK_MAX (256u * 1024 * 1024)

struct mr_fiber_opts {
	size_t sz;	   /* sizeof(struct mr_fiber_opts); MR_OPTS sets it */
	size_t stack_size; /* usable bytes; 0: MR_FIBER_STACK_DEFAULT; rounded up to pages */
	const char *name;  /* shown in the overflow message; copied (31 chars kept) */
	mr_runtime_t *runtime; /* NULL: the caller's runtime, else the default one */
};

/*
 * Start fn(arg) as a fiber on the calling worker's runtime (from outside any
 * runtime: on the default one). The fiber is runnable at once; the caller
 * goes on. Returns a handle to pass to mr_fiber_join() or
 * mr_fiber_detach() exactly once, or NULL and errno: EINVAL (NULL fn, bad
 * stack size), ENOMEM (no memory or no mappings left: the message of the
 * abort-free path is in errno only), and from outside any runtime, the
 * errors of mr_runtime_default() when the default runtime cannot be
 * created (EINVAL for a bad MOIRAI_WORKERS, EAGAIN). Fiber or thread;
 * never blocks (except to create the default runtime). Not
 * async-signal-safe: from a signal handler that interrupted the library
 * it aborts naming mr_go (see Signals above).
 */
MR_API mr_fiber_t *mr_go(void (*fn)(void *), void *arg);
MR_API mr_fiber_t *mr_go_opts(void (*fn)(void *), void *arg, const struct mr_fiber_opts *opts);

/*
 * Wait until f has returned, then release it. Fiber or thread; a job on a
 * worker runs other work while it waits (as mr_join does). Joining a
 * fiber twice or joining a detached fiber aborts with a message.
 * ERRORS: -EINVAL (f is NULL), -EDEADLK (f is the calling fiber).
 */
MR_API int mr_fiber_join(mr_fiber_t *f);

/* Let f release itself when it returns. 0, or -EINVAL for NULL; twice aborts. */
MR_API int mr_fiber_detach(mr_fiber_t *f);

/*
 * Give the worker to other runnable work; the calling fiber is runnable
 * again at once (it goes to the back of its worker's queue of fibers).
 * From a thread or job: sched_yield().
 */
MR_API void mr_yield(void);

/*
 * Cancellation, the way Go code uses a context and tokio code drops a
 * future: make f's current blocking call, or its next one, return
 * -ECANCELED. The calls that can (the "cancellation points") are those
 * that return an int and may wait: every call of <moirai/io.h> (an
 * operation in flight is cancelled in the kernel and its completion
 * awaited, so the buffer is not written after the return), mr_sleep_ns
 * and mr_sleep_until, every channel call that may wait (send, recv, their
 * _until forms, mr_select), and the _until forms of sync.h (mutex lock,
 * cond wait, which reacquires the mutex first, semaphore, wait group,
 * event). A call cancelled did nothing: no element sent or received, no
 * unit taken, no byte transferred. Calls that return nothing
 * (mr_mutex_lock, mr_cond_wait, mr_sem_wait, mr_wg_wait, mr_event_wait)
 * and mr_fiber_join are not cancellation points, nor is a wait of f while
 * it runs inside the parallel API (mr_join, a loop body) or any call made
 * from a thread.
 *
 * One request cancels one call: the call that returns -ECANCELED uses it
 * up; a request made while f is not blocked waits for f's next
 * cancellation point (which returns -ECANCELED at once). A call that
 * completed just as the request came returns its result and leaves the
 * request for the next one. Requests do not count: two before a call
 * cancel one call.
 *
 * mr_fiber_cancel: fiber or thread; f must not have been joined or
 * released. Returns 0, -EINVAL (NULL), -ESRCH (f has returned already).
 * It makes one membarrier(2) system call, so that the waits it can
 * interrupt need no fence (MOIRAI_MEMBARRIER=0 in README.md). Shields
 * nest up to 65,535 deep.
 * mr_fiber_shield / mr_fiber_unshield (nestable, from a fiber): between
 * them the calling fiber's calls are not cancelled; a request made
 * meanwhile waits for the first cancellation point after the outermost
 * unshield (a clean-up that must finish its I/O shields it).
 * mr_fiber_cancelled: a request is pending for the calling fiber (for
 * code that computes without blocking and wants to stop early).
 */
MR_API int mr_fiber_cancel(mr_fiber_t *f);
MR_API void mr_fiber_shield(void);
MR_API void mr_fiber_unshield(void);
MR_API bool mr_fiber_cancelled(void);

/* The calling fiber, or NULL when not called from a fiber. In the child of
 * a fork from a fiber: that fiber (the child goes on as it, on no worker).
 * Async-signal-safe. */
MR_API mr_fiber_t *mr_fiber_self(void);

/* The name given at creation ("" when none). */
MR_API const char *mr_fiber_name(const mr_fiber_t *f);

/* The stack of mr_run's main fiber unless mr_run_opts() says otherwise. */
#define MR_RUN_STACK_DEFAULT (8u * 1024 * 1024)

/*
 * Run fn(arg) as a fiber on rt (NULL: the default runtime) and block the
 * calling thread until it returns: the usual entry point of a program's
 * main. The fiber is named "main" and has a stack of MR_RUN_STACK_DEFAULT
 * (8 MiB, what a main thread gets): address space reserved for it, of
 * which only the pages it touches become resident. Returns 0, -EINVAL for
 * a NULL fn, -ENOMEM, or -EDEADLK when called from a worker of rt (use
 * mr_go there); with rt NULL, also the errors of mr_runtime_default() as
 * negative values (-EINVAL, -EAGAIN). Blocks as mr_fiber_join() does.
 *
 * mr_run_opts() is the same with the options of mr_go_opts(): stack_size
 * (0: MR_RUN_STACK_DEFAULT; MR_FIBER_STACK_MIN..MR_FIBER_STACK_MAX, else
 * -EINVAL), name (NULL: "main") and runtime (NULL: the default runtime).
 * opts may be NULL.
 * ERRORS: -EINVAL, -ENOMEM, -EDEADLK, -EAGAIN.
 */
MR_API int mr_run(mr_runtime_t *rt, void (*fn)(void *), void *arg);
MR_API int mr_run_opts(void (*fn)(void *), void *arg, const struct mr_fiber_opts *opts);

/* CLOCK_MONOTONIC in nanoseconds: the clock of every deadline in Moirai.
 * Async-signal-safe. */
MR_API int64_t mr_now_ns(void);

/*
 * Sleep for ns nanoseconds / until the CLOCK_MONOTONIC deadline. A fiber
 * parks (its worker runs other work, or sleeps until its nearest timer);
 * a thread sleeps. Never returns early. Returns 0.
 */
MR_API int mr_sleep_ns(uint64_t ns);
MR_API int mr_sleep_until(int64_t deadline_ns);

MR_EXTERN_C_END

#endif /* MOIRAI_FIBER_H */
