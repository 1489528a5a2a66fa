/*
 * open.c - channels by address (<moirai/chan.h>): the URL, and the
 * registry of inproc:// names. shm:// is shm.c's.
 *
 * The registry is a list under one mutex (a leaf: creating a channel under
 * it only allocates). A name's entry holds the channel and a count of the
 * opens not yet destroyed; the channel points back at it (ext), so that
 * mr_chan_destroy() can drop one reference and free the channel with the
 * last. An unlinked entry stays until then, off the list.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "chan.h"

struct named {
	struct named *next;
	struct mr_chan *ch;
	unsigned refs;
	bool listed;
	char name[];
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct named *reg;

static struct named **find(const char *name)
{
	struct named **pp;

	for (pp = &reg; *pp; pp = &(*pp)->next)
		if (!strcmp((*pp)->name, name))
			return pp;
	return NULL;
}

static mr_chan_t *open_inproc(const char *name, const struct mr_chan_open_opts *o)
{
	struct named **pp, *n;
	mr_chan_t *ch;
	int err = 0;

	pthread_mutex_lock(&reg_lock);
	if ((pp = find(name))) {
		n = *pp;
		ch = (mr_chan_t *)n->ch;
		if ((o->flags & MR_CHAN_EXCL))
			err = EEXIST;
		else if ((o->elem_size && o->elem_size != mr_chan_elem_size(ch)) ||
			 ((o->capacity || (o->flags & MR_CHAN_CREATE)) &&
			  o->capacity != mr_chan_capacity(ch)))
			err = EPROTOTYPE;
		else
			n->refs++;
		pthread_mutex_unlock(&reg_lock);
		if (err) {
			errno = err;
			return NULL;
		}
		return ch;
	}
	if (!(o->flags & MR_CHAN_CREATE)) {
		pthread_mutex_unlock(&reg_lock);
		errno = ENOENT;
		return NULL;
	}
	n = malloc(sizeof(*n) + strlen(name) + 1);
	ch = n ? mr_chan_create(o->elem_size, o->capacity, 0) : NULL;
	if (!ch) {
		err = n ? errno : ENOMEM;
		free(n);
		pthread_mutex_unlock(&reg_lock);
		errno = err;
		return NULL;
	}
	strcpy(n->name, name);
	n->ch = (struct mr_chan *)ch;
	n->refs = 1;
	n->listed = true;
	n->next = reg;
	reg = n;
	n->ch->ext = n;
	pthread_mutex_unlock(&reg_lock);
	return ch;
}

bool mr__named_put(struct mr_chan *ch)
{
	struct named *n = ch->ext, **pp;

	pthread_mutex_lock(&reg_lock);
	if (--n->refs > 0) {
		pthread_mutex_unlock(&reg_lock);
		return false;
	}
	if (n->listed)
		for (pp = &reg; *pp; pp = &(*pp)->next)
			if (*pp == n) {
				*pp = n->next;
				break;
			}
	ch->ext = NULL;
	pthread_mutex_unlock(&reg_lock);
	free(n);
	return true;
}

enum { URL_BAD, URL_INPROC, URL_SHM, URL_TCP };

/* The scheme of url, and *name after it. */
static int scheme(const char *url, const char **name)
{
	static const struct {
		const char *prefix;
		int kind;
	} schemes[] = { { "inproc://", URL_INPROC }, { "shm://", URL_SHM }, { "tcp://", URL_TCP } };

	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		size_t n = strlen(schemes[i].prefix);
		if (!strncmp(url, schemes[i].prefix, n)) {
			*name = url + n;
			return schemes[i].kind;
		}
	}
	return URL_BAD;
}

#define KNOWN_FLAGS (MR_CHAN_CREATE | MR_CHAN_EXCL | MR_CHAN_SEND | MR_CHAN_RECV)

mr_chan_t *mr_chan_open(const char *url, const struct mr_chan_open_opts *opts)
{
	struct mr_chan_open_opts o = { 0 };
	const char *name;
	int kind;

	if (!url) {
		errno = EINVAL;
		return NULL;
	}
	if (opts) {
		/* an older caller's smaller struct: the rest is zero */
		if (opts->sz < offsetof(struct mr_chan_open_opts, flags) + sizeof(opts->flags)) {
			errno = EINVAL;
			return NULL;
		}
		memcpy(&o, opts, opts->sz < sizeof(o) ? opts->sz : sizeof(o));
	}
	kind = scheme(url, &name);
	if (kind == URL_TCP) {
		errno = EPROTONOSUPPORT;
		return NULL;
	}
	if (kind == URL_BAD || mr__chan_check_name(name) || (o.flags & ~KNOWN_FLAGS) ||
	    ((o.flags & MR_CHAN_EXCL) && !(o.flags & MR_CHAN_CREATE)) || o.timeout_ns < 0 ||
	    ((o.flags & MR_CHAN_CREATE) && !o.elem_size)) {
		errno = EINVAL;
		return NULL;
	}
	if (kind == URL_INPROC)
		return open_inproc(name, &o);
	if ((o.flags & MR_CHAN_CREATE) && (o.capacity == 0 || o.capacity == MR_CHAN_UNBOUNDED)) {
		errno = EINVAL;
		return NULL;
	}
	return mr__chan_open_shm(name, &o);
}

int mr_chan_unlink(const char *url)
{
	const char *name;
	struct named **pp;

	if (!url)
		return -EINVAL;
	switch (scheme(url, &name)) {
	case URL_TCP:
		return -EPROTONOSUPPORT;
	case URL_SHM:
		return mr__shm_unlink(name);
	case URL_INPROC:
		if (mr__chan_check_name(name))
			return -EINVAL;
		pthread_mutex_lock(&reg_lock);
		if ((pp = find(name))) {
			(*pp)->listed = false;
			*pp = (*pp)->next;
		}
		pthread_mutex_unlock(&reg_lock);
		return pp ? 0 : -ENOENT;
	default:
		return -EINVAL;
	}
}
