/*
 * topo.c - the machine's CPUs and NUMA nodes, as the scheduler is told them.
 *
 * The scheduler is configured before load through read-only globals
 * (nr_cpus, nr_nodes, cpu_to_node[]), so the loader reads the topology once
 * from sysfs: the number of possible CPUs from
 * /sys/devices/system/cpu/possible (the highest id + 1: per-CPU tables are
 * indexed by CPU id, and ids of possible CPUs may have holes), and each
 * node's CPUs from /sys/devices/system/node/nodeN/cpulist. nr_nodes is the
 * highest node id + 1 for the same reason (node ids may have holes too, and
 * node_stats is indexed by id). A kernel without NUMA has no
 * /sys/devices/system/node: one node, every CPU on node 0. A CPU that no
 * node lists (offline and memoryless corner cases) is put on node 0.
 *
 * CPUs hot-added after load are not seen by the scheduler's tables; the
 * possible mask already covers every CPU that can come online, so this only
 * matters for their node, which stays 0 until the next load.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "moiraictl.h"

#define SYS_CPU "/sys/devices/system/cpu"
#define SYS_NODE "/sys/devices/system/node"

/*
 * Calls fn for each CPU of a list like "0-3,8,10-11" (a trailing newline is
 * fine, an empty list has no CPUs). Returns the number of CPUs, -EINVAL if
 * the list does not parse; *max_cpu (if not NULL) gets the highest CPU.
 */
int mc_cpulist_parse(const char *s, void (*fn)(unsigned int cpu, void *arg), void *arg,
		     unsigned int *max_cpu)
{
	unsigned long lo, hi, c;
	unsigned int max = 0;
	int n = 0;
	char *end;

	while (*s && *s != '\n') {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		lo = strtoul(s, &end, 10);
		hi = lo;
		s = end;
		if (*s == '-') {
			s++;
			if (*s < '0' || *s > '9')
				return -EINVAL;
			hi = strtoul(s, &end, 10);
			s = end;
		}
		if (hi < lo || hi >= (1UL << 22))
			return -EINVAL;
		for (c = lo; c <= hi; c++) {
			if (fn)
				fn((unsigned int)c, arg);
			n++;
		}
		if (hi > max)
			max = (unsigned int)hi;
		if (*s == ',')
			s++;
		else if (*s && *s != '\n')
			return -EINVAL;
	}
	if (max_cpu)
		*max_cpu = max;
	return n;
}

int mc_nr_possible_cpus(void)
{
	unsigned int max;
	char buf[4096];
	long n;

	if (mc_read_file(SYS_CPU "/possible", buf, sizeof(buf)) >= 0 &&
	    mc_cpulist_parse(buf, NULL, NULL, &max) > 0)
		return (int)max + 1;
	n = sysconf(_SC_NPROCESSORS_CONF);
	return n > 0 ? (int)n : 1;
}

struct node_cpus {
	struct mc_topo *topo;
	int node;
};

static void set_node(unsigned int cpu, void *arg)
{
	struct node_cpus *nc = arg;

	if (cpu < nc->topo->nr_cpus)
		nc->topo->cpu_to_node[cpu] = nc->node;
}

int mc_topo_read(struct mc_topo *topo)
{
	char path[300], *list;
	struct dirent *de;
	unsigned int max_node = 0;
	DIR *dir;
	int err = 0;

	memset(topo, 0, sizeof(*topo));
	topo->nr_cpus = (unsigned int)mc_nr_possible_cpus();
	topo->cpu_to_node = calloc(topo->nr_cpus, sizeof(*topo->cpu_to_node));
	if (!topo->cpu_to_node)
		return -ENOMEM;

	dir = opendir(SYS_NODE);
	if (!dir) {
		topo->nr_nodes = 1;
		return errno == ENOENT ? 0 : -errno;
	}
	/* A cpulist of 1024 CPUs is at most ~5 KB ("1000,1002,..."); allow more. */
	list = malloc(65536);
	if (!list) {
		closedir(dir);
		return -ENOMEM;
	}
	while ((de = readdir(dir))) {
		struct node_cpus nc = { .topo = topo };
		char *end;
		unsigned long id;

		if (strncmp(de->d_name, "node", 4) || de->d_name[4] < '0' || de->d_name[4] > '9')
			continue;
		id = strtoul(de->d_name + 4, &end, 10);
		if (*end || id > 1UL << 20)
			continue;
		topo->nr_online_nodes++;
		if (id > max_node)
			max_node = (unsigned int)id;
		nc.node = (int)id;
		snprintf(path, sizeof(path), SYS_NODE "/%s/cpulist", de->d_name);
		if (mc_read_file(path, list, 65536) < 0 ||
		    mc_cpulist_parse(list, set_node, &nc, NULL) < 0)
			err = -EINVAL;
	}
	closedir(dir);
	free(list);
	topo->nr_nodes = topo->nr_online_nodes ? max_node + 1 : 1;
	return err;
}

void mc_topo_free(struct mc_topo *topo)
{
	free(topo->cpu_to_node);
	topo->cpu_to_node = NULL;
}
