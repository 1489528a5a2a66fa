/*
 * metrics.h - the per-worker counters of <moirai/stats.h>: where their
 * memory comes from (export.c) and how the library adds to them.
 *
 * A runtime's records are one array of nworkers + 1 struct mr_worker_stats
 * (the last one for threads outside the runtime), in memory that is the
 * export itself: a mmapped BPF array map, a mmapped file in /dev/shm, or
 * plain memory when neither is possible or wanted. Updating a counter is
 * therefore the same plain add whatever the export.
 *
 * Owner updates are a relaxed load and a relaxed store (MR__STAT_ADD): the
 * same instructions as `x++` on every architecture we build for, and no
 * data race for readers in other threads or processes (TSan included).
 * The outside record and jobs_stolen_from take relaxed atomic adds.
 */
#ifndef MR_METRICS_H
#define MR_METRICS_H

#include <stdint.h>
#include <sys/types.h>

#include <moirai/stats.h>

#define MR__STAT_ADD(st, field, n)                                                                 \
	__atomic_store_n(&(st)->field, __atomic_load_n(&(st)->field, __ATOMIC_RELAXED) + (n),     \
			 __ATOMIC_RELAXED)
#define MR__STAT_SET(st, field, v) __atomic_store_n(&(st)->field, (v), __ATOMIC_RELAXED)
/* From any thread (the outside record, a victim's jobs_stolen_from). */
#define MR__STAT_ATOMIC_ADD(st, field, n) __atomic_fetch_add(&(st)->field, (n), __ATOMIC_RELAXED)

enum mr__metrics_kind {
	MR__METRICS_HEAP = 0, /* not exported */
	MR__METRICS_BPF = 1,  /* a pinned BPF array map */
	MR__METRICS_SHM = 2,  /* a file in /dev/shm */
};

struct mr__metrics {
	struct mr_worker_stats *recs; /* nworkers + 1 records */
	size_t len;		      /* bytes mapped or allocated */
	enum mr__metrics_kind kind;
	pid_t owner;		      /* the process that made the export */
	char path[96];		      /* the pin or file; "" when HEAP */
	struct mr__metrics *next;     /* export.c's list of live exports */
};

/*
 * Make the records of runtime `id` with `nworkers` workers, identity fields
 * filled, exported as MOIRAI_METRICS says (see stats.h). 0 or -ENOMEM
 * (failure to export falls back to plain memory, silently).
 */
int mr__metrics_open(struct mr__metrics *m, uint32_t id, unsigned nworkers);
/* Remove the export (pin or file) and free the memory. */
void mr__metrics_close(struct mr__metrics *m);

/* Test hook: the export kind chosen on the next open, or -1 for the default. */
extern int mr__test_metrics_kind __attribute__((visibility("hidden")));

#endif /* MR_METRICS_H */
