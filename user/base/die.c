/*
 * die.c - the one place the library writes to stderr: misuse that would
 * corrupt memory (a NULL function where nothing can be returned, a destroyed
 * runtime) ends here with a message naming the call, then abort().
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "base.h"

void mr__die(const char *call, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int n = snprintf(msg, sizeof(msg), "moirai: %s: ", call);

	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(msg))
		vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	/* One write so that the line is not interleaved with other threads' output. */
	fprintf(stderr, "%s\n", msg);
	fflush(stderr);
	abort();
}

#if defined(__SANITIZE_THREAD__)
_Atomic unsigned long mr__tsan_fence_word;
#endif
