/*
 * fiber.c - fiber lifecycle: create, resume, park, yield, exit, join,
 * detach; mr_run (the main fiber); the stack-overflow handler.
 *
 * A fiber's control block sits at the top of its own stack; the stack and
 * the block are one allocation from stack.c. A runnable fiber is a job in a
 * deque (mr__fiber_exec() resumes it). While it runs, `resumer_sp` holds the
 * context that resumed it; park, yield and exit switch back there, and
 * after_switch() runs in that context what the fiber could not do while its
 * registers were live on its stack: requeue it (yield), let a waker have it
 * (park's commit), or tear it down (exit). See fiber.h for why.
 *
 * The join state word: 0 while running with no joiner; DONE once returned;
 * DETACHED once detached (the fiber frees itself when it returns); RELEASED
 * after the stack went back to the pool (a stale handle then reads RELEASED
 * until the stack is reused, which catches the common double join); or the
 * address of the joiner's waiter.
 *
 * Sanitizers: TSan learns about every context (__tsan_create_fiber /
 * __tsan_switch_to_fiber) and ASan about every stack change
 * (__sanitizer_start/finish_switch_fiber), so both keep working on fibers.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/membarrier.h>

#include "fiber.h"
#include "switch.h"

#if defined(__SANITIZE_THREAD__)
#define MR_TSAN 1
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
void __tsan_set_fiber_name(void *fiber, const char *name);
#endif
#if defined(__SANITIZE_ADDRESS__)
#define MR_ASAN 1
void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom, size_t size);
void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old,
				     size_t *size_old);
#endif

#define FIBER_MAGIC 0x6d726669u /* "mrfi" */

/* How a fiber switched out (the fiber_stop probe's third argument: keep
 * the numbers, user/metrics/probes.h documents them). */
enum { ACT_NONE, ACT_PARK, ACT_PARK_IN, ACT_YIELD, ACT_EXIT };

/* What mr_yield's direct transfer passes to the fiber it switches to: the
 * arriving fiber then keeps its resumer's stack bounds (ASan) as set. */
#define TRANSFER ((void *)1)

#define ST_DONE ((uintptr_t)1)
#define ST_DETACHED ((uintptr_t)2)
#define ST_RELEASED ((uintptr_t)3)

__thread struct mr_fiber *mr__tls_fiber __attribute__((tls_model("initial-exec")));
__thread uint64_t mr__tls_held __attribute__((tls_model("initial-exec")));

static void install_overflow_handler(void);

/* ---- switching ---------------------------------------------------------- */

static void after_switch(struct mr__worker *w, struct mr_fiber *f);

/*
 * In the context that took over from a parked fiber f, once f's registers
 * are saved: run f's commit, which says whether f now waits (a waker will
 * ready it) or must run again at once.
 */
/* commit_park() found a cancel request for armed fiber f, in the word. */
static __attribute__((noinline, cold)) void commit_cancel(struct mr_fiber *f,
							  struct mr__cancel_hook *h)
{
	mr__spin_lock(&f->cancel_lock);
	mr__cancel_hook_run(h);
	mr__spin_unlock(&f->cancel_lock);
}

static inline void commit_park(struct mr_fiber *f)
{
	bool waits;

	if (f->action == ACT_PARK_IN) {
		uint64_t zero = 0;
		/* Read before the CAS: once f is in the word a partner may take
		 * it, and f may run again and park anew (writing these). */
		_Atomic uint64_t *word = f->pub_word;
		uint64_t val = f->pub_val;
		bool armed = f->armed;
		struct mr__cancel_hook *h =
			armed ? atomic_load_explicit(&f->hook, memory_order_relaxed) : NULL;
		/* release: pairs with the acquire RMW that takes pub_val out of
		 * the word (fiber.h; for a rendezvous channel rv_fast(),
		 * rv_to_queues() or mr_chan_close()): f's writes before it
		 * parked, and its saved context, go with it. */
		waits = atomic_compare_exchange_strong_explicit(word, &zero, val,
								memory_order_release,
								memory_order_relaxed);
		if (armed) {
			/*
			 * A cancel that came before we were in the word found
			 * nothing to claim; then we see its request (the pair
			 * in fiber.h) and run the hook ourselves, which takes f
			 * out of the word or of the queue rv_to_queues() may
			 * have moved it to since, and readies it. Under
			 * cancel_lock: a canceller may be in the hook too.
			 */
			if (waits) {
				mr__cancel_fence();
				if (unlikely(atomic_load_explicit(&f->cancel, memory_order_relaxed) &
					     MR__CANCEL_REQ))
					commit_cancel(f, h); /* readies f unless a partner got it first */
			}
			/* release: our last touch of f, which a partner may
			 * have readied; its disarm waits for this. */
			atomic_store_explicit(&f->committing, 0, memory_order_release);
		}
	} else {
		waits = f->commit(f->commit_arg);
	}
	if (!waits)
		mr__fiber_ready(f);
}

/*
 * Fiber f runs again; `how` is what the switch into it passed: f itself
 * when a worker resumed it, TRANSFER from a fiber that yielded to it, or a
 * fiber that parked and handed its worker over to f (mr__fiber_park), whose
 * commit now runs here, after that fiber's registers were saved.
 */
static void arrived(struct mr_fiber *f, void *how)
{
#ifdef MR_ASAN
	if (how != f)
		__sanitizer_finish_switch_fiber(f->asan_fake, NULL, NULL);
	else
		__sanitizer_finish_switch_fiber(f->asan_fake, &f->asan_resumer_bottom,
						&f->asan_resumer_size);
#endif
	if (how != f && how != TRANSFER)
		commit_park(how);
}

/* From the running fiber f back to the context that resumed it. */
static void switch_out(struct mr_fiber *f)
{
#ifdef MR_TSAN
	__tsan_switch_to_fiber(f->tsan_resumer, 0);
#endif
#ifdef MR_ASAN
	__sanitizer_start_switch_fiber(f->action == ACT_EXIT ? NULL : &f->asan_fake,
				       f->asan_resumer_bottom, f->asan_resumer_size);
#endif
	/* The resumer learns which fiber came back: after a direct transfer
	 * (mr_yield) it is not the one it resumed. */
	void *how = mr__ctx_switch(&f->sp, f->resumer_sp, f);
	arrived(f, how);
}

/*
 * The calling thread's worker, read afresh. After a park the fiber may run on
 * another thread, but the compiler takes the thread pointer for a constant
 * within a function: aarch64 keeps tpidr_el0 read before the switch in a
 * callee-saved register and reads the TLS of the thread the fiber left.
 * Out of line, and opaque (the asm) so that it is never merged with an
 * earlier read.
 */
static __attribute__((noinline)) struct mr__worker *self_after_switch(void)
{
	struct mr__worker *w = mr__self();

	__asm__ volatile("" : "+r"(w));
	return w;
}

static void release(struct mr__worker *w, struct mr_fiber *f)
{
	struct mr__stack st = f->stack;

#ifdef MR_TSAN
	__tsan_destroy_fiber(f->tsan_fiber);
#endif
	f->magic = 0;
	atomic_store_explicit(&f->state, ST_RELEASED, memory_order_relaxed);
	mr__stack_free(w, &st);
}

/* In the resumer's context, once f is off its stack: what f asked for. */
static void after_switch(struct mr__worker *w, struct mr_fiber *f)
{
	MR_PROBE3(fiber_stop, f, w->idx, f->action);
	switch (f->action) {
	case ACT_YIELD:
		f->yield_next = NULL;
		if (w->yield_tail)
			w->yield_tail->yield_next = f;
		else
			w->yield_head = f;
		w->yield_tail = f;
		break;
	case ACT_PARK:
	case ACT_PARK_IN:
		commit_park(f);
		break;
	case ACT_EXIT: {
		struct mr_runtime *rt = f->rt;
		MR__STAT_ADD(w->st, fiber_exits, 1);
		MR_PROBE2(fiber_exit, f, w->idx);
		/* Before the joiner can return (and maybe destroy rt). seq_cst:
		 * pairs with the quiescence checks of mr_runtime_destroy(). */
		atomic_fetch_sub_explicit(&rt->nfibers, 1, memory_order_seq_cst);
		/* acq_rel: the joiner sees everything f did. */
		uintptr_t old = atomic_exchange_explicit(&f->state, ST_DONE, memory_order_acq_rel);
		if (old == ST_DETACHED)
			release(w, f);
		else if (old > ST_RELEASED)
			mr__waiter_wake((struct mr__waiter *)old);
		break;
	}
	default:
		mr__die("moirai", "fiber %p switched out without a reason", (void *)f);
	}
}

static void ensure_altstack(struct mr__worker *w, const char *call)
{
	stack_t ss;
	size_t sz = 64 * 1024;

	install_overflow_handler();
	ss.ss_sp = malloc(sz);
	if (!ss.ss_sp)
		mr__die(call, "out of memory for the signal stack");
	ss.ss_size = sz;
	ss.ss_flags = 0;
	if (sigaltstack(&ss, NULL) != 0)
		mr__die(call, "sigaltstack: %s", strerror(errno));
	w->altstack = ss.ss_sp;
}

/* The worker thread's own guard [lo, hi) and stack size, for on_fault(). */
static __thread uintptr_t thread_guard_lo, thread_guard_hi;
static __thread size_t thread_stack_size;

void mr__fiber_thread_start(struct mr__worker *w)
{
	pthread_attr_t a;
	void *lo;
	size_t size, guard;

	if (!w->altstack)
		ensure_altstack(w, "mr_runtime_create");
	if (pthread_getattr_np(pthread_self(), &a) != 0)
		return; /* overflows of this thread's stack go unnamed */
	/* glibc: [lo, lo + size) is usable, the guard lies just below. */
	if (pthread_attr_getstack(&a, &lo, &size) == 0 &&
	    pthread_attr_getguardsize(&a, &guard) == 0 && guard) {
		thread_guard_lo = (uintptr_t)lo - guard;
		thread_guard_hi = (uintptr_t)lo;
		thread_stack_size = size;
	}
	pthread_attr_destroy(&a);
}

/* Counters (<moirai/stats.h>): f runs on w, maybe after a park. f->action
 * still says how it last switched out (ACT_NONE before its first run). */
static inline __attribute__((always_inline)) void count_run(struct mr__worker *w, struct mr_fiber *f)
{
	MR_PROBE2(fiber_run, f, w->idx);
	MR__STAT_ADD(w->st, fiber_runs, 1);
	if (f->action == ACT_PARK || f->action == ACT_PARK_IN)
		MR__STAT_ADD(w->st, fiber_wakeups, 1);
}

/* The running fiber f parks from worker w: counters, and the state and
 * time a dump shows. */
static inline __attribute__((always_inline)) void count_park(struct mr__worker *w, struct mr_fiber *f,
							   const char *call)
{
	mr__fiber_parking(f);
	MR__STAT_ADD(w->st, fiber_parks, 1);
	MR_PROBE2(fiber_park, f, call);
}

/* Resume f on worker w (the calling thread); returns when f switches out. */
static void resume(struct mr__worker *w, struct mr_fiber *f)
{
	struct mr_fiber *prev = mr__tls_fiber;
	unsigned pinned = w->pinned;
	uint32_t lbase = w->ls.base;

	if (unlikely(!w->altstack))
		ensure_altstack(w, "mr_go");
	count_run(w, f);
	mr__tls_fiber = f;
	mr__tls_held = 0;
	w->pinned = 0; /* the fiber's own count (see sched.h) */
	w->ls.base = w->ls.top; /* and its own latent joins */
	mr__fiber_running(w, f);
#ifdef MR_TSAN
	f->tsan_resumer = __tsan_get_current_fiber();
	__tsan_switch_to_fiber(f->tsan_fiber, 0);
#endif
#ifdef MR_ASAN
	void *fake = NULL;
	__sanitizer_start_switch_fiber(&fake, f->stack.base, f->stack.size);
#endif
	struct mr_fiber *out = mr__ctx_switch(&f->resumer_sp, f->sp, f);
#ifdef MR_ASAN
	__sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
	mr__tls_fiber = prev;
	atomic_store_explicit(&w->cur, prev, memory_order_relaxed);
	w->pinned = pinned;
	w->ls.base = lbase;
	after_switch(w, out);
}

/* The job of a fiber (sched.h's mr__job_run() tells it from others by it). */
void mr__fiber_exec(struct mr__job *job, struct mr__worker *w)
{
	resume(w, (struct mr_fiber *)job);
}

__attribute__((noreturn)) static void fiber_entry(void *arg)
{
	struct mr_fiber *f = arg;

#ifdef MR_ASAN
	__sanitizer_finish_switch_fiber(NULL, &f->asan_resumer_bottom, &f->asan_resumer_size);
#endif
	f->ran = true;
	f->fn(f->arg);
	/* The child of a fork from this fiber returned from it: no worker to
	 * return to, as a thread that was the last one (see <moirai/fiber.h>). */
	if (unlikely(!self_after_switch()))
		exit(0);
	f->action = ACT_EXIT;
	switch_out(f);
	mr__die("moirai", "a finished fiber was resumed");
}

/* ---- readying, parking, yielding ----------------------------------------- */

/* Not instrumented by TSan: this look races with spawns and exits on
 * purpose (fiber.h); the memory is always mapped (stack.c). */
__attribute__((no_sanitize_thread)) struct mr_fiber *
mr__fiber_on_stack(struct mr_runtime *rt, void *base, size_t size)
{
	/* Where mr_go_opts() puts the control block. */
	uintptr_t top = (uintptr_t)base + size;
	struct mr_fiber *f = (struct mr_fiber *)((top - sizeof(*f)) & ~(uintptr_t)63);

	/* Volatile reads of plain fields a spawn may be writing now: a racy
	 * look (see fiber.h), which may see a fiber half made. */
	if (*(const volatile uint32_t *)&f->magic != FIBER_MAGIC ||
	    *(struct mr_runtime *const volatile *)&f->rt != rt)
		return NULL;
	uintptr_t s = atomic_load_explicit(&f->state, memory_order_relaxed);
	return s == ST_DONE || s == ST_RELEASED ? NULL : f;
}

bool mr__job_is_fiber(const struct mr__job *job)
{
	return job->exec == mr__fiber_exec;
}

static inline void ready(struct mr_fiber *f, int64_t io_now)
{
	struct mr__worker *w = mr__self();

	MR_PROBE1(fiber_ready, f);
	atomic_store_explicit(&f->run_state, MR__FS_RUNNABLE, memory_order_relaxed);
	f->io_ready_ns = io_now;

	if (w && w->rt == f->rt) {
		MR__STAT_ADD(w->st, fiber_readies, 1);
		if (likely(io_now ? mr__push_io(w, &f->hdr) : mr__push(w, &f->hdr))) {
			/* Noted even if the push made it public at once:
			 * mr__fiber_share_held() then finds it shared and
			 * does nothing. */
			mr__tls_held = (uint64_t)1 << 32 | w->dq.head;
			return;
		}
	} else {
		MR__STAT_ATOMIC_ADD(mr__stats_outside(f->rt), fiber_readies, 1);
	}
	mr__inject(f->rt, &f->hdr);
}

void mr__fiber_ready(struct mr_fiber *f)
{
	ready(f, 0);
}

void mr__fiber_ready_io(struct mr_fiber *f, int64_t now)
{
	ready(f, now > 0 ? now : 1);
}

void mr__fiber_share_held(uint64_t held)
{
	struct mr__worker *w = mr__self();
	uint32_t to = (uint32_t)held;

	/* A fiber readied since stays noted (it is above this one). */
	if (mr__tls_held == held)
		mr__tls_held = 0;
	/* No longer a worker: a forked child (atfork_child() forgets the
	 * worker), or a thread-exit destructor of a worker thread. */
	if (unlikely(!w)) {
		mr__tls_held = 0;
		return;
	}
	struct mr__deque *dq = &w->dq;
	/* Is it still private (pushed at to - 1, not popped, not shared)? */
	if (!dq->o_allstolen && (int32_t)(dq->head - to) >= 0 &&
	    (int32_t)(to - 1 - dq->o_split) >= 0 &&
	    mr__deque_publish_to(dq, to) == MR__PUSH_PUBLIC)
		mr__notify(w->rt);
}

/*
 * A fiber may only switch on its own stack. A signal handler that calls a
 * blocking function runs on the alternate signal stack (our workers have
 * one) and would save the handler's frame as the fiber's context.
 */
static void check_on_own_stack(struct mr_fiber *f, const char *call)
{
	uintptr_t fp = (uintptr_t)__builtin_frame_address(0);
	uintptr_t lo = (uintptr_t)f->stack.base;

	if (unlikely(fp < lo || fp >= lo + f->stack.size))
		mr__die(call, "called off the fiber's stack (from a signal handler?)");
}

/*
 * Switch from the running fiber f straight into the suspended fiber next,
 * which takes over f's resumer; `how` tells next what happened (arrived()).
 * next was usually suspended here too (it parked or yielded the same way):
 * mr__ctx_transfer's return then predicts well (switch.h).
 */
static inline __attribute__((always_inline)) void transfer(struct mr__worker *w, struct mr_fiber *f,
							  struct mr_fiber *next, void *how)
{
	count_run(w, next);
	next->resumer_sp = f->resumer_sp;
	mr__tls_fiber = next;
	mr__tls_held = 0;
	mr__fiber_running(w, next);
#ifdef MR_TSAN
	next->tsan_resumer = f->tsan_resumer;
	__tsan_switch_to_fiber(next->tsan_fiber, 0);
#endif
#ifdef MR_ASAN
	next->asan_resumer_bottom = f->asan_resumer_bottom;
	next->asan_resumer_size = f->asan_resumer_size;
	__sanitizer_start_switch_fiber(&f->asan_fake, next->stack.base, next->stack.size);
#endif
	arrived(f, mr__ctx_transfer(&f->sp, next->sp, how));
}

/* The running fiber f, its action and commit set, switches out of w. */
static inline void park(struct mr__worker *w, struct mr_fiber *f)
{
	/*
	 * Hand the worker straight to the newest job of its deque when that is
	 * a fiber parked in a switch (typically the one this fiber just readied:
	 * a channel or semaphore ping-pong). The worker loop would pop and
	 * resume exactly that job next; this saves the trip through it. The
	 * fiber we switch to runs our commit on arrival (arrived()).
	 */
	struct mr__job *top = mr__deque_peek(&w->dq);
	if (top && top->exec == mr__fiber_exec && ((struct mr_fiber *)top)->ran) {
		struct mr_fiber *next = (struct mr_fiber *)top;
		mr__deque_pop(&w->dq);
		MR_PROBE3(fiber_stop, f, w->idx, f->action);
		transfer(w, f, next, f);
		return;
	}
	switch_out(f);
}

/*
 * Both park calls read the worker once, before the switch, and use it
 * only before it: a fiber resumes on any worker. noinline keeps a caller
 * in this file that parks in a loop from reusing that read (see
 * self_after_switch()).
 */
__attribute__((noinline)) void mr__fiber_park(bool (*commit)(void *arg), void *arg, const char *call)
{
	struct mr_fiber *f = mr__tls_fiber;
	struct mr__worker *w = mr__self();

	check_on_own_stack(f, call);
	count_park(w, f, call);
	f->action = ACT_PARK;
	f->commit = commit;
	f->commit_arg = arg;
	park(w, f);
}

__attribute__((noinline)) void mr__fiber_park_in(struct mr_fiber *f, _Atomic uint64_t *word,
						 uint64_t val, const char *call)
{
	struct mr__worker *w = mr__self();

	check_on_own_stack(f, call);
	count_park(w, f, call);
	/* Cleared by the commit once it is done with f (commit_park()). */
	if (f->armed)
		atomic_store_explicit(&f->committing, 1, memory_order_relaxed);
	f->action = ACT_PARK_IN;
	f->pub_word = word;
	f->pub_val = val;
	park(w, f);
}

struct mr__job *mr__yield_pop(struct mr__worker *w)
{
	struct mr_fiber *f = w->yield_head;

	if (!f)
		return NULL;
	w->yield_head = f->yield_next;
	if (!w->yield_head)
		w->yield_tail = NULL;
	return &f->hdr;
}

void mr_yield(void)
{
	struct mr_fiber *f = mr__fiber_parkable();

	if (!f) {
		sched_yield();
		return;
	}
	check_on_own_stack(f, "mr_yield");
	struct mr__worker *w = mr__self();
	struct mr_fiber *next = w->yield_head;
	/*
	 * Only when the worker loop would find nothing else: no job in the
	 * deque (private or shared: with one worker nobody steals), no pending
	 * timer (due ones fire in the loop) and nothing injected. Fibers that
	 * yield to each other here would starve all of those.
	 */
	if (next && mr__deque_private_len(&w->dq) == 0 && !mr__deque_stealable(&w->dq) &&
	    atomic_load_explicit(&w->tnext, memory_order_relaxed) < 0 &&
	    atomic_load_explicit(&w->rt->inj_len, memory_order_relaxed) == 0) {
		/*
		 * Nothing else to run here but yielded fibers: switch straight to
		 * the first of them instead of through the worker's context.
		 * next takes over our resumer; we join the yield queue at once,
		 * which is safe because only this worker pops that queue and it
		 * is busy running next until our registers are saved.
		 */
		w->yield_head = next->yield_next;
		f->yield_next = NULL;
		if (w->yield_head)
			w->yield_tail->yield_next = f;
		else
			w->yield_head = f;
		w->yield_tail = f;
		/* How f last switched out, for count_run() when it runs again
		 * (nothing else reads it for a fiber on the yield queue). */
		f->action = ACT_YIELD;
		MR_PROBE3(fiber_stop, f, w->idx, f->action);
		atomic_store_explicit(&f->run_state, MR__FS_RUNNABLE, memory_order_relaxed);
		transfer(w, f, next, TRANSFER);
		return;
	}
	f->action = ACT_YIELD;
	atomic_store_explicit(&f->run_state, MR__FS_RUNNABLE, memory_order_relaxed);
	switch_out(f);
}

void mr__fiber_thread_exit(struct mr__worker *w)
{
	if (w->altstack) {
		stack_t ss = { .ss_flags = SS_DISABLE };
		sigaltstack(&ss, NULL);
		free(w->altstack);
		w->altstack = NULL;
	}
	mr__stack_cache_flush(w);
}

/* ---- creation ------------------------------------------------------------ */

/*
 * The handle check_fiber() is reading, and the call it checks for. A stale
 * handle may point into memory that is no longer mapped: a fiber whose
 * stack was not of the default size took its control block along when its
 * mapping was unmapped at release. The read then faults, and on_fault()
 * turns that fault into the abort a released default-size fiber gets.
 */
static __thread const void *probe_handle __attribute__((tls_model("initial-exec")));
static __thread const char *probe_call __attribute__((tls_model("initial-exec")));

static struct mr_fiber *check_fiber(const mr_fiber_t *f, const char *call)
{
	probe_handle = f;
	probe_call = call;
	/* The read between the two marks, as the signal handler sees it. */
	atomic_signal_fence(memory_order_seq_cst);
	uint32_t magic = ((const volatile struct mr_fiber *)f)->magic;
	atomic_signal_fence(memory_order_seq_cst);
	probe_call = NULL;
	if (magic != FIBER_MAGIC)
		mr__die(call, "%p is not a fiber handle (or its fiber was released)", (void *)f);
	return (struct mr_fiber *)f;
}

mr_fiber_t *mr_go_opts(void (*fn)(void *), void *arg, const struct mr_fiber_opts *opts)
{
	size_t size = MR_FIBER_STACK_DEFAULT;
	const char *name = NULL;
	struct mr_runtime *rt = NULL;
	struct mr__worker *w = mr__self();
	struct mr__stack st;

	/* A signal handler that interrupted this thread inside the library
	 * (sched.h): going on would deadlock on a lock we hold or strand the
	 * fiber on a worker that is going to sleep. */
	if (unlikely(mr__tls_inside))
		mr__die("mr_go", "called from a signal handler that interrupted moirai on this "
				 "thread: mr_go is not async-signal-safe (see <moirai/fiber.h>)");
	if (!fn || (opts && opts->sz < sizeof(size_t))) {
		errno = EINVAL;
		return NULL;
	}
	if (opts) {
#define MR_HAS(f) (opts->sz >= offsetof(struct mr_fiber_opts, f) + sizeof(opts->f))
		if (MR_HAS(stack_size) && opts->stack_size)
			size = opts->stack_size;
		if (MR_HAS(name))
			name = opts->name;
		if (MR_HAS(runtime))
			rt = opts->runtime;
#undef MR_HAS
	}
	if (size < MR_FIBER_STACK_MIN || size > MR_FIBER_STACK_MAX) {
		errno = EINVAL;
		return NULL;
	}
	if (rt)
		mr__check_live(rt, "mr_go");
	else if (w)
		rt = w->rt;
	else if (!(rt = mr__default_runtime_try()))
		return NULL; /* errno set */
	if (mr__stack_alloc(w, size, &st) < 0) {
		errno = ENOMEM;
		return NULL;
	}
	/* The control block at the top of the stack, on its own cache line. */
	uintptr_t top = (uintptr_t)st.base + st.size;
	struct mr_fiber *f = (struct mr_fiber *)((top - sizeof(*f)) & ~(uintptr_t)63);

	memset(f, 0, sizeof(*f));
	f->hdr.exec = mr__fiber_exec;
	f->rt = rt;
	f->fn = fn;
	f->arg = arg;
	f->stack = st;
	f->magic = FIBER_MAGIC;
	atomic_init(&f->state, 0);
	if (name)
		snprintf(f->name, sizeof(f->name), "%s", name);
	f->sp = mr__ctx_make(f, fiber_entry);
#ifdef MR_TSAN
	f->tsan_fiber = __tsan_create_fiber(0);
	if (name)
		__tsan_set_fiber_name(f->tsan_fiber, f->name);
#endif
	/* seq_cst: counted before it can run (and before destroy can look). */
	atomic_fetch_add_explicit(&rt->nfibers, 1, memory_order_seq_cst);
	MR__STAT_BY(rt, fibers_spawned, 1);
	MR_PROBE3(fiber_create, f, fn, rt->id);
	mr__fiber_born(f);
	mr__fiber_ready(f);
	return f;
}

mr_fiber_t *mr_go(void (*fn)(void *), void *arg)
{
	return mr_go_opts(fn, arg, NULL);
}

mr_fiber_t *mr_fiber_self(void)
{
	return mr__tls_fiber;
}

/* ---- cancellation (fiber.h) ---------------------------------------------------- */

void mr__cancel_disarm(struct mr_fiber *f)
{
	if (!f || !f->armed)
		return;
	f->armed = false;
	atomic_store_explicit(&f->hook, NULL, memory_order_relaxed);
	mr__cancel_fence();
	/* A canceller inside our hook holds cancel_lock, and an armed park's
	 * commit may still read f: wait them out. acquire: pairs with their
	 * release; after it nothing touches the hook's memory. */
	unsigned spins = 0;
	while (atomic_load_explicit(&f->cancel_lock, memory_order_acquire) ||
	       atomic_load_explicit(&f->committing, memory_order_acquire))
		mr__backoff(&spins);
}

/* ---- membarrier: the canceller's side of the pairs (fiber.h) ------------- */

_Atomic bool mr__cancel_asym;
_Atomic uint32_t mr__cancel_fence_word;
static _Atomic uint32_t hooks_running;

void mr__cancel_hook_run(struct mr__cancel_hook *h)
{
	/* seq_cst: before the hook looks at its waiter's state; pairs with
	 * mr__cancel_hooks_quiesce(). */
	atomic_fetch_add_explicit(&hooks_running, 1, memory_order_seq_cst);
	h->fn(h);
	/* release: the hook's last touch of the object comes before a
	 * quiesce that sees the count drop. */
	atomic_fetch_sub_explicit(&hooks_running, 1, memory_order_release);
}

void mr__cancel_hooks_quiesce(void)
{
	unsigned spins = 0;

	mr__fence_seq_cst();
	/* acquire: pairs with the release above. */
	while (atomic_load_explicit(&hooks_running, memory_order_acquire))
		mr__backoff(&spins);
}

static bool membarrier_register(void)
{
	return syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

#ifndef MR__TSAN_BUILD
/* A forked child has a new address space, maybe registered for nothing. */
static void membarrier_atfork_child(void)
{
	if (atomic_load_explicit(&mr__cancel_asym, memory_order_relaxed) && !membarrier_register())
		atomic_store_explicit(&mr__cancel_asym, false, memory_order_relaxed);
}
#endif

/*
 * Before main() and before the constructors of a program linked with the
 * static library (priority 101), so before any fiber arms: the choice
 * never changes under a running wait (except in a forked child, where
 * only the forking thread runs). MOIRAI_MEMBARRIER=0 keeps the seq_cst
 * fences (tests run both).
 */
__attribute__((constructor(101))) static void membarrier_init(void)
{
#ifndef MR__TSAN_BUILD
	const char *e = getenv("MOIRAI_MEMBARRIER");

	if (e && strcmp(e, "0") == 0)
		return;
	long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
	if (cmds < 0 || !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED))
		return;
	if (!membarrier_register())
		return;
	atomic_store_explicit(&mr__cancel_asym, true, memory_order_relaxed);
	pthread_atfork(NULL, NULL, membarrier_atfork_child);
#endif
}

static void cancel_fence_heavy(void)
{
	if (atomic_load_explicit(&mr__cancel_asym, memory_order_relaxed)) {
		if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0)
			return;
		int err = errno;
		if (!membarrier_register() ||
		    syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0)
			mr__die("mr_fiber_cancel",
				"membarrier: %s (a seccomp filter installed after the library "
				"loaded? MOIRAI_MEMBARRIER=0 avoids the call)",
				strerror(err));
		return;
	}
#ifdef MR__TSAN_BUILD
	atomic_fetch_add_explicit(&mr__cancel_fence_word, 0, memory_order_seq_cst);
#else
	atomic_thread_fence(memory_order_seq_cst);
#endif
}

int mr_fiber_cancel(mr_fiber_t *handle)
{
	if (!handle)
		return -EINVAL;
	struct mr_fiber *f = check_fiber(handle, "mr_fiber_cancel");

	/* acquire: a fiber that has returned says so (after_switch()). */
	if (atomic_load_explicit(&f->state, memory_order_acquire) == ST_DONE)
		return -ESRCH;
	/* The canceller's side of the pairs in fiber.h: the request and the
	 * lock, the heavy fence, the hook. acquire: pairs with the arm's
	 * release (the hook's fields). */
	atomic_fetch_or_explicit(&f->cancel, MR__CANCEL_REQ, memory_order_seq_cst);
	mr__spin_lock(&f->cancel_lock);
	cancel_fence_heavy();
	struct mr__cancel_hook *h = atomic_load_explicit(&f->hook, memory_order_acquire);
	/* Still requested: f may have seen our request meanwhile (at its arm
	 * or commit), used it up on the wait we came for, and armed its next
	 * one; one request cancels one call. */
	if (h && (atomic_load_explicit(&f->cancel, memory_order_relaxed) & MR__CANCEL_REQ))
		mr__cancel_hook_run(h);
	mr__spin_unlock(&f->cancel_lock);
	return 0;
}

void mr_fiber_shield(void)
{
	struct mr_fiber *f = mr__tls_fiber;

	if (unlikely(!f))
		mr__die("mr_fiber_shield", "not called from a fiber");
	if (unlikely(f->shield == UINT16_MAX))
		mr__die("mr_fiber_shield", "shields nested %u deep", (unsigned)f->shield);
	f->shield++;
}

void mr_fiber_unshield(void)
{
	struct mr_fiber *f = mr__tls_fiber;

	if (unlikely(!f || !f->shield))
		mr__die("mr_fiber_unshield", "no mr_fiber_shield() of this fiber to end");
	f->shield--;
}

bool mr_fiber_cancelled(void)
{
	struct mr_fiber *f = mr__tls_fiber;

	return f && (atomic_load_explicit(&f->cancel, memory_order_relaxed) & MR__CANCEL_REQ);
}

const char *mr_fiber_name(const mr_fiber_t *f)
{
	return f ? check_fiber(f, "mr_fiber_name")->name : "";
}

/* ---- join and detach ------------------------------------------------------- */

struct join_commit {
	struct mr_fiber *target;
	struct mr__waiter *wt;
};

/* After the joiner parked: register it, unless the target finished meanwhile. */
static bool join_commit(void *arg)
{
	struct join_commit *jc = arg;
	uintptr_t expect = 0;

	/* acq_rel: pairs with the exchange in after_switch(ACT_EXIT). */
	return atomic_compare_exchange_strong_explicit(&jc->target->state, &expect,
						       (uintptr_t)jc->wt, memory_order_acq_rel,
						       memory_order_acquire);
}

static bool waiter_done(void *arg)
{
	struct mr__waiter *wt = arg;
	/* acquire: pairs with the seq_cst store in mr__waiter_wake(). */
	return atomic_load_explicit(&wt->state, memory_order_acquire) != MR__W_WAITING;
}

int mr_fiber_join(mr_fiber_t *handle)
{
	if (!handle)
		return -EINVAL;
	struct mr_fiber *f = check_fiber(handle, "mr_fiber_join");
	struct mr_fiber *self = mr__fiber_parkable();

	if (f == mr__tls_fiber)
		return -EDEADLK;
	uintptr_t s = atomic_load_explicit(&f->state, memory_order_acquire);
	if (s == ST_DETACHED)
		mr__die("mr_fiber_join", "fiber %p (\"%s\") is detached", (void *)f, f->name);
	if (s == ST_RELEASED)
		mr__die("mr_fiber_join", "fiber %p was already joined or released", (void *)f);
	if (s > ST_RELEASED)
		mr__die("mr_fiber_join", "fiber %p (\"%s\") is already being joined", (void *)f,
			f->name);
	if (s == 0) {
		struct mr__waiter wt;

		mr__wait_note(MR__WAIT_JOIN, f, -1);

		memset(&wt, 0, sizeof(wt));
		wt.fiber = self;
		atomic_init(&wt.state, MR__W_WAITING);
		struct mr__worker *w = mr__self();
		if (self) {
			struct join_commit jc = { f, &wt };
			mr__fiber_park(join_commit, &jc, "mr_fiber_join");
		} else if (w) {
			/* A job on a worker: run other work (the fiber itself, on a
			 * one-worker runtime) until it is done, as mr_join does. */
			uintptr_t expect = 0;
			wt.helper = w;
			if (atomic_compare_exchange_strong_explicit(&f->state, &expect,
								    (uintptr_t)&wt,
								    memory_order_acq_rel,
								    memory_order_acquire)) {
				mr__work_until(w, waiter_done, &wt);
				mr__waiter_helped(&wt);
			}
		} else {
			uintptr_t expect = 0;
			/* A thread blocked for ever (the deadlock check, sched.h);
			 * the exit's wake-up uncounts it. */
			wt.counted = true;
			atomic_fetch_add_explicit(&mr__nthreads_blocked, 1, memory_order_seq_cst);
			if (!atomic_compare_exchange_strong_explicit(&f->state, &expect,
								     (uintptr_t)&wt,
								     memory_order_acq_rel,
								     memory_order_acquire)) {
				atomic_fetch_sub_explicit(&mr__nthreads_blocked, 1,
							  memory_order_seq_cst);
			} else {
				mr__stuck_poke(f->rt);
				/* acquire: pairs with the store in mr__waiter_wake(). */
				while (atomic_load_explicit(&wt.state, memory_order_acquire) ==
				       MR__W_WAITING)
					mr__futex_wait(&wt.state, MR__W_WAITING);
			}
		}
		s = atomic_load_explicit(&f->state, memory_order_acquire);
		if (s != ST_DONE)
			mr__die("mr_fiber_join", "fiber %p: joined concurrently or detached",
				(void *)f);
	}
	release(self_after_switch(), f);
	return 0;
}

int mr_fiber_detach(mr_fiber_t *handle)
{
	if (!handle)
		return -EINVAL;
	struct mr_fiber *f = check_fiber(handle, "mr_fiber_detach");
	uintptr_t s = 0;

	if (atomic_compare_exchange_strong_explicit(&f->state, &s, ST_DETACHED,
						    memory_order_acq_rel, memory_order_acquire))
		return 0;
	if (s == ST_DONE) {
		release(mr__self(), f);
		return 0;
	}
	mr__die("mr_fiber_detach", "fiber %p is already detached, joined or being joined",
		(void *)f);
}

/* ---- mr_run ------------------------------------------------------------------ */

/*
 * The main fiber gets MR_RUN_STACK_DEFAULT (8 MiB, what a main thread gets)
 * unless told otherwise: a program's main moved onto a fiber must not
 * overflow where it did not before. The stack is a mapping of its own,
 * reserved, not committed (MAP_NORESERVE), and its pages become resident
 * only as they are touched: one such stack costs address space, not memory.
 */
static int run(void (*fn)(void *), void *arg, const struct mr_fiber_opts *opts, const char *call)
{
	struct mr__worker *w = mr__self();
	MR_OPTS(mr_fiber_opts, o, .stack_size = MR_RUN_STACK_DEFAULT, .name = "main");

	if (!fn || (opts && opts->sz < sizeof(size_t)))
		return -EINVAL;
	if (opts) {
#define MR_HAS(f) (opts->sz >= offsetof(struct mr_fiber_opts, f) + sizeof(opts->f))
		if (MR_HAS(stack_size) && opts->stack_size)
			o.stack_size = opts->stack_size;
		if (MR_HAS(name) && opts->name)
			o.name = opts->name;
		if (MR_HAS(runtime))
			o.runtime = opts->runtime;
#undef MR_HAS
	}
	if (!o.runtime && !(o.runtime = mr__default_runtime_try()))
		return -errno;
	mr__check_live(o.runtime, call);
	if (w && w->rt == o.runtime)
		return -EDEADLK;
	mr_fiber_t *f = mr_go_opts(fn, arg, &o);
	if (!f)
		return -errno;
	return mr_fiber_join(f);
}

int mr_run(mr_runtime_t *rt, void (*fn)(void *), void *arg)
{
	MR_OPTS(mr_fiber_opts, o, .runtime = rt);

	return run(fn, arg, &o, "mr_run");
}

int mr_run_opts(void (*fn)(void *), void *arg, const struct mr_fiber_opts *opts)
{
	return run(fn, arg, opts, "mr_run_opts");
}

/* ---- stack overflow ---------------------------------------------------------- */

static struct sigaction old_segv, old_bus;
static pthread_once_t handler_once = PTHREAD_ONCE_INIT;

static void put(char *buf, size_t *n, size_t cap, const char *s)
{
	while (*s && *n + 1 < cap)
		buf[(*n)++] = *s++;
}

/* v in decimal (base 10) or as 0x... (base 16), without stdio. */
static void put_num(char *buf, size_t *n, size_t cap, uintmax_t v, unsigned base)
{
	char num[24], out[28];
	size_t k = 0, m = 0;

	do
		num[k++] = "0123456789abcdef"[v % base];
	while ((v /= base) && k < sizeof(num));
	if (base == 16) {
		out[m++] = '0';
		out[m++] = 'x';
	}
	while (k)
		out[m++] = num[--k];
	out[m] = 0;
	put(buf, n, cap, out);
}

/* Write buf[0..n) and a newline to stderr and abort (async-signal-safe). */
static __attribute__((noreturn)) void fault_abort(char *buf, size_t n, size_t cap)
{
	put(buf, &n, cap, "\n");
	ssize_t r = write(2, buf, n);
	(void)r;
	signal(SIGABRT, SIG_DFL);
	abort();
}

static void on_fault(int sig, siginfo_t *si, void *uc)
{
	struct mr_fiber *f = mr__tls_fiber;
	struct sigaction *old = sig == SIGSEGV ? &old_segv : &old_bus;
	size_t gs = mr__stack_guard((size_t)sysconf(_SC_PAGESIZE));

	char buf[256];
	size_t n = 0;
	const char *addr = si->si_addr;

	/* Async-signal-safe formatting below: no stdio. */
	/* Anywhere in the guard: a frame may skip pages of it untouched. */
	if (f && addr >= (char *)f->stack.base - gs && addr < (char *)f->stack.base) {
		put(buf, &n, sizeof(buf), "moirai: fiber stack overflow in fiber \"");
		put(buf, &n, sizeof(buf), f->name[0] ? f->name : "(unnamed)");
		put(buf, &n, sizeof(buf), "\" (stack size ");
		put_num(buf, &n, sizeof(buf), f->stack.size, 10);
		put(buf, &n, sizeof(buf), " bytes)");
		fault_abort(buf, n, sizeof(buf));
	}
	/* A job (or the worker loop) overflowed the worker thread's stack. */
	if ((uintptr_t)addr >= thread_guard_lo && (uintptr_t)addr < thread_guard_hi) {
		struct mr__worker *w = mr__self();
		put(buf, &n, sizeof(buf), "moirai: worker stack overflow in worker thread moirai-w");
		put_num(buf, &n, sizeof(buf), w ? w->idx : 0, 10);
		put(buf, &n, sizeof(buf), " (stack size ");
		put_num(buf, &n, sizeof(buf), thread_stack_size, 10);
		put(buf, &n, sizeof(buf), " bytes; mr_config.stack_size or MOIRAI_STACK sets it)");
		fault_abort(buf, n, sizeof(buf));
	}
	/* check_fiber() read a handle whose memory is gone: say what it says. */
	if (probe_call && addr >= (const char *)probe_handle &&
	    addr < (const char *)probe_handle + sizeof(struct mr_fiber)) {
		put(buf, &n, sizeof(buf), "moirai: ");
		put(buf, &n, sizeof(buf), probe_call);
		put(buf, &n, sizeof(buf), ": ");
		put_num(buf, &n, sizeof(buf), (uintptr_t)probe_handle, 16);
		put(buf, &n, sizeof(buf), " is not a fiber handle (or its fiber was released)");
		fault_abort(buf, n, sizeof(buf));
	}
	/* Not ours: hand it to whoever had the signal before us. */
	if (old->sa_flags & SA_SIGINFO) {
		old->sa_sigaction(sig, si, uc);
	} else if (old->sa_handler == SIG_DFL || old->sa_handler == SIG_IGN) {
		/* Return with the default action: the fault happens again. */
		signal(sig, SIG_DFL);
	} else {
		old->sa_handler(sig);
	}
}

static void install_once(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old_segv);
	sigaction(SIGBUS, &sa, &old_bus);
}

static void install_overflow_handler(void)
{
	pthread_once(&handler_once, install_once);
}
