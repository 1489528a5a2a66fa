/*
 * moirai/common.h - conventions shared by every public header.
 *
 * Errors: functions returning int give 0 (or a count) on success and a
 * negative errno on failure; constructors return NULL and set errno.
 * Misuse that would corrupt memory aborts with a message naming the call.
 * The library never prints unless it is about to abort.
 *
 * Deadlines, one rule for every call that takes one (the _until functions
 * of sync.h and chan.h, mr_select, mr_sleep_until): an absolute
 * CLOCK_MONOTONIC time in nanoseconds, mr_now_ns() + timeout.
 *   - Negative (MR_DEADLINE_NONE, or any other negative value): no
 *     deadline; the call waits as long as its form without a deadline
 *     would (mr_mutex_lock_until(m, -1) is mr_mutex_lock(m) with a result).
 *     A timeout added to mr_now_ns() that overflows therefore waits
 *     forever, which is what a huge timeout means.
 *   - 0 or any time already passed: do not wait. The call still completes
 *     if it can at once (a free mutex is taken, a ready channel operation
 *     done), else returns -ETIMEDOUT at once.
 *   - Otherwise: wait until the call completes or the deadline passes
 *     (-ETIMEDOUT); never -ETIMEDOUT before the deadline.
 * Two calls read a deadline for something other than waiting on an
 * object: mr_select() takes MR_SELECT_POLL (0) to mean "poll", answered
 * by -EAGAIN (chan.h); mr_sleep_until() waits for the deadline itself, so
 * a passed one, negative included, returns 0 at once (fiber.h).
 *
 * Options structs start with `size_t sz` so that they can grow without
 * breaking old callers; fill them with MR_OPTS:
 *
 *	MR_OPTS(mr_config, cfg, .workers = 4);
 *	mr_runtime_t *rt = mr_runtime_create(&cfg);
 */
#ifndef MOIRAI_COMMON_H
#define MOIRAI_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define MR_EXTERN_C_BEGIN extern "C" {
#define MR_EXTERN_C_END }
#else
#define MR_EXTERN_C_BEGIN
#define MR_EXTERN_C_END
#endif

#if defined(MOIRAI_BUILD)
#define MR_API __attribute__((visibility("default")))
#else
#define MR_API
#endif

/*
 * Declare and zero-fill an options struct whose first member is `size_t sz`.
 * C++ (designated initializers, C++20 or GNU) warns under -Wextra about
 * every member the list leaves out, which is the point of MR_OPTS: the
 * warning is turned off for this declaration only, and the static_assert
 * takes the caller's semicolon.
 */
#if defined(__cplusplus) && defined(__GNUC__)
#define MR_OPTS(TYPE, NAME, ...)                                                                   \
	_Pragma("GCC diagnostic push")                                                             \
	_Pragma("GCC diagnostic ignored \"-Wmissing-field-initializers\"")                         \
	struct TYPE NAME = { .sz = sizeof(struct TYPE), __VA_ARGS__ };                             \
	_Pragma("GCC diagnostic pop")                                                              \
	static_assert(true, "MR_OPTS")
#else
#define MR_OPTS(TYPE, NAME, ...)                                                                   \
	struct TYPE NAME = { .sz = sizeof(struct TYPE), __VA_ARGS__ }
#endif

/* A deadline that is none: wait as long as it takes (see above). */
#define MR_DEADLINE_NONE ((int64_t)-1)

#define MOIRAI_VERSION_MAJOR 0
#define MOIRAI_VERSION_MINOR 1

#endif /* MOIRAI_COMMON_H */
