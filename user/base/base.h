/*
 * base.h - small things every module of the library uses: branch hints,
 * cache-line alignment, the CPU relax hint, futex calls, and the abort path
 * for misuse ("moirai: <call>: <what>").
 *
 * Futex calls here are process-private (FUTEX_PRIVATE_FLAG). A wake on an
 * address that has since been freed is harmless (the kernel looks the address
 * up and finds no waiter); callers rely on that, never on writes after a
 * waiter may have returned.
 */
#ifndef MR_BASE_H
#define MR_BASE_H

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define MR_CACHELINE 64
#define mr__cacheline_aligned alignas(MR_CACHELINE)

static inline void mr__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}

/*
 * The one backoff of every spin-wait in the library: pause for the first 64
 * rounds (the other side is running and a few instructions from done), then
 * give the CPU away with sched_yield() each round: the holder may be a
 * thread preempted inside its critical section (threads may outnumber
 * CPUs), and spinning through its time slice would only keep it off.
 */
static inline void mr__backoff(unsigned *spins)
{
	if (++*spins < 64)
		mr__cpu_relax();
	else
		sched_yield();
}

/*
 * The library's spinlock: one word, 0 free, 1 held; test-and-test-and-set
 * with mr__backoff(). For short critical sections that never block or take
 * a lock out of order (user/README.md lists them all and their order).
 */
static inline bool mr__spin_trylock(_Atomic uint32_t *l)
{
	/* acquire: pairs with the release in mr__spin_unlock(). */
	return !atomic_exchange_explicit(l, 1, memory_order_acquire);
}

static inline void mr__spin_lock(_Atomic uint32_t *l)
{
	unsigned spins = 0;

	while (!mr__spin_trylock(l))
		while (atomic_load_explicit(l, memory_order_relaxed))
			mr__backoff(&spins);
}

static inline void mr__spin_unlock(_Atomic uint32_t *l)
{
	/* release: pairs with the acquire in mr__spin_trylock() and
	 * mr__spin_wait_unlocked(). */
	atomic_store_explicit(l, 0, memory_order_release);
}

/* Wait until *l is free (a holder's critical section has ended). */
static inline void mr__spin_wait_unlocked(_Atomic uint32_t *l)
{
	unsigned spins = 0;

	/* acquire: pairs with the release in mr__spin_unlock(). */
	while (atomic_load_explicit(l, memory_order_acquire))
		mr__backoff(&spins);
}

/*
 * A seq_cst fence. TSan does not model fences; under it, a seq_cst RMW on one
 * shared word gives the same (stronger) ordering in a form it understands.
 */
#if defined(__SANITIZE_THREAD__)
extern _Atomic unsigned long mr__tsan_fence_word;
#define mr__fence_seq_cst() atomic_fetch_add_explicit(&mr__tsan_fence_word, 0, memory_order_seq_cst)
#else
#define mr__fence_seq_cst() atomic_thread_fence(memory_order_seq_cst)
#endif

/* Sleep while *addr == val (or until woken / a signal). Returns 0 or -errno. */
static inline int mr__futex_wait(_Atomic uint32_t *addr, uint32_t val)
{
	long r = syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
	return r < 0 ? -errno : 0;
}

/* mr__futex_wait for at most ns nanoseconds. 0 or -errno (-ETIMEDOUT). */
static inline int mr__futex_wait_ns(_Atomic uint32_t *addr, uint32_t val, uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000u), (long)(ns % 1000000000u) };
	long r = syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, &ts, NULL, 0);
	return r < 0 ? -errno : 0;
}

/* mr__futex_wait until an absolute CLOCK_MONOTONIC deadline in ns (-1: none).
 * 0 or -errno (-ETIMEDOUT). */
static inline int mr__futex_wait_until(_Atomic uint32_t *addr, uint32_t val, int64_t deadline)
{
	struct timespec ts = { (time_t)(deadline / 1000000000), (long)(deadline % 1000000000) };
	long r = syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, val,
			 deadline >= 0 ? &ts : NULL, NULL, FUTEX_BITSET_MATCH_ANY);
	return r < 0 ? -errno : 0;
}

/* Wake up to n sleepers on addr. */
static inline void mr__futex_wake(_Atomic uint32_t *addr, int n)
{
	syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

static inline uint64_t mr__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: per-worker victim selection. */
static inline uint64_t mr__rand(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

/* Print "moirai: <call>: <fmt...>" to stderr and abort. */
__attribute__((noreturn, format(printf, 2, 3), cold)) void mr__die(const char *call,
								  const char *fmt, ...);

#endif /* MR_BASE_H */
