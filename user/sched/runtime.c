/*
 * runtime.c - runtimes and their workers: creation and destruction, the
 * registry of live runtimes, the default runtime, the worker loop (pop,
 * steal, park), the injector, and entering a runtime from outside.
 *
 * The parking protocol is described in sched.h. Destruction waits for
 * quiescence: every worker asleep (nactive == 0) and nothing queued anywhere.
 * Because a worker only sleeps with an empty deque, and a worker waiting on a
 * latch waits for a job that someone awake is running, that state means all
 * submitted work, and all work it spawned, has finished - once no fiber is
 * alive either. Fibers alive while every worker sleeps past its last look
 * with no timer pending wait for something outside the runtime: destroy
 * says -EBUSY then instead of waiting for ever (drain_state()).
 *
 * Behaves badly when: work is submitted to a runtime while it is being
 * destroyed (misuse; the work may never run), or a job blocks its worker on
 * something other than this API (the worker is lost to the runtime meanwhile).
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched.h"
#include "../fiber/fiber.h"

__thread struct mr__worker *mr__tls_worker __attribute__((tls_model("initial-exec")));
/* Always full: mr_join's inline fast path (<moirai/par.h>) takes the
 * library's mr_join on a thread that is not a worker, never writes here. */
static const struct mr__lstack lstack_none = { .top = UINT32_MAX };
__thread struct mr__lstack *mr__tls_lstack
	__attribute__((tls_model("initial-exec"))) = (struct mr__lstack *)&lstack_none;
__thread unsigned mr__tls_inside __attribute__((tls_model("initial-exec")));

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mr_runtime *registry;
static pthread_mutex_t default_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(struct mr_runtime *) default_rt;
static _Atomic uint32_t next_id; /* runtimes created in this process */

/* ---- registry ---------------------------------------------------------- */

static bool is_live(const struct mr_runtime *rt)
{
	bool live = false;

	mr__lock(&registry_lock);
	for (struct mr_runtime *r = registry; r; r = r->next_live)
		if (r == rt) {
			live = true;
			break;
		}
	mr__unlock(&registry_lock);
	return live;
}

void mr__check_live(const struct mr_runtime *rt, const char *call)
{
	if (!rt)
		mr__die(call, "NULL runtime");
	if (!is_live(rt))
		mr__die(call, "runtime %p is not alive (destroyed, or never created)", (void *)rt);
}

static void registry_add(struct mr_runtime *rt)
{
	mr__lock(&registry_lock);
	rt->next_live = registry;
	registry = rt;
	mr__unlock(&registry_lock);
}

static bool registry_remove(struct mr_runtime *rt)
{
	bool found = false;

	mr__lock(&registry_lock);
	for (struct mr_runtime **p = &registry; *p; p = &(*p)->next_live)
		if (*p == rt) {
			*p = rt->next_live;
			found = true;
			break;
		}
	mr__unlock(&registry_lock);
	return found;
}

/* ---- idle set ---------------------------------------------------------- */

static inline _Atomic uint64_t *idle_word(struct mr_runtime *rt, unsigned idx)
{
	return &rt->idle_mask[idx / 64];
}

static void maybe_quiesced(struct mr_runtime *rt);

/* Worker idx is asleep (bit set); clear its bit. True if we cleared it. */
static bool claim(struct mr_runtime *rt, unsigned idx)
{
	uint64_t bit = 1ull << (idx % 64);

	/* Count the worker active before its bit can be seen clear, so that
	 * nactive never undercounts (see sched.h). */
	atomic_fetch_add_explicit(&rt->nactive, 1, memory_order_seq_cst);
	uint64_t old = atomic_fetch_and_explicit(idle_word(rt, idx), ~bit, memory_order_seq_cst);
	if (old & bit) {
		atomic_fetch_sub_explicit(&rt->nidle, 1, memory_order_seq_cst);
		return true;
	}
	if (atomic_fetch_sub_explicit(&rt->nactive, 1, memory_order_seq_cst) == 1)
		maybe_quiesced(rt);
	return false;
}

static void give_token(struct mr__worker *w, uint32_t tok)
{
	/* Read before the token: once w has it, w may run, exit and (a waker
	 * of another runtime, a destroy) be freed. acquire: pairs with the
	 * release store of io_ops in user/io, so that its state is there. */
	const struct mr__io_ops *io = atomic_load_explicit(&w->io_ops, memory_order_acquire);

	MR__STAT_BY(w->rt, wakeups_sent, 1);
	MR_PROBE2(worker_wakeup, w->idx,
		  mr__self() && mr__self()->rt == w->rt ? (int)mr__self()->idx : -1);
	/* release: the sleeper's acquire load sees what we did before waking it. */
	atomic_store_explicit(&w->park, tok, memory_order_release);
	mr__futex_wake(&w->park, 1);
	/* Only where the kernel lacks IORING_OP_FUTEX_WAIT (before 6.7), or on
	 * epoll: wake() reads w's backend state after the token, which has the
	 * same window as the futex wake's address (see the note in uring.c). */
	if (unlikely(io) && io->wake)
		io->wake(w);
}

/* Claim and wake one sleeper among the bits of `want` in idle word i. */
static bool wake_in_word(struct mr_runtime *rt, uint32_t tok, unsigned i, uint64_t want)
{
	uint64_t m = atomic_load_explicit(&rt->idle_mask[i], memory_order_seq_cst) & want;

	while (m) {
		unsigned idx = i * 64 + (unsigned)__builtin_ctzll(m);
		if (claim(rt, idx)) {
			give_token(rt->workers[idx], tok);
			return true;
		}
		m = atomic_load_explicit(&rt->idle_mask[i], memory_order_seq_cst) & want;
	}
	return false;
}

/*
 * Wake any one sleeping worker with tok, scanning the idle words from
 * `start`; one of the workers in `prefer` (node_workers of a node) first
 * when it is not NULL.
 */
static bool wake_any(struct mr_runtime *rt, uint32_t tok, unsigned start, const uint64_t *prefer)
{
	unsigned nw = rt->idle_words;

	if (prefer)
		for (unsigned k = 0; k < nw; k++) {
			unsigned i = (start + k) % nw;
			if (prefer[i] && wake_in_word(rt, tok, i, prefer[i]))
				return true;
		}
	for (unsigned k = 0; k < nw; k++)
		if (wake_in_word(rt, tok, (start + k) % nw, ~0ull))
			return true;
	return false;
}

/* The workers to wake first for the calling thread: those of its node. */
static const uint64_t *near_workers(struct mr_runtime *rt, struct mr__worker *self)
{
	if (!rt->node_workers)
		return NULL;
	int node = self && self->rt == rt ? self->home_node : mr__scx_cpu_node(sched_getcpu());
	if (node < 0 || (unsigned)node >= rt->nnodes)
		return NULL;
	return &rt->node_workers[(size_t)node * rt->idle_words];
}

void mr__wake_worker(struct mr__worker *w, uint32_t tok)
{
	struct mr_runtime *rt = w->rt;
	uint64_t bit = 1ull << (w->idx % 64);

	/* seq_cst: after the caller's seq_cst store of the latch; pairs with
	 * the sleeper's fetch_or of its bit followed by its look at the latch. */
	if (!(atomic_load_explicit(idle_word(rt, w->idx), memory_order_seq_cst) & bit))
		return;
	if (claim(rt, w->idx))
		give_token(w, tok);
}

/* ---- work visibility and notification ---------------------------------- */

static bool work_visible(struct mr_runtime *rt)
{
	if (atomic_load_explicit(&rt->inj_len, memory_order_seq_cst))
		return true;
	for (unsigned i = 0; i < rt->nworkers; i++)
		if (mr__deque_stealable(&rt->workers[i]->dq))
			return true;
	return false;
}

/*
 * Must somebody be awake, or asleep with a timeout? Visible work, or a
 * blocked worker with timers: only other workers fire those (a sleeper sets
 * its timeout from them in park()). mr__worker_block() notifies for its
 * timers, and a notify that saw a searcher relies on that searcher to pass
 * the duty on: so what a searcher passes on must count them too.
 */
static bool wake_needed(struct mr_runtime *rt)
{
	if (work_visible(rt))
		return true;
	/* seq_cst: pairs with the seq_cst stores of blocked / nblocked in
	 * mr__worker_block() (before its notify's fence); reading blocked = 1
	 * also makes the timers added before it visible. */
	if (!atomic_load_explicit(&rt->nblocked, memory_order_seq_cst))
		return false;
	for (unsigned i = 0; i < rt->nworkers; i++) {
		struct mr__worker *v = rt->workers[i];
		if (atomic_load_explicit(&v->blocked, memory_order_seq_cst) &&
		    atomic_load_explicit(&v->tnext, memory_order_relaxed) >= 0)
			return true;
	}
	return false;
}

/*
 * With the BPF scheduler: are all `searchers` searchers preempted? The
 * scheduler marks a worker's line while the worker is runnable but not
 * running. A searcher it preempted (for a CPU hog, say) finds nothing until
 * it runs again, a whole slice of the hog later, while every notify relies
 * on it. Counted searchers publish SEARCHING (stop_searching() publishes
 * RUNNING); a worker woken to search publishes nothing until it runs, so it
 * is never counted here as preempted and is relied on, as it should be:
 * the scheduler places a woken worker at once. A hint: a wrong answer costs
 * a wake-up too many or a late one, never a lost one.
 */
static bool searchers_stalled(struct mr_runtime *rt, uint32_t searchers)
{
	uint32_t stalled = 0;

	if (!rt->scx_id)
		return false;
	for (unsigned i = 0; i < rt->nworkers; i++) {
		struct mr__worker *v = rt->workers[i];
		/* acquire: pairs with the release in mr__scx_worker_start(). */
		const struct mr__scx_line *l = atomic_load_explicit(&v->scx, memory_order_acquire);
		/* relaxed: hints written with plain stores (scx.h); the state
		 * from the worker's own hints, fresher than the line's copy. */
		if (l && atomic_load_explicit(&l->preempted, memory_order_relaxed) &&
		    atomic_load_explicit(&v->scx_hints.state, memory_order_relaxed) ==
			    MR__SCX_SEARCHING &&
		    ++stalled >= searchers)
			return true;
	}
	return false;
}

void mr__notify(struct mr_runtime *rt)
{
	for (;;) {
		/* Pairs with the sleeper's RMWs on the idle set / nsearching and
		 * its fence before it looks for work (see sched.h). */
		mr__fence_seq_cst();
		uint32_t searchers = atomic_load_explicit(&rt->nsearching, memory_order_seq_cst);
		if (searchers != 0 && !searchers_stalled(rt, searchers))
			return;
		if (atomic_load_explicit(&rt->nidle, memory_order_seq_cst) == 0)
			return;
		if (searchers != 0) {
			/* They are all preempted: wake one more, counted as a
			 * searcher like any worker woken for work. */
			atomic_fetch_add_explicit(&rt->nsearching, 1, memory_order_seq_cst);
		} else {
			uint32_t zero = 0;
			if (!atomic_compare_exchange_strong_explicit(&rt->nsearching, &zero, 1,
								     memory_order_seq_cst,
								     memory_order_seq_cst))
				return; /* somebody started searching */
		}
		struct mr__worker *self = mr__self();
		if (wake_any(rt, MR__TOK_WORK, self ? (unsigned)(self->rng % rt->idle_words) : 0,
			     near_workers(rt, self)))
			return;
		/* Nobody to wake after all. While we counted as searching a pusher
		 * may have relied on us; look again before giving up. */
		atomic_fetch_sub_explicit(&rt->nsearching, 1, memory_order_seq_cst);
		mr__fence_seq_cst();
		if (!(atomic_load_explicit(&rt->nidle, memory_order_seq_cst) && wake_needed(rt)))
			return;
	}
}

/* What a destroy waits for (see drain_state()). */
enum { DRAIN_BUSY, DRAIN_DONE, DRAIN_STUCK };

/*
 * DONE: every worker idle, nothing queued, no fiber alive - all submitted
 * work has finished. STUCK: fibers are alive, but every worker sleeps past
 * its last look with no timer, and nothing is queued: they are parked on
 * something only code outside the runtime can do (a sync object, a
 * channel). A sleeping worker's private deque is empty (its last look saw
 * to that; only its owner pushes there), and timers - the only other way a
 * fiber wakes from inside - are counted. BUSY otherwise.
 */
static int drain_state(struct mr_runtime *rt)
{
	if (atomic_load_explicit(&rt->nactive, memory_order_seq_cst) != 0 || work_visible(rt))
		return DRAIN_BUSY;
	if (atomic_load_explicit(&rt->nfibers, memory_order_seq_cst) == 0)
		return DRAIN_DONE;
	if (atomic_load_explicit(&rt->nasleep, memory_order_seq_cst) != rt->nworkers)
		return DRAIN_BUSY;
	for (unsigned i = 0; i < rt->nworkers; i++)
		/* relaxed: set by the sleeper before its last look, which the
		 * seq_cst increment of nasleep we read follows. */
		if (atomic_load_explicit(&rt->workers[i]->tnext, memory_order_relaxed) >= 0 ||
		    atomic_load_explicit(&rt->workers[i]->io_inflight, memory_order_relaxed))
			return DRAIN_BUSY;
	return DRAIN_STUCK;
}

/* A worker went idle or to sleep: if a destroy waits, tell it to look. */
static void maybe_quiesced(struct mr_runtime *rt)
{
	/* seq_cst: pairs with the destroyer's store of `draining` before it
	 * looks (drain_state()) against our RMW of nactive / nasleep. */
	if (!atomic_load_explicit(&rt->draining, memory_order_seq_cst) ||
	    drain_state(rt) == DRAIN_BUSY)
		return;
	atomic_fetch_add_explicit(&rt->quiesced, 1, memory_order_seq_cst);
	mr__futex_wake(&rt->quiesced, INT_MAX);
	/* A destroyer that is a worker of another runtime waits in
	 * mr__work_until(). seq_cst: nwaking before destroyer, against its
	 * clearing of destroyer before it waits for nwaking to be 0. */
	atomic_fetch_add_explicit(&rt->nwaking, 1, memory_order_seq_cst);
	struct mr__worker *d = atomic_load_explicit(&rt->destroyer, memory_order_seq_cst);
	if (d)
		mr__wake_worker(d, MR__TOK_LATCH);
	atomic_fetch_sub_explicit(&rt->nwaking, 1, memory_order_release);
}

/* ---- injector ---------------------------------------------------------- */

static void help_notify(struct mr_runtime *rt);
static void stuck_look(struct mr_runtime *rt, int why);

void (*mr__test_inject_hook)(void);

void mr__inject(struct mr_runtime *rt, struct mr__job *job)
{
	bool fiber = mr__job_is_fiber(job); /* read now: once queued, it may run and go */
	struct mr__worker *self = mr__self();
	bool outside = !self || self->rt != rt;

	/* seq_cst: before the job is visible, so that a destroy that the job's
	 * end lets through sees us (the wait before free_runtime()). */
	if (outside)
		atomic_fetch_add_explicit(&rt->ninjecting, 1, memory_order_seq_cst);
	job->next = NULL;
	mr__lock(&rt->inj_lock);
	if (rt->inj_tail)
		rt->inj_tail->next = job;
	else
		rt->inj_head = job;
	rt->inj_tail = job;
	atomic_fetch_add_explicit(&rt->inj_len, 1, memory_order_seq_cst);
	mr__unlock(&rt->inj_lock);
	if (unlikely(mr__test_inject_hook != NULL))
		mr__test_inject_hook();
	mr__notify(rt);
	if (fiber)
		help_notify(rt);
	/* release: our last touch of rt. */
	if (outside)
		atomic_fetch_sub_explicit(&rt->ninjecting, 1, memory_order_release);
}

static struct mr__job *inj_pop(struct mr_runtime *rt)
{
	struct mr__job *job;

	if (!atomic_load_explicit(&rt->inj_len, memory_order_relaxed))
		return NULL;
	mr__lock(&rt->inj_lock);
	job = rt->inj_head;
	if (job) {
		rt->inj_head = job->next;
		if (!rt->inj_head)
			rt->inj_tail = NULL;
		atomic_fetch_sub_explicit(&rt->inj_len, 1, memory_order_relaxed);
	}
	mr__unlock(&rt->inj_lock);
	return job;
}

/* ---- blocked workers ---------------------------------------------------- */

/*
 * A job (or a pinned fiber) that waits on a sync object, a channel or a
 * sleep blocks its worker's thread: running other jobs on top of it could
 * bury the holder of what it waits for under it. mr__worker_block() hands
 * the worker's work to the others (its deque and yielded fibers go to the
 * injector: a deque's top may be a job with fibers below it, and taking
 * the jobs as a thief keeps mr_join's protocol, see mr__deque_take_all()).
 *
 * Once EVERY worker is blocked so, nobody would run the fibers that could
 * wake them (a parallel_for whose bodies receive from a channel that a
 * fiber feeds: issue 13). So a blocked thread helps while it waits
 * (mr__worker_help): when every worker is blocked, it takes a fiber out of
 * the injector and runs it on its own worker - fibers only, never a job -
 * as mr__work_until() would: the fiber switches back here when it parks,
 * yields or returns, so it nests cleanly and mr_worker_index() stays this
 * worker's. The worker counts as unblocked while the fiber runs: it is a
 * worker like any other then (the fiber's own parallel calls and waits use
 * the usual paths), and blocked again after, which hands over what the
 * fiber left (readied fibers, yields, jobs it spawned). The helper fires
 * the blocked workers' due timers too: while every worker is blocked
 * nobody else does.
 *
 * Waking a helper: it sleeps on its own word hpark, announced in hsleep.
 * Whoever ends its wait calls mr__helper_wake(); a fiber that enters the
 * injector while every worker is blocked wakes any one (help_notify()).
 * The Dekker pairs: (injector push; fence; load nblocked, hsleep) against
 * (RMW of nblocked / store of hsleep; fence; look at the injector), and
 * (store that ends the wait; fence; load hsleep) against (store of hsleep;
 * fence; done()). Generic notifies never wake a helper (it is in no idle
 * set), so it cannot swallow a wake-up meant for a worker that runs jobs;
 * a helper woken for a fiber that finds none (another took it) sleeps again.
 * An idle runtime costs nothing: a helper with nothing to run sleeps
 * without a timeout unless a blocked worker has a timer.
 */

struct chain {
	struct mr__job *head, *tail;
	size_t n;
	bool fiber; /* a fiber among them */
};

static void chain_add(struct mr__job *job, void *arg)
{
	struct chain *c = arg;

	job->next = NULL;
	if (c->tail)
		c->tail->next = job;
	else
		c->head = job;
	c->tail = job;
	c->n++;
	c->fiber |= mr__job_is_fiber(job);
}

/* Move w's deque (oldest first) and its yielded fibers to the injector. */
static void drain(struct mr__worker *w)
{
	struct mr_runtime *rt = w->rt;
	struct chain c = { NULL, NULL, 0, false };
	struct mr__job *job;

	mr__deque_take_all(&w->dq, chain_add, &c);
	while ((job = mr__yield_pop(w)))
		chain_add(job, &c);
	if (!c.n)
		return;
	mr__lock(&rt->inj_lock);
	if (rt->inj_tail)
		rt->inj_tail->next = c.head;
	else
		rt->inj_head = c.head;
	rt->inj_tail = c.tail;
	atomic_fetch_add_explicit(&rt->inj_len, c.n, memory_order_seq_cst);
	mr__unlock(&rt->inj_lock);
	mr__notify(rt);
	if (c.fiber)
		help_notify(rt);
}

void mr__worker_block(struct mr__worker *w)
{
	struct mr_runtime *rt = w->rt;

	/* Latent joins first: the frames our thread sits on must not hide b
	 * halves from the other workers while it sleeps. */
	mr__promote_all(w);
	drain(w);
	/* seq_cst: pairs with park()'s fence before it reads nblocked to set
	 * its timeout (or our notify below sees it idle and wakes it), and
	 * with help_notify()'s fence before it reads nblocked. */
	atomic_store_explicit(&w->blocked, 1, memory_order_seq_cst);
	atomic_fetch_add_explicit(&rt->nblocked, 1, memory_order_seq_cst);
	MR__STAT_SET(w->st, state, MR_WSTATE_BLOCKED);
	if (atomic_load_explicit(&w->tnext, memory_order_relaxed) >= 0)
		mr__notify(rt);
}

void mr__worker_unblock(struct mr__worker *w)
{
	atomic_fetch_sub_explicit(&w->rt->nblocked, 1, memory_order_relaxed);
	atomic_store_explicit(&w->blocked, 0, memory_order_relaxed);
	MR__STAT_SET(w->st, state, w->wstate);
}

/* Is every worker blocked? Then only a helper runs fibers. */
static bool all_blocked(struct mr_runtime *rt)
{
	return atomic_load_explicit(&rt->nblocked, memory_order_seq_cst) == rt->nworkers;
}

/* Claim w asleep in help_sleep() and wake it. False if not asleep there. */
static bool help_claim(struct mr__worker *w)
{
	uint32_t one = 1;

	if (!atomic_compare_exchange_strong_explicit(&w->hsleep, &one, 0, memory_order_seq_cst,
						     memory_order_relaxed))
		return false;
	/* After the bit: nhsleep never undercounts. */
	atomic_fetch_sub_explicit(&w->rt->nhsleep, 1, memory_order_relaxed);
	/* release: pairs with the acquire load in help_sleep(). */
	atomic_store_explicit(&w->hpark, 1, memory_order_release);
	mr__futex_wake(&w->hpark, 1);
	/* Asleep in its ring or epoll: wake that. Pairs with the store of
	 * hring, fence, load of hpark in help_sleep(), and with the backend
	 * wait's look at hpark once it sleeps (mr__help_claimed()): either w
	 * sees hpark, or we see hring here and the backend's `sleeping` (or
	 * its queued futex wait) in the wake. A ring's FUTEX_WAIT waits on
	 * `park`: a blocked worker gets no token there, so nothing else
	 * waits on it now. acquire: wake() reads w->io (see io_watch()). */
	mr__fence_seq_cst();
	if (atomic_load_explicit(&w->hring, memory_order_relaxed)) {
		const struct mr__io_ops *io = atomic_load_explicit(&w->io_ops, memory_order_acquire);
		if (io && io->wake)
			io->wake(w);
		else
			mr__futex_wake(&w->park, 1);
	}
	return true;
}

void mr__helper_wake(struct mr__worker *w)
{
	/* Pairs with help_sleep(): the caller's store that makes done()
	 * true, this fence, our load of hsleep, against its store of hsleep,
	 * fence, call of done(). */
	mr__fence_seq_cst();
	if (atomic_load_explicit(&w->hsleep, memory_order_relaxed))
		help_claim(w);
}

/* A fiber entered the injector: if every worker is blocked, only a helper
 * can run it; wake one that sleeps (one awake looks before it sleeps). */
static void help_notify(struct mr_runtime *rt)
{
	/* Pairs with the RMW of nblocked in mr__worker_block() and the store
	 * of hsleep in help_sleep(), each followed by a fence and a look at
	 * the injector, against the injector push before this fence. */
	mr__fence_seq_cst();
	if (!all_blocked(rt) || !atomic_load_explicit(&rt->nhsleep, memory_order_relaxed))
		return;
	for (unsigned i = 0; i < rt->nworkers; i++) {
		struct mr__worker *v = rt->workers[i];
		if (atomic_load_explicit(&v->hsleep, memory_order_relaxed) && help_claim(v))
			return;
	}
}

/* The first fiber in the injector, taken out of it if `take`; NULL if none. */
static struct mr__job *inj_fiber(struct mr_runtime *rt, bool take)
{
	struct mr__job *job, *prev = NULL;

	/* seq_cst: the look of the Dekker pairs above. */
	if (!atomic_load_explicit(&rt->inj_len, memory_order_seq_cst))
		return NULL;
	mr__lock(&rt->inj_lock);
	for (job = rt->inj_head; job && !mr__job_is_fiber(job); job = job->next)
		prev = job;
	if (job && take) {
		if (prev)
			prev->next = job->next;
		else
			rt->inj_head = job->next;
		if (rt->inj_tail == job)
			rt->inj_tail = prev;
		atomic_fetch_sub_explicit(&rt->inj_len, 1, memory_order_relaxed);
	}
	mr__unlock(&rt->inj_lock);
	return job;
}

/*
 * The timers a helper looks after: while every worker is blocked, those of
 * every blocked worker, its own included (else the others fire them,
 * blocked_timers(), as before). Fires the due ones if `fire` (their fibers
 * are readied onto w's deque); returns the nearest deadline left, or -1.
 */
static int64_t help_timers(struct mr__worker *w, bool all, bool fire)
{
	struct mr_runtime *rt = w->rt;
	int64_t now = (int64_t)mr__now_ns(), next = -1;

	if (!all)
		return -1;
	for (unsigned i = 0; i < rt->nworkers; i++) {
		struct mr__worker *v = rt->workers[i];
		if (v != w && !atomic_load_explicit(&v->blocked, memory_order_relaxed))
			continue;
		int64_t t = atomic_load_explicit(&v->tnext, memory_order_relaxed);
		if (fire && t >= 0 && t <= now)
			t = mr__timers_run(v);
		if (t >= 0 && (next < 0 || t < next))
			next = t;
	}
	return next;
}

/*
 * Sleep until a waker claims us, the nearest timer we look after, or the
 * deadline - unless the last look (after announcing ourselves) finds a
 * reason to stay awake.
 */
static void help_sleep(struct mr__worker *w, bool (*done)(void *), void *arg, int64_t deadline)
{
	struct mr_runtime *rt = w->rt;
	uint32_t one = 1;

	atomic_store_explicit(&w->hpark, 0, memory_order_relaxed);
	/* Counted before the bit is seen (see help_claim()). */
	atomic_fetch_add_explicit(&rt->nhsleep, 1, memory_order_seq_cst);
	atomic_store_explicit(&w->hsleep, 1, memory_order_seq_cst);
	/* Pairs with the fences of mr__helper_wake() and help_notify(). */
	mr__fence_seq_cst();
	bool all = all_blocked(rt);
	int64_t next = help_timers(w, all, false);
	int64_t now = (int64_t)mr__now_ns();
	if (deadline >= 0 && (next < 0 || deadline < next))
		next = deadline;
	/* Our ring (or epoll) has operations in flight, and only this thread
	 * can reap them (mr__worker_help() polls it): sleep there, woken by
	 * a completion or by help_claim(). */
	const struct mr__io_ops *io = mr__worker_io(w);
	bool in_ring = io && atomic_load_explicit(&w->io_inflight, memory_order_relaxed);
	if (!done(arg) && !(next >= 0 && next <= now) && !(all && inj_fiber(rt, false))) {
		/* Every worker blocked in a job, asleep, no timer: stuck? */
		if (all && next < 0 &&
		    atomic_load_explicit(&rt->nhsleep, memory_order_seq_cst) == rt->nworkers)
			stuck_look(rt, MR__STUCK_IN_JOBS);
		/* While every worker is blocked, look again now and then: the
		 * look above can come while another blocked thread is awake for
		 * a moment (claimed by a waker that found nothing for it), and
		 * that one may then fall asleep without seeing everyone
		 * asleep. It happened in 1 of ~80 runs of a 2-worker deadlock
		 * on a loaded machine (tests/dump); the cost is a wake-up a
		 * second while everything is blocked, none otherwise. */
		if (all && next < 0)
			next = now + MR__STUCK_RELOOK_NS;
		/* acquire: pairs with the release in help_claim(). */
		while (!atomic_load_explicit(&w->hpark, memory_order_acquire)) {
			if (in_ring) {
				atomic_store_explicit(&w->hring, 1, memory_order_seq_cst);
				mr__fence_seq_cst();
				bool readied = false;
				if (!atomic_load_explicit(&w->hpark, memory_order_acquire))
					readied = io->wait(w, next);
				atomic_store_explicit(&w->hring, 0, memory_order_relaxed);
				/* Fibers the ring readied: back to the helper's
				 * loop, which hands them on. */
				if (readied || (next >= 0 && (int64_t)mr__now_ns() >= next))
					break;
				continue;
			}
			if (next < 0) {
				mr__futex_wait(&w->hpark, 0);
				continue;
			}
			now = (int64_t)mr__now_ns();
			if (now >= next)
				break;
			mr__futex_wait_ns(&w->hpark, 0, (uint64_t)(next - now));
		}
	}
	/* Take the bit back, unless a waker claimed us: then its store to
	 * hpark is on its way (it touches w, not our caller's frame). */
	if (atomic_compare_exchange_strong_explicit(&w->hsleep, &one, 0, memory_order_seq_cst,
						    memory_order_relaxed)) {
		atomic_fetch_sub_explicit(&rt->nhsleep, 1, memory_order_relaxed);
		return;
	}
	while (!atomic_load_explicit(&w->hpark, memory_order_acquire))
		mr__futex_wait(&w->hpark, 0);
}

/* Run fiber `job` on w as an unblocked worker, then the fibers it readied
 * here (newest first: a ping-pong stays here), then block again. */
static void help_run(struct mr__worker *w, struct mr__job *job, bool (*done)(void *), void *arg)
{
	mr__worker_unblock(w);
	for (;;) {
		mr__job_run(w, job);
		if (done(arg))
			break;
		job = mr__deque_peek(&w->dq);
		if (!job || !mr__job_is_fiber(job))
			break;
		mr__deque_pop(&w->dq);
	}
	mr__worker_block(w);
}

void mr__worker_help(struct mr__worker *w, bool (*done)(void *), void *arg, int64_t deadline)
{
	struct mr_runtime *rt = w->rt;

	for (;;) {
		if (done(arg) || (deadline >= 0 && (int64_t)mr__now_ns() >= deadline))
			return;
		bool all = all_blocked(rt);
		help_timers(w, all, true);
		/* Our ring (or epoll): nobody else may submit or reap it, and a
		 * fiber of ours may wait for it while we wait for that fiber. */
		const struct mr__io_ops *io = mr__worker_io(w);
		if (io)
			io->poll(w);
		/* Fibers the timers and the ring readied here: to the injector,
		 * like the rest. */
		if (mr__deque_private_len(&w->dq) > 0 || mr__deque_stealable(&w->dq))
			drain(w);
		struct mr__job *job = all ? inj_fiber(rt, true) : NULL;
		if (job) {
			MR__STAT_ADD(w->st, injector_pops, 1);
			help_run(w, job, done, arg);
		}
		else
			help_sleep(w, done, arg, deadline);
	}
}

/*
 * Fire the due timers of blocked workers (their fibers become ready on w);
 * returns the nearest deadline among them, or -1. Safe from any thread:
 * timers are added only once their fiber may be readied (see timer.c).
 */
static int64_t blocked_timers(struct mr__worker *w)
{
	struct mr_runtime *rt = w->rt;
	int64_t next = -1;

	if (!atomic_load_explicit(&rt->nblocked, memory_order_seq_cst))
		return -1;
	for (unsigned i = 0; i < rt->nworkers; i++) {
		struct mr__worker *v = rt->workers[i];
		if (v == w || !atomic_load_explicit(&v->blocked, memory_order_relaxed))
			continue;
		int64_t t = mr__timers_run(v);
		if (t >= 0 && (next < 0 || t < next))
			next = t;
	}
	return next;
}

/* ---- the worker loop --------------------------------------------------- */

/* ---- load published for the BPF scheduler (scx.h) ---------------------- */

/* Jobs in the deque and latent joins: the work this worker holds that
 * others could run, now or once a heartbeat promotes it. */
static inline uint32_t local_depth(struct mr__worker *w)
{
	/* relaxed: a hint; thieves move tail concurrently. */
	uint64_t ts = atomic_load_explicit(&w->dq.ts, memory_order_relaxed);
	uint32_t latent = w->ls.top > w->ls.bot ? w->ls.top - w->ls.bot : 0;
	return w->dq.head - MR__TS_TAIL(ts) + latent;
}

/*
 * The worker's state, for the BPF scheduler (MR__SCX_*) and in its
 * counters' record (the same numbers as MR_WSTATE_RUNNING .. _PARKED).
 */
_Static_assert((int)MR__SCX_RUNNING == (int)MR_WSTATE_RUNNING &&
		       (int)MR__SCX_SEARCHING == (int)MR_WSTATE_SEARCHING &&
		       (int)MR__SCX_PARKED == (int)MR_WSTATE_PARKED,
	       "one state numbering for the scheduler's line and the counters");

static inline void scx_state(struct mr__worker *w, uint32_t state)
{
	/* relaxed: we are the only writer. */
	if (w->wstate != state) {
		w->wstate = state;
		MR__STAT_SET(w->st, state, state);
	}
	if (unlikely(atomic_load_explicit(&w->scx_on, memory_order_relaxed))) {
		/* The depth too, when the deque went from empty to not or back
		 * (we are called before every job): published on state changes
		 * only, it stayed what it was when the worker last changed state,
		 * and the scheduler's queued-work credit went to a worker with
		 * nothing queued, or not to one with work queued. A flip, not
		 * every change, so that the line is not rewritten per job. */
		uint32_t d = local_depth(w);
		if (w->scx_state != state || (d != 0) != w->scx_queued) {
			w->scx_state = state;
			w->scx_queued = d != 0;
			mr__scx_publish(&w->scx_hints, state, d);
		}
	}
}

/*
 * The heartbeat's look at the load line (par/join.c): a worker deep in one
 * fork-join tree runs no scheduling round, so its latent joins and what a
 * promotion pushed would reach the scheduler only when the tree ends.
 */
void mr__scx_refresh(struct mr__worker *w)
{
	scx_state(w, MR__SCX_RUNNING); /* it runs: it beats */
}

void (*mr__test_steal_probe)(struct mr__worker *w, unsigned victim, unsigned k);

static inline struct mr__job *steal_from(struct mr__worker *w, unsigned v, unsigned k)
{
	struct mr__worker *victim = w->rt->workers[v];

	if (unlikely(mr__test_steal_probe))
		mr__test_steal_probe(w, v, k);
	MR__STAT_ADD(w->st, steal_attempts, 1);
	struct mr__job *job = mr__deque_steal(&victim->dq);
	if (job) {
		MR_PROBE3(job_steal, job, w->idx, v);
		MR__STAT_ADD(w->st, jobs_stolen, 1);
		MR__STAT_ATOMIC_ADD(victim->st, jobs_stolen_from, 1);
	}
	return job;
}

/*
 * One pass over the injector and every other worker's deque: those of our
 * own node first, then the others (rt->node_members, place.c), each group
 * from a random start.
 */
static struct mr__job *steal_pass(struct mr__worker *w)
{
	struct mr_runtime *rt = w->rt;
	unsigned n = rt->nworkers;
	struct mr__job *job = inj_pop(rt);

	if (job) {
		MR__STAT_ADD(w->st, injector_pops, 1);
		return job;
	}
	blocked_timers(w);
	if ((job = mr__deque_pop(&w->dq)))
		return job;
	if (n == 1)
		return NULL;
	uint64_t r = mr__rand(&w->rng);
	const unsigned *m = rt->node_members;
	unsigned lo = w->node_lo, ln = w->node_n, k = 0;
	/* Our node: m[lo .. lo + ln), ourselves among them. */
	unsigned start = (unsigned)(r % ln);
	for (unsigned i = 0; i < ln; i++) {
		unsigned v = m[lo + (start + i) % ln];
		if (v != w->idx && (job = steal_from(w, v, k++)))
			return job;
	}
	/* The other nodes: the n - ln entries after ours, cyclically. */
	unsigned rn = n - ln;
	if (rn == 0)
		return NULL;
	start = (unsigned)((r >> 32) % rn);
	for (unsigned i = 0; i < rn; i++) {
		unsigned p = lo + ln + (start + i) % rn;
		if ((job = steal_from(w, m[p < n ? p : p - n], k++)))
			return job;
	}
	return NULL;
}

/*
 * Stop counting as a searcher. With pass_on (we found work, or what we
 * waited for is done and we go back to running our caller), the last
 * searcher passes the search on if more work is visible or a blocked
 * worker has timers (wake_needed()): a pusher that saw us searching relied
 * on us (the Dekker pair: our RMW on nsearching, fence, look at the queues
 * against its publish, fence, load of nsearching). So does a searcher that
 * leaves only preempted ones behind (searchers_stalled()). Otherwise we
 * wake nobody: on a machine whose CPUs are all busy, such a wake-up only
 * takes a CPU from someone to search in vain, and the woken worker counts
 * as a searcher until it runs, so later pushes rely on it meanwhile.
 * We publish RUNNING at once: a line that says SEARCHING is a counted
 * searcher (searchers_stalled() counts on it).
 */
static void stop_searching(struct mr__worker *w, bool pass_on)
{
	if (!w->searching)
		return;
	w->searching = false;
	scx_state(w, MR__SCX_RUNNING);
	uint32_t left = atomic_fetch_sub_explicit(&w->rt->nsearching, 1, memory_order_seq_cst) - 1;
	/* The others search on, unless the BPF scheduler has preempted them all. */
	if (!pass_on || (left != 0 && !searchers_stalled(w->rt, left)))
		return;
	mr__fence_seq_cst();
	if (wake_needed(w->rt))
		mr__notify(w->rt);
}

static bool local_pending(struct mr__worker *w);

uint64_t mr__io_pack_ns = MR__IO_PACK_NS;

_Atomic unsigned long mr__test_cpu_yields; /* sched.h */

void mr__cpu_yield(struct mr__worker *w, uint64_t now)
{
	struct mr_runtime *rt = w->rt;

	w->yield_last = now;
	/* relaxed: hints; a stale one costs one yield, or one late. */
	for (unsigned i = 0; i < rt->nworkers; i++)
		if (atomic_load_explicit(&rt->workers[i]->io_inflight, memory_order_relaxed)) {
			atomic_fetch_add_explicit(&mr__test_cpu_yields, 1, memory_order_relaxed);
			sched_yield();
			return;
		}
}

/* Private jobs mr__io_share_ok() looks at; beyond, it shares. */
#define IO_PACK_SCAN 64

bool mr__io_share_ok(struct mr__worker *w)
{
	struct mr__deque *dq = &w->dq;
	uint32_t n = mr__deque_private_len(dq);
	int64_t oldest = INT64_MAX;

	if (n > IO_PACK_SCAN)
		return true;
	/* Owner only: the private slots and the fibers in them are ours. */
	for (uint32_t i = dq->o_split; i != dq->head; i++) {
		struct mr__job *job = atomic_load_explicit(&dq->slots[i & dq->mask],
							   memory_order_relaxed);
		if (!mr__job_is_fiber(job))
			return true;
		int64_t t = ((struct mr_fiber *)job)->io_ready_ns;
		if (!t)
			return true;
		if (t < oldest)
			oldest = t;
	}
	if (n && (int64_t)mr__now_ns() - oldest >= (int64_t)mr__io_pack_ns)
		return true;
	/* We keep up: ask the thief to ask again, should that change. */
	atomic_store_explicit(&dq->movesplit, 0, memory_order_relaxed);
	return false;
}

uint64_t mr__io_handoff_ns = MR__IO_HANDOFF_NS;

/*
 * Is v running (not idle, not blocked in a job's wait) with a backend that
 * lets others reap (and, if `inflight`, I/O in flight)? Then its fibers'
 * completions may wait for it to leave a long job.
 */
static const struct mr__io_ops *io_watch(struct mr__worker *v, bool inflight)
{
	/* acquire: pairs with the release store of io_ops in the backend's
	 * worker_init(): rescue() reads v->io. */
	const struct mr__io_ops *io = atomic_load_explicit(&v->io_ops, memory_order_acquire);

	if (!io || !io->rescue ||
	    (inflight && !atomic_load_explicit(&v->io_inflight, memory_order_relaxed)))
		return NULL;
	/* relaxed: hints. An idle worker reaps its ring in its own wait, a
	 * blocked one in mr__worker_help(); a rescue there would only race
	 * them for nothing (harmless: the backend's lock decides). */
	if (atomic_load_explicit(idle_word(v->rt, v->idx), memory_order_relaxed) &
		    (1ull << (v->idx % 64)) ||
	    atomic_load_explicit(&v->blocked, memory_order_relaxed))
		return NULL;
	return io;
}

/* How long io_ran() watches a worker's CPU time before it answers. */
#define IO_RAN_NS 200000

/*
 * v has not polled its ring since `since`: has its thread been running
 * (in one long job), rather than waiting for a CPU? A worker the kernel
 * does not run polls as soon as it runs again, and the fibers a rescue
 * took from it would then do their I/O on the rescuer's ring and spread
 * its connections (see mr__push_io() in sched.h): HTTP hello beside wrk on
 * 2 CPUs rescued 1-2k times in 6 s, most of them from a primary that the
 * kernel had preempted for the load generator. So the answer is yes when
 * v's thread used at least half of a window of IO_RAN_NS (CPU time of the
 * thread, one system call); the first look opens the window (no).
 * Helpers race on the fields: a wrong answer costs a rescue or delays one.
 */
static bool io_ran(struct mr__worker *v, int64_t since, int64_t now)
{
	/* The thread's CPU clock, as pthread_getcpuclockid() makes it for a
	 * thread id (the kernel's MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)).
	 * v->tid was set before v published io_ops, which io_watch() read
	 * with acquire. */
	clockid_t id = (clockid_t)((~(unsigned)v->tid << 3) | 6);
	struct timespec ts;

	if (clock_gettime(id, &ts) < 0)
		return true; /* cannot tell: rescue, as without this look */
	int64_t cpu = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	int64_t t0 = atomic_load_explicit(&v->io_cpu_ns, memory_order_relaxed);
	if (t0 >= since && now - t0 < IO_RAN_NS)
		return false; /* the window is open: look again later */
	if (t0 >= since &&
	    cpu - atomic_load_explicit(&v->io_cpu, memory_order_relaxed) >= (now - t0) / 2)
		return true;
	atomic_store_explicit(&v->io_cpu, cpu, memory_order_relaxed);
	atomic_store_explicit(&v->io_cpu_ns, now, memory_order_relaxed);
	return false;
}

/*
 * The hand-off of issue 19's "a worker busy in a long job lets others take
 * its I/O-ready fibers": for each other worker that runs with I/O in
 * flight, has not polled its ring for mr__io_handoff_ns (its io_polls
 * unchanged since a helper first saw that value) and has been running
 * meanwhile (io_ran()), reap its ring here; the fibers land on our deque.
 * A worker that polls (a fiber server, a loop of short jobs) changes
 * io_polls at every round and is left alone. True if fibers were readied.
 * Called by a searching worker (search()); a parked one wakes up to search
 * while io_watch() holds for a peer (park()).
 */
static bool io_handoff(struct mr__worker *w)
{
	struct mr_runtime *rt = w->rt;
	int64_t now = -1;
	bool got = false;

	for (unsigned i = 0; i < rt->nworkers; i++) {
		struct mr__worker *v = rt->workers[i];
		const struct mr__io_ops *io;
		if (v == w || !(io = io_watch(v, true)))
			continue;
		uint32_t p = atomic_load_explicit(&v->io_polls, memory_order_relaxed);
		if (now < 0)
			now = (int64_t)mr__now_ns();
		if (p != atomic_load_explicit(&v->io_seen_polls, memory_order_relaxed)) {
			atomic_store_explicit(&v->io_seen_polls, p, memory_order_relaxed);
			atomic_store_explicit(&v->io_seen_ns, now, memory_order_relaxed);
			continue;
		}
		int64_t since = atomic_load_explicit(&v->io_seen_ns, memory_order_relaxed);
		if (now - since < (int64_t)mr__io_handoff_ns || !io_ran(v, since, now))
			continue;
		got |= io->rescue(v, w);
	}
	return got;
}

/*
 * Should w, about to park, watch (sleep at most mr__io_handoff_ns)? When
 * another worker runs with I/O in flight on a backend that allows hand-offs
 * and nobody watches (I/O that starts later wakes a watcher itself: the
 * backends call mr__io_watch_check() when a fiber queues it). Takes the
 * watcher's slot; the caller gives it back when it wakes (io_unwatch()).
 */
static bool io_watch_take(struct mr__worker *w)
{
	struct mr_runtime *rt = w->rt;
	uint32_t none = 0;

	if (rt->nworkers < 2 || atomic_load_explicit(&rt->io_watcher, memory_order_relaxed))
		return false;
	for (unsigned i = 0; i < rt->nworkers; i++)
		if (rt->workers[i] != w && io_watch(rt->workers[i], true))
			return atomic_compare_exchange_strong_explicit(
				&rt->io_watcher, &none, w->idx + 1, memory_order_seq_cst,
				memory_order_relaxed);
	return false;
}

static void io_unwatch(struct mr__worker *w)
{
	atomic_store_explicit(&w->rt->io_watcher, 0, memory_order_seq_cst);
}

/*
 * A worker that parked while w was idle (or had no I/O yet) does not
 * watch: w, now running with I/O, wakes one if none watches. The Dekker
 * pair: w cleared its idle bit (or queued its I/O) before this fence and
 * loads nidle after it; a parker counted itself in nidle, fenced, and looks
 * at w's idle bit and io_ops (io_watch_take()). One of the two sees the
 * other.
 */
void mr__io_watch_check(struct mr__worker *w)
{
	struct mr_runtime *rt = w->rt;

	if (rt->nworkers < 2)
		return;
	mr__fence_seq_cst();
	if (atomic_load_explicit(&rt->io_watcher, memory_order_seq_cst) ||
	    !atomic_load_explicit(&rt->nidle, memory_order_seq_cst))
		return;
	mr__notify(rt);
}

static struct mr__job *search(struct mr__worker *w, bool (*done)(void *), void *arg)
{
	struct mr_runtime *rt = w->rt;

	if (!w->searching) {
		/* Limit searchers to half the busy workers (as Go does): beyond
		 * that, spinning burns CPU that running workers could use. */
		uint32_t s = atomic_load_explicit(&rt->nsearching, memory_order_relaxed);
		uint32_t idle = atomic_load_explicit(&rt->nidle, memory_order_relaxed);
		uint32_t busy = rt->nworkers > idle ? rt->nworkers - idle : 0;
		if (s > 0 && 2 * s >= busy) {
			struct mr__job *job = steal_pass(w);
			return job;
		}
		w->searching = true;
		atomic_fetch_add_explicit(&rt->nsearching, 1, memory_order_seq_cst);
	}
	scx_state(w, MR__SCX_SEARCHING);
	/* Search for spin_ns: a futex wake-up costs more than a short spin. */
	uint64_t deadline = 0;
	for (unsigned round = 0;; round++) {
		struct mr__job *job = steal_pass(w);
		if (job)
			return job; /* the caller stops searching before it runs it */
		if (done(arg) || atomic_load_explicit(&rt->exiting, memory_order_relaxed) ||
		    w->yield_head)
			return NULL;
		/* Completions of our ring ready fibers that only we can run. */
		const struct mr__io_ops *io = mr__worker_io(w);
		if (unlikely(io) && atomic_load_explicit(&w->io_inflight, memory_order_relaxed) &&
		    io->poll(w))
			return NULL;
		/* Those of a worker stuck in one job: they are ours now. */
		if (rt->nworkers > 1 && io_handoff(w))
			return NULL;
		if (round == 0)
			deadline = mr__now_ns() + rt->spin_ns;
		else if (mr__now_ns() > deadline || local_pending(w))
			return NULL;
		for (unsigned i = 0; i < (round < 5 ? 1u << round : 32u); i++)
			mr__cpu_relax();
	}
}

/*
 * Wait for a waker's token; until `deadline` (-1: none). MR__TOK_NONE on
 * timeout, and with io_early when I/O completions readied fibers.
 */
static uint32_t wait_token(struct mr__worker *w, int64_t deadline, bool io_early)
{
	uint32_t tok;

	/* acquire: pairs with the release in give_token(). */
	while ((tok = atomic_load_explicit(&w->park, memory_order_acquire)) == MR__TOK_NONE) {
		const struct mr__io_ops *io = mr__worker_io(w);
		if (io) {
			/* Asleep in the ring: a completion readies a fiber onto
			 * our deque, which our caller must run (as on a timeout). */
			if (deadline >= 0 && (int64_t)mr__now_ns() >= deadline)
				return MR__TOK_NONE;
			if (io->wait(w, deadline) && io_early)
				return atomic_exchange_explicit(&w->park, MR__TOK_NONE,
								memory_order_acquire);
			continue;
		}
		if (deadline < 0) {
			mr__futex_wait(&w->park, MR__TOK_NONE);
			continue;
		}
		int64_t now = (int64_t)mr__now_ns();
		if (now >= deadline)
			return MR__TOK_NONE;
		mr__futex_wait_ns(&w->park, MR__TOK_NONE, (uint64_t)(deadline - now));
	}
	atomic_store_explicit(&w->park, MR__TOK_NONE, memory_order_relaxed);
	return tok;
}

/*
 * Leave the idle set early: take our bit back. False when a waker claimed it
 * first: it counted us active and its token is on its way (wait for it).
 */
static bool unidle(struct mr__worker *w, uint64_t bit)
{
	struct mr_runtime *rt = w->rt;

	atomic_fetch_add_explicit(&rt->nactive, 1, memory_order_seq_cst);
	uint64_t old = atomic_fetch_and_explicit(idle_word(rt, w->idx), ~bit, memory_order_seq_cst);
	if (old & bit) {
		atomic_fetch_sub_explicit(&rt->nidle, 1, memory_order_seq_cst);
		return true;
	}
	/* The waker counted us active already: undo ours. */
	if (atomic_fetch_sub_explicit(&rt->nactive, 1, memory_order_seq_cst) == 1)
		maybe_quiesced(rt);
	return false;
}

/* Has this worker a fiber to run that is not in its deque? (owner only) */
static bool local_pending(struct mr__worker *w)
{
	int64_t next = atomic_load_explicit(&w->tnext, memory_order_relaxed);
	return w->yield_head || (next >= 0 && next <= (int64_t)mr__now_ns());
}

static void park(struct mr__worker *w, bool (*done)(void *), void *arg)
{
	struct mr_runtime *rt = w->rt;
	uint64_t bit = 1ull << (w->idx % 64);

	atomic_fetch_or_explicit(idle_word(rt, w->idx), bit, memory_order_seq_cst);
	atomic_fetch_add_explicit(&rt->nidle, 1, memory_order_seq_cst);
	stop_searching(w, false);
	if (atomic_fetch_sub_explicit(&rt->nactive, 1, memory_order_seq_cst) == 1)
		maybe_quiesced(rt);
	/* Pairs with the fence in mr__notify() and the seq_cst latch stores. */
	mr__fence_seq_cst();
	for (;;) {
		/* Fire the due timers of blocked workers (we are their only
		 * hope) before the last look: the fibers they ready land in our
		 * own deque. */
		int64_t other = blocked_timers(w);
		if (done(arg) || work_visible(rt) || local_pending(w) ||
		    mr__deque_private_len(&w->dq) > 0 ||
		    atomic_load_explicit(&rt->exiting, memory_order_seq_cst)) {
			if (unidle(w, bit))
				return;
			break;
		}
		/* Sleep no longer than the nearest timer of this worker, or of a
		 * blocked one. */
		int64_t next = atomic_load_explicit(&w->tnext, memory_order_relaxed);
		if (other >= 0 && (next < 0 || other < next))
			next = other;
		/* A running worker with I/O may get stuck in one job with its
		 * fibers' completions: look again (io_handoff()) in
		 * mr__io_handoff_ns. */
		bool watch = io_watch_take(w);
		int64_t wake_at = next;
		if (watch) {
			int64_t h = (int64_t)mr__now_ns() + (int64_t)mr__io_handoff_ns;
			if (next < 0 || h < next)
				next = h;
		}
		/* The counters: since when, before the state says PARKED. */
		uint64_t since = mr__now_ns();
		/* The next tree may be coarse: its first join looks at the
		 * clock, and the countdown grows back if it is fine. */
		w->beat_n = w->ls.beat = 1;
		MR__STAT_ADD(w->st, parks, 1);
		MR__STAT_SET(w->st, parked_since_ns, since);
		scx_state(w, MR__SCX_PARKED);
		/* seq_cst: pairs with the destroyer's store of `draining`. */
		if (atomic_fetch_add_explicit(&rt->nasleep, 1, memory_order_seq_cst) + 1 ==
		    rt->nworkers) {
			maybe_quiesced(rt);
			stuck_look(rt, MR__STUCK_ASLEEP);
		}
		MR_PROBE1(worker_park, w->idx);
		uint32_t tok = wait_token(w, next, true);
		if (watch)
			io_unwatch(w);
		MR_PROBE2(worker_wake, w->idx, tok);
		MR__STAT_SET(w->st, parked_since_ns, 0);
		MR__STAT_ADD(w->st, park_ns, mr__now_ns() - since);
		if (tok != MR__TOK_NONE)
			MR__STAT_ADD(w->st, wakeups_received, 1);
		/* seq_cst: pairs with the loads of drain_state(), which must not
		 * see us asleep once we run again. */
		atomic_fetch_sub_explicit(&rt->nasleep, 1, memory_order_seq_cst);
		if (tok != MR__TOK_NONE) {
			if (tok == MR__TOK_WORK)
				w->searching = true; /* the waker counted us in nsearching */
			return;
		}
		/*
		 * Woken by the watch's timeout alone (no timer of ours due, no
		 * fiber readied by our ring): rescue a stuck worker from here,
		 * and sleep again, still idle, if that is all. Searching (the
		 * worker loop) would ask the busy worker to share its fibers
		 * every mr__io_handoff_ns and take a CPU from it for the spin:
		 * HTTP hello beside wrk on 2 CPUs had its p99 at 1.9-3.5 ms
		 * that way, against 0.4-0.6 ms with no watcher. A waker
		 * meanwhile finds our bit set and wakes us as before.
		 */
		if (watch && (wake_at < 0 || (int64_t)mr__now_ns() < wake_at) &&
		    mr__deque_private_len(&w->dq) == 0 && !io_handoff(w))
			continue;
		if (unidle(w, bit))
			return; /* timed out: fire the timers, run what we rescued */
		break;
	}
	MR__STAT_ADD(w->st, wakeups_received, 1);
	if (wait_token(w, -1, false) == MR__TOK_WORK)
		w->searching = true;
}

/* Local work outside the deque: due timers (they ready fibers onto the
 * deque), then fibers that yielded - after the injector: fibers that yield
 * in a loop must not keep work from outside waiting for ever. */
static struct mr__job *local_more(struct mr__worker *w)
{
	if (atomic_load_explicit(&w->tnext, memory_order_relaxed) >= 0) {
		mr__timers_run(w);
		struct mr__job *job = mr__deque_pop(&w->dq);
		if (job)
			return job;
	}
	if (w->yield_head) {
		struct mr__job *job = inj_pop(w->rt);
		if (job) {
			MR__STAT_ADD(w->st, injector_pops, 1);
			return job;
		}
	}
	return mr__yield_pop(w);
}

void mr__work_until(struct mr__worker *w, bool (*done)(void *), void *arg)
{
	/* We may search and sleep: latent joins of the context that waits
	 * (a group wait inside a()) must not hide from the other workers
	 * meanwhile. Nothing to do for a stolen join (all below it are
	 * promoted already). */
	mr__promote_all(w);
	w->pinned++; /* the jobs we run here must not park a fiber we run on */
	bool woke = false; /* parked since the last job */
	for (;;) {
		if (done(arg)) {
			stop_searching(w, true);
			w->pinned--;
			return;
		}
		struct mr__job *job = mr__pop_sharing(w);
		const struct mr__io_ops *io = mr__worker_io(w);
		bool tick = job && ++w->io_tick >= MR__IO_INTERVAL;
		if (tick || !job)
			w->io_tick = 0;
		/* Submit what our fibers queued, once per round (when the deque
		 * runs dry) or every MR__IO_INTERVAL jobs, and ready the fibers
		 * whose I/O completed: CPU work must not starve them. */
		if (unlikely(io) && (tick || !job) && io->poll(w) && !job)
			job = mr__pop_sharing(w);
		/* Nor the other threads on our CPU (sched.h). */
		if (tick)
			mr__cpu_yield_due(w, mr__cycles());
		if (!job)
			job = local_more(w);
		if (!job)
			job = search(w, done, arg);
		if (job) {
			/* Stop counting as a searcher before running it, wherever it
			 * came from (a worker woken to search may find work in its
			 * own deque or local queues): a job that blocks this thread
			 * or runs long would keep every notify relying on us. */
			stop_searching(w, true);
			scx_state(w, MR__SCX_RUNNING);
			if (unlikely(woke)) {
				/* Back to work after a park, with I/O of ours in
				 * flight: the others parked while we were idle and
				 * do not watch; one should, should this job run
				 * long. Not at every wake-up: a watcher's own wake
				 * would wake the next one, for ever. */
				woke = false;
				if (unlikely(io) && io->rescue &&
				    atomic_load_explicit(&w->io_inflight, memory_order_relaxed))
					mr__io_watch_check(w);
			}
			mr__job_run(w, job);
			continue;
		}
		if (done(arg)) {
			stop_searching(w, true);
			w->pinned--;
			return;
		}
		if (local_pending(w)) {
			stop_searching(w, false);
			continue;
		}
		mr__inside_enter(); /* a handler's mr_go would strand its fiber here */
		park(w, done, arg);
		mr__inside_leave();
		woke = true;
	}
}

static bool rt_exiting(void *arg)
{
	struct mr_runtime *rt = arg;
	return atomic_load_explicit(&rt->exiting, memory_order_acquire);
}

static void *worker_main(void *arg)
{
	struct mr__worker *w = arg;
	char name[16];

	snprintf(name, sizeof(name), "moirai-w%u", w->idx);
	pthread_setname_np(pthread_self(), name);
	w->tid = (pid_t)syscall(SYS_gettid);
	MR__STAT_SET(w->st, tid, (int32_t)w->tid);
	MR__STAT_SET(w->st, start_ns, mr__now_ns());
	scx_state(w, MR__SCX_RUNNING);
	mr__tls_worker = w;
	mr__tls_lstack = &w->ls;
	mr__place_thread_start(w);
	mr__fiber_thread_start(w); /* the overflow handler knows our stack */
	mr__scx_worker_start(w);
	atomic_fetch_add_explicit(&mr__nthreads_internal, 1, memory_order_seq_cst);
	mr__work_until(w, rt_exiting, w->rt);
	atomic_fetch_sub_explicit(&mr__nthreads_internal, 1, memory_order_seq_cst);
	stop_searching(w, false);
	mr__scx_worker_exit(w);
	mr__fiber_thread_exit(w);
	MR__STAT_SET(w->st, state, MR_WSTATE_EXITED);
	MR__STAT_SET(w->st, tid, 0);
	mr__tls_worker = NULL;
	mr__tls_lstack = (struct mr__lstack *)&lstack_none;
	return NULL;
}

/* ---- running from outside ---------------------------------------------- */

struct outside_job {
	struct mr__job hdr;
	void (*fn)(void *);
	void *arg;
	_Atomic uint32_t state; /* 0 running, 1 done, 2 done-waiter sleeps */
};

static void outside_exec(struct mr__job *job, struct mr__worker *w)
{
	struct outside_job *j = (struct outside_job *)job;

	(void)w;
	j->fn(j->arg);
	/* release: the waiter sees fn's effects. After this store j may be
	 * gone; the wake below uses only its address. */
	if (atomic_exchange_explicit(&j->state, 1, memory_order_acq_rel) == 2)
		mr__futex_wake(&j->state, 1);
}

void mr__run_outside(struct mr_runtime *rt, void (*fn)(void *), void *arg)
{
	struct outside_job j = { .hdr.exec = outside_exec, .fn = fn, .arg = arg };
	uint32_t s;

	atomic_init(&j.state, 0);
	mr__inject(rt, &j.hdr);
	for (unsigned i = 0; i < 256; i++) {
		if (atomic_load_explicit(&j.state, memory_order_acquire) == 1)
			return;
		mr__cpu_relax();
	}
	s = 0;
	if (!atomic_compare_exchange_strong_explicit(&j.state, &s, 2, memory_order_acq_rel,
						     memory_order_acquire))
		return; /* done meanwhile */
	while (atomic_load_explicit(&j.state, memory_order_acquire) != 1)
		mr__futex_wait(&j.state, 2);
}

/*
 * From a worker of another runtime: the caller's worker must not simply
 * sleep (its private work - deque, yielded fibers, timers - would wait for
 * the call, and whatever the call waits for may be among it). It runs its
 * own runtime's work until fn has returned, as a stolen mr_join half does,
 * and the worker of rt that ran fn wakes it by name. That wake touches the
 * waiting worker and the job after the job is done: the waiter returns only
 * once the waker says it is out (waker_out), so that neither its frame nor
 * its runtime (which a fiber of it could destroy next) goes away under it.
 */
#define FOREIGN_DONE ((uintptr_t)1)

struct foreign_job {
	struct mr__job hdr;
	void (*fn)(void *);
	void *arg;
	_Atomic uintptr_t state;    /* 0 running, FOREIGN_DONE, or the waiting worker */
	_Atomic uint32_t waker_out; /* the waker no longer touches the job nor the waiter */
};

static void foreign_exec(struct mr__job *job, struct mr__worker *w)
{
	struct foreign_job *j = (struct foreign_job *)job;

	(void)w;
	j->fn(j->arg);
	/* seq_cst: pairs with the waiter's CAS in run_from_worker() and with
	 * its idle-bit RMW, fence and look at state before it sleeps (park()). */
	uintptr_t old = atomic_exchange_explicit(&j->state, FOREIGN_DONE, memory_order_seq_cst);
	if (old == 0)
		return; /* it has not waited: it sees DONE at its CAS; j may be gone */
	mr__wake_worker((struct mr__worker *)old, MR__TOK_LATCH);
	/* release: pairs with the acquire load in run_from_worker(); after it
	 * j may be gone. */
	atomic_store_explicit(&j->waker_out, 1, memory_order_release);
}

static bool foreign_done(void *arg)
{
	struct foreign_job *j = arg;
	/* acquire: pairs with the exchange in foreign_exec(): fn's effects. */
	return atomic_load_explicit(&j->state, memory_order_acquire) == FOREIGN_DONE;
}

static void run_from_worker(struct mr__worker *self, struct mr_runtime *rt, void (*fn)(void *),
			    void *arg)
{
	struct foreign_job j = { .hdr.exec = foreign_exec, .fn = fn, .arg = arg };
	uintptr_t expect = 0;

	atomic_init(&j.state, 0);
	atomic_init(&j.waker_out, 0);
	mr__inject(rt, &j.hdr);
	/* Name ourselves for the wake-up; if fn returned already, done. */
	if (!atomic_compare_exchange_strong_explicit(&j.state, &expect, (uintptr_t)self,
						     memory_order_seq_cst, memory_order_acquire))
		return;
	mr__work_until(self, foreign_done, &j);
	/* acquire: pairs with the release in foreign_exec(). A few
	 * instructions and one futex wake at most, unless it is preempted. */
	while (!atomic_load_explicit(&j.waker_out, memory_order_acquire))
		sched_yield();
}

/*
 * Fork. Only the calling thread goes on in the child, so a lock that
 * another thread held at the fork stays held there for ever. Every
 * library lock a child can reach is one of:
 *  - taken across the fork (prepare, then released in the parent and in
 *    the child, which holds it as the forking thread did): the scheduler
 *    registration lock (scx.c), registry_lock and the stack pool's lock
 *    (stack.c). They guard state the child keeps using (the opened BPF
 *    maps, the list of runtimes it walks below, the free stacks), so it
 *    must be consistent, not half-updated by a thread that is gone. None
 *    is taken while another library lock is held, so the prepare handler
 *    cannot deadlock against a thread of the library; each is held for a
 *    few system calls at most (the pool's while it maps and guards a
 *    chunk), which is what a fork may wait.
 *  - re-initialised in the child: default_lock (held across a whole
 *    runtime creation, thread starts included; the child forgets the
 *    default runtime anyway), and the locks of every inherited runtime:
 *    its injector and job pool mutexes and its workers' timer locks. The
 *    child cannot use those runtimes (none of their workers exists), but
 *    it reaches their locks when it wakes, through an object it shares
 *    with the parent's fibers, a fiber that waited there: the wake-up then
 *    goes nowhere instead of spinning or sleeping for ever.
 * The per-object spinlocks (a channel's, a sync object's wait queue, a
 * group's) cannot be reached from here: an object that another thread
 * used at the fork may stay locked in the child (<moirai/fiber.h> says so).
 * The handlers are registered by a constructor, before any library lock
 * can be taken: a fork that raced with the first registration could leave
 * a lock held.
 *
 * A forked child has none of its parent's worker threads: every runtime it
 * inherited is dead. Forget them (their memory is the parent's business) so
 * that the child gets a fresh default runtime and naming an inherited one
 * aborts with a clear message instead of hanging.
 *
 * The calling thread is no worker in the child. When it forked from a
 * fiber, the child goes on as that fiber (mr_fiber_self(), a mutex it
 * holds, its stack and the overflow message) but on no worker:
 * mr__fiber_parkable() says NULL without a worker, so every blocking call
 * blocks the thread; the note of a fiber readied onto the dead worker's
 * deque (mr__tls_held) is dropped; `pinned` lived in the worker.
 */
static void atfork_prepare(void)
{
	mr__scx_atfork_prepare();
	pthread_mutex_lock(&registry_lock);
	mr__stack_atfork_prepare();
}

static void atfork_parent(void)
{
	mr__stack_atfork_release();
	pthread_mutex_unlock(&registry_lock);
	mr__scx_atfork_release();
}

static void atfork_child(void)
{
	mr__stack_atfork_release();
	mr__scx_atfork_release();
	for (struct mr_runtime *rt = registry; rt; rt = rt->next_live) {
		pthread_mutex_init(&rt->inj_lock, NULL);
		pthread_mutex_init(&rt->pool_lock, NULL);
		for (unsigned i = 0; i < rt->nworkers; i++)
			/* relaxed: the child is the only thread. */
			atomic_store_explicit(&rt->workers[i]->tlock, 0, memory_order_relaxed);
	}
	registry = NULL;
	pthread_mutex_unlock(&registry_lock);
	pthread_mutex_init(&default_lock, NULL);
	atomic_store_explicit(&default_rt, NULL, memory_order_relaxed);
	mr__tls_worker = NULL;
	mr__tls_lstack = (struct mr__lstack *)&lstack_none;
	mr__tls_held = 0;
}

__attribute__((constructor)) static void atfork_install(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* ---- creation and destruction ------------------------------------------ */

/*
 * MOIRAI_STACK: bytes, or KiB, MiB, GiB with a K, M or G suffix. 0 and
 * *out untouched when unset; -EINVAL when it is not a size.
 */
static int env_stack(size_t *out)
{
	const char *s = getenv("MOIRAI_STACK");
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (!s || !*s)
		return 0;
	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	}
	if (errno || *end || v == 0 || v > (SIZE_MAX >> shift))
		return -EINVAL;
	*out = (size_t)v << shift;
	return 0;
}

/*
 * The workers' thread attributes: the stack size (0: the system default)
 * and a guard of the size fibers get (fiber.h), which
 * mr__fiber_thread_start() finds again for the overflow handler.
 */
static int worker_attr(pthread_attr_t *attr, size_t stack)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	int r = pthread_attr_init(attr);

	if (r)
		return r;
	if (stack)
		r = pthread_attr_setstacksize(attr, (stack + ps - 1) & ~(ps - 1));
	if (!r)
		r = pthread_attr_setguardsize(attr, mr__stack_guard(ps));
	if (r)
		pthread_attr_destroy(attr);
	return r;
}

static void free_runtime(struct mr_runtime *rt)
{
	if (rt->workers) {
		for (unsigned i = 0; i < rt->nworkers; i++)
			if (rt->workers[i]) {
				mr__deque_fini(&rt->workers[i]->dq);
				mr__timers_fini(rt->workers[i]);
				/* Here, not at the worker's exit: a waker may
				 * still be in give_token() then. */
				const struct mr__io_ops *io = mr__worker_io(rt->workers[i]);
				if (io)
					io->fini(rt->workers[i]);
				free(rt->workers[i]);
			}
		free(rt->workers);
	}
	mr__pool_fini(rt);
	mr__metrics_close(&rt->metrics);
	free(rt->idle_mask);
	free(rt->node_workers);
	free(rt->node_members);
	free(rt->cpus);
	pthread_mutex_destroy(&rt->inj_lock);
	pthread_mutex_destroy(&rt->pool_lock);
	rt->magic = 0;
	free(rt);
}

static void stop_workers(struct mr_runtime *rt, unsigned started)
{
	atomic_store_explicit(&rt->exiting, 1, memory_order_seq_cst);
	/* Wake every sleeper; a worker that is awake sees `exiting` before it
	 * sleeps again (park() looks at it after setting its bit). */
	while (wake_any(rt, MR__TOK_EXIT, 0, NULL))
		;
	for (unsigned i = 0; i < started; i++)
		pthread_join(rt->workers[i]->thread, NULL);
}

mr_runtime_t *mr_runtime_create(const struct mr_config *cfg)
{
	unsigned nworkers = 0, dlog2 = MR__DEFAULT_DEQUE_LOG2, spin = MR__DEFAULT_SPIN_US;
	unsigned pin = MR_PIN_DEFAULT;
	const void *cpus = NULL;
	size_t cpus_size = 0;
	cpu_set_t *set;
	size_t set_size;
	size_t stack = 0;
	pthread_attr_t attr;
	struct mr_runtime *rt;
	int err = ENOMEM;

	if (cfg) {
		if (cfg->sz < offsetof(struct mr_config, workers) + sizeof(cfg->workers)) {
			errno = EINVAL;
			return NULL;
		}
		nworkers = cfg->workers;
#define MR_HAS(f) (cfg->sz >= offsetof(struct mr_config, f) + sizeof(cfg->f))
		if (MR_HAS(deque_log2) && cfg->deque_log2)
			dlog2 = cfg->deque_log2;
		if (MR_HAS(spin_us) && cfg->spin_us)
			spin = cfg->spin_us;
		if (MR_HAS(cpus_size)) {
			cpus = cfg->cpus;
			cpus_size = cfg->cpus_size;
		}
		if (MR_HAS(pin))
			pin = cfg->pin;
		if (MR_HAS(stack_size))
			stack = cfg->stack_size;
#undef MR_HAS
	}
	if (nworkers > MR_MAX_WORKERS || dlog2 < 6 || dlog2 > 24 || pin > MR_PIN_HOME ||
	    (!stack && env_stack(&stack) < 0) || (stack && stack < (size_t)PTHREAD_STACK_MIN)) {
		errno = EINVAL;
		return NULL;
	}
	err = -mr__place_cpus(cpus, cpus_size, &set, &set_size);
	if (err) {
		errno = err;
		return NULL;
	}
	err = ENOMEM;
	if (nworkers == 0)
		nworkers = (unsigned)CPU_COUNT_S(set_size, set);
	if (nworkers > MR_MAX_WORKERS)
		nworkers = MR_MAX_WORKERS;

	rt = aligned_alloc(MR_CACHELINE, sizeof(*rt));
	if (!rt) {
		free(set);
		goto fail;
	}
	memset(rt, 0, sizeof(*rt));
	rt->magic = MR__RT_MAGIC;
	rt->cpus = set;
	rt->cpus_size = set_size;
	/* Pinned only when asked (MR_PIN_HOME). Pinning wins on a machine
	 * the runtime has to itself (the kernel may leave two workers on one
	 * CPU for milliseconds: tools/bench/placement.c), and loses as soon as
	 * anything else runs there: a pinned worker cannot move away from a
	 * busy CPU. The HTTP benchmark, whose load generator shares the 2
	 * CPUs, ran at 45k req/s with p99 5 ms pinned, 79k and 2.6 ms not. */
	rt->pin = pin == MR_PIN_HOME;
	rt->nworkers = nworkers;
	rt->spin_ns = (uint64_t)spin * 1000;
	rt->deque_log2 = dlog2;
	pthread_mutex_init(&rt->inj_lock, NULL);
	pthread_mutex_init(&rt->pool_lock, NULL);
	atomic_init(&rt->nactive, nworkers);
	rt->idle_words = (nworkers + 63) / 64;
	rt->idle_mask = calloc(rt->idle_words, sizeof(*rt->idle_mask));
	rt->workers = calloc(nworkers, sizeof(*rt->workers));
	if (!rt->idle_mask || !rt->workers)
		goto fail_free;
	rt->id = atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed) + 1;
	mr__beat_init();
	if (mr__metrics_open(&rt->metrics, rt->id, nworkers) < 0)
		goto fail_free;
	for (unsigned i = 0; i < nworkers; i++) {
		struct mr__worker *w = aligned_alloc(MR_CACHELINE, sizeof(*w));
		if (!w)
			goto fail_free;
		memset(w, 0, sizeof(*w));
		rt->workers[i] = w;
		if (mr__deque_init(&w->dq, dlog2, 0) < 0)
			goto fail_free;
		w->rt = rt;
		w->st = &rt->metrics.recs[i];
		w->idx = i;
		w->ls.beat = w->beat_n = 1; /* grows to suit (join.c) */
		atomic_init(&w->tnext, -1);
		w->rng = 0x9E3779B97F4A7C15ull * (i + 1) ^ (uint64_t)(uintptr_t)rt;
		if (!w->rng)
			w->rng = 1;
	}
	if (mr__place_init(rt) < 0)
		goto fail_free;
	mr__scx_runtime_init(rt);
	int r = worker_attr(&attr, stack);
	if (r) {
		err = r;
		goto fail_free;
	}
	for (unsigned i = 0; i < nworkers; i++) {
		r = pthread_create(&rt->workers[i]->thread, &attr, worker_main, rt->workers[i]);
		if (r) {
			stop_workers(rt, i);
			err = r == EAGAIN ? EAGAIN : r;
			pthread_attr_destroy(&attr);
			goto fail_free;
		}
	}
	pthread_attr_destroy(&attr);
	for (unsigned i = 0; i < nworkers; i++) {
		r = mr__place_worker(rt, rt->workers[i]);
		if (r) {
			/* A CPU of the set that we may not use. */
			stop_workers(rt, nworkers);
			err = r == ENOMEM ? ENOMEM : EINVAL;
			goto fail_free;
		}
	}
	registry_add(rt);
	return rt;

fail_free:
	free_runtime(rt);
fail:
	errno = err;
	return NULL;
}

static bool drained(void *arg)
{
	return drain_state(arg) != DRAIN_BUSY;
}

/* Wait until drain_state() says DONE or STUCK; return which. */
static int wait_drained(struct mr_runtime *rt, struct mr__worker *self)
{
	for (;;) {
		uint32_t seq = atomic_load_explicit(&rt->quiesced, memory_order_seq_cst);
		int st = drain_state(rt);
		if (st != DRAIN_BUSY)
			return st;
		if (self)
			mr__work_until(self, drained, rt);
		else
			mr__futex_wait(&rt->quiesced, seq);
	}
}

int mr_runtime_destroy(mr_runtime_t *rt)
{
	struct mr__worker *self = mr__self();
	bool was_default = false;

	mr__check_live(rt, "mr_runtime_destroy");
	if (self && self->rt == rt)
		return -EDEADLK;
	if (!registry_remove(rt))
		mr__die("mr_runtime_destroy", "runtime %p is not alive", (void *)rt);
	mr__lock(&default_lock);
	if (atomic_load(&default_rt) == rt) {
		atomic_store(&default_rt, NULL);
		was_default = true;
	}
	mr__unlock(&default_lock);

	/* A worker of another runtime runs its own work while it waits (its
	 * private work may be what rt waits for): maybe_quiesced() wakes it.
	 * seq_cst: before `draining`, see there. */
	if (self)
		atomic_store_explicit(&rt->destroyer, self, memory_order_seq_cst);
	/* seq_cst: pairs with the worker's RMW of nactive / nasleep and its
	 * load of `draining` in maybe_quiesced(). */
	atomic_store_explicit(&rt->draining, 1, memory_order_seq_cst);
	if (wait_drained(rt, self) == DRAIN_STUCK) {
		/* Fibers parked for good, as far as rt can tell: say so rather
		 * than hang, and leave rt as it was. */
		/* seq_cst: pair with maybe_quiesced()'s loads of draining and
		 * destroyer after its RMW of nwaking: one that has not counted
		 * itself by our load of nwaking sees NULL. */
		atomic_store_explicit(&rt->draining, 0, memory_order_seq_cst);
		atomic_store_explicit(&rt->destroyer, NULL, memory_order_seq_cst);
		/* A maybe_quiesced() that saw us may still be waking us. */
		while (atomic_load_explicit(&rt->nwaking, memory_order_seq_cst))
			sched_yield();
		registry_add(rt);
		if (was_default) {
			mr__lock(&default_lock);
			if (!atomic_load(&default_rt))
				atomic_store(&default_rt, rt);
			mr__unlock(&default_lock);
		}
		return -EBUSY;
	}

	stop_workers(rt, rt->nworkers);
	/* A thread outside rt that queued the last fiber's wake-up may still
	 * be notifying: a few hundred ns. acquire: pairs with its release. */
	while (atomic_load_explicit(&rt->ninjecting, memory_order_acquire))
		sched_yield();
	free_runtime(rt);
	return 0;
}

int mr_runtime_install(mr_runtime_t *rt, void (*fn)(void *), void *arg)
{
	struct mr__worker *self = mr__self();

	mr__check_live(rt, "mr_runtime_install");
	if (!fn)
		return -EINVAL;
	if (self && self->rt == rt) {
		fn(arg);
		return 0;
	}
	if (self)
		run_from_worker(self, rt, fn, arg);
	else
		mr__run_outside(rt, fn, arg);
	return 0;
}

/* MOIRAI_WORKERS, or 0 when unset; -1 when it is not a worker count. */
static long env_workers(void)
{
	const char *s = getenv("MOIRAI_WORKERS");
	char *end;
	unsigned long v;

	if (!s || !*s)
		return 0;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > MR_MAX_WORKERS)
		return -1;
	return (long)v;
}

/* MOIRAI_PIN: unset or empty: MR_PIN_DEFAULT, "0": NONE, "1": HOME; -1: bad. */
static int env_pin(void)
{
	const char *s = getenv("MOIRAI_PIN");

	if (!s || !*s)
		return MR_PIN_DEFAULT;
	if (!strcmp(s, "0"))
		return MR_PIN_NONE;
	if (!strcmp(s, "1"))
		return MR_PIN_HOME;
	return -1;
}

/* The default runtime's configuration comes from the environment. */
static struct mr_runtime *create_default(void)
{
	long n = env_workers();
	int pin = env_pin();

	if (n < 0 || pin < 0) {
		errno = EINVAL;
		return NULL;
	}
	MR_OPTS(mr_config, cfg, .workers = (unsigned)n, .pin = (unsigned)pin);
	return mr_runtime_create(&cfg);
}

__attribute__((noinline)) struct mr__worker *mr__self_fresh(void)
{
	struct mr__worker *w = mr__self();

	__asm__ volatile("" : "+r"(w));
	return w;
}

struct mr_runtime *mr__default_runtime_peek(void)
{
	/* acquire: pairs with the release that published it. */
	return atomic_load_explicit(&default_rt, memory_order_acquire);
}

struct mr_runtime *mr__default_runtime_try(void)
{
	struct mr_runtime *rt = atomic_load_explicit(&default_rt, memory_order_acquire);
	int err = 0;

	if (likely(rt))
		return rt;
	mr__lock(&default_lock);
	rt = atomic_load_explicit(&default_rt, memory_order_relaxed);
	if (!rt) {
		rt = create_default();
		if (rt)
			atomic_store_explicit(&default_rt, rt, memory_order_release);
		else
			err = errno;
	}
	mr__unlock(&default_lock);
	if (!rt)
		errno = err;
	return rt;
}

struct mr_runtime *mr__default_runtime(const char *call)
{
	struct mr_runtime *rt = mr__default_runtime_try();

	if (likely(rt))
		return rt;
	if (env_workers() < 0)
		mr__die(call,
			"cannot create the default runtime: MOIRAI_WORKERS=\"%s\" is not a "
			"worker count (0..%u)",
			getenv("MOIRAI_WORKERS"), MR_MAX_WORKERS);
	if (env_pin() < 0)
		mr__die(call, "cannot create the default runtime: MOIRAI_PIN=\"%s\" is not 0 or 1",
			getenv("MOIRAI_PIN"));
	mr__die(call, "cannot create the default runtime: %s", strerror(errno));
}

mr_runtime_t *mr_runtime_default(void)
{
	return mr__default_runtime_try();
}

mr_runtime_t *mr_runtime_current(void)
{
	struct mr__worker *w = mr__self();
	return w ? w->rt : NULL;
}

unsigned mr_runtime_workers(const mr_runtime_t *rt)
{
	mr__check_live(rt, "mr_runtime_workers");
	return rt->nworkers;
}

int mr_worker_index(void)
{
	struct mr__worker *w = mr__self();
	return w ? (int)w->idx : -1;
}

/* ---- deadlock checks (fiber/dump.c) -------------------------------------------- */

_Atomic int mr__nthreads_internal, mr__nthreads_blocked;
void (*_Atomic mr__stuck_hook)(struct mr_runtime *rt, int why);

/* The last worker went to sleep, or every one is blocked in a job and
 * asleep: let the deadlock check look (never on a fast path). */
static void stuck_look(struct mr_runtime *rt, int why)
{
	void (*hook)(struct mr_runtime *, int) =
		atomic_load_explicit(&mr__stuck_hook, memory_order_relaxed);

	if (hook && !atomic_load_explicit(&rt->draining, memory_order_relaxed) &&
	    !atomic_load_explicit(&rt->exiting, memory_order_relaxed))
		hook(rt, why);
}

void mr__stuck_poke(struct mr_runtime *rt)
{
	bool look = false;

	/* rt may be destroyed once the fiber we wait for returns: look only
	 * at a live one, counted in ninjecting (under the registry lock,
	 * which destroy takes to unlist rt before it waits for ninjecting to
	 * drop to 0). seq_cst: the nasleep load after the caller's count in
	 * mr__nthreads_blocked; pairs with the sleeper's increment of nasleep
	 * before its look. */
	mr__lock(&registry_lock);
	for (struct mr_runtime *r = registry; r; r = r->next_live)
		if (r == rt) {
			look = atomic_load_explicit(&rt->nasleep, memory_order_seq_cst) ==
			       rt->nworkers;
			break;
		}
	if (look)
		atomic_fetch_add_explicit(&rt->ninjecting, 1, memory_order_seq_cst);
	mr__unlock(&registry_lock);
	if (!look)
		return;
	stuck_look(rt, MR__STUCK_ASLEEP);
	/* release: pairs with the acquire in mr_runtime_destroy(). */
	atomic_fetch_sub_explicit(&rt->ninjecting, 1, memory_order_release);
}

void mr__stuck_poke_all(void)
{
	struct mr_runtime *look[16];
	size_t n = 0;

	/* As mr__stuck_poke(), for the first runtimes (16 is plenty: a look
	 * at one with its workers awake says nothing anyway). */
	mr__lock(&registry_lock);
	for (struct mr_runtime *r = registry; r && n < 16; r = r->next_live)
		if (atomic_load_explicit(&r->nasleep, memory_order_seq_cst) == r->nworkers) {
			atomic_fetch_add_explicit(&r->ninjecting, 1, memory_order_seq_cst);
			look[n++] = r;
		}
	mr__unlock(&registry_lock);
	for (size_t i = 0; i < n; i++) {
		stuck_look(look[i], MR__STUCK_ASLEEP);
		/* release: pairs with the acquire in mr_runtime_destroy(). */
		atomic_fetch_sub_explicit(&look[i]->ninjecting, 1, memory_order_release);
	}
}

bool mr__rt_stuck(struct mr_runtime *rt)
{
	return drain_state(rt) == DRAIN_STUCK;
}

bool mr__others_idle(struct mr_runtime *rt)
{
	bool idle = true;

	mr__lock(&registry_lock);
	for (struct mr_runtime *r = registry; r && idle; r = r->next_live)
		if (r != rt && drain_state(r) == DRAIN_BUSY)
			idle = false;
	mr__unlock(&registry_lock);
	return idle;
}

void mr__runtime_each(void (*fn)(struct mr_runtime *rt, void *arg), void *arg)
{
	mr__lock(&registry_lock);
	for (struct mr_runtime *r = registry; r; r = r->next_live)
		fn(r, arg);
	mr__unlock(&registry_lock);
}
