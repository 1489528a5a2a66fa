/*
 * moirai/par.h - CPU-parallel work: fork-join, task groups (cancellable),
 * parallel loops (1-D, n-D, stoppable).
 *
 * All of these may be called from inside a task or a fiber (nested
 * parallelism) and from threads outside any runtime (they then run on the
 * default runtime, created on first use, and block the calling thread until
 * done). Jobs run to completion on a worker's stack; they should not block
 * on anything but the API below, which keeps the worker busy with other
 * work while it waits. A fiber that waits here does not park: its worker
 * runs other jobs on the fiber's stack until the wait ends, so the fiber
 * stays on that worker.
 *
 * A job (a task, a loop body, or a fiber waiting here) that waits on a
 * sync object, a channel or a sleep blocks its worker's thread; the
 * worker's other work goes to the other workers meanwhile. While every
 * worker of the runtime is blocked so, the blocked threads run the
 * runtime's runnable fibers (never other jobs: one could need a lock the
 * blocked job holds), so loop bodies that receive from a channel a fiber
 * feeds, or wait on a semaphore a fiber posts, make progress even on one
 * worker. What still hangs, as in TBB: bodies that wait for OTHER bodies or
 * tasks that have not started (a job waiting for a job needs a free
 * worker, and every worker is blocked), and a fiber run that way which
 * itself blocks its thread (a fiber waiting inside this API blocks like a
 * job) on a lock the job under it holds.
 *
 * Errors are negative errno values; the ERRORS line of each function lists
 * every one it returns. Misuse that cannot be reported (a NULL function
 * where nothing is returned) aborts with a message naming the call. Called
 * from outside any runtime when the default runtime cannot be created (a
 * bad MOIRAI_WORKERS or MOIRAI_PIN, thread creation failed), mr_group_spawn,
 * mr_parallel_for and mr_parallel_reduce return that error (the errno of
 * mr_runtime_default(), negated) having run nothing; mr_join, which returns
 * nothing, aborts naming the call (mr_group_wait needs no runtime).
 */
#ifndef MOIRAI_PAR_H
#define MOIRAI_PAR_H

#include <moirai/common.h>

MR_EXTERN_C_BEGIN

/*
 * Run a(a_arg) and b(b_arg), possibly in parallel, and return when both are
 * done. b is offered to thieves while a runs on the calling worker; when
 * nobody took it, it runs inline afterwards (no allocation, no lock). While
 * a stolen b is still running the caller executes other work. Blocks until
 * both returned; any context.
 * ERRORS: none (void). A NULL a or b aborts: "mr_join: NULL function".
 */
MR_API void mr_join(void (*a)(void *), void *a_arg, void (*b)(void *), void *b_arg);

/*
 * mr_join's fast path, inlined into the caller (define MR_NO_INLINE_JOIN
 * before including this header to always call the library): on a worker it
 * records b's frame in the worker's latent stack with plain stores, calls
 * a, and runs b inline unless a heartbeat made the frame stealable
 * meanwhile (user/par/join.c). Inlined, a and b are direct calls when they
 * are known at the call site. Everything named mr__ below belongs to the
 * library; its layout is part of the ABI of this soname.
 */
struct mr__lstack;

struct mr__jframe {
	void (*fn)(void *);
	void *arg;
	struct mr__lstack *ls;
	void *priv_[4]; /* the library's: job header, state, deque index */
};

#define MR__LSTACK_CAP 1024u

struct mr__lstack {
	uint32_t top, bot, base, beat;
	struct mr__jframe *frame[MR__LSTACK_CAP];
};

/* The calling thread's latent stack: its worker's, or a stack that is
 * always full (top == UINT32_MAX) on other threads. */
extern MR_API __thread struct mr__lstack *mr__tls_lstack __attribute__((tls_model("initial-exec")));
MR_API void mr__join_beat(struct mr__lstack *ls);
MR_API void mr__join_promoted(struct mr__lstack *ls);

/*
 * x86-64 only: there the read of mr__tls_lstack is a %fs-relative load,
 * made afresh each time. A fiber may move to another thread between two
 * joins of one function (it parks in between), and compilers for other
 * targets (aarch64: tpidr_el0) keep the thread pointer of the first read
 * in a register for the whole function, which would then name the latent
 * stack of the thread the fiber left. They call the library.
 */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(MR_NO_INLINE_JOIN)
static inline __attribute__((always_inline)) void
mr__join_inline(void (*a)(void *), void *a_arg, void (*b)(void *), void *b_arg)
{
	struct mr__lstack *ls = mr__tls_lstack;
	uint32_t t = ls->top;
	struct mr__jframe f;

	/* Outside a worker, recursion deeper than the stack, or a NULL
	 * function: the library's mr_join. */
	if (__builtin_expect(t >= MR__LSTACK_CAP || !a || !b, 0)) {
		(mr_join)(a, a_arg, b, b_arg);
		return;
	}
	f.fn = b;
	f.arg = b_arg;
	f.ls = ls;
	ls->frame[t] = &f;
	ls->top = t + 1;
	/* Before a: the descent to a coarse leaf looks at the clock too. */
	if (__builtin_expect(--ls->beat == 0, 0))
		mr__join_beat(ls); /* may promote f too */
	a(a_arg);
	/*
	 * A context with latent frames never moves to another worker, and
	 * a's joins left the stack as they found it: f is on top. ls and
	 * b_arg are read back from f, and the slow path finds f on the
	 * stack: that costs less than keeping them in registers.
	 */
	ls = f.ls;
	if (__builtin_expect(--ls->top >= ls->bot, 1))
		b(f.arg);
	else
		mr__join_promoted(ls); /* f is stealable: the slow join */
}
#define mr_join(a, a_arg, b, b_arg) mr__join_inline(a, a_arg, b, b_arg)
#endif

/*
 * A task group: structured concurrency for a dynamic number of tasks.
 * mr_group_wait() returns once every task spawned into the group - including
 * tasks spawned into it by its own tasks - has finished. Tasks spawned from
 * a worker go to that worker's deque; from outside, to the default runtime.
 *
 * Rounds: a group's round starts when a task is spawned into it with none
 * unfinished and ends when its unfinished count drops to 0 again. A wait
 * returns when the round that is running when it is called ends (at once
 * when none is); every task spawned before the call - by anyone - belongs to
 * that round or an earlier one, so it has finished, and its effects are
 * visible to the caller. A task spawned concurrently with the wait by
 * another thread may or may not be waited for.
 *
 * Reuse and several waiters: a group needs no destruction and may be reused
 * at once: spawn again after a wait returned, from any thread, even while
 * other waiters of the round that just ended have not returned yet; a later
 * wait waits for the new round. Any number of waiters (workers and threads,
 * of any runtime) may wait on one group at the same time; each is released
 * by the end of its own round. Once a wait returned and nobody else spawns
 * into or waits on the group, the caller may free or reuse its memory: the
 * library no longer touches it.
 */
typedef struct mr_group {
	uint64_t mr__opaque[4];
} mr_group_t;

#define MR_GROUP_INIT { { 0x6d72677270000000ull, 0, 0, 0 } }

/*
 * Initialise g as an empty group (or use MR_GROUP_INIT). Does not block;
 * any context. Re-initialising a group with unfinished tasks or waiters
 * corrupts it.
 * ERRORS: none (void). A NULL g aborts: "mr_group_init: NULL group".
 */
MR_API void mr_group_init(mr_group_t *g);

/*
 * Start fn(arg) in g. Does not block; any context. From a worker (a task or
 * a fiber) the task goes to that worker's deque in a block of the worker's
 * pool (a pool that cannot grow aborts, naming mr_group_spawn); from
 * outside any runtime, to the default runtime in a malloc'd block. Returns
 * 0 once the task is counted in g.
 * ERRORS:
 *   -EINVAL     g or fn is NULL, or g was not initialised.
 *   -EOVERFLOW  g already has 2^29 unfinished tasks (nothing spawned).
 *   -ENOMEM     called from outside any runtime and the task's block could
 *               not be allocated (nothing spawned).
 *   -EINVAL, -ENOMEM, -EAGAIN
 *               called from outside any runtime and the default runtime
 *               cannot be created (mr_runtime_default()'s errno; nothing
 *               spawned).
 */
MR_API int mr_group_spawn(mr_group_t *g, void (*fn)(void *), void *arg);

/*
 * Wait for every task of g's current round (see above). Blocks: a worker
 * (task or fiber) runs other work meanwhile, the group's own tasks first,
 * and sleeps in the scheduler when there is none; another thread sleeps on
 * a futex. Returns 0 at once when g has no unfinished task. Any context.
 * Returns 0 when the tasks finished, -ECANCELED when g (or an ancestor,
 * see mr_group_init_nested) was cancelled: some tasks may not have run.
 * ERRORS:
 *   -EINVAL     g is NULL or was not initialised.
 *   -ECANCELED  g was cancelled (see mr_group_cancel); the round is over
 *               all the same, and g's mark is cleared.
 */
MR_API int mr_group_wait(mr_group_t *g);

/*
 * Cancel g: its tasks that have not started yet - and tasks spawned into it
 * from now on - are never run (they are counted as finished without their
 * function being called); tasks already running go on, and may poll
 * mr_group_cancelled() to stop early. The mark stays until a wait returns
 * it: every waiter queued when the round ends cancelled returns -ECANCELED
 * and the mark is cleared then, so g can be reused; a wait that finds no
 * round running while g is marked (every task was skipped before it began)
 * takes the mark and returns -ECANCELED (one such wait: two that race for
 * it may see 0 and -ECANCELED). Cancelling twice is cancelling once. Does not
 * propagate to other groups unless they were made with
 * mr_group_init_nested(). Does not block; any context (a task of g may
 * cancel its own group). A cancel that races the end of a round is
 * reported by that round's waiters or by the next wait's.
 * ERRORS:
 *   -EINVAL     g is NULL or was not initialised.
 */
MR_API int mr_group_cancel(mr_group_t *g);

/*
 * Whether g or one of its ancestors is cancelled (until a wait of g
 * returned -ECANCELED). A task sees what the canceller wrote before
 * mr_group_cancel. Does not block; any context. NULL or an uninitialised
 * g: false.
 */
MR_API bool mr_group_cancelled(const mr_group_t *g);

/*
 * Initialise g as mr_group_init does, as a child of parent (NULL: no
 * parent): cancelling parent (or its ancestors) cancels g as well - g's
 * tasks that have not started are skipped, mr_group_cancelled(g) is true
 * and g's waits return -ECANCELED - while cancelling g leaves parent
 * alone. A wait of g never clears parent's mark. parent must stay
 * initialised as long as g is used. This is how nested parallelism stops
 * as a whole: a task of parent that makes an inner group nests it.
 * Does not block; any context.
 * ERRORS: none (void). A NULL g aborts: "mr_group_init_nested: NULL group";
 * an uninitialised parent aborts: "... parent not initialised".
 */
MR_API void mr_group_init_nested(mr_group_t *g, mr_group_t *parent);

/* body(lo, hi, ctx) processes indices [lo, hi). */
typedef void (*mr_range_fn)(size_t lo, size_t hi, void *ctx);

/*
 * Call body over [begin, end) split into sub-ranges run in parallel; return
 * when all are done (blocks like mr_join; any context). grain > 0: ranges
 * are split until at most grain long. grain 0: adaptive - a few ranges per
 * worker, split further only where work is stolen, so balanced loops pay
 * almost nothing and uneven ones balance. An empty range returns 0 at once
 * without calling body. Allocates no memory of its own (from outside a
 * runtime the first call creates the default runtime).
 * ERRORS:
 *   -EINVAL     body is NULL, or begin > end (body was not called).
 *   -EINVAL, -ENOMEM, -EAGAIN
 *               called from outside any runtime and the default runtime
 *               cannot be created (body was not called).
 */
MR_API int mr_parallel_for(size_t begin, size_t end, size_t grain, mr_range_fn body, void *ctx);

/*
 * Parallel fold of [begin, end) into *result, an element of elem_size bytes
 * (1 .. MR_REDUCE_MAX_ELEM). Each sub-range starts from a copy of *identity,
 * body(lo, hi, acc, ctx) folds the range into acc, and combine(acc, other,
 * ctx) sets acc to acc (+) other, where acc covers the indices just left of
 * other's. combine must be associative; it need not be commutative. An
 * empty range sets *result to *identity. Blocks like mr_join; any context.
 * Accumulators up to 256 bytes live on the stack; a bigger one is malloc'd
 * per split, and a split that cannot get one folds its range sequentially
 * instead (same result, no error).
 * ERRORS (nothing was called, *result is unchanged):
 *   -EINVAL     result, identity, body or combine is NULL, begin > end, or
 *               elem_size is 0 or above MR_REDUCE_MAX_ELEM.
 *   -ENOMEM     identity overlaps *result, elem_size is above 256 and the
 *               copy of the identity could not be allocated.
 *   -EINVAL, -ENOMEM, -EAGAIN
 *               called from outside any runtime and the default runtime
 *               cannot be created.
 */
#define MR_REDUCE_MAX_ELEM 65536
typedef void (*mr_reduce_body_fn)(size_t lo, size_t hi, void *acc, void *ctx);
typedef void (*mr_combine_fn)(void *acc, const void *other, void *ctx);
MR_API int mr_parallel_reduce(size_t begin, size_t end, size_t grain, void *result,
			      size_t elem_size, const void *identity, mr_reduce_body_fn body,
			      mr_combine_fn combine, void *ctx);

/*
 * Options of the loops that can stop early and of the n-D loop (fill with
 * MR_OPTS; NULL options are all defaults).
 *   grain   as mr_parallel_for's grain (0: adaptive). mr_parallel_for_nd
 *           ignores it: each dimension has its own.
 *   group   stop once this group is cancelled (mr_group_cancel; an
 *           ancestor's cancel counts, see mr_group_init_nested). The loop
 *           only reads the mark; the group's wait clears it. A group used
 *           only as a stop token needs no tasks: MR_GROUP_INIT, cancel it
 *           from a body, and clear it with a mr_group_wait (which then
 *           returns -ECANCELED at once) before using it again.
 *   stop    stop once *stop is non-zero: an int (or atomic_int) the caller
 *           or a body sets with an atomic store (__atomic_store_n, or
 *           atomic_store on an atomic_int); read with relaxed loads.
 * Stopping: every sub-range looks at group and stop before it splits or
 * runs, so once either is set no leaf starts any more (one look per leaf
 * and per split, no look inside a running body: a long body polls
 * mr_group_cancelled or its flag itself); leaves already running finish.
 */
struct mr_loop_opts {
	size_t sz;
	size_t grain;
	mr_group_t *group;
	const int *stop;
};

/*
 * mr_parallel_for with options (grain, and a way to stop early; see
 * struct mr_loop_opts). Blocks like mr_join; any context. Returns 0 when
 * body covered every index, -ECANCELED when the loop was stopped before
 * some range ran (which indices ran is unspecified; each ran at most once).
 * ERRORS (body was not called):
 *   -EINVAL     body is NULL, begin > end, or opts->sz < sizeof(size_t).
 *   -EINVAL, -ENOMEM, -EAGAIN
 *               as mr_parallel_for (the default runtime).
 */
MR_API int mr_parallel_for_opts(size_t begin, size_t end, mr_range_fn body, void *ctx,
				const struct mr_loop_opts *opts);

/*
 * mr_parallel_reduce with options (as mr_parallel_for_opts). Stopped, it
 * returns -ECANCELED and *result holds the fold of the ranges that ran
 * (a skipped range counts as the identity), still in index order.
 * ERRORS: as mr_parallel_reduce, and -EINVAL for opts->sz < sizeof(size_t).
 */
MR_API int mr_parallel_reduce_opts(size_t begin, size_t end, void *result, size_t elem_size,
				   const void *identity, mr_reduce_body_fn body,
				   mr_combine_fn combine, void *ctx,
				   const struct mr_loop_opts *opts);

/*
 * n-D ranges, as TBB's blocked_range2d/3d: the box [begin, end) of each of
 * ndims dimensions is split into tiles run in parallel, a tile being
 * body(lo, hi, ctx) with lo[d] <= i_d < hi[d] (arrays of ndims entries,
 * valid during the call). Each split halves the dimension that is longest
 * in units of its grain, so tiles stay about as wide in each dimension as
 * the grains are. With every grain > 0, tiles end at most grain long in
 * each dimension; with any grain 0 the splitting is adaptive as
 * mr_parallel_for's grain 0 (a few tiles per worker, more where work is
 * stolen), a dimension with a grain never being split below it. A box
 * with an empty dimension returns 0 without calling body. Allocates
 * nothing. Blocks like mr_join; any context. opts: group and stop as in
 * mr_parallel_for_opts (-ECANCELED once a tile was skipped); grain ignored.
 * ERRORS (body was not called):
 *   -EINVAL     body or dims is NULL, ndims is 0 or above MR_ND_MAX,
 *               some begin > end, or opts->sz < sizeof(size_t).
 *   -EINVAL, -ENOMEM, -EAGAIN
 *               as mr_parallel_for (the default runtime).
 */
#define MR_ND_MAX 8
typedef struct mr_dim {
	size_t begin, end, grain;
} mr_dim_t;
typedef void (*mr_range_nd_fn)(const size_t *lo, const size_t *hi, void *ctx);
MR_API int mr_parallel_for_nd(unsigned ndims, const mr_dim_t *dims, mr_range_nd_fn body,
			      void *ctx, const struct mr_loop_opts *opts);

/*
 * The 2-D case: rows [r_begin, r_end) by columns [c_begin, c_end), tiles
 * body(r_lo, r_hi, c_lo, c_hi, ctx), grains as mr_parallel_for_nd.
 * Same blocking, context and ERRORS (-EINVAL: body NULL or a begin > end).
 */
typedef void (*mr_range2d_fn)(size_t r_lo, size_t r_hi, size_t c_lo, size_t c_hi, void *ctx);
MR_API int mr_parallel_for_2d(size_t r_begin, size_t r_end, size_t r_grain, size_t c_begin,
			      size_t c_end, size_t c_grain, mr_range2d_fn body, void *ctx);

MR_EXTERN_C_END

#endif /* MOIRAI_PAR_H */
