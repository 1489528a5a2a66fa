/*
 * deque.c - slow paths of the split work-stealing deque (see deque.h for the
 * design): publishing private jobs, taking shared jobs back, stealing, and a
 * push that meets a non-clear slot.
 */
#include <string.h>

#include "deque.h"

int mr__deque_init(struct mr__deque *dq, unsigned capacity_log2, uint32_t start)
{
	size_t cap;

	if (capacity_log2 < 1 || capacity_log2 > 30)
		return -EINVAL;
	memset(dq, 0, sizeof(*dq));
	cap = (size_t)1 << capacity_log2;
	dq->slots = calloc(cap, sizeof(*dq->slots));
	if (!dq->slots)
		return -ENOMEM;
	dq->mask = (uint32_t)(cap - 1);
	dq->head = start;
	dq->o_split = start;
	dq->o_allstolen = true;
	dq->o_safe = start; /* first push takes the slow path */
	atomic_init(&dq->ts, MR__TS(start, start));
	atomic_init(&dq->pending, 0);
	atomic_init(&dq->movesplit, 0);
	return 0;
}

void mr__deque_fini(struct mr__deque *dq)
{
	free(dq->slots);
	dq->slots = NULL;
}

/*
 * Owner only. Make every private job below index `to` stealable (split
 * moves up to `to`; o_split < to <= head, and not all stolen).
 */
int mr__deque_publish_to(struct mr__deque *dq, uint32_t to)
{
	atomic_store_explicit(&dq->movesplit, 0, memory_order_relaxed);
	/* fetch_add on the split half, release: as in mr__deque_publish(). */
	atomic_fetch_add_explicit(&dq->ts, (uint64_t)(to - dq->o_split) << 32,
				  memory_order_release);
	dq->o_split = to;
	return MR__PUSH_PUBLIC;
}

/*
 * Make private jobs stealable. After a push onto an all-stolen deque, the new
 * job (index head-1) becomes the whole shared part; otherwise split moves up
 * to the middle of the private part. Owner only.
 */
int mr__deque_publish(struct mr__deque *dq)
{
	uint32_t h = dq->head;

	atomic_store_explicit(&dq->movesplit, 0, memory_order_relaxed);
	if (dq->o_allstolen) {
		/*
		 * ts is {h-1, h-1}: thieves do not CAS an empty shared part, so a
		 * plain store cannot lose a tail update. release: publishes the
		 * slot written by the push; pairs with the acquiring CAS in
		 * mr__deque_steal().
		 */
		atomic_store_explicit(&dq->ts, MR__TS(h - 1, h), memory_order_release);
		dq->o_split = h;
		dq->o_allstolen = false;
		return MR__PUSH_PUBLIC;
	}
	uint32_t grow = (h - dq->o_split + 1) / 2;
	if (grow == 0)
		return MR__PUSH_PRIVATE;
	/*
	 * fetch_add on the split half only: a concurrent thief CAS on tail
	 * either precedes it (and we keep its tail) or fails and retries.
	 * release: pairs with the acquiring CAS in mr__deque_steal(), making the
	 * slots below the new split visible.
	 */
	atomic_fetch_add_explicit(&dq->ts, (uint64_t)grow << 32, memory_order_release);
	dq->o_split += grow;
	return MR__PUSH_PUBLIC;
}

/*
 * Pop with an empty private part (head == split): take back the upper half of
 * the shared part with a CAS on split, or find that everything was stolen.
 */
struct mr__job *mr__deque_pop_shared(struct mr__deque *dq)
{
	uint64_t old, new;
	uint32_t t, s, ns;

	if (dq->o_allstolen)
		return NULL;
	old = atomic_load_explicit(&dq->ts, memory_order_relaxed);
	for (;;) {
		t = MR__TS_TAIL(old);
		s = MR__TS_SPLIT(old);
		if (t == s) {
			dq->o_allstolen = true;
			dq->o_safe = dq->head; /* next push: slow path, publishes */
			return NULL;
		}
		ns = t + (s - t) / 2; /* thieves keep [t, ns), we take [ns, s) */
		new = MR__TS(t, ns);
		/* The CAS orders us against every thief's CAS on the same word:
		 * after it, no thief can take an index >= ns. */
		if (atomic_compare_exchange_weak_explicit(&dq->ts, &old, new, memory_order_acq_rel,
							  memory_order_relaxed))
			break;
	}
	dq->o_split = ns;
	uint32_t h = dq->head - 1;
	dq->head = h;
	return atomic_load_explicit(&dq->slots[h & dq->mask], memory_order_relaxed);
}

/*
 * head reached o_safe: find how far slots are free now (see deque.h), or
 * report a full ring. Also the path of the first push after all was stolen,
 * which publishes that job unless !may_publish (mr__deque_push_private()).
 */
int mr__deque_push_slow(struct mr__deque *dq, struct mr__job *job, bool may_publish)
{
	uint32_t h = dq->head;
	unsigned spins = 0;

	for (;;) {
		/* acquire: pairs with the thieves' acq_rel CAS; a thief counted
		 * itself in pending before that CAS, so reading pending after
		 * tail sees every thief that took an index below tail and has
		 * not finished reading its slot. */
		uint32_t t = MR__TS_TAIL(atomic_load_explicit(&dq->ts, memory_order_acquire));
		if (h - t > dq->mask)
			return MR__PUSH_FULL;
		/* acquire: pairs with the release decrement after a thief's read. */
		if (atomic_load_explicit(&dq->pending, memory_order_acquire) == 0) {
			dq->o_safe = t + dq->mask + 1;
			break;
		}
		mr__backoff(&spins); /* a thief may be preempted mid-steal */
	}
	atomic_store_explicit(&dq->slots[h & dq->mask], job, memory_order_relaxed);
	dq->head = h + 1;
	if (!may_publish) {
		/* All stolen meant head == split: the job is now the whole
		 * private part, and the shared part stays empty. */
		dq->o_allstolen = false;
		return MR__PUSH_PRIVATE;
	}
	if (dq->o_allstolen || atomic_load_explicit(&dq->movesplit, memory_order_relaxed))
		return mr__deque_publish(dq);
	return MR__PUSH_PRIVATE;
}

struct mr__job *mr__deque_steal(struct mr__deque *dq)
{
	/* acquire: pairs with the release in mr__deque_publish(). */
	uint64_t old = atomic_load_explicit(&dq->ts, memory_order_acquire);

	for (;;) {
		uint32_t t = MR__TS_TAIL(old), s = MR__TS_SPLIT(old);

		if ((int32_t)(s - t) <= 0) {
			/* Nothing shared: ask the owner to share more. Read first so
			 * that idle thieves do not keep writing the line. */
			if (!atomic_load_explicit(&dq->movesplit, memory_order_relaxed))
				atomic_store_explicit(&dq->movesplit, 1, memory_order_relaxed);
			return NULL;
		}
		/* Count ourselves before the CAS: see mr__deque_push_slow(). */
		atomic_fetch_add_explicit(&dq->pending, 1, memory_order_relaxed);
		/* acquire on success: pairs with the owner's release of split, so
		 * the slot's content is visible below; release: makes our pending
		 * increment visible to an owner that reads this tail. On failure
		 * `old` is reloaded and we retry: someone else made progress. */
		if (atomic_compare_exchange_weak_explicit(&dq->ts, &old, MR__TS(t + 1, s),
							  memory_order_acq_rel, memory_order_acquire)) {
			struct mr__job *job =
				atomic_load_explicit(&dq->slots[t & dq->mask], memory_order_relaxed);
			/* release: our read of the slot happens before the owner,
			 * seeing pending drop, reuses it. */
			atomic_fetch_sub_explicit(&dq->pending, 1, memory_order_release);
			return job;
		}
		atomic_fetch_sub_explicit(&dq->pending, 1, memory_order_relaxed);
	}
}

size_t mr__deque_take_all(struct mr__deque *dq, void (*fn)(struct mr__job *job, void *arg),
			  void *arg)
{
	size_t n = 0;

	/* All stolen means no private job either (a push onto such a deque
	 * publishes at once). */
	if (!dq->o_allstolen && dq->head != dq->o_split)
		mr__deque_publish_to(dq, dq->head);
	while (mr__deque_stealable(dq)) {
		struct mr__job *job = mr__deque_steal(dq);
		if (job) {
			fn(job, arg);
			n++;
		}
	}
	return n;
}
