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
 * abort-free path is in errno only). Fiber or thread; never blocks.
 */
MR_API mr_fiber_t *mr_go(void (*fn)(void *), void *arg);
MR_API mr_fiber_t *mr_go_opts(void (*fn)(void *), void *arg, const struct mr_fiber_opts *opts);

/*
 * Wait until f has returned, then release it. Fiber or thread; a job on a
 * worker runs other work while it waits (as mr_join does). Returns 0, or
 * -EINVAL for NULL or f == the calling fiber (-EDEADLK). Joining a fiber
 * twice or joining a detached fiber aborts with a message.
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

/* The calling fiber, or NULL when not called from a fiber. */
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
 * mr_go there). Blocks as mr_fiber_join() does.
 *
 * mr_run_opts() is the same with the options of mr_go_opts(): stack_size
 * (0: MR_RUN_STACK_DEFAULT; MR_FIBER_STACK_MIN..MR_FIBER_STACK_MAX, else
 * -EINVAL), name (NULL: "main") and runtime (NULL: the default runtime).
 * opts may be NULL.
 * ERRORS: -EINVAL, -ENOMEM, -EDEADLK.
 */
MR_API int mr_run(mr_runtime_t *rt, void (*fn)(void *), void *arg);
MR_API int mr_run_opts(void (*fn)(void *), void *arg, const struct mr_fiber_opts *opts);

/* CLOCK_MONOTONIC in nanoseconds: the clock of every deadline in Moirai. */
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
