/*
 * dump.c - what every fiber and worker of a runtime is doing
 * (mr_runtime_dump), the signal that asks for it (MOIRAI_DUMP_SIGNAL), and
 * the deadlock report (MOIRAI_DEADLOCK).
 *
 * Finding the fibers: a dump walks every fiber stack (mr__stack_each(),
 * stack.c: default-size stacks are slots of chunks that are never
 * unmapped, and the walk holds the lock that keeps other stacks mapped)
 * and reads the control block at the top of each (mr__fiber_on_stack()).
 * No list is kept: it cost each spawn and exit a lock pair. A fiber that
 * starts or returns while the walk passes may be missed or seen half made.
 *
 * What a fiber waits on is noted by each wait (mr__wait_note(), fiber.h);
 * the dump reads those notes racily: a fiber that runs meanwhile may show a
 * stale line, never a crash. The stack of a fiber that is not running is
 * walked from the context its switch saved (switch_*.S: the frame pointer
 * and return address sit at fixed offsets from the saved sp), along the
 * frame-pointer chain (the library is built with -fno-omit-frame-pointer),
 * at most DEPTH frames, each frame inside the fiber's stack and above the
 * previous one: a corrupt chain ends the walk, it cannot fault. A fiber
 * that runs while we walk it gives a meaningless (but bounded) trace.
 *
 * The deadlock check (deadlock_look) runs when the last worker of a runtime
 * goes to sleep, and when the last one blocks inside a job; never on a fast
 * path. What it reports, and why it is believed:
 *   - every fiber of the runtime is parked on an object of this process
 *     (channel, select, mutex, cond, sem, wait group, event, join) with no
 *     deadline; no timer and no I/O is pending in the runtime, no job runs,
 *     nothing is queued (the destroy path's DRAIN_STUCK, sched/runtime.c);
 *     every other runtime is idle the same way; and every thread of the
 *     process (/proc/self/task) is either one of ours waiting for work
 *     (workers, idle blocking-pool threads, the dump thread) or a thread
 *     blocked without a deadline in a wait of a Moirai object that only a
 *     waker can end (a wait queue's thread waiter, mr_fiber_join or mr_run).
 *     Such a thread is counted until its waker takes it off, so a thread
 *     just woken still counts as "not blocked" by the time anyone looks.
 *     A thread we cannot account for (one sleeping, reading a pipe, or
 *     blocked on a channel: not counted yet) may post later: no report.
 *     So are fibers waiting on a shm:// channel (another process may post),
 *     on I/O, on the blocking pool, or with a deadline.
 *   - all workers blocked inside jobs, asleep, with the same conditions:
 *     the report names the workers and what each job waits on.
 *   - a cycle of fibers each waiting (no deadline) for a mutex held by the
 *     next, whatever the rest of the runtime does: a fiber holding a mutex
 *     while parked on another cannot let it go. Looked for at most once a
 *     second while timers keep the runtime ticking.
 * Misses rather than false reports: a check that finds any doubt says
 * nothing. The report is printed once per runtime (stderr, with the dump),
 * or aborts (MOIRAI_DEADLOCK=abort), or is off (MOIRAI_DEADLOCK=off).
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fiber.h"

#define DEPTH 32

/* ---- finding the fibers ---------------------------------------------------- */

/*
 * No list of fibers is kept: a spawn and an exit would each lock it (15-25
 * ns a fiber, measured). A dump walks every fiber stack instead
 * (mr__stack_each(): default-size stacks are slots of chunks that are
 * never unmapped) and takes the live fibers of its runtime from their
 * control blocks (mr__fiber_on_stack()). A fiber that returns, or one
 * that starts, while the walk passes may be missed or seen half made:
 * the snapshot says so much ("lines of fibers that run meanwhile may be
 * stale", runtime.h).
 */

static void dump_signal_start(void);
_Atomic bool mr__dump_signal_started; /* a hint: pthread_once decides */

void mr__fiber_born_slow(void)
{
	atomic_store_explicit(&mr__dump_signal_started, true, memory_order_relaxed);
	dump_signal_start();
}

/* ---- snapshots ----------------------------------------------------------------- */

static const char *const kind_names[MR__WAIT_KINDS] = {
	[MR__WAIT_NONE] = "nothing",   [MR__WAIT_CHAN] = "chan",	[MR__WAIT_SELECT] = "select",
	[MR__WAIT_SHM] = "shm-chan",   [MR__WAIT_MUTEX] = "mutex",	[MR__WAIT_COND] = "cond",
	[MR__WAIT_SEM] = "sem",	       [MR__WAIT_WG] = "wg",		[MR__WAIT_EVENT] = "event",
	[MR__WAIT_JOIN] = "join",      [MR__WAIT_SLEEP] = "sleep",	[MR__WAIT_IO] = "io",
	[MR__WAIT_BLOCKING] = "blocking",
};

static const char *kind_name(unsigned k)
{
	return k < MR__WAIT_KINDS ? kind_names[k] : "?";
}

/* A wait only something inside this process can end, and that has no
 * deadline of its own (the deadlock check's "parked on Moirai objects"). */
static bool kind_internal(unsigned k)
{
	switch (k) {
	case MR__WAIT_CHAN:
	case MR__WAIT_SELECT:
	case MR__WAIT_MUTEX:
	case MR__WAIT_COND:
	case MR__WAIT_SEM:
	case MR__WAIT_WG:
	case MR__WAIT_EVENT:
	case MR__WAIT_JOIN:
		return true;
	default:
		return false;
	}
}

struct snap {
	const struct mr_fiber *f;
	char name[32];
	unsigned state, kind;
	uint32_t parks;
	const void *obj;
	int64_t deadline, since;
	unsigned npc;
	uintptr_t pc[DEPTH];
};

/*
 * Walk a suspended fiber's frames into pc[]. Reads another context's stack
 * (which may run meanwhile): not instrumented, every address checked
 * against the stack's bounds first.
 */
__attribute__((noinline, no_sanitize_address, no_sanitize_thread)) static unsigned
walk(const struct mr_fiber *f, uintptr_t *pc, unsigned max)
{
	uintptr_t lo = (uintptr_t)f->stack.base, hi = lo + f->stack.size;
	uintptr_t sp = (uintptr_t)*(void *const volatile *)&f->sp;
	const volatile uintptr_t *s = (const volatile uintptr_t *)sp;
	uintptr_t fp;
	unsigned n = 0;

	/* ran: suspended in a switch (else at its entry, nothing to walk). */
	if (!*(const volatile bool *)&f->ran || sp < lo || sp + 16 * sizeof(uintptr_t) > hi ||
	    (sp & 7))
		return 0;
#if defined(__x86_64__)
	/* mxcsr/fpcw, r15, r14, r13, r12, rbx, rbp, return address. */
	fp = s[6];
	pc[n++] = s[7];
#elif defined(__aarch64__)
	/* x19..x28, then x29 (fp) and x30 (lr) at sp + 80. */
	fp = s[10];
	pc[n++] = s[11];
#else
	return 0;
#endif
	while (n < max && fp > sp && fp >= lo && fp + 2 * sizeof(uintptr_t) <= hi && !(fp & 7)) {
		const volatile uintptr_t *frame = (const volatile uintptr_t *)fp;
		uintptr_t next = frame[0], ret = frame[1];
		if (!ret)
			break;
		pc[n++] = ret;
		if (next <= fp)
			break;
		sp = fp;
		fp = next;
	}
	return n;
}

/* Not instrumented by TSan: the fiber may start or return as we read it
 * (a racy snapshot on purpose, see "Finding the fibers" above). */
__attribute__((no_sanitize_thread)) static void take(struct snap *s, const struct mr_fiber *f)
{
	s->f = f;
	for (size_t i = 0; i < sizeof(s->name); i++) /* no memcpy: TSan intercepts it */
		s->name[i] = ((const volatile char *)f->name)[i];
	s->name[sizeof(s->name) - 1] = 0;
	s->state = atomic_load_explicit(&f->run_state, memory_order_relaxed);
	s->kind = atomic_load_explicit(&f->wait_kind, memory_order_relaxed);
	s->obj = atomic_load_explicit(&f->wait_obj, memory_order_relaxed);
	s->deadline = atomic_load_explicit(&f->wait_deadline, memory_order_relaxed);
	s->since = atomic_load_explicit(&f->since, memory_order_relaxed);
	s->parks = atomic_load_explicit(&f->parks, memory_order_relaxed);
	s->npc = 0;
	if (s->state != MR__FS_RUNNING)
		s->npc = walk(f, s->pc, DEPTH);
}

struct snap_walk {
	struct mr_runtime *rt;
	struct snap *v;
	size_t len, cap;
};

static void snap_one(void *base, size_t size, void *arg)
{
	struct snap_walk *sw = arg;
	const struct mr_fiber *f = mr__fiber_on_stack(sw->rt, base, size);

	if (!f)
		return;
	if (sw->len == sw->cap) {
		size_t nc = sw->cap ? 2 * sw->cap : 64;
		struct snap *nv = realloc(sw->v, nc * sizeof(*nv));
		if (!nv)
			return;
		sw->v = nv;
		sw->cap = nc;
	}
	take(&sw->v[sw->len++], f);
}

/* Snapshots of rt's live fibers (malloc'd, *n of them), or NULL. */
static struct snap *snap_all(struct mr_runtime *rt, size_t *n)
{
	struct snap_walk sw = { .rt = rt };

	mr__stack_each(snap_one, &sw);
	*n = sw.len;
	return sw.v;
}

/* ---- printing -------------------------------------------------------------------- */

static const char *state_name(unsigned st)
{
	return st == MR__FS_RUNNING ? "running" : st == MR__FS_PARKED ? "parked" : "runnable";
}

static void put_ms(FILE *out, int64_t ns)
{
	fprintf(out, "%" PRId64 ".%03" PRId64 " ms", ns / 1000000, (ns / 1000) % 1000);
}

/* A wait: "chan 0x..." and its deadline. */
static void put_wait(FILE *out, unsigned kind, const void *obj, int64_t deadline)
{
	if (kind == MR__WAIT_IO)
		fprintf(out, "io fd %d", (int)(intptr_t)obj);
	else
		fprintf(out, "%s %p", kind_name(kind), obj);
	if (deadline >= 0) {
		fprintf(out, " deadline in ");
		put_ms(out, deadline - mr_now_ns());
	}
}

/*
 * One frame: "#k 0xPC symbol+0xOFF (module+0xOFF)". The module offset is
 * what addr2line -e MODULE takes (for a PIE or a shared object).
 */
static void put_frame(FILE *out, unsigned k, uintptr_t pc)
{
	Dl_info di;

	fprintf(out, "    #%u 0x%" PRIxPTR, k, pc);
	/* pc - 1: a return address may be the first byte of the next function. */
	if (pc && dladdr((void *)(pc - 1), &di) && di.dli_fbase) {
		if (di.dli_sname && di.dli_saddr)
			fprintf(out, " %s+0x%" PRIxPTR, di.dli_sname, pc - (uintptr_t)di.dli_saddr);
		const char *mod = di.dli_fname && *di.dli_fname ? di.dli_fname : "?";
		const char *slash = strrchr(mod, '/');
		fprintf(out, " (%s+0x%" PRIxPTR ")", slash ? slash + 1 : mod,
			pc - (uintptr_t)di.dli_fbase);
	}
	fputc('\n', out);
}

static void put_fiber(FILE *out, const struct snap *s, int64_t now)
{
	fprintf(out, "fiber %p \"%s\" %s ", (const void *)s->f, s->name, state_name(s->state));
	put_ms(out, now - s->since);
	if (s->state == MR__FS_PARKED) {
		fprintf(out, ": waits on ");
		put_wait(out, s->kind, s->obj, s->deadline);
	}
	fputc('\n', out);
	for (unsigned k = 0; k < s->npc; k++)
		put_frame(out, k, s->pc[k]);
}

static bool worker_idle(struct mr_runtime *rt, unsigned i)
{
	uint64_t word = atomic_load_explicit(&rt->idle_mask[i / 64], memory_order_relaxed);
	return word >> (i % 64) & 1;
}

static void put_workers(FILE *out, struct mr_runtime *rt)
{
	for (unsigned i = 0; i < rt->nworkers; i++) {
		struct mr__worker *w = rt->workers[i];
		struct mr_fiber *cur = atomic_load_explicit(&w->cur, memory_order_relaxed);
		fprintf(out, "worker %u (tid %d): ", i, (int)w->tid);
		if (atomic_load_explicit(&w->blocked, memory_order_relaxed)) {
			fprintf(out, "blocked in a job, waits on ");
			put_wait(out, atomic_load_explicit(&w->wait_kind, memory_order_relaxed),
				 atomic_load_explicit(&w->wait_obj, memory_order_relaxed),
				 atomic_load_explicit(&w->wait_deadline, memory_order_relaxed));
			if (cur)
				fprintf(out, "; runs fiber %p meanwhile", (void *)cur);
		} else if (cur) {
			fprintf(out, "runs fiber %p", (void *)cur);
		} else if (worker_idle(rt, i)) {
			fprintf(out, "idle");
		} else {
			fprintf(out, "runs a job or looks for work");
		}
		fputc('\n', out);
	}
}

static void dump_snaps(struct mr_runtime *rt, FILE *out, const struct snap *v, size_t n)
{
	int64_t now = mr__now_coarse();

	fprintf(out, "moirai runtime %p: %u workers, %zu fibers\n", (void *)rt, rt->nworkers, n);
	put_workers(out, rt);
	for (size_t i = 0; i < n; i++)
		put_fiber(out, &v[i], now);
}

int mr_runtime_dump(mr_runtime_t *rt, FILE *out)
{
	size_t n;

	if (!rt || !out)
		return -EINVAL;
	mr__check_live(rt, "mr_runtime_dump");
	struct snap *v = snap_all(rt, &n);
	if (!v && n)
		return -ENOMEM;
	dump_snaps(rt, out, v, n);
	free(v);
	fflush(out);
	return 0;
}

/* ---- deadlocks ----------------------------------------------------------------------- */

uintptr_t (*_Atomic mr__mutex_owner_fn)(const void *m);

enum { DL_REPORT, DL_ABORT, DL_OFF };

/* MOIRAI_DEADLOCK, read at each look (they are rare): report, abort, off. */
static int deadlock_mode(void)
{
	const char *s = getenv("MOIRAI_DEADLOCK");

	if (!s || !*s)
		return DL_REPORT;
	if (!strcmp(s, "abort"))
		return DL_ABORT;
	if (!strcmp(s, "off") || !strcmp(s, "0"))
		return DL_OFF;
	return DL_REPORT;
}

/*
 * Is every thread of the process either one of ours waiting for work or
 * a thread blocked for ever in a Moirai wait (sched.h)? Any other thread
 * might post to a channel later. (Under TSan, whose runtime starts
 * threads of its own, this is never so: the check stays silent there.)
 */
static bool threads_accounted(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	long tasks = 0;

	if (!d)
		return false;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			tasks++;
	closedir(d);
	long known = atomic_load_explicit(&mr__nthreads_internal, memory_order_seq_cst) +
		     atomic_load_explicit(&mr__nthreads_blocked, memory_order_seq_cst);
	return tasks == known;
}

/* The snapshot of fiber f among v[0..n), or NULL. */
static const struct snap *find_snap(const struct snap *v, size_t n, uintptr_t f)
{
	for (size_t i = 0; i < n; i++)
		if ((uintptr_t)v[i].f == f)
			return &v[i];
	return NULL;
}

/* The fiber that holds the mutex s waits for for ever, if s does so and
 * that holder is a parked fiber of v; else NULL. */
static const struct snap *mutex_next(const struct snap *v, size_t n, const struct snap *s)
{
	uintptr_t (*owner)(const void *) =
		atomic_load_explicit(&mr__mutex_owner_fn, memory_order_relaxed);

	if (!owner || s->state != MR__FS_PARKED || s->kind != MR__WAIT_MUTEX || s->deadline >= 0)
		return NULL;
	const struct snap *t = find_snap(v, n, owner(s->obj));
	return t && t->state == MR__FS_PARKED ? t : NULL;
}

/*
 * A cycle of fibers each waiting for ever for a mutex the next one holds:
 * its first member, or NULL. From each fiber follow the chain at most n
 * steps; a chain that comes back to where it started is a cycle (one
 * that enters a cycle elsewhere finds it from a member).
 */
static const struct snap *mutex_cycle(const struct snap *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct snap *s = mutex_next(v, n, &v[i]);
		for (size_t k = 0; s && k < n; k++) {
			if (s == &v[i])
				return s;
			s = mutex_next(v, n, s);
		}
	}
	return NULL;
}

/* Every fiber parked for ever on an object of this process (a running
 * one allowed when every worker is blocked in a job: it is one of them). */
static bool all_parked(const struct snap *v, size_t n, bool in_jobs)
{
	for (size_t i = 0; i < n; i++) {
		if (in_jobs && v[i].state == MR__FS_RUNNING)
			continue;
		if (v[i].state != MR__FS_PARKED || !kind_internal(v[i].kind) || v[i].deadline >= 0)
			return false;
	}
	return true;
}

/*
 * Every worker blocked in a job that waits for ever on an object of this
 * process, asleep, no timer, no I/O in flight. Jobs queued in the injector
 * do not count: only an unblocked worker runs them (a blocked one runs
 * fibers only, and its caller saw none queued).
 */
static bool workers_stuck_in_jobs(struct mr_runtime *rt)
{
	for (unsigned i = 0; i < rt->nworkers; i++) {
		struct mr__worker *w = rt->workers[i];
		if (!atomic_load_explicit(&w->blocked, memory_order_seq_cst) ||
		    !atomic_load_explicit(&w->hsleep, memory_order_seq_cst) ||
		    atomic_load_explicit(&w->io_inflight, memory_order_relaxed) ||
		    atomic_load_explicit(&w->tnext, memory_order_relaxed) >= 0 ||
		    !kind_internal(atomic_load_explicit(&w->wait_kind, memory_order_relaxed)) ||
		    atomic_load_explicit(&w->wait_deadline, memory_order_relaxed) >= 0)
			return false;
	}
	return true;
}

/*
 * The cycle from `first` (its owners read after the snapshot v) holds in
 * a second snapshot: each member still parked, not having parked again
 * since (same count). A member parked all along cannot have let go of a
 * mutex, and the owner word names the holder until it unlocks, so each
 * owner read in between was the holder for the whole time: the cycle
 * was real at every instant between the two looks.
 */
static bool cycle_still(struct mr_runtime *rt, const struct snap *v, size_t n,
			const struct snap *first)
{
	size_t m;
	struct snap *w = snap_all(rt, &m);
	const struct snap *s = first;
	bool ok = w != NULL;

	do {
		const struct snap *t = ok ? find_snap(w, m, (uintptr_t)s->f) : NULL;
		if (!t || t->state != MR__FS_PARKED || t->parks != s->parks || t->obj != s->obj)
			ok = false;
		s = mutex_next(v, n, s);
	} while (ok && s && s != first);
	free(w);
	return ok && s == first;
}

static void put_cycle(FILE *out, const struct snap *v, size_t n, const struct snap *first)
{
	const struct snap *s = first;

	fprintf(out, "moirai: deadlock: a cycle of fibers waiting for mutexes:\n");
	for (size_t k = 0; k < n; k++) {
		const struct snap *t = mutex_next(v, n, s);
		if (!t)
			break; /* cannot be: the members stay parked */
		fprintf(out, "  fiber %p \"%s\" waits for mutex %p, held by fiber %p \"%s\"\n",
			(const void *)s->f, s->name, s->obj, (const void *)t->f, t->name);
		s = t;
		if (s == first)
			break;
	}
}

static void put_jobs(FILE *out, struct mr_runtime *rt)
{
	fprintf(out, "moirai: deadlock: every worker is blocked inside a job, and nothing "
		     "can wake them:\n");
	for (unsigned i = 0; i < rt->nworkers; i++) {
		struct mr__worker *w = rt->workers[i];
		fprintf(out, "  worker %u (tid %d) waits on ", i, (int)w->tid);
		put_wait(out, atomic_load_explicit(&w->wait_kind, memory_order_relaxed),
			 atomic_load_explicit(&w->wait_obj, memory_order_relaxed), -1);
		fputc('\n', out);
	}
}

/*
 * The look (sched.h: mr__stuck_hook), on a worker's thread about to
 * sleep, with no lock held. Cheap when there is nothing to see: a few
 * atomic loads, then the fiber lists only when the runtime is stuck or
 * once a second for mutex cycles.
 */
static void deadlock_look(struct mr_runtime *rt, int why)
{
	bool in_jobs = why == MR__STUCK_IN_JOBS;
	int mode;

	/* The cheap reasons to say nothing first: a timer that keeps a
	 * runtime ticking brings us here at every tick. */
	if (atomic_load_explicit(&rt->deadlock_said, memory_order_relaxed))
		return;
	bool stuck = in_jobs ? workers_stuck_in_jobs(rt) : mr__rt_stuck(rt);
	if (!stuck) {
		/* Only mutex cycles can be seen now: once a second at most. */
		if (!atomic_load_explicit(&mr__mutex_owner_fn, memory_order_relaxed))
			return;
		int64_t now = mr__now_coarse();
		int64_t last = atomic_load_explicit(&rt->deadlock_looked, memory_order_relaxed);
		if (now - last < 1000000000 ||
		    !atomic_compare_exchange_strong_explicit(&rt->deadlock_looked, &last, now,
							     memory_order_relaxed,
							     memory_order_relaxed))
			return;
	}
	if ((mode = deadlock_mode()) == DL_OFF)
		return;
	size_t n;
	struct snap *v = snap_all(rt, &n);
	if (!v)
		return;
	const struct snap *cycle = mutex_cycle(v, n);
	if (cycle && !cycle_still(rt, v, n, cycle))
		cycle = NULL;
	bool all = false;
	if (!cycle && stuck && all_parked(v, n, in_jobs) && mr__others_idle(rt) &&
	    threads_accounted()) {
		/* Still so after all that looking (nothing ran meanwhile). */
		all = in_jobs ? workers_stuck_in_jobs(rt) : mr__rt_stuck(rt);
	}
	uint32_t zero = 0;
	if ((cycle || all) &&
	    atomic_compare_exchange_strong_explicit(&rt->deadlock_said, &zero, 1,
						    memory_order_relaxed, memory_order_relaxed)) {
		FILE *out = stderr;
		if (cycle)
			put_cycle(out, v, n, cycle);
		else if (in_jobs)
			put_jobs(out, rt);
		else
			fprintf(out, "moirai: deadlock: all %zu fibers of runtime %p are asleep, "
				     "and nothing can wake them\n",
				n, (void *)rt);
		dump_snaps(rt, out, v, n);
		fflush(out);
		if (mode == DL_ABORT)
			mr__die("MOIRAI_DEADLOCK=abort", "deadlock reported above");
	}
	free(v);
}

__attribute__((constructor)) static void deadlock_init(void)
{
	atomic_store_explicit(&mr__stuck_hook, deadlock_look, memory_order_relaxed);
}

/* ---- the dump signal ------------------------------------------------------------------ */

static int sig_pipe[2] = { -1, -1 };

/* Async-signal-safe: one byte down the pipe, errno kept. */
static void on_dump_signal(int sig)
{
	int saved = errno;
	char c = 'd';
	ssize_t r = write(sig_pipe[1], &c, 1);

	(void)r; /* a full pipe: a dump is pending anyway */
	(void)sig;
	errno = saved;
}

static void dump_one(struct mr_runtime *rt, void *arg)
{
	size_t n;
	struct snap *v = snap_all(rt, &n);

	dump_snaps(rt, arg, v, n);
	free(v);
}

/* The thread that dumps when the signal came: every live runtime. */
static void *dump_thread(void *arg)
{
	char c;

	(void)arg;
	pthread_setname_np(pthread_self(), "moirai-dump");
	atomic_fetch_add_explicit(&mr__nthreads_internal, 1, memory_order_seq_cst);
	for (;;) {
		ssize_t r = read(sig_pipe[0], &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		atomic_fetch_sub_explicit(&mr__nthreads_internal, 1, memory_order_seq_cst);
		const char *path = getenv("MOIRAI_DUMP_FILE");
		FILE *out = path && *path ? fopen(path, "ae") : NULL;
		FILE *to = out ? out : stderr;
		fprintf(to, "moirai: dump of process %d\n", (int)getpid());
		mr__runtime_each(dump_one, to);
		fflush(to);
		if (out)
			fclose(out);
		atomic_fetch_add_explicit(&mr__nthreads_internal, 1, memory_order_seq_cst);
	}
	atomic_fetch_sub_explicit(&mr__nthreads_internal, 1, memory_order_seq_cst);
	return NULL;
}

/* "SIGQUIT", "QUIT" or a number; 0 if none. */
static int parse_signal(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*s && !*end)
		return v > 0 && v < NSIG ? (int)v : 0;
	if (!strncmp(s, "SIG", 3))
		s += 3;
	for (int sig = 1; sig < NSIG; sig++) {
		const char *name = sigabbrev_np(sig);
		if (name && !strcmp(name, s))
			return sig;
	}
	return 0;
}

/*
 * MOIRAI_DUMP_SIGNAL, at the first spawn of the process: a pipe, the
 * thread that reads it, then the handler. The signal is blocked in the
 * dump thread so that it lands on another. Errors leave it off: a dump is
 * a diagnostic, the program goes on.
 */
static void dump_signal_init(void)
{
	const char *s = getenv("MOIRAI_DUMP_SIGNAL");
	int sig = s ? parse_signal(s) : 0;
	pthread_attr_t a;
	pthread_t t;
	sigset_t one, old;
	struct sigaction sa;

	if (!sig || sig == SIGKILL || sig == SIGSTOP || pipe2(sig_pipe, O_CLOEXEC) != 0)
		return;
	fcntl(sig_pipe[1], F_SETFL, O_NONBLOCK);
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	sigemptyset(&one);
	sigaddset(&one, sig);
	pthread_sigmask(SIG_BLOCK, &one, &old);
	int r = pthread_create(&t, &a, dump_thread, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&a);
	if (r) {
		close(sig_pipe[0]);
		close(sig_pipe[1]);
		return;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_dump_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(sig, &sa, NULL);
}

static pthread_once_t dump_signal_once = PTHREAD_ONCE_INIT;

static void dump_signal_start(void)
{
	pthread_once(&dump_signal_once, dump_signal_init);
}
