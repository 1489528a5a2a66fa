/*
 * scan_typed.c - prefix sums of uint64_t, int64_t and double with the
 * addition compiled in (mr_parallel_scan_sum_*), in one pass over memory.
 *
 * The generic scan reads its input twice from memory (fold, then rescan)
 * and calls the operation through a pointer 2n times; on 10^8 doubles
 * that was 6x a plain loop. Here the input is cut into blocks of BLOCK
 * elements (512 KiB of doubles: they stay in L2 or L3 between the two
 * looks at them) that the workers take in order from a shared counter.
 * A worker sums its block, waits until the block before it has published
 * its inclusive prefix (that block was taken earlier and is being summed
 * by a running worker: the wait is the length of a block's sum at most),
 * publishes its own (previous + its sum), then scans the block from the
 * previous prefix, reading it again from the cache. So memory sees one
 * read and one write of each element, as the sequential loop does, and
 * the chain between blocks costs one addition and one cache line each.
 *
 * Doubles: each output is the previous block's prefix plus the block's
 * elements added one by one, and each block's prefix is the previous one
 * plus the block's sum: the additions are grouped by block, so the results
 * may differ from the sequential loop's in the last bits - but they do not
 * depend on the number of workers or on timing (blocks are fixed).
 *
 * Behaves badly: the wait for the previous block spins (with the
 * library's backoff, yielding the CPU after a while): a worker preempted
 * by the OS in the middle of a block holds the ones after it back.
 */
#include <stdlib.h>
#include <string.h>

#include <moirai/algo.h>

#include "algo.h"

#define BLOCK 65536		/* elements of a block */
#define PAR_MIN (4 * BLOCK)	/* sequential up to here */

#define DEFINE_TYPED_SCAN(NAME, T, ADD)                                                            \
	struct NAME##_blk {                                                                        \
		_Alignas(64) _Atomic uint32_t ready; /* incl is published */                      \
		T incl;                                                                            \
	};                                                                                         \
	struct NAME##_scan {                                                                       \
		const T *in;                                                                       \
		T *out;                                                                            \
		size_t n, nb;                                                                      \
		bool exclusive;                                                                    \
		_Atomic size_t next;                                                               \
		struct NAME##_blk *blk;                                                            \
	};                                                                                         \
	/* out[lo, hi) from prefix acc (the sum of everything before lo). */                      \
	static void NAME##_range(const T *in, T *out, size_t lo, size_t hi, T acc, bool excl)     \
	{                                                                                          \
		if (!excl) {                                                                       \
			for (size_t i = lo; i < hi; i++) {                                         \
				acc = ADD(acc, in[i]);                                             \
				out[i] = acc;                                                      \
			}                                                                          \
		} else {                                                                           \
			for (size_t i = lo; i < hi; i++) {                                         \
				T x = in[i]; /* before out[i] overwrites it in place */            \
				out[i] = acc;                                                      \
				acc = ADD(acc, x);                                                 \
			}                                                                          \
		}                                                                                  \
	}                                                                                          \
	static void NAME##_worker(size_t w0, size_t w1, void *arg)                                 \
	{                                                                                          \
		struct NAME##_scan *sc = arg;                                                      \
		(void)w0;                                                                          \
		(void)w1;                                                                          \
		for (;;) {                                                                         \
			/* relaxed: the counter only hands out indices. */                        \
			size_t b = atomic_fetch_add_explicit(&sc->next, 1, memory_order_relaxed);  \
			if (b >= sc->nb)                                                           \
				return;                                                            \
			size_t lo = b * BLOCK, hi = lo + BLOCK < sc->n ? lo + BLOCK : sc->n;      \
			T sum = 0, prev = 0;                                                       \
			for (size_t i = lo; i < hi; i++)                                           \
				sum = ADD(sum, sc->in[i]);                                         \
			if (b > 0) {                                                               \
				unsigned spins = 0;                                                \
				/* acquire: pairs with the release below, by block b-1. */        \
				while (!atomic_load_explicit(&sc->blk[b - 1].ready,                \
							     memory_order_acquire))                \
					mr__backoff(&spins);                                       \
				prev = sc->blk[b - 1].incl;                                        \
			}                                                                          \
			sc->blk[b].incl = ADD(prev, sum);                                          \
			/* release: pairs with the acquire above, by block b+1. */                \
			atomic_store_explicit(&sc->blk[b].ready, 1, memory_order_release);         \
			NAME##_range(sc->in, sc->out, lo, hi, prev, sc->exclusive);                \
		}                                                                                  \
	}                                                                                          \
	int NAME(const T *in, T *out, size_t n, unsigned flags)                                    \
	{                                                                                          \
		if ((flags & ~(unsigned)MR_SCAN_EXCLUSIVE) || (n && (!in || !out)) ||              \
		    n > SIZE_MAX / sizeof(T))                                                      \
			return -EINVAL;                                                            \
		if (in != out && in < out + n && out < in + n)                                     \
			return -EINVAL;                                                            \
		bool excl = flags & MR_SCAN_EXCLUSIVE;                                             \
		struct mr_runtime *rt = NULL;                                                      \
		if (n > PAR_MIN) {                                                                 \
			if (!(rt = mr__algo_runtime()))                                            \
				return -errno;                                                     \
		}                                                                                  \
		if (!rt || rt->nworkers == 1) {                                                    \
			NAME##_range(in, out, 0, n, 0, excl);                                      \
			return 0;                                                                  \
		}                                                                                  \
		struct NAME##_scan sc = { .in = in, .out = out, .n = n, .exclusive = excl };       \
		sc.nb = (n + BLOCK - 1) / BLOCK;                                                   \
		sc.blk = aligned_alloc(64, sc.nb * sizeof(*sc.blk));                               \
		if (!sc.blk)                                                                       \
			return -ENOMEM;                                                            \
		for (size_t b = 0; b < sc.nb; b++)                                                 \
			atomic_init(&sc.blk[b].ready, 0);                                          \
		atomic_init(&sc.next, 0);                                                          \
		int r = mr_parallel_for(0, rt->nworkers, 1, NAME##_worker, &sc);                   \
		free(sc.blk);                                                                      \
		return r;                                                                          \
	}

#define ADD_U64(a, b) ((a) + (b))
#define ADD_I64(a, b) ((int64_t)((uint64_t)(a) + (uint64_t)(b))) /* wraps, as documented */
#define ADD_DOUBLE(a, b) ((a) + (b))

DEFINE_TYPED_SCAN(mr_parallel_scan_sum_u64, uint64_t, ADD_U64)
DEFINE_TYPED_SCAN(mr_parallel_scan_sum_i64, int64_t, ADD_I64)
DEFINE_TYPED_SCAN(mr_parallel_scan_sum_double, double, ADD_DOUBLE)
