/*
 * ipc_line.c - the floor under a cross-CPU round trip: two threads on two
 * CPUs pass a value back and forth through one cache line, nothing else.
 *   rtt line   thread A stores 2i+1 into a word alone on its cache line
 *              and spins until it reads 2i+2; thread B spins until it
 *              reads 2i+1 and stores 2i+2: COUNT round trips, each moving
 *              the line to B's CPU and back.
 * A message between processes through shared memory cannot come back
 * faster (ipc.sh prints it beside the round trips). The threads are pinned
 * like the processes of the other programs (ipc.h: the first and second
 * CPU); with one CPU they take turns through sched_yield and the number
 * means nothing. Release stores, acquire loads: what a channel needs
 * at least. Same command line and RESULT line as the other ipc_*.c
 * (BYTES must be 8); warm-up, then REPS timed runs.
 */
#include "ipc.h"

#include <stdatomic.h>

static struct {
	_Alignas(64) _Atomic uint64_t word;
	char pad[64 - sizeof(uint64_t)];
} line;

static uint64_t rounds; /* per run */
static int runs;	/* warm-up + reps */

static void wait_for(uint64_t v)
{
	unsigned spins = 0;
	/* acquire: pairs with the other thread's release store of v */
	while (atomic_load_explicit(&line.word, memory_order_acquire) != v)
		ipc_spin(&spins);
}

static void *thread_b(void *arg)
{
	(void)arg;
	ipc_pin(1);
	for (int r = 0; r < runs; r++)
		for (uint64_t i = 0; i < rounds; i++) {
			uint64_t v = ((uint64_t)r * rounds + i) * 2;
			wait_for(v + 1);
			/* release: pairs with wait_for()'s acquire load in A */
			atomic_store_explicit(&line.word, v + 2, memory_order_release);
		}
	return NULL;
}

int main(int argc, char **argv)
{
	static struct ipc_args a;
	double t[FB_MAX_REPS];
	pthread_t b;

	ipc_parse(argc, argv, &a);
	ipc_a = &a;
	if (!a.rtt || strcmp(a.impl, "line") || a.bytes != 8)
		ipc_fail("only `rtt line REPS COUNT 8`");
	rounds = a.count;
	runs = a.reps + 1;
	ipc_pin(0);
	cb_thread_start(&b, thread_b, NULL, a.bench, a.impl);
	for (int r = 0; r < runs; r++) {
		int64_t t0 = ipc_now_ns();
		for (uint64_t i = 0; i < rounds; i++) {
			uint64_t v = ((uint64_t)r * rounds + i) * 2;
			/* release: pairs with wait_for()'s acquire load in B */
			atomic_store_explicit(&line.word, v + 1, memory_order_release);
			wait_for(v + 2);
		}
		if (r > 0)
			t[r - 1] = (double)(ipc_now_ns() - t0) / 1e6;
	}
	cb_thread_join(b);
	if (atomic_load(&line.word) != (uint64_t)runs * rounds * 2)
		ipc_fail("the word does not hold 2 x the round trips");
	printf("RESULT %s %s %zu %.3f %llu\n", a.bench, a.impl, a.bytes, fb_median(t, a.reps),
	       (unsigned long long)a.count);
	return 0;
}
