/*
 * chan.c - channels: the API, rendezvous channels, close and destroy, and
 * the waiting engine shared by blocking sends, receives and mr_select().
 *
 * Every blocking call is a select: a send is a select of one case (except
 * a rendezvous send or receive without a deadline whose channel has nobody
 * else waiting: it waits in the channel's word, see rendezvous below). The
 * engine first tries each case without blocking (in random order, for
 * fairness), spins briefly when the other side is probably running on
 * another CPU, and then sleeps:
 *
 *  1. Lock the channels of all cases in address order (one spinlock per
 *     channel guards its two sleeper queues).
 *  2. For each case: queue an entry for this sleeper; for a ring or list,
 *     set the sleep flag in the other side's position word (chan.h), then
 *     try the case once more. A rendezvous case looks for a partner on the
 *     opposite queue instead. If anything completes, unqueue and return.
 *  3. Sleep: a fiber parks, and its resumer unlocks the channels after the
 *     switch (fiber.h), so no waker can ready it before its registers are
 *     saved; a thread unlocks and waits on the futex `state`.
 *  4. A waker claims the sleeper with a CAS (several channels may try at
 *     once; one wins, the others move on to their next sleeper), and either
 *     completes the operation for it (rendezvous) or tells it to retry the
 *     case that woke it first (ring and list). A deadline is another
 *     claimant (a timer for a fiber, the futex timeout for a thread).
 *  5. Unqueue the other entries and return, or go round again.
 *
 * Lifetime: a sleeper and its entries live on the sleeper's stack, and
 * wakers touch entries only under the channel lock. A queue operation that
 * wakes someone after publishing an element holds `busy` until it has let
 * go of the channel, and mr_chan_destroy() waits for busy == 0, so the
 * receiver of the last element may destroy the channel at once.
 */
#include <sched.h>
#include <stdlib.h>

#include "chan.h"

#define CHAN_MAGIC 0x4348414eu /* "CHAN" */
#define CHAN_DEAD 0x44454144u  /* "DEAD" */

/* Bounded spin before queueing, in tries of the whole select, with 1, 2,
 * 4, then 8 pauses between tries (a pause is ~28 ns here: ~6 us for a
 * thread). A futex wake-up round trip costs far more (~17 us on the VMs we
 * measured); polling a line the other side writes slows it down, so the
 * pauses grow. */
#ifndef SPIN_TRIES_THREAD
#define SPIN_TRIES_THREAD 30
#endif
#ifndef SPIN_TRIES_FIBER
#define SPIN_TRIES_FIBER 20
#endif
#ifndef SPIN_GROW
#define SPIN_GROW 3
#endif
/* A queued thread spins on its own state this long before the futex. */
#ifndef THREAD_SPIN_NS
#define THREAD_SPIN_NS 20000
#endif

static __thread uint64_t chan_rng;

static unsigned rand_below(size_t n)
{
	if (unlikely(!chan_rng))
		chan_rng = (uintptr_t)&chan_rng ^ mr__now_ns() ^ 0x9e3779b97f4a7c15ull;
	return (unsigned)(mr__rand(&chan_rng) % n);
}

static struct mr_chan *check_chan(const mr_chan_t *ch, const char *call)
{
	if (unlikely(ch->q.magic != CHAN_MAGIC))
		mr__die(call, "%p is not a channel (destroyed, or never created)", (void *)ch);
	return (struct mr_chan *)ch;
}

/* ---- locks, queues and wake-ups ---------------------------------------------- */

void mr__chan_lock(struct mr_chan *ch)
{
	mr__spin_lock(&ch->lock);
}

void mr__chan_unlock(struct mr_chan *ch)
{
	/* A rendezvous channel whose queues emptied goes back to pairing in
	 * its tail word (see rendezvous below). Only lock holders change a
	 * word that says RV_SLOW, so a plain store does. relaxed: the queues
	 * are ordered by the lock; the word carries nothing else. */
	if (ch->q.kind == CH_RENDEZVOUS && !ch->rxq.head && !ch->txq.head &&
	    atomic_load_explicit(&ch->q.tail, memory_order_relaxed) == POS_RXW)
		atomic_store_explicit(&ch->q.tail, 0, memory_order_relaxed);
	mr__spin_unlock(&ch->lock);
}

static void q_append(struct mr__cwq *q, struct mr__centry *e)
{
	e->next = NULL;
	e->prev = q->tail;
	if (q->tail)
		q->tail->next = e;
	else
		q->head = e;
	q->tail = e;
	e->queued = true;
}

static void q_unlink(struct mr__cwq *q, struct mr__centry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		q->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		q->tail = e->prev;
	e->next = e->prev = NULL;
	e->queued = false;
}

static bool sleeper_claim(struct mr__sleeper *s)
{
	uint32_t expect = SL_WAITING;

	if (s->solo && s->fiber) {
		/* We hold the lock of its only channel and just unqueued it; a
		 * parked fiber never writes its own state. */
		atomic_store_explicit(&s->state, SL_CLAIMED, memory_order_relaxed);
		s->futex = false;
		return true;
	}
	for (;;) {
		uint32_t was = expect;
		/* acquire: pairs with the release in the sleeper's setup (its
		 * entry and element pointer); relaxed on failure. */
		if (atomic_compare_exchange_strong_explicit(&s->state, &expect, SL_CLAIMED,
							    memory_order_acquire,
							    memory_order_relaxed)) {
			s->futex = was == SL_SLEEPING;
			/* Its count came before its move to SLEEPING (the
			 * acquire above): no longer blocked for ever. */
			if (s->futex && s->counted)
				atomic_fetch_sub_explicit(&mr__nthreads_blocked, 1,
							  memory_order_seq_cst);
			return true;
		}
		/* A thread that went to the futex meanwhile: claim it there.
		 * Anything else: claimed elsewhere, or timed out. */
		if (expect != SL_SLEEPING)
			return false;
	}
}

/* With the lock held: unqueue entries from the front of q until one whose
 * sleeper we claim (skipping the caller's own), and return it, or NULL. */
static struct mr__centry *claim_first(struct mr__cwq *q, const struct mr__sleeper *self)
{
	struct mr__centry *e = q->head, *next;

	for (; e; e = next) {
		next = e->next;
		if (e->s == self)
			continue;
		q_unlink(q, e);
		if (sleeper_claim(e->s))
			return e;
		/* Already claimed through another channel, or timed out:
		 * its owner no longer waits here. */
	}
	return NULL;
}

struct mr__sleeper *mr__chan_claim_one(struct mr_chan *ch, struct mr__cwq *q,
				       _Atomic uint64_t *word, uint64_t bit,
				       const struct mr__sleeper *self)
{
	struct mr__centry *e = claim_first(q, self);
	struct mr__sleeper *s = NULL;

	(void)ch;
	if (e) {
		s = e->s;
		s->which = e->idx;
		s->result = SL_RETRY;
	}
	/* Nobody left: stop making operations take this path. Only lock
	 * holders set or clear the flag. */
	if (!q->head)
		atomic_fetch_and_explicit(word, ~bit, memory_order_relaxed);
	return s;
}

/*
 * Wake a thread sleeper that went to sleep (SLEEPING) and has just been
 * told WOKEN; helper is s->helper, read before. With a helper, the sleeper
 * waits until we say we are out (waker_out): we touch its worker, whose
 * runtime could otherwise go away with the job that waited.
 */
static void wake_thread(struct mr__sleeper *s, struct mr__worker *helper)
{
	if (!helper) {
		mr__futex_wake(&s->state, 1);
		return;
	}
	mr__helper_wake(helper);
	/* release: pairs with the acquire in thread_wait(); s may go after. */
	atomic_store_explicit(&s->waker_out, 1, memory_order_release);
}

void mr__sleeper_wake(struct mr__sleeper *s)
{
	struct mr_fiber *f = s->fiber;
	bool futex = s->futex;
	struct mr__worker *helper = s->helper;

	MR_PROBE1(chan_wake, s);
	/* release: pairs with the acquire load of state by the sleeper, which
	 * then reads which/result and the element. A thread may return and
	 * reuse its stack right after: only the address is used below. */
	atomic_store_explicit(&s->state, SL_WOKEN, memory_order_release);
	if (f)
		mr__fiber_ready(f);
	else if (futex)
		wake_thread(s, helper);
}

/* ---- rendezvous ----------------------------------------------------------------
 *
 * A rendezvous channel's tail word says who waits. Mostly one side waits
 * at a time, and then alone: the word holds that waiter's entry (RV_SEND
 * telling its side), and a partner pairs with it by one CAS of the word
 * back to 0, with no lock at all. A waiter that finds the word 0 puts
 * itself there with a CAS (a fiber does that in its park's commit, so that
 * no partner can ready it before its registers are saved).
 *
 * Everything else (a second waiter, a select, a deadline) sets RV_SLOW
 * under the lock: a waiter found in the word moves into the sleeper queue
 * of its side, and from then on every operation takes the lock and uses the
 * queues (rv_locked). The last unlock that leaves both queues empty stores
 * 0 again. Only lock holders change a word that has RV_SLOW or CLOSED set;
 * the lock-free paths change it only from 0 or from a waiter's entry, so a
 * waiter is always in exactly one place: the word or a queue.
 */
#define RV_SLOW ((uint64_t)2) /* the queues decide (POS_RXW's bit) */
#define RV_SEND ((uint64_t)4) /* the waiter in the word sends */
#define RV_PTR (~(uint64_t)7) /* its struct mr__centry */

static int block(struct mr_select_case *cases, size_t n, int64_t deadline, int *res,
		 const char *call);
static uint32_t thread_wait(struct mr__sleeper *sl, int64_t deadline);

/* We took e out of the word (or own it under the lock): finish its
 * operation with `result` and wake it. */
/* rv_complete() of a thread's sleeper s: out of line, so that the fiber
 * path stays small enough for rv_fast() to be inlined into the calls. */
static __attribute__((noinline)) void rv_complete_thread(struct mr__sleeper *s)
{
	struct mr__worker *helper = s->helper;
	/* A plain thread asleep for ever: uncount it (the deadlock check,
	 * sched.h) before it can go on. CLAIMED holds it meanwhile;
	 * acquire: its count and its reset of waker_out came before its move
	 * to SLEEPING. */
	uint32_t was = atomic_exchange_explicit(&s->state, SL_CLAIMED, memory_order_acq_rel);
	if (was == SL_SLEEPING && s->counted)
		atomic_fetch_sub_explicit(&mr__nthreads_blocked, 1, memory_order_seq_cst);
	/* release: pairs with the acquire load in thread_wait(); the thread
	 * may return at once, so only the futex address is used after (or
	 * the helper, which waits for us then). */
	atomic_store_explicit(&s->state, SL_WOKEN, memory_order_release);
	if (was == SL_SLEEPING)
		wake_thread(s, helper);
}

static inline void rv_complete(struct mr__centry *e, int result)
{
	struct mr__sleeper *s = e->s;
	struct mr_fiber *f = s->fiber;

	s->which = e->idx;
	s->result = result;
	if (f) {
		/* release: pairs with the acquire load of state after the park.
		 * A parked fiber never writes its own state. */
		atomic_store_explicit(&s->state, SL_WOKEN, memory_order_release);
		mr__fiber_ready(f);
		return;
	}
	rv_complete_thread(s);
}

/*
 * Without the lock: pair with the waiter of the other side in the word.
 * 0 or -EPIPE: done; -EAGAIN: nobody to pair with there, *seen says what
 * the word held (0, a waiter of our own side, or RV_SLOW).
 */
static inline int rv_fast(struct mr_chan *ch, int op, void *elem, uint64_t *seen)
{
	size_t size = ch->q.elem_size; /* read before the claim: see destroy */
	uint64_t other = op == MR_SELECT_SEND ? 0 : RV_SEND;
	/* acquire: pairs with the release CAS that put a waiter in the word
	 * (rv_publish(), or a fiber's park commit: mr__fiber_park_in()): its
	 * entry, and a sender's element. */
	uint64_t w = atomic_load_explicit(&ch->q.tail, memory_order_acquire);

	for (;;) {
		if (w & POS_CLOSED)
			return -EPIPE;
		if (!(w & RV_PTR) || (w & RV_SEND) != other) {
			*seen = w;
			return -EAGAIN;
		}
		/* acquire: as above, for the value the CAS returns. */
		if (atomic_compare_exchange_weak_explicit(&ch->q.tail, &w, 0, memory_order_acquire,
							  memory_order_acquire))
			break;
	}
	struct mr__centry *e = (struct mr__centry *)(uintptr_t)(w & RV_PTR);
	if (op == MR_SELECT_SEND)
		elem_copy(e->elem, elem, size);
	else
		elem_copy(elem, e->elem, size);
	rv_complete(e, 0);
	return 0;
}

/* A thread puts its entry (with its side's bit) in an empty word (a fiber
 * has its park commit do the same). release: pairs with the acquire CAS of
 * rv_fast() or rv_to_queues(), or the exchange of mr_chan_close(). */
static bool rv_publish(struct mr_chan *ch, uint64_t me)
{
	uint64_t zero = 0;

	return atomic_compare_exchange_strong_explicit(&ch->q.tail, &zero, me, memory_order_release,
						       memory_order_relaxed);
}

/* With ch locked: make the queues decide, moving a waiter from the word
 * into its queue. */
static void rv_to_queues(struct mr_chan *ch)
{
	uint64_t w = atomic_load_explicit(&ch->q.tail, memory_order_relaxed);

	for (;;) {
		if (w & (RV_SLOW | POS_CLOSED))
			return;
		/* acquire: the waiter's entry (rv_publish() or
		 * mr__fiber_park_in()). */
		if (atomic_compare_exchange_weak_explicit(&ch->q.tail, &w, RV_SLOW,
							  memory_order_acquire,
							  memory_order_relaxed))
			break;
	}
	if (w & RV_PTR) {
		struct mr__centry *e = (struct mr__centry *)(uintptr_t)(w & RV_PTR);
		q_append(w & RV_SEND ? &ch->txq : &ch->rxq, e);
	}
}

/* With ch locked and RV_SLOW or CLOSED set: pair with a queued sleeper. */
static int rv_locked(struct mr_chan *ch, int op, void *elem, const struct mr__sleeper *self,
		     struct mr__centry **wake)
{
	struct mr__centry *e;

	if (atomic_load_explicit(&ch->q.tail, memory_order_relaxed) & POS_CLOSED)
		return -EPIPE;
	if (!(e = claim_first(op == MR_SELECT_SEND ? &ch->rxq : &ch->txq, self)))
		return -EAGAIN;
	if (op == MR_SELECT_SEND)
		elem_copy(e->elem, elem, ch->q.elem_size);
	else
		elem_copy(elem, e->elem, ch->q.elem_size);
	e->s->which = e->idx;
	e->s->result = 0;
	*wake = e;
	return 0;
}

static int rv_try(struct mr_chan *ch, int op, void *elem, bool held,
		  const struct mr__sleeper *self)
{
	struct mr__centry *e = NULL;
	uint64_t seen;
	int ret;

	if (held) {
		/* block() moved the word's waiter into the queues already. */
		ret = rv_locked(ch, op, elem, self, &e);
		if (ret == 0)
			mr__sleeper_wake(e->s);
		return ret;
	}
	for (;;) {
		ret = rv_fast(ch, op, elem, &seen);
		if (ret != -EAGAIN || !(seen & RV_SLOW))
			return ret;
		mr__chan_lock(ch);
		if (!(atomic_load_explicit(&ch->q.tail, memory_order_relaxed) &
		      (RV_SLOW | POS_CLOSED))) {
			/* Back to the word meanwhile. */
			mr__chan_unlock(ch);
			continue;
		}
		ret = rv_locked(ch, op, elem, self, &e);
		mr__chan_unlock(ch);
		if (ret == 0)
			mr__sleeper_wake(e->s);
		return ret;
	}
}

/* mr_fiber_cancel() of a fiber waiting in a rendezvous word. */
struct rv_cancel {
	struct mr__cancel_hook h;
	struct mr_chan *ch;
	struct mr__centry *e;
	uint64_t me; /* the word's value while the fiber waits there */
};

/*
 * Take the waiter out of the word (a CAS, as a partner would), or out of
 * the queue rv_to_queues() moved it to (under the lock, as a claimer of a
 * solo sleeper would); if a partner or a close got there first, it
 * completes the operation. Before the fiber is in the word (its park's
 * commit puts it there after the switch) this finds nothing, and the
 * commit sees the request instead (commit_park() in fiber.c): it never
 * readies a fiber that has not switched out.
 */
static void rv_cancel_fn(struct mr__cancel_hook *h)
{
	struct rv_cancel *rc = (struct rv_cancel *)h;
	struct mr_chan *ch = rc->ch;
	struct mr__sleeper *s = rc->e->s;
	uint64_t w = rc->me;
	bool won = false;

	/* Claimed already (taken from the word, or unqueued): the claimer
	 * may have let ch be destroyed; touch nothing (fiber.h). seq_cst:
	 * after our count in mr__cancel_hook_run(), against the claim's
	 * store of the state and the destroy's mr__cancel_hooks_quiesce(). */
	if (atomic_load_explicit(&s->state, memory_order_seq_cst) != SL_WAITING)
		return;
	mr__chan_lock(ch);
	if (atomic_compare_exchange_strong_explicit(&ch->q.tail, &w, 0, memory_order_acquire,
						    memory_order_relaxed)) {
		won = true;
	} else if (rc->e->queued) {
		q_unlink(rc->me & RV_SEND ? &ch->txq : &ch->rxq, rc->e);
		won = true;
	}
	if (won)
		atomic_store_explicit(&s->state, SL_CANCELLED, memory_order_relaxed);
	mr__chan_unlock(ch);
	if (won)
		mr__fiber_ready(s->fiber);
}

/*
 * rv_wait() found nobody to pair with (the word held `seen`): wait in the
 * word when it is empty, or else block() (the queues). Out of line, so that
 * a call that pairs at once does not pay for this frame.
 */
static __attribute__((noinline)) int rv_sleep(struct mr_chan *ch, int op, void *elem,
					      uint64_t seen, const char *call)
{
	struct mr__sleeper sl;
	struct mr__centry e;
	/* Our entry and side, as the word holds them. */
	uint64_t me = (uintptr_t)&e | (op == MR_SELECT_SEND ? RV_SEND : 0);
	int r;
	/* Thread-locals read once, as in block(). */
	struct mr_fiber *cur = mr__tls_fiber;
	struct mr__worker *w = mr__self();

	/* which and result stay unset: every waker sets them before it
	 * stores WOKEN, and nothing reads them before. */
	sl.fiber = cur && likely(w) && !mr__pinned(w) ? cur : NULL;
	sl.helper = sl.fiber ? NULL : w;
	sl.solo = true;
	sl.futex = false;
	sl.counted = false;
	e.s = &sl;
	e.elem = elem;
	e.idx = 0;
	e.queued = false;
	for (;;) {
		if (seen != 0) {
			/* Someone of our side waits already, or the queues
			 * decide: queue behind them. */
			struct mr_select_case c = { (mr_chan_t *)ch, op, elem, 0 };
			int i = block(&c, 1, MR_SELECT_FOREVER, &r, call);
			return i < 0 ? i : r; /* -ECANCELED */
		}
		atomic_store_explicit(&sl.state, SL_WAITING, memory_order_relaxed);
		if (sl.fiber) {
			struct rv_cancel rc = { { rv_cancel_fn }, ch, &e, me };
			if (mr__cancel_arm(sl.fiber, &rc.h)) {
				mr__cancel_disarm(sl.fiber);
				return mr__cancel_take(sl.fiber);
			}
			mr__wait_note_to(cur, NULL, MR__WAIT_CHAN, ch, -1);
			/* Its commit puts `me` in the word like rv_publish(). */
			MR__STAT_ADD(w->st, chan_blocks, 1);
			MR_PROBE3(chan_block, ch, op, call);
			mr__fiber_park_in(sl.fiber, &ch->q.tail, me, call);
			mr__cancel_disarm(sl.fiber);
			/* acquire: pairs with the release in rv_complete() or
			 * mr__sleeper_wake(). WAITING: the commit found the word
			 * taken, or took us back for a cancel; look again. */
			uint32_t st = atomic_load_explicit(&sl.state, memory_order_acquire);
			if (st == SL_WOKEN)
				break;
			if (st == SL_CANCELLED || mr__cancel_pending(sl.fiber))
				return mr__cancel_take(sl.fiber);
			/* It may go on on another worker. */
			w = mr__self_fresh();
		} else if (mr__wait_note_to(cur, w, MR__WAIT_CHAN, ch, -1), rv_publish(ch, me)) {
			if (w)
				MR__STAT_ADD(w->st, chan_blocks, 1);
			MR_PROBE3(chan_block, ch, op, call);
			thread_wait(&sl, -1);
			break;
		}
		if ((r = rv_fast(ch, op, elem, &seen)) != -EAGAIN)
			return r;
	}
	/* Woken from the word, or from the queue it was moved to: either
	 * way the operation is done (rendezvous never retries). */
	return sl.result;
}

/*
 * A blocking send or receive with no deadline: pair with a waiter in the
 * word, or else wait (rv_sleep()).
 */
static inline int rv_wait(struct mr_chan *ch, int op, void *elem, const char *call,
			  uint64_t held)
{
	uint64_t seen;
	int r = rv_fast(ch, op, elem, &seen);

	if (r != -EAGAIN) {
		mr__fiber_going_on(held);
		return r;
	}
	return rv_sleep(ch, op, elem, seen, call);
}

/* ---- waking the other side after a queue operation ------------------------- */

/*
 * A ring or list operation completed in a word where the other side's
 * sleep flag was set (MR__Q_WAKE): wake one sleeper of the other side, then
 * drop the busy count the queue raised, which kept the channel alive until
 * now: whoever takes the element may destroy the channel at once, and
 * mr_chan_destroy() waits for busy to drop to 0. `held`: the caller's
 * select holds ch's lock; `self`: its sleeper, not to be woken.
 */
static __attribute__((noinline)) void wake_other(struct mr_chan *ch, bool send, bool held,
						 const struct mr__sleeper *self)
{
	struct mr__sleeper *s;

	if (!held)
		mr__chan_lock(ch);
	if (send)
		s = mr__chan_claim_one(ch, &ch->rxq, &ch->q.tail, POS_RXW, self);
	else
		s = mr__chan_claim_one(ch, &ch->txq, &ch->q.head, POS_TXW, self);
	if (!held)
		mr__chan_unlock(ch);
	/* release: pairs with the acquire load of busy in mr_chan_destroy(). */
	atomic_fetch_sub_explicit(&ch->q.busy, 1, memory_order_release);
	if (s)
		mr__sleeper_wake(s);
}

void mr__chan_wake_other(struct mr_chan *ch, bool send)
{
	wake_other(ch, send, false, NULL);
}

/* The result of a queue operation for the caller: MR__Q_WAKE wakes first. */
static inline int queue_done(struct mr_chan *ch, int r, bool send, bool held,
			     const struct mr__sleeper *self)
{
	if (unlikely(r == MR__Q_WAKE)) {
		wake_other(ch, send, held, self);
		return 0;
	}
	return r;
}

/* ---- one case ---------------------------------------------------------------- */

static int case_try(struct mr_select_case *c, bool held, const struct mr__sleeper *self)
{
	struct mr_chan *ch = (struct mr_chan *)c->chan;
	bool send = mr__op_sends(c->op);
	int r;

	switch (ch->q.kind) {
	case CH_SHM:
		r = mr__shm_try(ch, c->op, c->elem);
		break;
	case CH_RING:
		r = send ? mr__ring_try_send(&ch->q, c->elem) : mr__ring_try_recv(&ch->q, c->elem);
		break;
	case CH_LIST:
		r = send ? mr__list_try_send(&ch->q, c->elem) : mr__list_try_recv(&ch->q, c->elem);
		break;
	default:
		return rv_try(ch, c->op, c->elem, held, self);
	}
	return queue_done(ch, r, send, held, self);
}

static inline bool case_live(const struct mr_select_case *c)
{
	return c->chan && c->op != MR_SELECT_SKIP;
}

/* Try every live case once, in a random order (drawn as we go, like Go's
 * shuffled poll order: every ready case has the same odds, wherever the
 * skipped or unready ones are). */
static int poll_cases(struct mr_select_case *cases, size_t n, int *res)
{
	unsigned char live[MR_SELECT_MAX];
	size_t nlive = 0;

	for (size_t i = 0; i < n; i++)
		if (case_live(&cases[i]))
			live[nlive++] = (unsigned char)i;
	while (nlive > 0) {
		size_t pick = nlive > 1 ? rand_below(nlive) : 0;
		size_t i = live[pick];
		live[pick] = live[--nlive];
		int r = case_try(&cases[i], false, NULL);
		if (r != -EAGAIN) {
			*res = r;
			return (int)i;
		}
	}
	return -1;
}

/* ---- sleeping ---------------------------------------------------------------- */

struct sel {
	struct mr__sleeper sl;
	struct mr_chan *locks[MR_SELECT_MAX]; /* distinct channels, by address */
	size_t nlocks;
	int64_t deadline;
	struct mr__cancel_hook cancel;
	/* For the cancel hook: the select's cases and their entries. */
	struct mr_select_case *cases;
	struct mr__centry *ent;
	size_t n;
};

static void lock_all(struct sel *S)
{
	for (size_t i = 0; i < S->nlocks; i++)
		mr__chan_lock(S->locks[i]);
}

static void unlock_all(struct sel *S)
{
	for (size_t i = 0; i < S->nlocks; i++)
		mr__chan_unlock(S->locks[i]);
}

static void unqueue_all(struct mr_select_case *cases, size_t n, struct mr__centry *ent)
{
	for (size_t i = 0; i < n; i++) {
		if (!case_live(&cases[i]) || !ent[i].queued)
			continue;
		struct mr_chan *ch = (struct mr_chan *)cases[i].chan;
		q_unlink(mr__op_sends(cases[i].op) ? &ch->txq : &ch->rxq, &ent[i]);
	}
}

/* A fiber's deadline passed (no lock held: see sched/timer.c). */
static void sel_timeout(struct mr__timer *t)
{
	struct mr__sleeper *s =
		(struct mr__sleeper *)((char *)t - offsetof(struct mr__sleeper, timer));
	struct mr_fiber *f = s->fiber;
	uint32_t expect = SL_WAITING;

	if (atomic_compare_exchange_strong_explicit(&s->state, &expect, SL_TIMEDOUT,
						    memory_order_acq_rel, memory_order_relaxed))
		mr__fiber_ready(f);
}

/*
 * mr_fiber_cancel() of a parked fiber (its cancel_lock held). Under the
 * channels' locks, as every claimant of a sleeper with one case and no
 * deadline (`solo`) claims it: the CAS then orders us against them all.
 * The hook is armed with the locks held and the park's commit releases
 * them, so this cannot ready the fiber before it has switched out.
 */
static void sel_cancel(struct mr__cancel_hook *h)
{
	struct sel *S = (struct sel *)((char *)h - offsetof(struct sel, cancel));
	uint32_t expect = SL_WAITING;

	/* Claimed already: its channels may be gone (rv_cancel_fn()). */
	if (atomic_load_explicit(&S->sl.state, memory_order_seq_cst) != SL_WAITING)
		return;
	lock_all(S);
	bool won = atomic_compare_exchange_strong_explicit(&S->sl.state, &expect, SL_CANCELLED,
							   memory_order_relaxed,
							   memory_order_relaxed);
	/* Out of every queue at once: a claimer of a solo sleeper that found
	 * its entry there would take it without a CAS. */
	if (won)
		unqueue_all(S->cases, S->n, S->ent);
	unlock_all(S);
	if (won)
		mr__fiber_ready(S->sl.fiber);
}

/*
 * Runs in the parked fiber's resumer, after the switch. Once the first lock
 * is released a waker may ready the fiber, which may run and return on
 * another worker: copy what we need out of its frame first.
 */
static bool sel_commit(void *arg)
{
	struct sel *S = arg;
	struct mr_chan *locks[MR_SELECT_MAX];
	size_t n = S->nlocks;

	for (size_t i = 0; i < n; i++)
		locks[i] = S->locks[i];
	if (S->deadline >= 0)
		mr__timer_add(mr__self(), &S->sl.timer);
	for (size_t i = 0; i < n; i++)
		mr__chan_unlock(locks[i]);
	return true;
}

/*
 * A thread (or a job, or a pinned fiber) whose sleeper is queued (and the
 * locks let go): spin on our own state for a while (the other side is often
 * running: a wake-up through the futex costs both sides a system call),
 * then sleep in the futex. Returns the final state: WOKEN or TIMEDOUT.
 */
static bool not_sleeping(void *arg)
{
	struct mr__sleeper *sl = arg;
	/* acquire: as the loads in thread_wait(). */
	return atomic_load_explicit(&sl->state, memory_order_acquire) != SL_SLEEPING;
}

static uint32_t thread_wait(struct mr__sleeper *sl, int64_t deadline)
{
	struct mr__worker *w = mr__self();
	int64_t spin_until = -1;
	unsigned k = 0, n = 0;
	uint32_t st;
	bool slept = false; /* we moved to SLEEPING: a waker wakes us */

	atomic_store_explicit(&sl->waker_out, 0, memory_order_relaxed);
	if (w)
		mr__worker_block(w);
	for (;;) {
		/* acquire: pairs with the release store in mr__sleeper_wake() or
		 * the release exchange in rv_complete(). */
		st = atomic_load_explicit(&sl->state, memory_order_acquire);
		if (st == SL_WOKEN || st == SL_TIMEDOUT)
			break;
		if (st == SL_CLAIMED) {
			/* The claimer stores WOKEN next, without a futex wake. */
			mr__backoff(&k);
			continue;
		}
		if ((++n & 31) == 0 || spin_until < 0) {
			int64_t now = mr_now_ns();
			if (spin_until < 0)
				spin_until = now + THREAD_SPIN_NS;
			if (deadline >= 0 && now >= deadline) {
				if (atomic_compare_exchange_strong_explicit(
					    &sl->state, &st, SL_TIMEDOUT, memory_order_acquire,
					    memory_order_relaxed)) {
					st = SL_TIMEDOUT;
					break;
				}
				continue;
			}
			if (now >= spin_until && st == SL_WAITING) {
				/* A plain thread about to sleep for ever: count
				 * it for the deadlock check (sched.h); whoever
				 * claims it from SLEEPING uncounts it. */
				sl->counted = !w && deadline < 0;
				if (sl->counted)
					atomic_fetch_add_explicit(&mr__nthreads_blocked, 1,
								  memory_order_seq_cst);
				/* release: our reset of waker_out, and the
				 * count, come before a waker's look (its claim
				 * CAS or exchange reads SLEEPING with acquire). */
				if (atomic_compare_exchange_strong_explicit(
					    &sl->state, &st, SL_SLEEPING, memory_order_release,
					    memory_order_relaxed)) {
					slept = true;
					/* The workers may all be asleep already:
					 * nobody else would look now. */
					if (sl->counted)
						mr__stuck_poke_all();
				} else if (sl->counted) {
					atomic_fetch_sub_explicit(&mr__nthreads_blocked, 1,
								  memory_order_seq_cst);
					sl->counted = false;
				}
				continue;
			}
		}
		if (st == SL_SLEEPING) {
			if (sl->helper)
				mr__worker_help(w, not_sleeping, sl, deadline);
			else
				mr__futex_wait_until(&sl->state, SL_SLEEPING, deadline);
		} else {
			mr__cpu_relax();
		}
	}
	if (w) {
		/* Woken after we went to SLEEPING: the waker calls
		 * wake_thread(), which touches our worker. */
		if (st == SL_WOKEN && slept && sl->helper) {
			unsigned spins = 0;
			/* acquire: pairs with the release in wake_thread(). */
			while (!atomic_load_explicit(&sl->waker_out, memory_order_acquire))
				mr__backoff(&spins);
		}
		mr__worker_unblock(w);
	}
	return st;
}

/* Should a fiber spin before parking? Only if its worker has nothing else
 * to run (the other side then runs elsewhere, or nowhere). */
static bool fiber_may_spin(void)
{
	struct mr__worker *w = mr__self();

	return w->rt->nworkers > 1 && mr__deque_private_len(&w->dq) == 0 &&
	       !mr__deque_stealable(&w->dq) && !w->yield_head;
}

static bool ring_ready(const struct mr_select_case *c)
{
	const struct mr_chan *ch = (const struct mr_chan *)c->chan;

	return c->op == MR_SELECT_SEND ? mr__ring_send_ready(&ch->q) : mr__ring_recv_ready(&ch->q);
}

/* For dumps (fiber.h): one case is a channel operation, several a select;
 * a channel of another process makes the wait external (MR__WAIT_SHM).
 * f and w as for mr__wait_note_to(). */
static void note_wait(struct mr_fiber *f, struct mr__worker *w, const struct mr_select_case *cases,
		      size_t n, int64_t deadline)
{
	const struct mr_chan *obj = NULL;
	unsigned kind;

	if (n == 1 && cases[0].chan) {
		obj = (const struct mr_chan *)cases[0].chan;
		kind = obj->q.kind == CH_SHM ? MR__WAIT_SHM : MR__WAIT_CHAN;
	} else {
		kind = MR__WAIT_SELECT;
		for (size_t k = 0; k < n; k++) {
			const struct mr_chan *ch = (const struct mr_chan *)cases[k].chan;
			if (!ch)
				continue;
			if (!obj)
				obj = ch;
			if (ch->q.kind == CH_SHM)
				kind = MR__WAIT_SHM;
		}
	}
	mr__wait_note_to(f, w, kind, obj, deadline);
}

static int block(struct mr_select_case *cases, size_t n, int64_t deadline, int *res,
		 const char *call)
{
	struct mr__centry ent[n];
	struct sel S;
	/* Thread-locals read once, here: a fiber that parks below may resume
	 * on another thread. me is used after a park only if self is NULL
	 * (this thread blocks: it stays this thread). */
	struct mr_fiber *cur = mr__tls_fiber;
	struct mr__worker *me = mr__self();
	struct mr_fiber *self = cur && likely(me) && !mr__pinned(me) ? cur : NULL;
	int i;

	/* Spin: retry while the other side is probably running. */
	unsigned spins = self ? (fiber_may_spin() ? SPIN_TRIES_FIBER : 0) : SPIN_TRIES_THREAD;
	/* A lone rendezvous case cannot complete until its partner queues:
	 * if both sides polled, neither would. Queue at once (a thread then
	 * spins on its own state, thread_wait()). */
	if (n == 1 && ((struct mr_chan *)cases[0].chan)->q.kind == CH_RENDEZVOUS)
		spins = 0;
	/* One ring case: watch the one slot we wait for (a line the other side
	 * writes once), not its position word, which every one of its
	 * operations updates; try for real when the slot looks ready and once
	 * at the end. */
	bool ring1 = n == 1 && case_live(&cases[0]) &&
		     ((struct mr_chan *)cases[0].chan)->q.kind == CH_RING;
	for (unsigned k = 0; k < spins; k++) {
		for (unsigned p = 1u << (k < SPIN_GROW ? k : SPIN_GROW); p; p--)
			mr__cpu_relax();
		if (ring1 && k + 1 < spins && !ring_ready(&cases[0]))
			continue;
		if ((i = poll_cases(cases, n, res)) >= 0)
			return i;
	}

	if (me)
		MR__STAT_ADD(me->st, chan_blocks, 1);
	MR_PROBE3(chan_block, n == 1 ? cases[0].chan : NULL, n == 1 ? cases[0].op : 0, call);
	/* The distinct channels, sorted by address: the lock order. */
	S.nlocks = 0;
	for (size_t j = 0; j < n; j++) {
		if (!case_live(&cases[j]))
			continue;
		struct mr_chan *ch = (struct mr_chan *)cases[j].chan;
		size_t at = S.nlocks;
		bool dup = false;
		while (at > 0 && S.locks[at - 1] >= ch) {
			if (S.locks[at - 1] == ch) {
				dup = true;
				break;
			}
			at--;
		}
		if (dup)
			continue;
		for (size_t m = S.nlocks; m > at; m--)
			S.locks[m] = S.locks[m - 1];
		S.locks[at] = ch;
		S.nlocks++;
	}
	S.deadline = deadline;
	S.sl.fiber = self;
	S.sl.helper = self ? NULL : me;
	S.sl.solo = n == 1 && deadline < 0;
	S.sl.counted = false;
	S.sl.timer.fire = sel_timeout;
	S.sl.timer.call = call;
	S.sl.timer.deadline = deadline;
	S.cancel.fn = sel_cancel;
	S.cases = cases;
	S.ent = ent;
	S.n = n;
	for (size_t j = 0; j < n; j++)
		ent[j].queued = false;

	for (;;) {
		lock_all(&S);
		atomic_store_explicit(&S.sl.state, SL_WAITING, memory_order_relaxed);
		S.sl.which = -1;
		S.sl.result = SL_RETRY;

		/* Queue on every case, re-checking each after its flag is set. */
		size_t start = n > 1 ? rand_below(n) : 0;
		int got = -1, r = 0;
		for (size_t k = 0; k < n && got < 0; k++) {
			size_t j = start + k < n ? start + k : start + k - n;
			struct mr_select_case *c = &cases[j];
			if (!case_live(c))
				continue;
			struct mr_chan *ch = (struct mr_chan *)c->chan;
			bool send = mr__op_sends(c->op);
			ent[j].s = &S.sl;
			ent[j].elem = c->elem;
			ent[j].idx = (int)j;
			if (ch->q.kind == CH_RENDEZVOUS)
				rv_to_queues(ch);
			q_append(send ? &ch->txq : &ch->rxq, &ent[j]);
			if (ch->q.kind != CH_RENDEZVOUS) {
				/* seq_cst: the flag before the re-check; see chan.h. */
				if (send)
					atomic_fetch_or_explicit(&ch->q.head, POS_TXW,
								 memory_order_seq_cst);
				else
					atomic_fetch_or_explicit(&ch->q.tail, POS_RXW,
								 memory_order_seq_cst);
				/* and the other processes' wake-ups reach us */
				if (ch->q.kind == CH_SHM)
					mr__shm_want(ch, c->op);
			}
			r = case_try(c, true, &S.sl);
			if (r != -EAGAIN)
				got = (int)j;
		}
		if (got >= 0) {
			unqueue_all(cases, n, ent);
			unlock_all(&S);
			*res = r;
			return got;
		}
		/* Checked only now: a past deadline still completes (or sees
		 * the close of) a case that is ready. */
		if (deadline >= 0 && mr_now_ns() >= deadline) {
			unqueue_all(cases, n, ent);
			unlock_all(&S);
			return -ETIMEDOUT;
		}

		uint32_t st;
		note_wait(cur, self ? NULL : me, cases, n, deadline);
		if (self) {
			if (mr__cancel_arm(self, &S.cancel)) {
				/* Claimed by us, for a canceller that takes the
				 * locks once we let go (until we disarm). */
				atomic_store_explicit(&S.sl.state, SL_CANCELLED,
						      memory_order_relaxed);
				unqueue_all(cases, n, ent);
				unlock_all(&S);
				mr__cancel_disarm(self);
				return mr__cancel_take(self);
			}
			mr__fiber_park(sel_commit, &S, call);
			/* acquire: pairs with the release in mr__sleeper_wake() or
			 * the CAS in sel_timeout() or sel_cancel(). */
			st = atomic_load_explicit(&S.sl.state, memory_order_acquire);
			if (deadline >= 0 && st != SL_TIMEDOUT)
				mr__timer_cancel(&S.sl.timer);
			mr__cancel_disarm(self);
		} else {
			unlock_all(&S);
			st = thread_wait(&S.sl, deadline);
		}

		/* Unqueue what is left: the waker took the entry it woke us
		 * through; a single case that was woken has nothing left. */
		if (n > 1 || st != SL_WOKEN) {
			/* Nor has the channel that woke us, unless another case
			 * of ours is on it: its last receiver may have destroyed
			 * it since (chan.h), so leave its lock alone. */
			const struct mr_chan *skip =
				st == SL_WOKEN ? (struct mr_chan *)cases[S.sl.which].chan : NULL;
			for (size_t k = 0; skip && k < n; k++)
				if ((int)k != S.sl.which && case_live(&cases[k]) &&
				    cases[k].chan == (const mr_chan_t *)skip)
					skip = NULL;
			for (size_t k = 0; k < S.nlocks; k++)
				if (S.locks[k] != skip)
					mr__chan_lock(S.locks[k]);
			unqueue_all(cases, n, ent);
			for (size_t k = 0; k < S.nlocks; k++)
				if (S.locks[k] != skip)
					mr__chan_unlock(S.locks[k]);
		}
		if (st == SL_TIMEDOUT)
			return -ETIMEDOUT;
		if (st == SL_CANCELLED)
			return mr__cancel_take(self);
		i = S.sl.which;
		if (S.sl.result != SL_RETRY) {
			*res = S.sl.result;
			return i;
		}
		/* Retry the case that woke us first: it has (or had) what we
		 * waited for. If it was taken, someone else got it. */
		r = case_try(&cases[i], false, NULL);
		if (r != -EAGAIN) {
			*res = r;
			return i;
		}
		if ((i = poll_cases(cases, n, res)) >= 0)
			return i;
	}
}

/* ---- API --------------------------------------------------------------------- */

mr_chan_t *mr_chan_create(size_t elem_size, size_t capacity, unsigned flags)
{
	struct mr_chan *ch;
	int err;

	if (elem_size == 0 || elem_size > MR_CHAN_ELEM_MAX || flags != 0 ||
	    (capacity > MR_CHAN_CAPACITY_MAX && capacity != MR_CHAN_UNBOUNDED)) {
		errno = EINVAL;
		return NULL;
	}
	ch = aligned_alloc(MR_CACHELINE, sizeof(*ch));
	if (!ch) {
		errno = ENOMEM;
		return NULL;
	}
	memset(ch, 0, sizeof(*ch));
	ch->q.elem_size = elem_size;
	ch->q.cap = capacity;
	if (capacity == MR_CHAN_UNBOUNDED) {
		ch->q.kind = CH_LIST;
		err = mr__list_init(&ch->q);
	} else if (capacity == 0) {
		ch->q.kind = CH_RENDEZVOUS;
		err = 0;
	} else {
		ch->q.kind = CH_RING;
		err = mr__ring_init(&ch->q);
	}
	if (err) {
		free(ch);
		errno = -err;
		return NULL;
	}
	ch->q.magic = CHAN_MAGIC;
	return (mr_chan_t *)ch;
}

/* open.c: a channel on shm://name, or NULL with errno. */
mr_chan_t *mr__chan_open_shm(const char *name, const struct mr_chan_open_opts *o)
{
	struct mr_chan *ch = aligned_alloc(MR_CACHELINE, sizeof(*ch));
	int err;

	if (!ch) {
		errno = ENOMEM;
		return NULL;
	}
	memset(ch, 0, sizeof(*ch));
	ch->q.kind = CH_SHM;
	if ((err = mr__shm_open(ch, name, o))) {
		free(ch);
		errno = -err;
		return NULL;
	}
	ch->q.magic = CHAN_MAGIC;
	return (mr_chan_t *)ch;
}

void mr_chan_destroy(mr_chan_t *handle)
{
	if (!handle)
		return;
	struct mr_chan *ch = check_chan(handle, "mr_chan_destroy");
	unsigned k = 0;

	/* An inproc name's handle: one reference of several? */
	if (ch->ext && ch->q.kind != CH_SHM && !mr__named_put(ch))
		return;

	/* A cancel hook that saw a waiter of ours still waiting may be
	 * about to take our lock (fiber.h). */
	mr__cancel_hooks_quiesce();
	/* First let a queue operation that is still waking someone finish:
	 * it needs the lock to do so. acquire: pairs with the release in
	 * wake_other() (ring.c). Then the lock waits out a close. */
	while (atomic_load_explicit(&ch->q.busy, memory_order_acquire))
		mr__backoff(&k);
	mr__chan_lock(ch);
	uint64_t w = atomic_load_explicit(&ch->q.tail, memory_order_relaxed);
	if (ch->q.kind == CH_RENDEZVOUS && (w & RV_PTR))
		mr__die("mr_chan_destroy", "channel %p has %s waiting on it", (void *)ch,
			(w & RV_SEND) ? "a sender" : "a receiver");
	if (ch->rxq.head || ch->txq.head)
		mr__die("mr_chan_destroy", "channel %p has %s waiting on it", (void *)ch,
			ch->rxq.head ? "a receiver" : "a sender");
	ch->q.magic = CHAN_DEAD;
	if (ch->q.kind == CH_SHM) {
		mr__chan_unlock(ch);
		mr__shm_detach(ch);
	} else if (ch->q.kind == CH_LIST)
		mr__list_fini(&ch->q);
	else if (ch->q.kind == CH_RING)
		mr__ring_fini(&ch->q);
	free(ch);
}

/*
 * What chan_op() does not finish inline: one try (unless the ring already
 * tried: `tried`), then, unless this is a poll, block(). Out of line: its
 * frame would cost every call that completes at once.
 */
static __attribute__((noinline)) int chan_op_slow(mr_chan_t *handle, int op, void *elem,
						  int64_t deadline, const char *call, bool tried,
						  uint64_t held)
{
	struct mr_chan *ch = (struct mr_chan *)handle;
	struct mr_select_case c = { handle, op, elem, 0 };
	uint64_t seen;
	int r;

	if (!tried) {
		/* A rendezvous with a deadline looks in the word only: block()
		 * looks for a partner in the queues, under the lock it needs
		 * anyway to queue. */
		if (ch->q.kind == CH_RENDEZVOUS && deadline != MR_SELECT_POLL)
			r = rv_fast(ch, op, elem, &seen);
		else
			r = case_try(&c, false, NULL);
		if (r != -EAGAIN) {
			mr__fiber_going_on(held);
			return r;
		}
	}
	if (deadline == MR_SELECT_POLL) {
		/* Not blocking either: a caller that polls for the answer of
		 * the fiber it just woke would otherwise never let it run. */
		mr__fiber_going_on(held);
		return -EAGAIN;
	}
	int i = block(&c, 1, deadline, &r, call);
	return i < 0 ? i : r; /* -ETIMEDOUT, -ECANCELED */
}

/* A send or a receive (op), until the deadline (MR_SELECT_POLL: a try,
 * MR_SELECT_FOREVER: none). Inlined into each API function, so op and
 * the deadline's kind are constants there. */
static inline int chan_op(mr_chan_t *handle, int op, void *elem, int64_t deadline,
			  const char *call)
{
	if (!handle || !elem)
		return -EINVAL;
	struct mr_chan *ch = check_chan(handle, call);
	uint64_t held = mr__fiber_held(); /* see fiber.h */

	if (likely(ch->q.kind == CH_RING)) {
		int r = op == MR_SELECT_SEND ? mr__ring_try_send(&ch->q, elem)
					     : mr__ring_try_recv(&ch->q, elem);
		r = queue_done(ch, r, op == MR_SELECT_SEND, false, NULL);
		if (likely(r != -EAGAIN)) {
			mr__fiber_going_on(held);
			return r;
		}
		return chan_op_slow(handle, op, elem, deadline, call, true, held);
	}
	if (ch->q.kind == CH_RENDEZVOUS && deadline == MR_SELECT_FOREVER)
		return rv_wait(ch, op, elem, call, held);
	/* A plain thread waits on a shared channel's futex itself; fibers,
	 * jobs and selects queue here, and shm.c's agent wakes them. */
	if (ch->q.kind == CH_SHM && deadline != MR_SELECT_POLL && !mr__self())
		return mr__shm_wait(ch, op, elem, deadline);
	return chan_op_slow(handle, op, elem, deadline, call, false, held);
}

int mr_chan_send(mr_chan_t *ch, const void *elem)
{
	return chan_op(ch, MR_SELECT_SEND, (void *)elem, MR_SELECT_FOREVER, "mr_chan_send");
}

int mr_chan_recv(mr_chan_t *ch, void *elem)
{
	return chan_op(ch, MR_SELECT_RECV, elem, MR_SELECT_FOREVER, "mr_chan_recv");
}

int mr_chan_try_send(mr_chan_t *ch, const void *elem)
{
	return chan_op(ch, MR_SELECT_SEND, (void *)elem, MR_SELECT_POLL, "mr_chan_try_send");
}

int mr_chan_try_recv(mr_chan_t *ch, void *elem)
{
	return chan_op(ch, MR_SELECT_RECV, elem, MR_SELECT_POLL, "mr_chan_try_recv");
}

/* A deadline of exactly 0 is in the past, like any other: it must still
 * say -ETIMEDOUT, not the select "default" -EAGAIN. Negative: forever. */
static int64_t until(int64_t deadline)
{
	if (deadline < 0)
		return MR_SELECT_FOREVER;
	return deadline == MR_SELECT_POLL ? 1 : deadline;
}

int mr_chan_send_until(mr_chan_t *ch, const void *elem, int64_t deadline_ns)
{
	return chan_op(ch, MR_SELECT_SEND, (void *)elem, until(deadline_ns),
		       "mr_chan_send_until");
}

int mr_chan_recv_until(mr_chan_t *ch, void *elem, int64_t deadline_ns)
{
	return chan_op(ch, MR_SELECT_RECV, elem, until(deadline_ns), "mr_chan_recv_until");
}

int mr_chan_close(mr_chan_t *handle)
{
	if (!handle)
		return -EINVAL;
	struct mr_chan *ch = check_chan(handle, "mr_chan_close");
	struct mr__centry *e;
	bool rv = ch->q.kind == CH_RENDEZVOUS;

	/* Under the lock, so that a receiver that sees CLOSED and destroys
	 * the channel at once waits for us (mr_chan_destroy locks). */
	/* A shared channel closes for every process; our sleepers wake
	 * below like any channel's (they retry and see it). */
	if (ch->q.kind == CH_SHM) {
		int r = mr__shm_close(ch);
		if (r)
			return r;
	}
	mr__chan_lock(ch);
	/* A rendezvous word loses its waiter (failed below) and keeps RV_SLOW
	 * for good. acq_rel: acquire pairs with rv_publish() or
	 * mr__fiber_park_in() (the waiter's entry); release orders the close
	 * before what follows. */
	uint64_t was = rv ? atomic_exchange_explicit(&ch->q.tail, POS_CLOSED | RV_SLOW,
						     memory_order_acq_rel)
			  : atomic_fetch_or_explicit(&ch->q.tail, POS_CLOSED, memory_order_acq_rel);
	if ((was & POS_CLOSED) && ch->q.kind != CH_SHM) {
		if (rv)
			atomic_store_explicit(&ch->q.tail, was, memory_order_relaxed);
		mr__chan_unlock(ch);
		return -EPIPE;
	}
	if (rv && (was & RV_PTR))
		rv_complete((struct mr__centry *)(uintptr_t)(was & RV_PTR), -EPIPE);
	/* Wake everyone: ring and list sleepers retry (a receiver may still
	 * find elements sent before the close); rendezvous ones fail. Woken
	 * under the lock: a sleeper that runs at once spins on it briefly to
	 * unqueue its other cases, and nothing here outlives the unlock. */
	for (int side = 0; side < 2; side++) {
		struct mr__cwq *q = side ? &ch->txq : &ch->rxq;
		while ((e = claim_first(q, NULL))) {
			struct mr__sleeper *s = e->s;
			s->which = e->idx;
			s->result = rv ? -EPIPE : SL_RETRY;
			mr__sleeper_wake(s);
		}
	}
	if (!rv) {
		atomic_fetch_and_explicit(&ch->q.tail, ~POS_RXW, memory_order_relaxed);
		atomic_fetch_and_explicit(&ch->q.head, ~POS_TXW, memory_order_relaxed);
	}
	mr__chan_unlock(ch);
	return 0;
}

size_t mr_chan_len(const mr_chan_t *handle)
{
	if (!handle)
		return 0;
	const struct mr_chan *ch = check_chan(handle, "mr_chan_len");

	switch (ch->q.kind) {
	case CH_SHM:
		return mr__shm_len(ch);
	case CH_RING:
		return mr__ring_len(&ch->q);
	case CH_LIST:
		return mr__list_len(&ch->q);
	default:
		return 0;
	}
}

size_t mr_chan_capacity(const mr_chan_t *handle)
{
	return handle ? check_chan(handle, "mr_chan_capacity")->q.cap : 0;
}

size_t mr_chan_elem_size(const mr_chan_t *handle)
{
	return handle ? check_chan(handle, "mr_chan_elem_size")->q.elem_size : 0;
}

bool mr_chan_is_closed(const mr_chan_t *handle)
{
	if (!handle)
		return false;
	const struct mr_chan *ch = check_chan(handle, "mr_chan_is_closed");

	if (ch->q.kind == CH_SHM)
		return mr__shm_closed(ch);
	return atomic_load_explicit(&ch->q.tail, memory_order_acquire) & POS_CLOSED;
}

int mr_select(struct mr_select_case *cases, size_t n, int64_t deadline_ns)
{
	size_t live = 0;
	int res = 0, i;
	uint64_t held = mr__fiber_held(); /* see fiber.h */

	if ((!cases && n > 0) || n > MR_SELECT_MAX)
		return -EINVAL;
	for (size_t j = 0; j < n; j++) {
		struct mr_select_case *c = &cases[j];
		if (!c->chan || c->op == MR_SELECT_SKIP)
			continue;
		if ((c->op != MR_SELECT_SEND && c->op != MR_SELECT_RECV) || !c->elem)
			return -EINVAL;
		check_chan(c->chan, "mr_select");
		live++;
	}
	if (live == 0) {
		if (deadline_ns == MR_SELECT_POLL)
			return -EAGAIN;
		if (deadline_ns < 0)
			return -EINVAL;
		int r = mr_sleep_until(deadline_ns);
		return r < 0 ? r : -ETIMEDOUT; /* -ECANCELED */
	}
	if ((i = poll_cases(cases, n, &res)) >= 0) {
		mr__fiber_going_on(held);
		goto done;
	}
	if (deadline_ns == MR_SELECT_POLL) {
		mr__fiber_going_on(held); /* see chan_op_slow() */
		return -EAGAIN;
	}
	i = block(cases, n, deadline_ns, &res, "mr_select");
	if (i < 0)
		return i;
done:
	/* -ENOMEM from an unbounded send, -EBADF or -EPROTO from a shared
	 * channel: errors of the call. Closed and reset: results of a case. */
	if (res < 0 && res != -EPIPE && res != -ECONNRESET)
		return res;
	cases[i].result = res;
	return i;
}

/* ---- loans and borrows (shm) ------------------------------------------------- */

static inline int lend(mr_chan_t *handle, int op, void *out, int64_t deadline, const char *call)
{
	if (!handle || !out)
		return -EINVAL;
	if (check_chan(handle, call)->q.kind != CH_SHM)
		return -EOPNOTSUPP;
	return chan_op(handle, op, out, deadline, call);
}

int mr_chan_loan(mr_chan_t *ch, void **slot)
{
	return lend(ch, MR__OP_LOAN, slot, MR_SELECT_FOREVER, "mr_chan_loan");
}

int mr_chan_loan_until(mr_chan_t *ch, void **slot, int64_t deadline_ns)
{
	return lend(ch, MR__OP_LOAN, slot, until(deadline_ns), "mr_chan_loan_until");
}

int mr_chan_try_loan(mr_chan_t *ch, void **slot)
{
	return lend(ch, MR__OP_LOAN, slot, MR_SELECT_POLL, "mr_chan_try_loan");
}

int mr_chan_borrow(mr_chan_t *ch, const void **elem)
{
	return lend(ch, MR__OP_BORROW, (void *)elem, MR_SELECT_FOREVER, "mr_chan_borrow");
}

int mr_chan_borrow_until(mr_chan_t *ch, const void **elem, int64_t deadline_ns)
{
	return lend(ch, MR__OP_BORROW, (void *)elem, until(deadline_ns), "mr_chan_borrow_until");
}

int mr_chan_try_borrow(mr_chan_t *ch, const void **elem)
{
	return lend(ch, MR__OP_BORROW, (void *)elem, MR_SELECT_POLL, "mr_chan_try_borrow");
}

static int give_back(mr_chan_t *handle, int how, const void *p, const char *call)
{
	if (!handle || !p)
		return -EINVAL;
	if (check_chan(handle, call)->q.kind != CH_SHM)
		return -EOPNOTSUPP;
	return mr__shm_give_back((struct mr_chan *)handle, how, p);
}

int mr_chan_commit(mr_chan_t *ch, void *slot)
{
	return give_back(ch, MR__GIVE_COMMIT, slot, "mr_chan_commit");
}

int mr_chan_discard(mr_chan_t *ch, void *slot)
{
	return give_back(ch, MR__GIVE_DISCARD, slot, "mr_chan_discard");
}

int mr_chan_release(mr_chan_t *ch, const void *elem)
{
	return give_back(ch, MR__GIVE_RELEASE, elem, "mr_chan_release");
}
