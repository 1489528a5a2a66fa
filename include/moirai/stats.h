/*
 * moirai/stats.h - live counters of a runtime's workers, in-process and
 * from outside.
 *
 * Every worker owns one struct mr_worker_stats, written only by its own
 * thread with plain stores (no atomic, no fence, no syscall), so a counter
 * costs an add to a cache line nobody else writes. One field is the
 * exception and lives on a line of its own: jobs_stolen_from, which thieves
 * add to (a steal is a cross-CPU operation anyway). The records of a
 * runtime are one array: worker 0 .. nworkers-1, then one more record,
 * MR_STATS_OUTSIDE, for what threads outside the runtime did to it (the
 * fibers they spawned, the workers they woke); that one is written with
 * relaxed atomic adds, since several threads may share it.
 *
 * The array is exported while the runtime lives, at no cost per update
 * (the counters ARE the exported memory):
 *  - as a BPF array map (BPF_F_MMAPABLE, with BTF naming every field) pinned
 *    at /sys/fs/bpf/moirai/<pid>/rt<id> when the process may create BPF
 *    maps (root or CAP_BPF) and a bpffs is mounted at /sys/fs/bpf, so that
 *    `bpftool map dump pinned /sys/fs/bpf/moirai/<pid>/rt<id>` prints each
 *    field by name;
 *  - otherwise as a file /dev/shm/moirai-stats.<pid>.<id>, mode 0600, with
 *    the same layout (the records back to back, nothing before them);
 *  - or not at all with MOIRAI_METRICS=0 (=shm never tries BPF), and
 *    silently not at all when neither works (a library never prints).
 * The pin or file goes away when the runtime is destroyed and, for the
 * runtimes still alive, when the process exits through exit(); those of a
 * process that died otherwise are removed by `moiraictl clean` (and noticed
 * by `moiraictl status`). `moiraictl status`, `top` and `dump --json` read
 * them. Readers see a live view: each 8-byte counter is read whole (aligned
 * loads), but two counters are not read at one instant.
 *
 * What each counter counts (all monotonic unless said otherwise):
 *  jobs_run            jobs taken from a deque or the injector and run:
 *                      spawned tasks, loop chunks, stolen join halves,
 *                      injected jobs. Not fiber resumptions (fiber_runs),
 *                      and not the second half of an mr_join that its own
 *                      caller ran (that is a function call).
 *  jobs_stolen         jobs this worker took from another worker's deque
 *  jobs_stolen_from    jobs other workers took from this one's deque
 *  steal_attempts      steals tried on another worker's deque (hit or miss)
 *  injector_pops       jobs (and fibers) taken from the runtime's injector
 *  parks               times the worker went to sleep (futex or ring)
 *  park_ns             nanoseconds asleep, the current sleep not included
 *                      (see parked_since_ns); running time is
 *                      now - start_ns - park_ns - the current sleep
 *  wakeups_sent        sleeping workers this one woke
 *  wakeups_received    times this worker was woken by a token
 *  fibers_spawned      fibers created by code running here (mr_go)
 *  fiber_exits         fibers that returned here
 *  fiber_runs          switches into a fiber (context switches in)
 *  fiber_parks         fibers that parked here (to wait on anything)
 *  fiber_readies       fibers made runnable by code running here (a
 *                      spawn, a wake-up after a park; from threads outside
 *                      the runtime: the outside record)
 *  fiber_wakeups       fibers that ran here again after a park
 *                      live now = sum(fibers_spawned) - sum(fiber_exits);
 *                      parked now = sum(fiber_parks)
 *                                   - (sum(fiber_readies) - sum(fibers_spawned));
 *                      runnable or running = live - parked
 *  chan_blocks         channel operations (send, recv, select, loans) that
 *                      had to wait, made by code running on this worker
 *  timer_fires         timers fired by this worker (sleeps, deadlines)
 *  io_submitted        I/O operations this worker's backend submitted
 *                      (io_uring SQEs, epoll registrations+attempts)
 *  io_completed        their completions
 *  io_cancelled        cancellations it issued (deadline, mr_fiber_cancel)
 *  io_rescued          fibers whose I/O this worker completed for another
 *                      worker stuck in one job (the hand-off: it reaped
 *                      that worker's ring or polled its epoll and readied
 *                      the fibers here); counted on the helper's record,
 *                      not the owner's, and in its io_completed too.
 *                      Stays 0 with MOIRAI_IO_HANDOFF=0 (no hand-off)
 *  io_backend          which backend those went through: 0 none yet (the
 *                      worker did no I/O), 1 io_uring, 2 epoll (not a count)
 *
 * A record's first fields say what it is: version (MR_STATS_VERSION: a
 * reader must check it), size (sizeof the record), worker index, nworkers,
 * the runtime's id (the <id> above; per process, from 1), pid, the worker
 * thread's tid (0 before it started or after it exited), its state
 * (MR_WSTATE_*), start_ns (CLOCK_MONOTONIC when it started) and
 * parked_since_ns (CLOCK_MONOTONIC when its current sleep began, 0 when
 * awake).
 */
#ifndef MOIRAI_STATS_H
#define MOIRAI_STATS_H

#include <moirai/common.h>
#include <moirai/runtime.h>

MR_EXTERN_C_BEGIN

#define MR_STATS_VERSION 1

/* mr_worker_stats.io_backend */
enum {
	MR_IO_BACKEND_NONE = 0,
	MR_IO_BACKEND_URING = 1,
	MR_IO_BACKEND_EPOLL = 2,
};

/* mr_worker_stats.state */
enum {
	MR_WSTATE_STARTING = 0, /* created, its thread not yet running */
	MR_WSTATE_RUNNING = 1,	/* running a job or a fiber */
	MR_WSTATE_SEARCHING = 2, /* out of work, stealing */
	MR_WSTATE_PARKED = 3,	/* asleep until woken */
	MR_WSTATE_BLOCKED = 4,	/* its thread waits inside a job (a lock, a channel) */
	MR_WSTATE_EXITED = 5,	/* the runtime was destroyed */
};

/* The index of the record for threads outside the runtime: nworkers. */
#define MR_STATS_OUTSIDE(nworkers) (nworkers)

struct mr_worker_stats {
	uint32_t version;
	uint32_t size;
	uint32_t worker;
	uint32_t nworkers;
	uint32_t runtime;
	int32_t pid;
	int32_t tid;
	uint32_t state;
	uint64_t start_ns;
	uint64_t parked_since_ns;

	uint64_t jobs_run;
	uint64_t jobs_stolen;
	uint64_t steal_attempts;
	uint64_t injector_pops;

	uint64_t parks;
	uint64_t park_ns;
	uint64_t wakeups_sent;
	uint64_t wakeups_received;

	uint64_t fibers_spawned;
	uint64_t fiber_exits;
	uint64_t fiber_runs;
	uint64_t fiber_parks;
	uint64_t fiber_wakeups;
	uint64_t fiber_readies;
	uint64_t chan_blocks;
	uint64_t timer_fires;

	uint64_t io_submitted;
	uint64_t io_completed;
	uint64_t io_cancelled;
	uint64_t io_backend;
	uint64_t io_rescued;

	uint64_t reserved_[2]; /* room to grow within the owner's lines */

	/* Written by thieves (atomic adds), on a line of its own. */
	uint64_t jobs_stolen_from __attribute__((aligned(64)));
	uint64_t reserved2_[7];
};

/*
 * A runtime as a whole. sz: set by the caller to sizeof(struct
 * mr_runtime_stats) (MR_OPTS); fields beyond it are not written (fields
 * added later go after total, so a caller built against this header keeps
 * working). total sums
 * every worker's record and the outside one (identity fields zero, except
 * version, size, nworkers, runtime and pid); the rest are computed from it
 * and from the runtime's own gauges at the time of the call.
 */
struct mr_runtime_stats {
	size_t sz;
	unsigned nworkers;
	unsigned workers_parked;  /* state PARKED now */
	unsigned workers_blocked; /* state BLOCKED now */
	uint64_t fibers_live;	  /* created, not yet returned */
	uint64_t fibers_parked;	  /* of those, parked (waiting to be made runnable) */
	uint64_t fibers_runnable; /* of those, runnable or running */
	uint64_t injector_len;	  /* jobs and fibers waiting in the injector */
	const char *export_path;  /* the pin or the file, or NULL (none); valid while rt lives */
	struct mr_worker_stats total;
};

/*
 * Fill *st with rt's counters (rt NULL: the calling worker's runtime, else
 * the default one if it exists). Any thread, fiber or job; never blocks.
 * 0, -EINVAL (st NULL, or st->sz smaller than this version's struct), -ESRCH (rt NULL
 * and no runtime to speak of). Aborts if rt is not a live runtime.
 */
MR_API int mr_runtime_stats(mr_runtime_t *rt, struct mr_runtime_stats *st);

/*
 * Copy worker idx's record (idx == nworkers: the outside record) into
 * *out. 0, -EINVAL (out NULL), -ERANGE (idx > nworkers), -ESRCH as above.
 */
MR_API int mr_worker_stats(mr_runtime_t *rt, unsigned idx, struct mr_worker_stats *out);

MR_EXTERN_C_END

#endif /* MOIRAI_STATS_H */
