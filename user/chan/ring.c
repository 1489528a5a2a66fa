/*
 * ring.c - the lock-free queues under channels: a bounded ring and an
 * unbounded list of segments. Both are multi-producer multi-consumer and
 * never block; chan.c builds waiting on top (see chan.h for how the sleep
 * flags in the position words make that race-free).
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
 * The unbounded list. Segments of SEG_CAP slots, each slot with a state
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
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "chan.h"

/* ---- waking the other side from a queue operation ---------------------------- */

/*
 * The element is published and the other side's sleep flag was set in the
 * word the CAS updated. `busy` keeps the channel alive until this is over:
 * whoever takes the element may destroy the channel at once, and
 * mr_chan_destroy() waits for busy to drop to 0.
 */
static void wake_other(struct mr_chan *ch, struct mr__cwq *q, _Atomic uint64_t *word,
		       uint64_t bit, bool held, const struct mr__sleeper *self)
{
	struct mr__sleeper *s;

	if (!held)
		mr__chan_lock(ch);
	s = mr__chan_claim_one(ch, q, word, bit, self);
	if (!held)
		mr__chan_unlock(ch);
	/* release: pairs with the acquire load of busy in mr_chan_destroy(). */
	atomic_fetch_sub_explicit(&ch->busy, 1, memory_order_release);
	if (s)
		mr__sleeper_wake(s);
}

/* ---- bounded ring ------------------------------------------------------------ */

struct rslot {
	_Atomic uint64_t stamp;
	unsigned char data[];
};

static inline struct rslot *rslot_at(const struct mr_chan *ch, uint64_t idx)
{
	return (struct rslot *)(ch->slots + idx * ch->slot_size);
}

/* The position after pos: the next index, or index 0 of the next lap. */
static inline uint64_t ring_next(const struct mr_chan *ch, uint64_t pos)
{
	uint64_t idx = pos & (ch->one_lap - 1);

	return idx + 1 < ch->cap ? pos + 1 : pos - idx + ch->one_lap;
}

/* Rings of at least this many bytes are mapped (see the top). Below it,
 * malloc's memory and one memset are cheaper than a mapping's syscalls and
 * page faults, and many small channels share pages. */
#define RING_MMAP_MIN ((size_t)128 * 1024)

static size_t ring_bytes(const struct mr_chan *ch)
{
	return (ch->cap * ch->slot_size + MR_CACHELINE - 1) & ~(size_t)(MR_CACHELINE - 1);
}

int mr__ring_init(struct mr_chan *ch)
{
	uint64_t lap = 1;

	while (lap <= ch->cap)
		lap <<= 1;
	ch->one_lap = lap;
	ch->slot_size = (sizeof(struct rslot) + ch->elem_size + 7) & ~(size_t)7;
	if (ch->cap > (SIZE_MAX - MR_CACHELINE) / ch->slot_size)
		return -ENOMEM;
	size_t bytes = ring_bytes(ch);
	if (bytes >= RING_MMAP_MIN) {
		/* NORESERVE: the address space is reserved, not the memory
		 * (chan.h says what that means for the caller). */
		void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED)
			return -ENOMEM;
		ch->slots = p;
	} else {
		ch->slots = aligned_alloc(MR_CACHELINE, bytes);
		if (!ch->slots)
			return -ENOMEM;
		memset(ch->slots, 0, bytes);
	}
	/* Every stamp is 0: free for lap 0. The channel reaches other
	 * threads through a release (or the thread's creation) after this. */
	atomic_init(&ch->tail, 0);
	atomic_init(&ch->head, 0);
	return 0;
}

void mr__ring_fini(struct mr_chan *ch)
{
	size_t bytes = ring_bytes(ch);

	if (bytes < RING_MMAP_MIN)
		free(ch->slots);
	else if (munmap(ch->slots, bytes))
		/* Unmapping exactly the mapping init made cannot fail. */
		mr__die("mr_chan_destroy", "munmap of the ring of channel %p failed: %s",
			(void *)ch, strerror(errno));
	ch->slots = NULL;
}

int mr__ring_try_send(struct mr_chan *ch, const void *elem, bool held,
		      const struct mr__sleeper *self)
{
	unsigned k = 0;
	uint64_t t = atomic_load_explicit(&ch->tail, memory_order_relaxed);

	for (;;) {
		if (unlikely(t & POS_CLOSED))
			return -EPIPE;
		uint64_t pos = pos_of(t);
		uint64_t idx = pos & (ch->one_lap - 1), lap = pos - idx;
		struct rslot *s = rslot_at(ch, idx);
		/* acquire: pairs with the release store of stamp in
		 * mr__ring_try_recv(): the previous lap's element was copied out. */
		uint64_t stamp = atomic_load_explicit(&s->stamp, memory_order_acquire);

		if (stamp == lap) {
			uint64_t nt = (ring_next(ch, pos) << POS_SHIFT) | (t & POS_FLAGS);
			/* relaxed: the slot is ordered by its stamp; the flags by
			 * this word's modification order (see chan.h). */
			if (!atomic_compare_exchange_weak_explicit(&ch->tail, &t, nt,
								   memory_order_relaxed,
								   memory_order_relaxed))
				continue;
			if (likely(!(t & POS_RXW))) {
				elem_copy(s->data, elem, ch->elem_size);
				/* release: pairs with the acquire load in try_recv. */
				atomic_store_explicit(&s->stamp, lap + 1, memory_order_release);
				return 0;
			}
			atomic_fetch_add_explicit(&ch->busy, 1, memory_order_relaxed);
			elem_copy(s->data, elem, ch->elem_size);
			/* release: as above; also publishes busy. */
			atomic_store_explicit(&s->stamp, lap + 1, memory_order_release);
			wake_other(ch, &ch->rxq, &ch->tail, POS_RXW, held, self);
			return 0;
		}
		if ((int64_t)(stamp - lap) < 0) {
			/* The slot still holds (or is giving up) the previous
			 * lap's element. acquire: orders this after the stamp
			 * load; a sender about to sleep loads head after setting
			 * TXW in it, so it sees every receiver that claimed
			 * before. Full when head is a whole lap behind. */
			uint64_t h = atomic_load_explicit(&ch->head, memory_order_acquire);
			if (pos_of(h) + ch->one_lap == pos)
				return -EAGAIN;
			chan_backoff(&k);
		}
		t = atomic_load_explicit(&ch->tail, memory_order_relaxed);
	}
}

int mr__ring_try_recv(struct mr_chan *ch, void *elem, bool held,
		      const struct mr__sleeper *self)
{
	unsigned k = 0;
	/* acquire: the tail load below must not see an older tail than this
	 * head (the empty test compares them). */
	uint64_t h = atomic_load_explicit(&ch->head, memory_order_acquire);

	for (;;) {
		uint64_t pos = pos_of(h);
		uint64_t idx = pos & (ch->one_lap - 1), lap = pos - idx;
		struct rslot *s = rslot_at(ch, idx);
		/* acquire: pairs with the release store of stamp in
		 * mr__ring_try_send(): the element is written. */
		uint64_t stamp = atomic_load_explicit(&s->stamp, memory_order_acquire);

		if (stamp == lap + 1) {
			uint64_t nh = (ring_next(ch, pos) << POS_SHIFT) | (h & POS_FLAGS);
			/* acquire on failure: the reloaded head, as above (and
			 * C11 wants success at least as strong). */
			if (!atomic_compare_exchange_weak_explicit(&ch->head, &h, nh,
								   memory_order_acquire,
								   memory_order_acquire))
				continue;
			if (likely(!(h & POS_TXW))) {
				elem_copy(elem, s->data, ch->elem_size);
				/* release: pairs with the acquire load in try_send. */
				atomic_store_explicit(&s->stamp, lap + ch->one_lap,
						      memory_order_release);
				return 0;
			}
			atomic_fetch_add_explicit(&ch->busy, 1, memory_order_relaxed);
			elem_copy(elem, s->data, ch->elem_size);
			atomic_store_explicit(&s->stamp, lap + ch->one_lap, memory_order_release);
			wake_other(ch, &ch->txq, &ch->head, POS_TXW, held, self);
			return 0;
		}
		if (stamp == lap) {
			/* Nothing published here yet: empty, or a sender claimed
			 * the slot and has yet to write it. A receiver about to
			 * sleep set RXW in tail before calling us, so this load
			 * sees every sender that did not see the flag. */
			uint64_t t = atomic_load_explicit(&ch->tail, memory_order_acquire);
			if (pos_of(t) == pos)
				return (t & POS_CLOSED) ? -EPIPE : -EAGAIN;
			chan_backoff(&k);
		}
		/* else: another receiver took pos; head has moved on. */
		h = atomic_load_explicit(&ch->head, memory_order_acquire);
	}
}

bool mr__ring_send_ready(const struct mr_chan *ch)
{
	/* relaxed: a hint; try_send does the ordered loads. */
	uint64_t t = atomic_load_explicit(&ch->tail, memory_order_relaxed);
	uint64_t pos = pos_of(t), idx = pos & (ch->one_lap - 1);
	const struct rslot *s = rslot_at(ch, idx);

	return (t & POS_CLOSED) ||
	       atomic_load_explicit(&s->stamp, memory_order_relaxed) == pos - idx;
}

bool mr__ring_recv_ready(const struct mr_chan *ch)
{
	/* relaxed: a hint, as above. A close is noticed after the spin. */
	uint64_t pos = pos_of(atomic_load_explicit(&ch->head, memory_order_relaxed));
	uint64_t idx = pos & (ch->one_lap - 1);
	const struct rslot *s = rslot_at(ch, idx);

	return atomic_load_explicit(&s->stamp, memory_order_relaxed) == pos - idx + 1;
}

size_t mr__ring_len(const struct mr_chan *ch)
{
	for (;;) {
		uint64_t t = pos_of(atomic_load_explicit(&ch->tail, memory_order_acquire));
		uint64_t h = pos_of(atomic_load_explicit(&ch->head, memory_order_acquire));
		/* A consistent pair: tail did not move while head was read. */
		if (pos_of(atomic_load_explicit(&ch->tail, memory_order_acquire)) != t)
			continue;
		uint64_t hi = h & (ch->one_lap - 1), ti = t & (ch->one_lap - 1);
		if (hi < ti)
			return ti - hi;
		if (hi > ti)
			return ch->cap - hi + ti;
		return t == h ? 0 : ch->cap;
	}
}

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

static struct mr__seg *seg_new(struct mr_chan *ch)
{
	/* acquire: pairs with the release exchange in seg_recycle(). */
	struct mr__seg *g = atomic_exchange_explicit(&ch->spare, NULL, memory_order_acquire);

	if (!g) {
		g = malloc(sizeof(*g) + SEG_CAP * ch->slot_size);
		if (!g)
			return NULL;
		g->slot_size = ch->slot_size;
	}
	atomic_init(&g->next, NULL);
	for (unsigned i = 0; i < SEG_CAP; i++)
		atomic_init(&lslot_at(g, i)->state, 0);
	return g;
}

static void seg_recycle(struct mr_chan *ch, struct mr__seg *g)
{
	/* release: every reader's copy-out is done before g is reused. */
	free(atomic_exchange_explicit(&ch->spare, g, memory_order_acq_rel));
}

/* Every slot of g from `from` on is read or marked: free g, or leave it to
 * the reader of the first slot still being read. */
static void seg_release(struct mr_chan *ch, struct mr__seg *g, unsigned from)
{
	for (unsigned i = from; i < SEG_CAP - 1; i++) {
		_Atomic uint32_t *st = &lslot_at(g, i)->state;
		/* acq_rel: pairs with the reader's fetch_or of READ. */
		if (!(atomic_load_explicit(st, memory_order_acquire) & SLOT_READ) &&
		    !(atomic_fetch_or_explicit(st, SLOT_DESTROY, memory_order_acq_rel) & SLOT_READ))
			return;
	}
	seg_recycle(ch, g);
}

int mr__list_init(struct mr_chan *ch)
{
	ch->slot_size = (sizeof(struct lslot) + ch->elem_size + 7) & ~(size_t)7;
	atomic_init(&ch->spare, NULL);
	struct mr__seg *g = seg_new(ch);
	if (!g)
		return -ENOMEM;
	atomic_init(&ch->tail, 0);
	atomic_init(&ch->head, 0);
	atomic_init(&ch->tail_seg, g);
	atomic_init(&ch->head_seg, g);
	return 0;
}

void mr__list_fini(struct mr_chan *ch)
{
	struct mr__seg *g = atomic_load_explicit(&ch->head_seg, memory_order_acquire);

	while (g) {
		struct mr__seg *next = atomic_load_explicit(&g->next, memory_order_acquire);
		free(g);
		g = next;
	}
	free(atomic_load_explicit(&ch->spare, memory_order_acquire));
}

int mr__list_try_send(struct mr_chan *ch, const void *elem, bool held,
		      const struct mr__sleeper *self)
{
	struct mr__seg *fresh = NULL;
	unsigned k = 0;
	/* acquire: pairs with the release fetch_add that moved tail into a new
	 * segment; tail_seg below is then that segment. */
	uint64_t t = atomic_load_explicit(&ch->tail, memory_order_acquire);
	int ret;

	for (;;) {
		if (unlikely(t & POS_CLOSED)) {
			ret = -EPIPE;
			break;
		}
		unsigned off = pos_of(t) % SEG_LAP;
		if (off == SEG_CAP) {
			/* Another sender is linking in the next segment. */
			chan_backoff(&k);
			t = atomic_load_explicit(&ch->tail, memory_order_acquire);
			continue;
		}
		struct mr__seg *g = atomic_load_explicit(&ch->tail_seg, memory_order_acquire);
		if (off + 1 == SEG_CAP && !fresh) {
			fresh = seg_new(ch);
			if (!fresh)
				return -ENOMEM;
		}
		/* acquire on failure: the reloaded tail, as above. */
		if (!atomic_compare_exchange_weak_explicit(&ch->tail, &t, t + POS_ONE,
							   memory_order_acquire,
							   memory_order_acquire))
			continue;
		if (off + 1 == SEG_CAP) {
			/* We own the last slot: link the next segment and move
			 * the tail over the SEG_CAP position. release: the
			 * segment's initialisation before its pointer. */
			atomic_store_explicit(&ch->tail_seg, fresh, memory_order_release);
			atomic_fetch_add_explicit(&ch->tail, POS_ONE, memory_order_release);
			atomic_store_explicit(&g->next, fresh, memory_order_release);
			fresh = NULL;
		}
		struct lslot *s = lslot_at(g, off);
		elem_copy(s->data, elem, ch->elem_size);
		if (likely(!(t & POS_RXW))) {
			/* release: pairs with the acquire load of state in
			 * try_recv. An RMW: DESTROY may already be set. */
			atomic_fetch_or_explicit(&s->state, SLOT_WRITTEN, memory_order_release);
		} else {
			atomic_fetch_add_explicit(&ch->busy, 1, memory_order_relaxed);
			atomic_fetch_or_explicit(&s->state, SLOT_WRITTEN, memory_order_release);
			wake_other(ch, &ch->rxq, &ch->tail, POS_RXW, held, self);
		}
		ret = 0;
		break;
	}
	if (fresh)
		seg_recycle(ch, fresh);
	return ret;
}

int mr__list_try_recv(struct mr_chan *ch, void *elem, bool held,
		      const struct mr__sleeper *self)
{
	unsigned k = 0;
	/* acquire: pairs with the release store that moved head into a new
	 * segment (head_seg below is that segment). */
	uint64_t h = atomic_load_explicit(&ch->head, memory_order_acquire);

	(void)held;
	(void)self;
	for (;;) {
		uint64_t pos = pos_of(h);
		unsigned off = pos % SEG_LAP;
		if (off == SEG_CAP) {
			/* The receiver of the last slot is moving head on. */
			chan_backoff(&k);
			h = atomic_load_explicit(&ch->head, memory_order_acquire);
			continue;
		}
		uint64_t nh = h + POS_ONE;
		if (!(h & POS_MARK)) {
			/* head and tail may share a segment: is it empty? A
			 * receiver about to sleep set RXW in tail first. */
			uint64_t t = atomic_load_explicit(&ch->tail, memory_order_acquire);
			if (pos_of(t) == pos)
				return (t & POS_CLOSED) ? -EPIPE : -EAGAIN;
			if (pos_of(t) / SEG_LAP != pos / SEG_LAP)
				nh |= POS_MARK;
		}
		struct mr__seg *g = atomic_load_explicit(&ch->head_seg, memory_order_acquire);
		if (!atomic_compare_exchange_weak_explicit(&ch->head, &h, nh, memory_order_acquire,
							   memory_order_acquire))
			continue;
		if (off + 1 == SEG_CAP) {
			/* We took the segment's last slot: move head into the
			 * next segment, which its sender links in right after
			 * its CAS. */
			struct mr__seg *next;
			while (!(next = atomic_load_explicit(&g->next, memory_order_acquire)))
				chan_backoff(&k);
			uint64_t moved = ((nh & ~POS_MARK) + POS_ONE);
			if (atomic_load_explicit(&next->next, memory_order_acquire))
				moved |= POS_MARK;
			atomic_store_explicit(&ch->head_seg, next, memory_order_release);
			/* release: pairs with the acquire loads of head above. */
			atomic_store_explicit(&ch->head, moved, memory_order_release);
		}
		struct lslot *s = lslot_at(g, off);
		/* acquire: pairs with the release fetch_or in try_send. */
		while (!(atomic_load_explicit(&s->state, memory_order_acquire) & SLOT_WRITTEN))
			chan_backoff(&k);
		elem_copy(elem, s->data, ch->elem_size);
		if (off + 1 == SEG_CAP)
			seg_release(ch, g, 0);
		else if (atomic_fetch_or_explicit(&s->state, SLOT_READ, memory_order_acq_rel) &
			 SLOT_DESTROY)
			seg_release(ch, g, off + 1);
		return 0;
	}
}

/* Elements before pos: SEG_CAP per whole segment. */
static uint64_t list_count(uint64_t pos)
{
	uint64_t off = pos % SEG_LAP;

	return pos / SEG_LAP * SEG_CAP + (off < SEG_CAP ? off : SEG_CAP);
}

size_t mr__list_len(const struct mr_chan *ch)
{
	for (;;) {
		uint64_t t = pos_of(atomic_load_explicit(&ch->tail, memory_order_acquire));
		uint64_t h = pos_of(atomic_load_explicit(&ch->head, memory_order_acquire));
		if (pos_of(atomic_load_explicit(&ch->tail, memory_order_acquire)) != t)
			continue;
		uint64_t nt = list_count(t), nh = list_count(h);
		return nt > nh ? nt - nh : 0;
	}
}
