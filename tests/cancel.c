/*
 * cancel.c - mr_fiber_cancel(): every kind of cancellation point returns
 * -ECANCELED when the fiber is cancelled while blocked in it or before it,
 * the cancelled call did nothing (no element, no unit, no byte), one
 * request cancels one call, shields defer it, and a storm of cancels
 * against fibers moving elements through channels loses and duplicates
 * nothing.
 *
 * A call that is not cancelled waits for ever here (a sleep of 1000 s, a
 * read nobody feeds): if cancellation did not work, the harness's timeout
 * fails the test. Nothing asserts a time.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <moirai/moirai.h>

#include "harness.h"
#include "util.h"

#define FOREVER_NS (1000ull * 1000 * 1000 * 1000)

static mr_runtime_t *rt;

static mr_fiber_t *spawn(void (*fn)(void *), void *arg)
{
	MR_OPTS(mr_fiber_opts, o, .runtime = rt);
	mr_fiber_t *f = mr_go_opts(fn, arg, &o);
	ASSERT_NONNULL(f);
	return f;
}

/* A blocking call to cancel: `call` runs in a fiber; the test waits until
 * it has started, cancels it and checks what it returned. */
struct victim {
	int (*call)(struct victim *v);
	_Atomic int started;
	_Atomic int result;
	void *ctx;
};

static void victim_main(void *arg)
{
	struct victim *v = arg;

	atomic_store(&v->result, 1);
	atomic_store(&v->started, 1);
	atomic_store(&v->result, v->call(v));
}

/* Start v on a fiber, let it block, cancel it (from this thread) and
 * return its result. "Let it block" cannot be observed without a hook, so
 * the cancel is repeated until the call returns: a request that came
 * before the call is taken by it at once, one that came during it ends it
 * (each test also covers the other order explicitly). */
static int cancel_victim(struct victim *v, unsigned workers)
{
	rt = make_rt(workers);
	ASSERT_NONNULL(rt);
	mr_fiber_t *f = spawn(victim_main, v);
	while (!atomic_load(&v->started))
		sched_yield();
	usleep(2000); /* most likely blocked by now; either way is tested */
	ASSERT_EQ(mr_fiber_cancel(f), 0);
	ASSERT_EQ(mr_fiber_join(f), 0);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
	return atomic_load(&v->result);
}

static int sleep_call(struct victim *v)
{
	return mr_sleep_ns(FOREVER_NS);
}

TEST(sleep)
{
	struct victim v = { .call = sleep_call };
	ASSERT_EQ(cancel_victim(&v, 1), -ECANCELED);
}

/* ---- one request cancels one call; requests before the call -------------- */

static void twice(void *arg)
{
	int *r = arg;

	mr_fiber_cancel(mr_fiber_self());
	mr_fiber_cancel(mr_fiber_self()); /* requests do not count */
	r[0] = mr_fiber_cancelled();
	r[1] = mr_sleep_ns(FOREVER_NS);	  /* pending: at once */
	r[2] = mr_fiber_cancelled();
	r[3] = mr_sleep_ns(1000);	  /* used up: sleeps */
	mr_fiber_shield();
	mr_fiber_cancel(mr_fiber_self());
	r[4] = mr_sleep_ns(1000); /* shielded: sleeps */
	mr_fiber_shield();
	mr_fiber_unshield();
	r[5] = mr_sleep_ns(1000); /* still shielded */
	mr_fiber_unshield();
	r[6] = mr_fiber_cancelled();
	r[7] = mr_sleep_ns(FOREVER_NS); /* the request waited for us */
}

TEST(one_request_one_call_and_shields)
{
	int r[8];

	rt = make_rt(1);
	ASSERT_NONNULL(rt);
	mr_fiber_t *f = spawn(twice, r);
	ASSERT_EQ(mr_fiber_join(f), 0);
	ASSERT_EQ(r[0], 1);
	ASSERT_EQ(r[1], -ECANCELED);
	ASSERT_EQ(r[2], 0);
	ASSERT_EQ(r[3], 0);
	ASSERT_EQ(r[4], 0);
	ASSERT_EQ(r[5], 0);
	ASSERT_EQ(r[6], 1);
	ASSERT_EQ(r[7], -ECANCELED);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

static void quick(void *arg)
{
}

TEST(bad_handles)
{
	rt = make_rt(1);
	ASSERT_NONNULL(rt);
	ASSERT_EQ(mr_fiber_cancel(NULL), -EINVAL);
	mr_fiber_t *f = spawn(quick, NULL);
	while (mr_fiber_cancel(f) != -ESRCH)
		usleep(100);
	ASSERT_EQ(mr_fiber_join(f), 0);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
	ASSERT_EQ(mr_fiber_cancelled(), false); /* not a fiber */
}

/* ---- sync.h ------------------------------------------------------------------- */

static mr_sem_t sem;
static mr_mutex_t mtx;
static mr_cond_t cond;
static mr_wg_t wg;
static mr_event_t ev;

static int sem_call(struct victim *v)
{
	return mr_sem_wait_until(&sem, MR_DEADLINE_NONE);
}

TEST(semaphore_nothing_taken)
{
	struct victim v = { .call = sem_call };

	ASSERT_EQ(mr_sem_init(&sem, 0), 0);
	ASSERT_EQ(cancel_victim(&v, 2), -ECANCELED);
	/* The cancelled wait took nothing: one post, one unit. */
	ASSERT_EQ(mr_sem_post(&sem), 0);
	ASSERT_EQ(mr_sem_trywait(&sem), 0);
	ASSERT_EQ(mr_sem_trywait(&sem), -EAGAIN);
}

static int mutex_call(struct victim *v)
{
	return mr_mutex_lock_until(&mtx, MR_DEADLINE_NONE);
}

TEST(mutex)
{
	struct victim v = { .call = mutex_call };

	mr_mutex_init(&mtx);
	mr_mutex_lock(&mtx); /* held by this thread: the fiber waits */
	ASSERT_EQ(cancel_victim(&v, 1), -ECANCELED);
	mr_mutex_unlock(&mtx);
	ASSERT_EQ(mr_mutex_trylock(&mtx), 0);
	mr_mutex_unlock(&mtx);
}

static int cond_call(struct victim *v)
{
	mr_mutex_lock(&mtx);
	int r = mr_cond_wait_until(&cond, &mtx, MR_DEADLINE_NONE);
	/* Cancelled or not, the mutex is ours again. */
	if (mr_mutex_trylock(&mtx) != -EBUSY && mr_mutex_trylock(&mtx) != -EDEADLK)
		r = 99;
	mr_mutex_unlock(&mtx);
	return r;
}

TEST(cond_reacquires_the_mutex)
{
	struct victim v = { .call = cond_call };

	mr_mutex_init(&mtx);
	mr_cond_init(&cond);
	ASSERT_EQ(cancel_victim(&v, 2), -ECANCELED);
}

static int wg_call(struct victim *v)
{
	return mr_wg_wait_until(&wg, MR_DEADLINE_NONE);
}

static int ev_call(struct victim *v)
{
	return mr_event_wait_until(&ev, MR_DEADLINE_NONE);
}

TEST(wait_group_and_event)
{
	struct victim v = { .call = wg_call }, e = { .call = ev_call };

	mr_wg_init(&wg);
	mr_wg_add(&wg, 1);
	ASSERT_EQ(cancel_victim(&v, 1), -ECANCELED);
	mr_event_init(&ev);
	ASSERT_EQ(cancel_victim(&e, 2), -ECANCELED);
}

/* A call that returns nothing is not a cancellation point: the request
 * stays for the next one. */
static void void_wait(void *arg)
{
	int *r = arg;

	mr_fiber_cancel(mr_fiber_self());
	mr_sem_wait(&sem); /* waits for the post */
	r[0] = mr_fiber_cancelled();
	r[1] = mr_sem_wait_until(&sem, MR_DEADLINE_NONE);
}

TEST(void_calls_are_not_cancellation_points)
{
	int r[2] = { -1, -1 };

	ASSERT_EQ(mr_sem_init(&sem, 0), 0);
	rt = make_rt(1);
	ASSERT_NONNULL(rt);
	mr_fiber_t *f = spawn(void_wait, r);
	usleep(2000);
	ASSERT_EQ(mr_sem_post(&sem), 0);
	ASSERT_EQ(mr_fiber_join(f), 0);
	ASSERT_EQ(r[0], 1);
	ASSERT_EQ(r[1], -ECANCELED);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* ---- channels ----------------------------------------------------------------- */

static mr_chan_t *ch;

static int recv_call(struct victim *v)
{
	uint64_t x;
	return mr_chan_recv(ch, &x);
}

static int send_call(struct victim *v)
{
	uint64_t x = 42;
	return mr_chan_send(ch, &x);
}

static int select_call(struct victim *v)
{
	uint64_t a, b;
	mr_chan_t *other = v->ctx;
	struct mr_select_case c[2] = {
		{ ch, MR_SELECT_RECV, &a, 0 },
		{ other, MR_SELECT_RECV, &b, 0 },
	};
	return mr_select(c, 2, MR_DEADLINE_NONE);
}

static void check_empty_and_usable(void)
{
	uint64_t x = 7, y = 0;

	ASSERT_EQ(mr_chan_try_recv(ch, &y), -EAGAIN); /* nothing was sent */
	if (mr_chan_capacity(ch) > 0) {
		ASSERT_EQ(mr_chan_send(ch, &x), 0);
		ASSERT_EQ(mr_chan_recv(ch, &y), 0);
		ASSERT_EQ(y, 7);
	}
}

TEST(channel_recv_every_kind)
{
	size_t caps[] = { 0, 1, 64, MR_CHAN_UNBOUNDED };

	for (size_t i = 0; i < 4; i++) {
		struct victim v = { .call = recv_call };
		ch = mr_chan_create(8, caps[i], 0);
		ASSERT_NONNULL(ch);
		ASSERT_EQ(cancel_victim(&v, 1 + (unsigned)(i & 1)), -ECANCELED);
		check_empty_and_usable();
		mr_chan_destroy(ch);
	}
}

TEST(channel_send_nothing_sent)
{
	size_t caps[] = { 0, 1 };

	for (size_t i = 0; i < 2; i++) {
		struct victim v = { .call = send_call };
		uint64_t x = 1;
		ch = mr_chan_create(8, caps[i], 0);
		ASSERT_NONNULL(ch);
		if (caps[i] == 1)
			ASSERT_EQ(mr_chan_send(ch, &x), 0); /* full: the send waits */
		ASSERT_EQ(cancel_victim(&v, 1 + (unsigned)i), -ECANCELED);
		if (caps[i] == 1) {
			ASSERT_EQ(mr_chan_recv(ch, &x), 0);
			ASSERT_EQ(x, 1);
		}
		/* The cancelled send's 42 is nowhere. */
		ASSERT_EQ(mr_chan_try_recv(ch, &x), -EAGAIN);
		mr_chan_destroy(ch);
	}
}

TEST(select)
{
	struct victim v = { .call = select_call };
	mr_chan_t *other = mr_chan_create(8, 0, 0);

	ch = mr_chan_create(8, 4, 0);
	v.ctx = other;
	ASSERT_EQ(cancel_victim(&v, 2), -ECANCELED);
	check_empty_and_usable();
	mr_chan_destroy(ch);
	mr_chan_destroy(other);
}

/* ---- I/O ---------------------------------------------------------------------- */

struct io_ctx {
	int fds[2];
	char buf[8];
};

static int read_call(struct victim *v)
{
	struct io_ctx *c = v->ctx;
	return (int)mr_read(c->fds[0], c->buf, sizeof(c->buf));
}

static int read_deadline_call(struct victim *v)
{
	struct io_ctx *c = v->ctx;
	return (int)mr_read_until(c->fds[0], c->buf, sizeof(c->buf), mr_now_ns() + 100000000000ll);
}

static int poll_call(struct victim *v)
{
	struct io_ctx *c = v->ctx;
	return mr_poll(c->fds[0], POLLIN);
}

static int accept_call(struct victim *v)
{
	struct io_ctx *c = v->ctx;
	return mr_accept(c->fds[0], NULL, NULL, SOCK_CLOEXEC);
}

static void io_case(int (*call)(struct victim *), bool listener)
{
	struct io_ctx c;
	struct victim v = { .call = call, .ctx = &c };

	if (listener) {
		struct sockaddr_in a = { .sin_family = AF_INET };
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		c.fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		ASSERT_EQ(bind(c.fds[0], (struct sockaddr *)&a, sizeof(a)), 0);
		ASSERT_EQ(listen(c.fds[0], 8), 0);
		c.fds[1] = -1;
	} else {
		ASSERT_EQ(pipe2(c.fds, O_CLOEXEC), 0);
	}
	memset(c.buf, 'C', sizeof(c.buf));
	ASSERT_EQ(cancel_victim(&v, 1), -ECANCELED);
	/* The canceled read read nothing: the buffer is untouched and what
	 * is written now is all there. */
	for (size_t i = 0; i < sizeof(c.buf); i++)
		ASSERT_EQ(c.buf[i], 'C');
	if (!listener) {
		char b[8];
		ASSERT_EQ(write(c.fds[1], "abc", 3), 3);
		ASSERT_EQ(read(c.fds[0], b, sizeof(b)), 3);
		close(c.fds[1]);
	}
	close(c.fds[0]);
}

TEST(io_read)
{
	io_case(read_call, false);
}

TEST(io_read_with_deadline)
{
	io_case(read_deadline_call, false);
}

TEST(io_poll)
{
	io_case(poll_call, false);
}

TEST(io_accept)
{
	io_case(accept_call, true);
}

TEST(io_read_epoll)
{
	setenv("MOIRAI_IO", "epoll", 1);
	io_case(read_call, false);
}

TEST(io_accept_epoll)
{
	setenv("MOIRAI_IO", "epoll", 1);
	io_case(accept_call, true);
}

TEST(io_poll_with_deadline_epoll)
{
	setenv("MOIRAI_IO", "epoll", 1);
	io_case(poll_call, false);
}

/* ---- a storm of cancels against channel traffic ------------------------------- */

#define PRODUCERS 4
#define CONSUMERS 4

static _Atomic uint64_t sum_sent, sum_recv, n_recv, n_cancelled;
static _Atomic int producers_left;
static long per_producer;

static void producer(void *arg)
{
	uint64_t base = (uint64_t)(uintptr_t)arg * 1000000;

	for (long i = 0; i < per_producer;) {
		uint64_t x = base + (uint64_t)i + 1;
		int r = mr_chan_send(ch, &x);
		if (r == -ECANCELED) {
			atomic_fetch_add(&n_cancelled, 1);
			continue; /* not sent: send it again */
		}
		ASSERT_EQ(r, 0);
		atomic_fetch_add(&sum_sent, x);
		i++;
	}
	if (atomic_fetch_sub(&producers_left, 1) == 1)
		mr_chan_close(ch);
}

static void consumer(void *arg)
{
	uint64_t x;

	for (;;) {
		int r = (uintptr_t)arg & 1 ? mr_chan_recv(ch, &x) :
					     mr_chan_recv_until(ch, &x, mr_now_ns() + 1000000000);
		if (r == -EPIPE)
			return;
		if (r == -ECANCELED) {
			atomic_fetch_add(&n_cancelled, 1);
			continue;
		}
		if (r == -ETIMEDOUT)
			continue;
		ASSERT_EQ(r, 0);
		atomic_fetch_add(&sum_recv, x);
		atomic_fetch_add(&n_recv, 1);
	}
}

static void storm(size_t cap)
{
	mr_fiber_t *f[PRODUCERS + CONSUMERS];
	uint64_t seed = 12345;

	per_producer = scaled(200000);
	atomic_store(&sum_sent, 0);
	atomic_store(&sum_recv, 0);
	atomic_store(&n_recv, 0);
	atomic_store(&producers_left, PRODUCERS);
	rt = make_rt(2);
	ASSERT_NONNULL(rt);
	ch = mr_chan_create(8, cap, 0);
	ASSERT_NONNULL(ch);
	for (int i = 0; i < PRODUCERS; i++)
		f[i] = spawn(producer, (void *)(uintptr_t)(i + 1));
	for (int i = 0; i < CONSUMERS; i++)
		f[PRODUCERS + i] = spawn(consumer, (void *)(uintptr_t)i);
	/* Cancel random fibers until the producers are done. */
	while (atomic_load(&producers_left) > 0) {
		int k = (int)(rnd(&seed) % PRODUCERS);
		if (atomic_load(&producers_left) > 0)
			mr_fiber_cancel(f[k]);
		mr_fiber_cancel(f[PRODUCERS + (int)(rnd(&seed) % CONSUMERS)]);
		usleep(20);
	}
	for (int i = 0; i < PRODUCERS + CONSUMERS; i++)
		ASSERT_EQ(mr_fiber_join(f[i]), 0);
	ASSERT_EQ(atomic_load(&n_recv), (uint64_t)(PRODUCERS * per_producer));
	ASSERT_EQ(atomic_load(&sum_recv), atomic_load(&sum_sent));
	mr_chan_destroy(ch);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
	printf("# cap %zu: %" PRIu64 " calls cancelled\n", cap, atomic_load(&n_cancelled));
}

TEST(storm_rendezvous)
{
	storm(0);
}

TEST(storm_ring)
{
	storm(4);
}

TEST(storm_unbounded)
{
	storm(MR_CHAN_UNBOUNDED);
}

/* ---- a cancel racing the destroy of the channel it would cancel on ---------- */

static mr_chan_t *dr_ctl, *dr_other;
static _Atomic int dr_done;
static long dr_iters;
static int dr_select;

/* Each round a fresh rendezvous channel: sent to the receiver, then one
 * element on it (a cancelled send closes it instead). */
static void dr_sender(void *arg)
{
	(void)arg;
	for (long i = 0; i < dr_iters; i++) {
		mr_chan_t *c = mr_chan_create(8, 0, 0);
		uint64_t x = (uint64_t)i;
		int r;
		ASSERT_NONNULL(c);
		mr_fiber_shield();
		ASSERT_EQ(mr_chan_send(dr_ctl, &c), 0);
		mr_fiber_unshield();
		if (!dr_select) {
			r = mr_chan_send(c, &x);
		} else {
			struct mr_select_case cs[2] = { { c, MR_SELECT_SEND, &x, 0 },
							{ dr_other, MR_SELECT_SEND, &x, 0 } };
			int k = mr_select(cs, 2, -1);
			ASSERT_TRUE(k != 1);
			r = k < 0 ? k : cs[k].result;
		}
		if (r == -ECANCELED)
			mr_chan_close(c);
		else
			ASSERT_EQ(r, 0);
	}
	mr_chan_close(dr_ctl);
}

/* The receiver of the last element destroys at once, as chan.h allows. */
static void dr_receiver(void *arg)
{
	mr_chan_t *c;
	uint64_t x;

	(void)arg;
	while (mr_chan_recv(dr_ctl, &c) == 0) {
		int r = mr_chan_recv(c, &x);
		ASSERT_TRUE(r == 0 || r == -EPIPE);
		mr_chan_destroy(c);
	}
	atomic_store(&dr_done, 1);
}

/*
 * A canceller's hook used to lock the channel after the receiver had
 * taken the sender out of it and destroyed it (found by review: ASan
 * reported the use after free, a release build hung in the hook's lock).
 */
static void destroy_race(int sel)
{
	dr_iters = scaled(20000);
	dr_select = sel;
	atomic_store(&dr_done, 0);
	dr_other = mr_chan_create(8, 0, 0);
	dr_ctl = mr_chan_create(sizeof(mr_chan_t *), 1024, 0);
	rt = make_rt(2);
	ASSERT_NONNULL(rt);
	mr_fiber_t *s = spawn(dr_sender, NULL);
	mr_fiber_t *r = spawn(dr_receiver, NULL);
	/* Paced now and then: a canceller that never lets go of cancel_lock
	 * for long (a membarrier() inside it) starves the target's disarm. */
	for (unsigned k = 1; !atomic_load(&dr_done); k++) {
		mr_fiber_cancel(s);
		for (volatile int spin = 0; spin < 200; spin++)
			;
		if (k % 8 == 0)
			usleep(50);
	}
	ASSERT_EQ(mr_fiber_join(s), 0);
	ASSERT_EQ(mr_fiber_join(r), 0);
	mr_chan_destroy(dr_ctl);
	mr_chan_destroy(dr_other);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

TEST_TIMEOUT(cancel_races_the_destroy_of_its_channel, 120)
{
	destroy_race(0);
}

TEST_TIMEOUT(cancel_races_the_destroy_of_its_channels_select, 120)
{
	destroy_race(1);
}

/*
 * Every test above again with MOIRAI_MEMBARRIER=0: the fibers' side of
 * cancellation then fences with seq_cst instead of leaning on the
 * canceller's membarrier() (fiber.h). This binary again, in a child,
 * its KTAP passed on as comments.
 */
TEST_TIMEOUT(all_again_without_membarrier, 300)
{
	const char *e = getenv("MOIRAI_MEMBARRIER");
	if (e && !strcmp(e, "0"))
		SKIP("this is the run without membarrier");
	int p[2];
	ASSERT_EQ(pipe(p), 0);
	pid_t pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		dup2(p[1], 1);
		dup2(p[1], 2);
		close(p[0]);
		close(p[1]);
		setenv("MOIRAI_MEMBARRIER", "0", 1);
		unsetenv("MR_TEST_FILTER");
		execl("/proc/self/exe", "cancel", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	FILE *in = fdopen(p[0], "r");
	ASSERT_NONNULL(in);
	char line[512];
	while (fgets(line, sizeof(line), in))
		printf("#   %s", line);
	fclose(in);
	int st;
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	ASSERT_TRUE(WIFEXITED(st));
	ASSERT_EQ(WEXITSTATUS(st), 0);
}

TEST_HARNESS_MAIN
