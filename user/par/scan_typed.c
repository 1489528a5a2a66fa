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
 * A worker the OS preempts in the middle of its block's sum would hold
 * every later block back (the others spin on it): so the wait is short
 * (WAIT_SPINS pauses, a few microseconds, against a block's sum of tens),
 * and then the waiter computes the prefix itself when the scan is out of
 * place (the input is then read-only): it walks back to the nearest
 * published block and adds the sums of the blocks in between, the same
 * sums in the same order, so the result is bit for bit what the chain
 * would have published. In place, an earlier block's input may already
 * be overwritten by its output: the waiter waits (with the library's
 * backoff, which yields the CPU after a while).
 *
 * Stopping (the _opts forms): a worker looks at the options before it
 * takes a block and takes none once they say stop; every block taken is
 * finished, so no block waits for one that will never come, and the blocks
 * done are a prefix of the array. The sequential loop looks every BLOCK
 * elements.
 *
 * Behaves badly: a preempted worker's block is summed twice (once by a
 * waiter, once by itself when it resumes); a long run of stalled blocks
 * makes every waiter walk back over all of them; in place, a preempted
 * worker holds the later blocks back.
 */
#include <stdlib.h>
#include <string.h>

#include <moirai/algo.h>

#include "algo.h"

#define BLOCK 65536		/* elements of a block */
#define PAR_MIN (4 * BLOCK)	/* sequential up to here */
#define WAIT_SPINS 2048		/* pauses before computing a prefix ourselves */

/* Test hook (tests/algo.c): never wait for a block, always walk back. */
__attribute__((visibility("hidden"))) int mr__test_scan_no_wait;

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
		const struct mr_loop_opts *o;                                                      \
		_Atomic size_t next;                                                               \
		struct NAME##_blk *blk;                                                            \
	};                                                                                         \
	/* out[lo, hi) from prefix acc (the sum of everything before lo); returns  \
	 * the sum of everything before hi. */                                                    \
	static T NAME##_range(const T *in, T *out, size_t lo, size_t hi, T acc, bool excl)        \
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
		return acc;                                                                        \
	}                                                                                          \
	static T NAME##_sum(const T *in, size_t lo, size_t hi)                                     \
	{                                                                                          \
		T sum = 0;                                                                         \
		for (size_t i = lo; i < hi; i++)                                                   \
			sum = ADD(sum, in[i]);                                                     \
		return sum;                                                                        \
	}                                                                                          \
	/* The inclusive prefix of block b: published, or computed here. */                      \
	static T NAME##_incl(struct NAME##_scan *sc, size_t b)                                     \
	{                                                                                          \
		/* acquire: pairs with the release store of ready in _worker(). */               \
		unsigned spins = mr__test_scan_no_wait ? WAIT_SPINS : 0;                           \
		while (!atomic_load_explicit(&sc->blk[b].ready, memory_order_acquire)) {           \
			if (sc->in == sc->out) {                                                   \
				mr__backoff(&spins);                                               \
				continue;                                                          \
			}                                                                          \
			if (++spins < WAIT_SPINS) {                                                \
				mr__cpu_relax();                                                   \
				continue;                                                          \
			}                                                                          \
			/* Walk back to a published block (or the start), then add the           \
			 * block sums forward, as the chain would have. */                        \
			size_t j = b;                                                              \
			while (j > 0 && !atomic_load_explicit(&sc->blk[j - 1].ready,               \
							      memory_order_acquire))               \
				j--;                                                               \
			T acc = j > 0 ? sc->blk[j - 1].incl : 0;                                   \
			for (; j <= b; j++) {                                                      \
				size_t lo = j * BLOCK, hi = lo + BLOCK < sc->n ? lo + BLOCK : sc->n; \
				acc = ADD(acc, NAME##_sum(sc->in, lo, hi));                        \
			}                                                                          \
			return acc;                                                                \
		}                                                                                  \
		return sc->blk[b].incl;                                                            \
	}                                                                                          \
	static void NAME##_worker(size_t w0, size_t w1, void *arg)                                 \
	{                                                                                          \
		struct NAME##_scan *sc = arg;                                                      \
		(void)w0;                                                                          \
		(void)w1;                                                                          \
		for (;;) {                                                                         \
			/* Stopped: take no more blocks. Every block taken is done, so a   \
			 * later one never waits for one never taken. */                     \
			if (mr__loop_opts_stopped(sc->o))                                          \
				return;                                                            \
			/* relaxed: the counter only hands out indices. */                        \
			size_t b = atomic_fetch_add_explicit(&sc->next, 1, memory_order_relaxed);  \
			if (b >= sc->nb)                                                           \
				return;                                                            \
			size_t lo = b * BLOCK, hi = lo + BLOCK < sc->n ? lo + BLOCK : sc->n;      \
			T sum = NAME##_sum(sc->in, lo, hi);                                        \
			T prev = b > 0 ? NAME##_incl(sc, b - 1) : 0;                               \
			sc->blk[b].incl = ADD(prev, sum);                                          \
			/* release: pairs with the acquires in _incl(), by later blocks. */       \
			atomic_store_explicit(&sc->blk[b].ready, 1, memory_order_release);         \
			(void)NAME##_range(sc->in, sc->out, lo, hi, prev, sc->exclusive);          \
		}                                                                                  \
	}                                                                                          \
	int NAME##_opts(const T *in, T *out, size_t n, unsigned flags,                             \
			const struct mr_loop_opts *opts)                                           \
	{                                                                                          \
		struct mr_loop_opts o;                                                             \
		if ((flags & ~(unsigned)MR_SCAN_EXCLUSIVE) || (n && (!in || !out)) ||              \
		    n > SIZE_MAX / sizeof(T) || mr__loop_opts_get(opts, &o))                       \
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
			/* A look at the options every block (none without any). */        \
			size_t step = o.stop || o.group ? BLOCK : n;                               \
			T acc = 0;                                                                 \
			for (size_t lo = 0; lo < n; lo += step) {                                  \
				if (mr__loop_opts_stopped(&o))                                     \
					return -ECANCELED;                                         \
				size_t hi = n - lo > step ? lo + step : n;                         \
				acc = NAME##_range(in, out, lo, hi, acc, excl);                    \
			}                                                                          \
			return 0;                                                                  \
		}                                                                                  \
		struct NAME##_scan sc = { .in = in, .out = out, .n = n, .exclusive = excl,         \
					  .o = &o };                                               \
		sc.nb = (n + BLOCK - 1) / BLOCK;                                                   \
		sc.blk = aligned_alloc(64, sc.nb * sizeof(*sc.blk));                               \
		if (!sc.blk)                                                                       \
			return -ENOMEM;                                                            \
		for (size_t b = 0; b < sc.nb; b++)                                                 \
			atomic_init(&sc.blk[b].ready, 0);                                          \
		atomic_init(&sc.next, 0);                                                          \
		int r = mr_parallel_for(0, rt->nworkers, 1, NAME##_worker, &sc);                   \
		free(sc.blk);                                                                      \
		/* relaxed: the loop's return orders the workers' increments. Below nb: \
		 * some block was never taken (a stop). */                               \
		if (!r && atomic_load_explicit(&sc.next, memory_order_relaxed) < sc.nb)            \
			r = -ECANCELED;                                                            \
		return r;                                                                          \
	}                                                                                          \
	int NAME(const T *in, T *out, size_t n, unsigned flags)                                    \
	{                                                                                          \
		return NAME##_opts(in, out, n, flags, NULL);                                       \
	}

#define ADD_U64(a, b) ((a) + (b))
#define ADD_I64(a, b) ((int64_t)((uint64_t)(a) + (uint64_t)(b))) /* wraps, as documented */
#define ADD_DOUBLE(a, b) ((a) + (b))

DEFINE_TYPED_SCAN(mr_parallel_scan_sum_u64, uint64_t, ADD_U64)
DEFINE_TYPED_SCAN(mr_parallel_scan_sum_i64, int64_t, ADD_I64)
DEFINE_TYPED_SCAN(mr_parallel_scan_sum_double, double, ADD_DOUBLE)
