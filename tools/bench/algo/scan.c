/*
 * scan.c - the C side of the scan and find benchmarks (see run.sh):
 *   scan  seq     inclusive prefix sum of SIZE doubles, a plain loop
 *         moirai  mr_parallel_scan with an add through the operation
 *                 pointer, out of place
 *         moirai-sum  mr_parallel_scan_sum_double (the addition compiled in)
 *   find  seq     the lowest index of the one nonzero byte (at 1% of SIZE),
 *                 a loop calling the predicate through a pointer
 *         moirai  mr_parallel_find_first with the same predicate
 * Called as   bench_scan_c BENCH:IMPL WORKERS REPS SIZE. The values are
 * small integers, so every order of additions gives the same exact sums;
 * the check is the last prefix (scan) or the index found (find).
 */
#include "../work.h"

#include <stdbool.h>

#include <moirai/moirai.h>

static mr_runtime_t *rt;

struct scan_job {
	const double *in;
	double *out;
	size_t n;
};

static void add_double(void *acc, const void *x, void *ctx)
{
	(void)ctx;
	*(double *)acc += *(const double *)x;
}

static void scan_job(void *p)
{
	struct scan_job *j = p;
	const double zero = 0;
	if (mr_parallel_scan(j->in, j->out, j->n, sizeof(double), &zero, add_double, NULL,
			     MR_SCAN_INCLUSIVE) != 0)
		bench_fail("moirai", "scan", "mr_parallel_scan failed");
}

static void scan_sum_job(void *p)
{
	struct scan_job *j = p;
	if (mr_parallel_scan_sum_double(j->in, j->out, j->n, MR_SCAN_INCLUSIVE) != 0)
		bench_fail("moirai-sum", "scan", "mr_parallel_scan_sum_double failed");
}

static bool is_hit(size_t i, void *ctx)
{
	return ((const unsigned char *)ctx)[i] != 0;
}

static bool (*volatile pred_ptr)(size_t, void *) = is_hit;

struct find_job {
	const unsigned char *a;
	size_t n, at;
};

static void find_job(void *p)
{
	struct find_job *j = p;
	if (mr_parallel_find_first(0, j->n, 0, is_hit, (void *)j->a, &j->at) != 1)
		bench_fail("moirai", "find", "nothing found");
}

int main(int argc, char **argv)
{
	struct bench_args a;
	char what[64], *impl;
	double t[BENCH_MAX_REPS];
	uint64_t check = 0;

	bench_parse(argc, argv, &a);
	snprintf(what, sizeof(what), "%s", a.bench);
	impl = strchr(what, ':');
	if (!impl)
		bench_fail(a.bench, "scan", "want BENCH:IMPL");
	*impl++ = 0;
	bool sum = !strcmp(impl, "moirai-sum");
	bool moirai = !strcmp(impl, "moirai") || sum;
	if (moirai) {
		MR_OPTS(mr_config, cfg, .workers = a.workers);
		if (!(rt = mr_runtime_create(&cfg)))
			bench_fail(impl, what, "mr_runtime_create failed");
	} else if (strcmp(impl, "seq")) {
		bench_fail(impl, what, "unknown implementation");
	}
	size_t n = (size_t)a.size;
	if (!strcmp(what, "scan")) {
		double *in = malloc(n * sizeof(*in)), *out = malloc(n * sizeof(*out));
		if (!in || !out)
			bench_fail(impl, what, "no memory");
		for (size_t i = 0; i < n; i++)
			in[i] = (double)(i % 7);
		memset(out, 0, n * sizeof(*out));
		for (int r = -1; r < a.reps; r++) {
			struct scan_job j = { in, out, n };
			double t0 = bench_now_ms();
			if (moirai) {
				mr_runtime_install(rt, sum ? scan_sum_job : scan_job, &j);
			} else {
				double acc = 0;
				for (size_t i = 0; i < n; i++) {
					acc += in[i];
					out[i] = acc;
				}
			}
			double ms = bench_now_ms() - t0;
			if (r >= 0)
				t[r] = ms;
			check = (uint64_t)out[n - 1];
		}
		free(in);
		free(out);
	} else if (!strcmp(what, "find")) {
		unsigned char *buf = calloc(n, 1);
		if (!buf)
			bench_fail(impl, what, "no memory");
		buf[n / 100] = 1;
		for (int r = -1; r < a.reps; r++) {
			struct find_job j = { buf, n, SIZE_MAX };
			double t0 = bench_now_ms();
			if (moirai) {
				mr_runtime_install(rt, find_job, &j);
			} else {
				bool (*pred)(size_t, void *) = pred_ptr;
				for (j.at = 0; j.at < n && !pred(j.at, buf); j.at++)
					;
			}
			double ms = bench_now_ms() - t0;
			if (r >= 0)
				t[r] = ms;
			check = j.at;
		}
		free(buf);
	} else {
		bench_fail(impl, what, "unknown benchmark");
	}
	bench_result_u64(what, impl, a.workers, bench_median(t, a.reps), check);
	if (rt)
		mr_runtime_destroy(rt);
	return 0;
}
