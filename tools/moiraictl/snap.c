/*
 * snap.c - one snapshot of what the scheduler and the runtimes published.
 *
 * Everything is read from the maps pinned under MOIRAI_PIN_DIR, opened
 * read-only by path for each snapshot (a new load re-pins the statistics
 * maps, so an fd kept from the previous snapshot could point at an old map),
 * and from sysfs and /proc:
 *  - workers: the hash is walked with BPF_MAP_GET_NEXT_KEY. Runtimes add and
 *    delete entries meanwhile; a deleted key makes the walk restart from the
 *    first key, so the walk is bounded (twice max_entries steps) and
 *    duplicates are dropped after sorting. A worker registered during the
 *    walk may be missed: the next snapshot has it.
 *  - worker_load is mmapped read-only and each field is read with a relaxed
 *    atomic load (it is written by its worker with plain stores, with no
 *    ordering between fields): a snapshot may mix two updates of one slot,
 *    good enough for monitoring. A slot counts as the worker's only if its
 *    tid matches (slots are reused).
 *  - cpu_stats, node_stats, latency, exit_info: one lookup per entry.
 *    The statistics maps are per-CPU arrays (moirai_shared.h): cpu_stats'
 *    one entry gives a value per CPU, each CPU's own; the CPUs' copies of a
 *    node_stats or latency entry are summed, except max_ns, of which the
 *    largest is taken. Any of them may be a plain array (a scheduler of
 *    layout version 2): cpu_stats then has an entry per CPU, and each
 *    value is taken as it is.
 *  - the CPU a worker last ran on: field 39 of /proc/PID/task/TID/stat; a
 *    worker whose /proc entry is gone is reported stale (its process crashed
 *    or exited without unregistering and the scheduler has not yet noticed).
 * A map whose key or value size differs from moirai_shared.h (a moiraictl
 * from another version than the scheduler that pinned the maps) is not read:
 * map_err says -EPROTO and which map.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "moiraictl.h"

struct pinned {
	int fd;
	struct bpf_map_info info;
};

static void set_err(struct mc_snap *snap, int err, const char *name)
{
	if (!snap->map_err) {
		snap->map_err = err;
		snap->map_err_name = name;
	}
}

/* Opens MOIRAI_PIN_DIR/name read-only; -ENOENT if it is not pinned. */
static int open_pinned(struct mc_snap *snap, const char *name, __u32 key_size, __u32 value_size,
		       struct pinned *p)
{
	LIBBPF_OPTS(bpf_obj_get_opts, opts, .file_flags = BPF_F_RDONLY);
	char path[128];
	__u32 len = sizeof(p->info);
	int err;

	p->fd = -1;
	snprintf(path, sizeof(path), MOIRAI_PIN_DIR "/%s", name);
	p->fd = bpf_obj_get_opts(path, &opts);
	if (p->fd < 0) {
		err = -errno;
		if (err != -ENOENT)
			set_err(snap, err, name);
		return err;
	}
	memset(&p->info, 0, sizeof(p->info));
	err = bpf_map_get_info_by_fd(p->fd, &p->info, &len);
	if (err) {
		err = -errno;
		goto fail;
	}
	if (p->info.key_size != key_size || p->info.value_size != value_size) {
		err = -EPROTO;
		goto fail;
	}
	return p->fd;
fail:
	set_err(snap, err, name);
	close(p->fd);
	p->fd = -1;
	return err;
}

static int cmp_worker(const void *a, const void *b)
{
	const struct mc_worker *x = a, *y = b;

	if (x->w.pid != y->w.pid)
		return x->w.pid < y->w.pid ? -1 : 1;
	if (x->w.rt_id != y->w.rt_id)
		return x->w.rt_id < y->w.rt_id ? -1 : 1;
	if (x->w.index != y->w.index)
		return x->w.index < y->w.index ? -1 : 1;
	return x->tid < y->tid ? -1 : x->tid > y->tid;
}

/* The CPU field of /proc/PID/task/TID/stat, or -ENOENT if the thread is gone. */
static int thread_cpu(__u32 pid, __u32 tid)
{
	char path[64], buf[1024], *p;
	int field;

	snprintf(path, sizeof(path), "/proc/%u/task/%u/stat", pid, tid);
	if (mc_read_file(path, buf, sizeof(buf)) < 0)
		return -ENOENT;
	/* The comm (field 2) may hold spaces and ')': fields resume after the last ')'. */
	p = strrchr(buf, ')');
	if (!p)
		return -EINVAL;
	p++;
	/* p is at the blank before field 3; step to the one before field 39. */
	for (field = 3; field < 39 && p; field++)
		p = strchr(p + 1, ' ');
	if (!p)
		return -EINVAL;
	return atoi(p + 1);
}

static void read_load_slot(const struct moirai_load *src, struct moirai_load *dst)
{
	/* relaxed: monitoring only; pairs with the worker's plain stores to its slot. */
	dst->tid = __atomic_load_n(&src->tid, __ATOMIC_RELAXED);
	dst->state = __atomic_load_n(&src->state, __ATOMIC_RELAXED);
	dst->depth = __atomic_load_n(&src->depth, __ATOMIC_RELAXED);
	dst->pid = __atomic_load_n(&src->pid, __ATOMIC_RELAXED);
	dst->rt_id = __atomic_load_n(&src->rt_id, __ATOMIC_RELAXED);
	dst->index = __atomic_load_n(&src->index, __ATOMIC_RELAXED);
	dst->updates = __atomic_load_n(&src->updates, __ATOMIC_RELAXED);
	dst->preempted = __atomic_load_n(&src->preempted, __ATOMIC_RELAXED);
}

static int read_workers(struct mc_snap *snap)
{
	struct pinned wm, lm;
	struct moirai_load *slots = MAP_FAILED;
	size_t map_len = 0, cap;
	unsigned long steps;
	__u32 key, next, i, n = 0;
	bool first = true;

	if (open_pinned(snap, "workers", sizeof(__u32), sizeof(struct moirai_worker), &wm) < 0)
		return 0;
	snap->workers_ok = true;
	cap = wm.info.max_entries ? wm.info.max_entries : 1;
	snap->workers = calloc(cap, sizeof(*snap->workers));
	if (!snap->workers) {
		close(wm.fd);
		return -ENOMEM;
	}
	for (steps = 0; steps < 2UL * cap && n < cap; steps++) {
		if (bpf_map_get_next_key(wm.fd, first ? NULL : &key, &next) < 0)
			break;
		first = false;
		key = next;
		if (bpf_map_lookup_elem(wm.fd, &key, &snap->workers[n].w) < 0)
			continue;
		snap->workers[n].tid = key;
		n++;
	}
	close(wm.fd);
	qsort(snap->workers, n, sizeof(*snap->workers), cmp_worker);
	/* Drop the duplicates a restarted walk may have produced. */
	for (i = 0, snap->nr_workers = 0; i < n; i++) {
		if (snap->nr_workers && snap->workers[snap->nr_workers - 1].tid == snap->workers[i].tid)
			continue;
		snap->workers[snap->nr_workers++] = snap->workers[i];
	}

	if (open_pinned(snap, "worker_load", sizeof(__u32), sizeof(struct moirai_load), &lm) >= 0) {
		if (lm.info.map_flags & BPF_F_MMAPABLE) {
			long page = sysconf(_SC_PAGESIZE);
			/* The kernel refuses to mmap a map through a read-only
			 * fd (EINVAL, even for PROT_READ): map it through a
			 * read-write one where we may open one (root), read
			 * only. Otherwise one lookup per worker. */
			int rw = bpf_obj_get(MOIRAI_PIN_DIR "/worker_load");

			map_len = (size_t)lm.info.max_entries * sizeof(struct moirai_load);
			map_len = (map_len + page - 1) / page * page;
			if (rw >= 0) {
				slots = mmap(NULL, map_len, PROT_READ, MAP_SHARED, rw, 0);
				close(rw);
			}
		}
	}
	for (i = 0; i < snap->nr_workers; i++) {
		struct mc_worker *w = &snap->workers[i];
		int cpu;

		if (lm.fd >= 0 && w->w.slot < lm.info.max_entries) {
			int err = 0;

			if (slots != MAP_FAILED)
				read_load_slot(&slots[w->w.slot], &w->load);
			else
				err = bpf_map_lookup_elem(lm.fd, &w->w.slot, &w->load);
			w->have_load = !err && w->load.tid == w->tid;
		}
		cpu = thread_cpu(w->w.pid, w->tid);
		w->stale = cpu == -ENOENT;
		w->cpu = cpu >= 0 ? cpu : -1;
	}
	if (slots != MAP_FAILED)
		munmap(slots, map_len);
	if (lm.fd >= 0)
		close(lm.fd);
	return 0;
}

/*
 * Reads entry key of an array or per-CPU array map into out (size bytes of
 * __u64 words). Per-CPU values are summed, except word max_word (if >= 0),
 * which takes the maximum.
 */
static int read_elem(const struct pinned *p, __u32 key, void *out, size_t size, int max_word)
{
	static int ncpus;
	__u64 *dst = out, *buf;
	size_t words = size / 8, stride;
	int c, err;

	if (p->info.type != BPF_MAP_TYPE_PERCPU_ARRAY)
		return bpf_map_lookup_elem(p->fd, &key, out) < 0 ? -errno : 0;
	if (!ncpus)
		ncpus = libbpf_num_possible_cpus();
	if (ncpus <= 0)
		return -EINVAL;
	stride = (size + 7) / 8;
	buf = calloc((size_t)ncpus * stride, 8);
	if (!buf)
		return -ENOMEM;
	err = bpf_map_lookup_elem(p->fd, &key, buf) < 0 ? -errno : 0;
	memset(out, 0, size);
	for (c = 0; !err && c < ncpus; c++) {
		for (size_t w = 0; w < words; w++) {
			__u64 v = buf[c * stride + w];

			if ((int)w == max_word)
				dst[w] = v > dst[w] ? v : dst[w];
			else
				dst[w] += v;
		}
	}
	free(buf);
	return err;
}

static void read_stats(struct mc_snap *snap)
{
	struct pinned p;
	unsigned int i, n;

	if (open_pinned(snap, "cpu_stats", 4, sizeof(struct moirai_cpu_stats), &p) >= 0) {
		bool percpu = p.info.type == BPF_MAP_TYPE_PERCPU_ARRAY;

		n = (unsigned int)mc_nr_possible_cpus();
		if (!percpu && n > p.info.max_entries)
			n = p.info.max_entries;
		snap->cpu = calloc(n ? n : 1, sizeof(*snap->cpu));
		if (snap->cpu && percpu) {
			/* CPU i's counters are copy i of entry 0 (the kernel
			 * packs the copies of possible CPUs: copy i is CPU i
			 * unless the possible ids have holes). */
			__u32 zero = 0;

			_Static_assert(sizeof(*snap->cpu) % 8 == 0, "per-CPU values are 8-byte aligned");
			if (bpf_map_lookup_elem(p.fd, &zero, snap->cpu) < 0)
				memset(snap->cpu, 0, n * sizeof(*snap->cpu));
		}
		for (i = 0; snap->cpu && !percpu && i < n; i++)
			read_elem(&p, i, &snap->cpu[i], sizeof(snap->cpu[i]), -1);
		snap->nr_cpu = snap->cpu ? n : 0;
		close(p.fd);
	}
	if (open_pinned(snap, "node_stats", 4, sizeof(struct moirai_node_stats), &p) >= 0) {
		struct mc_topo topo;

		n = mc_topo_read(&topo) == -ENOMEM ? 1 : topo.nr_nodes;
		mc_topo_free(&topo);
		if (n > p.info.max_entries)
			n = p.info.max_entries;
		snap->node = calloc(n ? n : 1, sizeof(*snap->node));
		for (i = 0; snap->node && i < n; i++)
			read_elem(&p, i, &snap->node[i], sizeof(snap->node[i]), -1);
		snap->nr_node = snap->node ? n : 0;
		close(p.fd);
	}
	if (open_pinned(snap, "latency", 4, sizeof(struct moirai_latency), &p) >= 0) {
		snap->have_lat = read_elem(&p, 0, &snap->lat, sizeof(snap->lat),
					   offsetof(struct moirai_latency, max_ns) / 8) == 0;
		close(p.fd);
	}
}

static void read_exit(struct mc_snap *snap)
{
	struct pinned p;
	__u32 key = 0;

	if (open_pinned(snap, "exit_info", 4, sizeof(struct moirai_exit_info), &p) < 0)
		return;
	snap->have_exit = bpf_map_lookup_elem(p.fd, &key, &snap->exit) == 0;
	snap->exit.reason[sizeof(snap->exit.reason) - 1] = '\0';
	snap->exit.msg[sizeof(snap->exit.msg) - 1] = '\0';
	close(p.fd);
}

int mc_snap_take(struct mc_snap *snap, unsigned int what)
{
	struct timespec ts;
	struct stat st;
	int err = 0;

	memset(snap, 0, sizeof(*snap));
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snap->when = ts.tv_sec + ts.tv_nsec / 1e9;
	mc_scx_read(&snap->scx);
	mc_loader_read(&snap->loader);
	snap->pinned = stat(MOIRAI_PIN_DIR "/workers", &st) == 0;
	if (what & MC_SNAP_WORKERS)
		err = read_workers(snap);
	if (what & MC_SNAP_STATS)
		read_stats(snap);
	read_exit(snap);
	if ((what & MC_SNAP_RUNTIMES) && mc_rts_read(&snap->rts) == -ENOMEM && !err)
		err = -ENOMEM;
	return err;
}

void mc_snap_free(struct mc_snap *snap)
{
	free(snap->workers);
	free(snap->cpu);
	free(snap->node);
	mc_rts_free(&snap->rts);
	snap->workers = NULL;
	snap->cpu = NULL;
	snap->node = NULL;
}

const char *mc_worker_state_name(__u32 state)
{
	switch (state) {
	case MOIRAI_W_NONE:
		return "none";
	case MOIRAI_W_RUNNING:
		return "running";
	case MOIRAI_W_SEARCHING:
		return "searching";
	case MOIRAI_W_PARKED:
		return "parked";
	default:
		return "unknown";
	}
}

/* enum scx_exit_kind, as the kernel (7.3) numbers it. */
const char *mc_exit_kind_name(long long kind)
{
	switch (kind) {
	case 0:
		return "none";
	case 1:
		return "done";
	case 64:
		return "unregistered";
	case 65:
		return "unregistered by BPF";
	case 66:
		return "unregistered by the kernel";
	case 67:
		return "sysrq";
	case 68:
		return "parent";
	case 69:
		return "parent killed";
	case 1024:
		return "error";
	case 1025:
		return "BPF error";
	case 1026:
		return "runnable task stall";
	case 1027:
		return "re-enqueue error";
	case 1028:
		return "rescue error";
	default:
		return kind >= 1024 ? "error" : kind >= 64 ? "unregistered" : "unknown";
	}
}

/*
 * "<prefix>: scheduler exited: error (runnable task stall): <msg>": the kind's
 * class, the kernel's reason (or the kind's name if it gave none), the
 * scheduler's message if any, and the exit code if not 0.
 */
void mc_exit_print(FILE *f, const char *prefix, const struct moirai_exit_info *ei)
{
	const char *cls = ei->kind >= 1024 ? "error" : ei->kind >= 64 ? "unregistered" :
			  ei->kind == 1 ? "done" : "exit";

	fprintf(f, "%s: scheduler exited: %s (%s)", prefix, cls,
		ei->reason[0] ? ei->reason : mc_exit_kind_name(ei->kind));
	if (ei->msg[0])
		fprintf(f, ": %s", ei->msg);
	if (ei->exit_code)
		fprintf(f, " [exit code %lld]", (long long)ei->exit_code);
	fprintf(f, " [kind %lld]\n", (long long)ei->kind);
}

/*
 * The q-quantile of a log2 histogram (bucket i counts [2^i, 2^(i+1)) ns),
 * interpolated linearly inside its bucket and capped at max_ns (if not 0).
 * 0 for an empty histogram.
 */
__u64 mc_lat_quantile(const __u64 *buckets, __u64 max_ns, double q)
{
	__u64 total = 0, cum = 0, rank;
	int i;

	for (i = 0; i < MOIRAI_LAT_BUCKETS; i++)
		total += buckets[i];
	if (!total)
		return 0;
	rank = (__u64)(q * (double)total + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > total)
		rank = total;
	for (i = 0; i < MOIRAI_LAT_BUCKETS; i++) {
		if (cum + buckets[i] >= rank) {
			double lo = (double)(1ULL << i), frac = (double)(rank - cum) / buckets[i];
			__u64 v = (__u64)(lo + lo * frac);

			return max_ns && v > max_ns ? max_ns : v;
		}
		cum += buckets[i];
	}
	return max_ns;
}
