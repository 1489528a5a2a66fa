/*
 * shm.c - channels by address (<moirai/chan.h>, "channels by address" and
 * "zero copy") tested against the header: every bad url, name and option;
 * creating, attaching (sizes checked), unlinking and the creator's destroy;
 * inproc:// names sharing one handle; shm:// rings in one process and
 * across fork() with FIFO order, many laps, odd sizes, the try and deadline
 * forms, close from either process and calls blocked in one process woken
 * from another (threads and fibers); two and four processes with several
 * senders and receivers each, every element exactly once and in its
 * sender's order; select mixing in-process and shm channels; loans and
 * borrows; peer death (-ECONNRESET both ways, a dead sender's loan skipped,
 * a dead receiver's borrow delivered again); fibers blocked on shm
 * cancelled; destroy with a loan or borrow open aborts; the kill test
 * (thousands of senders and receivers SIGKILLed at random instants: every
 * send reported is received, nothing torn, nothing delivered twice but
 * what a dead receiver held); creators killed or stopped while making the
 * segment; permissions of another uid; fuzzed headers and control words.
 * Tests that draw random numbers print their seed; MR_TEST_SEED=n runs
 * them again with it.
 *
 * Processes talk through pipes and MAP_SHARED anonymous memory mapped
 * before fork(). Every name holds the harness's pid, and the harness
 * process removes the segments of its run that a failed test left behind.
 * Blocking is checked without timing, as in chan.c: a call that must stay
 * blocked is given a while to return wrongly; one that must return is
 * waited for (a lost wake-up is the harness's timeout).
 *
 * A process forks while it has one thread whenever the child needs threads
 * (a runtime): TSan cannot start threads in the child of a multi-threaded
 * fork (tests/fork.c).
 */
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <linux/futex.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <moirai/moirai.h>

#include "harness.h"
#include "util.h"

/* ---- helpers ------------------------------------------------------------------ */

/* Plain sleeps (threads, and processes that must stay single-threaded). */
static void sleep_us(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void sleep_ms(int ms)
{
	sleep_us((long)ms * 1000);
}

static int64_t past(void)
{
	return mr_now_ns() - 1000000;
}

static int64_t in_ms(int ms)
{
	return mr_now_ns() + (int64_t)ms * 1000000;
}

static int64_t in_us(int us)
{
	return mr_now_ns() + (int64_t)us * 1000;
}

/* The pid of the harness process, set before it forks any test. */
static pid_t top_pid;

__attribute__((constructor)) static void note_top_pid(void)
{
	top_pid = getpid();
}

#define SHM_DIR "/dev/shm"
#define SEG_PREFIX "moirai."

/*
 * A failed test (a timeout, a crash) leaves its segments behind; the
 * harness process removes those of its run when it exits. Tests end with
 * _exit and never get here.
 */
__attribute__((destructor)) static void remove_leftovers(void)
{
	char prefix[64], path[512];
	struct dirent *e;
	DIR *d;

	if (getpid() != top_pid)
		return;
	snprintf(prefix, sizeof(prefix), SEG_PREFIX "mrt%d.", (int)top_pid);
	d = opendir(SHM_DIR);
	if (!d)
		return;
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, prefix, strlen(prefix))) {
			snprintf(path, sizeof(path), SHM_DIR "/%s", e->d_name);
			unlink(path);
		}
	closedir(d);
}

/* A fresh name of this run: "mrt<harness pid>.<pid>.<tag>.<n>". */
struct name {
	char name[MR_CHAN_NAME_MAX + 1];
	char url[MR_CHAN_NAME_MAX + 32];
	char inproc[MR_CHAN_NAME_MAX + 32];
	char path[MR_CHAN_NAME_MAX + 64];
};

static void name_make(struct name *n, const char *tag)
{
	static unsigned count;

	snprintf(n->name, sizeof(n->name), "mrt%d.%d.%s.%u", (int)top_pid, (int)getpid(), tag,
		 count++);
	snprintf(n->url, sizeof(n->url), "shm://%s", n->name);
	snprintf(n->inproc, sizeof(n->inproc), "inproc://%s", n->name);
	snprintf(n->path, sizeof(n->path), SHM_DIR "/" SEG_PREFIX "%s", n->name);
}

static bool seg_exists(const struct name *n)
{
	return access(n->path, F_OK) == 0;
}

static mr_chan_t *chopen(const char *url, size_t elem, size_t cap, unsigned flags)
{
	MR_OPTS(mr_chan_open_opts, o, .elem_size = elem, .capacity = cap, .flags = flags);
	return mr_chan_open(url, &o);
}

/* Open or end the test (or the child) saying why. */
static mr_chan_t *must_open_opts(const char *url, const struct mr_chan_open_opts *o, int line)
{
	mr_chan_t *ch = mr_chan_open(url, o);

	if (!ch) {
		int e = errno;

		fprintf(stdout, "# %s:%d: mr_chan_open(\"%s\"): %s\n", __FILE__, line, url,
			strerror(e));
		fflush(stdout);
		_exit(1);
	}
	return ch;
}

static mr_chan_t *must_open(const char *url, size_t elem, size_t cap, unsigned flags, int line)
{
	MR_OPTS(mr_chan_open_opts, o, .elem_size = elem, .capacity = cap, .flags = flags);
	return must_open_opts(url, &o, line);
}

#define MUST_OPEN(url, elem, cap, flags) must_open(url, elem, cap, flags, __LINE__)
#define MUST_OPEN_OPTS(url, o) must_open_opts(url, o, __LINE__)

static void expect_open_fails(const char *url, const struct mr_chan_open_opts *o, int err,
			      int line)
{
	mr_chan_t *ch;
	int e;

	errno = 0;
	ch = mr_chan_open(url, o);
	e = errno;
	if (ch || e != err) {
		fprintf(stdout, "# %s:%d: mr_chan_open(\"%s\"): %s, errno %d (%s); want %s\n",
			__FILE__, line, url ? url : "(null)", ch ? "a channel" : "NULL", e,
			strerror(e), strerror(err));
		fflush(stdout);
		mr_test_failed = 1;
	}
	if (ch)
		mr_chan_destroy(ch);
}

#define EXPECT_OPEN_FAILS(url, o, err) expect_open_fails(url, o, err, __LINE__)

/* An int result that must be one of a set; says which call on failure. */
static bool rc_in(int rc, const int *set, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (rc == set[i])
			return true;
	return false;
}

/* ---- processes and pipes -------------------------------------------------------- */

/* Run fn(arg) in a child process; its exit status is 0 unless something failed. */
static pid_t spawn(void (*fn)(void *), void *arg)
{
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		TH_LOG("fork: %s", strerror(errno));
		_exit(1);
	}
	if (pid == 0) {
		mr_test_failed = 0;
		fn(arg);
		fflush(stdout);
		_exit(mr_test_failed ? 1 : 0);
	}
	return pid;
}

static int wait_status(pid_t pid)
{
	int st = 0;

	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR) {
			TH_LOG("waitpid %d: %s", (int)pid, strerror(errno));
			_exit(1);
		}
	}
	return st;
}

static void log_status(const char *what, int st)
{
	if (WIFEXITED(st))
		TH_LOG("%s: exit status %d", what, WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		TH_LOG("%s: killed by signal %d (%s)", what, WTERMSIG(st), strsignal(WTERMSIG(st)));
}

static void expect_exit_ok(pid_t pid, const char *what)
{
	int st = wait_status(pid);

	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		log_status(what, st);
		mr_test_failed = 1;
	}
}

static void expect_sigkilled(pid_t pid, const char *what)
{
	int st = wait_status(pid);

	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
		log_status(what, st);
		mr_test_failed = 1;
	}
}

/* A one-way pipe of 8-byte words. */
struct link {
	int fd[2];
};

static void link_make(struct link *l)
{
	ASSERT_EQ(pipe2(l->fd, O_CLOEXEC), 0);
}

static void link_close(struct link *l)
{
	close(l->fd[0]);
	close(l->fd[1]);
}

static void put(struct link *l, uint64_t v)
{
	ssize_t n;

	while ((n = write(l->fd[1], &v, sizeof(v))) < 0 && errno == EINTR)
		;
	if (n != (ssize_t)sizeof(v)) {
		TH_LOG("pipe write: %zd (%s)", n, strerror(errno));
		_exit(1);
	}
}

static uint64_t get(struct link *l)
{
	uint64_t v;
	ssize_t n;

	while ((n = read(l->fd[0], &v, sizeof(v))) < 0 && errno == EINTR)
		;
	if (n != (ssize_t)sizeof(v)) {
		TH_LOG("pipe read: %zd (%s)", n, n < 0 ? strerror(errno) : "end of file");
		_exit(1);
	}
	return v;
}

/* Something is waiting to be read (never blocks). */
static bool ready(struct link *l)
{
	struct pollfd p = { l->fd[0], POLLIN, 0 };

	return poll(&p, 1, 0) == 1;
}

/* A child forked before the channel it uses exists, told when it does. */
struct gated {
	const char *url;
	struct link go;
};

static void gated_make(struct gated *g, const char *url)
{
	g->url = url;
	link_make(&g->go);
}

/* In the child: wait for the channel; returns its url. */
static const char *gated_wait(void *p)
{
	struct gated *g = p;

	get(&g->go);
	return g->url;
}

static void *shared(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE,
		       -1, 0);

	if (p == MAP_FAILED) {
		TH_LOG("mmap %zu shared bytes: %s", size, strerror(errno));
		_exit(1);
	}
	return p;
}

/* ---- elements ------------------------------------------------------------------- */

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* A small message: who sent it, its number, and a checksum of both. */
struct msg {
	uint32_t src;
	uint32_t zero;
	uint64_t seq;
	uint64_t sum;
};

static uint64_t msg_sum(const struct msg *m)
{
	return mix64(((uint64_t)m->src << 40) ^ m->seq ^ ((uint64_t)m->zero << 20));
}

static struct msg msg_make(uint32_t src, uint64_t seq)
{
	struct msg m = { src, 0, seq, 0 };

	m.sum = msg_sum(&m);
	return m;
}

static bool msg_ok(const struct msg *m)
{
	return m->zero == 0 && m->sum == msg_sum(m);
}

/* The byte pattern of element number seq of `size` bytes (as in chan.c). */
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

static bool intact(const void *buf, size_t size, uint64_t seq)
{
	const uint8_t *b = buf;

	for (size_t i = 0; i < size; i++)
		if (b[i] != pat(seq, i))
			return false;
	return true;
}

#define CANARY 0xC5
#define CANARY_LEN 32

static uint8_t *rbuf_new(size_t size)
{
	uint8_t *b = malloc(size + CANARY_LEN);

	if (!b)
		abort();
	memset(b, 0, size);
	memset(b + size, CANARY, CANARY_LEN);
	return b;
}

static bool canary_ok(const uint8_t *b, size_t size)
{
	for (size_t i = 0; i < CANARY_LEN; i++)
		if (b[size + i] != CANARY)
			return false;
	return true;
}

/*
 * p .. p+len lies inside this process's mapping of the segment at `path`
 * (one or several adjacent mappings of that file, from /proc/self/maps):
 * a loan or a borrow never points elsewhere.
 */
static bool in_segment(const void *p, size_t len, const char *path)
{
	uintptr_t a = (uintptr_t)p, end = 0;
	char line[1024];
	bool found = false;
	FILE *f = fopen("/proc/self/maps", "r");

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		char *file = strchr(line, '/');
		bool same;

		if (sscanf(line, "%lx-%lx", &lo, &hi) != 2)
			continue;
		same = file && !strncmp(file, path, strlen(path));
		if (!found) {
			if (a >= lo && a < hi) {
				if (!same)
					break;
				found = true;
				end = hi;
			}
		} else if (same && lo == end) {
			end = hi;
		} else {
			break;
		}
	}
	fclose(f);
	return found && a + len <= end;
}

/*
 * The random stream of a test: MR_TEST_SEED if set, else one of this run
 * (printed, so that a failure can be run again with it).
 */
static uint64_t test_seed(uint64_t salt)
{
	const char *env = getenv("MR_TEST_SEED");
	uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)mr_now_ns() ^ (uint64_t)getpid();

	TH_LOG("seed %" PRIu64 " (MR_TEST_SEED)", seed);
	return mix64(seed ^ salt) | 1;
}

/* ---- bad input -------------------------------------------------------------------- */

TEST(open_bad_urls)
{
	static const char *const bad[] = {
		"",	   "x",	     "shm",	 "shm:",      "shm:/x", "shm//x", "://x",
		"udp://x", "ipc://x", "file:///x", "shmx://x", " shm://x", "inproc:/x",
	};
	MR_OPTS(mr_chan_open_opts, o, .elem_size = 8, .capacity = 4, .flags = MR_CHAN_CREATE);

	EXPECT_OPEN_FAILS(NULL, &o, EINVAL);
	EXPECT_OPEN_FAILS(NULL, NULL, EINVAL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		EXPECT_OPEN_FAILS(bad[i], &o, EINVAL);
		EXPECT_OPEN_FAILS(bad[i], NULL, EINVAL);
		EXPECT_EQ(mr_chan_unlink(bad[i]), -EINVAL);
	}
	EXPECT_EQ(mr_chan_unlink(NULL), -EINVAL);
	EXPECT_OPEN_FAILS("tcp://127.0.0.1:5555", &o, EPROTONOSUPPORT);
	EXPECT_OPEN_FAILS("tcp://localhost:1", NULL, EPROTONOSUPPORT);
	EXPECT_EQ(mr_chan_unlink("tcp://127.0.0.1:5555"), -EPROTONOSUPPORT);
}

TEST(open_bad_names)
{
	static const char *const schemes[] = { "shm://", "inproc://" };
	static const char *const bad[] = {
		"",    "a/b", "/a",  "a/",   ".",	 "..", "a b", "a\tb", "a\nb", "a*b",
		"a:b", "a\\b", "a?b", "a%2f", "\xc3\xa4", "a+b", "a~", "a@b",  "a#b",
	};
	char url[512], longname[MR_CHAN_NAME_MAX + 2];
	MR_OPTS(mr_chan_open_opts, o, .elem_size = 8, .capacity = 4, .flags = MR_CHAN_CREATE);

	memset(longname, 'a', MR_CHAN_NAME_MAX + 1);
	longname[MR_CHAN_NAME_MAX + 1] = 0;
	for (size_t s = 0; s < 2; s++) {
		for (size_t i = 0; i <= sizeof(bad) / sizeof(bad[0]); i++) {
			const char *nm = i < sizeof(bad) / sizeof(bad[0]) ? bad[i] : longname;

			snprintf(url, sizeof(url), "%s%s", schemes[s], nm);
			EXPECT_OPEN_FAILS(url, &o, EINVAL);
			EXPECT_OPEN_FAILS(url, NULL, EINVAL);
			EXPECT_EQ(mr_chan_unlink(url), -EINVAL);
			/* Nothing was made under a name that a path could hold. */
			if (s == 0 && !strchr(nm, '/')) {
				char path[512];

				snprintf(path, sizeof(path), SHM_DIR "/" SEG_PREFIX "%s", nm);
				EXPECT_NE(access(path, F_OK), 0);
			}
		}
	}
}

/* Names at the limits are valid: every allowed character, MR_CHAN_NAME_MAX
 * bytes, one byte, dots that are not "." or "..". */
TEST(open_good_names)
{
	static const char chars[] = "abcXYZ019._-";
	static const char *const short_names[] = { "a", "-", "_", "...", ".a", "a.", "9" };
	char nm[MR_CHAN_NAME_MAX + 1], url[MR_CHAN_NAME_MAX + 32];
	struct name n;
	uint64_t v = 5, w = 0;

	name_make(&n, "long");
	memset(nm, 0, sizeof(nm));
	snprintf(nm, sizeof(nm), "%s", n.name);
	for (size_t i = strlen(nm); i < MR_CHAN_NAME_MAX; i++)
		nm[i] = chars[i % (sizeof(chars) - 1)];
	ASSERT_EQ(strlen(nm), MR_CHAN_NAME_MAX);
	for (int s = 0; s < 2; s++) {
		snprintf(url, sizeof(url), "%s%s", s ? "inproc://" : "shm://", nm);
		mr_chan_t *ch = MUST_OPEN(url, 8, 4, MR_CHAN_CREATE | MR_CHAN_EXCL);
		ASSERT_EQ(mr_chan_send(ch, &v), 0);
		ASSERT_EQ(mr_chan_recv(ch, &w), 0);
		EXPECT_EQ(w, v);
		mr_chan_destroy(ch);
		/* The creator's destroy took the name. */
		EXPECT_OPEN_FAILS(url, NULL, ENOENT);
	}
	/* Short ones: in-process only, where no other run can hold them. */
	for (size_t i = 0; i < sizeof(short_names) / sizeof(short_names[0]); i++) {
		snprintf(url, sizeof(url), "inproc://%s", short_names[i]);
		mr_chan_t *ch = MUST_OPEN(url, 8, 4, MR_CHAN_CREATE | MR_CHAN_EXCL);
		mr_chan_destroy(ch);
	}
}

static void bad_opts_for(const char *url, bool shm)
{
	struct {
		size_t elem, cap, align;
		unsigned flags;
	} bad[] = {
		{ 0, 4, 0, MR_CHAN_CREATE },				 /* a creator without elem_size */
		{ 0, 0, 0, MR_CHAN_CREATE | MR_CHAN_EXCL },
		{ 8, MR_CHAN_CAPACITY_MAX + 1, 0, MR_CHAN_CREATE },
		{ 8, MR_CHAN_UNBOUNDED - 1, 0, MR_CHAN_CREATE },
		{ 8, 4, 0, MR_CHAN_CREATE | 16 },			 /* unknown flags */
		{ 8, 4, 0, MR_CHAN_CREATE | 0x80000000u },
		{ 8, 4, 0, ~0u },
		{ 8, 4, 0, 16 },
		{ 8, 4, 0, 0x100 },
		{ shm ? MR_CHAN_SHM_ELEM_MAX + 1 : MR_CHAN_ELEM_MAX + 1, 4, 0, MR_CHAN_CREATE },
		{ SIZE_MAX, 4, 0, MR_CHAN_CREATE },
	};
	struct {
		size_t elem, cap, align;
		unsigned flags;
	} bad_shm[] = {
		{ 8, 0, 0, MR_CHAN_CREATE },				 /* rendezvous */
		{ 8, MR_CHAN_UNBOUNDED, 0, MR_CHAN_CREATE },		 /* unbounded */
		{ 8, 4, 3, MR_CHAN_CREATE },				 /* not a power of two */
		{ 8, 4, 6, MR_CHAN_CREATE },
		{ 8, 4, 12, MR_CHAN_CREATE },
		{ 8, 4, 4097, MR_CHAN_CREATE },
		{ 8, 4, 8192, MR_CHAN_CREATE },				 /* above 4096 */
		{ 8, 4, (size_t)1 << 40, MR_CHAN_CREATE },
		{ 8, 4, SIZE_MAX, MR_CHAN_CREATE },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		MR_OPTS(mr_chan_open_opts, o, .elem_size = bad[i].elem, .capacity = bad[i].cap,
			.elem_align = bad[i].align, .flags = bad[i].flags);
		EXPECT_OPEN_FAILS(url, &o, EINVAL);
	}
	if (shm)
		for (size_t i = 0; i < sizeof(bad_shm) / sizeof(bad_shm[0]); i++) {
			MR_OPTS(mr_chan_open_opts, o, .elem_size = bad_shm[i].elem,
				.capacity = bad_shm[i].cap, .elem_align = bad_shm[i].align,
				.flags = bad_shm[i].flags);
			EXPECT_OPEN_FAILS(url, &o, EINVAL);
		}
	/* None of them made the channel. */
	EXPECT_OPEN_FAILS(url, NULL, ENOENT);
}

TEST(open_bad_options)
{
	struct name n;

	name_make(&n, "opts");
	bad_opts_for(n.url, true);
	EXPECT_FALSE(seg_exists(&n));
	bad_opts_for(n.inproc, false);
	/* The same options on an existing channel: still EINVAL for the flags. */
	mr_chan_t *ch = MUST_OPEN(n.url, 8, 4, MR_CHAN_CREATE | MR_CHAN_EXCL);
	MR_OPTS(mr_chan_open_opts, o, .flags = 16);
	EXPECT_OPEN_FAILS(n.url, &o, EINVAL);
	mr_chan_destroy(ch);
	/* In-process channels take every capacity, as mr_chan_create() does. */
	static const size_t caps[] = { 0, 1, 100, MR_CHAN_UNBOUNDED };
	for (size_t i = 0; i < 4; i++) {
		mr_chan_t *c = MUST_OPEN(n.inproc, 8, caps[i], MR_CHAN_CREATE | MR_CHAN_EXCL);
		EXPECT_EQ(mr_chan_capacity(c), caps[i]);
		mr_chan_destroy(c);
	}
	/* Alignments that are powers of two up to 4096 are valid. */
	for (size_t al = 1; al <= 4096; al *= 2) {
		MR_OPTS(mr_chan_open_opts, a, .elem_size = 24, .capacity = 3, .elem_align = al,
			.flags = MR_CHAN_CREATE | MR_CHAN_EXCL);
		mr_chan_t *c = MUST_OPEN_OPTS(n.url, &a);
		mr_chan_destroy(c);
	}
}

TEST(open_missing_existing_and_exclusive)
{
	struct name n;
	struct msg m = msg_make(1, 42), r;

	name_make(&n, "excl");
	for (int s = 0; s < 2; s++) {
		const char *url = s ? n.inproc : n.url;
		MR_OPTS(mr_chan_open_opts, send_only, .flags = MR_CHAN_SEND);
		MR_OPTS(mr_chan_open_opts, excl_only, .elem_size = sizeof(m), .capacity = 4,
			.flags = MR_CHAN_EXCL | MR_CHAN_SEND);
		MR_OPTS(mr_chan_open_opts, cx, .elem_size = sizeof(m), .capacity = 4,
			.flags = MR_CHAN_CREATE | MR_CHAN_EXCL);

		EXPECT_OPEN_FAILS(url, NULL, ENOENT);
		EXPECT_OPEN_FAILS(url, &send_only, ENOENT);
		/* EXCL without CREATE means nothing: refused as a bad flag. */
		EXPECT_OPEN_FAILS(url, &excl_only, EINVAL);
		mr_chan_t *a = MUST_OPEN_OPTS(url, &cx);
		EXPECT_OPEN_FAILS(url, &cx, EEXIST);
		mr_chan_t *b = MUST_OPEN(url, sizeof(m), 4, MR_CHAN_CREATE); /* attaches */
		mr_chan_t *c = MUST_OPEN_OPTS(url, NULL);
		if (s) {
			/* inproc: one channel, one handle. */
			EXPECT_TRUE(a == b && b == c);
		} else {
			/* shm: each open an attachment of its own, one ring. */
			EXPECT_TRUE(a != b && b != c && a != c);
		}
		ASSERT_EQ(mr_chan_send(a, &m), 0);
		EXPECT_EQ(mr_chan_len(c), 1);
		ASSERT_EQ(mr_chan_recv(c, &r), 0);
		EXPECT_TRUE(msg_ok(&r));
		EXPECT_EQ(r.seq, 42);
		EXPECT_EQ(mr_chan_try_recv(b, &r), -EAGAIN);
		mr_chan_destroy(c);
		mr_chan_destroy(b);
		mr_chan_destroy(a);
		EXPECT_OPEN_FAILS(url, NULL, ENOENT);
	}
}

TEST(attach_checks_sizes)
{
	struct name n;
	static const struct {
		size_t elem, cap;
	} wrong[] = { { 16, 16 }, { 24, 8 }, { 25, 0 }, { 0, 17 }, { 23, 16 }, { 24, 15 }, { 1, 1 } },
	  right[] = { { 24, 16 }, { 0, 0 }, { 24, 0 }, { 0, 16 } };

	name_make(&n, "sizes");
	for (int s = 0; s < 2; s++) {
		const char *url = s ? n.inproc : n.url;
		mr_chan_t *h = MUST_OPEN(url, 24, 16, MR_CHAN_CREATE | MR_CHAN_EXCL);
		uint8_t buf[24] = { 1 };

		EXPECT_EQ(mr_chan_elem_size(h), 24);
		EXPECT_EQ(mr_chan_capacity(h), 16);
		for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
			MR_OPTS(mr_chan_open_opts, o, .elem_size = wrong[i].elem,
				.capacity = wrong[i].cap);
			EXPECT_OPEN_FAILS(url, &o, EPROTOTYPE);
			/* CREATE on an existing name attaches, with the same check
			 * (given options a creator could give). */
			o.flags = MR_CHAN_CREATE;
			if (wrong[i].elem && wrong[i].cap)
				EXPECT_OPEN_FAILS(url, &o, EPROTOTYPE);
		}
		ASSERT_EQ(mr_chan_send(h, buf), 0);
		for (size_t i = 0; i < sizeof(right) / sizeof(right[0]); i++) {
			mr_chan_t *c = MUST_OPEN(url, right[i].elem, right[i].cap, 0);

			EXPECT_EQ(mr_chan_elem_size(c), 24);
			EXPECT_EQ(mr_chan_capacity(c), 16);
			EXPECT_EQ(mr_chan_len(c), 1);
			EXPECT_FALSE(mr_chan_is_closed(c));
			mr_chan_destroy(c);
		}
		mr_chan_t *c = MUST_OPEN_OPTS(url, NULL);
		EXPECT_EQ(mr_chan_elem_size(c), 24);
		EXPECT_EQ(mr_chan_capacity(c), 16);
		mr_chan_destroy(c);
		mr_chan_destroy(h);
	}

	/* An in-process unbounded channel: its capacity is MR_CHAN_UNBOUNDED. */
	mr_chan_t *u = MUST_OPEN(n.inproc, 8, MR_CHAN_UNBOUNDED, MR_CHAN_CREATE | MR_CHAN_EXCL);
	MR_OPTS(mr_chan_open_opts, o16, .elem_size = 8, .capacity = 16);
	EXPECT_OPEN_FAILS(n.inproc, &o16, EPROTOTYPE);
	mr_chan_t *u2 = MUST_OPEN(n.inproc, 8, MR_CHAN_UNBOUNDED, 0);
	EXPECT_TRUE(u == u2);
	mr_chan_destroy(u2);
	mr_chan_destroy(u);

	/* An attacher that gives elem_align must give the channel's. */
	MR_OPTS(mr_chan_open_opts, a64, .elem_size = 24, .capacity = 4, .elem_align = 64,
		.flags = MR_CHAN_CREATE | MR_CHAN_EXCL);
	mr_chan_t *h = MUST_OPEN_OPTS(n.url, &a64);
	MR_OPTS(mr_chan_open_opts, a16, .elem_size = 24, .capacity = 4, .elem_align = 16);
	EXPECT_OPEN_FAILS(n.url, &a16, EPROTOTYPE);
	a64.flags = 0;
	mr_chan_t *c = MUST_OPEN_OPTS(n.url, &a64);
	mr_chan_destroy(c);
	mr_chan_destroy(h);
}

TEST(unlink_while_attached)
{
	struct name n;
	struct msg m, r;

	name_make(&n, "unlink");
	EXPECT_EQ(mr_chan_unlink(n.url), -ENOENT);
	EXPECT_EQ(mr_chan_unlink(n.inproc), -ENOENT);

	mr_chan_t *a = MUST_OPEN(n.url, sizeof(m), 8, MR_CHAN_CREATE | MR_CHAN_EXCL);
	mr_chan_t *b = MUST_OPEN(n.url, 0, 0, 0);
	EXPECT_TRUE(seg_exists(&n));
	EXPECT_EQ(mr_chan_unlink(n.url), 0);
	EXPECT_FALSE(seg_exists(&n));
	EXPECT_EQ(mr_chan_unlink(n.url), -ENOENT);
	EXPECT_OPEN_FAILS(n.url, NULL, ENOENT);
	/* The handles keep working. */
	for (uint64_t i = 0; i < 20; i++) {
		m = msg_make(1, i);
		ASSERT_EQ(mr_chan_send(a, &m), 0);
		ASSERT_EQ(mr_chan_recv(b, &r), 0);
		EXPECT_TRUE(msg_ok(&r));
		EXPECT_EQ(r.seq, i);
	}
	/* A new open with CREATE makes another channel. */
	mr_chan_t *c = MUST_OPEN(n.url, sizeof(m), 8, MR_CHAN_CREATE);
	m = msg_make(2, 100);
	ASSERT_EQ(mr_chan_send(c, &m), 0);
	EXPECT_EQ(mr_chan_try_recv(b, &r), -EAGAIN);
	EXPECT_EQ(mr_chan_len(a), 0);
	m = msg_make(1, 200);
	ASSERT_EQ(mr_chan_send(a, &m), 0);
	ASSERT_EQ(mr_chan_recv(c, &r), 0);
	EXPECT_EQ(r.seq, 100);
	EXPECT_EQ(mr_chan_try_recv(c, &r), -EAGAIN);
	ASSERT_EQ(mr_chan_recv(b, &r), 0);
	EXPECT_EQ(r.seq, 200);
	/* The old channel's creator going does not take the new name. */
	mr_chan_destroy(a);
	EXPECT_TRUE(seg_exists(&n));
	mr_chan_destroy(b);
	mr_chan_destroy(c);
	EXPECT_FALSE(seg_exists(&n));

	/* The creator's destroy removes the name; the others' do not. */
	a = MUST_OPEN(n.url, sizeof(m), 8, MR_CHAN_CREATE | MR_CHAN_EXCL);
	b = MUST_OPEN(n.url, 0, 0, 0);
	mr_chan_destroy(b);
	EXPECT_TRUE(seg_exists(&n));
	b = MUST_OPEN(n.url, 0, 0, 0);
	mr_chan_destroy(a);
	EXPECT_FALSE(seg_exists(&n));
	EXPECT_OPEN_FAILS(n.url, NULL, ENOENT);
	m = msg_make(3, 300);
	ASSERT_EQ(mr_chan_send(b, &m), 0); /* the segment lives on with b */
	ASSERT_EQ(mr_chan_recv(b, &r), 0);
	EXPECT_EQ(r.seq, 300);
	mr_chan_destroy(b);

	/* inproc: unlink drops the name, the handle lives on. */
	a = MUST_OPEN(n.inproc, sizeof(m), 8, MR_CHAN_CREATE | MR_CHAN_EXCL);
	EXPECT_EQ(mr_chan_unlink(n.inproc), 0);
	EXPECT_EQ(mr_chan_unlink(n.inproc), -ENOENT);
	EXPECT_OPEN_FAILS(n.inproc, NULL, ENOENT);
	c = MUST_OPEN(n.inproc, sizeof(m), 8, MR_CHAN_CREATE | MR_CHAN_EXCL);
	EXPECT_TRUE(c != a);
	m = msg_make(4, 400);
	ASSERT_EQ(mr_chan_send(a, &m), 0);
	EXPECT_EQ(mr_chan_try_recv(c, &r), -EAGAIN);
	ASSERT_EQ(mr_chan_recv(a, &r), 0);
	EXPECT_EQ(r.seq, 400);
	mr_chan_destroy(a);
	mr_chan_destroy(c);
	EXPECT_OPEN_FAILS(n.inproc, NULL, ENOENT);
}

TEST(inproc_opens_share_one_channel)
{
	struct name n;
	uint64_t v, w;

	name_make(&n, "inproc");
	for (int k = 0; k < 3; k++) {
		size_t cap = k == 0 ? 4 : k == 1 ? MR_CHAN_UNBOUNDED : 0;
		mr_chan_t *a = MUST_OPEN(n.inproc, 8, cap, MR_CHAN_CREATE);
		mr_chan_t *b = MUST_OPEN_OPTS(n.inproc, NULL);
		mr_chan_t *c = MUST_OPEN(n.inproc, 8, cap, MR_CHAN_CREATE);

		EXPECT_TRUE(a == b && b == c);
		EXPECT_EQ(mr_chan_capacity(b), cap);
		/* Loans and borrows are for shm only. */
		void *slot = NULL;
		const void *elem = NULL;
		EXPECT_EQ(mr_chan_loan(a, &slot), -EOPNOTSUPP);
		EXPECT_EQ(mr_chan_try_loan(a, &slot), -EOPNOTSUPP);
		EXPECT_EQ(mr_chan_loan_until(a, &slot, in_ms(1)), -EOPNOTSUPP);
		EXPECT_EQ(mr_chan_borrow(a, &elem), -EOPNOTSUPP);
		EXPECT_EQ(mr_chan_try_borrow(a, &elem), -EOPNOTSUPP);
		EXPECT_EQ(mr_chan_borrow_until(a, &elem, in_ms(1)), -EOPNOTSUPP);
		EXPECT_EQ(mr_chan_commit(a, &v), -EOPNOTSUPP);
		EXPECT_EQ(mr_chan_discard(a, &v), -EOPNOTSUPP);
		EXPECT_EQ(mr_chan_release(a, &v), -EOPNOTSUPP);
		if (cap) {
			for (v = 0; v < 4; v++)
				ASSERT_EQ(mr_chan_try_send(a, &v), 0);
			for (v = 0; v < 4; v++) {
				ASSERT_EQ(mr_chan_try_recv(c, &w), 0);
				EXPECT_EQ(w, v);
			}
		}
		/* Three references: the channel goes with the last destroy. */
		mr_chan_destroy(a);
		mr_chan_destroy(c);
		v = 77;
		if (cap)
			ASSERT_EQ(mr_chan_try_send(b, &v), 0);
		mr_chan_t *d = MUST_OPEN_OPTS(n.inproc, NULL);
		EXPECT_TRUE(d == b);
		if (cap) {
			ASSERT_EQ(mr_chan_try_recv(d, &w), 0);
			EXPECT_EQ(w, 77);
		}
		mr_chan_destroy(d);
		mr_chan_destroy(b);
		EXPECT_OPEN_FAILS(n.inproc, NULL, ENOENT);
	}

	/* A plain channel refuses loans as well; NULL channels are EINVAL. */
	mr_chan_t *p = mr_chan_create(8, 4, 0);
	void *slot;
	const void *elem;
	ASSERT_NONNULL(p);
	EXPECT_EQ(mr_chan_loan(p, &slot), -EOPNOTSUPP);
	EXPECT_EQ(mr_chan_borrow(p, &elem), -EOPNOTSUPP);
	mr_chan_destroy(p);
	EXPECT_EQ(mr_chan_loan(NULL, &slot), -EINVAL);
	EXPECT_EQ(mr_chan_try_loan(NULL, &slot), -EINVAL);
	EXPECT_EQ(mr_chan_borrow(NULL, &elem), -EINVAL);
	EXPECT_EQ(mr_chan_try_borrow(NULL, &elem), -EINVAL);
	EXPECT_EQ(mr_chan_commit(NULL, &v), -EINVAL);
	EXPECT_EQ(mr_chan_discard(NULL, &v), -EINVAL);
	EXPECT_EQ(mr_chan_release(NULL, &v), -EINVAL);
}

/* A rendezvous inproc:// channel between a thread and the opener. */
static void *rdv_sender(void *p)
{
	const char *url = p;
	mr_chan_t *ch = MUST_OPEN_OPTS(url, NULL);

	for (uint64_t v = 0; v < 100; v++)
		ASSERT_EQ(mr_chan_send(ch, &v), 0);
	mr_chan_destroy(ch);
	return NULL;
}

TEST(inproc_rendezvous_between_threads)
{
	struct name n;
	pthread_t th;
	uint64_t w;

	name_make(&n, "rdv");
	mr_chan_t *ch = MUST_OPEN(n.inproc, 8, 0, MR_CHAN_CREATE | MR_CHAN_EXCL);
	ASSERT_EQ(pthread_create(&th, NULL, rdv_sender, n.inproc), 0);
	for (uint64_t v = 0; v < 100; v++) {
		ASSERT_EQ(mr_chan_recv(ch, &w), 0);
		EXPECT_EQ(w, v);
	}
	ASSERT_EQ(pthread_join(th, NULL), 0);
	mr_chan_destroy(ch);
}

TEST(wrong_side_is_ebadf)
{
	struct name n;
	struct msg m = msg_make(1, 1), r;
	void *slot;
	const void *elem;

	name_make(&n, "side");
	mr_chan_t *s = MUST_OPEN(n.url, sizeof(m), 4, MR_CHAN_CREATE | MR_CHAN_EXCL | MR_CHAN_SEND);
	mr_chan_t *rv = MUST_OPEN(n.url, 0, 0, MR_CHAN_RECV);
	mr_chan_t *both = MUST_OPEN(n.url, 0, 0, MR_CHAN_SEND | MR_CHAN_RECV);

	EXPECT_EQ(mr_chan_recv(s, &r), -EBADF);
	EXPECT_EQ(mr_chan_try_recv(s, &r), -EBADF);
	EXPECT_EQ(mr_chan_recv_until(s, &r, in_ms(1)), -EBADF);
	EXPECT_EQ(mr_chan_borrow(s, &elem), -EBADF);
	EXPECT_EQ(mr_chan_try_borrow(s, &elem), -EBADF);
	EXPECT_EQ(mr_chan_borrow_until(s, &elem, in_ms(1)), -EBADF);
	EXPECT_EQ(mr_chan_send(rv, &m), -EBADF);
	EXPECT_EQ(mr_chan_try_send(rv, &m), -EBADF);
	EXPECT_EQ(mr_chan_send_until(rv, &m, in_ms(1)), -EBADF);
	EXPECT_EQ(mr_chan_loan(rv, &slot), -EBADF);
	EXPECT_EQ(mr_chan_try_loan(rv, &slot), -EBADF);
	EXPECT_EQ(mr_chan_loan_until(rv, &slot, in_ms(1)), -EBADF);
	/* Nothing happened; the right side works. */
	EXPECT_EQ(mr_chan_len(both), 0);
	ASSERT_EQ(mr_chan_send(s, &m), 0);
	ASSERT_EQ(mr_chan_send(both, &m), 0);
	ASSERT_EQ(mr_chan_recv(rv, &r), 0);
	ASSERT_EQ(mr_chan_recv(both, &r), 0);
	EXPECT_TRUE(msg_ok(&r));
	/* Out pointers. */
	EXPECT_EQ(mr_chan_loan(s, NULL), -EINVAL);
	EXPECT_EQ(mr_chan_try_loan(s, NULL), -EINVAL);
	EXPECT_EQ(mr_chan_borrow(rv, NULL), -EINVAL);
	EXPECT_EQ(mr_chan_try_borrow(rv, NULL), -EINVAL);
	mr_chan_destroy(both);
	mr_chan_destroy(rv);
	mr_chan_destroy(s);
}

TEST(attachments_up_to_the_max)
{
	struct name n;
	mr_chan_t *h[MR_CHAN_SHM_ATTACH_MAX];

	name_make(&n, "max");
	h[0] = MUST_OPEN(n.url, 8, 4, MR_CHAN_CREATE | MR_CHAN_EXCL);
	for (int i = 1; i < MR_CHAN_SHM_ATTACH_MAX; i++)
		h[i] = MUST_OPEN(n.url, 0, 0, i % 3 ? MR_CHAN_SEND : MR_CHAN_RECV);
	EXPECT_OPEN_FAILS(n.url, NULL, EUSERS);
	mr_chan_destroy(h[5]);
	h[5] = MUST_OPEN(n.url, 0, 0, 0);
	EXPECT_OPEN_FAILS(n.url, NULL, EUSERS);
	for (int i = MR_CHAN_SHM_ATTACH_MAX - 1; i >= 0; i--)
		mr_chan_destroy(h[i]);
}

/* ---- one ring, one process and across fork() ---------------------------------------- */

TEST(fifo_and_wraparound)
{
	static const size_t caps[] = { 1, 3, 16, 1000 };
	struct name n;
	uint64_t next = 0, want = 0, v;

	for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
		size_t cap = caps[c];

		name_make(&n, "fifo");
		mr_chan_t *s = MUST_OPEN(n.url, 8, cap, MR_CHAN_CREATE | MR_CHAN_EXCL | MR_CHAN_SEND);
		mr_chan_t *r = MUST_OPEN(n.url, 0, 0, MR_CHAN_RECV);
		next = want = 0;
		for (int lap = 0; lap < 200; lap++) {
			for (size_t i = 0; i < cap; i++, next++)
				ASSERT_EQ(mr_chan_try_send(s, &next), 0);
			EXPECT_EQ(mr_chan_try_send(s, &next), -EAGAIN);
			EXPECT_EQ(mr_chan_len(r), cap);
			for (size_t i = 0; i < cap; i++, want++) {
				ASSERT_EQ(mr_chan_try_recv(r, &v), 0);
				ASSERT_EQ(v, want);
			}
			EXPECT_EQ(mr_chan_try_recv(r, &v), -EAGAIN);
			EXPECT_EQ(mr_chan_len(s), 0);
		}
		/* One in, one out, for many laps; then half full, for many more. */
		for (long i = 0; i < scaled(20000); i++, next++, want++) {
			ASSERT_EQ(mr_chan_send(s, &next), 0);
			ASSERT_EQ(mr_chan_recv(r, &v), 0);
			ASSERT_EQ(v, want);
		}
		for (size_t i = 0; i < cap / 2; i++, next++)
			ASSERT_EQ(mr_chan_send(s, &next), 0);
		for (long i = 0; i < scaled(20000); i++, next++, want++) {
			ASSERT_EQ(mr_chan_send(s, &next), 0);
			ASSERT_EQ(mr_chan_recv(r, &v), 0);
			ASSERT_EQ(v, want);
		}
		mr_chan_destroy(r);
		mr_chan_destroy(s);
	}
}

#define SZ_N 10

/* The child is forked before any channel exists (see the top), and told
 * when each one does. */
struct sizes_arg {
	struct name n[SZ_N];
	size_t size[SZ_N], count[SZ_N];
	struct link go, done;
};

static void sizes_child(void *p)
{
	struct sizes_arg *a = p;

	for (int c = 0; c < SZ_N; c++) {
		size_t size = a->size[c];

		get(&a->go);
		mr_chan_t *ch = MUST_OPEN(a->n[c].url, 0, 0, 0);
		uint8_t *buf = rbuf_new(size);

		EXPECT_EQ(mr_chan_elem_size(ch), size);
		for (size_t i = 0; i < a->count[c]; i++) {
			ASSERT_EQ(mr_chan_recv(ch, buf), 0);
			ASSERT_TRUE(intact(buf, size, i));
			ASSERT_TRUE(canary_ok(buf, size));
		}
		put(&a->done, 1);
		/* And back. */
		for (size_t i = 0; i < a->count[c]; i++) {
			fill(buf, size, 1000 + i);
			ASSERT_EQ(mr_chan_send(ch, buf), 0);
		}
		free(buf);
		mr_chan_destroy(ch);
	}
}

TEST(odd_sizes_copied_intact)
{
	static const size_t sizes[] = { 1, 3, 8, 24, 4096 + 5 };
	static const size_t caps[] = { 1, 5 };
	static const size_t aligns[] = { 0, 1, 64 };
	struct sizes_arg a;
	int c = 0;

	for (size_t i = 0; i < 5; i++)
		for (size_t j = 0; j < 2; j++, c++) {
			name_make(&a.n[c], "sizes");
			a.size[c] = sizes[i];
			a.count[c] = 3 * caps[j] + 2;
		}
	link_make(&a.go);
	link_make(&a.done);
	pid_t pid = spawn(sizes_child, &a);
	c = 0;
	for (size_t i = 0; i < 5; i++) {
		for (size_t j = 0; j < 2; j++, c++) {
			size_t sz = sizes[i], cap = caps[j], al = aligns[(i + j) % 3];
			size_t count = a.count[c];
			uint8_t *in = malloc(sz), *out = rbuf_new(sz);

			MR_OPTS(mr_chan_open_opts, o, .elem_size = sz, .capacity = cap,
				.elem_align = al, .flags = MR_CHAN_CREATE | MR_CHAN_EXCL);
			mr_chan_t *ch = MUST_OPEN_OPTS(a.n[c].url, &o);
			EXPECT_EQ(mr_chan_elem_size(ch), sz);
			/* In one process, full laps. */
			for (size_t k = 0; k < count; k++) {
				fill(in, sz, k);
				ASSERT_EQ(mr_chan_send(ch, in), 0);
				memset(in, 0, sz); /* copied in by value */
				ASSERT_EQ(mr_chan_recv(ch, out), 0);
				ASSERT_TRUE(intact(out, sz, k));
				ASSERT_TRUE(canary_ok(out, sz));
			}
			/* Across processes, both ways. */
			put(&a.go, 1);
			for (size_t k = 0; k < count; k++) {
				fill(in, sz, k);
				ASSERT_EQ(mr_chan_send(ch, in), 0);
			}
			/* Both handles receive: wait until the child has all of ours. */
			get(&a.done);
			for (size_t k = 0; k < count; k++) {
				ASSERT_EQ(mr_chan_recv(ch, out), 0);
				EXPECT_TRUE(intact(out, sz, 1000 + k));
				EXPECT_TRUE(canary_ok(out, sz));
			}
			mr_chan_destroy(ch);
			free(in);
			free(out);
		}
	}
	expect_exit_ok(pid, "sizes child");
	link_close(&a.go);
	link_close(&a.done);
}

/* Full and empty: the try forms say -EAGAIN, the deadline forms -ETIMEDOUT,
 * and neither leaves anything behind or takes anything. */
TEST(try_and_deadlines_do_nothing)
{
	struct name n;
	struct msg m, r;
	void *slot;
	const void *elem;

	name_make(&n, "try");
	mr_chan_t *s = MUST_OPEN(n.url, sizeof(m), 4, MR_CHAN_CREATE | MR_CHAN_EXCL | MR_CHAN_SEND);
	mr_chan_t *rv = MUST_OPEN(n.url, 0, 0, MR_CHAN_RECV);

	for (int round = 0; round < 3; round++) {
		uint64_t base = (uint64_t)round * 100;

		for (uint64_t i = 0; i < 4; i++) {
			m = msg_make(1, base + i);
			ASSERT_EQ(mr_chan_try_send(s, &m), 0);
		}
		m = msg_make(9, 999);
		EXPECT_EQ(mr_chan_try_send(s, &m), -EAGAIN);
		EXPECT_EQ(mr_chan_send_until(s, &m, past()), -ETIMEDOUT);
		EXPECT_EQ(mr_chan_send_until(s, &m, 0), -ETIMEDOUT);
		int64_t dl = in_ms(20);
		EXPECT_EQ(mr_chan_send_until(s, &m, dl), -ETIMEDOUT);
		EXPECT_GE(mr_now_ns(), dl); /* never early */
		EXPECT_EQ(mr_chan_try_loan(s, &slot), -EAGAIN);
		EXPECT_EQ(mr_chan_loan_until(s, &slot, past()), -ETIMEDOUT);
		EXPECT_EQ(mr_chan_loan_until(s, &slot, in_ms(10)), -ETIMEDOUT);
		EXPECT_EQ(mr_chan_len(rv), 4);
		for (uint64_t i = 0; i < 4; i++) {
			if (i == 2) {
				ASSERT_EQ(mr_chan_try_borrow(rv, &elem), 0);
				memcpy(&r, elem, sizeof(r));
				ASSERT_EQ(mr_chan_release(rv, elem), 0);
			} else {
				ASSERT_EQ(mr_chan_recv_until(rv, &r, past()), 0); /* ready: done */
			}
			EXPECT_TRUE(msg_ok(&r));
			EXPECT_EQ(r.seq, base + i);
		}
		EXPECT_EQ(mr_chan_try_recv(rv, &r), -EAGAIN);
		EXPECT_EQ(mr_chan_recv_until(rv, &r, past()), -ETIMEDOUT);
		EXPECT_EQ(mr_chan_recv_until(rv, &r, 0), -ETIMEDOUT);
		dl = in_ms(20);
		EXPECT_EQ(mr_chan_recv_until(rv, &r, dl), -ETIMEDOUT);
		EXPECT_GE(mr_now_ns(), dl);
		EXPECT_EQ(mr_chan_try_borrow(rv, &elem), -EAGAIN);
		EXPECT_EQ(mr_chan_borrow_until(rv, &elem, past()), -ETIMEDOUT);
		EXPECT_EQ(mr_chan_borrow_until(rv, &elem, in_ms(10)), -ETIMEDOUT);
		/* Nothing timed out was sent; nothing was lost or doubled. */
		m = msg_make(1, base + 50);
		ASSERT_EQ(mr_chan_send_until(s, &m, in_ms(1000)), 0);
		ASSERT_EQ(mr_chan_recv_until(rv, &r, in_ms(1000)), 0);
		EXPECT_EQ(r.seq, base + 50);
		EXPECT_EQ(mr_chan_try_recv(rv, &r), -EAGAIN);
		EXPECT_EQ(mr_chan_len(s), 0);
	}
	mr_chan_destroy(rv);
	mr_chan_destroy(s);
}

/* Sequenced stream from one process to another and back, many laps. */
struct fifo_arg {
	const char *url;
	long n;
	struct link go, done; /* the channel exists; the child has our stream */
};

static void fifo_child(void *p)
{
	struct fifo_arg *a = p;

	get(&a->go);
	mr_chan_t *r = MUST_OPEN(a->url, 0, 0, MR_CHAN_RECV);
	mr_chan_t *s = MUST_OPEN(a->url, 0, 0, MR_CHAN_SEND);
	struct msg m;

	/* The parent's stream, then ours. */
	for (long i = 0; i < a->n; i++) {
		ASSERT_EQ(mr_chan_recv(r, &m), 0);
		ASSERT_TRUE(msg_ok(&m));
		ASSERT_EQ(m.src, 1);
		ASSERT_EQ(m.seq, (uint64_t)i);
	}
	put(&a->done, 1);
	for (long i = 0; i < a->n; i++) {
		m = msg_make(2, (uint64_t)i);
		ASSERT_EQ(mr_chan_send(s, &m), 0);
	}
	mr_chan_destroy(s);
	mr_chan_destroy(r);
}

TEST(fifo_across_processes)
{
	struct name n;
	struct msg m;

	name_make(&n, "xfifo");
	struct fifo_arg a = { .url = n.url, .n = scaled(50000) };
	link_make(&a.go);
	link_make(&a.done);
	pid_t pid = spawn(fifo_child, &a); /* before our threads (see the top) */
	mr_chan_t *s = MUST_OPEN(n.url, sizeof(m), 16, MR_CHAN_CREATE | MR_CHAN_EXCL | MR_CHAN_SEND);
	mr_chan_t *r = MUST_OPEN(n.url, 0, 0, MR_CHAN_RECV);
	put(&a.go, 1);

	for (long i = 0; i < a.n; i++) {
		m = msg_make(1, (uint64_t)i);
		ASSERT_EQ(mr_chan_send(s, &m), 0);
	}
	get(&a.done); /* else our receiver could take the last of our own */
	for (long i = 0; i < a.n; i++) {
		ASSERT_EQ(mr_chan_recv(r, &m), 0);
		ASSERT_TRUE(msg_ok(&m));
		ASSERT_EQ(m.src, 2);
		ASSERT_EQ(m.seq, (uint64_t)i);
	}
	expect_exit_ok(pid, "fifo child");
	mr_chan_destroy(r);
	mr_chan_destroy(s);
}

/*
 * Close from either process: sends fail with -EPIPE at once (on a full
 * ring too), receivers get what was sent before the close, then -EPIPE,
 * and so do loans and borrows.
 */
struct close_arg {
	const char *url;
	bool child_closes;
	struct link go, done;
};

static void closed_checks(mr_chan_t *ch, bool drain)
{
	struct msg m = msg_make(7, 7), r;
	void *slot;
	const void *elem;

	EXPECT_TRUE(mr_chan_is_closed(ch));
	EXPECT_EQ(mr_chan_send(ch, &m), -EPIPE); /* the ring is full: still at once */
	EXPECT_EQ(mr_chan_try_send(ch, &m), -EPIPE);
	EXPECT_EQ(mr_chan_send_until(ch, &m, in_ms(5000)), -EPIPE);
	EXPECT_EQ(mr_chan_loan(ch, &slot), -EPIPE);
	EXPECT_EQ(mr_chan_try_loan(ch, &slot), -EPIPE);
	EXPECT_EQ(mr_chan_close(ch), -EPIPE);
	if (!drain)
		return;
	for (uint64_t i = 0; i < 3; i++) {
		if (i == 1) {
			ASSERT_EQ(mr_chan_borrow(ch, &elem), 0);
			memcpy(&r, elem, sizeof(r));
			ASSERT_EQ(mr_chan_release(ch, elem), 0);
		} else {
			ASSERT_EQ(mr_chan_recv(ch, &r), 0);
		}
		EXPECT_TRUE(msg_ok(&r));
		EXPECT_EQ(r.seq, i);
	}
	EXPECT_EQ(mr_chan_recv(ch, &r), -EPIPE);
	EXPECT_EQ(mr_chan_try_recv(ch, &r), -EPIPE);
	EXPECT_EQ(mr_chan_recv_until(ch, &r, in_ms(5000)), -EPIPE);
	EXPECT_EQ(mr_chan_borrow(ch, &elem), -EPIPE);
	EXPECT_EQ(mr_chan_try_borrow(ch, &elem), -EPIPE);
	EXPECT_EQ(mr_chan_borrow_until(ch, &elem, in_ms(5000)), -EPIPE);
	EXPECT_EQ(mr_chan_len(ch), 0);
}

static void close_child(void *p)
{
	struct close_arg *a = p;

	get(&a->go); /* the channel exists */
	mr_chan_t *ch = MUST_OPEN(a->url, 0, 0, 0);

	put(&a->done, 1); /* attached */
	get(&a->go);	  /* the ring is full (and closed, unless we close it) */
	if (a->child_closes) {
		EXPECT_FALSE(mr_chan_is_closed(ch));
		ASSERT_EQ(mr_chan_close(ch), 0);
		closed_checks(ch, false);
	} else {
		closed_checks(ch, true);
	}
	mr_chan_destroy(ch);
	put(&a->done, 2);
}

TEST(close_from_either_process)
{
	struct name n[2];
	struct close_arg a[2];
	pid_t pid[2];

	/* Both children first, while this process has one thread. */
	for (int who = 0; who < 2; who++) {
		name_make(&n[who], "close");
		a[who] = (struct close_arg){ .url = n[who].url, .child_closes = who == 1 };
		link_make(&a[who].go);
		link_make(&a[who].done);
		pid[who] = spawn(close_child, &a[who]);
	}
	for (int who = 0; who < 2; who++) {
		struct msg m;

		mr_chan_t *ch = MUST_OPEN(n[who].url, sizeof(m), 3, MR_CHAN_CREATE | MR_CHAN_EXCL);
		put(&a[who].go, 1);
		ASSERT_EQ(get(&a[who].done), 1);
		for (uint64_t i = 0; i < 3; i++) {
			m = msg_make(1, i);
			ASSERT_EQ(mr_chan_send(ch, &m), 0);
		}
		if (!a[who].child_closes)
			ASSERT_EQ(mr_chan_close(ch), 0);
		put(&a[who].go, 1);
		ASSERT_EQ(get(&a[who].done), 2);
		closed_checks(ch, a[who].child_closes);
		expect_exit_ok(pid[who], "close child");
		mr_chan_destroy(ch);
		link_close(&a[who].go);
		link_close(&a[who].done);
	}
}

/*
 * A call blocked in one process (a thread, or a fiber of a runtime there)
 * wakes for what another process does: an element sent, a slot freed, or
 * a close. Ops: recv, borrow, send, loan (the last two on a full ring),
 * select receiving, select sending (with an empty in-process case).
 */
enum { B_RECV, B_BORROW, B_SEND, B_LOAN, B_SEL_RECV, B_SEL_SEND, B_N };
static const char *const b_names[B_N] = { "recv", "borrow", "send", "loan", "select recv",
					  "select send" };

struct blocked {
	const char *url;
	int op;
	bool fiber;
	struct link go, started, done;
	mr_chan_t *ch, *local;
};

static bool b_sends(int op)
{
	return op == B_SEND || op == B_LOAN || op == B_SEL_SEND;
}

static int b_call(struct blocked *b)
{
	struct msg m = msg_make(2, 7), r = { 0 }, dummy;
	void *slot;
	const void *elem;
	int rc = -1000;

	switch (b->op) {
	case B_RECV:
		rc = mr_chan_recv(b->ch, &r);
		break;
	case B_BORROW:
		rc = mr_chan_borrow(b->ch, &elem);
		if (rc == 0) {
			memcpy(&r, elem, sizeof(r));
			EXPECT_EQ(mr_chan_release(b->ch, elem), 0);
		}
		break;
	case B_SEND:
		return mr_chan_send(b->ch, &m);
	case B_LOAN:
		rc = mr_chan_loan(b->ch, &slot);
		if (rc == 0) {
			memcpy(slot, &m, sizeof(m));
			EXPECT_EQ(mr_chan_commit(b->ch, slot), 0);
		}
		return rc;
	case B_SEL_RECV:
	case B_SEL_SEND: {
		struct mr_select_case c[2] = {
			{ b->local, MR_SELECT_RECV, &dummy, 1 },
			{ b->ch, b->op == B_SEL_RECV ? MR_SELECT_RECV : MR_SELECT_SEND,
			  b->op == B_SEL_RECV ? (void *)&r : (void *)&m, 1 },
		};
		int idx = mr_select(c, 2, MR_SELECT_FOREVER);
		if (idx != 1) {
			TH_LOG("select returned %d", idx);
			return -1001;
		}
		rc = c[1].result;
		if (b->op == B_SEL_SEND)
			return rc;
		break;
	}
	}
	/* A receive: it must be the element the parent sent. */
	if (rc == 0 && (!msg_ok(&r) || r.seq != 7)) {
		TH_LOG("%s: received seq %" PRIu64 " (ok %d)", b_names[b->op], r.seq, msg_ok(&r));
		return -1002;
	}
	return rc;
}

static void b_actor(void *p)
{
	struct blocked *b = p;
	int rc;

	put(&b->started, 1);
	rc = b_call(b);
	put(&b->done, (uint64_t)(int64_t)rc);
}

static void blocked_child(void *p)
{
	struct blocked *b = p;
	mr_runtime_t *rt = NULL;
	struct actor a;

	get(&b->go); /* the channel exists */
	b->ch = MUST_OPEN(b->url, 0, 0, b_sends(b->op) ? MR_CHAN_SEND : MR_CHAN_RECV);
	b->local = mr_chan_create(sizeof(struct msg), 1, 0);
	ASSERT_NONNULL(b->local);
	if (b->fiber) {
		rt = make_rt(2);
		ASSERT_NONNULL(rt);
	}
	actor_start(&a, rt, b->fiber, b_actor, b);
	actor_join(&a);
	if (rt)
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	mr_chan_destroy(b->local);
	mr_chan_destroy(b->ch);
}

/* how: 0 the parent does what the blocked call waits for; 1 it closes. */
static void blocked_wakes(int how)
{
	struct name n[B_N][2];
	struct blocked b[B_N][2];
	pid_t pid[B_N][2];

	/* Every child first, while this process has one thread. */
	for (int op = 0; op < B_N; op++)
		for (int fiber = 0; fiber <= 1; fiber++) {
			name_make(&n[op][fiber], "blocked");
			b[op][fiber] = (struct blocked){ .url = n[op][fiber].url, .op = op,
							 .fiber = fiber };
			link_make(&b[op][fiber].go);
			link_make(&b[op][fiber].started);
			link_make(&b[op][fiber].done);
			pid[op][fiber] = spawn(blocked_child, &b[op][fiber]);
		}
	for (int op = 0; op < B_N; op++) {
		for (int fiber = 0; fiber <= 1; fiber++) {
			struct blocked *x = &b[op][fiber];
			struct msg m;
			int64_t rc;

			mr_chan_t *ch = MUST_OPEN(x->url, sizeof(m), 2, MR_CHAN_CREATE | MR_CHAN_EXCL);
			if (b_sends(op))
				for (uint64_t i = 0; i < 2; i++) {
					m = msg_make(1, i);
					ASSERT_EQ(mr_chan_send(ch, &m), 0);
				}
			put(&x->go, 1);
			get(&x->started);
			sleep_ms(20); /* time to block, or to return wrongly */
			if (ready(&x->done)) {
				TH_LOG("%s (%s): returned %" PRId64 " without waiting", b_names[op],
				       fiber ? "fiber" : "thread", (int64_t)get(&x->done));
				mr_test_failed = 1;
				kill(pid[op][fiber], SIGKILL);
				wait_status(pid[op][fiber]);
				mr_chan_destroy(ch);
				continue;
			}
			if (how == 1) {
				ASSERT_EQ(mr_chan_close(ch), 0);
			} else if (b_sends(op)) {
				ASSERT_EQ(mr_chan_recv(ch, &m), 0);
				EXPECT_EQ(m.seq, 0);
			} else {
				m = msg_make(1, 7);
				ASSERT_EQ(mr_chan_send(ch, &m), 0);
			}
			rc = (int64_t)get(&x->done);
			if (rc != (how ? -EPIPE : 0)) {
				TH_LOG("%s (%s): %" PRId64 ", want %d", b_names[op],
				       fiber ? "fiber" : "thread", rc, how ? -EPIPE : 0);
				mr_test_failed = 1;
			}
			expect_exit_ok(pid[op][fiber], b_names[op]);
			if (how == 0 && b_sends(op)) {
				/* What it sent arrived, after what was there. */
				ASSERT_EQ(mr_chan_recv(ch, &m), 0);
				EXPECT_EQ(m.seq, 1);
				ASSERT_EQ(mr_chan_recv(ch, &m), 0);
				EXPECT_TRUE(msg_ok(&m));
				EXPECT_EQ(m.src, 2);
				EXPECT_EQ(m.seq, 7);
			}
			if (how == 1 && b_sends(op))
				for (uint64_t i = 0; i < 2; i++) {
					ASSERT_EQ(mr_chan_recv(ch, &m), 0);
					EXPECT_EQ(m.seq, i);
				}
			EXPECT_EQ(mr_chan_try_recv(ch, &m), how ? -EPIPE : -EAGAIN);
			mr_chan_destroy(ch);
			link_close(&x->go);
			link_close(&x->started);
			link_close(&x->done);
		}
	}
}

TEST(blocked_call_wakes_for_another_process)
{
	blocked_wakes(0);
}

TEST(blocked_call_wakes_on_close_in_another_process)
{
	blocked_wakes(1);
}

/* ---- many processes, many senders and receivers --------------------------------------- */

#define MP_SENDERS 2
#define MP_RECEIVERS 2

struct mp_shared {
	atomic_int senders_left;
	atomic_long dups, disorder, torn, received;
	_Atomic uint64_t bits[];
};

struct mp {
	const char *url;
	struct mp_shared *sh;
	int nproc, proc;
	long per_sender;
	int mode; /* 0 threads, 1 fibers, 2 senders fibers and receivers threads or the reverse */
	struct link go;
};

struct mp_worker {
	struct mp *mp;
	mr_chan_t *ch;
	uint32_t src;
	struct actor a;
};

static void mp_sender(void *p)
{
	struct mp_worker *w = p;

	for (long i = 0; i < w->mp->per_sender; i++) {
		struct msg m = msg_make(w->src, (uint64_t)i);
		int rc;

		if (i % 3 == 0) {
			void *slot;

			rc = mr_chan_loan(w->ch, &slot);
			if (rc == 0) {
				memcpy(slot, &m, sizeof(m));
				rc = mr_chan_commit(w->ch, slot);
			}
		} else {
			rc = mr_chan_send(w->ch, &m);
		}
		ASSERT_EQ(rc, 0);
	}
	/* The last sender of all the processes closes the channel. */
	if (atomic_fetch_sub(&w->mp->sh->senders_left, 1) == 1)
		ASSERT_EQ(mr_chan_close(w->ch), 0);
}

static void mp_receiver(void *p)
{
	struct mp_worker *w = p;
	struct mp *mp = w->mp;
	uint32_t nsend = (uint32_t)(mp->nproc * MP_SENDERS);
	int64_t *last = malloc(nsend * sizeof(*last));

	ASSERT_NONNULL(last);
	for (uint32_t i = 0; i < nsend; i++)
		last[i] = -1;
	for (unsigned k = 0;; k++) {
		struct msg m;
		int rc;

		if (k % 4 == 3) {
			const void *e;

			rc = mr_chan_borrow(w->ch, &e);
			if (rc == 0) {
				memcpy(&m, e, sizeof(m));
				ASSERT_EQ(mr_chan_release(w->ch, e), 0);
			}
		} else {
			rc = mr_chan_recv(w->ch, &m);
		}
		if (rc == -EPIPE)
			break;
		ASSERT_EQ(rc, 0);
		if (!msg_ok(&m) || m.src >= nsend || m.seq >= (uint64_t)mp->per_sender) {
			atomic_fetch_add(&mp->sh->torn, 1);
			continue;
		}
		uint64_t idx = (uint64_t)m.src * (uint64_t)mp->per_sender + m.seq;
		uint64_t bit = 1ull << (idx & 63);
		if (atomic_fetch_or(&mp->sh->bits[idx >> 6], bit) & bit)
			atomic_fetch_add(&mp->sh->dups, 1);
		/* Slots are taken in order: one receiver sees each sender's
		 * elements in the order they were sent. */
		if ((int64_t)m.seq <= last[m.src])
			atomic_fetch_add(&mp->sh->disorder, 1);
		last[m.src] = (int64_t)m.seq;
		atomic_fetch_add(&mp->sh->received, 1);
	}
	free(last);
}

static void mp_proc(void *p)
{
	struct mp *mp = p;
	struct mp_worker w[MP_SENDERS + MP_RECEIVERS];
	bool send_fiber = mp->mode == 1 || (mp->mode == 2 && mp->proc % 2 == 0);
	bool recv_fiber = mp->mode == 1 || (mp->mode == 2 && mp->proc % 2 == 1);
	mr_runtime_t *rt = NULL;

	get(&mp->go); /* the channel exists */
	mr_chan_t *hs = MUST_OPEN(mp->url, 0, 0, MR_CHAN_SEND);
	mr_chan_t *hr = MUST_OPEN(mp->url, 0, 0, MR_CHAN_RECV);

	if (send_fiber || recv_fiber) {
		rt = make_rt(2);
		ASSERT_NONNULL(rt);
	}
	for (int i = 0; i < MP_SENDERS + MP_RECEIVERS; i++) {
		bool snd = i < MP_SENDERS;

		w[i].mp = mp;
		w[i].ch = snd ? hs : hr;
		w[i].src = (uint32_t)(mp->proc * MP_SENDERS + i);
		actor_start(&w[i].a, rt, snd ? send_fiber : recv_fiber, snd ? mp_sender : mp_receiver,
			    &w[i]);
	}
	for (int i = 0; i < MP_SENDERS + MP_RECEIVERS; i++)
		actor_join(&w[i].a);
	if (rt)
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	mr_chan_destroy(hr);
	mr_chan_destroy(hs);
}

static void mp_run(int nproc, int mode, long per_sender)
{
	struct name n;
	long total = (long)nproc * MP_SENDERS * per_sender;
	size_t words = (size_t)(total + 63) / 64;
	struct mp_shared *sh = shared(sizeof(*sh) + words * sizeof(uint64_t));
	struct mp mp = { .sh = sh, .nproc = nproc, .per_sender = per_sender, .mode = mode };
	pid_t pids[8];
	long set = 0;

	name_make(&n, "mp");
	mp.url = n.url;
	atomic_store(&sh->senders_left, nproc * MP_SENDERS);
	link_make(&mp.go);
	for (int i = 0; i < nproc; i++) {
		mp.proc = i;
		pids[i] = spawn(mp_proc, &mp); /* before our threads (see the top) */
	}
	mr_chan_t *h = MUST_OPEN(n.url, sizeof(struct msg), 64, MR_CHAN_CREATE | MR_CHAN_EXCL);
	for (int i = 0; i < nproc; i++)
		put(&mp.go, 1);
	for (int i = 0; i < nproc; i++)
		expect_exit_ok(pids[i], "process");
	for (size_t i = 0; i < words; i++)
		set += __builtin_popcountll(atomic_load(&sh->bits[i]));
	TH_LOG("%d processes x (%d senders, %d receivers), %s: %ld received of %ld", nproc,
	       MP_SENDERS, MP_RECEIVERS, mode == 0 ? "threads" : mode == 1 ? "fibers" : "mixed",
	       atomic_load(&sh->received), total);
	EXPECT_EQ(set, total);
	EXPECT_EQ(atomic_load(&sh->received), total);
	EXPECT_EQ(atomic_load(&sh->dups), 0);
	EXPECT_EQ(atomic_load(&sh->disorder), 0);
	EXPECT_EQ(atomic_load(&sh->torn), 0);
	EXPECT_TRUE(mr_chan_is_closed(h));
	mr_chan_destroy(h);
	EXPECT_FALSE(seg_exists(&n));
	munmap(sh, sizeof(*sh) + words * sizeof(uint64_t));
	link_close(&mp.go);
}

TEST(two_processes_threads)
{
	mp_run(2, 0, scaled(20000));
}

TEST(two_processes_fibers)
{
	mp_run(2, 1, scaled(20000));
}

TEST(four_processes_threads)
{
	mp_run(4, 0, scaled(10000));
}

TEST(four_processes_fibers)
{
	mp_run(4, 1, scaled(10000));
}

TEST(four_processes_fibers_and_threads)
{
	mp_run(4, 2, scaled(10000));
}

/*
 * Select over an inproc:// channel and a shm:// one, from a fiber and from
 * a thread: receiving from both (a local thread feeds one, another process
 * the other), then sending on the shm one (the other process receives, so
 * a select waiting for space wakes for a process that is not its own).
 */
struct sel {
	const char *url;
	long k;
	mr_chan_t *ip, *shr, *shs;
	struct link go, phase2;
};

static void sel_feeder(void *p)
{
	struct sel *x = p;

	for (long i = 0; i < x->k; i++) {
		struct msg m = msg_make(1, (uint64_t)i);
		ASSERT_EQ(mr_chan_send(x->ip, &m), 0);
	}
}

static void sel_body(void *p)
{
	struct sel *x = p;
	long got_ip = 0, got_sh = 0;
	struct msg a, b, dummy;

	while (got_ip < x->k || got_sh < x->k) {
		struct mr_select_case c[2] = {
			{ x->ip, got_ip < x->k ? MR_SELECT_RECV : MR_SELECT_SKIP, &a, 1 },
			{ x->shr, got_sh < x->k ? MR_SELECT_RECV : MR_SELECT_SKIP, &b, 1 },
		};
		int idx = mr_select(c, 2, MR_SELECT_FOREVER);

		ASSERT_TRUE(idx == 0 || idx == 1);
		ASSERT_EQ(c[idx].result, 0);
		if (idx == 0) {
			ASSERT_TRUE(msg_ok(&a));
			ASSERT_EQ(a.src, 1);
			ASSERT_EQ(a.seq, (uint64_t)got_ip++);
		} else {
			ASSERT_TRUE(msg_ok(&b));
			ASSERT_EQ(b.src, 2);
			ASSERT_EQ(b.seq, (uint64_t)got_sh++);
		}
	}
	/* Nothing more to receive: poll and a deadline say so. */
	struct mr_select_case c[2] = {
		{ x->ip, MR_SELECT_RECV, &a, 1 },
		{ x->shr, MR_SELECT_RECV, &b, 1 },
	};
	EXPECT_EQ(mr_select(c, 2, MR_SELECT_POLL), -EAGAIN);
	EXPECT_EQ(mr_select(c, 2, past()), -ETIMEDOUT);
	EXPECT_EQ(mr_select(c, 2, in_ms(10)), -ETIMEDOUT);
	put(&x->phase2, 1);
	for (long i = 0; i < x->k; i++) {
		struct msg m = msg_make(3, (uint64_t)i);
		struct mr_select_case s[2] = {
			{ x->ip, MR_SELECT_RECV, &dummy, 1 },
			{ x->shs, MR_SELECT_SEND, &m, 1 },
		};
		ASSERT_EQ(mr_select(s, 2, MR_SELECT_FOREVER), 1);
		ASSERT_EQ(s[1].result, 0);
	}
}

static void sel_child(void *p)
{
	struct sel *x = p;

	get(&x->go); /* the channel exists */
	mr_chan_t *s = MUST_OPEN(x->url, 0, 0, MR_CHAN_SEND);
	mr_chan_t *r = MUST_OPEN(x->url, 0, 0, MR_CHAN_RECV);
	struct msg m;

	for (long i = 0; i < x->k; i++) {
		m = msg_make(2, (uint64_t)i);
		ASSERT_EQ(mr_chan_send(s, &m), 0);
	}
	get(&x->phase2); /* the selector has all of ours: now receive its */
	for (long i = 0; i < x->k; i++) {
		ASSERT_EQ(mr_chan_recv(r, &m), 0);
		ASSERT_TRUE(msg_ok(&m));
		ASSERT_EQ(m.src, 3);
		ASSERT_EQ(m.seq, (uint64_t)i);
	}
	mr_chan_destroy(r);
	mr_chan_destroy(s);
}

static void select_mixed(bool fiber)
{
	struct name n;
	struct sel x = { .k = scaled(5000) };
	struct actor feeder, selector;
	mr_runtime_t *rt = NULL;

	name_make(&n, "sel");
	x.url = n.url;
	link_make(&x.go);
	link_make(&x.phase2);
	pid_t pid = spawn(sel_child, &x); /* before any thread of ours */
	x.shr = MUST_OPEN(n.url, sizeof(struct msg), 4,
			  MR_CHAN_CREATE | MR_CHAN_EXCL | MR_CHAN_RECV);
	x.shs = MUST_OPEN(n.url, 0, 0, MR_CHAN_SEND);
	x.ip = MUST_OPEN(n.inproc, sizeof(struct msg), 4, MR_CHAN_CREATE | MR_CHAN_EXCL);
	put(&x.go, 1);
	if (fiber) {
		rt = make_rt(2);
		ASSERT_NONNULL(rt);
	}
	actor_start(&feeder, NULL, false, sel_feeder, &x);
	actor_start(&selector, rt, fiber, sel_body, &x);
	actor_join(&selector);
	actor_join(&feeder);
	expect_exit_ok(pid, "select peer");
	if (rt)
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	mr_chan_destroy(x.ip);
	mr_chan_destroy(x.shs);
	mr_chan_destroy(x.shr);
	link_close(&x.go);
	link_close(&x.phase2);
}

TEST(select_mixes_inproc_and_shm_thread)
{
	select_mixed(false);
}

TEST(select_mixes_inproc_and_shm_fiber)
{
	select_mixed(true);
}

/* ---- loans and borrows ------------------------------------------------------------ */

#define LB_SIZE 64
#define LB_ALIGN 64

static void *loan_ok(mr_chan_t *ch, const struct name *n, uint64_t seq)
{
	void *p = NULL;

	ASSERT_EQ(mr_chan_try_loan(ch, &p), 0);
	ASSERT_NONNULL(p);
	EXPECT_EQ((uintptr_t)p % LB_ALIGN, 0);
	EXPECT_TRUE(in_segment(p, LB_SIZE, n->path));
	fill(p, LB_SIZE, seq);
	return p;
}

static const void *borrow_ok(mr_chan_t *ch, const struct name *n, uint64_t seq)
{
	const void *e = NULL;

	ASSERT_EQ(mr_chan_try_borrow(ch, &e), 0);
	ASSERT_NONNULL(e);
	EXPECT_EQ((uintptr_t)e % LB_ALIGN, 0);
	EXPECT_TRUE(in_segment(e, LB_SIZE, n->path));
	if (!intact(e, LB_SIZE, seq)) {
		TH_LOG("borrowed element is not #%" PRIu64, seq);
		mr_test_failed = 1;
	}
	return e;
}

static void recv_seq(mr_chan_t *ch, uint64_t seq)
{
	uint8_t *b = rbuf_new(LB_SIZE);

	ASSERT_EQ(mr_chan_try_recv(ch, b), 0);
	if (!intact(b, LB_SIZE, seq)) {
		TH_LOG("received element is not #%" PRIu64, seq);
		mr_test_failed = 1;
	}
	EXPECT_TRUE(canary_ok(b, LB_SIZE));
	free(b);
}

TEST(loans_and_borrows)
{
	struct name n;
	uint8_t buf[LB_SIZE];
	void *p[4], *slot;
	const void *e[4], *elem;
	uint64_t local = 0;

	name_make(&n, "loan");
	MR_OPTS(mr_chan_open_opts, o, .elem_size = LB_SIZE, .capacity = 4, .elem_align = LB_ALIGN,
		.flags = MR_CHAN_CREATE | MR_CHAN_EXCL | MR_CHAN_SEND);
	mr_chan_t *s = MUST_OPEN_OPTS(n.url, &o);
	mr_chan_t *s2 = MUST_OPEN(n.url, 0, 0, MR_CHAN_SEND);
	mr_chan_t *r = MUST_OPEN(n.url, 0, 0, MR_CHAN_RECV);
	mr_chan_t *r2 = MUST_OPEN(n.url, 0, 0, MR_CHAN_RECV);

	/* Loan, commit, borrow, release. */
	p[0] = loan_ok(s, &n, 1);
	EXPECT_EQ(mr_chan_try_recv(r, buf), -EAGAIN); /* not committed yet */
	ASSERT_EQ(mr_chan_commit(s, p[0]), 0);
	EXPECT_EQ(mr_chan_len(r), 1);
	e[0] = borrow_ok(r, &n, 1);
	ASSERT_EQ(mr_chan_release(r, e[0]), 0);
	EXPECT_EQ(mr_chan_len(r), 0);

	/* Mixed with copies, in order. */
	fill(buf, LB_SIZE, 2);
	ASSERT_EQ(mr_chan_send(s, buf), 0);
	p[0] = loan_ok(s, &n, 3);
	ASSERT_EQ(mr_chan_commit(s, p[0]), 0);
	fill(buf, LB_SIZE, 4);
	ASSERT_EQ(mr_chan_send(s, buf), 0);
	e[0] = borrow_ok(r, &n, 2);
	ASSERT_EQ(mr_chan_release(r, e[0]), 0);
	recv_seq(r, 3);
	e[0] = borrow_ok(r, &n, 4);
	ASSERT_EQ(mr_chan_release(r, e[0]), 0);

	/* Several loans at once: receivers wait at the first one. */
	for (int i = 0; i < 3; i++)
		p[i] = loan_ok(s, &n, 10 + (uint64_t)i);
	EXPECT_TRUE(p[0] != p[1] && p[1] != p[2] && p[0] != p[2]);
	ASSERT_EQ(mr_chan_commit(s, p[2]), 0);
	ASSERT_EQ(mr_chan_commit(s, p[1]), 0);
	EXPECT_EQ(mr_chan_try_recv(r, buf), -EAGAIN);
	EXPECT_EQ(mr_chan_try_borrow(r, &elem), -EAGAIN);
	EXPECT_EQ(mr_chan_recv_until(r, buf, in_ms(10)), -ETIMEDOUT);
	ASSERT_EQ(mr_chan_commit(s, p[0]), 0);
	recv_seq(r, 10);
	recv_seq(r, 11);
	recv_seq(r, 12);
	EXPECT_EQ(mr_chan_try_recv(r, buf), -EAGAIN);

	/* Loans fill the ring as elements do. */
	for (int i = 0; i < 4; i++)
		p[i] = loan_ok(i % 2 ? s2 : s, &n, 20 + (uint64_t)i);
	EXPECT_EQ(mr_chan_try_loan(s, &slot), -EAGAIN);
	EXPECT_EQ(mr_chan_try_send(s2, buf), -EAGAIN);
	for (int i = 0; i < 4; i++)
		ASSERT_EQ(mr_chan_commit(i % 2 ? s2 : s, p[i]), 0);
	EXPECT_EQ(mr_chan_len(r), 4);
	for (int i = 0; i < 4; i++)
		recv_seq(r2, 20 + (uint64_t)i);

	/* Discard: the slot is skipped, receivers get the next. */
	p[0] = loan_ok(s, &n, 30);
	p[1] = loan_ok(s, &n, 31);
	ASSERT_EQ(mr_chan_discard(s, p[0]), 0);
	ASSERT_EQ(mr_chan_commit(s, p[1]), 0);
	recv_seq(r, 31);
	EXPECT_EQ(mr_chan_try_recv(r, buf), -EAGAIN);
	for (int i = 0; i < 13; i++) { /* laps of discarded slots */
		p[0] = loan_ok(s, &n, 40);
		ASSERT_EQ(mr_chan_discard(s, p[0]), 0);
		EXPECT_EQ(mr_chan_try_recv(r, buf), -EAGAIN);
		EXPECT_EQ(mr_chan_try_borrow(r, &elem), -EAGAIN);
	}
	fill(buf, LB_SIZE, 41);
	ASSERT_EQ(mr_chan_send(s, buf), 0);
	recv_seq(r, 41);

	/* Several borrows at once, released out of order; a borrowed slot is
	 * not free for senders. */
	for (int i = 0; i < 4; i++) {
		fill(buf, LB_SIZE, 50 + (uint64_t)i);
		ASSERT_EQ(mr_chan_send(s, buf), 0);
	}
	for (int i = 0; i < 3; i++)
		e[i] = borrow_ok(i == 1 ? r2 : r, &n, 50 + (uint64_t)i);
	EXPECT_TRUE(e[0] != e[1] && e[1] != e[2] && e[0] != e[2]);
	EXPECT_EQ(mr_chan_try_send(s, buf), -EAGAIN);
	EXPECT_EQ(mr_chan_try_loan(s, &slot), -EAGAIN);
	ASSERT_EQ(mr_chan_release(r2, e[1]), 0);
	ASSERT_EQ(mr_chan_release(r, e[2]), 0);
	ASSERT_EQ(mr_chan_release(r, e[0]), 0);
	recv_seq(r, 53);
	for (int i = 0; i < 4; i++) {
		fill(buf, LB_SIZE, 60 + (uint64_t)i);
		ASSERT_EQ(mr_chan_try_send(s, buf), 0);
	}
	e[0] = borrow_ok(r, &n, 60);
	EXPECT_EQ(mr_chan_try_send(s, buf), -EAGAIN);
	ASSERT_EQ(mr_chan_release(r, e[0]), 0);
	fill(buf, LB_SIZE, 64);
	EXPECT_EQ(mr_chan_try_send(s, buf), 0);
	for (int i = 1; i < 5; i++)
		recv_seq(r, 60 + (uint64_t)i);

	/* Pointers that are not this handle's open loans or borrows. */
	EXPECT_EQ(mr_chan_release(r, NULL), -EINVAL);
	EXPECT_EQ(mr_chan_release(r, &local), -EINVAL);
	EXPECT_EQ(mr_chan_commit(s, NULL), -EINVAL);
	EXPECT_EQ(mr_chan_commit(s, &local), -EINVAL);
	EXPECT_EQ(mr_chan_discard(s, NULL), -EINVAL);
	EXPECT_EQ(mr_chan_discard(s, &local), -EINVAL);
	fill(buf, LB_SIZE, 70);
	ASSERT_EQ(mr_chan_send(s, buf), 0);
	e[0] = borrow_ok(r, &n, 70);
	EXPECT_EQ(mr_chan_release(r, (const uint8_t *)e[0] + 1), -EINVAL);
	EXPECT_EQ(mr_chan_release(r, (const uint8_t *)e[0] + LB_SIZE), -EINVAL);
	EXPECT_EQ(mr_chan_release(r2, e[0]), -EINVAL); /* another handle's */
	ASSERT_EQ(mr_chan_release(r, e[0]), 0);
	EXPECT_EQ(mr_chan_release(r, e[0]), -EINVAL); /* twice */
	p[0] = loan_ok(s, &n, 71);
	EXPECT_EQ(mr_chan_commit(s, (uint8_t *)p[0] + 8), -EINVAL);
	EXPECT_EQ(mr_chan_commit(s2, p[0]), -EINVAL); /* another handle's */
	EXPECT_EQ(mr_chan_discard(s2, p[0]), -EINVAL);
	EXPECT_EQ(mr_chan_release(r, p[0]), -EINVAL); /* a loan is no borrow */
	ASSERT_EQ(mr_chan_commit(s, p[0]), 0);
	EXPECT_EQ(mr_chan_commit(s, p[0]), -EINVAL); /* twice */
	EXPECT_EQ(mr_chan_discard(s, p[0]), -EINVAL);
	e[0] = borrow_ok(r, &n, 71);
	EXPECT_EQ(mr_chan_commit(s, (void *)e[0]), -EINVAL); /* a borrow is no loan */
	ASSERT_EQ(mr_chan_release(r, e[0]), 0);
	EXPECT_EQ(mr_chan_try_recv(r, buf), -EAGAIN);
	EXPECT_EQ(mr_chan_len(r), 0);

	mr_chan_destroy(r2);
	mr_chan_destroy(r);
	mr_chan_destroy(s2);
	mr_chan_destroy(s);
}

/* Alignment of loans and borrows is the channel's elem_align. */
TEST(loans_are_aligned)
{
	struct name n;

	for (size_t al = 1; al <= 4096; al *= 4) {
		for (size_t sz = 1; sz <= 100; sz += 33) {
			void *p;
			const void *e;

			name_make(&n, "align");
			MR_OPTS(mr_chan_open_opts, o, .elem_size = sz, .capacity = 5, .elem_align = al,
				.flags = MR_CHAN_CREATE | MR_CHAN_EXCL);
			mr_chan_t *ch = MUST_OPEN_OPTS(n.url, &o);
			for (int i = 0; i < 12; i++) {
				ASSERT_EQ(mr_chan_loan(ch, &p), 0);
				EXPECT_EQ((uintptr_t)p % al, 0);
				EXPECT_TRUE(in_segment(p, sz, n.path));
				fill(p, sz, (uint64_t)i);
				ASSERT_EQ(mr_chan_commit(ch, p), 0);
				ASSERT_EQ(mr_chan_borrow(ch, &e), 0);
				EXPECT_TRUE(e == p);
				EXPECT_TRUE(intact(e, sz, (uint64_t)i));
				ASSERT_EQ(mr_chan_release(ch, e), 0);
			}
			mr_chan_destroy(ch);
		}
	}
	/* elem_align 0 is 8. */
	name_make(&n, "align");
	mr_chan_t *ch = MUST_OPEN(n.url, 3, 7, MR_CHAN_CREATE | MR_CHAN_EXCL);
	for (int i = 0; i < 20; i++) {
		void *p;

		ASSERT_EQ(mr_chan_loan(ch, &p), 0);
		EXPECT_EQ((uintptr_t)p % 8, 0);
		ASSERT_EQ(mr_chan_discard(ch, p), 0);
	}
	mr_chan_destroy(ch);
}

/* A 1 MiB element written in place in one process arrives intact in another;
 * blocked loans and borrows wake for the other process's release / commit. */
#define BIG ((size_t)1 << 20)
#define BIG_LOANS 16
#define BIG_COPIES 4

static void big_child(void *p)
{
	const char *url = gated_wait(p);
	mr_chan_t *s = MUST_OPEN(url, BIG, 0, MR_CHAN_SEND);
	uint8_t *buf = malloc(BIG);

	ASSERT_NONNULL(buf);
	for (uint64_t i = 0; i < BIG_LOANS; i++) {
		void *slot;

		ASSERT_EQ(mr_chan_loan(s, &slot), 0); /* waits for a release */
		fill(slot, BIG, i);
		ASSERT_EQ(mr_chan_commit(s, slot), 0);
	}
	for (uint64_t i = 0; i < BIG_COPIES; i++) {
		fill(buf, BIG, BIG_LOANS + i);
		ASSERT_EQ(mr_chan_send(s, buf), 0);
	}
	free(buf);
	mr_chan_destroy(s);
}

TEST(one_mib_element_in_place)
{
	struct name n;

	struct gated g;

	name_make(&n, "big");
	gated_make(&g, n.url);
	pid_t pid = spawn(big_child, &g); /* before our threads (see the top) */
	mr_chan_t *r = MUST_OPEN(n.url, BIG, 4, MR_CHAN_CREATE | MR_CHAN_EXCL | MR_CHAN_RECV);
	uint8_t *buf = rbuf_new(BIG);

	put(&g.go, 1);
	EXPECT_EQ(mr_chan_elem_size(r), BIG);
	for (uint64_t i = 0; i < BIG_LOANS + BIG_COPIES; i++) {
		if (i % 2 == 0) {
			const void *e;

			ASSERT_EQ(mr_chan_borrow(r, &e), 0); /* waits for a commit */
			EXPECT_EQ((uintptr_t)e % 8, 0);
			EXPECT_TRUE(in_segment(e, BIG, n.path));
			if (!intact(e, BIG, i)) {
				TH_LOG("borrowed 1 MiB element %" PRIu64 " is not intact", i);
				mr_test_failed = 1;
			}
			ASSERT_EQ(mr_chan_release(r, e), 0);
		} else {
			ASSERT_EQ(mr_chan_recv(r, buf), 0);
			if (!intact(buf, BIG, i)) {
				TH_LOG("received 1 MiB element %" PRIu64 " is not intact", i);
				mr_test_failed = 1;
			}
			EXPECT_TRUE(canary_ok(buf, BIG));
		}
	}
	expect_exit_ok(pid, "1 MiB sender");
	free(buf);
	mr_chan_destroy(r);
}

/*
 * A fiber blocked on a shm channel (recv, borrow on an empty ring; send,
 * loan on a full one) is a cancellation point like any channel wait: it
 * returns -ECANCELED having done nothing, and the channel goes on.
 */
struct cancel_shm {
	mr_chan_t *s, *r;
	int op; /* B_RECV, B_BORROW, B_SEND, B_LOAN */
	atomic_int started, result;
};

static void cancel_victim(void *p)
{
	struct cancel_shm *c = p;
	struct blocked b = { .op = c->op, .ch = b_sends(c->op) ? c->s : c->r };

	atomic_store(&c->started, 1);
	atomic_store(&c->result, b_call(&b));
}

TEST(blocked_fiber_is_cancelled)
{
	static const int ops[] = { B_RECV, B_BORROW, B_SEND, B_LOAN };
	struct name n;
	struct msg m;
	mr_runtime_t *rt = make_rt(2);

	ASSERT_NONNULL(rt);
	for (int i = 0; i < 4; i++) {
		struct cancel_shm c = { .op = ops[i] };

		name_make(&n, "cancel");
		c.s = MUST_OPEN(n.url, sizeof(m), 2, MR_CHAN_CREATE | MR_CHAN_EXCL | MR_CHAN_SEND);
		c.r = MUST_OPEN(n.url, 0, 0, MR_CHAN_RECV);
		if (b_sends(c.op))
			for (uint64_t k = 0; k < 2; k++) {
				m = msg_make(1, k);
				ASSERT_EQ(mr_chan_send(c.s, &m), 0);
			}
		atomic_store(&c.result, 1);
		MR_OPTS(mr_fiber_opts, o, .runtime = rt);
		mr_fiber_t *f = mr_go_opts(cancel_victim, &c, &o);
		ASSERT_NONNULL(f);
		while (!atomic_load(&c.started))
			sleep_ms(1);
		sleep_ms(20); /* blocked by now, most likely; either way it is cancelled */
		EXPECT_EQ(atomic_load(&c.result), 1);
		ASSERT_EQ(mr_fiber_cancel(f), 0);
		ASSERT_EQ(mr_fiber_join(f), 0);
		if (atomic_load(&c.result) != -ECANCELED) {
			TH_LOG("%s: %d, want -ECANCELED", b_names[c.op], atomic_load(&c.result));
			mr_test_failed = 1;
		}
		/* Nothing was done: the ring holds what it held, and works. */
		EXPECT_EQ(mr_chan_len(c.r), b_sends(c.op) ? 2 : 0);
		for (uint64_t k = 0; b_sends(c.op) && k < 2; k++) {
			ASSERT_EQ(mr_chan_recv(c.r, &m), 0);
			EXPECT_EQ(m.seq, k);
		}
		m = msg_make(1, 9);
		ASSERT_EQ(mr_chan_send(c.s, &m), 0);
		ASSERT_EQ(mr_chan_recv(c.r, &m), 0);
		EXPECT_EQ(m.seq, 9);
		EXPECT_EQ(mr_chan_try_recv(c.r, &m), -EAGAIN);
		mr_chan_destroy(c.r);
		mr_chan_destroy(c.s);
	}
	ASSERT_EQ(mr_runtime_destroy(rt), 0);
}

/* Destroying a handle with a loan or a borrow not given back aborts naming
 * mr_chan_destroy (chan.h); each case in a child. */
static void destroy_open_child(void *p)
{
	int borrow = *(int *)p;
	struct name n;
	uint8_t buf[16] = { 0 };
	void *slot;
	const void *e;

	name_make(&n, "dtor");
	mr_chan_t *ch = MUST_OPEN(n.url, 16, 4, MR_CHAN_CREATE | MR_CHAN_EXCL);
	if (borrow) {
		ASSERT_EQ(mr_chan_send(ch, buf), 0);
		ASSERT_EQ(mr_chan_borrow(ch, &e), 0);
	} else {
		ASSERT_EQ(mr_chan_loan(ch, &slot), 0);
	}
	mr_chan_unlink(n.url);
	mr_chan_destroy(ch);
	_exit(0); /* not reached, if it aborts */
}

TEST(destroy_with_a_loan_or_borrow_aborts)
{
	for (int borrow = 0; borrow <= 1; borrow++) {
		char buf[2048];
		int st = mr_test_run_child(destroy_open_child, &borrow, buf, sizeof(buf));

		EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
		ASSERT_STR_CONTAINS(buf, "mr_chan_destroy");
	}
}

/* ---- peer death ------------------------------------------------------------------- */

/*
 * The only sender process (opened MR_CHAN_SEND) is SIGKILLed while a
 * receiver of this process (a thread or a fiber) waits: the receiver gets
 * what it sent, then -ECONNRESET, and so do later calls. A new sender
 * attaching ends that: a receiver waits again, and gets its element.
 */
struct dead {
	const char *url;
	struct link start, ready, go;
	mr_chan_t *ch;
	atomic_long got;
	int rc;
	atomic_int started, returned;
};

static void dead_sender_child(void *p)
{
	struct dead *d = p;

	get(&d->start); /* the channel exists */
	mr_chan_t *s = MUST_OPEN(d->url, 0, 0, MR_CHAN_SEND);

	for (uint64_t i = 0; i < 5; i++) {
		struct msg m = msg_make(1, i);
		ASSERT_EQ(mr_chan_send(s, &m), 0);
	}
	put(&d->ready, 1);
	for (;;)
		pause(); /* until SIGKILL */
}

static void new_sender_child(void *p)
{
	struct dead *d = p;

	get(&d->go); /* attach when told */
	mr_chan_t *s = MUST_OPEN(d->url, 0, 0, MR_CHAN_SEND);
	put(&d->ready, 2);
	get(&d->go);
	struct msg m = msg_make(2, 100);
	ASSERT_EQ(mr_chan_send(s, &m), 0);
	get(&d->go);
	mr_chan_destroy(s);
}

static void dead_receiver_loop(void *p)
{
	struct dead *d = p;
	struct msg m;
	int rc;

	atomic_store(&d->started, 1);
	while ((rc = mr_chan_recv(d->ch, &m)) == 0) {
		long got = atomic_load(&d->got);

		if (!msg_ok(&m) || m.seq != (uint64_t)(got < 5 ? got : 100)) {
			TH_LOG("element %ld: seq %" PRIu64 " ok %d", got, m.seq, msg_ok(&m));
			mr_test_failed = 1;
		}
		if (atomic_fetch_add(&d->got, 1) + 1 == 6)
			break;
	}
	d->rc = rc;
	atomic_store(&d->returned, 1);
}

static void wait_started(atomic_int *started)
{
	while (!atomic_load(started))
		sleep_ms(1);
	sleep_ms(20); /* time to block, or to return wrongly */
}

static void dead_sender(bool fiber)
{
	struct name n;
	struct dead d = { 0 };
	struct actor a;
	mr_runtime_t *rt = NULL;
	struct msg m;
	const void *e;

	name_make(&n, "deadsnd");
	d.url = n.url;
	link_make(&d.start);
	link_make(&d.ready);
	link_make(&d.go);
	pid_t victim = spawn(dead_sender_child, &d);
	pid_t next = spawn(new_sender_child, &d); /* both before any thread */
	d.ch = MUST_OPEN(n.url, sizeof(m), 8, MR_CHAN_CREATE | MR_CHAN_EXCL | MR_CHAN_RECV);
	put(&d.start, 1);
	ASSERT_EQ(get(&d.ready), 1);
	if (fiber) {
		rt = make_rt(2);
		ASSERT_NONNULL(rt);
	}
	actor_start(&a, rt, fiber, dead_receiver_loop, &d);
	while (atomic_load(&d.got) < 5 && !atomic_load(&d.returned))
		sleep_ms(1);
	wait_started(&d.started);
	EXPECT_EQ(atomic_load(&d.returned), 0);
	EXPECT_EQ(atomic_load(&d.got), 5);
	kill(victim, SIGKILL);
	expect_sigkilled(victim, "sender");
	actor_join(&a);
	EXPECT_EQ(atomic_load(&d.got), 5);
	EXPECT_EQ(d.rc, -ECONNRESET);
	EXPECT_EQ(mr_chan_recv(d.ch, &m), -ECONNRESET);
	EXPECT_EQ(mr_chan_try_recv(d.ch, &m), -ECONNRESET);
	EXPECT_EQ(mr_chan_recv_until(d.ch, &m, in_ms(1000)), -ECONNRESET);
	EXPECT_EQ(mr_chan_borrow(d.ch, &e), -ECONNRESET);
	EXPECT_EQ(mr_chan_try_borrow(d.ch, &e), -ECONNRESET);
	EXPECT_FALSE(mr_chan_is_closed(d.ch));

	/* A new sender attaches: the receiver waits again, then receives. */
	put(&d.go, 1);
	ASSERT_EQ(get(&d.ready), 2);
	EXPECT_EQ(mr_chan_try_recv(d.ch, &m), -EAGAIN);
	atomic_store(&d.started, 0);
	atomic_store(&d.returned, 0);
	actor_start(&a, rt, fiber, dead_receiver_loop, &d);
	wait_started(&d.started);
	EXPECT_EQ(atomic_load(&d.returned), 0);
	put(&d.go, 2);
	actor_join(&a);
	EXPECT_EQ(d.rc, 0);
	EXPECT_EQ(atomic_load(&d.got), 6);
	put(&d.go, 3);
	expect_exit_ok(next, "new sender");
	if (rt)
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	mr_chan_destroy(d.ch);
}

TEST(dead_sender_receiver_thread_gets_econnreset)
{
	dead_sender(false);
}

TEST(dead_sender_receiver_fiber_gets_econnreset)
{
	dead_sender(true);
}

/* The sender dies before anyone receives: its elements are drained first. */
static void suicide_sender_child(void *p)
{
	const char *url = gated_wait(p);
	mr_chan_t *s = MUST_OPEN(url, 0, 0, MR_CHAN_SEND);

	for (uint64_t i = 0; i < 5; i++) {
		struct msg m = msg_make(1, i);
		ASSERT_EQ(mr_chan_send(s, &m), 0);
	}
	raise(SIGKILL);
}

TEST(dead_sender_elements_drained_before_econnreset)
{
	struct name n;
	struct msg m;

	struct gated g;

	name_make(&n, "drain");
	gated_make(&g, n.url);
	pid_t pid = spawn(suicide_sender_child, &g);
	mr_chan_t *r = MUST_OPEN(n.url, sizeof(m), 8, MR_CHAN_CREATE | MR_CHAN_EXCL | MR_CHAN_RECV);
	put(&g.go, 1);
	expect_sigkilled(pid, "sender");
	for (uint64_t i = 0; i < 5; i++) {
		ASSERT_EQ(mr_chan_recv(r, &m), 0);
		EXPECT_TRUE(msg_ok(&m));
		EXPECT_EQ(m.seq, i);
	}
	EXPECT_EQ(mr_chan_recv(r, &m), -ECONNRESET);
	EXPECT_EQ(mr_chan_try_recv(r, &m), -ECONNRESET);
	mr_chan_destroy(r);
}

/* A sender that detached cleanly (destroy, exit) is no reset: receivers
 * just wait (and time out). */
static void clean_sender_child(void *p)
{
	const char *url = gated_wait(p);
	mr_chan_t *s = MUST_OPEN(url, 0, 0, MR_CHAN_SEND);
	struct msg m = msg_make(1, 0);

	ASSERT_EQ(mr_chan_send(s, &m), 0);
	mr_chan_destroy(s);
}

TEST(clean_detach_is_not_a_reset)
{
	struct name n;
	struct msg m;

	struct gated g;

	name_make(&n, "clean");
	gated_make(&g, n.url);
	pid_t pid = spawn(clean_sender_child, &g);
	mr_chan_t *r = MUST_OPEN(n.url, sizeof(m), 8, MR_CHAN_CREATE | MR_CHAN_EXCL | MR_CHAN_RECV);
	put(&g.go, 1);
	expect_exit_ok(pid, "sender");
	ASSERT_EQ(mr_chan_recv(r, &m), 0);
	EXPECT_EQ(mr_chan_recv_until(r, &m, in_ms(50)), -ETIMEDOUT);
	EXPECT_EQ(mr_chan_try_recv(r, &m), -EAGAIN);
	mr_chan_destroy(r);
}

/*
 * The only receiver process dies while a sender here waits on a full ring:
 * the sender gets -ECONNRESET (so do later sends and loans; the elements
 * stay queued). A new receiver gets them all, and what the next send adds.
 */
struct dead_rx {
	const char *url;
	struct link start, ready, go;
	mr_chan_t *ch;
	int rc;
	uint64_t seq;
	atomic_int started, returned;
};

static void dead_receiver_child(void *p)
{
	struct dead_rx *d = p;

	get(&d->start); /* the channel exists */
	mr_chan_t *r = MUST_OPEN(d->url, 0, 0, MR_CHAN_RECV);

	(void)r;
	put(&d->ready, 1);
	for (;;)
		pause();
}

static void new_receiver_child(void *p)
{
	struct dead_rx *d = p;
	struct msg m;

	get(&d->go);
	mr_chan_t *r = MUST_OPEN(d->url, 0, 0, MR_CHAN_RECV);
	put(&d->ready, 2);
	get(&d->go);
	for (uint64_t i = 0; i < 5; i++) {
		ASSERT_EQ(mr_chan_recv(r, &m), 0);
		ASSERT_TRUE(msg_ok(&m));
		ASSERT_EQ(m.seq, i);
	}
	mr_chan_destroy(r);
}

static void blocked_sender(void *p)
{
	struct dead_rx *d = p;
	struct msg m = msg_make(1, d->seq);

	atomic_store(&d->started, 1);
	d->rc = mr_chan_send(d->ch, &m);
	atomic_store(&d->returned, 1);
}

static void dead_receiver(bool fiber)
{
	struct name n;
	struct dead_rx d = { 0 };
	struct actor a;
	mr_runtime_t *rt = NULL;
	struct msg m;
	void *slot;

	name_make(&n, "deadrcv");
	d.url = n.url;
	link_make(&d.start);
	link_make(&d.ready);
	link_make(&d.go);
	pid_t victim = spawn(dead_receiver_child, &d);
	pid_t next = spawn(new_receiver_child, &d); /* both before any thread */
	d.ch = MUST_OPEN(n.url, sizeof(m), 4, MR_CHAN_CREATE | MR_CHAN_EXCL | MR_CHAN_SEND);
	put(&d.start, 1);
	ASSERT_EQ(get(&d.ready), 1);
	for (uint64_t i = 0; i < 4; i++) {
		m = msg_make(1, i);
		ASSERT_EQ(mr_chan_try_send(d.ch, &m), 0);
	}
	if (fiber) {
		rt = make_rt(2);
		ASSERT_NONNULL(rt);
	}
	d.seq = 4;
	actor_start(&a, rt, fiber, blocked_sender, &d);
	wait_started(&d.started);
	EXPECT_EQ(atomic_load(&d.returned), 0);
	kill(victim, SIGKILL);
	expect_sigkilled(victim, "receiver");
	actor_join(&a);
	EXPECT_EQ(d.rc, -ECONNRESET);
	m = msg_make(1, 99);
	EXPECT_EQ(mr_chan_send(d.ch, &m), -ECONNRESET);
	EXPECT_EQ(mr_chan_try_send(d.ch, &m), -ECONNRESET);
	EXPECT_EQ(mr_chan_send_until(d.ch, &m, in_ms(1000)), -ECONNRESET);
	EXPECT_EQ(mr_chan_loan(d.ch, &slot), -ECONNRESET);
	EXPECT_EQ(mr_chan_try_loan(d.ch, &slot), -ECONNRESET);
	EXPECT_EQ(mr_chan_len(d.ch), 4);

	/* A new receiver: the sender waits for it again. */
	put(&d.go, 1);
	ASSERT_EQ(get(&d.ready), 2);
	atomic_store(&d.started, 0);
	atomic_store(&d.returned, 0);
	actor_start(&a, rt, fiber, blocked_sender, &d);
	wait_started(&d.started);
	EXPECT_EQ(atomic_load(&d.returned), 0);
	put(&d.go, 2);
	actor_join(&a);
	EXPECT_EQ(d.rc, 0);
	expect_exit_ok(next, "new receiver");
	if (rt)
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	mr_chan_destroy(d.ch);
}

TEST(dead_receiver_sender_thread_gets_econnreset)
{
	dead_receiver(false);
}

TEST(dead_receiver_sender_fiber_gets_econnreset)
{
	dead_receiver(true);
}

/*
 * A sender killed while it holds a loan: a receiver waiting at that slot
 * (with elements committed behind it) is not stuck: it gets what was sent
 * before and after, never the half-written slot.
 */
#define KL_SIZE 4096

struct kl {
	const char *url;
	struct link start, vstart, ready, go, die;
	mr_chan_t *ch;
	atomic_long got;
	uint64_t seqs[4];
	atomic_int started;
};

static void kl_victim(void *p)
{
	struct kl *k = p;

	get(&k->vstart);
	mr_chan_t *s = MUST_OPEN(k->url, 0, 0, MR_CHAN_SEND);
	uint8_t buf[KL_SIZE];
	void *slot;

	fill(buf, KL_SIZE, 1);
	ASSERT_EQ(mr_chan_send(s, buf), 0);
	ASSERT_EQ(mr_chan_loan(s, &slot), 0);
	fill(slot, KL_SIZE / 2, 666); /* half of an element that never comes */
	put(&k->ready, 1);
	get(&k->die);
	raise(SIGKILL);
}

static void kl_other(void *p)
{
	struct kl *k = p;

	get(&k->start);
	mr_chan_t *s = MUST_OPEN(k->url, 0, 0, MR_CHAN_SEND);
	uint8_t buf[KL_SIZE];

	put(&k->ready, 2);
	get(&k->go);
	for (uint64_t i = 2; i <= 3; i++) {
		fill(buf, KL_SIZE, i);
		ASSERT_EQ(mr_chan_send(s, buf), 0);
	}
	put(&k->ready, 3);
	get(&k->go); /* stay attached until the receiver is done */
	mr_chan_destroy(s);
}

static void kl_receiver(void *p)
{
	struct kl *k = p;
	uint8_t *buf = rbuf_new(KL_SIZE);

	atomic_store(&k->started, 1);
	for (int i = 0; i < 3; i++) {
		uint64_t seq = 0;

		if (i == 1) {
			const void *e;

			ASSERT_EQ(mr_chan_borrow(k->ch, &e), 0);
			memcpy(buf, e, KL_SIZE);
			ASSERT_EQ(mr_chan_release(k->ch, e), 0);
		} else {
			ASSERT_EQ(mr_chan_recv(k->ch, buf), 0);
		}
		for (uint64_t s = 1; s <= 3; s++)
			if (intact(buf, KL_SIZE, s))
				seq = s;
		EXPECT_TRUE(canary_ok(buf, KL_SIZE));
		k->seqs[i] = seq;
		atomic_store(&k->got, i + 1);
	}
	free(buf);
}

static void killed_with_loan(bool fiber)
{
	struct name n;
	struct kl k = { 0 };
	struct actor a;
	mr_runtime_t *rt = NULL;
	uint8_t buf[KL_SIZE];

	name_make(&n, "kloan");
	k.url = n.url;
	link_make(&k.start);
	link_make(&k.vstart);
	link_make(&k.ready);
	link_make(&k.go);
	link_make(&k.die);
	pid_t other = spawn(kl_other, &k);
	pid_t victim = spawn(kl_victim, &k); /* both before any thread */
	k.ch = MUST_OPEN(n.url, KL_SIZE, 8, MR_CHAN_CREATE | MR_CHAN_EXCL | MR_CHAN_RECV);
	put(&k.start, 1);
	ASSERT_EQ(get(&k.ready), 2); /* a sender stays: no reset */
	put(&k.vstart, 1);
	ASSERT_EQ(get(&k.ready), 1);
	put(&k.go, 1);
	ASSERT_EQ(get(&k.ready), 3); /* two elements committed behind the loan */
	if (fiber) {
		rt = make_rt(2);
		ASSERT_NONNULL(rt);
	}
	actor_start(&a, rt, fiber, kl_receiver, &k);
	wait_started(&k.started);
	/* Receivers wait at the loaned slot. */
	EXPECT_EQ(atomic_load(&k.got), 1);
	put(&k.die, 1);
	expect_sigkilled(victim, "sender with a loan");
	actor_join(&a);
	EXPECT_EQ(k.seqs[0], 1);
	EXPECT_EQ(k.seqs[1], 2);
	EXPECT_EQ(k.seqs[2], 3);
	EXPECT_EQ(mr_chan_try_recv(k.ch, buf), -EAGAIN);
	put(&k.go, 2);
	expect_exit_ok(other, "other sender");
	if (rt)
		ASSERT_EQ(mr_runtime_destroy(rt), 0);
	mr_chan_destroy(k.ch);
}

TEST(sender_killed_holding_a_loan_thread)
{
	killed_with_loan(false);
}

TEST(sender_killed_holding_a_loan_fiber)
{
	killed_with_loan(true);
}

/*
 * A receiver killed while it holds a borrow: the element is delivered
 * again, to a receiver already waiting in another process.
 */
struct kb {
	const char *url;
	struct link start, borrowed, die, got, go;
};

static void kb_victim(void *p)
{
	struct kb *k = p;

	get(&k->start);
	mr_chan_t *r = MUST_OPEN(k->url, 0, 0, MR_CHAN_RECV);
	const void *e;

	ASSERT_EQ(mr_chan_borrow(r, &e), 0);
	put(&k->borrowed, ((const struct msg *)e)->seq);
	get(&k->die);
	raise(SIGKILL);
}

static void kb_heir(void *p)
{
	struct kb *k = p;
	struct msg m;

	get(&k->go);
	mr_chan_t *r = MUST_OPEN(k->url, 0, 0, MR_CHAN_RECV);
	put(&k->got, 1000); /* attached */
	for (int i = 0; i < 2; i++) {
		ASSERT_EQ(mr_chan_recv(r, &m), 0);
		ASSERT_TRUE(msg_ok(&m));
		put(&k->got, m.seq);
	}
	mr_chan_destroy(r);
}

TEST(receiver_killed_holding_a_borrow_redelivers)
{
	struct name n;
	struct kb k;
	struct msg m;

	name_make(&n, "kborrow");
	k.url = n.url;
	link_make(&k.borrowed);
	link_make(&k.die);
	link_make(&k.got);
	link_make(&k.go);
	link_make(&k.start);
	pid_t heir = spawn(kb_heir, &k);
	pid_t victim = spawn(kb_victim, &k); /* both before any thread */
	mr_chan_t *s = MUST_OPEN(n.url, sizeof(m), 8, MR_CHAN_CREATE | MR_CHAN_EXCL | MR_CHAN_SEND);
	put(&k.start, 1);
	m = msg_make(1, 1);
	ASSERT_EQ(mr_chan_send(s, &m), 0);
	ASSERT_EQ(get(&k.borrowed), 1);
	put(&k.go, 1);
	ASSERT_EQ(get(&k.got), 1000);
	sleep_ms(20); /* the heir waits: the only element is borrowed */
	EXPECT_FALSE(ready(&k.got));
	put(&k.die, 1);
	expect_sigkilled(victim, "receiver with a borrow");
	EXPECT_EQ(get(&k.got), 1); /* delivered again */
	m = msg_make(1, 2);
	ASSERT_EQ(mr_chan_send(s, &m), 0);
	EXPECT_EQ(get(&k.got), 2);
	expect_exit_ok(heir, "heir");
	mr_chan_destroy(s);
}

/* ---- the kill test ------------------------------------------------------------------ */

/*
 * One channel, a sender process and a receiver process that live through
 * the whole test, and a cycle repeated thousands of times: fork a fresh
 * sender or receiver, let it run for a random short while (from nothing -
 * killed inside mr_chan_open - to a couple of milliseconds), SIGKILL it,
 * reap it. Victim senders send and loan at random, writing loans word by
 * word with the odd yield so that many die holding one; victim receivers
 * only borrow, and record each element while they hold it.
 *
 * Every message carries its sequence number and a checksum. A sender
 * writes the number of each message whose send or commit returned 0 to a
 * pipe (after the call: one killed in between sent a message it did not
 * report, which is fine). A receiver records a receipt by putting its pid
 * in the first free of KT_RECS cells of that number (MAP_SHARED), so a
 * receiver killed between recording and releasing legitimately causes one
 * more receipt. Each victim also publishes what it is doing and on which
 * number, which the test reads after the kill.
 *
 * At the end: every reported number received; nothing torn, nothing never
 * sent; any number received more than once was first received by killed
 * receivers only; a loan killed before its commit was never received; a
 * borrow killed before its release was received again; the channel still
 * carries a message each way (send and loan) to the survivor.
 */
#define KT_NSEQ ((uint64_t)1 << 22)
#define KT_RECS 3
#define KT_FINAL (KT_NSEQ + 7)
#define KT_NONE UINT64_MAX

struct kmsg {
	uint64_t seq, pid, w[5], sum;
};

static uint64_t kmsg_sum(const struct kmsg *m)
{
	uint64_t h = mix64(m->seq) ^ m->pid;

	for (int i = 0; i < 5; i++)
		h = mix64(h ^ m->w[i]);
	return h;
}

static struct kmsg kmsg_make(uint64_t seq, uint64_t pid)
{
	struct kmsg m = { .seq = seq, .pid = pid };

	for (int i = 0; i < 5; i++)
		m.w[i] = mix64(seq * 8 + (uint64_t)i);
	m.sum = kmsg_sum(&m);
	return m;
}

static bool kmsg_ok(const struct kmsg *m)
{
	if (m->sum != kmsg_sum(m))
		return false;
	for (int i = 0; i < 5; i++)
		if (m->w[i] != mix64(m->seq * 8 + (uint64_t)i))
			return false;
	return true;
}

/* What the current victim is doing (for the checks and the histogram). */
enum {
	KV_FORKED,
	KV_OPEN,
	KV_SEND,
	KV_LOAN,
	KV_LOANED,   /* writing a loan; commit not called */
	KV_COMMIT,
	KV_REPORT,
	KV_PAUSE,
	KV_BORROW,
	KV_BORROWED, /* holding a borrow, not recorded */
	KV_RECORDED, /* holding a borrow, recorded; release not called */
	KV_RELEASE,
	KV_N
};
static const char *const kv_names[KV_N] = {
	"forked",      "in open",	 "in send",	 "waiting for a loan", "writing a loan",
	"in commit",   "reporting",	 "pausing",	 "in borrow",	 "holding a borrow",   "holding, recorded",
	"in release",
};

/* One victim's doings, read by the test after its death. */
struct kt_victim {
	atomic_int state;
	_Atomic uint64_t seq;
	atomic_int err;
};

#define KT_SLOTS 4 /* victims alive or unreaped at once: two */

struct kt_shared {
	_Atomic uint64_t next_seq;
	atomic_int stop;
	_Atomic uint32_t go; /* victims of cycles below it may start (a futex) */
	atomic_long torn, bogus, overflow, final_seen, errors;
	struct kt_victim v[KT_SLOTS];
};

struct kt {
	const char *url, *path;
	struct kt_shared *sh;
	_Atomic int32_t (*rec)[KT_RECS];
	int rfd, wfd;	      /* the report pipe */
	uint64_t rs;	      /* this process's random stream */
	struct kt_victim *me; /* a victim's slot (NULL for the survivors) */
	long cycle;	      /* a victim's */
	struct link start;    /* the channel exists */
};

static int32_t kt_pid; /* this process's */

static void kt_state(struct kt *k, int st)
{
	/* release: the test reads vseq after this state (a dead victim's
	 * stores must not have been reordered by the compiler) */
	if (k->me)
		atomic_store_explicit(&k->me->state, st, memory_order_release);
}

static void kt_record(struct kt *k, const struct kmsg *m)
{
	if (!kmsg_ok(m)) {
		atomic_fetch_add(&k->sh->torn, 1);
		return;
	}
	if (m->seq == KT_FINAL) {
		atomic_fetch_add(&k->sh->final_seen, 1);
		return;
	}
	if (m->seq >= KT_NSEQ || m->seq >= atomic_load(&k->sh->next_seq)) {
		atomic_fetch_add(&k->sh->bogus, 1);
		return;
	}
	for (int i = 0; i < KT_RECS; i++) {
		int32_t z = 0;

		if (atomic_compare_exchange_strong(&k->rec[m->seq][i], &z, kt_pid))
			return;
	}
	atomic_fetch_add(&k->sh->overflow, 1);
}

static void kt_report(struct kt *k, uint64_t seq)
{
	/* 8 bytes: atomic on a pipe, so a kill cannot tear a report. */
	while (write(k->wfd, &seq, sizeof(seq)) < 0 && errno == EINTR)
		;
}

static int kt_send_one(struct kt *k, mr_chan_t *ch, uint64_t seq, bool loan)
{
	struct kmsg m = kmsg_make(seq, (uint64_t)kt_pid);
	const uint64_t *src = (const uint64_t *)&m;
	volatile uint64_t *dst;
	void *slot;
	int rc;

	if (!loan) {
		kt_state(k, KV_SEND);
		return mr_chan_send(ch, &m);
	}
	kt_state(k, KV_LOAN);
	rc = mr_chan_loan(ch, &slot);
	if (rc)
		return rc;
	kt_state(k, KV_LOANED);
	dst = slot;
	for (int i = 0; i < 8; i++) {
		dst[i] = src[i];
		if (k->me && i == 3 && rnd(&k->rs) % 4 == 0)
			sched_yield(); /* hold it a little longer */
	}
	kt_state(k, KV_COMMIT);
	return mr_chan_commit(ch, slot);
}

static void kt_stable_sender(void *p)
{
	struct kt *k = p;
	MR_OPTS(mr_chan_open_opts, o, .flags = MR_CHAN_SEND);

	get(&k->start);
	mr_chan_t *ch = MUST_OPEN_OPTS(k->url, &o);

	kt_pid = getpid();
	for (unsigned n = 0; !atomic_load(&k->sh->stop); n++) {
		uint64_t seq = atomic_fetch_add(&k->sh->next_seq, 1);
		int rc;

		if (seq >= KT_NSEQ)
			break;
		rc = kt_send_one(k, ch, seq, n % 2);
		if (rc) {
			TH_LOG("stable sender: %s", strerror(-rc));
			atomic_fetch_add(&k->sh->errors, 1);
			break;
		}
		kt_report(k, seq);
		sleep_us(200); /* a trickle, leaving CPU for the cycles */
	}
	mr_chan_destroy(ch);
}

static void kt_stable_receiver(void *p)
{
	struct kt *k = p;
	MR_OPTS(mr_chan_open_opts, o, .flags = MR_CHAN_RECV);

	get(&k->start);
	mr_chan_t *ch = MUST_OPEN_OPTS(k->url, &o);

	kt_pid = getpid();
	for (unsigned n = 0;; n++) {
		struct kmsg m;
		int rc;

		if (n % 2) {
			const void *e;

			rc = mr_chan_borrow(ch, &e);
			if (rc == 0) {
				memcpy(&m, e, sizeof(m));
				kt_record(k, &m);
				rc = mr_chan_release(ch, e);
				if (rc == 0)
					continue;
			}
		} else {
			rc = mr_chan_recv(ch, &m);
			if (rc == 0) {
				kt_record(k, &m);
				continue;
			}
		}
		if (rc == -EPIPE)
			break;
		TH_LOG("stable receiver: %s", strerror(-rc));
		atomic_fetch_add(&k->sh->errors, 1);
		break;
	}
	mr_chan_destroy(ch);
}

static _Noreturn void kt_victim_fail(struct kt *k, int err, int code)
{
	atomic_store(&k->me->err, err);
	_exit(code);
}

static _Noreturn void kt_victim_sender(struct kt *k)
{
	MR_OPTS(mr_chan_open_opts, o, .flags = MR_CHAN_SEND);
	mr_chan_t *ch;

	kt_state(k, KV_OPEN);
	ch = mr_chan_open(k->url, &o);
	if (!ch)
		kt_victim_fail(k, errno, 3);
	for (;;) {
		uint64_t seq = atomic_fetch_add(&k->sh->next_seq, 1);
		int rc;

		if (seq >= KT_NSEQ) {
			kt_state(k, KV_FORKED);
			for (;;)
				pause();
		}
		atomic_store_explicit(&k->me->seq, seq, memory_order_relaxed);
		rc = kt_send_one(k, ch, seq, rnd(&k->rs) % 2);
		kt_state(k, KV_REPORT);
		if (rc)
			kt_victim_fail(k, -rc, 4);
		kt_report(k, seq);
		if (rnd(&k->rs) % 2) {
			/* Not a flood: the survivors and the test need the CPUs. */
			kt_state(k, KV_PAUSE);
			sleep_us(20);
		}
	}
}

static _Noreturn void kt_victim_receiver(struct kt *k)
{
	MR_OPTS(mr_chan_open_opts, o, .flags = MR_CHAN_RECV);
	mr_chan_t *ch;

	kt_state(k, KV_OPEN);
	ch = mr_chan_open(k->url, &o);
	if (!ch)
		kt_victim_fail(k, errno, 5);
	for (;;) {
		const void *e;
		struct kmsg m;
		int rc;

		kt_state(k, KV_BORROW);
		rc = mr_chan_borrow(ch, &e);
		if (rc)
			kt_victim_fail(k, -rc, 6);
		memcpy(&m, e, sizeof(m));
		atomic_store_explicit(&k->me->seq, kmsg_ok(&m) ? m.seq : KT_NONE,
				      memory_order_relaxed);
		kt_state(k, KV_BORROWED);
		if (rnd(&k->rs) % 4 == 0)
			sched_yield();
		kt_record(k, &m);
		kt_state(k, KV_RECORDED);
		if (rnd(&k->rs) % 4 == 0)
			sched_yield();
		kt_state(k, KV_RELEASE);
		rc = mr_chan_release(ch, e);
		if (rc)
			kt_victim_fail(k, -rc, 7);
	}
}

/* Read the reports that are there (the pipe is non-blocking). */
static long kt_drain(struct kt *k, uint8_t *sent)
{
	uint64_t buf[1024];
	long n = 0;
	ssize_t got;

	while ((got = read(k->rfd, buf, sizeof(buf))) > 0) {
		/* Every write is 8 bytes and atomic: reads come in whole words. */
		if (got % 8) {
			TH_LOG("report pipe: a read of %zd bytes", got);
			_exit(1);
		}
		for (ssize_t i = 0; i < got / 8; i++) {
			if (buf[i] >= KT_NSEQ) {
				TH_LOG("report of %" PRIu64, buf[i]);
				_exit(1);
			}
			sent[buf[i] / 8] |= (uint8_t)(1u << (buf[i] % 8));
			n++;
		}
	}
	return n;
}

static int cmp_pid(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;

	return (x > y) - (x < y);
}

/* A cycle: which victim, when to kill it, its random stream. */
struct kt_cycle {
	bool rx;      /* a receiver (else a sender) */
	bool in_open; /* the delay runs from the start of open (else from its end) */
	long delay;   /* microseconds */
	uint64_t seed;
};

static struct kt_cycle kt_draw(uint64_t *rs)
{
	struct kt_cycle c;

	c.rx = rnd(rs) % 2;
	/* A third of the kills from the start of open, the rest from its
	 * end: open is slow, and most would land there. */
	c.in_open = rnd(rs) % 3 == 0;
	c.delay = rnd(rs) % 4 == 0 ? (long)(rnd(rs) % 50) : (long)(rnd(rs) % 500);
	c.seed = rnd(rs) | 1;
	return c;
}

/* Fork the victim of cycle c; it waits until go passes c. */
static pid_t kt_fork_victim(struct kt *k, long c, const struct kt_cycle *cy)
{
	struct kt_victim *v = &k->sh->v[c % KT_SLOTS];
	pid_t pid;

	atomic_store(&v->state, KV_FORKED);
	atomic_store(&v->seq, KT_NONE);
	atomic_store(&v->err, 0);
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		TH_LOG("fork: %s", strerror(errno));
		_exit(1);
	}
	if (pid == 0) {
		uint32_t g;

		kt_pid = getpid();
		k->me = v;
		k->cycle = c;
		k->rs = cy->seed;
		while ((g = atomic_load(&k->sh->go)) <= (uint32_t)c)
			syscall(SYS_futex, &k->sh->go, FUTEX_WAIT, g, NULL, NULL, 0);
		if (cy->rx)
			kt_victim_receiver(k);
		kt_victim_sender(k);
	}
	return pid;
}

/* What the kills did, and what the end must find because of them. */
#define KT_BUDGET_NS (150 * 1000000000LL)

struct kt_tally {
	int32_t *killed_rx;			 /* pids of killed receivers */
	uint64_t *must_skip;			 /* loans killed before commit */
	uint64_t *must_again;			 /* borrows killed after recording */
	int32_t *again_pid;			 /* ... by these */
	uint64_t *must_other;			 /* borrows killed before recording */
	long n_killed_rx, n_skip, n_again, n_other;
	long hist[2][KV_N];
	long failed;
	long cycles_run; /* the forker stops early past KT_BUDGET_NS */
};

/* Reap the victim of cycle c (status st if already reaped, else -1). */
static void kt_reap(struct kt *k, struct kt_tally *t, pid_t pid, long c, bool rx, int st)
{
	struct kt_victim *v = &k->sh->v[c % KT_SLOTS];

	if (st == -1)
		st = wait_status(pid);
	/* acquire: pairs with the victim's release of its state */
	int vs = atomic_load_explicit(&v->state, memory_order_acquire);
	uint64_t seq = atomic_load_explicit(&v->seq, memory_order_relaxed);

	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
		if (++t->failed <= 5) {
			log_status(rx ? "victim receiver" : "victim sender", st);
			TH_LOG("  cycle %ld, it was %s: %s (the segment %s)", c, kv_names[vs],
			       strerror(atomic_load(&v->err)),
			       access(k->path, F_OK) == 0 ? "exists" : "is gone");
		}
		return;
	}
	t->hist[rx][vs]++;
	if (rx) {
		t->killed_rx[t->n_killed_rx++] = pid;
		if (vs == KV_RECORDED && seq != KT_NONE) {
			t->again_pid[t->n_again] = pid;
			t->must_again[t->n_again++] = seq;
		}
		if (vs == KV_BORROWED && seq != KT_NONE)
			t->must_other[t->n_other++] = seq;
	} else if (vs == KV_LOANED && seq != KT_NONE) {
		t->must_skip[t->n_skip++] = seq;
	}
}

/*
 * The forker: forks, lets go, kills and reaps the victims, in a process
 * that never opens a channel and so forks with one thread (see the top).
 * The next victim is forked, and the last one reaped, while this one opens
 * (fork and exit cost about as much as the rest of a cycle), except when
 * the kill comes during open: then after the kill.
 */
struct kt_forker {
	struct kt *k;
	struct kt_tally *t; /* shared */
	long cycles;
	uint64_t seed;
};

static void kt_forker(void *p)
{
	struct kt_forker *f = p;
	struct kt *k = f->k;
	struct kt_tally *t = f->t;
	uint64_t rs = f->seed;
	int64_t t0 = mr_now_ns();

	get(&k->start);
	struct kt_cycle cur = kt_draw(&rs), next;
	pid_t pid = kt_fork_victim(k, 0, &cur), npid = 0, dying = 0;
	long dying_c = 0;
	bool dying_rx = false;
	for (long c = 0; c < f->cycles; c++) {
		struct kt_victim *v = &k->sh->v[c % KT_SLOTS];
		/* A budget, not a check: a loaded machine runs fewer cycles
		 * rather than hitting the test's timeout (a CI run on a
		 * machine at load 10 did 7500 in 276 s). */
		bool last = c + 1 == f->cycles || mr_now_ns() - t0 > KT_BUDGET_NS;
		pid_t done = 0;
		int st = -1;

		next = kt_draw(&rs);
		atomic_store(&k->sh->go, (uint32_t)c + 1);
		syscall(SYS_futex, &k->sh->go, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
		if (!cur.in_open) {
			if (!last)
				npid = kt_fork_victim(k, c + 1, &next);
			if (dying)
				kt_reap(k, t, dying, dying_c, dying_rx, -1);
			dying = 0;
		}
		int after = cur.in_open ? KV_FORKED : KV_OPEN;
		while (atomic_load(&v->state) <= after && (done = waitpid(pid, &st, WNOHANG)) == 0)
			sleep_us(10);
		if (cur.delay)
			sleep_us(cur.delay);
		if (done != pid)
			kill(pid, SIGKILL);
		if (cur.in_open) {
			if (dying)
				kt_reap(k, t, dying, dying_c, dying_rx, -1);
			if (!last)
				npid = kt_fork_victim(k, c + 1, &next);
		}
		if (done == pid) {
			kt_reap(k, t, pid, c, cur.rx, st); /* it ended by itself */
			dying = 0;
		} else {
			dying = pid;
			dying_c = c;
			dying_rx = cur.rx;
		}
		pid = npid;
		cur = next;
		if ((c + 1) % 2500 == 0)
			TH_LOG("%ld cycles, %" PRIu64 " numbers taken, %.1fs", c + 1,
			       atomic_load(&k->sh->next_seq), (double)(mr_now_ns() - t0) / 1e9);
		t->cycles_run = c + 1;
		if (last)
			break;
	}
	if (dying)
		kt_reap(k, t, dying, dying_c, dying_rx, -1);
}

/* 10,000 cycles take ~30 s on 2 idle CPUs, ~90 s loaded; past KT_BUDGET_NS
 * the forker stops early (the checks hold for any count): the bound is for a
 * hang */
TEST_TIMEOUT(kill_cycles, 300)
{
	long cycles = scaled(10000);
	struct name n;
	struct kt k = { 0 };
	struct kt_tally *tp = shared(sizeof(*tp));
	int pfd[2];
	uint8_t *sent = calloc(KT_NSEQ / 8, 1);
	long reported = 0;
	int64_t t0 = mr_now_ns();

	ASSERT_NONNULL(sent);
	tp->killed_rx = shared((size_t)cycles * sizeof(int32_t));
	tp->must_skip = shared((size_t)cycles * sizeof(uint64_t));
	tp->must_again = shared((size_t)cycles * sizeof(uint64_t));
	tp->again_pid = shared((size_t)cycles * sizeof(int32_t));
	tp->must_other = shared((size_t)cycles * sizeof(uint64_t));
	prctl(PR_SET_TIMERSLACK, 1UL); /* short sleeps that are short */
	name_make(&n, "kill");
	k.url = n.url;
	k.path = n.path;
	k.sh = shared(sizeof(*k.sh));
	k.rec = shared(KT_NSEQ * sizeof(*k.rec));
	ASSERT_EQ(pipe2(pfd, O_CLOEXEC), 0);
	k.rfd = pfd[0];
	k.wfd = pfd[1];
	fcntl(k.wfd, F_SETPIPE_SZ, 1 << 20);
	ASSERT_EQ(fcntl(k.rfd, F_SETFL, O_NONBLOCK), 0);
	link_make(&k.start);

	struct kt_forker f = { &k, tp, cycles, test_seed(0x2545F4914F6CDD1Dull) };
	pid_t spid = spawn(kt_stable_sender, &k);
	pid_t rpid = spawn(kt_stable_receiver, &k);
	pid_t fpid = spawn(kt_forker, &f);
	/* The parent's handle is open for both sides: the survivors never see
	 * -ECONNRESET (tested above), only the deaths' other effects. */
	mr_chan_t *h = MUST_OPEN(n.url, sizeof(struct kmsg), 16, MR_CHAN_CREATE | MR_CHAN_EXCL);
	for (int i = 0; i < 3; i++)
		put(&k.start, 1);
	int fst;
	while (waitpid(fpid, &fst, WNOHANG) == 0) {
		reported += kt_drain(&k, sent);
		sleep_ms(2);
	}
	if (!WIFEXITED(fst) || WEXITSTATUS(fst) != 0) {
		log_status("forker", fst);
		mr_test_failed = 1;
	}
	struct kt_tally t = *tp;

	/* The survivors finish; the segment carries a send and a loan. */
	atomic_store(&k.sh->stop, 1);
	expect_exit_ok(spid, "stable sender");
	reported += kt_drain(&k, sent);
	struct kmsg fin = kmsg_make(KT_FINAL, 0);
	void *slot;
	ASSERT_EQ(mr_chan_send(h, &fin), 0);
	ASSERT_EQ(mr_chan_loan(h, &slot), 0);
	memcpy(slot, &fin, sizeof(fin));
	ASSERT_EQ(mr_chan_commit(h, slot), 0);
	ASSERT_EQ(mr_chan_close(h), 0);
	expect_exit_ok(rpid, "stable receiver");

	/* The checks. */
	uint64_t taken = atomic_load(&k.sh->next_seq);
	long lost = 0, dup = 0, received = 0, redelivered = 0, not_skipped = 0, not_again = 0,
	     not_other = 0;
	if (taken > KT_NSEQ)
		taken = KT_NSEQ;
	qsort(t.killed_rx, (size_t)t.n_killed_rx, sizeof(int32_t), cmp_pid);
	for (uint64_t s = 0; s < taken; s++) {
		int nrec = 0;
		int32_t who[KT_RECS];

		for (int i = 0; i < KT_RECS; i++) {
			who[i] = atomic_load(&k.rec[s][i]);
			if (who[i])
				nrec = i + 1;
		}
		received += nrec > 0;
		if ((sent[s / 8] >> (s % 8)) & 1 && nrec == 0) {
			if (++lost <= 5)
				TH_LOG("message %" PRIu64 " was reported sent, never received", s);
		}
		for (int i = 0; i + 1 < nrec; i++) {
			if (!bsearch(&who[i], t.killed_rx, (size_t)t.n_killed_rx, sizeof(int32_t),
				     cmp_pid)) {
				if (++dup <= 5)
					TH_LOG("message %" PRIu64 " received by %d, a survivor, then "
					       "again (%d receipts)",
					       s, (int)who[i], nrec);
				break;
			}
			redelivered++;
		}
	}
	for (long i = 0; i < t.n_skip; i++) {
		if (atomic_load(&k.rec[t.must_skip[i]][0]) != 0 && ++not_skipped <= 5)
			TH_LOG("message %" PRIu64 " received though its sender was killed before "
			       "committing its loan",
			       t.must_skip[i]);
	}
	/* Received again: someone recorded it after the killed receiver. */
	for (long i = 0; i < t.n_again; i++) {
		int32_t last = 0;

		if (t.must_again[i] >= taken)
			continue;
		for (int j = 0; j < KT_RECS; j++)
			if (atomic_load(&k.rec[t.must_again[i]][j]))
				last = atomic_load(&k.rec[t.must_again[i]][j]);
		if (last == t.again_pid[i] && ++not_again <= 5)
			TH_LOG("message %" PRIu64 " held by a killed receiver: not delivered again",
			       t.must_again[i]);
	}
	for (long i = 0; i < t.n_other; i++) {
		if (t.must_other[i] < taken && atomic_load(&k.rec[t.must_other[i]][0]) == 0 &&
		    ++not_other <= 5)
			TH_LOG("message %" PRIu64 " borrowed by a killed receiver: never delivered "
			       "again",
			       t.must_other[i]);
	}

	TH_LOG("%ld cycles of %ld in %.1fs: %ld senders and %ld receivers killed", t.cycles_run,
	       cycles, (double)(mr_now_ns() - t0) / 1e9, t.cycles_run - t.n_killed_rx,
	       t.n_killed_rx);
	EXPECT_GT(t.cycles_run, 0);
	for (int rx = 0; rx < 2; rx++)
		for (int s = 0; s < KV_N; s++)
			if (t.hist[rx][s])
				TH_LOG("  %s killed %s: %ld", rx ? "receiver" : "sender", kv_names[s],
				       t.hist[rx][s]);
	TH_LOG("%" PRIu64 " numbers taken, %ld reported sent, %ld received, %ld receipts by "
	       "killed receivers delivered again",
	       taken, reported, received, redelivered);
	TH_LOG("failures: %ld victims failed, %ld lost, %ld duplicated, %ld torn, %ld never sent, "
	       "%ld over %d receipts, %ld dead loans received, %ld dead borrows not redelivered, "
	       "%ld survivor errors, %ld final messages of 2",
	       t.failed, lost, dup, atomic_load(&k.sh->torn), atomic_load(&k.sh->bogus),
	       atomic_load(&k.sh->overflow), KT_RECS, not_skipped, not_again + not_other,
	       atomic_load(&k.sh->errors), atomic_load(&k.sh->final_seen));
	if (taken == KT_NSEQ)
		TH_LOG("(the sequence space ran out: later cycles sent nothing)");
	EXPECT_EQ(t.failed, 0);
	EXPECT_EQ(lost, 0);
	EXPECT_EQ(dup, 0);
	EXPECT_EQ(atomic_load(&k.sh->torn), 0);
	EXPECT_EQ(atomic_load(&k.sh->bogus), 0);
	EXPECT_EQ(atomic_load(&k.sh->overflow), 0);
	EXPECT_EQ(not_skipped, 0);
	EXPECT_EQ(not_again, 0);
	EXPECT_EQ(not_other, 0);
	EXPECT_EQ(atomic_load(&k.sh->errors), 0);
	EXPECT_EQ(atomic_load(&k.sh->final_seen), 2);
	EXPECT_GT(reported, 0);
	mr_chan_destroy(h);
	EXPECT_FALSE(seg_exists(&n));
	free(sent);
}

/* ---- creators killed while creating ----------------------------------------------- */

/*
 * A creator SIGKILLed at a random instant of mr_chan_open(CREATE): the
 * next opener with CREATE gets a working channel (the half-made segment
 * is removed and made anew, or the finished one attached, or a fresh one
 * made), and one without CREATE gets a channel or ENOENT - never
 * ETIMEDOUT, since the creator is dead.
 */
struct creator_round {
	const char *url;
	struct link go, go2;
	bool plain_first;
	atomic_int started;
	atomic_long attached_plain;
	uint64_t seq;
};

static void creator_child(void *p)
{
	struct creator_round *c = p;

	atomic_store(&c->started, 1);
	mr_chan_t *ch = chopen(c->url, sizeof(struct msg), 16, MR_CHAN_CREATE | MR_CHAN_EXCL);

	(void)ch;
	for (;;)
		pause();
}

/* The next opener, in a process of its own (the test's stays single-threaded:
 * see the top). */
static void opener_child(void *p)
{
	struct creator_round *c = p;
	struct msg m = msg_make(1, c->seq), r;

	if (c->plain_first) {
		errno = 0;
		mr_chan_t *x = mr_chan_open(c->url, NULL);
		if (x) {
			atomic_fetch_add(&c->attached_plain, 1);
			mr_chan_destroy(x);
		} else if (errno != ENOENT) {
			TH_LOG("open without CREATE: %s", strerror(errno));
			mr_test_failed = 1;
		}
	}
	mr_chan_t *ch = MUST_OPEN(c->url, sizeof(m), 16, MR_CHAN_CREATE);
	ASSERT_EQ(mr_chan_send(ch, &m), 0);
	ASSERT_EQ(mr_chan_recv(ch, &r), 0);
	EXPECT_TRUE(msg_ok(&r));
	EXPECT_EQ(r.seq, c->seq);
	mr_chan_destroy(ch);
	mr_chan_unlink(c->url); /* when it only attached */
}

TEST(creator_killed_while_creating)
{
	long rounds = scaled(400);
	uint64_t rs = test_seed(0x9E3779B97F4A7C15ull);
	long absent = 0, half = 0, whole = 0;
	struct creator_round *c = shared(sizeof(*c));

	for (long i = 0; i < rounds; i++) {
		struct name n;
		struct stat st;

		name_make(&n, "creator");
		c->url = n.url;
		c->plain_first = i % 2;
		c->seq = (uint64_t)i;
		atomic_store(&c->started, 0);
		pid_t pid = spawn(creator_child, c);
		while (!atomic_load(&c->started))
			sleep_us(10);
		sleep_us((long)(rnd(&rs) % 1500)); /* open takes about a millisecond */
		kill(pid, SIGKILL);
		expect_sigkilled(pid, "creator");
		const char *killed_when;
		if (stat(n.path, &st) != 0) {
			absent++;
			killed_when = "before making the segment";
		} else if ((st.st_mode & 0777) == 0) {
			half++; /* still without permissions: not initialised */
			killed_when = "with the segment half-made";
		} else {
			whole++;
			killed_when = "after making the segment";
		}
		pid = spawn(opener_child, c);
		char what[64];
		snprintf(what, sizeof(what), "opener of round %ld", i);
		expect_exit_ok(pid, what);
		if (stat(n.path, &st) == 0) {
			TH_LOG("round %ld: the segment is left (mode %o, %lld bytes) after the "
			       "creator was killed %s",
			       i, st.st_mode & 07777, (long long)st.st_size, killed_when);
			mr_test_failed = 1;
			unlink(n.path);
		}
	}
	TH_LOG("%ld rounds: creator killed with no segment %ld, half-made %ld, made %ld; "
	       "%ld plain opens attached",
	       rounds, absent, half, whole, atomic_load(&c->attached_plain));
	munmap(c, sizeof(*c));
}

/*
 * An opener that meets a segment whose creator is still initialising it
 * (a creator stopped with SIGSTOP in the middle of mr_chan_open) waits up
 * to timeout_ns and gets ETIMEDOUT, since the creator lives; once the
 * creator goes on, the open attaches. The window is short: the creator is
 * stopped at random instants until one lands in it.
 */
static void stopped_creator(void *p)
{
	struct creator_round *c = p;

	atomic_store(&c->started, 1);
	mr_chan_t *ch = chopen(c->url, sizeof(struct msg), 4, MR_CHAN_CREATE | MR_CHAN_EXCL);
	ASSERT_NONNULL(ch);
	atomic_store(&c->started, 2);
	for (;;)
		pause();
}

static void waiting_opener(void *p)
{
	struct creator_round *c = p;
	MR_OPTS(mr_chan_open_opts, o, .timeout_ns = 50 * 1000000);

	int64_t t = mr_now_ns();
	errno = 0;
	mr_chan_t *ch = mr_chan_open(c->url, &o);
	EXPECT_TRUE(ch == NULL);
	EXPECT_EQ(errno, ETIMEDOUT);
	EXPECT_GE(mr_now_ns() - t, 50 * 1000000); /* it waited */
	if (ch)
		mr_chan_destroy(ch);
	put(&c->go, 1);
	get(&c->go2); /* the creator goes on */
	o.timeout_ns = 0;
	ch = MUST_OPEN_OPTS(c->url, &o);
	EXPECT_EQ(mr_chan_capacity(ch), 4);
	mr_chan_destroy(ch);
}

TEST(opener_waits_for_a_creator_at_work)
{
	uint64_t rs = test_seed(0x94D049BB133111EBull);
	struct creator_round *c = shared(sizeof(*c));
	struct stat st;
	int tries;

	for (tries = 1; tries <= 2000; tries++) {
		struct name n;

		name_make(&n, "stopped");
		c->url = n.url;
		atomic_store(&c->started, 0);
		link_make(&c->go);
		link_make(&c->go2);
		pid_t pid = spawn(stopped_creator, c);
		while (!atomic_load(&c->started))
			sleep_us(10);
		sleep_us((long)(rnd(&rs) % 1500));
		kill(pid, SIGSTOP);
		waitpid(pid, NULL, WUNTRACED);
		bool caught = stat(n.path, &st) == 0 && (st.st_mode & 07777) == 0 &&
			      atomic_load(&c->started) == 1;
		if (caught) {
			TH_LOG("creator stopped with the segment at %lld bytes, mode 0",
			       (long long)st.st_size);
			pid_t op = spawn(waiting_opener, c);
			get(&c->go);
			kill(pid, SIGCONT);
			while (atomic_load(&c->started) != 2)
				sleep_us(100);
			put(&c->go2, 1);
			expect_exit_ok(op, "opener");
		}
		kill(pid, SIGKILL);
		expect_sigkilled(pid, "creator");
		mr_chan_unlink(n.url);
		link_close(&c->go);
		link_close(&c->go2);
		if (caught)
			break;
	}
	if (tries > 2000)
		SKIP("never stopped the creator while the segment was being made");
	TH_LOG("caught the creator at work after %d tries", tries);
	munmap(c, sizeof(*c));
}

/* ---- permissions --------------------------------------------------------------------- */

struct perm {
	const char *url;
	unsigned mode;
	int err;   /* out: errno of open (0: opened) */
	int err_c; /* out: errno of open with CREATE */
	int unl;   /* out: unlink's result */
	struct link go;
};

static void drop_to_nobody(void)
{
	ASSERT_EQ(setgroups(0, NULL), 0);
	ASSERT_EQ(setresgid(65534, 65534, 65534), 0);
	ASSERT_EQ(setresuid(65534, 65534, 65534), 0);
	ASSERT_EQ(geteuid(), 65534);
}

static void perm_child(void *p)
{
	struct perm *x = p;
	struct msg m = msg_make(5, 5);

	drop_to_nobody();
	get(&x->go); /* the channel exists */
	errno = 0;
	mr_chan_t *c = mr_chan_open(x->url, NULL);
	x->err = c ? 0 : errno;
	if (c) {
		ASSERT_EQ(mr_chan_send(c, &m), 0);
		mr_chan_destroy(c);
	}
	errno = 0;
	c = chopen(x->url, sizeof(m), 4, MR_CHAN_CREATE);
	x->err_c = c ? 0 : errno;
	if (c)
		mr_chan_destroy(c);
	if (x->mode != 0666)
		x->unl = mr_chan_unlink(x->url);
}

TEST(another_uid_needs_the_mode)
{
	struct name n[2];
	struct perm *x[2];
	pid_t pid[2];
	struct stat st;
	struct msg m;

	if (geteuid() != 0)
		SKIP("needs root, to run a child as uid 65534");
	/* The children first, while this process has one thread. */
	for (int k = 0; k < 2; k++) {
		name_make(&n[k], "perm");
		x[k] = shared(sizeof(*x[k]));
		x[k]->url = n[k].url;
		x[k]->mode = k ? 0666 : 0600;
		link_make(&x[k]->go);
		pid[k] = spawn(perm_child, x[k]);
	}
	for (int k = 0; k < 2; k++) {
		unsigned mode = k ? 0666 : 0; /* 0: the default, 0600 */

		MR_OPTS(mr_chan_open_opts, o, .elem_size = sizeof(m), .capacity = 4, .mode = mode,
			.flags = MR_CHAN_CREATE | MR_CHAN_EXCL);
		mr_chan_t *ch = MUST_OPEN_OPTS(n[k].url, &o);
		ASSERT_EQ(stat(n[k].path, &st), 0);
		EXPECT_EQ(st.st_mode & 0777, x[k]->mode);
		EXPECT_EQ(st.st_uid, 0);
		put(&x[k]->go, 1);
		expect_exit_ok(pid[k], "uid 65534");
		if (x[k]->mode == 0600) {
			EXPECT_EQ(x[k]->err, EACCES);
			EXPECT_EQ(x[k]->err_c, EACCES);
			EXPECT_EQ(x[k]->unl, -EACCES);
			EXPECT_TRUE(seg_exists(&n[k]));
			EXPECT_EQ(mr_chan_try_recv(ch, &m), -EAGAIN);
		} else {
			EXPECT_EQ(x[k]->err, 0);
			/* the mode lets it attach, but MR_CHAN_CREATE on a
			 * name another uid owns is refused (chan.h: nobody
			 * squats a name to read what its owner sends) */
			EXPECT_EQ(x[k]->err_c, EACCES);
			ASSERT_EQ(mr_chan_try_recv(ch, &m), 0);
			EXPECT_TRUE(msg_ok(&m));
			EXPECT_EQ(m.src, 5);
		}
		mr_chan_destroy(ch);
		link_close(&x[k]->go);
		munmap(x[k], sizeof(*x[k]));
	}
}

/* ---- hostile segments ------------------------------------------------------------------ */

static const int fuzz_open_errs[] = { EBADMSG, EPROTOTYPE, ETIMEDOUT, ENOENT, EUSERS };
#define FUZZ_OPEN_N 5

/* Results a call on a corrupted channel may give. */
static const int fuzz_ok_try[] = { 0, -EAGAIN, -EPROTO, -EPIPE, -ECONNRESET };
static const int fuzz_ok_until[] = { 0, -EAGAIN, -EPROTO, -EPIPE, -ECONNRESET, -ETIMEDOUT };

static long fuzz_bad;

static void fuzz_check(const char *what, int rc, bool deadline)
{
	bool ok = deadline ? rc_in(rc, fuzz_ok_until, 6) : rc_in(rc, fuzz_ok_try, 5);

	if (!ok && ++fuzz_bad <= 10) {
		TH_LOG("%s on a corrupted channel: %d (%s)", what, rc, strerror(-rc));
		mr_test_failed = 1;
	}
}

/* Every call that returns, on handles s (send side) and r (receive side). */
static void fuzz_calls(mr_chan_t *s, mr_chan_t *r, const char *path, size_t elem)
{
	uint8_t in[64] = { 1, 2, 3 }, out[64];
	void *slot;
	const void *e;
	int rc;

	fuzz_check("try_send", mr_chan_try_send(s, in), false);
	fuzz_check("try_recv", mr_chan_try_recv(r, out), false);
	fuzz_check("send_until", mr_chan_send_until(s, in, in_us(200)), true);
	fuzz_check("recv_until", mr_chan_recv_until(r, out, in_us(200)), true);
	rc = mr_chan_try_loan(s, &slot);
	fuzz_check("try_loan", rc, false);
	if (rc == 0) {
		if (!in_segment(slot, elem, path) && ++fuzz_bad <= 10) {
			TH_LOG("a loan outside the segment: %p", slot);
			mr_test_failed = 1;
		} else {
			memset(slot, 0x5a, elem);
		}
		fuzz_check("commit", mr_chan_commit(s, slot), false);
	}
	rc = mr_chan_borrow_until(r, &e, in_us(200));
	fuzz_check("borrow_until", rc, true);
	if (rc == 0) {
		if (!in_segment(e, elem, path) && ++fuzz_bad <= 10) {
			TH_LOG("a borrow outside the segment: %p", e);
			mr_test_failed = 1;
		} else {
			memcpy(out, e, elem);
		}
		fuzz_check("release", mr_chan_release(r, e), false);
	}
	rc = mr_chan_loan_until(s, &slot, in_us(200));
	fuzz_check("loan_until", rc, true);
	if (rc == 0) {
		if (!in_segment(slot, elem, path) && ++fuzz_bad <= 10) {
			TH_LOG("a loan outside the segment: %p", slot);
			mr_test_failed = 1;
		}
		fuzz_check("discard", mr_chan_discard(s, slot), false);
	}
	struct mr_select_case c[2] = {
		{ r, MR_SELECT_RECV, out, 1 },
		{ s, MR_SELECT_SEND, in, 1 },
	};
	rc = mr_select(c, 2, in_us(200));
	if (rc == 0 || rc == 1)
		fuzz_check("select's case", c[rc].result, true);
	else
		fuzz_check("select", rc, true);
	(void)mr_chan_len(r);
	(void)mr_chan_is_closed(r);
}

/*
 * Header: one to a few bytes of the first 256 of a live segment get random
 * values (each offset in turn, many seeds); a new open must refuse it
 * (EBADMSG, EPROTOTYPE; ETIMEDOUT when the version word reads as "being
 * initialised"; ENOENT or a fresh segment if the opener judged it a dead
 * creator's and removed it) or, when the byte did not matter, attach; and
 * never crash or hang. The bytes are restored after each try.
 */
TEST(fuzzed_header_is_refused)
{
	struct name n;
	long iters = scaled(256 * 24), opened = 0, remade = 0, errs[FUZZ_OPEN_N] = { 0 };
	uint64_t rs = test_seed(0xD1B54A32D192ED03ull);
	uint8_t orig[256];
	struct stat st;
	int fd = -1;
	uint8_t *map = NULL;
	size_t size = 0;
	mr_chan_t *h = NULL;

	name_make(&n, "hdr");
	for (long it = 0; it < iters; it++) {
		if (!h) {
			h = MUST_OPEN(n.url, 16, 8, MR_CHAN_CREATE | MR_CHAN_EXCL);
			fd = open(n.path, O_RDWR | O_CLOEXEC);
			ASSERT_GE(fd, 0);
			ASSERT_EQ(fstat(fd, &st), 0);
			size = (size_t)st.st_size;
			ASSERT_GE(size, sizeof(orig));
			map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
			ASSERT_TRUE(map != MAP_FAILED);
			memcpy(orig, map, sizeof(orig));
		}
		int nb = rnd(&rs) % 4 == 0 ? 2 + (int)(rnd(&rs) % 6) : 1;
		for (int j = 0; j < nb; j++) {
			size_t off = j == 0 ? (size_t)(it % 256) : (size_t)(rnd(&rs) % 256);
			uint8_t v = (uint8_t)rnd(&rs);

			map[off] = v == orig[off] ? (uint8_t)~v : v;
		}
		MR_OPTS(mr_chan_open_opts, o, .timeout_ns = 2000000,
			.flags = rnd(&rs) % 4 == 0 ? MR_CHAN_CREATE : 0);
		if (o.flags) {
			o.elem_size = 16;
			o.capacity = 8;
		}
		errno = 0;
		mr_chan_t *c = mr_chan_open(n.url, &o);
		int e = errno;
		if (c) {
			opened++;
			fuzz_calls(c, c, n.path, 16);
			mr_chan_destroy(c);
		} else {
			int i;

			for (i = 0; i < FUZZ_OPEN_N; i++)
				if (e == fuzz_open_errs[i])
					break;
			if (i < FUZZ_OPEN_N) {
				errs[i]++;
			} else if (++fuzz_bad <= 10) {
				TH_LOG("open of a segment with byte %ld changed: %s", it % 256,
				       strerror(e));
				mr_test_failed = 1;
			}
		}
		memcpy(map, orig, sizeof(orig));
		/* An opener that took the segment for a dead creator's may have
		 * removed it (and, with CREATE, made another): start again. */
		struct stat now;
		if (stat(n.path, &now) != 0 || now.st_ino != st.st_ino) {
			remade++;
			munmap(map, size);
			close(fd);
			mr_chan_destroy(h); /* may remove the new one: fine */
			mr_chan_unlink(n.url);
			h = NULL;
		}
	}
	TH_LOG("%ld corrupted headers: %ld opened, EBADMSG %ld, EPROTOTYPE %ld, ETIMEDOUT %ld, "
	       "ENOENT %ld, EUSERS %ld; segment removed by an opener %ld times",
	       iters, opened, errs[0], errs[1], errs[2], errs[3], errs[4], remade);
	if (h) {
		munmap(map, size);
		close(fd);
		mr_chan_destroy(h);
	}
	EXPECT_EQ(fuzz_bad, 0);
}

/*
 * Control words: with two live handles, random words (or, every so often,
 * every byte) of the segment outside the element payloads get random or
 * boundary values, starting each round from a healthy snapshot; every call
 * must return one of the results a corrupted channel may give, without a
 * crash, a hang or a pointer outside the segment.
 */
static size_t fuzz_span(size_t size, size_t elem, size_t cap)
{
	/* Everything but the last cap * elem bytes: the header, the
	 * attachments, the slot words and some elements (the layout is in
	 * user/chan/shm.c; the test does not depend on it). */
	size_t payload = elem * cap;

	return size > payload ? size - payload : size;
}

TEST(fuzzed_control_words_never_crash_or_hang)
{
	struct name n;
	const size_t elem = 16, cap = 8;
	long rounds = scaled(20000);
	uint64_t rs = test_seed(0xA0761D6478BD642Full);
	static const uint64_t special[] = { 0, 1, 2, 7, 8, 9, 15, 16, 17, 63, 64, 4095, 4096,
					    0x7fffffff, 0x80000000, 0xffffffff, 0x100000000ull,
					    (uint64_t)INT64_MAX, (uint64_t)INT64_MIN, UINT64_MAX };
	struct stat st;

	name_make(&n, "ctl");
	mr_chan_t *s = MUST_OPEN(n.url, elem, cap, MR_CHAN_CREATE | MR_CHAN_EXCL | MR_CHAN_SEND);
	mr_chan_t *r = MUST_OPEN(n.url, 0, 0, MR_CHAN_RECV);
	int fd = open(n.path, O_RDWR | O_CLOEXEC);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(fstat(fd, &st), 0);
	size_t size = (size_t)st.st_size, span = fuzz_span(size, elem, cap);
	uint8_t *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_TRUE(map != MAP_FAILED);
	uint8_t buf[16] = { 9 };
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(mr_chan_send(s, buf), 0);
	uint8_t *snap = malloc(size);
	ASSERT_NONNULL(snap);
	memcpy(snap, map, size);

	for (long it = 0; it < rounds; it++) {
		memcpy(map, snap, size);
		if (it % 16 == 15) {
			for (size_t i = 0; i < span; i++)
				map[i] = (uint8_t)rnd(&rs);
		} else {
			int k = 1 + (int)(rnd(&rs) % 4);

			for (int j = 0; j < k; j++) {
				uint64_t v = rnd(&rs) % 2 ? special[rnd(&rs) % 20] : rnd(&rs);
				int w = 1 << (rnd(&rs) % 4); /* 1, 2, 4, 8 bytes */
				size_t off = (size_t)(rnd(&rs) % span) & ~(size_t)(w - 1);

				if (off + (size_t)w > size)
					continue;
				memcpy(map + off, &v, (size_t)w);
			}
		}
		fuzz_calls(s, r, n.path, elem);
		if (fuzz_bad > 10)
			break;
	}
	/* Healthy again: the handles still detach (and the creator's removes
	 * the name) without a crash. */
	memcpy(map, snap, size);
	TH_LOG("%ld rounds over %zu of %zu bytes", rounds, span, size);
	munmap(map, size);
	close(fd);
	free(snap);
	mr_chan_destroy(r);
	mr_chan_destroy(s);
	EXPECT_EQ(fuzz_bad, 0);
}

/*
 * A hostile peer: another process scribbles random words over the
 * segment (the same span as above) while this one keeps calling; no
 * snapshot is restored, so the corruption piles up. Every call returns one
 * of the allowed results, and none crashes, hangs or points outside the
 * segment.
 */
struct scribbler {
	const char *path;
	size_t span;
	uint64_t seed;
	atomic_int stop;
	atomic_long writes;
	struct link go;
};

static void scribble(void *p)
{
	struct scribbler *x = p;
	uint64_t rs = x->seed;

	get(&x->go);
	int fd = open(x->path, O_RDWR | O_CLOEXEC);
	ASSERT_GE(fd, 0);
	struct stat st;
	ASSERT_EQ(fstat(fd, &st), 0);
	_Atomic uint64_t *w = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_TRUE(w != MAP_FAILED);
	size_t words = x->span / 8;
	while (!atomic_load(&x->stop)) {
		for (int i = 0; i < 16; i++) {
			uint64_t v = rnd(&rs);

			/* mostly small numbers and single flipped bits: words
			 * that look almost right go deepest */
			if (v % 4 == 0)
				v = (v >> 8) % 64;
			else if (v % 4 == 1)
				v = atomic_load_explicit(&w[(v >> 8) % words], memory_order_relaxed) ^
				    (1ull << ((v >> 2) % 64));
			atomic_store_explicit(&w[rnd(&rs) % words], v, memory_order_relaxed);
		}
		atomic_fetch_add(&x->writes, 16);
		sched_yield();
	}
}

TEST(hostile_peer_scribbles_while_we_call)
{
	struct name n;
	const size_t elem = 16, cap = 8;
	struct scribbler *x = shared(sizeof(*x));
	struct stat st;
	long calls = 0;

	name_make(&n, "scribble");
	x->path = n.path;
	x->seed = test_seed(0xC2B2AE3D27D4EB4Full);
	link_make(&x->go);
	pid_t pid = spawn(scribble, x); /* before our threads (see the top) */
	mr_chan_t *s = MUST_OPEN(n.url, elem, cap, MR_CHAN_CREATE | MR_CHAN_EXCL | MR_CHAN_SEND);
	mr_chan_t *r = MUST_OPEN(n.url, 0, 0, MR_CHAN_RECV);
	ASSERT_EQ(stat(n.path, &st), 0);
	x->span = fuzz_span((size_t)st.st_size, elem, cap);
	put(&x->go, 1);
	int64_t end = mr_now_ns() + 2000000000 / (int64_t)mr_test_scale();
	while (mr_now_ns() < end && fuzz_bad <= 10) {
		fuzz_calls(s, r, n.path, elem);
		calls++;
	}
	atomic_store(&x->stop, 1);
	expect_exit_ok(pid, "scribbler");
	TH_LOG("%ld rounds of calls against %ld scribbled words", calls,
	       atomic_load(&x->writes));
	mr_chan_destroy(r);
	mr_chan_destroy(s);
	EXPECT_EQ(fuzz_bad, 0);
	link_close(&x->go);
	munmap(x, sizeof(*x));
}

TEST_HARNESS_MAIN
