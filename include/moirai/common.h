/*
 * moirai/common.h - conventions shared by every public header.
 *
 * Errors: functions returning int give 0 (or a count) on success and a
 * negative errno on failure; constructors return NULL and set errno.
 * Misuse that would corrupt memory aborts with a message naming the call.
 * The library never prints unless it is about to abort.
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

#define MOIRAI_VERSION_MAJOR 0
#define MOIRAI_VERSION_MINOR 1

#endif /* MOIRAI_COMMON_H */
