/*
 * compat.bpf.h - every kfunc moirai.bpf.c calls, declared here, and dated
 * shims for the ones whose name or shape changed between kernels.
 *
 * Why. The scheduler is compiled against one vmlinux.h (tools/vm/vmlinux-h.sh)
 * and loaded on another kernel. Whether that header declares any kfunc at all
 * depends on the bpftool that wrote it (7.5 emits them, older ones do not, and
 * -DBPF_NO_KFUNC_PROTOTYPES drops them) and on the kernel it came from (a 6.12
 * header has scx_bpf_dispatch, not scx_bpf_dsq_insert). So nothing here
 * relies on the header's declarations: the kfuncs whose prototype has not
 * changed since 6.12 are declared again below (a declaration identical to the
 * header's is harmless, a different one is a compile error that the build
 * against the newest kernel's BTF catches: `make check-bpf-kernels`), and
 * the ones that changed are declared once per shape, under a name of ours.
 *
 * How a shim works. Each shape is a weak ksym named <kernel name>___mr.
 * libbpf drops the last ___suffix when it looks the name up in the kernel's
 * BTF, so scx_bpf_dsq_insert___v2___mr binds to the kernel's
 * scx_bpf_dsq_insert___v2; and it leaves a weak kfunc whose prototype does
 * not match the kernel's unresolved (address 0) instead of failing the load.
 * bpf_ksym_exists() then tells which shapes this kernel has, and the verifier
 * drops the branches of the others as dead code. The newest shape is tried
 * first: the older ones stay in the kernel for a while only for programs
 * built before the change. The suffixed names never clash with vmlinux.h's
 * own declaration of the plain name, whichever kernel wrote it.
 *
 * When no shape matches (a kernel that renamed a kfunc again), the wrapper
 * stops the scheduler with scx_bpf_error naming the kfunc, rather than make
 * a call to an unresolved kfunc that the verifier rejects at load with an
 * opaque "invalid kfunc call" (what a single weak name would do after a
 * prototype change: libbpf leaves it unresolved and the fallback is missing).
 *
 * When it behaves badly. Only a change of arity, of return type or of a
 * parameter's kind (int, pointer, struct) is seen: libbpf treats integers of
 * any width as compatible and does not compare the layout of structs passed
 * by pointer (scx_bpf_dsq_insert_vtime_args below is ours and must keep the
 * kernel's layout). Enum constants (SCX_ENQ_*, SCX_KICK_*, SCX_DSQ_LOCAL,
 * SCX_ECODE_*, SCX_PICK_IDLE_CORE, SCX_OPS_SWITCH_PARTIAL, SCX_WAKE_SYNC)
 * are compiled in from the build's vmlinux.h; they have the same values in
 * 6.19 and 7.3 (compared when this file was written).
 *
 * Kernel history of what the scheduler calls (from the kernels' BTF):
 *   6.12  sched_ext: scx_bpf_dispatch, scx_bpf_dispatch_vtime, scx_bpf_consume;
 *         p->scx.dsq_vtime written directly.
 *   6.13  renamed: scx_bpf_dsq_insert, scx_bpf_dsq_insert_vtime,
 *         scx_bpf_dsq_move_to_local (the old names are gone by 6.19).
 *   6.19  scx_bpf_dsq_insert___v2 returns bool (v1 returned void);
 *         __scx_bpf_dsq_insert_vtime(p, &args) packs the scalars in a struct
 *         (a kfunc takes at most five arguments); scx_bpf_task_set_dsq_vtime.
 *   7.1   scx_bpf_dsq_move_to_local___v2(dsq_id, enq_flags) (not in 6.19's
 *         BTF, in 7.3's).
 */
#ifndef MOIRAI_COMPAT_BPF_H
#define MOIRAI_COMPAT_BPF_H

/* ---- kfuncs unchanged since 6.12 ----------------------------------------- */

s32 scx_bpf_create_dsq(u64 dsq_id, s32 node) __ksym __weak;
void scx_bpf_error_bstr(char *fmt, unsigned long long *data, u32 data__sz) __ksym __weak;
void scx_bpf_exit_bstr(s64 exit_code, char *fmt, unsigned long long *data,
		       u32 data__sz) __ksym __weak;
const struct cpumask *scx_bpf_get_idle_cpumask(void) __ksym __weak;
const struct cpumask *scx_bpf_get_idle_smtmask(void) __ksym __weak;
const struct cpumask *scx_bpf_get_online_cpumask(void) __ksym __weak;
void scx_bpf_put_cpumask(const struct cpumask *cpumask) __ksym __weak;
void scx_bpf_put_idle_cpumask(const struct cpumask *idle_mask) __ksym __weak;
void scx_bpf_kick_cpu(s32 cpu, u64 flags) __ksym __weak;
s32 scx_bpf_pick_idle_cpu(const struct cpumask *cpus_allowed, u64 flags) __ksym __weak;
s32 scx_bpf_select_cpu_dfl(struct task_struct *p, s32 prev_cpu, u64 wake_flags,
			   bool *is_idle) __ksym __weak;
s32 scx_bpf_task_cpu(const struct task_struct *p) __ksym __weak;
bool scx_bpf_test_and_clear_cpu_idle(s32 cpu) __ksym __weak;
/* The DSQ iterator, for bpf_for_each(scx_dsq, ...). */
int bpf_iter_scx_dsq_new(struct bpf_iter_scx_dsq *it, u64 dsq_id, u64 flags) __ksym __weak;
struct task_struct *bpf_iter_scx_dsq_next(struct bpf_iter_scx_dsq *it) __ksym __weak;
void bpf_iter_scx_dsq_destroy(struct bpf_iter_scx_dsq *it) __ksym __weak;

struct bpf_cpumask *bpf_cpumask_create(void) __ksym __weak;
void bpf_cpumask_release(struct bpf_cpumask *cpumask) __ksym __weak;
void bpf_cpumask_set_cpu(u32 cpu, struct bpf_cpumask *cpumask) __ksym __weak;
void bpf_cpumask_clear_cpu(u32 cpu, struct bpf_cpumask *cpumask) __ksym __weak;
bool bpf_cpumask_test_cpu(u32 cpu, const struct cpumask *cpumask) __ksym __weak;
bool bpf_cpumask_intersects(const struct cpumask *src1, const struct cpumask *src2) __ksym __weak;
bool bpf_cpumask_subset(const struct cpumask *src1, const struct cpumask *src2) __ksym __weak;
void bpf_rcu_read_lock(void) __ksym __weak;
void bpf_rcu_read_unlock(void) __ksym __weak;

/* scx_error("fmt", args...): stop the scheduler with a formatted message. */
#define scx_error(fmt, args...)                                                          \
	({                                                                               \
		static char ___fmt[] = fmt;                                              \
		unsigned long long ___param[___bpf_narg(args)];                          \
		_Pragma("GCC diagnostic push")                                           \
		_Pragma("GCC diagnostic ignored \"-Wint-conversion\"")                   \
		___bpf_fill(___param, args);                                             \
		_Pragma("GCC diagnostic pop")                                            \
		scx_bpf_error_bstr(___fmt, ___param, sizeof(___param));                  \
	})

/* scx_exit(code, "fmt", args...): stop the scheduler (not as an error). */
#define scx_exit(code, fmt, args...)                                                     \
	({                                                                               \
		static char ___fmt[] = fmt;                                              \
		unsigned long long ___param[___bpf_narg(args)];                          \
		_Pragma("GCC diagnostic push")                                           \
		_Pragma("GCC diagnostic ignored \"-Wint-conversion\"")                   \
		___bpf_fill(___param, args);                                             \
		_Pragma("GCC diagnostic pop")                                            \
		scx_bpf_exit_bstr(code, ___fmt, ___param, sizeof(___param));             \
	})

/* ---- insert into a DSQ in FIFO order -------------------------------------- */

bool scx_bpf_dsq_insert___v2___mr(struct task_struct *p, u64 dsq_id, u64 slice,
				  u64 enq_flags) __ksym __weak; /* 6.19 */
void scx_bpf_dsq_insert___mr(struct task_struct *p, u64 dsq_id, u64 slice,
			     u64 enq_flags) __ksym __weak; /* 6.13 */
void scx_bpf_dispatch___mr(struct task_struct *p, u64 dsq_id, u64 slice,
			   u64 enq_flags) __ksym __weak; /* 6.12 */

static __always_inline void insert(struct task_struct *p, u64 dsq, u64 slice, u64 flags)
{
	if (bpf_ksym_exists(scx_bpf_dsq_insert___v2___mr))
		scx_bpf_dsq_insert___v2___mr(p, dsq, slice, flags);
	else if (bpf_ksym_exists(scx_bpf_dsq_insert___mr))
		scx_bpf_dsq_insert___mr(p, dsq, slice, flags);
	else if (bpf_ksym_exists(scx_bpf_dispatch___mr))
		scx_bpf_dispatch___mr(p, dsq, slice, flags);
	else
		scx_error("moirai: the kernel has no scx_bpf_dsq_insert of a known shape");
}

/* ---- insert into a DSQ in vtime order ------------------------------------- */

/* The kernel's struct scx_bpf_dsq_insert_vtime_args (6.19), under our name so
 * that a vmlinux.h without it still compiles; the layout must stay the
 * kernel's (the verifier checks the size the kernel's BTF gives). */
struct scx_bpf_dsq_insert_vtime_args___mr {
	u64 dsq_id;
	u64 slice;
	u64 vtime;
	u64 enq_flags;
};

/* 6.19 */
bool __scx_bpf_dsq_insert_vtime___mr(struct task_struct *p,
				     struct scx_bpf_dsq_insert_vtime_args___mr *args) __ksym __weak;
void scx_bpf_dsq_insert_vtime___mr(struct task_struct *p, u64 dsq_id, u64 slice, u64 vtime,
				   u64 enq_flags) __ksym __weak; /* 6.13 */
void scx_bpf_dispatch_vtime___mr(struct task_struct *p, u64 dsq_id, u64 slice, u64 vtime,
				 u64 enq_flags) __ksym __weak; /* 6.12 */

static __always_inline void insert_vtime(struct task_struct *p, u64 dsq, u64 slice, u64 vtime,
					 u64 flags)
{
	if (bpf_ksym_exists(__scx_bpf_dsq_insert_vtime___mr)) {
		struct scx_bpf_dsq_insert_vtime_args___mr args = {
			.dsq_id = dsq,
			.slice = slice,
			.vtime = vtime,
			.enq_flags = flags,
		};
		__scx_bpf_dsq_insert_vtime___mr(p, &args);
	} else if (bpf_ksym_exists(scx_bpf_dsq_insert_vtime___mr)) {
		scx_bpf_dsq_insert_vtime___mr(p, dsq, slice, vtime, flags);
	} else if (bpf_ksym_exists(scx_bpf_dispatch_vtime___mr)) {
		scx_bpf_dispatch_vtime___mr(p, dsq, slice, vtime, flags);
	} else {
		scx_error("moirai: the kernel has no scx_bpf_dsq_insert_vtime of a known shape");
	}
}

/* ---- move a DSQ's head to the local DSQ (ops.dispatch) -------------------- */

bool scx_bpf_dsq_move_to_local___v2___mr(u64 dsq_id, u64 enq_flags) __ksym __weak; /* 7.1 */
bool scx_bpf_dsq_move_to_local___mr(u64 dsq_id) __ksym __weak; /* 6.13 */
bool scx_bpf_consume___mr(u64 dsq_id) __ksym __weak; /* 6.12 */

static __always_inline bool move_to_local(u64 dsq)
{
	if (bpf_ksym_exists(scx_bpf_dsq_move_to_local___v2___mr))
		return scx_bpf_dsq_move_to_local___v2___mr(dsq, 0);
	if (bpf_ksym_exists(scx_bpf_dsq_move_to_local___mr))
		return scx_bpf_dsq_move_to_local___mr(dsq);
	if (bpf_ksym_exists(scx_bpf_consume___mr))
		return scx_bpf_consume___mr(dsq);
	scx_error("moirai: the kernel has no scx_bpf_dsq_move_to_local of a known shape");
	return false;
}

/* ---- a task's vtime ------------------------------------------------------ */

bool scx_bpf_task_set_dsq_vtime___mr(struct task_struct *p, u64 vtime) __ksym __weak; /* 6.19 */

static __always_inline void set_vtime(struct task_struct *p, u64 vtime)
{
	if (bpf_ksym_exists(scx_bpf_task_set_dsq_vtime___mr))
		scx_bpf_task_set_dsq_vtime___mr(p, vtime);
	else
		p->scx.dsq_vtime = vtime;
}

/* ---- what this kernel bound ---------------------------------------------- */

/* enum moirai_kfunc -> shape (moirai_shared.h); ops.init fills it and the
 * loader prints it, so a run on a new kernel says which shapes it used. */
SEC(".data.kfuncs") u8 kfunc_shapes[MOIRAI_KF_NR] = {};

static __always_inline void compat_record(void)
{
	if (bpf_ksym_exists(scx_bpf_dsq_insert___v2___mr))
		kfunc_shapes[MOIRAI_KF_INSERT] = 3;
	else if (bpf_ksym_exists(scx_bpf_dsq_insert___mr))
		kfunc_shapes[MOIRAI_KF_INSERT] = 2;
	else if (bpf_ksym_exists(scx_bpf_dispatch___mr))
		kfunc_shapes[MOIRAI_KF_INSERT] = 1;

	if (bpf_ksym_exists(__scx_bpf_dsq_insert_vtime___mr))
		kfunc_shapes[MOIRAI_KF_INSERT_VTIME] = 3;
	else if (bpf_ksym_exists(scx_bpf_dsq_insert_vtime___mr))
		kfunc_shapes[MOIRAI_KF_INSERT_VTIME] = 2;
	else if (bpf_ksym_exists(scx_bpf_dispatch_vtime___mr))
		kfunc_shapes[MOIRAI_KF_INSERT_VTIME] = 1;

	if (bpf_ksym_exists(scx_bpf_dsq_move_to_local___v2___mr))
		kfunc_shapes[MOIRAI_KF_MOVE_TO_LOCAL] = 3;
	else if (bpf_ksym_exists(scx_bpf_dsq_move_to_local___mr))
		kfunc_shapes[MOIRAI_KF_MOVE_TO_LOCAL] = 2;
	else if (bpf_ksym_exists(scx_bpf_consume___mr))
		kfunc_shapes[MOIRAI_KF_MOVE_TO_LOCAL] = 1;

	if (bpf_ksym_exists(scx_bpf_task_set_dsq_vtime___mr))
		kfunc_shapes[MOIRAI_KF_SET_VTIME] = 2;
	else
		kfunc_shapes[MOIRAI_KF_SET_VTIME] = 1;
}

#endif /* MOIRAI_COMPAT_BPF_H */
