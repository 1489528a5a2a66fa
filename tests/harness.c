/*
 * harness.c - tests of the test harness itself (harness.h): a failure must
 * never be lost on its way to the verdict, in particular one inside a
 * function that mr_test_run_child() runs in a forked child.
 */
#include "harness.h"

/* The child's stdout goes to the captured stderr, so the failure message
 * lands in buf instead of the KTAP stream of this (passing) test. */
static void expect_fails(void *arg)
{
	(void)arg;
	dup2(2, 1);
	EXPECT_EQ(1 + 1, 3);
	/* An EXPECT goes on: reaching here is right, and still a failure. */
}

static void assert_fails(void *arg)
{
	(void)arg;
	dup2(2, 1);
	ASSERT_EQ(1 + 1, 3);
}

static void passes(void *arg)
{
	(void)arg;
	EXPECT_EQ(1 + 1, 2);
}

TEST(expect_failure_in_run_child_is_reported)
{
	char buf[2048];
	int st = mr_test_run_child(expect_fails, NULL, buf, sizeof(buf));

	ASSERT_TRUE(WIFEXITED(st));
	ASSERT_EQ(WEXITSTATUS(st), 1);
	ASSERT_STR_CONTAINS(buf, "expected 1 + 1 == 3");
}

TEST(assert_failure_in_run_child_is_reported)
{
	char buf[2048];
	int st = mr_test_run_child(assert_fails, NULL, buf, sizeof(buf));

	ASSERT_TRUE(WIFEXITED(st));
	ASSERT_EQ(WEXITSTATUS(st), 1);
	ASSERT_STR_CONTAINS(buf, "expected 1 + 1 == 3");
}

/* A failure of the parent before the fork is the parent's, not the child's. */
TEST(run_child_starts_without_the_parents_failure)
{
	char buf[2048];

	mr_test_failed = 1;
	int st = mr_test_run_child(passes, NULL, buf, sizeof(buf));
	mr_test_failed = 0;
	ASSERT_TRUE(WIFEXITED(st));
	ASSERT_EQ(WEXITSTATUS(st), 0);
}

TEST_HARNESS_MAIN
