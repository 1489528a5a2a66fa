/*
 * ring.c - the bounded lock-free queue under channels (list.c is the
 * unbounded one). Multi-producer multi-consumer; it never blocks and knows
 * nothing of who waits: an operation that finds the other side's sleep flag
 * in the position word it moved says so (MR__Q_WAKE, queue.h) and chan.c
 * does the waking (see chan.h for how the flags make that race-free).
 *
 * The bounded ring (Vyukov's design). Every slot has a sequence number
 * (stamp). A position is lap + index: the index runs 0..cap-1 and the lap
 * is a multiple of one_lap, the power of two above cap, so that capacity
 * is exact without a division. A sender at position p = lap + index may
 * write the slot when its stamp is lap; it claims p with a CAS on the tail
 * word, copies the element in and stores stamp lap + 1. A receiver at p
 * waits for stamp lap + 1, claims p with a CAS on the head word, copies the
 * element out and stores lap + one_lap: the slot is free for the sender of
 * the next lap. Uncontended, a send touches the tail line and one slot, a
 * receive the head line and one slot.
 *
 * Stamps count laps, not positions (Vyukov's stamp minus the index), so
 * that 0 is every slot's initial stamp: "free for lap 0". Creating a ring
 * then writes nothing: a big ring is mapped from zero pages (mmap) that
 * the kernel only backs with memory when a position first reaches them,
 * and creating a ring of 2^30 slots costs an mmap call instead of 16 GiB
 * of stores. Small rings come from malloc and are cleared.
 *
 * Where it behaves badly: a sender or receiver preempted between its CAS
 * and its publish holds up the receivers behind it (they spin, then
 * sched_yield). Positions are 61 bits: they wrap after 2^60 elements.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "queue.h"

/* ---- bounded ring ------------------------------------------------------------ */

struct rslot {
	_Atomic uint64_t stamp;
	unsigned char data[];
};

static inline struct rslot *rslot_at(const struct mr__queue *q, uint64_t idx)
{
	return (struct rslot *)(q->slots + idx * q->slot_size);
}

/* The position after pos: the next index, or index 0 of the next lap. */
static inline uint64_t ring_next(const struct mr__queue *q, uint64_t pos)
{
	uint64_t idx = pos & (q->one_lap - 1);

	return idx + 1 < q->cap ? pos + 1 : pos - idx + q->one_lap;
}

/* Rings of at least this many bytes are mapped (see the top). Below it,
 * malloc's memory and one memset are cheaper than a mapping's syscalls and
 * page faults, and many small channels share pages. */
#define RING_MMAP_MIN ((size_t)128 * 1024)

static size_t ring_bytes(const struct mr__queue *q)
{
	return (q->cap * q->slot_size + MR_CACHELINE - 1) & ~(size_t)(MR_CACHELINE - 1);
}

int mr__ring_init(struct mr__queue *q)
{
	uint64_t lap = 1;

	while (lap <= q->cap)
		lap <<= 1;
	q->one_lap = lap;
	q->slot_size = (sizeof(struct rslot) + q->elem_size + 7) & ~(size_t)7;
	if (q->cap > (SIZE_MAX - MR_CACHELINE) / q->slot_size)
		return -ENOMEM;
	size_t bytes = ring_bytes(q);
	if (bytes >= RING_MMAP_MIN) {
		/* NORESERVE: the address space is reserved, not the memory
		 * (chan.h says what that means for the caller). */
		void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED)
			return -ENOMEM;
		q->slots = p;
	} else {
		q->slots = aligned_alloc(MR_CACHELINE, bytes);
		if (!q->slots)
			return -ENOMEM;
		memset(q->slots, 0, bytes);
	}
	/* Every stamp is 0: free for lap 0. The channel reaches other
	 * threads through a release (or the thread's creation) after this. */
	atomic_init(&q->tail, 0);
	atomic_init(&q->head, 0);
	return 0;
}

void mr__ring_fini(struct mr__queue *q)
{
	size_t bytes = ring_bytes(q);

	if (bytes < RING_MMAP_MIN)
		free(q->slots);
	else if (munmap(q->slots, bytes))
		/* Unmapping exactly the mapping init made cannot fail. */
		mr__die("mr_chan_destroy", "munmap of the ring of channel %p failed: %s",
			(void *)q, strerror(errno));
	q->slots = NULL;
}

int mr__ring_try_send(struct mr__queue *q, const void *elem)
{
	unsigned k = 0;
	uint64_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);

	for (;;) {
		if (unlikely(t & POS_CLOSED))
			return -EPIPE;
		uint64_t pos = pos_of(t);
		uint64_t idx = pos & (q->one_lap - 1), lap = pos - idx;
		struct rslot *s = rslot_at(q, idx);
		/* acquire: pairs with the release store of stamp in
		 * mr__ring_try_recv(): the previous lap's element was copied out. */
		uint64_t stamp = atomic_load_explicit(&s->stamp, memory_order_acquire);

		if (stamp == lap) {
			uint64_t nt = (ring_next(q, pos) << POS_SHIFT) | (t & POS_FLAGS);
			/* relaxed: the slot is ordered by its stamp; the flags by
			 * this word's modification order (see chan.h). */
			if (!atomic_compare_exchange_weak_explicit(&q->tail, &t, nt,
								   memory_order_relaxed,
								   memory_order_relaxed))
				continue;
			if (likely(!(t & POS_RXW))) {
				elem_copy(s->data, elem, q->elem_size);
				/* release: pairs with the acquire load in try_recv. */
				atomic_store_explicit(&s->stamp, lap + 1, memory_order_release);
				return 0;
			}
			atomic_fetch_add_explicit(&q->busy, 1, memory_order_relaxed);
			elem_copy(s->data, elem, q->elem_size);
			/* release: as above; also publishes busy. */
			atomic_store_explicit(&s->stamp, lap + 1, memory_order_release);
			return MR__Q_WAKE;
		}
		if ((int64_t)(stamp - lap) < 0) {
			/* The slot still holds (or is giving up) the previous
			 * lap's element. acquire: orders this after the stamp
			 * load; a sender about to sleep loads head after setting
			 * TXW in it, so it sees every receiver that claimed
			 * before. Full when head is a whole lap behind. */
			uint64_t h = atomic_load_explicit(&q->head, memory_order_acquire);
			if (pos_of(h) + q->one_lap == pos)
				return -EAGAIN;
			mr__backoff(&k);
		}
		t = atomic_load_explicit(&q->tail, memory_order_relaxed);
	}
}

int mr__ring_try_recv(struct mr__queue *q, void *elem)
{
	unsigned k = 0;
	/* acquire: the tail load below must not see an older tail than this
	 * head (the empty test compares them). */
	uint64_t h = atomic_load_explicit(&q->head, memory_order_acquire);

	for (;;) {
		uint64_t pos = pos_of(h);
		uint64_t idx = pos & (q->one_lap - 1), lap = pos - idx;
		struct rslot *s = rslot_at(q, idx);
		/* acquire: pairs with the release store of stamp in
		 * mr__ring_try_send(): the element is written. */
		uint64_t stamp = atomic_load_explicit(&s->stamp, memory_order_acquire);

		if (stamp == lap + 1) {
			uint64_t nh = (ring_next(q, pos) << POS_SHIFT) | (h & POS_FLAGS);
			/* acquire on failure: the reloaded head, as above (and
			 * C11 wants success at least as strong). */
			if (!atomic_compare_exchange_weak_explicit(&q->head, &h, nh,
								   memory_order_acquire,
								   memory_order_acquire))
				continue;
			if (likely(!(h & POS_TXW))) {
				elem_copy(elem, s->data, q->elem_size);
				/* release: pairs with the acquire load in try_send. */
				atomic_store_explicit(&s->stamp, lap + q->one_lap,
						      memory_order_release);
				return 0;
			}
			atomic_fetch_add_explicit(&q->busy, 1, memory_order_relaxed);
			elem_copy(elem, s->data, q->elem_size);
			atomic_store_explicit(&s->stamp, lap + q->one_lap, memory_order_release);
			return MR__Q_WAKE;
		}
		if (stamp == lap) {
			/* Nothing published here yet: empty, or a sender claimed
			 * the slot and has yet to write it. A receiver about to
			 * sleep set RXW in tail before calling us, so this load
			 * sees every sender that did not see the flag. */
			uint64_t t = atomic_load_explicit(&q->tail, memory_order_acquire);
			if (pos_of(t) == pos)
				return (t & POS_CLOSED) ? -EPIPE : -EAGAIN;
			mr__backoff(&k);
		}
		/* else: another receiver took pos; head has moved on. */
		h = atomic_load_explicit(&q->head, memory_order_acquire);
	}
}

bool mr__ring_send_ready(const struct mr__queue *q)
{
	/* relaxed: a hint; try_send does the ordered loads. */
	uint64_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
	uint64_t pos = pos_of(t), idx = pos & (q->one_lap - 1);
	const struct rslot *s = rslot_at(q, idx);

	return (t & POS_CLOSED) ||
	       atomic_load_explicit(&s->stamp, memory_order_relaxed) == pos - idx;
}

bool mr__ring_recv_ready(const struct mr__queue *q)
{
	/* relaxed: a hint, as above. A close is noticed after the spin. */
	uint64_t pos = pos_of(atomic_load_explicit(&q->head, memory_order_relaxed));
	uint64_t idx = pos & (q->one_lap - 1);
	const struct rslot *s = rslot_at(q, idx);

	return atomic_load_explicit(&s->stamp, memory_order_relaxed) == pos - idx + 1;
}

size_t mr__ring_len(const struct mr__queue *q)
{
	for (;;) {
		uint64_t t = pos_of(atomic_load_explicit(&q->tail, memory_order_acquire));
		uint64_t h = pos_of(atomic_load_explicit(&q->head, memory_order_acquire));
		/* A consistent pair: tail did not move while head was read. */
		if (pos_of(atomic_load_explicit(&q->tail, memory_order_acquire)) != t)
			continue;
		uint64_t hi = h & (q->one_lap - 1), ti = t & (q->one_lap - 1);
		if (hi < ti)
			return ti - hi;
		if (hi > ti)
			return q->cap - hi + ti;
		return t == h ? 0 : q->cap;
	}
}
