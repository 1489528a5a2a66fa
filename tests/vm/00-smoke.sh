#!/bin/sh
# tests/vm/00-smoke.sh - is the VM lab what the other VM tests assume?
#
# Inside the VM (run by run-all): sched_ext is there and idle (/sys/kernel/sched_ext/state
# reads "disabled"), two NUMA nodes with cpus 0-1 and 2-3, 4 CPUs online, bpffs/tracefs
# mounted, kernel BTF present, bpftool runs and can talk to bpf(), hackbench and stress-ng
# run briefly. Prints one line per check; exits 0 when all hold, 1 otherwise, 4 (with a
# SKIP: line) outside the VM.
[ "${MOIRAI_VM:-0}" = 1 ] || { echo "SKIP: not inside the VM lab (MOIRAI_VM unset)"; exit 4; }

fail=0
check() {
	what=$1
	shift
	t0=$(date +%s)
	if out=$("$@" 2>&1); then
		echo "pass: $what ($(($(date +%s) - t0)) s)"
	else
		echo "FAIL: $what ($(($(date +%s) - t0)) s)"
		[ -n "$out" ] && echo "$out" | tail -n 5 | sed 's/^/    /'
		fail=1
	fi
}

# shellcheck disable=SC2317 # called through check
is() { # is FILE VALUE: FILE's content is VALUE (it says what it found if not)
	v=$(cat "$1" 2>&1)
	[ "$v" = "$2" ] || { echo "$1: '$v', want '$2'"; return 1; }
}

check "uname -r: $(uname -r)" true
check "sched_ext state is disabled" is /sys/kernel/sched_ext/state disabled
check "node0 cpus 0-1" is /sys/devices/system/node/node0/cpulist 0-1
check "node1 cpus 2-3" is /sys/devices/system/node/node1/cpulist 2-3
check "exactly two nodes" test "$(find /sys/devices/system/node -maxdepth 1 -name 'node[0-9]*' | wc -l)" -eq 2
check "nproc is 4" test "$(nproc)" -eq 4
check "bpffs on /sys/fs/bpf" grep -q ' /sys/fs/bpf bpf ' /proc/mounts
check "tracefs on /sys/kernel/tracing" grep -q ' /sys/kernel/tracing tracefs ' /proc/mounts
check "kernel BTF" test -s /sys/kernel/btf/vmlinux
check "bpftool version" bpftool version
check "bpftool prog list (bpf() works)" bpftool prog list
check "bpftool btf list" bpftool btf list
# A whole-BTF dump takes seconds under TCG; the name in its string table is enough here.
check "kernel BTF names sched_ext_ops" grep -q sched_ext_ops /sys/kernel/btf/vmlinux
check "hackbench -g 2 -l 100" hackbench -g 2 -l 100
check "stress-ng --cpu 1 --timeout 1s" stress-ng --cpu 1 --timeout 1s
exit $fail
