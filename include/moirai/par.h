/*
 * moirai/par.h - CPU-parallel work: fork-join, task groups, parallel loops.
 *
 * All of these may be called from inside a task (nested parallelism) and
 * from threads outside any runtime (they then run on the default runtime and
 * block the calling thread until done). Jobs run to completion on a worker's
 * stack; they should not block on anything but the API below, which keeps
 * the worker busy with other work while it waits.
 */
#ifndef MOIRAI_PAR_H
#define MOIRAI_PAR_H

#include <moirai/common.h>

MR_EXTERN_C_BEGIN

/*
 * Run a(a_arg) and b(b_arg), possibly in parallel, and return when both are
 * done. b is offered to thieves while a runs on the calling worker; when
 * nobody took it, it runs inline afterwards (no allocation, no lock). While
 * a stolen b is still running the caller executes other work.
 * A NULL function aborts (there is no error to return).
 */
MR_API void mr_join(void (*a)(void *), void *a_arg, void (*b)(void *), void *b_arg);

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

MR_API void mr_group_init(mr_group_t *g);

/* Start fn(arg) in g. Does not block. 0, or -EINVAL (NULL g or fn, g not initialised). */
MR_API int mr_group_spawn(mr_group_t *g, void (*fn)(void *), void *arg);

/*
 * Wait for every task of g. A worker runs other work meanwhile; another
 * thread sleeps on a futex. 0, or -EINVAL (NULL or uninitialised g).
 */
MR_API int mr_group_wait(mr_group_t *g);

/* body(lo, hi, ctx) processes indices [lo, hi). */
typedef void (*mr_range_fn)(size_t lo, size_t hi, void *ctx);

/*
 * Call body over [begin, end) split into sub-ranges run in parallel; return
 * when all are done. grain > 0: ranges are split until at most grain long.
 * grain 0: adaptive - a few ranges per worker, split further only where work
 * is stolen, so balanced loops pay almost nothing and uneven ones balance.
 * Returns 0, or -EINVAL for a NULL body or begin > end.
 */
MR_API int mr_parallel_for(size_t begin, size_t end, size_t grain, mr_range_fn body, void *ctx);

/*
 * Parallel fold of [begin, end) into *result, an element of elem_size bytes
 * (1 .. MR_REDUCE_MAX_ELEM). Each sub-range starts from a copy of *identity,
 * body(lo, hi, acc, ctx) folds the range into acc, and combine(acc, other,
 * ctx) sets acc to acc (+) other, where acc covers the indices just left of
 * other's. combine must be associative; it need not be commutative.
 * Returns 0, or -EINVAL (NULL pointer, begin > end, bad elem_size).
 */
#define MR_REDUCE_MAX_ELEM 65536
typedef void (*mr_reduce_body_fn)(size_t lo, size_t hi, void *acc, void *ctx);
typedef void (*mr_combine_fn)(void *acc, const void *other, void *ctx);
MR_API int mr_parallel_reduce(size_t begin, size_t end, size_t grain, void *result,
			      size_t elem_size, const void *identity, mr_reduce_body_fn body,
			      mr_combine_fn combine, void *ctx);

MR_EXTERN_C_END

#endif /* MOIRAI_PAR_H */
