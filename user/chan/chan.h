/*
 * chan.h - the private side of channels: the channel object, and the
 * waiting machinery that chan.c builds, for send, receive and select, on
 * the lock-free queues of queue.h (ring.c: the bounded ring, list.c: the
 * unbounded segment list) and on the rendezvous word.
 *
 * Layering. The queues know nothing about fibers or threads: each exposes
 * a non-blocking send and receive that either complete or say -EAGAIN, and
 * two "someone sleeps" flags that live inside their position words. The
 * waiting side (chan.c) queues sleepers, sets a flag and re-checks; a queue
 * operation that finds the other side's flag set in the word it just
 * updated reports it (MR__Q_WAKE) and chan.c wakes one sleeper. The queues
 * import nothing from here, so the shared-memory transport can reuse them.
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
#include "queue.h"
#include "shm.h"

/* ---- sleepers and their queue entries --------------------------------------- */

/* SLEEPING: a thread that stopped spinning and waits in the futex; only
 * then does its waker make the futex_wake call. */
/* CANCELLED: mr_fiber_cancel() claimed a parked fiber (chan.c). */
enum { SL_WAITING = 0, SL_CLAIMED = 1, SL_WOKEN = 2, SL_TIMEDOUT = 3, SL_SLEEPING = 4, SL_CANCELLED = 5 };

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
	/* A plain thread asleep for ever, counted in mr__nthreads_blocked
	 * (sched.h): set before its move to SLEEPING; whoever claims it from
	 * SLEEPING uncounts it, before the thread can go on. */
	bool counted;
	/* Not NULL: a job's (or pinned fiber's) worker, blocked, that runs
	 * fibers while it sleeps (mr__worker_help) instead of the futex; its
	 * waker wakes it by mr__helper_wake() and then says so in waker_out. */
	struct mr__worker *helper;
	_Atomic uint32_t waker_out;
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

struct mr_chan {
	/* First: the queue (its first line is what every operation reads). */
	struct mr__queue q;
	/* Written only when someone sleeps or closes. */
	_Atomic uint32_t lock; /* the sleeper queues (and all of a rendezvous) */
	struct mr__cwq rxq, txq;
	/* A channel by address: the shm attachment (CH_SHM, shm.c) or the
	 * inproc name (open.c); NULL for mr_chan_create()'s. */
	void *ext;
};

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

#endif /* MR_CHAN_CHAN_H */
