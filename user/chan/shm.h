/*
 * shm.h - what chan.c calls of the shared-memory transport (shm.c) and of
 * the channel registry (open.c).
 */
#ifndef MR_CHAN_SHM_H
#define MR_CHAN_SHM_H

#include <moirai/chan.h>

struct mr_chan;

/* Operations beyond select's send and receive, for chan.c's machinery. */
#define MR__OP_LOAN 3
#define MR__OP_BORROW 4
enum { MR__GIVE_COMMIT, MR__GIVE_DISCARD, MR__GIVE_RELEASE };

/* Does op take the sending side (a send, or a loan)? For shm.c also the
 * index of the side's wait word: 1 senders, 0 receivers. */
static inline bool mr__op_sends(int op)
{
	return op == MR_SELECT_SEND || op == MR__OP_LOAN;
}

/* A thread spins this long before it sleeps on a shared futex. */
#ifndef MR__SHM_SPIN_NS
#define MR__SHM_SPIN_NS 20000
#endif

/* Open (create or attach) shm://name into ch (zeroed, not yet a channel). */
int mr__shm_open(struct mr_chan *ch, const char *name, const struct mr_chan_open_opts *o);
int mr__shm_unlink(const char *name);
void mr__shm_detach(struct mr_chan *ch);
int mr__shm_try(struct mr_chan *ch, int op, void *elem);
int mr__shm_wait(struct mr_chan *ch, int op, void *elem, int64_t deadline);
void mr__shm_want(struct mr_chan *ch, int op);
int mr__shm_give_back(struct mr_chan *ch, int how, const void *p);
int mr__shm_close(struct mr_chan *ch);
size_t mr__shm_len(const struct mr_chan *ch);
bool mr__shm_closed(const struct mr_chan *ch);

/* chan.c: wake one sleeper of this process on the other side of a send
 * (send true: a receiver) and drop the busy count the operation raised. */
void mr__chan_wake_other(struct mr_chan *ch, bool send);

/* chan.c: a new channel on shm://name, or NULL with errno */
mr_chan_t *mr__chan_open_shm(const char *name, const struct mr_chan_open_opts *o);
/* shm.c: 0 or -EINVAL (chan.h says what a name may hold) */
int mr__chan_check_name(const char *name);

/* open.c: a named in-process channel's last reference? (destroy) */
bool mr__named_put(struct mr_chan *ch);

#endif /* MR_CHAN_SHM_H */
