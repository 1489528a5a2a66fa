/*
 * traceobj.S - the tracer's BPF object (bpf/trace.bpf.c), embedded in moiraictl.
 *
 * The build passes the object's path as a string macro, e.g.
 * -DMOIRAI_TRACE_OBJ='"build/bpf/trace.bpf.o"' (relative to the directory the
 * assembler runs in), and .incbin copies the file's bytes verbatim between
 * moirai_trace_obj_start and moirai_trace_obj_end, in .rodata. trace.c hands
 * that range to bpf_object__open_mem(), so moiraictl needs no file beside it
 * and its programs always match the events it decodes. The start is 8-byte
 * aligned: libelf reads the ELF headers in place.
 *
 * The build must make this object depend on the BPF object: .incbin is not
 * seen by -MMD.
 */
#ifndef MOIRAI_TRACE_OBJ
#error "define MOIRAI_TRACE_OBJ as the quoted path of trace.bpf.o"
#endif

	.section .rodata, "a"
	.balign 8
	.globl moirai_trace_obj_start
	.hidden moirai_trace_obj_start
	.type moirai_trace_obj_start, @object
moirai_trace_obj_start:
	.incbin MOIRAI_TRACE_OBJ
	.size moirai_trace_obj_start, . - moirai_trace_obj_start
	.globl moirai_trace_obj_end
	.hidden moirai_trace_obj_end
moirai_trace_obj_end:
	.byte 0

	.section .note.GNU-stack, "", @progbits
