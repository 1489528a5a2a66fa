/*
 * moirai.c - the Moirai side of the fiber benchmarks (moirai_raw.c measures
 * the bare context switch underneath):
 *   yield        a runtime of WORKERS (1) workers; two fibers each call
 *                mr_yield() SIZE times: 2*SIZE switches through the
 *                scheduler
 *   spawn        SIZE times mr_go() of an empty fiber (it sets its own
 *                byte), then mr_fiber_join() of it
 *   spawn-batch  the same SIZE fibers started BATCH at a time, then joined
 *   parked       SIZE fibers started and parked in mr_wg_wait() on one gate
 *                wait group; prints the growth of VmRSS (7th field) while
 *                they are all parked; one run per process (run.sh repeats
 *                the process), REPS must be 1
 *   sleepers     SIZE fibers that each sleep 0.5 s (mr_sleep_ns), spawned
 *                one after another on a runtime of WORKERS (1) workers;
 *                times the spawns until every fiber has started its sleep
 *                and prints the growth of VmRSS then (7th field) and of the
 *                page tables (VmPTE, 8th); one run per process, as parked
 *   mutex        WORKERS fibers on a 2-worker runtime each add 1 to a shared
 *                counter SIZE/WORKERS times under one mr_mutex_t
 * Every run is an mr_run() of a main fiber, timed inside that fiber (from
 * before the first mr_go to after the last join), after one warm-up run.
 * go/main.go does the same things with goroutines. See bench.h for the
 * command line and output.
 */
#include "bench.h"

#include <moirai/moirai.h> /* fiber.h and sync.h among others */

#include <stdatomic.h>

#define BATCH 1000 /* fibers per batch in spawn-batch (go/main.go uses the same) */
#define MAX_MUTEX_FIBERS 256

static const char *impl = "moirai";
static const char *bench_name;

static void check(int ok, const char *what)
{
	if (!ok)
		fb_fail(bench_name, impl, what);
}

/* ---- yield -------------------------------------------------------------- */

struct yielder {
	uint64_t n, yields;
};

static void yielder(void *p)
{
	struct yielder *y = p;
	for (uint64_t i = 0; i < y->n; i++) {
		mr_yield();
		y->yields++;
	}
}

struct yield_run {
	struct yielder y[2];
	double ms;
};

static void yield_main(void *p)
{
	struct yield_run *r = p;
	double t0 = fb_now_ms();
	mr_fiber_t *a = mr_go(yielder, &r->y[0]);
	mr_fiber_t *b = mr_go(yielder, &r->y[1]);
	check(a && b, "mr_go failed");
	check(mr_fiber_join(a) == 0 && mr_fiber_join(b) == 0, "mr_fiber_join failed");
	r->ms = fb_now_ms() - t0;
}

/* ---- spawn -------------------------------------------------------------- */

struct spawn_run {
	unsigned char *flags; /* one per fiber: the fiber sets its own */
	uint64_t n;
	double ms;
};

static void set_flag(void *p)
{
	*(unsigned char *)p = 1;
}

static void spawn_main(void *p)
{
	struct spawn_run *s = p;
	double t0 = fb_now_ms();
	for (uint64_t i = 0; i < s->n; i++) {
		mr_fiber_t *f = mr_go(set_flag, &s->flags[i]);
		check(f != NULL, "mr_go failed");
		check(mr_fiber_join(f) == 0, "mr_fiber_join failed");
	}
	s->ms = fb_now_ms() - t0;
}

static void spawn_batch_main(void *p)
{
	struct spawn_run *s = p;
	mr_fiber_t *h[BATCH];
	double t0 = fb_now_ms();
	for (uint64_t lo = 0; lo < s->n; lo += BATCH) {
		uint64_t k = s->n - lo < BATCH ? s->n - lo : BATCH;
		for (uint64_t i = 0; i < k; i++) {
			h[i] = mr_go(set_flag, &s->flags[lo + i]);
			check(h[i] != NULL, "mr_go failed");
		}
		for (uint64_t i = 0; i < k; i++)
			check(mr_fiber_join(h[i]) == 0, "mr_fiber_join failed");
	}
	s->ms = fb_now_ms() - t0;
}

/* ---- parked ------------------------------------------------------------- */

struct parked_run {
	mr_wg_t started, gate, finished;
	_Atomic uint64_t woke;
	uint64_t n;
	double ms;
	int64_t bytes;
};

static void parked_fiber(void *p)
{
	struct parked_run *s = p;
	mr_wg_done(&s->started);
	mr_wg_wait(&s->gate); /* parked here until the main fiber opens the gate */
	atomic_fetch_add_explicit(&s->woke, 1, memory_order_relaxed);
	mr_wg_done(&s->finished);
}

static void parked_main(void *p)
{
	struct parked_run *s = p;
	int64_t budget = fb_mem_budget();
	mr_wg_init(&s->started);
	mr_wg_init(&s->gate);
	mr_wg_init(&s->finished);
	mr_wg_add(&s->started, (int64_t)s->n);
	mr_wg_add(&s->gate, 1);
	mr_wg_add(&s->finished, (int64_t)s->n);
	int64_t before = fb_rss();
	double t0 = fb_now_ms();
	for (uint64_t i = 0; i < s->n; i++) {
		mr_fiber_t *f = mr_go(parked_fiber, s);
		check(f != NULL, "mr_go failed (out of memory or mappings?)");
		check(mr_fiber_detach(f) == 0, "mr_fiber_detach failed");
		if (i % 4096 == 0 && fb_rss() - before > budget)
			fb_fail(bench_name, impl,
				"stopped: resident memory would exceed 3/4 of MemAvailable");
	}
	mr_wg_wait(&s->started); /* every fiber has run up to its mr_wg_wait */
	s->ms = fb_now_ms() - t0;
	s->bytes = fb_rss() - before;
	mr_wg_done(&s->gate);
	mr_wg_wait(&s->finished);
}

/* ---- sleepers ------------------------------------------------------------ */

#define SLEEP_NS 500000000ull /* 0.5 s, as go/main.go */

struct sleepers_run {
	mr_wg_t started, finished;
	_Atomic uint64_t woke;
	uint64_t n;
	double ms;
	int64_t bytes, pte;
};

static void sleeper(void *p)
{
	struct sleepers_run *s = p;
	mr_wg_done(&s->started);
	mr_sleep_ns(SLEEP_NS);
	atomic_fetch_add_explicit(&s->woke, 1, memory_order_relaxed);
	mr_wg_done(&s->finished);
}

static void sleepers_main(void *p)
{
	struct sleepers_run *s = p;
	mr_wg_init(&s->started);
	mr_wg_init(&s->finished);
	mr_wg_add(&s->started, (int64_t)s->n);
	mr_wg_add(&s->finished, (int64_t)s->n);
	int64_t before = fb_rss(), pte = fb_proc_kb("/proc/self/status", "VmPTE");
	double t0 = fb_now_ms();
	for (uint64_t i = 0; i < s->n; i++) {
		mr_fiber_t *f = mr_go(sleeper, s);
		check(f != NULL, "mr_go failed (out of memory or mappings?)");
		check(mr_fiber_detach(f) == 0, "mr_fiber_detach failed");
	}
	mr_wg_wait(&s->started); /* every fiber has started (and is asleep, 0.5 s is long) */
	s->ms = fb_now_ms() - t0;
	s->bytes = fb_rss() - before;
	s->pte = fb_proc_kb("/proc/self/status", "VmPTE") - pte;
	mr_wg_wait(&s->finished);
}

/* ---- mutex -------------------------------------------------------------- */

struct mutex_run {
	mr_mutex_t m;
	uint64_t counter; /* protected by m */
	uint64_t per;
	unsigned fibers;
	double ms;
};

static void adder(void *p)
{
	struct mutex_run *s = p;
	for (uint64_t i = 0; i < s->per; i++) {
		mr_mutex_lock(&s->m);
		s->counter++;
		mr_mutex_unlock(&s->m);
	}
}

static void mutex_main(void *p)
{
	struct mutex_run *s = p;
	mr_fiber_t *h[MAX_MUTEX_FIBERS];
	mr_mutex_init(&s->m);
	s->counter = 0;
	double t0 = fb_now_ms();
	for (unsigned i = 0; i < s->fibers; i++) {
		h[i] = mr_go(adder, s);
		check(h[i] != NULL, "mr_go failed");
	}
	for (unsigned i = 0; i < s->fibers; i++)
		check(mr_fiber_join(h[i]) == 0, "mr_fiber_join failed");
	s->ms = fb_now_ms() - t0;
	mr_mutex_destroy(&s->m);
}

/* ---- driver ------------------------------------------------------------- */

static void run(mr_runtime_t *rt, void (*fn)(void *), void *arg)
{
	check(mr_run(rt, fn, arg) == 0, "mr_run failed");
}

int main(int argc, char **argv)
{
	struct fb_args a;
	double t[FB_MAX_REPS];
	uint64_t count = 0;

	fb_parse(argc, argv, "yield|spawn|spawn-batch|parked|sleepers|mutex", &a);
	bench_name = a.bench;
	int is_mutex = !strcmp(a.bench, "mutex");
	/* mutex: WORKERS is the number of fibers; they share a 2-worker runtime */
	unsigned workers = is_mutex ? 2 : a.workers;
	MR_OPTS(mr_config, cfg, .workers = workers);
	mr_runtime_t *rt = mr_runtime_create(&cfg);
	if (!rt) {
		perror("mr_runtime_create");
		return 1;
	}
	check(mr_runtime_workers(rt) == workers, "the runtime has the wrong number of workers");

	if (!strcmp(a.bench, "yield")) {
		for (int r = -1; r < a.reps; r++) { /* r == -1: warm-up */
			struct yield_run y = { { { a.size, 0 }, { a.size, 0 } }, 0 };
			run(rt, yield_main, &y);
			count = y.y[0].yields + y.y[1].yields;
			check(count == 2 * a.size, "a fiber did not yield SIZE times");
			if (r >= 0)
				t[r] = y.ms;
		}
	} else if (!strcmp(a.bench, "spawn") || !strcmp(a.bench, "spawn-batch")) {
		void (*fn)(void *) = !strcmp(a.bench, "spawn") ? spawn_main : spawn_batch_main;
		struct spawn_run s = { calloc(a.size, 1), a.size, 0 };
		check(s.flags != NULL, "out of memory");
		for (int r = -1; r < a.reps; r++) {
			memset(s.flags, 0, s.n);
			run(rt, fn, &s);
			count = 0;
			for (uint64_t i = 0; i < s.n; i++)
				count += s.flags[i];
			check(count == s.n, "not every fiber ran exactly once");
			if (r >= 0)
				t[r] = s.ms;
		}
		free(s.flags);
	} else if (!strcmp(a.bench, "parked")) {
		check(a.reps == 1, "one run per process: REPS must be 1 (run.sh repeats the process)");
		struct parked_run *s = calloc(1, sizeof *s);
		check(s != NULL, "out of memory");
		s->n = a.size;
		run(rt, parked_main, s);
		count = atomic_load(&s->woke);
		check(count == a.size, "not every parked fiber woke exactly once");
		fb_result_mem(&a, impl, s->ms, count, s->bytes);
		free(s);
	} else if (!strcmp(a.bench, "sleepers")) {
		check(a.reps == 1, "one run per process: REPS must be 1 (run.sh repeats the process)");
		struct sleepers_run *s = calloc(1, sizeof *s);
		check(s != NULL, "out of memory");
		s->n = a.size;
		run(rt, sleepers_main, s);
		count = atomic_load(&s->woke);
		check(count == a.size, "not every sleeping fiber woke exactly once");
		printf("RESULT %s %s %u %.3f %llu %lld %lld\n", a.bench, impl, a.workers, s->ms,
		       (unsigned long long)count, (long long)s->bytes, (long long)s->pte);
		fflush(stdout);
		free(s);
	} else if (is_mutex) {
		check(a.workers <= MAX_MUTEX_FIBERS && a.size % a.workers == 0,
		      "WORKERS fibers (at most 256) must divide SIZE");
		struct mutex_run *s = calloc(1, sizeof *s);
		check(s != NULL, "out of memory");
		s->per = a.size / a.workers;
		s->fibers = a.workers;
		for (int r = -1; r < a.reps; r++) {
			run(rt, mutex_main, s);
			count = s->counter;
			check(count == a.size, "the counter is wrong: the mutex let two in");
			if (r >= 0)
				t[r] = s->ms;
		}
		free(s);
	} else {
		fb_fail(a.bench, impl, "unknown benchmark (yield, spawn, spawn-batch, parked, sleepers, mutex)");
	}
	if (strcmp(a.bench, "parked") && strcmp(a.bench, "sleepers"))
		fb_result(&a, impl, fb_median(t, a.reps), count);
	check(mr_runtime_destroy(rt) == 0, "mr_runtime_destroy failed");
	return 0;
}
