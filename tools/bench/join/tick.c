/*
 * tick.c - the two ways to drive a heartbeat, priced on this machine.
 *
 * A timer thread (Spice's heartbeat thread): it sleeps for the interval,
 * then sets a flag the workers poll. Measured: the interval it achieves
 * and the CPU it burns per tick and per second (RUSAGE_THREAD), for 20,
 * 50 and 100 us, for one second each.
 *
 * The local check Moirai uses: a worker reads its cycle counter every so
 * many joins. Measured: ns per read (rdtsc on x86-64, cntvct_el0 on
 * aarch64), which the countdown spreads over the joins between looks.
 *
 *   bench_tick            prints a markdown table
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static volatile int flag;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
	struct rusage r;
	getrusage(RUSAGE_THREAD, &r);
	return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
	       (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

static inline uint64_t counter(void)
{
#if defined(__x86_64__) || defined(__i386__)
	return __builtin_ia32_rdtsc();
#elif defined(__aarch64__)
	uint64_t v;
	__asm__ volatile("mrs %0, cntvct_el0" : "=r"(v));
	return v;
#else
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_nsec;
#endif
}

int main(void)
{
	printf("| heartbeat | asked interval | achieved interval | CPU per tick | CPU share |\n");
	printf("|---|---:|---:|---:|---:|\n");
	static const long intervals[] = { 20, 50, 100 };
	for (int k = 0; k < 3; k++) {
		long us = intervals[k], n = 1000000 / us;
		struct timespec d = { 0, us * 1000 };
		double t0 = now_s(), c0 = cpu_s();
		for (long i = 0; i < n; i++) {
			clock_nanosleep(CLOCK_MONOTONIC, 0, &d, NULL);
			flag = 1;
		}
		double wall = now_s() - t0, cpu = cpu_s() - c0;
		printf("| timer thread | %ld us | %.1f us | %.2f us | %.1f%% of a CPU |\n", us,
		       wall * 1e6 / (double)n, cpu * 1e6 / (double)n, 100 * cpu / wall);
	}
	long n = 20000000;
	uint64_t sum = 0;
	double t0 = now_s();
	for (long i = 0; i < n; i++)
		sum += counter();
	double ns = (now_s() - t0) * 1e9 / (double)n;
	printf("| cycle counter read | - | - | %.1f ns per read | %.3f ns per join at 64 joins "
	       "per look, %.4f at 4096 |\n",
	       ns, ns / 64, ns / 4096);
	return sum == 1; /* keep the reads */
}
