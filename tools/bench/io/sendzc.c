/*
 * tools/bench/io/sendzc.c - mr_send with and without zero-copy
 * (MOIRAI_IO_SEND_ZC, include/moirai/io.h) over TCP on 127.0.0.1.
 *
 *	bench_io_sendzc copy-SIZE|zc-SIZE SECONDS
 *
 * One fiber on a runtime of one worker sends SIZE-byte chunks (4k, 64k,
 * 1m: suffixes k and m) with mr_send for SECONDS; a plain thread receives
 * them into a 1 MiB buffer with recv(2). zc-SIZE sets MOIRAI_IO_SEND_ZC to
 * SIZE before the first I/O call, so every chunk goes zero-copy; copy-SIZE
 * unsets it. The socket buffers are the kernel's defaults.
 *
 * Prints "MODE ops=N seconds=S ops_per_s=MBPS server_cpu_ns_per_op=C
 * backend=B": N chunks sent, MBPS MiB/s, C the sending worker's CPU time
 * (RUSAGE_THREAD, read in the fiber, which stays on the runtime's one
 * worker) per MiB sent. tools/bench/io/uring_ab.sh runs it.
 */
#define _GNU_SOURCE
#include <moirai/moirai.h>
#include <moirai/io.h>

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static size_t chunk;
static double secs;
static int sfd, cfd;
static uint64_t sent_bytes, sent_chunks, cpu_ns;

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *receiver(void *arg)
{
	(void)arg;
	char *buf = malloc(1 << 20);
	while (recv(cfd, buf, 1 << 20, 0) > 0)
		;
	free(buf);
	return NULL;
}

static void sender(void *arg)
{
	(void)arg;
	char *buf = malloc(chunk);
	memset(buf, 'z', chunk);
	int64_t end = mr_now_ns() + (int64_t)(secs * 1e9);
	uint64_t c0 = thread_cpu_ns();
	while (mr_now_ns() < end) {
		ssize_t n = mr_send(sfd, buf, chunk, 0);
		if (n < 0) {
			fprintf(stderr, "sendzc: mr_send: %s\n", strerror((int)-n));
			exit(1);
		}
		sent_bytes += (uint64_t)n;
		sent_chunks++;
	}
	cpu_ns = thread_cpu_ns() - c0;
	free(buf);
}

int main(int argc, char **argv)
{
	if (argc != 3)
		goto usage;
	const char *mode = argv[1], *dash = strchr(mode, '-');
	if (!dash)
		goto usage;
	char *end;
	chunk = strtoul(dash + 1, &end, 10);
	if (*end == 'k')
		chunk <<= 10;
	else if (*end == 'm')
		chunk <<= 20;
	secs = atof(argv[2]);
	if (!chunk || secs <= 0)
		goto usage;
	if (strncmp(mode, "zc-", 3) == 0) {
		char v[32];
		snprintf(v, sizeof(v), "%zu", chunk);
		setenv("MOIRAI_IO_SEND_ZC", v, 1);
	} else {
		unsetenv("MOIRAI_IO_SEND_ZC");
	}

	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 1) ||
	    getsockname(lfd, (struct sockaddr *)&a, &len))
		return perror("listen"), 1;
	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (connect(cfd, (struct sockaddr *)&a, sizeof(a)))
		return perror("connect"), 1;
	sfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	pthread_t th;
	pthread_create(&th, NULL, receiver, NULL);

	MR_OPTS(mr_config, cfg, .workers = 1);
	mr_runtime_t *rt = mr_runtime_create(&cfg);
	MR_OPTS(mr_fiber_opts, o, .runtime = rt);
	mr_fiber_t *f = mr_go_opts(sender, NULL, &o);
	if (!rt || !f)
		return perror("runtime"), 1;
	mr_fiber_join(f);
	shutdown(sfd, SHUT_WR);
	pthread_join(th, NULL);
	mr_runtime_destroy(rt);
	double mib = (double)sent_bytes / (1 << 20);
	printf("%s ops=%llu seconds=%.2f ops_per_s=%.0f server_cpu_ns_per_op=%.0f backend=%s\n", mode,
	       (unsigned long long)sent_chunks, secs, mib / secs, mib > 0 ? (double)cpu_ns / mib : 0,
	       mr_io_backend());
	return 0;
usage:
	fprintf(stderr, "usage: bench_io_sendzc copy-SIZE|zc-SIZE SECONDS\n");
	return 2;
}
