/*
 * algo.h - what the algorithms of <moirai/algo.h> share: finding the
 * runtime to run on and running a root job there.
 *
 * Each algorithm checks its arguments, asks mr__algo_runtime() for the
 * runtime (the caller's, or the default one for a thread outside any: the
 * only failure, reported before anything is touched), sizes its work by
 * the runtime's worker count, and runs its root with mr__algo_run(), which
 * from a worker is a plain call and from outside blocks the thread until a
 * worker has run it.
 */
#ifndef MR_PAR_ALGO_H
#define MR_PAR_ALGO_H

#include <errno.h>

#include "../sched/sched.h"

/* The runtime of the calling worker or the default one; NULL and errno set. */
static inline struct mr_runtime *mr__algo_runtime(void)
{
	struct mr__worker *w = mr__self();

	return w ? w->rt : mr__default_runtime_try();
}

/* Run fn(arg) on a worker of rt (the caller's own when it is one). */
static inline void mr__algo_run(struct mr_runtime *rt, void (*fn)(void *), void *arg)
{
	if (mr__self())
		fn(arg);
	else
		mr__run_outside(rt, fn, arg);
}

#endif /* MR_PAR_ALGO_H */
