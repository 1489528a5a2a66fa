/*
 * bpfobj.S - the scheduler's BPF object file, embedded in moiraictl.
 *
 * The build passes the object's path as a string macro, e.g.
 * -DMOIRAI_BPF_OBJ='"build/bpf/moirai.bpf.o"' (relative to the directory the
 * assembler runs in), and .incbin copies the file's bytes verbatim between
 * moirai_bpf_obj_start and moirai_bpf_obj_end, in .rodata. load.c hands
 * that range to bpf_object__open_mem(), so moiraictl needs no file beside it
 * and cannot load a scheduler from another build. The start is 8-byte
 * aligned: libelf reads the ELF headers in place.
 *
 * The build must make this object depend on the BPF object: .incbin is not
 * seen by -MMD.
 */
#ifndef MOIRAI_BPF_OBJ
#error "define MOIRAI_BPF_OBJ as the quoted path of moirai.bpf.o"
#endif

	.section .rodata, "a"
	.balign 8
	.globl moirai_bpf_obj_start
	.hidden moirai_bpf_obj_start
	.type moirai_bpf_obj_start, @object
moirai_bpf_obj_start:
	.incbin MOIRAI_BPF_OBJ
	.size moirai_bpf_obj_start, . - moirai_bpf_obj_start
	.globl moirai_bpf_obj_end
	.hidden moirai_bpf_obj_end
moirai_bpf_obj_end:
	.byte 0

	.section .note.GNU-stack, "", @progbits
