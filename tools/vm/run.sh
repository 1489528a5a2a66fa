#!/bin/bash
# tools/vm/run.sh - boot the VM lab's kernel on an initramfs under qemu and judge the run.
#
# Usage: tools/vm/run.sh [--timeout SECS] [--append "kernel args"] INITRAMFS [LOG]
#
# Boots $CACHE/kernel/vmlinuz (tools/vm/fetch.sh kernel; $CACHE/kernel-old with
# MOIRAI_VM_KERNEL=old; CACHE is
# ${MOIRAI_VM_CACHE:-$HOME/.cache/moirai-vm}) with qemu-system-x86_64 under TCG:
# q35, -cpu max, 4 vCPUs as 2 sockets of 2 cores, 2G in two NUMA nodes (socket 0 = cpus
# 0-1 = node 0, socket 1 = cpus 2-3 = node 1, 1G each), no NIC, -nographic -no-reboot,
# "console=ttyS0 panic=-1 quiet" plus --append (e.g. 'moirai.args="-t 300 sched"' for
# run-all, or loglevel=7 to see the boot).
# One socket per node: with the plain "-smp 4" the LLC spans both nodes and the kernel
# WARNs in topology_sane(). Single-threaded TCG by default: with multi-threaded TCG the
# guest oopsed ("Oops: int3" in sched_clock_cpu) in about 1 boot of 6 while patching a
# static key as other vCPUs ran the patched code; sched_ext flips static keys when a
# scheduler loads. MOIRAI_VM_TCG=multi brings multi-threaded TCG back.
# The serial console goes to stdout and to LOG (default: INITRAMFS with .log for
# .cpio.gz), carriage returns and terminal escapes removed. qemu-system-x86 is installed when missing.
#
#   --timeout SECS   wall-clock limit for the whole VM (default $MOIRAI_VM_TIMEOUT or 600);
#                    past it qemu is killed and the run fails
#   --append ARGS    more kernel command-line words
#   --shell          interactive: a busybox shell on the console instead of run-all, the
#                    terminal as qemu's stdin (Ctrl-A x quits), no timeout, no judging
#   MOIRAI_VM_QEMU_ARGS   more qemu arguments (split at spaces), e.g. "-s" for gdb
#   MOIRAI_VM_TCG         single (default) or multi: TCG's thread mode
#   MOIRAI_VM_TOPO        "CPUS NODES THREADS" (default "4 2 1"): e.g. "16 4 2" for 16
#                         vCPUs in 4 nodes of 2 SMT cores
#   MOIRAI_VM_KERNEL      new (default): the lab's kernel, the newest trixie-backports has;
#                         old: the oldest series it has (tools/vm/fetch.sh old-kernel,
#                         $CACHE/kernel-old: 6.19 when this was written)
#
# The run passes when the log has "MOIRAI-VM-EXIT 0" (printed by the image's /init after
# /moirai/run-all) and run-all's KTAP has no "not ok" line and as many results as its
# plan. Kernel panics, oopses, BUGs, WARNINGs, stalls and "sched_ext: BPF scheduler ...
# disabled" lines are repeated as "vm: kernel: ..." lines (panic, oops and BUG fail the
# run). The last line is the summary, e.g. "vm: 12 passed, 0 failed, 1 skipped"; tests
# the plan announced but that never reported count as failed, and so does a VM that
# never reached the plan (as one).
#
# Exit codes: 0 passed; 1 failed (or timed out); 3 qemu or the kernel cannot be had
# ("SKIP:" on stderr).
set -euo pipefail
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
# shellcheck source=tools/vm/lib.sh
. "$here/lib.sh"

usage() { sed -n '2,/^set -eu/{/^#/s/^# \{0,1\}//p}' "$0"; }

timeout=${MOIRAI_VM_TIMEOUT:-600}
append=""
shell=0
while [ $# -gt 0 ]; do
	case $1 in
	--timeout) [ $# -ge 2 ] || { usage >&2; exit 1; }; timeout=$2; shift 2 ;;
	--timeout=*) timeout=${1#*=}; shift ;;
	--append) [ $# -ge 2 ] || { usage >&2; exit 1; }; append="$append $2"; shift 2 ;;
	--append=*) append="$append ${1#*=}"; shift ;;
	--shell) shell=1; shift ;;
	-h | --help) usage; exit 0 ;;
	--) shift; break ;;
	-*) usage >&2; exit 1 ;;
	*) break ;;
	esac
done
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
	usage >&2
	exit 1
fi
initramfs=$1
log=${2:-${initramfs%.cpio.gz}.log}
[ -r "$initramfs" ] || vm_die "cannot read $initramfs"
case $timeout in '' | *[!0-9]*) vm_die "--timeout wants whole seconds, not '$timeout'" ;; esac

command -v qemu-system-x86_64 >/dev/null 2>&1 || vm_need qemu-system-x86
case ${MOIRAI_VM_KERNEL:-new} in
new) kdir=$VM_CACHE/kernel; "$here/fetch.sh" kernel ;;
old) kdir=$VM_CACHE/kernel-old; "$here/fetch.sh" old-kernel ;;
*) vm_die "MOIRAI_VM_KERNEL is new or old, not '$MOIRAI_VM_KERNEL'" ;;
esac
kernel=$kdir/vmlinuz

# shellcheck disable=SC2206,SC2054 # extra qemu words split at spaces; commas are qemu's
# MOIRAI_VM_TOPO="CPUS NODES THREADS" (e.g. "16 4 2"): CPUS vCPUs in NODES
# sockets = NUMA nodes, THREADS SMT threads per core; 2G split evenly.
read -r t_cpus t_nodes t_threads <<<"${MOIRAI_VM_TOPO:-4 2 1}"
t_per=$((t_cpus / t_nodes))
topo=(-smp "$t_cpus,sockets=$t_nodes,cores=$((t_per / t_threads)),threads=$t_threads" -m 2G)
for ((n = 0; n < t_nodes; n++)); do
	topo+=(-object "memory-backend-ram,id=m$n,size=$((2048 / t_nodes))M"
		-numa "node,nodeid=$n,cpus=$((n * t_per))-$((n * t_per + t_per - 1)),memdev=m$n")
done
qemu=(qemu-system-x86_64 -machine q35 -accel "tcg,thread=${MOIRAI_VM_TCG:-single}" -cpu max
	"${topo[@]}"
	-kernel "$kernel" -initrd "$initramfs"
	-append "console=ttyS0 panic=-1 quiet$append"
	-nic none -nographic -no-reboot ${MOIRAI_VM_QEMU_ARGS:-})

if [ "$shell" = 1 ]; then
	qemu+=(-append "console=ttyS0 panic=-1 quiet$append moirai.shell=1")
	exec "${qemu[@]}"
fi

mkdir -p "$(dirname -- "$log")"
vm_say "booting $(cat "$kdir/version") on $initramfs (timeout ${timeout} s, log $log)"
start=$(date +%s%N)
set +e
# Carriage returns and the firmware's terminal escapes (reset, clear screen) are dropped.
timeout -k 5 "$timeout" "${qemu[@]}" </dev/null 2>&1 |
	sed -u -e 's/\r$//' -e 's/\x1bc//g' -e 's/\x1b\[[0-9;?]*[a-zA-Z]//g' | tee "$log"
rc=${PIPESTATUS[0]}
set -e
elapsed=$((($(date +%s%N) - start) / 1000000))
secs=$((elapsed / 1000)).$((elapsed % 1000 / 100))

# ---------------------------------------------------------------- judging
problems=()
passed=$(grep -aEc '^ok [0-9]+( |$)' "$log" || true)
skipped=$(grep -aEc '^ok [0-9]+ .*# *SKIP' "$log" || true)
passed=$((passed - skipped))
failed=$(grep -aEc '^not ok [0-9]+( |$)' "$log" || true)
plan=$(grep -aEo '^1\.\.[0-9]+' "$log" | head -n 1 | cut -c4- || true)
exitline=$(grep -aEo 'MOIRAI-VM-EXIT -?[0-9]+' "$log" | tail -n 1 || true)

if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
	problems+=("timed out after ${timeout} s: qemu killed")
elif [ "$rc" -ne 0 ]; then
	problems+=("qemu exited with status $rc")
fi
if [ -z "$exitline" ]; then
	last=$(grep -aE '^# run [0-9]+ ' "$log" | tail -n 1 | cut -d' ' -f4- || true)
	problems+=("no MOIRAI-VM-EXIT line: /init did not finish${last:+ (last test started: $last)}")
elif [ "${exitline#MOIRAI-VM-EXIT }" != 0 ]; then
	problems+=("run-all exited with status ${exitline#MOIRAI-VM-EXIT }")
fi
[ "$failed" -gt 0 ] && problems+=("$failed test(s) not ok:$(grep -aE '^not ok [0-9]+' "$log" |
	sed 's/^not ok [0-9]* / /' | head -n 10 | tr '\n' ',' | sed 's/,$//')")
if [ -z "$plan" ]; then
	[ -n "$exitline" ] && problems+=("no KTAP plan (1..N) from run-all")
elif [ $((passed + failed + skipped)) -ne "$plan" ]; then
	problems+=("KTAP plan 1..$plan but $((passed + failed + skipped)) results")
fi

# What the kernel said that a test result may not show.
kpat='Kernel panic|Oops:|BUG:|WARNING: CPU|rcu: INFO: .* stall|soft lockup|hung_task|blocked for more than'
kpat="$kpat|sched_ext: BPF scheduler .* disabled|sched_ext: .*(error|stall|watchdog)"
grep -aE "$kpat" "$log" | grep -av '^# ' | head -n 8 | sed 's/^/vm: kernel: /' || true
if grep -aE 'Kernel panic|Oops:|BUG:' "$log" | grep -qav '^# '; then
	problems+=("the kernel panicked or oopsed (vm: kernel: lines above)")
fi
if n=$(grep -aEc 'sched_ext: BPF scheduler .* disabled' "$log") && [ "$n" -gt 0 ]; then
	vm_say "note: a sched_ext scheduler was disabled $n time(s)"
fi

# Tests that never reported (the VM died or hung under them) count as failed, and a VM
# that never reached run-all's plan as one failure.
if [ -n "$plan" ] && [ $((passed + failed + skipped)) -lt "$plan" ]; then
	failed=$((plan - passed - skipped))
elif [ -z "$plan" ] && [ ${#problems[@]} -gt 0 ] && [ "$failed" -eq 0 ]; then
	failed=1
fi
echo "vm: qemu ran ${secs} s; log in $log"
for p in "${problems[@]}"; do
	echo "vm: FAIL: $p"
done
echo "vm: $passed passed, $failed failed, $skipped skipped"
[ ${#problems[@]} -eq 0 ]
