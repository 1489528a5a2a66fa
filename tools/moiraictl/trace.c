/*
 * trace.c - `moiraictl trace -p PID [-d SECONDS] -o FILE`: a timeline of
 * what a live runtime's workers do, as Chrome/Perfetto trace-event JSON
 * (open it in ui.perfetto.dev or chrome://tracing).
 *
 * How: bpf/trace.bpf.c (embedded here by traceobj.S) has one program per
 * USDT probe of the runtime (user/metrics/probes.h). We attach each to the
 * process with libbpf's bpf_program__attach_usdt(), on the file that holds
 * the probes: the libmoirai.so the process maps, else its executable (a
 * static link). Events arrive through a ring buffer until the duration is
 * over, the process exits, or SIGINT/SIGTERM; then we build the timeline:
 *  - one track per thread (named after /proc/PID/task/TID/comm), with a
 *    slice for every fiber run (fiber_run .. fiber_stop), every job
 *    (job_start .. job_end) and every sleep of a worker (worker_park ..
 *    worker_wake). Slices on a track nest: a stop closes whatever opened
 *    after its start and is still open (an event lost from the ring would
 *    otherwise leave a slice open for ever); what is open at the end
 *    closes at the last event.
 *  - instants for steals, fiber parks (with the call they wait in),
 *    channel blocks, wake-ups of workers, I/O submissions and completions.
 *  - flows from each fiber_ready to the run it caused.
 * The events the ring could not take are counted in the kernel and written
 * in the JSON ("otherData": {"dropped": N}) and on stderr: a trace with
 * drops has holes (try a shorter duration).
 *
 * Needs root (or CAP_BPF + CAP_PERFMON) and a kernel with uprobes; the
 * traced program must have been built with <sys/sdt.h>.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "moiraictl.h"
#include "trace_shared.h"

extern const char moirai_trace_obj_start[], moirai_trace_obj_end[];

struct tname {
	__u32 tid;
	char comm[32];
};

struct evbuf {
	struct moirai_ev *ev;
	size_t n, cap;
	bool oom;
	pid_t pid;
	/* Thread names, read when a thread is first seen: it may be gone
	 * by the time the trace is written. */
	struct tname *names;
	size_t nnames, capnames;
};

static void note_thread(struct evbuf *b, __u32 tid)
{
	char path[96];

	for (size_t i = b->nnames; i > 0; i--)
		if (b->names[i - 1].tid == tid)
			return;
	if (b->nnames == b->capnames) {
		size_t cap = b->capnames ? 2 * b->capnames : 16;
		struct tname *p = realloc(b->names, cap * sizeof(*p));
		if (!p)
			return;
		b->names = p;
		b->capnames = cap;
	}
	struct tname *t = &b->names[b->nnames++];
	t->tid = tid;
	snprintf(path, sizeof(path), "/proc/%d/task/%u/comm", (int)b->pid, tid);
	if (mc_read_line(path, t->comm, sizeof(t->comm)) < 0)
		snprintf(t->comm, sizeof(t->comm), "tid %u", tid);
}

static int on_event(void *ctx, void *data, size_t size)
{
	struct evbuf *b = ctx;

	if (size < sizeof(struct moirai_ev))
		return 0;
	if (b->n == b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 65536;
		struct moirai_ev *p = realloc(b->ev, cap * sizeof(*p));
		if (!p) {
			b->oom = true;
			return -ENOMEM;
		}
		b->ev = p;
		b->cap = cap;
	}
	memcpy(&b->ev[b->n++], data, sizeof(struct moirai_ev));
	note_thread(b, ((const struct moirai_ev *)data)->tid);
	return 0;
}

/* The file whose probes we attach to: the libmoirai.so that pid maps, else
 * its executable. */
static int probe_file(pid_t pid, char *out, size_t size)
{
	char path[64], line[PATH_MAX + 256];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		char *p = strchr(line, '/');
		if (!p)
			continue;
		p[strcspn(p, "\n")] = 0;
		const char *base = strrchr(p, '/') + 1;
		if (!strncmp(base, "libmoirai.so", 12)) {
			snprintf(out, size, "%s", p);
			fclose(f);
			return 0;
		}
	}
	fclose(f);
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	ssize_t n = readlink(path, out, size - 1);
	if (n < 0)
		return -errno;
	out[n] = 0;
	return 0;
}

/* ---- building the timeline ---------------------------------------------- */

enum { S_FIBER, S_JOB, S_PARK };

struct open_slice {
	int kind;
	__u64 id, start, arg;
};

struct track {
	__u32 tid;
	struct open_slice *st;
	size_t n, cap;
};

struct tl {
	FILE *f;
	pid_t pid;
	__u64 t0, tend;
	struct track *tr;
	size_t ntr, cap;
	bool first;
	/* fiber -> flow id of the fiber_ready not yet followed by its run */
	__u64 *fkey, *fval;
	size_t fcap;
	__u64 next_flow;
	unsigned long long fiber_slices, job_slices;
};

static double us(const struct tl *t, __u64 ts)
{
	return ts >= t->t0 ? (double)(ts - t->t0) / 1000.0 : 0;
}

static void sep(struct tl *t)
{
	fputs(t->first ? "\n" : ",\n", t->f);
	t->first = false;
}

static struct track *track(struct tl *t, __u32 tid)
{
	for (size_t i = 0; i < t->ntr; i++)
		if (t->tr[i].tid == tid)
			return &t->tr[i];
	if (t->ntr == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 16;
		struct track *p = realloc(t->tr, cap * sizeof(*p));
		if (!p)
			return NULL;
		t->tr = p;
		t->cap = cap;
	}
	struct track *k = &t->tr[t->ntr++];
	memset(k, 0, sizeof(*k));
	k->tid = tid;
	return k;
}

static void push(struct track *k, int kind, __u64 id, __u64 ts, __u64 arg)
{
	if (k->n == k->cap) {
		size_t cap = k->cap ? 2 * k->cap : 16;
		struct open_slice *p = realloc(k->st, cap * sizeof(*p));
		if (!p)
			return;
		k->st = p;
		k->cap = cap;
	}
	k->st[k->n++] = (struct open_slice){ kind, id, ts, arg };
}

static void emit_slice(struct tl *t, const struct track *k, const struct open_slice *s, __u64 end)
{
	sep(t);
	switch (s->kind) {
	case S_FIBER:
		t->fiber_slices++;
		fprintf(t->f,
			"{\"name\":\"fiber 0x%llx\",\"cat\":\"fiber\",\"ph\":\"X\",\"ts\":%.3f,"
			"\"dur\":%.3f,\"pid\":%d,\"tid\":%u,\"args\":{\"fiber\":\"0x%llx\",\"worker\":%lld}}",
			(unsigned long long)s->id, us(t, s->start), (double)(end - s->start) / 1000.0,
			(int)t->pid, k->tid, (unsigned long long)s->id, (long long)s->arg);
		break;
	case S_JOB:
		t->job_slices++;
		fprintf(t->f,
			"{\"name\":\"job\",\"cat\":\"job\",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,"
			"\"pid\":%d,\"tid\":%u,\"args\":{\"job\":\"0x%llx\",\"fn\":\"0x%llx\"}}",
			us(t, s->start), (double)(end - s->start) / 1000.0, (int)t->pid, k->tid,
			(unsigned long long)s->id, (unsigned long long)s->arg);
		break;
	default:
		fprintf(t->f,
			"{\"name\":\"parked\",\"cat\":\"park\",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,"
			"\"pid\":%d,\"tid\":%u}",
			us(t, s->start), (double)(end - s->start) / 1000.0, (int)t->pid, k->tid);
	}
}

/* Close the newest open slice of this kind and id, and all opened after it. */
static void pop(struct tl *t, struct track *k, int kind, __u64 id, __u64 ts)
{
	size_t i = k->n;

	while (i > 0 && !(k->st[i - 1].kind == kind && k->st[i - 1].id == id))
		i--;
	if (i == 0)
		return; /* it began before the trace did */
	while (k->n >= i) {
		emit_slice(t, k, &k->st[k->n - 1], ts);
		k->n--;
	}
}

static size_t fslot(const struct tl *t, __u64 f)
{
	return (size_t)((f >> 4) * 0x9E3779B97F4A7C15ull) & (t->fcap - 1);
}

static void flow_start(struct tl *t, __u64 f, __u64 id)
{
	size_t i = fslot(t, f);

	while (t->fkey[i] && t->fkey[i] != f)
		i = (i + 1) & (t->fcap - 1);
	t->fkey[i] = f;
	t->fval[i] = id;
}

static __u64 flow_take(struct tl *t, __u64 f)
{
	size_t i = fslot(t, f);

	while (t->fkey[i]) {
		if (t->fkey[i] == f) {
			__u64 id = t->fval[i];
			t->fval[i] = 0; /* the key stays: probing goes on past it */
			return id;
		}
		i = (i + 1) & (t->fcap - 1);
	}
	return 0;
}

static void instant(struct tl *t, const struct moirai_ev *e, const char *name, const char *args)
{
	sep(t);
	fprintf(t->f,
		"{\"name\":\"%s\",\"cat\":\"event\",\"ph\":\"i\",\"s\":\"t\",\"ts\":%.3f,\"pid\":%d,"
		"\"tid\":%u,\"args\":{%s}}",
		name, us(t, e->ts), (int)t->pid, e->tid, args);
}

/* A probe's string, JSON-safe (the runtime's call names are identifiers). */
static void safe_str(char *out, const char *in, size_t n)
{
	size_t i;

	/* ASCII only: a thread name the program chose may hold any byte, and
	 * JSON must be valid UTF-8. */
	for (i = 0; i + 1 < n && in[i]; i++)
		out[i] = (in[i] == '"' || in[i] == '\\' || (unsigned char)in[i] < 32 ||
			  (unsigned char)in[i] >= 127) ?
				 '?' :
				 in[i];
	out[i] = 0;
}

static void one(struct tl *t, const struct moirai_ev *e)
{
	struct track *k = track(t, e->tid);
	char a[160], s[MOIRAI_EV_STR + 1];

	if (!k)
		return;
	switch (e->type) {
	case MOIRAI_EV_FIBER_RUN: {
		__u64 flow = flow_take(t, e->a[0]);
		push(k, S_FIBER, e->a[0], e->ts, e->a[1]);
		if (flow) {
			sep(t);
			fprintf(t->f,
				"{\"name\":\"wake\",\"cat\":\"wake\",\"ph\":\"f\",\"bp\":\"e\",\"id\":%llu,"
				"\"ts\":%.3f,\"pid\":%d,\"tid\":%u}",
				(unsigned long long)flow, us(t, e->ts), (int)t->pid, e->tid);
		}
		break;
	}
	case MOIRAI_EV_FIBER_STOP:
		pop(t, k, S_FIBER, e->a[0], e->ts);
		break;
	case MOIRAI_EV_JOB_START:
		push(k, S_JOB, e->a[0], e->ts, e->a[2]);
		break;
	case MOIRAI_EV_JOB_END:
		pop(t, k, S_JOB, e->a[0], e->ts);
		break;
	case MOIRAI_EV_WORKER_PARK:
		push(k, S_PARK, e->a[0], e->ts, 0);
		break;
	case MOIRAI_EV_WORKER_WAKE:
		pop(t, k, S_PARK, e->a[0], e->ts);
		break;
	case MOIRAI_EV_FIBER_READY: {
		__u64 id = ++t->next_flow;
		flow_start(t, e->a[0], id);
		sep(t);
		fprintf(t->f,
			"{\"name\":\"wake\",\"cat\":\"wake\",\"ph\":\"s\",\"id\":%llu,\"ts\":%.3f,"
			"\"pid\":%d,\"tid\":%u}",
			(unsigned long long)id, us(t, e->ts), (int)t->pid, e->tid);
		break;
	}
	case MOIRAI_EV_FIBER_CREATE:
		snprintf(a, sizeof(a), "\"fiber\":\"0x%llx\",\"fn\":\"0x%llx\"",
			 (unsigned long long)e->a[0], (unsigned long long)e->a[1]);
		instant(t, e, "fiber_create", a);
		break;
	case MOIRAI_EV_FIBER_PARK:
		safe_str(s, e->str, sizeof(s));
		snprintf(a, sizeof(a), "\"fiber\":\"0x%llx\",\"call\":\"%s\"",
			 (unsigned long long)e->a[0], s);
		instant(t, e, "park", a);
		break;
	case MOIRAI_EV_FIBER_EXIT:
		snprintf(a, sizeof(a), "\"fiber\":\"0x%llx\"", (unsigned long long)e->a[0]);
		instant(t, e, "fiber_exit", a);
		break;
	case MOIRAI_EV_JOB_STEAL:
		snprintf(a, sizeof(a), "\"job\":\"0x%llx\",\"thief\":%lld,\"victim\":%lld",
			 (unsigned long long)e->a[0], (long long)e->a[1], (long long)e->a[2]);
		instant(t, e, "steal", a);
		break;
	case MOIRAI_EV_WORKER_WAKEUP:
		snprintf(a, sizeof(a), "\"worker\":%lld,\"waker\":%lld", (long long)e->a[0],
			 (long long)(int)e->a[1]);
		instant(t, e, "wake_worker", a);
		break;
	case MOIRAI_EV_CHAN_BLOCK:
		safe_str(s, e->str, sizeof(s));
		snprintf(a, sizeof(a), "\"chan\":\"0x%llx\",\"op\":%lld,\"call\":\"%s\"",
			 (unsigned long long)e->a[0], (long long)e->a[1], s);
		instant(t, e, "chan_block", a);
		break;
	case MOIRAI_EV_CHAN_WAKE:
		instant(t, e, "chan_wake", "");
		break;
	case MOIRAI_EV_IO_SUBMIT:
		snprintf(a, sizeof(a), "\"worker\":%lld,\"op\":%lld,\"fd\":%lld", (long long)e->a[0],
			 (long long)e->a[1], (long long)(int)e->a[2]);
		instant(t, e, "io_submit", a);
		break;
	case MOIRAI_EV_IO_COMPLETE:
		snprintf(a, sizeof(a), "\"worker\":%lld,\"fiber\":\"0x%llx\",\"res\":%lld",
			 (long long)e->a[0], (unsigned long long)e->a[1], (long long)(int)e->a[2]);
		instant(t, e, "io_complete", a);
		break;
	default:
		break;
	}
}

/* Events in time order, ties in the order they left the ring. */
struct ev_ref {
	__u64 ts;
	size_t idx;
};

static int cmp_ev(const void *a, const void *b)
{
	const struct ev_ref *x = a, *y = b;

	if (x->ts != y->ts)
		return x->ts < y->ts ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int write_json(const char *out, pid_t pid, struct evbuf *b, __u64 dropped)
{
	struct tl t = { .pid = pid, .first = true };
	FILE *f = stdout;

	if (strcmp(out, "-")) {
		/* Run as root: never through a symlink someone planted. */
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
		if (fd < 0 || !(f = fdopen(fd, "w"))) {
			int e = -errno;
			if (fd >= 0)
				close(fd);
			return e;
		}
	}
	t.f = f;
	/* The ring is filled from every CPU: one CPU's events may land after
	 * another's later ones. Ordered by time (ties by arrival), each
	 * thread's sequence is the order its probes fired in (a thread is on
	 * one CPU at a time, and the clock is monotonic). */
	struct ev_ref *order = malloc((b->n ? b->n : 1) * sizeof(*order));
	struct moirai_ev *sorted = malloc((b->n ? b->n : 1) * sizeof(*sorted));
	if (!order || !sorted) {
		free(order);
		free(sorted);
		if (f != stdout)
			fclose(f);
		return -ENOMEM;
	}
	for (size_t i = 0; i < b->n; i++)
		order[i] = (struct ev_ref){ b->ev[i].ts, i };
	qsort(order, b->n, sizeof(*order), cmp_ev);
	for (size_t i = 0; i < b->n; i++)
		sorted[i] = b->ev[order[i].idx];
	free(order);
	free(b->ev);
	b->ev = sorted;
	t.t0 = b->n ? b->ev[0].ts : 0;
	t.tend = b->n ? b->ev[b->n - 1].ts : 0;
	for (t.fcap = 1024; t.fcap < 2 * b->n; t.fcap *= 2)
		;
	t.fkey = calloc(t.fcap, sizeof(*t.fkey));
	t.fval = calloc(t.fcap, sizeof(*t.fval));
	if (!t.fkey || !t.fval) {
		free(t.fkey);
		free(t.fval);
		if (f != stdout)
			fclose(f);
		return -ENOMEM;
	}
	fputs("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[", f);
	for (size_t i = 0; i < b->n; i++)
		one(&t, &b->ev[i]);
	for (size_t i = 0; i < t.ntr; i++) {
		struct track *k = &t.tr[i];
		const char *comm = "?";
		while (k->n > 0) {
			emit_slice(&t, k, &k->st[k->n - 1], t.tend);
			k->n--;
		}
		free(k->st);
		for (size_t j = 0; j < b->nnames; j++)
			if (b->names[j].tid == k->tid)
				comm = b->names[j].comm;
		char name[40];
		safe_str(name, comm, sizeof(name));
		sep(&t);
		fprintf(f,
			"{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%u,"
			"\"args\":{\"name\":\"%s\"}}",
			(int)pid, k->tid, name);
	}
	fprintf(f,
		"\n],\"otherData\":{\"pid\":%d,\"events\":%zu,\"dropped\":%llu,"
		"\"fiber_slices\":%llu,\"job_slices\":%llu}}\n",
		(int)pid, b->n, (unsigned long long)dropped, t.fiber_slices, t.job_slices);
	free(t.tr);
	free(t.fkey);
	free(t.fval);
	if (f != stdout && fclose(f) != 0)
		return -errno;
	fprintf(stderr,
		"moiraictl: %zu events, %llu fiber runs, %llu jobs, %llu dropped%s -> %s\n", b->n,
		t.fiber_slices, t.job_slices, (unsigned long long)dropped,
		dropped ? " (the trace has holes)" : "", out);
	return 0;
}

static int libbpf_quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG && !mc_verbose)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

int cmd_trace(pid_t pid, double seconds, const char *out)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo, .object_name = "moirai_trace");
	struct bpf_object *obj = NULL;
	struct bpf_program *prog;
	struct ring_buffer *rb = NULL;
	struct bpf_link **links = NULL;
	size_t nlinks = 0;
	struct evbuf b = { .pid = pid };
	char file[PATH_MAX];
	int err, ret = MC_EXIT_FAIL, sfd = -1;
	sigset_t set, old;

	if (!mc_pid_alive(pid)) {
		fprintf(stderr, "moiraictl: trace: no process %d\n", (int)pid);
		return MC_EXIT_FAIL;
	}
	if ((err = probe_file(pid, file, sizeof(file))) < 0) {
		fprintf(stderr, "moiraictl: trace: cannot read /proc/%d: %s\n", (int)pid,
			strerror(-err));
		return MC_EXIT_FAIL;
	}
	libbpf_set_print(libbpf_quiet);
	obj = bpf_object__open_mem(moirai_trace_obj_start,
				   (size_t)(moirai_trace_obj_end - moirai_trace_obj_start), &oo);
	if (!obj) {
		fprintf(stderr, "moiraictl: trace: cannot open the BPF object: %s\n",
			strerror(errno));
		return MC_EXIT_FAIL;
	}
	if ((err = bpf_object__load(obj)) < 0) {
		fprintf(stderr, "moiraictl: trace: cannot load the BPF programs: %s%s\n",
			strerror(-err), geteuid() ? " (run as root)" : "");
		goto out;
	}
	bpf_object__for_each_program(prog, obj) nlinks++;
	links = calloc(nlinks, sizeof(*links));
	if (!links)
		goto out;
	nlinks = 0;
	bpf_object__for_each_program(prog, obj)
	{
		const char *name = bpf_program__name(prog);
		struct bpf_link *l = bpf_program__attach_usdt(prog, pid, file, "moirai", name, NULL);
		if (!l) {
			/* A static link holds only the probes of the parts it
			 * uses (no I/O: no io_* probes). */
			err = -errno;
			if (err == -ENOENT) {
				if (mc_verbose)
					fprintf(stderr, "moiraictl: trace: no probe moirai:%s in %s\n",
						name, file);
				bpf_program__set_autoattach(prog, false);
				continue;
			}
			fprintf(stderr, "moiraictl: trace: cannot attach to probe moirai:%s in %s: %s\n",
				name, file, strerror(-err));
			goto out;
		}
		links[nlinks++] = l;
	}
	if (nlinks == 0) {
		fprintf(stderr,
			"moiraictl: trace: no Moirai probe in %s (built without <sys/sdt.h>, "
			"package systemtap-sdt-dev?)\n",
			file);
		goto out;
	}
	rb = ring_buffer__new(bpf_map__fd(bpf_object__find_map_by_name(obj, "events")), on_event,
			      &b, NULL);
	if (!rb) {
		fprintf(stderr, "moiraictl: trace: ring buffer: %s\n", strerror(errno));
		goto out;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, &old);
	sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	fprintf(stderr, "moiraictl: tracing pid %d (%s)%s\n", (int)pid, file,
		seconds > 0 ? "" : " until SIGINT or its exit");
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	double end = ts.tv_sec + ts.tv_nsec / 1e9 + seconds;
	for (;;) {
		err = ring_buffer__poll(rb, 50);
		if (err < 0 && err != -EINTR) {
			fprintf(stderr, "moiraictl: trace: %s\n", strerror(-err));
			break;
		}
		if (b.oom)
			break;
		struct signalfd_siginfo si;
		if (sfd >= 0 && read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
			break;
		if (!mc_pid_alive(pid))
			break;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		if (seconds > 0 && ts.tv_sec + ts.tv_nsec / 1e9 >= end)
			break;
	}
	/* What is still in the ring. */
	ring_buffer__consume(rb);
	if (sfd >= 0)
		close(sfd);
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (b.oom) {
		fprintf(stderr, "moiraictl: trace: out of memory after %zu events\n", b.n);
		goto out;
	}
	__u64 dropped = 0;
	__u32 k = 0;
	bpf_map_lookup_elem(bpf_map__fd(bpf_object__find_map_by_name(obj, "dropped")), &k,
			    &dropped);
	if ((err = write_json(out, pid, &b, dropped)) < 0) {
		fprintf(stderr, "moiraictl: trace: %s: %s\n", out, strerror(-err));
		goto out;
	}
	ret = MC_EXIT_OK;
out:
	ring_buffer__free(rb);
	for (size_t i = 0; i < nlinks; i++)
		bpf_link__destroy(links[i]);
	free(links);
	bpf_object__close(obj);
	free(b.ev);
	free(b.names);
	return ret;
}
