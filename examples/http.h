/*
 * http.h - the HTTP/1.x request parser of examples/httpd.c (and of
 * tests/http.c, which includes it too): static functions, no allocation,
 * no state between calls.
 *
 *	struct http_request req;
 *	int k = http_parse(buf, len, &req);
 *	k == HTTP_NEED_MORE	the bytes so far may still become a request: read more
 *	k == HTTP_BAD		they never will: answer 400 and close
 *	k > 0			buf[0, k) is one complete request; req describes it and
 *				buf[k, len) is the start of the next (pipelining)
 *
 * "Incremental" in the simplest way: each call parses from the start of
 * buf, so a caller just appends what it reads and calls again. A head that
 * trickles in byte by byte costs O(n^2) over at most HTTP_MAX_HEAD bytes;
 * in the usual case a request arrives in one read and is parsed once. A
 * prefix of a valid request is never HTTP_BAD (tests/http.c checks every
 * one): garbage is refused as soon as a byte rules it out, not later.
 *
 * What it accepts, a strict subset of RFC 9112:
 *   request-line  "GET" or "HEAD", SP, an origin-form target (starts with
 *                 "/", visible ASCII only), SP, "HTTP/1.0" or "HTTP/1.1",
 *                 CRLF
 *   header lines  token ":" value CRLF; value bytes are visible ASCII, SP,
 *                 HTAB or >= 0x80; no obs-fold; a bare CR or LF is refused
 *   end           an empty line (CRLF); the whole head at most
 *                 HTTP_MAX_HEAD bytes
 * Bodies are not supported: Transfer-Encoding, or a Content-Length other
 * than 0, is HTTP_BAD (a server that guessed a body's length would read the
 * next request out of it). Host is not required, though RFC 9112 asks a
 * server to refuse an HTTP/1.1 request without one: load generators and
 * hand-written clients often leave it out.
 */
#ifndef EXAMPLES_HTTP_H
#define EXAMPLES_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#define HTTP_MAX_HEAD 8192 /* request line + headers + the empty line, bytes */

#define HTTP_NEED_MORE 0
#define HTTP_BAD (-1)

enum http_method { HTTP_GET, HTTP_HEAD };

struct http_request {
	enum http_method method;
	const char *target; /* into the caller's buffer; not NUL-terminated */
	size_t target_len;
	int minor;	 /* HTTP/1.<minor>: 0 or 1 */
	bool keep_alive; /* 1.1 unless "Connection: close"; 1.0 only with "keep-alive" */
};

/* RFC 9110's tchar: the bytes of a method or a header name. */
static inline bool http_is_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A byte of a header value: VCHAR, SP, HTAB, obs-text. */
static inline bool http_is_value(unsigned char c)
{
	return c == ' ' || c == '\t' || (c > 0x20 && c != 0x7f);
}

/* Whether [s, s + n) equals the lower-case word w, ignoring case. */
static inline bool http_word_is(const char *s, size_t n, const char *w)
{
	if (n != strlen(w))
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c >= 'A' && c <= 'Z' ? c + 32 : c) != (unsigned char)w[i])
			return false;
	}
	return true;
}

/* Read the tokens of a Connection value ("close", "keep-alive", others). */
static inline void http_connection(const char *v, size_t n, bool *close, bool *keep)
{
	size_t i = 0;

	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		size_t start = i;
		while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
			i++;
		if (http_word_is(v + start, i - start, "close"))
			*close = true;
		else if (http_word_is(v + start, i - start, "keep-alive"))
			*keep = true;
	}
}

/*
 * Match the literal lit at buf[*i]: 1 matched (and *i moves past it), 0 the
 * bytes up to lim agree with a prefix of it, -1 they differ.
 */
static inline int http_lit(const char *buf, size_t lim, size_t *i, const char *lit)
{
	for (size_t k = 0; lit[k]; k++) {
		if (*i + k >= lim)
			return 0;
		if (buf[*i + k] != lit[k])
			return -1;
	}
	*i += strlen(lit);
	return 1;
}

static inline int http_parse(const char *buf, size_t len, struct http_request *req)
{
	/* Bytes past HTTP_MAX_HEAD are never looked at: running into the
	 * limit means the head is too long, running out of bytes before it
	 * means read more. */
	size_t lim = len < HTTP_MAX_HEAD ? len : HTTP_MAX_HEAD;
	int more = len >= HTTP_MAX_HEAD ? HTTP_BAD : HTTP_NEED_MORE;
	bool close = false, keep = false;
	size_t i = 0;
	int r;

	/* Method: neither "GET " nor "HEAD " may still be coming. */
	size_t j = 0;
	int get = http_lit(buf, lim, &i, "GET ");
	int head = http_lit(buf, lim, &j, "HEAD ");
	if (get == 1) {
		req->method = HTTP_GET;
	} else if (head == 1) {
		req->method = HTTP_HEAD;
		i = j;
	} else {
		return get == 0 || head == 0 ? more : HTTP_BAD;
	}

	/* Target: origin-form, up to the next SP. */
	if (i >= lim)
		return more;
	if (buf[i] != '/')
		return HTTP_BAD;
	req->target = buf + i;
	for (;;) {
		if (i >= lim)
			return more;
		unsigned char c = (unsigned char)buf[i];
		if (c == ' ')
			break;
		if (c <= 0x20 || c >= 0x7f)
			return HTTP_BAD;
		i++;
	}
	req->target_len = (size_t)(buf + i - req->target);
	i++;

	/* Version. */
	if ((r = http_lit(buf, lim, &i, "HTTP/1.")) != 1)
		return r == 0 ? more : HTTP_BAD;
	if (i >= lim)
		return more;
	if (buf[i] != '0' && buf[i] != '1')
		return HTTP_BAD;
	req->minor = buf[i++] - '0';
	if ((r = http_lit(buf, lim, &i, "\r\n")) != 1)
		return r == 0 ? more : HTTP_BAD;

	/* Header lines until the empty one. */
	for (;;) {
		if (i >= lim)
			return more;
		if (buf[i] == '\r') {
			if ((r = http_lit(buf, lim, &i, "\r\n")) != 1)
				return r == 0 ? more : HTTP_BAD;
			break;
		}
		size_t name = i;
		while (i < lim && http_is_tchar((unsigned char)buf[i]))
			i++;
		if (i >= lim)
			return more;
		if (buf[i] != ':' || i == name)
			return HTTP_BAD; /* also a line starting with SP: obs-fold */
		size_t name_len = i - name;
		i++;
		while (i < lim && (buf[i] == ' ' || buf[i] == '\t'))
			i++;
		size_t value = i;
		while (i < lim && buf[i] != '\r') {
			if (!http_is_value((unsigned char)buf[i]))
				return HTTP_BAD;
			i++;
		}
		size_t end = i;
		if ((r = http_lit(buf, lim, &i, "\r\n")) != 1)
			return r == 0 ? more : HTTP_BAD;
		while (end > value && (buf[end - 1] == ' ' || buf[end - 1] == '\t'))
			end--;

		const char *n = buf + name, *v = buf + value;
		size_t vlen = end - value;
		if (http_word_is(n, name_len, "connection")) {
			http_connection(v, vlen, &close, &keep);
		} else if (http_word_is(n, name_len, "content-length")) {
			if (vlen == 0)
				return HTTP_BAD;
			for (size_t k = 0; k < vlen; k++)
				if (v[k] != '0')
					return HTTP_BAD; /* a body, or not a number */
		} else if (http_word_is(n, name_len, "transfer-encoding")) {
			return HTTP_BAD;
		}
	}
	req->keep_alive = !close && (req->minor == 1 || keep);
	return (int)i;
}

#endif /* EXAMPLES_HTTP_H */
