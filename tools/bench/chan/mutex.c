/*
 * mutex.c - the naive baseline: a bounded ring of uint64_t under one
 * pthread_mutex_t with two condition variables (not full, not empty), the
 * channel everybody writes first. Every send and receive takes the lock and
 * signals the other side, whether or not anybody waits. close() wakes
 * everybody; a receive on a closed, empty ring returns -EPIPE, as
 * mr_chan_recv does. Threads only (WORKERS 0):
 *   1p1c, 2p2c     capacity 1024; producers send, the main thread closes
 *                  the ring once they have returned, consumers receive
 *                  until -EPIPE
 *   pingpong-cap1  two rings of capacity 1, an echo thread
 *   uncontended    one thread: send then receive on a ring of 1024
 * (there is no rendezvous flavour). See bench.h for the rest.
 */
#include "bench.h"

#include <errno.h>

static const char *impl = "mutex";
static const char *bench_name;

static void check(int ok, const char *what)
{
	if (!ok)
		fb_fail(bench_name, impl, what);
}

struct ring {
	pthread_mutex_t mu;
	pthread_cond_t not_empty, not_full;
	uint64_t *buf; /* the rest is protected by mu */
	size_t cap, head, len;
	bool closed;
};

static void ring_init(struct ring *q, size_t cap)
{
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->not_empty, NULL);
	pthread_cond_init(&q->not_full, NULL);
	q->buf = malloc(cap * sizeof q->buf[0]);
	check(q->buf != NULL, "out of memory");
	q->cap = cap;
	q->head = q->len = 0;
	q->closed = false;
}

static void ring_destroy(struct ring *q)
{
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->not_empty);
	pthread_cond_destroy(&q->not_full);
	free(q->buf);
}

static int ring_send(struct ring *q, uint64_t v)
{
	pthread_mutex_lock(&q->mu);
	while (q->len == q->cap && !q->closed)
		pthread_cond_wait(&q->not_full, &q->mu);
	if (q->closed) {
		pthread_mutex_unlock(&q->mu);
		return -EPIPE;
	}
	size_t tail = q->head + q->len;
	q->buf[tail >= q->cap ? tail - q->cap : tail] = v;
	q->len++;
	pthread_cond_signal(&q->not_empty);
	pthread_mutex_unlock(&q->mu);
	return 0;
}

static int ring_recv(struct ring *q, uint64_t *v)
{
	pthread_mutex_lock(&q->mu);
	while (q->len == 0 && !q->closed)
		pthread_cond_wait(&q->not_empty, &q->mu);
	if (q->len == 0) { /* closed and drained */
		pthread_mutex_unlock(&q->mu);
		return -EPIPE;
	}
	*v = q->buf[q->head];
	q->head = q->head + 1 == q->cap ? 0 : q->head + 1;
	q->len--;
	pthread_cond_signal(&q->not_full);
	pthread_mutex_unlock(&q->mu);
	return 0;
}

static void ring_close(struct ring *q)
{
	pthread_mutex_lock(&q->mu);
	q->closed = true;
	pthread_cond_broadcast(&q->not_empty);
	pthread_cond_broadcast(&q->not_full);
	pthread_mutex_unlock(&q->mu);
}

/* ---- 1p1c, 2p2c ----------------------------------------------------------- */

struct producer {
	struct ring *q;
	uint64_t per;
	unsigned p, np;
	int err;
};

struct consumer {
	struct ring *q;
	unsigned np;
	struct cb_tally tally;
};

static void *produce(void *arg)
{
	struct producer *p = arg;
	for (uint64_t i = 0; i < p->per; i++)
		if ((p->err = ring_send(p->q, cb_value(i, p->p, p->np))) != 0)
			break;
	return NULL;
}

static void *consume(void *arg)
{
	struct consumer *c = arg;
	uint64_t v;
	while (ring_recv(c->q, &v) == 0)
		cb_take(&c->tally, v, c->np);
	return NULL;
}

static double tput(const struct fb_args *a, unsigned pairs, uint64_t *count)
{
	struct ring q;
	struct producer prod[CB_MAX_PRODUCERS];
	struct consumer cons[CB_MAX_PRODUCERS];
	struct cb_tally t[CB_MAX_PRODUCERS];
	pthread_t pt[CB_MAX_PRODUCERS], ct[CB_MAX_PRODUCERS];

	ring_init(&q, CB_QUEUE_CAP);
	for (unsigned i = 0; i < pairs; i++) {
		prod[i] = (struct producer){ &q, a->size / pairs, i, pairs, 0 };
		cons[i] = (struct consumer){ .q = &q, .np = pairs };
	}
	double t0 = fb_now_ms();
	for (unsigned i = 0; i < pairs; i++)
		cb_thread_start(&ct[i], consume, &cons[i], a->bench, impl);
	for (unsigned i = 0; i < pairs; i++)
		cb_thread_start(&pt[i], produce, &prod[i], a->bench, impl);
	for (unsigned i = 0; i < pairs; i++)
		cb_thread_join(pt[i]);
	ring_close(&q);
	for (unsigned i = 0; i < pairs; i++)
		cb_thread_join(ct[i]);
	double ms = fb_now_ms() - t0;
	for (unsigned i = 0; i < pairs; i++) {
		check(prod[i].err == 0, "a send failed");
		t[i] = cons[i].tally;
	}
	ring_destroy(&q);
	*count = cb_check(a, impl, t, pairs);
	return ms;
}

/* ---- pingpong-cap1 ---------------------------------------------------------- */

struct pp_run {
	struct ring ping, pong;
	uint64_t echoed;
};

static void *echo(void *arg)
{
	struct pp_run *r = arg;
	uint64_t v;
	while (ring_recv(&r->ping, &v) == 0) {
		if (ring_send(&r->pong, v) != 0)
			break;
		r->echoed++;
	}
	return NULL;
}

static double pingpong(const struct fb_args *a, uint64_t *count)
{
	struct pp_run r = { .echoed = 0 };
	pthread_t th;
	int bad = 0;
	ring_init(&r.ping, 1);
	ring_init(&r.pong, 1);
	double t0 = fb_now_ms();
	cb_thread_start(&th, echo, &r, a->bench, impl);
	for (uint64_t i = 0; i < a->size && !bad; i++) {
		uint64_t v;
		bad = ring_send(&r.ping, i) != 0 || ring_recv(&r.pong, &v) != 0 || v != i;
	}
	ring_close(&r.ping);
	cb_thread_join(th);
	double ms = fb_now_ms() - t0;
	check(!bad, "a round trip failed or brought back the wrong value");
	check(r.echoed == a->size, "the echo thread did not echo once per round trip");
	ring_destroy(&r.ping);
	ring_destroy(&r.pong);
	*count = r.echoed;
	return ms;
}

/* ---- uncontended -------------------------------------------------------- */

static double uncontended(const struct fb_args *a, uint64_t *count)
{
	struct ring q;
	uint64_t sum = 0, pairs = 0;
	ring_init(&q, CB_QUEUE_CAP);
	double t0 = fb_now_ms();
	for (uint64_t i = 0; i < a->size; i++) {
		uint64_t v;
		if (ring_send(&q, i) != 0 || ring_recv(&q, &v) != 0)
			break;
		sum += v;
		pairs++;
	}
	double ms = fb_now_ms() - t0;
	check(pairs == a->size, "a send or a receive failed");
	check(sum == a->size * (a->size - 1) / 2, "received other values than were sent");
	ring_destroy(&q);
	*count = pairs;
	return ms;
}

int main(int argc, char **argv)
{
	struct fb_args a;
	double t[FB_MAX_REPS];
	uint64_t count = 0;
	double (*fn)(const struct fb_args *, uint64_t *) = NULL;

	cb_parse(argc, argv, &a);
	bench_name = a.bench;
	check(a.workers == 0, "threads only: WORKERS must be 0");
	unsigned pairs = cb_pairs(a.bench);
	if (pairs)
		check(a.size % pairs == 0, "SIZE must be a multiple of the number of producers");
	else if (!strcmp(a.bench, "pingpong-cap1"))
		fn = pingpong;
	else if (!strcmp(a.bench, "uncontended"))
		fn = uncontended;
	else
		fb_fail(a.bench, impl,
			"unknown benchmark (1p1c, 2p2c, pingpong-cap1, uncontended)");
	for (int r = -1; r < a.reps; r++) { /* r == -1: warm-up */
		double ms = pairs ? tput(&a, pairs, &count) : fn(&a, &count);
		if (r >= 0)
			t[r] = ms;
	}
	fb_result(&a, impl, fb_median(t, a.reps), count);
	return 0;
}
