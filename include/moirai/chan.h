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

/* ---- channels by address: inproc:// and shm:// ------------------------------- */

/*
 * mr_chan_open(url, opts) opens a channel by address; what it returns is an
 * ordinary channel: every call above (select included, mixing addressed and
 * plain channels) works on it, from fibers (they park) and threads.
 *
 *	inproc://NAME   a channel of this process registered under NAME. Every
 *	                open of one name returns the same handle and takes a
 *	                reference; mr_chan_destroy() drops one, the last frees
 *	                it. The name goes with the last reference or with
 *	                mr_chan_unlink(). Any capacity (a ring, unbounded,
 *	                rendezvous), like mr_chan_create().
 *	shm://NAME      a bounded ring in a POSIX shared-memory segment
 *	                (/dev/shm/moirai.NAME), shared by every process that
 *	                opens it. Each open is an attachment of its own. Capacity
 *	                1 .. MR_CHAN_CAPACITY_MAX, elements 1 byte ..
 *	                MR_CHAN_SHM_ELEM_MAX (rendezvous and unbounded: -EINVAL).
 *	tcp://...       reserved: EPROTONOSUPPORT until the transport exists.
 *
 * NAME: 1 .. MR_CHAN_NAME_MAX bytes of letters, digits, '.', '_' and '-'
 * (no '/', not "." or ".."); anything else is EINVAL.
 *
 * Creating and attaching (opts->flags): MR_CHAN_CREATE creates the channel
 * when the name is free and attaches to it otherwise; with MR_CHAN_EXCL as
 * well, an existing name is EEXIST; without MR_CHAN_CREATE, a missing name
 * is ENOENT. A creator gives elem_size and capacity (elem_align, mode
 * optional); an attacher may give them (then they must match: EPROTOTYPE
 * otherwise, never a misread) or leave them 0 to accept the channel's.
 *
 * Sides (shm): MR_CHAN_SEND and MR_CHAN_RECV say which calls this handle
 * makes; neither means both. A send on a MR_CHAN_RECV-only handle (or a
 * receive on a MR_CHAN_SEND-only one) is -EBADF. The sides matter when a
 * process dies (below).
 *
 * The segment. It is created with no permissions, initialised, its layout
 * version published last, and only then given opts->mode (default 0600):
 * another uid is refused by the kernel (EACCES), and an opener that meets
 * a segment being initialised waits for it (up to opts->timeout_ns, default
 * 1 s; then ETIMEDOUT if its creator lives, and when the creator died the
 * half-made segment is removed and, with MR_CHAN_CREATE, made anew). The
 * header (magic, version, element size and alignment, capacity, offsets of
 * every region, creator's uid) is validated on attach (EBADMSG when it is
 * not a Moirai channel of this version). MR_CHAN_CREATE on a name whose
 * segment belongs to another uid is EACCES (nobody can squat a name to
 * read what we send); a plain attach goes by the permission bits. The
 * mapping is treated as hostile afterwards: a corrupted or malicious peer
 * can make calls fail with -EPROTO, never make this process read or write
 * outside the mapping or spin for ever. (A peer can still truncate the
 * file, which makes our next access to it a SIGBUS: the kernel offers no
 * seal for POSIX shared memory; a process of the same uid can kill us
 * anyway.)
 *
 * Memory: the segment is a few pages of header and attachments, then
 * capacity slots of 8 + elem_size bytes (rounded up to 8) for elements up
 * to 56 bytes, else an 8-byte word per slot and elem_size rounded up to
 * elem_align (at least 8) per slot. It is allocated in full when created
 * (posix_fallocate: a full /dev/shm is ENOSPC then, never a SIGBUS in a
 * later send), so size the capacity for what you send.
 *
 * Closing and names. mr_chan_close() on any attachment closes the channel
 * for every process (as above: sends -EPIPE, receivers drain then -EPIPE).
 * mr_chan_destroy() detaches this handle (it aborts, as for any channel, if
 * a fiber or thread of this process waits on it, and if a loan or a borrow
 * of this handle is outstanding); the creator's destroy also removes the
 * name (the segment lives on until its last attachment goes), as does
 * mr_chan_unlink(). A process must not use a handle inherited through
 * fork(); the child opens its own.
 *
 * A process that dies (any way, kill -9 included) is detached by the
 * processes that remain, found through pidfds, with no heartbeat:
 *   - a slot it was writing (a loan, or a send caught mid-copy) is skipped:
 *     no receiver ever sees a torn element, and the ring never wedges;
 *   - an element it was reading (a borrow, or a receive that had not
 *     returned) is delivered again, to another receiver;
 *   - when every attachment on the other side of a handle is gone and at
 *     least one of them died (rather than detached), calls on this side
 *     fail with -ECONNRESET: sends at once, receives once the elements
 *     already sent are drained; blocked ones wake (within milliseconds of
 *     the death). A new attachment on that side ends the state. A handle
 *     open for both sides is on the other side of itself, so it never
 *     sees -ECONNRESET.
 * All processes sharing a channel must see each other's pids (one pid
 * namespace).
 *
 * ERRORS (NULL, errno): EINVAL bad url, name or opts (flags unknown,
 * elem_align not a power of two up to 4096, sizes out of range, a creator
 * without elem_size); EPROTONOSUPPORT tcp://; ENOENT, EEXIST, EPROTOTYPE,
 * EACCES, EBADMSG, ETIMEDOUT as above; EUSERS the segment has
 * MR_CHAN_SHM_ATTACH_MAX attachments already; ENOMEM, EMFILE, ENOSPC from
 * the system.
 */
struct mr_chan_open_opts {
	size_t sz;	   /* MR_OPTS sets it */
	size_t elem_size;  /* create: required; attach: 0 or the channel's */
	size_t capacity;   /* as for mr_chan_create(); attach: 0 or the channel's */
	size_t elem_align; /* shm: alignment of each element in the segment, 0: 8 */
	unsigned flags;	   /* MR_CHAN_CREATE, MR_CHAN_EXCL, MR_CHAN_SEND, MR_CHAN_RECV */
	unsigned mode;	   /* shm create: permission bits, 0: 0600 */
	int64_t timeout_ns; /* shm: wait for a creator's initialisation, 0: 1 s */
};

#define MR_CHAN_CREATE 1u
#define MR_CHAN_EXCL 2u
#define MR_CHAN_SEND 4u
#define MR_CHAN_RECV 8u

#define MR_CHAN_NAME_MAX 200
#define MR_CHAN_SHM_ELEM_MAX ((size_t)1 << 30)
#define MR_CHAN_SHM_ATTACH_MAX 64

/* opts may be NULL only to attach (flags 0: both sides, accept the
 * channel's sizes). */
MR_API mr_chan_t *mr_chan_open(const char *url, const struct mr_chan_open_opts *opts);

/*
 * Remove the name; handles keep working, a later open of the name makes or
 * finds another channel.
 * ERRORS: -EINVAL bad url; -EPROTONOSUPPORT tcp://; -ENOENT no such name;
 * -EACCES (shm) not allowed.
 */
MR_API int mr_chan_unlink(const char *url);

/* ---- zero copy (shm) --------------------------------------------------------- */

/*
 * Loans and borrows: pass an element without copying it. A sender loans
 * the next slot of the ring, writes the element in place and commits it
 * (or discards it: the slot is skipped); a receiver borrows the next
 * element, reads it in place and releases it. A 1 MiB element then costs
 * what an 8-byte one does. The pointer is into the shared segment,
 * aligned to the channel's elem_align; it is valid until commit / discard
 * / release. Slots are taken in order: while a loan is open, receivers
 * wait at that slot for it (elements loaned after it may be committed, and
 * are received after it), and while a borrow is open, its slot is not
 * free for senders. Hold them briefly, and commit / release each one. One
 * handle may hold several.
 *
 * Blocking like send / recv (the _until forms take a deadline, the try
 * forms never wait), with the same results: -EPIPE, -ECONNRESET,
 * -ETIMEDOUT, -EAGAIN, -ECANCELED. In-process channels hold elements by
 * value (send a pointer to pass something big without a copy): on them
 * these calls are -EOPNOTSUPP.
 * ERRORS (also): -EINVAL NULL ch or out pointer, or (commit, discard,
 * release) a pointer that is not one of this handle's open loans /
 * borrows; -EBADF the handle's side (above).
 */
MR_API int mr_chan_loan(mr_chan_t *ch, void **slot);
MR_API int mr_chan_loan_until(mr_chan_t *ch, void **slot, int64_t deadline_ns);
MR_API int mr_chan_try_loan(mr_chan_t *ch, void **slot);
MR_API int mr_chan_commit(mr_chan_t *ch, void *slot);
MR_API int mr_chan_discard(mr_chan_t *ch, void *slot);
MR_API int mr_chan_borrow(mr_chan_t *ch, const void **elem);
MR_API int mr_chan_borrow_until(mr_chan_t *ch, const void **elem, int64_t deadline_ns);
MR_API int mr_chan_try_borrow(mr_chan_t *ch, const void **elem);
MR_API int mr_chan_release(mr_chan_t *ch, const void *elem);

MR_EXTERN_C_END

#endif /* MOIRAI_CHAN_H */
