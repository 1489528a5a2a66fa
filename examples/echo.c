/*
 * echo.c - a TCP echo server: a fiber per connection, written as blocking
 * code. mr_accept, mr_recv and mr_send park the calling fiber, not its
 * worker, so a few workers serve any number of connections.
 *
 *	echo [-p PORT] [-w WORKERS]     (default port 7000, one worker per CPU)
 *	nc 127.0.0.1 7000
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <moirai/moirai.h>

/* A send may take only part of the buffer (the socket's is full). */
static bool send_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = mr_send(fd, buf, len, 0);
		if (n < 0)
			return false; /* -EPIPE, -ECONNRESET: the peer is gone */
		buf += n;
		len -= (size_t)n;
	}
	return true;
}

static void echo(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[4096];
	ssize_t n;

	while ((n = mr_recv(fd, buf, sizeof(buf), 0)) > 0)
		if (!send_all(fd, buf, (size_t)n))
			break;
	/* close(2): it never blocks on a socket, and unlike mr_close() it
	 * works on a worker that found no fd left for its ring (EMFILE). */
	close(fd);
}

static void serve(void *arg)
{
	int lfd = (int)(intptr_t)arg;

	for (;;) {
		int fd = mr_accept(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (fd == -EMFILE || fd == -ENFILE)
				mr_sleep_ns(10 * 1000 * 1000); /* wait for a connection to end */
			continue;
		}
		mr_fiber_t *f = mr_go(echo, (void *)(intptr_t)fd);
		if (f)
			mr_fiber_detach(f); /* it closes its fd and frees itself */
		else
			close(fd);
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_in addr = {.sin_family = AF_INET};
	socklen_t len = sizeof(addr);
	int port = 7000, workers = 0, one = 1, c;

	while ((c = getopt(argc, argv, "p:w:")) != -1) {
		if (c == 'p')
			port = atoi(optarg);
		else if (c == 'w')
			workers = atoi(optarg);
		else {
			fprintf(stderr, "usage: echo [-p PORT] [-w WORKERS]\n");
			return 2;
		}
	}
	addr.sin_port = htons((uint16_t)port);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(lfd, SOMAXCONN) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&addr, &len) < 0) {
		perror("echo");
		return 1;
	}

	/* -w: a runtime of that many workers; else the default one. */
	MR_OPTS(mr_config, cfg, .workers = (unsigned)workers);
	mr_runtime_t *rt = workers > 0 ? mr_runtime_create(&cfg) : NULL;
	if (workers > 0 && !rt) {
		perror("echo: mr_runtime_create");
		return 1;
	}
	printf("echo: listening on %d\n", ntohs(addr.sin_port)); /* -p 0: the kernel's pick */
	fflush(stdout);
	return -mr_run(rt, serve, (void *)(intptr_t)lfd); /* serves until killed */
}
