/*
 * shm.c - channels in POSIX shared memory (shm://NAME, <moirai/chan.h>):
 * the segment's layout and its validation, a ring that no dead process can
 * wedge, waiting across processes on process-shared futexes, and the
 * detection of dead peers through pidfds.
 *
 * The segment (/dev/shm/moirai.NAME), every offset computed from the three
 * parameters (element size, alignment, capacity) by layout() on both sides,
 * so an attacher trusts no offset it reads, it compares:
 *
 *	0      struct shm_hdr     one line of read-mostly facts, then a line
 *	                          each for: state, tail, head, the receivers'
 *	                          wait word, the senders' wait word
 *	att    MR_CHAN_SHM_ATTACH_MAX struct shm_att (one per open handle)
 *	words  capacity u64       one control word per slot
 *	data   capacity * stride  the elements, each aligned to elem_align
 *
 * The ring. Positions count like the in-process ring's (ring.c): a lap of
 * `one_lap` (a power of two >= capacity) positions of which the first
 * `capacity` are used, slot = position % one_lap. A slot's word holds the
 * lap of the position it is at, an owner (an attachment index + 1, or 0)
 * and a state:
 *
 *	FREE(p)       position p may be claimed by a sender
 *	WRITING(p,o)  attachment o claimed p and writes the element (a loan)
 *	READY(p)      the element of position p is there for receivers
 *	READING(p,o)  attachment o took it and reads it (a borrow)
 *	REDO(p)       READING by a process that died: to be taken again
 *
 * A freshly truncated segment is all zeroes: every slot FREE at lap 0.
 * A sender claims with ONE compare-and-swap on the slot word, FREE(t) ->
 * WRITING(t, me), and only then moves the tail word on (anyone who sees
 * the slot claimed moves it on too: the tail is a hint that lags by at most
 * one); it writes the element and publishes with READY(t). A receiver
 * claims READY(h) -> READING(h, me) the same way, moves the head on, reads,
 * and frees the slot for the next lap: FREE(h + one_lap).
 *
 * Why a dead process cannot wedge it. The claim and the owner are one word,
 * written by one CAS: there is no instant at which a position is taken but
 * nobody is named as taking it (a Vyukov ring's tail CAS is such an
 * instant). Every slot a process holds is therefore WRITING or READING
 * with its index, and the processes that remain can undo exactly those:
 * WRITING(p, dead) becomes FREE(p + one_lap) (the position is skipped:
 * receivers pass over it, nothing torn is ever READY), READING(p, dead)
 * becomes REDO(p) (the element was not consumed: a receiver takes it
 * again, out of order). A process that dies between its claim and the
 * tail (head) move leaves a lag that the next operation repairs, as it
 * would for a live one. Repairs are compare-and-swaps from the dead
 * owner's word, so several survivors may repair at once. The attachment
 * of a dead process is freed only after a full scan of the words (no
 * word can name it afterwards: only it wrote its own index), so an index
 * is never reused while a word still names its old holder.
 *
 * Who is dead. Each attachment records its pid and the process's start
 * time; every process with a handle watches the pids of the others with
 * pidfds in one epoll set, on a thread of its own ("moirai-shm-reap"):
 * when one exits, the watcher reaps its attachments (above), marks the
 * sides it was on as having lost a member, and wakes every waiter. The
 * start time guards against a reused pid. No heartbeat: a busy process is
 * never taken for dead.
 *
 * Waiting. Each side has a 32-bit sequence and a count of waiters, an
 * eventcount: a waiter reads the sequence, counts itself in (seq_cst),
 * looks at the ring once more, and sleeps on the sequence (a futex that is
 * not FUTEX_PRIVATE: it works across processes); whoever makes progress for
 * that side publishes, fences, and bumps and wakes the sequence only if the
 * count says someone waits. A thread waits on the futex itself. Fibers
 * (and selects, and jobs on workers) wait in chan.c's sleeper queues of the
 * process's own struct mr_chan, like on any channel; what would wake them
 * from another process is a futex wake, which a thread of ours
 * ("moirai-shm") sleeping in futex_waitv on the sequences that our
 * sleepers need turns into a local wake-up of all of them (they retry).
 *
 * Trust. Everything read from the mapping is checked before it is used as
 * an index or a size: positions are reduced modulo the local one_lap and
 * checked against the local capacity, owners against the attachment
 * count; a word that no legal history could produce makes the call return
 * -EPROTO rather than loop.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "chan.h"
#include "shm.h"

/* ---- layout ------------------------------------------------------------------- */

#define SHM_MAGIC 0x48434941524f4d00ull /* "\0MORAICH" */
#define SHM_VERSION 1u
#define SHM_PREFIX "/moirai."
#define SHM_DIR "/dev/shm"
/* largest segment we make or map: the slots are sparse until touched */
#define SHM_SIZE_MAX ((uint64_t)1 << 46)

/* state word bits */
#define ST_CLOSED 1u
#define ST_DIED_TX 2u /* a sender's attachment died since one last attached */
#define ST_DIED_RX 4u

struct shm_hdr {
	/* read-mostly: written once by the creator */
	uint64_t magic;
	_Atomic uint32_t version; /* published last */
	uint32_t hdr_size;
	uint64_t elem_size, elem_align, capacity;
	uint64_t one_lap, stride;
	uint64_t att_off, words_off, data_off, total;
	uint32_t uid, creator_pid;
	uint64_t creator_start;

	mr__cacheline_aligned _Atomic uint32_t state;
	_Atomic uint32_t attach_gen; /* bumped by every attach and reap */
	_Atomic uint32_t redo;	     /* slots in REDO */

	mr__cacheline_aligned _Atomic uint64_t tail;
	mr__cacheline_aligned _Atomic uint64_t head;
	/* wait words, [0] receivers', [1] senders': a sequence in the upper
	 * 31 bits, SEQ_WAITING in bit 0 (see "Waiting" above) */
	mr__cacheline_aligned _Atomic uint32_t seq0;
	mr__cacheline_aligned _Atomic uint32_t seq1;
};

/* attachment word: state (2 bits) | generation (30) | pid (32) */
enum { AT_FREE = 0, AT_CLAIMING = 1, AT_ALIVE = 2, AT_REAPING = 3 };

struct shm_att {
	_Atomic uint64_t word;
	_Atomic uint32_t roles; /* MR_CHAN_SEND | MR_CHAN_RECV */
	uint32_t pad;
	_Atomic uint64_t start; /* the process's start time (clock ticks since boot) */
	uint64_t pad2;
};

static inline uint32_t at_state(uint64_t w)
{
	return (uint32_t)(w >> 62);
}

static inline uint32_t at_gen(uint64_t w)
{
	return (uint32_t)(w >> 32) & 0x3fffffffu;
}

static inline uint32_t at_pid(uint64_t w)
{
	return (uint32_t)w;
}

static inline uint64_t at_word(uint32_t st, uint32_t gen, uint32_t pid)
{
	return (uint64_t)st << 62 | (uint64_t)(gen & 0x3fffffffu) << 32 | pid;
}

/* slot word: lap (54 bits, position with the index bits clear) | owner (7) | state (3) */
enum { SL_FREE = 0, SL_WRITING = 1, SL_READY = 2, SL_READING = 3, SL_REDO = 4 };
#define POSM (((uint64_t)1 << 54) - 1)

static inline uint64_t sw(uint64_t lap, unsigned owner, unsigned st)
{
	return (lap & POSM) << 10 | (uint64_t)owner << 3 | st;
}

static inline uint64_t sw_lap(uint64_t w)
{
	return w >> 10;
}

static inline unsigned sw_owner(uint64_t w)
{
	return (unsigned)(w >> 3) & 127;
}

static inline unsigned sw_state(uint64_t w)
{
	return (unsigned)w & 7;
}

struct geom {
	uint64_t elem_size, elem_align, capacity, one_lap, stride;
	uint64_t att_off, words_off, data_off, total;
	/* slot i's word at words_off + i * wstride, its element at
	 * data_off + i * stride: inline (small elements, word and element in
	 * one slot, so a line carries both) or in two arrays */
	uint64_t wstride;
};

static uint64_t align_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) & ~(a - 1);
}

/* The layout for these parameters, or -EINVAL / -EFBIG. */
static int layout(struct geom *g, uint64_t elem, uint64_t align, uint64_t cap)
{
	if (elem == 0 || elem > MR_CHAN_SHM_ELEM_MAX || cap == 0 || cap > MR_CHAN_CAPACITY_MAX ||
	    align == 0 || align > 4096 || (align & (align - 1)))
		return -EINVAL;
	g->elem_size = elem;
	g->elem_align = align;
	g->capacity = cap;
	g->one_lap = 1;
	while (g->one_lap < cap)
		g->one_lap <<= 1;
	g->att_off = align_up(sizeof(struct shm_hdr), 64);
	g->words_off = align_up(g->att_off + MR_CHAN_SHM_ATTACH_MAX * sizeof(struct shm_att), 64);
	uint64_t end;
	if (elem <= 56 && align <= 8) {
		g->stride = g->wstride = align_up(8 + elem, 8);
		g->data_off = g->words_off + 8;
		end = g->words_off;
	} else {
		g->stride = align_up(elem, align < 8 ? 8 : align);
		g->wstride = 8;
		g->data_off = align_up(g->words_off + cap * 8, align < 64 ? 64 : align);
		end = g->data_off;
	}
	/* stride <= 2^30 + 4096, cap <= 2^32: the product fits in 64 bits */
	if (g->stride * cap > SHM_SIZE_MAX - end)
		return -EFBIG;
	g->total = align_up(end + g->stride * cap, 4096);
	return 0;
}

/* ---- the process's view of one attachment ------------------------------------ */

struct mr__shm {
	struct shm_hdr *h;
	struct shm_att *att;
	unsigned char *words; /* slot i's word: words + i * g.wstride */
	unsigned char *data;  /* its element: data + i * g.stride */
	struct geom g;
	uint64_t mask; /* one_lap - 1 */
	unsigned me;   /* our attachment index; its owner value is me + 1 */
	unsigned sides;
	bool creator;
	uint64_t my_word; /* our attachment word as we published it */
	_Atomic uint32_t open_slots; /* loans and borrows not yet given back */
	/* ... and which, in our own memory: a peer that rewrites a slot's
	 * word cannot make us lose count of them (under open_lock) */
	struct open_slot *opens;
	uint32_t nopen, open_cap;
	_Atomic uint32_t open_lock;
	_Atomic uint32_t thread_waits; /* plain threads in mr__shm_wait() */
	/* chan.c's sleepers of this process wait on these sides (under the
	 * channel's lock); the agent watches their sequences. */
	bool want[2];
	/* the attachments we watch (the words we saw), and when we looked */
	uint64_t watched[MR_CHAN_SHM_ATTACH_MAX];
	_Atomic uint32_t seen_gen;
	struct mr_chan *ch;
	struct mr__shm *next, *prev; /* all handles of the process */
	size_t map_len;
	dev_t dev; /* the segment's file: is the name still ours? */
	ino_t ino;
	char name[sizeof(SHM_PREFIX) + MR_CHAN_NAME_MAX];
};

static inline _Atomic uint64_t *word_at(const struct mr__shm *m, uint64_t idx)
{
	return (_Atomic uint64_t *)(void *)(m->words + idx * m->g.wstride);
}

static _Atomic uint32_t *seq_of(struct shm_hdr *h, int side)
{
	return side ? &h->seq1 : &h->seq0;
}

#define SEQ_WAITING 1u

/* ---- futexes across processes ---------------------------------------------- */

static int sfutex_wait(_Atomic uint32_t *addr, uint32_t val, int64_t deadline)
{
	struct timespec ts = { (time_t)(deadline / 1000000000), (long)(deadline % 1000000000) };
	long r = syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_BITSET, val,
			 deadline >= 0 ? &ts : NULL, NULL, FUTEX_BITSET_MATCH_ANY);
	return r < 0 ? -errno : 0;
}

static void sfutex_wake_all(_Atomic uint32_t *addr)
{
	syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* Wake every waiter of a side: always (close, deaths, attaches). The
 * sequence moves, SEQ_WAITING stays as it was. */
static void kick(struct shm_hdr *h, int side)
{
	atomic_fetch_add_explicit(seq_of(h, side), 2, memory_order_seq_cst);
	sfutex_wake_all(seq_of(h, side));
}

/* Say that someone will sleep on q: its value with SEQ_WAITING set, the
 * value to sleep on. A seq_cst read-modify-write (or a seq_cst load of a
 * word that has the bit already) before the sleeper's last look. */
static uint32_t arm(_Atomic uint32_t *q)
{
	uint32_t w = atomic_load_explicit(q, memory_order_seq_cst);

	while (!(w & SEQ_WAITING) &&
	       !atomic_compare_exchange_weak_explicit(q, &w, w | SEQ_WAITING, memory_order_seq_cst,
						      memory_order_seq_cst))
		;
	return w | SEQ_WAITING;
}

static void kick_both(struct shm_hdr *h)
{
	kick(h, 0);
	kick(h, 1);
}

/* ---- processes ---------------------------------------------------------------- */

/* CLOCK_BOOTTIME in ns: the clock of /proc's process start times. */
static uint64_t boot_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* When process pid started (field 22 of /proc/PID/stat, since boot), in
 * ns; 0 when it cannot be read. Only ever read for ANOTHER process: the
 * emulators that run us (qemu-user) fake /proc/self. */
static uint64_t proc_start_ns(pid_t pid)
{
	char path[64], buf[1024];
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	/* the space before field f, for f = 3 (after ") ") up to 22 */
	for (int f = 3; f <= 22; f++) {
		p = strchr(p + 1, ' ');
		if (!p)
			return 0;
	}
	long hz = sysconf(_SC_CLK_TCK);
	return strtoull(p + 1, NULL, 10) * (1000000000u / (uint64_t)(hz > 0 ? hz : 100));
}

static pid_t self_pid;

/* ---- the handles of this process, the agent and the reaper ---------------------- */

/*
 * The agent: one thread in futex_waitv on the wait sequences that this
 * process's sleepers need (entry 0 is its own doorbell, private). The
 * reaper: one thread in epoll_wait on the pidfds of the other processes.
 * Both start with the first shm handle and live as long as the process.
 * proc_lock (a leaf but for the agent's fire, which takes a channel's lock
 * after dropping it) guards the handle list and both watch lists.
 */
#define AGENT_MAX 127

struct watch {
	struct mr__shm *m;
	int side;
	uint32_t seen; /* the word when we last fired (or started) */
	bool armed;    /* armed and looked since then */
};

struct futex_waitv_arg {
	uint64_t val;
	uint64_t uaddr;
	uint32_t flags;
	uint32_t reserved;
};

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif
#define FUTEX2_SIZE_U32_ 0x02
#define FUTEX2_PRIVATE_ 128

static pthread_mutex_t proc_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mr__shm *handles;
static struct watch *watches;
static unsigned nwatches, watch_cap;
static _Atomic uint32_t doorbell;
static struct mr__shm *_Atomic firing; /* the handle whose sleepers the agent wakes */
static bool inited, agent_started, reaper_started;
static int reap_epfd = -1;

struct peer {
	pid_t pid;
	int pidfd;
	struct peer *next;
};
static struct peer *peers;

static void reap_pid(pid_t pid);
struct mr__shm;
static bool undo_slot(struct mr__shm *m, _Atomic uint64_t *wp, uint64_t s);

static void unwant(struct mr__shm *m, int side);
static bool side_ready(struct mr__shm *m, int side);

/*
 * A side's sequence moved: claim every sleeper of ours on it, for a retry
 * (they look at the ring again; those who lose go back to sleep). When none
 * was there, stop watching the side until one comes (under the channel's
 * lock, which mr__shm_want() holds to start watching).
 */
static void fire(struct mr__shm *m, int side)
{
	struct mr_chan *ch = m->ch;
	struct mr__sleeper *wake[64];
	unsigned n, total = 0;

	for (;;) {
		n = 0;
		mr__chan_lock(ch);
		while (n < 64) {
			struct mr__sleeper *s =
				side ? mr__chan_claim_one(ch, &ch->txq, &ch->q.head, POS_TXW, NULL)
				     : mr__chan_claim_one(ch, &ch->rxq, &ch->q.tail, POS_RXW, NULL);
			if (!s)
				break;
			wake[n++] = s;
		}
		if (n == 0 && total == 0) {
			pthread_mutex_lock(&proc_lock);
			unwant(m, side);
			pthread_mutex_unlock(&proc_lock);
		}
		mr__chan_unlock(ch);
		for (unsigned i = 0; i < n; i++)
			mr__sleeper_wake(wake[i]);
		total += n;
		if (n < 64)
			return;
	}
}

static void *agent_main(void *arg)
{
	struct futex_waitv_arg wv[AGENT_MAX + 1];
	struct watch *fired = NULL;
	unsigned fired_cap = 0;
	bool have_waitv = true;

	(void)arg;
	for (;;) {
		unsigned n, nf = 0;
		bool busy = false;

		pthread_mutex_lock(&proc_lock);
		uint32_t bell = atomic_load_explicit(&doorbell, memory_order_acquire);
		if (fired_cap < nwatches) {
			struct watch *f = realloc(fired, nwatches * sizeof(*f));
			if (f) {
				fired = f;
				fired_cap = nwatches;
			}
		}
		wv[0] = (struct futex_waitv_arg){ bell, (uintptr_t)&doorbell,
						  FUTEX2_SIZE_U32_ | FUTEX2_PRIVATE_, 0 };
		n = 1;
		for (unsigned i = 0; i < nwatches; i++) {
			struct watch *w = &watches[i];
			_Atomic uint32_t *q = seq_of(w->m->h, w->side);
			uint32_t now = atomic_load_explicit(q, memory_order_seq_cst);
			bool moved = (now >> 1) != (w->seen >> 1);
			if (!moved && (!w->armed || !(now & SEQ_WAITING))) {
				/* Arm, then look, after every fire and for a new
				 * watch, whoever else armed the word: our sleepers'
				 * last look may have come before the bit was set,
				 * and what was sent meanwhile woke nobody. */
				now = arm(q);
				moved = (now >> 1) != (w->seen >> 1) || side_ready(w->m, w->side);
				w->armed = true;
			}
			if (moved) {
				if (nf < fired_cap) {
					w->seen = now;
					w->armed = false;
					fired[nf++] = *w;
				} else {
					busy = true; /* no room to fire it now: next pass */
				}
				continue;
			}
			if (n <= AGENT_MAX)
				wv[n++] = (struct futex_waitv_arg){ now, (uintptr_t)q, FUTEX2_SIZE_U32_,
								    0 };
		}
		/* more sides than futex_waitv takes: look every millisecond */
		bool poll = nwatches >= AGENT_MAX || !have_waitv;
		for (unsigned i = 0; i < nf; i++) {
			/* A handle whose sleepers we wake stays: destroy waits
			 * for `firing` to move on (mr__shm_detach). */
			bool live = false;
			for (unsigned k = 0; k < nwatches; k++)
				if (watches[k].m == fired[i].m && watches[k].side == fired[i].side)
					live = true;
			if (!live)
				continue;
			atomic_store_explicit(&firing, fired[i].m, memory_order_relaxed);
			pthread_mutex_unlock(&proc_lock);
			fire(fired[i].m, fired[i].side);
			pthread_mutex_lock(&proc_lock);
			atomic_store_explicit(&firing, NULL, memory_order_release);
		}
		pthread_mutex_unlock(&proc_lock);
		if (nf || busy)
			continue;
		if (have_waitv) {
			struct timespec ts;
			if (poll) {
				clock_gettime(CLOCK_MONOTONIC, &ts);
				ts.tv_nsec += 1000000;
				if (ts.tv_nsec >= 1000000000) {
					ts.tv_sec++;
					ts.tv_nsec -= 1000000000;
				}
			}
			long r = syscall(SYS_futex_waitv, wv, n, 0, poll ? &ts : NULL,
					 CLOCK_MONOTONIC);
			if (r < 0 && errno == ENOSYS)
				have_waitv = false;
		} else {
			/* A kernel without futex_waitv (< 5.16): look every
			 * millisecond. */
			mr__futex_wait_ns(&doorbell, bell, 1000000);
		}
	}
	return NULL;
}

static void *reap_main(void *arg)
{
	struct epoll_event ev[16];

	(void)arg;
	for (;;) {
		int n = epoll_wait(reap_epfd, ev, 16, -1);
		for (int i = 0; i < n; i++) {
			/* only this thread frees a peer (reap_pid) */
			struct peer *p = ev[i].data.ptr;
			reap_pid(p->pid);
		}
	}
	return NULL;
}

static void atfork_prepare(void)
{
	pthread_mutex_lock(&proc_lock);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&proc_lock);
}

static void atfork_child(void)
{
	/* The threads are gone; handles inherited through fork() are not
	 * the child's (chan.h). */
	pthread_mutex_init(&proc_lock, NULL);
	handles = NULL;
	nwatches = 0;
	inited = agent_started = reaper_started = false;
	if (reap_epfd >= 0)
		close(reap_epfd);
	reap_epfd = -1;
	for (struct peer *p = peers, *n; p; p = n) {
		n = p->next;
		close(p->pidfd);
		free(p);
	}
	peers = NULL;
	self_pid = getpid();
	atomic_store_explicit(&firing, NULL, memory_order_relaxed);
}

/* Start a thread of ours, detached, with every signal blocked. */
static void thread_named(void *(*fn)(void *), const char *name)
{
	pthread_attr_t a;
	pthread_t t;
	sigset_t all, old;
	int r;

	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&a, 64 * 1024);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&t, &a, fn, NULL);
	if (r == 0)
		pthread_setname_np(t, name);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&a);
	if (r)
		mr__die("mr_chan", "cannot start the %s thread: %s", name, strerror(r));
}

/*
 * With proc_lock held: what the process needs, once (and once more in a
 * child of fork). The threads start only when first needed, the agent
 * when a fiber first waits, the reaper when there is a first peer to
 * watch: a process that opens a channel and then forks has no thread of
 * ours yet, and its children start from a quiet copy.
 */
static int proc_init(void)
{
	static bool atfork;

	if (inited)
		return 0;
	if (!atfork) {
		pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
		atfork = true;
	}
	self_pid = getpid();
	reap_epfd = epoll_create1(EPOLL_CLOEXEC);
	if (reap_epfd < 0)
		return -errno;
	inited = true;
	return 0;
}

/* ---- attachments and their deaths ---------------------------------------------- */

/*
 * Is the process that attached at `since` (boot ns; 0: unknown) with this
 * pid alive? A process now at that pid that started after `since` is
 * another one that reused the pid (a tick of slack: /proc counts ticks).
 */
static bool pid_alive(pid_t pid, uint64_t since)
{
	if (kill(pid, 0) < 0 && errno == ESRCH)
		return false;
	if (since) {
		uint64_t started = proc_start_ns(pid);
		if (started && started > since + 20000000)
			return false;
	}
	return true;
}

/*
 * Undo what attachment `o`, whose word was `w` (its process is dead), held:
 * see the top of the file. Any number of processes may do this at once.
 */
static void reap(struct mr__shm *m, unsigned o, uint64_t w)
{
	struct shm_att *a = &m->att[o];
	uint32_t st = at_state(w);

	if (st == AT_ALIVE || st == AT_CLAIMING) {
		uint64_t r = at_word(AT_REAPING, at_gen(w), at_pid(w));
		if (!atomic_compare_exchange_strong_explicit(&a->word, &w, r, memory_order_seq_cst,
							     memory_order_relaxed))
			return; /* someone else reaps it, or it went */
		w = r;
	} else if (st != AT_REAPING || atomic_load_explicit(&a->word, memory_order_seq_cst) != w) {
		return;
	}
	uint32_t roles = atomic_load_explicit(&a->roles, memory_order_relaxed);
	uint32_t died = ((roles & MR_CHAN_SEND) ? ST_DIED_TX : 0) |
			((roles & MR_CHAN_RECV) ? ST_DIED_RX : 0);
	if (st != AT_CLAIMING && died)
		atomic_fetch_or_explicit(&m->h->state, died, memory_order_seq_cst);

	/*
	 * Several survivors may scan at once (one took over a REAPING word
	 * whose first reaper died, or came late). Before undoing a slot that
	 * names o, look again that o is still REAPING with this generation:
	 * once one of us freed it, a new attachment may hold index o, and the
	 * slot we read may be its. A slot read before that check holds the
	 * dead owner's claim or has changed since (positions never repeat),
	 * so the compare-and-swap cannot undo a live claim.
	 */
	unsigned owner = o + 1;
	for (uint64_t i = 0; i < m->g.capacity; i++) {
		_Atomic uint64_t *wp = word_at(m, i);
		uint64_t s = atomic_load_explicit(wp, memory_order_seq_cst);
		if (sw_owner(s) != owner)
			continue;
		if (atomic_load_explicit(&a->word, memory_order_seq_cst) != w)
			return;
		undo_slot(m, wp, s);
	}
	atomic_store_explicit(&a->roles, 0, memory_order_relaxed);
	atomic_store_explicit(&a->start, 0, memory_order_relaxed);
	uint64_t f = at_word(AT_FREE, at_gen(w) + 1, 0);
	atomic_compare_exchange_strong_explicit(&a->word, &w, f, memory_order_seq_cst,
						memory_order_relaxed);
	atomic_fetch_add_explicit(&m->h->attach_gen, 1, memory_order_seq_cst);
	kick_both(m->h);
}

/* Every attachment of (pid, start) in every handle of ours is dead. */
static void reap_pid(pid_t pid)
{
	/* Its attachments came before its death, which came before now; a
	 * new process at a reused pid attaches after. */
	uint64_t now = boot_ns();

	pthread_mutex_lock(&proc_lock);
	for (struct mr__shm *m = handles; m; m = m->next) {
		for (unsigned o = 0; o < MR_CHAN_SHM_ATTACH_MAX; o++) {
			uint64_t w = atomic_load_explicit(&m->att[o].word, memory_order_acquire);
			if (at_state(w) == AT_FREE || (pid_t)at_pid(w) != pid)
				continue;
			uint64_t since = atomic_load_explicit(&m->att[o].start, memory_order_relaxed);
			if (since > now)
				continue;
			reap(m, o, w);
		}
	}
	/* the pidfd has done its work */
	for (struct peer **pp = &peers; *pp; pp = &(*pp)->next) {
		struct peer *p = *pp;
		if (p->pid == pid) {
			epoll_ctl(reap_epfd, EPOLL_CTL_DEL, p->pidfd, NULL);
			close(p->pidfd);
			*pp = p->next;
			free(p);
			break;
		}
	}
	pthread_mutex_unlock(&proc_lock);
}

/*
 * Make sure every other process attached to m is watched (its pidfd in the
 * reaper's set), and reap the ones that are already gone. Called at open
 * and whenever the attachment generation moved (someone attached or was
 * reaped), on the slow paths only.
 */
static void watch_peers(struct mr__shm *m)
{
	uint32_t gen = atomic_load_explicit(&m->h->attach_gen, memory_order_acquire);
	bool again = false; /* something to look at next time too */

	if (gen == atomic_load_explicit(&m->seen_gen, memory_order_relaxed))
		return;
	pthread_mutex_lock(&proc_lock);
	for (unsigned o = 0; o < MR_CHAN_SHM_ATTACH_MAX; o++) {
		uint64_t w = atomic_load_explicit(&m->att[o].word, memory_order_acquire);
		uint32_t st = at_state(w);
		if (st == AT_FREE || w == m->watched[o])
			continue;
		pid_t pid = (pid_t)at_pid(w);
		if (pid == self_pid) {
			m->watched[o] = w;
			continue;
		}
		if (st == AT_REAPING) {
			reap(m, o, w); /* its reaper may have died: finish */
			continue;
		}
		if (st == AT_CLAIMING) {
			/* its start time may be a former holder's: only the pid
			 * says anything yet */
			if (kill(pid, 0) < 0 && errno == ESRCH)
				reap(m, o, w);
			else
				again = true;
			continue;
		}
		uint64_t start = atomic_load_explicit(&m->att[o].start, memory_order_relaxed);
		struct peer *p;
		for (p = peers; p; p = p->next)
			if (p->pid == pid)
				break;
		if (p) {
			m->watched[o] = w;
			continue;
		}
		int fd = (int)syscall(SYS_pidfd_open, pid, 0);
		if ((fd < 0 && errno == ESRCH) || (fd >= 0 && !pid_alive(pid, start))) {
			if (fd >= 0)
				close(fd);
			reap(m, o, w);
			continue;
		}
		p = fd >= 0 ? calloc(1, sizeof(*p)) : NULL;
		if (p) {
			p->pid = pid;
			p->pidfd = fd;
			struct epoll_event ev = { .events = EPOLLIN, .data.ptr = p };
			if (epoll_ctl(reap_epfd, EPOLL_CTL_ADD, fd, &ev) == 0) {
				p->next = peers;
				peers = p;
				m->watched[o] = w;
				if (!reaper_started) {
					thread_named(reap_main, "moirai-shm-reap");
					reaper_started = true;
				}
				continue;
			}
			free(p);
		}
		/* EMFILE, ENOMEM, ENOSYS...: unwatched for now, try again at
		 * the next look */
		if (fd >= 0)
			close(fd);
		again = true;
	}
	atomic_store_explicit(&m->seen_gen, again ? gen - 1 : gen, memory_order_relaxed);
	pthread_mutex_unlock(&proc_lock);
}

/* Is the owner of a slot word dead (its attachment no longer ALIVE)? A
 * word naming an attachment beyond the table is corrupt. */
static int owner_gone(struct mr__shm *m, unsigned owner)
{
	if (owner == 0 || owner > MR_CHAN_SHM_ATTACH_MAX)
		return -EPROTO;
	if (owner == m->me + 1)
		return 0;
	uint64_t w = atomic_load_explicit(&m->att[owner - 1].word, memory_order_acquire);
	if (at_state(w) == AT_REAPING || at_state(w) == AT_FREE)
		return 1;
	/* alive as far as the table says; the watch may be stale */
	watch_peers(m);
	w = atomic_load_explicit(&m->att[owner - 1].word, memory_order_acquire);
	return at_state(w) == AT_REAPING || at_state(w) == AT_FREE;
}

/* The slot of a dead owner: undo it (see the top of the file). True if
 * this call did. */
static bool undo_slot(struct mr__shm *m, _Atomic uint64_t *wp, uint64_t s)
{
	uint64_t lap = sw_lap(s);

	if (sw_state(s) == SL_WRITING)
		return atomic_compare_exchange_strong_explicit(wp, &s,
							       sw(lap + m->g.one_lap, 0, SL_FREE),
							       memory_order_seq_cst,
							       memory_order_relaxed);
	if (sw_state(s) == SL_READING &&
	    atomic_compare_exchange_strong_explicit(wp, &s, sw(lap, 0, SL_REDO),
						    memory_order_seq_cst, memory_order_relaxed)) {
		/* a hint for receivers that the head has passed it */
		atomic_fetch_add_explicit(&m->h->redo, 1, memory_order_relaxed);
		return true;
	}
	return false;
}

/* ... and wake both sides when it was us. */
static void repair(struct mr__shm *m, _Atomic uint64_t *wp, uint64_t s)
{
	if (undo_slot(m, wp, s))
		kick_both(m->h);
}

/* ---- the ring ------------------------------------------------------------------ */

enum { WAKE_RX = 1, WAKE_TX = 2 };

static inline uint64_t next_pos(const struct mr__shm *m, uint64_t p)
{
	return ((p & m->mask) + 1 < m->g.capacity ? p + 1 : (p & ~m->mask) + m->g.one_lap) & POSM;
}

/* A claimed slot: its index and the position it was claimed at. */
struct claim {
	uint64_t idx, pos;
};

struct open_slot {
	uint64_t idx, pos;
	unsigned state; /* SL_WRITING (a loan) or SL_READING (a borrow) */
};

/* Note an open loan or borrow: 0 or -ENOMEM. */
static int open_note(struct mr__shm *m, const struct claim *c, unsigned state)
{
	int r = 0;

	mr__spin_lock(&m->open_lock);
	if (m->nopen == m->open_cap) {
		uint32_t cap = m->open_cap ? 2 * m->open_cap : 8;
		struct open_slot *o = realloc(m->opens, cap * sizeof(*o));
		if (o) {
			m->opens = o;
			m->open_cap = cap;
		}
	}
	if (m->nopen < m->open_cap) {
		m->opens[m->nopen++] = (struct open_slot){ c->idx, c->pos, state };
		atomic_fetch_add_explicit(&m->open_slots, 1, memory_order_relaxed);
	} else {
		r = -ENOMEM;
	}
	mr__spin_unlock(&m->open_lock);
	return r;
}

/* Take the note of the open slot at idx in `state`: true if there was one. */
static bool open_take(struct mr__shm *m, uint64_t idx, unsigned state, struct claim *c)
{
	bool found = false;

	mr__spin_lock(&m->open_lock);
	for (uint32_t i = 0; i < m->nopen; i++) {
		if (m->opens[i].idx != idx || m->opens[i].state != state)
			continue;
		c->idx = idx;
		c->pos = m->opens[i].pos;
		m->opens[i] = m->opens[--m->nopen];
		atomic_fetch_sub_explicit(&m->open_slots, 1, memory_order_relaxed);
		found = true;
		break;
	}
	mr__spin_unlock(&m->open_lock);
	return found;
}

static inline void *slot_data(const struct mr__shm *m, uint64_t idx)
{
	return m->data + idx * m->g.stride;
}

/* Would every attachment on the other side of `side` being gone mean a reset? */
static bool other_side_dead(struct mr__shm *m, int side)
{
	/* side 0: we receive, the other side sends */
	uint32_t need = side ? MR_CHAN_RECV : MR_CHAN_SEND;
	uint32_t flag = side ? ST_DIED_RX : ST_DIED_TX;

	if (!(atomic_load_explicit(&m->h->state, memory_order_acquire) & flag))
		return false;
	if (m->sides & need)
		return false; /* we are on the other side ourselves */
	for (unsigned o = 0; o < MR_CHAN_SHM_ATTACH_MAX; o++) {
		uint64_t w = atomic_load_explicit(&m->att[o].word, memory_order_acquire);
		uint32_t st = at_state(w);
		if ((st == AT_ALIVE || st == AT_CLAIMING) &&
		    (atomic_load_explicit(&m->att[o].roles, memory_order_relaxed) & need))
			return false;
	}
	return true;
}

/* Move a position word (tail or head) on from p, if nobody did: returns
 * where it is now (with bits above POSM if a peer wrote them: corrupt). */
static uint64_t move_on(const struct mr__shm *m, _Atomic uint64_t *word, uint64_t p)
{
	uint64_t was = p, next = next_pos(m, p);

	if (atomic_compare_exchange_strong_explicit(word, &was, next, memory_order_seq_cst,
						    memory_order_seq_cst))
		return next;
	return was;
}

/* Steps a claim may take before it calls the ring corrupt: each one is
 * another process's progress, so a live ring never needs this many. */
static inline uint64_t step_bound(const struct mr__shm *m)
{
	return 4 * m->g.capacity + 4096;
}

/* Claim the tail slot: 0, -EAGAIN (full) or -EPROTO. */
static int claim_tx(struct mr__shm *m, struct claim *c)
{
	struct shm_hdr *h = m->h;
	uint64_t steps = 0, bound = step_bound(m);
	uint64_t t = atomic_load_explicit(&h->tail, memory_order_seq_cst);

	for (;;) {
		uint64_t idx = t & m->mask;
		if ((t & ~POSM) || idx >= m->g.capacity || ++steps > bound)
			return -EPROTO;
		_Atomic uint64_t *wp = word_at(m, idx);
		uint64_t lap = t & ~m->mask;
		uint64_t s = atomic_load_explicit(wp, memory_order_seq_cst);
		uint64_t slap = sw_lap(s);

		if (s == sw(lap, 0, SL_FREE)) {
			/* seq_cst: before the close check that follows (try_tx) */
			if (atomic_compare_exchange_strong_explicit(wp, &s,
								    sw(lap, m->me + 1, SL_WRITING),
								    memory_order_seq_cst,
								    memory_order_relaxed)) {
				move_on(m, &h->tail, t);
				c->idx = idx;
				c->pos = t;
				return 0;
			}
			continue;
		}
		if (slap == lap || slap == ((lap + m->g.one_lap) & POSM)) {
			/* claimed at t (or already consumed): move the tail on */
			t = move_on(m, &h->tail, t);
			continue;
		}
		if (((slap + m->g.one_lap) & POSM) == lap) {
			/* the previous lap is still there: full, unless its
			 * holder died */
			unsigned st = sw_state(s);
			if (st == SL_WRITING || st == SL_READING) {
				int g = owner_gone(m, sw_owner(s));
				if (g < 0)
					return g;
				if (g) {
					repair(m, wp, s);
					continue;
				}
			}
			return -EAGAIN;
		}
		/* a stale tail (or a corrupt word: the bound ends it) */
		t = atomic_load_explicit(&h->tail, memory_order_seq_cst);
	}
}

/* A REDO slot was taken: lower the hint, never below 0. */
static void redo_taken(struct shm_hdr *h)
{
	uint32_t n = atomic_load_explicit(&h->redo, memory_order_relaxed);

	while (n && !atomic_compare_exchange_weak_explicit(&h->redo, &n, n - 1,
							   memory_order_relaxed,
							   memory_order_relaxed))
		;
}

/* Take a REDO slot (a dead reader's element): 0 or -EAGAIN. */
static int claim_redo(struct mr__shm *m, struct claim *c)
{
	for (uint64_t i = 0; i < m->g.capacity; i++) {
		_Atomic uint64_t *wp = word_at(m, i);
		uint64_t s = atomic_load_explicit(wp, memory_order_acquire);
		if (sw_state(s) != SL_REDO)
			continue;
		if (atomic_compare_exchange_strong_explicit(wp, &s, sw(sw_lap(s), m->me + 1, SL_READING),
							    memory_order_seq_cst,
							    memory_order_relaxed)) {
			redo_taken(m->h);
			c->idx = i;
			c->pos = (sw_lap(s) | i) & POSM;
			return 0;
		}
	}
	return -EAGAIN;
}

/* Claim the head slot: 0, -EAGAIN (empty), -EINPROGRESS (the next element
 * is still being written by a live sender) or -EPROTO. */
static int claim_rx(struct mr__shm *m, struct claim *c)
{
	struct shm_hdr *h = m->h;
	uint64_t steps = 0, bound = step_bound(m);
	uint64_t hp = atomic_load_explicit(&h->head, memory_order_seq_cst);

	for (;;) {
		uint64_t idx = hp & m->mask;
		if ((hp & ~POSM) || idx >= m->g.capacity || ++steps > bound)
			return -EPROTO;
		_Atomic uint64_t *wp = word_at(m, idx);
		uint64_t lap = hp & ~m->mask;
		uint64_t s = atomic_load_explicit(wp, memory_order_seq_cst);
		uint64_t slap = sw_lap(s);
		unsigned st = sw_state(s);
		bool prev = ((slap + m->g.one_lap) & POSM) == lap;

		if ((slap == lap && (st == SL_READY || st == SL_REDO)) || (prev && st == SL_REDO)) {
			/* ours to read: this lap's element, or the previous
			 * lap's that a dead reader held (the head passed it) */
			if (!atomic_compare_exchange_strong_explicit(
				    wp, &s, sw(slap, m->me + 1, SL_READING), memory_order_seq_cst,
				    memory_order_relaxed))
				continue;
			if (st == SL_REDO)
				redo_taken(h);
			else
				move_on(m, &h->head, hp);
			c->idx = idx;
			c->pos = (slap | idx) & POSM;
			return 0;
		}
		if (slap == lap) {
			if (st == SL_FREE)
				break; /* empty */
			if (st == SL_WRITING) {
				int g = owner_gone(m, sw_owner(s));
				if (g < 0)
					return g;
				if (g) {
					repair(m, wp, s);
					continue;
				}
				return -EINPROGRESS; /* not written yet */
			}
			/* READING (or junk): taken, move the head on */
		} else if (prev) {
			/* the previous lap's element is still being read:
			 * nothing can be at hp yet */
			break;
		} else if (slap != ((lap + m->g.one_lap) & POSM)) {
			/* a stale head (or a corrupt word: the bound ends it) */
			hp = atomic_load_explicit(&h->head, memory_order_seq_cst);
			continue;
		}
		hp = move_on(m, &h->head, hp);
	}
	/* REDO elsewhere (a hint: a reaper killed mid-way may leave it off
	 * by one; the head finds every REDO slot when it comes round) */
	if (atomic_load_explicit(&h->redo, memory_order_relaxed))
		return claim_redo(m, c);
	return -EAGAIN;
}

/*
 * Could a sleeper of `side` make progress now (the agent's look after it
 * armed the word)? Exact enough never to say yes for ever to a state in
 * which a try would fail: a slot held by a live process is "no"; one held
 * by a dead one is "no" too, its reaping kicks the word. Reads only.
 */
static bool side_ready(struct mr__shm *m, int side)
{
	struct shm_hdr *h = m->h;

	if (atomic_load_explicit(&h->state, memory_order_seq_cst))
		return true; /* closed, or a death: let them look */
	_Atomic uint64_t *word = side ? &h->tail : &h->head;
	uint64_t p = atomic_load_explicit(word, memory_order_seq_cst) & POSM;
	uint64_t idx = p & m->mask, lap = p & ~m->mask;
	if (idx >= m->g.capacity)
		return true; /* corrupt: the try says so */
	uint64_t s = atomic_load_explicit(word_at(m, idx), memory_order_seq_cst);
	uint64_t slap = sw_lap(s);
	unsigned st = sw_state(s);
	if (side) /* senders: anything but the previous lap still there */
		return ((slap + m->g.one_lap) & POSM) != lap;
	/* (not the redo hint: a stale one would make the agent fire for
	 * ever; a reap kicks the word when it makes a REDO) */
	if (slap == lap)
		return st != SL_FREE && st != SL_WRITING;
	if (((slap + m->g.one_lap) & POSM) == lap)
		return st == SL_REDO;
	return true;
}

/*
 * Progress on one side: wake who waits for it. Across processes: if the
 * side's word says someone sleeps, clear the bit as the sequence moves
 * (+1 carries it over) and wake them all, once: later progress finds the
 * bit clear and makes no system call. In this process through chan.c's
 * flag (true: the caller wakes one of ours, busy is raised for it). The
 * publish before this was a seq_cst read-modify-write: with the sleeper's
 * arm() before its last look, one of the two sees the other.
 */
static bool notify(struct mr__shm *m, int side)
{
	struct mr_chan *ch = m->ch;
	_Atomic uint32_t *q = seq_of(m->h, side);
	uint32_t w = atomic_load_explicit(q, memory_order_seq_cst);

	while (w & SEQ_WAITING) {
		if (atomic_compare_exchange_weak_explicit(q, &w, w + 1, memory_order_seq_cst,
							  memory_order_relaxed)) {
			sfutex_wake_all(q);
			break;
		}
	}
	bool local = atomic_load_explicit(side ? &ch->q.head : &ch->q.tail, memory_order_seq_cst) &
		     (side ? POS_TXW : POS_RXW);
	if (local)
		atomic_fetch_add_explicit(&ch->q.busy, 1, memory_order_relaxed);
	return local;
}

/* Publish a claimed slot. 0 or -EPROTO; *wake gets WAKE_RX when receivers
 * of this process must be woken (busy raised for it). */
static int commit_slot(struct mr__shm *m, const struct claim *c, unsigned *wake)
{
	uint64_t s = sw(c->pos & ~m->mask, m->me + 1, SL_WRITING);

	if (!atomic_compare_exchange_strong_explicit(word_at(m, c->idx), &s,
						     sw(c->pos & ~m->mask, 0, SL_READY),
						     memory_order_seq_cst, memory_order_relaxed))
		return -EPROTO;
	if (notify(m, 0))
		*wake |= WAKE_RX;
	return 0;
}

/* Free a slot held in state `from` for the next lap: a release, or a
 * discarded loan (which receivers waiting at it must pass over too). */
static int free_slot(struct mr__shm *m, const struct claim *c, unsigned from, unsigned *wake)
{
	uint64_t lap = c->pos & ~m->mask;
	uint64_t s = sw(lap, m->me + 1, from);

	if (!atomic_compare_exchange_strong_explicit(word_at(m, c->idx), &s,
						     sw(lap + m->g.one_lap, 0, SL_FREE),
						     memory_order_seq_cst, memory_order_relaxed))
		return -EPROTO;
	if (notify(m, 1))
		*wake |= WAKE_TX;
	if (from == SL_WRITING && notify(m, 0))
		*wake |= WAKE_RX;
	return 0;
}

/* Wake this process's sleepers that *wake names (chan.c drops busy). */
static void wake_local(struct mr_chan *ch, unsigned wake)
{
	if (wake & WAKE_RX)
		mr__chan_wake_other(ch, true);
	if (wake & WAKE_TX)
		mr__chan_wake_other(ch, false);
}

/* ---- chan.c's entry points ------------------------------------------------------- */

/* A send or loan: claim, then look at the state again (a close or a reset
 * that came between our first look and the claim: give the slot up). */
static int try_tx(struct mr__shm *m, int op, void *elem, unsigned *wake)
{
	uint32_t state = atomic_load_explicit(&m->h->state, memory_order_acquire);
	struct claim c;
	int r;

	if (!(m->sides & MR_CHAN_SEND))
		return -EBADF;
	if (state & ST_CLOSED)
		return -EPIPE;
	if ((state & ST_DIED_RX) && other_side_dead(m, 1))
		return -ECONNRESET;
	if ((r = claim_tx(m, &c)))
		return r;
	/* seq_cst on both sides: a close (fetch_or) is either seen here or
	 * comes after our claim, which its receivers then wait for */
	state = atomic_load_explicit(&m->h->state, memory_order_seq_cst);
	if (state & ST_CLOSED) {
		/* The close wakes every sleeper itself (and our caller may
		 * hold the channel's lock): drop what notify() raised. */
		free_slot(m, &c, SL_WRITING, wake);
		return -EPIPE;
	}
	if (op == MR__OP_LOAN) {
		if ((r = open_note(m, &c, SL_WRITING))) {
			free_slot(m, &c, SL_WRITING, wake); /* skipped */
			return r;
		}
		*(void **)elem = slot_data(m, c.idx);
		return 0;
	}
	elem_copy(slot_data(m, c.idx), elem, m->g.elem_size);
	return commit_slot(m, &c, wake);
}

static int try_rx(struct mr__shm *m, int op, void *elem, unsigned *wake)
{
	struct claim c;
	int r;

	if (!(m->sides & MR_CHAN_RECV))
		return -EBADF;
	r = claim_rx(m, &c);
	if (r == -EAGAIN) {
		/* empty: closed, or every sender died? Look at the ring again
		 * after the state: what was sent before it is still received */
		uint32_t state = atomic_load_explicit(&m->h->state, memory_order_seq_cst);
		bool closed = state & ST_CLOSED;
		if (closed || ((state & ST_DIED_TX) && other_side_dead(m, 0))) {
			r = claim_rx(m, &c);
			if (r == -EAGAIN)
				return closed ? -EPIPE : -ECONNRESET;
		}
	}
	if (r == -EINPROGRESS)
		return -EAGAIN; /* a live sender is writing the next element */
	if (r)
		return r;
	if (op == MR__OP_BORROW) {
		if ((r = open_note(m, &c, SL_READING))) {
			/* give it back for another receiver, as a dead
			 * reader's would be */
			uint64_t s = sw(c.pos & ~m->mask, m->me + 1, SL_READING);
			repair(m, word_at(m, c.idx), s);
			return r;
		}
		*(const void **)elem = slot_data(m, c.idx);
		return 0;
	}
	elem_copy(elem, slot_data(m, c.idx), m->g.elem_size);
	return free_slot(m, &c, SL_READING, wake);
}

/*
 * One try of a send, receive, loan or borrow: 0, MR__Q_WAKE (done, and a
 * sleeper of this process on the other side must be woken: busy raised),
 * -EAGAIN, -EPIPE, -ECONNRESET, -EBADF or -EPROTO.
 */
int mr__shm_try(struct mr_chan *ch, int op, void *elem)
{
	struct mr__shm *m = ch->ext;
	unsigned wake = 0;
	bool tx = mr__op_sends(op);
	int r = tx ? try_tx(m, op, elem, &wake) : try_rx(m, op, elem, &wake);

	if (r == -EAGAIN) {
		/* A peer that attached since we last looked is watched from
		 * now on, so that its death ends even a loop of tries. One
		 * load when nobody attached. */
		watch_peers(m);
		return r;
	}
	/* a send wakes a receiver of ours, a receive a sender */
	if (r == 0)
		return wake ? MR__Q_WAKE : 0;
	/* A slot given up on the way (after a close, or without memory for
	 * a loan's note): the sleepers it would wake look again anyway (a
	 * close wakes them all), and our caller may hold the channel's lock:
	 * drop what notify() raised. */
	if (wake & WAKE_RX)
		atomic_fetch_sub_explicit(&ch->q.busy, 1, memory_order_release);
	if (wake & WAKE_TX)
		atomic_fetch_sub_explicit(&ch->q.busy, 1, memory_order_release);
	return r;
}

/*
 * Where a loan or borrow pointer is: its slot and the position it holds.
 * -EINVAL: not one of our open loans (borrows); -EPROTO: it was, but a
 * peer rewrote its slot's word meanwhile (the note is dropped: the slot
 * is no longer ours to give back).
 */
static int slot_of(struct mr__shm *m, const void *p, unsigned state, struct claim *c)
{
	const unsigned char *b = p;

	if (!p || b < m->data || b >= m->data + m->g.stride * m->g.capacity ||
	    (size_t)(b - m->data) % m->g.stride)
		return -EINVAL;
	if (!open_take(m, (size_t)(b - m->data) / m->g.stride, state, c))
		return -EINVAL;
	uint64_t s = atomic_load_explicit(word_at(m, c->idx), memory_order_seq_cst);
	if (s != sw(c->pos & ~m->mask, m->me + 1, state))
		return -EPROTO;
	return 0;
}

/* Commit, discard or release a loan / borrow. */
int mr__shm_give_back(struct mr_chan *ch, int how, const void *p)
{
	struct mr__shm *m = ch->ext;
	struct claim c;
	unsigned wake = 0;
	int r;

	if ((r = slot_of(m, p, how == MR__GIVE_RELEASE ? SL_READING : SL_WRITING, &c)))
		return r;
	if (how == MR__GIVE_COMMIT)
		r = commit_slot(m, &c, &wake);
	else
		r = free_slot(m, &c, how == MR__GIVE_DISCARD ? SL_WRITING : SL_READING, &wake);
	wake_local(ch, wake);
	return r;
}

/*
 * chan.c queued a sleeper of this process for `op` (under the channel's
 * lock) and set its local flag: make sure the agent watches the side's
 * sequence, counted among its waiters, before chan.c looks at the ring
 * once more.
 */
void mr__shm_want(struct mr_chan *ch, int op)
{
	struct mr__shm *m = ch->ext;
	int side = mr__op_sends(op);

	watch_peers(m);
	if (m->want[side])
		return;
	pthread_mutex_lock(&proc_lock);
	if (nwatches == watch_cap) {
		unsigned cap = watch_cap ? 2 * watch_cap : 16;
		struct watch *nw = realloc(watches, cap * sizeof(*nw));
		if (!nw) {
			pthread_mutex_unlock(&proc_lock);
			mr__die("mr_chan", "no memory to watch a shared-memory channel");
		}
		watches = nw;
		watch_cap = cap;
	}
	if (!agent_started) {
		thread_named(agent_main, "moirai-shm");
		agent_started = true;
	}
	struct watch *w = &watches[nwatches++];
	w->m = m;
	w->side = side;
	/* the agent arms the word and looks at the ring itself before it
	 * sleeps: a wake-up that comes before then is not lost */
	w->seen = atomic_load_explicit(seq_of(m->h, side), memory_order_acquire);
	w->armed = false;
	m->want[side] = true;
	atomic_fetch_add_explicit(&doorbell, 1, memory_order_release);
	pthread_mutex_unlock(&proc_lock);
	mr__futex_wake(&doorbell, 1);
}

/* Stop watching a side (with proc_lock held, and the channel's lock). */
static void unwant(struct mr__shm *m, int side)
{
	for (unsigned i = 0; i < nwatches; i++) {
		if (watches[i].m != m || watches[i].side != side)
			continue;
		watches[i] = watches[--nwatches];
		m->want[side] = false;
		atomic_fetch_add_explicit(&doorbell, 1, memory_order_release);
		mr__futex_wake(&doorbell, 1);
		return;
	}
}

/*
 * A plain thread (not a worker) blocks here, waiting on the side's sequence
 * itself: a spin while the other process is probably running, then the
 * futex. Returns what the operation returned (never -EAGAIN).
 */
int mr__shm_wait(struct mr_chan *ch, int op, void *elem, int64_t deadline)
{
	struct mr__shm *m = ch->ext;
	struct shm_hdr *h = m->h;
	int side = mr__op_sends(op); /* the side we wait as: 0 receivers, 1 senders */
	int64_t spin_until = (int64_t)mr__now_ns() + MR__SHM_SPIN_NS;
	unsigned n = 0;
	int r;

	/* destroy aborts while we wait (these waiters are in no queue) */
	atomic_fetch_add_explicit(&m->thread_waits, 1, memory_order_relaxed);
	MR__STAT_SELF(chan_blocks, 1);
	MR_PROBE3(chan_block, ch, op, "shm");

	/* Spin: look at the one slot we wait for, backing off, so that our
	 * reads do not keep taking its line from the writer; try for real
	 * when it looks ready. */
	for (;;) {
		r = mr__shm_try(ch, op, elem);
		if (r != -EAGAIN)
			goto done;
		do {
			for (unsigned k = 1u << (n < 6 ? n : 6); k; k--)
				mr__cpu_relax();
			if ((++n & 15) == 0) {
				int64_t now = (int64_t)mr__now_ns();
				if (deadline >= 0 && now >= deadline) {
					r = -ETIMEDOUT;
					goto done;
				}
				if (now >= spin_until)
					goto sleep;
			}
		} while (!side_ready(m, side));
	}
sleep:
	for (;;) {
		watch_peers(m);
		uint32_t seen = arm(seq_of(h, side));
		r = mr__shm_try(ch, op, elem);
		if (r == -EAGAIN) {
			if (deadline >= 0 && (int64_t)mr__now_ns() >= deadline)
				r = -ETIMEDOUT;
			else
				sfutex_wait(seq_of(h, side), seen, deadline);
		}
		if (r != -EAGAIN)
			break;
	}
done:
	atomic_fetch_sub_explicit(&m->thread_waits, 1, memory_order_release);
	if (r == MR__Q_WAKE) {
		mr__chan_wake_other(ch, mr__op_sends(op));
		r = 0;
	}
	return r;
}

size_t mr__shm_len(const struct mr_chan *ch)
{
	const struct mr__shm *m = ch->ext;
	uint64_t t = atomic_load_explicit(&m->h->tail, memory_order_acquire) & POSM;
	uint64_t hp = atomic_load_explicit(&m->h->head, memory_order_acquire) & POSM;
	unsigned shift = (unsigned)__builtin_ctzll(m->g.one_lap);
	uint64_t laps = ((t >> shift) - (hp >> shift)) & (POSM >> shift);
	uint64_t n = laps * m->g.capacity + (t & m->mask) - (hp & m->mask);

	return n > m->g.capacity ? (size_t)m->g.capacity : (size_t)n;
}

bool mr__shm_closed(const struct mr_chan *ch)
{
	const struct mr__shm *m = ch->ext;

	return atomic_load_explicit(&m->h->state, memory_order_acquire) & ST_CLOSED;
}

/* Close for every process: -EPIPE if it was closed already. */
int mr__shm_close(struct mr_chan *ch)
{
	struct mr__shm *m = ch->ext;

	/* seq_cst: against a sender's claim and its look at the state
	 * (try_tx), and a receiver's empty ring and look (try_rx) */
	if (atomic_fetch_or_explicit(&m->h->state, ST_CLOSED, memory_order_seq_cst) & ST_CLOSED)
		return -EPIPE;
	kick_both(m->h);
	return 0;
}

/* ---- open, attach, detach ---------------------------------------------------------- */

static int64_t now_ns(void)
{
	return (int64_t)mr__now_ns();
}

static void nap_ms(int ms)
{
	struct timespec ts = { 0, ms * 1000000L };
	nanosleep(&ts, NULL);
}

/* Check the header against what layout() makes of its parameters. */
static int validate(const struct shm_hdr *h, uint64_t size, const struct stat *st,
		    struct geom *g)
{
	if (size < sizeof(*h) || h->magic != SHM_MAGIC ||
	    atomic_load_explicit(&h->version, memory_order_acquire) != SHM_VERSION ||
	    h->hdr_size != sizeof(*h))
		return -EBADMSG;
	if (layout(g, h->elem_size, h->elem_align, h->capacity))
		return -EBADMSG;
	if (h->one_lap != g->one_lap || h->stride != g->stride || h->att_off != g->att_off ||
	    h->words_off != g->words_off || h->data_off != g->data_off || h->total != g->total ||
	    g->total > size || h->uid != st->st_uid)
		return -EBADMSG;
	return 0;
}

static void fill_header(struct shm_hdr *h, const struct geom *g)
{
	h->hdr_size = sizeof(*h);
	h->elem_size = g->elem_size;
	h->elem_align = g->elem_align;
	h->capacity = g->capacity;
	h->one_lap = g->one_lap;
	h->stride = g->stride;
	h->att_off = g->att_off;
	h->words_off = g->words_off;
	h->data_off = g->data_off;
	h->total = g->total;
	h->uid = (uint32_t)geteuid();
	h->creator_start = boot_ns();
	h->magic = SHM_MAGIC;
}

/* Attach: take a free attachment. 0 or -EUSERS. */
static int attach(struct mr__shm *m)
{
	for (unsigned o = 0; o < MR_CHAN_SHM_ATTACH_MAX; o++) {
		struct shm_att *a = &m->att[o];
		uint64_t w = atomic_load_explicit(&a->word, memory_order_acquire);
		if (at_state(w) != AT_FREE)
			continue;
		uint64_t c = at_word(AT_CLAIMING, at_gen(w), (uint32_t)self_pid);
		if (!atomic_compare_exchange_strong_explicit(&a->word, &w, c, memory_order_acq_rel,
							     memory_order_relaxed))
			continue;
		atomic_store_explicit(&a->start, boot_ns(), memory_order_relaxed);
		atomic_store_explicit(&a->roles, m->sides, memory_order_relaxed);
		uint64_t live = at_word(AT_ALIVE, at_gen(w), (uint32_t)self_pid);
		/* a survivor that took us for dead meanwhile reaped the claim:
		 * look for another entry */
		if (!atomic_compare_exchange_strong_explicit(&a->word, &c, live,
							     memory_order_seq_cst,
							     memory_order_relaxed))
			continue;
		m->me = o;
		m->my_word = live;
		uint32_t clear = ((m->sides & MR_CHAN_SEND) ? ST_DIED_TX : 0) |
				 ((m->sides & MR_CHAN_RECV) ? ST_DIED_RX : 0);
		atomic_fetch_and_explicit(&m->h->state, ~clear, memory_order_acq_rel);
		atomic_fetch_add_explicit(&m->h->attach_gen, 1, memory_order_release);
		kick_both(m->h);
		return 0;
	}
	return -EUSERS;
}

int mr__chan_check_name(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > MR_CHAN_NAME_MAX || !strcmp(name, ".") || !strcmp(name, ".."))
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return -EINVAL;
	}
	return 0;
}

int mr__shm_path(const char *name, char *out, size_t n)
{
	int r = mr__chan_check_name(name);

	if (r)
		return r;
	snprintf(out, n, "%s%s", SHM_PREFIX, name);
	return 0;
}

/* An uninitialised segment whose creator is gone (or never wrote its pid):
 * true, and the name was removed. */
static bool remove_if_orphan(const char *path)
{
	char file[sizeof(SHM_DIR) + sizeof(SHM_PREFIX) + MR_CHAN_NAME_MAX];
	struct stat st;
	bool orphan = false;

	snprintf(file, sizeof(file), "%s%s", SHM_DIR, path);
	if (stat(file, &st) < 0 || st.st_uid != geteuid())
		return false;
	chmod(file, 0600);
	int fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
	if (fd < 0)
		return false;
	if (fstat(fd, &st) == 0 && (uint64_t)st.st_size >= sizeof(struct shm_hdr)) {
		struct shm_hdr *h = mmap(NULL, sizeof(*h), PROT_READ, MAP_SHARED, fd, 0);
		if (h != MAP_FAILED) {
			uint32_t pid = h->creator_pid;
			if (atomic_load_explicit(&h->version, memory_order_acquire) != SHM_VERSION &&
			    (pid == 0 || !pid_alive((pid_t)pid, h->creator_start)))
				orphan = true;
			munmap(h, sizeof(*h));
		}
	} else {
		orphan = true; /* not even truncated */
	}
	close(fd);
	if (orphan)
		shm_unlink(path);
	return orphan;
}

/*
 * Make the segment as an unnamed file in /dev/shm, initialise it whole,
 * give it its mode, and only then link it under the name (EEXIST when
 * taken): no opener ever sees it half made, and a creator killed on the
 * way leaves nothing behind. 0, -EEXIST, -ENOTSUP (no O_TMPFILE or no way
 * to link it: create() does it the old way) or -errno.
 */
static int create_linked(const char *path, const struct geom *g, unsigned mode, int *fdp)
{
	char file[sizeof(SHM_DIR) + sizeof(SHM_PREFIX) + MR_CHAN_NAME_MAX];
	char proc[64];
	int fd = open(SHM_DIR, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600), e;

	if (fd < 0)
		return errno == ENOENT || errno == EISDIR || errno == EOPNOTSUPP ||
				       errno == EINVAL
			       ? -ENOTSUP
			       : -errno;
	if (ftruncate(fd, (off_t)g->total) < 0) {
		e = -errno;
		goto fail;
	}
	if ((e = -posix_fallocate(fd, 0, (off_t)g->total)))
		goto fail;
	struct shm_hdr *h = mmap(NULL, sizeof(*h), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (h == MAP_FAILED) {
		e = -errno;
		goto fail;
	}
	h->creator_pid = (uint32_t)self_pid;
	h->creator_start = boot_ns();
	fill_header(h, g);
	/* the file is zeroes: every slot FREE at lap 0, no attachment */
	atomic_store_explicit(&h->version, SHM_VERSION, memory_order_release);
	munmap(h, sizeof(*h));
	if (fchmod(fd, mode) < 0) {
		e = -errno;
		goto fail;
	}
	snprintf(file, sizeof(file), "%s%s", SHM_DIR, path);
	/* by the descriptor (needs CAP_DAC_READ_SEARCH), else through /proc */
	if (linkat(fd, "", AT_FDCWD, file, AT_EMPTY_PATH) < 0) {
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		if (errno == EEXIST ||
		    linkat(AT_FDCWD, proc, AT_FDCWD, file, AT_SYMLINK_FOLLOW) < 0) {
			e = errno == ENOENT && access(proc, F_OK) < 0 ? -ENOTSUP : -errno;
			goto fail;
		}
	}
	/* map it through its name, as attachers do (what /proc/PID/maps and
	 * lsof show), if the name is still this file */
	struct stat mine, named;
	int nfd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
	if (nfd >= 0 && fstat(fd, &mine) == 0 && fstat(nfd, &named) == 0 &&
	    mine.st_ino == named.st_ino && mine.st_dev == named.st_dev) {
		close(fd);
		fd = nfd;
	} else if (nfd >= 0) {
		close(nfd);
	}
	*fdp = fd;
	return 0;
fail:
	close(fd);
	return e == -EFBIG || e == -EINVAL ? -ENOSPC : e;
}

/* The old way, where /dev/shm cannot make unnamed files: created with no
 * permissions, initialised, the version published, then the mode; an
 * opener meeting mode 0 waits for it (mr__shm_open). */
static int create(const char *path, const struct geom *g, unsigned mode, int *fdp)
{
	int r = create_linked(path, g, mode, fdp);

	if (r != -ENOTSUP)
		return r;
	int fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	/* Our pid first, before the slow part (allocating a big segment
	 * takes a while): an opener that waits too long removes the
	 * segment only if its creator is dead (remove_if_orphan). */
	int e = 0;
	struct shm_hdr *h = MAP_FAILED;
	if (fchmod(fd, 0) < 0 || ftruncate(fd, (off_t)sizeof(*h)) < 0)
		goto fail;
	h = mmap(NULL, sizeof(*h), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (h == MAP_FAILED)
		goto fail;
	h->creator_pid = (uint32_t)self_pid;
	h->creator_start = boot_ns();
	munmap(h, sizeof(*h));
	/* allocated now, not as touched: a full /dev/shm is ENOSPC here,
	 * not a SIGBUS in some later send */
	if (ftruncate(fd, (off_t)g->total) < 0)
		e = -errno;
	else
		e = -posix_fallocate(fd, 0, (off_t)g->total);
	if (e) {
		shm_unlink(path);
		close(fd);
		return e == -EFBIG || e == -EINVAL ? -ENOSPC : e;
	}
	h = mmap(NULL, sizeof(*h), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (h == MAP_FAILED)
		goto fail;
	fill_header(h, g);
	/* the segment is zeroes: every slot FREE at lap 0, no attachment */
	atomic_store_explicit(&h->version, SHM_VERSION, memory_order_release);
	munmap(h, sizeof(*h));
	if (fchmod(fd, mode) < 0)
		goto fail;
	*fdp = fd;
	return 0;
fail:
	e = -errno;
	shm_unlink(path);
	close(fd);
	return e;
}

static void list_add(struct mr__shm *m)
{
	m->next = handles;
	m->prev = NULL;
	if (handles)
		handles->prev = m;
	handles = m;
}

static void list_del(struct mr__shm *m)
{
	if (m->prev)
		m->prev->next = m->next;
	else
		handles = m->next;
	if (m->next)
		m->next->prev = m->prev;
}

int mr__shm_open(struct mr_chan *ch, const char *name, const struct mr_chan_open_opts *o)
{
	char path[sizeof(SHM_PREFIX) + MR_CHAN_NAME_MAX];
	struct geom want = { 0 }, g;
	struct stat st;
	int fd = -1, r;
	bool creator = false;
	unsigned flags = o ? o->flags : 0;
	int64_t timeout = o && o->timeout_ns > 0 ? o->timeout_ns : 1000000000;

	if ((r = mr__shm_path(name, path, sizeof(path))))
		return r;
	if (flags & MR_CHAN_CREATE) {
		if (!o->elem_size || !o->capacity)
			return -EINVAL;
		if ((r = layout(&want, o->elem_size, o->elem_align ? o->elem_align : 8,
				o->capacity)))
			return r == -EFBIG ? -ENOMEM : r;
	} else if (o && o->elem_align && (o->elem_align > 4096 || (o->elem_align & (o->elem_align - 1)))) {
		return -EINVAL;
	}
	if (o && (o->mode & ~07777u))
		return -EINVAL;

	pthread_mutex_lock(&proc_lock);
	r = proc_init();
	pthread_mutex_unlock(&proc_lock);
	if (r)
		return r;

	int64_t until = now_ns() + timeout;
	for (;;) {
		if (flags & MR_CHAN_CREATE) {
			r = create(path, &want, o->mode ? o->mode : 0600, &fd);
			if (r == 0) {
				creator = true;
				break;
			}
			if (r != -EEXIST)
				return r;
			if (flags & MR_CHAN_EXCL)
				return -EEXIST;
		}
		fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
		if (fd >= 0) {
			if (fstat(fd, &st) < 0) {
				r = -errno;
				close(fd);
				return r;
			}
			/* a creator wanting a name finds someone else's: refused
			 * (else another uid could squat a name and read what we
			 * send); plain attachers go by the permission bits */
			if ((flags & MR_CHAN_CREATE) && st.st_uid != geteuid()) {
				close(fd);
				return -EACCES;
			}
			/* mode 0: its creator is still at it (root opens it
			 * anyway); any other mode came after the version */
			if (st.st_mode & 07777) {
				uint32_t v = 0;
				if ((uint64_t)st.st_size >= sizeof(struct shm_hdr)) {
					struct shm_hdr *h = mmap(NULL, sizeof(*h), PROT_READ,
								 MAP_SHARED, fd, 0);
					if (h == MAP_FAILED) {
						r = -errno;
						close(fd);
						return r;
					}
					v = atomic_load_explicit(&h->version, memory_order_acquire);
					munmap(h, sizeof(*h));
				}
				if (v == SHM_VERSION)
					break;
				close(fd);
				return -EBADMSG;
			}
			close(fd);
			fd = -1;
		} else if (errno == ENOENT) {
			if (!(flags & MR_CHAN_CREATE))
				return -ENOENT;
			continue; /* removed meanwhile: create it */
		} else if (errno != EACCES) {
			return -errno;
		} else {
			char file[sizeof(SHM_DIR) + sizeof(path)];
			snprintf(file, sizeof(file), "%s%s", SHM_DIR, path);
			if (stat(file, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & 07777))
				return -EACCES;
		}
		if (now_ns() >= until) {
			if (remove_if_orphan(path))
				continue;
			return -ETIMEDOUT;
		}
		nap_ms(1);
	}

	/* map it whole and check it */
	if (fstat(fd, &st) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	if ((uint64_t)st.st_size < sizeof(struct shm_hdr) || (uint64_t)st.st_size > SHM_SIZE_MAX) {
		close(fd);
		return -EBADMSG;
	}
	void *base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_NORESERVE, fd, 0);
	close(fd);
	if (base == MAP_FAILED)
		return -errno;
	struct shm_hdr *h = base;
	if ((r = validate(h, (uint64_t)st.st_size, &st, &g)))
		goto unmap;
	if (o && ((o->elem_size && o->elem_size != g.elem_size) ||
		  (o->capacity && o->capacity != g.capacity) ||
		  (o->elem_align && o->elem_align != g.elem_align))) {
		r = -EPROTOTYPE;
		goto unmap;
	}

	struct mr__shm *m = calloc(1, sizeof(*m));
	if (!m) {
		r = -ENOMEM;
		goto unmap;
	}
	m->h = h;
	m->map_len = (size_t)st.st_size;
	m->dev = st.st_dev;
	m->ino = st.st_ino;
	m->g = g;
	m->mask = g.one_lap - 1;
	m->att = (struct shm_att *)((char *)base + g.att_off);
	m->words = (unsigned char *)base + g.words_off;
	m->data = (unsigned char *)base + g.data_off;
	m->sides = flags & (MR_CHAN_SEND | MR_CHAN_RECV);
	if (!m->sides)
		m->sides = MR_CHAN_SEND | MR_CHAN_RECV;
	m->creator = creator;
	m->ch = ch;
	snprintf(m->name, sizeof(m->name), "%s", path);
	atomic_store_explicit(&m->seen_gen, atomic_load(&h->attach_gen) - 1, memory_order_relaxed);
	if ((r = attach(m))) {
		free(m);
		goto unmap;
	}
	ch->ext = m;
	ch->q.elem_size = g.elem_size;
	ch->q.cap = g.capacity;
	pthread_mutex_lock(&proc_lock);
	list_add(m);
	pthread_mutex_unlock(&proc_lock);
	atomic_store_explicit(&m->seen_gen, atomic_load(&h->attach_gen) - 1, memory_order_relaxed);
	watch_peers(m);
	return 0;
unmap:
	munmap(base, (size_t)st.st_size);
	if (creator)
		shm_unlink(path);
	return r;
}

/* Destroy of a shm handle (no sleeper of ours waits: chan.c checked). */
void mr__shm_detach(struct mr_chan *ch)
{
	struct mr__shm *m = ch->ext;
	unsigned k = 0;

	if (atomic_load_explicit(&m->open_slots, memory_order_relaxed))
		mr__die("mr_chan_destroy", "channel %p has loans or borrows not given back",
			(void *)ch);
	if (atomic_load_explicit(&m->thread_waits, memory_order_acquire))
		mr__die("mr_chan_destroy", "channel %p has a thread waiting on it", (void *)ch);
	pthread_mutex_lock(&proc_lock);
	unwant(m, 0);
	unwant(m, 1);
	list_del(m);
	pthread_mutex_unlock(&proc_lock);
	/* the agent may be waking our (no longer queued) sleepers */
	while (atomic_load_explicit(&firing, memory_order_acquire) == m)
		mr__backoff(&k);
	uint64_t w = m->my_word;
	atomic_store_explicit(&m->att[m->me].roles, 0, memory_order_relaxed);
	atomic_store_explicit(&m->att[m->me].start, 0, memory_order_relaxed);
	atomic_compare_exchange_strong_explicit(&m->att[m->me].word, &w,
						at_word(AT_FREE, at_gen(w) + 1, 0),
						memory_order_acq_rel, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->h->attach_gen, 1, memory_order_release);
	kick_both(m->h);
	/* The creator takes the name with it, if the name is still this
	 * segment's (an unlink and a new create may have given it to
	 * another). */
	if (m->creator) {
		char file[sizeof(SHM_DIR) + sizeof(m->name)];
		struct stat st;
		snprintf(file, sizeof(file), "%s%s", SHM_DIR, m->name);
		if (stat(file, &st) == 0 && st.st_dev == m->dev && st.st_ino == m->ino)
			shm_unlink(m->name);
	}
	munmap(m->h, m->map_len);
	free(m->opens);
	free(m);
}

int mr__shm_unlink(const char *name)
{
	char path[sizeof(SHM_PREFIX) + MR_CHAN_NAME_MAX];
	int r = mr__shm_path(name, path, sizeof(path));

	if (r)
		return r;
	return shm_unlink(path) < 0 ? -errno : 0;
}
