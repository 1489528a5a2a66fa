/*
 * chan.h - the private side of channels: the channel object, the lock-free
 * queues (ring.c: the bounded ring and the unbounded segment list) and the
 * waiting machinery they share with select (chan.c).
 *
 * Layering. The queues know nothing about fibers or threads: each exposes
 * a non-blocking send and receive that either complete or say -EAGAIN, and
 * two "someone sleeps" flags that live inside their position words. The
 * waiting side (chan.c) queues sleepers, sets a flag and re-checks; a queue
 * operation that finds the other side's flag set in the word it just
 * updated calls back into chan.c to wake one sleeper. Nothing in the queue
 * code depends on where its memory lives, which is what the shared-memory
 * transport will reuse.
 *
 * Why the flags live in the position words. A sender reserves a slot with
 * a CAS on the tail word; a receiver that is about to sleep sets RXW in
 * that same word with a CAS and only then looks at the queue one last time.
 * The two CASes are ordered on one location, so either the sender's CAS
 * returns the flag (and the sender wakes someone after publishing) or the
 * receiver's last look sees the sender's reservation (and waits for it
 * instead of sleeping). No fence is needed on the fast path, and a send with
 * nobody asleep touches nothing but the tail word and one slot.
 *
 * A woken sleeper of a ring or list is not handed an element: it tries
 * again. An element it loses to a receiver that never slept was still
 * received by someone, so no wake-up is lost; rendezvous channels, which
 * hold no elements, complete the sleeper's operation for it instead.
 */
#ifndef MR_CHAN_CHAN_H
#define MR_CHAN_CHAN_H

#include <string.h>

#include <moirai/chan.h>

#include "../fiber/fiber.h"

enum { CH_RING = 1, CH_LIST = 2, CH_RENDEZVOUS = 3 };

/* Low bits of the position words (tail and head); positions count in units
 * of POS_ONE. CLOSED and RXW live in the tail word, TXW in the head word,
 * MARK in the list's head word (see ring.c). */
#define POS_SHIFT 3
#define POS_ONE ((uint64_t)1 << POS_SHIFT)
#define POS_CLOSED ((uint64_t)1)
#define POS_RXW ((uint64_t)2) /* receivers sleep on the channel */
#define POS_TXW ((uint64_t)2) /* senders sleep on the channel */
#define POS_MARK ((uint64_t)4) /* list: head's segment is not tail's */
#define POS_FLAGS (POS_ONE - 1)

/* ---- sleepers and their queue entries --------------------------------------- */

/* SLEEPING: a thread that stopped spinning and waits in the futex; only
 * then does its waker make the futex_wake call. */
enum { SL_WAITING = 0, SL_CLAIMED = 1, SL_WOKEN = 2, SL_TIMEDOUT = 3, SL_SLEEPING = 4 };

/* sleeper.result: the waker completed the operation (0 or -EPIPE), or the
 * sleeper must try again (RETRY). */
#define SL_RETRY 1

/*
 * One blocked call (send, recv or select). A waker claims it with a CAS of
 * state from WAITING (or SLEEPING) to CLAIMED, fills which/result, then
 * stores WOKEN and readies the fiber or wakes the futex; a deadline moves
 * WAITING to TIMEDOUT. Exactly one of them wins. A thread first spins on
 * its own state (a local line) and moves it to SLEEPING before the futex.
 */
struct mr__sleeper {
	_Atomic uint32_t state;
	int which;  /* index of the case that woke it */
	int result; /* 0 / -EPIPE (completed by the waker) or SL_RETRY */
	struct mr_fiber *fiber; /* NULL: a thread (or job) on the futex `state` */
	/* One case and no deadline: only a holder of that one channel's lock
	 * can claim it, so claiming needs no CAS. */
	bool solo;
	bool futex; /* set by the claimer: the thread sleeps in the futex */
	struct mr__timer timer;
};

/* One case of a sleeper, queued on one channel (under the channel's lock). */
struct mr__centry {
	struct mr__centry *next, *prev;
	struct mr__sleeper *s;
	void *elem; /* rendezvous: the sender's element / the receiver's buffer */
	int idx;
	bool queued;
};

struct mr__cwq {
	struct mr__centry *head, *tail;
};

/* ---- queue layouts -------------------------------------------------------- */

/* List segments: SEG_LAP positions per segment, the last one (SEG_CAP)
 * never holds an element: it marks "the next segment is being installed". */
#define SEG_LAP 32
#define SEG_CAP (SEG_LAP - 1)

enum { SLOT_WRITTEN = 1, SLOT_READ = 2, SLOT_DESTROY = 4 };

struct mr__seg {
	_Atomic(struct mr__seg *) next;
	size_t slot_size;
	/* SEG_CAP slots of slot_size bytes: a 32-bit state, then the element */
	alignas(16) unsigned char slots[];
};

struct mr_chan {
	/* Read by every operation, written only when someone sleeps or closes. */
	uint32_t magic;
	uint32_t kind;
	size_t elem_size;
	size_t slot_size; /* ring and list: stride of a slot */
	size_t cap;	  /* as created */
	uint64_t one_lap; /* ring: power of two > cap; position = lap + index */
	unsigned char *slots;
	_Atomic uint32_t lock; /* the sleeper queues (and all of a rendezvous) */
	_Atomic uint32_t busy; /* queue operations still waking someone */
	struct mr__cwq rxq, txq;
	_Atomic(struct mr__seg *) spare; /* list: one recycled segment */

	/* Senders' word. */
	mr__cacheline_aligned _Atomic uint64_t tail;
	_Atomic(struct mr__seg *) tail_seg;

	/* Receivers' word. */
	mr__cacheline_aligned _Atomic uint64_t head;
	_Atomic(struct mr__seg *) head_seg;
};

static inline uint64_t pos_of(uint64_t word)
{
	return word >> POS_SHIFT;
}

/* Copy one element; the common sizes inline. */
static inline void elem_copy(void *dst, const void *src, size_t n)
{
	switch (n) {
	case 4:
		memcpy(dst, src, 4);
		break;
	case 8:
		memcpy(dst, src, 8);
		break;
	case 16:
		memcpy(dst, src, 16);
		break;
	default:
		memcpy(dst, src, n);
	}
}

/* Spin for a peer that is a few instructions from finishing (a slot it
 * reserved but has not yet published); give the CPU away if it is not
 * running. */
static inline void chan_backoff(unsigned *k)
{
	mr__backoff(k);
}

/* ---- chan.c: locks and wake-ups, called by the queues ---- */
void mr__chan_lock(struct mr_chan *ch);
void mr__chan_unlock(struct mr_chan *ch);
/*
 * A queue operation saw the other side's sleep flag. With ch locked (the
 * caller locked it, or `held` says the caller's select holds it): claim one
 * sleeper of q (not `self`, a select calling from its own enqueue phase)
 * for a retry, clearing the flag `bit` of *word when q has no one left.
 * Returns the sleeper to wake after unlocking, or NULL.
 */
struct mr__sleeper *mr__chan_claim_one(struct mr_chan *ch, struct mr__cwq *q,
				       _Atomic uint64_t *word, uint64_t bit,
				       const struct mr__sleeper *self);
/* Finish a claim: store WOKEN and ready the fiber or wake the thread. */
void mr__sleeper_wake(struct mr__sleeper *s);

/*
 * ---- ring.c: the lock-free queues ----
 * try_send / try_recv: 0, -EAGAIN (full / empty) or -EPIPE (closed; for
 * recv: closed and empty). `held`: the caller already holds ch's lock
 * (a select in its enqueue phase), `self` its sleeper.
 */
int mr__ring_init(struct mr_chan *ch);
void mr__ring_fini(struct mr_chan *ch);
int mr__ring_try_send(struct mr_chan *ch, const void *elem, bool held,
		      const struct mr__sleeper *self);
int mr__ring_try_recv(struct mr_chan *ch, void *elem, bool held,
		      const struct mr__sleeper *self);
size_t mr__ring_len(const struct mr_chan *ch);
/*
 * Would a send (recv) probably complete now? Reads only the position word of
 * its own side and one slot's stamp, never the other side's word: for the
 * spin before sleeping, where polling the other side's line would slow the
 * very peer we wait for. A hint: true does not promise success, and false
 * is not the definitive full (empty) check, which only try_* makes.
 */
bool mr__ring_send_ready(const struct mr_chan *ch);
bool mr__ring_recv_ready(const struct mr_chan *ch);

int mr__list_init(struct mr_chan *ch);
void mr__list_fini(struct mr_chan *ch);
int mr__list_try_send(struct mr_chan *ch, const void *elem, bool held,
		      const struct mr__sleeper *self);
int mr__list_try_recv(struct mr_chan *ch, void *elem, bool held,
		      const struct mr__sleeper *self);
size_t mr__list_len(const struct mr_chan *ch);

#endif /* MR_CHAN_CHAN_H */
