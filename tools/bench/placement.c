/*
 * placement.c - does a 2-worker runtime use both CPUs? Fork-join fib(N)
 * against the ideal of its two CPUs, round by round.
 *
 * Each round creates three runtimes: one worker whose CPU set is CPU a,
 * one worker on CPU b, and two workers over {a, b} in the placement mode
 * under test; they take turns running fib(N) (t_a, t_b, t_2), so that a
 * change of load on the machine hits all three alike. The ideal two-worker time is 1 / (1/t_a + 1/t_b): each CPU doing
 * work at the speed it showed this round (the CPUs of a shared machine
 * differ in speed from round to round). ratio = ideal / t_2; a round
 * "reaches" at ratio >= 0.90. Each time is the median of REPS turns, after
 * one warm-up turn. While the two-worker runtime runs,
 * each worker samples sched_getcpu() at the fib(16) calls: a round whose
 * two workers ran mostly on the same CPU is marked "stacked".
 *
 *	placement [-n N] [-r ROUNDS] [-k REPS] [-m default|pin|none]
 *		  [-H none|free|a|b] [-c A,B]
 *
 * -m: mr_config.pin (MR_PIN_DEFAULT, MR_PIN_HOME, MR_PIN_NONE).
 * -H: a competing CPU hog (a busy child process) during the whole run:
 *     free to run anywhere, or pinned to CPU a or b.
 * Prints one line per round and then "reached: K of R rounds".
 *
 * Build (after make lib):
 *	gcc -O2 -Iinclude tools/bench/placement.c build/libmoirai.a -pthread -o placement
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <moirai/moirai.h>

#define MAXCPU 1024

static _Atomic unsigned samples[2][MAXCPU];
static int sampling;

struct fib_arg {
	int n;
	long r;
};

static void fib_par(void *p)
{
	struct fib_arg *f = p;

	if (f->n < 2) {
		f->r = f->n;
		return;
	}
	if (f->n == 16 && sampling) {
		int w = mr_worker_index(), cpu = sched_getcpu();
		if (w >= 0 && w < 2 && cpu >= 0 && cpu < MAXCPU)
			atomic_fetch_add_explicit(&samples[w][cpu], 1, memory_order_relaxed);
	}
	struct fib_arg a = { f->n - 1, 0 }, b = { f->n - 2, 0 };
	mr_join(fib_par, &a, fib_par, &b);
	f->r = a.r + b.r;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *t, int n)
{
	qsort(t, (size_t)n, sizeof(t[0]), cmp_double);
	return t[n / 2];
}

/* One timed run of fib(n) on rt. */
static double time_fib(mr_runtime_t *rt, int n, long want)
{
	struct fib_arg f = { n, 0 };
	double t0 = now_ms();

	mr_runtime_install(rt, fib_par, &f);
	double t = now_ms() - t0;
	if (f.r != want) {
		fprintf(stderr, "placement: fib(%d) = %ld, want %ld\n", n, f.r, want);
		exit(1);
	}
	return t;
}

static mr_runtime_t *make_rt(unsigned workers, const cpu_set_t *set, unsigned pin)
{
	MR_OPTS(mr_config, cfg, .workers = workers, .cpus = set, .cpus_size = sizeof(*set),
		.pin = pin);
	mr_runtime_t *rt = mr_runtime_create(&cfg);
	if (!rt) {
		perror("placement: mr_runtime_create");
		exit(1);
	}
	return rt;
}

static long fib_seq(int n)
{
	return n < 2 ? n : fib_seq(n - 1) + fib_seq(n - 2);
}

/* The CPU a worker's samples mostly came from, and that share. */
static int major_cpu(int w, double *share)
{
	unsigned total = 0, best = 0;
	int cpu = -1;

	for (int c = 0; c < MAXCPU; c++) {
		unsigned v = atomic_load(&samples[w][c]);
		total += v;
		if (v > best) {
			best = v;
			cpu = c;
		}
	}
	*share = total ? (double)best / total : 0;
	return cpu;
}

static pid_t start_hog(int cpu)
{
	pid_t pid = fork();

	if (pid == 0) {
		if (cpu >= 0) {
			cpu_set_t s;
			CPU_ZERO(&s);
			CPU_SET(cpu, &s);
			sched_setaffinity(0, sizeof(s), &s);
		}
		for (volatile unsigned long x = 0;; x++)
			;
	}
	return pid;
}

int main(int argc, char **argv)
{
	int n = 30, rounds = 20, reps = 3, a = -1, b = -1, opt;
	unsigned pin = MR_PIN_DEFAULT;
	const char *mode = "default", *hog = "none";

	while ((opt = getopt(argc, argv, "n:r:k:m:H:c:")) != -1) {
		switch (opt) {
		case 'n':
			n = atoi(optarg);
			break;
		case 'r':
			rounds = atoi(optarg);
			break;
		case 'k':
			reps = atoi(optarg);
			break;
		case 'm':
			mode = optarg;
			break;
		case 'H':
			hog = optarg;
			break;
		case 'c':
			if (sscanf(optarg, "%d,%d", &a, &b) != 2)
				goto usage;
			break;
		default:
			goto usage;
		}
	}
	if (reps < 1 || reps > 64 || rounds < 1)
		goto usage;
	if (!strcmp(mode, "pin"))
		pin = MR_PIN_HOME;
	else if (!strcmp(mode, "none"))
		pin = MR_PIN_NONE;
	else if (strcmp(mode, "default"))
		goto usage;
	if (a < 0) {
		cpu_set_t s;
		CPU_ZERO(&s);
		sched_getaffinity(0, sizeof(s), &s);
		for (int c = 0; c < CPU_SETSIZE; c++)
			if (CPU_ISSET(c, &s)) {
				if (a < 0)
					a = c;
				else if (b < 0)
					b = c;
			}
		if (b < 0) {
			fprintf(stderr, "placement: needs two CPUs\n");
			return 1;
		}
	}
	pid_t hog_pid = 0;
	if (!strcmp(hog, "free"))
		hog_pid = start_hog(-1);
	else if (!strcmp(hog, "a"))
		hog_pid = start_hog(a);
	else if (!strcmp(hog, "b"))
		hog_pid = start_hog(b);
	else if (strcmp(hog, "none"))
		goto usage;

	cpu_set_t sa, sb, sab;
	CPU_ZERO(&sa);
	CPU_SET(a, &sa);
	CPU_ZERO(&sb);
	CPU_SET(b, &sb);
	CPU_OR(&sab, &sa, &sb);
	long want = fib_seq(n);
	int reached = 0, stacked_rounds = 0;
	double ratios[1024];

	printf("# fib(%d), %d rounds, median of %d runs each; CPUs %d,%d; mode %s; hog %s\n", n,
	       rounds, reps, a, b, mode, hog);
	printf("# round  t_cpu%d_ms  t_cpu%d_ms  ideal_ms  t_2w_ms  ratio  workers_on\n", a, b);
	for (int r = 0; r < rounds && r < 1024; r++) {
		/* The three runtimes take turns, so that a change of load on
		 * the machine hits all three alike. */
		mr_runtime_t *ra = make_rt(1, &sa, MR_PIN_DEFAULT);
		mr_runtime_t *rb = make_rt(1, &sb, MR_PIN_DEFAULT);
		mr_runtime_t *r2 = make_rt(2, &sab, pin);
		double xa[64], xb[64], x2[64];
		memset(samples, 0, sizeof(samples));
		for (int i = -1; i < reps; i++) {
			double t = time_fib(ra, n, want);
			if (i >= 0)
				xa[i] = t;
			t = time_fib(rb, n, want);
			if (i >= 0)
				xb[i] = t;
			sampling = i >= 0;
			t = time_fib(r2, n, want);
			sampling = 0;
			if (i >= 0)
				x2[i] = t;
		}
		mr_runtime_destroy(ra);
		mr_runtime_destroy(rb);
		mr_runtime_destroy(r2);
		double ta = median(xa, reps), tb = median(xb, reps), t2 = median(x2, reps);

		double ideal = 1 / (1 / ta + 1 / tb), ratio = ideal / t2;
		double s0, s1;
		int c0 = major_cpu(0, &s0), c1 = major_cpu(1, &s1);
		int stacked = c0 == c1 && c0 >= 0;
		ratios[r] = ratio;
		reached += ratio >= 0.90;
		stacked_rounds += stacked;
		printf("%7d  %10.2f  %10.2f  %8.2f  %7.2f  %5.2f  w0:%d(%.0f%%) w1:%d(%.0f%%)%s\n",
		       r + 1, ta, tb, ideal, t2, ratio, c0, s0 * 100, c1, s1 * 100,
		       stacked ? " stacked" : "");
		fflush(stdout);
	}
	if (hog_pid > 0) {
		kill(hog_pid, SIGKILL);
		waitpid(hog_pid, NULL, 0);
	}
	int nr = rounds < 1024 ? rounds : 1024;
	median(ratios, nr);
	printf("reached: %d of %d rounds at >= 90%% of ideal (median ratio %.2f, min %.2f); "
	       "stacked: %d\n",
	       reached, nr, ratios[nr / 2], ratios[0], stacked_rounds);
	return 0;

usage:
	fprintf(stderr,
		"usage: %s [-n N] [-r ROUNDS] [-k REPS] [-m default|pin|none] "
		"[-H none|free|a|b] [-c A,B]\n",
		argv[0]);
	return 2;
}
