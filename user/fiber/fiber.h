/*
 * fiber.h - fibers' private interface: the control block, parking and
 * readying, per-worker timers, and the waiter that sync objects queue.
 *
 * Switching is asymmetric. A worker that pops a runnable fiber's job header
 * resumes it: it switches from its current context (its thread stack, or
 * the stack of a fiber that is helping while it waits in mr_join) into the
 * fiber, and the fiber, when it parks, yields or returns, switches back to
 * exactly that context. A running fiber therefore never changes threads;
 * a parked one resumes wherever a worker pops it.
 *
 * Parking without a race: a fiber must not become runnable (and be resumed
 * by another worker) before its registers are saved. So a fiber that parks
 * does not publish itself; it hands a commit function to the context that
 * resumed it, which calls it after the switch (typically: release the lock
 * that protects the wait list the fiber just joined). If commit returns
 * false, the wait is already over and the fiber is made runnable again.
 * One commit, "put me in this word if it is empty" (a rendezvous
 * channel's waiter), is built in: mr__fiber_park_in() runs it without a
 * call through a pointer.
 */
#ifndef MR_FIBER_FIBER_H
#define MR_FIBER_FIBER_H

#include <time.h>

#include <moirai/fiber.h>

#include "../sched/sched.h"

/*
 * The guard below every fiber stack: 64 KiB (at least a page). Code built
 * with -fstack-clash-protection touches the stack at least once per probe
 * interval, which GCC sets to 4 KiB on x86-64 but to 64 KiB on aarch64 (its
 * --param stack-clash-protection-guard-size=16): an aarch64 frame of up to
 * 64 KiB moves the stack pointer without a probe, so a smaller guard lets it
 * land in the stack below (the neighbour's control block sits at its top).
 * On x86-64 the same 64 KiB also catches frames of code built without the
 * flag up to that size (buffers of 4-64 KiB are common). A guard costs
 * address space and page-table entries, never resident pages.
 */
#define MR__STACK_GUARD ((size_t)64 * 1024)

static inline size_t mr__stack_guard(size_t page)
{
	return page > MR__STACK_GUARD ? page : MR__STACK_GUARD;
}

struct mr__stack {
	void *base;   /* lowest usable address (the guard is just below) */
	size_t size;  /* usable bytes */
	bool pooled;  /* a default-size stack from a shared chunk */
};

#if defined(__SANITIZE_THREAD__)
#define MR__TSAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MR__TSAN_BUILD 1
#endif
#endif

/*
 * Cancellation (mr_fiber_cancel). A wait that can report -ECANCELED arms
 * a hook on its fiber (mr__cancel_arm) while it holds the lock that keeps
 * wakers out until the fiber has switched out (a wait queue's, the
 * channels', or in a park's commit); the canceller sets MR__CANCEL_REQ,
 * then, under the fiber's cancel_lock, calls the armed hook, which claims
 * the wait the way a deadline's timer does (whoever unqueues the waiter
 * decides) and readies the fiber. The fiber disarms (clears the hook,
 * then waits while cancel_lock is held) before its wait's memory goes: a
 * canceller in the hook holds that lock, so the waiter outlives it. Lock
 * order: cancel_lock, then the lock the hook takes.
 *
 * A hook runs through mr__cancel_hook_run(), counted, and must look at
 * its waiter's state before it touches the object waited on: a waker
 * that claimed the waiter may have let the object be destroyed (a
 * channel's last receiver may destroy it at once). The object's destroy
 * calls mr__cancel_hooks_quiesce() first, which waits out the hooks that
 * saw the waiter still waiting.
 *
 * Three store-then-load pairs (Dekker) make it work, each with a fiber's
 * side, which every cancellable wait runs, and the canceller's, which
 * runs once per mr_fiber_cancel():
 *  - arm: store the hook, load the request / canceller: set the request,
 *    load the hook (either the fiber sees the request or the canceller
 *    the hook);
 *  - an armed park's commit: put the fiber in the word, load the request
 *    / canceller: set the request, the hook looks in the word;
 *  - disarm: clear the hook, load cancel_lock / canceller: take
 *    cancel_lock, load the hook (either the fiber sees the canceller
 *    inside and waits it out, or the canceller sees no hook).
 * The fiber's side orders its store before its load with
 * mr__cancel_fence(): a compiler barrier when the process registered for
 * membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED), whose call on the
 * canceller's side (cancel_fence_heavy() in fiber.c) puts a full barrier
 * into every running thread of the process; else a seq_cst fence on both
 * sides. The fast side then costs no fence and no RMW; a cancel costs a
 * system call and an IPI to each CPU running a thread of the process.
 */
struct mr__cancel_hook {
	void (*fn)(struct mr__cancel_hook *h);
};

#define MR__CANCEL_REQ 1u

/*
 * What a fiber waits on, for mr_runtime_dump() and the deadlock check
 * (dump.c). Each kind of wait notes its kind, object and deadline with
 * mr__wait_note() before it parks; the park itself notes the state and the
 * time (a coarse clock: a few ns, and a dump needs milliseconds). Readying
 * and resuming note the state only: a clock read there cost a channel
 * ping-pong a measurable share of its round trip. Plain
 * relaxed stores by the fiber itself; a dump reads them racily (a fiber
 * that runs meanwhile shows a stale line, never a crash).
 */
enum mr__wait_kind {
	MR__WAIT_NONE,
	MR__WAIT_CHAN,	   /* a send or receive on an in-process channel */
	MR__WAIT_SELECT,   /* mr_select over several (the first case's channel) */
	MR__WAIT_SHM,	   /* a channel of another process (shm://): external */
	MR__WAIT_MUTEX,
	MR__WAIT_COND,
	MR__WAIT_SEM,
	MR__WAIT_WG,
	MR__WAIT_EVENT,
	MR__WAIT_JOIN,	   /* mr_fiber_join: the fiber joined */
	MR__WAIT_SLEEP,	   /* mr_sleep_until */
	MR__WAIT_IO,	   /* an I/O operation (the object: its fd) */
	MR__WAIT_BLOCKING, /* a call on the blocking pool */
	MR__WAIT_KINDS
};

/* A fiber's run state (dump.c). */
enum { MR__FS_RUNNABLE, MR__FS_RUNNING, MR__FS_PARKED };

/* CLOCK_MONOTONIC_COARSE in ns: a vDSO read of the tick, no TSC. */
static inline int64_t mr__now_coarse(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct mr_fiber {
	/* Line 0: what every switch reads. */
	struct mr__job hdr; /* first: runnable fibers sit in deques as jobs */
	void *sp;	    /* saved context while not running */
	void *resumer_sp;   /* context to return to while running */
	struct mr_runtime *rt;
	struct mr__stack stack;
	/* Line 1: what a park writes, the dump fields with it (above): run
	 * state, since when (coarse ns), parks so far (a dump sees if it ran
	 * between two looks), what the last wait was on. Written by the fiber
	 * (and readiers: the state), read racily by a dump. */
	int action; /* set just before it switches out; run by the resumer */
	_Atomic uint32_t parks;
	_Atomic uint8_t run_state;
	_Atomic uint8_t wait_kind;
	bool ran;   /* has started: suspended in a switch, not at its entry */
	bool armed; /* a cancel hook is armed (the fiber, or its park's commit) */
	/* An armed park's commit still reads f (commit_park()). */
	_Atomic uint8_t committing;
	uint16_t shield; /* (owner only) the cancel shield's depth */
	bool (*commit)(void *arg);
	void *commit_arg;
	_Atomic uint64_t *pub_word; /* mr__fiber_park_in(): where to wait, */
	uint64_t pub_val;	    /* and the value that stands for us there */
	_Atomic int64_t since;
	const void *_Atomic wait_obj;
	/* Line 2 on: waits with a deadline, cancellation, joins, spawns. */
	_Atomic int64_t wait_deadline;
	/* Cancellation (above): requests, the armed hook and its lock. */
	_Atomic uint32_t cancel;
	_Atomic uint32_t cancel_lock;
	struct mr__cancel_hook *_Atomic hook;
	/* 0, DONE, DETACHED, RELEASED, or the address of the joiner's waiter. */
	_Atomic uintptr_t state;
	void (*fn)(void *);
	void *arg;
	struct mr_fiber *yield_next; /* the worker's yield queue */
	/* When an I/O completion readied it (mr__fiber_ready_io()), 0 when
	 * something else did: read by the worker whose deque holds it. */
	int64_t io_ready_ns;
	uint32_t magic;
	char name[32];
	void *tsan_fiber, *tsan_resumer;
	void *asan_fake, *asan_resumer_fake;
	const void *asan_resumer_bottom;
	size_t asan_resumer_size;
};

/* The running fiber of this thread, or NULL. */
extern __thread struct mr_fiber *mr__tls_fiber __attribute__((tls_model("initial-exec")));

static inline struct mr_fiber *mr__fiber_current(void)
{
	return mr__tls_fiber;
}

/*
 * The running fiber if it may park now; NULL for a thread, a job, a fiber
 * inside the parallel API (mr__worker.pinned), or the child of a fork from
 * a fiber (it continues that fiber on no worker: atfork_child() in
 * runtime.c): block the thread.
 */
static inline struct mr_fiber *mr__fiber_parkable(void)
{
	struct mr_fiber *f = mr__tls_fiber;
	struct mr__worker *w = mr__self();

	return f && likely(w) && !mr__pinned(w) ? f : NULL;
}

/*
 * Note what the calling context is about to wait on: kind (MR__WAIT_*),
 * the object, the deadline (-1: none). For a fiber, its record; for a job
 * or pinned fiber, which blocks its worker's thread, the worker's too (a
 * dump shows what a blocked worker waits on). Call it before the wait, on
 * the slow path only. mr__wait_note_to() is the same for a caller that
 * has read both: f the running fiber or NULL, w the worker whose thread
 * blocks or NULL.
 */
static inline void mr__wait_note_to(struct mr_fiber *f, struct mr__worker *w, unsigned kind,
				    const void *obj, int64_t deadline)
{
	if (f) {
		atomic_store_explicit(&f->wait_kind, (uint8_t)kind, memory_order_relaxed);
		atomic_store_explicit(&f->wait_obj, obj, memory_order_relaxed);
		atomic_store_explicit(&f->wait_deadline, deadline, memory_order_relaxed);
	}
	if (w) {
		atomic_store_explicit(&w->wait_kind, (uint8_t)kind, memory_order_relaxed);
		atomic_store_explicit(&w->wait_obj, obj, memory_order_relaxed);
		atomic_store_explicit(&w->wait_deadline, deadline, memory_order_relaxed);
	}
}

static inline void mr__wait_note(unsigned kind, const void *obj, int64_t deadline)
{
	struct mr_fiber *f = mr__tls_fiber;
	struct mr__worker *w = mr__self();

	/* The worker's record only when its thread blocks (a job, a pinned
	 * fiber): a fiber that parks leaves its worker free. */
	mr__wait_note_to(f, w && (!f || mr__pinned(w)) ? w : NULL, kind, obj, deadline);
}

/* The running fiber f parks (state and time for dumps, dump.c). */
static inline void mr__fiber_parking(struct mr_fiber *f)
{
	atomic_store_explicit(&f->run_state, MR__FS_PARKED, memory_order_relaxed);
	atomic_store_explicit(&f->since, mr__now_coarse(), memory_order_relaxed);
	/* Owner-only: a plain increment, no RMW. */
	atomic_store_explicit(&f->parks, atomic_load_explicit(&f->parks, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

/* Worker w starts running f (resume or transfer). */
static inline void mr__fiber_running(struct mr__worker *w, struct mr_fiber *f)
{
	atomic_store_explicit(&f->run_state, MR__FS_RUNNING, memory_order_relaxed);
	atomic_store_explicit(&w->cur, f, memory_order_relaxed);
}

/* A fiber is born (dump.c): its time, and the dump signal's thread
 * started at the process's first spawn. */
void mr__fiber_born_slow(void);
extern _Atomic bool mr__dump_signal_started;
static inline void mr__fiber_born(struct mr_fiber *f)
{
	if (unlikely(!atomic_load_explicit(&mr__dump_signal_started, memory_order_relaxed)))
		mr__fiber_born_slow();
	atomic_store_explicit(&f->since, mr__now_coarse(), memory_order_relaxed);
}

/*
 * The fiber whose control block sits at the top of the stack [base,
 * base + size), if it is a live (not yet returned) fiber of rt; NULL
 * otherwise. For dumps (dump.c), which find fibers by walking every stack
 * (mr__stack_each()) instead of keeping a list that every spawn and exit
 * would have to lock. The answer is racy: the fiber may return and its
 * stack be reused as it is read (the memory stays mapped: stack.c).
 */
struct mr_fiber *mr__fiber_on_stack(struct mr_runtime *rt, void *base, size_t size);
/* The holder of a mutex (sync/mutex.c sets it at its first wait): the
 * deadlock check follows mutex cycles with it (dump.c). */
extern uintptr_t (*_Atomic mr__mutex_owner_fn)(const void *m);

/*
 * Park the calling fiber. After the switch the resumer calls commit(arg):
 * true means parked (someone will call mr__fiber_ready() later), false
 * means resume at once. Returns once the fiber runs again.
 */
void mr__fiber_park(bool (*commit)(void *arg), void *arg, const char *call);

/*
 * mr__fiber_park() whose commit puts `val` into *word with a CAS from 0,
 * done by the resumer itself (no call through a pointer): the running
 * fiber f (from mr__fiber_parkable()) then waits in the word until whoever
 * takes `val` out of it readies it. If *word is not 0, f runs again at
 * once. The CAS is a release: it pairs with the acquire of the RMW that
 * takes val out of the word, which so sees everything f wrote before it
 * parked.
 */
void mr__fiber_park_in(struct mr_fiber *f, _Atomic uint64_t *word, uint64_t val,
		       const char *call);

/*
 * Arm h for the calling fiber f's coming wait (see struct mr__cancel_hook).
 * True if a cancel is pending and f is not shielded: the caller then does
 * not wait, undoes its queueing, disarms and returns -ECANCELED
 * (mr__cancel_take). f NULL (a thread): false.
 */
extern _Atomic bool mr__cancel_asym; /* membarrier registered (fiber.c) */
extern _Atomic uint32_t mr__cancel_fence_word;

/* Run a hook (canceller or commit), counted; and wait out running hooks
 * before an object that hooks lock is freed (above). */
void mr__cancel_hook_run(struct mr__cancel_hook *h);
void mr__cancel_hooks_quiesce(void);

/* The fiber's side of the pairs above: store, this, load. */
static inline void mr__cancel_fence(void)
{
#ifdef MR__TSAN_BUILD
	/* TSan knows no fences; an RMW orders like one on every target. */
	atomic_fetch_add_explicit(&mr__cancel_fence_word, 0, memory_order_seq_cst);
#else
	if (likely(atomic_load_explicit(&mr__cancel_asym, memory_order_relaxed)))
		atomic_signal_fence(memory_order_seq_cst);
	else
		atomic_thread_fence(memory_order_seq_cst);
#endif
}

static inline bool mr__cancel_arm(struct mr_fiber *f, struct mr__cancel_hook *h)
{
	if (!f || f->shield)
		return false;
	f->armed = true;
	/* release: h's fields go with it (the canceller loads it acquire). */
	atomic_store_explicit(&f->hook, h, memory_order_release);
	mr__cancel_fence();
	return atomic_load_explicit(&f->cancel, memory_order_relaxed) & MR__CANCEL_REQ;
}

/* The wait is over: after this no canceller touches its memory. */
void mr__cancel_disarm(struct mr_fiber *f);

/* The wait ended cancelled: the request is used up. Returns -ECANCELED. */
static inline int mr__cancel_take(struct mr_fiber *f)
{
	atomic_fetch_and_explicit(&f->cancel, ~MR__CANCEL_REQ, memory_order_relaxed);
	return -ECANCELED;
}

/* A request pending for f, which is not shielded (f: the calling fiber). */
static inline bool mr__cancel_pending(const struct mr_fiber *f)
{
	return f && !f->shield &&
	       (atomic_load_explicit(&f->cancel, memory_order_relaxed) & MR__CANCEL_REQ);
}

/* Make a parked fiber runnable: on the calling worker's deque when it is a
 * worker of the fiber's runtime, else through that runtime's injector. */
void mr__fiber_ready(struct mr_fiber *f);

/*
 * The same for a fiber whose I/O completed at `now` on the calling worker
 * (its ring or epoll, or a peer's it rescued): a fiber of the worker that
 * keeps its node's connections stays private there until that worker falls
 * behind (mr__push_io() in sched.h).
 */
void mr__fiber_ready_io(struct mr_fiber *f, int64_t now);

/*
 * A fiber readied onto this worker's deque stays in its private part: the
 * worker runs it when the caller blocks, so a ping-pong stays on one worker
 * (the LIFO slot of Go and Tokio). But a caller that keeps going would keep
 * it from the other workers. mr__fiber_ready() notes such a push in
 * mr__tls_held ((1 << 32) | the deque's head after it), and a switch of
 * fibers forgets it. An operation reads the note when it starts
 * (mr__fiber_held()) and, if it completes without blocking, passes it to
 * mr__fiber_going_on(): the caller readied someone in an earlier call and
 * did not block since, so that fiber is shared with the other workers and
 * a sleeping one is woken to take it. (The call that readies the fiber
 * does not count: a ping-pong's send is followed by a receive that blocks.)
 * A caller that computes without calling into the runtime still holds it,
 * as any private job of the deque (see deque.h).
 *
 * Channel operations do this (a producer that goes on sending, a consumer
 * that goes on receiving, a poll that finds nothing). Every wake-up leaves
 * the note, but mutexes and semaphores do not act on it: a fiber that
 * locks again right after waking a waiter would share it at once, and the
 * contenders then fight for the lock across workers, each share waking a
 * worker: 2-8 fibers contending on 2 workers ran 3x slower that way (also
 * when sharing only after 64 such locks). A waiter woken by an unlock runs
 * when the unlocker blocks or yields.
 */
extern __thread uint64_t mr__tls_held __attribute__((tls_model("initial-exec")));
void mr__fiber_share_held(uint64_t held);

static inline uint64_t mr__fiber_held(void)
{
	return mr__tls_held;
}

static inline void mr__fiber_going_on(uint64_t held)
{
	if (unlikely(held))
		mr__fiber_share_held(held);
}

/*
 * Worker side: the next yielded fiber's job; at thread start, the
 * alternate signal stack and the overflow handler, which then also knows
 * the thread's own stack and guard (jobs run there); clean-up at exit.
 */
struct mr__job *mr__yield_pop(struct mr__worker *w);
/* Is this job a runnable fiber (not a plain job)? For the helping thread of a
 * blocked job, which runs fibers only (mr__worker_help). */
bool mr__job_is_fiber(const struct mr__job *job);
void mr__fiber_thread_start(struct mr__worker *w);
void mr__fiber_thread_exit(struct mr__worker *w);

/* ---- stacks (stack.c) ---- */
int mr__stack_alloc(struct mr__worker *w, size_t size, struct mr__stack *st);
/*
 * fn(base, size, arg) for every fiber stack there is, free or in use:
 * every slot of the default-size chunks (never unmapped) and every stack
 * of another size now allocated (those are unmapped when freed, so the
 * walk holds their lock: fn must not allocate or free a stack). 0 or
 * -ENOMEM.
 */
int mr__stack_each(void (*fn)(void *base, size_t size, void *arg), void *arg);
void mr__stack_free(struct mr__worker *w, struct mr__stack *st);
void mr__stack_cache_flush(struct mr__worker *w);
/* Fork: take the pool's lock before, release it after (parent and child). */
void mr__stack_atfork_prepare(void);
void mr__stack_atfork_release(void);
/* Test hook: called with the stack pool's lock held (mr__stack_alloc from a thread). */
extern void (*mr__test_stack_pool_locked)(void) __attribute__((visibility("hidden")));
/* Test hook: when set, stack.c calls it instead of munmap() (0 or -1 and errno). */
extern int (*mr__test_munmap)(void *addr, size_t len);

/* ---- waiters (waitq.c) ---- */
enum { MR__W_WAITING = 0, MR__W_WOKEN = 1, MR__W_TIMEDOUT = 2, MR__W_CANCELLED = 3 };

struct mr__waitq {
	_Atomic uint32_t lock; /* spinlock */
	struct mr__waiter *head, *tail;
};

struct mr__waiter {
	struct mr__waiter *next, *prev;
	struct mr__waitq *q;
	struct mr_fiber *fiber;	    /* the parked fiber, or NULL: a thread (or job) on a futex */
	struct mr__worker *helper;  /* mr_fiber_join from a job: its worker runs other work */
	/* A job's (or pinned fiber's) worker, blocked: it runs fibers while it
	 * waits (mr__worker_help) and is woken through mr__helper_wake(). */
	struct mr__worker *helping;
	_Atomic uint32_t waker_out; /* with a helper or helping: the waker is done with it and wt */
	_Atomic uint32_t state;	    /* MR__W_*; the futex word of a thread */
	uintptr_t data;		    /* for the object's use (e.g. mutex handoff) */
	bool front;		    /* queue at the head (a waiter that waited before) */
	bool cancellable;	    /* a fiber's wait may end MR__W_CANCELLED */
	bool counted;		    /* a thread counted in mr__nthreads_blocked (sched.h) */
	struct mr__timer timer;
	struct mr__cancel_hook cancel;
};

void mr__waitq_lock(struct mr__waitq *q);
void mr__waitq_unlock(struct mr__waitq *q);
/* Wait until q is not locked (an unlock in progress has finished). */
void mr__waitq_wait_unlocked(struct mr__waitq *q);
/*
 * With q locked: append wt (for the calling context) and wait until woken or
 * the deadline (-1: none). Unlocks q. Returns MR__W_WOKEN or MR__W_TIMEDOUT,
 * or with wt->cancellable, MR__W_CANCELLED (mr_fiber_cancel(); the request
 * is used up).
 */
int mr__waitq_wait(struct mr__waitq *q, struct mr__waiter *wt, int64_t deadline,
		   const char *call);
/* With q locked: take the oldest waiter off q (NULL if none). */
struct mr__waiter *mr__waitq_take(struct mr__waitq *q);
/* After mr__waitq_take, with or without q locked: wake it. */
void mr__waiter_wake(struct mr__waiter *wt);
/* A helper (a job's worker) that saw its waiter woken: wait until the
 * waker no longer touches the worker nor wt, before either may go. */
void mr__waiter_helped(struct mr__waiter *wt);
/* Test hook: called by a waker between WOKEN and waking a helper. */
extern void (*mr__test_waiter_wake_hook)(void);

#endif /* MR_FIBER_FIBER_H */
