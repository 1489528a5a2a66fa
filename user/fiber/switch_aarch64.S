/*
 * switch_aarch64.S - mr__ctx_switch (alias mr__ctx_transfer) and mr__ctx_make
 * for aarch64 (AAPCS64).
 * See switch.h for the contract.
 *
 * A suspended context's stack, from its saved stack pointer up (176 bytes,
 * so sp stays 16-byte aligned as the architecture requires for sp-based
 * accesses):
 *	[sp+0]   x19, x20, x21, x22, x23, x24, x25, x26, x27, x28
 *	[sp+80]  x29 (frame pointer), x30 (lr: where the switch returns to)
 *	[sp+96]  d8, d9, d10, d11, d12, d13, d14, d15
 *	[sp+160] FPCR (8 bytes), 8 bytes unused
 *
 * AAPCS64 makes only the low 64 bits of v8-v15 callee-saved, so d8-d15 are
 * enough. FPCR (rounding mode, flush-to-zero, default NaN, trap enables) is
 * per context, like the MXCSR on x86-64; FPSR holds only sticky status flags
 * and is not kept. Writing FPCR can serialise the pipeline on some cores, so
 * the switch writes it only when the two contexts' values differ, which is
 * almost never.
 *
 * The frame mr__ctx_switch pushes and the one it pops have the same layout
 * at the same offsets from sp (the caller's before `mov sp, x1`, the resumed
 * context's after), so one set of CFI rules covers both halves: an unwinder
 * stopped inside sees the registers of whichever context owns sp then.
 *
 * The saved lr is not signed with pointer authentication; with
 * -mbranch-protection the entry points still carry BTI landing pads and the
 * object is marked BTI-compatible so it does not switch BTI off for the
 * whole program.
 */
#if defined(__aarch64__)

#if defined(__ARM_FEATURE_BTI_DEFAULT) && __ARM_FEATURE_BTI_DEFAULT
#define BTI_C	hint	#34	/* bti c: valid target of a bl/blr */
#else
#define BTI_C
#endif

#define FRAME	176

	.text

	.globl	mr__ctx_switch
	.hidden	mr__ctx_switch
	.type	mr__ctx_switch, %function
	.p2align 4
/* void *mr__ctx_switch(void **save_sp [x0], void *to_sp [x1], void *arg [x2]) */
mr__ctx_switch:
	.cfi_startproc
	BTI_C
	sub	sp, sp, #FRAME
	.cfi_def_cfa_offset FRAME
	stp	x19, x20, [sp, #0]
	stp	x21, x22, [sp, #16]
	stp	x23, x24, [sp, #32]
	stp	x25, x26, [sp, #48]
	stp	x27, x28, [sp, #64]
	stp	x29, x30, [sp, #80]
	.cfi_offset x19, -176
	.cfi_offset x20, -168
	.cfi_offset x21, -160
	.cfi_offset x22, -152
	.cfi_offset x23, -144
	.cfi_offset x24, -136
	.cfi_offset x25, -128
	.cfi_offset x26, -120
	.cfi_offset x27, -112
	.cfi_offset x28, -104
	.cfi_offset x29, -96
	.cfi_offset x30, -88
	stp	d8, d9, [sp, #96]
	stp	d10, d11, [sp, #112]
	stp	d12, d13, [sp, #128]
	stp	d14, d15, [sp, #144]
	.cfi_offset d8, -80
	.cfi_offset d9, -72
	.cfi_offset d10, -64
	.cfi_offset d11, -56
	.cfi_offset d12, -48
	.cfi_offset d13, -40
	.cfi_offset d14, -32
	.cfi_offset d15, -24
	mrs	x9, fpcr
	str	x9, [sp, #160]
	mov	x10, sp
	str	x10, [x0]
	/* From here on sp is the resumed context's stack, same layout. */
	mov	sp, x1
	ldr	x10, [sp, #160]
	cmp	x9, x10
	b.eq	1f
	msr	fpcr, x10
1:
	ldp	d8, d9, [sp, #96]
	ldp	d10, d11, [sp, #112]
	ldp	d12, d13, [sp, #128]
	ldp	d14, d15, [sp, #144]
	ldp	x19, x20, [sp, #0]
	ldp	x21, x22, [sp, #16]
	ldp	x23, x24, [sp, #32]
	ldp	x25, x26, [sp, #48]
	ldp	x27, x28, [sp, #64]
	ldp	x29, x30, [sp, #80]
	add	sp, sp, #FRAME
	.cfi_def_cfa_offset 0
	.cfi_restore x19
	.cfi_restore x20
	.cfi_restore x21
	.cfi_restore x22
	.cfi_restore x23
	.cfi_restore x24
	.cfi_restore x25
	.cfi_restore x26
	.cfi_restore x27
	.cfi_restore x28
	.cfi_restore x29
	.cfi_restore x30
	.cfi_restore d8
	.cfi_restore d9
	.cfi_restore d10
	.cfi_restore d11
	.cfi_restore d12
	.cfi_restore d13
	.cfi_restore d14
	.cfi_restore d15
	mov	x0, x2		/* the resumed switch call returns arg; a fresh
				 * context's entry receives it as its argument */
	ret
	.cfi_endproc
	.size	mr__ctx_switch, .-mr__ctx_switch

/* Here the switch resumes with `ret` already, which is what
 * mr__ctx_transfer asks for: the same code under a second name. */
	.globl	mr__ctx_transfer
	.hidden	mr__ctx_transfer
	.type	mr__ctx_transfer, %function
	.set	mr__ctx_transfer, mr__ctx_switch

/*
 * First code of a fresh context: entered by mr__ctx_switch's ret with
 * x0 = arg, x19 = entry, x29 = 0 (both from the frame mr__ctx_make built)
 * and sp = the aligned stack top. It clears lr and branches, so entry starts
 * with fp = lr = 0: frame-pointer walkers stop at the zero frame record that
 * entry's prologue stores, and DWARF unwinders at the zero return address.
 * The branch goes through x16, the register a BTI `bti c` landing pad
 * accepts from a plain br. entry never returns; if it did, it would jump to
 * address 0 and fault.
 */
	.type	ctx_start, %function
	.p2align 4
ctx_start:
	.cfi_startproc
	.cfi_undefined x30	/* end of the call chain for unwinders and debuggers */
	mov	x16, x19
	mov	x29, xzr
	mov	x30, xzr
	br	x16
	.cfi_endproc
	.size	ctx_start, .-ctx_start

	.globl	mr__ctx_make
	.hidden	mr__ctx_make
	.type	mr__ctx_make, %function
	.p2align 4
/* void *mr__ctx_make(void *stack_top [x0], mr__ctx_entry entry [x1]) */
mr__ctx_make:
	.cfi_startproc
	BTI_C
	and	x0, x0, #-16
	/* The frame sits right below the top: after the switch pops it,
	 * sp = top, 16-byte aligned in ctx_start and in entry. */
	sub	x0, x0, #FRAME
	adr	x9, ctx_start
	stp	x1, xzr, [x0, #0]	/* x19 = entry, x20 */
	stp	xzr, xzr, [x0, #16]	/* x21, x22 */
	stp	xzr, xzr, [x0, #32]	/* x23, x24 */
	stp	xzr, xzr, [x0, #48]	/* x25, x26 */
	stp	xzr, xzr, [x0, #64]	/* x27, x28 */
	stp	xzr, x9, [x0, #80]	/* x29 = 0, x30 = ctx_start */
	stp	xzr, xzr, [x0, #96]	/* d8, d9 */
	stp	xzr, xzr, [x0, #112]	/* d10, d11 */
	stp	xzr, xzr, [x0, #128]	/* d12, d13 */
	stp	xzr, xzr, [x0, #144]	/* d14, d15 */
	/* FPCR = 0: round to nearest, no traps, no flush-to-zero, IEEE NaNs
	 * (what Linux gives a new process). */
	stp	xzr, xzr, [x0, #160]
	ret
	.cfi_endproc
	.size	mr__ctx_make, .-mr__ctx_make

#if defined(__ARM_FEATURE_BTI_DEFAULT) && __ARM_FEATURE_BTI_DEFAULT
/* GNU property note: this object is BTI-compatible (bit 0 of
 * GNU_PROPERTY_AARCH64_FEATURE_1_AND). */
	.pushsection .note.gnu.property, "a"
	.p2align 3
	.word	4		/* name size: "GNU\0" */
	.word	16		/* descriptor size */
	.word	5		/* NT_GNU_PROPERTY_TYPE_0 */
	.asciz	"GNU"
	.word	0xc0000000	/* GNU_PROPERTY_AARCH64_FEATURE_1_AND */
	.word	4		/* data size */
	.word	1		/* GNU_PROPERTY_AARCH64_FEATURE_1_BTI */
	.word	0		/* pad to 8 bytes */
	.popsection
#endif

#endif
	.section .note.GNU-stack, "", %progbits
