#!/bin/sh
# tests/metrics_host.sh - the runtimes' counters seen from outside, on a
# kernel without sched_ext: a live program's counters move in `moiraictl
# status`, `top` and `dump --json`, bpftool prints their fields by name,
# a killed program's export is reported stale and removed by `moiraictl
# clean`, a cleanly ended one removes its own.
#
#   tests/metrics_host.sh path/to/moiraictl path/to/examples/stats
#
# As root it re-runs itself in a private mount namespace with a fresh bpffs
# on /sys/fs/bpf (so the runtime pins its counters there, and nothing of
# this machine's pins is touched). The BPF tests are skipped without root,
# unshare or bpftool ($BPFTOOL, PATH, or the VM lab's cache); the /dev/shm
# tests run anywhere. Prints KTAP; exits non-zero if a test failed.
set -u

if [ $# -ne 2 ] || [ ! -x "$1" ] || [ ! -x "$2" ]; then
	echo "usage: $0 path/to/moiraictl path/to/examples/stats" >&2
	exit 2
fi
case "$1" in /*) M=$1 ;; *) M=$(pwd)/$1 ;; esac
case "$2" in /*) S=$2 ;; *) S=$(pwd)/$2 ;; esac

if [ "$(id -u)" -eq 0 ] && [ -z "${METRICS_TEST_NS:-}" ] && command -v unshare >/dev/null &&
	unshare -m --propagation private true 2>/dev/null; then
	METRICS_TEST_NS=1 exec unshare -m --propagation private -- sh "$0" "$M" "$S"
fi
NS=0
if [ "${METRICS_TEST_NS:-}" = 1 ] && mount -t bpf bpf /sys/fs/bpf; then
	NS=1
fi

BPFTOOL=${BPFTOOL:-}
if [ -z "$BPFTOOL" ]; then
	for b in "$(command -v bpftool 2>/dev/null)" \
		"${MOIRAI_VM_CACHE:-$HOME/.cache/moirai-vm}/bpf/root/usr/sbin/bpftool"; do
		if [ -n "$b" ] && [ -x "$b" ]; then
			BPFTOOL=$b
			break
		fi
	done
fi

T=$(mktemp -d)
PID=
trap '[ -n "$PID" ] && kill -9 $PID 2>/dev/null; rm -rf "$T"' EXIT
OUT=$T/out
ERR=$T/err
RES=$T/results
: >"$RES"
N=0
FAILED=0

ok() { N=$((N + 1)); echo "ok $N $1" >>"$RES"; }
notok() {
	N=$((N + 1))
	FAILED=$((FAILED + 1))
	{
		echo "not ok $N $1"
		shift
		for l in "$@"; do echo "# $l"; done
		if [ -s "$OUT" ]; then sed 's/^/# stdout: /' "$OUT" | head -30; fi
		if [ -s "$ERR" ]; then sed 's/^/# stderr: /' "$ERR" | head -10; fi
	} >>"$RES"
}
skip() { N=$((N + 1)); echo "ok $N $1 # SKIP $2" >>"$RES"; }
run() {
	"$@" >"$OUT" 2>"$ERR" </dev/null
	RC=$?
}
expect() {
	if [ "$RC" -ne "$2" ]; then
		notok "$1" "exit status $RC, expected $2"
	elif ! grep -Eq -- "$4" "$3"; then
		notok "$1" "no line matches /$4/"
	else
		ok "$1"
	fi
}
have_py=0
command -v python3 >/dev/null && have_py=1

# start MODE: the example in the background, its export path in $EXP.
start() {
	MOIRAI_METRICS=$1 "$S" 0 >"$T/prog" 2>&1 &
	PID=$!
	EXP=
	i=0
	while [ $i -lt 100 ]; do
		EXP=$(sed -n 's/^export: //p' "$T/prog")
		[ -n "$EXP" ] && break
		sleep 0.1
		i=$((i + 1))
	done
}

# field NAME: the sum of NAME over the workers of $PID in `dump --json`.
field() {
	"$M" dump --json 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
for r in d["runtimes"]:
    if r["pid"] == int(sys.argv[1]):
        print(sum(w[sys.argv[2]] for w in r["workers"]))
        break
else:
    print(-1)' "$PID" "$1"
}

# check KIND: the live program's export is seen, moves, and is cleaned.
check() {
	kind=$1
	run "$M" status
	expect "${kind}_status_shows_runtime" 0 "$OUT" "pid $PID \(stats\) runtime 1: $EXP$"
	if grep -q "pid $PID " "$OUT" && ! grep -A6 "pid $PID " "$OUT" |
		grep -Eq "^ +0 +[0-9]+ +(running|searching|parked|blocked) "; then
		notok "${kind}_status_worker_rows" "no row for worker 0"
	else
		ok "${kind}_status_worker_rows"
	fi
	if [ $have_py -eq 1 ]; then
		a=$(field fiber_runs)
		sleep 1
		b=$(field fiber_runs)
		if [ "$a" -ge 0 ] 2>/dev/null && [ "$b" -gt "$a" ] 2>/dev/null; then
			ok "${kind}_dump_json_counters_move"
		else
			notok "${kind}_dump_json_counters_move" "fiber_runs $a then $b"
		fi
		# A field taken from reserved_ is printed by name (0 if never).
		r=$(field io_rescued)
		if [ "$r" -ge 0 ] 2>/dev/null; then
			ok "${kind}_dump_json_has_io_rescued"
		else
			notok "${kind}_dump_json_has_io_rescued" "io_rescued: '$r'"
		fi
	else
		skip "${kind}_dump_json_counters_move" "no python3"
		skip "${kind}_dump_json_has_io_rescued" "no python3"
	fi
	run "$M" top --iterations 2
	expect "${kind}_top_rates" 0 "$OUT" "fibers/s"
	kill -9 "$PID"
	wait "$PID" 2>/dev/null
	run "$M" status
	expect "${kind}_killed_is_stale" 0 "$OUT" "pid $PID .*STALE"
	run "$M" clean
	if [ "$RC" -eq 0 ] && grep -q "removed $EXP" "$OUT" && [ ! -e "$EXP" ]; then
		ok "${kind}_clean_removes_stale"
	else
		notok "${kind}_clean_removes_stale" "exit $RC, $EXP still there or not named"
	fi
	PID=
}

# --- /dev/shm ------------------------------------------------------------
start shm
case "$EXP" in
/dev/shm/moirai-stats.$PID.1)
	ok "shm_export_named"
	mode=$(stat -c %a "$EXP")
	if [ "$mode" = 600 ]; then ok "shm_export_mode_0600"; else notok "shm_export_mode_0600" "mode $mode"; fi
	check shm
	;;
*)
	notok "shm_export_named" "export: '$EXP'"
	;;
esac

# A clean end (SIGTERM: the program returns from main) removes its file.
start shm
kill -TERM "$PID"
wait "$PID"
rc=$?
PID=
if [ $rc -eq 0 ] && [ -n "$EXP" ] && [ ! -e "$EXP" ]; then
	ok "shm_clean_exit_removes_export"
else
	notok "shm_clean_exit_removes_export" "exit $rc, export '$EXP'"
fi

# Names anyone may create in /dev/shm: a FIFO must not hang the reader, and
# a file whose owner is not the named process's is neither believed nor
# removed by clean.
if command -v mkfifo >/dev/null && [ "$(id -u)" -eq 0 ]; then
	F=/dev/shm/moirai-stats.$$.77
	mkfifo "$F"
	timeout 10 "$M" status >"$OUT" 2>"$ERR"
	RC=$?
	rm -f "$F"
	if [ $RC -eq 0 ]; then ok "fifo_does_not_hang"; else notok "fifo_does_not_hang" "exit $RC"; fi
	F=/dev/shm/moirai-stats.1.77
	head -c 4096 /dev/zero >"$F"
	chown 65534 "$F"
	run "$M" status
	expect "foreign_file_ignored" 0 "$OUT" "owner is not the process"
	run "$M" clean
	if [ -e "$F" ]; then ok "clean_leaves_foreign_file"; else notok "clean_leaves_foreign_file" "removed"; fi
	rm -f "$F"
else
	skip "fifo_does_not_hang" "needs root and mkfifo"
	skip "foreign_file_ignored" "needs root"
	skip "clean_leaves_foreign_file" "needs root"
fi

# --- moiraictl dump -p: the fiber dump of a live process --------------------
MOIRAI_METRICS=0 "$S" 0 >"$T/prog" 2>&1 &
PID=$!
i=0
while [ "$(readlink /proc/$PID/exe 2>/dev/null)" != "$S" ] && [ $i -lt 100 ]; do
	sleep 0.05
	i=$((i + 1))
done
run "$M" dump -p "$PID"
expect "dump_pid_refused_without_signal" 1 "$ERR" "not started with MOIRAI_DUMP_SIGNAL"
kill -TERM "$PID"
wait "$PID"
: >"$T/dump.txt"
MOIRAI_METRICS=0 MOIRAI_DUMP_SIGNAL=SIGQUIT MOIRAI_DUMP_FILE="$T/dump.txt" "$S" 0 >"$T/prog" 2>&1 &
PID=$!
sleep 1 # its first fiber installs the handler
run "$M" dump -p "$PID"
if [ "$RC" -eq 0 ] && grep -q "^fiber 0x" "$OUT" && grep -q "worker 0" "$OUT" && kill -0 "$PID"; then
	ok "dump_pid_prints_fibers"
else
	notok "dump_pid_prints_fibers" "exit $RC; the process is $(kill -0 $PID 2>/dev/null && echo alive || echo gone)"
fi
kill -TERM "$PID"
wait "$PID"
PID=

# --- a pinned BPF map ----------------------------------------------------
if [ $NS -eq 1 ]; then
	start 1
	case "$EXP" in
	/sys/fs/bpf/moirai/$PID/rt1)
		ok "bpf_export_pinned"
		if [ -n "$BPFTOOL" ]; then
			run "$BPFTOOL" map dump pinned "$EXP"
			if [ $RC -eq 0 ] && grep -q '"jobs_run": ' "$OUT" &&
				grep -q '"fiber_runs": ' "$OUT" && grep -q '"jobs_stolen_from": ' "$OUT" &&
				grep -q '"io_rescued": ' "$OUT"; then
				ok "bpftool_prints_field_names"
			else
				notok "bpftool_prints_field_names" "exit $RC"
			fi
		else
			skip "bpftool_prints_field_names" "no bpftool"
		fi
		check bpf
		;;
	*)
		notok "bpf_export_pinned" "export: '$EXP'"
		;;
	esac
else
	skip "bpf_export_pinned" "needs root and unshare (a private bpffs)"
fi

# --- USDT probes, counted by bpftrace from the program's first instruction -
BT=$(command -v bpftrace 2>/dev/null)
if [ "$(id -u)" -ne 0 ]; then
	skip "bpftrace_counts_match_counters" "needs root"
elif [ -z "$BT" ]; then
	skip "bpftrace_counts_match_counters" "no bpftrace (apt-get install bpftrace)"
elif ! readelf -n "$S" 2>/dev/null | grep -q "stapsdt"; then
	skip "bpftrace_counts_match_counters" "built without <sys/sdt.h> (systemtap-sdt-dev)"
else
	MOIRAI_METRICS=0 "$BT" -q -c "$S 1" -e "
usdt:$S:moirai:fiber_create { @created = count(); }
usdt:$S:moirai:fiber_run { @runs = count(); }
usdt:$S:moirai:fiber_exit { @exits = count(); }" >"$OUT" 2>"$ERR" || true
	# The program's own totals, then bpftrace's maps at its exit.
	spawned=$(sed -n 's/.*fibers spawned \([0-9]*\).*/\1/p' "$OUT")
	runs=$(sed -n 's/.*fiber runs \([0-9]*\).*/\1/p' "$OUT")
	created=$(sed -n 's/^@created: //p' "$OUT")
	bruns=$(sed -n 's/^@runs: //p' "$OUT")
	exits=$(sed -n 's/^@exits: //p' "$OUT")
	if [ -n "$spawned" ] && [ "$spawned" = "$created" ] && [ "$spawned" = "$exits" ] &&
		[ -n "$runs" ] && [ "$runs" = "$bruns" ]; then
		ok "bpftrace_counts_match_counters"
	else
		notok "bpftrace_counts_match_counters" \
			"spawned $spawned created $created exits $exits; runs $runs probed $bruns"
	fi
fi

# --- moiraictl trace: a timeline of the whole run --------------------------
if [ "$(id -u)" -ne 0 ]; then
	skip "trace_json_checks" "needs root"
elif ! readelf -n "$S" 2>/dev/null | grep -q "stapsdt"; then
	skip "trace_json_checks" "built without <sys/sdt.h> (systemtap-sdt-dev)"
elif [ $have_py -eq 0 ]; then
	skip "trace_json_checks" "no python3"
else
	# The program waits 2 s before it starts: the tracer attaches meanwhile
	# and follows it to its exit.
	MOIRAI_METRICS=0 "$S" 1 2 >"$T/prog" 2>&1 &
	PID=$!
	# Until the shell's child has become the program (exec).
	i=0
	while [ "$(readlink /proc/$PID/exe 2>/dev/null)" != "$S" ] && [ $i -lt 100 ]; do
		sleep 0.05
		i=$((i + 1))
	done
	"$M" trace -p "$PID" -d 0 -o "$T/trace.json" >"$OUT" 2>"$ERR"
	RC=$?
	wait "$PID"
	PID=
	runs=$(sed -n 's/.*fiber runs \([0-9]*\).*/\1/p' "$T/prog")
	jobs=$(sed -n 's/^jobs run \([0-9]*\).*/\1/p' "$T/prog")
	if [ $RC -ne 0 ]; then
		notok "trace_json_checks" "moiraictl trace exit $RC"
	elif python3 - "$T/trace.json" "$runs" "$jobs" >"$T/check" 2>&1 <<'PY'
import json, sys
from collections import defaultdict
d = json.load(open(sys.argv[1]))
runs, jobs = int(sys.argv[2]), int(sys.argv[3])
ev = d["traceEvents"]
bad = []
if d["otherData"]["dropped"]:
    bad.append("dropped %d events" % d["otherData"]["dropped"])
tracks = defaultdict(list)
for e in ev:
    if e["ph"] == "X":
        tracks[e["tid"]].append(e)
names = {e["tid"]: e["args"]["name"] for e in ev if e["ph"] == "M"}
for tid, xs in tracks.items():
    if tid not in names:
        bad.append("track %d has no name" % tid)
    # Sorted by start, longest first: each slice lies inside the open one
    # or starts after it ends (nested, never partly overlapping).
    xs.sort(key=lambda e: (e["ts"], -e["dur"]))
    stack = []
    for e in xs:
        s, t = e["ts"], e["ts"] + e["dur"]
        if e["dur"] < 0:
            bad.append("negative duration on %d" % tid)
        while stack and s >= stack[-1] - 1e-6:
            stack.pop()
        if stack and t > stack[-1] + 1e-6:
            bad.append("slice at %.3f on %d overlaps its parent" % (s, tid))
            break
        stack.append(t)
fib = sum(1 for e in ev if e["ph"] == "X" and e["cat"] == "fiber")
job = sum(1 for e in ev if e["ph"] == "X" and e["cat"] == "job")
if fib != runs:
    bad.append("%d fiber slices, the program ran fibers %d times" % (fib, runs))
if job != jobs:
    bad.append("%d job slices, the program ran %d jobs" % (job, jobs))
workers = [n for n in names.values() if n.startswith("moirai-w")]
if len(workers) < 1:
    bad.append("no worker track")
flows = sum(1 for e in ev if e["ph"] == "f")
if flows < 1:
    bad.append("no wake-up flow")
print("\n".join(bad) if bad else "fiber slices %d, jobs %d, flows %d" % (fib, job, flows))
sys.exit(1 if bad else 0)
PY
	then
		ok "trace_json_checks"
	else
		notok "trace_json_checks" "$(cat "$T/check")"
	fi
fi

echo "KTAP version 1"
echo "1..$N"
cat "$RES"
if [ $FAILED -ne 0 ]; then
	echo "# $FAILED of $N failed"
	exit 1
fi
exit 0
