/*
 * json.c - a small JSON writer for `status --json` and `dump --json`.
 *
 * The writer keeps, per nesting level, whether the next member is the first
 * (no comma before it); a key is printed when the enclosing value is an
 * object and ignored (pass NULL) inside arrays. Strings are escaped per RFC
 * 8259: quote, backslash and control characters; bytes >= 0x80 pass through
 * unchanged, except that a string from the kernel (a task comm, an exit
 * message) that is not valid UTF-8 has its invalid bytes replaced by '?', so
 * the output always parses. Numbers that are not finite print as null.
 *
 * Nesting deeper than MC_JSON_DEPTH is a bug in the caller: the writer stops
 * tracking commas there rather than writing out of bounds.
 */
#include <math.h>
#include <string.h>

#include "moiraictl.h"

void mc_json_init(struct mc_json *j, FILE *f)
{
	memset(j, 0, sizeof(*j));
	j->f = f;
	j->first[0] = true;
}

/* Length of the valid UTF-8 sequence at s, 0 if it is not one. */
static int utf8_len(const unsigned char *s)
{
	int n, i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4;
	else
		return 0;
	for (i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

static void put_string(FILE *f, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	fputc('"', f);
	while (*s) {
		int n;

		if (*s == '"' || *s == '\\') {
			fputc('\\', f);
			fputc(*s++, f);
			continue;
		}
		if (*s < 0x20) {
			switch (*s) {
			case '\n':
				fputs("\\n", f);
				break;
			case '\t':
				fputs("\\t", f);
				break;
			case '\r':
				fputs("\\r", f);
				break;
			default:
				fprintf(f, "\\u%04x", *s);
			}
			s++;
			continue;
		}
		n = utf8_len(s);
		if (n == 0) {
			fputc('?', f);
			s++;
			continue;
		}
		fwrite(s, 1, n, f);
		s += n;
	}
	fputc('"', f);
}

static void member(struct mc_json *j, const char *key)
{
	int d = j->depth < MC_JSON_DEPTH ? j->depth : MC_JSON_DEPTH - 1;

	if (!j->first[d])
		fputc(',', j->f);
	j->first[d] = false;
	if (j->depth > 0)
		fprintf(j->f, "\n%*s", 2 * j->depth, "");
	if (key) {
		put_string(j->f, key);
		fputs(": ", j->f);
	}
}

static void open_level(struct mc_json *j, const char *key, char c)
{
	member(j, key);
	fputc(c, j->f);
	j->depth++;
	if (j->depth < MC_JSON_DEPTH)
		j->first[j->depth] = true;
}

static void close_level(struct mc_json *j, char c)
{
	bool empty = j->depth < MC_JSON_DEPTH && j->first[j->depth];

	j->depth--;
	if (!empty)
		fprintf(j->f, "\n%*s", 2 * j->depth, "");
	fputc(c, j->f);
	if (j->depth == 0)
		fputc('\n', j->f);
}

void mc_json_obj(struct mc_json *j, const char *key)
{
	open_level(j, key, '{');
}

void mc_json_arr(struct mc_json *j, const char *key)
{
	open_level(j, key, '[');
}

void mc_json_end_obj(struct mc_json *j)
{
	close_level(j, '}');
}

void mc_json_end_arr(struct mc_json *j)
{
	close_level(j, ']');
}

void mc_json_str(struct mc_json *j, const char *key, const char *val)
{
	member(j, key);
	put_string(j->f, val);
}

void mc_json_u64(struct mc_json *j, const char *key, unsigned long long val)
{
	member(j, key);
	fprintf(j->f, "%llu", val);
}

void mc_json_s64(struct mc_json *j, const char *key, long long val)
{
	member(j, key);
	fprintf(j->f, "%lld", val);
}

void mc_json_dbl(struct mc_json *j, const char *key, double val)
{
	member(j, key);
	if (isfinite(val))
		fprintf(j->f, "%.6g", val);
	else
		fputs("null", j->f);
}

void mc_json_bool(struct mc_json *j, const char *key, bool val)
{
	member(j, key);
	fputs(val ? "true" : "false", j->f);
}

void mc_json_null(struct mc_json *j, const char *key)
{
	member(j, key);
	fputs("null", j->f);
}
