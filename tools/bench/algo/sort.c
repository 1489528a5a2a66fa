/*
 * sort.c - the C side of the sort benchmark (see run.sh):
 *   qsort          glibc's qsort, one thread
 *   moirai         mr_parallel_sort, the comparator through a pointer
 *   moirai-stable  mr_parallel_stable_sort, the same comparator
 *   moirai-u64     mr_parallel_sort_u64, the comparison compiled in
 *   moirai-key     mr_parallel_sort_key_u64 (a radix sort, no comparison)
 *   moirai-key-stable  the same with MR_SORT_STABLE
 * and "rec:" before qsort or a moirai row sorts 16-byte records by key
 * (sort.h) instead of bare keys (8-byte records for the key rows). Called as   bench_sort_c IMPL WORKERS REPS SIZE  (IMPL
 * in place of work.h's BENCH). The Moirai runs enter a runtime of WORKERS
 * workers with mr_runtime_install, timed around that call.
 */
#include "sort.h"

#include <moirai/moirai.h>

static mr_runtime_t *bench_rt;

struct job {
	void *a;
	size_t n;
	int kind; /* 0 moirai, 1 moirai-stable, 2 moirai-u64, 3 moirai-key, 4 moirai-key-stable */
	int rec;  /* records of 16 bytes, not keys */
};

static const char *const kinds[] = { "moirai", "moirai-stable", "moirai-u64", "moirai-key",
				     "moirai-key-stable" };
#define NKINDS 5

static void sort_job(void *p)
{
	struct job *j = p;
	size_t size = j->rec ? sizeof(struct sort_rec) : 8;
	mr_cmp_fn cmp = j->rec ? sort_cmp_rec : sort_cmp_u64;
	int r = j->kind == 1   ? mr_parallel_stable_sort(j->a, j->n, size, cmp)
		: j->kind == 2 ? mr_parallel_sort_u64(j->a, j->n)
		: j->kind >= 3 ? mr_parallel_sort_key_u64(j->a, j->n, size, 0,
							  j->kind == 4 ? MR_SORT_STABLE : 0, NULL)
			       : mr_parallel_sort(j->a, j->n, size, cmp);
	if (r != 0)
		bench_fail(kinds[j->kind], "sort", "sort failed");
}

static void run_moirai(uint64_t *a, size_t n, void *ctx)
{
	struct job j = { a, n, *(int *)ctx, 0 };
	mr_runtime_install(bench_rt, sort_job, &j);
}

static void run_moirai_rec(struct sort_rec *a, size_t n, void *ctx)
{
	struct job j = { a, n, *(int *)ctx, 1 };
	mr_runtime_install(bench_rt, sort_job, &j);
}

static void run_qsort(uint64_t *a, size_t n, void *ctx)
{
	(void)ctx;
	qsort(a, n, 8, sort_cmp_u64);
}

static void run_qsort_rec(struct sort_rec *a, size_t n, void *ctx)
{
	(void)ctx;
	qsort(a, n, sizeof(*a), sort_cmp_rec);
}

int main(int argc, char **argv)
{
	struct bench_args a;
	const char *impl;
	int rec;

	bench_parse(argc, argv, &a);
	rec = !strncmp(a.bench, "rec:", 4);
	impl = rec ? a.bench + 4 : a.bench;
	if (!strcmp(impl, "qsort")) {
		if (rec)
			sort_rec_bench("qsort", 1, a.reps, a.size, run_qsort_rec, NULL);
		else
			sort_bench("qsort", 1, a.reps, a.size, run_qsort, NULL);
		return 0;
	}
	int kind = 0;
	while (kind < NKINDS && strcmp(impl, kinds[kind]))
		kind++;
	if (kind == NKINDS || (rec && kind == 2))
		bench_fail(a.bench, "sort", "unknown implementation");
	MR_OPTS(mr_config, cfg, .workers = a.workers);
	if (!(bench_rt = mr_runtime_create(&cfg)))
		bench_fail(a.bench, "sort", "mr_runtime_create failed");
	if (rec)
		sort_rec_bench(kinds[kind], a.workers, a.reps, a.size, run_moirai_rec, &kind);
	else
		sort_bench(kinds[kind], a.workers, a.reps, a.size, run_moirai, &kind);
	mr_runtime_destroy(bench_rt);
	return 0;
}
