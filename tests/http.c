/*
 * http.c - the HTTP example: its parser (examples/http.h) directly, and
 * the server (build/.../examples/httpd) end to end over TCP.
 *
 * Parser: valid requests, every truncation of them ("need more", never
 * "bad"), pipelined requests, refused ones, the 8 KiB head limit, and
 * 100k random byte strings and 100k mutations of valid requests. Every
 * input is parsed from a malloc'd buffer of exactly its length, so under
 * ASan (make check) a read past its end fails the test.
 *
 * Server: the test runs the httpd next to its own binary
 * (dirname(argv[0])/../examples/httpd; the Makefile builds it first) on a
 * port the kernel picks (-p 0), reads "listening on PORT", talks to it,
 * then stops it with SIGTERM and checks its last line and exit status.
 * No test asserts a timing: waits are bounded only to turn a hang into a
 * failure.
 */
#include <dirent.h>
#include <fcntl.h>
#include <libgen.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "harness.h"
#include "util.h"

#include "../examples/http.h"

/* ---- the parser ------------------------------------------------------------ */

/* Parse a copy of s[0, len) in a buffer of exactly len bytes. */
static int parse_n(const char *s, size_t len, struct http_request *req)
{
	char *b = malloc(len ? len : 1);
	ASSERT_NONNULL(b);
	memcpy(b, s, len);
	int k = http_parse(b, len, req);
	if (k > 0) {
		/* The target points into b: check it, then make it point into s. */
		ASSERT_TRUE(req->target >= b && req->target + req->target_len <= b + k);
		ASSERT_EQ(req->target[0], '/');
		req->target = s + (req->target - b);
	}
	free(b);
	return k;
}

static int parse(const char *s, struct http_request *req)
{
	return parse_n(s, strlen(s), req);
}

struct valid {
	const char *text;
	enum http_method method;
	const char *target;
	int minor;
	bool keep_alive;
};

static const struct valid valid[] = {
    {"GET / HTTP/1.1\r\n\r\n", HTTP_GET, "/", 1, true},
    {"GET / HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n",
     HTTP_GET, "/", 1, true},
    {"HEAD /index.html?a=b&c HTTP/1.1\r\nHost: x\r\n\r\n", HTTP_HEAD, "/index.html?a=b&c", 1, true},
    {"GET /sum?n=1000 HTTP/1.1\r\nConnection: close\r\n\r\n", HTTP_GET, "/sum?n=1000", 1, false},
    {"GET / HTTP/1.1\r\nconnection:   Upgrade, CLOSE \r\n\r\n", HTTP_GET, "/", 1, false},
    {"GET / HTTP/1.0\r\n\r\n", HTTP_GET, "/", 0, false},
    {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", HTTP_GET, "/", 0, true},
    {"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", HTTP_GET, "/", 0, false},
    {"GET /a HTTP/1.1\r\nContent-Length: 0\r\nX-Empty:\r\nX-Tab:\tv\t\r\n\r\n", HTTP_GET, "/a", 1,
     true},
    {"GET / HTTP/1.1\r\nX-Utf8: \xc3\xa9t\xc3\xa9\r\n\r\n", HTTP_GET, "/", 1, true},
};

#define NVALID (sizeof(valid) / sizeof(valid[0]))

TEST(parser_valid_requests)
{
	for (size_t i = 0; i < NVALID; i++) {
		struct http_request req;
		size_t len = strlen(valid[i].text);

		ASSERT_EQ(parse(valid[i].text, &req), (int)len);
		EXPECT_EQ(req.method, valid[i].method);
		EXPECT_EQ(req.target_len, strlen(valid[i].target));
		EXPECT_EQ(memcmp(req.target, valid[i].target, req.target_len), 0);
		EXPECT_EQ(req.minor, valid[i].minor);
		EXPECT_EQ(req.keep_alive, valid[i].keep_alive);
	}
}

TEST(parser_every_truncation_needs_more)
{
	for (size_t i = 0; i < NVALID; i++) {
		struct http_request req;
		size_t len = strlen(valid[i].text);

		for (size_t n = 0; n < len; n++) {
			int k = parse_n(valid[i].text, n, &req);
			if (k != HTTP_NEED_MORE)
				TH_LOG("request %zu cut at %zu: %d", i, n, k);
			ASSERT_EQ(k, HTTP_NEED_MORE);
		}
	}
}

TEST(parser_pipelined_requests)
{
	char buf[4096] = "";
	size_t off = 0, len;

	for (size_t i = 0; i < NVALID; i++)
		strcat(buf, valid[i].text);
	strcat(buf, "GET /partial HTTP/1.1\r\nHo");
	len = strlen(buf);
	for (size_t i = 0; i < NVALID; i++) {
		struct http_request req;
		int k = parse_n(buf + off, len - off, &req);

		ASSERT_EQ(k, (int)strlen(valid[i].text));
		EXPECT_EQ(req.target_len, strlen(valid[i].target));
		EXPECT_EQ(req.keep_alive, valid[i].keep_alive);
		off += (size_t)k;
	}
	struct http_request req;
	ASSERT_EQ(parse_n(buf + off, len - off, &req), HTTP_NEED_MORE);
}

TEST(parser_refuses_what_it_cannot_serve)
{
	static const char *const bad[] = {
	    "POST / HTTP/1.1\r\n\r\n",
	    "get / HTTP/1.1\r\n\r\n",
	    "GET  / HTTP/1.1\r\n\r\n",
	    "GET * HTTP/1.1\r\n\r\n",
	    "GET http://example.com/ HTTP/1.1\r\n\r\n",
	    "GET /a\tb HTTP/1.1\r\n\r\n",
	    "GET /\x7f HTTP/1.1\r\n\r\n",
	    "GET /\xc3\xa9 HTTP/1.1\r\n\r\n",
	    "GET / HTTP/2.0\r\n\r\n",
	    "GET / HTTP/1.2\r\n\r\n",
	    "GET / http/1.1\r\n\r\n",
	    "GET / HTTP/1.1\n\n",
	    "GET / HTTP/1.1 \r\n\r\n",
	    "GET / HTTP/1.1\r\nHost: x\n\r\n",
	    "GET / HTTP/1.1\r\nHost: x\rY\r\n\r\n",
	    "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
	    "GET / HTTP/1.1\r\n: x\r\n\r\n",
	    "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
	    "GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
	    "GET / HTTP/1.1\r\nA: b\x01\r\n\r\n",
	    "GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n",
	    "GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
	    "GET / HTTP/1.1\r\nContent-Length: 00\r\nContent-Length: 1\r\n\r\n",
	    "GET / HTTP/1.1\r\nContent-Length: -0\r\n\r\n",
	    "GET / HTTP/1.1\r\nContent-Length:\r\n\r\n",
	    "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	    "GET / HTTP/1.1\r\n\rX",
	    "\r\nGET / HTTP/1.1\r\n\r\n",
	    "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", /* a TLS ClientHello */
	    "GX",
	    "HEX",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct http_request req;
		int k = parse(bad[i], &req);
		if (k != HTTP_BAD)
			TH_LOG("bad[%zu] gave %d", i, k);
		EXPECT_EQ(k, HTTP_BAD);
	}
	/* Refused at the first byte that rules a request out. */
	struct http_request req;
	EXPECT_EQ(parse("GET / HTTP/1.1\r\nX: \x01", &req), HTTP_BAD);
	EXPECT_EQ(parse("G\x00", &req), HTTP_NEED_MORE); /* strlen: the NUL is not passed */
	EXPECT_EQ(parse_n("G\x00", 2, &req), HTTP_BAD);
}

/* A request whose head is exactly `len` bytes, padded in one header. */
static char *head_of(size_t len)
{
	const char *start = "GET / HTTP/1.1\r\nX-Pad: ", *end = "\r\n\r\n";
	char *s = malloc(len + 1);
	ASSERT_NONNULL(s);
	size_t pad = len - strlen(start) - strlen(end);
	strcpy(s, start);
	memset(s + strlen(start), 'a', pad);
	strcpy(s + strlen(start) + pad, end);
	return s;
}

TEST(parser_head_too_long)
{
	struct http_request req;
	char *fits = head_of(HTTP_MAX_HEAD), *over = head_of(HTTP_MAX_HEAD + 1);

	EXPECT_EQ(parse(fits, &req), HTTP_MAX_HEAD);
	EXPECT_EQ(parse_n(fits, HTTP_MAX_HEAD - 1, &req), HTTP_NEED_MORE);
	EXPECT_EQ(parse(over, &req), HTTP_BAD);
	/* Bad as soon as HTTP_MAX_HEAD bytes hold no end, not later. */
	EXPECT_EQ(parse_n(over, HTTP_MAX_HEAD, &req), HTTP_BAD);
	EXPECT_EQ(parse_n(over, HTTP_MAX_HEAD - 1, &req), HTTP_NEED_MORE);
	free(fits);
	free(over);
}

/*
 * What must hold for any input: the result is bad, need more (only below
 * the limit) or a length within the input and the limit; and it is stable
 * under appending bytes (a complete request stays the same length, a bad
 * one stays bad).
 */
static void check_any(const char *s, size_t len, uint64_t *rng, bool prefixes)
{
	struct http_request req;
	int k = parse_n(s, len, &req);

	ASSERT_GE(k, HTTP_BAD);
	ASSERT_LE(k, (int)(len < HTTP_MAX_HEAD ? len : HTTP_MAX_HEAD));
	if (k == HTTP_NEED_MORE)
		ASSERT_LT(len, HTTP_MAX_HEAD);
	if (k != HTTP_NEED_MORE) {
		char *t = malloc(len + 1);
		ASSERT_NONNULL(t);
		memcpy(t, s, len);
		t[len] = (char)rnd(rng);
		ASSERT_EQ(parse_n(t, len + 1, &req), k);
		free(t);
	}
	if (k > 0 && prefixes)
		for (int n = 0; n < k; n++)
			ASSERT_EQ(parse_n(s, (size_t)n, &req), HTTP_NEED_MORE);
}

/* Pieces that take random strings deep into the grammar. */
static const char *const pieces[] = {
    "GET ",
    "HEAD ",
    "/",
    "/sum?n=1",
    " ",
    "HTTP/1.1",
    "HTTP/1.0",
    "\r\n",
    "\r",
    "\n",
    ":",
    "Connection: close",
    "Connection: keep-alive",
    "Content-Length: 0",
    "Content-Length: 7",
    "Transfer-Encoding: x",
    "Host: a",
    "\t",
    "\x80",
    "\0",
    "G",
    "HTTP/1.",
};

TEST(parser_random_bytes)
{
	uint64_t rng = 0x9e3779b97f4a7c15ull;
	char buf[512];

	for (int i = 0; i < 100000; i++) {
		size_t len = 0, want = rnd(&rng) % sizeof(buf);
		bool words = rnd(&rng) & 1;

		while (len < want) {
			if (words) {
				const char *p =
				    pieces[rnd(&rng) % (sizeof(pieces) / sizeof(pieces[0]))];
				size_t n = p[0] ? strlen(p) : 1;
				if (len + n > sizeof(buf))
					break;
				memcpy(buf + len, p, n);
				len += n;
			} else {
				buf[len++] = (char)rnd(&rng);
			}
		}
		check_any(buf, len, &rng, i % 64 == 0);
	}
}

TEST(parser_mutated_requests)
{
	uint64_t rng = 0x2545f4914f6cdd1dull;
	char buf[1024];
	int complete = 0;

	for (int i = 0; i < 100000; i++) {
		const char *v = valid[rnd(&rng) % NVALID].text;
		size_t len = strlen(v);

		memcpy(buf, v, len);
		for (int m = 1 + (int)(rnd(&rng) % 3); m > 0; m--) {
			size_t at = len ? rnd(&rng) % len : 0;
			switch (rnd(&rng) % 5) {
			case 0: /* replace a byte */
				if (len)
					buf[at] = (char)rnd(&rng);
				break;
			case 1: /* insert a byte */
				if (len < sizeof(buf)) {
					memmove(buf + at + 1, buf + at, len - at);
					buf[at] = (char)rnd(&rng);
					len++;
				}
				break;
			case 2: /* delete a byte */
				if (len) {
					memmove(buf + at, buf + at + 1, len - at - 1);
					len--;
				}
				break;
			case 3: /* cut */
				len = at;
				break;
			default: /* repeat a piece */
				if (len) {
					size_t n = 1 + rnd(&rng) % (len - at);
					if (len + n <= sizeof(buf)) {
						memmove(buf + at + n, buf + at, len - at);
						len += n;
					}
				}
			}
		}
		struct http_request req;
		complete += parse_n(buf, len, &req) > 0;
		check_any(buf, len, &rng, i % 64 == 0);
	}
	TH_LOG("%d of 100000 mutations still parse", complete);
	ASSERT_GT(complete, 0);
}

/* ---- the server, end to end ------------------------------------------------- */

struct server {
	pid_t pid;
	int out; /* its stdout */
	int port;
};

/* Read a line of the server's stdout into buf (no newline); false at EOF. */
static bool read_line(int fd, char *buf, size_t cap)
{
	size_t n = 0;

	while (n + 1 < cap) {
		struct pollfd p = {fd, POLLIN, 0};
		ASSERT_EQ(poll(&p, 1, 60000), 1); /* a hang is a failure, not a timing */
		ssize_t r = read(fd, buf + n, 1);
		if (r <= 0)
			break;
		if (buf[n] == '\n') {
			buf[n] = 0;
			return true;
		}
		n++;
	}
	buf[n] = 0;
	return n > 0;
}

/*
 * Start httpd with args (after -p 0), its fd limit at nofile if not 0, and
 * wait for "listening on PORT". SKIP where it cannot be executed at all (a
 * cross build under qemu-user without binfmt_misc).
 */
static void server_start(struct server *s, const char *const *args, rlim_t nofile)
{
	char self[4096], path[4200], line[256];
	int out[2], err[2];

	snprintf(self, sizeof(self), "%s", program_invocation_name);
	snprintf(path, sizeof(path), "%s/../examples/httpd", dirname(self));
	if (access(path, X_OK) != 0)
		ASSERT_EQ(access(path, X_OK), 0); /* make builds it with the tests */
	ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
	ASSERT_EQ(pipe2(err, O_CLOEXEC), 0); /* the errno of a failed exec */
	s->pid = fork();
	ASSERT_GE(s->pid, 0);
	if (s->pid == 0) {
		const char *argv[16] = {path, "-p", "0"};
		int n = 3;
		for (; args && *args && n < 15; args++)
			argv[n++] = *args;
		argv[n] = NULL;
		dup2(out[1], 1);
		if (nofile) {
			struct rlimit rl = {nofile, nofile};
			setrlimit(RLIMIT_NOFILE, &rl);
		}
		execv(path, (char **)argv);
		int e = errno;
		ssize_t w = write(err[1], &e, sizeof(e));
		(void)w;
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	int e;
	if (read(err[0], &e, sizeof(e)) == sizeof(e)) {
		if (e == ENOEXEC)
			SKIP("cannot execute %s here: %s", path, strerror(e));
		TH_LOG("exec %s: %s", path, strerror(e));
		ASSERT_EQ(e, 0);
	}
	close(err[0]);
	s->out = out[0];
	ASSERT_TRUE(read_line(s->out, line, sizeof(line)));
	ASSERT_EQ(sscanf(line, "listening on %d", &s->port), 1);
	ASSERT_GT(s->port, 0);
}

struct summary {
	unsigned long requests, cpu_chunks;
	double seconds;
};

/* Wait for the server to exit (after SIGTERM when term); check its last line. */
static struct summary server_stop(struct server *s, bool term)
{
	struct summary sum = {0};
	char line[256];
	int status;

	if (term)
		ASSERT_EQ(kill(s->pid, SIGTERM), 0);
	ASSERT_TRUE(read_line(s->out, line, sizeof(line)));
	TH_LOG("%s", line);
	ASSERT_EQ(sscanf(line, "httpd: requests=%lu cpu_chunks=%lu seconds=%lf", &sum.requests,
			 &sum.cpu_chunks, &sum.seconds),
		  3);
	ASSERT_EQ(waitpid(s->pid, &status, 0), s->pid);
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0);
	close(s->out);
	return sum;
}

/*
 * recv(2) that goes on after EINTR: with SO_RCVTIMEO set, Linux does not
 * restart a recv interrupted by any signal, even one this process does not
 * handle (a stop and continue, say), and the tests must not fail for that.
 */
static ssize_t recv_again(int fd, void *buf, size_t len)
{
	ssize_t n;

	do
		n = recv(fd, buf, len, 0);
	while (n < 0 && errno == EINTR);
	return n;
}

static int dial(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct timeval tv = {60, 0}; /* a hang is a failure */
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ASSERT_GE(fd, 0);
	ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	ASSERT_EQ(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

static void send_str(int fd, const char *s)
{
	size_t len = strlen(s);

	while (len) {
		ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
		ASSERT_GT(n, 0);
		s += n;
		len -= (size_t)n;
	}
}

/* A client's side of a connection: what it read and has not used yet. */
struct client {
	int fd;
	size_t have;
	char buf[1 << 16];
};

struct response {
	int status;
	bool close; /* "Connection: close" */
	char body[256];
};

/* Read one response; false if the connection ended first. */
static bool read_response(struct client *c, struct response *r)
{
	char *end;

	for (;;) {
		c->buf[c->have] = 0;
		end = strstr(c->buf, "\r\n\r\n");
		if (end) {
			char *cl = strstr(c->buf, "Content-Length: ");
			if (cl && cl < end) {
				size_t head = (size_t)(end + 4 - c->buf);
				size_t body = strtoul(cl + 16, NULL, 10);
				if (c->have >= head + body) {
					ASSERT_LT(body, sizeof(r->body));
					ASSERT_EQ(sscanf(c->buf, "HTTP/1.1 %d ", &r->status), 1);
					memcpy(r->body, end + 4, body);
					r->body[body] = 0;
					end[2] = 0; /* after the last header's CRLF */
					r->close =
					    strstr(c->buf, "\r\nConnection: close\r\n") != NULL;
					memmove(c->buf, c->buf + head + body,
						c->have - head - body);
					c->have -= head + body;
					return true;
				}
			}
		}
		ASSERT_LT(c->have, sizeof(c->buf) - 1);
		ssize_t n = recv_again(c->fd, c->buf + c->have, sizeof(c->buf) - 1 - c->have);
		if (n < 0 && errno == ECONNRESET)
			return false;
		ASSERT_GE(n, 0);
		if (n == 0)
			return false;
		c->have += (size_t)n;
	}
}

/* After the response it was told to close with: EOF, nothing more. */
static void expect_eof(struct client *c)
{
	char b;

	ASSERT_EQ(c->have, 0);
	ASSERT_EQ(recv_again(c->fd, &b, 1), 0);
}

static struct client *client(int port)
{
	struct client *c = calloc(1, sizeof(*c));

	ASSERT_NONNULL(c);
	c->fd = dial(port);
	return c;
}

static void client_close(struct client *c)
{
	close(c->fd);
	free(c);
}

static uint64_t sum_of(uint64_t n)
{
	uint64_t s = 0;

	for (uint64_t i = 0; i < n; i++)
		s += i * i % 1000003;
	return s;
}

TEST(server_keep_alive)
{
	struct server s;
	struct response r;

	server_start(&s, NULL, 0);
	struct client *c = client(s.port);
	for (int i = 0; i < 3; i++) {
		send_str(c->fd, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
		ASSERT_TRUE(read_response(c, &r));
		EXPECT_EQ(r.status, 200);
		EXPECT_FALSE(r.close);
		EXPECT_EQ(strcmp(r.body, "Hello, World!\n"), 0);
	}
	/* A 404 keeps the connection too. */
	send_str(c->fd, "GET /nowhere HTTP/1.1\r\n\r\n");
	ASSERT_TRUE(read_response(c, &r));
	EXPECT_EQ(r.status, 404);
	EXPECT_FALSE(r.close);
	send_str(c->fd, "HEAD / HTTP/1.1\r\n\r\n"); /* Content-Length 14, no body */
	char head[512] = "";
	for (size_t n = 0; !strstr(head, "\r\n\r\n");) {
		ssize_t got = recv_again(c->fd, head + n, sizeof(head) - 1 - n);
		ASSERT_GT(got, 0);
		n += (size_t)got;
		head[n] = 0;
	}
	ASSERT_STR_CONTAINS(head, "HTTP/1.1 200 OK\r\n");
	ASSERT_STR_CONTAINS(head, "Content-Length: 14\r\n");
	EXPECT_EQ(strcmp(strstr(head, "\r\n\r\n"), "\r\n\r\n"), 0);
	/* Connection: close is honoured after the response. */
	send_str(c->fd, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
	ASSERT_TRUE(read_response(c, &r));
	EXPECT_EQ(r.status, 200);
	EXPECT_TRUE(r.close);
	expect_eof(c);
	client_close(c);

	/* HTTP/1.0: closes unless asked to keep the connection. */
	c = client(s.port);
	send_str(c->fd, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	ASSERT_TRUE(read_response(c, &r));
	EXPECT_FALSE(r.close);
	send_str(c->fd, "GET / HTTP/1.0\r\n\r\n");
	ASSERT_TRUE(read_response(c, &r));
	EXPECT_EQ(r.status, 200);
	EXPECT_TRUE(r.close);
	expect_eof(c);
	client_close(c);

	struct summary sum = server_stop(&s, true);
	EXPECT_EQ(sum.requests, 8);
	EXPECT_EQ(sum.cpu_chunks, 0);
}

struct writer {
	int fd;
	const char *data;
};

static void *write_all(void *p)
{
	struct writer *w = p;

	send_str(w->fd, w->data);
	return NULL;
}

TEST(server_pipelining)
{
	struct server s;
	struct response r;

	server_start(&s, NULL, 0);
	struct client *c = client(s.port);
	send_str(c->fd, "GET / HTTP/1.1\r\n\r\nGET /sum?n=10 HTTP/1.1\r\n\r\n"
			"GET /nope HTTP/1.1\r\n\r\nGET /sum?n=3 HTTP/1.1\r\n\r\n");
	ASSERT_TRUE(read_response(c, &r));
	EXPECT_EQ(r.status, 200);
	EXPECT_EQ(strcmp(r.body, "Hello, World!\n"), 0);
	ASSERT_TRUE(read_response(c, &r));
	EXPECT_EQ(r.status, 200);
	EXPECT_EQ(strcmp(r.body, "285\n"), 0);
	ASSERT_TRUE(read_response(c, &r));
	EXPECT_EQ(r.status, 404);
	ASSERT_TRUE(read_response(c, &r));
	EXPECT_EQ(strcmp(r.body, "5\n"), 0);

	/* 2000 requests in one go (54 KB): more than one read of the server's
	 * 8 KiB and more answers than one write of its 8 KiB; every one comes
	 * back, in order. A thread writes while this one reads. */
	enum { N = 2000 };
	const char *req[2] = {"GET / HTTP/1.1\r\n\r\n", "GET /sum?n=4 HTTP/1.1\r\n\r\n"};
	char *all = malloc(N * 32);
	ASSERT_NONNULL(all);
	all[0] = 0;
	for (size_t i = 0, off = 0; i < N; i++) {
		strcpy(all + off, req[i % 3 == 2]);
		off += strlen(req[i % 3 == 2]);
	}
	struct writer w = {c->fd, all};
	pthread_t th;
	ASSERT_EQ(pthread_create(&th, NULL, write_all, &w), 0);
	for (int i = 0; i < N; i++) {
		ASSERT_TRUE(read_response(c, &r));
		ASSERT_EQ(r.status, 200);
		ASSERT_EQ(strcmp(r.body, i % 3 == 2 ? "14\n" : "Hello, World!\n"), 0);
	}
	pthread_join(th, NULL);
	free(all);
	client_close(c);
	EXPECT_EQ(server_stop(&s, true).requests, 4 + N);
}

/* The same server on the readiness backend (it inherits MOIRAI_IO):
 * keep-alive and pipelining, with idle connections open meanwhile. */
TEST(server_epoll_backend)
{
	struct server s;
	struct response r;
	struct client *idle[8];

	setenv("MOIRAI_IO", "epoll", 1);
	server_start(&s, NULL, 0);
	for (int i = 0; i < 8; i++)
		idle[i] = client(s.port); /* each parks a fiber in epoll */
	struct client *c = client(s.port);
	send_str(c->fd, "GET / HTTP/1.1\r\n\r\nGET /sum?n=1000 HTTP/1.1\r\n\r\n");
	ASSERT_TRUE(read_response(c, &r));
	EXPECT_EQ(r.status, 200);
	EXPECT_EQ(strcmp(r.body, "Hello, World!\n"), 0);
	ASSERT_TRUE(read_response(c, &r));
	EXPECT_EQ(r.status, 200);
	char want[32];
	snprintf(want, sizeof(want), "%" PRIu64 "\n", sum_of(1000));
	EXPECT_EQ(strcmp(r.body, want), 0);
	for (int i = 0; i < 8; i++) {
		send_str(idle[i]->fd, "GET / HTTP/1.1\r\n\r\n");
		ASSERT_TRUE(read_response(idle[i], &r));
		EXPECT_EQ(r.status, 200);
		client_close(idle[i]);
	}
	client_close(c);
	EXPECT_EQ(server_stop(&s, true).requests, 10);
}

TEST(server_sum)
{
	struct server s;
	struct response r;
	char want[32], get[64];
	static const char *const invalid[] = {
	    "/sum?n=0",
	    "/sum?n=1000000001",
	    "/sum?n=99999999999999999999",
	    "/sum?n=-1",
	    "/sum?n=1x",
	    "/sum?n=",
	    "/sum?m=1",
	    "/sum",
	    "/sum?n=1&n=2",
	};

	server_start(&s, NULL, 0);
	struct client *c = client(s.port);
	static const uint64_t ns[] = {1, 2, 1000, 1000003, 2000000};
	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		snprintf(get, sizeof(get), "GET /sum?n=%" PRIu64 " HTTP/1.1\r\n\r\n", ns[i]);
		send_str(c->fd, get);
		ASSERT_TRUE(read_response(c, &r));
		ASSERT_EQ(r.status, 200);
		snprintf(want, sizeof(want), "%" PRIu64 "\n", sum_of(ns[i]));
		EXPECT_EQ(strcmp(r.body, want), 0);
	}
	client_close(c);
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		c = client(s.port);
		snprintf(get, sizeof(get), "GET %s HTTP/1.1\r\n\r\n", invalid[i]);
		send_str(c->fd, get);
		ASSERT_TRUE(read_response(c, &r));
		EXPECT_EQ(r.status, 400);
		EXPECT_TRUE(r.close);
		expect_eof(c);
		client_close(c);
	}
	server_stop(&s, true);
}

TEST(server_bad_request_then_close)
{
	struct server s;
	struct response r;
	static const char *const bad[] = {
	    "garbage\r\n\r\n",
	    "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
	    "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
	    "GET / HTTP/3.0\r\n\r\n",
	};

	server_start(&s, NULL, 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct client *c = client(s.port);
		send_str(c->fd, bad[i]);
		ASSERT_TRUE(read_response(c, &r));
		EXPECT_EQ(r.status, 400);
		EXPECT_TRUE(r.close);
		expect_eof(c);
		client_close(c);
	}
	/* A good request, then garbage behind it in the same write: the first
	 * is answered, then 400, then the end. */
	struct client *c = client(s.port);
	send_str(c->fd, "GET / HTTP/1.1\r\n\r\nxyz\r\n\r\nGET / HTTP/1.1\r\n\r\n");
	ASSERT_TRUE(read_response(c, &r));
	EXPECT_EQ(r.status, 200);
	ASSERT_TRUE(read_response(c, &r));
	EXPECT_EQ(r.status, 400);
	expect_eof(c);
	client_close(c);

	/* A head over 8 KiB, sent in pieces and then some: 400 and the end,
	 * while the client is still writing (the server reads and drops the
	 * rest, so the 400 is not lost to a reset). */
	c = client(s.port);
	char *big = head_of(64 * 1024);
	struct writer w = {c->fd, big};
	pthread_t th;
	ASSERT_EQ(pthread_create(&th, NULL, write_all, &w), 0);
	ASSERT_TRUE(read_response(c, &r));
	EXPECT_EQ(r.status, 400);
	expect_eof(c);
	pthread_join(th, NULL);
	free(big);
	client_close(c);
	server_stop(&s, true);
}

/* The server's sockets: its listener and its connections (its rings and
 * other fds are not counted: a worker opens its ring at its first I/O). */
static int count_sockets(pid_t pid)
{
	char path[64], link[64];
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	ASSERT_NONNULL(d);
	for (struct dirent *e; (e = readdir(d));) {
		ssize_t len = readlinkat(dirfd(d), e->d_name, link, sizeof(link) - 1);
		if (len > 0) {
			link[len] = 0;
			n += strncmp(link, "socket:", 7) == 0;
		}
	}
	closedir(d);
	return n;
}

/* Every connection ends up closed: wait for the server to hold only its
 * listener (a leaked fd never gets there and fails after 30 s). */
static void expect_only_listener(pid_t pid)
{
	int n = -1;

	for (int i = 0; i < 3000 && (n = count_sockets(pid)) != 1; i++)
		usleep(10000);
	EXPECT_EQ(n, 1);
}

static void get_hello(int port)
{
	struct client *c = client(port);
	struct response r;

	send_str(c->fd, "GET / HTTP/1.1\r\n\r\n");
	ASSERT_TRUE(read_response(c, &r));
	EXPECT_EQ(r.status, 200);
	client_close(c);
}

TEST(server_survives_reset_connections)
{
	struct server s;
	struct linger lg = {1, 0}; /* close() sends RST */
	int fds[200];

	server_start(&s, NULL, 0);
	for (int i = 0; i < 200; i++) {
		fds[i] = dial(s.port);
		if (i % 4 == 1)
			send_str(fds[i], "GET / HTTP/1.1\r\n"); /* half a request */
		if (i % 4 == 2)
			send_str(fds[i], "GET /sum?n=100000 HTTP/1.1\r\n\r\n"); /* then vanish */
		if (i % 4 == 3)
			send_str(fds[i], "GET / HTTP/1.1\r\n\r\n"); /* answered, never read */
	}
	for (int i = 0; i < 200; i++) {
		ASSERT_EQ(setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
		close(fds[i]);
	}
	get_hello(s.port);
	expect_only_listener(s.pid);
	EXPECT_GE(server_stop(&s, true).requests, 1);
}

TEST(server_out_of_fds)
{
	enum { N = 100 };
	struct server s;
	struct client *c[N];
	int answered = 0;

	/* 32 fds: a few for the server itself, far fewer than N. */
	server_start(&s, NULL, 32);
	for (int i = 0; i < N; i++) {
		c[i] = client(s.port); /* the kernel queues what the server cannot accept */
		send_str(c[i]->fd, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
	}
	/* Each is answered once an earlier one ended and freed its fd. A
	 * connection the server accepted but whose worker could not set up
	 * its ring (that takes an fd too) ends unanswered: allowed. */
	for (int i = 0; i < N; i++) {
		struct response r;
		if (read_response(c[i], &r)) {
			EXPECT_EQ(r.status, 200);
			answered++;
		}
		client_close(c[i]);
	}
	TH_LOG("%d of %d answered", answered, N);
	EXPECT_GT(answered, 0);
	get_hello(s.port);
	expect_only_listener(s.pid);
	server_stop(&s, true);
}

TEST(server_with_cpu_job)
{
	struct server s;
	struct response r;
	char want[32];
	const char *args[] = {"-c", "-w", "2", NULL};

	/* HTTP and fib(27)s on the same two workers. */
	server_start(&s, args, 0);
	struct client *c = client(s.port);
	for (int i = 0; i < 20; i++) {
		send_str(c->fd, "GET /sum?n=300000 HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n");
		ASSERT_TRUE(read_response(c, &r));
		snprintf(want, sizeof(want), "%" PRIu64 "\n", sum_of(300000));
		EXPECT_EQ(strcmp(r.body, want), 0);
		ASSERT_TRUE(read_response(c, &r));
		EXPECT_EQ(r.status, 200);
	}
	client_close(c);
	EXPECT_EQ(server_stop(&s, true).requests, 40);
}

TEST(server_duration)
{
	struct server s;
	struct summary sum;
	const char *args[] = {"-c", "-d", "1", NULL};
	char secs[16];

	/* -d ends it by itself, and -c's chunks are counted (a run with none
	 * is retried longer, rather than assuming a second is enough). */
	for (int d = 1;; d *= 2) {
		snprintf(secs, sizeof(secs), "%d", d);
		args[2] = secs;
		server_start(&s, args, 0);
		sum = server_stop(&s, false);
		EXPECT_EQ(sum.requests, 0);
		EXPECT_GE(sum.seconds, (double)d);
		if (sum.cpu_chunks > 0 || d >= 16)
			break;
	}
	EXPECT_GT(sum.cpu_chunks, 0);
}

TEST_HARNESS_MAIN
