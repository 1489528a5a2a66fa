/*
 * export.c - the memory of a runtime's counters, and how others see it.
 *
 * Three kinds, tried in this order (MOIRAI_METRICS: unset or "1" all of
 * them, "shm" the last two, "0" only the last):
 *
 *  1. A BPF array map with BPF_F_MMAPABLE, one element per record, created
 *     with raw bpf() calls (the library does not link libbpf) and with BTF
 *     that we encode here from offsetof() of every public field, so that
 *     bpftool prints `"jobs_run": 1234` rather than bytes. We mmap it
 *     (elements of an mmapable array lie back to back from offset 0, each
 *     rounded up to 8 bytes: ours are 320), pin it at
 *     /sys/fs/bpf/moirai/<pid>/rt<id> (mode 0600: bpffs applies the
 *     creator's umask to 0600) and close the fd: the mapping and the pin
 *     keep the map. Needs CAP_BPF (or root) and a bpffs at /sys/fs/bpf
 *     (checked with statfs: without the check we would pin into a plain
 *     directory and fail late).
 *  2. A file /dev/shm/moirai-stats.<pid>.<id>, 0600, O_EXCL; a file of that
 *     name left by a dead process with our pid is replaced. The version
 *     field of each record is stored last (release), so a reader that sees
 *     MR_STATS_VERSION sees a whole record.
 *  3. Plain memory: mr_runtime_stats() still works.
 *
 * Cleanup: mr__metrics_close() when the runtime is destroyed; an atexit
 * handler for the runtimes alive at exit(). Only the process that made an
 * export removes it: a child of fork() inherits the list and the mapping
 * but not the ownership (and none of its parent's runtimes works there).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/btf.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"

#define BPFFS "/sys/fs/bpf"
#define PIN_DIR BPFFS "/moirai"
#define SHM_FMT "/dev/shm/moirai-stats.%d.%u"
#define BPF_FS_MAGIC_ 0xcafe4a11

int mr__test_metrics_kind = -1;

/* Live exports, for the exit handler. A leaf lock (user/README.md). */
static pthread_mutex_t exports_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mr__metrics *exports;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

/* ---- BTF for struct mr_worker_stats ------------------------------------- */

enum { T_U32 = 1, T_S32, T_U64, T_STRUCT };

#define FIELD(name, type) { #name, offsetof(struct mr_worker_stats, name), type }
static const struct field {
	const char *name;
	uint32_t off;
	uint32_t type;
} fields[] = {
	FIELD(version, T_U32),
	FIELD(size, T_U32),
	FIELD(worker, T_U32),
	FIELD(nworkers, T_U32),
	FIELD(runtime, T_U32),
	FIELD(pid, T_S32),
	FIELD(tid, T_S32),
	FIELD(state, T_U32),
	FIELD(start_ns, T_U64),
	FIELD(parked_since_ns, T_U64),
	FIELD(jobs_run, T_U64),
	FIELD(jobs_stolen, T_U64),
	FIELD(steal_attempts, T_U64),
	FIELD(injector_pops, T_U64),
	FIELD(parks, T_U64),
	FIELD(park_ns, T_U64),
	FIELD(wakeups_sent, T_U64),
	FIELD(wakeups_received, T_U64),
	FIELD(fibers_spawned, T_U64),
	FIELD(fiber_exits, T_U64),
	FIELD(fiber_runs, T_U64),
	FIELD(fiber_parks, T_U64),
	FIELD(fiber_wakeups, T_U64),
	FIELD(fiber_readies, T_U64),
	FIELD(chan_blocks, T_U64),
	FIELD(timer_fires, T_U64),
	FIELD(io_submitted, T_U64),
	FIELD(io_completed, T_U64),
	FIELD(io_cancelled, T_U64),
	FIELD(io_backend, T_U64),
	FIELD(io_rescued, T_U64),
	FIELD(jobs_stolen_from, T_U64),
};
#undef FIELD

#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

/* Every public field but the reserved ones is described: a new field that
 * is not added above fails here (the last one's end is where the reserved
 * tail begins). */
_Static_assert(offsetof(struct mr_worker_stats, reserved_) ==
		       offsetof(struct mr_worker_stats, io_rescued) + 8,
	       "a field of struct mr_worker_stats is missing from fields[]");
_Static_assert(sizeof(struct mr_worker_stats) % 64 == 0, "records are whole cache lines");
/* The layout is public (readers of another build check only version and
 * size): a new field takes a reserved slot, it never moves the others. */
_Static_assert(sizeof(struct mr_worker_stats) == 320 &&
		       offsetof(struct mr_worker_stats, io_rescued) == 208 &&
		       offsetof(struct mr_worker_stats, jobs_stolen_from) == 256,
	       "struct mr_worker_stats changed layout: MR_STATS_VERSION would have to change");

struct strtab {
	char buf[1024];
	uint32_t len;
};

static uint32_t str_add(struct strtab *s, const char *str)
{
	uint32_t off = s->len;
	size_t n = strlen(str) + 1;

	memcpy(s->buf + s->len, str, n);
	s->len += (uint32_t)n;
	return off;
}

/*
 * The BTF blob: header, types, strings. Types: 1 u32, 2 s32, 3 u64 (ints),
 * 4 struct mr_worker_stats. Returns its size; buf must hold 4096 bytes.
 */
static size_t btf_build(char *buf)
{
	struct strtab s = { .len = 0 };
	struct btf_header *h = (struct btf_header *)buf;
	char *t = buf + sizeof(*h), *p = t;
	static const struct {
		const char *name;
		uint32_t size, bits;
	} ints[] = { { "__u32", 4, 32 }, { "__s32", 4, BTF_INT_SIGNED << 24 | 32 },
		     { "__u64", 8, 64 } };

	str_add(&s, ""); /* offset 0: the empty name */
	for (size_t i = 0; i < 3; i++) {
		struct btf_type bt = { .name_off = str_add(&s, ints[i].name),
				       .info = BTF_KIND_INT << 24,
				       .size = ints[i].size };
		uint32_t enc = ints[i].bits;
		memcpy(p, &bt, sizeof(bt));
		p += sizeof(bt);
		memcpy(p, &enc, sizeof(enc));
		p += sizeof(enc);
	}
	struct btf_type st = { .name_off = str_add(&s, "mr_worker_stats"),
			       .info = BTF_KIND_STRUCT << 24 | (uint32_t)NFIELDS,
			       .size = sizeof(struct mr_worker_stats) };
	memcpy(p, &st, sizeof(st));
	p += sizeof(st);
	for (size_t i = 0; i < NFIELDS; i++) {
		struct btf_member m = { .name_off = str_add(&s, fields[i].name),
					.type = fields[i].type,
					.offset = fields[i].off * 8 };
		memcpy(p, &m, sizeof(m));
		p += sizeof(m);
	}
	memset(h, 0, sizeof(*h));
	h->magic = BTF_MAGIC;
	h->version = BTF_VERSION;
	h->hdr_len = sizeof(*h);
	h->type_off = 0;
	h->type_len = (uint32_t)(p - t);
	h->str_off = h->type_len;
	h->str_len = s.len;
	memcpy(p, s.buf, s.len);
	return sizeof(*h) + h->type_len + s.len;
}

_Static_assert(sizeof(struct btf_header) + 3 * 16 + 12 + NFIELDS * 12 + 1024 <= 4096,
	       "the BTF blob fits its buffer");

static long sys_bpf(int cmd, union bpf_attr *a)
{
	return syscall(SYS_bpf, cmd, a, sizeof(*a));
}

static int btf_load(void)
{
	char blob[4096];
	union bpf_attr a;

	memset(&a, 0, sizeof(a));
	a.btf = (uint64_t)(uintptr_t)blob;
	a.btf_size = (uint32_t)btf_build(blob);
	return (int)sys_bpf(BPF_BTF_LOAD, &a);
}

static bool is_bpffs(const char *path)
{
	struct statfs sf;

	return statfs(path, &sf) == 0 && (unsigned long)sf.f_type == BPF_FS_MAGIC_;
}

/*
 * A directory we may pin into: a real directory (not a symlink), owned by
 * root or by us, that no one else may write to unless it is sticky. A
 * bpffs mounted without mode= is 1777 (anyone may create moirai/ there
 * first, or links inside it), so nothing in it is trusted unchecked.
 * `mine`: it must be ours alone (our pid's directory: we unlink in it).
 */
static bool trusted_dir(const char *path, bool mine)
{
	struct stat sb;
	uid_t me = geteuid();

	if (lstat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
		return false;
	if (mine)
		return sb.st_uid == me && !(sb.st_mode & 077);
	return (sb.st_uid == 0 || sb.st_uid == me) &&
	       (!(sb.st_mode & 022) || (sb.st_mode & S_ISVTX));
}

/* 1: a pinned, mmapped BPF array map. */
static int open_bpf(struct mr__metrics *m, uint32_t id, unsigned nrec)
{
	union bpf_attr a;
	char dir[64];
	int btf, fd, r;

	if (!is_bpffs(BPFFS))
		return -ENOENT;
	btf = btf_load();
	if (btf < 0)
		return -errno;
	memset(&a, 0, sizeof(a));
	a.map_type = BPF_MAP_TYPE_ARRAY;
	a.key_size = sizeof(uint32_t);
	a.value_size = sizeof(struct mr_worker_stats);
	a.max_entries = nrec;
	a.map_flags = BPF_F_MMAPABLE;
	snprintf(a.map_name, sizeof(a.map_name), "moirai_stats");
	a.btf_fd = (uint32_t)btf;
	a.btf_key_type_id = T_U32;
	a.btf_value_type_id = T_STRUCT;
	fd = (int)sys_bpf(BPF_MAP_CREATE, &a);
	r = fd < 0 ? -errno : 0;
	close(btf);
	if (r)
		return r;
	void *p = mmap(NULL, m->len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		r = -errno;
		close(fd);
		return r;
	}
	/* The directory only once there is a map to pin: where bpf() is
	 * refused (qemu-user, a seccomp filter) none is left behind. */
	snprintf(dir, sizeof(dir), PIN_DIR "/%d", (int)m->owner);
	(void)mkdir(PIN_DIR, 0755);
	(void)mkdir(dir, 0700);
	if (!trusted_dir(PIN_DIR, false) || !trusted_dir(dir, true)) {
		r = -EPERM;
		goto fail;
	}
	snprintf(m->path, sizeof(m->path), "%s/rt%u", dir, id);
	memset(&a, 0, sizeof(a));
	a.pathname = (uint64_t)(uintptr_t)m->path;
	a.bpf_fd = (uint32_t)fd;
	r = (int)sys_bpf(BPF_OBJ_PIN, &a);
	if (r < 0 && errno == EEXIST) {
		/* Left by a dead process that had our pid, in a directory that
		 * only we may write (trusted_dir()). */
		unlink(m->path);
		r = (int)sys_bpf(BPF_OBJ_PIN, &a);
	}
	if (r < 0) {
		r = -errno;
		goto fail;
	}
	close(fd);
	m->recs = p;
	m->kind = MR__METRICS_BPF;
	return 0;

fail:
	munmap(p, m->len);
	close(fd);
	if (trusted_dir(dir, true))
		rmdir(dir); /* ours; fails if another runtime of ours pinned there */
	m->path[0] = 0;
	return r;
}

/* 2: a file in /dev/shm. */
static int open_shm(struct mr__metrics *m, uint32_t id)
{
	int fd, r;

	snprintf(m->path, sizeof(m->path), SHM_FMT, (int)m->owner, id);
	fd = open(m->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 && errno == EEXIST) {
		unlink(m->path);
		fd = open(m->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	}
	if (fd < 0) {
		r = -errno;
		m->path[0] = 0;
		return r;
	}
	/* Allocated now, not on first touch: a full tmpfs (a container's
	 * small /dev/shm) must fail here, not SIGBUS a counter's store. */
	void *p = MAP_FAILED;
	r = -posix_fallocate(fd, 0, (off_t)m->len);
	if (!r) {
		p = mmap(NULL, m->len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		r = p == MAP_FAILED ? -errno : 0;
	}
	close(fd);
	if (r) {
		unlink(m->path);
		m->path[0] = 0;
		return r;
	}
	m->recs = p;
	m->kind = MR__METRICS_SHM;
	return 0;
}

static void remove_export(struct mr__metrics *m)
{
	if (!m->path[0] || m->owner != getpid())
		return;
	unlink(m->path);
	if (m->kind == MR__METRICS_BPF) {
		char *slash = strrchr(m->path, '/');
		*slash = 0;
		rmdir(m->path); /* fails while another runtime of ours is pinned there */
		*slash = '/';
	}
}

static void at_exit(void)
{
	pthread_mutex_lock(&exports_lock);
	for (struct mr__metrics *m = exports; m; m = m->next)
		remove_export(m);
	pthread_mutex_unlock(&exports_lock);
}

static void install_exit(void)
{
	atexit(at_exit);
}

/* The child of fork() owns none of its parent's exports, and the lock may
 * have been held by another thread of the parent when it forked. */
static void atfork_child(void)
{
	pthread_mutex_init(&exports_lock, NULL);
	exports = NULL;
}

__attribute__((constructor)) static void atfork_install(void)
{
	pthread_atfork(NULL, NULL, atfork_child);
}

static int wanted(void)
{
	const char *e = getenv("MOIRAI_METRICS");

	if (mr__test_metrics_kind >= 0)
		return mr__test_metrics_kind;
	if (!e || !*e || !strcmp(e, "1") || !strcmp(e, "bpf"))
		return MR__METRICS_BPF;
	if (!strcmp(e, "shm"))
		return MR__METRICS_SHM;
	return MR__METRICS_HEAP;
}

int mr__metrics_open(struct mr__metrics *m, uint32_t id, unsigned nworkers)
{
	unsigned nrec = nworkers + 1;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	int want = wanted();

	memset(m, 0, sizeof(*m));
	m->owner = getpid();
	m->len = (nrec * sizeof(struct mr_worker_stats) + page - 1) & ~(page - 1);
	if (want == MR__METRICS_BPF && open_bpf(m, id, nrec) < 0)
		want = MR__METRICS_SHM;
	if (!m->recs && want == MR__METRICS_SHM && open_shm(m, id) < 0)
		want = MR__METRICS_HEAP;
	if (!m->recs) {
		void *p = mmap(NULL, m->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			       -1, 0);
		if (p == MAP_FAILED)
			return -ENOMEM;
		m->recs = p;
		m->kind = MR__METRICS_HEAP;
	}
	for (unsigned i = 0; i < nrec; i++) {
		struct mr_worker_stats *st = &m->recs[i];
		memset(st, 0, sizeof(*st));
		st->size = sizeof(*st);
		st->worker = i;
		st->nworkers = nworkers;
		st->runtime = id;
		st->pid = (int32_t)m->owner;
		/* release: a reader that sees the version sees the rest. */
		__atomic_store_n(&st->version, MR_STATS_VERSION, __ATOMIC_RELEASE);
	}
	if (m->path[0]) {
		pthread_once(&exit_once, install_exit);
		pthread_mutex_lock(&exports_lock);
		m->next = exports;
		exports = m;
		pthread_mutex_unlock(&exports_lock);
	}
	return 0;
}

void mr__metrics_close(struct mr__metrics *m)
{
	if (!m->recs)
		return;
	if (m->path[0]) {
		pthread_mutex_lock(&exports_lock);
		for (struct mr__metrics **pp = &exports; *pp; pp = &(*pp)->next)
			if (*pp == m) {
				*pp = m->next;
				break;
			}
		pthread_mutex_unlock(&exports_lock);
		remove_export(m);
	}
	munmap(m->recs, m->len);
	m->recs = NULL;
}
