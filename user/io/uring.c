/*
 * uring.c - the io_uring backend: one ring per worker, submitted to only
 * by that worker's thread (SINGLE_ISSUER); its completions may be reaped
 * by another worker when it is stuck in one job (the hand-off, below).
 *
 * A fiber's call fills one submission entry (two with a deadline: the
 * operation linked to an absolute LINK_TIMEOUT) on the ring of the worker
 * it runs on, and parks. The entries are not submitted at once: the worker
 * loop calls poll() when its deque runs dry and every MR__IO_INTERVAL jobs,
 * which submits everything its fibers queued in one io_uring_enter and
 * readies the fibers whose completions arrived. The completion carries
 * the address of the operation's record, which lives on the parked fiber's
 * stack until the last completion of the operation (the timeout's too) has
 * been reaped: only then is the fiber readied, so the kernel never writes
 * the caller's buffer or record after the call returns.
 *
 * An idle worker sleeps in its ring: park() calls wait(), which arms an
 * IORING_OP_FUTEX_WAIT on the worker's park word (kernel 6.7 and later) and
 * waits for one completion. A waker's ordinary futex wake on the park word
 * completes it, so wakers do not know where a worker sleeps. Older kernels
 * get an eventfd read instead, and wakers write the eventfd when the
 * worker says it sleeps in the ring (the Dekker pair: its store of
 * `sleeping`, fence, load of the park word, against the waker's store of
 * the token, fence, load of `sleeping`).
 *
 * The ring is set up with SINGLE_ISSUER and DEFER_TASKRUN where the kernel
 * has them (6.1): completions are then posted only when the worker enters
 * the kernel to ask for them, which it does in poll() while operations are
 * in flight. On 5.19-6.0, COOP_TASKRUN with TASKRUN_FLAG; SUBMIT_ALL
 * always (a bad entry does not stop the ones after it).
 *
 * Zero-copy sends (MOIRAI_IO_SEND_ZC=BYTES, off by default): a send of at
 * least BYTES is an IORING_OP_SEND_ZC instead of a try with send(2). Its
 * first completion has the result and, with IORING_CQE_F_MORE, says that a
 * notification (IORING_CQE_F_NOTIF) follows once the kernel no longer
 * reads the caller's pages; reap() counts that completion in the op like
 * any other, so the fiber is readied, and its buffer handed back, only
 * after the notification. On loopback the kernel copies the pages anyway
 * when the packet loops back to the receiver, and the zero-copy send then
 * costs more than a copy (tools/bench/io/uring_ab.sh): hence off.
 *
 * Hand-off (MOIRAI_IO_HANDOFF, on by default): a worker busy in one long
 * job does not reap its ring until the job returns (or MR__IO_INTERVAL
 * jobs or joins later). With DEFER_TASKRUN its completions are not even
 * posted until then: only the owner, entering the kernel, runs the task
 * work that posts them. So with hand-off the ring is set up WITHOUT
 * DEFER_TASKRUN, with COOP_TASKRUN and TASKRUN_FLAG: the kernel queues
 * the task work with TWA_SIGNAL_NO_IPI, which runs on the owner's next
 * return to user space, and a thread busy in user code returns there at
 * every scheduler tick (4 ms at HZ=250), so the completions reach the CQ
 * ring while the job runs. (Without COOP_TASKRUN, TWA_SIGNAL adds an IPI
 * per completion to a running owner: sooner, but every completion of a
 * busy server pays it. Measured, MOIRAI_IO_HANDOFF=2 against 1: the
 * hand-off test's reader ran after a median 4.1 ms of spin against
 * 8.9 ms, but httpd -w 2 under wrk -t1 -c64 lost in 5 of 5 alternating
 * runs, median 30.5k req/s, p99 21 ms against 35.6k, p99 12 ms.) The CQ ring is then plain shared memory that
 * anyone may consume, and a per-ring lock, cqlock, says who does:
 *  - the owner takes it to reap, to link an operation into `ops` and to
 *    walk that list; in poll() only with a try (a helper that holds it is
 *    reaping for us, and a poll that finds nothing loses nothing);
 *  - another worker of the runtime that finds the owner stuck in one job
 *    (runtime.c io_handoff()) tries it and reaps the ring's completions
 *    with rescue(): the fibers whose operations are over are readied on
 *    the helper's own deque and are ordinary runnable fibers from then on.
 *    While the owner is in wait() (`waiting`, set and cleared under
 *    cqlock), a helper stops at the futex wait's (or eventfd read's)
 *    completion and leaves it, and everything after it, to the owner,
 *    whose io_uring_enter counts on seeing it. Otherwise it takes it and
 *    clears `armed` for the owner (a token that came with it is in the
 *    park word, which the owner reads before it waits again).
 * The owner still is the only submitter (SINGLE_ISSUER): a helper never
 * enters the kernel on the ring, so an overflowed CQ waits for its owner.
 * An op is linked and unlinked and its `left` counted down under cqlock
 * only, so each operation's last completion is reaped once, and its fiber
 * readied once, by whoever holds the lock.
 *
 * When it behaves badly: on the eventfd path (kernels before 6.7), a waker
 * reads the ring's `sleeping` after it stored the token; a waker from
 * outside the worker's runtime (a group or join latch of another runtime)
 * racing that runtime's destroy can then read freed memory, a window the
 * futex wake's address had before (give_token()). With hand-off off (or a
 * kernel without COOP_TASKRUN's TASKRUN_FLAG that then has DEFER_TASKRUN
 * only), a busy worker's fibers wait for its job to end.
 */
#include <errno.h>
#include <linux/io_uring.h>
#include <linux/time_types.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "backend.h"

#ifndef IORING_OP_FUTEX_WAIT
#define IORING_OP_FUTEX_WAIT 51
#endif
#define MR__FUTEX2_SIZE_U32 0x02
#define MR__FUTEX2_PRIVATE 128

#define SQ_ENTRIES 256u
#define CQ_ENTRIES 8192u

/* user_data: the address of a struct op (| 1 for its linked timeout), or
 * one of these (no op lives below a page). */
enum { UD_FUTEX = 8, UD_EVENTFD = 16, UD_CANCEL = 24 };

struct op;

struct ring {
	int fd;
	uint32_t setup;
	uint32_t sq_entries, sq_mask, cq_mask;
	_Atomic uint32_t *sq_head, *sq_tail, *sq_flags;
	_Atomic uint32_t *cq_head, *cq_tail;
	struct io_uring_sqe *sqes;
	struct io_uring_cqe *cqes;
	uint32_t tail;	   /* entries filled up to here (published at enter) */
	uint32_t inflight; /* completions still to come for operations (cqlock) */
	bool handoff;	   /* completions are posted without us: others may reap */
	bool futex_op;	   /* the kernel has IORING_OP_FUTEX_WAIT */
	bool armed;	   /* the futex wait (or eventfd read) is in flight */
	bool waiting;	   /* the owner is in wait(), between its locks (cqlock) */
	int efd;	   /* without futex_op: what wakers write */
	uint64_t ebuf;
	_Atomic uint32_t sleeping; /* without futex_op: asleep in the ring */
	struct op *ops;		   /* operations in flight (cqlock) */
	/* Held to consume the CQ ring and to touch ops, inflight and an op's
	 * left (see the top of the file). A leaf but for readying fibers. */
	_Atomic uint32_t cqlock;
	/* mr_fiber_cancel() requests for operations of this ring: the
	 * canceller marks the op and counts here, the owner submits the
	 * async cancels (only it may submit: SINGLE_ISSUER). */
	_Atomic uint32_t ncancel;
	void *sq_map, *cq_map, *sqe_map;
	size_t sq_len, cq_len, sqe_len;
};

/* One operation: on the stack of its parked fiber. */
struct op {
	struct mr_fiber *fiber;
	int32_t res;  /* the operation's completion */
	int32_t tres; /* its linked timeout's */
	uint32_t left;
	struct __kernel_timespec ts;
	struct op *next, *prev; /* ring->ops */
	struct mr__worker *w;
	struct mr__cancel_hook cancel;
	/* 1: cancel asked (by the canceller), 2: async cancel submitted */
	_Atomic uint32_t cancel_req;
};

/* Probed once per process (mr__io_uring_probe()). */
static bool has_futex_op;
/* MOIRAI_IO_HANDOFF: 0 off (DEFER_TASKRUN rings), 1 (default) rings that
 * others may reap, with COOP_TASKRUN, 2 the same without COOP_TASKRUN
 * (an IPI per completion to a running owner; for measurements). */
static int handoff_mode = 1;
_Atomic unsigned long mr__test_io_rescued; /* backend.h */
size_t mr__io_send_zc_min;
/* Test hook: zero-copy notifications reaped, by every ring (relaxed: a
 * count read once the sends returned). */
_Atomic unsigned long mr__test_io_zc_notifs;

static int sys_setup(unsigned entries, struct io_uring_params *p)
{
	long r = syscall(__NR_io_uring_setup, entries, p);
	return r < 0 ? -errno : (int)r;
}

static int sys_enter(int fd, unsigned submit, unsigned min, unsigned flags, void *arg, size_t argsz)
{
	long r = syscall(__NR_io_uring_enter, fd, submit, min, flags, arg, argsz);
	return r < 0 ? -errno : (int)r;
}

static void ring_unmap(struct ring *r)
{
	if (r->sqe_map)
		munmap(r->sqe_map, r->sqe_len);
	if (r->cq_map && r->cq_map != r->sq_map)
		munmap(r->cq_map, r->cq_len);
	if (r->sq_map)
		munmap(r->sq_map, r->sq_len);
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	r->sq_map = r->cq_map = r->sqe_map = NULL;
}

/* Set up r with the best flags this kernel takes. 0 or -errno. */
static int ring_init(struct ring *r, unsigned entries, unsigned cq_entries, int handoff)
{
	static const uint32_t tries_handoff[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
			IORING_SETUP_SUBMIT_ALL,
		IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL,
		IORING_SETUP_SUBMIT_ALL,
		0,
	};
	static const uint32_t tries_ipi[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_SUBMIT_ALL,
		IORING_SETUP_SUBMIT_ALL,
		0,
	};
	static const uint32_t tries_defer[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
			IORING_SETUP_SUBMIT_ALL,
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL,
		IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL,
		IORING_SETUP_SUBMIT_ALL,
		0,
	};
	const uint32_t *tries = handoff == 1 ? tries_handoff : handoff == 2 ? tries_ipi : tries_defer;
	size_t ntries = handoff == 1   ? sizeof(tries_handoff) / sizeof(tries_handoff[0])
			: handoff == 2 ? sizeof(tries_ipi) / sizeof(tries_ipi[0])
				       : sizeof(tries_defer) / sizeof(tries_defer[0]);
	struct io_uring_params p;
	int fd = -EINVAL;

	memset(r, 0, sizeof(*r));
	r->fd = -1;
	r->efd = -1;
	for (size_t i = 0; i < ntries; i++) {
		memset(&p, 0, sizeof(p));
		p.flags = tries[i] | (cq_entries ? IORING_SETUP_CQSIZE : 0);
		p.cq_entries = cq_entries;
		fd = sys_setup(entries, &p);
		if (fd != -EINVAL)
			break;
	}
	if (fd < 0)
		return fd;
	r->fd = fd;
	r->setup = p.flags;
	/* Without DEFER_TASKRUN the kernel posts completions on its own (at
	 * the owner's next return to user space at the latest). */
	r->handoff = handoff && !(p.flags & IORING_SETUP_DEFER_TASKRUN);
	r->sq_len = p.sq_off.array + p.sq_entries * sizeof(uint32_t);
	r->cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	if (p.features & IORING_FEAT_SINGLE_MMAP) {
		if (r->cq_len > r->sq_len)
			r->sq_len = r->cq_len;
		r->cq_len = r->sq_len;
	}
	r->sq_map = mmap(NULL, r->sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
			 IORING_OFF_SQ_RING);
	if (r->sq_map == MAP_FAILED) {
		r->sq_map = NULL;
		goto fail;
	}
	if (p.features & IORING_FEAT_SINGLE_MMAP) {
		r->cq_map = r->sq_map;
	} else {
		r->cq_map = mmap(NULL, r->cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
				 fd, IORING_OFF_CQ_RING);
		if (r->cq_map == MAP_FAILED) {
			r->cq_map = NULL;
			goto fail;
		}
	}
	r->sqe_len = p.sq_entries * sizeof(struct io_uring_sqe);
	r->sqe_map = mmap(NULL, r->sqe_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
			  IORING_OFF_SQES);
	if (r->sqe_map == MAP_FAILED) {
		r->sqe_map = NULL;
		goto fail;
	}
	char *sq = r->sq_map, *cq = r->cq_map;
	r->sq_head = (_Atomic uint32_t *)(sq + p.sq_off.head);
	r->sq_tail = (_Atomic uint32_t *)(sq + p.sq_off.tail);
	r->sq_flags = (_Atomic uint32_t *)(sq + p.sq_off.flags);
	r->sq_mask = *(uint32_t *)(sq + p.sq_off.ring_mask);
	r->sq_entries = *(uint32_t *)(sq + p.sq_off.ring_entries);
	uint32_t *array = (uint32_t *)(sq + p.sq_off.array);
	for (uint32_t i = 0; i < r->sq_entries; i++)
		array[i] = i; /* ring position i uses entry i */
	r->sqes = r->sqe_map;
	r->cq_head = (_Atomic uint32_t *)(cq + p.cq_off.head);
	r->cq_tail = (_Atomic uint32_t *)(cq + p.cq_off.tail);
	r->cq_mask = *(uint32_t *)(cq + p.cq_off.ring_mask);
	r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
	r->tail = atomic_load_explicit(r->sq_tail, memory_order_relaxed);
	return 0;
fail:;
	int err = -errno;
	ring_unmap(r);
	return err;
}

/* Publish the filled entries and enter: submit them, and with
 * IORING_ENTER_GETEVENTS wait for min completions. Count or -errno. */
static int ring_enter(struct ring *r, unsigned min, unsigned flags, void *arg, size_t argsz)
{
	/* release: the kernel's acquire of the tail sees the entries. */
	atomic_store_explicit(r->sq_tail, r->tail, memory_order_release);
	uint32_t n = r->tail - atomic_load_explicit(r->sq_head, memory_order_acquire);
	int ret;

	do
		ret = sys_enter(r->fd, n, min, flags, arg, argsz);
	while (ret == -EINTR && !(flags & IORING_ENTER_GETEVENTS));
	return ret;
}

static void set_inflight(struct mr__worker *w, struct ring *r)
{
	/* relaxed: a hint for destroy (drain_state()), read after nasleep. */
	atomic_store_explicit(&w->io_inflight, r->inflight, memory_order_relaxed);
}

/*
 * From wait(): raise the count, never lower it. A completion reaped while
 * the worker still counts as asleep readies a fiber onto its private
 * deque, which destroy cannot see; if the count dropped to 0 then, destroy
 * would take the runtime for stuck (drain_state()). poll(), which runs in
 * the worker loop once the worker is awake, publishes the true count.
 */
static void raise_inflight(struct mr__worker *w, struct ring *r)
{
	if (r->inflight > atomic_load_explicit(&w->io_inflight, memory_order_relaxed))
		set_inflight(w, r);
}

/*
 * Take the completions of w's ring r; ready each fiber whose operation is
 * over (on the calling thread's worker `self`: w, or a helper). With
 * cqlock held. A helper stops before the futex wait's or eventfd read's
 * completion: the owner's wait() must see it. Returns how many fibers it
 * readied.
 */
static unsigned reap(struct mr__worker *self, struct mr__worker *w, struct ring *r)
{
	bool helper = self != w;
	/* relaxed: writers of the head hold cqlock; acquire on the tail:
	 * pairs with the kernel's release, the entries are there. */
	uint32_t head = atomic_load_explicit(r->cq_head, memory_order_relaxed);
	uint32_t tail = atomic_load_explicit(r->cq_tail, memory_order_acquire);
	unsigned readied = 0;

	if (head == tail)
		return 0;
	int64_t now = (int64_t)mr__now_ns(); /* when these fibers became ready */
	/* acquire: pairs with the owner's release of the SQ tail before each
	 * io_uring_enter (ring_enter()), which follows the switch-out of every
	 * fiber whose operation it submits. The kernel orders the completion
	 * after the submission, but no checker sees that edge; this makes the
	 * fibers' parked state visible to a helper in the language's terms. */
	if (helper)
		(void)atomic_load_explicit(r->sq_tail, memory_order_acquire);
	for (; head != tail; head++) {
		const struct io_uring_cqe *c = &r->cqes[head & r->cq_mask];
		uint64_t ud = c->user_data;
		int32_t res = c->res;

		if (ud == UD_FUTEX || ud == UD_EVENTFD) {
			/* The owner in wait() counts on finding this one
			 * (its min_complete): leave it, and what follows. */
			if (helper && r->waiting)
				break;
			r->armed = false;
			continue;
		}
		if (ud == UD_CANCEL)
			continue; /* the cancelled operation completes on its own */
		struct op *op = (struct op *)(uintptr_t)(ud & ~(uint64_t)1);
		if (c->flags & IORING_CQE_F_NOTIF)
			/* a zero-copy send's pages are released: its result came before */
			atomic_fetch_add_explicit(&mr__test_io_zc_notifs, 1, memory_order_relaxed);
		else if (ud & 1)
			op->tres = res;
		else
			op->res = res;
		if (c->flags & IORING_CQE_F_MORE) {
			/* A zero-copy send's result: its notification follows. */
			op->left++;
			r->inflight++;
		}
		r->inflight--;
		/* The fiber's stack holds op: once readied, it may run (on a
		 * thief) and return, so op is not touched after. */
		if (--op->left == 0) {
			if (op->prev)
				op->prev->next = op->next;
			else
				r->ops = op->next;
			if (op->next)
				op->next->prev = op->prev;
			MR__STAT_ADD(self->st, io_completed, 1);
			MR_PROBE3(io_complete, w->idx, op->fiber, op->res);
			mr__fiber_ready_io(op->fiber, now);
			readied++;
		}
	}
	/* release: the kernel may reuse the entries once it sees the head. */
	atomic_store_explicit(r->cq_head, head, memory_order_release);
	if (helper && readied) {
		/* Ours: the helper is the calling thread (runtime.c io_handoff()). */
		MR__STAT_ADD(self->st, io_rescued, readied);
		atomic_fetch_add_explicit(&mr__test_io_rescued, readied, memory_order_relaxed);
	}
	return readied;
}

/* The owner's side of cqlock: a helper holds it only to reap (no system
 * call), so a short spin. */
static inline void cq_lock(struct ring *r)
{
	mr__spin_lock(&r->cqlock);
}

static inline void cq_unlock(struct ring *r)
{
	mr__spin_unlock(&r->cqlock);
}

/* n consecutive free entries at r->tail (zeroed); submits (and, when the
 * kernel is short of completion space, reaps) until there are. */
static struct io_uring_sqe *sqe_get(struct mr__worker *w, struct ring *r, unsigned n)
{
	for (;;) {
		uint32_t head = atomic_load_explicit(r->sq_head, memory_order_acquire);
		if (r->tail - head + n <= r->sq_entries)
			break;
		int ret = ring_enter(r, 0, 0, NULL, 0);
		if (ret == -EBUSY || ret == -EAGAIN) {
			ring_enter(r, 0, IORING_ENTER_GETEVENTS, NULL, 0);
			cq_lock(r);
			reap(w, w, r);
			cq_unlock(r);
		} else if (ret < 0) {
			mr__die("io_uring_enter", "%s", strerror(-ret));
		}
	}
	for (unsigned i = 0; i < n; i++)
		memset(&r->sqes[(r->tail + i) & r->sq_mask], 0, sizeof(struct io_uring_sqe));
	return &r->sqes[r->tail & r->sq_mask];
}

static void prep(struct io_uring_sqe *s, const struct mr__io_req *q)
{
	s->fd = q->fd;
	switch (q->op) {
	case MR__IO_READ:
	case MR__IO_WRITE:
	case MR__IO_READV:
	case MR__IO_WRITEV:
		s->opcode = q->op == MR__IO_READ    ? IORING_OP_READ
				: q->op == MR__IO_WRITE ? IORING_OP_WRITE
				: q->op == MR__IO_READV ? IORING_OP_READV
							: IORING_OP_WRITEV;
		s->addr = (uintptr_t)q->buf;
		s->len = (uint32_t)q->len;
		s->off = (uint64_t)q->off;
		break;
	case MR__IO_RECV:
	case MR__IO_SEND:
		s->opcode = q->op == MR__IO_RECV ? IORING_OP_RECV : IORING_OP_SEND;
		s->addr = (uintptr_t)q->buf;
		s->len = (uint32_t)q->len;
		s->msg_flags = (uint32_t)q->flags;
		break;
	case MR__IO_RECVMSG:
	case MR__IO_SENDMSG:
		s->opcode = q->op == MR__IO_RECVMSG ? IORING_OP_RECVMSG : IORING_OP_SENDMSG;
		s->addr = (uintptr_t)q->buf;
		s->len = 1;
		s->msg_flags = (uint32_t)q->flags;
		break;
	case MR__IO_ACCEPT:
		s->opcode = IORING_OP_ACCEPT;
		s->addr = (uintptr_t)q->buf;
		s->addr2 = (uintptr_t)q->ptr;
		s->accept_flags = (uint32_t)q->flags;
		break;
	case MR__IO_CONNECT:
		s->opcode = IORING_OP_CONNECT;
		s->addr = (uintptr_t)q->buf;
		s->off = q->len;
		break;
	case MR__IO_SHUTDOWN:
		s->opcode = IORING_OP_SHUTDOWN;
		s->len = (uint32_t)q->flags;
		break;
	case MR__IO_CLOSE:
		s->opcode = IORING_OP_CLOSE;
		break;
	case MR__IO_OPENAT:
		s->opcode = IORING_OP_OPENAT;
		s->addr = (uintptr_t)q->buf;
		s->len = (uint32_t)q->len;
		s->open_flags = (uint32_t)q->flags;
		break;
	case MR__IO_STATX:
		s->opcode = IORING_OP_STATX;
		s->addr = (uintptr_t)q->buf;
		s->len = (uint32_t)q->len;
		s->addr2 = (uintptr_t)q->ptr;
		s->statx_flags = (uint32_t)q->flags;
		break;
	case MR__IO_FSYNC:
		s->opcode = IORING_OP_FSYNC;
		s->fsync_flags = q->flags ? IORING_FSYNC_DATASYNC : 0;
		break;
	case MR__IO_POLL:
		s->opcode = IORING_OP_POLL_ADD;
		s->poll32_events = (uint32_t)(uint16_t)q->flags;
		break;
	default:
		mr__die(q->call, "unknown I/O operation %d", q->op);
	}
}

/*
 * mr_fiber_cancel() of a fiber whose operation is in flight (or about to
 * be: the hook is armed before the entry is filled, and may run before the
 * fiber has parked). It only marks the op and wakes the owner, which
 * submits the async cancel (cancel_ops()); the operation then completes,
 * cancelled or not, and the fiber is readied from that completion as
 * always.
 */
static void op_cancel(struct mr__cancel_hook *h)
{
	struct op *op = (struct op *)((char *)h - offsetof(struct op, cancel));
	struct mr__worker *w = op->w;
	struct ring *r = w->io;

	atomic_store_explicit(&op->cancel_req, 1, memory_order_relaxed);
	/* seq_cst: against the owner's RMW of its idle bit before it reads
	 * ncancel (uring_wait()): it sees the count, or we see it idle. */
	atomic_fetch_add_explicit(&r->ncancel, 1, memory_order_seq_cst);
	mr__wake_worker(w, MR__TOK_LATCH);
}

/* Owner: submit an async cancel for each operation asked to be cancelled. */
static void cancel_ops(struct mr__worker *w, struct ring *r)
{
	uint32_t want = 0;

	if (!atomic_exchange_explicit(&r->ncancel, 0, memory_order_seq_cst))
		return;
	cq_lock(r);
	for (struct op *op = r->ops; op; op = op->next)
		want += atomic_load_explicit(&op->cancel_req, memory_order_relaxed) == 1;
	cq_unlock(r);
	if (want > r->sq_entries) {
		want = r->sq_entries;
		atomic_fetch_add_explicit(&r->ncancel, 1, memory_order_relaxed); /* the rest later */
	}
	/* The entries first: making room may reap, which takes completed
	 * operations off the list (they need no cancel). */
	sqe_get(w, r, want);
	/* Held while we walk: a helper may unlink (and ready) ops. */
	cq_lock(r);
	for (struct op *op = r->ops; op && want; op = op->next) {
		if (atomic_load_explicit(&op->cancel_req, memory_order_relaxed) != 1)
			continue;
		atomic_store_explicit(&op->cancel_req, 2, memory_order_relaxed);
		struct io_uring_sqe *s = &r->sqes[r->tail & r->sq_mask];
		want--;
		s->opcode = IORING_OP_ASYNC_CANCEL;
		MR__STAT_ADD(w->st, io_cancelled, 1);
		s->fd = -1;
		s->addr = (uintptr_t)op;
		s->user_data = UD_CANCEL;
		r->tail++;
	}
	cq_unlock(r);
}

static bool parked(void *arg)
{
	(void)arg;
	/* The operation is submitted by this worker's loop after the switch,
	 * so no one (owner or helper) can reap its completion before. */
	return true;
}

/*
 * A send on a socket with room completes at once: try it without blocking
 * first, as Go and tokio do, and go through the ring only when the socket
 * is full. A reply then costs one system call and no park, instead of a
 * park, a submission, a reap and a resume. (Receives go to the ring at
 * once: in request-response traffic the next request is rarely there yet,
 * and the try would be a wasted system call.)
 */
static long send_now(const struct mr__io_req *q)
{
	ssize_t n;

	do
		n = q->op == MR__IO_SEND ?
			    send(q->fd, q->buf, q->len, q->flags | MSG_DONTWAIT) :
			    sendmsg(q->fd, q->buf, q->flags | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	return n >= 0 ? n : -errno;
}

static long uring_call(struct mr__worker *w, struct mr_fiber *f, const struct mr__io_req *q,
		       int64_t deadline)
{
	bool zc = q->op == MR__IO_SEND && q->zc;

	if ((q->op == MR__IO_SEND && !zc) || q->op == MR__IO_SENDMSG) {
		if (mr__cancel_pending(f))
			return mr__cancel_take(f);
		long n = send_now(q);
		if (n != -EAGAIN || mr__io_req_dontwait(q))
			return n;
	}
	struct ring *r = w->io;
	struct op op = { .fiber = f, .left = deadline >= 0 ? 2 : 1, .w = w };

	op.cancel.fn = op_cancel;
	if (mr__cancel_arm(f, &op.cancel)) {
		mr__cancel_disarm(f);
		return mr__cancel_take(f);
	}
	struct io_uring_sqe *s = sqe_get(w, r, op.left);

	prep(s, q);
	if (zc)
		s->opcode = IORING_OP_SEND_ZC; /* the fields of IORING_OP_SEND */
	s->user_data = (uintptr_t)&op;
	if (deadline >= 0) {
		/* Linked: the timeout is armed once the operation has to wait,
		 * and cancels it at the absolute CLOCK_MONOTONIC deadline. */
		s->flags |= IOSQE_IO_LINK;
		op.ts.tv_sec = deadline / 1000000000;
		op.ts.tv_nsec = deadline % 1000000000;
		struct io_uring_sqe *t = &r->sqes[(r->tail + 1) & r->sq_mask];
		t->opcode = IORING_OP_LINK_TIMEOUT;
		t->fd = -1;
		t->addr = (uintptr_t)&op.ts;
		t->len = 1;
		t->timeout_flags = IORING_TIMEOUT_ABS;
		t->user_data = (uintptr_t)&op | 1;
	}
	r->tail += op.left;
	MR__STAT_ADD(w->st, io_submitted, 1);
	MR_PROBE3(io_submit, w->idx, q->op, q->fd);
	cq_lock(r);
	bool first = r->inflight == 0;
	r->inflight += op.left;
	op.next = r->ops;
	if (r->ops)
		r->ops->prev = &op;
	r->ops = &op;
	set_inflight(w, r);
	cq_unlock(r);
	if (first && r->handoff)
		mr__io_watch_check(w); /* a worker parked meanwhile may not watch */
	mr__wait_note(MR__WAIT_IO, (const void *)(intptr_t)q->fd, deadline);
	/* The worker submits at the end of its round (poll()); w and r are
	 * not ours to touch after the park (we may resume elsewhere once
	 * every completion is in). */
	mr__fiber_park(parked, NULL, q->call);
	mr__cancel_disarm(f);
	bool killed = op.res == -ECANCELED || op.res == -EINTR;
	if (deadline >= 0 && op.tres == -ETIME && killed)
		return -ETIMEDOUT;
	if (killed && atomic_load_explicit(&op.cancel_req, memory_order_relaxed))
		return mr__cancel_take(f);
	return op.res;
}

/* Arm the wait that a waker completes: a futex wait on the park word
 * while it holds no token, or a read of the eventfd. */
static void arm(struct mr__worker *w, struct ring *r)
{
	struct io_uring_sqe *s = sqe_get(w, r, 1);

	if (r->futex_op) {
		s->opcode = IORING_OP_FUTEX_WAIT;
		s->fd = MR__FUTEX2_SIZE_U32 | MR__FUTEX2_PRIVATE;
		s->addr = (uintptr_t)&w->park;
		s->off = MR__TOK_NONE;
		s->addr3 = 0xffffffffu; /* FUTEX_BITSET_MATCH_ANY */
		s->user_data = UD_FUTEX;
	} else {
		s->opcode = IORING_OP_READ;
		s->fd = r->efd;
		s->addr = (uintptr_t)&r->ebuf;
		s->len = sizeof(r->ebuf);
		s->user_data = UD_EVENTFD;
	}
	r->tail++;
	r->armed = true;
}

/*
 * Are completions waiting in the kernel for us to ask (task work)? With
 * TASKRUN_FLAG the kernel says so in the SQ ring's flags, so that a poll
 * that would find nothing costs a load, not a system call: the worker
 * loop, the search and join_poll() poll often. DEFER_TASKRUN without the
 * flag (a kernel that refused it): ask every time. Without either,
 * completions are posted as they come; only an overflow needs the kernel.
 */
static inline bool need_getevents(struct ring *r)
{
	uint32_t fl = atomic_load_explicit(r->sq_flags, memory_order_relaxed);

	if (r->setup & IORING_SETUP_TASKRUN_FLAG)
		return fl & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW);
	if (r->setup & IORING_SETUP_DEFER_TASKRUN)
		return true;
	return fl & IORING_SQ_CQ_OVERFLOW;
}

/* Submit, and take the completions without waiting; readies fibers
 * (returns how many). */
static unsigned poll_ring(struct mr__worker *w, struct ring *r, bool publish)
{
	bool pending = r->tail != atomic_load_explicit(r->sq_head, memory_order_acquire);

	/* Owner only, relaxed: a helper compares it with what it saw last
	 * (runtime.c io_handoff()); a plain increment, no read-modify-write. */
	atomic_store_explicit(&w->io_polls, atomic_load_explicit(&w->io_polls, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	if (unlikely(atomic_load_explicit(&r->ncancel, memory_order_relaxed))) {
		cancel_ops(w, r);
		pending = true;
	}
	if (!mr__spin_trylock(&r->cqlock)) {
		/* A helper reaps our ring right now: what it finds, it
		 * readies; we only submit. */
		if (pending)
			ring_enter(r, 0, 0, NULL, 0);
		return 0;
	}
	/* Completions wait in the kernel until we ask: always with
	 * DEFER_TASKRUN, when the kernel flags it with TASKRUN_FLAG. */
	bool get = r->inflight && need_getevents(r);
	if (pending || get)
		ring_enter(r, 0, get ? IORING_ENTER_GETEVENTS : 0, NULL, 0);
	unsigned readied = reap(w, w, r);
	if (publish)
		set_inflight(w, r);
	else
		raise_inflight(w, r);
	cq_unlock(r);
	return readied;
}

static bool uring_poll(struct mr__worker *w)
{
	return poll_ring(w, w->io, true);
}

/*
 * Another worker `self` of w's runtime found w busy in one job with
 * operations in flight: reap w's ring for it, unless someone holds cqlock
 * (then w itself, or another helper, is reaping). True if it readied
 * fibers (onto self's deque).
 */
static bool uring_rescue(struct mr__worker *w, struct mr__worker *self)
{
	struct ring *r = w->io;

	if (!mr__spin_trylock(&r->cqlock))
		return false;
	unsigned readied = reap(self, w, r);
	if (readied)
		set_inflight(w, r);
	cq_unlock(r);
	return readied != 0;
}

static bool uring_wait(struct mr__worker *w, int64_t deadline)
{
	struct ring *r = w->io;
	struct io_uring_getevents_arg arg;
	struct __kernel_timespec ts;
	unsigned flags = IORING_ENTER_GETEVENTS;

	/* From here on a helper leaves `armed` alone (see reap()). */
	cq_lock(r);
	r->waiting = true;
	cq_unlock(r);
	/* seq_cst: see op_cancel(). Before the arm: making room for the
	 * cancels' entries may reap (sqe_get()), the futex wait's completion
	 * (or the eventfd read's) too, and then nothing would be armed. */
	uint32_t head = w->dq.head;
	if (atomic_load_explicit(&r->ncancel, memory_order_seq_cst))
		cancel_ops(w, r);
	if (!r->armed)
		arm(w, r);
	/* Making room reaped completions: their fibers are on our deque, for
	 * our caller to run. Do not sleep on them. */
	bool awake = w->dq.head != head;
	if (!awake && !r->futex_op) {
		/* seq_cst, and the fence: against the waker's token store,
		 * fence, load of `sleeping` (uring_wake()), and against a
		 * claimer's store of hpark, fence, load of `sleeping` in the
		 * same wake (runtime.c help_claim()). */
		atomic_store_explicit(&r->sleeping, 1, memory_order_seq_cst);
		mr__fence_seq_cst();
		awake = atomic_load_explicit(&w->park, memory_order_relaxed) != MR__TOK_NONE ||
			mr__help_claimed(w);
		if (awake)
			atomic_store_explicit(&r->sleeping, 0, memory_order_relaxed);
	} else if (!awake && atomic_load_explicit(&w->hring, memory_order_relaxed)) {
		/* Blocked in a job (help_sleep()): a claimer wakes our futex
		 * wait without changing `park`, so that wake is lost unless
		 * the wait is queued in the kernel before we look at hpark.
		 * Submit it (issued inline), then look. Should the kernel not
		 * take every entry (a full CQ), sleep 1 ms at most. */
		if (r->tail != atomic_load_explicit(r->sq_head, memory_order_acquire))
			ring_enter(r, 0, 0, NULL, 0);
		if (r->tail != atomic_load_explicit(r->sq_head, memory_order_acquire)) {
			int64_t soon = (int64_t)mr__now_ns() + 1000000;
			if (deadline < 0 || deadline > soon)
				deadline = soon;
		}
		mr__fence_seq_cst();
		awake = mr__help_claimed(w);
	}
	if (awake) {
		cq_lock(r);
		r->waiting = false;
		cq_unlock(r);
		/* Fibers reaped while making room count as readied: the
		 * caller must run them, not wait again. */
		return (poll_ring(w, r, false) != 0) | (w->dq.head != head);
	}
	memset(&arg, 0, sizeof(arg));
	if (deadline >= 0) {
		int64_t d = deadline - (int64_t)mr__now_ns();
		if (d < 0)
			d = 0;
		ts.tv_sec = d / 1000000000;
		ts.tv_nsec = d % 1000000000;
		arg.ts = (uintptr_t)&ts;
	}
	flags |= IORING_ENTER_EXT_ARG;
	int ret = ring_enter(r, 1, flags, &arg, sizeof(arg));
	if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EBUSY && ret != -EAGAIN)
		mr__die("io_uring_enter", "%s", strerror(-ret));
	if (!r->futex_op)
		atomic_store_explicit(&r->sleeping, 0, memory_order_relaxed);
	atomic_store_explicit(&w->io_polls, atomic_load_explicit(&w->io_polls, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	/* A helper that holds the lock reaps for us; but it leaves the futex
	 * wait's completion (our `armed`) to us: wait for it. */
	cq_lock(r);
	unsigned readied = reap(w, w, r);
	raise_inflight(w, r);
	r->waiting = false;
	cq_unlock(r);
	return readied != 0;
}

static void uring_wake(struct mr__worker *w)
{
	struct ring *r = w->io;

	/* Pairs with the store of `sleeping` and fence in uring_wait(). */
	mr__fence_seq_cst();
	if (atomic_load_explicit(&r->sleeping, memory_order_seq_cst)) {
		uint64_t one = 1;
		ssize_t n = write(r->efd, &one, sizeof(one));
		(void)n; /* an eventfd write fails only on overflow: it is awake */
	}
}

static void uring_fini(struct mr__worker *w)
{
	struct ring *r = w->io;

	atomic_store_explicit(&w->io_ops, NULL, memory_order_relaxed);
	ring_unmap(r);
	if (r->efd >= 0)
		close(r->efd);
	free(r);
	w->io = NULL;
}

static const struct mr__io_ops ops_futex = {
	.poll = uring_poll,
	.wait = uring_wait,
	.wake = NULL,
	.fini = uring_fini,
};

static const struct mr__io_ops ops_eventfd = {
	.poll = uring_poll,
	.wait = uring_wait,
	.wake = uring_wake,
	.fini = uring_fini,
};

/* The same, on rings that others may reap (r->handoff). */
static const struct mr__io_ops ops_futex_handoff = {
	.poll = uring_poll,
	.wait = uring_wait,
	.wake = NULL,
	.rescue = uring_rescue,
	.fini = uring_fini,
};

static const struct mr__io_ops ops_eventfd_handoff = {
	.poll = uring_poll,
	.wait = uring_wait,
	.wake = uring_wake,
	.rescue = uring_rescue,
	.fini = uring_fini,
};

static int uring_worker_init(struct mr__worker *w)
{
	struct ring *r = malloc(sizeof(*r));

	if (!r)
		return -ENOMEM;
	int err = ring_init(r, SQ_ENTRIES, CQ_ENTRIES, handoff_mode);
	if (err) {
		free(r);
		return err;
	}
	r->futex_op = has_futex_op;
	if (!r->futex_op) {
		r->efd = eventfd(0, EFD_CLOEXEC);
		if (r->efd < 0) {
			err = -errno;
			ring_unmap(r);
			free(r);
			return err;
		}
	}
	w->io = r;
	/* release: a waker that loads io_ops (give_token()) sees w->io. */
	MR__STAT_SET(w->st, io_backend, MR_IO_BACKEND_URING);
	const struct mr__io_ops *ops = r->futex_op ? (r->handoff ? &ops_futex_handoff : &ops_futex)
				   : (r->handoff ? &ops_eventfd_handoff : &ops_eventfd);
	atomic_store_explicit(&w->io_ops, ops, memory_order_release);
	return 0;
}

int mr__io_uring_probe(void)
{
	struct ring r;
	const char *ho = getenv("MOIRAI_IO_HANDOFF");

	if (ho && *ho)
		handoff_mode = ho[0] == '0' ? 0 : ho[0] == '2' ? 2 : 1;
	int err = ring_init(&r, 4, 0, 0);

	if (err)
		return err;
	struct io_uring_sqe *s = &r.sqes[r.tail & r.sq_mask];
	memset(s, 0, sizeof(*s));
	s->opcode = IORING_OP_NOP;
	s->user_data = 42;
	r.tail++;
	err = ring_enter(&r, 1, IORING_ENTER_GETEVENTS, NULL, 0);
	if (err >= 0) {
		uint32_t head = atomic_load_explicit(r.cq_head, memory_order_relaxed);
		uint32_t tail = atomic_load_explicit(r.cq_tail, memory_order_acquire);
		err = head != tail && r.cqes[head & r.cq_mask].user_data == 42
			  ? r.cqes[head & r.cq_mask].res
			  : -EIO;
	}
	if (err >= 0) {
		size_t sz = sizeof(struct io_uring_probe) + 256 * sizeof(struct io_uring_probe_op);
		struct io_uring_probe *p = calloc(1, sz);
		if (p && syscall(__NR_io_uring_register, r.fd, IORING_REGISTER_PROBE, p, 256) == 0)
			has_futex_op = p->last_op >= IORING_OP_FUTEX_WAIT &&
				       (p->ops[IORING_OP_FUTEX_WAIT].flags & IO_URING_OP_SUPPORTED);
		bool has_zc = p && p->last_op >= IORING_OP_SEND_ZC &&
			      (p->ops[IORING_OP_SEND_ZC].flags & IO_URING_OP_SUPPORTED);
		const char *zc = getenv("MOIRAI_IO_SEND_ZC");
		if (has_zc && zc && *zc) {
			char *end;
			unsigned long long v = strtoull(zc, &end, 10);
			if (!*end)
				mr__io_send_zc_min = (size_t)v;
		}
		free(p);
		if (getenv("MOIRAI_IO_NO_FUTEX")) /* test hook: the eventfd path */
			has_futex_op = false;
	}
	ring_unmap(&r);
	return err < 0 ? err : 0;
}

const struct mr__io_backend mr__io_uring_backend = {
	.name = "io_uring",
	.worker_init = uring_worker_init,
	.call = uring_call,
};
