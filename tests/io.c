/*
 * io.c - <moirai/io.h> against real peers (pipes, socketpairs, TCP on
 * 127.0.0.1, files in a temporary directory), from fibers, threads and
 * jobs, on both backends: every IO_TEST runs once with the process's
 * default backend (io_uring here) and once with MOIRAI_IO=epoll, and the
 * ring tests also with the eventfd wake-up of kernels before 6.7.
 *
 * "Only the fiber waits" is shown without timing: on a runtime of ONE
 * worker, a fiber blocked in a read must let another fiber of the same
 * worker run and feed it; if the read blocked the worker, the test hangs
 * and the harness's timeout fails it.
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <moirai/moirai.h>

#include "harness.h"
#include "util.h"

static const char *backend_env;

/* The readiness backend parks fibers (the interim one blocks the worker). */
#define EPOLL_PARKS 0

/* Each IO_TEST(name) is name_uring (what the process picks), name_epoll
 * (MOIRAI_IO=epoll) and name_efd (io_uring with the eventfd wake). */
#define IO_TEST(name)                                                                              \
	static void io_body_##name(void);                                                          \
	TEST(name##_uring)                                                                         \
	{                                                                                          \
		backend_env = NULL;                                                                \
		io_body_##name();                                                                  \
	}                                                                                          \
	TEST(name##_efd)                                                                           \
	{                                                                                          \
		setenv("MOIRAI_IO_NO_FUTEX", "1", 1);                                              \
		backend_env = NULL;                                                                \
		io_body_##name();                                                                  \
	}                                                                                          \
	TEST(name##_epoll)                                                                         \
	{                                                                                          \
		if (!EPOLL_PARKS)                                                                  \
			SKIP("the epoll backend does not park fibers yet");                        \
		setenv("MOIRAI_IO", "epoll", 1);                                                   \
		backend_env = "epoll";                                                             \
		io_body_##name();                                                                  \
	}                                                                                          \
	static void io_body_##name(void)

/* Run fn(arg) as a fiber of a new runtime of `workers` and wait for it. */
static void in_fiber(unsigned workers, void (*fn)(void *), void *arg)
{
	mr_runtime_t *rt = make_rt(workers);
	ASSERT_NONNULL(rt);
	MR_OPTS(mr_fiber_opts, o, .runtime = rt);
	mr_fiber_t *f = mr_go_opts(fn, arg, &o);
	ASSERT_NONNULL(f);
	ASSERT_EQ(mr_fiber_join(f), 0);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

static mr_fiber_t *go(void (*fn)(void *), void *arg)
{
	mr_fiber_t *f = mr_go(fn, arg);
	ASSERT_NONNULL(f);
	return f;
}

/* ---- the backend ----------------------------------------------------------- */

TEST(backend_is_io_uring_here)
{
	const char *b = mr_io_backend();
	ASSERT_NONNULL(b);
	if (strcmp(b, "io_uring") != 0) {
		printf("# io_uring refused: %s\n", mr_io_backend_reason());
		SKIP("io_uring is refused on this machine");
	}
	ASSERT_NULL(mr_io_backend_reason());
}

TEST(backend_epoll_when_asked)
{
	setenv("MOIRAI_IO", "epoll", 1);
	ASSERT_EQ(strcmp(mr_io_backend(), "epoll"), 0);
	ASSERT_NONNULL(mr_io_backend_reason());
	ASSERT_EQ(strcmp(mr_io_backend_reason(), "MOIRAI_IO=epoll"), 0);
}

/* ---- a read parks only its fiber ------------------------------------------- */

struct pipe_feed {
	int fds[2];
	_Atomic int fed;
	ssize_t got;
	char buf[16];
};

static void feeder(void *arg)
{
	struct pipe_feed *p = arg;

	atomic_store(&p->fed, 1);
	ASSERT_EQ(mr_write(p->fds[1], "hello", 5), 5);
}

static void reader_then_feed(void *arg)
{
	struct pipe_feed *p = arg;
	mr_fiber_t *f = go(feeder, p);

	/* On one worker: the feeder runs only while this read waits. */
	p->got = mr_read(p->fds[0], p->buf, sizeof(p->buf));
	ASSERT_EQ(atomic_load(&p->fed), 1);
	ASSERT_EQ(mr_fiber_join(f), 0);
}

IO_TEST(read_parks_only_the_fiber)
{
	struct pipe_feed p = { 0 };

	ASSERT_EQ(pipe2(p.fds, O_CLOEXEC), 0);
	in_fiber(1, reader_then_feed, &p);
	ASSERT_EQ(p.got, 5);
	ASSERT_EQ(memcmp(p.buf, "hello", 5), 0);
	if (backend_env)
		ASSERT_EQ(strcmp(mr_io_backend(), backend_env), 0);
	close(p.fds[0]);
	close(p.fds[1]);
}

/* ---- ping-pong over a socketpair, two fibers, one or two workers ---------- */

struct pingpong {
	int sv[2];
	long rounds;
};

static void pong(void *arg)
{
	struct pingpong *p = arg;
	uint64_t v;

	for (long i = 0; i < p->rounds; i++) {
		ASSERT_EQ(mr_read(p->sv[1], &v, sizeof(v)), (ssize_t)sizeof(v));
		ASSERT_EQ(v, (uint64_t)i);
		v++;
		ASSERT_EQ(mr_write(p->sv[1], &v, sizeof(v)), (ssize_t)sizeof(v));
	}
}

static void ping(void *arg)
{
	struct pingpong *p = arg;
	mr_fiber_t *f = go(pong, p);
	uint64_t v;

	for (long i = 0; i < p->rounds; i++) {
		v = (uint64_t)i;
		ASSERT_EQ(mr_send(p->sv[0], &v, sizeof(v), 0), (ssize_t)sizeof(v));
		ASSERT_EQ(mr_recv(p->sv[0], &v, sizeof(v), 0), (ssize_t)sizeof(v));
		ASSERT_EQ(v, (uint64_t)i + 1);
	}
	ASSERT_EQ(mr_fiber_join(f), 0);
}

IO_TEST(pingpong_one_worker)
{
	struct pingpong p = { .rounds = scaled(20000) };

	ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p.sv), 0);
	in_fiber(1, ping, &p);
	close(p.sv[0]);
	close(p.sv[1]);
}

IO_TEST(pingpong_two_workers)
{
	struct pingpong p = { .rounds = scaled(20000) };

	ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p.sv), 0);
	in_fiber(2, ping, &p);
	close(p.sv[0]);
	close(p.sv[1]);
}

/* ---- many connections at once, fibers migrating between calls ------------ */

#define NPAIRS 200

struct many {
	int sv[NPAIRS][2];
	_Atomic long done;
	long rounds;
};

struct one_pair {
	struct many *m;
	int i;
	bool echo;
};

static void pair_fiber(void *arg)
{
	struct one_pair *op = arg;
	int fd = op->m->sv[op->i][op->echo ? 1 : 0];
	char buf[64];

	for (long r = 0; r < op->m->rounds; r++) {
		if (op->echo) {
			ssize_t n = mr_read(fd, buf, sizeof(buf));
			ASSERT_GT(n, 0);
			ASSERT_EQ(mr_write(fd, buf, (size_t)n), n);
		} else {
			int len = snprintf(buf, sizeof(buf), "%d:%ld", op->i, r);
			ASSERT_EQ(mr_write(fd, buf, (size_t)len), len);
			char back[64];
			ssize_t got = 0;
			while (got < len) {
				ssize_t n = mr_read(fd, back + got, sizeof(back) - (size_t)got);
				ASSERT_GT(n, 0);
				got += n;
			}
			ASSERT_EQ(got, len);
			ASSERT_EQ(memcmp(buf, back, (size_t)len), 0);
			if (r % 8 == 0)
				mr_yield(); /* and may resume on the other worker */
		}
	}
	atomic_fetch_add(&op->m->done, 1);
}

static void many_main(void *arg)
{
	struct many *m = arg;
	static struct one_pair ops[2 * NPAIRS];
	mr_fiber_t *f[2 * NPAIRS];

	for (int i = 0; i < NPAIRS; i++) {
		ops[2 * i] = (struct one_pair){ m, i, false };
		ops[2 * i + 1] = (struct one_pair){ m, i, true };
		f[2 * i] = go(pair_fiber, &ops[2 * i]);
		f[2 * i + 1] = go(pair_fiber, &ops[2 * i + 1]);
	}
	for (int i = 0; i < 2 * NPAIRS; i++)
		ASSERT_EQ(mr_fiber_join(f[i]), 0);
}

IO_TEST(many_pairs_two_workers)
{
	static struct many m;

	m.rounds = scaled(200);
	atomic_store(&m.done, 0);
	for (int i = 0; i < NPAIRS; i++)
		ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, m.sv[i]), 0);
	in_fiber(2, many_main, &m);
	ASSERT_EQ(atomic_load(&m.done), 2 * NPAIRS);
	for (int i = 0; i < NPAIRS; i++) {
		close(m.sv[i][0]);
		close(m.sv[i][1]);
	}
}

/* ---- deadlines -------------------------------------------------------------- */

struct dl {
	int fds[2];
	char buf[8];
};

static void deadline_fiber(void *arg)
{
	struct dl *d = arg;

	memset(d->buf, 'C', sizeof(d->buf)); /* the canary */
	/* Fires: nothing read, the buffer untouched. */
	ASSERT_EQ(mr_read_until(d->fds[0], d->buf, sizeof(d->buf), mr_now_ns() + 20000000),
		  -ETIMEDOUT);
	for (size_t i = 0; i < sizeof(d->buf); i++)
		ASSERT_EQ(d->buf[i], 'C');
	/* Passed deadline, nothing ready: -ETIMEDOUT at once. */
	ASSERT_EQ(mr_read_until(d->fds[0], d->buf, sizeof(d->buf), 0), -ETIMEDOUT);
	ASSERT_EQ(mr_poll_until(d->fds[0], POLLIN, mr_now_ns() + 1000000), -ETIMEDOUT);
	/* The data written after the timeouts is all there. */
	ASSERT_EQ(write(d->fds[1], "abc", 3), 3);
	/* Passed deadline but ready: completes. */
	ASSERT_EQ(mr_poll_until(d->fds[0], POLLIN, 0) & POLLIN, POLLIN);
	ASSERT_EQ(mr_read_until(d->fds[0], d->buf, sizeof(d->buf), 0), 3);
	ASSERT_EQ(memcmp(d->buf, "abc", 3), 0);
	/* A deadline that does not fire. */
	ASSERT_EQ(write(d->fds[1], "xy", 2), 2);
	ASSERT_EQ(mr_read_until(d->fds[0], d->buf, sizeof(d->buf), mr_now_ns() + 10000000000ll), 2);
	/* Negative: none. */
	ASSERT_EQ(write(d->fds[1], "z", 1), 1);
	ASSERT_EQ(mr_read_until(d->fds[0], d->buf, sizeof(d->buf), -5), 1);
}

IO_TEST(deadlines_fiber)
{
	struct dl d;

	ASSERT_EQ(pipe2(d.fds, O_CLOEXEC), 0);
	in_fiber(1, deadline_fiber, &d);
	close(d.fds[0]);
	close(d.fds[1]);
}

IO_TEST(deadlines_thread)
{
	struct dl d;

	ASSERT_EQ(pipe2(d.fds, O_CLOEXEC), 0);
	deadline_fiber(&d); /* the same calls from a plain thread */
	close(d.fds[0]);
	close(d.fds[1]);
}

/* ---- EOF, reset peers, no SIGPIPE ------------------------------------------- */

static void eof_and_reset(void *arg)
{
	int sv[2], p[2];
	char buf[4];

	(void)arg;
	ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
	ASSERT_EQ(close(p[1]), 0);
	ASSERT_EQ(mr_read(p[0], buf, sizeof(buf)), 0);
	close(p[0]);

	ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	ASSERT_EQ(close(sv[1]), 0);
	/* SIGPIPE's default action would kill this test. */
	ASSERT_EQ(mr_write(sv[0], "x", 1), -EPIPE);
	ASSERT_EQ(mr_send(sv[0], "x", 1, 0), -EPIPE);
	struct iovec iov = { .iov_base = "x", .iov_len = 1 };
	ASSERT_EQ(mr_writev(sv[0], &iov, 1), -EPIPE);
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	ASSERT_EQ(mr_sendmsg(sv[0], &m, 0), -EPIPE);
	ASSERT_EQ(mr_recv(sv[0], buf, sizeof(buf), 0), 0);
	close(sv[0]);
	/* Bad fds and arguments. */
	ASSERT_EQ(mr_read(-1, buf, 1), -EBADF);
	ASSERT_EQ(mr_write(12345, buf, 1), -EBADF);
	ASSERT_EQ(mr_read(0, NULL, 1), -EINVAL);
	ASSERT_EQ(mr_pread(0, buf, 1, -1), -EINVAL);
	ASSERT_EQ(mr_accept(0, NULL, NULL, 12345678), -EINVAL);
}

IO_TEST(eof_reset_no_sigpipe_fiber)
{
	in_fiber(1, eof_and_reset, NULL);
}

IO_TEST(eof_reset_no_sigpipe_thread)
{
	eof_and_reset(NULL);
}

/* ---- TCP on 127.0.0.1 --------------------------------------------------------- */

struct tcp {
	int lfd;
	struct sockaddr_in addr;
	long rounds;
};

static void tcp_server(void *arg)
{
	struct tcp *t = arg;
	struct sockaddr_in peer;
	socklen_t plen = sizeof(peer);
	int c = mr_accept(t->lfd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
	char buf[256];

	ASSERT_GE(c, 0);
	ASSERT_EQ(plen, sizeof(peer));
	ASSERT_EQ(peer.sin_family, AF_INET);
	ASSERT_EQ(fcntl(c, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	for (;;) {
		ssize_t n = mr_recv(c, buf, sizeof(buf), 0);
		ASSERT_GE(n, 0);
		if (n == 0)
			break;
		ASSERT_EQ(mr_send(c, buf, (size_t)n, 0), n);
	}
	ASSERT_EQ(mr_close(c), 0);
}

static void tcp_client(void *arg)
{
	struct tcp *t = arg;
	mr_fiber_t *srv = go(tcp_server, t);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char buf[256], back[256];

	ASSERT_GE(fd, 0);
	ASSERT_EQ(mr_connect(fd, (struct sockaddr *)&t->addr, sizeof(t->addr)), 0);
	for (long r = 0; r < t->rounds; r++) {
		size_t len = (size_t)(r % 200) + 1;
		memset(buf, 'a' + (int)(r % 26), len);
		ASSERT_EQ(mr_send(fd, buf, len, 0), (ssize_t)len);
		size_t got = 0;
		while (got < len) {
			ssize_t n = mr_recv(fd, back + got, len - got, 0);
			ASSERT_GT(n, 0);
			got += (size_t)n;
		}
		ASSERT_EQ(memcmp(buf, back, len), 0);
	}
	ASSERT_EQ(mr_shutdown(fd, SHUT_WR), 0);
	ASSERT_EQ(mr_recv(fd, buf, sizeof(buf), 0), 0);
	ASSERT_EQ(mr_close(fd), 0);
	ASSERT_EQ(mr_fiber_join(srv), 0);
}

static int listen_any(struct sockaddr_in *addr)
{
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	socklen_t len = sizeof(*addr);

	memset(addr, 0, sizeof(*addr));
	addr->sin_family = AF_INET;
	addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)addr, sizeof(*addr)) < 0 ||
		listen(lfd, 1024) < 0 || getsockname(lfd, (struct sockaddr *)addr, &len) < 0)
		return -1;
	return lfd;
}

IO_TEST(tcp_loopback)
{
	struct tcp t = { .rounds = scaled(2000) };

	t.lfd = listen_any(&t.addr);
	ASSERT_GE(t.lfd, 0);
	in_fiber(2, tcp_client, &t);
	close(t.lfd);
}

static void refused(void *arg)
{
	struct sockaddr_in addr;
	int lfd = listen_any(&addr);

	(void)arg;
	ASSERT_GE(lfd, 0);
	close(lfd); /* nobody listens on that port now */
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT_EQ(mr_connect(fd, (struct sockaddr *)&addr, sizeof(addr)), -ECONNREFUSED);
	close(fd);
	/* An accept that times out accepted nothing. */
	lfd = listen_any(&addr);
	ASSERT_EQ(mr_accept_until(lfd, NULL, NULL, 0, mr_now_ns() + 5000000), -ETIMEDOUT);
	close(lfd);
}

IO_TEST(connect_refused_accept_timeout)
{
	in_fiber(1, refused, NULL);
}

/* A listening socket set O_NONBLOCK by the user: accept still waits. */
static void nonblocking_accept(void *arg)
{
	struct tcp *t = arg;
	int fl = fcntl(t->lfd, F_GETFL);

	ASSERT_EQ(fcntl(t->lfd, F_SETFL, fl | O_NONBLOCK), 0);
	tcp_client(t);
}

IO_TEST(nonblocking_fds_still_wait)
{
	struct tcp t = { .rounds = 100 };

	t.lfd = listen_any(&t.addr);
	ASSERT_GE(t.lfd, 0);
	in_fiber(1, nonblocking_accept, &t);
	close(t.lfd);
}

/* ---- vectors and messages ---------------------------------------------------- */

static void vectors(void *arg)
{
	int sv[2];
	char a[3], b[4];

	(void)arg;
	ASSERT_EQ(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
	struct iovec out[2] = { { "abc", 3 }, { "defg", 4 } };
	ASSERT_EQ(mr_writev(sv[0], out, 2), 7);
	struct iovec in[2] = { { a, 3 }, { b, 4 } };
	ASSERT_EQ(mr_readv(sv[1], in, 2), 7);
	ASSERT_EQ(memcmp(a, "abc", 3), 0);
	ASSERT_EQ(memcmp(b, "defg", 4), 0);
	struct msghdr m = { .msg_iov = out, .msg_iovlen = 2 };
	ASSERT_EQ(mr_sendmsg(sv[0], &m, 0), 7);
	struct msghdr r = { .msg_iov = in, .msg_iovlen = 2 };
	memset(a, 0, 3);
	ASSERT_EQ(mr_recvmsg(sv[1], &r, 0), 7);
	ASSERT_EQ(memcmp(a, "abc", 3), 0);
	/* MSG_DONTWAIT is honoured: nothing queued. */
	ASSERT_EQ(mr_recv(sv[1], a, 3, MSG_DONTWAIT), -EAGAIN);
	close(sv[0]);
	close(sv[1]);
}

IO_TEST(vectors_and_messages)
{
	in_fiber(1, vectors, NULL);
}

/* ---- regular files ------------------------------------------------------------ */

static void files(void *arg)
{
	const char *dir = arg;
	int dfd = open(dir, O_DIRECTORY | O_CLOEXEC);
	char buf[8192], back[8192];

	ASSERT_GE(dfd, 0);
	int fd = mr_openat(dfd, "f", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	ASSERT_GE(fd, 0);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)(i * 7);
	ASSERT_EQ(mr_pwrite(fd, buf, sizeof(buf), 4096), (ssize_t)sizeof(buf));
	ASSERT_EQ(mr_fsync(fd), 0);
	ASSERT_EQ(mr_fdatasync(fd), 0);
	ASSERT_EQ(mr_pread(fd, back, sizeof(back), 4096), (ssize_t)sizeof(back));
	ASSERT_EQ(memcmp(buf, back, sizeof(buf)), 0);
	/* Short read at the end, then EOF. */
	ASSERT_EQ(mr_pread(fd, back, sizeof(back), 4096 + 8000), 192);
	ASSERT_EQ(mr_pread(fd, back, sizeof(back), 1 << 20), 0);
	/* read and write use and move the file position. */
	ASSERT_EQ(lseek(fd, 0, SEEK_SET), 0);
	ASSERT_EQ(mr_write(fd, "head", 4), 4);
	ASSERT_EQ(lseek(fd, 0, SEEK_CUR), 4);
	ASSERT_EQ(mr_read(fd, back, 4), 4);
	ASSERT_EQ(lseek(fd, 0, SEEK_CUR), 8);
	struct statx st;
	ASSERT_EQ(mr_statx(dfd, "f", 0, STATX_SIZE, &st), 0);
	ASSERT_EQ(st.stx_size, 4096 + sizeof(buf));
	ASSERT_EQ(mr_statx(dfd, "nope", 0, STATX_SIZE, &st), -ENOENT);
	ASSERT_EQ(mr_openat(dfd, "f", O_RDWR | O_CREAT | O_EXCL, 0600), -EEXIST);
	ASSERT_EQ(mr_close(fd), 0);
	ASSERT_EQ(mr_close(fd), -EBADF);
	ASSERT_EQ(unlinkat(dfd, "f", 0), 0);
	close(dfd);
}

static char *tmpdir(void)
{
	static char path[64];
	snprintf(path, sizeof(path), "/tmp/moirai-io-XXXXXX");
	return mkdtemp(path);
}

IO_TEST(files_fiber)
{
	char *d = tmpdir();
	ASSERT_NONNULL(d);
	in_fiber(1, files, d);
	rmdir(d);
}

IO_TEST(files_thread)
{
	char *d = tmpdir();
	ASSERT_NONNULL(d);
	files(d);
	rmdir(d);
}

/* ---- from jobs: the plain call ------------------------------------------------ */

static int job_fd;
static _Atomic long job_bytes;

static void job_body(size_t lo, size_t hi, void *arg)
{
	char buf[64];

	(void)arg;
	for (size_t i = lo; i < hi; i++) {
		ssize_t n = mr_pread(job_fd, buf, sizeof(buf), (off_t)(i * 64));
		ASSERT_EQ(n, 64);
		atomic_fetch_add(&job_bytes, n);
	}
}

static void run_loop(void *arg)
{
	(void)arg;
	ASSERT_EQ(mr_parallel_for(0, 64, 1, job_body, NULL), 0);
}

IO_TEST(from_jobs)
{
	char *d = tmpdir();
	char path[128], buf[64 * 64];

	ASSERT_NONNULL(d);
	snprintf(path, sizeof(path), "%s/j", d);
	job_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	ASSERT_GE(job_fd, 0);
	memset(buf, 1, sizeof(buf));
	ASSERT_EQ(write(job_fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	mr_runtime_t *rt = make_rt(2);
	ASSERT_NONNULL(rt);
	ASSERT_EQ(mr_runtime_install(rt, run_loop, NULL), 0);
	ASSERT_EQ(atomic_load(&job_bytes), 64 * 64);
	close(job_fd);
	unlink(path);
	rmdir(d);
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

TEST_HARNESS_MAIN
