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
#include <string.h>

#include <moirai/par.h>

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

/*
 * Copy the caller's mr_loop_opts (any sz at least the size field; NULL:
 * all defaults) into *o: 0, or -EINVAL for a short sz.
 */
static inline int mr__loop_opts_get(const struct mr_loop_opts *opts, struct mr_loop_opts *o)
{
	memset(o, 0, sizeof(*o));
	if (!opts)
		return 0;
	if (opts->sz < sizeof(size_t))
		return -EINVAL;
	memcpy(o, opts, opts->sz < sizeof(*o) ? opts->sz : sizeof(*o));
	return 0;
}

/* Whether o asks to stop (relaxed loads: a stop only steers). */
static inline bool mr__loop_opts_stopped(const struct mr_loop_opts *o)
{
	return (o->stop && __atomic_load_n(o->stop, __ATOMIC_RELAXED)) ||
	       (o->group && mr_group_cancelled(o->group));
}

#endif /* MR_PAR_ALGO_H */
