/*
 * probes.h - USDT probes (provider "moirai") for bpftrace, perf and
 * `moiraictl trace`.
 *
 * Built with <sys/sdt.h> (Debian's systemtap-sdt-dev) when the compiler
 * finds it (the Makefile defines MR_HAVE_SDT); otherwise every probe is
 * nothing. A probe site is one `nop` and a note in .note.stapsdt naming
 * where its arguments are (registers or memory the code has at hand): no
 * branch, no load of a semaphore, no call while nobody traces. A tracer
 * that attaches turns the nop into a breakpoint (a uprobe: ~1-3 us per
 * event on these machines, see the README's numbers).
 *
 * The probes and their arguments (all integers; pointers as addresses,
 * `call` a C string naming the API call, e.g. "mr_chan_recv"):
 *
 *  fiber_create(fiber, fn, runtime_id)   mr_go: a fiber was made runnable
 *  fiber_run(fiber, worker)              a worker switches into it
 *  fiber_stop(fiber, worker, why)        it switched out: why 1 or 2 parked,
 *                                        3 yielded, 4 returned
 *  fiber_park(fiber, call)               it parks in `call` (what it waits on)
 *  fiber_ready(fiber)                    made runnable (spawned or woken) by
 *                                        the calling thread
 *  fiber_exit(fiber, worker)             it returned
 *  job_start(job, worker, exec)          a job from a queue starts (exec: its
 *                                        function), job_end(job, worker) ends
 *  job_steal(job, thief, victim)         worker thief took a job from victim
 *  worker_park(worker)                   goes to sleep; worker_wake(worker, token)
 *                                        woke (token 0: a timeout)
 *  worker_wakeup(target, waker)          a thread woke worker target (waker -1:
 *                                        not a worker of that runtime)
 *  chan_block(chan, op, call)            a channel operation has to wait (op:
 *                                        MR_SELECT_SEND/RECV, 0 for a select)
 *  chan_wake(sleeper)                    a waiting channel operation is woken
 *  io_submit(worker, op, fd)             an I/O operation queued on a worker's
 *                                        backend (op: user/io's MR__IO_*)
 *  io_complete(worker, fiber, res)       its completion readies its fiber
 *
 * Worker numbers are indexes within the runtime; thread ids come from the
 * tracer (every probe fires on the thread that does the thing).
 */
#ifndef MR_PROBES_H
#define MR_PROBES_H

#ifdef MR_HAVE_SDT
#include <sys/sdt.h>
#define MR_PROBE1(name, a) DTRACE_PROBE1(moirai, name, a)
#define MR_PROBE2(name, a, b) DTRACE_PROBE2(moirai, name, a, b)
#define MR_PROBE3(name, a, b, c) DTRACE_PROBE3(moirai, name, a, b, c)
#else
#define MR_PROBE1(name, a) ((void)0)
#define MR_PROBE2(name, a, b) ((void)0)
#define MR_PROBE3(name, a, b, c) ((void)0)
#endif

#endif /* MR_PROBES_H */
