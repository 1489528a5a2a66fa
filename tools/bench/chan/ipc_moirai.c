/*
 * ipc_moirai.c - Moirai's shm:// channels between two processes, the
 * subject of the cross-process benchmark (ipc.sh). Plain threads (the main
 * thread of each process), no runtime:
 *   moirai            mr_chan_send / mr_chan_recv: the element is copied in
 *                     and out; a blocked call spins a little, then sleeps
 *                     on a futex in the segment
 *   moirai-spin       mr_chan_try_send / mr_chan_try_recv polled in a loop
 *                     (ipc_spin: pause, sched_yield every 256th try): no
 *                     sleeping, no wake-up to pay for
 *   moirai-loan       zero copy: the sender mr_chan_loan()s a slot, writes
 *                     the message in place and commits it; the receiver
 *                     mr_chan_borrow()s it, checks it in place and
 *                     releases it; blocking
 *   moirai-loan-spin  the same with mr_chan_try_loan / mr_chan_try_borrow
 *                     polled in a loop
 * One channel carries A to B (shm://moirai-ipc-PID-ab) and, for round
 * trips, a second one B to A (...-ba). A creates them before the fork
 * (MR_CHAN_EXCL, with the side it uses; a child does not use the handles
 * it inherits, chan.h) and B attaches after it, giving the sizes it
 * expects; A's destroy at the end removes the names. Capacity 1024 for
 * 8-byte messages; for bigger ones as many as fit in 16 MiB (64 KiB: 256,
 * 1 MiB: 16), at least 16, each aligned to 64 bytes. When the library
 * declares shm:// but mr_chan_open answers EPROTONOSUPPORT (or ENOSYS), A
 * prints SKIP and exits 77, and ipc.sh shows n/a. See ipc.h for the
 * command line, the messages, the checks and the output.
 */
#include "ipc.h"

#include <moirai/moirai.h>

#define RING_BYTES ((size_t)16 << 20) /* what a ring of big messages may take */

static size_t bytes, capacity;
static void *buf;
static mr_chan_t *out, *in; /* this side's: out sends, in receives (either may be NULL) */
static char url[2][96];	    /* [0]: A to B, [1]: B to A */

static void mcheck(int rc, const char *what)
{
	if (rc != 0)
		ipc_failf(-rc, "%s", what);
}

/* Create (A, before the fork) or attach to (B) channel u: flags as for mr_chan_open. */
static mr_chan_t *open_chan(const char *u, unsigned flags)
{
	MR_OPTS(mr_chan_open_opts, o, .elem_size = bytes, .capacity = capacity,
		.elem_align = bytes > 8 ? 64 : 0, .flags = flags);
	mr_chan_t *ch = mr_chan_open(u, &o);
	if (!ch && (flags & MR_CHAN_CREATE) && (errno == EPROTONOSUPPORT || errno == ENOSYS)) {
		/* a library that declares shm:// but cannot do it yet: skip, not fail */
		printf("SKIP %s: this libmoirai has no shm:// channels (%s)\n", ipc_a->impl,
		       strerror(errno));
		exit(77);
	}
	if (!ch)
		ipc_failf(errno, "mr_chan_open(%s)", u);
	return ch;
}

static void moirai_prepare(const struct ipc_args *a)
{
	unsigned create = MR_CHAN_CREATE | MR_CHAN_EXCL;
	bytes = a->bytes;
	capacity = CB_QUEUE_CAP;
	if (bytes > 8) {
		capacity = RING_BYTES / bytes;
		capacity = capacity < 16 ? 16 : capacity > CB_QUEUE_CAP ? CB_QUEUE_CAP : capacity;
	}
	buf = ipc_buffer(bytes);
	snprintf(url[0], sizeof url[0], "shm://moirai-ipc-%d-ab", (int)a->parent);
	snprintf(url[1], sizeof url[1], "shm://moirai-ipc-%d-ba", (int)a->parent);
	out = open_chan(url[0], create | MR_CHAN_SEND);
	in = a->rtt ? open_chan(url[1], create | MR_CHAN_RECV) : NULL;
}

static void moirai_open(const struct ipc_args *a)
{
	if (a->side == IPC_A)
		return; /* made before the fork */
	in = open_chan(url[0], MR_CHAN_RECV);
	out = a->rtt ? open_chan(url[1], MR_CHAN_SEND) : NULL;
}

static void copy_put(uint64_t seq)
{
	ipc_fill(buf, bytes, seq);
	mcheck(mr_chan_send(out, buf), "mr_chan_send");
}

static void copy_get(uint64_t seq)
{
	mcheck(mr_chan_recv(in, buf), "mr_chan_recv");
	ipc_check(buf, bytes, seq);
}

static void spin_put(uint64_t seq)
{
	unsigned spins = 0;
	int rc;
	ipc_fill(buf, bytes, seq);
	while ((rc = mr_chan_try_send(out, buf)) == -EAGAIN)
		ipc_spin(&spins);
	mcheck(rc, "mr_chan_try_send");
}

static void spin_get(uint64_t seq)
{
	unsigned spins = 0;
	int rc;
	while ((rc = mr_chan_try_recv(in, buf)) == -EAGAIN)
		ipc_spin(&spins);
	mcheck(rc, "mr_chan_try_recv");
	ipc_check(buf, bytes, seq);
}

static void loan_put(uint64_t seq)
{
	void *slot;
	mcheck(mr_chan_loan(out, &slot), "mr_chan_loan");
	ipc_fill(slot, bytes, seq);
	mcheck(mr_chan_commit(out, slot), "mr_chan_commit");
}

static void loan_get(uint64_t seq)
{
	const void *elem;
	mcheck(mr_chan_borrow(in, &elem), "mr_chan_borrow");
	ipc_check(elem, bytes, seq);
	mcheck(mr_chan_release(in, elem), "mr_chan_release");
}

static void loan_spin_put(uint64_t seq)
{
	unsigned spins = 0;
	void *slot;
	int rc;
	while ((rc = mr_chan_try_loan(out, &slot)) == -EAGAIN)
		ipc_spin(&spins);
	mcheck(rc, "mr_chan_try_loan");
	ipc_fill(slot, bytes, seq);
	mcheck(mr_chan_commit(out, slot), "mr_chan_commit");
}

static void loan_spin_get(uint64_t seq)
{
	unsigned spins = 0;
	const void *elem;
	int rc;
	while ((rc = mr_chan_try_borrow(in, &elem)) == -EAGAIN)
		ipc_spin(&spins);
	mcheck(rc, "mr_chan_try_borrow");
	ipc_check(elem, bytes, seq);
	mcheck(mr_chan_release(in, elem), "mr_chan_release");
}

static void moirai_close(void)
{
	mr_chan_destroy(out);
	mr_chan_destroy(in);
	free(buf);
}

/* In A: remove the names (at the end A's destroy did; not when A fails). */
static void moirai_cleanup(void)
{
	mr_chan_unlink(url[0]);
	mr_chan_unlink(url[1]);
}

static const struct ipc_impl impl_copy = { "moirai", moirai_prepare, moirai_open, copy_put,
					   copy_get, moirai_close, moirai_cleanup };
static const struct ipc_impl impl_spin = { "moirai-spin", moirai_prepare, moirai_open, spin_put,
					   spin_get, moirai_close, moirai_cleanup };
static const struct ipc_impl impl_loan = { "moirai-loan", moirai_prepare, moirai_open, loan_put,
					   loan_get, moirai_close, moirai_cleanup };
static const struct ipc_impl impl_loan_spin = { "moirai-loan-spin", moirai_prepare, moirai_open,
						loan_spin_put, loan_spin_get, moirai_close,
						moirai_cleanup };

int main(int argc, char **argv)
{
	static const struct ipc_impl *const impls[] = { &impl_copy, &impl_spin, &impl_loan,
							&impl_loan_spin, NULL };
	return ipc_main(argc, argv, impls);
}
