/*
 * scx.h - the runtime's side of the Moirai sched_ext scheduler (bpf/).
 *
 * When the scheduler's maps are pinned (moiraictl has loaded it at least
 * once since boot) and this process may use them (root, or the group the
 * operator named with `moiraictl load --group`), every worker registers
 * itself through the pinned `register` program (which acts on the calling
 * thread only and claims it a line of the `worker_load` array), giving it
 * the address of its struct mr__scx_hints, where it publishes its state
 * (running / searching / parked) and deque depth with plain stores in its
 * own memory: no syscall on any hot path. The scheduler copies them into
 * the line whenever the worker stops running; a root runtime maps the
 * lines read-only and reads the scheduler's `preempted` there (scx.c). Registration costs
 * two syscalls per worker start (sched_setattr, the program) and one per
 * exit. Without the maps (no sched_ext, no scheduler ever loaded,
 * MOIRAI_SCX=0, or pins this process may not open) nothing is published
 * and the runtime behaves exactly as before; mr__scx_runtime_init() then
 * costs one failed bpf() call per runtime.
 */
#ifndef MR_SCX_H
#define MR_SCX_H

#include <stdatomic.h>
#include <stdint.h>

#include "../base/base.h"

struct mr_runtime;
struct mr__worker;

/* A worker's line (struct moirai_load in bpf/moirai_shared.h), mapped
 * read-only: the scheduler writes it. */
struct mr__scx_line {
	_Atomic uint32_t tid;
	_Atomic uint32_t state;
	_Atomic uint32_t depth; /* deque jobs + latent joins (runtime.c local_depth) */
	uint32_t pid, rt_id, index;
	_Atomic uint64_t updates;
	_Atomic uint32_t preempted; /* set and cleared by the scheduler, see scx.c */
	uint32_t pad0;
	uint64_t pad[3];
};

/* What a worker publishes in its own memory (struct moirai_hints). */
struct mr__scx_hints {
	_Atomic uint32_t state;
	_Atomic uint32_t depth; /* deque jobs + latent joins (runtime.c local_depth) */
	_Atomic uint64_t updates;
};

enum {
	MR__SCX_RUNNING = 1,
	MR__SCX_SEARCHING = 2,
	MR__SCX_PARKED = 3,
};

/* At runtime creation, once the workers' home nodes are set (place.c):
 * open the pinned maps if not yet open and, with more than one node, fill
 * rt->node_workers. */
void mr__scx_runtime_init(struct mr_runtime *rt);
/* Fork: take the registration lock before, release it after (parent and child). */
void mr__scx_atfork_prepare(void);
void mr__scx_atfork_release(void);
/* Test hook: called with the registration lock held in mr__scx_runtime_init(). */
extern void (*mr__test_scx_locked)(void) __attribute__((visibility("hidden")));

/* NUMA node of a CPU as the scheduler sees it (0 when unknown). */
int mr__scx_cpu_node(int cpu);

/* In the worker thread: register / unregister it (no-op when disabled). */
void mr__scx_worker_start(struct mr__worker *w);
void mr__scx_worker_exit(struct mr__worker *w);

/* Publish a state change with plain (relaxed) stores; owner only. */
static inline void mr__scx_publish(struct mr__scx_hints *h, uint32_t state, uint32_t depth)
{
	/* relaxed: hints the scheduler copies when this thread stops running
	 * (on this CPU, so in program order), and the other workers read as
	 * hints; no ordering with anything else is needed. */
	atomic_store_explicit(&h->state, state, memory_order_relaxed);
	atomic_store_explicit(&h->depth, depth, memory_order_relaxed);
	atomic_store_explicit(&h->updates,
			      atomic_load_explicit(&h->updates, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

#endif /* MR_SCX_H */
