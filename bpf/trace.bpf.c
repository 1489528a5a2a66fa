/*
 * trace.bpf.c - `moiraictl trace`'s side in the kernel: a program on each
 * USDT probe of the runtime (provider "moirai", user/metrics/probes.h),
 * attached by tools/moiraictl/trace.c to one process with libbpf's
 * bpf_program__attach_usdt(). Each turns the probe's arguments into one
 * struct moirai_ev in the ring buffer `events`; when the ring is full the
 * event is counted in `dropped` instead, so the trace says what it lost.
 * Nothing is decided here: slices, nesting and flows are built in user
 * space.
 */
#include "vmlinux.h"

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

#include "trace_shared.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} dropped SEC(".maps");

static __always_inline void emit(__u32 type, __u64 a0, __u64 a1, __u64 a2, const void *str)
{
	struct moirai_ev *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	__u64 id = bpf_get_current_pid_tgid();

	if (!e) {
		__u32 k = 0;
		__u64 *d = bpf_map_lookup_elem(&dropped, &k);
		if (d)
			__sync_fetch_and_add(d, 1);
		return;
	}
	e->ts = bpf_ktime_get_ns();
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->type = type;
	e->cpu = bpf_get_smp_processor_id();
	e->a[0] = a0;
	e->a[1] = a1;
	e->a[2] = a2;
	e->str[0] = 0;
	if (str)
		bpf_probe_read_user_str(e->str, sizeof(e->str), str);
	bpf_ringbuf_submit(e, 0);
}

#define P1(name, T)                                                                                \
	SEC("usdt") int BPF_USDT(name, long a0)                                                    \
	{                                                                                          \
		emit(T, a0, 0, 0, 0);                                                              \
		return 0;                                                                          \
	}
#define P2(name, T)                                                                                \
	SEC("usdt") int BPF_USDT(name, long a0, long a1)                                           \
	{                                                                                          \
		emit(T, a0, a1, 0, 0);                                                             \
		return 0;                                                                          \
	}
#define P3(name, T)                                                                                \
	SEC("usdt") int BPF_USDT(name, long a0, long a1, long a2)                                  \
	{                                                                                          \
		emit(T, a0, a1, a2, 0);                                                            \
		return 0;                                                                          \
	}

P3(fiber_create, MOIRAI_EV_FIBER_CREATE)
P2(fiber_run, MOIRAI_EV_FIBER_RUN)
P3(fiber_stop, MOIRAI_EV_FIBER_STOP)
P1(fiber_ready, MOIRAI_EV_FIBER_READY)
P2(fiber_exit, MOIRAI_EV_FIBER_EXIT)
P3(job_start, MOIRAI_EV_JOB_START)
P2(job_end, MOIRAI_EV_JOB_END)
P3(job_steal, MOIRAI_EV_JOB_STEAL)
P1(worker_park, MOIRAI_EV_WORKER_PARK)
P2(worker_wake, MOIRAI_EV_WORKER_WAKE)
P2(worker_wakeup, MOIRAI_EV_WORKER_WAKEUP)
P1(chan_wake, MOIRAI_EV_CHAN_WAKE)
P3(io_submit, MOIRAI_EV_IO_SUBMIT)
P3(io_complete, MOIRAI_EV_IO_COMPLETE)

SEC("usdt") int BPF_USDT(fiber_park, long f, long call)
{
	emit(MOIRAI_EV_FIBER_PARK, f, 0, 0, (const void *)call);
	return 0;
}

SEC("usdt") int BPF_USDT(chan_block, long ch, long op, long call)
{
	emit(MOIRAI_EV_CHAN_BLOCK, ch, op, 0, (const void *)call);
	return 0;
}
