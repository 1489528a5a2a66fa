/*
 * zmq.c - ZeroMQ (libzmq3-dev) inproc PUSH/PULL sockets carrying 8-byte
 * messages, each zmq_send / zmq_recv copying one value. The send and
 * receive high-water marks are 512 each: an inproc pipe then holds about
 * 1024 messages, like the other queues.
 *   1p1c   one PUSH socket connected to one bound PULL socket
 *   2p2c   each consumer binds a PULL socket; each producer connects one
 *          PUSH socket to each of them and deals its values out in turn
 *          (value i to consumer i % 2: zmq's own round robin would do the
 *          same while no pipe is full, but could not be told where the end
 *          marker goes)
 * Termination is deterministic: after its values a producer sends, on every
 * PUSH socket, a 24-byte end marker {UINT64_MAX, producer, count sent on
 * this socket}; a consumer stops after it has seen one marker from every
 * producer and checks each count against what it received from that
 * producer (a pipe is FIFO, so nothing can follow the marker).
 * Sockets are created before and closed after the timed part, which runs
 * from starting the first consumer thread to joining the last one.
 * Threads only (WORKERS 0). See bench.h for the rest.
 */
#include "bench.h"

#include <zmq.h>

static const char *impl = "zmq";
static const char *bench_name;

#define HWM 512

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "zmq: %s\n", zmq_strerror(zmq_errno()));
		fb_fail(bench_name, impl, what);
	}
}

struct end_marker {
	uint64_t tag; /* UINT64_MAX: never a value */
	uint64_t producer, count;
};

struct producer {
	void *push[CB_MAX_PRODUCERS]; /* one per consumer */
	uint64_t per;
	unsigned p, np, nc;
	int err;
};

struct consumer {
	void *pull;
	unsigned np;
	struct cb_tally tally;
	uint64_t from[CB_MAX_PRODUCERS]; /* values received from each producer */
	int err;
};

static void *produce(void *arg)
{
	struct producer *p = arg;
	uint64_t sent[CB_MAX_PRODUCERS] = { 0 };
	for (uint64_t i = 0; i < p->per; i++) {
		uint64_t v = cb_value(i, p->p, p->np);
		unsigned c = (unsigned)(i % p->nc);
		if (zmq_send(p->push[c], &v, sizeof v, 0) != sizeof v) {
			p->err = 1;
			return NULL;
		}
		sent[c]++;
	}
	for (unsigned c = 0; c < p->nc; c++) {
		struct end_marker m = { UINT64_MAX, p->p, sent[c] };
		if (zmq_send(p->push[c], &m, sizeof m, 0) != sizeof m)
			p->err = 1;
	}
	return NULL;
}

static void *consume(void *arg)
{
	struct consumer *c = arg;
	unsigned ended = 0;
	while (ended < c->np) {
		union {
			uint64_t v;
			struct end_marker m;
		} msg;
		int n = zmq_recv(c->pull, &msg, sizeof msg, 0);
		if (n == sizeof msg.v) {
			cb_take(&c->tally, msg.v, c->np);
			c->from[(msg.v - 1) & (c->np - 1)]++;
		} else if (n == sizeof msg.m && msg.m.tag == UINT64_MAX && msg.m.producer < c->np &&
			   msg.m.count == c->from[msg.m.producer]) {
			ended++;
		} else {
			c->err = 1; /* a failure, a stray message or a count that disagrees */
			return NULL;
		}
	}
	return NULL;
}

static void setopt(void *s, int opt, int v)
{
	check(zmq_setsockopt(s, opt, &v, sizeof v) == 0, "zmq_setsockopt failed");
}

static double run(const struct fb_args *a, void *ctx, unsigned pairs, uint64_t *count)
{
	struct producer prod[CB_MAX_PRODUCERS];
	struct consumer cons[CB_MAX_PRODUCERS];
	struct cb_tally t[CB_MAX_PRODUCERS];
	pthread_t pt[CB_MAX_PRODUCERS], ct[CB_MAX_PRODUCERS];
	static unsigned runs; /* fresh endpoint names for every run */
	char ep[CB_MAX_PRODUCERS][64];

	runs++;
	for (unsigned c = 0; c < pairs; c++) {
		cons[c] = (struct consumer){ .np = pairs };
		cons[c].pull = zmq_socket(ctx, ZMQ_PULL);
		check(cons[c].pull != NULL, "zmq_socket failed");
		setopt(cons[c].pull, ZMQ_RCVHWM, HWM);
		setopt(cons[c].pull, ZMQ_LINGER, 0);
		snprintf(ep[c], sizeof ep[c], "inproc://chan-bench-%u-%u", runs, c);
		check(zmq_bind(cons[c].pull, ep[c]) == 0, "zmq_bind failed");
	}
	for (unsigned p = 0; p < pairs; p++) {
		prod[p] = (struct producer){ .per = a->size / pairs, .p = p, .np = pairs,
					      .nc = pairs };
		for (unsigned c = 0; c < pairs; c++) {
			void *s = zmq_socket(ctx, ZMQ_PUSH);
			check(s != NULL, "zmq_socket failed");
			setopt(s, ZMQ_SNDHWM, HWM);
			setopt(s, ZMQ_LINGER, 0);
			check(zmq_connect(s, ep[c]) == 0, "zmq_connect failed");
			prod[p].push[c] = s;
		}
	}
	/* the sockets move to the threads: pthread_create is the full barrier zmq asks for */
	double t0 = fb_now_ms();
	for (unsigned i = 0; i < pairs; i++)
		cb_thread_start(&ct[i], consume, &cons[i], a->bench, impl);
	for (unsigned i = 0; i < pairs; i++)
		cb_thread_start(&pt[i], produce, &prod[i], a->bench, impl);
	for (unsigned i = 0; i < pairs; i++)
		cb_thread_join(pt[i]);
	for (unsigned i = 0; i < pairs; i++)
		cb_thread_join(ct[i]);
	double ms = fb_now_ms() - t0;
	for (unsigned i = 0; i < pairs; i++) {
		if (prod[i].err)
			fb_fail(a->bench, impl, "zmq_send failed");
		if (cons[i].err)
			fb_fail(a->bench, impl,
				"zmq_recv failed or an end marker disagrees with the count");
		t[i] = cons[i].tally;
		for (unsigned c = 0; c < pairs; c++)
			zmq_close(prod[i].push[c]);
		zmq_close(cons[i].pull);
	}
	*count = cb_check(a, impl, t, pairs);
	return ms;
}

int main(int argc, char **argv)
{
	struct fb_args a;
	double t[FB_MAX_REPS];
	uint64_t count = 0;

	cb_parse(argc, argv, &a);
	bench_name = a.bench;
	unsigned pairs = cb_pairs(a.bench);
	if (!pairs)
		fb_fail(a.bench, impl, "unknown benchmark (1p1c, 2p2c)");
	if (a.workers != 0)
		fb_fail(a.bench, impl, "threads only: WORKERS must be 0");
	if (a.size % pairs)
		fb_fail(a.bench, impl, "SIZE must be a multiple of the number of producers");
	void *ctx = zmq_ctx_new();
	check(ctx != NULL, "zmq_ctx_new failed");
	for (int r = -1; r < a.reps; r++) { /* r == -1: warm-up */
		double ms = run(&a, ctx, pairs, &count);
		if (r >= 0)
			t[r] = ms;
	}
	zmq_ctx_term(ctx);
	fb_result(&a, impl, fb_median(t, a.reps), count);
	return 0;
}
