/*
 * list.c - the unbounded lock-free queue under channels (ring.c is the
 * bounded one). Multi-producer multi-consumer; it never blocks and, like
 * the ring, reports a sleeping receiver (MR__Q_WAKE) instead of waking it.
 *
 * Segments of SEG_CAP slots, each slot with a state
 * word (WRITTEN, READ, DESTROY). Positions run SEG_LAP per segment; the
 * last one (SEG_CAP) holds no element and means "the next segment is being
 * linked in", which is what a sender that claims a segment's last slot does
 * before it writes: it publishes the next segment and moves the tail past
 * that position (the segment was allocated before the CAS, so others wait
 * only for a few stores). A receiver claims a position with a CAS on the
 * head word, then waits for WRITTEN. The receiver of a segment's last slot
 * starts freeing the segment: it marks every slot not yet READ with DESTROY,
 * and the reader of such a slot, when done, continues; the last one frees
 * (or keeps one segment as a spare). Each element is copied in once and out
 * once; growing never moves anything.
 *
 * Where it behaves badly: a sender or receiver preempted between its CAS
 * and its publish holds up the receivers behind it (they spin, then
 * sched_yield). Positions are 61 bits: they wrap after 2^60 elements.
 */
#include <errno.h>
#include <stdlib.h>

#include "queue.h"

/* ---- unbounded list ---------------------------------------------------------- */

struct lslot {
	_Atomic uint32_t state;
	uint32_t pad;
	unsigned char data[];
};

static inline struct lslot *lslot_at(struct mr__seg *g, unsigned off)
{
	return (struct lslot *)(g->slots + (size_t)off * g->slot_size);
}

static struct mr__seg *seg_new(struct mr__queue *q)
{
	/* acquire: pairs with the release exchange in seg_recycle(). */
	struct mr__seg *g = atomic_exchange_explicit(&q->spare, NULL, memory_order_acquire);

	if (!g) {
		g = malloc(sizeof(*g) + SEG_CAP * q->slot_size);
		if (!g)
			return NULL;
		g->slot_size = q->slot_size;
	}
	atomic_init(&g->next, NULL);
	for (unsigned i = 0; i < SEG_CAP; i++)
		atomic_init(&lslot_at(g, i)->state, 0);
	return g;
}

static void seg_recycle(struct mr__queue *q, struct mr__seg *g)
{
	/* release: every reader's copy-out is done before g is reused. */
	free(atomic_exchange_explicit(&q->spare, g, memory_order_acq_rel));
}

/* Every slot of g from `from` on is read or marked: free g, or leave it to
 * the reader of the first slot still being read. */
static void seg_release(struct mr__queue *q, struct mr__seg *g, unsigned from)
{
	for (unsigned i = from; i < SEG_CAP - 1; i++) {
		_Atomic uint32_t *st = &lslot_at(g, i)->state;
		/* acq_rel: pairs with the reader's fetch_or of READ. */
		if (!(atomic_load_explicit(st, memory_order_acquire) & SLOT_READ) &&
		    !(atomic_fetch_or_explicit(st, SLOT_DESTROY, memory_order_acq_rel) & SLOT_READ))
			return;
	}
	seg_recycle(q, g);
}

int mr__list_init(struct mr__queue *q)
{
	q->slot_size = (sizeof(struct lslot) + q->elem_size + 7) & ~(size_t)7;
	atomic_init(&q->spare, NULL);
	struct mr__seg *g = seg_new(q);
	if (!g)
		return -ENOMEM;
	atomic_init(&q->tail, 0);
	atomic_init(&q->head, 0);
	atomic_init(&q->tail_seg, g);
	atomic_init(&q->head_seg, g);
	return 0;
}

void mr__list_fini(struct mr__queue *q)
{
	struct mr__seg *g = atomic_load_explicit(&q->head_seg, memory_order_acquire);

	while (g) {
		struct mr__seg *next = atomic_load_explicit(&g->next, memory_order_acquire);
		free(g);
		g = next;
	}
	free(atomic_load_explicit(&q->spare, memory_order_acquire));
}

int mr__list_try_send(struct mr__queue *q, const void *elem)
{
	struct mr__seg *fresh = NULL;
	unsigned k = 0;
	/* acquire: pairs with the release fetch_add that moved tail into a new
	 * segment; tail_seg below is then that segment. */
	uint64_t t = atomic_load_explicit(&q->tail, memory_order_acquire);
	int ret;

	for (;;) {
		if (unlikely(t & POS_CLOSED)) {
			ret = -EPIPE;
			break;
		}
		unsigned off = pos_of(t) % SEG_LAP;
		if (off == SEG_CAP) {
			/* Another sender is linking in the next segment. */
			mr__backoff(&k);
			t = atomic_load_explicit(&q->tail, memory_order_acquire);
			continue;
		}
		struct mr__seg *g = atomic_load_explicit(&q->tail_seg, memory_order_acquire);
		if (off + 1 == SEG_CAP && !fresh) {
			fresh = seg_new(q);
			if (!fresh)
				return -ENOMEM;
		}
		/* acquire on failure: the reloaded tail, as above. */
		if (!atomic_compare_exchange_weak_explicit(&q->tail, &t, t + POS_ONE,
							   memory_order_acquire,
							   memory_order_acquire))
			continue;
		if (off + 1 == SEG_CAP) {
			/* We own the last slot: link the next segment and move
			 * the tail over the SEG_CAP position. release: the
			 * segment's initialisation before its pointer. */
			atomic_store_explicit(&q->tail_seg, fresh, memory_order_release);
			atomic_fetch_add_explicit(&q->tail, POS_ONE, memory_order_release);
			atomic_store_explicit(&g->next, fresh, memory_order_release);
			fresh = NULL;
		}
		struct lslot *s = lslot_at(g, off);
		elem_copy(s->data, elem, q->elem_size);
		if (likely(!(t & POS_RXW))) {
			/* release: pairs with the acquire load of state in
			 * try_recv. An RMW: DESTROY may already be set. */
			atomic_fetch_or_explicit(&s->state, SLOT_WRITTEN, memory_order_release);
		} else {
			atomic_fetch_add_explicit(&q->busy, 1, memory_order_relaxed);
			atomic_fetch_or_explicit(&s->state, SLOT_WRITTEN, memory_order_release);
		}
		ret = t & POS_RXW ? MR__Q_WAKE : 0;
		break;
	}
	if (fresh)
		seg_recycle(q, fresh);
	return ret;
}

int mr__list_try_recv(struct mr__queue *q, void *elem)
{
	unsigned k = 0;
	/* acquire: pairs with the release store that moved head into a new
	 * segment (head_seg below is that segment). */
	uint64_t h = atomic_load_explicit(&q->head, memory_order_acquire);

	for (;;) {
		uint64_t pos = pos_of(h);
		unsigned off = pos % SEG_LAP;
		if (off == SEG_CAP) {
			/* The receiver of the last slot is moving head on. */
			mr__backoff(&k);
			h = atomic_load_explicit(&q->head, memory_order_acquire);
			continue;
		}
		uint64_t nh = h + POS_ONE;
		if (!(h & POS_MARK)) {
			/* head and tail may share a segment: is it empty? A
			 * receiver about to sleep set RXW in tail first. */
			uint64_t t = atomic_load_explicit(&q->tail, memory_order_acquire);
			if (pos_of(t) == pos)
				return (t & POS_CLOSED) ? -EPIPE : -EAGAIN;
			if (pos_of(t) / SEG_LAP != pos / SEG_LAP)
				nh |= POS_MARK;
		}
		struct mr__seg *g = atomic_load_explicit(&q->head_seg, memory_order_acquire);
		if (!atomic_compare_exchange_weak_explicit(&q->head, &h, nh, memory_order_acquire,
							   memory_order_acquire))
			continue;
		if (off + 1 == SEG_CAP) {
			/* We took the segment's last slot: move head into the
			 * next segment, which its sender links in right after
			 * its CAS. */
			struct mr__seg *next;
			while (!(next = atomic_load_explicit(&g->next, memory_order_acquire)))
				mr__backoff(&k);
			uint64_t moved = ((nh & ~POS_MARK) + POS_ONE);
			if (atomic_load_explicit(&next->next, memory_order_acquire))
				moved |= POS_MARK;
			atomic_store_explicit(&q->head_seg, next, memory_order_release);
			/* release: pairs with the acquire loads of head above. */
			atomic_store_explicit(&q->head, moved, memory_order_release);
		}
		struct lslot *s = lslot_at(g, off);
		/* acquire: pairs with the release fetch_or in try_send. */
		while (!(atomic_load_explicit(&s->state, memory_order_acquire) & SLOT_WRITTEN))
			mr__backoff(&k);
		elem_copy(elem, s->data, q->elem_size);
		if (off + 1 == SEG_CAP)
			seg_release(q, g, 0);
		else if (atomic_fetch_or_explicit(&s->state, SLOT_READ, memory_order_acq_rel) &
			 SLOT_DESTROY)
			seg_release(q, g, off + 1);
		return 0;
	}
}

/* Elements before pos: SEG_CAP per whole segment. */
static uint64_t list_count(uint64_t pos)
{
	uint64_t off = pos % SEG_LAP;

	return pos / SEG_LAP * SEG_CAP + (off < SEG_CAP ? off : SEG_CAP);
}

size_t mr__list_len(const struct mr__queue *q)
{
	for (;;) {
		uint64_t t = pos_of(atomic_load_explicit(&q->tail, memory_order_acquire));
		uint64_t h = pos_of(atomic_load_explicit(&q->head, memory_order_acquire));
		if (pos_of(atomic_load_explicit(&q->tail, memory_order_acquire)) != t)
			continue;
		uint64_t nt = list_count(t), nh = list_count(h);
		return nt > nh ? nt - nh : 0;
	}
}
