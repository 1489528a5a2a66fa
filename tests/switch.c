/*
 * switch.c - the raw context switch (user/fiber/switch_*.S) on its own, with
 * no scheduler: ping-pong between the main context and a fresh one passing
 * values through `arg` both ways, a ring of contexts switching round-robin,
 * callee-saved integer and (aarch64) FP registers surviving a switch, the
 * floating-point control state (MXCSR and x87 control word, or FPCR) being
 * per context, the stack alignment a fresh context's entry sees, deep
 * recursion on a 256 KiB malloc'ed stack, and unwinders stopping cleanly at
 * the bottom of a fresh context.
 *
 * Contexts are never finished: a context that has done its work switches
 * away for good and its stack is freed by the main context. Register
 * patterns are planted by a small assembly probe (below) because C cannot
 * name the registers it wants a value to live in across a call.
 */
#include <execinfo.h>
#include <fenv.h>
#include <stdint.h>

#include "../user/fiber/switch.h"
#include "harness.h"

#define STACK_SIZE (64 * 1024)

static void *stack_new(size_t size)
{
	void *p = malloc(size);
	if (!p)
		abort();
	return p;
}

/* ------------------------------------------------------------------ */
/* Ping-pong: main sends i, the context answers i * 3 + 1. */

#define PING_PONG_ROUNDS 1000000UL

static struct {
	void *main_sp, *ctx_sp;
	uintptr_t first_arg;
	unsigned long seen; /* values the context received, in order */
	unsigned long bad;  /* values that were not the expected ones */
} pp;

__attribute__((noreturn)) static void pp_entry(void *arg)
{
	uintptr_t v = (uintptr_t)arg;

	pp.first_arg = v;
	for (;;) {
		if (v != pp.seen)
			pp.bad++;
		pp.seen++;
		v = (uintptr_t)mr__ctx_switch(&pp.ctx_sp, pp.main_sp, (void *)(v * 3 + 1));
	}
}

TEST(ping_pong_million)
{
	void *stack = stack_new(STACK_SIZE);
	unsigned long bad = 0;

	pp.ctx_sp = mr__ctx_make((char *)stack + STACK_SIZE, pp_entry);
	ASSERT_NONNULL(pp.ctx_sp);
	/* The context must not start until the first switch. */
	ASSERT_EQ(pp.seen, 0UL);
	for (uintptr_t i = 0; i < PING_PONG_ROUNDS; i++) {
		uintptr_t r = (uintptr_t)mr__ctx_switch(&pp.main_sp, pp.ctx_sp, (void *)i);
		if (r != i * 3 + 1)
			bad++;
	}
	EXPECT_EQ(pp.first_arg, (uintptr_t)0);
	EXPECT_EQ(pp.seen, PING_PONG_ROUNDS);
	EXPECT_EQ(pp.bad, 0UL);
	EXPECT_EQ(bad, 0UL);
	free(stack);
}

/* ------------------------------------------------------------------ */
/*
 * A ring of contexts: main starts context 0, each context hands a token
 * (the hop count) to the next, and after RING_HOPS hops the context whose
 * turn it is hands it back to main. The first switch into a context passes
 * its index (it is fresh), later ones pass the token.
 */

#define RING_N 5
#define RING_HOPS 100000UL

static struct {
	void *main_sp, *sp[RING_N];
	bool started[RING_N];
	unsigned long hops; /* hops made so far */
	unsigned long bad;  /* tokens or turns that were not the expected ones */
	unsigned visits[RING_N];
} ring;

/* Hand the token to the next context (or main, when done); return the
 * token this context gets when its turn comes again. */
static uintptr_t ring_pass(int self, uintptr_t token)
{
	int next = (self + 1) % RING_N;

	ring.hops++;
	if (ring.hops == RING_HOPS)
		return (uintptr_t)mr__ctx_switch(&ring.sp[self], ring.main_sp, (void *)token);
	if (!ring.started[next]) {
		ring.started[next] = true;
		/* A fresh context gets its index; it knows the token is hops. */
		return (uintptr_t)mr__ctx_switch(&ring.sp[self], ring.sp[next],
						 (void *)(uintptr_t)next);
	}
	return (uintptr_t)mr__ctx_switch(&ring.sp[self], ring.sp[next], (void *)(token + 1));
}

__attribute__((noreturn)) static void ring_entry(void *arg)
{
	int self = (int)(uintptr_t)arg;
	uintptr_t token = ring.hops; /* fresh: the hop count so far */

	for (;;) {
		ring.visits[self]++;
		if (token != ring.hops || ring.hops % RING_N != (unsigned long)self)
			ring.bad++;
		token = ring_pass(self, token);
	}
}

TEST(ring_round_robin)
{
	void *stacks[RING_N];

	memset(&ring, 0, sizeof(ring));
	for (int i = 0; i < RING_N; i++) {
		stacks[i] = stack_new(STACK_SIZE);
		ring.sp[i] = mr__ctx_make((char *)stacks[i] + STACK_SIZE, ring_entry);
	}
	ring.started[0] = true;
	uintptr_t last = (uintptr_t)mr__ctx_switch(&ring.main_sp, ring.sp[0], (void *)0);

	EXPECT_EQ(ring.hops, RING_HOPS);
	EXPECT_EQ(last, (uintptr_t)(RING_HOPS - 1));
	EXPECT_EQ(ring.bad, 0UL);
	for (int i = 0; i < RING_N; i++) {
		EXPECT_TRUE(ring.started[i]);
		EXPECT_EQ(ring.visits[i], (unsigned)(RING_HOPS / RING_N));
	}
	for (int i = 0; i < RING_N; i++)
		free(stacks[i]);
}

/* ------------------------------------------------------------------ */
/*
 * probe_switch(save, to, arg, out, seed) is mr__ctx_switch() with a twist:
 * before the switch it loads seed + i into the i-th callee-saved register,
 * after it stores those registers into out[], and it restores the caller's
 * own values before returning. Two contexts that ping-pong through it with
 * different seeds each overwrite the other's patterns, so a register the
 * switch fails to save or restore shows up in out[].
 *
 *	x86-64:  out[0..5]  = rbx, rbp, r12, r13, r14, r15
 *	aarch64: out[0..10] = x19-x29, out[11..18] = d8-d15 (raw bits)
 */
void *probe_switch(void **save, void *to, void *arg, uint64_t *out, uint64_t seed);

#if defined(__x86_64__)
#define PROBE_GPRS 6
#define PROBE_FPRS 0
__asm__(".text\n"
	".p2align 4\n"
	".type probe_switch, @function\n"
	"probe_switch:\n"
	/* entry: rsp % 16 == 8; 7 pushes make it 0 for the call */
	"	pushq %rbp\n"
	"	pushq %rbx\n"
	"	pushq %r12\n"
	"	pushq %r13\n"
	"	pushq %r14\n"
	"	pushq %r15\n"
	"	pushq %rcx\n" /* out */
	"	leaq 0(%r8), %rbx\n"
	"	leaq 1(%r8), %rbp\n"
	"	leaq 2(%r8), %r12\n"
	"	leaq 3(%r8), %r13\n"
	"	leaq 4(%r8), %r14\n"
	"	leaq 5(%r8), %r15\n"
	"	call mr__ctx_switch\n"
	"	popq %rcx\n"
	"	movq %rbx, 0(%rcx)\n"
	"	movq %rbp, 8(%rcx)\n"
	"	movq %r12, 16(%rcx)\n"
	"	movq %r13, 24(%rcx)\n"
	"	movq %r14, 32(%rcx)\n"
	"	movq %r15, 40(%rcx)\n"
	"	popq %r15\n"
	"	popq %r14\n"
	"	popq %r13\n"
	"	popq %r12\n"
	"	popq %rbx\n"
	"	popq %rbp\n"
	"	ret\n"
	".size probe_switch, .-probe_switch\n");
#elif defined(__aarch64__)
#define PROBE_GPRS 11
#define PROBE_FPRS 8
__asm__(".text\n"
	".p2align 4\n"
	".type probe_switch, %function\n"
	"probe_switch:\n"
	"	stp x29, x30, [sp, #-176]!\n"
	"	stp x19, x20, [sp, #16]\n"
	"	stp x21, x22, [sp, #32]\n"
	"	stp x23, x24, [sp, #48]\n"
	"	stp x25, x26, [sp, #64]\n"
	"	stp x27, x28, [sp, #80]\n"
	"	stp d8, d9, [sp, #96]\n"
	"	stp d10, d11, [sp, #112]\n"
	"	stp d12, d13, [sp, #128]\n"
	"	stp d14, d15, [sp, #144]\n"
	"	str x3, [sp, #160]\n" /* out */
	"	add x19, x4, #0\n"
	"	add x20, x4, #1\n"
	"	add x21, x4, #2\n"
	"	add x22, x4, #3\n"
	"	add x23, x4, #4\n"
	"	add x24, x4, #5\n"
	"	add x25, x4, #6\n"
	"	add x26, x4, #7\n"
	"	add x27, x4, #8\n"
	"	add x28, x4, #9\n"
	"	add x29, x4, #10\n"
	"	add x9, x4, #11\n"
	"	fmov d8, x9\n"
	"	add x9, x4, #12\n"
	"	fmov d9, x9\n"
	"	add x9, x4, #13\n"
	"	fmov d10, x9\n"
	"	add x9, x4, #14\n"
	"	fmov d11, x9\n"
	"	add x9, x4, #15\n"
	"	fmov d12, x9\n"
	"	add x9, x4, #16\n"
	"	fmov d13, x9\n"
	"	add x9, x4, #17\n"
	"	fmov d14, x9\n"
	"	add x9, x4, #18\n"
	"	fmov d15, x9\n"
	"	bl mr__ctx_switch\n"
	"	ldr x3, [sp, #160]\n"
	"	stp x19, x20, [x3, #0]\n"
	"	stp x21, x22, [x3, #16]\n"
	"	stp x23, x24, [x3, #32]\n"
	"	stp x25, x26, [x3, #48]\n"
	"	stp x27, x28, [x3, #64]\n"
	"	str x29, [x3, #80]\n"
	"	stp d8, d9, [x3, #88]\n"
	"	stp d10, d11, [x3, #104]\n"
	"	stp d12, d13, [x3, #120]\n"
	"	stp d14, d15, [x3, #136]\n"
	"	ldp x19, x20, [sp, #16]\n"
	"	ldp x21, x22, [sp, #32]\n"
	"	ldp x23, x24, [sp, #48]\n"
	"	ldp x25, x26, [sp, #64]\n"
	"	ldp x27, x28, [sp, #80]\n"
	"	ldp d8, d9, [sp, #96]\n"
	"	ldp d10, d11, [sp, #112]\n"
	"	ldp d12, d13, [sp, #128]\n"
	"	ldp d14, d15, [sp, #144]\n"
	"	ldp x29, x30, [sp], #176\n"
	"	ret\n"
	".size probe_switch, .-probe_switch\n");
#endif

#ifdef PROBE_GPRS
#define PROBE_ROUNDS 10000UL

static struct {
	void *main_sp, *ctx_sp;
	unsigned long rounds;
	unsigned long bad_gpr[2], bad_fpr[2]; /* [0] main, [1] context */
} probe;

/* Count the registers in out[] that do not hold seed + i. */
static void probe_check(const uint64_t *out, uint64_t seed, int who)
{
	for (int i = 0; i < PROBE_GPRS; i++)
		if (out[i] != seed + (uint64_t)i)
			probe.bad_gpr[who]++;
	for (int i = PROBE_GPRS; i < PROBE_GPRS + PROBE_FPRS; i++)
		if (out[i] != seed + (uint64_t)i)
			probe.bad_fpr[who]++;
}

static uint64_t probe_seed(int who, unsigned long round)
{
	return (who ? 0xc0ffee0000000000ULL : 0x5eed000000000000ULL) + ((uint64_t)round << 8);
}

__attribute__((noreturn)) static void probe_entry(void *arg)
{
	uint64_t out[32];

	for (unsigned long r = 0;; r++) {
		uint64_t seed = probe_seed(1, r);
		probe_switch(&probe.ctx_sp, probe.main_sp, NULL, out, seed);
		probe_check(out, seed, 1);
	}
}

static void probe_run(void)
{
	void *stack = stack_new(STACK_SIZE);
	uint64_t out[32];

	memset(&probe, 0, sizeof(probe));
	probe.ctx_sp = mr__ctx_make((char *)stack + STACK_SIZE, probe_entry);
	for (unsigned long r = 0; r < PROBE_ROUNDS; r++) {
		uint64_t seed = probe_seed(0, r);
		probe_switch(&probe.main_sp, probe.ctx_sp, NULL, out, seed);
		probe_check(out, seed, 0);
		probe.rounds++;
	}
	free(stack);
}
#endif

TEST(callee_saved_gprs_survive)
{
#ifdef PROBE_GPRS
	probe_run();
	EXPECT_EQ(probe.rounds, PROBE_ROUNDS);
	EXPECT_EQ(probe.bad_gpr[0], 0UL);
	EXPECT_EQ(probe.bad_gpr[1], 0UL);
#else
	SKIP("no register probe for this architecture");
#endif
}

TEST(callee_saved_fp_regs_survive)
{
#if defined(PROBE_GPRS) && PROBE_FPRS > 0
	probe_run();
	EXPECT_EQ(probe.rounds, PROBE_ROUNDS);
	EXPECT_EQ(probe.bad_fpr[0], 0UL);
	EXPECT_EQ(probe.bad_fpr[1], 0UL);
#else
	SKIP("the calling convention has no callee-saved FP registers");
#endif
}

/* ------------------------------------------------------------------ */
/*
 * Floating-point control state is per context. Raw reads of the control
 * registers check the fresh context's defaults; fegetround() and a division
 * whose result depends on the rounding mode check what C code sees.
 */

struct fpctl {
	uint64_t a, b; /* x86-64: MXCSR without the status flags, x87 CW; aarch64: FPCR, 0 */
};

static struct fpctl fpctl_read(void)
{
	struct fpctl c = { 0, 0 };
#if defined(__x86_64__)
	uint32_t mxcsr;
	uint16_t cw;
	__asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
	__asm__ volatile("fnstcw %0" : "=m"(cw));
	c.a = mxcsr & ~0x3fu; /* bits 0-5 are sticky exception flags */
	c.b = cw;
#elif defined(__aarch64__)
	__asm__ volatile("mrs %0, fpcr" : "=r"(c.a));
#endif
	return c;
}

static double third(void)
{
	volatile double one = 1.0, three = 3.0;
	return one / three;
}

static struct {
	void *main_sp, *ctx_sp;
	struct fpctl fresh;
	int fresh_round;
	unsigned long rounds, bad;
	double down;
} fp;

#define FP_ROUNDS 1000UL

__attribute__((noreturn)) static void fp_entry(void *arg)
{
	fp.fresh = fpctl_read();
	fp.fresh_round = fegetround();
	if (fesetround(FE_DOWNWARD) != 0)
		fp.bad++;
	fp.down = third();
	for (;;) {
		mr__ctx_switch(&fp.ctx_sp, fp.main_sp, NULL);
		if (fegetround() != FE_DOWNWARD || third() != fp.down)
			fp.bad++;
	}
}

TEST(fp_control_per_context)
{
	void *stack = stack_new(STACK_SIZE);
	unsigned long bad = 0;
	double up;

	memset(&fp, 0, sizeof(fp));
	ASSERT_EQ(fesetround(FE_UPWARD), 0);
	up = third();
	fp.ctx_sp = mr__ctx_make((char *)stack + STACK_SIZE, fp_entry);
	for (unsigned long r = 0; r < FP_ROUNDS; r++) {
		mr__ctx_switch(&fp.main_sp, fp.ctx_sp, NULL);
		if (fegetround() != FE_UPWARD || third() != up)
			bad++;
	}
	/* The two modes really round 1/3 differently. */
	EXPECT_TRUE(up > fp.down);
	EXPECT_EQ(bad, 0UL);
	EXPECT_EQ(fp.bad, 0UL);
	/* The fresh context started with the defaults, not main's FE_UPWARD. */
	EXPECT_EQ(fp.fresh_round, FE_TONEAREST);
#if defined(__x86_64__)
	EXPECT_EQ(fp.fresh.a, (uint64_t)0x1f80);
	EXPECT_EQ(fp.fresh.b, (uint64_t)0x037f);
#elif defined(__aarch64__)
	EXPECT_EQ(fp.fresh.a, (uint64_t)0);
#endif
	free(stack);
}

/* ------------------------------------------------------------------ */
/*
 * What a fresh context's entry sees: a 16-byte aligned stack (a misaligned
 * one breaks aligned SSE spills, e.g. inside printf of a double), even when
 * the stack top given to mr__ctx_make is not aligned, and nothing written at
 * or above that top.
 */

static struct {
	void *main_sp, *ctx_sp;
	uintptr_t local_addr, frame_addr;
	char text[64];
} al;

__attribute__((noinline)) static void al_format(double d)
{
	_Alignas(16) char local[16];

	al.local_addr = (uintptr_t)local;
	snprintf(local, sizeof(local), "%.3f", d);
	snprintf(al.text, sizeof(al.text), "%s|%8.4f|%g", local, d * 2, d / 4);
}

__attribute__((noreturn)) static void al_entry(void *arg)
{
	_Alignas(16) volatile char here[16];

	here[0] = 1;
	al.frame_addr = (uintptr_t)here;
	al_format(*(double *)arg);
	mr__ctx_switch(&al.ctx_sp, al.main_sp, NULL);
	abort(); /* never resumed */
}

TEST(fresh_stack_aligned)
{
	enum { CANARY = 64 };
	double d = 3.14159;

	for (int skew = 0; skew < 16; skew++) {
		char *stack = stack_new(STACK_SIZE + CANARY);
		char *top = stack + STACK_SIZE - skew;

		memset(top, 0xa5, CANARY);
		memset(&al, 0, sizeof(al));
		al.ctx_sp = mr__ctx_make(top, al_entry);
		ASSERT_TRUE((char *)al.ctx_sp < top);
		ASSERT_TRUE((char *)al.ctx_sp > stack);
		mr__ctx_switch(&al.main_sp, al.ctx_sp, &d);
		EXPECT_EQ(al.local_addr % 16, (uintptr_t)0);
		EXPECT_EQ(al.frame_addr % 16, (uintptr_t)0);
		EXPECT_TRUE(al.frame_addr < (uintptr_t)top);
		if (strcmp(al.text, "3.142|  6.2832|0.785397") != 0) {
			TH_LOG("skew %d: formatted \"%s\"", skew, al.text);
			mr_test_failed = 1;
		}
		for (int i = 0; i < CANARY; i++)
			if ((unsigned char)top[i] != 0xa5) {
				TH_LOG("skew %d: byte %d above the stack top was overwritten", skew,
				       i);
				mr_test_failed = 1;
				break;
			}
		free(stack);
	}
}

/* ------------------------------------------------------------------ */
/*
 * Deep recursion on a 256 KiB malloc'ed stack: recurse until about 192 KiB
 * are in use (the depth this takes depends on the compiler's frame sizes),
 * each frame checking that its own locals survived the frames below it.
 */

#define DEEP_STACK (256 * 1024)
#define DEEP_USE (192 * 1024)

static struct {
	void *main_sp, *ctx_sp;
	uintptr_t top, lowest;
	unsigned long depth, corrupt;
	uint64_t sum;
	char text[64];
} deep;

__attribute__((noinline)) static uint64_t deep_recurse(unsigned long depth)
{
	volatile unsigned char pad[128];
	uintptr_t fa = (uintptr_t)__builtin_frame_address(0);
	uint64_t sum;

	for (size_t i = 0; i < sizeof(pad); i++)
		pad[i] = (unsigned char)(depth + i);
	if (fa < deep.lowest)
		deep.lowest = fa;
	if (deep.top - fa >= DEEP_USE || depth >= 1000000) {
		deep.depth = depth;
		snprintf(deep.text, sizeof(deep.text), "depth %lu %.1f", depth, 0.5);
		sum = depth;
	} else {
		sum = deep_recurse(depth + 1) + depth;
	}
	for (size_t i = 0; i < sizeof(pad); i++)
		if (pad[i] != (unsigned char)(depth + i)) {
			deep.corrupt++;
			break;
		}
	return sum;
}

__attribute__((noreturn)) static void deep_entry(void *arg)
{
	deep.sum = deep_recurse(0);
	mr__ctx_switch(&deep.ctx_sp, deep.main_sp, NULL);
	abort(); /* never resumed */
}

TEST(deep_recursion_256k_stack)
{
	char *stack = stack_new(DEEP_STACK);
	char want[64];

	memset(&deep, 0, sizeof(deep));
	deep.top = (uintptr_t)stack + DEEP_STACK;
	deep.lowest = deep.top;
	deep.ctx_sp = mr__ctx_make(stack + DEEP_STACK, deep_entry);
	mr__ctx_switch(&deep.main_sp, deep.ctx_sp, NULL);

	TH_LOG("depth %lu, %lu KiB used", deep.depth,
	       (unsigned long)(deep.top - deep.lowest) / 1024);
	EXPECT_GT(deep.depth, 100UL);
	EXPECT_LT(deep.depth, 1000000UL);
	EXPECT_TRUE(deep.lowest > (uintptr_t)stack);
	EXPECT_GE(deep.top - deep.lowest, (uintptr_t)DEEP_USE);
	EXPECT_EQ(deep.sum, (uint64_t)deep.depth * (deep.depth + 1) / 2);
	EXPECT_EQ(deep.corrupt, 0UL);
	snprintf(want, sizeof(want), "depth %lu 0.5", deep.depth);
	EXPECT_EQ(strcmp(deep.text, want), 0);
	free(stack);
}

/* ------------------------------------------------------------------ */
/*
 * The call chain of a fresh context ends in it: entry's frame record links
 * to a zero frame pointer (and, on aarch64, a zero return address), so
 * frame-pointer walkers stop there, and a DWARF unwinder (glibc's
 * backtrace()) stops at entry or the start stub that called it instead of
 * walking into garbage.
 */

static struct {
	void *main_sp, *ctx_sp;
	int frames;
	void *parent_fp, *ret;
} bt;

__attribute__((noreturn)) static void bt_entry(void *arg)
{
	void **frame = __builtin_frame_address(0);
	void *pcs[64];

	/* A frame record is {caller's frame pointer, return address} on both. */
	bt.parent_fp = frame[0];
	bt.ret = frame[1];
	bt.frames = backtrace(pcs, 64);
	mr__ctx_switch(&bt.ctx_sp, bt.main_sp, NULL);
	abort(); /* never resumed */
}

TEST(backtrace_stops_in_fresh_context)
{
	void *stack = stack_new(STACK_SIZE);

	bt.ctx_sp = mr__ctx_make((char *)stack + STACK_SIZE, bt_entry);
	mr__ctx_switch(&bt.main_sp, bt.ctx_sp, NULL);
	TH_LOG("%d frames", bt.frames);
	EXPECT_GE(bt.frames, 1);
	EXPECT_LE(bt.frames, 4); /* + a sanitizer's backtrace interceptor */
	EXPECT_TRUE(bt.parent_fp == NULL);
#if defined(__aarch64__)
	EXPECT_TRUE(bt.ret == NULL);
#endif
	free(stack);
}

TEST_HARNESS_MAIN
