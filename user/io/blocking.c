/*
 * blocking.c - the blocking pool: a process-wide set of plain threads that
 * run calls which can only block, while the fibers that made them park
 * (<moirai/blocking.h> says what for and at what cost).
 *
 * How: one mutex guards a FIFO of work items (struct mr__blocking_work,
 * io.h: they live on their callers' stacks, linked through `next`) and
 * the thread counts. Idle threads wait on a condition variable with a
 * deadline (the keep-alive). A submitter that finds an idle thread claims
 * it: it moves one thread from `nidle` to `nnotify` and signals; a woken
 * thread that finds `nnotify` > 0 takes one claim and goes to the queue,
 * so spurious wake-ups and several submits before the first thread wakes
 * are counted right (each submit wakes one thread, none wakes the same
 * one twice). With no idle thread and fewer than `max`, the submitter
 * creates one, under the lock (a growth of the pool is rare next to the
 * calls it serves, and creating under the lock keeps "no thread and none
 * can be created" a decision made in one place: -EAGAIN, nothing queued).
 * Otherwise the item waits: every thread is busy and each goes back to the
 * queue when its call returns.
 *
 * Invariant that keeps a queued item from being stranded: a thread goes
 * idle only when the queue is empty, so an item queued while a thread is
 * idle is queued with a claim; an item queued without one has only busy
 * threads around, and a busy thread leaves the pool (over a lowered
 * maximum) only while at least `max` >= 1 others remain, busy or claimed.
 *
 * A fiber's call (mr__blocking_run): the fiber queues its item, then parks
 * in a word of its own frame with mr__fiber_park_in(); the pool thread,
 * once fn returns, tries to put EARLY there. Whichever of the two comes
 * second sees the other: a park that finds EARLY resumes at once; a pool
 * thread that finds the fiber readies it, then stores OUT. The resumed
 * fiber waits for OUT before it returns: readying a fiber from outside
 * its runtime touches the runtime after the fiber is queued (the
 * injector's notify), and the fiber, once run, could finish and let the
 * runtime be destroyed under that notify (TSan saw it: free_runtime()
 * against mr__notify()). The wait is short: the fiber must first be
 * popped by a worker, and the notify is a few atomics and at most one
 * futex wake (unless the pool thread is preempted right there).
 *
 * Behaves badly when: every pool thread is held by a call that waits for a
 * call queued behind it (a deadlock the caller built; blocking.h warns);
 * calls never return (they pile up in the queue, each holding a parked
 * fiber). A pool thread's fn that forks leaves the child on that thread:
 * returning from fn ends it (blocking.h's fork paragraph).
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "io.h"
#include "../fiber/fiber.h"

#define KEEPALIVE_NS_DEFAULT (10ull * 1000000000ull) /* tokio's default */

/* The word a fiber's call parks in (never a fiber address): 0, then
 * EARLY when fn returned before the fiber parked, or the fiber and then
 * OUT when the pool thread has readied it and is done with it. */
#define EARLY ((uint64_t)1)
#define OUT ((uint64_t)2)

static struct {
	pthread_mutex_t lock;
	pthread_cond_t idle; /* idle threads wait here for a claim */
	struct mr__blocking_work *head, *tail;
	unsigned nqueued;
	unsigned nthreads; /* alive: busy, idle, claimed */
	unsigned nidle;	   /* waiting on `idle` without a claim */
	unsigned nnotify;  /* claims not yet taken by a woken thread */
	unsigned max;
	int err;	 /* -EINVAL: MOIRAI_BLOCKING_THREADS is bad */
	bool configured; /* max (or err) read from the environment */
	uint64_t keepalive_ns;
	unsigned gen; /* bumped in a forked child: older threads are the parent's */
} pool = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.max = MR_BLOCKING_THREADS_DEFAULT,
	.keepalive_ns = KEEPALIVE_NS_DEFAULT,
};

int (*mr__test_blocking_create)(pthread_t *th, const pthread_attr_t *attr,
				void *(*start)(void *), void *arg);

/*
 * MOIRAI_BLOCKING_THREADS: 1..MR_BLOCKING_THREADS_MAX. Read once, at the
 * first use of the pool; a bad value makes every call fail with -EINVAL
 * (as a bad MOIRAI_WORKERS fails the default runtime) rather than run with
 * a pool the user did not ask for, until mr_blocking_set_max() says.
 */
static void configure(void)
{
	const char *s = getenv("MOIRAI_BLOCKING_THREADS");
	unsigned long v;
	char *end;

	pool.configured = true;
	if (!s || !*s)
		return;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (*s < '0' || *s > '9' || errno || *end || v == 0 || v > MR_BLOCKING_THREADS_MAX) {
		pool.err = -EINVAL;
		return;
	}
	pool.max = (unsigned)v;
}

static void enqueue(struct mr__blocking_work *w)
{
	w->next = NULL;
	if (pool.tail)
		pool.tail->next = w;
	else
		pool.head = w;
	pool.tail = w;
	pool.nqueued++;
}

static struct mr__blocking_work *dequeue(void)
{
	struct mr__blocking_work *w = pool.head;

	if (w) {
		pool.head = w->next;
		if (!pool.head)
			pool.tail = NULL;
		pool.nqueued--;
	}
	return w;
}

/*
 * With the lock held: wait idle for a claim until the keep-alive passes.
 * True with a claim taken (go to the queue), false when the thread should
 * exit (timed out unclaimed; no longer counted idle).
 */
static bool idle_wait(void)
{
	struct timespec ts;
	uint64_t ns;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ns = (uint64_t)ts.tv_nsec + pool.keepalive_ns;
	ts.tv_sec += (time_t)(ns / 1000000000u);
	ts.tv_nsec = (long)(ns % 1000000000u);
	pool.nidle++;
	for (;;) {
		int r = pthread_cond_timedwait(&pool.idle, &pool.lock, &ts);
		if (pool.nnotify > 0) {
			/* The submitter already took us off nidle. */
			pool.nnotify--;
			return true;
		}
		if (r == ETIMEDOUT) {
			pool.nidle--;
			return false;
		}
	}
}

static void *pool_thread(void *arg)
{
	unsigned gen = (unsigned)(uintptr_t)arg;
	struct mr__blocking_work *w;

	pthread_setname_np(pthread_self(), "moirai-blk");
	mr__lock(&pool.lock);
	for (;;) {
		w = dequeue();
		if (w) {
			mr__unlock(&pool.lock);
			/* Cancellation (mr_fiber_cancel, to come) acts here: an item
			 * still queued can be taken off the queue by its canceller
			 * under the lock; a running fn can only be interrupted by
			 * what fn waits on (a signal unblocked for this thread, a
			 * shutdown of its descriptor), and done still runs. */
			w->fn(w->arg);
			w->done(w);
			mr__lock(&pool.lock);
			if (unlikely(gen != pool.gen))
				goto stray;
			if (pool.nthreads > pool.max)
				break;
			continue;
		}
		if (pool.nthreads > pool.max)
			break;
		/* Idle: one of ours, waiting for work (the deadlock check). */
		atomic_fetch_add_explicit(&mr__nthreads_internal, 1, memory_order_seq_cst);
		bool more = idle_wait();
		atomic_fetch_sub_explicit(&mr__nthreads_internal, 1, memory_order_seq_cst);
		if (!more)
			break;
	}
	pool.nthreads--;
	mr__unlock(&pool.lock);
	return NULL;
stray:
	/* A forked child of fn's: this pool is not ours to count in. */
	mr__unlock(&pool.lock);
	return NULL;
}

/*
 * With the lock held: start one more thread. 0 or an error number. The
 * thread starts with every signal blocked (set here: a signal arriving
 * before it could block them itself would run a handler on it).
 */
static int spawn(void)
{
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t th;
	int r;

	r = pthread_attr_init(&attr);
	if (r)
		return r;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	void *arg = (void *)(uintptr_t)pool.gen;
	r = mr__test_blocking_create ? mr__test_blocking_create(&th, &attr, pool_thread, arg)
				     : pthread_create(&th, &attr, pool_thread, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (!r)
		pool.nthreads++;
	return r;
}

int mr__blocking_submit(struct mr__blocking_work *w)
{
	int saved = errno; /* strtoul() in configure() sets it */
	int r = 0;

	mr__lock(&pool.lock);
	if (unlikely(!pool.configured))
		configure();
	if (unlikely(pool.err)) {
		r = pool.err;
	} else if (pool.nidle > 0) {
		pool.nidle--;
		pool.nnotify++;
		enqueue(w);
		pthread_cond_signal(&pool.idle);
	} else if (pool.nthreads < pool.max) {
		int e = spawn();
		/* With busy threads, one of them gets to w in turn. */
		if (e && pool.nthreads == 0)
			r = -EAGAIN;
		else
			enqueue(w);
	} else {
		enqueue(w);
	}
	mr__unlock(&pool.lock);
	errno = saved;
	return r;
}

/* A fiber's call: the item and the word the fiber parks in. */
struct parked {
	struct mr__blocking_work w; /* first: done() gets &w */
	_Atomic uint64_t word;
};

static void parked_done(struct mr__blocking_work *w)
{
	struct parked *p = (struct parked *)w;
	uint64_t old = 0;

	/* release: fn's writes go to the fiber with EARLY (pairs with the
	 * acquire load in mr__blocking_run()); after it p may be gone. On
	 * failure, acquire: pairs with the release CAS of the fiber's park
	 * commit (commit_park() in fiber.c), after which its context is
	 * saved and it may be readied. */
	if (atomic_compare_exchange_strong_explicit(&p->word, &old, EARLY, memory_order_acq_rel,
						    memory_order_acquire))
		return;
	mr__fiber_ready((struct mr_fiber *)(uintptr_t)old);
	/* release: fn's writes, and the end of our use of the runtime, go to
	 * the fiber (pairs with the acquire load in mr__blocking_run()); after
	 * it p may be gone. */
	atomic_store_explicit(&p->word, OUT, memory_order_release);
}

int mr__blocking_run(void (*fn)(void *), void *arg, const char *call)
{
	struct mr_fiber *f = mr__fiber_parkable();

	if (!f) {
		/* The caller blocks either way: run fn here. A worker's queued
		 * work goes to the others meanwhile (as for a job that waits on
		 * a mutex: waitq.c). */
		struct mr__worker *wk = mr__self();
		if (wk)
			mr__worker_block(wk);
		fn(arg);
		if (wk)
			mr__worker_unblock(wk);
		return 0;
	}

	struct parked p = { .w = { .fn = fn, .arg = arg, .done = parked_done } };
	int r = mr__blocking_submit(&p.w);
	if (r)
		return r;
	/* Cancellation (to come) parks with a commit that also registers the
	 * fiber with its canceller here, and takes a still-queued item back
	 * off the queue when cancelled. */
	mr__wait_note(MR__WAIT_BLOCKING, (const void *)fn, -1);
	mr__fiber_park_in(f, &p.word, (uint64_t)(uintptr_t)f, call);
	/* We run again after parked_done() put EARLY in the word (our park
	 * failed), or once it readied us (the word holds f, then OUT). */
	unsigned spins = 0;
	for (;;) {
		/* acquire: pairs with the CAS to EARLY or the store of OUT in
		 * parked_done(): fn's writes, and the pool thread's last touch of
		 * our runtime. */
		uint64_t v = atomic_load_explicit(&p.word, memory_order_acquire);
		if (v == EARLY || v == OUT)
			break;
		if (unlikely(v == 0))
			mr__die(call, "fiber %p resumed before its blocking call returned",
				(void *)f);
		mr__backoff(&spins);
	}
	return 0;
}

/* ---- the public call ------------------------------------------------------ */

struct call {
	long (*fn)(void *);
	void *arg;
	long result;
};

static void call_fn(void *p)
{
	struct call *c = p;

	c->result = c->fn(c->arg);
}

int mr_blocking(long (*fn)(void *), void *arg, long *result)
{
	struct call c = { .fn = fn, .arg = arg };
	int r;

	if (!fn)
		return -EINVAL;
	r = mr__blocking_run(call_fn, &c, "mr_blocking");
	if (r)
		return r;
	if (result)
		*result = c.result;
	return 0;
}

int mr_blocking_set_max(unsigned n)
{
	int old, saved = errno;

	if (n == 0 || n > MR_BLOCKING_THREADS_MAX)
		return -EINVAL;
	mr__lock(&pool.lock);
	if (!pool.configured)
		configure();
	old = (int)pool.max;
	pool.max = n;
	pool.err = 0;
	/* Queued items have no thread claimed for them (they were queued at
	 * the old maximum): start one thread for each, up to the new one. The
	 * new threads take items only once we unlock, so count them here. */
	for (unsigned k = 0; pool.nthreads < pool.max && pool.nnotify + k < pool.nqueued; k++)
		if (spawn())
			break;
	mr__unlock(&pool.lock);
	errno = saved;
	return old;
}

/* ---- test hooks ------------------------------------------------------------ */

void mr__blocking_set_keepalive(uint64_t ns)
{
	mr__lock(&pool.lock);
	pool.keepalive_ns = ns;
	mr__unlock(&pool.lock);
}

unsigned mr__blocking_nthreads(void)
{
	unsigned n;

	mr__lock(&pool.lock);
	n = pool.nthreads;
	mr__unlock(&pool.lock);
	return n;
}

unsigned mr__blocking_nqueued(void)
{
	unsigned n;

	mr__lock(&pool.lock);
	n = pool.nqueued;
	mr__unlock(&pool.lock);
	return n;
}

/* ---- fork ------------------------------------------------------------------ */

/*
 * The lock is taken across fork, so that the child's copy of the pool is
 * whole (a leaf: taken with no other library lock held, and held for at
 * most a thread creation). The child has none of the pool's threads: it
 * starts empty, with a fresh condition variable (the parent's threads may
 * have been waiting on it), keeping the maximum and keep-alive.
 * Items queued in the parent belong to callers that are not in the child.
 */
static void atfork_prepare(void)
{
	pthread_mutex_lock(&pool.lock);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&pool.lock);
}

static void init_cond(void)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&pool.idle, &ca);
	pthread_condattr_destroy(&ca);
}

static void atfork_child(void)
{
	init_cond();
	pool.head = pool.tail = NULL;
	pool.nqueued = pool.nthreads = pool.nidle = pool.nnotify = 0;
	pool.gen++;
	/* Held by this thread since atfork_prepare(): released, not
	 * re-initialised (so TSan sees the lock free again). */
	pthread_mutex_unlock(&pool.lock);
}

/* Before any use of the lock: a fork racing with a later registration
 * could leave it held in the child (as in runtime.c). */
__attribute__((constructor)) static void blocking_init(void)
{
	init_cond();
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}
