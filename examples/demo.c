/*
 * demo.c - what Moirai does so far, timed against plain sequential C:
 * recursive fork-join (fib), a task group of many small tasks, parallel
 * loops (a balanced and an unbalanced one); then fibers: many sleeping at
 * once, and a ping-pong through semaphores against two POSIX threads doing
 * the same. Run it with `make demo`; MOIRAI_WORKERS sets the number of
 * workers.
 */
#include <math.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <moirai/moirai.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- fork-join --------------------------------------------------------- */

/* An honest sequential fib: both recursive calls stay calls (gcc would
 * otherwise turn one into a loop, flattering the baseline ~1.8x). */
#if defined(__clang__)
#define KEEP_CALLS __attribute__((noinline, disable_tail_calls))
#else
#define KEEP_CALLS __attribute__((noinline, optimize("no-optimize-sibling-calls")))
#endif
KEEP_CALLS static long fib_seq(int n)
{
	if (n < 2)
		return n;
	return fib_seq(n - 1) + fib_seq(n - 2);
}

struct fib_arg {
	int n;
	long r;
};

static void fib_par(void *p)
{
	struct fib_arg *f = p;
	if (f->n < 2) {
		f->r = f->n;
		return;
	}
	struct fib_arg a = { f->n - 1, 0 }, b = { f->n - 2, 0 };
	mr_join(fib_par, &a, fib_par, &b);
	f->r = a.r + b.r;
}

/* ---- task group -------------------------------------------------------- */

struct spawner {
	mr_group_t g;
	long *counts;
	long n;
};

static void bump(void *p)
{
	__atomic_fetch_add((long *)p, 1, __ATOMIC_RELAXED);
}

static void spawn_all(void *p)
{
	struct spawner *s = p;
	for (long i = 0; i < s->n; i++)
		mr_group_spawn(&s->g, bump, &s->counts[i % 64 * 8]);
	mr_group_wait(&s->g);
}

/* ---- loops ------------------------------------------------------------- */

static void sqrt_body(size_t lo, size_t hi, void *acc, void *ctx)
{
	double s = 0;
	(void)ctx;
	for (size_t i = lo; i < hi; i++)
		s += sqrt((double)i);
	*(double *)acc += s;
}

static void add_double(void *acc, const void *other, void *ctx)
{
	(void)ctx;
	*(double *)acc += *(const double *)other;
}

static unsigned long work(size_t i)
{
	unsigned long x = i;
	for (size_t k = 0; k < i; k++)
		x = x * 6364136223846793005ul + 1442695040888963407ul;
	return x;
}

static void uneven_body(size_t lo, size_t hi, void *ctx)
{
	unsigned long *out = ctx;
	for (size_t i = lo; i < hi; i++)
		out[i] = work(i);
}

struct job {
	void (*fn)(void *);
	void *arg;
};

static void run(void *p)
{
	struct job *j = p;
	j->fn(j->arg);
}

static void fib_root(void *p)
{
	fib_par(p);
}

/* ---- fibers ------------------------------------------------------------ */

struct nap {
	int n;
	int64_t ms;
	mr_wg_t done;
};

static void nap_one(void *p)
{
	struct nap *np = p;
	mr_sleep_ns((uint64_t)np->ms * 1000000);
	mr_wg_done(&np->done);
}

static void naps(void *p)
{
	struct nap *np = p;
	mr_wg_add(&np->done, np->n);
	for (int i = 0; i < np->n; i++)
		mr_fiber_detach(mr_go(nap_one, np));
	mr_wg_wait(&np->done);
}

struct pp {
	long n;
	mr_sem_t a, b;
	sem_t pa, pb;
};

static void pp_ping(void *p)
{
	struct pp *q = p;
	for (long i = 0; i < q->n; i++) {
		mr_sem_post(&q->b);
		mr_sem_wait(&q->a);
	}
}

static void pp_pong(void *p)
{
	struct pp *q = p;
	for (long i = 0; i < q->n; i++) {
		mr_sem_wait(&q->b);
		mr_sem_post(&q->a);
	}
}

static void pp_fibers(void *p)
{
	mr_fiber_t *a = mr_go(pp_ping, p), *b = mr_go(pp_pong, p);
	mr_fiber_join(a);
	mr_fiber_join(b);
}

static void *pp_thread_pong(void *p)
{
	struct pp *q = p;
	for (long i = 0; i < q->n; i++) {
		sem_wait(&q->pb);
		sem_post(&q->pa);
	}
	return NULL;
}

/* A pipeline: producers -> bounded channel -> consumers, then a select. */
struct pipe {
	mr_chan_t *ch, *sums, *quit;
	long per_producer;
	int producers, consumers;
	long total;
	int selected_quit;
};

static void pipe_produce(void *p)
{
	struct pipe *pp = p;
	for (long i = 1; i <= pp->per_producer; i++)
		mr_chan_send(pp->ch, &i); /* parks while the channel is full */
}

static void pipe_consume(void *p)
{
	struct pipe *pp = p;
	long v, sum = 0;
	while (mr_chan_recv(pp->ch, &v) == 0) /* -EPIPE: closed and drained */
		sum += v;
	mr_chan_send(pp->sums, &sum);
}

static void pipeline(void *p)
{
	struct pipe *pp = p;
	mr_fiber_t *prod[8];
	for (int i = 0; i < pp->consumers; i++)
		mr_fiber_detach(mr_go(pipe_consume, pp));
	for (int i = 0; i < pp->producers; i++)
		prod[i] = mr_go(pipe_produce, pp);
	for (int i = 0; i < pp->producers; i++)
		mr_fiber_join(prod[i]);
	mr_chan_close(pp->ch); /* consumers drain what is queued, then see -EPIPE */

	/* Collect the partial sums with a select that also watches a quit
	 * channel and a deadline: whichever is ready first wins. */
	long sum, q;
	for (int got = 0; got < pp->consumers;) {
		struct mr_select_case cases[] = {
			{ pp->sums, MR_SELECT_RECV, &sum, 0 },
			{ pp->quit, MR_SELECT_RECV, &q, 0 },
		};
		int i = mr_select(cases, 2, mr_now_ns() + 5000000000);
		if (i == 0) {
			pp->total += sum;
			got++;
		} else {
			pp->selected_quit = 1; /* never: nobody sends on quit */
			break;
		}
	}
}

int main(void)
{
	mr_runtime_t *rt = mr_runtime_default();
	unsigned nw = mr_runtime_workers(rt);
	double t0, seq, par;

	printf("Moirai demo: %u workers (set MOIRAI_WORKERS to change)\n\n", nw);
	printf("%-34s %12s %12s %9s\n", "workload", "sequential", "moirai", "speedup");

	/* fib(32) */
	int n = 32;
	t0 = now_ms();
	long want = fib_seq(n);
	seq = now_ms() - t0;
	struct fib_arg f = { n, 0 };
	struct job jf = { fib_root, &f };
	par = 1e9;
	for (int rep = 0; rep < 3; rep++) { /* best of 3: the first wakes the workers */
		t0 = now_ms();
		mr_runtime_install(rt, run, &jf);
		if (now_ms() - t0 < par)
			par = now_ms() - t0;
	}
	printf("%-34s %10.1fms %10.1fms %8.2fx %s\n", "fib(32), fork-join, no cutoff", seq, par,
	       seq / par, f.r == want ? "" : "WRONG");

	/* 1M tasks in a group */
	static long counts[64 * 8];
	struct spawner sp = { .counts = counts, .n = 1000000 };
	mr_group_init(&sp.g);
	struct job js = { spawn_all, &sp };
	t0 = now_ms();
	mr_runtime_install(rt, run, &js);
	par = now_ms() - t0;
	long total = 0;
	for (int i = 0; i < 64; i++)
		total += counts[i * 8];
	printf("%-34s %12s %10.1fms %9s %s (%.0f ns/task)\n", "1M empty tasks in a group", "-",
	       par, "", total == sp.n ? "" : "WRONG", par * 1e6 / (double)sp.n);

	/* balanced reduce */
	size_t N = 100000000;
	double s_seq = 0, s_par = 0, zero = 0;
	t0 = now_ms();
	sqrt_body(0, N, &s_seq, NULL);
	seq = now_ms() - t0;
	t0 = now_ms();
	mr_parallel_reduce(0, N, 0, &s_par, sizeof(double), &zero, sqrt_body, add_double, NULL);
	par = now_ms() - t0;
	printf("%-34s %10.1fms %10.1fms %8.2fx %s\n", "sum sqrt(i), i < 100M (reduce)", seq, par,
	       seq / par, fabs(s_par - s_seq) <= 1e-9 * s_seq ? "" : "WRONG");

	/* unbalanced for */
	size_t M = 40000;
	unsigned long *a = calloc(M, sizeof(*a)), *b = calloc(M, sizeof(*b));
	t0 = now_ms();
	uneven_body(0, M, a);
	seq = now_ms() - t0;
	t0 = now_ms();
	mr_parallel_for(0, M, 0, uneven_body, b);
	par = now_ms() - t0;
	int same = 1;
	for (size_t i = 0; i < M; i++)
		same &= a[i] == b[i];
	printf("%-34s %10.1fms %10.1fms %8.2fx %s\n", "uneven loop (cost of i ~ i)", seq, par,
	       seq / par, same ? "" : "WRONG");
	free(a);
	free(b);

	/* fibers: 100,000 sleep 100 ms at once */
	struct nap np = { .n = 100000, .ms = 100 };
	mr_wg_init(&np.done);
	t0 = now_ms();
	mr_run(rt, naps, &np);
	par = now_ms() - t0;
	printf("%-34s %8.0f s %10.1fms %8.0fx\n", "100k fibers each sleep 100 ms",
	       np.n * np.ms / 1e3, par, np.n * np.ms / par);

	/* fibers: ping-pong through semaphores vs two threads */
	struct pp q = { .n = 200000 };
	mr_sem_init(&q.a, 0);
	mr_sem_init(&q.b, 0);
	sem_init(&q.pa, 0, 0);
	sem_init(&q.pb, 0, 0);
	pthread_t th;
	t0 = now_ms();
	pthread_create(&th, NULL, pp_thread_pong, &q);
	for (long i = 0; i < q.n; i++) {
		sem_post(&q.pb);
		sem_wait(&q.pa);
	}
	pthread_join(th, NULL);
	seq = now_ms() - t0;
	t0 = now_ms();
	mr_run(rt, pp_fibers, &q);
	par = now_ms() - t0;
	printf("%-34s %8.0fns %10.0fns %8.1fx   (per round trip; threads: POSIX sem_t)\n",
	       "ping-pong: 2 threads vs 2 fibers", seq * 1e6 / q.n, par * 1e6 / q.n, seq / par);

	/* fibers: a channel pipeline, 4 producers -> capacity 1024 -> 4 consumers */
	struct pipe pl = { .per_producer = 1000000, .producers = 4, .consumers = 4 };
	pl.ch = mr_chan_create(sizeof(long), 1024, 0);
	pl.sums = mr_chan_create(sizeof(long), MR_CHAN_UNBOUNDED, 0);
	pl.quit = mr_chan_create(sizeof(long), 0, 0); /* rendezvous */
	t0 = now_ms();
	mr_run(rt, pipeline, &pl);
	par = now_ms() - t0;
	long msgs = pl.per_producer * pl.producers;
	printf("%-34s %12s %10.1fms %9s %s (%.0f ns/msg, %.1f M msgs/s)\n",
	       "4M msgs: 4 -> chan(1024) -> 4 fibers", "-", par, "",
	       pl.total == pl.producers * pl.per_producer * (pl.per_producer + 1) / 2 &&
			       !pl.selected_quit
		       ? ""
		       : "WRONG",
	       par * 1e6 / (double)msgs, (double)msgs / par / 1e3);
	mr_chan_destroy(pl.ch);
	mr_chan_destroy(pl.sums);
	mr_chan_destroy(pl.quit);

	printf("\nfull side-by-side benchmarks (OpenMP, oneTBB, rayon, Boost.Context, Go, ZeroMQ): make bench\n");
	return 0;
}
