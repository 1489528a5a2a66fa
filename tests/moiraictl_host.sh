#!/bin/sh
# tests/moiraictl_host.sh - what can be checked of moiraictl on a machine
# whose kernel cannot run a sched_ext scheduler (the host, developer
# machines, CI): argument handling, every refusal with its message and exit
# status, status/dump/top without pinned maps and with hand-made ones, the
# pid file and unload's signalling, and the load error path up to libbpf.
#
#   tests/moiraictl_host.sh path/to/moiraictl
#
# Prints KTAP (ok N name / not ok N name / ok N name # SKIP why; the
# results come at the end, after the plan) and exits non-zero if a test
# failed. As root it re-runs itself in a private mount
# namespace with a fresh bpffs on /sys/fs/bpf and a tmpfs on /run, so it never
# touches this machine's real pins or pid file; the scheduler states it needs
# (enabled by moirai, by another scheduler...) come from a tmpfs laid over
# /sys/kernel in that namespace. Tests that need root, a second user
# (setpriv), unshare or bpftool (for hand-made maps: $BPFTOOL, PATH, or the VM
# lab's cache) are skipped when they are missing. The test that lets load go
# as far as libbpf runs only on a kernel without sched_ext, where the load
# cannot succeed.

# The hex byte lists built by le32/le64/zeros/bytes are meant to split into words.
# shellcheck disable=SC2046,SC2086
set -u

if [ $# -ne 1 ] || [ ! -x "$1" ]; then
	echo "usage: $0 path/to/moiraictl" >&2
	exit 2
fi
case "$1" in
/*) M=$1 ;;
*) M=$(pwd)/$1 ;;
esac

if [ "$(id -u)" -eq 0 ] && [ -z "${MOIRAICTL_TEST_NS:-}" ] && command -v unshare >/dev/null &&
	unshare -m --propagation private true 2>/dev/null; then
	MOIRAICTL_TEST_NS=1 exec unshare -m --propagation private -- sh "$0" "$M"
fi

ROOT=0
[ "$(id -u)" -eq 0 ] && ROOT=1
NS=0
if [ "${MOIRAICTL_TEST_NS:-}" = 1 ]; then
	NS=1
	mount -t bpf bpf /sys/fs/bpf || NS=0
	mount -t tmpfs tmpfs /run || NS=0
fi
REAL_SCX=0
[ -d /sys/kernel/sched_ext ] && REAL_SCX=1

T=$(mktemp -d)
chmod 755 "$T"
trap 'rm -rf "$T"' EXIT
OUT=$T/out
ERR=$T/err

BPFTOOL=${BPFTOOL:-}
if [ -z "$BPFTOOL" ]; then
	for b in "$(command -v bpftool 2>/dev/null)" \
		"${MOIRAI_VM_CACHE:-$HOME/.cache/moirai-vm}/bpf/root/usr/sbin/bpftool"; do
		if [ -n "$b" ] && [ -x "$b" ] && "$b" version >/dev/null 2>&1; then
			BPFTOOL=$b
			break
		fi
	done
fi

# Results go to $RES and are printed after the plan line, once N is known.
RES=$T/results
: >"$RES"
N=0
FAILED=0
ok() {
	N=$((N + 1))
	echo "ok $N $1" >>"$RES"
}
notok() {
	N=$((N + 1))
	FAILED=$((FAILED + 1))
	{
		echo "not ok $N $1"
		shift
		for l in "$@"; do echo "# $l"; done
		if [ -s "$OUT" ]; then sed 's/^/# stdout: /' "$OUT" | head -20; fi
		if [ -s "$ERR" ]; then sed 's/^/# stderr: /' "$ERR" | head -20; fi
	} >>"$RES"
}
skip() {
	N=$((N + 1))
	echo "ok $N $1 # SKIP $2" >>"$RES"
}

# run CMD...: runs it with stdout in $OUT, stderr in $ERR, status in $RC.
run() {
	"$@" >"$OUT" 2>"$ERR" </dev/null
	RC=$?
}

# expect NAME STATUS FILE REGEX: the last run exited STATUS and FILE matches REGEX.
expect() {
	if [ "$RC" -ne "$2" ]; then
		notok "$1" "exit status $RC, expected $2"
	elif [ -n "$4" ] && ! grep -Eq -- "$4" "$3"; then
		notok "$1" "no line matches /$4/"
	else
		ok "$1"
	fi
}

json_ok() {
	command -v python3 >/dev/null || return 0
	python3 -m json.tool "$1" >/dev/null 2>&1
}

# --- arguments -----------------------------------------------------------
run "$M" --help
expect "help" 0 "$OUT" "^usage: moiraictl"
run "$M" -h
expect "help_short" 0 "$OUT" "^usage: moiraictl"
run "$M"
expect "usage_no_command" 2 "$ERR" "^usage: moiraictl"
run "$M" frobnicate
expect "usage_unknown_command" 2 "$ERR" "unknown command"
run "$M" load --slice-us 50
expect "usage_slice_too_small" 2 "$ERR" "100\.\.100000"
run "$M" load --slice-us 100001
expect "usage_slice_too_big" 2 "$ERR" "100\.\.100000"
run "$M" load --slice-us 12x
expect "usage_slice_not_a_number" 2 "$ERR" "100\.\.100000"
run "$M" load --group no-such-group-moirai
expect "usage_group_unknown" 2 "$ERR" "no group named 'no-such-group-moirai'"
run "$M" load --group
expect "usage_group_missing" 2 "$ERR" "--group needs"
run "$M" load --bogus
expect "usage_load_unknown_option" 2 "$ERR" "unknown option"
run "$M" run --partial --
expect "usage_run_no_command" 2 "$ERR" "no command to run"
run "$M" top --iterations 0
expect "usage_top_iterations" 2 "$ERR" "positive number"
run "$M" status --bogus
expect "usage_status_option" 2 "$ERR" "unknown option"
run "$M" unload now
expect "usage_unload_args" 2 "$ERR" "no arguments"
run "$M" --partial load
expect "usage_partial_before_command" 2 "$ERR" "unknown option"

# --- privileges ----------------------------------------------------------
NOBODY=""
if [ $ROOT -eq 1 ]; then
	if command -v setpriv >/dev/null; then
		cp "$M" "$T/moiraictl" && chmod 755 "$T/moiraictl"
		NOBODY="setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all"
	fi
fi
if [ $ROOT -eq 0 ]; then
	run "$M" load
	expect "load_refused_unprivileged" 1 "$ERR" "needs root"
	run "$M" run -- true
	expect "run_refused_unprivileged" 1 "$ERR" "needs root"
elif [ -n "$NOBODY" ]; then
	run $NOBODY "$T/moiraictl" load
	expect "load_refused_unprivileged" 1 "$ERR" "needs root"
	run $NOBODY "$T/moiraictl" run -- true
	expect "run_refused_unprivileged" 1 "$ERR" "needs root"
else
	skip "load_refused_unprivileged" "root without setpriv"
	skip "run_refused_unprivileged" "root without setpriv"
fi

# --- no sched_ext in this kernel -----------------------------------------
if [ $ROOT -eq 1 ] && [ $REAL_SCX -eq 0 ]; then
	run "$M" load
	expect "load_refused_no_sched_ext" 1 "$ERR" "this kernel has no sched_ext \(CONFIG_SCHED_CLASS_EXT\)"
	run "$M" run -- touch "$T/ran"
	if [ -e "$T/ran" ]; then
		notok "run_refused_no_sched_ext" "the command ran"
	else
		expect "run_refused_no_sched_ext" 1 "$ERR" "this kernel has no sched_ext"
	fi
else
	why="not root"
	[ $REAL_SCX -eq 1 ] && why="this kernel has sched_ext"
	skip "load_refused_no_sched_ext" "$why"
	skip "run_refused_no_sched_ext" "$why"
fi

# --- without pinned maps -------------------------------------------------
if [ $NS -eq 1 ] || [ ! -e /sys/fs/bpf/moirai/workers ]; then
	run "$M" status
	expect "status_no_maps" 0 "$OUT" "no Moirai maps pinned \(no scheduler loaded since boot\)"
	run "$M" status --json
	if json_ok "$OUT"; then
		expect "status_json_no_maps" 0 "$OUT" '"maps_pinned": false'
	else
		notok "status_json_no_maps" "invalid JSON"
	fi
	run "$M" dump --json
	if json_ok "$OUT"; then
		expect "dump_json_no_maps" 0 "$OUT" '"workers": \[\]'
	else
		notok "dump_json_no_maps" "invalid JSON"
	fi
	run "$M" top --iterations 1
	expect "top_no_maps" 0 "$OUT" "no Moirai maps pinned"
else
	for t in status_no_maps status_json_no_maps dump_json_no_maps top_no_maps; do
		skip "$t" "this machine has Moirai maps pinned (run as root for a private namespace)"
	done
fi
if [ $NS -eq 1 ] || { [ $REAL_SCX -eq 0 ] && [ ! -e /run/moiraictl.pid ]; }; then
	run "$M" unload
	expect "unload_nothing_loaded" 0 "$OUT" "^moirai: not loaded$"
else
	skip "unload_nothing_loaded" "a scheduler may be loaded here"
fi

# --- hand-made pinned maps -----------------------------------------------
le32() { printf '%02x %02x %02x %02x ' $(($1 & 255)) $((($1 >> 8) & 255)) \
	$((($1 >> 16) & 255)) $((($1 >> 24) & 255)); }
le64() { le32 $(($1 & 0xffffffff)); le32 $((($1 >> 32) & 0xffffffff)); }
zeros() { i=0; while [ $i -lt "$1" ]; do printf '00 '; i=$((i + 1)); done; }
bytes() { printf '%s' "$1" | od -An -tx1 | tr '\n' ' '; }

P=/sys/fs/bpf/moirai
if [ $NS -eq 1 ] && [ -n "$BPFTOOL" ]; then
	mkdir -p $P
	B=$BPFTOOL
	$B map create $P/workers type hash key 4 value 40 entries 4096 name workers &&
		$B map create $P/worker_load type array key 4 value 64 entries 1024 \
			name worker_load flags 1024 &&
		$B map create $P/cpu_stats type percpu_array key 4 value 64 entries 1 \
			name cpu_stats &&
		$B map create $P/node_stats type percpu_array key 4 value 72 entries 2 \
			name node_stats &&
		$B map create $P/latency type percpu_array key 4 value 344 entries 1 name latency &&
		$B map create $P/exit_info type array key 4 value 1168 entries 1 name exit_info ||
		echo "# bpftool map create failed"
	sleep 60 &
	LIVE=$!
	# A live worker (the sleep: pid = tid) in slot 5, and a dead one never published.
	$B map update pinned $P/workers key hex $(le32 $LIVE) value hex $(le32 $LIVE) $(le32 7) \
		$(le32 2) $(le32 0) $(le32 5) $(le32 $LIVE) $(le64 0) $(le64 0)
	$B map update pinned $P/workers key hex $(le32 4000001) value hex $(le32 4000000) \
		$(le32 1) $(le32 0) $(le32 1) $(le32 6) $(le32 4000001) $(le64 0) $(le64 0)
	$B map update pinned $P/worker_load key hex $(le32 5) value hex $(le32 $LIVE) $(le32 3) \
		$(le32 9) $(le32 $LIVE) $(le32 7) $(le32 2) $(le64 42) $(le32 1) $(zeros 28)
	$B map update pinned $P/cpu_stats key hex $(le32 0) value hex $(le64 11) $(le64 2) \
		$(le64 3) $(le64 4) $(le64 5) $(le64 6) $(le64 1) $(le64 8)
	# The statistics maps are per-CPU, as the scheduler makes them: bpftool
	# writes the value given into every possible CPU's copy, so moiraictl
	# must show it as every CPU's cpu_stats, and NCPU times over in
	# node_stats and latency (latency's max_ns: the largest, once).
	NCPU=$(($(sed 's/.*-//' /sys/devices/system/cpu/possible) + 1))
	$B map update pinned $P/node_stats key hex $(le32 0) value hex $(le64 100) $(le64 50) \
		$(le64 10) $(le64 3000) $(le64 1000) $(le64 7) $(le64 2) $(le64 1) $(le64 2)
	# 90 wake-ups in [1024, 2048) ns, 10 in [16384, 32768).
	$B map update pinned $P/latency key hex $(le32 0) value hex $(le64 100) $(le64 123456) \
		$(le64 20000) $(zeros 80) $(le64 90) $(zeros 24) $(le64 10) $(zeros 200)
	msg=$(bytes 'task "a\b" failed to run')
	nmsg=$(printf '%s' 'task "a\b" failed to run' | wc -c)
	$B map update pinned $P/exit_info key hex $(le32 0) value hex $(le64 1026) $(le64 0) \
		$(bytes "runnable task stall") $(zeros 109) $msg $(zeros $((1024 - nmsg)))

	run "$M" status
	if [ $RC -ne 0 ]; then
		notok "status_workers" "exit status $RC"
	elif ! grep -Eq "^runtime pid $LIVE rt 7: 1 worker \(sleep\)" "$OUT" ||
		! grep -Eq "^ +$LIVE +2 +0 +parked +9 +[0-9]+ +preempted$" "$OUT" ||
		! grep -Eq "^runtime pid 4000000 rt 1: 1 worker \(process gone\), 1 stale" "$OUT" ||
		! grep -Eq "^ +4000001 +0 +1 +unpublished +- +- +stale$" "$OUT" ||
		! grep -q "^last load: scheduler exited: error (runnable task stall): task \"a.b\" failed to run" "$OUT"; then
		notok "status_workers" "unexpected listing"
	else
		ok "status_workers"
	fi

	run "$M" status --json
	if json_ok "$OUT" && grep -q '"state": "parked"' "$OUT" && grep -q '"stale": true' "$OUT" &&
		grep -q '"preempted": true' "$OUT"; then
		ok "status_json_workers"
	else
		notok "status_json_workers" "invalid JSON or missing workers"
	fi

	run "$M" dump --json
	if ! json_ok "$OUT"; then
		notok "dump_json_stats" "invalid JSON"
	elif command -v python3 >/dev/null; then
		if python3 - "$OUT" "$NCPU" <<'EOF'; then ok "dump_json_stats"; else notok "dump_json_stats" "wrong values"; fi
import json, sys
d = json.load(open(sys.argv[1]))
N = int(sys.argv[2])
c = d["cpu_stats"][0]
n = d["node_stats"][0]
l = d["latency"]
e = d["exit_info"]
assert c["cpu"] == 0 and c["dispatch_local"] == 11 and c["preempt_kicks"] == 1 and c["wake_preempts"] == 8, c
assert len(d["cpu_stats"]) == N and d["cpu_stats"][-1]["cpu"] == N - 1, d["cpu_stats"]
assert d["cpu_stats"][-1]["dispatch_local"] == 11, d["cpu_stats"]
assert n["worker_home_ns"] == 3000 * N and n["runnable_workers"] == N and n["cpus"] == 2 * N, n
assert l["count"] == 100 * N and l["max_ns"] == 20000 and l["log2_ns"][10] == 90 * N, l
assert 1024 <= l["p50_ns"] < 2048 and l["p99_ns"] == 20000, l
assert e["kind"] == 1026 and e["error"] and e["reason"] == "runnable task stall", e
assert e["msg"] == 'task "a\\b" failed to run', e
assert len(d["workers"]) == 2
EOF
	else
		ok "dump_json_stats"
	fi

	run "$M" dump
	expect "dump_text" 0 "$OUT" "^latency all: $((100 * NCPU)) wake-ups, p50 1\.[0-9]us, p99 20us, max 20us$"

	start=$(date +%s)
	run "$M" top --iterations 2
	end=$(date +%s)
	frames=$(grep -c "^moirai top:" "$OUT")
	if [ $RC -ne 0 ] || [ "$frames" -ne 2 ]; then
		notok "top_plain" "exit status $RC, $frames frames"
	elif grep -q "$(printf '\033')" "$OUT"; then
		notok "top_plain" "escape codes when stdout is not a terminal"
	elif ! grep -q "UPD/s" "$OUT" || ! grep -q "LOCAL/s" "$OUT" ||
		! grep -q "^latency 1s: no wake-ups" "$OUT" || [ $((end - start)) -gt 4 ]; then
		notok "top_plain" "no rates in the second frame, or too slow"
	else
		ok "top_plain"
	fi

	if [ -n "$NOBODY" ]; then
		run $NOBODY "$T/moiraictl" status
		expect "status_unprivileged" 0 "$OUT" "cannot read the pinned map workers: .*\(run as root\)"
	else
		skip "status_unprivileged" "needs root and setpriv"
	fi
	kill $LIVE 2>/dev/null
	wait $LIVE 2>/dev/null
	rm -f $P/*
else
	why="needs bpftool"
	[ $NS -eq 0 ] && why="needs root and unshare (a private bpffs)"
	for t in status_workers status_json_workers dump_json_stats dump_text top_plain \
		status_unprivileged; do
		skip "$t" "$why"
	done
fi

# --- scheduler states, from a fake /sys/kernel ---------------------------
# fake STATE [OPS]: the kernel's sched_ext files as the tests want them.
fake() {
	echo "$1" >/sys/kernel/sched_ext/state
	rm -rf /sys/kernel/sched_ext/root
	if [ -n "${2:-}" ]; then
		mkdir /sys/kernel/sched_ext/root
		echo "$2" >/sys/kernel/sched_ext/root/ops
	fi
}

FAKE=0
if [ $NS -eq 1 ]; then
	mkdir "$T/btf"
	[ -d /sys/kernel/btf ] && mount --bind /sys/kernel/btf "$T/btf"
	if mount -t tmpfs tmpfs /sys/kernel; then
		FAKE=1
		mkdir -p /sys/kernel/sched_ext /sys/kernel/btf
		echo 7 >/sys/kernel/sched_ext/enable_seq
		mount --bind "$T/btf" /sys/kernel/btf
	fi
fi
if [ $FAKE -eq 1 ]; then
	fake enabled scx_simple
	run "$M" load
	expect "load_refused_other_scheduler" 1 "$ERR" "another sched_ext scheduler is loaded: scx_simple"
	run "$M" unload
	expect "unload_other_scheduler" 0 "$OUT" "not loaded \(the loaded sched_ext scheduler is scx_simple\)"
	run "$M" status
	expect "status_other_scheduler" 0 "$OUT" "^scheduler: scx_simple \(not moirai\)$"

	fake enabled moirai
	run "$M" load --partial
	expect "load_refused_moirai_loaded" 1 "$ERR" "already loaded"
	run "$M" unload
	expect "unload_unheld_moirai" 1 "$ERR" "no moiraictl holds it"

	if [ "$(basename "$M")" = moiraictl ]; then
		"$M" top >/dev/null 2>&1 </dev/null &
		HOLDER=$!
		sleep 0.3
		printf '%s\npartial\n250\n' $HOLDER >/run/moiraictl.pid
		run "$M" status
		if grep -q "^loader: moiraictl pid $HOLDER, partial switch, slice 250 us$" "$OUT" &&
			grep -q "^scheduler: moirai (moirai)$" "$OUT" && grep -q "^enable_seq: 7$" "$OUT"; then
			ok "status_loader"
		else
			notok "status_loader" "loader, scheduler or enable_seq line missing"
		fi
		run "$M" status --json
		if json_ok "$OUT" && grep -q "\"loader_pid\": $HOLDER" "$OUT" &&
			grep -q '"mode": "partial"' "$OUT" && grep -q '"moirai": true' "$OUT"; then
			ok "status_json_loader"
		else
			notok "status_json_loader" "loader_pid, mode or moirai missing"
		fi
		run "$M" load
		expect "load_refused_moirai_loaded_by_us" 1 "$ERR" "already loaded \(moiraictl pid $HOLDER\)"
		fake disabled
		run "$M" unload
		if kill -0 $HOLDER 2>/dev/null; then
			notok "unload_signals_loader" "the loader still runs"
			kill $HOLDER
		else
			expect "unload_signals_loader" 0 "$OUT" "unloaded \(loader pid $HOLDER exited\)"
		fi
		wait $HOLDER 2>/dev/null
		echo 999999 >/run/moiraictl.pid
		run "$M" unload
		expect "unload_stale_pidfile" 0 "$OUT" "^moirai: not loaded$"
		rm -f /run/moiraictl.pid
	else
		for t in status_loader status_json_loader load_refused_moirai_loaded_by_us \
			unload_signals_loader unload_stale_pidfile; do
			skip "$t" "the binary is not named moiraictl (its comm is checked)"
		done
	fi

	if [ $REAL_SCX -eq 0 ] && [ -n "$BPFTOOL" ]; then
		# A pinned workers map of another layout: refused before libbpf.
		fake disabled
		mkdir -p $P
		$BPFTOOL map create $P/workers type hash key 4 value 16 entries 4096 name workers
		run "$M" load
		expect "load_refused_foreign_pin" 1 "$ERR" "was made by another version.*rm $P/workers"
		rm -f $P/workers
	else
		skip "load_refused_foreign_pin" "needs bpftool and a kernel without sched_ext"
	fi
	if [ $REAL_SCX -eq 0 ]; then
		# The real kernel cannot load it: the error comes from libbpf.
		fake disabled
		run "$M" load
		if [ $RC -eq 1 ] && grep -q "loading the BPF scheduler failed" "$ERR" &&
			grep -q "^libbpf: " "$ERR" && [ -d $P ] && [ ! -e /run/moiraictl.pid ]; then
			ok "load_error_from_libbpf"
		else
			notok "load_error_from_libbpf" "exit status $RC"
		fi
		run "$M" run -- touch "$T/ran2"
		if [ -e "$T/ran2" ]; then
			notok "run_load_error" "the command ran"
		else
			expect "run_load_error" 1 "$ERR" "loading the BPF scheduler failed"
		fi
	else
		skip "load_error_from_libbpf" "this kernel has sched_ext: the load would succeed"
		skip "run_load_error" "this kernel has sched_ext: the load would succeed"
	fi
	umount /sys/kernel/btf 2>/dev/null
	umount /sys/kernel
	umount "$T/btf" 2>/dev/null
else
	for t in load_refused_other_scheduler unload_other_scheduler status_other_scheduler \
		load_refused_moirai_loaded unload_unheld_moirai status_loader status_json_loader \
		load_refused_moirai_loaded_by_us unload_signals_loader unload_stale_pidfile \
		load_refused_foreign_pin load_error_from_libbpf run_load_error; do
		skip "$t" "needs root and unshare (a private /sys/kernel)"
	done
fi

echo "KTAP version 1"
echo "1..$N"
cat "$RES"
if [ $FAILED -ne 0 ]; then
	echo "# $FAILED of $N failed"
	exit 1
fi
exit 0
