/*
 * epoll.c - the readiness backend, for kernels or sandboxes that refuse
 * io_uring (or MOIRAI_IO=epoll): one epoll instance per worker, touched
 * only by that worker's thread.
 *
 * A fiber's call tries the operation at once without blocking: sends and
 * receives with MSG_DONTWAIT, everything else on an fd that the first such
 * call set O_NONBLOCK (a fcntl(F_GETFL) per call tells; an fd that was not
 * yet is fstat'ed: a regular file, directory or block device is left
 * alone). When the kernel answers EAGAIN, the fiber puts a waiter (on its
 * stack) in its worker's table of fds, arms the fd in the worker's epoll
 * and parks; the worker readies it when the fd is ready, and the fiber
 * tries again, on whatever worker it then runs on. Calls that only regular
 * files make (openat, statx, fsync, pread, pwrite) and calls on regular
 * files run on the blocking pool.
 *
 * The table maps an fd to the list of this worker's fibers that wait on it
 * (a reader and a writer, or several of each). Each wait re-arms the fd
 * with EPOLL_CTL_MOD | EPOLLONESHOT for the union of the events its
 * waiters want, and with EPOLL_CTL_ADD when MOD says ENOENT: the first
 * wait, or an fd closed with close(2) whose number now names another file
 * (closing it dropped its registration, or the registration is the old
 * file's, which a dup keeps open). One shot: an event disarms the fd, the
 * worker readies every waiter the event concerns (EPOLLERR and EPOLLHUP
 * concern all of them), and re-arms the fd for those left. A waiter
 * readied for nothing (another fiber took the data first, the old file of
 * a reused number fired) just tries again. Registrations are never
 * deleted: close(2) deletes them, and a disarmed one costs nothing.
 *
 * Deadlines are the worker's own: a min-heap of the waiters that have
 * one, expired by poll() and wait() (so on the owner thread, where the
 * waiter lives; a fiber waiting in epoll is bound to its worker anyway).
 * An expired waiter is taken off its fd and readied with nothing: the call
 * returns -ETIMEDOUT, having done nothing (the operation is only attempted
 * when the fd is ready). A connect that times out is aborted with
 * connect(AF_UNSPEC).
 *
 * The worker loop calls poll() (epoll_wait with no timeout, only when the
 * worker has waiters) when its deque runs dry and every MR__IO_INTERVAL
 * jobs, and sleeps in wait(): epoll_pwait2 until the earlier of its park
 * deadline and its nearest I/O deadline (epoll_wait in milliseconds,
 * rounded up, where epoll_pwait2 is missing or refused). Wakers reach it
 * through an eventfd in the same epoll, written only when the worker says
 * it sleeps there (the Dekker pair of uring.c: its store of `sleeping`,
 * fence, load of the park word, against the waker's store of the token,
 * fence, load of `sleeping`). The state is freed when the runtime is
 * (fini), not when the worker exits: a waker may still be in wake().
 *
 * Hand-off: epoll_wait on another thread's epoll instance is legal, so a
 * worker that finds the owner stuck in one job (runtime.c io_handoff())
 * polls it with rescue(): it takes the events into its own buffer, and
 * readies the waiters (onto its own deque), expires deadlines and takes
 * cancels as the owner would. The table, the heap and the lists are then
 * shared: `lock` guards them. The owner takes it to queue a waiter and
 * keeps it across its park, released in the park's commit once the fiber
 * has switched out (an event may fire as soon as the fd is armed, and a
 * helper must not ready a fiber that has not parked yet); it takes it in
 * poll() with a try (a helper holding it polls for us) and in wait() after
 * epoll_wait, around its events (ep->evs is the owner's: a helper uses a
 * buffer on its stack). A helper leaves the eventfd alone (level
 * triggered, it stays readable for the owner).
 *
 * When it behaves badly:
 *  - A waker reads `sleeping` after it stored the token (wake()): a waker
 *    from outside the worker's runtime racing that runtime's destroy can
 *    read freed memory (as on io_uring's eventfd path, uring.c).
 *  - Two system calls per wait at least (the try, the re-arm) and a
 *    fcntl per read, write or accept: more than io_uring, which batches.
 *  - Readers of one fd on several workers all wake for one datagram or
 *    connection (each worker's epoll reports it); all but one try again.
 *  - A fiber waiting on an fd that is closed (mr_close or close(2)) waits
 *    until the number names another file that gets ready, or for ever (as
 *    with io_uring): shut a socket down to wake its waiters.
 *  - O_NONBLOCK stays set on sockets, pipes and terminals (io.h), which
 *    other processes sharing the file see too; a regular file opened
 *    O_NONBLOCK by its user is read on the worker's thread.
 *  - A worker busy in one long job does not look at its epoll until the
 *    job returns, unless another worker of the runtime does it for it
 *    (hand-off, below): about mr__io_handoff_ns after the owner's last
 *    poll.
 *  - connect() on a Unix socket whose listener's backlog is full gives
 *    EAGAIN, and nothing says when there is room: the fiber sleeps and
 *    tries again (after 50 us, doubling up to 10 ms), so it may connect
 *    up to that late.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <moirai/fiber.h>

#include "backend.h"
#include "io.h"

#ifndef __NR_epoll_pwait2
#define __NR_epoll_pwait2 441 /* the same on every architecture */
#endif

#define NEVENTS 64
#define EFD_DATA UINT64_MAX /* epoll_event.data of the eventfd; fds are below */
#define NO_HEAP UINT32_MAX
#define WAIT_EVENTS                                                                                \
	(EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLRDNORM | EPOLLRDBAND | EPOLLWRNORM | EPOLLWRBAND |    \
	 EPOLLMSG | EPOLLRDHUP)

/* One fiber waiting for an fd: on the fiber's stack while it is parked. */
struct waiter {
	struct mr_fiber *fiber;
	struct waiter *next, *prev; /* the fd's waiters */
	int fd;
	uint32_t events;  /* what it waits for (EPOLLIN, EPOLLOUT, ...) */
	uint32_t revents; /* the event that readied it; 0: the deadline passed */
	int64_t deadline; /* -1: none */
	uint32_t hidx;	  /* position in the deadline heap, or NO_HEAP */
	struct waiter *all_next, *all_prev; /* ep->all */
	struct mr__worker *w;
	struct mr__cancel_hook cancel;
	_Atomic uint32_t cancel_req; /* mr_fiber_cancel() asked (wait_cancel()) */
	bool cancelled;		     /* readied for a cancel */
};

struct ep {
	int epfd;
	int efd;		   /* wakers write it while we sleep */
	_Atomic uint32_t sleeping; /* in epoll_pwait2 (wait()) */
	struct waiter **fds;	   /* fd -> its waiters' list, nfds long */
	size_t nfds;
	struct waiter **heap; /* waiters with a deadline, nearest first */
	uint32_t hn, hcap;
	uint32_t nwaiters;
	struct waiter *all; /* every waiter, for cancels */
	/* Held to touch fds, heap, all and nwaiters (see hand-off above).
	 * A leaf but for readying fibers and epoll_ctl. */
	_Atomic uint32_t lock;
	/* Cancel requests for waiters of this worker: the canceller marks
	 * the waiter and counts here; the owner readies them. */
	_Atomic uint32_t ncancel;
	struct epoll_event evs[NEVENTS];
};

/* 1: epoll_pwait2 works; -1: it does not (ENOSYS, or a seccomp filter
 * that predates it: EPERM); 0: not tried. Relaxed: any answer is right. */
static _Atomic int has_pwait2;

/* ---- the deadline heap -------------------------------------------------------- */

static void heap_set(struct ep *ep, uint32_t i, struct waiter *wt)
{
	ep->heap[i] = wt;
	wt->hidx = i;
}

static void heap_up(struct ep *ep, uint32_t i)
{
	struct waiter *wt = ep->heap[i];

	while (i > 0) {
		uint32_t p = (i - 1) / 2;
		if (ep->heap[p]->deadline <= wt->deadline)
			break;
		heap_set(ep, i, ep->heap[p]);
		i = p;
	}
	heap_set(ep, i, wt);
}

static void heap_down(struct ep *ep, uint32_t i)
{
	struct waiter *wt = ep->heap[i];

	for (;;) {
		uint32_t c = 2 * i + 1;
		if (c >= ep->hn)
			break;
		if (c + 1 < ep->hn && ep->heap[c + 1]->deadline < ep->heap[c]->deadline)
			c++;
		if (wt->deadline <= ep->heap[c]->deadline)
			break;
		heap_set(ep, i, ep->heap[c]);
		i = c;
	}
	heap_set(ep, i, wt);
}

static int heap_push(struct ep *ep, struct waiter *wt)
{
	if (ep->hn == ep->hcap) {
		uint32_t cap = ep->hcap ? 2 * ep->hcap : 16;
		struct waiter **h = realloc(ep->heap, cap * sizeof(*h));
		if (!h)
			return -ENOMEM;
		ep->heap = h;
		ep->hcap = cap;
	}
	ep->heap[ep->hn] = wt;
	heap_up(ep, ep->hn++);
	return 0;
}

static void heap_remove(struct ep *ep, struct waiter *wt)
{
	uint32_t i = wt->hidx;

	if (i == NO_HEAP)
		return;
	wt->hidx = NO_HEAP;
	if (i == --ep->hn)
		return;
	heap_set(ep, i, ep->heap[ep->hn]);
	heap_down(ep, i);
	heap_up(ep, ep->heap[i]->hidx);
}

/* ---- the fd table --------------------------------------------------------------- */

static int table_fit(struct ep *ep, int fd)
{
	if ((size_t)fd < ep->nfds)
		return 0;
	size_t n = ep->nfds ? ep->nfds : 64;
	while (n <= (size_t)fd)
		n *= 2;
	struct waiter **t = realloc(ep->fds, n * sizeof(*t));
	if (!t)
		return -ENOMEM;
	memset(t + ep->nfds, 0, (n - ep->nfds) * sizeof(*t));
	ep->fds = t;
	ep->nfds = n;
	return 0;
}

static void set_inflight(struct mr__worker *w, struct ep *ep)
{
	/* relaxed: a hint for destroy (drain_state()), read after nasleep. */
	atomic_store_explicit(&w->io_inflight, ep->nwaiters, memory_order_relaxed);
}

/* From wait(): raise the count, never lower it (see raise_inflight() in
 * uring.c: a fiber readied while the worker still counts as asleep is on
 * its private deque, which destroy cannot see). */
static void raise_inflight(struct mr__worker *w, struct ep *ep)
{
	if (ep->nwaiters > atomic_load_explicit(&w->io_inflight, memory_order_relaxed))
		set_inflight(w, ep);
}

static void unlink_waiter(struct ep *ep, struct waiter *wt)
{
	if (wt->prev)
		wt->prev->next = wt->next;
	else
		ep->fds[wt->fd] = wt->next;
	if (wt->next)
		wt->next->prev = wt->prev;
	if (wt->all_prev)
		wt->all_prev->all_next = wt->all_next;
	else
		ep->all = wt->all_next;
	if (wt->all_next)
		wt->all_next->all_prev = wt->all_prev;
	heap_remove(ep, wt);
	ep->nwaiters--;
}

/* Take wt off its fd and ready its fiber with revents (0: timed out).
 * The fiber's stack holds wt: once readied, it may run on a thief and
 * return, so wt is not touched after. With ep->lock held. */
static void ready(struct ep *ep, struct waiter *wt, uint32_t revents)
{
	struct mr_fiber *f = wt->fiber;
	struct mr__worker *self = mr__self();

	unlink_waiter(ep, wt);
	wt->revents = revents;
	/* The counters are their worker's to write: ours, if we help. */
	MR__STAT_ADD(self ? self->st : wt->w->st, io_completed, 1);
	MR_PROBE3(io_complete, wt->w->idx, f, revents);
	mr__fiber_ready_io(f, (int64_t)mr__now_ns());
}

/* Arm fd, one shot, for what its waiters want. 0 or -errno. */
static int arm(struct ep *ep, int fd)
{
	struct epoll_event ev = {.events = EPOLLONESHOT, .data.u64 = (uint64_t)fd};

	for (struct waiter *wt = ep->fds[fd]; wt; wt = wt->next)
		ev.events |= wt->events;
	if (epoll_ctl(ep->epfd, EPOLL_CTL_MOD, fd, &ev) == 0)
		return 0;
	/* ENOENT: never added, or the number names another file now. */
	if (errno == ENOENT && epoll_ctl(ep->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
		return 0;
	return -errno;
}

/* fd is ready for `got`: ready its waiters that this concerns, re-arm it
 * for the others. Returns how many it readied. */
static unsigned fd_event(struct ep *ep, int fd, uint32_t got)
{
	unsigned readied = 0;

	if (fd < 0 || (size_t)fd >= ep->nfds)
		return 0;
	for (struct waiter *wt = ep->fds[fd], *next; wt; wt = next) {
		next = wt->next;
		if (got & (wt->events | EPOLLERR | EPOLLHUP)) {
			ready(ep, wt, got);
			readied++;
		}
	}
	if (ep->fds[fd] && arm(ep, fd) < 0) {
		/* Closed under them (EBADF): let them try and see. */
		while (ep->fds[fd]) {
			ready(ep, ep->fds[fd], EPOLLERR);
			readied++;
		}
	}
	return readied;
}

/* Ready the waiters whose deadline has passed. */
static unsigned expire(struct ep *ep)
{
	unsigned readied = 0;

	if (!ep->hn)
		return 0;
	int64_t now = (int64_t)mr__now_ns();
	while (ep->hn && ep->heap[0]->deadline <= now) {
		ready(ep, ep->heap[0], 0);
		readied++;
	}
	return readied;
}

/* The n events in evs (the owner's ep->evs, or a helper's, which leaves
 * the eventfd to the owner). With ep->lock held. */
static unsigned take_events(struct ep *ep, const struct epoll_event *evs, int n, bool owner)
{
	unsigned readied = 0;

	for (int i = 0; i < n; i++) {
		if (evs[i].data.u64 == EFD_DATA) {
			uint64_t v;
			if (!owner)
				continue;
			ssize_t r = read(ep->efd, &v, sizeof(v));
			(void)r; /* EAGAIN: drained already */
			continue;
		}
		readied += fd_event(ep, (int)evs[i].data.u64, evs[i].events);
	}
	return readied;
}

/*
 * mr_fiber_cancel() of a fiber waiting here (or about to: the hook is
 * armed before the waiter is queued). Mark it and wake the owner, which
 * readies it (take_cancels(), by the owner or a helper's rescue under the
 * table's lock; wait_fd() looks at cancel_req once queued, for a request a
 * rescue took before it was).
 */
static void wait_cancel(struct mr__cancel_hook *h)
{
	struct waiter *wt = (struct waiter *)((char *)h - offsetof(struct waiter, cancel));
	struct mr__worker *w = wt->w;
	struct ep *ep = w->io;

	atomic_store_explicit(&wt->cancel_req, 1, memory_order_relaxed);
	/* seq_cst: against the owner's RMW of its idle bit before it reads
	 * ncancel (epoll_wait_op()): it sees the count, or we see it idle. */
	atomic_fetch_add_explicit(&ep->ncancel, 1, memory_order_seq_cst);
	mr__wake_worker(w, MR__TOK_LATCH);
}

/* Owner: ready the waiters asked to be cancelled (they did nothing yet). */
static unsigned take_cancels(struct ep *ep)
{
	unsigned readied = 0;

	if (!atomic_exchange_explicit(&ep->ncancel, 0, memory_order_seq_cst))
		return 0;
	for (struct waiter *wt = ep->all, *next; wt; wt = next) {
		next = wt->all_next;
		if (atomic_load_explicit(&wt->cancel_req, memory_order_relaxed)) {
			wt->cancelled = true;
			struct mr__worker *self = mr__self();
			MR__STAT_ADD(self ? self->st : wt->w->st, io_cancelled, 1);
			ready(ep, wt, 0);
			readied++;
		}
	}
	return readied;
}

/* ---- the worker's side (struct mr__io_ops) ------------------------------------ */

/* Cancels, events and deadlines, without waiting; readies fibers. With
 * ep->lock held; evs: where the events go (ep->evs for the owner). */
static unsigned poll_ep(struct ep *ep, struct epoll_event *evs, bool owner)
{
	unsigned readied = 0;

	if (unlikely(atomic_load_explicit(&ep->ncancel, memory_order_relaxed)))
		readied += take_cancels(ep);
	if (!ep->nwaiters)
		return readied;
	int n = epoll_wait(ep->epfd, evs, NEVENTS, 0);
	if (n > 0)
		readied += take_events(ep, evs, n, owner);
	return readied + expire(ep);
}

static inline void bump_polls(struct mr__worker *w)
{
	/* Owner only, relaxed: see poll_ring() in uring.c. */
	atomic_store_explicit(&w->io_polls, atomic_load_explicit(&w->io_polls, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

static bool epoll_poll(struct mr__worker *w)
{
	struct ep *ep = w->io;

	bump_polls(w);
	if (!mr__spin_trylock(&ep->lock))
		return false; /* a helper polls for us */
	unsigned readied = poll_ep(ep, ep->evs, true);
	set_inflight(w, ep);
	mr__spin_unlock(&ep->lock);
	return readied != 0;
}

/* Another worker `self` found w stuck in one job with waiters: poll w's
 * epoll for it (see hand-off above). True if it readied fibers. */
static bool epoll_rescue(struct mr__worker *w, struct mr__worker *self)
{
	struct ep *ep = w->io;
	struct epoll_event evs[NEVENTS];

	/* ready() puts them on the calling thread's worker: self (runtime.c
	 * io_handoff()), whose record is ours to write. */
	if (!mr__spin_trylock(&ep->lock))
		return false;
	unsigned readied = poll_ep(ep, evs, false);
	if (readied) {
		set_inflight(w, ep);
		MR__STAT_ADD(self->st, io_rescued, readied);
		atomic_fetch_add_explicit(&mr__test_io_rescued, readied, memory_order_relaxed);
	}
	mr__spin_unlock(&ep->lock);
	return readied != 0;
}

/* epoll_pwait2 until the deadline (-1: none), or epoll_wait where it is
 * missing. The count of events or -errno. */
static int ep_wait(struct ep *ep, int64_t deadline)
{
	int64_t d = -1;

	if (deadline >= 0) {
		d = deadline - (int64_t)mr__now_ns();
		if (d < 0)
			d = 0;
	}
	if (atomic_load_explicit(&has_pwait2, memory_order_relaxed) >= 0) {
		struct timespec ts = {.tv_sec = d / 1000000000, .tv_nsec = d % 1000000000};
		long n = syscall(__NR_epoll_pwait2, ep->epfd, ep->evs, NEVENTS, d < 0 ? NULL : &ts,
				 NULL, 0);
		if (n >= 0) {
			atomic_store_explicit(&has_pwait2, 1, memory_order_relaxed);
			return (int)n;
		}
		if ((errno != ENOSYS && errno != EPERM) ||
		    atomic_load_explicit(&has_pwait2, memory_order_relaxed) > 0)
			return -errno;
		atomic_store_explicit(&has_pwait2, -1, memory_order_relaxed);
	}
	/* Milliseconds, rounded up: never wake before the deadline. */
	int ms = -1;
	if (d >= 0)
		ms = d / 1000000 >= INT_MAX ? INT_MAX : (int)((d + 999999) / 1000000);
	int n = epoll_wait(ep->epfd, ep->evs, NEVENTS, ms);
	return n < 0 ? -errno : n;
}

static bool epoll_wait_op(struct mr__worker *w, int64_t deadline)
{
	struct ep *ep = w->io;

	bump_polls(w);
	/* seq_cst: see wait_cancel(). */
	if (atomic_load_explicit(&ep->ncancel, memory_order_seq_cst)) {
		mr__spin_lock(&ep->lock);
		unsigned n = take_cancels(ep);
		mr__spin_unlock(&ep->lock);
		if (n)
			return true; /* the count stays up until poll() */
	}
	/* seq_cst, and the fence: against the waker's token store, fence,
	 * load of `sleeping` (epoll_wake()), and against a claimer's store
	 * of hpark, fence, load of `sleeping` in the same wake (runtime.c
	 * help_claim()). */
	atomic_store_explicit(&ep->sleeping, 1, memory_order_seq_cst);
	mr__fence_seq_cst();
	if (atomic_load_explicit(&w->park, memory_order_relaxed) != MR__TOK_NONE ||
	    mr__help_claimed(w)) {
		atomic_store_explicit(&ep->sleeping, 0, memory_order_relaxed);
		mr__spin_lock(&ep->lock);
		unsigned readied = poll_ep(ep, ep->evs, true);
		raise_inflight(w, ep);
		mr__spin_unlock(&ep->lock);
		return readied != 0;
	}
	/* No later than the nearest I/O deadline: it readies a fiber. */
	mr__spin_lock(&ep->lock);
	if (ep->hn && (deadline < 0 || ep->heap[0]->deadline < deadline))
		deadline = ep->heap[0]->deadline;
	mr__spin_unlock(&ep->lock);
	int n = ep_wait(ep, deadline);
	atomic_store_explicit(&ep->sleeping, 0, memory_order_relaxed);
	if (n < 0 && n != -EINTR)
		mr__die("epoll_wait", "%s", strerror(-n));
	mr__spin_lock(&ep->lock);
	unsigned readied = n > 0 ? take_events(ep, ep->evs, n, true) : 0;
	readied += expire(ep);
	raise_inflight(w, ep);
	mr__spin_unlock(&ep->lock);
	return readied != 0;
}

static void epoll_wake(struct mr__worker *w)
{
	struct ep *ep = w->io;

	/* Pairs with the store of `sleeping` and fence in epoll_wait_op(). */
	mr__fence_seq_cst();
	if (atomic_load_explicit(&ep->sleeping, memory_order_seq_cst)) {
		uint64_t one = 1;
		ssize_t n = write(ep->efd, &one, sizeof(one));
		(void)n; /* an eventfd write fails only on overflow: it is awake */
	}
}

static void epoll_fini(struct mr__worker *w)
{
	struct ep *ep = w->io;

	atomic_store_explicit(&w->io_ops, NULL, memory_order_relaxed);
	close(ep->epfd);
	close(ep->efd);
	free(ep->fds);
	free(ep->heap);
	free(ep);
	w->io = NULL;
}

static const struct mr__io_ops ops = {
    .poll = epoll_poll,
    .wait = epoll_wait_op,
    .wake = epoll_wake,
    .fini = epoll_fini,
};

/* The same with the hand-off (unless MOIRAI_IO_HANDOFF=0, as for rings). */
static const struct mr__io_ops ops_handoff = {
    .poll = epoll_poll,
    .wait = epoll_wait_op,
    .wake = epoll_wake,
    .rescue = epoll_rescue,
    .fini = epoll_fini,
};

static int epoll_worker_init(struct mr__worker *w)
{
	struct ep *ep = calloc(1, sizeof(*ep));
	int err;

	if (!ep)
		return -ENOMEM;
	ep->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (ep->epfd < 0) {
		err = -errno;
		free(ep);
		return err;
	}
	ep->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EFD_DATA};
	if (ep->efd < 0 || epoll_ctl(ep->epfd, EPOLL_CTL_ADD, ep->efd, &ev) < 0) {
		err = -errno;
		if (ep->efd >= 0)
			close(ep->efd);
		close(ep->epfd);
		free(ep);
		return err;
	}
	w->io = ep;
	/* release: a waker that loads io_ops (give_token()) sees w->io. */
	MR__STAT_SET(w->st, io_backend, MR_IO_BACKEND_EPOLL);
	const char *ho = getenv("MOIRAI_IO_HANDOFF");
	atomic_store_explicit(&w->io_ops, ho && ho[0] == '0' ? &ops : &ops_handoff,
			      memory_order_release);
	return 0;
}

/* ---- the fiber's side ----------------------------------------------------------- */

static bool parked(void *arg)
{
	/* The fiber is off its stack: a helper may ready it from now on. */
	mr__spin_unlock(&((struct ep *)arg)->lock);
	return true;
}

/*
 * The calling fiber's worker, its epoll set up. noinline: the fiber may
 * resume on another thread after a park, and the worker is a thread-local
 * that a caller must read afresh then (see attempt() in io.c).
 */
static __attribute__((noinline)) int this_worker(struct mr__worker **out)
{
	struct mr__worker *w = mr__self();

	if (unlikely(!w->io)) {
		int err = epoll_worker_init(w);
		if (err)
			return err;
	}
	*out = w;
	return 0;
}

/* Park f until fd is ready for `events` (0 back) or the deadline passes
 * (-ETIMEDOUT). The caller tries its operation again after a 0: the fd
 * may not be ready any more (another fiber was first), or never was. */
static int wait_fd(struct mr_fiber *f, int fd, uint32_t events, int64_t deadline,
		   const char *call)
{
	struct mr__worker *w;
	int err;

	if (deadline >= 0 && (int64_t)mr__now_ns() >= deadline)
		return -ETIMEDOUT;
	if (fd < 0)
		return -EBADF;
	err = this_worker(&w);
	if (err)
		return err;
	struct ep *ep = w->io;
	struct waiter wt = {
	    .fiber = f, .fd = fd, .events = events, .deadline = deadline, .hidx = NO_HEAP, .w = w};
	wt.cancel.fn = wait_cancel;
	if (mr__cancel_arm(f, &wt.cancel)) {
		mr__cancel_disarm(f);
		return mr__cancel_take(f);
	}
	/* Held until we are parked (released by parked()): see hand-off. */
	mr__spin_lock(&ep->lock);
	if ((err = table_fit(ep, fd)) || (deadline >= 0 && (err = heap_push(ep, &wt)))) {
		mr__spin_unlock(&ep->lock);
		mr__cancel_disarm(f);
		return err;
	}
	wt.next = ep->fds[fd];
	if (wt.next)
		wt.next->prev = &wt;
	ep->fds[fd] = &wt;
	wt.all_next = ep->all;
	if (ep->all)
		ep->all->all_prev = &wt;
	ep->all = &wt;
	ep->nwaiters++;
	err = arm(ep, fd);
	/*
	 * A cancel between the arm above and the queuing: its request may have
	 * been taken (ncancel zeroed) by a helper's rescue that walked `all`
	 * before we were in it. We see its cancel_req here: the helper read
	 * the canceller's seq_cst ncancel increment, which follows the store,
	 * and we acquired the lock the helper released (relaxed is enough).
	 */
	bool cancelled = !err && atomic_load_explicit(&wt.cancel_req, memory_order_relaxed);
	if (err || cancelled) {
		unlink_waiter(ep, &wt);
		mr__spin_unlock(&ep->lock);
		mr__cancel_disarm(f);
		return cancelled ? mr__cancel_take(f) : err;
	}
	bool first = ep->nwaiters == 1;
	set_inflight(w, ep);
	MR__STAT_ADD(w->st, io_submitted, 1);
	MR_PROBE3(io_submit, w->idx, events, fd);
	mr__wait_note(MR__WAIT_IO, (const void *)(intptr_t)fd, deadline);
	if (first)
		mr__io_watch_check(w); /* a worker parked meanwhile may not watch */
	/* The worker (or a helper) readies us from poll() or wait(); w and ep
	 * are not ours to touch after the park (we may resume on another
	 * worker). */
	mr__fiber_park(parked, ep, call);
	mr__cancel_disarm(f);
	if (wt.cancelled)
		return mr__cancel_take(f);
	return wt.revents ? 0 : -ETIMEDOUT;
}

/*
 * Make fd non-blocking if it is not a regular file (or directory, or
 * block device: readiness means nothing there). 1: it is non-blocking; 0:
 * a file, for the blocking pool; -errno.
 */
static int nonblocking(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	struct stat st;

	if (fl < 0)
		return -errno;
	if (fl & O_NONBLOCK)
		return 1;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode))
		return 0;
	if (fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 1;
}

/* One try of q that does not block: the result or -errno (-EAGAIN: not
 * ready). */
static long try_once(const struct mr__io_req *q)
{
	long r;

	do {
		switch (q->op) {
		case MR__IO_READ:
			r = read(q->fd, q->buf, q->len);
			break;
		case MR__IO_WRITE:
			r = write(q->fd, q->buf, q->len);
			break;
		case MR__IO_READV:
			r = readv(q->fd, q->buf, (int)q->len);
			break;
		case MR__IO_WRITEV:
			r = writev(q->fd, q->buf, (int)q->len);
			break;
		case MR__IO_RECV:
			r = recv(q->fd, q->buf, q->len, q->flags | MSG_DONTWAIT);
			break;
		case MR__IO_SEND:
			r = send(q->fd, q->buf, q->len, q->flags | MSG_DONTWAIT);
			break;
		case MR__IO_RECVMSG:
			r = recvmsg(q->fd, q->buf, q->flags | MSG_DONTWAIT);
			break;
		case MR__IO_SENDMSG:
			r = sendmsg(q->fd, q->buf, q->flags | MSG_DONTWAIT);
			break;
		case MR__IO_ACCEPT:
			r = accept4(q->fd, q->buf, q->ptr, q->flags);
			break;
		case MR__IO_CONNECT:
			r = connect(q->fd, q->buf, (socklen_t)q->len);
			break;
		case MR__IO_POLL: {
			struct pollfd p = {.fd = q->fd, .events = (short)q->flags};
			r = poll(&p, 1, 0);
			if (r > 0)
				return p.revents;
			if (r == 0)
				return -EAGAIN;
			break;
		}
		default:
			mr__die(q->call, "unknown I/O operation %d", q->op);
		}
	} while (r < 0 && errno == EINTR);
	/* EWOULDBLOCK is EAGAIN on Linux. */
	return r < 0 ? -errno : r;
}

/* connect(2) on a non-blocking socket: wait out EINPROGRESS, then the
 * socket's error says how it went. */
static long connect_fd(struct mr_fiber *f, const struct mr__io_req *q, int64_t deadline)
{
	long r;
	uint64_t backoff = 50000;

	/* EAGAIN: a Unix socket whose listener's backlog is full. Nothing
	 * reports room there (POLLOUT is ready at once, and waiting for it
	 * in a loop would keep the worker from its timers and yielded
	 * fibers): sleep a little longer each time, up to 10 ms. */
	while ((r = try_once(q)) == -EAGAIN) {
		int64_t now = (int64_t)mr__now_ns();
		if (deadline >= 0 && now >= deadline)
			return -ETIMEDOUT;
		int64_t until = now + (int64_t)backoff;
		mr_sleep_until(deadline >= 0 && deadline < until ? deadline : until);
		if (backoff < 10000000)
			backoff *= 2;
	}
	if (r != -EINPROGRESS)
		return r;
	for (;;) {
		r = wait_fd(f, q->fd, EPOLLOUT, deadline, q->call);
		if (r == -ETIMEDOUT) {
			/* Abort it, as io_uring's cancellation does: the
			 * socket is left unconnected. */
			struct sockaddr sa = {.sa_family = AF_UNSPEC};
			connect(q->fd, &sa, sizeof(sa));
			return r;
		}
		if (r < 0)
			return r;
		struct pollfd p = {.fd = q->fd, .events = POLLOUT};
		if (poll(&p, 1, 0) > 0)
			break; /* not a wake-up for nothing */
	}
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(q->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return -errno;
	return -err;
}

/* A regular-file call (or one only files make), on the blocking pool while
 * the fiber parks. Deadlines and cancellation do not reach it there: the
 * system call runs to its end (io.h says so). */
struct file_call {
	const struct mr__io_req *q;
	long res;
};

static void file_fn(void *arg)
{
	struct file_call *c = arg;

	c->res = mr__io_sync(c->q, -1);
}

static long on_pool(const struct mr__io_req *q)
{
	struct file_call c = { q, 0 };

	/* The pool refused (no thread could be made): do it here. */
	if (mr__blocking_run(file_fn, &c, q->call) < 0)
		return mr__io_sync(q, -1);
	return c.res;
}

static long epoll_call(struct mr__worker *w, struct mr_fiber *f, const struct mr__io_req *q,
		       int64_t deadline)
{
	int nb;

	(void)w; /* read afresh by wait_fd(): it may change between waits */
	switch (q->op) {
	case MR__IO_READ:
	case MR__IO_WRITE:
	case MR__IO_READV:
	case MR__IO_WRITEV:
		if (q->off >= 0)
			return on_pool(q);
		nb = nonblocking(q->fd);
		if (nb < 0)
			return nb;
		if (nb == 0)
			return on_pool(q);
		break;
	case MR__IO_ACCEPT:
	case MR__IO_CONNECT:
		/* Not a socket: the call says so at once, without blocking. */
		nb = nonblocking(q->fd);
		if (nb < 0)
			return nb;
		if (q->op == MR__IO_CONNECT)
			return connect_fd(f, q, deadline);
		break;
	case MR__IO_RECV:
	case MR__IO_SEND:
	case MR__IO_RECVMSG:
	case MR__IO_SENDMSG:
	case MR__IO_POLL:
		break;
	case MR__IO_SHUTDOWN:
	case MR__IO_CLOSE:
		return mr__io_sync(q, -1); /* never blocks on a socket or pipe */
	case MR__IO_OPENAT:
	case MR__IO_STATX:
	case MR__IO_FSYNC:
		return on_pool(q);
	default:
		mr__die(q->call, "unknown I/O operation %d", q->op);
	}
	/* poll(2)'s bits are epoll's; POLLNVAL and unknown bits are not. */
	uint32_t events = (uint16_t)mr__io_req_events(q) & WAIT_EVENTS;
	for (;;) {
		long r = try_once(q);
		if (r != -EAGAIN || mr__io_req_dontwait(q))
			return r;
		r = wait_fd(f, q->fd, events, deadline, q->call);
		if (r < 0)
			return r;
	}
}

const struct mr__io_backend mr__io_epoll_backend = {
    .name = "epoll",
    .worker_init = epoll_worker_init,
    .call = epoll_call,
};
