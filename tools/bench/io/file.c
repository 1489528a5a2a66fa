/*
 * tools/bench/io/file.c - Moirai's side of the file I/O benchmark: 4 KiB
 * random reads at a fixed queue depth through mr_pread.
 *
 *	bench_io_file FILE QD WORKERS SECONDS [direct]
 *
 * Starts QD fibers on a runtime of WORKERS workers; each reads 4 KiB
 * blocks at uniformly random 4 KiB-aligned offsets of FILE with mr_pread,
 * one after another, until SECONDS have passed. So at most QD reads are in
 * flight, as with fio's iodepth=QD. "direct" opens FILE with O_DIRECT
 * (buffers are 4 KiB-aligned). Every read must return 4096 bytes.
 *
 * Prints "file: backend=B ops=N seconds=S iops=I". The fio run it is set
 * against (tools/bench/io/run.sh) reads the same file with the same block
 * size, pattern and depth: --ioengine=io_uring --rw=randread --bs=4k.
 *
 * The clock is read after every read: a vDSO call, ~20 ns next to a read
 * of ~1 us from the page cache.
 */
#define _GNU_SOURCE /* O_DIRECT */
#include <moirai/moirai.h>
#include <moirai/io.h>

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLOCK 4096

struct reader {
	int fd;
	uint64_t blocks;
	uint64_t rng;
	int64_t end_ns;
	uint64_t ops;
	int err;
	void *buf;
};

static uint64_t next(uint64_t *s)
{
	/* xorshift64*: cheap and good enough to spread offsets */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1DULL;
}

static void reader(void *arg)
{
	struct reader *r = arg;

	while (mr_now_ns() < r->end_ns) {
		off_t off = (off_t)(next(&r->rng) % r->blocks) * BLOCK;
		ssize_t n = mr_pread(r->fd, r->buf, BLOCK, off);

		if (n != BLOCK) {
			r->err = n < 0 ? (int)-n : EIO;
			return;
		}
		r->ops++;
	}
}

struct job {
	const char *path;
	unsigned qd;
	double seconds;
	int direct;
	int rc;
};

static void run(void *arg)
{
	struct job *j = arg;
	struct stat st;
	struct reader *rs = calloc(j->qd, sizeof(*rs));
	mr_fiber_t **fs = calloc(j->qd, sizeof(*fs));
	int fd = open(j->path, O_RDONLY | O_CLOEXEC | (j->direct ? O_DIRECT : 0));
	uint64_t ops = 0;
	int64_t t0, t1;

	if (!rs || !fs || fd < 0 || fstat(fd, &st) < 0 || st.st_size < BLOCK) {
		fprintf(stderr, "file: cannot read %s: %s\n", j->path, strerror(errno));
		j->rc = 1;
		return;
	}
	t0 = mr_now_ns();
	for (unsigned i = 0; i < j->qd; i++) {
		rs[i].fd = fd;
		rs[i].blocks = (uint64_t)st.st_size / BLOCK;
		rs[i].rng = 0x9E3779B97F4A7C15ULL * (i + 1);
		rs[i].end_ns = t0 + (int64_t)(j->seconds * 1e9);
		if (posix_memalign(&rs[i].buf, BLOCK, BLOCK)) {
			fprintf(stderr, "file: out of memory\n");
			exit(1);
		}
		fs[i] = mr_go(reader, &rs[i]);
		if (!fs[i]) {
			fprintf(stderr, "file: mr_go: %s\n", strerror(errno));
			exit(1);
		}
	}
	for (unsigned i = 0; i < j->qd; i++)
		mr_fiber_join(fs[i]);
	t1 = mr_now_ns();
	for (unsigned i = 0; i < j->qd; i++) {
		if (rs[i].err) {
			fprintf(stderr, "file: pread: %s\n", strerror(rs[i].err));
			j->rc = 1;
		}
		ops += rs[i].ops;
		free(rs[i].buf);
	}
	printf("file: backend=%s ops=%llu seconds=%.3f iops=%.0f\n", mr_io_backend(),
	       (unsigned long long)ops, (t1 - t0) / 1e9, ops / ((t1 - t0) / 1e9));
	close(fd);
	free(rs);
	free(fs);
}

int main(int argc, char **argv)
{
	struct job j = { 0 };
	mr_runtime_t *rt;
	int rc;

	if (argc < 5 || argc > 6 || (argc == 6 && strcmp(argv[5], "direct"))) {
		fprintf(stderr, "usage: %s FILE QD WORKERS SECONDS [direct]\n", argv[0]);
		return 2;
	}
	j.path = argv[1];
	j.qd = (unsigned)atoi(argv[2]);
	j.seconds = atof(argv[4]);
	j.direct = argc == 6;
	MR_OPTS(mr_config, cfg, .workers = (unsigned)atoi(argv[3]));
	if (j.qd < 1 || j.seconds <= 0 || cfg.workers < 1) {
		fprintf(stderr, "file: QD, WORKERS and SECONDS must be positive\n");
		return 2;
	}
	rt = mr_runtime_create(&cfg);
	if (!rt) {
		perror("file: mr_runtime_create");
		return 1;
	}
	rc = mr_run(rt, run, &j);
	if (rc < 0) {
		fprintf(stderr, "file: mr_run: %s\n", strerror(-rc));
		return 1;
	}
	mr_runtime_destroy(rt);
	return j.rc;
}
