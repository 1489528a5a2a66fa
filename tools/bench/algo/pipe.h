/*
 * pipe.h - the stages of the pipeline benchmark, shared by pipe.c (a
 * loop, Moirai's two pipelines) and pipe.cpp (oneTBB's parallel_pipeline),
 * so only the scheduling differs: read the input file in blocks of
 * PIPE_BLOCK bytes (serial, in order), transform each 8-byte word with a
 * few multiply-xor rounds (parallel), write the blocks to the output file
 * (serial, in order) folding each block's sum into an order-dependent
 * hash, which is the check. Blocks come from a free list under a mutex,
 * not malloc: glibc's free() trimmed the heap with an madvise of ~0.5 ms
 * on some block orders (the fiber pipeline's), which measured the
 * allocator instead of the pipeline.
 */
#ifndef MOIRAI_BENCH_PIPE_H
#define MOIRAI_BENCH_PIPE_H

#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define PIPE_BLOCK (64 * 1024)

struct pblock {
	size_t len;
	uint64_t seq;	     /* pipe.c's pthreads version: the reading order */
	struct pblock *next; /* on the free list */
	uint64_t w[PIPE_BLOCK / 8];
};

struct pfiles {
	int in, out;
	uint64_t hash;
	pthread_mutex_t lock; /* the free list */
	struct pblock *free;
};

static inline struct pblock *pblock_get(struct pfiles *f)
{
	pthread_mutex_lock(&f->lock);
	struct pblock *b = f->free;
	if (b)
		f->free = b->next;
	pthread_mutex_unlock(&f->lock);
	return b ? b : (struct pblock *)malloc(sizeof(*b));
}

static inline void pblock_put(struct pfiles *f, struct pblock *b)
{
	pthread_mutex_lock(&f->lock);
	b->next = f->free;
	f->free = b;
	pthread_mutex_unlock(&f->lock);
}

/* Create path with size bytes of a fixed pseudo-random stream (once). */
static inline int pipe_make_input(const char *path, size_t size)
{
	int fd = open(path, O_RDONLY);
	if (fd >= 0 && (size_t)lseek(fd, 0, SEEK_END) == size) {
		close(fd);
		return 0;
	}
	if (fd >= 0)
		close(fd);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -1;
	uint64_t x = 88172645463325252ull, *buf = (uint64_t *)malloc(PIPE_BLOCK);
	for (size_t done = 0; done < size; done += PIPE_BLOCK) {
		for (size_t i = 0; i < PIPE_BLOCK / 8; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[i] = x;
		}
		size_t n = size - done < PIPE_BLOCK ? size - done : PIPE_BLOCK;
		if (write(fd, buf, n) != (ssize_t)n)
			return -1;
	}
	free(buf);
	return close(fd);
}

static inline struct pblock *pipe_read(struct pfiles *f)
{
	struct pblock *b = pblock_get(f);
	ssize_t n = b ? read(f->in, b->w, PIPE_BLOCK) : -1;
	if (n <= 0) {
		if (b)
			pblock_put(f, b);
		return NULL;
	}
	b->len = (size_t)n;
	return b;
}

static inline void pipe_transform(struct pblock *b)
{
	for (size_t i = 0; i < b->len / 8; i++) {
		uint64_t x = b->w[i];
		for (int r = 0; r < 4; r++) {
			x *= 0x9e3779b97f4a7c15ull;
			x ^= x >> 29;
		}
		b->w[i] = x;
	}
}

static inline void pipe_write(struct pfiles *f, struct pblock *b)
{
	uint64_t s = 0;
	for (size_t i = 0; i < b->len / 8; i++)
		s += b->w[i];
	f->hash = f->hash * 1000003u ^ s;
	if (write(f->out, b->w, b->len) != (ssize_t)b->len)
		abort();
	pblock_put(f, b);
}

static inline void pipe_open(struct pfiles *f, const char *in, const char *out)
{
	f->in = open(in, O_RDONLY);
	f->out = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	f->hash = 0;
	f->free = NULL;
	pthread_mutex_init(&f->lock, NULL);
	if (f->in < 0 || f->out < 0)
		abort();
}

static inline void pipe_close(struct pfiles *f)
{
	close(f->in);
	close(f->out);
	while (f->free) {
		struct pblock *b = f->free;
		f->free = b->next;
		free(b);
	}
}

#endif /* MOIRAI_BENCH_PIPE_H */
