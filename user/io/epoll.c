/*
 * epoll.c - the readiness backend, for kernels or sandboxes that refuse
 * io_uring. INTERIM: runs each call as the plain system call on the
 * worker's thread (mr__io_sync()), which blocks the worker; the per-worker
 * epoll backend replaces it.
 */
#include "backend.h"

static int epoll_worker_init(struct mr__worker *w)
{
	(void)w;
	return 0;
}

static long epoll_call(struct mr__worker *w, struct mr_fiber *f, const struct mr__io_req *q,
		       int64_t deadline)
{
	(void)w;
	(void)f;
	return mr__io_sync(q, deadline);
}

const struct mr__io_backend mr__io_epoll_backend = {
    .name = "epoll",
    .worker_init = epoll_worker_init,
    .call = epoll_call,
};
