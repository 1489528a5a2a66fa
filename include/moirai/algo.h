/*
 * moirai/algo.h - parallel algorithms on the workers: sort, scan,
 * searches that stop early, per-worker accumulators, pipelines.
 *
 * Like the loops of <moirai/par.h>, each algorithm may be called from a
 * job, a fiber or a thread outside any runtime; it runs on the caller's
 * runtime (from outside: the default runtime, created on first use) and
 * returns when the work is done. It blocks as mr_join does: a worker runs
 * other work meanwhile, a fiber stays on its worker, and an outside thread
 * sleeps. Small inputs (each call says how small) run on the calling
 * thread alone. User functions (comparators, predicates, operations) run
 * on the calling thread or on any worker of the runtime, several at once;
 * they must not wait for each other. The accumulators' calls do not block.
 *
 * Errors are negative errno values; each ERRORS line lists every one. The
 * calls that need the runtime return, when called from outside any runtime
 * while the default runtime cannot be created, that error (the errno of
 * mr_runtime_default(), negated: -EINVAL, -ENOMEM, -EAGAIN) having touched
 * nothing.
 */
#ifndef MOIRAI_ALGO_H
#define MOIRAI_ALGO_H

#include <moirai/common.h>
#include <moirai/par.h>
#include <moirai/runtime.h>

MR_EXTERN_C_BEGIN

/* ---- sorting ----------------------------------------------------------- */

/* Comparators as qsort(3) and qsort_r(3) take them: <0, 0, >0. */
typedef int (*mr_cmp_fn)(const void *a, const void *b);
typedef int (*mr_cmp_r_fn)(const void *a, const void *b, void *ctx);

/*
 * Sort the n elements of size bytes at base in ascending order of cmp, as
 * qsort(3) does, in parallel; the order of equal elements is unspecified.
 * A parallel introsort: O(n log n) comparisons in the worst case, in place,
 * no memory allocated. Up to 4096 elements sort sequentially on the
 * calling thread (no runtime is needed or created); above, the two sides
 * of each partition sort in parallel. Elements of 4, 8 and 16 bytes move
 * as single words; other sizes are swapped 8 bytes at a time. cmp must be
 * a consistent order; if it is not, the array ends in some permutation of
 * itself and nothing outside it is touched. Blocks; any context.
 * ERRORS (the array is unchanged):
 *   -EINVAL     cmp is NULL, size is 0, base is NULL with n > 0, or
 *               n * size overflows size_t.
 *   -EINVAL, -ENOMEM, -EAGAIN
 *               n > 4096, called from outside any runtime, and the default
 *               runtime cannot be created.
 */
MR_API int mr_parallel_sort(void *base, size_t n, size_t size, mr_cmp_fn cmp);

/* mr_parallel_sort with cmp(a, b, ctx), as qsort_r(3). Same ERRORS. */
MR_API int mr_parallel_sort_r(void *base, size_t n, size_t size, mr_cmp_r_fn cmp, void *ctx);

/*
 * Sort as mr_parallel_sort, stably: equal elements keep their order. A
 * parallel merge sort through a buffer of n * size bytes, malloc'd when n
 * is above 24 and freed before the return (n up to 24: insertion sort, no
 * memory). O(n log n) comparisons; halves sort and large merges run in
 * parallel above 4096 elements; up to 4096 all runs on the calling thread
 * (no runtime needed). Blocks; any context.
 * ERRORS (the array is unchanged):
 *   -EINVAL     as mr_parallel_sort.
 *   -ENOMEM     the buffer of n * size bytes could not be allocated.
 *   -EINVAL, -ENOMEM, -EAGAIN
 *               n > 4096, called from outside any runtime, and the default
 *               runtime cannot be created.
 */
MR_API int mr_parallel_stable_sort(void *base, size_t n, size_t size, mr_cmp_fn cmp);

/* mr_parallel_stable_sort with cmp(a, b, ctx), as qsort_r(3). Same ERRORS. */
MR_API int mr_parallel_stable_sort_r(void *base, size_t n, size_t size, mr_cmp_r_fn cmp,
				     void *ctx);

/*
 * mr_parallel_sort_r, or with MR_SORT_STABLE in flags
 * mr_parallel_stable_sort_r (same algorithms, cut-offs, memory), with
 * options (par.h's struct mr_loop_opts; NULL: all defaults; grain
 * ignored): group and stop to give up early. Each range of more than
 * 4096 elements looks at them before it partitions or sorts (stable:
 * before it sorts its halves and before it merges them); once either is
 * set no such range does any more work, while ranges of 4096 elements or
 * fewer already started finish. Returns 0 when the array is sorted,
 * -ECANCELED when the sort gave up first: the array then holds a
 * permutation of its elements, partly sorted. Blocks; any context.
 * ERRORS (the array is unchanged): as mr_parallel_sort_r (stable: as
 * mr_parallel_stable_sort_r), and -EINVAL for flags other than
 * MR_SORT_STABLE or opts->sz < sizeof(size_t).
 */
#define MR_SORT_STABLE 1u
MR_API int mr_parallel_sort_opts(void *base, size_t n, size_t size, mr_cmp_r_fn cmp, void *ctx,
				 unsigned flags, const struct mr_loop_opts *opts);

/*
 * Sort n integers in ascending order, in parallel, in place, no memory
 * allocated: a radix sort on the keys' bytes, most significant first (an
 * American flag sort), with no comparison function. Each range of more
 * than 64 keys is counted by its highest byte where its keys differ (bytes
 * that all of them share cost no pass) and its keys are moved into their
 * 256 buckets; ranges of 64 keys or fewer go to an introsort. At most one
 * level per key byte: O(n * sizeof key) moves, whatever the keys. The
 * buckets of a range sort in parallel; a range of 131072 keys or more
 * that several workers share is counted and distributed by all of them.
 * Up to 4096 keys sort on the calling thread (no runtime is needed or
 * created); any context. The recursion keeps about 2 KiB of stack per
 * key byte (16 KiB for 64-bit keys at most): a fiber's default 64 KiB
 * stack is enough.
 * ERRORS (the array is unchanged):
 *   -EINVAL     a is NULL with n > 0, or n * the element size overflows.
 *   -EINVAL, -ENOMEM, -EAGAIN
 *               n > 4096, called from outside any runtime, and the default
 *               runtime cannot be created.
 */
MR_API int mr_parallel_sort_u64(uint64_t *a, size_t n);
MR_API int mr_parallel_sort_i64(int64_t *a, size_t n);
MR_API int mr_parallel_sort_u32(uint32_t *a, size_t n);
MR_API int mr_parallel_sort_i32(int32_t *a, size_t n);

/*
 * The typed sorts with options (par.h's struct mr_loop_opts; NULL: all
 * defaults; grain ignored): group and stop to give up early, as
 * mr_parallel_sort_opts does. Returns 0 when the array is sorted, -ECANCELED when
 * the sort gave up first (the array then holds a permutation of its keys).
 * A range of more than 64 keys looks before it counts its keys.
 * ERRORS: as mr_parallel_sort_u64, and -EINVAL for opts->sz <
 * sizeof(size_t).
 */
MR_API int mr_parallel_sort_u64_opts(uint64_t *a, size_t n, const struct mr_loop_opts *opts);
MR_API int mr_parallel_sort_i64_opts(int64_t *a, size_t n, const struct mr_loop_opts *opts);
MR_API int mr_parallel_sort_u32_opts(uint32_t *a, size_t n, const struct mr_loop_opts *opts);
MR_API int mr_parallel_sort_i32_opts(int32_t *a, size_t n, const struct mr_loop_opts *opts);

/*
 * Sort n records of size bytes at base by the uint64_t key at byte offset
 * off in each (native byte order, no alignment needed), ascending, with
 * the comparison compiled in: for records ordered by one integer key,
 * what mr_parallel_sort_u64 is for bare keys. flags 0: unstable, the
 * radix sort of mr_parallel_sort_u64 (its cut-offs, stack and stops), no
 * memory allocated;
 * MR_SORT_STABLE: records of equal keys keep their order, a radix sort
 * (most significant byte first, as the unstable one) that scatters each
 * range in order between the array and a buffer of n * size bytes (n
 * above 24), ranges of 64 records or fewer merge sorted; a range of
 * 131072 records or more that several workers share is scattered by all
 * of them, with 2 KiB more per worker (if that cannot be allocated, by
 * one). Records of 8 and 16 bytes move as one or two words, others in
 * 8-byte pieces.
 * opts as for mr_parallel_sort_opts (NULL: all defaults): 0 when sorted,
 * -ECANCELED when stopped first. Blocks; any context.
 * ERRORS (the array is unchanged):
 *   -EINVAL     base is NULL with n > 0, size < 8, off > size - 8,
 *               n * size overflows, flags other than MR_SORT_STABLE, or
 *               opts->sz < sizeof(size_t).
 *   -ENOMEM     stable: the buffer of n * size bytes could not be
 *               allocated.
 *   -EINVAL, -ENOMEM, -EAGAIN
 *               n > 4096, called from outside any runtime, and the default
 *               runtime cannot be created.
 */
MR_API int mr_parallel_sort_key_u64(void *base, size_t n, size_t size, size_t off,
				    unsigned flags, const struct mr_loop_opts *opts);

/* ---- prefix scan ------------------------------------------------------- */

/* mr_parallel_scan's flags: inclusive (the default) or exclusive. */
#define MR_SCAN_INCLUSIVE 0u
#define MR_SCAN_EXCLUSIVE 1u

/*
 * Prefix scan of the n elements of size bytes at in into out, with the
 * associative operation op (par.h's mr_combine_fn: op(acc, x, ctx) sets acc
 * to acc (+) x, acc being the left operand; op need not be commutative)
 * and its identity. Inclusive: out[i] = in[0] (+) ... (+) in[i].
 * Exclusive (MR_SCAN_EXCLUSIVE): out[0] = identity, out[i] = in[0] (+) ...
 * (+) in[i-1]. out may be in itself (in place) or must not overlap it.
 * op runs on any worker, several at once, each time on scratch or output
 * memory as acc and on an input element (or a copy of one) as x.
 *
 * Above 4096 elements on a runtime of several workers: two parallel passes
 * over about 4 blocks per worker of at least 2048 elements each (fold
 * each block, scan the block sums, rescan each block from its start), so
 * op runs about 2n times; otherwise the sequential loop on the calling
 * thread (n times; no runtime needed up to 4096). Allocates 3 * size bytes
 * per block (one block when sequential), freed before the return. Blocks;
 * any context.
 * ERRORS (out is unchanged):
 *   -EINVAL     op or identity is NULL, size is 0 or above
 *               MR_REDUCE_MAX_ELEM, in or out is NULL with n > 0, n * size
 *               overflows size_t, in and out overlap without being equal,
 *               or flags has a bit other than MR_SCAN_EXCLUSIVE.
 *   -ENOMEM     the scratch memory could not be allocated.
 *   -EINVAL, -ENOMEM, -EAGAIN
 *               n > 4096, called from outside any runtime, and the default
 *               runtime cannot be created.
 */
MR_API int mr_parallel_scan(const void *in, void *out, size_t n, size_t size,
			    const void *identity, mr_combine_fn op, void *ctx, unsigned flags);

/*
 * mr_parallel_scan with options (par.h's struct mr_loop_opts; NULL: all
 * defaults; grain ignored): group and stop to give up early. The blocks
 * of both passes look at them before they start (the sequential loop
 * every 2048 elements), and none starts once either is set; blocks
 * already running finish. Returns 0 when out holds the whole scan,
 * -ECANCELED when it was stopped first: out then holds some of the scan
 * and leftovers (in place: the input is partly overwritten). Blocks like
 * mr_join; any context.
 * ERRORS: as mr_parallel_scan, and -EINVAL for opts->sz < sizeof(size_t).
 */
MR_API int mr_parallel_scan_opts(const void *in, void *out, size_t n, size_t size,
				 const void *identity, mr_combine_fn op, void *ctx,
				 unsigned flags, const struct mr_loop_opts *opts);

/*
 * Prefix sums with the addition compiled in: out[i] = in[0] + ... + in[i]
 * (inclusive, flags 0) or in[0] + ... + in[i-1] (MR_SCAN_EXCLUSIVE; out[0]
 * = 0). Integers wrap modulo 2^64 (the i64 form adds as uint64_t). out may
 * be in itself or must not overlap it. Above 262144 elements on a runtime
 * of several workers, the workers take blocks of 65536 elements in order,
 * each summing its block, chaining the block prefixes, and rescanning the
 * block from the cache: memory sees one read and one write per element,
 * like the sequential loop, which runs otherwise on the calling thread (no
 * runtime needed up to 262144). Doubles are added in a fixed grouping by
 * block, so results can differ from the sequential loop's in the last
 * bits, but not between runs (nor between runtimes of 2 workers or more).
 * Allocates 64 bytes per block (n / 1024 bytes), freed before the return.
 * The blocks chain: a worker the OS preempts in the middle of one holds up
 * the others (they spin, then yield). Blocks; any context.
 * ERRORS (out is unchanged):
 *   -EINVAL     in or out is NULL with n > 0, n * 8 overflows, in and out
 *               overlap without being equal, or flags has a bit other than
 *               MR_SCAN_EXCLUSIVE.
 *   -ENOMEM     the blocks' memory could not be allocated.
 *   -EINVAL, -ENOMEM, -EAGAIN
 *               n > 262144, called from outside any runtime, and the
 *               default runtime cannot be created.
 */
MR_API int mr_parallel_scan_sum_u64(const uint64_t *in, uint64_t *out, size_t n, unsigned flags);
MR_API int mr_parallel_scan_sum_i64(const int64_t *in, int64_t *out, size_t n, unsigned flags);
MR_API int mr_parallel_scan_sum_double(const double *in, double *out, size_t n, unsigned flags);

/*
 * The typed sums with options (par.h's struct mr_loop_opts; NULL: all
 * defaults; grain ignored): group and stop to give up early. A worker
 * looks at them before it takes a block of 65536 elements (the
 * sequential loop: before each 65536 elements) and takes none once
 * either is set; blocks taken finish. Returns 0 when out holds the whole
 * scan, -ECANCELED when stopped first: out then holds the scan of a
 * prefix of the blocks, the rest untouched (in place: the input). Blocks
 * like mr_join; any context.
 * ERRORS: as mr_parallel_scan_sum_u64, and -EINVAL for opts->sz <
 * sizeof(size_t).
 */
MR_API int mr_parallel_scan_sum_u64_opts(const uint64_t *in, uint64_t *out, size_t n,
					 unsigned flags, const struct mr_loop_opts *opts);
MR_API int mr_parallel_scan_sum_i64_opts(const int64_t *in, int64_t *out, size_t n,
					 unsigned flags, const struct mr_loop_opts *opts);
MR_API int mr_parallel_scan_sum_double_opts(const double *in, double *out, size_t n,
					    unsigned flags, const struct mr_loop_opts *opts);

/* ---- searching with early exit ----------------------------------------- */

/* pred(i, ctx): whether index i satisfies the search. */
typedef bool (*mr_pred_fn)(size_t i, void *ctx);

/*
 * Find the lowest index i of [begin, end) where pred(i, ctx) is true.
 * Returns 1 and sets *index (if index is not NULL) to it, or 0 when there
 * is none (*index untouched). One searcher per worker takes chunks of
 * the range in index order from a shared counter: chunks of grain indices,
 * or with grain 0 of n / (64 workers), at most 4096. It stops early: once
 * an index is found no chunk right of it is started, and running chunks
 * right of it stop at their next look (every 1024 indices); chunks to its
 * left still run, so the answer is always the lowest. On one worker pred
 * is called exactly for begin .. i. pred runs on any worker, several at
 * once, never twice for one index. A range of at most grain indices runs
 * on the calling thread (no runtime needed); an empty one returns 0
 * without calling pred. Allocates nothing. Blocks like mr_join; any
 * context.
 * ERRORS (pred was not called):
 *   -EINVAL     pred is NULL or begin > end.
 *   -EINVAL, -ENOMEM, -EAGAIN
 *               called from outside any runtime, the range is longer than
 *               grain, and the default runtime cannot be created.
 */
MR_API int mr_parallel_find_first(size_t begin, size_t end, size_t grain, mr_pred_fn pred,
				  void *ctx, size_t *index);

/*
 * As mr_parallel_find_first, but any index where pred is true will do: the
 * first one a searcher finds. Once one is found, no chunk is started any
 * more and running chunks stop at their next look (every 1024 indices). Returns 1 (and *index), 0 when there is none. Same ERRORS.
 */
MR_API int mr_parallel_find_any(size_t begin, size_t end, size_t grain, mr_pred_fn pred,
				void *ctx, size_t *index);

/*
 * mr_parallel_find_first and mr_parallel_find_any with options (par.h's
 * struct mr_loop_opts; NULL: all defaults): grain as their grain, and
 * group and stop to give up early. Every chunk looks at group and stop
 * before it starts and every 1024 indices (where it looks for the answer),
 * and stops once either is set. The answer is still given when the part
 * searched settles it: for find_first, every index left of a hit was
 * searched (a hit found is then the lowest); for find_any, some hit was
 * found. Otherwise the call returns -ECANCELED (*index untouched). So a
 * stop racing the end of the search gives the right answer or -ECANCELED,
 * never a wrong answer. Blocks like mr_join; any context.
 * ERRORS (pred was not called): as mr_parallel_find_first, and -EINVAL
 * for opts->sz < sizeof(size_t).
 */
MR_API int mr_parallel_find_first_opts(size_t begin, size_t end, mr_pred_fn pred, void *ctx,
				       size_t *index, const struct mr_loop_opts *opts);
MR_API int mr_parallel_find_any_opts(size_t begin, size_t end, mr_pred_fn pred, void *ctx,
				     size_t *index, const struct mr_loop_opts *opts);

/*
 * Whether pred is true for some index of [begin, end) (any_of: 1 or 0;
 * 0 for an empty range) or for every one (all_of: 1 or 0; 1 for an empty
 * range). Stop as mr_parallel_find_any does, at the first true (any_of) or
 * false (all_of) answer found. Same ERRORS as mr_parallel_find_first.
 */
MR_API int mr_parallel_any_of(size_t begin, size_t end, size_t grain, mr_pred_fn pred,
			      void *ctx);
MR_API int mr_parallel_all_of(size_t begin, size_t end, size_t grain, mr_pred_fn pred,
			      void *ctx);

/* ---- per-worker accumulators ------------------------------------------ */

/*
 * An accumulator holds one slot of `size` bytes per worker of a runtime,
 * each on cache lines of its own, for reductions that mr_parallel_reduce
 * does not fit (a histogram, several outputs): loop bodies update the
 * slot of the worker they run on, with plain stores and no lock, and the
 * slots are combined once the loop has returned.
 *
 *	mr_accum_t *h = mr_accum_create(NULL, sizeof(struct hist), NULL);
 *	// in the body of a parallel_for:
 *	struct hist *mine = mr_accum_local(h);
 *	mine->bin[x]++;
 *	// after it:
 *	mr_accum_combine(h, &total, add_hist, NULL);
 *	mr_accum_destroy(h);
 *
 * A slot is its worker's alone, but work nested on that worker uses it
 * too: a job the worker runs while the body waits (in mr_join, a group
 * wait, a parallel call, a blocking wait), or a fiber it runs meanwhile.
 * So update it between two such waits, not across one, and a fiber must
 * not keep its slot across a park (it may resume on another worker): call
 * mr_accum_local again after any call that may wait.
 */
typedef struct mr_accum mr_accum_t;

/*
 * Create an accumulator for the workers of rt (NULL: the caller's runtime,
 * or from outside any runtime the default one, created if needed), every
 * slot set to a copy of the size bytes at identity (NULL: all zero
 * bytes). Allocates the object, a copy of the identity, and the slots:
 * size rounded up to 64 bytes, times the number of workers. Destroy it
 * before its runtime. Does not block (but for creating the default
 * runtime); any context. A runtime that is not alive aborts.
 * Returns NULL and sets errno on failure:
 *   EINVAL      size is 0 or above SIZE_MAX / 2 / MR_MAX_WORKERS.
 *   ENOMEM      no memory.
 *   EINVAL, ENOMEM, EAGAIN
 *               rt is NULL, called from outside any runtime, and the
 *               default runtime cannot be created.
 */
MR_API mr_accum_t *mr_accum_create(mr_runtime_t *rt, size_t size, const void *identity);

/*
 * The slot of the calling worker, or NULL when the caller is not a worker
 * of a's runtime (a thread outside it, a worker of another runtime) or a
 * is NULL. See above for how long it may be used. Does not block; any
 * context; no atomic operation.
 */
MR_API void *mr_accum_local(mr_accum_t *a);

/*
 * Set *result (size bytes) to identity (+) slot 0 (+) slot 1 ... in worker
 * order, with combine(acc, slot, ctx) (par.h's mr_combine_fn): which worker
 * did which part is up to the scheduler, so combine should be commutative
 * as well as associative. Call it once the work that updates the slots has
 * returned (the parallel call's return orders its writes before this);
 * concurrent updates race. Does not block; any context; allocates nothing.
 * ERRORS: -EINVAL (a, result or combine is NULL).
 */
MR_API int mr_accum_combine(const mr_accum_t *a, void *result, mr_combine_fn combine,
			    void *ctx);

/*
 * Call fn(slot, worker, ctx) for each slot in worker order (to fold into
 * several outputs, or to read each worker's part). Same rules as
 * mr_accum_combine. ERRORS: -EINVAL (a or fn is NULL).
 */
MR_API int mr_accum_for_each(mr_accum_t *a, void (*fn)(void *slot, unsigned worker, void *ctx),
			     void *ctx);

/* Set every slot back to the identity (not concurrently with updates).
 * ERRORS: -EINVAL (a is NULL). */
MR_API int mr_accum_reset(mr_accum_t *a);

/* Number of slots: the workers of the accumulator's runtime (0 for NULL). */
MR_API unsigned mr_accum_slots(const mr_accum_t *a);

/* Free a and its slots (NULL: nothing). Not concurrently with any other
 * use of a. */
MR_API void mr_accum_destroy(mr_accum_t *a);

/* ---- pipelines -------------------------------------------------------- */

/*
 * A linear pipeline, oneTBB's parallel_pipeline in C: stage 0 (the input)
 * produces items, each later stage maps an item to the next stage's item,
 * and the last stage's result is dropped. Items are pointers the stages
 * own between them; the pipeline only carries them.
 *
 *	void *read_block(void *none, void *ctx);    // NULL: no more input
 *	void *compress(void *block, void *ctx);
 *	void *write_block(void *block, void *ctx);  // frees it, returns NULL
 *	const struct mr_stage st[] = {
 *		{ MR_STAGE_SERIAL_IN_ORDER, read_block, f },
 *		{ MR_STAGE_PARALLEL, compress, NULL },
 *		{ MR_STAGE_SERIAL_IN_ORDER, write_block, out },
 *	};
 *	int r = mr_pipeline(st, 3, 16); // at most 16 blocks in memory
 *
 * Modes: MR_STAGE_PARALLEL stages run on any number of items at once;
 * MR_STAGE_SERIAL_OUT_OF_ORDER stages on one item at a time, in any order;
 * MR_STAGE_SERIAL_IN_ORDER stages on one at a time, in the order stage 0
 * produced them. Stage 0 runs one call at a time (serial; its mode must
 * not be MR_STAGE_PARALLEL) and ends the input by returning NULL; a later
 * stage may return NULL as an item like any other. A serial stage's calls
 * are ordered one after the other (each sees the previous one's writes),
 * possibly on different workers.
 *
 * Stopping early: any stage may return MR_PIPELINE_STOP instead of an
 * item (the stage keeps or frees the item it was given: the pipeline
 * drops the mark). Then stage 0 is not called any more (a call of it that
 * had started goes on, and its item is carried like the others), the
 * items already produced drain through every stage as usual, in order
 * where a stage is in order, while the stopped item calls no stage any
 * more, and the pipeline returns -ECANCELED. Several stops count as one.
 * So (void *)-1 cannot be carried as an item.
 */
#define MR_STAGE_PARALLEL 0u
#define MR_STAGE_SERIAL_IN_ORDER 1u
#define MR_STAGE_SERIAL_OUT_OF_ORDER 2u
#define MR_PIPELINE_STOP ((void *)-1)
#define MR_PIPELINE_TOKENS_MAX ((size_t)1 << 24)
#define MR_PIPELINE_STAGES_MAX ((size_t)1 << 16)

typedef void *(*mr_stage_fn)(void *item, void *ctx);
struct mr_stage {
	unsigned mode;	/* MR_STAGE_* */
	mr_stage_fn fn; /* fn(item, ctx); stage 0: fn(NULL, ctx) */
	void *ctx;
};

/*
 * Run the pipeline of nstages stages with at most max_tokens items alive
 * (produced by stage 0 and not yet through the last stage; stage 0 is not
 * called while max_tokens are). The stages run as jobs on the workers of
 * the caller's runtime (from outside: the default runtime): an item runs
 * stage after stage on one worker until a serial stage is busy, then
 * waits there without holding a worker; no thread or fiber per stage.
 * Stage functions should not block their thread (that holds a worker:
 * see mr_pipeline_fibers). Returns 0 once stage 0 returned NULL and every
 * item went through every stage; -ECANCELED, once every item went through,
 * when a stage returned MR_PIPELINE_STOP (see above). Allocates one block of about
 * 48 * max_tokens bytes (plus 8 * max_tokens per in-order stage after
 * stage 0), freed before the return. Blocks like mr_join; any context.
 * ERRORS (no stage was called):
 *   -EINVAL     stages is NULL, nstages is 0 or above
 *               MR_PIPELINE_STAGES_MAX, max_tokens is 0 or above
 *               MR_PIPELINE_TOKENS_MAX, a stage's fn is NULL or its mode
 *               unknown, or stage 0 is MR_STAGE_PARALLEL.
 *   -ENOMEM     the block could not be allocated.
 *   -EINVAL, -ENOMEM, -EAGAIN
 *               called from outside any runtime and the default runtime
 *               cannot be created.
 */
MR_API int mr_pipeline(const struct mr_stage *stages, size_t nstages, size_t max_tokens);

/*
 * The same pipeline (same stages, modes, bound, stop and results) with stages
 * that may block: each stage runs on fibers of the caller's runtime (from
 * outside: the default runtime) - one for stage 0 and for each serial
 * stage, `width` for each parallel stage (0: one per worker) - connected
 * by channels of max_tokens (item, number) pairs; a semaphore of
 * max_tokens units keeps the bound. A stage function may wait on
 * channels, sync objects, sleeps or fiber I/O: its fiber parks and its
 * worker runs other work. Stage functions run on fiber stacks of
 * MR_FIBER_STACK_DEFAULT bytes. Costs a channel hop per stage per item
 * (microseconds): use mr_pipeline for stages that compute. Allocates the
 * channels (max_tokens * 16 bytes each), the fibers, and a ring of
 * max_tokens * 17 bytes per in-order stage after stage 0; all freed
 * before the return. Blocks until every fiber ended: a fiber parks, a job
 * blocks its worker's thread (see <moirai/par.h>), a thread sleeps.
 * ERRORS (no stage was called):
 *   -EINVAL     as mr_pipeline.
 *   -ENOMEM     a channel, a ring or a fiber could not be allocated.
 *   -EINVAL, -ENOMEM, -EAGAIN
 *               called from outside any runtime and the default runtime
 *               cannot be created.
 */
MR_API int mr_pipeline_fibers(const struct mr_stage *stages, size_t nstages,
			      size_t max_tokens, unsigned width);

MR_EXTERN_C_END

#endif /* MOIRAI_ALGO_H */
