/*
 * stack.c - fiber stacks: guarded below, carved from large mappings, pooled.
 *
 * A guard made with mprotect splits its mapping: two VMAs per stack, and
 * vm.max_map_count (65530 by default) caps a process at ~32k guarded stacks.
 * So default-size stacks are slots of big MAP_NORESERVE chunks and their
 * guards are installed with madvise(MADV_GUARD_INSTALL) (Linux 6.13+), which
 * marks pages inside one mapping without splitting it. On older kernels the
 * guards fall back to mprotect, and when the mappings run out the error
 * names the limit (errno ENOMEM; the message is kept for mr__stack_error()).
 *
 * Slot layout, low to high: [guard][usable stack ... top]. The guard is
 * mr__stack_guard() bytes (64 KiB, see fiber.h for why so many), so that a
 * frame that skips pages without touching them still lands in it instead
 * of in the stack below. The fiber's control block lives at the top of its
 * stack, so a parked fiber costs the stack pages it touched and nothing
 * else.
 *
 * Free default-size stacks go to the freeing worker's cache (a plain array,
 * no lock), overflowing into a process-wide list under a mutex. Stacks are
 * never unmapped: their pages stay resident and warm for the next fiber
 * (pages a deep call touched once stay too - the price of no syscall per
 * spawn). Other sizes get a mapping of their own, unmapped when freed.
 * A new chunk's guards go in with one process_madvise() call, and the top
 * page of each of its slots is populated with another (see grow_pool()):
 * a chunk not yet used costs up to CHUNK_SLOTS resident pages.
 *
 * munmap fails only on misuse (a bad range: our stack descriptor was
 * overwritten, so we abort) or with ENOMEM, when the range is part of a
 * bigger VMA (the kernel merged the mapping with a neighbour) and
 * splitting it would pass vm.max_map_count. Then the stack is kept: its
 * pages are dropped (MADV_DONTNEED, which splits nothing) and the next
 * stack of that size reuses it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fiber.h"

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

#define CHUNK_SLOTS 64

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static void **pool;	/* free default-size stack bases */
static size_t npool, pool_cap;
static size_t nslots; /* every default-size stack ever mapped: pool_cap >= nslots */
static _Atomic int guard_mode; /* 0 unknown, 1 madvise guards, 2 mprotect */
/* Every chunk ever mapped (pool_lock), for mr__stack_each(). */
static char **chunks;
static size_t nchunks, chunks_cap;
/* The stacks of other sizes now allocated, for mr__stack_each(): under
 * big_lock (a leaf), taken out before they are unmapped. Few: only fibers
 * that asked for a stack size of their own; a free looks for its entry. */
static pthread_mutex_t big_lock = PTHREAD_MUTEX_INITIALIZER;
static struct big {
	void *base;
	size_t size;
} *bigs;
static size_t nbigs, bigs_cap;

void (*mr__test_stack_pool_locked)(void); /* test hook: called with pool_lock held */

static size_t page_size(void)
{
	/* relaxed: every thread that races to fill it stores the same value. */
	static _Atomic size_t ps;
	size_t v = atomic_load_explicit(&ps, memory_order_relaxed);

	if (!v) {
		v = (size_t)sysconf(_SC_PAGESIZE);
		atomic_store_explicit(&ps, v, memory_order_relaxed);
	}
	return v;
}

/*
 * Is the page at addr unreadable? process_vm_readv on ourselves reports
 * EFAULT instead of faulting. (qemu-user, for one, answers madvise with
 * success and installs nothing.)
 */
static bool page_is_guarded(void *addr)
{
	char byte;
	struct iovec local = { &byte, 1 }, remote = { addr, 1 };

	return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) < 0 && errno == EFAULT;
}

/* Make [addr, addr+len) a guard. 0 or -errno. */
static int guard(void *addr, size_t len)
{
	int mode = atomic_load_explicit(&guard_mode, memory_order_relaxed);

	if (mode != 2) {
		if (madvise(addr, len, MADV_GUARD_INSTALL) == 0) {
			if (mode == 1)
				return 0;
			/* First guard: check that it guards. */
			if (page_is_guarded(addr)) {
				atomic_store_explicit(&guard_mode, 1, memory_order_relaxed);
				return 0;
			}
			errno = EINVAL; /* accepted but not honoured: fall back */
		}
		if (errno != EINVAL)
			return -errno;
		atomic_store_explicit(&guard_mode, 2, memory_order_relaxed);
	}
	if (mprotect(addr, len, PROT_NONE) == 0)
		return 0;
	return -errno;
}

/* Test hook: called instead of munmap() when set (fiber.h). */
int (*mr__test_munmap)(void *addr, size_t len);

static int unmap(void *addr, size_t len)
{
	if (unlikely(mr__test_munmap))
		return mr__test_munmap(addr, len);
	return munmap(addr, len);
}

/*
 * Unmap [addr, addr + len), a mapping of ours, on an error path. On
 * ENOMEM the range stays mapped with its pages dropped (its address space
 * is lost; we are at the mapping limit anyway).
 */
static void unmap_or_drop(void *addr, size_t len)
{
	if (unmap(addr, len) == 0)
		return;
	if (errno != ENOMEM)
		mr__die("moirai", "munmap of a fiber stack mapping %p (%zu bytes) failed: %s",
			addr, len, strerror(errno));
	madvise(addr, len, MADV_DONTNEED);
}

/* Not printed (the library prints nothing unless it aborts): kept for
 * whoever debugs a NULL from mr_go, e.g. in gdb: p mr__stack_error. */
char mr__stack_error[160];

static void say_limit(const char *what, int err)
{
	snprintf(mr__stack_error, sizeof(mr__stack_error),
		 "%s failed (%s): the process may have reached vm.max_map_count "
		 "(see /proc/sys/vm/max_map_count) or its memory limit",
		 what, strerror(err));
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* A pidfd of this process for process_madvise(), or -1 (pool_lock held). */
static int self_pidfd(void)
{
	static int fd = -1;
	static pid_t fd_pid;
	pid_t pid = getpid();

	if (fd >= 0 && fd_pid == pid)
		return fd;
	if (fd >= 0)
		close(fd); /* a forked child's copy of its parent's pidfd */
	fd = (int)syscall(SYS_pidfd_open, pid, 0);
	fd_pid = pid;
	return fd;
}

/*
 * madvise(advice) of `len` bytes at first, first + stride, ... (n ranges,
 * at most CHUNK_SLOTS) in one process_madvise() call. 0 when every range
 * was advised; -1 otherwise (kernels before 6.13 take only a few advices
 * there), and the caller falls back to one madvise() per range.
 */
static int advise_slots(char *first, size_t stride, size_t len, size_t n, int advice)
{
	struct iovec iov[CHUNK_SLOTS];
	int fd = self_pidfd();

	if (fd < 0 || n > CHUNK_SLOTS)
		return -1;
	for (size_t i = 0; i < n; i++) {
		iov[i].iov_base = first + i * stride;
		iov[i].iov_len = len;
	}
	long r = syscall(SYS_process_madvise, fd, iov, n, advice, 0);
	return r == (long)(n * len) ? 0 : -1;
}

/*
 * Map a chunk of CHUNK_SLOTS default-size slots into the pool (pool_lock
 * held). Once guards are known to work (guard_mode 1), all the chunk's
 * guards are installed with one process_madvise() call, and the top page
 * of every slot (where a fiber's control block and first frames go) is
 * populated with another (MADV_POPULATE_WRITE): the page is allocated and
 * zeroed either way, but then in one syscall instead of one fault per
 * spawn, which is what a spawn cost most (a fault is dear in a VM).
 */
static int grow_pool(void)
{
	size_t ps = page_size(), gs = mr__stack_guard(ps), slot = MR_FIBER_STACK_DEFAULT + gs;
	size_t len = slot * CHUNK_SLOTS;
	char *c = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);

	if (c == MAP_FAILED) {
		say_limit("mmap of a stack chunk", errno);
		return -ENOMEM;
	}
	if (nchunks == chunks_cap) {
		size_t cap = chunks_cap ? 2 * chunks_cap : 64;
		char **p = realloc(chunks, cap * sizeof(*p));
		if (!p) {
			unmap_or_drop(c, len);
			return -ENOMEM;
		}
		chunks = p;
		chunks_cap = cap;
	}
	if (nslots + CHUNK_SLOTS > pool_cap) {
		size_t cap = pool_cap ? pool_cap * 2 : 1024;
		while (cap < nslots + CHUNK_SLOTS)
			cap *= 2;
		void **p = realloc(pool, cap * sizeof(*p));
		if (!p) {
			unmap_or_drop(c, len);
			return -ENOMEM;
		}
		pool = p;
		pool_cap = cap;
	}
	chunks[nchunks++] = c;
	size_t batched = 0, first_slot = nslots;
	if (atomic_load_explicit(&guard_mode, memory_order_relaxed) == 1 &&
	    advise_slots(c, slot, gs, CHUNK_SLOTS, MADV_GUARD_INSTALL) == 0)
		batched = CHUNK_SLOTS;
	for (size_t i = 0; i < batched; i++)
		pool[npool++] = c + i * slot + gs;
	nslots += batched;
	for (size_t i = batched; i < CHUNK_SLOTS; i++) {
		int r = guard(c + i * slot, gs);
		if (r < 0) {
			say_limit("installing a stack guard page", -r);
			/* Slots already guarded stay usable; drop the rest. */
			if (i == 0) {
				nchunks--; /* no dump may read it once unmapped */
				unmap_or_drop(c, len);
				return -ENOMEM;
			}
			break;
		}
		pool[npool++] = c + i * slot + gs;
		nslots++;
	}
	/* Failure is harmless: the first touch faults the page in instead. */
	advise_slots(c + gs + MR_FIBER_STACK_DEFAULT - ps, slot, ps, nslots - first_slot,
		     MADV_POPULATE_WRITE);
	return 0;
}

/* Stacks of other sizes whose munmap failed with ENOMEM (pool_lock). */
struct kept {
	struct kept *next;
	size_t size;
};
static struct kept *_Atomic kept;

static void keep(const struct mr__stack *st, int err)
{
	size_t ps = page_size();

	if (err != ENOMEM)
		mr__die("moirai", "munmap of a fiber stack at %p (%zu bytes) failed: %s", st->base,
			st->size, strerror(err));
	/* All pages but the top one, which holds the list entry. */
	madvise(st->base, st->size - ps, MADV_DONTNEED);
	struct kept *k = (struct kept *)((char *)st->base + st->size - ps);
	k->size = st->size;
	pthread_mutex_lock(&pool_lock);
	/* relaxed: written under pool_lock; take_kept()'s unlocked read is a hint. */
	k->next = atomic_load_explicit(&kept, memory_order_relaxed);
	atomic_store_explicit(&kept, k, memory_order_relaxed);
	pthread_mutex_unlock(&pool_lock);
}

/* A kept stack of this size (its base), or NULL. */
static void *take_kept(size_t size)
{
	void *base = NULL;

	/* relaxed: a hint (the list is almost always empty), read again under
	 * pool_lock; pairs with nothing: keep() writes under the lock. */
	if (likely(!atomic_load_explicit(&kept, memory_order_relaxed)))
		return NULL;
	pthread_mutex_lock(&pool_lock);
	struct kept *prev = NULL, *k = atomic_load_explicit(&kept, memory_order_relaxed);
	for (; k; prev = k, k = k->next)
		if (k->size == size) {
			if (prev)
				prev->next = k->next;
			else
				atomic_store_explicit(&kept, k->next, memory_order_relaxed);
			base = (char *)k + page_size() - size;
			break;
		}
	pthread_mutex_unlock(&pool_lock);
	return base;
}

/* A stack of another size is in use (0), or -ENOMEM (st is freed then). */
static int big_add(struct mr__stack *st)
{
	int r = 0;

	mr__lock(&big_lock);
	if (nbigs == bigs_cap) {
		size_t cap = bigs_cap ? 2 * bigs_cap : 16;
		struct big *p = realloc(bigs, cap * sizeof(*p));
		if (!p)
			r = -ENOMEM;
		else {
			bigs = p;
			bigs_cap = cap;
		}
	}
	if (!r)
		bigs[nbigs++] = (struct big){ st->base, st->size };
	mr__unlock(&big_lock);
	return r;
}

static void big_del(const struct mr__stack *st)
{
	mr__lock(&big_lock);
	for (size_t i = nbigs; i > 0; i--)
		if (bigs[i - 1].base == st->base) {
			bigs[i - 1] = bigs[--nbigs];
			break;
		}
	mr__unlock(&big_lock);
}

int mr__stack_each(void (*fn)(void *base, size_t size, void *arg), void *arg)
{
	size_t ps = page_size(), gs = mr__stack_guard(ps), slot = MR_FIBER_STACK_DEFAULT + gs;

	/* The chunks: copied under the lock, walked without it (never unmapped). */
	mr__lock(&pool_lock);
	size_t n = nchunks;
	char **c = malloc((n ? n : 1) * sizeof(*c));
	if (c && n)
		memcpy(c, chunks, n * sizeof(*c));
	mr__unlock(&pool_lock);
	if (!c)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < CHUNK_SLOTS; k++)
			fn(c[i] + k * slot + gs, MR_FIBER_STACK_DEFAULT, arg);
	free(c);
	/* The others, mapped while we hold big_lock. */
	mr__lock(&big_lock);
	for (size_t i = 0; i < nbigs; i++)
		fn(bigs[i].base, bigs[i].size, arg);
	mr__unlock(&big_lock);
	return 0;
}

int mr__stack_alloc(struct mr__worker *w, size_t size, struct mr__stack *st)
{
	size_t ps = page_size(), gs = mr__stack_guard(ps);

	size = (size + ps - 1) & ~(ps - 1);
	if (size == MR_FIBER_STACK_DEFAULT) {
		if (w && w->nstack_cache) {
			st->base = w->stack_cache[--w->nstack_cache];
		} else {
			mr__lock(&pool_lock);
			if (unlikely(mr__test_stack_pool_locked))
				mr__test_stack_pool_locked();
			if (!npool && grow_pool() < 0) {
				mr__unlock(&pool_lock);
				return -ENOMEM;
			}
			/* Refill the worker's cache by half while we hold the lock. */
			st->base = pool[--npool];
			if (w)
				while (npool && w->nstack_cache < MR__STACK_CACHE / 2)
					w->stack_cache[w->nstack_cache++] = pool[--npool];
			mr__unlock(&pool_lock);
		}
		st->size = size;
		st->pooled = true;
		return 0;
	}
	if ((st->base = take_kept(size))) {
		st->size = size;
		st->pooled = false;
		if (big_add(st) < 0) {
			mr__stack_free(w, st);
			return -ENOMEM;
		}
		return 0;
	}
	char *m = mmap(NULL, size + gs, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
	if (m == MAP_FAILED) {
		say_limit("mmap of a fiber stack", errno);
		return -ENOMEM;
	}
	int r = guard(m, gs);
	if (r < 0) {
		say_limit("installing a stack guard page", -r);
		unmap_or_drop(m, size + gs);
		return -ENOMEM;
	}
	st->base = m + gs;
	st->size = size;
	st->pooled = false;
	if (big_add(st) < 0) {
		unmap_or_drop(m, size + gs);
		return -ENOMEM;
	}
	return 0;
}

void mr__stack_free(struct mr__worker *w, struct mr__stack *st)
{
	if (!st->pooled) {
		size_t gs = mr__stack_guard(page_size());
		big_del(st); /* before it is unmapped: a dump may be reading it */
		if (unmap((char *)st->base - gs, st->size + gs) != 0)
			keep(st, errno);
		return;
	}
	if (w && w->nstack_cache < MR__STACK_CACHE) {
		w->stack_cache[w->nstack_cache++] = st->base;
		return;
	}
	mr__lock(&pool_lock);
	/* The pool has room for every default-size stack there is (nslots). */
	pool[npool++] = st->base;
	if (w)
		while (w->nstack_cache > MR__STACK_CACHE / 2)
			pool[npool++] = w->stack_cache[--w->nstack_cache];
	mr__unlock(&pool_lock);
}

/* Fork (runtime.c's handlers): the pool is taken across it, so that the
 * child's copy is whole; released in the parent and in the child. */
void mr__stack_atfork_prepare(void)
{
	pthread_mutex_lock(&pool_lock);
	pthread_mutex_lock(&big_lock);
}

void mr__stack_atfork_release(void)
{
	pthread_mutex_unlock(&big_lock);
	pthread_mutex_unlock(&pool_lock);
}

void mr__stack_cache_flush(struct mr__worker *w)
{
	mr__lock(&pool_lock);
	while (w->nstack_cache)
		pool[npool++] = w->stack_cache[--w->nstack_cache];
	mr__unlock(&pool_lock);
}
