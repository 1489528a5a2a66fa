/*
 * sync.h - the layouts behind the opaque types of <moirai/sync.h>. Each is
 * a wait queue (../fiber/waitq.c) plus one word, 32 bytes in all.
 */
#ifndef MR_SYNC_SYNC_H
#define MR_SYNC_SYNC_H

#include <moirai/sync.h>

#include "../fiber/fiber.h"

struct mr__mutex {
	_Atomic uint32_t state; /* 0 free, 1 locked, 2 locked and maybe waiters */
	struct mr__waitq q;
	_Atomic uintptr_t owner; /* the holding fiber or thread, 0 (see owner()) */
};

struct mr__cond {
	struct mr__waitq q;
};

struct mr__sem {
	_Atomic uint32_t count;
	struct mr__waitq q;
};

struct mr__wg {
	_Atomic int64_t count;
	struct mr__waitq q;
};

struct mr__event {
	_Atomic uint32_t set;
	struct mr__waitq q;
};

_Static_assert(sizeof(struct mr__mutex) <= sizeof(mr_mutex_t), "mutex fits");
_Static_assert(sizeof(struct mr__cond) <= sizeof(mr_cond_t), "cond fits");
_Static_assert(sizeof(struct mr__sem) <= sizeof(mr_sem_t), "sem fits");
_Static_assert(sizeof(struct mr__wg) <= sizeof(mr_wg_t), "wg fits");
_Static_assert(sizeof(struct mr__event) <= sizeof(mr_event_t), "event fits");

/* A deadline as mr__waitq_wait() takes it: negative is none (common.h). */
static inline int64_t mr__deadline(int64_t deadline_ns)
{
	return deadline_ns < 0 ? -1 : deadline_ns;
}

/* Wake every waiter of q (q unlocked on entry). */
void mr__waitq_wake_all(struct mr__waitq *q);

#endif /* MR_SYNC_SYNC_H */
