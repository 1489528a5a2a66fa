/*
 * queue.h - the lock-free queues under channels: the bounded ring (ring.c)
 * and the unbounded list of segments (list.c), multi-producer and
 * multi-consumer.
 *
 * A queue never blocks and knows nothing of fibers, threads or who waits:
 * it uses base/ only. Its send and receive either complete or say -EAGAIN
 * (full / empty) or -EPIPE (closed). Waiting is built on top by chan.c
 * through two "someone sleeps" flags that live in the position words (RXW
 * in the tail word, TXW in the head word; chan.h says why there): an
 * operation that moved a word in which the other side's flag was set
 * returns MR__Q_WAKE instead of 0. It completed, and it raised `busy`; the
 * caller must wake one sleeper of the other side and then drop busy (a
 * release), which is what keeps the channel alive until the wake-up is
 * over. Nothing in a queue depends on where its memory lives, so the same
 * layout can go into shared memory.
 */
#ifndef MR_CHAN_QUEUE_H
#define MR_CHAN_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "../base/base.h"

/* CH_SHM: a shared-memory ring (shm.c), which keeps its own words */
enum { CH_RING = 1, CH_LIST = 2, CH_RENDEZVOUS = 3, CH_SHM = 4 };

/* Low bits of the position words (tail and head); positions count in units
 * of POS_ONE. CLOSED and RXW live in the tail word, TXW in the head word,
 * MARK in the list's head word (see list.c). */
#define POS_SHIFT 3
#define POS_ONE ((uint64_t)1 << POS_SHIFT)
#define POS_CLOSED ((uint64_t)1)
#define POS_RXW ((uint64_t)2) /* receivers sleep on the channel */
#define POS_TXW ((uint64_t)2) /* senders sleep on the channel */
#define POS_MARK ((uint64_t)4) /* list: head's segment is not tail's */
#define POS_FLAGS (POS_ONE - 1)

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

/* The queue part of a channel. The first line is read by every operation
 * and written only at creation; each position word has its own line. */
struct mr__queue {
	uint32_t magic;	  /* the channel's (chan.c checks it) */
	uint32_t kind;	  /* CH_RING, CH_LIST or CH_RENDEZVOUS (no queue: chan.c) */
	size_t elem_size;
	size_t slot_size; /* ring and list: stride of a slot */
	size_t cap;	  /* as created */
	uint64_t one_lap; /* ring: power of two > cap; position = lap + index */
	unsigned char *slots;
	_Atomic uint32_t busy; /* operations whose wake-up is not over (see above) */
	_Atomic(struct mr__seg *) spare; /* list: one recycled segment */

	/* Senders' word. */
	mr__cacheline_aligned _Atomic uint64_t tail;
	_Atomic(struct mr__seg *) tail_seg;

	/* Receivers' word. */
	mr__cacheline_aligned _Atomic uint64_t head;
	_Atomic(struct mr__seg *) head_seg;
};

/* A send or receive completed and the other side's sleep flag was set. */
#define MR__Q_WAKE 1

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

/*
 * try_send / try_recv: 0, MR__Q_WAKE (completed; wake the other side, then
 * drop busy), -EAGAIN (full / empty) or -EPIPE (closed; for recv: closed
 * and empty). -ENOMEM: a list could not get a new segment.
 */
int mr__ring_init(struct mr__queue *q);
void mr__ring_fini(struct mr__queue *q);
int mr__ring_try_send(struct mr__queue *q, const void *elem);
int mr__ring_try_recv(struct mr__queue *q, void *elem);
size_t mr__ring_len(const struct mr__queue *q);
/*
 * Would a send (recv) probably complete now? Reads only the position word of
 * its own side and one slot's stamp, never the other side's word: for the
 * spin before sleeping, where polling the other side's line would slow the
 * very peer we wait for. A hint: true does not promise success, and false
 * is not the definitive full (empty) check, which only try_* makes.
 */
bool mr__ring_send_ready(const struct mr__queue *q);
bool mr__ring_recv_ready(const struct mr__queue *q);

int mr__list_init(struct mr__queue *q);
void mr__list_fini(struct mr__queue *q);
int mr__list_try_send(struct mr__queue *q, const void *elem);
int mr__list_try_recv(struct mr__queue *q, void *elem);
size_t mr__list_len(const struct mr__queue *q);

#endif /* MR_CHAN_QUEUE_H */
