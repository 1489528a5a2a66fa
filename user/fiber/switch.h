/*
 * switch.h - the user-space context switch, one assembly file per
 * architecture (switch_x86_64.S, switch_aarch64.S), same contract:
 *
 * A suspended context is a stack pointer. mr__ctx_switch() pushes the
 * registers the calling convention makes callee-saved onto the current
 * stack, stores the stack pointer in *save_sp, loads to_sp, pops that
 * context's registers and returns into it. Everything else is caller-saved,
 * so the C compiler has already spilled it.
 *   x86-64 (System V): rbx, rbp, r12-r15, the MXCSR and the x87 control word.
 *   aarch64 (AAPCS64): x19-x29, lr (x30), sp, d8-d15.
 * `arg` travels across: it is the return value of the mr__ctx_switch() call
 * that resumes, and the argument of a fresh context's entry function.
 *
 * mr__ctx_make() prepares a fresh context at the top of a stack (16-byte
 * aligned) so that the first switch into it calls entry(arg) with a correctly
 * aligned stack and default floating-point control state. entry must never
 * return (it ends by switching away for good).
 */
#ifndef MR_FIBER_SWITCH_H
#define MR_FIBER_SWITCH_H

typedef void (*mr__ctx_entry)(void *arg) __attribute__((noreturn));

void *mr__ctx_switch(void **save_sp, void *to_sp, void *arg);

/*
 * mr__ctx_transfer() is mr__ctx_switch() for a context that was suspended by
 * a call at the same place as this one (a fiber handing its worker straight
 * to another fiber parked the same way): it resumes with a return, which the
 * return-stack predictor then gets right, along with the returns after it up
 * to where the two contexts' call chains part. mr__ctx_switch() resumes with
 * whatever the architecture predicts best between unrelated call sites (an
 * indirect jump on x86-64). Either may resume a context the other suspended.
 */
void *mr__ctx_transfer(void **save_sp, void *to_sp, void *arg);

void *mr__ctx_make(void *stack_top, mr__ctx_entry entry);

#endif /* MR_FIBER_SWITCH_H */
