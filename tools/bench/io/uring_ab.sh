#!/bin/sh
# tools/bench/io/uring_ab.sh BUILD_DIR - the A/B prototypes of uring_ab.c
# (multishot accept; registered files and provided buffer rings for
# receives; registered files and buffers for O_DIRECT reads of a 64 MiB
# file, BUILD_DIR/bench/io/data64, made once) and the send zero-copy A/B of
# sendzc.c (through the library), interleaved. BENCH_GROUPS picks groups
# ("accept recv read sendzc", the default; "http" too on request).
#
# http: BUILD_DIR/examples/httpd -w 2 under wrk -t1 -c64 (as run.sh's
# HTTP hello), modes keepalive (as run.sh), keepalive-zc (the same with
# MOIRAI_IO_SEND_ZC=1: every response zero-copy), close (wrk sends
# "Connection: close": one connection per request, the accept path's
# cost, the context of the multishot accept numbers). Server CPU per
# request from /proc/PID/stat over the run.
#
# Each round runs every mode once, the starting mode rotating, for
# BENCH_DURATION (3) seconds; BENCH_REPS (5) rounds. Prints the median of
# ops/s and of the server's CPU ns per op for each mode, and the ratio of
# each to the first mode of its group (the A). The load average is printed
# before and after: these 2 CPUs are shared, so read ratios, not absolute
# numbers. Raw lines: BUILD_DIR/bench/io/uring_ab.txt.
set -eu
[ $# -eq 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
BUILD=$(cd "$1" && pwd)
OUT=$BUILD/bench/io
mkdir -p "$OUT"
REPS=${BENCH_REPS:-5}
DUR=${BENCH_DURATION:-3}
CC=${BENCH_CC:-gcc}
CFLAGS="-O2 -g -std=gnu11 -Wall -Wextra"
"$CC" $CFLAGS "$HERE/uring_ab.c" -o "$OUT/bench_io_uring_ab" -pthread
HAVE_ZC=0
if [ -f "$BUILD/libmoirai.a" ] && [ -f "$HERE/sendzc.c" ]; then
	"$CC" $CFLAGS -I "$ROOT/include" "$HERE/sendzc.c" "$BUILD/libmoirai.a" \
		-o "$OUT/bench_io_sendzc" -pthread -lm && HAVE_ZC=1
fi
RES=$OUT/uring_ab.txt
: >"$RES"
echo "loadavg before: $(cat /proc/loadavg)"

# group NAME COMMAND-PREFIX MODES...: REPS interleaved rounds of the modes.
group() {
	name=$1 cmd=$2
	shift 2
	n=$#
	for rep in $(seq 1 "$REPS"); do
		k=$(( (rep - 1) % n ))
		i=0
		for m in "$@" "$@"; do
			[ $i -ge $k ] && [ $i -lt $((k + n)) ] &&
				echo "$name $($cmd "$m")" | tee -a "$RES" >&2
			i=$((i + 1))
		done
	done
}

run_accept() { "$OUT/bench_io_uring_ab" accept "$1" "$DUR"; }
run_recv() { "$OUT/bench_io_uring_ab" recv "$1" "$DUR" 16; }
run_zc() { "$OUT/bench_io_sendzc" "$1" "$DUR"; }
run_read() { "$OUT/bench_io_uring_ab" read "$1" "$DUR" "$OUT/data64"; }
GROUPS_=${BENCH_GROUPS:-accept recv read sendzc}
has() { case " $GROUPS_ " in *" $1 "*) return 0 ;; esac; return 1; }
run_http() {
	mode=$1
	env=""
	hdr=""
	[ "$mode" = keepalive-zc ] && env="MOIRAI_IO_SEND_ZC=1"
	[ "$mode" = close ] && hdr="Connection: close"
	env $env "$BUILD/examples/httpd" -p 0 -w 2 >"$OUT/ab-httpd.out" 2>&1 &
	spid=$!
	port=""
	while [ -z "$port" ]; do
		sleep 0.05
		port=$(awk '/^listening on/ { print $3 }' "$OUT/ab-httpd.out")
	done
	t0=$(awk '{ print $14 + $15 }' /proc/$spid/stat)
	if [ -n "$hdr" ]; then
		wrk -t1 -c64 -d"${DUR}s" -H "$hdr" "http://127.0.0.1:$port/" >"$OUT/ab-wrk.out" 2>&1 || true
	else
		wrk -t1 -c64 -d"${DUR}s" "http://127.0.0.1:$port/" >"$OUT/ab-wrk.out" 2>&1 || true
	fi
	t1=$(awk '{ print $14 + $15 }' /proc/$spid/stat)
	kill $spid
	wait $spid 2>/dev/null || true
	rps=$(awk '$1 == "Requests/sec:" { print $2 }' "$OUT/ab-wrk.out")
	awk -v m="$mode" -v r="$rps" -v d="$DUR" -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" 'BEGIN {
		printf "http-%s ops=%.0f seconds=%s ops_per_s=%s server_cpu_ns_per_op=%.0f\n", m, r * d, d, r, (r > 0 ? t / hz * 1e9 / (r * d) : 0) }'
}
has http && [ -x "$BUILD/examples/httpd" ] && group http run_http keepalive keepalive-zc close
has accept && group accept run_accept single multi
has recv && group recv run_recv plain fixed pbuf pbuf-multi
if has read; then
	[ -f "$OUT/data64" ] || dd if=/dev/urandom of="$OUT/data64" bs=1M count=64 status=none
	if "$OUT/bench_io_uring_ab" read plain 0.1 "$OUT/data64" >/dev/null 2>&1; then
		group read run_read plain fixed fixedbuf both
	else
		echo "uring_ab.sh: O_DIRECT refused on $OUT: no read group" >&2
	fi
fi
has sendzc && [ $HAVE_ZC = 1 ] && group sendzc run_zc copy-4k zc-4k copy-16k zc-16k copy-64k zc-64k copy-256k zc-256k copy-1m zc-1m

echo "loadavg after: $(cat /proc/loadavg)"
# Medians: per group, per mode, of ops_per_s and server_cpu_ns_per_op
# (sendzc.c prints MB/s as ops_per_s and sender CPU ns per MiB).
awk '
function med(list,    a, n, i, j, t) {
	n = split(list, a, " ")
	for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{
	g = $1; m = $2
	for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
	if (!((g, m) in seen)) { seen[g, m] = 1; order[++no] = g SUBSEP m }
	rate[g, m] = rate[g, m] " " v["ops_per_s"]; cpu[g, m] = cpu[g, m] " " v["server_cpu_ns_per_op"]
}
END {
	printf "| group | mode | ops/s (median) | ratio | server CPU ns/op | ratio |\n|---|---|---:|---:|---:|---:|\n"
	for (k = 1; k <= no; k++) {
		split(order[k], gm, SUBSEP); g = gm[1]; m = gm[2]
		r = med(rate[g, m]); c = med(cpu[g, m])
		if (!(g in base)) { base[g] = r; basec[g] = c }
		# sendzc: each zc-X against copy-X
		if (g == "sendzc" && m ~ /^copy-/) { base[g] = r; basec[g] = c }
		printf "| %s | %s | %.0f | %.2f | %.0f | %.2f |\n", g, m, r, base[g] ? r / base[g] : 0, c, basec[g] ? c / basec[g] : 0
	}
}' "$RES"
