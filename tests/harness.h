/*
 * harness.h - a small test harness in the spirit of the kernel's kselftest
 * harness (tools/testing/selftests/kselftest_harness.h), written for Moirai.
 *
 *	TEST(name) { ASSERT_EQ(1 + 1, 2); }
 *	FIXTURE(f) { int x; };
 *	FIXTURE_SETUP(f) { self->x = 1; }
 *	FIXTURE_TEARDOWN(f) { }
 *	TEST_F(f, name) { EXPECT_EQ(self->x, 1); }
 *	TEST_HARNESS_MAIN
 *
 * Every test runs in a forked child with a timeout (TEST_TIMEOUT(name, secs)
 * variants; MR_TEST_TIMEOUT_SCALE multiplies all), so a crash or a hang fails
 * that test only. ASSERT_* ends the test at the first failure, EXPECT_* goes
 * on; both print the expression and both values. SKIP(reason) ends the test
 * as skipped. Output is KTAP; the last line is "N passed, N failed, N
 * skipped"; the exit status is 1 if anything failed.
 *
 * Environment: MR_TEST_FILTER=substring runs only matching tests;
 * MR_TEST_SCALE=k divides the sizes of big tests (mr_test_scale()); set by
 * the runner for sanitizer builds.
 */
#ifndef MR_TEST_HARNESS_H
#define MR_TEST_HARNESS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct mr_test {
	const char *name;
	void (*fn)(struct mr_test *t);
	unsigned timeout; /* seconds */
	struct mr_test *next;
};

static struct mr_test *mr_tests_head, **mr_tests_tail = &mr_tests_head;
static int mr_test_failed; /* in the child: an EXPECT failed */

static inline void mr_test_register(struct mr_test *t)
{
	*mr_tests_tail = t;
	mr_tests_tail = &t->next;
}

/* Divisor for the size of big tests (1 normally, larger under sanitizers). */
static inline unsigned long mr_test_scale(void)
{
	const char *s = getenv("MR_TEST_SCALE");
	unsigned long v = s ? strtoul(s, NULL, 10) : 1;
	return v ? v : 1;
}

#define MR_TEST_EXIT_SKIP 4

#define TEST_TIMEOUT(name, secs)                                                                   \
	static void mr_test_fn_##name(struct mr_test *_t);                                         \
	static struct mr_test mr_test_##name = { #name, mr_test_fn_##name, secs, NULL };         \
	__attribute__((constructor)) static void mr_test_reg_##name(void)                         \
	{                                                                                          \
		mr_test_register(&mr_test_##name);                                                 \
	}                                                                                          \
	static void mr_test_fn_##name(struct mr_test *_t __attribute__((unused)))

#define TEST(name) TEST_TIMEOUT(name, 60)

#define FIXTURE(f) struct mr_fixture_##f
#define FIXTURE_SETUP(f) static void mr_fixture_setup_##f(struct mr_fixture_##f *self)
#define FIXTURE_TEARDOWN(f) static void mr_fixture_teardown_##f(struct mr_fixture_##f *self)
#define TEST_F_TIMEOUT(f, name, secs)                                                              \
	static void mr_test_body_##f##_##name(struct mr_fixture_##f *self);                       \
	TEST_TIMEOUT(f##_##name, secs)                                                             \
	{                                                                                          \
		struct mr_fixture_##f fx;                                                          \
		memset(&fx, 0, sizeof(fx));                                                        \
		mr_fixture_setup_##f(&fx);                                                         \
		mr_test_body_##f##_##name(&fx);                                                    \
		mr_fixture_teardown_##f(&fx);                                                      \
	}                                                                                          \
	static void mr_test_body_##f##_##name(struct mr_fixture_##f *self)
#define TEST_F(f, name) TEST_F_TIMEOUT(f, name, 60)

#define TH_LOG(...)                                                                                \
	do {                                                                                       \
		fprintf(stdout, "# %s:%d: ", __FILE__, __LINE__);                                  \
		fprintf(stdout, __VA_ARGS__);                                                      \
		fputc('\n', stdout);                                                               \
		fflush(stdout);                                                                    \
	} while (0)

#define SKIP(...)                                                                                  \
	do {                                                                                       \
		fprintf(stdout, "# SKIP: ");                                                       \
		fprintf(stdout, __VA_ARGS__);                                                      \
		fputc('\n', stdout);                                                               \
		fflush(stdout);                                                                    \
		_exit(MR_TEST_EXIT_SKIP);                                                          \
	} while (0)

/* Compare as intmax_t or uintmax_t depending on the left operand's signedness. */
#define MR_IS_SIGNED(x) ((__typeof__(x))-1 < (__typeof__(x))0)

#define MR_CMP(a, b, op, fatal)                                                                    \
	do {                                                                                       \
		__typeof__(a) _a = (a);                                                            \
		__typeof__(b) _b = (b);                                                            \
		if (!(_a op _b)) {                                                                 \
			if (MR_IS_SIGNED(_a))                                                      \
				fprintf(stdout,                                                    \
					"# %s:%d: expected %s %s %s: %" PRIdMAX " vs %" PRIdMAX   \
					"\n",                                                      \
					__FILE__, __LINE__, #a, #op, #b, (intmax_t)_a,             \
					(intmax_t)_b);                                             \
			else                                                                       \
				fprintf(stdout,                                                    \
					"# %s:%d: expected %s %s %s: %" PRIuMAX " vs %" PRIuMAX   \
					"\n",                                                      \
					__FILE__, __LINE__, #a, #op, #b, (uintmax_t)_a,            \
					(uintmax_t)_b);                                            \
			fflush(stdout);                                                            \
			if (fatal)                                                                 \
				_exit(1);                                                          \
			mr_test_failed = 1;                                                        \
		}                                                                                  \
	} while (0)

#define ASSERT_EQ(a, b) MR_CMP(a, b, ==, 1)
#define ASSERT_NE(a, b) MR_CMP(a, b, !=, 1)
#define ASSERT_LT(a, b) MR_CMP(a, b, <, 1)
#define ASSERT_LE(a, b) MR_CMP(a, b, <=, 1)
#define ASSERT_GT(a, b) MR_CMP(a, b, >, 1)
#define ASSERT_GE(a, b) MR_CMP(a, b, >=, 1)
#define EXPECT_EQ(a, b) MR_CMP(a, b, ==, 0)
#define EXPECT_NE(a, b) MR_CMP(a, b, !=, 0)
#define EXPECT_LT(a, b) MR_CMP(a, b, <, 0)
#define EXPECT_LE(a, b) MR_CMP(a, b, <=, 0)
#define EXPECT_GT(a, b) MR_CMP(a, b, >, 0)
#define EXPECT_GE(a, b) MR_CMP(a, b, >=, 0)

#define MR_BOOL(c, want, fatal)                                                                    \
	do {                                                                                       \
		bool _c = (c);                                                                     \
		if (_c != (bool)(want)) {                                                             \
			fprintf(stdout, "# %s:%d: expected %s to be %s\n", __FILE__, __LINE__, #c, \
				(want) ? "true" : "false");                                        \
			fflush(stdout);                                                            \
			if (fatal)                                                                 \
				_exit(1);                                                          \
			mr_test_failed = 1;                                                        \
		}                                                                                  \
	} while (0)
#define ASSERT_TRUE(c) MR_BOOL(c, 1, 1)
#define ASSERT_FALSE(c) MR_BOOL(c, 0, 1)
#define EXPECT_TRUE(c) MR_BOOL(c, 1, 0)
#define EXPECT_FALSE(c) MR_BOOL(c, 0, 0)
#define ASSERT_NULL(p) MR_BOOL((p) == NULL, 1, 1)
#define ASSERT_NONNULL(p) MR_BOOL((p) != NULL, 1, 1)

#define ASSERT_STR_CONTAINS(hay, needle)                                                           \
	do {                                                                                       \
		const char *_h = (hay), *_n = (needle);                                            \
		if (!_h || !strstr(_h, _n)) {                                                      \
			fprintf(stdout, "# %s:%d: expected \"%s\" to contain \"%s\"\n", __FILE__,  \
				__LINE__, _h ? _h : "(null)", _n);                                  \
			fflush(stdout);                                                            \
			_exit(1);                                                                  \
		}                                                                                  \
	} while (0)

/*
 * Run fn(arg) in a forked child with stderr captured; return its wait status
 * and put up to cap-1 bytes of what it wrote to stderr in buf. For tests of
 * misuse that must abort with a message. An EXPECT_* that fails inside fn
 * makes the child exit 1 (as an ASSERT_* does at once), so the caller sees
 * it in the status; the child starts with no failure of the parent's.
 */
static inline int mr_test_run_child(void (*fn)(void *), void *arg, char *buf, size_t cap)
{
	int pfd[2], status = 0;
	size_t len = 0;
	pid_t pid;

	if (pipe(pfd) < 0)
		return -1;
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		dup2(pfd[1], 2);
		mr_test_failed = 0;
		fn(arg);
		fflush(stdout);
		_exit(mr_test_failed ? 1 : 0);
	}
	close(pfd[1]);
	for (;;) {
		ssize_t n = read(pfd[0], buf + len, cap - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == cap - 1)
			break;
	}
	buf[len] = 0;
	close(pfd[0]);
	waitpid(pid, &status, 0);
	return status;
}

static inline int mr_test_main(int argc, char **argv)
{
	const char *filter = getenv("MR_TEST_FILTER");
	const char *scale_s = getenv("MR_TEST_TIMEOUT_SCALE");
	unsigned tscale = scale_s ? (unsigned)strtoul(scale_s, NULL, 10) : 1;
	unsigned n = 0, i = 0, pass = 0, fail = 0, skip = 0;
	struct mr_test *t;

	(void)argc;
	if (!tscale)
		tscale = 1;
	/* Test children end with _exit() or a crash, and many never destroy
	 * their runtimes: their counters' pins and /dev/shm files would stay
	 * behind. Not exported unless a test asks (tests/stats.c does). */
	setenv("MOIRAI_METRICS", "0", 0);
	for (t = mr_tests_head; t; t = t->next)
		if (!filter || strstr(t->name, filter))
			n++;
	printf("KTAP version 1\n# %s\n1..%u\n", argv[0], n);
	fflush(stdout);
	for (t = mr_tests_head; t; t = t->next) {
		int status;
		pid_t pid;
		struct timespec t0, t1;

		if (filter && !strstr(t->name, filter))
			continue;
		i++;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		fflush(stdout);
		pid = fork();
		if (pid < 0) {
			printf("not ok %u %s # fork: %s\n", i, t->name, strerror(errno));
			fail++;
			continue;
		}
		if (pid == 0) {
			setpgid(0, 0);
			alarm(t->timeout * tscale);
			t->fn(t);
			fflush(stdout);
			_exit(mr_test_failed ? 1 : 0);
		}
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		kill(-pid, SIGKILL); /* anything the test left behind */
		clock_gettime(CLOCK_MONOTONIC, &t1);
		double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
			printf("ok %u %s # %.2fs\n", i, t->name, secs);
			pass++;
		} else if (WIFEXITED(status) && WEXITSTATUS(status) == MR_TEST_EXIT_SKIP) {
			printf("ok %u %s # SKIP\n", i, t->name);
			skip++;
		} else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
			printf("not ok %u %s # TIMEOUT after %us\n", i, t->name, t->timeout * tscale);
			fail++;
		} else if (WIFSIGNALED(status)) {
			printf("not ok %u %s # killed by signal %d (%s)\n", i, t->name,
			       WTERMSIG(status), strsignal(WTERMSIG(status)));
			fail++;
		} else {
			printf("not ok %u %s # exit status %d\n", i, t->name, WEXITSTATUS(status));
			fail++;
		}
		fflush(stdout);
	}
	printf("%u passed, %u failed, %u skipped\n", pass, fail, skip);
	return fail ? 1 : 0;
}

#define TEST_HARNESS_MAIN                                                                          \
	int main(int argc, char **argv)                                                            \
	{                                                                                          \
		return mr_test_main(argc, argv);                                                   \
	}

#endif /* MR_TEST_HARNESS_H */
