/*
 * trace_shared.h - what bpf/trace.bpf.c sends to `moiraictl trace`
 * (tools/moiraictl/trace.c): one event per USDT probe of the runtime
 * (user/metrics/probes.h lists them and their arguments), through a BPF
 * ring buffer.
 */
#ifndef MOIRAI_TRACE_SHARED_H
#define MOIRAI_TRACE_SHARED_H

enum moirai_ev_type {
	MOIRAI_EV_FIBER_CREATE = 1,
	MOIRAI_EV_FIBER_RUN,
	MOIRAI_EV_FIBER_STOP,
	MOIRAI_EV_FIBER_PARK,
	MOIRAI_EV_FIBER_READY,
	MOIRAI_EV_FIBER_EXIT,
	MOIRAI_EV_JOB_START,
	MOIRAI_EV_JOB_END,
	MOIRAI_EV_JOB_STEAL,
	MOIRAI_EV_WORKER_PARK,
	MOIRAI_EV_WORKER_WAKE,
	MOIRAI_EV_WORKER_WAKEUP,
	MOIRAI_EV_CHAN_BLOCK,
	MOIRAI_EV_CHAN_WAKE,
	MOIRAI_EV_IO_SUBMIT,
	MOIRAI_EV_IO_COMPLETE,
	MOIRAI_EV_MAX,
};

#define MOIRAI_EV_STR 24

struct moirai_ev {
	__u64 ts;	/* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 pid, tid;
	__u32 type;	/* enum moirai_ev_type */
	__u32 cpu;
	__u64 a[3];	/* the probe's arguments */
	char str[MOIRAI_EV_STR]; /* the `call` string of fiber_park, chan_block */
};

/* Index 0 of the `dropped` array: events lost because the ring was full. */

#endif /* MOIRAI_TRACE_SHARED_H */
