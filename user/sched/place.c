/*
 * place.c - where a runtime's workers run: their CPU set, home CPUs, NUMA
 * nodes and pinning, and the order in which thieves pick victims.
 *
 * A runtime has a CPU set: the one given in mr_config, else the affinity
 * mask of the creating thread (of its runtime, when that thread is a worker:
 * a pinned worker's own mask is one CPU). Worker i of n gets the CPU at
 * position i*c/n of the c CPUs of the set as its home CPU, so workers spread
 * over the set (and over the nodes, in proportion to their CPUs). The node
 * of a CPU comes from /sys/devices/system/node/node<N>/cpulist, read once
 * per process; without it (no NUMA support) every CPU is on node 0. Each
 * worker's affinity is set by its creator: to the whole set, or with
 * pinning to its home CPU.
 *
 * Stealing: node_members lists the workers grouped by home node. A thief
 * tries the workers of its own node first, then the others, each group from
 * a random start (steal_pass() in runtime.c). On one node that is the plain
 * random order over all workers.
 *
 * Behaves badly when: the CPU set or the node layout changes after creation
 * (CPU hotplug, a cpuset moved): workers keep the placement they got.
 */
#include <fcntl.h>
#include <linux/types.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../bpf/moirai_shared.h"
#include "sched.h"

/* Test hook: a fake topology, node of CPU c = mr__test_cpu_nodes[c]. */
const int *mr__test_cpu_nodes;
int mr__test_ncpu_nodes;

#define MAX_NODES MOIRAI_MAX_NODES /* as many as the scheduler tracks */

static struct {
	pthread_once_t once;
	int *node; /* of each CPU, -1 unknown */
	int ncpus;
} topo = { .once = PTHREAD_ONCE_INIT };

/* "0-3,8,10-11" -> mark each listed CPU with node. */
static void parse_cpulist(const char *s, int node)
{
	while (*s && *s != '\n') {
		char *end;
		long a = strtol(s, &end, 10), b = a;
		if (end == s)
			return;
		if (*end == '-')
			b = strtol(end + 1, &end, 10);
		for (long c = a; c <= b && c < topo.ncpus; c++)
			if (c >= 0)
				topo.node[c] = node;
		s = *end == ',' ? end + 1 : end;
	}
}

static void read_topology(void)
{
	long n = sysconf(_SC_NPROCESSORS_CONF);

	topo.ncpus = n > 0 && n < (1 << 20) ? (int)n : 1;
	topo.node = malloc(sizeof(int) * (size_t)topo.ncpus);
	if (!topo.node) {
		topo.ncpus = 0;
		return;
	}
	for (int c = 0; c < topo.ncpus; c++)
		topo.node[c] = -1;
	for (int node = 0, missing = 0; node < MAX_NODES && missing < 64; node++) {
		char path[64], buf[4096];
		snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/cpulist", node);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			missing++; /* node numbers may have holes */
			continue;
		}
		missing = 0;
		ssize_t r = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (r > 0) {
			buf[r] = 0;
			parse_cpulist(buf, node);
		}
	}
}

int mr__cpu_node(int cpu)
{
	int node = 0;

	if (unlikely(mr__test_cpu_nodes)) {
		if (cpu >= 0 && cpu < mr__test_ncpu_nodes)
			node = mr__test_cpu_nodes[cpu];
	} else {
		pthread_once(&topo.once, read_topology);
		if (cpu >= 0 && cpu < topo.ncpus)
			node = topo.node[cpu];
	}
	return node >= 0 && node < MAX_NODES ? node : 0;
}

/* The calling thread's CPU set: its runtime's when it is a worker. */
static cpu_set_t *caller_cpus(size_t *size)
{
	struct mr__worker *self = mr__self();

	if (self) {
		cpu_set_t *set = malloc(self->rt->cpus_size);
		if (set)
			memcpy(set, self->rt->cpus, self->rt->cpus_size);
		*size = self->rt->cpus_size;
		return set;
	}
	for (size_t ncpu = 1024; ncpu <= (1u << 20); ncpu *= 2) {
		cpu_set_t *set = CPU_ALLOC(ncpu);
		size_t sz = CPU_ALLOC_SIZE(ncpu);
		if (!set)
			return NULL;
		CPU_ZERO_S(sz, set);
		if (sched_getaffinity(0, sz, set) == 0) {
			*size = sz;
			return set;
		}
		CPU_FREE(set);
		if (errno != EINVAL)
			break;
	}
	/* No mask to be had: every configured CPU. */
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	size_t ncpu = n > 0 ? (size_t)n : 1;
	cpu_set_t *set = CPU_ALLOC(ncpu);
	if (!set)
		return NULL;
	*size = CPU_ALLOC_SIZE(ncpu);
	CPU_ZERO_S(*size, set);
	for (size_t c = 0; c < ncpu; c++)
		CPU_SET_S(c, *size, set);
	return set;
}

int mr__place_cpus(const void *cpus, size_t size, cpu_set_t **out, size_t *out_size)
{
	if (cpus) {
		if (size == 0)
			return -EINVAL;
		/* Whole longs, as the kernel reads them. */
		size_t sz = (size + sizeof(long) - 1) / sizeof(long) * sizeof(long);
		cpu_set_t *set = calloc(1, sz);
		if (!set)
			return -ENOMEM;
		memcpy(set, cpus, size);
		if (CPU_COUNT_S(sz, set) == 0) {
			free(set);
			return -EINVAL;
		}
		*out = set;
		*out_size = sz;
		return 0;
	}
	*out = caller_cpus(out_size);
	if (!*out)
		return -ENOMEM;
	if (CPU_COUNT_S(*out_size, *out) == 0) {
		free(*out);
		return -EINVAL;
	}
	return 0;
}

unsigned mr__place_ncpus(const struct mr_runtime *rt)
{
	return (unsigned)CPU_COUNT_S(rt->cpus_size, rt->cpus);
}

int mr__place_init(struct mr_runtime *rt)
{
	unsigned n = rt->nworkers, c = mr__place_ncpus(rt);
	size_t bits = rt->cpus_size * 8;

	/* Home CPUs: position i*c/n of the set. */
	int *list = malloc(sizeof(int) * c);
	if (!list)
		return -ENOMEM;
	for (size_t k = 0, j = 0; k < bits && j < c; k++)
		if (CPU_ISSET_S(k, rt->cpus_size, rt->cpus))
			list[j++] = (int)k;
	for (unsigned i = 0; i < n; i++) {
		int cpu = list[(size_t)i * c / n];
		rt->workers[i]->home_cpu = cpu;
		rt->workers[i]->home_node = mr__cpu_node(cpu);
	}
	free(list);
	/* Workers grouped by node (a counting sort), in index order within
	 * a node. */
	int maxnode = 0;
	for (unsigned i = 0; i < n; i++)
		if (rt->workers[i]->home_node > maxnode)
			maxnode = rt->workers[i]->home_node;
	unsigned *start = calloc((size_t)maxnode + 2, sizeof(unsigned));
	rt->node_members = malloc(sizeof(unsigned) * n);
	if (!start || !rt->node_members) {
		free(start);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < n; i++)
		start[rt->workers[i]->home_node + 1]++;
	for (int node = 0; node <= maxnode; node++)
		start[node + 1] += start[node];
	for (unsigned i = 0; i < n; i++) {
		struct mr__worker *w = rt->workers[i];
		w->node_lo = start[w->home_node];
		w->node_n = start[w->home_node + 1] - start[w->home_node];
	}
	for (unsigned i = 0; i < n; i++) {
		int node = rt->workers[i]->home_node;
		rt->node_members[start[node]++] = i;
	}
	/* The first worker of each node keeps its fibers' connections
	 * (mr__push_io() in sched.h). */
	for (unsigned i = 0; i < n; i++) {
		struct mr__worker *w = rt->workers[i];
		w->io_primary = n > 1 && rt->node_members[w->node_lo] == i;
	}
	free(start);
	return 0;
}

int mr__place_worker(struct mr_runtime *rt, struct mr__worker *w)
{
	if (!rt->pin)
		return pthread_setaffinity_np(w->thread, rt->cpus_size, rt->cpus);
	cpu_set_t *one = CPU_ALLOC((size_t)w->home_cpu + 1);
	size_t sz = CPU_ALLOC_SIZE((size_t)w->home_cpu + 1);
	if (!one)
		return ENOMEM;
	CPU_ZERO_S(sz, one);
	CPU_SET_S((size_t)w->home_cpu, sz, one);
	int r = pthread_setaffinity_np(w->thread, sz, one);
	CPU_FREE(one);
	return r;
}

/*
 * A child forked from a pinned worker's thread would inherit its single-CPU
 * mask, and size its default runtime by it: give the child's thread the
 * runtime's whole set back.
 */
static __thread const struct mr_runtime *tls_pinned_rt;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void unpin_in_child(void)
{
	const struct mr_runtime *rt = tls_pinned_rt;

	if (rt) {
		sched_setaffinity(0, rt->cpus_size, rt->cpus);
		tls_pinned_rt = NULL;
	}
}

static void atfork_install(void)
{
	pthread_atfork(NULL, NULL, unpin_in_child);
}

void mr__place_thread_start(struct mr__worker *w)
{
	if (w->rt->pin) {
		pthread_once(&atfork_once, atfork_install);
		tls_pinned_rt = w->rt;
	}
}
