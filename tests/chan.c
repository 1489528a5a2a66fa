/*
 * chan.c - channels (<moirai/chan.h>) tested against the header alone:
 * creation and every bad argument; the three flavours (bounded ring,
 * unbounded segments, rendezvous) with exact capacities, FIFO order, many
 * laps of wrap-around and elements of odd sizes copied intact; deadlines
 * that time out without leaving the element or the waiter behind; close
 * waking fibers and threads blocked on either side, receivers draining what
 * was sent before it; destroy with queued elements and with a waiter (an
 * abort naming the call); select: bad arguments, poll, deadlines, skipped
 * cases, mixed send and receive, fairness, closed channels, rendezvous
 * pairing with plain calls and with another select but never with itself;
 * jobs using the try calls and blocking on a channel; a fiber woken by a
 * fiber that keeps going (more channel operations, no blocking) runs on
 * another worker meanwhile.
 *
 * Blocking is checked without timing: a call that must stay blocked is
 * given a while to return wrongly, and the test asserts that it has not;
 * a call that must return is simply waited for (a lost wake-up is a hang,
 * which the harness reports as a timeout). The only clock checks are
 * "a deadline never ends a call early".
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <moirai/moirai.h>

#include "harness.h"
#include "util.h"

/* ---- helpers ------------------------------------------------------------------ */

static void sleep_ms(int ms)
{
	mr_sleep_ns((uint64_t)ms * 1000000);
}

/* The byte pattern of element number seq of `size` bytes. */
static uint8_t pat(uint64_t seq, size_t i)
{
	return (uint8_t)(seq * 131 + i * 7 + (i >> 8) * 13 + 1);
}

static void fill(void *buf, size_t size, uint64_t seq)
{
	uint8_t *b = buf;

	for (size_t i = 0; i < size; i++)
		b[i] = pat(seq, i);
}

/* 1 if buf holds element seq, 0 if not. */
static int intact(const void *buf, size_t size, uint64_t seq)
{
	const uint8_t *b = buf;

	for (size_t i = 0; i < size; i++)
		if (b[i] != pat(seq, i))
			return 0;
	return 1;
}

#define CANARY 0xC5
#define CANARY_LEN 32

/* A receive buffer with a canary after its `size` bytes. */
static uint8_t *rbuf_new(size_t size)
{
	uint8_t *b = malloc(size + CANARY_LEN);

	if (!b)
		abort();
	memset(b, 0, size);
	memset(b + size, CANARY, CANARY_LEN);
	return b;
}

static int canary_ok(const uint8_t *b, size_t size)
{
	for (size_t i = 0; i < CANARY_LEN; i++)
		if (b[size + i] != CANARY)
			return 0;
	return 1;
}

/* A deadline in the past that is not MR_SELECT_POLL. */
static int64_t past(void)
{
	return mr_now_ns() - 1000000;
}

static int64_t in_ms(int ms)
{
	return mr_now_ns() + (int64_t)ms * 1000000;
}

/* ---- create --------------------------------------------------------------------- */

TEST(create_sizes_and_flavours)
{
	static const size_t sizes[] = { 1, 3, 8, 24, 4097, MR_CHAN_ELEM_MAX };
	static const size_t caps[] = { 1, 3, 1000, 0, MR_CHAN_UNBOUNDED };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		for (size_t j = 0; j < sizeof(caps) / sizeof(caps[0]); j++) {
			size_t sz = sizes[i], cap = caps[j];
			mr_chan_t *ch = mr_chan_create(sz, cap, 0);
			uint8_t *in = malloc(sz), *out = rbuf_new(sz);

			ASSERT_NONNULL(ch);
			EXPECT_EQ(mr_chan_elem_size(ch), sz);
			EXPECT_EQ(mr_chan_capacity(ch), cap);
			EXPECT_EQ(mr_chan_len(ch), 0);
			EXPECT_FALSE(mr_chan_is_closed(ch));
			fill(in, sz, i * 10 + j);
			if (cap != 0) {
				EXPECT_EQ(mr_chan_try_send(ch, in), 0);
				EXPECT_EQ(mr_chan_len(ch), 1);
				memset(in, 0, sz); /* copied in by value */
				EXPECT_EQ(mr_chan_try_recv(ch, out), 0);
				EXPECT_TRUE(intact(out, sz, i * 10 + j));
				EXPECT_TRUE(canary_ok(out, sz));
				EXPECT_EQ(mr_chan_len(ch), 0);
			} else {
				EXPECT_EQ(mr_chan_try_send(ch, in), -EAGAIN);
				EXPECT_EQ(mr_chan_len(ch), 0);
			}
			EXPECT_EQ(mr_chan_try_recv(ch, out), -EAGAIN);
			mr_chan_destroy(ch);
			free(in);
			free(out);
		}
	}
}

#define EXPECT_CREATE_EINVAL(sz, cap, flags)                                                       \
	do {                                                                                       \
		errno = 0;                                                                         \
		mr_chan_t *_ch = mr_chan_create(sz, cap, flags);                                    \
		EXPECT_TRUE(_ch == NULL);                                                           \
		EXPECT_EQ(errno, EINVAL);                                                          \
		if (_ch)                                                                            \
			mr_chan_destroy(_ch);                                                      \
	} while (0)

TEST(create_bad_arguments)
{
	static const size_t caps[] = { 0, 1, 16, MR_CHAN_UNBOUNDED };

	for (size_t j = 0; j < sizeof(caps) / sizeof(caps[0]); j++) {
		EXPECT_CREATE_EINVAL(0, caps[j], 0);
		EXPECT_CREATE_EINVAL(MR_CHAN_ELEM_MAX + 1, caps[j], 0);
		EXPECT_CREATE_EINVAL(2 * MR_CHAN_ELEM_MAX, caps[j], 0);
		EXPECT_CREATE_EINVAL(SIZE_MAX, caps[j], 0);
		EXPECT_CREATE_EINVAL(8, caps[j], 1);
		EXPECT_CREATE_EINVAL(8, caps[j], 2);
		EXPECT_CREATE_EINVAL(8, caps[j], 0x80000000u);
		EXPECT_CREATE_EINVAL(8, caps[j], ~0u);
	}
	EXPECT_CREATE_EINVAL(8, MR_CHAN_CAPACITY_MAX + 1, 0);
	EXPECT_CREATE_EINVAL(1, MR_CHAN_CAPACITY_MAX + 1, 0);
	EXPECT_CREATE_EINVAL(8, (size_t)1 << 40, 0);
	EXPECT_CREATE_EINVAL(8, MR_CHAN_UNBOUNDED - 1, 0);
	EXPECT_CREATE_EINVAL(8, SIZE_MAX / 2, 0);
	/* Both wrong at once: still EINVAL. */
	EXPECT_CREATE_EINVAL(0, MR_CHAN_CAPACITY_MAX + 1, 1);
}

/*
 * MR_CHAN_CAPACITY_MAX itself is a valid capacity: the channel is created or
 * the memory is refused (ENOMEM), never EINVAL. Run with the address space
 * limited so that an eager allocation fails quickly instead of paging; the
 * sanitizers reserve terabytes of shadow and cannot run under that limit.
 */
static void cap_max_child(void *arg)
{
	struct rlimit rl = { (rlim_t)4 << 30, (rlim_t)4 << 30 };
	int code = 0;

	(void)arg;
	if (setrlimit(RLIMIT_AS, &rl) != 0)
		_exit(10);
	for (int sz = 1; sz <= 8; sz *= 8) {
		errno = 0;
		mr_chan_t *ch = mr_chan_create((size_t)sz, MR_CHAN_CAPACITY_MAX, 0);
		if (ch) {
			uint64_t v = 7, w = 0;
			if (mr_chan_capacity(ch) != MR_CHAN_CAPACITY_MAX)
				code = 11;
			if (mr_chan_try_send(ch, &v) != 0 || mr_chan_try_recv(ch, &w) != 0 ||
			    memcmp(&v, &w, (size_t)sz) != 0)
				code = 12;
			mr_chan_destroy(ch);
		} else if (errno != ENOMEM) {
			fprintf(stderr, "create(%d, MR_CHAN_CAPACITY_MAX): errno %d\n", sz, errno);
			code = 13;
		}
	}
	_exit(code);
}

TEST(create_capacity_max_is_valid)
{
	char buf[1024];

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	(void)cap_max_child;
	(void)buf;
	SKIP("needs RLIMIT_AS, which the sanitizers' shadow memory cannot run under");
#else
	int st = mr_test_run_child(cap_max_child, NULL, buf, sizeof(buf));

	if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
		TH_LOG("child status %#x, stderr: %s", st, buf);
	ASSERT_TRUE(WIFEXITED(st));
	ASSERT_EQ(WEXITSTATUS(st), 0);
#endif
}

TEST(null_channel_einval)
{
	uint64_t v = 1;
	struct mr_select_case c = { NULL, MR_SELECT_RECV, &v, 0 };

	EXPECT_EQ(mr_chan_send(NULL, &v), -EINVAL);
	EXPECT_EQ(mr_chan_recv(NULL, &v), -EINVAL);
	EXPECT_EQ(mr_chan_try_send(NULL, &v), -EINVAL);
	EXPECT_EQ(mr_chan_try_recv(NULL, &v), -EINVAL);
	EXPECT_EQ(mr_chan_send_until(NULL, &v, in_ms(1000)), -EINVAL);
	EXPECT_EQ(mr_chan_recv_until(NULL, &v, in_ms(1000)), -EINVAL);
	EXPECT_EQ(mr_chan_send_until(NULL, &v, past()), -EINVAL);
	EXPECT_EQ(mr_chan_recv_until(NULL, &v, past()), -EINVAL);
	EXPECT_EQ(mr_chan_close(NULL), -EINVAL);
	mr_chan_destroy(NULL); /* ignored */
	/* A case whose channel is NULL is a skipped case, not an error. */
	EXPECT_EQ(mr_select(&c, 1, in_ms(1)), -ETIMEDOUT);
}

/*
 * A NULL element pointer is misuse: the call must refuse it - -EINVAL, or
 * an abort whose message names the call - and never touch the channel's
 * contents or crash on the pointer. Each call runs in a child.
 */
enum { NE_SEND, NE_RECV, NE_TRY_SEND, NE_TRY_RECV, NE_SEND_UNTIL, NE_RECV_UNTIL, NE_N };
static const char *const ne_names[NE_N] = {
	"mr_chan_send",	    "mr_chan_recv",	  "mr_chan_try_send",
	"mr_chan_try_recv", "mr_chan_send_until", "mr_chan_recv_until",
};

struct ne_arg {
	int call;
	size_t cap;
};

static void null_elem_child(void *arg)
{
	struct ne_arg *a = arg;
	mr_chan_t *ch = mr_chan_create(8, a->cap, 0);
	uint64_t v = 99, w = 0;
	int rc = 0;

	if (!ch)
		_exit(20);
	/* Something to receive (bounded and unbounded). */
	if (a->cap != 0 && mr_chan_try_send(ch, &v) != 0)
		_exit(21);
	switch (a->call) {
	case NE_SEND:
		rc = mr_chan_send(ch, NULL);
		break;
	case NE_RECV:
		rc = mr_chan_recv(ch, NULL);
		break;
	case NE_TRY_SEND:
		rc = mr_chan_try_send(ch, NULL);
		break;
	case NE_TRY_RECV:
		rc = mr_chan_try_recv(ch, NULL);
		break;
	case NE_SEND_UNTIL:
		rc = mr_chan_send_until(ch, NULL, in_ms(1));
		break;
	case NE_RECV_UNTIL:
		rc = mr_chan_recv_until(ch, NULL, in_ms(1));
		break;
	}
	if (rc != -EINVAL) {
		fprintf(stderr, "%s(ch, NULL) returned %d\n", ne_names[a->call], rc);
		_exit(22);
	}
	/* Refused: the queued element is still there, alone. */
	if (a->cap != 0) {
		if (mr_chan_len(ch) != 1 || mr_chan_try_recv(ch, &w) != 0 || w != v ||
		    mr_chan_try_recv(ch, &w) != -EAGAIN) {
			fprintf(stderr, "%s(ch, NULL) changed the channel\n", ne_names[a->call]);
			_exit(23);
		}
	}
	mr_chan_destroy(ch);
	_exit(0);
}

TEST(null_element_is_refused)
{
	static const size_t caps[] = { 1, 4, MR_CHAN_UNBOUNDED, 0 };
	char buf[2048];

	for (size_t j = 0; j < sizeof(caps) / sizeof(caps[0]); j++) {
		for (int call = 0; call < NE_N; call++) {
			struct ne_arg a = { call, caps[j] };
			int st = mr_test_run_child(null_elem_child, &a, buf, sizeof(buf));
			bool ok = (WIFEXITED(st) && WEXITSTATUS(st) == 0) ||
				  (WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT &&
				   strstr(buf, ne_names[call]));
			if (!ok)
				TH_LOG("%s(ch cap %zu, NULL): status %#x, stderr: %s", ne_names[call],
				       caps[j], st, buf);
			EXPECT_TRUE(ok);
		}
	}
}

/* The monitoring calls on NULL: a value or an abort naming the call, never a
 * crash on the pointer. */
static void null_monitor_child(void *arg)
{
	int which = *(int *)arg;
	volatile size_t r = 0;

	switch (which) {
	case 0:
		r = mr_chan_len(NULL);
		break;
	case 1:
		r = mr_chan_capacity(NULL);
		break;
	case 2:
		r = mr_chan_elem_size(NULL);
		break;
	case 3:
		r = mr_chan_is_closed(NULL);
		break;
	}
	(void)r;
	_exit(0);
}

TEST(null_channel_monitoring_does_not_crash)
{
	static const char *const names[] = { "mr_chan_len", "mr_chan_capacity",
					     "mr_chan_elem_size", "mr_chan_is_closed" };
	char buf[2048];

	for (int which = 0; which < 4; which++) {
		int st = mr_test_run_child(null_monitor_child, &which, buf, sizeof(buf));
		bool ok = (WIFEXITED(st) && WEXITSTATUS(st) == 0) ||
			  (WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && strstr(buf, names[which]));
		if (!ok)
			TH_LOG("%s(NULL): status %#x, stderr: %s", names[which], st, buf);
		EXPECT_TRUE(ok);
	}
}

/* ---- bounded ------------------------------------------------------------------ */

TEST(bounded_exact_capacity)
{
	static const size_t caps[] = { 1, 2, 3, 5, 1000, 1024, 1025 };
	static const size_t sizes[] = { 8, 3, 24 };

	for (size_t j = 0; j < sizeof(caps) / sizeof(caps[0]); j++) {
		for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
			size_t cap = caps[j], sz = sizes[k];
			mr_chan_t *ch = mr_chan_create(sz, cap, 0);
			uint8_t *e = rbuf_new(sz);
			uint64_t seq = 0, next = 0;

			ASSERT_NONNULL(ch);
			/* Three fills from different starting positions, so that
			 * positions wrap; the first starts empty: exactly cap sends
			 * succeed. */
			size_t len = 0;
			for (int lap = 0; lap < 3; lap++) {
				while (len < cap) {
					fill(e, sz, seq);
					ASSERT_EQ(mr_chan_try_send(ch, e), 0);
					seq++;
					len++;
					ASSERT_EQ(mr_chan_len(ch), len);
				}
				fill(e, sz, 1u << 30);
				EXPECT_EQ(mr_chan_try_send(ch, e), -EAGAIN);
				EXPECT_EQ(mr_chan_send_until(ch, e, past()), -ETIMEDOUT);
				EXPECT_EQ(mr_chan_len(ch), cap);
				size_t keep = lap == 2 ? 0 : (size_t)(lap + 1) * 7 % cap;
				while (len > keep) {
					ASSERT_EQ(mr_chan_try_recv(ch, e), 0);
					ASSERT_TRUE(intact(e, sz, next));
					ASSERT_TRUE(canary_ok(e, sz));
					next++;
					len--;
					ASSERT_EQ(mr_chan_len(ch), len);
				}
			}
			EXPECT_EQ(next, seq);
			EXPECT_EQ(mr_chan_len(ch), 0);
			EXPECT_EQ(mr_chan_try_recv(ch, e), -EAGAIN);
			EXPECT_EQ(mr_chan_recv_until(ch, e, past()), -ETIMEDOUT);
			mr_chan_destroy(ch);
			free(e);
		}
	}
}

/* Random bursts of sends and receives: FIFO over many laps, len exact. */
TEST(bounded_fifo_wraparound)
{
	static const size_t caps[] = { 1, 3, 7, 64, 1000 };
	uint64_t r = 0x1234567;

	for (size_t j = 0; j < sizeof(caps) / sizeof(caps[0]); j++) {
		size_t cap = caps[j];
		mr_chan_t *ch = mr_chan_create(16, cap, 0);
		uint64_t sent = 0, got = 0, e[2];
		long ops = scaled(400000);

		ASSERT_NONNULL(ch);
		while (ops > 0) {
			size_t len = (size_t)(sent - got);
			size_t k = (size_t)(rnd(&r) % (cap + 1));
			for (size_t i = 0; i < k && len < cap; i++, len++, ops--) {
				e[0] = sent;
				e[1] = ~sent;
				ASSERT_EQ(mr_chan_try_send(ch, e), 0);
				sent++;
			}
			if (len == cap) {
				ASSERT_EQ(mr_chan_try_send(ch, e), -EAGAIN);
			}
			ASSERT_EQ(mr_chan_len(ch), len);
			k = (size_t)(rnd(&r) % (cap + 1));
			for (size_t i = 0; i < k && len > 0; i++, len--, ops--) {
				ASSERT_EQ(mr_chan_try_recv(ch, e), 0);
				ASSERT_EQ(e[0], got);
				ASSERT_EQ(e[1], ~got);
				got++;
			}
			if (len == 0)
				ASSERT_EQ(mr_chan_try_recv(ch, e), -EAGAIN);
			ASSERT_EQ(mr_chan_len(ch), len);
		}
		mr_chan_destroy(ch);
	}
}

/* Elements of odd sizes are copied whole, and receiving writes nothing past
 * the element. */
struct odd_rx {
	mr_chan_t *ch;
	size_t size;
	int n;
	int bad;
};

static void odd_receiver(void *arg)
{
	struct odd_rx *o = arg;
	uint8_t *b = rbuf_new(o->size);

	for (int i = 0; i < o->n; i++) {
		memset(b, 0, o->size);
		if (mr_chan_recv(o->ch, b) != 0 || !intact(b, o->size, (uint64_t)i) ||
		    !canary_ok(b, o->size))
			o->bad++;
	}
	free(b);
}

TEST(elements_of_odd_sizes_copied_intact)
{
	static const size_t sizes[] = { 1, 2, 3, 5, 7, 9, 15, 17, 24, 100, 1000, 4095, 4097, 65535, 65536 };
	static const size_t caps[] = { 5, MR_CHAN_UNBOUNDED, 0 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t sz = sizes[i];
		uint8_t *in = malloc(sz), *out = rbuf_new(sz);

		for (size_t j = 0; j < sizeof(caps) / sizeof(caps[0]); j++) {
			mr_chan_t *ch = mr_chan_create(sz, caps[j], 0);
			int n = caps[j] == 5 ? 5 : 70; /* 70: over two segments, if any */

			ASSERT_NONNULL(ch);
			if (caps[j] == 0) {
				struct odd_rx o = { ch, sz, n, 0 };
				struct actor a;
				actor_start(&a, NULL, false, odd_receiver, &o);
				for (int k = 0; k < n; k++) {
					fill(in, sz, (uint64_t)k);
					ASSERT_EQ(mr_chan_send(ch, in), 0);
				}
				actor_join(&a);
				EXPECT_EQ(o.bad, 0);
			} else {
				for (int lap = 0; lap < 3; lap++) {
					for (int k = 0; k < n; k++) {
						fill(in, sz, (uint64_t)(lap * n + k));
						ASSERT_EQ(mr_chan_send(ch, in), 0);
					}
					memset(in, 0xEE, sz); /* the channel holds copies */
					for (int k = 0; k < n; k++) {
						memset(out, 0, sz);
						ASSERT_EQ(mr_chan_recv(ch, out), 0);
						EXPECT_TRUE(intact(out, sz, (uint64_t)(lap * n + k)));
						EXPECT_TRUE(canary_ok(out, sz));
					}
				}
			}
			EXPECT_EQ(mr_chan_len(ch), 0);
			mr_chan_destroy(ch);
		}
		free(in);
		free(out);
	}
}

/* A send that times out on a full channel queued nothing and left no waiter
 * behind to slip its element in later. */
struct to_arg {
	mr_chan_t *ch;
	int rc[4];
	int early;
};

static void timed_sends_on_full(void *arg)
{
	struct to_arg *t = arg;
	uint64_t v = 1000;

	for (int i = 0; i < 3; i++) {
		int64_t dl = in_ms(2 + i);
		t->rc[i] = mr_chan_send_until(t->ch, &v, dl);
		if (mr_now_ns() < dl)
			t->early++;
		v++;
	}
	t->rc[3] = mr_chan_send_until(t->ch, &v, past());
}

TEST(bounded_send_until_full_times_out_and_queues_nothing)
{
	for (int fiber = 0; fiber <= 1; fiber++) {
		mr_chan_t *ch = mr_chan_create(8, 2, 0);
		struct to_arg t = { .ch = ch };
		uint64_t v;

		ASSERT_NONNULL(ch);
		v = 1;
		ASSERT_EQ(mr_chan_send(ch, &v), 0);
		v = 2;
		ASSERT_EQ(mr_chan_send(ch, &v), 0);
		if (fiber)
			ASSERT_EQ(mr_run(NULL, timed_sends_on_full, &t), 0);
		else
			timed_sends_on_full(&t);
		for (int i = 0; i < 4; i++)
			EXPECT_EQ(t.rc[i], -ETIMEDOUT);
		EXPECT_EQ(t.early, 0);
		EXPECT_EQ(mr_chan_len(ch), 2);
		ASSERT_EQ(mr_chan_recv(ch, &v), 0);
		EXPECT_EQ(v, 1);
		/* The freed slot goes to us, not to a timed-out sender. */
		v = 3;
		EXPECT_EQ(mr_chan_try_send(ch, &v), 0);
		ASSERT_EQ(mr_chan_recv(ch, &v), 0);
		EXPECT_EQ(v, 2);
		ASSERT_EQ(mr_chan_recv(ch, &v), 0);
		EXPECT_EQ(v, 3);
		EXPECT_EQ(mr_chan_try_recv(ch, &v), -EAGAIN);
		EXPECT_EQ(mr_chan_len(ch), 0);
		mr_chan_destroy(ch);
	}
}

/* A receive that times out took nothing and left no waiter behind. */
struct rto_arg {
	mr_chan_t *ch;
	int rc[4];
	int early;
	uint64_t v;
};

static void timed_recvs_on_empty(void *arg)
{
	struct rto_arg *t = arg;

	for (int i = 0; i < 3; i++) {
		int64_t dl = in_ms(2 + i);
		t->rc[i] = mr_chan_recv_until(t->ch, &t->v, dl);
		if (mr_now_ns() < dl)
			t->early++;
	}
	t->rc[3] = mr_chan_recv_until(t->ch, &t->v, past());
}

TEST(recv_until_empty_times_out_and_takes_nothing)
{
	static const size_t caps[] = { 1, 16, MR_CHAN_UNBOUNDED, 0 };

	for (size_t j = 0; j < sizeof(caps) / sizeof(caps[0]); j++) {
		for (int fiber = 0; fiber <= 1; fiber++) {
			mr_chan_t *ch = mr_chan_create(8, caps[j], 0);
			struct rto_arg t = { .ch = ch, .v = 77 };
			uint64_t v = 5;

			ASSERT_NONNULL(ch);
			if (fiber)
				ASSERT_EQ(mr_run(NULL, timed_recvs_on_empty, &t), 0);
			else
				timed_recvs_on_empty(&t);
			for (int i = 0; i < 4; i++)
				EXPECT_EQ(t.rc[i], -ETIMEDOUT);
			EXPECT_EQ(t.early, 0);
			EXPECT_EQ(t.v, 77); /* nothing written */
			if (caps[j] == 0) {
				/* No receiver is left waiting. */
				EXPECT_EQ(mr_chan_try_send(ch, &v), -EAGAIN);
			} else {
				ASSERT_EQ(mr_chan_try_send(ch, &v), 0);
				EXPECT_EQ(mr_chan_len(ch), 1);
				v = 0;
				EXPECT_EQ(mr_chan_try_recv(ch, &v), 0);
				EXPECT_EQ(v, 5);
			}
			mr_chan_destroy(ch);
		}
	}
}

/* A deadline that has passed does not stop an operation that can complete. */
TEST(past_deadline_still_completes_a_ready_operation)
{
	static const size_t caps[] = { 1, 16, MR_CHAN_UNBOUNDED };

	for (size_t j = 0; j < sizeof(caps) / sizeof(caps[0]); j++) {
		mr_chan_t *ch = mr_chan_create(8, caps[j], 0);
		uint64_t v = 42, w = 0;

		ASSERT_NONNULL(ch);
		EXPECT_EQ(mr_chan_send_until(ch, &v, past()), 0);
		EXPECT_EQ(mr_chan_len(ch), 1);
		EXPECT_EQ(mr_chan_recv_until(ch, &w, past()), 0);
		EXPECT_EQ(w, 42);
		v = 43;
		EXPECT_EQ(mr_chan_send_until(ch, &v, 1), 0); /* 1 ns after boot */
		EXPECT_EQ(mr_chan_recv_until(ch, &w, 1), 0);
		EXPECT_EQ(w, 43);
		mr_chan_destroy(ch);
	}
}

/* A blocked call stays blocked until the other side acts (checked after
 * giving it time to return wrongly), then completes. */
struct blk {
	mr_chan_t *ch;
	uint64_t v;
	int rc;
	int use; /* 0 plain, 1 _until far away, 2 select forever */
	_Atomic int started, returned;
};

static int blk_send(struct blk *b)
{
	switch (b->use) {
	case 1:
		return mr_chan_send_until(b->ch, &b->v, in_ms(600000));
	case 2: {
		struct mr_select_case c = { b->ch, MR_SELECT_SEND, &b->v, 99 };
		int idx = mr_select(&c, 1, MR_SELECT_FOREVER);
		return idx == 0 ? c.result : 1000 + idx;
	}
	default:
		return mr_chan_send(b->ch, &b->v);
	}
}

static int blk_recv(struct blk *b)
{
	switch (b->use) {
	case 1:
		return mr_chan_recv_until(b->ch, &b->v, in_ms(600000));
	case 2: {
		struct mr_select_case c = { b->ch, MR_SELECT_RECV, &b->v, 99 };
		int idx = mr_select(&c, 1, MR_SELECT_FOREVER);
		return idx == 0 ? c.result : 1000 + idx;
	}
	default:
		return mr_chan_recv(b->ch, &b->v);
	}
}

static void blk_sender(void *arg)
{
	struct blk *b = arg;

	atomic_store(&b->started, 1);
	b->rc = blk_send(b);
	atomic_store(&b->returned, 1);
}

static void blk_receiver(void *arg)
{
	struct blk *b = arg;

	atomic_store(&b->started, 1);
	b->rc = blk_recv(b);
	atomic_store(&b->returned, 1);
}

static void wait_started(_Atomic int *started)
{
	while (!atomic_load(started))
		sleep_ms(1);
	sleep_ms(20); /* time to reach the wait (or to return wrongly) */
}

/* cap: 1 (a full bounded channel) or 0 (rendezvous). */
static void send_blocks_until_taken(size_t cap)
{
	mr_runtime_t *rt = make_rt(2);

	ASSERT_NONNULL(rt);
	for (int fiber = 0; fiber <= 1; fiber++) {
		for (int use = 0; use < 3; use++) {
			mr_chan_t *ch = mr_chan_create(8, cap, 0);
			struct blk b = { .ch = ch, .v = 200 + (uint64_t)use, .use = use };
			struct actor a;
			uint64_t v = 100;

			ASSERT_NONNULL(ch);
			if (cap)
				ASSERT_EQ(mr_chan_send(ch, &v), 0);
			actor_start(&a, rt, fiber, blk_sender, &b);
			wait_started(&b.started);
			EXPECT_EQ(atomic_load(&b.returned), 0);
			EXPECT_EQ(mr_chan_len(ch), cap);
			if (cap) {
				ASSERT_EQ(mr_chan_recv(ch, &v), 0);
				EXPECT_EQ(v, 100);
			}
			ASSERT_EQ(mr_chan_recv(ch, &v), 0);
			EXPECT_EQ(v, 200 + (uint64_t)use);
			actor_join(&a);
			EXPECT_EQ(b.rc, 0);
			EXPECT_EQ(mr_chan_len(ch), 0);
			EXPECT_EQ(mr_chan_try_recv(ch, &v), -EAGAIN);
			mr_chan_destroy(ch);
		}
	}
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

static void recv_blocks_until_sent(size_t cap)
{
	mr_runtime_t *rt = make_rt(2);

	ASSERT_NONNULL(rt);
	for (int fiber = 0; fiber <= 1; fiber++) {
		for (int use = 0; use < 3; use++) {
			mr_chan_t *ch = mr_chan_create(8, cap, 0);
			struct blk b = { .ch = ch, .v = 1, .use = use };
			struct actor a;
			uint64_t v = 300 + (uint64_t)use;

			ASSERT_NONNULL(ch);
			actor_start(&a, rt, fiber, blk_receiver, &b);
			wait_started(&b.started);
			EXPECT_EQ(atomic_load(&b.returned), 0);
			ASSERT_EQ(mr_chan_send(ch, &v), 0);
			/* A rendezvous send returns only once the receiver has it. */
			actor_join(&a);
			EXPECT_EQ(b.rc, 0);
			EXPECT_EQ(b.v, 300 + (uint64_t)use);
			EXPECT_EQ(mr_chan_len(ch), 0);
			EXPECT_EQ(mr_chan_try_recv(ch, &v), -EAGAIN);
			mr_chan_destroy(ch);
		}
	}
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

TEST(bounded_send_blocks_while_full)
{
	send_blocks_until_taken(1);
}

TEST(bounded_recv_blocks_while_empty)
{
	recv_blocks_until_sent(1);
	recv_blocks_until_sent(8);
	recv_blocks_until_sent(MR_CHAN_UNBOUNDED);
}

/* ---- unbounded ------------------------------------------------------------------ */

struct million {
	long n;
	int bad;
};

static void million_sends(void *arg)
{
	struct million *m = arg;
	mr_chan_t *ch = mr_chan_create(8, MR_CHAN_UNBOUNDED, 0);
	uint64_t v;

	if (!ch) {
		m->bad = 1;
		return;
	}
	for (long i = 0; i < m->n; i++) {
		int rc;
		v = (uint64_t)i;
		switch (i % 3) {
		case 0:
			rc = mr_chan_try_send(ch, &v); /* never -EAGAIN */
			break;
		case 1:
			rc = mr_chan_send_until(ch, &v, past()); /* never -ETIMEDOUT */
			break;
		default:
			rc = mr_chan_send(ch, &v);
			break;
		}
		if (rc != 0) {
			if (m->bad++ < 5)
				printf("# send %ld: %d\n", i, rc);
		}
	}
	if (mr_chan_len(ch) != (size_t)m->n)
		m->bad += 1000;
	/* Closed with everything queued: all of it still arrives, in order. */
	if (mr_chan_close(ch) != 0)
		m->bad += 10000;
	if (mr_chan_len(ch) != (size_t)m->n)
		m->bad += 100000;
	for (long i = 0; i < m->n; i++) {
		int rc = i % 2 ? mr_chan_recv(ch, &v) : mr_chan_try_recv(ch, &v);
		if (rc != 0 || v != (uint64_t)i) {
			if (m->bad++ < 5)
				printf("# recv %ld: %d, %" PRIu64 "\n", i, rc, v);
		}
		if (i % 4096 == 0 && mr_chan_len(ch) != (size_t)(m->n - i - 1))
			m->bad += 1000000;
	}
	if (mr_chan_recv(ch, &v) != -EPIPE || mr_chan_try_recv(ch, &v) != -EPIPE)
		m->bad += 10000000;
	mr_chan_destroy(ch);
}

TEST(unbounded_million_sends_never_block)
{
	struct million m = { .n = 1000000 };

	million_sends(&m); /* a thread */
	EXPECT_EQ(m.bad, 0);
	m = (struct million){ .n = 1000000 / 4 };
	ASSERT_EQ(mr_run(NULL, million_sends, &m), 0); /* a fiber */
	EXPECT_EQ(m.bad, 0);
}

TEST(unbounded_large_elements_across_segments)
{
	static const size_t sizes[] = { 3, 4097, MR_CHAN_ELEM_MAX };

	for (size_t j = 0; j < sizeof(sizes) / sizeof(sizes[0]); j++) {
		size_t sz = sizes[j];
		mr_chan_t *ch = mr_chan_create(sz, MR_CHAN_UNBOUNDED, 0);
		uint8_t *in = malloc(sz), *out = rbuf_new(sz);
		uint64_t sent = 0, got = 0, r = 99 + j;
		int rounds = sz > 10000 ? 150 : 3000;

		ASSERT_NONNULL(ch);
		/* Grow by one on average per round, draining in bursts. */
		for (int i = 0; i < rounds; i++) {
			int k = (int)(rnd(&r) % 4);
			for (int s = 0; s < k; s++) {
				fill(in, sz, sent++);
				ASSERT_EQ(mr_chan_try_send(ch, in), 0);
			}
			k = (int)(rnd(&r) % 3);
			for (int s = 0; s < k && got < sent; s++) {
				ASSERT_EQ(mr_chan_try_recv(ch, out), 0);
				ASSERT_TRUE(intact(out, sz, got++));
			}
			ASSERT_EQ(mr_chan_len(ch), sent - got);
		}
		while (got < sent) {
			ASSERT_EQ(mr_chan_recv(ch, out), 0);
			ASSERT_TRUE(intact(out, sz, got++));
			ASSERT_TRUE(canary_ok(out, sz));
		}
		EXPECT_EQ(mr_chan_try_recv(ch, out), -EAGAIN);
		EXPECT_EQ(mr_chan_len(ch), 0);
		mr_chan_destroy(ch);
		free(in);
		free(out);
	}
}

/* ---- rendezvous ------------------------------------------------------------------ */

TEST(rendezvous_needs_a_partner)
{
	mr_chan_t *ch = mr_chan_create(8, 0, 0);
	uint64_t v = 1, w = 0;

	ASSERT_NONNULL(ch);
	EXPECT_EQ(mr_chan_capacity(ch), 0);
	EXPECT_EQ(mr_chan_len(ch), 0);
	EXPECT_EQ(mr_chan_try_send(ch, &v), -EAGAIN);
	EXPECT_EQ(mr_chan_try_recv(ch, &w), -EAGAIN);
	EXPECT_EQ(mr_chan_send_until(ch, &v, past()), -ETIMEDOUT);
	EXPECT_EQ(mr_chan_recv_until(ch, &w, past()), -ETIMEDOUT);
	int64_t dl = in_ms(3);
	EXPECT_EQ(mr_chan_send_until(ch, &v, dl), -ETIMEDOUT);
	EXPECT_GE(mr_now_ns(), dl);
	EXPECT_EQ(mr_chan_len(ch), 0);
	/* The timed-out sender is gone: nothing to take. */
	EXPECT_EQ(mr_chan_try_recv(ch, &w), -EAGAIN);
	EXPECT_EQ(w, 0);
	mr_chan_destroy(ch);
}

TEST(rendezvous_send_blocks_until_received)
{
	send_blocks_until_taken(0);
}

TEST(rendezvous_recv_blocks_until_sent)
{
	recv_blocks_until_sent(0);
}

/* A timed-out rendezvous send is never received, even by a receiver that
 * comes right after. */
TEST(rendezvous_send_until_times_out_element_never_received)
{
	mr_runtime_t *rt = make_rt(2);

	ASSERT_NONNULL(rt);
	for (int fiber = 0; fiber <= 1; fiber++) {
		mr_chan_t *ch = mr_chan_create(8, 0, 0);
		struct to_arg t = { .ch = ch };
		struct blk b = { .ch = ch, .v = 0 };
		struct actor a;
		uint64_t v = 555;

		ASSERT_NONNULL(ch);
		if (fiber)
			ASSERT_EQ(mr_run(rt, timed_sends_on_full, &t), 0);
		else
			timed_sends_on_full(&t);
		for (int i = 0; i < 4; i++)
			EXPECT_EQ(t.rc[i], -ETIMEDOUT);
		EXPECT_EQ(t.early, 0);
		actor_start(&a, rt, !fiber, blk_receiver, &b);
		wait_started(&b.started);
		EXPECT_EQ(atomic_load(&b.returned), 0); /* no stale sender to pair with */
		ASSERT_EQ(mr_chan_send(ch, &v), 0);
		actor_join(&a);
		EXPECT_EQ(b.rc, 0);
		EXPECT_EQ(b.v, 555);
		mr_chan_destroy(ch);
	}
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* try_send succeeds once a receiver waits; try_recv once a sender waits; the
 * attempts that failed left nothing. */
TEST(rendezvous_try_ops_pair_with_a_waiter)
{
	mr_runtime_t *rt = make_rt(2);

	ASSERT_NONNULL(rt);
	for (int fiber = 0; fiber <= 1; fiber++) {
		for (int use = 0; use < 3; use++) {
			mr_chan_t *ch = mr_chan_create(8, 0, 0);
			struct blk b = { .ch = ch, .use = use };
			struct actor a;
			uint64_t v = 0;
			int rc;

			ASSERT_NONNULL(ch);
			actor_start(&a, rt, fiber, blk_receiver, &b);
			while ((rc = mr_chan_try_send(ch, &v)) == -EAGAIN) {
				v++;
				mr_sleep_ns(20000);
			}
			EXPECT_EQ(rc, 0);
			actor_join(&a);
			EXPECT_EQ(b.rc, 0);
			EXPECT_EQ(b.v, v); /* the value of the attempt that succeeded */

			b = (struct blk){ .ch = ch, .v = 4242, .use = use };
			actor_start(&a, rt, fiber, blk_sender, &b);
			v = 0;
			while ((rc = mr_chan_try_recv(ch, &v)) == -EAGAIN)
				mr_sleep_ns(20000);
			EXPECT_EQ(rc, 0);
			EXPECT_EQ(v, 4242);
			actor_join(&a);
			EXPECT_EQ(b.rc, 0);
			EXPECT_EQ(mr_chan_try_recv(ch, &v), -EAGAIN);
			mr_chan_destroy(ch);
		}
	}
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* ---- close ---------------------------------------------------------------------- */

TEST(close_twice_sends_fail_receivers_drain)
{
	static const size_t caps[] = { 1, 4, 1000, MR_CHAN_UNBOUNDED, 0 };

	for (size_t j = 0; j < sizeof(caps) / sizeof(caps[0]); j++) {
		size_t cap = caps[j];
		size_t queued = cap == MR_CHAN_UNBOUNDED ? 10000 : cap; /* full, or many */
		mr_chan_t *ch = mr_chan_create(24, cap, 0);
		uint64_t e[3] = { 0 };

		ASSERT_NONNULL(ch);
		for (size_t i = 0; i < queued; i++) {
			e[0] = i;
			e[2] = ~i;
			ASSERT_EQ(mr_chan_send(ch, e), 0);
		}
		EXPECT_EQ(mr_chan_close(ch), 0);
		EXPECT_TRUE(mr_chan_is_closed(ch));
		EXPECT_EQ(mr_chan_close(ch), -EPIPE);
		EXPECT_TRUE(mr_chan_is_closed(ch));
		e[0] = 1u << 31;
		EXPECT_EQ(mr_chan_send(ch, e), -EPIPE);
		EXPECT_EQ(mr_chan_try_send(ch, e), -EPIPE);
		EXPECT_EQ(mr_chan_send_until(ch, e, in_ms(600000)), -EPIPE);
		EXPECT_EQ(mr_chan_send_until(ch, e, past()), -EPIPE);
		EXPECT_EQ(mr_chan_len(ch), queued);
		for (size_t i = 0; i < queued; i++) {
			int rc;
			switch (i % 3) {
			case 0:
				rc = mr_chan_recv(ch, e);
				break;
			case 1:
				rc = mr_chan_try_recv(ch, e);
				break;
			default:
				rc = mr_chan_recv_until(ch, e, past());
				break;
			}
			ASSERT_EQ(rc, 0);
			ASSERT_EQ(e[0], i);
			ASSERT_EQ(e[2], ~i);
		}
		EXPECT_EQ(mr_chan_len(ch), 0);
		EXPECT_EQ(mr_chan_recv(ch, e), -EPIPE);
		EXPECT_EQ(mr_chan_try_recv(ch, e), -EPIPE);
		EXPECT_EQ(mr_chan_recv_until(ch, e, in_ms(600000)), -EPIPE);
		EXPECT_EQ(mr_chan_recv_until(ch, e, past()), -EPIPE);
		EXPECT_EQ(mr_chan_close(ch), -EPIPE);
		mr_chan_destroy(ch);
	}
}

/*
 * Fibers and threads blocked on one channel - in recv, recv_until with a far
 * deadline, or a select - all wake with -EPIPE when it is closed.
 */
struct waiter {
	mr_chan_t *ch, *other;
	int use; /* 0 plain, 1 _until, 2 select on ch alone, 3 select on other + ch */
	bool send;
	uint64_t v;
	int rc, idx;
	_Atomic int *started;
};

static void waiter_fn(void *arg)
{
	struct waiter *w = arg;
	int64_t far = in_ms(600000);

	atomic_fetch_add(w->started, 1);
	switch (w->use) {
	case 0:
		w->rc = w->send ? mr_chan_send(w->ch, &w->v) : mr_chan_recv(w->ch, &w->v);
		break;
	case 1:
		w->rc = w->send ? mr_chan_send_until(w->ch, &w->v, far)
				: mr_chan_recv_until(w->ch, &w->v, far);
		break;
	default: {
		uint64_t o = 0;
		int op = w->send ? MR_SELECT_SEND : MR_SELECT_RECV;
		struct mr_select_case c[2] = {
			{ w->other, MR_SELECT_RECV, &o, 77 },
			{ w->ch, op, &w->v, 77 },
		};
		struct mr_select_case *cs = w->use == 2 ? &c[1] : c;
		size_t n = w->use == 2 ? 1 : 2;
		int idx = mr_select(cs, n, w->use == 2 ? MR_SELECT_FOREVER : far);
		w->idx = idx;
		w->rc = idx == (int)n - 1 ? c[1].result : 1000 + idx;
		break;
	}
	}
}

static void close_wakes(size_t cap, bool senders)
{
	mr_runtime_t *rt = make_rt(2);
	mr_chan_t *ch = mr_chan_create(8, cap, 0);
	mr_chan_t *other = mr_chan_create(8, 4, 0);
	enum { NF = 12, NT = 4 };
	struct waiter w[NF + NT];
	struct actor a[NF + NT];
	_Atomic int started = 0;
	uint64_t v;

	ASSERT_NONNULL(rt);
	ASSERT_NONNULL(ch);
	ASSERT_NONNULL(other);
	if (senders && cap != 0)
		for (v = 0; v < cap; v++)
			ASSERT_EQ(mr_chan_send(ch, &v), 0); /* full */
	for (int i = 0; i < NF + NT; i++) {
		w[i] = (struct waiter){ .ch = ch, .other = other, .use = i % 4, .send = senders,
					.v = 1000 + (uint64_t)i, .rc = 12345, .started = &started };
		actor_start(&a[i], rt, i < NF, waiter_fn, &w[i]);
	}
	while (atomic_load(&started) < NF + NT)
		sleep_ms(1);
	sleep_ms(20);
	ASSERT_EQ(mr_chan_close(ch), 0);
	for (int i = 0; i < NF + NT; i++) {
		actor_join(&a[i]);
		if (w[i].rc != -EPIPE)
			TH_LOG("waiter %d (%s, use %d): %d", i, i < NF ? "fiber" : "thread", w[i].use,
			       w[i].rc);
		EXPECT_EQ(w[i].rc, -EPIPE);
	}
	/* Senders' elements were not sent: only what was queued before. */
	if (senders && cap != 0) {
		for (uint64_t i = 0; i < cap; i++) {
			ASSERT_EQ(mr_chan_recv(ch, &v), 0);
			EXPECT_EQ(v, i);
		}
	}
	EXPECT_EQ(mr_chan_recv(ch, &v), -EPIPE);
	EXPECT_EQ(mr_chan_len(other), 0);
	mr_chan_destroy(ch);
	mr_chan_destroy(other);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

TEST(close_wakes_blocked_receivers)
{
	close_wakes(1, false);
	close_wakes(16, false);
	close_wakes(MR_CHAN_UNBOUNDED, false);
	close_wakes(0, false);
}

TEST(close_wakes_blocked_senders)
{
	close_wakes(1, true);
	close_wakes(3, true);
	close_wakes(0, true);
}

/* ---- destroy --------------------------------------------------------------------- */

TEST(destroy_with_queued_elements)
{
	static const size_t caps[] = { 1, 100, MR_CHAN_UNBOUNDED };
	static const size_t sizes[] = { 1, 24, 4097 };

	for (size_t j = 0; j < sizeof(caps) / sizeof(caps[0]); j++) {
		for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
			for (int closed = 0; closed <= 1; closed++) {
				mr_chan_t *ch = mr_chan_create(sizes[k], caps[j], 0);
				size_t n = caps[j] == MR_CHAN_UNBOUNDED ? 1000 : caps[j] - closed;
				uint8_t *e = calloc(1, sizes[k]);

				ASSERT_NONNULL(ch);
				for (size_t i = 0; i < n; i++)
					ASSERT_EQ(mr_chan_try_send(ch, e), 0);
				if (caps[j] == MR_CHAN_UNBOUNDED) /* some segments drained too */
					for (size_t i = 0; i < 100; i++)
						ASSERT_EQ(mr_chan_try_recv(ch, e), 0);
				if (closed)
					ASSERT_EQ(mr_chan_close(ch), 0);
				mr_chan_destroy(ch);
				free(e);
			}
		}
	}
	mr_chan_destroy(mr_chan_create(8, 0, 0));
}

struct dw {
	mr_chan_t *ch, *other;
	int kind;
	_Atomic int started;
};

static void dw_wait(void *arg)
{
	struct dw *d = arg;
	uint64_t v = 1;

	atomic_store(&d->started, 1);
	switch (d->kind) {
	case 0:
		mr_chan_recv(d->ch, &v);
		break;
	case 1:
		mr_chan_send(d->ch, &v);
		break;
	default: {
		struct mr_select_case c[2] = {
			{ d->other, MR_SELECT_RECV, &v, 0 },
			{ d->ch, MR_SELECT_RECV, &v, 0 },
		};
		mr_select(c, 2, MR_SELECT_FOREVER);
		break;
	}
	}
}

/* kind 0: a thread in recv; 1: a fiber in send on a full channel; 2: a thread
 * in a select on two channels, destroying the second. */
static void destroy_waited_child(void *arg)
{
	struct dw d = { .kind = *(int *)arg };
	mr_runtime_t *rt = NULL;
	struct actor a;
	uint64_t v = 0;

	d.ch = mr_chan_create(8, d.kind == 1 ? 1 : 0, 0);
	d.other = mr_chan_create(8, 4, 0);
	if (d.kind == 1) {
		rt = make_rt(1);
		mr_chan_send(d.ch, &v);
	}
	actor_start(&a, rt, d.kind == 1, dw_wait, &d);
	while (!atomic_load(&d.started))
		sleep_ms(1);
	sleep_ms(250); /* time to block, even on a loaded machine */
	mr_chan_destroy(d.ch);
	_exit(0); /* not reached: the destroy must abort */
}

TEST(destroy_with_a_waiter_aborts)
{
	static const char *const what[] = { "thread in recv", "fiber in send", "thread in select" };
	char buf[4096];

	for (int kind = 0; kind < 3; kind++) {
		int st = mr_test_run_child(destroy_waited_child, &kind, buf, sizeof(buf));
		if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT))
			TH_LOG("%s: status %#x, stderr: %s", what[kind], st, buf);
		EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
		ASSERT_STR_CONTAINS(buf, "mr_chan_destroy");
	}
}

/* ---- select ---------------------------------------------------------------------- */

TEST(select_bad_arguments)
{
	mr_chan_t *a = mr_chan_create(8, 4, 0);
	struct mr_select_case c[MR_SELECT_MAX + 2];
	uint64_t v = 11, w[MR_SELECT_MAX + 2];

	ASSERT_NONNULL(a);
	ASSERT_EQ(mr_chan_send(a, &v), 0);
	EXPECT_EQ(mr_select(NULL, 1, MR_SELECT_POLL), -EINVAL);
	EXPECT_EQ(mr_select(NULL, 1, MR_SELECT_FOREVER), -EINVAL);
	EXPECT_EQ(mr_select(NULL, 2, in_ms(1)), -EINVAL);

	/* n > 64, even with every case ready */
	for (int i = 0; i < MR_SELECT_MAX + 2; i++)
		c[i] = (struct mr_select_case){ a, MR_SELECT_RECV, &w[i], 0 };
	EXPECT_EQ(mr_select(c, MR_SELECT_MAX + 1, MR_SELECT_POLL), -EINVAL);
	EXPECT_EQ(mr_select(c, MR_SELECT_MAX + 2, MR_SELECT_FOREVER), -EINVAL);
	EXPECT_EQ(mr_select(c, SIZE_MAX, MR_SELECT_POLL), -EINVAL);
	EXPECT_EQ(mr_chan_len(a), 1);
	/* 64 is allowed */
	int idx = mr_select(c, MR_SELECT_MAX, MR_SELECT_POLL);
	EXPECT_TRUE(idx >= 0 && idx < MR_SELECT_MAX);
	if (idx >= 0 && idx < MR_SELECT_MAX) {
		EXPECT_EQ(w[idx], 11);
		EXPECT_EQ(c[idx].result, 0);
	}
	EXPECT_EQ(mr_chan_len(a), 0);
	ASSERT_EQ(mr_chan_send(a, &v), 0);

	/* An unknown op or a NULL elem: -EINVAL, and the ready case before it is
	 * not completed either. */
	static const int bad_ops[] = { 3, 4, -1, 100, 0x7fffffff };
	for (size_t i = 0; i < sizeof(bad_ops) / sizeof(bad_ops[0]); i++) {
		c[0] = (struct mr_select_case){ a, MR_SELECT_RECV, &w[0], 0 };
		c[1] = (struct mr_select_case){ a, bad_ops[i], &w[1], 0 };
		EXPECT_EQ(mr_select(c, 2, MR_SELECT_POLL), -EINVAL);
		EXPECT_EQ(mr_select(c, 2, MR_SELECT_FOREVER), -EINVAL);
		EXPECT_EQ(mr_select(&c[1], 1, in_ms(1)), -EINVAL);
	}
	c[0] = (struct mr_select_case){ a, MR_SELECT_RECV, &w[0], 0 };
	c[1] = (struct mr_select_case){ a, MR_SELECT_RECV, NULL, 0 };
	EXPECT_EQ(mr_select(c, 2, MR_SELECT_POLL), -EINVAL);
	EXPECT_EQ(mr_select(c, 2, MR_SELECT_FOREVER), -EINVAL);
	c[1] = (struct mr_select_case){ a, MR_SELECT_SEND, NULL, 0 };
	EXPECT_EQ(mr_select(c, 2, MR_SELECT_POLL), -EINVAL);
	EXPECT_EQ(mr_select(&c[1], 1, in_ms(1)), -EINVAL);
	EXPECT_EQ(mr_chan_len(a), 1);

	/* Nothing to wait for: forever is -EINVAL, a deadline times out. */
	EXPECT_EQ(mr_select(c, 0, MR_SELECT_FOREVER), -EINVAL);
	EXPECT_EQ(mr_select(NULL, 0, MR_SELECT_FOREVER), -EINVAL);
	c[0] = (struct mr_select_case){ NULL, MR_SELECT_RECV, &w[0], 0 };
	c[1] = (struct mr_select_case){ a, MR_SELECT_SKIP, &w[1], 0 };
	EXPECT_EQ(mr_select(c, 2, MR_SELECT_FOREVER), -EINVAL);
	int64_t dl = in_ms(2);
	EXPECT_EQ(mr_select(NULL, 0, dl), -ETIMEDOUT);
	EXPECT_GE(mr_now_ns(), dl);
	dl = in_ms(2);
	EXPECT_EQ(mr_select(c, 2, dl), -ETIMEDOUT);
	EXPECT_GE(mr_now_ns(), dl);
	EXPECT_EQ(mr_select(c, 2, past()), -ETIMEDOUT);
	int rc = mr_select(c, 0, MR_SELECT_POLL); /* "default" or "deadline passed" */
	EXPECT_TRUE(rc == -EAGAIN || rc == -ETIMEDOUT);
	EXPECT_EQ(mr_chan_len(a), 1);
	mr_chan_destroy(a);
}

/* Three channels none of whose cases can complete: an empty bounded one, a
 * full bounded one and a rendezvous one with both a send and a receive. */
struct stuck {
	mr_chan_t *empty, *full, *rv;
	uint64_t in, out, rv_in, rv_out;
	struct mr_select_case c[4];
};

static void stuck_init(struct stuck *s)
{
	uint64_t v = 900;

	s->empty = mr_chan_create(8, 2, 0);
	s->full = mr_chan_create(8, 1, 0);
	s->rv = mr_chan_create(8, 0, 0);
	ASSERT_NONNULL(s->empty);
	ASSERT_NONNULL(s->full);
	ASSERT_NONNULL(s->rv);
	ASSERT_EQ(mr_chan_send(s->full, &v), 0);
	s->in = 901;
	s->rv_in = 902;
	s->out = s->rv_out = 0;
	s->c[0] = (struct mr_select_case){ s->empty, MR_SELECT_RECV, &s->out, 0 };
	s->c[1] = (struct mr_select_case){ s->full, MR_SELECT_SEND, &s->in, 0 };
	s->c[2] = (struct mr_select_case){ s->rv, MR_SELECT_RECV, &s->rv_out, 0 };
	s->c[3] = (struct mr_select_case){ s->rv, MR_SELECT_SEND, &s->rv_in, 0 };
}

static void stuck_unchanged(struct stuck *s)
{
	uint64_t v;

	EXPECT_EQ(mr_chan_len(s->empty), 0);
	EXPECT_EQ(mr_chan_len(s->full), 1);
	EXPECT_EQ(s->out, 0);
	EXPECT_EQ(s->rv_out, 0);
	EXPECT_EQ(mr_chan_try_recv(s->rv, &v), -EAGAIN);
	EXPECT_EQ(mr_chan_try_send(s->rv, &v), -EAGAIN);
}

static void stuck_fini(struct stuck *s)
{
	mr_chan_destroy(s->empty);
	mr_chan_destroy(s->full);
	mr_chan_destroy(s->rv);
}

TEST(select_poll)
{
	struct stuck s;
	uint64_t v;

	stuck_init(&s);
	EXPECT_EQ(mr_select(s.c, 4, MR_SELECT_POLL), -EAGAIN);
	stuck_unchanged(&s);

	v = 5;
	ASSERT_EQ(mr_chan_send(s.empty, &v), 0);
	EXPECT_EQ(mr_select(s.c, 4, MR_SELECT_POLL), 0);
	EXPECT_EQ(s.c[0].result, 0);
	EXPECT_EQ(s.out, 5);
	EXPECT_EQ(mr_chan_len(s.empty), 0);
	EXPECT_EQ(mr_chan_len(s.full), 1);
	EXPECT_EQ(mr_select(s.c, 4, MR_SELECT_POLL), -EAGAIN);

	ASSERT_EQ(mr_chan_recv(s.full, &v), 0);
	EXPECT_EQ(v, 900);
	EXPECT_EQ(mr_select(s.c, 4, MR_SELECT_POLL), 1);
	EXPECT_EQ(s.c[1].result, 0);
	EXPECT_EQ(mr_chan_len(s.full), 1);
	ASSERT_EQ(mr_chan_recv(s.full, &v), 0);
	EXPECT_EQ(v, 901);
	EXPECT_EQ(mr_chan_len(s.empty), 0);
	stuck_fini(&s);
}

static void select_times_out(void *arg)
{
	struct stuck *s = arg;
	int64_t dl = in_ms(3);

	EXPECT_EQ(mr_select(s->c, 4, dl), -ETIMEDOUT);
	EXPECT_GE(mr_now_ns(), dl);
	EXPECT_EQ(mr_select(s->c, 4, past()), -ETIMEDOUT);
	EXPECT_EQ(mr_select(s->c, 4, 1), -ETIMEDOUT);
}

TEST(select_deadline_times_out_and_does_nothing)
{
	for (int fiber = 0; fiber <= 1; fiber++) {
		struct stuck s;

		stuck_init(&s);
		if (fiber)
			ASSERT_EQ(mr_run(NULL, select_times_out, &s), 0);
		else
			select_times_out(&s);
		stuck_unchanged(&s);
		stuck_fini(&s);
	}
}

TEST(select_skipped_cases_are_ignored)
{
	mr_chan_t *a = mr_chan_create(8, 4, 0), *b = mr_chan_create(8, 4, 0);
	uint64_t v = 1, x = 0, y = 0, z = 0;

	ASSERT_NONNULL(a);
	ASSERT_NONNULL(b);
	ASSERT_EQ(mr_chan_send(a, &v), 0);
	for (int i = 0; i < 200; i++) {
		struct mr_select_case c[4] = {
			{ a, MR_SELECT_SKIP, &x, 0 },	 /* ready channel, skipped op */
			{ NULL, MR_SELECT_RECV, &y, 0 }, /* no channel */
			{ b, MR_SELECT_RECV, &z, 0 },
			{ a, MR_SELECT_SKIP, NULL, 0 }, /* skipped: elem not needed */
		};
		v = 100 + (uint64_t)i;
		ASSERT_EQ(mr_chan_send(b, &v), 0);
		ASSERT_EQ(mr_select(c, 4, i % 2 ? MR_SELECT_POLL : MR_SELECT_FOREVER), 2);
		EXPECT_EQ(c[2].result, 0);
		EXPECT_EQ(z, 100 + (uint64_t)i);
	}
	EXPECT_EQ(x, 0);
	EXPECT_EQ(y, 0);
	EXPECT_EQ(mr_chan_len(a), 1);
	EXPECT_EQ(mr_chan_len(b), 0);
	mr_chan_destroy(a);
	mr_chan_destroy(b);
}

/* One select with a send case and a receive case on different channels:
 * each completion does exactly what its case says. */
TEST(select_mixed_send_and_recv)
{
	mr_chan_t *out = mr_chan_create(8, 4, 0), *in = mr_chan_create(8, MR_CHAN_UNBOUNDED, 0);
	uint64_t sent = 0, got = 0, drained = 0, v, w = 0;
	long n = 5000;

	ASSERT_NONNULL(out);
	ASSERT_NONNULL(in);
	for (v = 0; v < (uint64_t)n; v++)
		ASSERT_EQ(mr_chan_send(in, &v), 0);
	while (got < (uint64_t)n) {
		v = sent;
		struct mr_select_case c[2] = {
			{ out, MR_SELECT_SEND, &v, 1 },
			{ in, MR_SELECT_RECV, &w, 1 },
		};
		int idx = mr_select(c, 2, got % 2 ? MR_SELECT_FOREVER : MR_SELECT_POLL);
		ASSERT_TRUE(idx == 0 || idx == 1);
		ASSERT_EQ(c[idx].result, 0);
		if (idx == 0) {
			sent++;
			if (mr_chan_len(out) == 4) {
				while (mr_chan_try_recv(out, &v) == 0)
					ASSERT_EQ(v, drained++);
			}
		} else {
			ASSERT_EQ(w, got);
			got++;
		}
		ASSERT_EQ(mr_chan_len(in), (size_t)n - got);
		ASSERT_EQ(mr_chan_len(out), sent - drained);
	}
	TH_LOG("%" PRIu64 " sends, %" PRIu64 " receives", sent, got);
	EXPECT_GT(sent, 0);
	mr_chan_destroy(out);
	mr_chan_destroy(in);
}

/* With two cases always ready, each is picked often: no starvation, no bias
 * to the first. */
TEST(select_fairness)
{
	mr_chan_t *r[3], *s[2], *e[6];
	enum { N = 10000 };
	uint64_t v = 0, x[3], y[2] = { 7, 8 };

	for (int i = 0; i < 3; i++) {
		r[i] = mr_chan_create(8, 1, 0);
		ASSERT_NONNULL(r[i]);
		ASSERT_EQ(mr_chan_send(r[i], &v), 0);
	}
	for (int i = 0; i < 2; i++) {
		s[i] = mr_chan_create(8, 1, 0);
		ASSERT_NONNULL(s[i]);
	}
	for (int i = 0; i < 6; i++) {
		e[i] = mr_chan_create(8, 1, 0); /* empty: never ready */
		ASSERT_NONNULL(e[i]);
	}
	/* Two receives (with a skipped case between); two sends; a receive and a
	 * send; three receives; two receives with six cases that are not ready
	 * between them. */
	for (int shape = 0; shape < 5; shape++) {
		struct mr_select_case c[8];
		long count[8] = { 0 };
		int n;

		switch (shape) {
		case 0:
			c[0] = (struct mr_select_case){ r[0], MR_SELECT_RECV, &x[0], 0 };
			c[1] = (struct mr_select_case){ r[2], MR_SELECT_SKIP, &x[2], 0 };
			c[2] = (struct mr_select_case){ r[1], MR_SELECT_RECV, &x[1], 0 };
			n = 3;
			break;
		case 1:
			c[0] = (struct mr_select_case){ s[0], MR_SELECT_SEND, &y[0], 0 };
			c[1] = (struct mr_select_case){ s[1], MR_SELECT_SEND, &y[1], 0 };
			n = 2;
			break;
		case 2:
			c[0] = (struct mr_select_case){ s[0], MR_SELECT_SEND, &y[0], 0 };
			c[1] = (struct mr_select_case){ r[0], MR_SELECT_RECV, &x[0], 0 };
			n = 2;
			break;
		case 3:
			for (int i = 0; i < 3; i++)
				c[i] = (struct mr_select_case){ r[i], MR_SELECT_RECV, &x[i], 0 };
			n = 3;
			break;
		default:
			c[0] = (struct mr_select_case){ r[0], MR_SELECT_RECV, &x[0], 0 };
			for (int i = 0; i < 6; i++)
				c[1 + i] = (struct mr_select_case){ e[i], MR_SELECT_RECV, &x[2], 0 };
			c[7] = (struct mr_select_case){ r[1], MR_SELECT_RECV, &x[1], 0 };
			n = 8;
			break;
		}
		for (int i = 0; i < N; i++) {
			int idx = mr_select(c, (size_t)n, i % 2 ? MR_SELECT_POLL : MR_SELECT_FOREVER);
			ASSERT_TRUE(idx >= 0 && idx < n);
			ASSERT_EQ(c[idx].result, 0);
			count[idx]++;
			/* Make it ready again. */
			if (c[idx].op == MR_SELECT_RECV)
				ASSERT_EQ(mr_chan_send(c[idx].chan, &v), 0);
			else
				ASSERT_EQ(mr_chan_recv(c[idx].chan, &v), 0);
		}
		TH_LOG("shape %d: %ld %ld %ld ... %ld", shape, count[0], count[1], count[2],
		       count[7]);
		if (shape == 4) {
			EXPECT_GE(count[0], N / 5);
			EXPECT_GE(count[7], N / 5);
		} else if (shape == 0) {
			EXPECT_EQ(count[1], 0);
			EXPECT_GE(count[0], N / 5);
			EXPECT_GE(count[2], N / 5);
		} else if (shape == 3) {
			for (int i = 0; i < 3; i++)
				EXPECT_GE(count[i], N / 6);
		} else {
			EXPECT_GE(count[0], N / 5);
			EXPECT_GE(count[1], N / 5);
		}
	}
	for (int i = 0; i < 3; i++)
		mr_chan_destroy(r[i]);
	for (int i = 0; i < 2; i++)
		mr_chan_destroy(s[i]);
	for (int i = 0; i < 6; i++)
		mr_chan_destroy(e[i]);
}

/* A closed channel makes its cases ready: a send at once with -EPIPE; a
 * receive after the queued elements. */
TEST(select_closed_channel_is_ready)
{
	mr_chan_t *open = mr_chan_create(8, 2, 0), *cl = mr_chan_create(8, 4, 0);
	mr_chan_t *rv = mr_chan_create(8, 0, 0);
	uint64_t v = 0, w = 0;

	ASSERT_NONNULL(open);
	ASSERT_NONNULL(cl);
	ASSERT_NONNULL(rv);
	for (v = 1; v <= 2; v++)
		ASSERT_EQ(mr_chan_send(cl, &v), 0);
	ASSERT_EQ(mr_chan_close(cl), 0);

	struct mr_select_case c[2] = {
		{ open, MR_SELECT_RECV, &w, 1 },
		{ cl, MR_SELECT_SEND, &v, 1 },
	};
	EXPECT_EQ(mr_select(c, 2, MR_SELECT_POLL), 1);
	EXPECT_EQ(c[1].result, -EPIPE);
	c[1].result = 1;
	EXPECT_EQ(mr_select(c, 2, MR_SELECT_FOREVER), 1);
	EXPECT_EQ(c[1].result, -EPIPE);
	EXPECT_EQ(mr_chan_len(cl), 2);

	c[1] = (struct mr_select_case){ cl, MR_SELECT_RECV, &w, 1 };
	EXPECT_EQ(mr_select(c, 2, MR_SELECT_POLL), 1);
	EXPECT_EQ(c[1].result, 0);
	EXPECT_EQ(w, 1);
	EXPECT_EQ(mr_select(c, 2, MR_SELECT_FOREVER), 1);
	EXPECT_EQ(c[1].result, 0);
	EXPECT_EQ(w, 2);
	w = 0;
	EXPECT_EQ(mr_select(c, 2, MR_SELECT_FOREVER), 1);
	EXPECT_EQ(c[1].result, -EPIPE);
	c[1].result = 1;
	EXPECT_EQ(mr_select(c, 2, in_ms(600000)), 1);
	EXPECT_EQ(c[1].result, -EPIPE);
	EXPECT_EQ(w, 0);

	/* A closed rendezvous channel: both directions ready with -EPIPE. */
	ASSERT_EQ(mr_chan_close(rv), 0);
	c[1] = (struct mr_select_case){ rv, MR_SELECT_RECV, &w, 1 };
	EXPECT_EQ(mr_select(c, 2, MR_SELECT_POLL), 1);
	EXPECT_EQ(c[1].result, -EPIPE);
	c[1] = (struct mr_select_case){ rv, MR_SELECT_SEND, &v, 1 };
	EXPECT_EQ(mr_select(c, 2, MR_SELECT_FOREVER), 1);
	EXPECT_EQ(c[1].result, -EPIPE);
	EXPECT_EQ(mr_chan_len(open), 0);
	mr_chan_destroy(open);
	mr_chan_destroy(cl);
	mr_chan_destroy(rv);
}

/* A blocked select (fiber or thread) wakes for the case whose channel becomes
 * ready - by a send, a receive or a close - and completes that case only. */
struct bsel {
	mr_chan_t *ch[3]; /* recv, recv, send (full) */
	uint64_t in[2], out;
	int idx, result[3];
	_Atomic int started;
};

static void bsel_fn(void *arg)
{
	struct bsel *b = arg;
	struct mr_select_case c[3] = {
		{ b->ch[0], MR_SELECT_RECV, &b->in[0], 1 },
		{ b->ch[1], MR_SELECT_RECV, &b->in[1], 1 },
		{ b->ch[2], MR_SELECT_SEND, &b->out, 1 },
	};

	atomic_store(&b->started, 1);
	b->idx = mr_select(c, 3, MR_SELECT_FOREVER);
	for (int i = 0; i < 3; i++)
		b->result[i] = c[i].result;
}

TEST(select_blocked_wakes_on_the_ready_case)
{
	mr_runtime_t *rt = make_rt(2);

	ASSERT_NONNULL(rt);
	/* event: 0 send on ch[1], 1 recv from ch[2], 2 close ch[1], 3 close ch[2],
	 * 4 send on ch[0] (rendezvous) */
	for (int fiber = 0; fiber <= 1; fiber++) {
		for (int ev = 0; ev < 5; ev++) {
			struct bsel b = { .out = 600 };
			struct actor a;
			uint64_t v = 0;

			b.ch[0] = mr_chan_create(8, ev == 4 ? 0 : 2, 0);
			b.ch[1] = mr_chan_create(8, MR_CHAN_UNBOUNDED, 0);
			b.ch[2] = mr_chan_create(8, 1, 0);
			for (int i = 0; i < 3; i++)
				ASSERT_NONNULL(b.ch[i]);
			ASSERT_EQ(mr_chan_send(b.ch[2], &v), 0); /* full */
			actor_start(&a, rt, fiber, bsel_fn, &b);
			wait_started(&b.started);
			switch (ev) {
			case 0:
				v = 61;
				ASSERT_EQ(mr_chan_send(b.ch[1], &v), 0);
				break;
			case 1:
				ASSERT_EQ(mr_chan_recv(b.ch[2], &v), 0);
				EXPECT_EQ(v, 0);
				break;
			case 2:
				ASSERT_EQ(mr_chan_close(b.ch[1]), 0);
				break;
			case 3:
				ASSERT_EQ(mr_chan_close(b.ch[2]), 0);
				break;
			default:
				v = 64;
				ASSERT_EQ(mr_chan_send(b.ch[0], &v), 0); /* pairs with the select */
				break;
			}
			actor_join(&a);
			static const int want_idx[] = { 1, 2, 1, 2, 0 };
			EXPECT_EQ(b.idx, want_idx[ev]);
			if (b.idx >= 0 && b.idx < 3)
				EXPECT_EQ(b.result[b.idx], ev == 2 || ev == 3 ? -EPIPE : 0);
			if (ev == 0)
				EXPECT_EQ(b.in[1], 61);
			if (ev == 1) {
				ASSERT_EQ(mr_chan_try_recv(b.ch[2], &v), 0);
				EXPECT_EQ(v, 600);
			}
			if (ev == 3) {
				ASSERT_EQ(mr_chan_try_recv(b.ch[2], &v), 0);
				EXPECT_EQ(v, 0); /* only what was queued before */
				EXPECT_EQ(mr_chan_try_recv(b.ch[2], &v), -EPIPE);
			}
			if (ev == 4)
				EXPECT_EQ(b.in[0], 64);
			EXPECT_EQ(mr_chan_len(b.ch[0]), 0);
			EXPECT_EQ(mr_chan_len(b.ch[1]), 0);
			for (int i = 0; i < 3; i++)
				mr_chan_destroy(b.ch[i]);
		}
	}
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* Rendezvous: a select pairs with a blocked plain call, and a plain call with
 * a blocked select, in both directions. */
TEST(select_rendezvous_pairs_with_plain_calls)
{
	mr_runtime_t *rt = make_rt(2);

	ASSERT_NONNULL(rt);
	for (int fiber = 0; fiber <= 1; fiber++) {
		for (int dir = 0; dir < 2; dir++) {
			mr_chan_t *rv = mr_chan_create(8, 0, 0), *idle = mr_chan_create(8, 2, 0);
			struct blk b = { .ch = rv, .v = 700, .use = 0 };
			struct actor a;
			uint64_t v = 800, w = 0;

			ASSERT_NONNULL(rv);
			ASSERT_NONNULL(idle);
			/* A plain call blocks; the select (in this thread) pairs with it. */
			actor_start(&a, rt, fiber, dir ? blk_sender : blk_receiver, &b);
			wait_started(&b.started);
			struct mr_select_case c[2] = {
				{ idle, MR_SELECT_RECV, &w, 1 },
				{ rv, dir ? MR_SELECT_RECV : MR_SELECT_SEND, dir ? (void *)&w : &v, 1 },
			};
			int idx;
			if (fiber)
				while ((idx = mr_select(c, 2, MR_SELECT_POLL)) == -EAGAIN)
					mr_sleep_ns(10000);
			else
				idx = mr_select(c, 2, MR_SELECT_FOREVER);
			EXPECT_EQ(idx, 1);
			EXPECT_EQ(c[1].result, 0);
			actor_join(&a);
			EXPECT_EQ(b.rc, 0);
			EXPECT_EQ(dir ? w : b.v, dir ? 700 : 800);

			/* A select blocks; a plain call pairs with it. */
			b = (struct blk){ .ch = rv, .v = 710, .use = 2 };
			actor_start(&a, rt, fiber, dir ? blk_sender : blk_receiver, &b);
			wait_started(&b.started);
			EXPECT_EQ(atomic_load(&b.returned), 0);
			v = 810;
			if (dir) {
				ASSERT_EQ(mr_chan_recv(rv, &w), 0);
				EXPECT_EQ(w, 710);
			} else {
				ASSERT_EQ(mr_chan_send(rv, &v), 0);
			}
			actor_join(&a);
			EXPECT_EQ(b.rc, 0);
			if (!dir)
				EXPECT_EQ(b.v, 810);
			EXPECT_EQ(mr_chan_len(idle), 0);
			mr_chan_destroy(rv);
			mr_chan_destroy(idle);
		}
	}
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* Two selects, one sending and one receiving on a rendezvous channel (each
 * with another case that never becomes ready), pair with each other. */
struct sel_side {
	mr_chan_t *rv, *never;
	bool send;
	uint64_t v, spare;
	int idx, result;
	int64_t deadline;
};

static void sel_side_fn(void *arg)
{
	struct sel_side *s = arg;
	struct mr_select_case c[2] = {
		{ s->never, s->send ? MR_SELECT_RECV : MR_SELECT_SEND, &s->spare, 1 },
		{ s->rv, s->send ? MR_SELECT_SEND : MR_SELECT_RECV, &s->v, 1 },
	};

	s->idx = mr_select(c, 2, s->deadline);
	s->result = c[1].result;
}

TEST(select_pairs_with_another_select)
{
	mr_runtime_t *rt = make_rt(2);
	uint64_t r = 77;
	int rounds = (int)scaled(400);

	ASSERT_NONNULL(rt);
	for (int i = 0; i < rounds; i++) {
		mr_chan_t *rv = mr_chan_create(8, 0, 0);
		mr_chan_t *empty = mr_chan_create(8, 1, 0), *full = mr_chan_create(8, 1, 0);
		uint64_t v = 1, x = rnd(&r);
		struct sel_side tx = { rv, empty, true, 1000 + (uint64_t)i, 0, 9, 9, 0 };
		struct sel_side rx = { rv, full, false, 0, 5, 9, 9, 0 };
		struct actor a[2];

		ASSERT_NONNULL(rv);
		ASSERT_NONNULL(empty);
		ASSERT_NONNULL(full);
		ASSERT_EQ(mr_chan_send(full, &v), 0);
		tx.deadline = x % 3 ? MR_SELECT_FOREVER : in_ms(600000);
		rx.deadline = x % 5 ? MR_SELECT_FOREVER : in_ms(600000);
		/* Either may come first; fibers and threads in every combination. */
		bool first_tx = x & 8;
		actor_start(&a[0], rt, x & 16, sel_side_fn, first_tx ? &tx : &rx);
		if (x & 32)
			mr_sleep_ns(20000);
		actor_start(&a[1], rt, x & 64, sel_side_fn, first_tx ? &rx : &tx);
		actor_join(&a[0]);
		actor_join(&a[1]);
		ASSERT_EQ(tx.idx, 1);
		ASSERT_EQ(rx.idx, 1);
		ASSERT_EQ(tx.result, 0);
		ASSERT_EQ(rx.result, 0);
		ASSERT_EQ(rx.v, 1000 + (uint64_t)i);
		ASSERT_EQ(mr_chan_len(empty), 0);
		ASSERT_EQ(mr_chan_len(full), 1);
		mr_chan_destroy(rv);
		mr_chan_destroy(empty);
		mr_chan_destroy(full);
	}
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* A select with a send and a receive case on one rendezvous channel must not
 * hand its element to itself; with a real partner it pairs normally. */
static void self_select(void *arg)
{
	mr_chan_t *rv = arg;
	uint64_t in = 0, out = 31;
	struct mr_select_case c[2] = {
		{ rv, MR_SELECT_SEND, &out, 1 },
		{ rv, MR_SELECT_RECV, &in, 1 },
	};
	int64_t dl = in_ms(5);

	EXPECT_EQ(mr_select(c, 2, dl), -ETIMEDOUT);
	EXPECT_GE(mr_now_ns(), dl);
	EXPECT_EQ(mr_select(c, 2, MR_SELECT_POLL), -EAGAIN);
	c[0].op = MR_SELECT_RECV; /* order reversed */
	c[0].elem = &in;
	c[1].op = MR_SELECT_SEND;
	c[1].elem = &out;
	EXPECT_EQ(mr_select(c, 2, in_ms(3)), -ETIMEDOUT);
	EXPECT_EQ(in, 0);
}

TEST(select_never_pairs_with_itself)
{
	mr_runtime_t *rt = make_rt(2);

	ASSERT_NONNULL(rt);
	for (int fiber = 0; fiber <= 1; fiber++) {
		mr_chan_t *rv = mr_chan_create(8, 0, 0);
		uint64_t v = 0;

		ASSERT_NONNULL(rv);
		if (fiber)
			ASSERT_EQ(mr_run(rt, self_select, rv), 0);
		else
			self_select(rv);
		/* Nobody left waiting. */
		EXPECT_EQ(mr_chan_try_send(rv, &v), -EAGAIN);
		EXPECT_EQ(mr_chan_try_recv(rv, &v), -EAGAIN);

		/* With a receiver waiting, the send case pairs with it. */
		struct blk b = { .ch = rv, .v = 0 };
		struct actor a;
		uint64_t in = 0, out = 32;
		struct mr_select_case c[2] = {
			{ rv, MR_SELECT_RECV, &in, 1 },
			{ rv, MR_SELECT_SEND, &out, 1 },
		};
		actor_start(&a, rt, fiber, blk_receiver, &b);
		wait_started(&b.started);
		EXPECT_EQ(mr_select(c, 2, MR_SELECT_FOREVER), 1);
		EXPECT_EQ(c[1].result, 0);
		actor_join(&a);
		EXPECT_EQ(b.v, 32);
		EXPECT_EQ(in, 0);
		mr_chan_destroy(rv);
	}
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* Several cases on one channel: exactly one completes. */
TEST(select_several_cases_on_one_channel)
{
	mr_chan_t *a = mr_chan_create(8, 4, 0);
	uint64_t v = 3, w[4] = { 0, 0, 0, 0 };
	struct mr_select_case c[4];

	ASSERT_NONNULL(a);
	for (int i = 0; i < 4; i++)
		c[i] = (struct mr_select_case){ a, MR_SELECT_RECV, &w[i], 1 };
	ASSERT_EQ(mr_chan_send(a, &v), 0);
	int idx = mr_select(c, 4, MR_SELECT_FOREVER);
	ASSERT_TRUE(idx >= 0 && idx < 4);
	EXPECT_EQ(w[idx], 3);
	EXPECT_EQ(w[0] + w[1] + w[2] + w[3], 3);
	EXPECT_EQ(mr_select(c, 4, MR_SELECT_POLL), -EAGAIN);
	for (int i = 0; i < 4; i++)
		c[i] = (struct mr_select_case){ a, MR_SELECT_SEND, &w[i], 1 };
	/* Space for 4: one select sends one. */
	idx = mr_select(c, 4, MR_SELECT_POLL);
	ASSERT_TRUE(idx >= 0 && idx < 4);
	EXPECT_EQ(mr_chan_len(a), 1);
	mr_chan_destroy(a);
}

/* ---- jobs ------------------------------------------------------------------------ */

struct jobs {
	mr_chan_t *ch;
	_Atomic long bad;
	_Atomic long got;
	_Atomic uint8_t *seen;
	long n;
	mr_group_t g;
};

static void pf_send(size_t lo, size_t hi, void *ctx)
{
	struct jobs *j = ctx;

	for (size_t i = lo; i < hi; i++) {
		uint64_t v = i;
		int rc = i % 2 ? mr_chan_try_send(j->ch, &v) : mr_chan_send(j->ch, &v);
		if (rc != 0)
			atomic_fetch_add(&j->bad, 1);
	}
}

static void task_recv(void *arg)
{
	struct jobs *j = arg;
	uint64_t v;
	int rc;

	/* A poll select now and then instead of a try_recv. */
	for (int k = 0;; k++) {
		if (k % 4 == 3) {
			struct mr_select_case c = { j->ch, MR_SELECT_RECV, &v, 1 };
			rc = mr_select(&c, 1, MR_SELECT_POLL);
			if (rc == 0)
				rc = c.result;
		} else {
			rc = mr_chan_try_recv(j->ch, &v);
		}
		if (rc != 0)
			break;
		/* Many jobs sent: no order to check across them. */
		if (v >= (uint64_t)j->n || atomic_exchange(&j->seen[v], 1) != 0)
			atomic_fetch_add(&j->bad, 1);
		atomic_fetch_add(&j->got, 1);
	}
	if (rc != -EAGAIN)
		atomic_fetch_add(&j->bad, 1000);
}

static void jobs_main(void *arg)
{
	struct jobs *j = arg;

	if (mr_parallel_for(0, (size_t)j->n, 0, pf_send, j) != 0)
		atomic_fetch_add(&j->bad, 1000000);
	mr_group_init(&j->g);
	for (int i = 0; i < 8; i++)
		mr_group_spawn(&j->g, task_recv, j);
	mr_group_wait(&j->g);
}

/* A parallel loop's bodies send (the channel holds them all, so a job never
 * waits), group tasks receive with the non-blocking calls. */
TEST(jobs_use_try_ops)
{
	mr_runtime_t *rt = make_rt(2);

	ASSERT_NONNULL(rt);
	for (int flavour = 0; flavour < 2; flavour++) {
		struct jobs j = { .n = scaled(200000) };

		j.ch = mr_chan_create(8, flavour ? MR_CHAN_UNBOUNDED : (size_t)j.n, 0);
		j.seen = calloc((size_t)j.n, 1);
		ASSERT_NONNULL(j.ch);
		ASSERT_NONNULL(j.seen);
		ASSERT_EQ(mr_runtime_install(rt, jobs_main, &j), 0);
		EXPECT_EQ(atomic_load(&j.bad), 0);
		EXPECT_EQ(atomic_load(&j.got), j.n);
		EXPECT_EQ(mr_chan_len(j.ch), 0);
		/* And from a loop outside any runtime (the default runtime). */
		atomic_store(&j.got, 0);
		memset((void *)j.seen, 0, (size_t)j.n);
		jobs_main(&j);
		EXPECT_EQ(atomic_load(&j.bad), 0);
		EXPECT_EQ(atomic_load(&j.got), j.n);
		if (!flavour) {
			/* Exactly full after n sends. */
			ASSERT_EQ(mr_parallel_for(0, (size_t)j.n, 0, pf_send, &j), 0);
			EXPECT_EQ(atomic_load(&j.bad), 0);
			uint64_t v = 0;
			EXPECT_EQ(mr_chan_try_send(j.ch, &v), -EAGAIN);
			EXPECT_EQ(mr_chan_len(j.ch), (size_t)j.n);
		}
		free((void *)j.seen);
		mr_chan_destroy(j.ch);
	}
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* A job blocks on a channel fed (or drained) by a plain thread. */
struct jb {
	mr_runtime_t *rt;
	mr_chan_t *in, *out;
	long n;
	long bad;
	mr_group_t g;
};

static void jb_task(void *arg)
{
	struct jb *j = arg;
	uint64_t v;
	long k = 0;

	while (mr_chan_recv(j->in, &v) == 0) {
		if (v != (uint64_t)k++)
			j->bad++;
		v *= 3;
		if (mr_chan_send(j->out, &v) != 0)
			j->bad++;
	}
	if (k != j->n)
		j->bad++;
	mr_chan_close(j->out);
}

static void jb_main(void *arg)
{
	struct jb *j = arg;

	mr_group_init(&j->g);
	mr_group_spawn(&j->g, jb_task, j);
	mr_group_wait(&j->g);
}

static void jb_install(void *arg)
{
	struct jb *j = arg;

	if (mr_runtime_install(j->rt, jb_main, j) != 0)
		j->bad += 1000;
}

static void jb_feed(void *arg)
{
	struct jb *j = arg;

	for (uint64_t v = 0; v < (uint64_t)j->n; v++)
		if (mr_chan_send(j->in, &v) != 0)
			abort();
	mr_chan_close(j->in);
}

TEST(job_blocks_on_channel_fed_by_thread)
{
	mr_runtime_t *rt = make_rt(2);

	ASSERT_NONNULL(rt);
	for (int cap = 0; cap <= 1; cap++) {
		struct jb j = { .rt = rt, .n = scaled(20000) };
		struct actor feeder;
		uint64_t v, k = 0;

		j.in = mr_chan_create(8, (size_t)cap, 0);
		j.out = mr_chan_create(8, (size_t)cap, 0);
		ASSERT_NONNULL(j.in);
		ASSERT_NONNULL(j.out);
		actor_start(&feeder, rt, false, jb_feed, &j);
		struct actor runner;
		/* The job runs on rt while this thread drains its output. */
		actor_start(&runner, rt, false, jb_install, &j);
		while (mr_chan_recv(j.out, &v) == 0)
			EXPECT_EQ(v, 3 * k++);
		EXPECT_EQ(k, (uint64_t)j.n);
		actor_join(&runner);
		actor_join(&feeder);
		EXPECT_EQ(j.bad, 0);
		mr_chan_destroy(j.in);
		mr_chan_destroy(j.out);
	}
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* ---- fibers and threads on one channel --------------------------------------------- */

struct mix {
	mr_chan_t *ch;
	int np;
	long per;
	_Atomic int producers_left;
	_Atomic uint8_t *seen;
	_Atomic long bad, got;
};

struct mix_part {
	struct mix *m;
	int id;
};

static void mix_producer(void *arg)
{
	struct mix_part *p = arg;
	struct mix *m = p->m;

	for (long s = 0; s < m->per; s++) {
		uint64_t v = ((uint64_t)p->id << 32) | (uint64_t)s;
		if (mr_chan_send(m->ch, &v) != 0)
			atomic_fetch_add(&m->bad, 1);
	}
	if (atomic_fetch_sub(&m->producers_left, 1) == 1 && mr_chan_close(m->ch) != 0)
		atomic_fetch_add(&m->bad, 1);
}

static void mix_consumer(void *arg)
{
	struct mix_part *p = arg;
	struct mix *m = p->m;
	long *last = malloc(sizeof(long) * (size_t)m->np);
	uint64_t v;
	int rc;

	for (int i = 0; i < m->np; i++)
		last[i] = -1;
	while ((rc = mr_chan_recv(m->ch, &v)) == 0) {
		int pid = (int)(v >> 32);
		long s = (long)(v & 0xffffffff);
		if (pid >= m->np || s >= m->per || s <= last[pid] ||
		    atomic_exchange(&m->seen[(long)pid * m->per + s], 1)) {
			atomic_fetch_add(&m->bad, 1);
			continue;
		}
		last[pid] = s;
		atomic_fetch_add(&m->got, 1);
	}
	if (rc != -EPIPE)
		atomic_fetch_add(&m->bad, 1);
	free(last);
}

TEST(fibers_and_threads_share_a_channel)
{
	static const size_t caps[] = { 4, MR_CHAN_UNBOUNDED, 0 };
	mr_runtime_t *rt = make_rt(2);

	ASSERT_NONNULL(rt);
	for (size_t j = 0; j < sizeof(caps) / sizeof(caps[0]); j++) {
		struct mix m = { .np = 4, .per = scaled(20000) };
		struct mix_part ps[8];
		struct actor a[8];

		m.ch = mr_chan_create(8, caps[j], 0);
		m.seen = calloc((size_t)(m.np * m.per), 1);
		atomic_store(&m.producers_left, m.np);
		ASSERT_NONNULL(m.ch);
		/* Producers 0-1 and consumers 4-5 are fibers, the rest threads. */
		for (int i = 0; i < 8; i++) {
			ps[i] = (struct mix_part){ &m, i % 4 };
			actor_start(&a[i], rt, i % 4 < 2, i < 4 ? mix_producer : mix_consumer, &ps[i]);
		}
		for (int i = 0; i < 8; i++)
			actor_join(&a[i]);
		EXPECT_EQ(atomic_load(&m.bad), 0);
		EXPECT_EQ(atomic_load(&m.got), m.np * m.per);
		EXPECT_TRUE(mr_chan_is_closed(m.ch));
		free((void *)m.seen);
		mr_chan_destroy(m.ch);
	}
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/*
 * A fiber readied by a fiber that then keeps going must not wait for it to
 * block. The woken fiber first goes to the waker's worker, private (so a
 * ping-pong stays on one worker); the waker's next operation that completes
 * without blocking shares it with the other worker. The waker here wakes
 * the sleeper, then only spins with try calls on another channel (never
 * blocks) until the sleeper's call has returned, for 2 s at most: calls
 * that succeed, or a poll that finds nothing (as a fiber polling for the
 * answer of the one it woke). Every flavour: a receiver woken by a send
 * (ring, unbounded, rendezvous) and a sender woken by a receive (full
 * ring). A fresh runtime for each case.
 */
enum { KG_RING_RECV, KG_RING_SEND, KG_LIST_RECV, KG_RV_RECV, KG_KINDS };

struct keep_going {
	mr_runtime_t *rt;
	mr_chan_t *ch, *side;
	int kind;
	bool poll; /* the waker's try calls find nothing (-EAGAIN) */
	atomic_int started, done;
	bool seen; /* the sleeper's call returned while the waker kept going */
};

static void keep_going_sleeper(void *p)
{
	struct keep_going *k = p;
	uint64_t v = 7;

	atomic_store(&k->started, 1);
	if ((k->kind == KG_RING_SEND ? mr_chan_send(k->ch, &v) : mr_chan_recv(k->ch, &v)) == 0)
		atomic_store(&k->done, 1);
}

static void keep_going_waker(void *p)
{
	struct keep_going *k = p;
	struct actor a;
	uint64_t v = 1;

	if (k->kind == KG_RING_SEND)
		while (mr_chan_try_send(k->ch, &v) == 0)
			;
	actor_start(&a, k->rt, true, keep_going_sleeper, k);
	while (!atomic_load(&k->started))
		sleep_ms(1);
	sleep_ms(20); /* time to block in its call */
	ASSERT_EQ(k->kind == KG_RING_SEND ? mr_chan_recv(k->ch, &v) : mr_chan_send(k->ch, &v), 0);
	int64_t until = mr_now_ns() + 2000000000;
	while (!atomic_load(&k->done) && mr_now_ns() < until) {
		if (k->poll) {
			ASSERT_EQ(mr_chan_try_recv(k->side, &v), -EAGAIN);
		} else {
			ASSERT_EQ(mr_chan_try_send(k->side, &v), 0);
			ASSERT_EQ(mr_chan_try_recv(k->side, &v), 0);
		}
	}
	k->seen = atomic_load(&k->done);
	actor_join(&a);
}

TEST(woken_fiber_runs_while_its_waker_keeps_going)
{
	for (int c = 0; c < 2 * KG_KINDS; c++) {
		static const size_t caps[KG_KINDS] = { 4, 4, MR_CHAN_UNBOUNDED, 0 };
		struct keep_going k = { .kind = c % KG_KINDS, .poll = c >= KG_KINDS };

		k.rt = make_rt(2);
		ASSERT_NONNULL(k.rt);
		k.ch = mr_chan_create(8, caps[k.kind], 0);
		k.side = mr_chan_create(8, 16, 0);
		ASSERT_NONNULL(k.ch);
		ASSERT_NONNULL(k.side);
		ASSERT_EQ(mr_run(k.rt, keep_going_waker, &k), 0);
		if (!k.seen)
			fprintf(stderr, "# kind %d%s: the woken fiber waited for its waker\n", k.kind,
				k.poll ? " (polling)" : "");
		EXPECT_TRUE(k.seen);
		mr_chan_destroy(k.ch);
		mr_chan_destroy(k.side);
		ASSERT_EQ(mr_runtime_destroy(k.rt), 0);
	}
}

/*
 * A fiber that has just woken another (the woken one sits private in its
 * worker's deque, noted for sharing) forks; the child, no longer a worker,
 * uses a channel as a plain thread: it must work (the note is dropped, not
 * followed to a worker that the child does not have).
 */
struct fork_after_wake {
	mr_chan_t *ch;
	atomic_int started;
	int status;
};

static void faw_sleeper(void *p)
{
	struct fork_after_wake *f = p;
	uint64_t v;

	atomic_store(&f->started, 1);
	ASSERT_EQ(mr_chan_recv(f->ch, &v), 0);
}

static void faw_waker(void *p)
{
	struct fork_after_wake *f = p;
	MR_OPTS(mr_fiber_opts, o, .runtime = mr_runtime_current());
	mr_fiber_t *s = mr_go_opts(faw_sleeper, f, &o);
	uint64_t v = 1;

	ASSERT_NONNULL(s);
	while (!atomic_load(&f->started))
		sleep_ms(1);
	sleep_ms(20); /* time to block in its receive */
	ASSERT_EQ(mr_chan_send(f->ch, &v), 0);
	pid_t pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		mr_chan_t *c = mr_chan_create(8, 4, 0);
		int ok = c && mr_chan_try_send(c, &v) == 0 && mr_chan_try_recv(c, &v) == 0 &&
			 mr_chan_try_recv(c, &v) == -EAGAIN;
		_exit(ok ? 0 : 1);
	}
	ASSERT_EQ(waitpid(pid, &f->status, 0), pid);
	ASSERT_EQ(mr_fiber_join(s), 0);
}

TEST(channel_in_a_child_forked_right_after_a_wake_up)
{
	mr_runtime_t *rt = make_rt(2);
	struct fork_after_wake f = { 0 };

	ASSERT_NONNULL(rt);
	f.ch = mr_chan_create(8, 4, 0);
	ASSERT_NONNULL(f.ch);
	ASSERT_EQ(mr_run(rt, faw_waker, &f), 0);
	EXPECT_TRUE(WIFEXITED(f.status));
	EXPECT_EQ(WIFEXITED(f.status) ? WEXITSTATUS(f.status) : -1, 0);
	mr_chan_destroy(f.ch);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* ---- big rings: memory follows use --------------------------------------------- */

/* Resident pages of this process (/proc/self/statm, second field), -1 if
 * unreadable. */
static long resident_pages(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long size, res = -1;

	if (f) {
		if (fscanf(f, "%ld %ld", &size, &res) != 2)
			res = -1;
		fclose(f);
	}
	return res;
}

/* The memory bound of the big-ring test: far above what a few sends touch
 * (and what the sanitizers add), far below the gigabytes of a ring whose
 * every slot is written at create. */
#define BIG_RING_RSS_MAX ((long)64 << 20)

struct rss_watch {
	long base, limit; /* pages */
	_Atomic int stop;
};

/* Ends the test as soon as resident memory passes the bound, so that a ring
 * that does write every slot fails in milliseconds instead of filling the
 * machine's memory. */
static void *rss_watchdog(void *arg)
{
	struct rss_watch *w = arg;

	while (!atomic_load(&w->stop)) {
		long r = resident_pages();
		if (r > w->base + w->limit) {
			fprintf(stderr, "# RSS grew by %ld KiB (bound %ld KiB)\n",
				(r - w->base) * (sysconf(_SC_PAGESIZE) / 1024),
				w->limit * (sysconf(_SC_PAGESIZE) / 1024));
			fflush(stderr);
			_exit(1);
		}
		usleep(1000);
	}
	return NULL;
}

/* Can this process reserve 16 GiB of address space it does not commit? Not
 * under an address-space limit, nor with strict overcommit (mode 2), which
 * commits every private writable mapping. */
static bool big_mappings_allowed(void)
{
	struct rlimit rl;
	FILE *f = fopen("/proc/sys/vm/overcommit_memory", "r");
	int mode = 0;

	if (f) {
		if (fscanf(f, "%d", &mode) != 1)
			mode = 0;
		fclose(f);
	}
	if (mode == 2)
		return false;
	return getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
	       rl.rlim_cur > ((rlim_t)32 << 30);
}

/* mr_chan_create(8, 1 << 30, 0): 16 GiB of slots that creating must not
 * touch. It was 68 s and 16 GiB resident when every stamp was written at
 * create. Resident memory stays within a few pages of use, through create,
 * a thousand sends and receives, and destroy. */
TEST(big_ring_costs_memory_only_where_used)
{
	long page = sysconf(_SC_PAGESIZE);
	struct rss_watch w = { 0 };
	pthread_t wd;
	uint64_t v;

	w.base = resident_pages();
	w.limit = BIG_RING_RSS_MAX / page;
	ASSERT_TRUE(w.base > 0);
	ASSERT_EQ(pthread_create(&wd, NULL, rss_watchdog, &w), 0);

	errno = 0;
	mr_chan_t *ch = mr_chan_create(8, (size_t)1 << 30, 0);
	if (!ch && errno == ENOMEM && !big_mappings_allowed())
		SKIP("16 GiB of address space cannot be reserved here (ulimit -v, or "
		     "vm.overcommit_memory=2)");
	if (!ch)
		TH_LOG("create: errno %d", errno);
	ASSERT_NONNULL(ch);
	long after_create = resident_pages();
	EXPECT_EQ(mr_chan_capacity(ch), (size_t)1 << 30);
	EXPECT_EQ(mr_chan_len(ch), 0);
	EXPECT_EQ(mr_chan_try_recv(ch, &v), -EAGAIN);
	for (uint64_t i = 0; i < 1000; i++) {
		v = i * 3 + 1;
		ASSERT_EQ(mr_chan_try_send(ch, &v), 0);
	}
	EXPECT_EQ(mr_chan_len(ch), 1000);
	for (uint64_t i = 0; i < 1000; i++) {
		ASSERT_EQ(mr_chan_try_recv(ch, &v), 0);
		ASSERT_EQ(v, i * 3 + 1);
	}
	EXPECT_EQ(mr_chan_try_recv(ch, &v), -EAGAIN);
	long after_use = resident_pages();
	TH_LOG("RSS growth: %ld KiB after create, %ld KiB after 1000 elements",
	       (after_create - w.base) * page / 1024, (after_use - w.base) * page / 1024);
	EXPECT_TRUE((after_use - w.base) * page < BIG_RING_RSS_MAX);
	mr_chan_destroy(ch);
	atomic_store(&w.stop, 1);
	pthread_join(wd, NULL);
}

/* A ring big enough to be mapped (not malloc'd) starts empty in every slot
 * and wraps around correctly: several laps through a 10000-slot ring, FIFO
 * and exact capacity on each lap, then the same between threads. */
TEST(mapped_ring_wraps_around)
{
	enum { CAP = 10000 };
	mr_chan_t *ch = mr_chan_create(16, CAP, 0);
	uint64_t e[2], sent = 0, got = 0;

	ASSERT_NONNULL(ch);
	for (size_t lap = 0; lap < 4; lap++) {
		/* Move the start on by a third of a lap (and one) so that the
		 * wrap falls inside the burst that fills the ring. */
		for (size_t i = 0; i < CAP / 3 + 1; i++, sent++, got++) {
			e[0] = sent;
			e[1] = ~sent;
			ASSERT_EQ(mr_chan_try_send(ch, e), 0);
			ASSERT_EQ(mr_chan_try_recv(ch, e), 0);
			ASSERT_EQ(e[0], got);
		}
		for (size_t i = 0; i < CAP; i++, sent++) {
			e[0] = sent;
			e[1] = ~sent;
			ASSERT_EQ(mr_chan_try_send(ch, e), 0);
		}
		ASSERT_EQ(mr_chan_try_send(ch, e), -EAGAIN);
		ASSERT_EQ(mr_chan_len(ch), CAP);
		for (size_t i = 0; i < CAP / 2 + lap; i++, got++) {
			ASSERT_EQ(mr_chan_try_recv(ch, e), 0);
			ASSERT_EQ(e[0], got);
			ASSERT_EQ(e[1], ~got);
		}
		ASSERT_EQ(mr_chan_len(ch), (size_t)(sent - got));
		while (got < sent) {
			ASSERT_EQ(mr_chan_try_recv(ch, e), 0);
			ASSERT_EQ(e[0], got);
			got++;
		}
		ASSERT_EQ(mr_chan_try_recv(ch, e), -EAGAIN);
	}
	mr_chan_destroy(ch);
}

struct mapped_mpmc {
	mr_chan_t *ch;
	long n;		      /* per producer */
	_Atomic uint64_t sum; /* of everything received */
	_Atomic long got;
	_Atomic int bad;
};

static void *mapped_producer(void *arg)
{
	struct mapped_mpmc *m = arg;

	for (long i = 1; i <= m->n; i++) {
		uint64_t e[2] = { (uint64_t)i, ~(uint64_t)i };
		if (mr_chan_send(m->ch, e) != 0)
			atomic_store(&m->bad, 1);
	}
	return NULL;
}

static void *mapped_consumer(void *arg)
{
	struct mapped_mpmc *m = arg;
	uint64_t e[2], sum = 0;
	long got = 0;

	while (mr_chan_recv(m->ch, e) == 0) {
		if (e[1] != ~e[0])
			atomic_store(&m->bad, 2);
		sum += e[0];
		got++;
	}
	atomic_fetch_add(&m->sum, sum);
	atomic_fetch_add(&m->got, got);
	return NULL;
}

/* Two producers and two consumers (threads) through a mapped ring that is
 * small against what goes through it: every element arrives once, intact. */
TEST(mapped_ring_between_threads)
{
	struct mapped_mpmc m = { 0 };
	pthread_t p[2], c[2];

	m.ch = mr_chan_create(16, 8192, 0);
	m.n = scaled(200000);
	ASSERT_NONNULL(m.ch);
	for (int i = 0; i < 2; i++) {
		ASSERT_EQ(pthread_create(&c[i], NULL, mapped_consumer, &m), 0);
		ASSERT_EQ(pthread_create(&p[i], NULL, mapped_producer, &m), 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(p[i], NULL);
	EXPECT_EQ(mr_chan_close(m.ch), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(c[i], NULL);
	EXPECT_EQ(atomic_load(&m.bad), 0);
	EXPECT_EQ(atomic_load(&m.got), 2 * m.n);
	EXPECT_EQ(atomic_load(&m.sum), (uint64_t)m.n * (uint64_t)(m.n + 1));
	mr_chan_destroy(m.ch);
}

/* ---- negative deadlines ------------------------------------------------------------ */

/*
 * A negative deadline is no deadline (common.h): mr_chan_send_until,
 * mr_chan_recv_until and mr_select with any negative deadline wait on a
 * full / empty channel until the other side acts, from a fiber and from a
 * thread, on every flavour where the call can wait.
 */
struct negdl {
	mr_chan_t *ch;
	uint64_t v;
	int64_t dl;
	bool send, sel;
	int rc;
	_Atomic int started, returned;
};

static void negdl_run(void *arg)
{
	struct negdl *n = arg;

	atomic_store(&n->started, 1);
	if (n->sel) {
		struct mr_select_case c = { n->ch, n->send ? MR_SELECT_SEND : MR_SELECT_RECV,
					    &n->v, 99 };
		int idx = mr_select(&c, 1, n->dl);
		n->rc = idx == 0 ? c.result : 1000 + idx;
	} else {
		n->rc = n->send ? mr_chan_send_until(n->ch, &n->v, n->dl)
				: mr_chan_recv_until(n->ch, &n->v, n->dl);
	}
	atomic_store(&n->returned, 1);
}

TEST(negative_deadline_waits_for_the_other_side)
{
	static const int64_t dls[] = { MR_DEADLINE_NONE, -12345, INT64_MIN };
	static const size_t caps[] = { 1, 0, MR_CHAN_UNBOUNDED };
	mr_runtime_t *rt = make_rt(2);

	ASSERT_NONNULL(rt);
	for (size_t ci = 0; ci < 3; ci++)
		for (int send = 0; send <= 1; send++) {
			if (send && caps[ci] == MR_CHAN_UNBOUNDED)
				continue; /* never waits */
			for (int sel = 0; sel <= 1; sel++)
				for (int fiber = 0; fiber <= 1; fiber++)
					for (size_t d = 0; d < 3; d++) {
						mr_chan_t *ch = mr_chan_create(8, caps[ci], 0);
						struct negdl n = { .ch = ch, .v = 7, .dl = dls[d],
								   .send = send, .sel = sel };
						struct actor a;
						uint64_t v = 5;

						ASSERT_NONNULL(ch);
						if (send && caps[ci])
							ASSERT_EQ(mr_chan_send(ch, &v), 0); /* full */
						actor_start(&a, rt, fiber, negdl_run, &n);
						while (!atomic_load(&n.started))
							sleep_ms(1);
						sleep_ms(2); /* time to return wrongly */
						if (atomic_load(&n.returned))
							TH_LOG("cap %zu %s%s from a %s, deadline %" PRId64
							       ": returned %d without waiting",
							       caps[ci], sel ? "select " : "",
							       send ? "send" : "recv",
							       fiber ? "fiber" : "thread", dls[d], n.rc);
						EXPECT_EQ(atomic_load(&n.returned), 0);
						if (send) {
							if (caps[ci])
								ASSERT_EQ(mr_chan_recv(ch, &v), 0);
							ASSERT_EQ(mr_chan_recv(ch, &v), 0);
							EXPECT_EQ(v, 7);
						} else {
							v = 9;
							ASSERT_EQ(mr_chan_send(ch, &v), 0);
						}
						actor_join(&a);
						EXPECT_EQ(n.rc, 0);
						if (!send)
							EXPECT_EQ(n.v, 9);
						mr_chan_destroy(ch);
					}
		}
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* A deadline that has passed does not wait: 0 is as past as any other for
 * the _until calls (-ETIMEDOUT); mr_select reads 0 as MR_SELECT_POLL
 * (-EAGAIN) and any other past deadline as -ETIMEDOUT. */
static void past_deadlines_chan(void *arg)
{
	static const size_t caps[] = { 1, 0, MR_CHAN_UNBOUNDED };
	int *bad = arg;

	for (size_t ci = 0; ci < 3; ci++) {
		mr_chan_t *ch = mr_chan_create(8, caps[ci], 0);
		uint64_t v = 1;
		int64_t dls[] = { 0, 1, mr_now_ns() - 1 };

		if (!ch) {
			(*bad)++;
			continue;
		}
		for (int d = 0; d < 3; d++) {
			*bad += mr_chan_recv_until(ch, &v, dls[d]) != -ETIMEDOUT;
			struct mr_select_case c = { ch, MR_SELECT_RECV, &v, 99 };
			*bad += mr_select(&c, 1, dls[d]) != (dls[d] == 0 ? -EAGAIN : -ETIMEDOUT);
		}
		if (caps[ci] == 1) {
			ASSERT_EQ(mr_chan_send(ch, &v), 0);
			for (int d = 0; d < 3; d++) {
				*bad += mr_chan_send_until(ch, &v, dls[d]) != -ETIMEDOUT;
				struct mr_select_case c = { ch, MR_SELECT_SEND, &v, 99 };
				*bad += mr_select(&c, 1, dls[d]) !=
					(dls[d] == 0 ? -EAGAIN : -ETIMEDOUT);
			}
			ASSERT_EQ(mr_chan_recv(ch, &v), 0);
		}
		if (caps[ci] == 0)
			for (int d = 0; d < 3; d++)
				*bad += mr_chan_send_until(ch, &v, dls[d]) != -ETIMEDOUT;
		mr_chan_destroy(ch);
	}
}

TEST(past_deadline_does_not_wait)
{
	int bad = 0;

	past_deadlines_chan(&bad);
	EXPECT_EQ(bad, 0);
	bad = 0;
	ASSERT_EQ(mr_run(NULL, past_deadlines_chan, &bad), 0);
	EXPECT_EQ(bad, 0);
}

/* ---- an unbounded send out of memory ----------------------------------------------- */

/*
 * An unbounded send allocates a segment every so many elements: out of
 * memory it returns -ENOMEM (chan.h) and sends nothing, from every call
 * that sends; what was sent before is received intact.
 */
static void enomem_child(void *arg)
{
	size_t size = MR_CHAN_ELEM_MAX;
	long pages = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	uint8_t *e = malloc(size);
	uint64_t n = 0;
	int r, code = 0;

	(void)arg;
	if (!f || fscanf(f, "%ld", &pages) != 1 || !e)
		_exit(10);
	fclose(f);
	mr_chan_t *ch = mr_chan_create(size, MR_CHAN_UNBOUNDED, 0);
	if (!ch)
		_exit(11);
	struct rlimit rl;
	rl.rlim_cur = rl.rlim_max = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (64 << 20);
	if (setrlimit(RLIMIT_AS, &rl) != 0)
		_exit(12);
	for (;;) {
		fill(e, size, n);
		if ((r = mr_chan_send(ch, e)) != 0)
			break;
		if (++n > 100000)
			_exit(13); /* the limit did not bite */
	}
	if (r != -ENOMEM) {
		fprintf(stderr, "send: %d after %llu\n", r, (unsigned long long)n);
		code = 14;
	}
	struct mr_select_case c = { ch, MR_SELECT_SEND, e, 99 };
	if ((r = mr_chan_try_send(ch, e)) != -ENOMEM ||
	    (r = mr_chan_send_until(ch, e, mr_now_ns() + 1000000)) != -ENOMEM ||
	    (r = mr_select(&c, 1, MR_SELECT_FOREVER)) != -ENOMEM) {
		fprintf(stderr, "another send: %d\n", r);
		code = 15;
	}
	if (mr_chan_len(ch) != n)
		code = 16;
	for (uint64_t i = 0; i < n; i++)
		if (mr_chan_recv(ch, e) != 0 || !intact(e, size, i))
			code = 17;
	if (mr_chan_try_recv(ch, e) != -EAGAIN)
		code = 18;
	_exit(code);
}

TEST(unbounded_send_out_of_memory_is_enomem)
{
	char buf[1024];

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	(void)enomem_child;
	(void)buf;
	SKIP("needs RLIMIT_AS, which the sanitizers' shadow memory cannot run under");
#else
	int st = mr_test_run_child(enomem_child, NULL, buf, sizeof(buf));

	if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
		TH_LOG("child status %#x, stderr: %s", st, buf);
	ASSERT_TRUE(WIFEXITED(st));
	ASSERT_EQ(WEXITSTATUS(st), 0);
#endif
}

TEST_HARNESS_MAIN
