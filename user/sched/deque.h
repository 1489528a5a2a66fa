/*
 * deque.h - the per-worker work-stealing deque: a split deque in the manner
 * of Lace (van Dijk and van de Pol, 2014), whose owner path has no fence.
 *
 * Slots hold pointers to job headers. Indices are 32-bit counters that only
 * ever grow (modulo 2^32) and are masked into a power-of-two ring. The deque
 * is cut in two at `split`:
 *
 *	tail ........ split ........ head
 *	| shared: thieves | private: owner |
 *
 * Thieves take from tail (FIFO, oldest and usually biggest job first) with a
 * CAS on the 64-bit word ts = split << 32 | tail. The owner pushes and pops at
 * head (LIFO) and never synchronises while head is above split: a push is a
 * store and an increment, a pop a decrement and a load. Only two events cost
 * the owner an atomic read-modify-write:
 *  - pop with an empty private part (head == split): the owner CASes split
 *    down to the middle of the shared part, taking half of it back; when the
 *    shared part is empty too, everything was stolen ("all stolen");
 *  - growth: a thief that finds the shared part empty raises `movesplit`, and
 *    the owner's next push or pop moves split up to the middle of its private
 *    part (fetch_add on the split half, so it never loses a thief's CAS).
 *
 * The cost of the scheme: private jobs cannot be stolen until the owner next
 * touches its deque. Fork-join touches it constantly; a job that runs long
 * without pushing keeps its private jobs to itself until it returns.
 *
 * A thief reads the slot after its CAS succeeds. To know when a slot may be
 * reused, thieves count themselves in `pending` from just before the CAS
 * until after the read. The owner keeps a private bound `o_safe`: indices
 * below it map to slots nobody can still be reading. Pushing at o_safe is
 * the slow path: it reads tail, then pending; pending == 0 means every job
 * below tail has been read, so the bound moves to tail + capacity (or the
 * ring is full: push reports it and the caller runs the job inline). A
 * steady stream of steals reaches the bound once per lap of the ring.
 *
 * ABA on ts is harmless: equal ts values describe equal deque states, and the
 * slot is read after the CAS, so a stale thief that wins takes whatever job
 * is legitimately at tail now.
 */
#ifndef MR_DEQUE_H
#define MR_DEQUE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "../base/base.h"

struct mr__worker;
struct mr__job;

/* Runs a job on worker w. The job header is the first member of every job. */
typedef void (*mr__exec_fn)(struct mr__job *job, struct mr__worker *w);

struct mr__job {
	mr__exec_fn exec;
	struct mr__job *next; /* injector / free-list link */
};

enum mr__push_result {
	MR__PUSH_PRIVATE = 0, /* pushed; no thief can see it yet */
	MR__PUSH_PUBLIC = 1,  /* pushed and made stealable: consider waking a worker */
	MR__PUSH_FULL = -1,   /* not pushed: run it inline */
};

struct mr__deque {
	/* Owner-only line: nobody else reads or writes these. */
	uint32_t head;	   /* next slot to push */
	uint32_t o_split;  /* the owner's copy of split (equal: only the owner writes split) */
	uint32_t mask;	   /* capacity - 1 */
	uint32_t o_safe;   /* pushes below this index need no check (see above) */
	bool o_allstolen;  /* shared part empty and private part empty at last look */
	_Atomic(struct mr__job *) *slots;

	/* split << 32 | tail. CAS by thieves (tail) and owner (split). */
	mr__cacheline_aligned _Atomic uint64_t ts;
	_Atomic uint32_t pending; /* thieves between their CAS and their read */

	/* Raised by a thief that found nothing shared; read by the owner each push/pop. */
	mr__cacheline_aligned _Atomic uint32_t movesplit;
	char pad_[MR_CACHELINE - sizeof(uint32_t)];
};

#define MR__TS(tail, split) (((uint64_t)(uint32_t)(split) << 32) | (uint32_t)(tail))
#define MR__TS_TAIL(ts) ((uint32_t)(ts))
#define MR__TS_SPLIT(ts) ((uint32_t)((ts) >> 32))

/* capacity_log2 in 1..30; start is the first index (tests use it to cross 2^32). */
int mr__deque_init(struct mr__deque *dq, unsigned capacity_log2, uint32_t start);
void mr__deque_fini(struct mr__deque *dq);

/* Slow paths, out of line. */
int mr__deque_push_slow(struct mr__deque *dq, struct mr__job *job, bool may_publish);
int mr__deque_publish(struct mr__deque *dq);
int mr__deque_publish_to(struct mr__deque *dq, uint32_t to);
struct mr__job *mr__deque_pop_shared(struct mr__deque *dq);

/*
 * Owner only. Take every job still in the deque, shared and private, oldest
 * first, and call fn(job, arg) for each; returns how many. The owner takes
 * them as a thief would (publish all, then steal from tail), so head never
 * goes down: an index handed out before (mr_join's mr__deque_pop_at()) can
 * never be on top again, and a job taken here is, to its pusher, stolen.
 * Other thieves may take some meanwhile.
 */
size_t mr__deque_take_all(struct mr__deque *dq, void (*fn)(struct mr__job *job, void *arg),
			  void *arg);

/* Thief side: take the oldest shared job, or NULL. Any thread. */
struct mr__job *mr__deque_steal(struct mr__deque *dq);

/* Is there anything a thief could take right now? (a hint; any thread) */
static inline bool mr__deque_stealable(struct mr__deque *dq)
{
	uint64_t ts = atomic_load_explicit(&dq->ts, memory_order_acquire);
	return (int32_t)(MR__TS_SPLIT(ts) - MR__TS_TAIL(ts)) > 0;
}

/* Owner only. Number of jobs the owner still holds (private part), a hint. */
static inline uint32_t mr__deque_private_len(const struct mr__deque *dq)
{
	return dq->o_allstolen ? 0 : dq->head - dq->o_split;
}

/* Owner only. Returns an mr__push_result. */
static inline int mr__deque_push(struct mr__deque *dq, struct mr__job *job)
{
	uint32_t h = dq->head;

	/* Also taken when all is stolen: o_safe is then set to head. */
	if (unlikely((int32_t)(h - dq->o_safe) >= 0))
		return mr__deque_push_slow(dq, job, true);
	/* relaxed: thieves see the slot through the release that publishes it
	 * (mr__deque_publish) and their acquiring CAS on ts. */
	atomic_store_explicit(&dq->slots[h & dq->mask], job, memory_order_relaxed);
	dq->head = h + 1;
	if (unlikely(atomic_load_explicit(&dq->movesplit, memory_order_relaxed)))
		return mr__deque_publish(dq);
	return MR__PUSH_PRIVATE;
}

/*
 * Owner only. A push that stays private where mr__deque_push() would
 * publish (onto an all-stolen deque, or with a thief's request pending,
 * which it leaves raised): the caller decides whether to share, and when.
 * MR__PUSH_PRIVATE or MR__PUSH_FULL.
 */
static inline int mr__deque_push_private(struct mr__deque *dq, struct mr__job *job)
{
	uint32_t h = dq->head;

	if (unlikely((int32_t)(h - dq->o_safe) >= 0))
		return mr__deque_push_slow(dq, job, false);
	/* relaxed: as in mr__deque_push(). */
	atomic_store_explicit(&dq->slots[h & dq->mask], job, memory_order_relaxed);
	dq->head = h + 1;
	return MR__PUSH_PRIVATE;
}

/*
 * Owner only. mr_join's push: only when it is a plain store (below o_safe,
 * no thief asking to share). False: nothing was pushed, use
 * mr__deque_push(). Having no call on this path lets mr_join keep its
 * arguments in scratch registers.
 */
static inline bool mr__deque_push_quiet(struct mr__deque *dq, struct mr__job *job)
{
	uint32_t h = dq->head;

	if (unlikely((int32_t)(h - dq->o_safe) >= 0) ||
	    unlikely(atomic_load_explicit(&dq->movesplit, memory_order_relaxed)))
		return false;
	/* relaxed: as in mr__deque_push(). */
	atomic_store_explicit(&dq->slots[h & dq->mask], job, memory_order_relaxed);
	dq->head = h + 1;
	return true;
}

/*
 * Owner only. The newest job, or NULL when every job has been stolen. This
 * is mr_join's pop: it does not look at a thief's request to share (the
 * pushes that fork-join makes all the time do); see mr__pop_sharing().
 */
static inline struct mr__job *mr__deque_pop(struct mr__deque *dq)
{
	uint32_t h = dq->head;

	/* All stolen implies head == split, so this also excludes that state. */
	if (likely((int32_t)(h - dq->o_split) > 0)) {
		/* Private part: no thief may touch index h-1 (they stop below split). */
		h--;
		dq->head = h;
		return atomic_load_explicit(&dq->slots[h & dq->mask], memory_order_relaxed);
	}
	return mr__deque_pop_shared(dq);
}

/* Owner only. The job mr__deque_pop() would return from the private part,
 * without taking it; NULL when the private part is empty or a thief asked
 * the owner to share (the worker loop must see that request). */
static inline struct mr__job *mr__deque_peek(const struct mr__deque *dq)
{
	if ((int32_t)(dq->head - dq->o_split) <= 0 ||
	    atomic_load_explicit(&dq->movesplit, memory_order_relaxed))
		return NULL;
	return atomic_load_explicit(&dq->slots[(dq->head - 1) & dq->mask], memory_order_relaxed);
}

/*
 * Owner only. Pop the job pushed at index idx if it is still on top and
 * private (mr_join's fast path: no load of the slot). False otherwise. The
 * caller must know that the job was not popped and run by a nested wait
 * since (a later push may have reused the index): mr_join checks its state.
 */
static inline bool mr__deque_pop_at(struct mr__deque *dq, uint32_t idx)
{
	if (likely(dq->head == idx + 1) && likely((int32_t)(idx - dq->o_split) >= 0)) {
		dq->head = idx;
		return true;
	}
	return false;
}

#endif /* MR_DEQUE_H */
