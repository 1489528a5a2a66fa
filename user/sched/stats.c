/*
 * stats.c - mr_runtime_stats() and mr_worker_stats(): the counters of
 * <moirai/stats.h> read from inside the process.
 *
 * The records are written by their owners with relaxed stores and read here
 * with relaxed loads, field by field: a snapshot is not one instant (a
 * job counted in jobs_run may not yet show in the counters of the worker
 * that stole it), but every field is a value it really had.
 */
#include <errno.h>
#include <string.h>

#include <moirai/stats.h>

#include "sched.h"

static struct mr_runtime *which(mr_runtime_t *rt, const char *call)
{
	if (rt) {
		mr__check_live(rt, call);
		return rt;
	}
	struct mr__worker *w = mr__self();
	if (w)
		return w->rt;
	return mr__default_runtime_peek();
}

/* Relaxed loads of every 8-byte word of src (the records are 8-aligned),
 * stored with memcpy: dst's fields are of several types. */
static void copy_rec(struct mr_worker_stats *dst, const struct mr_worker_stats *src)
{
	const uint64_t *s = (const uint64_t *)(const void *)src;

	for (size_t i = 0; i < sizeof(*src) / 8; i++) {
		uint64_t v = __atomic_load_n(&s[i], __ATOMIC_RELAXED);
		memcpy((char *)dst + 8 * i, &v, 8);
	}
}

int mr_worker_stats(mr_runtime_t *rt, unsigned idx, struct mr_worker_stats *out)
{
	if (!out)
		return -EINVAL;
	struct mr_runtime *r = which(rt, "mr_worker_stats");
	if (!r)
		return -ESRCH;
	if (idx > r->nworkers)
		return -ERANGE;
	copy_rec(out, &r->metrics.recs[idx]);
	return 0;
}

/* The smallest sz accepted: the first version's whole struct. Newer
 * fields go after `total`, and a caller built against an older header
 * gets only what its sz covers. */
#define STATS_SZ_MIN (offsetof(struct mr_runtime_stats, total) + sizeof(struct mr_worker_stats))

int mr_runtime_stats(mr_runtime_t *rt, struct mr_runtime_stats *out)
{
	if (!out || out->sz < STATS_SZ_MIN)
		return -EINVAL;
	struct mr_runtime *r = which(rt, "mr_runtime_stats");
	if (!r)
		return -ESRCH;

	struct mr_runtime_stats full, *st = &full;
	struct mr_worker_stats *t = &st->total, one;
	size_t sz = out->sz < sizeof(full) ? out->sz : sizeof(full);
	memset(st, 0, sizeof(*st));
	st->nworkers = r->nworkers;
	for (unsigned i = 0; i <= r->nworkers; i++) {
		copy_rec(&one, &r->metrics.recs[i]);
		if (i < r->nworkers) {
			st->workers_parked += one.state == MR_WSTATE_PARKED;
			st->workers_blocked += one.state == MR_WSTATE_BLOCKED;
		}
		/* Every counter; the identity fields are set below. */
		t->jobs_run += one.jobs_run;
		t->jobs_stolen += one.jobs_stolen;
		t->steal_attempts += one.steal_attempts;
		t->injector_pops += one.injector_pops;
		t->parks += one.parks;
		t->park_ns += one.park_ns;
		t->wakeups_sent += one.wakeups_sent;
		t->wakeups_received += one.wakeups_received;
		t->fibers_spawned += one.fibers_spawned;
		t->fiber_exits += one.fiber_exits;
		t->fiber_runs += one.fiber_runs;
		t->fiber_parks += one.fiber_parks;
		t->fiber_wakeups += one.fiber_wakeups;
		t->fiber_readies += one.fiber_readies;
		t->chan_blocks += one.chan_blocks;
		t->timer_fires += one.timer_fires;
		t->io_submitted += one.io_submitted;
		t->io_completed += one.io_completed;
		t->io_cancelled += one.io_cancelled;
		t->io_rescued += one.io_rescued;
		t->jobs_stolen_from += one.jobs_stolen_from;
	}
	t->version = MR_STATS_VERSION;
	t->size = sizeof(*t);
	t->nworkers = r->nworkers;
	t->runtime = r->id;
	t->pid = (int32_t)r->metrics.owner;
	st->fibers_live = atomic_load_explicit(&r->nfibers, memory_order_relaxed);
	/* Readies that ended a park (the others are spawns); the counters are
	 * not read at one instant, so keep the results within bounds. */
	uint64_t woken = t->fiber_readies > t->fibers_spawned ? t->fiber_readies - t->fibers_spawned : 0;
	uint64_t parked = t->fiber_parks > woken ? t->fiber_parks - woken : 0;
	st->fibers_parked = parked < st->fibers_live ? parked : st->fibers_live;
	st->fibers_runnable = st->fibers_live - st->fibers_parked;
	st->injector_len = atomic_load_explicit(&r->inj_len, memory_order_relaxed);
	st->export_path = r->metrics.path[0] ? r->metrics.path : NULL;
	st->sz = out->sz;
	memcpy(out, st, sz);
	return 0;
}
