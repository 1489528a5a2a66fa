/*
 * chan_stress.c - adversarial stress for <moirai/chan.h>:
 *
 *  - MPMC: 4 producers and 4 consumers on one channel of every flavour
 *    (bounded capacity 1, 16 and 1024, unbounded, rendezvous), all fibers,
 *    all threads, or half and half; each call picks blocking, try-and-retry,
 *    a short deadline, or a select. Every element carries (producer,
 *    sequence) and a checksum: each is received exactly once, intact, and
 *    each consumer sees every producer's elements in the order sent. The
 *    producers close the channel when the last of them is done; consumers
 *    run until -EPIPE.
 *  - close racing senders and receivers blocked (or not) on the channel,
 *    many rounds: every send that returned 0 is received exactly once, the
 *    send that failed never is.
 *  - deadlines racing the other side: a send (or select) that timed out never
 *    shows up, a receive that timed out took nothing; one sender per
 *    channel, so the receiver must see exactly the successful sends, in
 *    order.
 *  - select: many fibers and two threads each selecting over up to 8 cases
 *    on 8 channels of all flavours, mixing sends and receives, with poll,
 *    short and long deadlines; tokens are conserved (none lost, none
 *    duplicated - which also catches a select pairing with itself).
 *  - elements of 4099 bytes between fibers and threads: never torn.
 *  - the waiter destroys the channel as soon as its call returns, while the
 *    call that woke it (send, try_send, close, a receive that made room) may
 *    still be returning: that call must not touch the channel any more.
 *  - closes racing each other: exactly one returns 0.
 *  - the rendezvous word (a lone waiter pairs without the lock): joined by
 *    a second waiter, selects, deadlines and a close at a random moment.
 *  - ping-pong between a thread and a fiber through capacity-1 and
 *    rendezvous channels: a lost wake-up hangs (the harness's timeout).
 *
 * Nothing asserts a timing. Sizes are divided by mr_test_scale() (4 under
 * ASan, 10 under TSan); TSan counts a fiber as a thread, so fewer than 4000
 * are alive at once, and creating one costs it milliseconds, so the rounds
 * that create fibers are cut further there.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <moirai/moirai.h>

#include "harness.h"
#include "util.h"

/* ---- helpers ------------------------------------------------------------------ */

static int live_fibers(int n)
{
	n = (int)scaled(n);
#if defined(__SANITIZE_THREAD__)
	if (n > 3000)
		n = 3000;
#endif
	return n;
}

/* Rounds that each create a few fibers: TSan pays ~2 ms per fiber. */
static long fiber_rounds(long n)
{
	n = scaled(n);
#if defined(__SANITIZE_THREAD__)
	n /= 3;
#endif
	return n > 0 ? n : 1;
}

static uint64_t seed_of(uint64_t i)
{
	return (0x9E3779B97F4A7C15ull * (i + 1)) ^ 0xD1B54A32D192ED03ull;
}

static void spin_ns(int64_t ns)
{
	int64_t end = mr_now_ns() + ns;

	while (mr_now_ns() < end)
		;
}

/* A deadline for a retried wait: 5 to 35 us ahead, so that the wait parks
 * (a fiber retrying passed deadlines would never let its worker go). */
static int64_t retry_deadline(uint64_t *r)
{
	return mr_now_ns() + 5000 + (int64_t)(rnd(r) % 30000);
}

/* A first deadline: from just passed to ~40 us, around one wake-up. */
static int64_t racy_deadline(uint64_t r)
{
	return mr_now_ns() - 2000 + (int64_t)(r % 42000);
}

/* The element: who sent it and its number, and a checksum of both. */
struct elem {
	uint64_t tag;
	uint64_t check;
};

static uint64_t check_of(uint64_t tag)
{
	return (tag * 0x9E3779B97F4A7C15ull) ^ 0x5DEECE66DA5A5A5Aull;
}

static struct elem mk(uint64_t who, uint64_t seq)
{
	uint64_t tag = who << 32 | seq;

	return (struct elem){ tag, check_of(tag) };
}

static bool elem_ok(const struct elem *e)
{
	return e->check == check_of(e->tag);
}

/*
 * Send e on ch in one of four ways picked by r: blocking; try, retried a few
 * times on -EAGAIN; a deadline around one wake-up, retried a few times on
 * -ETIMEDOUT; a select with a case that is never ready. The retries end in
 * the blocking form, so that the test's running time does not depend on
 * how often short waits meet (each retry is counted in *again / *timedout).
 * Returns 0 or -EPIPE (or anything else the library returns wrongly).
 * `never` is a channel on which a select case never becomes ready.
 */
static int send_any(mr_chan_t *ch, mr_chan_t *never, const struct elem *e, uint64_t *rng,
		    bool fiber, long *again, long *timedout)
{
	uint64_t r = rnd(rng);
	struct elem junk;
	int rc;

	switch (r % 8) {
	case 0:
	case 1:
	case 2:
		return mr_chan_send(ch, e);
	case 3:
	case 4:
		for (int k = 0;; k++) {
			rc = mr_chan_try_send(ch, e);
			if (rc != -EAGAIN)
				return rc;
			(*again)++;
			if (k == 8)
				return mr_chan_send(ch, e);
			if (fiber || k % 2)
				mr_yield();
		}
	case 5:
	case 6:
		for (int k = 0;; k++) {
			rc = mr_chan_send_until(ch, e, k ? retry_deadline(rng) : racy_deadline(r >> 8));
			if (rc != -ETIMEDOUT)
				return rc;
			(*timedout)++;
			if (k == 4)
				return mr_chan_send(ch, e);
		}
	default:
		for (int k = 0;; k++) {
			struct mr_select_case c[2] = {
				{ never, MR_SELECT_RECV, &junk, 1 },
				{ ch, MR_SELECT_SEND, (void *)e, 1 },
			};
			int64_t dl = k == 0   ? ((r >> 8) % 4 == 0 ? MR_SELECT_FOREVER
								    : racy_deadline(r >> 10))
				     : k < 4 ? retry_deadline(rng)
					     : MR_SELECT_FOREVER;
			rc = mr_select(c, 2, dl);
			if (rc == 1)
				return c[1].result;
			if (rc != -ETIMEDOUT)
				return rc < 0 ? rc : 1000 + rc;
			(*timedout)++;
		}
	}
}

/* Receive into *e in one of four ways; 0 or -EPIPE. */
static int recv_any(mr_chan_t *ch, mr_chan_t *never, struct elem *e, uint64_t *rng, bool fiber,
		    long *again, long *timedout)
{
	uint64_t r = rnd(rng);
	struct elem junk = mk(0xffff, 0);
	int rc;

	switch (r % 8) {
	case 0:
	case 1:
	case 2:
		return mr_chan_recv(ch, e);
	case 3:
	case 4:
		for (int k = 0;; k++) {
			rc = mr_chan_try_recv(ch, e);
			if (rc != -EAGAIN)
				return rc;
			(*again)++;
			if (k == 8)
				return mr_chan_recv(ch, e);
			if (fiber || k % 2)
				mr_yield();
		}
	case 5:
	case 6:
		for (int k = 0;; k++) {
			rc = mr_chan_recv_until(ch, e, k ? retry_deadline(rng) : racy_deadline(r >> 8));
			if (rc != -ETIMEDOUT)
				return rc;
			(*timedout)++;
			if (k == 4)
				return mr_chan_recv(ch, e);
		}
	default:
		for (int k = 0;; k++) {
			/* never is empty: a send case on it would complete, so
			 * the idle case is a receive there too. */
			struct mr_select_case c[2] = {
				{ ch, MR_SELECT_RECV, e, 1 },
				{ never, MR_SELECT_RECV, &junk, 1 },
			};
			int64_t dl = k == 0   ? ((r >> 8) % 4 == 0 ? MR_SELECT_FOREVER
								    : racy_deadline(r >> 10))
				     : k < 4 ? retry_deadline(rng)
					     : MR_SELECT_FOREVER;
			rc = mr_select(c, 2, dl);
			if (rc == 0)
				return c[0].result;
			if (rc != -ETIMEDOUT)
				return rc < 0 ? rc : 1000 + rc;
			(*timedout)++;
		}
	}
}

/* ---- MPMC: exactly once, per-producer FIFO, every flavour, fibers and threads --------- */

enum { MODE_FIBERS, MODE_THREADS, MODE_MIXED };
enum { N_SENT, N_RECV, N_AGAIN, N_TIMEDOUT, N_BAD, N_DUP, N_ORDER, N_CORRUPT, N_LEN, N_K };

#define NPROD 4
#define NCONS 4

struct mpmc {
	mr_chan_t *ch, *never;
	size_t cap;
	long per; /* elements per producer */
	_Atomic int producers_left;
	_Atomic uint8_t *seen; /* [producer * per + seq] */
	_Atomic int close_rc;
};

struct mp_part {
	struct mpmc *m;
	int id;
	bool fiber;
	uint64_t rng;
	long n[N_K];
	long last[NPROD]; /* consumer: the last sequence seen from each producer */
};

static void mp_producer(void *arg)
{
	struct mp_part *p = arg;
	struct mpmc *m = p->m;

	for (long s = 0; s < m->per; s++) {
		struct elem e = mk((uint64_t)p->id, (uint64_t)s);
		int rc = send_any(m->ch, m->never, &e, &p->rng, p->fiber, &p->n[N_AGAIN],
				  &p->n[N_TIMEDOUT]);
		if (rc == 0) {
			p->n[N_SENT]++;
		} else {
			if (p->n[N_BAD]++ < 3)
				printf("# producer %d seq %ld: %d\n", p->id, s, rc);
		}
	}
	if (atomic_fetch_sub(&m->producers_left, 1) == 1)
		atomic_store(&m->close_rc, mr_chan_close(m->ch));
}

static void mp_consumer(void *arg)
{
	struct mp_part *p = arg;
	struct mpmc *m = p->m;
	struct elem e;
	int rc;

	for (int i = 0; i < NPROD; i++)
		p->last[i] = -1;
	while ((rc = recv_any(m->ch, m->never, &e, &p->rng, p->fiber, &p->n[N_AGAIN],
			      &p->n[N_TIMEDOUT])) == 0) {
		uint64_t who = e.tag >> 32, seq = e.tag & 0xffffffff;
		if (!elem_ok(&e) || who >= NPROD || seq >= (uint64_t)m->per) {
			if (p->n[N_CORRUPT]++ < 3)
				printf("# consumer %d: corrupt element %#" PRIx64 " %#" PRIx64 "\n",
				       p->id, e.tag, e.check);
			continue;
		}
		if ((long)seq <= p->last[who]) {
			if (p->n[N_ORDER]++ < 3)
				printf("# consumer %d: producer %" PRIu64 " seq %" PRIu64
				       " after %ld\n",
				       p->id, who, seq, p->last[who]);
		}
		p->last[who] = (long)seq;
		if (atomic_exchange(&m->seen[who * (uint64_t)m->per + seq], 1) != 0) {
			if (p->n[N_DUP]++ < 3)
				printf("# consumer %d: producer %" PRIu64 " seq %" PRIu64
				       " received twice\n",
				       p->id, who, seq);
		}
		p->n[N_RECV]++;
		/* A snapshot of len is never more than the channel can hold. */
		if (p->n[N_RECV] % 64 == 0) {
			size_t len = mr_chan_len(m->ch);
			size_t most = m->cap == MR_CHAN_UNBOUNDED ? (size_t)(NPROD * m->per) : m->cap;
			if (len > most && p->n[N_LEN]++ < 3)
				printf("# consumer %d: len %zu, capacity %zu\n", p->id, len, m->cap);
		}
	}
	if (rc != -EPIPE && p->n[N_BAD]++ < 3)
		printf("# consumer %d: %d\n", p->id, rc);
}

/*
 * 10,000,000 elements over the 15 configurations (divided by the scale),
 * weighted by what an element costs: a million where fibers do the waiting
 * or nobody has to, 150,000 where threads hand elements one by one over a
 * capacity of 1 or a rendezvous (each a futex sleep and wake: 5-20 us on
 * two CPUs).
 */
static void mpmc_run(size_t cap, int mode, long total)
{
	mr_runtime_t *rt = make_rt(2);
	struct mpmc m;
	struct mp_part ps[NPROD + NCONS];
	struct actor a[NPROD + NCONS];
	long sum[N_K] = { 0 };

	ASSERT_NONNULL(rt);
	memset(&m, 0, sizeof(m));
	m.per = scaled(total / NPROD);
	m.cap = cap;
	m.ch = mr_chan_create(sizeof(struct elem), cap, 0);
	m.never = mr_chan_create(sizeof(struct elem), 1, 0);
	m.seen = calloc((size_t)(NPROD * m.per), 1);
	ASSERT_NONNULL(m.ch);
	ASSERT_NONNULL(m.never);
	ASSERT_NONNULL(m.seen);
	atomic_store(&m.producers_left, NPROD);
	atomic_store(&m.close_rc, 1);
	/* Producers are parts 0..3, consumers 4..7; in mixed mode the first two
	 * of each are fibers. Start them interleaved. */
	for (int i = 0; i < NPROD + NCONS; i++) {
		int k = i / 2 + (i % 2 ? NPROD : 0); /* 0, 4, 1, 5, ... */
		int idx = k < NPROD ? k : k - NPROD;
		bool fiber = mode == MODE_FIBERS || (mode == MODE_MIXED && idx < 2);
		memset(&ps[k], 0, sizeof(ps[k]));
		ps[k].m = &m;
		ps[k].id = idx;
		ps[k].fiber = fiber;
		ps[k].rng = seed_of((uint64_t)k + cap * 31 + (uint64_t)mode * 1000);
		actor_start(&a[k], rt, fiber, k < NPROD ? mp_producer : mp_consumer, &ps[k]);
	}
	for (int k = 0; k < NPROD + NCONS; k++)
		actor_join(&a[k]);
	for (int k = 0; k < NPROD + NCONS; k++)
		for (int j = 0; j < N_K; j++)
			sum[j] += ps[k].n[j];
	TH_LOG("cap %zd: %ld elements, %ld would-block retries, %ld timeouts",
	       cap == MR_CHAN_UNBOUNDED ? (ssize_t)-1 : (ssize_t)cap, sum[N_RECV], sum[N_AGAIN],
	       sum[N_TIMEDOUT]);
	EXPECT_EQ(sum[N_BAD], 0);
	EXPECT_EQ(sum[N_CORRUPT], 0);
	EXPECT_EQ(sum[N_DUP], 0);
	EXPECT_EQ(sum[N_ORDER], 0);
	EXPECT_EQ(sum[N_LEN], 0);
	EXPECT_EQ(sum[N_SENT], NPROD * m.per);
	EXPECT_EQ(sum[N_RECV], NPROD * m.per);
	long missing = 0;
	for (long i = 0; i < NPROD * m.per; i++)
		missing += !atomic_load(&m.seen[i]);
	EXPECT_EQ(missing, 0);
	EXPECT_EQ(atomic_load(&m.close_rc), 0);
	EXPECT_TRUE(mr_chan_is_closed(m.ch));
	EXPECT_EQ(mr_chan_len(m.ch), 0);
	EXPECT_EQ(mr_chan_len(m.never), 0);
	free((void *)m.seen);
	mr_chan_destroy(m.ch);
	mr_chan_destroy(m.never);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

#define MPMC_TEST(name, cap, mode, total)                                                          \
	TEST_TIMEOUT(mpmc_##name, 120)                                                             \
	{                                                                                          \
		mpmc_run(cap, mode, total);                                                        \
	}

MPMC_TEST(cap1_fibers, 1, MODE_FIBERS, 1000000)
MPMC_TEST(cap1_threads, 1, MODE_THREADS, 150000)
MPMC_TEST(cap1_mixed, 1, MODE_MIXED, 150000)
MPMC_TEST(cap16_fibers, 16, MODE_FIBERS, 1000000)
MPMC_TEST(cap16_threads, 16, MODE_THREADS, 250000)
MPMC_TEST(cap16_mixed, 16, MODE_MIXED, 150000)
MPMC_TEST(cap1024_fibers, 1024, MODE_FIBERS, 1000000)
MPMC_TEST(cap1024_threads, 1024, MODE_THREADS, 1000000)
MPMC_TEST(cap1024_mixed, 1024, MODE_MIXED, 1000000)
MPMC_TEST(unbounded_fibers, MR_CHAN_UNBOUNDED, MODE_FIBERS, 1000000)
MPMC_TEST(unbounded_threads, MR_CHAN_UNBOUNDED, MODE_THREADS, 1000000)
MPMC_TEST(unbounded_mixed, MR_CHAN_UNBOUNDED, MODE_MIXED, 1000000)
MPMC_TEST(rendezvous_fibers, 0, MODE_FIBERS, 1000000)
MPMC_TEST(rendezvous_threads, 0, MODE_THREADS, 150000)
MPMC_TEST(rendezvous_mixed, 0, MODE_MIXED, 150000)

/* ---- close racing senders and receivers ------------------------------------------- */

#define CR_SENDERS 2
#define CR_MAX 2048 /* sends per sender and round at most */

struct cr {
	mr_chan_t *ch, *never;
	long ok[CR_SENDERS]; /* sender s: sequences [0, ok[s]) returned 0 */
	_Atomic uint8_t seen[CR_SENDERS][CR_MAX];
	_Atomic long bad, dup, order, got;
};

struct cr_part {
	struct cr *c;
	int id;
	bool fiber;
	uint64_t rng;
	long again, timedout;
};

static void cr_take(struct cr *c, const struct elem *e, long *last)
{
	uint64_t who = e->tag >> 32, seq = e->tag & 0xffffffff;

	if (!elem_ok(e) || who >= CR_SENDERS || seq >= CR_MAX) {
		atomic_fetch_add(&c->bad, 1);
		return;
	}
	if ((long)seq <= last[who])
		atomic_fetch_add(&c->order, 1);
	last[who] = (long)seq;
	if (atomic_exchange(&c->seen[who][seq], 1))
		atomic_fetch_add(&c->dup, 1);
	atomic_fetch_add(&c->got, 1);
}

static void cr_sender(void *arg)
{
	struct cr_part *p = arg;
	struct cr *c = p->c;

	for (long s = 0; s < CR_MAX; s++) {
		struct elem e = mk((uint64_t)p->id, (uint64_t)s);
		int rc = send_any(c->ch, c->never, &e, &p->rng, p->fiber, &p->again, &p->timedout);
		if (rc == -EPIPE)
			break;
		if (rc != 0) {
			atomic_fetch_add(&c->bad, 1);
			break;
		}
		c->ok[p->id] = s + 1;
	}
}

static void cr_receiver(void *arg)
{
	struct cr_part *p = arg;
	struct cr *c = p->c;
	long last[CR_SENDERS] = { -1, -1 };
	struct elem e;
	int rc;

	while ((rc = recv_any(c->ch, c->never, &e, &p->rng, p->fiber, &p->again, &p->timedout)) ==
	       0)
		cr_take(c, &e, last);
	if (rc != -EPIPE)
		atomic_fetch_add(&c->bad, 1);
}

TEST_TIMEOUT(close_races_blocked_senders_and_receivers, 120)
{
	static const size_t caps[] = { 1, 3, 0, MR_CHAN_UNBOUNDED, 64 };
	mr_runtime_t *rt = make_rt(2);
	long rounds = fiber_rounds(1500), blocked_kinds[3] = { 0, 0, 0 };
	uint64_t r = 4242;
	struct cr *c = malloc(sizeof(*c));

	ASSERT_NONNULL(rt);
	ASSERT_NONNULL(c);
	for (long round = 0; round < rounds; round++) {
		uint64_t x = rnd(&r);
		size_t cap = caps[x % 5];
		/* Senders and receivers, only senders, or only receivers: the
		 * last two make sure that some are blocked when the close comes. */
		int kind = (int)((x >> 4) % 4);
		int ns = kind == 2 ? 0 : CR_SENDERS, nr = kind == 1 ? 0 : 2;
		struct cr_part ps[CR_SENDERS + 2];
		struct actor a[CR_SENDERS + 2];
		int n = 0;

		blocked_kinds[kind % 3]++;
		memset(c, 0, sizeof(*c));
		c->ch = mr_chan_create(sizeof(struct elem), cap, 0);
		c->never = mr_chan_create(sizeof(struct elem), 1, 0);
		ASSERT_NONNULL(c->ch);
		ASSERT_NONNULL(c->never);
		for (int i = 0; i < ns + nr; i++) {
			ps[i] = (struct cr_part){ c, i < ns ? i : i - ns, (x >> (8 + i)) & 1,
						  seed_of((uint64_t)round * 8 + (uint64_t)i), 0, 0 };
			actor_start(&a[i], rt, ps[i].fiber, i < ns ? cr_sender : cr_receiver, &ps[i]);
			n++;
		}
		switch ((x >> 16) % 5) {
		case 0:
			break; /* at once: maybe before anybody started */
		case 1:
			spin_ns((int64_t)((x >> 20) % 20000));
			break;
		case 2:
			mr_sleep_ns((x >> 20) % 300000);
			break;
		default:
			spin_ns((int64_t)((x >> 20) % 200000));
			break;
		}
		ASSERT_EQ(mr_chan_close(c->ch), 0);
		for (int i = 0; i < n; i++)
			actor_join(&a[i]);
		/* What the receivers (if any) left: drain it here. */
		long last[CR_SENDERS] = { -1, -1 };
		struct elem e;
		int rc;
		while ((rc = mr_chan_try_recv(c->ch, &e)) == 0)
			cr_take(c, &e, last);
		ASSERT_EQ(rc, -EPIPE);
		ASSERT_EQ(atomic_load(&c->bad), 0);
		ASSERT_EQ(atomic_load(&c->dup), 0);
		ASSERT_EQ(atomic_load(&c->order), 0);
		long ok = 0;
		for (int s = 0; s < ns; s++) {
			ok += c->ok[s];
			for (long q = 0; q < CR_MAX; q++) {
				if (atomic_load(&c->seen[s][q]) != (q < c->ok[s])) {
					TH_LOG("round %ld cap %zd: sender %d seq %ld: sent %d, "
					       "received %d",
					       round, cap == MR_CHAN_UNBOUNDED ? (ssize_t)-1 : (ssize_t)cap,
					       s, q, q < c->ok[s], atomic_load(&c->seen[s][q]));
					ASSERT_TRUE(0);
				}
			}
		}
		ASSERT_EQ(atomic_load(&c->got), ok);
		mr_chan_destroy(c->ch);
		mr_chan_destroy(c->never);
	}
	TH_LOG("%ld rounds (%ld mixed, %ld senders only, %ld receivers only)", rounds,
	       blocked_kinds[0], blocked_kinds[1], blocked_kinds[2]);
	free(c);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* ---- deadlines racing the other side: one sender, one receiver per channel -------- */

#define NPAIRS 8

struct tp {
	mr_chan_t *ch;
	bool tx_fiber, rx_fiber;
	long attempts;
	uint8_t *ok;	   /* [attempt]: the send returned 0 (written by the sender) */
	uint8_t *rcvd;	   /* [attempt]: received (written by the receiver) */
	long sent, timedout, bad;
	long got, rx_timedout, rx_bad, rx_order, rx_ghost;
	uint64_t rng_tx, rng_rx;
};

static void tp_sender(void *arg)
{
	struct tp *t = arg;
	struct elem junk;

	for (long i = 0; i < t->attempts; i++) {
		uint64_t r = rnd(&t->rng_tx);
		struct elem e = mk(1, (uint64_t)i);
		int rc;

		if (r % 4 == 0) {
			struct mr_select_case c[2] = {
				{ t->ch, MR_SELECT_SEND, &e, 1 },
				{ NULL, MR_SELECT_RECV, &junk, 1 },
			};
			rc = mr_select(c, 2, racy_deadline(r >> 2));
			if (rc == 0)
				rc = c[0].result;
			else if (rc >= 0)
				rc = 1000;
		} else {
			rc = mr_chan_send_until(t->ch, &e, racy_deadline(r >> 2));
		}
		if (rc == 0) {
			t->ok[i] = 1;
			t->sent++;
		} else if (rc == -ETIMEDOUT) {
			t->timedout++;
		} else {
			t->bad++;
		}
		if ((r >> 20) % 16 == 0)
			spin_ns((int64_t)((r >> 24) % 20000));
	}
	if (mr_chan_close(t->ch) != 0)
		t->bad++;
}

/* The receiver records what it got (strictly increasing attempt numbers: one
 * sender); the test compares that with ok[] after both have finished. */
static void tp_receiver(void *arg)
{
	struct tp *t = arg;
	long last = -1;

	for (;;) {
		uint64_t r = rnd(&t->rng_rx);
		struct elem e;
		int rc;

		if (r % 3 == 0)
			rc = mr_chan_recv(t->ch, &e);
		else
			rc = mr_chan_recv_until(t->ch, &e, racy_deadline(r >> 2));
		if (rc == -EPIPE)
			break;
		if (rc == -ETIMEDOUT) {
			t->rx_timedout++;
			continue;
		}
		if (rc != 0 || !elem_ok(&e) || (e.tag >> 32) != 1) {
			t->rx_bad++;
			continue;
		}
		long seq = (long)(e.tag & 0xffffffff);
		if (seq <= last || seq >= t->attempts)
			t->rx_order++;
		else
			t->rcvd[seq] = 1; /* checked against ok[] afterwards */
		last = seq;
		t->got++;
		if ((r >> 20) % 8 == 0) {
			if (t->rx_fiber && (r >> 24) % 2)
				mr_sleep_ns((r >> 28) % 30000);
			else
				spin_ns((int64_t)((r >> 28) % 30000));
		}
	}
}

TEST_TIMEOUT(deadlines_race_the_other_side, 120)
{
	mr_runtime_t *rt = make_rt(2);
	struct tp *ts = calloc(NPAIRS, sizeof(*ts));
	struct actor a[2 * NPAIRS];

	ASSERT_NONNULL(rt);
	ASSERT_NONNULL(ts);
	for (int i = 0; i < NPAIRS; i++) {
		struct tp *t = &ts[i];
		/* rendezvous, capacity 1 and 2 in turn; pairs 0-3 fiber/fiber,
		 * 4 fiber/thread, 5 thread/fiber, 6-7 thread/thread */
		t->ch = mr_chan_create(sizeof(struct elem), (size_t)(i % 3), 0);
		ASSERT_NONNULL(t->ch);
		t->tx_fiber = i < 5;
		t->rx_fiber = i < 4 || i == 5;
		t->attempts = scaled(i < 4 ? 20000 : 40000);
		t->ok = calloc((size_t)t->attempts, 1);
		t->rcvd = calloc((size_t)t->attempts, 1);
		ASSERT_NONNULL(t->ok);
		ASSERT_NONNULL(t->rcvd);
		t->rng_tx = seed_of(100 + (uint64_t)i);
		t->rng_rx = seed_of(200 + (uint64_t)i);
	}
	for (int i = 0; i < NPAIRS; i++) {
		actor_start(&a[2 * i], rt, ts[i].rx_fiber, tp_receiver, &ts[i]);
		actor_start(&a[2 * i + 1], rt, ts[i].tx_fiber, tp_sender, &ts[i]);
	}
	for (int i = 0; i < 2 * NPAIRS; i++)
		actor_join(&a[i]);
	for (int i = 0; i < NPAIRS; i++) {
		struct tp *t = &ts[i];
		long ghosts = 0, lost = 0;
		for (long k = 0; k < t->attempts; k++) {
			ghosts += t->rcvd[k] && !t->ok[k]; /* received, but the send failed */
			lost += t->ok[k] && !t->rcvd[k];   /* sent, never received */
		}
		TH_LOG("pair %d (cap %d, %s/%s): %ld sent, %ld send timeouts, %ld receive "
		       "timeouts",
		       i, i % 3, t->tx_fiber ? "fiber" : "thread", t->rx_fiber ? "fiber" : "thread",
		       t->sent, t->timedout, t->rx_timedout);
		EXPECT_EQ(t->bad, 0);
		EXPECT_EQ(t->rx_bad, 0);
		EXPECT_EQ(t->rx_order, 0);
		EXPECT_EQ(ghosts, 0);
		EXPECT_EQ(lost, 0);
		EXPECT_EQ(t->sent + t->timedout, t->attempts);
		EXPECT_EQ(t->got, t->sent);
		mr_chan_destroy(t->ch);
		free(t->ok);
		free(t->rcvd);
	}
	free(ts);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* ---- select: many selectors over 8 channels, tokens conserved -------------------------- */

#define SEL_CHANS 8
#define SEL_TOKENS 4 /* per participant at the start */

struct sel {
	mr_chan_t *ch[SEL_CHANS];
	int nparts;
	long total; /* tokens */
	int iters;
};

struct sel_part {
	struct sel *s;
	int id;
	bool fiber;
	uint64_t rng;
	uint64_t *wallet;
	long nw;
	long sent, got, timedout, again, bad;
};

static void sel_part_fn(void *arg)
{
	struct sel_part *p = arg;
	struct sel *s = p->s;
	struct mr_select_case c[SEL_CHANS];
	struct elem buf[SEL_CHANS];
	long src[SEL_CHANS]; /* send case: index in the wallet */

	for (int it = 0; it < s->iters; it++) {
		uint64_t r = rnd(&p->rng);
		/* A quarter of the selects cover all 8 channels once each; the
		 * others 1 to 8 cases on channels drawn at random (so a channel
		 * may have several cases, a send and a receive among them). */
		bool all = r % 4 == 0;
		int n = all ? SEL_CHANS : 1 + (int)((r >> 2) % SEL_CHANS), nsend = 0;
		r >>= 5;
		for (int i = 0; i < n; i++) {
			uint64_t q = rnd(&p->rng);
			mr_chan_t *ch = s->ch[all ? (uint64_t)i : q % SEL_CHANS];
			if ((q >> 3) % 2 && nsend < p->nw) {
				src[i] = p->nw - 1 - nsend++;
				buf[i] = mk(0, p->wallet[src[i]]);
				c[i] = (struct mr_select_case){ ch, MR_SELECT_SEND, &buf[i], 1 };
			} else if ((q >> 4) % 16 == 0) {
				c[i] = (struct mr_select_case){ ch, MR_SELECT_SKIP, &buf[i], 1 };
			} else {
				src[i] = -1;
				buf[i] = mk(0xdead, 0);
				c[i] = (struct mr_select_case){ ch, MR_SELECT_RECV, &buf[i], 1 };
			}
		}
		int64_t dl;
		switch (r % 8) {
		case 0:
			dl = MR_SELECT_POLL;
			break;
		case 1:
		case 2:
		case 3:
		case 4:
			dl = mr_now_ns() + 10000 + (int64_t)((r >> 3) % 200000);
			break;
		default:
			dl = mr_now_ns() + 1000000 + (int64_t)((r >> 3) % 2000000);
			break;
		}
		int idx = mr_select(c, (size_t)n, dl);
		if (idx == -EAGAIN && dl == MR_SELECT_POLL) {
			p->again++;
			continue;
		}
		if (idx == -ETIMEDOUT && dl != MR_SELECT_POLL) {
			p->timedout++;
			continue;
		}
		if (idx < 0 || idx >= n || c[idx].op == MR_SELECT_SKIP || c[idx].result != 0) {
			if (p->bad++ < 3)
				printf("# select %d: %d (result %d)\n", p->id, idx,
				       idx >= 0 && idx < n ? c[idx].result : 0);
			continue;
		}
		if (c[idx].op == MR_SELECT_SEND) {
			/* Remove the token sent: move the last one into its place. */
			p->wallet[src[idx]] = p->wallet[--p->nw];
			p->sent++;
		} else {
			uint64_t tok = buf[idx].tag;
			if (!elem_ok(&buf[idx]) || tok >= (uint64_t)s->total) {
				if (p->bad++ < 3)
					printf("# select %d: corrupt token %#" PRIx64 "\n", p->id, tok);
				continue;
			}
			p->wallet[p->nw++] = tok;
			p->got++;
		}
	}
}

TEST_TIMEOUT(select_many_selectors_conserve_tokens, 120)
{
	static const size_t caps[SEL_CHANS] = { 1, 1, 16, 16, 0, 0, MR_CHAN_UNBOUNDED,
						MR_CHAN_UNBOUNDED };
	mr_runtime_t *rt = make_rt(2);
	struct sel s;
	int nf = live_fibers(200), nt = 2;
	struct sel_part *ps;
	struct actor *a;

	ASSERT_NONNULL(rt);
	memset(&s, 0, sizeof(s));
	s.nparts = nf + nt;
	s.total = (long)s.nparts * SEL_TOKENS;
	s.iters = (int)scaled(10000);
#if defined(__SANITIZE_THREAD__)
	s.iters *= 2; /* fewer fibers there: more rounds each */
#endif
	for (int i = 0; i < SEL_CHANS; i++) {
		s.ch[i] = mr_chan_create(sizeof(struct elem), caps[i], 0);
		ASSERT_NONNULL(s.ch[i]);
	}
	ps = calloc((size_t)s.nparts, sizeof(*ps));
	a = calloc((size_t)s.nparts, sizeof(*a));
	ASSERT_NONNULL(ps);
	ASSERT_NONNULL(a);
	for (int i = 0; i < s.nparts; i++) {
		ps[i].s = &s;
		ps[i].id = i;
		ps[i].fiber = i < nf;
		ps[i].rng = seed_of((uint64_t)i + 77);
		ps[i].wallet = calloc((size_t)s.total, sizeof(uint64_t));
		ASSERT_NONNULL(ps[i].wallet);
		for (int k = 0; k < SEL_TOKENS; k++)
			ps[i].wallet[ps[i].nw++] = (uint64_t)i * SEL_TOKENS + (uint64_t)k;
	}
	/* The threads first, then the fibers, all at once. */
	for (int i = s.nparts - 1; i >= 0; i--)
		actor_start(&a[i], rt, ps[i].fiber, sel_part_fn, &ps[i]);
	for (int i = 0; i < s.nparts; i++)
		actor_join(&a[i]);

	/* Count every token: in a wallet or still queued in a channel. */
	uint32_t *count = calloc((size_t)s.total, sizeof(uint32_t));
	long sent = 0, got = 0, timedout = 0, again = 0, bad = 0, queued = 0, corrupt = 0;
	ASSERT_NONNULL(count);
	for (int i = 0; i < s.nparts; i++) {
		for (long k = 0; k < ps[i].nw; k++)
			count[ps[i].wallet[k]]++;
		sent += ps[i].sent;
		got += ps[i].got;
		timedout += ps[i].timedout;
		again += ps[i].again;
		bad += ps[i].bad;
	}
	for (int i = 0; i < SEL_CHANS; i++) {
		struct elem e;
		int rc;
		while ((rc = mr_chan_try_recv(s.ch[i], &e)) == 0) {
			if (!elem_ok(&e) || e.tag >= (uint64_t)s.total) {
				corrupt++;
				continue;
			}
			count[e.tag]++;
			queued++;
		}
		EXPECT_EQ(rc, -EAGAIN);
		EXPECT_EQ(mr_chan_close(s.ch[i]), 0);
		EXPECT_EQ(mr_chan_try_recv(s.ch[i], &e), -EPIPE);
	}
	long lost = 0, dup = 0;
	for (long t = 0; t < s.total; t++) {
		lost += count[t] == 0;
		dup += count[t] > 1;
	}
	TH_LOG("%d selectors: %ld sends, %ld receives, %ld timeouts, %ld empty polls, %ld "
	       "left queued",
	       s.nparts, sent, got, timedout, again, queued);
	EXPECT_EQ(bad, 0);
	EXPECT_EQ(corrupt, 0);
	EXPECT_EQ(lost, 0);
	EXPECT_EQ(dup, 0);
	/* Every receive took something that a send put in. */
	EXPECT_EQ(sent, got + queued);
	EXPECT_GT(sent, 0);
	for (int i = 0; i < s.nparts; i++)
		free(ps[i].wallet);
	free(count);
	free(ps);
	free(a);
	for (int i = 0; i < SEL_CHANS; i++)
		mr_chan_destroy(s.ch[i]);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* ---- large elements: copies are never torn -------------------------------------- */

#define BIG 4099 /* odd, over a page */

struct big {
	mr_chan_t *ch;
	long per;
	_Atomic int producers_left;
	_Atomic uint8_t *seen;
	_Atomic long bad, got;
};

struct big_part {
	struct big *b;
	int id;
	bool fiber;
	uint64_t rng;
};

static uint8_t big_pat(uint64_t tag, size_t i)
{
	return (uint8_t)((tag * 0x9E3779B1u) >> (i % 24) ^ i * 31);
}

static void big_producer(void *arg)
{
	struct big_part *p = arg;
	struct big *b = p->b;
	uint8_t *e = malloc(BIG);

	if (!e)
		abort();
	for (long s = 0; s < b->per; s++) {
		uint64_t tag = (uint64_t)p->id << 32 | (uint64_t)s, r = rnd(&p->rng);
		int rc;
		memcpy(e, &tag, 8);
		for (size_t i = 8; i < BIG; i++)
			e[i] = big_pat(tag, i);
		if (r % 3 == 0) {
			while ((rc = mr_chan_send_until(b->ch, e, racy_deadline(r >> 2))) == -ETIMEDOUT)
				r = rnd(&p->rng);
		} else if (r % 3 == 1) {
			rc = mr_chan_try_send(b->ch, e);
			if (rc == -EAGAIN)
				rc = mr_chan_send(b->ch, e);
		} else {
			rc = mr_chan_send(b->ch, e);
		}
		memset(e, 0xAB, BIG); /* the channel must have copied it */
		if (rc != 0)
			atomic_fetch_add(&b->bad, 1);
	}
	free(e);
	if (atomic_fetch_sub(&b->producers_left, 1) == 1)
		mr_chan_close(b->ch);
}

static void big_consumer(void *arg)
{
	struct big_part *p = arg;
	struct big *b = p->b;
	uint8_t *e = malloc(BIG + 16);
	int rc;

	if (!e)
		abort();
	memset(e + BIG, 0x5C, 16);
	for (;;) {
		uint64_t r = rnd(&p->rng), tag;
		memset(e, 0, BIG);
		if (r % 2)
			rc = mr_chan_recv(b->ch, e);
		else if ((rc = mr_chan_recv_until(b->ch, e, racy_deadline(r >> 2))) == -ETIMEDOUT)
			continue;
		if (rc != 0)
			break;
		memcpy(&tag, e, 8);
		uint64_t who = tag >> 32, seq = tag & 0xffffffff;
		bool ok = who < 2 && seq < (uint64_t)b->per;
		for (size_t i = 8; ok && i < BIG; i++)
			ok = e[i] == big_pat(tag, i);
		for (size_t i = 0; ok && i < 16; i++)
			ok = e[BIG + i] == 0x5C;
		if (!ok || atomic_exchange(&b->seen[who * (uint64_t)b->per + seq], 1))
			atomic_fetch_add(&b->bad, 1);
		else
			atomic_fetch_add(&b->got, 1);
	}
	if (rc != -EPIPE)
		atomic_fetch_add(&b->bad, 1);
	free(e);
}

TEST_TIMEOUT(large_elements_never_torn, 120)
{
	static const size_t caps[] = { 1, 3, MR_CHAN_UNBOUNDED, 0 };
	mr_runtime_t *rt = make_rt(2);

	ASSERT_NONNULL(rt);
	for (size_t j = 0; j < sizeof(caps) / sizeof(caps[0]); j++) {
		struct big b = { .per = scaled(20000) };
		struct big_part ps[4];
		struct actor a[4];

		b.ch = mr_chan_create(BIG, caps[j], 0);
		b.seen = calloc((size_t)(2 * b.per), 1);
		ASSERT_NONNULL(b.ch);
		ASSERT_NONNULL(b.seen);
		atomic_store(&b.producers_left, 2);
		/* parts 0, 2 produce and 1, 3 consume; 0 and 1 are fibers */
		for (int i = 0; i < 4; i++) {
			ps[i] = (struct big_part){ &b, i / 2, i < 2, seed_of(900 + (uint64_t)i) };
			actor_start(&a[i], rt, ps[i].fiber, i % 2 ? big_consumer : big_producer, &ps[i]);
		}
		for (int i = 0; i < 4; i++)
			actor_join(&a[i]);
		EXPECT_EQ(atomic_load(&b.bad), 0);
		EXPECT_EQ(atomic_load(&b.got), 2 * b.per);
		free((void *)b.seen);
		mr_chan_destroy(b.ch);
	}
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* ---- destroy as soon as the waiter's call returns ---------------------------------- */

/*
 * The shape of every consumer: wait for the element (or for -EPIPE), then
 * destroy the channel. The call that ended the wait - a send, a try_send, a
 * close, a receive that made room - may still be returning in another
 * thread; it must not touch the channel once the waiter can return, as the
 * sync objects guarantee (ASan reports it if it does; a destroy that still
 * sees it as a waiter aborts).
 */
enum { DA_RV_SEND, DA_CAP1_TRY_SEND, DA_CLOSE, DA_FULL_RECV, DA_RV_RECV, DA_SELECT_SEND,
       DA_SELECT_CLOSE, DA_KINDS };

struct da {
	mr_chan_t *ch, *other;
	int kind;
	int rc_waiter, rc_waker;
	uint64_t v;
};

static void da_waiter(void *arg)
{
	struct da *d = arg;
	uint64_t v = 5;

	switch (d->kind) {
	case DA_FULL_RECV:
	case DA_RV_RECV:
		d->rc_waiter = mr_chan_send(d->ch, &v);
		break;
	case DA_SELECT_SEND:
	case DA_SELECT_CLOSE: {
		struct mr_select_case c[2] = {
			{ d->other, MR_SELECT_RECV, &v, 1 },
			{ d->ch, MR_SELECT_RECV, &d->v, 1 },
		};
		int idx = mr_select(c, 2, MR_SELECT_FOREVER);
		d->rc_waiter = idx == 1 ? c[1].result : 1000 + idx;
		break;
	}
	default:
		d->rc_waiter = mr_chan_recv(d->ch, &d->v);
		break;
	}
	mr_chan_destroy(d->ch);
	mr_chan_destroy(d->other);
}

static void da_waker(void *arg)
{
	struct da *d = arg;
	uint64_t v = 7;

	switch (d->kind) {
	case DA_RV_SEND:
	case DA_SELECT_SEND:
		d->rc_waker = mr_chan_send(d->ch, &v);
		break;
	case DA_CAP1_TRY_SEND:
		d->rc_waker = mr_chan_try_send(d->ch, &v);
		break;
	case DA_CLOSE:
	case DA_SELECT_CLOSE:
		d->rc_waker = mr_chan_close(d->ch);
		break;
	default: /* DA_FULL_RECV, DA_RV_RECV */
		d->rc_waker = mr_chan_recv(d->ch, &v);
		break;
	}
}

TEST_TIMEOUT(destroy_as_soon_as_the_wait_returns, 60)
{
	mr_runtime_t *rt = make_rt(2);
	long rounds = fiber_rounds(10000);
	uint64_t r = 31337;

	ASSERT_NONNULL(rt);
	for (long round = 0; round < rounds; round++) {
		uint64_t x = rnd(&r);
		struct da d = { .kind = (int)(x % DA_KINDS), .rc_waiter = 99, .rc_waker = 99 };
		struct actor a[2];
		size_t cap = 0;
		uint64_t v = 1;

		switch (d.kind) {
		case DA_CAP1_TRY_SEND:
		case DA_FULL_RECV:
			cap = 1;
			break;
		case DA_CLOSE:
			cap = (x >> 4) % 2 ? MR_CHAN_UNBOUNDED : 4;
			break;
		case DA_SELECT_SEND:
			cap = (x >> 4) % 2 ? 0 : 2;
			break;
		default:
			cap = 0;
			break;
		}
		d.ch = mr_chan_create(8, cap, 0);
		d.other = mr_chan_create(8, 1, 0);
		ASSERT_NONNULL(d.ch);
		ASSERT_NONNULL(d.other);
		if (d.kind == DA_FULL_RECV)
			ASSERT_EQ(mr_chan_send(d.ch, &v), 0);
		actor_start(&a[0], rt, (x >> 8) & 1, da_waiter, &d);
		/* Usually the waiter is asleep by the time the waker comes. */
		if ((x >> 10) % 4)
			spin_ns((int64_t)((x >> 12) % 40000));
		if (d.kind == DA_CAP1_TRY_SEND) {
			/* try_send succeeds at once: run it here, after the waiter
			 * has had time to block; this thread is the waker. */
			da_waker(&d);
		} else {
			actor_start(&a[1], rt, (x >> 9) & 1, da_waker, &d);
			actor_join(&a[1]);
		}
		actor_join(&a[0]);
		bool closes = d.kind == DA_CLOSE || d.kind == DA_SELECT_CLOSE;
		if (d.rc_waiter != (closes ? -EPIPE : 0) || d.rc_waker != 0)
			TH_LOG("round %ld kind %d: waiter %d, waker %d", round, d.kind, d.rc_waiter,
			       d.rc_waker);
		ASSERT_EQ(d.rc_waiter, closes ? -EPIPE : 0);
		ASSERT_EQ(d.rc_waker, 0);
	}
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* ---- closes racing each other -------------------------------------------------- */

struct cc {
	mr_chan_t *ch;
	_Atomic int zero, epipe, other;
	int rc_recv;
};

static void cc_close(void *arg)
{
	struct cc *c = arg;
	int rc = mr_chan_close(c->ch);

	atomic_fetch_add(rc == 0 ? &c->zero : rc == -EPIPE ? &c->epipe : &c->other, 1);
}

static void cc_recv(void *arg)
{
	struct cc *c = arg;
	uint64_t v;

	c->rc_recv = mr_chan_recv(c->ch, &v);
}

TEST_TIMEOUT(closes_race_exactly_one_wins, 60)
{
	mr_runtime_t *rt = make_rt(2);
	long rounds = fiber_rounds(1000);

	ASSERT_NONNULL(rt);
	for (long round = 0; round < rounds; round++) {
		struct cc c = { .rc_recv = 99 };
		struct actor a[5];

		c.ch = mr_chan_create(8, (size_t)(round % 3), 0); /* rendezvous, 1, 2 */
		ASSERT_NONNULL(c.ch);
		actor_start(&a[0], rt, round % 2, cc_recv, &c);
		for (int i = 1; i < 5; i++)
			actor_start(&a[i], rt, i % 2, cc_close, &c);
		for (int i = 0; i < 5; i++)
			actor_join(&a[i]);
		ASSERT_EQ(atomic_load(&c.zero), 1);
		ASSERT_EQ(atomic_load(&c.epipe), 3);
		ASSERT_EQ(atomic_load(&c.other), 0);
		ASSERT_EQ(c.rc_recv, -EPIPE);
		ASSERT_TRUE(mr_chan_is_closed(c.ch));
		mr_chan_destroy(c.ch);
	}
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* ---- the rendezvous word: a lone waiter, joined by others ------------------------ */

/*
 * A lone blocking waiter of a rendezvous channel waits in the channel's
 * word, without the lock; a second waiter, a select, a deadline or a close
 * moves it to the locked queues. Per round: two senders (one with blocking
 * sends only, so that it mostly sits in the word; one mixing blocking,
 * racy deadlines and selects), two receivers (one blocking, one mixing try,
 * deadlines and selects with a channel that never has anything), fibers and
 * threads in turn, and a close at a random moment. Every send that returned
 * 0 is received exactly once, no failed send ever is, each receiver sees
 * each sender's values in order, and every receiver ends with -EPIPE.
 */
#define RW_SENDERS 2
#define RW_PER 300

struct rw {
	mr_chan_t *ch, *never;
	_Atomic unsigned char got[RW_SENDERS][RW_PER];
	unsigned char ok[RW_SENDERS][RW_PER];
	_Atomic long bad;
	int64_t close_after_ns;
	uint64_t seed;
};

struct rw_actor {
	struct rw *w;
	int id;
};

static void rw_send(void *arg)
{
	struct rw_actor *a = arg;
	struct rw *w = a->w;
	uint64_t r = seed_of(w->seed + (uint64_t)a->id);

	for (int i = 0; i < RW_PER; i++) {
		uint64_t v = (uint64_t)a->id << 32 | (uint64_t)i;
		int rc;
		switch (a->id == 0 ? 0 : rnd(&r) % 3) {
		case 0:
			rc = mr_chan_send(w->ch, &v);
			break;
		case 1:
			rc = mr_chan_send_until(w->ch, &v, racy_deadline(rnd(&r)));
			break;
		default: {
			uint64_t sink;
			struct mr_select_case c[2] = {
				{ w->never, MR_SELECT_RECV, &sink, 0 },
				{ w->ch, MR_SELECT_SEND, &v, 0 },
			};
			rc = mr_select(c, 2, rnd(&r) % 2 ? MR_SELECT_FOREVER : racy_deadline(rnd(&r)));
			if (rc == 1)
				rc = c[1].result;
			else if (rc != -ETIMEDOUT)
				atomic_fetch_add(&w->bad, 1);
		}
		}
		if (rc == 0)
			w->ok[a->id][i] = 1;
		else if (rc == -EPIPE)
			return;
		else if (rc != -ETIMEDOUT)
			atomic_fetch_add(&w->bad, 1);
	}
}

static void rw_recv(void *arg)
{
	struct rw_actor *a = arg;
	struct rw *w = a->w;
	uint64_t r = seed_of(w->seed * 7 + (uint64_t)a->id);
	long last[RW_SENDERS] = { -1, -1 };

	for (;;) {
		uint64_t v = 0;
		int rc;
		switch (a->id == 0 ? 0 : rnd(&r) % 4) {
		case 0:
			rc = mr_chan_recv(w->ch, &v);
			break;
		case 1:
			rc = mr_chan_try_recv(w->ch, &v);
			break;
		case 2:
			rc = mr_chan_recv_until(w->ch, &v, racy_deadline(rnd(&r)));
			break;
		default: {
			uint64_t sink;
			struct mr_select_case c[2] = {
				{ w->ch, MR_SELECT_RECV, &v, 0 },
				{ w->never, MR_SELECT_RECV, &sink, 0 },
			};
			rc = mr_select(c, 2, rnd(&r) % 2 ? MR_SELECT_FOREVER : racy_deadline(rnd(&r)));
			if (rc == 0)
				rc = c[0].result;
			else if (rc != -ETIMEDOUT)
				atomic_fetch_add(&w->bad, 1);
		}
		}
		if (rc == -EPIPE)
			return;
		if (rc == -EAGAIN || rc == -ETIMEDOUT)
			continue;
		if (rc != 0) {
			atomic_fetch_add(&w->bad, 1);
			return;
		}
		unsigned s = (unsigned)(v >> 32), i = (unsigned)v;
		if (s >= RW_SENDERS || i >= RW_PER || (long)i <= last[s]) {
			atomic_fetch_add(&w->bad, 1);
			continue;
		}
		last[s] = i;
		atomic_fetch_add(&w->got[s][i], 1);
	}
}

static void rw_close(void *arg)
{
	struct rw *w = arg;

	spin_ns(w->close_after_ns);
	if (mr_chan_close(w->ch) != 0)
		atomic_fetch_add(&w->bad, 1);
}

TEST_TIMEOUT(rendezvous_word_second_waiter_select_close, 120)
{
	mr_runtime_t *rt = make_rt(2);
	long rounds = fiber_rounds(600);

	ASSERT_NONNULL(rt);
	for (long round = 0; round < rounds; round++) {
		struct rw *w = calloc(1, sizeof(*w));
		struct rw_actor sa[RW_SENDERS], ra[2];
		struct actor a[5];
		uint64_t r = seed_of((uint64_t)round);

		ASSERT_NONNULL(w);
		w->seed = (uint64_t)round;
		w->ch = mr_chan_create(8, 0, 0);
		w->never = mr_chan_create(8, 0, 0);
		ASSERT_NONNULL(w->ch);
		ASSERT_NONNULL(w->never);
		/* Mostly mid-traffic; sometimes before anything, sometimes late. */
		w->close_after_ns = (int64_t)(rnd(&r) % 400000);
		for (int i = 0; i < 2; i++) {
			ra[i] = (struct rw_actor){ w, i };
			actor_start(&a[i], rt, (round + i) % 2, rw_recv, &ra[i]);
		}
		for (int i = 0; i < RW_SENDERS; i++) {
			sa[i] = (struct rw_actor){ w, i };
			actor_start(&a[2 + i], rt, (round / 2 + i) % 2, rw_send, &sa[i]);
		}
		actor_start(&a[4], rt, round % 3 == 0, rw_close, w);
		for (int i = 0; i < 5; i++)
			actor_join(&a[i]);
		ASSERT_EQ(atomic_load(&w->bad), 0);
		for (int s = 0; s < RW_SENDERS; s++)
			for (int i = 0; i < RW_PER; i++)
				ASSERT_EQ(atomic_load(&w->got[s][i]), w->ok[s][i]);
		mr_chan_destroy(w->ch);
		mr_chan_destroy(w->never);
		free(w);
	}
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* ---- ping-pong: no lost wake-ups ------------------------------------------------- */

struct pp {
	mr_chan_t *ping, *pong;
	long n;
	long bad;
	uint64_t rng;
};

/* One call of four kinds: plain, _until far away, select forever, select with
 * a far deadline. */
static int pp_op(mr_chan_t *ch, bool send, uint64_t *v, uint64_t r)
{
	switch (r % 4) {
	case 0:
		return send ? mr_chan_send(ch, v) : mr_chan_recv(ch, v);
	case 1: {
		int64_t far = mr_now_ns() + 600000000000LL;
		return send ? mr_chan_send_until(ch, v, far) : mr_chan_recv_until(ch, v, far);
	}
	default: {
		struct mr_select_case c = { ch, send ? MR_SELECT_SEND : MR_SELECT_RECV, v, 1 };
		int idx = mr_select(&c, 1,
				    r % 4 == 2 ? MR_SELECT_FOREVER : mr_now_ns() + 600000000000LL);
		return idx == 0 ? c.result : 1000 + idx;
	}
	}
}

static void pp_server(void *arg)
{
	struct pp *p = arg;
	uint64_t rng = p->rng ^ 0x1234, v;

	for (long i = 0; i < p->n; i++) {
		if (pp_op(p->ping, false, &v, rnd(&rng)) != 0 || v != (uint64_t)i) {
			p->bad++;
			return;
		}
		v = (uint64_t)i + 1;
		if (pp_op(p->pong, true, &v, rnd(&rng)) != 0) {
			p->bad++;
			return;
		}
	}
}

static void pp_client(void *arg)
{
	struct pp *p = arg;
	uint64_t rng = p->rng, v;

	for (long i = 0; i < p->n; i++) {
		v = (uint64_t)i;
		if (pp_op(p->ping, true, &v, rnd(&rng)) != 0) {
			p->bad++;
			return;
		}
		if (pp_op(p->pong, false, &v, rnd(&rng)) != 0 || v != (uint64_t)i + 1) {
			p->bad++;
			return;
		}
	}
}

static void ping_pong(size_t cap, bool fiber_client, bool fiber_server, unsigned workers,
		      long n)
{
	mr_runtime_t *rt = make_rt(workers);
	struct pp p = { .n = scaled(n), .rng = seed_of(cap + 5) };
	struct actor a[2];
	int64_t t0 = mr_now_ns();

	ASSERT_NONNULL(rt);
	p.ping = mr_chan_create(8, cap, 0);
	p.pong = mr_chan_create(8, cap, 0);
	ASSERT_NONNULL(p.ping);
	ASSERT_NONNULL(p.pong);
	actor_start(&a[0], rt, fiber_server, pp_server, &p);
	actor_start(&a[1], rt, fiber_client, pp_client, &p);
	actor_join(&a[1]);
	actor_join(&a[0]);
	TH_LOG("cap %zu, %s client, %s server, %u workers: %ld round trips, %.2f us each", cap,
	       fiber_client ? "fiber" : "thread", fiber_server ? "fiber" : "thread", workers, p.n,
	       (double)(mr_now_ns() - t0) / 1e3 / (double)p.n);
	EXPECT_EQ(p.bad, 0);
	EXPECT_EQ(mr_chan_len(p.ping), 0);
	EXPECT_EQ(mr_chan_len(p.pong), 0);
	mr_chan_destroy(p.ping);
	mr_chan_destroy(p.pong);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* 100,000 round trips between a thread and a fiber per flavour: half with the
 * thread asking (one worker), half with the fiber asking (two workers, so the
 * fiber may move). */
TEST_TIMEOUT(ping_pong_thread_fiber_cap1, 120)
{
	ping_pong(1, false, true, 1, 50000);
	ping_pong(1, true, false, 2, 50000);
}

TEST_TIMEOUT(ping_pong_thread_fiber_rendezvous, 120)
{
	ping_pong(0, false, true, 1, 50000);
	ping_pong(0, true, false, 2, 50000);
}

TEST_TIMEOUT(ping_pong_fiber_fiber, 120)
{
	ping_pong(1, true, true, 2, 100000);
	ping_pong(0, true, true, 2, 100000);
}

TEST_HARNESS_MAIN
