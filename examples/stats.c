/*
 * stats - a runtime that works for a while and shows its own counters.
 *
 *	stats [SECONDS [DELAY]]   (default 3; 0: until SIGINT or SIGTERM)
 *
 * Runs, on a runtime of 2 workers, rounds of: a parallel loop, a ping-pong
 * between two fibers over a channel, and a short sleep. It prints where its
 * counters are exported (watch them with `moiraictl top`, or
 * `bpftool map dump pinned PATH` for a BPF pin), then at the end what
 * mr_runtime_stats() says. SIGINT or SIGTERM ends it early, cleanly (the
 * export is removed at exit). DELAY: seconds to wait before it starts
 * (time for a tracer to attach: `moiraictl trace -p PID` sees it all).
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <moirai/moirai.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void body(size_t lo, size_t hi, void *arg)
{
	_Atomic uint64_t *sum = arg;
	uint64_t s = 0;

	for (size_t i = lo; i < hi; i++)
		s += i;
	atomic_fetch_add_explicit(sum, s, memory_order_relaxed);
}

static void pong(void *arg)
{
	mr_chan_t **ch = arg;
	int v;

	while (mr_chan_recv(ch[0], &v) == 0)
		mr_chan_send(ch[1], &v);
}

static void round_trip(void)
{
	mr_chan_t *ch[2] = { mr_chan_create(sizeof(int), 0, 0), mr_chan_create(sizeof(int), 0, 0) };
	mr_fiber_t *f = mr_go(pong, ch);

	for (int i = 0; i < 1000; i++) {
		mr_chan_send(ch[0], &i);
		mr_chan_recv(ch[1], &i);
	}
	mr_chan_close(ch[0]);
	mr_fiber_join(f);
	mr_chan_destroy(ch[0]);
	mr_chan_destroy(ch[1]);
}

struct plan {
	double seconds;
};

static void work(void *arg)
{
	struct plan *p = arg;
	int64_t end = p->seconds > 0 ? mr_now_ns() + (int64_t)(p->seconds * 1e9) : -1;
	_Atomic uint64_t sum = 0;

	while (!stop && (end < 0 || mr_now_ns() < end)) {
		mr_parallel_for(0, 100000, 1000, body, (void *)&sum);
		round_trip();
		mr_sleep_ns(10 * 1000 * 1000);
	}
}

int main(int argc, char **argv)
{
	struct plan p = { argc > 1 ? atof(argv[1]) : 3 };

	if (argc > 2)
		usleep((useconds_t)(atof(argv[2]) * 1e6));
	MR_OPTS(mr_config, cfg, .workers = 2);
	MR_OPTS(mr_runtime_stats, st);
	mr_runtime_t *rt = mr_runtime_create(&cfg);

	if (!rt) {
		perror("mr_runtime_create");
		return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	mr_runtime_stats(rt, &st);
	printf("export: %s\n", st.export_path ? st.export_path : "(none)");
	fflush(stdout);
	if (mr_run(rt, work, &p) != 0) {
		perror("mr_run");
		return 1;
	}
	mr_runtime_stats(rt, &st);
	printf("jobs run %llu, stolen %llu, fibers spawned %llu, fiber runs %llu, "
	       "parks %llu, channel blocks %llu, timer fires %llu\n",
	       (unsigned long long)st.total.jobs_run, (unsigned long long)st.total.jobs_stolen,
	       (unsigned long long)st.total.fibers_spawned, (unsigned long long)st.total.fiber_runs,
	       (unsigned long long)st.total.parks, (unsigned long long)st.total.chan_blocks,
	       (unsigned long long)st.total.timer_fires);
	mr_runtime_destroy(rt);
	return 0;
}
