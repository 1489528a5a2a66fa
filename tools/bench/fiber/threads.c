/*
 * threads.c - what the kernel gives two or more threads, as peers of the
 * fiber benchmarks:
 *   switch   futex ping-pong: two threads hand a turn word back and forth
 *            SIZE times each way (SIZE round trips, 2*SIZE hand-offs), with
 *            raw FUTEX_WAIT/FUTEX_WAKE system calls and no spinning, so
 *            every hand-off is a wake-up and a sleep. WORKERS is the number
 *            of CPUs: 1 pins both threads to one CPU (each hand-off is a
 *            kernel context switch), 2 pins them to two different CPUs
 *            (each hand-off is a cross-CPU wake-up of a sleeping thread).
 *   mutex    WORKERS threads each add 1 to a shared counter SIZE/WORKERS
 *            times under one pthread_mutex_t (glibc's default mutex: a
 *            futex word, no hand-off); timed from creating the threads to
 *            joining them; the counter must come out exact.
 * See bench.h for the command line and output.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *impl = "threads";

/* ---- switch: futex ping-pong -------------------------------------------- */

enum { PING_TURN, PONG_TURN, STOP };

static _Atomic uint32_t turn;
static uint64_t pongs; /* written only by the pong thread */

static void futex_wait(_Atomic uint32_t *w, uint32_t val)
{
	syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *w)
{
	syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void pin(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0)
		fb_fail("switch", impl, "pthread_setaffinity_np failed");
}

static void *pong(void *arg)
{
	pin(*(int *)arg);
	for (;;) {
		uint32_t v;
		/* acquire: pairs with the release store of PONG_TURN/STOP in ping() */
		while ((v = atomic_load_explicit(&turn, memory_order_acquire)) == PING_TURN)
			futex_wait(&turn, PING_TURN);
		if (v == STOP)
			return NULL;
		pongs++;
		/* release: pairs with the acquire load in ping(), publishes pongs */
		atomic_store_explicit(&turn, PING_TURN, memory_order_release);
		futex_wake(&turn);
	}
}

static double ping(uint64_t n)
{
	pongs = 0;
	double t0 = fb_now_ms();
	for (uint64_t i = 0; i < n; i++) {
		/* release: pairs with the acquire load in pong() */
		atomic_store_explicit(&turn, PONG_TURN, memory_order_release);
		futex_wake(&turn);
		/* acquire: pairs with the release store of PING_TURN in pong() */
		while (atomic_load_explicit(&turn, memory_order_acquire) == PONG_TURN)
			futex_wait(&turn, PONG_TURN);
	}
	return fb_now_ms() - t0;
}

static void bench_switch(const struct fb_args *a)
{
	double t[FB_MAX_REPS];
	cpu_set_t allowed;
	int cpus[2], k = 0;

	if (a->workers > 2)
		fb_fail(a->bench, impl, "WORKERS is the number of CPUs used: 1 or 2");
	/* The first one or two CPUs this process may run on. */
	if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
		fb_fail(a->bench, impl, "sched_getaffinity failed");
	for (int c = 0; c < CPU_SETSIZE && k < 2; c++)
		if (CPU_ISSET(c, &allowed))
			cpus[k++] = c;
	if (k < (int)a->workers)
		fb_fail(a->bench, impl, "fewer CPUs allowed than WORKERS");
	if (a->workers == 1)
		cpus[1] = cpus[0];
	pin(cpus[0]);
	pthread_t th;
	if (pthread_create(&th, NULL, pong, &cpus[1]) != 0)
		fb_fail(a->bench, impl, "pthread_create failed");
	ping(a->size); /* warm-up */
	for (int r = 0; r < a->reps; r++) {
		t[r] = ping(a->size);
		if (pongs != a->size)
			fb_fail(a->bench, impl, "the pong thread did not run once per round trip");
	}
	atomic_store_explicit(&turn, STOP, memory_order_release);
	futex_wake(&turn);
	pthread_join(th, NULL);
	fb_result(a, impl, fb_median(t, a->reps), pongs);
}

/* ---- mutex -------------------------------------------------------------- */

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static uint64_t counter; /* protected by mutex */

static void *adder(void *arg)
{
	uint64_t n = *(uint64_t *)arg;
	for (uint64_t i = 0; i < n; i++) {
		pthread_mutex_lock(&mutex);
		counter++;
		pthread_mutex_unlock(&mutex);
	}
	return NULL;
}

static double mutex_run(unsigned nthreads, uint64_t per)
{
	pthread_t th[256];
	counter = 0;
	double t0 = fb_now_ms();
	for (unsigned i = 0; i < nthreads; i++)
		if (pthread_create(&th[i], NULL, adder, &per) != 0)
			fb_fail("mutex", impl, "pthread_create failed");
	for (unsigned i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);
	return fb_now_ms() - t0;
}

static void bench_mutex(const struct fb_args *a)
{
	double t[FB_MAX_REPS];
	if (a->workers > 256 || a->size % a->workers)
		fb_fail(a->bench, impl, "WORKERS threads (at most 256) must divide SIZE");
	uint64_t per = a->size / a->workers;
	mutex_run(a->workers, per); /* warm-up */
	for (int r = 0; r < a->reps; r++) {
		t[r] = mutex_run(a->workers, per);
		if (counter != a->size)
			fb_fail(a->bench, impl, "the counter is wrong: the mutex let two in");
	}
	fb_result(a, impl, fb_median(t, a->reps), counter);
}

int main(int argc, char **argv)
{
	struct fb_args a;
	fb_parse(argc, argv, "switch|mutex", &a);
	if (!strcmp(a.bench, "switch"))
		bench_switch(&a);
	else if (!strcmp(a.bench, "mutex"))
		bench_mutex(&a);
	else
		fb_fail(a.bench, impl, "unknown benchmark (switch, mutex)");
	return 0;
}
