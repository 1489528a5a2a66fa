/*
 * moirai/chan.h - channels: typed-by-size MPMC queues between fibers and
 * threads in one process, and select over several of them.
 *
 * A channel carries elements of one fixed size (1 byte to 64 KiB; send a
 * pointer for bigger things), copied in and out by value. Three flavours:
 *
 *	capacity > 0         bounded ring: a send waits while `capacity`
 *	                     elements are queued
 *	MR_CHAN_UNBOUNDED    grows in segments; a send never waits
 *	capacity 0           rendezvous: a send completes only when a receiver
 *	                     takes the element (and vice versa)
 *
 * Memory. Every channel has an object of a few cache lines (256 bytes on
 * x86-64). A bounded ring adds `capacity` slots of elem_size + 8 bytes
 * rounded up to a multiple of 8 (16 bytes for 8-byte elements). Rings of
 * 128 KiB or more are mapped (mmap, MAP_NORESERVE): creating one costs one
 * system call and reserves address space only, whatever the capacity; a
 * page of it (4 KiB, or 2 MiB where transparent huge pages are set to
 * "always") becomes resident when the ring first reaches it. Slots are
 * used in turn, so what is resident follows the number of elements ever
 * sent, not the number queued, and stays until destroy: min(sent,
 * capacity) slots, in whole pages. Capacity 1 << 30 with 8-byte elements
 * is 16 GiB of address space and, after a thousand sends, 16 KiB resident.
 * Memory is committed as it is touched: a ring that grows past what the
 * machine has meets the kernel's out-of-memory handling then, not ENOMEM
 * at create (under vm.overcommit_memory=2 the whole ring is committed at
 * create, and a ring that does not fit is ENOMEM). Smaller rings are
 * allocated and cleared at create. An unbounded channel allocates segments
 * of 31 slots (elem_size + 8 bytes, rounded up to 8) as they fill and
 * frees them as they drain, keeping one spare. A rendezvous channel holds
 * no elements.
 *
 * Every element sent is received exactly once, and the elements of one
 * sender arrive in the order it sent them. A blocked fiber parks (its
 * worker runs other fibers); a blocked thread, or a job, sleeps on a futex
 * after a short spin.
 *
 * Closing: after mr_chan_close() sends fail with -EPIPE at once; receivers
 * still get every element sent before the close, then -EPIPE. Waiting
 * senders and receivers wake (a sender that was waiting gets -EPIPE and its
 * element was not sent).
 *
 * Deadlines are CLOCK_MONOTONIC nanoseconds (mr_now_ns() + timeout), read
 * as common.h says: negative is none (wait as the call without a deadline
 * would), 0 or any passed time does not wait (complete at once if ready,
 * else -ETIMEDOUT; only mr_select reads 0 as MR_SELECT_POLL). An operation
 * that returns -ETIMEDOUT, -EAGAIN or -ENOMEM did nothing: a send that
 * timed out has not queued its element.
 *
 * Every call here may be made from fibers and threads. A handle that is not
 * a live channel (destroyed, or never created) aborts naming the call; a
 * NULL channel gives -EINVAL (the monitoring calls: 0 or false).
 */
#ifndef MOIRAI_CHAN_H
#define MOIRAI_CHAN_H

#include <moirai/common.h>

MR_EXTERN_C_BEGIN

typedef struct mr_chan mr_chan_t;

/* capacity for a channel without a bound */
#define MR_CHAN_UNBOUNDED ((size_t)-1)
/* largest element */
#define MR_CHAN_ELEM_MAX ((size_t)64 * 1024)
/* largest bounded capacity */
#define MR_CHAN_CAPACITY_MAX ((size_t)1 << 32)

/*
 * Create a channel for elements of elem_size bytes. flags must be 0.
 * Returns NULL with errno EINVAL (elem_size 0 or > MR_CHAN_ELEM_MAX,
 * capacity > MR_CHAN_CAPACITY_MAX and not MR_CHAN_UNBOUNDED, unknown flags)
 * or ENOMEM.
 */
MR_API mr_chan_t *mr_chan_create(size_t elem_size, size_t capacity, unsigned flags);

/*
 * Free the channel and any elements still queued. Destroying a channel that
 * a fiber or thread is waiting on (send, recv or select) aborts naming the
 * call. NULL is ignored.
 */
MR_API void mr_chan_destroy(mr_chan_t *ch);

/*
 * Block until the element is queued (0) or the channel is closed (-EPIPE).
 * An unbounded channel never blocks, but must allocate a segment every so
 * many elements.
 * ERRORS: -EPIPE closed (the element was not sent); -EINVAL NULL ch or
 * elem; -ENOMEM (unbounded only) no memory for a new segment, nothing sent.
 */
MR_API int mr_chan_send(mr_chan_t *ch, const void *elem);
/*
 * Block until an element is copied into *elem (0) or the channel is closed
 * and empty (-EPIPE).
 * ERRORS: -EPIPE closed and drained; -EINVAL NULL ch or elem.
 */
MR_API int mr_chan_recv(mr_chan_t *ch, void *elem);

/*
 * Never block: -EAGAIN when the operation cannot complete now. A rendezvous
 * try_send succeeds only if a receiver is waiting, try_recv only if a
 * sender is.
 * ERRORS: -EAGAIN would block; -EPIPE closed (try_recv: closed and
 * drained); -EINVAL NULL ch or elem; -ENOMEM try_send on an unbounded
 * channel without memory for a new segment.
 */
MR_API int mr_chan_try_send(mr_chan_t *ch, const void *elem);
MR_API int mr_chan_try_recv(mr_chan_t *ch, void *elem);

/*
 * Block until done or the deadline passes (-ETIMEDOUT): mr_chan_send and
 * mr_chan_recv with a deadline (common.h: a negative one is none, a passed
 * one does not wait). A ready operation completes even when the deadline
 * has passed.
 * ERRORS: -ETIMEDOUT the deadline passed first, nothing done; -EPIPE,
 * -EINVAL and (send on an unbounded channel) -ENOMEM as for send / recv.
 */
MR_API int mr_chan_send_until(mr_chan_t *ch, const void *elem, int64_t deadline_ns);
MR_API int mr_chan_recv_until(mr_chan_t *ch, void *elem, int64_t deadline_ns);

/*
 * Close: wakes every waiter (see above). Never blocks.
 * ERRORS: -EPIPE already closed; -EINVAL NULL ch.
 */
MR_API int mr_chan_close(mr_chan_t *ch);

/* Monitoring; never blocks, NULL gives 0 (false). len: elements queued (0
 * for rendezvous), a snapshot. capacity: as created (MR_CHAN_UNBOUNDED, or
 * 0 for rendezvous). */
MR_API size_t mr_chan_len(const mr_chan_t *ch);
MR_API size_t mr_chan_capacity(const mr_chan_t *ch);
MR_API size_t mr_chan_elem_size(const mr_chan_t *ch);
MR_API bool mr_chan_is_closed(const mr_chan_t *ch);

/* ---- select ------------------------------------------------------------------ */

enum mr_select_op {
	MR_SELECT_SKIP = 0, /* an unused case (also: chan == NULL) */
	MR_SELECT_SEND = 1, /* send *elem */
	MR_SELECT_RECV = 2, /* receive into *elem */
};

struct mr_select_case {
	mr_chan_t *chan;
	int op;		  /* enum mr_select_op */
	void *elem;	  /* send: the element; recv: where it goes */
	int result;	  /* out, for the chosen case: 0 or -EPIPE (closed) */
};

/* deadline_ns for mr_select() that waits forever / never waits */
#define MR_SELECT_FOREVER ((int64_t)-1)
#define MR_SELECT_POLL ((int64_t)0)

/*
 * Wait until one of the cases can complete, complete exactly that one, and
 * return its index; its `result` is 0, or -EPIPE when its channel is closed
 * (a receive on a closed, drained channel, or any send on a closed channel:
 * both count as ready). When several cases are ready one is picked at
 * random, so none starves.
 *
 * deadline_ns: MR_SELECT_FOREVER (or any negative value: no deadline), a
 * CLOCK_MONOTONIC deadline (-ETIMEDOUT when it passes; one already passed
 * does not wait, but a ready case still completes), or MR_SELECT_POLL (0),
 * the "default" case: -EAGAIN at once when no case is ready. n == 0 (or
 * all cases skipped) waits until the deadline (-ETIMEDOUT; without a
 * deadline it could never return: -EINVAL). Blocks (fiber or thread)
 * unless polling.
 * ERRORS: -EAGAIN MR_SELECT_POLL and nothing ready; -ETIMEDOUT the
 * deadline passed, nothing done; -EINVAL cases NULL with n > 0, n >
 * MR_SELECT_MAX, an unknown op, a NULL elem, or nothing to wait for
 * without a deadline; -ENOMEM the chosen case was a send on an unbounded
 * channel without memory for a new segment (nothing sent). A closed
 * channel is not an error of the call: its case is chosen with result
 * -EPIPE.
 */
MR_API int mr_select(struct mr_select_case *cases, size_t n, int64_t deadline_ns);

#define MR_SELECT_MAX 64

MR_EXTERN_C_END

#endif /* MOIRAI_CHAN_H */
