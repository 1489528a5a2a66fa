/* hello.c - the README's example: fork-join, a parallel loop, a task group. */
#include <moirai/moirai.h>
#include <stdio.h>

struct fib {
	int n;
	long r;
};

static void fib(void *p)
{
	struct fib *f = p;
	if (f->n < 2) {
		f->r = f->n;
		return;
	}
	struct fib a = { f->n - 1, 0 }, b = { f->n - 2, 0 };
	mr_join(fib, &a, fib, &b); /* b may run on another worker */
	f->r = a.r + b.r;
}

static void square(size_t lo, size_t hi, void *ctx)
{
	long *v = ctx;
	for (size_t i = lo; i < hi; i++)
		v[i] = (long)(i * i);
}

static void hello(void *arg)
{
	printf("task %d on worker %d\n", *(int *)arg, mr_worker_index());
}

int main(void)
{
	static long v[1000000];
	static int ids[4] = { 0, 1, 2, 3 };
	struct fib f = { 30, 0 };
	mr_group_t g;

	/* Called from main, these run on the default runtime (MOIRAI_WORKERS or
	 * one worker per CPU) and block until done. */
	fib(&f);
	mr_parallel_for(0, 1000000, 0, square, v); /* grain 0: adaptive splitting */

	mr_group_init(&g);
	for (int i = 0; i < 4; i++)
		mr_group_spawn(&g, hello, &ids[i]);
	mr_group_wait(&g); /* all four, and anything they spawned into g */

	printf("fib(30) = %ld, v[999] = %ld\n", f.r, v[999]);
	return 0;
}
