/*
 * moirai.c - the Moirai side of the channel benchmarks: mr_chan_t between
 * fibers (WORKERS > 0: a runtime of that many workers) or between plain
 * threads (WORKERS 0: no runtime; a blocked thread spins briefly, then
 * sleeps on a futex):
 *   1p1c, 2p2c     producers send their values into one channel of
 *                  capacity 1024; once every producer has returned the main
 *                  fiber (thread) closes it, and the consumers receive
 *                  until -EPIPE. Timed from starting the first consumer to
 *                  joining the last one.
 *   pingpong-cap1  the main fiber (thread) sends i on `ping` and receives
 *   pingpong-rdv   it back from `pong`; an echo fiber (thread) receives
 *                  from ping and sends what it got on pong, until ping is
 *                  closed. Channels of capacity 1 / 0 (rendezvous).
 *   uncontended    the main fiber (thread) alone: mr_chan_send then
 *                  mr_chan_recv on a channel of capacity 1024, SIZE times;
 *                  on fibers WORKERS must be 1.
 * Fiber runs are an mr_run() of a main fiber, timed inside it. Channels are
 * created before and destroyed after the timed part. See bench.h for the
 * command line, the checks and the output; go/main.go does the same with
 * goroutines.
 */
#include "bench.h"

#include <moirai/moirai.h>

#include <errno.h>

static const char *impl = "moirai";
static const char *bench_name;
static unsigned workers; /* 0: plain threads */

static void check(int ok, const char *what)
{
	if (!ok)
		fb_fail(bench_name, impl, what);
}

/* ---- a fiber or a thread ------------------------------------------------ */

struct task {
	void (*fn)(void *);
	void *arg;
	mr_fiber_t *fiber; /* fiber mode */
	pthread_t thread;  /* thread mode */
};

static void *thread_main(void *p)
{
	struct task *t = p;
	t->fn(t->arg);
	return NULL;
}

/* Start fn(arg) as a fiber of the caller's runtime, or as a thread; *t must outlive it. */
static void task_start(struct task *t, void (*fn)(void *), void *arg)
{
	t->fn = fn;
	t->arg = arg;
	if (workers) {
		t->fiber = mr_go(fn, arg);
		check(t->fiber != NULL, "mr_go failed");
	} else {
		cb_thread_start(&t->thread, thread_main, t, bench_name, impl);
	}
}

static void task_join(struct task *t)
{
	if (workers)
		check(mr_fiber_join(t->fiber) == 0, "mr_fiber_join failed");
	else
		cb_thread_join(t->thread);
}

/* ---- 1p1c, 2p2c ----------------------------------------------------------- */

struct producer {
	mr_chan_t *ch;
	uint64_t per; /* values to send */
	unsigned p, np;
	int err;
};

struct consumer {
	mr_chan_t *ch;
	unsigned np;
	struct cb_tally tally;
	int err;
};

struct tput_run {
	mr_chan_t *ch;
	unsigned pairs;
	uint64_t size;
	struct producer prod[CB_MAX_PRODUCERS];
	struct consumer cons[CB_MAX_PRODUCERS];
	double ms;
};

static void produce(void *arg)
{
	struct producer *p = arg;
	for (uint64_t i = 0; i < p->per; i++) {
		uint64_t v = cb_value(i, p->p, p->np);
		int rc = mr_chan_send(p->ch, &v);
		if (rc) {
			p->err = rc;
			return;
		}
	}
}

static void consume(void *arg)
{
	struct consumer *c = arg;
	uint64_t v;
	int rc;
	while ((rc = mr_chan_recv(c->ch, &v)) == 0)
		cb_take(&c->tally, v, c->np);
	if (rc != -EPIPE)
		c->err = rc;
}

static void tput_main(void *arg)
{
	struct tput_run *r = arg;
	struct task pt[CB_MAX_PRODUCERS], ct[CB_MAX_PRODUCERS];
	double t0 = fb_now_ms();
	for (unsigned i = 0; i < r->pairs; i++)
		task_start(&ct[i], consume, &r->cons[i]);
	for (unsigned i = 0; i < r->pairs; i++)
		task_start(&pt[i], produce, &r->prod[i]);
	for (unsigned i = 0; i < r->pairs; i++)
		task_join(&pt[i]);
	check(mr_chan_close(r->ch) == 0, "mr_chan_close failed");
	for (unsigned i = 0; i < r->pairs; i++)
		task_join(&ct[i]);
	r->ms = fb_now_ms() - t0;
}

static void tput_setup(struct tput_run *r)
{
	r->ch = mr_chan_create(sizeof(uint64_t), CB_QUEUE_CAP, 0);
	check(r->ch != NULL, "mr_chan_create failed");
	for (unsigned i = 0; i < r->pairs; i++) {
		r->prod[i] = (struct producer){ r->ch, r->size / r->pairs, i, r->pairs, 0 };
		r->cons[i] = (struct consumer){ .ch = r->ch, .np = r->pairs };
	}
}

static uint64_t tput_check(const struct fb_args *a, struct tput_run *r)
{
	struct cb_tally t[CB_MAX_PRODUCERS];
	for (unsigned i = 0; i < r->pairs; i++) {
		check(r->prod[i].err == 0, "mr_chan_send failed");
		check(r->cons[i].err == 0, "mr_chan_recv failed with something else than -EPIPE");
		t[i] = r->cons[i].tally;
	}
	mr_chan_destroy(r->ch);
	return cb_check(a, impl, t, r->pairs);
}

/* ---- pingpong-cap1, pingpong-rdv ------------------------------------------ */

struct pp_run {
	mr_chan_t *ping, *pong;
	uint64_t n, echoed;
	int err, echo_err;
	double ms;
};

static void echo(void *arg)
{
	struct pp_run *r = arg;
	uint64_t v;
	int rc;
	while ((rc = mr_chan_recv(r->ping, &v)) == 0) {
		if ((rc = mr_chan_send(r->pong, &v)) != 0)
			break;
		r->echoed++;
	}
	if (rc != -EPIPE)
		r->echo_err = rc;
}

static void pp_main(void *arg)
{
	struct pp_run *r = arg;
	struct task e;
	double t0 = fb_now_ms();
	task_start(&e, echo, r);
	for (uint64_t i = 0; i < r->n; i++) {
		uint64_t v;
		if (mr_chan_send(r->ping, &i) != 0 || mr_chan_recv(r->pong, &v) != 0 || v != i) {
			r->err = 1;
			break;
		}
	}
	mr_chan_close(r->ping);
	if (r->err)
		mr_chan_close(r->pong); /* the echo side may wait to send: let it go */
	task_join(&e);
	r->ms = fb_now_ms() - t0;
}

/* ---- uncontended -------------------------------------------------------- */

struct uc_run {
	mr_chan_t *ch;
	uint64_t n, pairs, sum;
	double ms;
};

static void uc_main(void *arg)
{
	struct uc_run *r = arg;
	double t0 = fb_now_ms();
	for (uint64_t i = 0; i < r->n; i++) {
		uint64_t v;
		if (mr_chan_send(r->ch, &i) != 0 || mr_chan_recv(r->ch, &v) != 0)
			break;
		r->sum += v;
		r->pairs++;
	}
	r->ms = fb_now_ms() - t0;
}

/* ---- driver ------------------------------------------------------------- */

static mr_runtime_t *rt;

/* fn(arg) as the main fiber of rt, or on this thread */
static void run(void (*fn)(void *), void *arg)
{
	if (workers)
		check(mr_run(rt, fn, arg) == 0, "mr_run failed");
	else
		fn(arg);
}

int main(int argc, char **argv)
{
	struct fb_args a;
	double t[FB_MAX_REPS];
	uint64_t count = 0;

	cb_parse(argc, argv, &a);
	bench_name = a.bench;
	workers = a.workers;
	if (workers) {
		MR_OPTS(mr_config, cfg, .workers = workers);
		rt = mr_runtime_create(&cfg);
		if (!rt) {
			perror("mr_runtime_create");
			return 1;
		}
		check(mr_runtime_workers(rt) == workers,
		      "the runtime has the wrong number of workers");
	}

	unsigned pairs = cb_pairs(a.bench);
	if (pairs) {
		check(a.size % pairs == 0, "SIZE must be a multiple of the number of producers");
		for (int r = -1; r < a.reps; r++) { /* r == -1: warm-up */
			struct tput_run s = { .pairs = pairs, .size = a.size };
			tput_setup(&s);
			run(tput_main, &s);
			count = tput_check(&a, &s);
			if (r >= 0)
				t[r] = s.ms;
		}
	} else if (!strcmp(a.bench, "pingpong-cap1") || !strcmp(a.bench, "pingpong-rdv")) {
		size_t cap = !strcmp(a.bench, "pingpong-cap1") ? 1 : 0;
		for (int r = -1; r < a.reps; r++) {
			struct pp_run s = { .n = a.size };
			s.ping = mr_chan_create(sizeof(uint64_t), cap, 0);
			s.pong = mr_chan_create(sizeof(uint64_t), cap, 0);
			check(s.ping && s.pong, "mr_chan_create failed");
			run(pp_main, &s);
			check(s.err == 0, "a round trip failed or brought back the wrong value");
			check(s.echo_err == 0,
			      "the echo side failed with something else than -EPIPE");
			count = s.echoed;
			check(count == a.size, "the echo side did not echo once per round trip");
			mr_chan_destroy(s.ping);
			mr_chan_destroy(s.pong);
			if (r >= 0)
				t[r] = s.ms;
		}
	} else if (!strcmp(a.bench, "uncontended")) {
		check(workers <= 1, "one fiber: WORKERS must be 1 (or 0 for a thread)");
		for (int r = -1; r < a.reps; r++) {
			struct uc_run s = { .n = a.size };
			s.ch = mr_chan_create(sizeof(uint64_t), CB_QUEUE_CAP, 0);
			check(s.ch != NULL, "mr_chan_create failed");
			run(uc_main, &s);
			count = s.pairs;
			check(count == a.size, "a send or a receive failed");
			check(s.sum == a.size * (a.size - 1) / 2,
			      "received other values than were sent");
			mr_chan_destroy(s.ch);
			if (r >= 0)
				t[r] = s.ms;
		}
	} else {
		fb_fail(a.bench, impl,
			"unknown benchmark (1p1c, 2p2c, pingpong-cap1, pingpong-rdv, uncontended)");
	}
	fb_result(&a, impl, fb_median(t, a.reps), count);
	if (workers)
		check(mr_runtime_destroy(rt) == 0, "mr_runtime_destroy failed");
	return 0;
}
