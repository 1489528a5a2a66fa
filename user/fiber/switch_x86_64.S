/*
 * switch_x86_64.S - mr__ctx_switch, mr__ctx_transfer and mr__ctx_make for
 * x86-64 (System V). See switch.h for the contract.
 *
 * A suspended context's stack, from its saved stack pointer up:
 *	[sp+0]  MXCSR (4 bytes), x87 control word (2 bytes), 2 bytes unused
 *	[sp+8]  r15, r14, r13, r12, rbx, rbp
 *	[sp+56] return address (mr__ctx_switch jumps to it, mr__ctx_transfer returns
 *		to it: see their ends)
 */
#if defined(__x86_64__)
	.text

/*
 * The body both switches share: save the callee-saved registers and the
 * floating-point control state on the current stack, store its stack pointer
 * in *save_sp [rdi], load to_sp [rsi], restore that context's registers and
 * leave arg [rdx] in rax (the resumed switch call returns it) and rdi (a
 * fresh context's entry receives it). The resumed context's return address
 * is then on top of its stack.
 */
.macro SWITCH_BODY
	/* CFI tracks the pushes so that unwinders see the right return
	 * address on either side of the stack switch (the frames on both
	 * stacks have the same layout). */
	pushq	%rbp
	.cfi_adjust_cfa_offset 8
	pushq	%rbx
	.cfi_adjust_cfa_offset 8
	pushq	%r12
	.cfi_adjust_cfa_offset 8
	pushq	%r13
	.cfi_adjust_cfa_offset 8
	pushq	%r14
	.cfi_adjust_cfa_offset 8
	pushq	%r15
	.cfi_adjust_cfa_offset 8
	subq	$8, %rsp
	.cfi_adjust_cfa_offset 8
	stmxcsr	(%rsp)
	fnstcw	4(%rsp)
	movq	%rsp, (%rdi)
	movq	%rsi, %rsp
	ldmxcsr	(%rsp)
	fldcw	4(%rsp)
	addq	$8, %rsp
	.cfi_adjust_cfa_offset -8
	popq	%r15
	.cfi_adjust_cfa_offset -8
	popq	%r14
	.cfi_adjust_cfa_offset -8
	popq	%r13
	.cfi_adjust_cfa_offset -8
	popq	%r12
	.cfi_adjust_cfa_offset -8
	popq	%rbx
	.cfi_adjust_cfa_offset -8
	popq	%rbp
	.cfi_adjust_cfa_offset -8
	movq	%rdx, %rax
	movq	%rdx, %rdi
.endm

	.globl	mr__ctx_switch
	.hidden	mr__ctx_switch
	.type	mr__ctx_switch, @function
	.p2align 4
/* void *mr__ctx_switch(void **save_sp [rdi], void *to_sp [rsi], void *arg [rdx]) */
mr__ctx_switch:
	.cfi_startproc
	SWITCH_BODY
	/*
	 * Not `ret`: the return-stack predictor expects the caller of this
	 * call, but we resume a different context, so a ret mispredicts on
	 * every switch between different call sites (a worker and its
	 * fibers): 12 ns instead of 6 per switch, measured. An indirect jump
	 * is predicted from its own history.
	 */
	popq	%rcx
	.cfi_adjust_cfa_offset -8
	.cfi_register rip, rcx
	jmp	*%rcx
	.cfi_endproc
	.size	mr__ctx_switch, .-mr__ctx_switch

	.globl	mr__ctx_transfer
	.hidden	mr__ctx_transfer
	.type	mr__ctx_transfer, @function
	.p2align 4
/* void *mr__ctx_transfer(void **save_sp [rdi], void *to_sp [rsi], void *arg [rdx]) */
mr__ctx_transfer:
	.cfi_startproc
	SWITCH_BODY
	/*
	 * `ret`, for a context suspended at this same call site: the
	 * return-stack predictor then expects exactly where it resumes, and
	 * so also every return after that up to where the two contexts'
	 * call chains part. A jump there leaves the predictor one entry off,
	 * and each of those returns mispredicts (fiber ping-pong through a
	 * rendezvous channel: 44 -> 36 ns per hand-off, measured).
	 */
	ret
	.cfi_endproc
	.size	mr__ctx_transfer, .-mr__ctx_transfer

/*
 * First code of a fresh context: entered by a switch's jump (or ret) with
 * rdi = arg and rbx = entry (popped from the frame mr__ctx_make built).
 * rsp is 16-byte aligned here, so the call leaves the callee the usual
 * rsp % 16 == 8. entry never returns.
 */
	.type	ctx_start, @function
	.p2align 4
ctx_start:
	.cfi_startproc
	.cfi_undefined rip	/* end of the call chain for unwinders and debuggers */
	xorl	%ebp, %ebp
	callq	*%rbx
	ud2
	.cfi_endproc
	.size	ctx_start, .-ctx_start

	.globl	mr__ctx_make
	.hidden	mr__ctx_make
	.type	mr__ctx_make, @function
	.p2align 4
/* void *mr__ctx_make(void *stack_top [rdi], mr__ctx_entry entry [rsi]) */
mr__ctx_make:
	.cfi_startproc
	andq	$-16, %rdi
	/* 64-byte frame below the top: after the switch pops 56 bytes and
	 * returns (8 more), rsp = top - 0: 16-byte aligned in ctx_start. */
	leaq	-64(%rdi), %rax
	movl	$0x1f80, (%rax)		/* MXCSR: all exceptions masked, round to nearest */
	movw	$0x037f, 4(%rax)	/* x87 CW: all masked, extended precision, nearest */
	movw	$0, 6(%rax)
	movq	$0, 8(%rax)		/* r15 */
	movq	$0, 16(%rax)		/* r14 */
	movq	$0, 24(%rax)		/* r13 */
	movq	$0, 32(%rax)		/* r12 */
	movq	%rsi, 40(%rax)		/* rbx = entry */
	movq	$0, 48(%rax)		/* rbp */
	leaq	ctx_start(%rip), %rcx
	movq	%rcx, 56(%rax)		/* return address */
	ret
	.cfi_endproc
	.size	mr__ctx_make, .-mr__ctx_make

#endif
	.section .note.GNU-stack, "", @progbits
