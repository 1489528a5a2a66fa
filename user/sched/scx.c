/*
 * scx.c - registration of worker threads with the Moirai sched_ext
 * scheduler (see scx.h and bpf/moirai_shared.h for the contract).
 *
 * The maps and the registration program are found by path (BPF_OBJ_GET on
 * MOIRAI_PIN_DIR/meta, /register and /worker_load) with raw bpf() calls:
 * the library does not link libbpf. They are used only if meta's layout
 * version is this library's (MOIRAI_LAYOUT_VERSION): a scheduler of another
 * version would read our entries with another layout. meta is opened
 * read-only (an operator's group may read it, not write it).
 * They are opened once per process, on the first runtime creation that
 * finds them; a process that started before any scheduler was loaded
 * retries at each later runtime creation. A worker switches itself to
 * SCHED_EXT, so that it is scheduled by moirai in partial mode too (with no
 * scheduler loaded, SCHED_EXT tasks run in the fair class), and then runs
 * the pinned `register` program (BPF_PROG_TEST_RUN), which enters the
 * calling thread into the workers hash as {pid, runtime, index, home node,
 * line, address of its hints} and claims it a line of worker_load. The
 * program acts on its caller only, so no process can register or remove
 * another's threads (bpf/moirai_shared.h says who may run it). The
 * scheduler alone writes the lines of worker_load, copying each worker's
 * hints from the worker's own memory, so no process can state another's.
 * A process that may open worker_load for writing (root) maps it
 * read-only, to read the scheduler's `preempted`; one of the granted group
 * may not (0640), and registers all the same.
 *
 * Home nodes: each worker's home CPU and its node are chosen by the runtime
 * (place.c): workers spread over the CPUs of the runtime's set, and so over
 * the nodes in proportion to their CPUs.
 *
 * Failures are quiet by design (a library never prints): a worker that
 * cannot register simply runs unsteered. When that is because the maps are
 * full (every worker_load line held, or the workers hash full), the
 * program counts it in meta's reg_full, which the loader reports. The
 * scheduler frees the line of a thread that exits without unregistering,
 * and the loader those of threads that exited while none was loaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/types.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../../bpf/moirai_shared.h"
#include "scx.h"
#include "sched.h"

_Static_assert(sizeof(struct mr__scx_line) == sizeof(struct moirai_load),
	       "mr__scx_line must mirror struct moirai_load");
_Static_assert(sizeof(struct mr__scx_line) == 64, "one cache line per worker");
_Static_assert(offsetof(struct mr__scx_line, preempted) == offsetof(struct moirai_load, preempted),
	       "mr__scx_line.preempted must be where the scheduler writes it");

#define SCHED_EXT_POLICY 7

static struct {
	pthread_mutex_t lock;
	bool open;		   /* maps found and mapped */
	int reg_fd;		   /* the `register` program */
	const struct mr__scx_line *lines; /* MOIRAI_LOAD_SLOTS, read-only */
	_Atomic uint32_t claim_at; /* where the next claim starts looking */
	_Atomic uint32_t next_rt_id;
} scx = { .lock = PTHREAD_MUTEX_INITIALIZER, .reg_fd = -1 };

void (*mr__test_scx_locked)(void); /* test hook: called with scx.lock held */

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

static int obj_get(const char *path, uint32_t flags)
{
	union bpf_attr a;

	memset(&a, 0, sizeof(a));
	a.pathname = (uint64_t)(uintptr_t)path;
	a.file_flags = flags;
	return (int)sys_bpf(BPF_OBJ_GET, &a);
}

/* meta's layout version, read through a read-only descriptor; 0 if none. */
static uint32_t pinned_version(void)
{
	struct moirai_meta m;
	uint32_t key = 0;
	union bpf_attr a;
	int fd = obj_get(MOIRAI_PIN_DIR "/meta", BPF_F_RDONLY);

	if (fd < 0)
		return 0;
	memset(&a, 0, sizeof(a));
	a.map_fd = (uint32_t)fd;
	a.key = (uint64_t)(uintptr_t)&key;
	a.value = (uint64_t)(uintptr_t)&m;
	if (sys_bpf(BPF_MAP_LOOKUP_ELEM, &a) < 0)
		m.version = 0;
	close(fd);
	return m.version;
}

/* Runs `register` in this thread: what the program returns (>= 0), or a
 * negative errno (the program's or bpf()'s). */
static int reg_run(uint32_t op, uint32_t rt_id, uint32_t index, int32_t node, uint32_t slot,
		   struct mr__scx_hints *hints)
{
	struct moirai_reg r = {
		.op = op, .rt_id = rt_id, .index = index, .node = node, .slot = slot,
		.hints = (uint64_t)(uintptr_t)hints,
	};
	union bpf_attr a;

	memset(&a, 0, sizeof(a));
	a.test.prog_fd = (uint32_t)scx.reg_fd;
	a.test.ctx_in = (uint64_t)(uintptr_t)&r;
	a.test.ctx_size_in = sizeof(r);
	if (sys_bpf(BPF_PROG_TEST_RUN, &a) < 0)
		return -errno;
	return (int)a.test.retval;
}

static bool disabled_by_env(void)
{
	const char *e = getenv("MOIRAI_SCX");
	return e && strcmp(e, "0") == 0;
}

/*
 * The pinned map name, mapped shared and read-only (len bytes), or NULL.
 * The kernel maps a BPF map shared only through a descriptor open for
 * writing (mmap(2) clears VM_SHARED otherwise, and bpf_map_mmap() wants
 * it), so the pin's mode decides: root's runtimes map it, the granted
 * group's (0640) do not.
 */
static const void *map_pinned(const char *path, size_t len)
{
	int fd = obj_get(path, 0);
	void *m;

	if (fd < 0)
		return NULL;
	m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	close(fd); /* the mapping keeps the map alive */
	return m == MAP_FAILED ? NULL : m;
}

/* Caller holds scx.lock. */
static void try_open(void)
{
	size_t len = ((sizeof(struct mr__scx_line) * MOIRAI_LOAD_SLOTS) + 4095) & ~(size_t)4095;
	const void *lines;
	int rfd;

	/* The loader stamps the version after pinning register. */
	if (pinned_version() != MOIRAI_LAYOUT_VERSION)
		return;
	rfd = obj_get(MOIRAI_PIN_DIR "/" MOIRAI_REGISTER_PROG, 0);
	if (rfd < 0)
		return;
	/* Without the lines the workers register all the same; only the
	 * scheduler's `preempted` is not seen (searchers_stalled()). */
	lines = map_pinned(MOIRAI_PIN_DIR "/worker_load", len);
	scx.reg_fd = rfd;
	scx.lines = lines;
	/* Processes start looking for a free line at different places. */
	atomic_store_explicit(&scx.claim_at, (uint32_t)getpid() * 64u, memory_order_relaxed);
	scx.open = true;
}

int mr__scx_cpu_node(int cpu)
{
	/* The topology is place.c's, the one stealing uses. */
	return mr__cpu_node(cpu);
}

/* The bits of each node's workers (a preference only: on failure, none). */
static void node_masks(struct mr_runtime *rt)
{
	unsigned nnodes = 0;

	for (unsigned i = 0; i < rt->nworkers; i++)
		if ((unsigned)rt->workers[i]->home_node + 1 > nnodes)
			nnodes = (unsigned)rt->workers[i]->home_node + 1;
	if (nnodes < 2)
		return;
	rt->node_workers = calloc((size_t)nnodes * rt->idle_words, sizeof(uint64_t));
	if (!rt->node_workers)
		return;
	rt->nnodes = nnodes;
	for (unsigned i = 0; i < rt->nworkers; i++)
		rt->node_workers[(size_t)rt->workers[i]->home_node * rt->idle_words + i / 64] |=
			1ull << (i % 64);
}

void mr__scx_runtime_init(struct mr_runtime *rt)
{
	if (disabled_by_env())
		return;
	mr__lock(&scx.lock);
	if (unlikely(mr__test_scx_locked))
		mr__test_scx_locked();
	if (!scx.open)
		try_open();
	bool open = scx.open;
	mr__unlock(&scx.lock);
	if (!open)
		return;
	rt->scx_id = atomic_fetch_add_explicit(&scx.next_rt_id, 1, memory_order_relaxed) + 1;

	/* Home nodes: chosen by the runtime (place.c). */
	node_masks(rt);
}

/* Fork (runtime.c's handlers): the lock is taken across it, so that the
 * child's copy of what it guards (the opened maps) is whole. */
void mr__scx_atfork_prepare(void)
{
	pthread_mutex_lock(&scx.lock);
}

void mr__scx_atfork_release(void)
{
	pthread_mutex_unlock(&scx.lock);
}

/* struct sched_attr of sched_setattr(2), version 0 (48 bytes). */
struct mr__sched_attr {
	uint32_t size, sched_policy;
	uint64_t sched_flags;
	int32_t sched_nice;
	uint32_t sched_priority;
	uint64_t sched_runtime, sched_deadline, sched_period;
};

void mr__scx_worker_start(struct mr__worker *w)
{
	struct mr_runtime *rt = w->rt;

	if (!rt->scx_id)
		return;
	mr__scx_publish(&w->scx_hints, MR__SCX_RUNNING, 0);

	/* SCHED_EXT first: whoever sees the registration (the scheduler, a
	 * status) sees a thread the scheduler already schedules. Seen: the VM's
	 * 20-workers test read policy 0 of a worker that was registered but
	 * not yet switched. EINVAL without sched_ext: harmless. */
	struct mr__sched_attr attr = { .size = sizeof(attr), .sched_policy = SCHED_EXT_POLICY };
	bool switched = syscall(SYS_sched_setattr, 0, &attr, 0) == 0;

	/* The program claims the line, and counts full maps itself. */
	uint32_t start = atomic_fetch_add_explicit(&scx.claim_at, 1, memory_order_relaxed) %
			 MOIRAI_LOAD_SLOTS;
	int slot = reg_run(MOIRAI_REG_ADD, rt->scx_id, w->idx, w->home_node, start, &w->scx_hints);
	if (slot < 0 || slot >= MOIRAI_LOAD_SLOTS) {
		if (slot >= 0)
			reg_run(MOIRAI_REG_DEL, 0, 0, 0, 0, NULL);
		if (switched) {
			/* Unregistered: back to the normal class (SCHED_OTHER). */
			struct mr__sched_attr other = { .size = sizeof(other), .sched_policy = 0 };
			syscall(SYS_sched_setattr, 0, &other, 0);
		}
		return;
	}
	atomic_store_explicit(&w->scx_on, true, memory_order_relaxed);
	/* release: the hints above, for searchers_stalled(). */
	atomic_store_explicit(&w->scx, scx.lines ? &scx.lines[slot] : NULL, memory_order_release);
	w->scx_state = MR__SCX_RUNNING;
	w->scx_queued = false;
}

void mr__scx_worker_exit(struct mr__worker *w)
{
	if (!atomic_load_explicit(&w->scx_on, memory_order_relaxed))
		return;
	atomic_store_explicit(&w->scx_on, false, memory_order_relaxed);
	atomic_store_explicit(&w->scx, NULL, memory_order_relaxed);
	/* The program frees the line too. */
	reg_run(MOIRAI_REG_DEL, 0, 0, 0, 0, NULL);
}
