#!/bin/sh
# tools/bench/io/run.sh BUILD_DIR - Moirai's fiber I/O (include/moirai/io.h)
# side by side with nginx, Go, tokio, a bare epoll loop and fio.
#
# Builds the peers of this directory into BUILD_DIR/bench/io, runs them,
# prints a markdown table of the medians with ratios and the targets
# beside them, and saves it as BUILD_DIR/bench/io.md. Raw lines, one per
# run: BUILD_DIR/bench/io/results.txt. The Moirai server is
# BUILD_DIR/examples/httpd (`make bench` builds it; BENCH_HTTPD names
# another binary with the same command line); without it the Moirai rows
# read n/a. Nothing here asserts a timing: every number is printed, the
# targets are shown as met or missed.
#
# Machine: the 2 CPUs these numbers come from are shared by the server
# under test and the load generator; every server gets 2 workers (threads,
# processes, GOMAXPROCS) and is the only server running.
#
# 1. HTTP hello. wrk -t1 -c64 -d<BENCH_DURATION, 10>s --latency against
#    http://127.0.0.1:PORT/ (GET /, keep-alive: each of the 64 connections
#    sends its next request when the answer to the last one arrived). Each
#    server answers "Hello, World!\n" with Content-Type: text/plain
#    (checked with curl before each run):
#      Moirai io_uring  examples/httpd -w 2 (the default backend)
#      Moirai epoll     MOIRAI_IO=epoll examples/httpd -w 2
#      nginx            Debian's, worker_processes 2, `return 200` from a
#                       config generated into BUILD_DIR/bench/io/nginx,
#                       access_log off, listen ... reuseport, keepalive
#                       without a request limit (nginx closes a connection
#                       after 1000 requests by default), run as the
#                       current user with its pid and temp files there
#      Go net/http      go/main.go, GOMAXPROCS=2
#      tokio            tokio/src/main.rs: a minimal HTTP/1.1 responder on
#                       tokio's TcpListener, 2 worker threads
#      epoll loop       epoll.c: 2 threads, SO_REUSEPORT, one
#                       level-triggered epoll set each, nothing else (the
#                       ceiling)
#    A server is started fresh for each run and stopped after it. Rounds:
#    each server once per round, the starting server rotating from round
#    to round; BENCH_REPS rounds (3). Reported: wrk's requests/s and its
#    p50 and p99 latency, each the median over the rounds; ratios of the
#    medians against nginx and the epoll loop.
#    Targets: Moirai io_uring req/s >= 1.1x nginx's and >= the epoll
#    loop's; its p99 <= nginx's.
#
# 2. Mixed. The same wrk load against a server that runs a CPU job in the
#    same process: fib(27) forked down to n < 18 (below: plain recursion),
#    computed again and again, each completed fib(27) one "chunk":
#      Moirai           examples/httpd -w 2 -c (mr_join)
#      Go               go/main.go -c: goroutines + sync.WaitGroup,
#                       GOMAXPROCS=2
#      tokio + rayon    tokio/src/main.rs -c: tokio with 2 workers, and a
#                       rayon pool of 2 threads (rayon::join) driven by one
#                       more thread
#    Three modes per server, each a fresh process given -d DURATION:
#      unloaded  no -c, under wrk
#      loaded    -c, under wrk
#      alone     -c, no HTTP load
#    Under wrk: wrk starts as soon as the server prints "listening on PORT"
#    and is stopped (SIGINT, wrk then reports) when the server exits. Its
#    requests/s is the server's own count over its own lifetime (the
#    requests=N and seconds=S of its exit line, the window the chunks are
#    counted over too); p50 and p99 are wrk's. The CPU rate is cpu_chunks /
#    seconds of the exit line. Rounds as in 1: each server's three modes
#    once per round, the servers rotating. Reported: medians over the
#    rounds, the loaded/unloaded p99 ratio and the CPU loaded/alone ratio.
#    wrk's socket errors at the end of a run are the server exiting under
#    load, expected.
#    Targets: Moirai's loaded p99 below both peers' loaded p99 and <= 1.5x
#    its own unloaded p99; its loaded req/s above both peers'; its CPU
#    loaded/alone ratio above both peers'.
#
# 3. File I/O. 4 KiB reads at uniformly random aligned offsets of one file
#    of 256 MiB (BUILD_DIR/bench/io/data, made once from /dev/urandom), at
#    queue depths 32 and 128, for BENCH_FILE_DURATION (5) seconds:
#      Moirai  file.c: QD fibers each calling mr_pread in a loop, on 1 and
#              on 2 workers
#      fio     --ioengine=io_uring --rw=randread --bs=4k, 1 job at iodepth
#              QD and 2 jobs at QD/2 each, --gtod_reduce=1 --norandommap
#              (no per-I/O clock reads, no bookkeeping of which blocks were
#              read: what file.c does not do either)
#    First from the page cache (the file is read once before each round,
#    fio runs with --invalidate=0), then, if a probe read with O_DIRECT
#    succeeds on this file system, with O_DIRECT (fio --direct=1) from the
#    disk. IOPS, medians of BENCH_REPS rounds, the four rotating.
#
# Needs wrk, nginx, fio, golang-go, cargo, librust-tokio-dev,
# librust-rayon-dev and curl: tools/deps.sh bench installs them.
# Environment: BENCH_DURATION (seconds of each HTTP run, 10),
# BENCH_FILE_DURATION (5), BENCH_REPS (rounds, 3), BENCH_HTTPD,
# BENCH_CC (gcc), BENCH_GO (go), BENCH_QUICK=1 (2-second HTTP runs, 1-second
# file runs on 32 MiB, one round: checks that everything builds and
# answers, in about a minute and a half; its numbers mean nothing).
set -eu

die() {
	echo "io/run.sh: $*" >&2
	exit 1
}

[ $# -eq 1 ] || {
	echo "usage: $0 BUILD_DIR   (the directory holding libmoirai.a, e.g. build)" >&2
	exit 2
}

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
[ -d "$1" ] || die "no build directory '$1': build the library first (make lib)"
BUILD=$(cd "$1" && pwd)
LIB=$BUILD/libmoirai.a
[ -f "$LIB" ] || die "'$1/libmoirai.a' is missing: build the library first (make lib)"
OUT=$BUILD/bench/io
mkdir -p "$OUT"

# Two runs in one build directory would share ports, files and CPUs.
if command -v flock >/dev/null 2>&1; then
	exec 9>"$OUT/.lock"
	if ! flock -n 9; then
		echo "io/run.sh: another run is using $1/bench/io: waiting for it" >&2
		flock 9
	fi
fi

CC=${BENCH_CC:-gcc}
GO=${BENCH_GO:-go}
REPS=${BENCH_REPS:-3}
DUR=${BENCH_DURATION:-10}
FDUR=${BENCH_FILE_DURATION:-5}
FILE_MB=256
if [ "${BENCH_QUICK:-0}" = 1 ]; then
	REPS=1 DUR=2 FDUR=1 FILE_MB=32
fi
HTTPD=${BENCH_HTTPD:-$BUILD/examples/httpd}
CFLAGS="-O2 -g -std=gnu11 -Wall -Wextra"

# ---- build ------------------------------------------------------------------

# build WHAT HINT COMMAND...: run COMMAND, and on failure say what failed and why.
build() {
	what=$1 hint=$2
	shift 2
	log=$OUT/build-$what.log
	if ! "$@" >"$log" 2>&1; then
		echo "io/run.sh: building the $what benchmark failed ($hint). Last lines of $log:" >&2
		tail -n 25 "$log" | sed 's/^/    /' >&2
		exit 1
	fi
}

need() {
	command -v "$1" >/dev/null 2>&1 || die "no $1 ($2: tools/deps.sh bench installs it)"
}
need "$CC" "the C compiler"
need "$GO" "golang-go"
need wrk "wrk"
need fio "fio"
need curl "curl"
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || die "no nginx (tools/deps.sh bench installs it)"

echo "io/run.sh: building into $1/bench/io" >&2
build epoll "the C compiler" \
	"$CC" $CFLAGS "$HERE/epoll.c" -o "$OUT/bench_io_epoll" -pthread
build go "needs golang-go: tools/deps.sh bench" \
	env GO111MODULE=off GOPROXY=off GOFLAGS= CGO_ENABLED=0 \
	GOCACHE="$OUT/go-cache" GOPATH="$OUT/go-path" \
	"$GO" build -o "$OUT/bench_io_go" "$HERE/go/main.go"

# tokio + rayon: Debian's cargo, offline against Debian's crates, on a copy
# of the project in the build directory (as tools/bench/run.sh does for rayon).
if [ -x /usr/bin/cargo ]; then
	CARGO=/usr/bin/cargo
else
	CARGO=$(command -v cargo 2>/dev/null) || die "no cargo (tools/deps.sh bench installs Debian's cargo)"
fi
ls -d /usr/share/cargo/registry/tokio-1.* >/dev/null 2>&1 ||
	die "no tokio in /usr/share/cargo/registry (tools/deps.sh bench installs librust-tokio-dev)"
rm -rf "$OUT/tokio-src"
mkdir -p "$OUT/tokio-src"
cp -R "$HERE/tokio/Cargo.toml" "$HERE/tokio/src" "$HERE/tokio/.cargo" "$OUT/tokio-src/"
build tokio "needs cargo, librust-tokio-dev and librust-rayon-dev: tools/deps.sh bench" \
	sh -c 'cd "$1" && CARGO_TARGET_DIR="$2" "$3" build --release --offline' sh \
	"$OUT/tokio-src" "$OUT/tokio-target" "$CARGO"
cp "$OUT/tokio-target/release/bench_io_tokio" "$OUT/bench_io_tokio"

# The I/O API may not be in the library: then the file rows read n/a.
HAVE_IO=0
if nm "$LIB" 2>/dev/null | grep -q ' T mr_pread$'; then
	HAVE_IO=1
	build file "does $1/libmoirai.a match include/?" \
		"$CC" $CFLAGS -I "$ROOT/include" "$HERE/file.c" "$LIB" -o "$OUT/bench_io_file" -pthread -lm
else
	echo "io/run.sh: warning: $1/libmoirai.a has no mr_pread: the Moirai file rows will read n/a" >&2
fi
HAVE_HTTPD=0
if [ -x "$HTTPD" ]; then
	HAVE_HTTPD=1
else
	echo "io/run.sh: warning: no $HTTPD (make examples builds it): the Moirai HTTP rows will read n/a" >&2
fi

# ---- servers ----------------------------------------------------------------

RES=$OUT/results.txt
rm -f "$BUILD/bench/io.md"
: >"$RES"
load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
	echo "io/run.sh: warning: load average $load - other work on this machine skews the numbers" >&2
fi

# A server that hangs is killed after this long (a run lasts DUR seconds).
LIMIT=$((DUR + 60))

# A TCP port nobody listens on, for nginx (the others take -p 0).
free_port() {
	p=$((20000 + $$ % 20000))
	while :; do
		hex=$(printf '%04X' "$p")
		if ! awk -v h=":$hex" 'NR > 1 && $4 == "0A" && substr($2, length($2) - 4) == h { f = 1 } END { exit !f }' \
			/proc/net/tcp /proc/net/tcp6 2>/dev/null; then
			echo "$p"
			return
		fi
		p=$((p + 1))
	done
}

# nginx's config for PORT, with everything it writes under OUT/nginx.
nginx_conf() {
	d=$OUT/nginx
	mkdir -p "$d/tmp" "$d/logs"
	{
		# As root nginx would switch its workers to nobody: keep the caller.
		if [ "$(id -u)" -eq 0 ]; then echo "user $(id -un) $(id -gn);"; fi
		cat <<EOF
worker_processes 2;
daemon off;
pid $d/nginx.pid;
error_log $d/logs/error.log warn;
events {
	worker_connections 1024;
}
http {
	access_log off;
	client_body_temp_path $d/tmp/body;
	proxy_temp_path $d/tmp/proxy;
	fastcgi_temp_path $d/tmp/fastcgi;
	uwsgi_temp_path $d/tmp/uwsgi;
	scgi_temp_path $d/tmp/scgi;
	keepalive_requests 1000000000;
	keepalive_timeout 300s;
	server {
		listen 127.0.0.1:$1 reuseport;
		location / {
			default_type text/plain;
			return 200 "Hello, World!\n";
		}
	}
}
EOF
	} >"$d/nginx.conf"
}

# start IMPL [ARGS...]: start IMPL's server in the background with ARGS;
# sets SPID and PORT once it listens.
start() {
	impl=$1
	shift
	: >"$OUT/server.out"
	case $impl in
	moirai | moirai-uring) set -- "$HTTPD" -p 0 -w 2 "$@" ;;
	moirai-epoll) set -- env MOIRAI_IO=epoll "$HTTPD" -p 0 -w 2 "$@" ;;
	go) set -- env GOMAXPROCS=2 "$OUT/bench_io_go" -p 0 "$@" ;;
	tokio) set -- "$OUT/bench_io_tokio" -p 0 -w 2 "$@" ;;
	epoll) set -- "$OUT/bench_io_epoll" -p 0 -w 2 "$@" ;;
	nginx)
		PORT=$(free_port)
		nginx_conf "$PORT"
		set -- "$NGINX" -p "$OUT/nginx" -e "$OUT/nginx/logs/error.log" -c "$OUT/nginx/nginx.conf"
		;;
	esac
	timeout -s KILL "$LIMIT" "$@" >"$OUT/server.out" 2>&1 &
	SPID=$!
	i=0
	while :; do
		if [ "$impl" = nginx ]; then
			awk -v h=":$(printf '%04X' "$PORT")" 'NR > 1 && $4 == "0A" && substr($2, length($2) - 4) == h { f = 1 } END { exit !f }' \
				/proc/net/tcp 2>/dev/null && break
		else
			PORT=$(awk '/^listening on [0-9]+/ { print $3; exit }' "$OUT/server.out")
			[ -n "$PORT" ] && break
		fi
		kill -0 "$SPID" 2>/dev/null || { cat "$OUT/server.out" >&2; die "the $impl server exited before listening: $*"; }
		i=$((i + 1))
		[ $i -lt 200 ] || { kill "$SPID"; cat "$OUT/server.out" >&2; die "the $impl server did not listen within 10 s: $*"; }
		sleep 0.05
	done
	# The same answer from every server.
	curl -s -i --max-time 5 "http://127.0.0.1:$PORT/" >"$OUT/curl.out" 2>&1 || true
	tr -d '\r' <"$OUT/curl.out" | awk '
		NR == 1 && $2 == "200" { ok200 = 1 }
		tolower($0) ~ /^content-type: text\/plain/ { ct = 1 }
		$0 == "Hello, World!" { body = 1 }
		END { exit !(ok200 && ct && body) }' || {
		kill "$SPID" 2>/dev/null
		cat "$OUT/curl.out" >&2
		die "the $impl server does not answer GET / with 200, text/plain, \"Hello, World!\""
	}
}

stop() {
	kill "$SPID" 2>/dev/null || true
	wait "$SPID" 2>/dev/null || true
}

# wrk_parse FILE: "RPS P50_US P99_US ERRORS" from wrk's report.
wrk_parse() {
	awk '
	function us(s,    v) {
		v = s + 0
		if (s ~ /us$/) return v
		if (s ~ /ms$/) return v * 1000
		if (s ~ /m$/) return v * 60e6
		if (s ~ /s$/) return v * 1e6
		return v
	}
	$1 == "50%" { p50 = us($2) }
	$1 == "99%" { p99 = us($2) }
	$1 == "Requests/sec:" { rps = $2 }
	/Socket errors:/ { gsub(",", ""); err = $4 + $6 + $8 + $10 }
	/Non-2xx/ { err += $NF }
	END {
		if (rps == "" || p99 == "") exit 1
		printf "%s %.1f %.1f %d\n", rps, p50, p99, err
	}' "$1"
}

WRK="wrk -t1 -c64 --latency"

# hello IMPL: one run of benchmark 1.
hello() {
	start "$1"
	$WRK -d"${DUR}s" "http://127.0.0.1:$PORT/" >"$OUT/wrk.out" 2>&1 || true
	stop
	r=$(wrk_parse "$OUT/wrk.out") || { cat "$OUT/wrk.out" >&2; die "no numbers from wrk against $1"; }
	echo "HELLO $1 $r" | tee -a "$RES" | sed 's/^/  /' >&2
}

# exit_field NAME: NAME=VALUE from the server's exit line.
exit_field() {
	sed -n "s/.*[ :]$1=\\([0-9.]*\\).*/\\1/p" "$OUT/server.out" | tail -n 1
}

# mixed IMPL MODE: one run of benchmark 2 (MODE unloaded, loaded or alone).
mixed() {
	impl=$1 mode=$2
	flag=""
	[ "$mode" != unloaded ] && flag=-c
	start "$impl" $flag -d "$DUR"
	if [ "$mode" = alone ]; then
		wait "$SPID" || true
		r="- - - 0"
	else
		$WRK -d"$((DUR + 30))s" "http://127.0.0.1:$PORT/" >"$OUT/wrk.out" 2>&1 &
		wpid=$!
		wait "$SPID" || true
		kill -INT "$wpid" 2>/dev/null || true
		wait "$wpid" || true
		r=$(wrk_parse "$OUT/wrk.out") || { cat "$OUT/wrk.out" >&2; die "no numbers from wrk against $impl $mode"; }
	fi
	n=$(exit_field requests) c=$(exit_field cpu_chunks) s=$(exit_field seconds)
	[ -n "$n" ] && [ -n "$c" ] && [ -n "$s" ] || {
		cat "$OUT/server.out" >&2
		die "no 'requests=N cpu_chunks=M seconds=S' line from the $impl server (-d $DUR)"
	}
	set -- $r
	line=$(awk -v i="$impl" -v m="$mode" -v n="$n" -v c="$c" -v s="$s" -v p50="$2" -v p99="$3" -v e="$4" \
		'BEGIN { printf "MIXED %s %s %.1f %s %s %.2f %d\n", i, m, n / s, p50, p99, c / s, e }')
	echo "$line" | tee -a "$RES" | sed 's/^/  /' >&2
}

# rotate N WORDS...: WORDS rotated left by N.
rotate() {
	k=$1
	shift
	n=$#
	k=$((k % n))
	out=""
	i=0
	for w in "$@"; do
		[ $i -ge $k ] && out="$out $w"
		i=$((i + 1))
	done
	i=0
	for w in "$@"; do
		[ $i -lt $k ] && out="$out $w"
		i=$((i + 1))
	done
	echo $out
}

# ---- 1. HTTP hello ------------------------------------------------------------

HELLO_IMPLS="nginx go tokio epoll"
[ "$HAVE_HTTPD" = 1 ] && HELLO_IMPLS="moirai-uring moirai-epoll $HELLO_IMPLS"
echo "io/run.sh: HTTP hello, $REPS rounds of ${DUR}-second runs" >&2
for round in $(seq "$REPS"); do
	for impl in $(rotate $((round - 1)) $HELLO_IMPLS); do
		hello "$impl"
	done
done

# ---- 2. mixed -----------------------------------------------------------------

MIXED_IMPLS="go tokio"
[ "$HAVE_HTTPD" = 1 ] && MIXED_IMPLS="moirai $MIXED_IMPLS"
echo "io/run.sh: mixed HTTP + CPU, $REPS rounds of ${DUR}-second runs" >&2
for round in $(seq "$REPS"); do
	for impl in $(rotate $((round - 1)) $MIXED_IMPLS); do
		for mode in unloaded loaded alone; do
			mixed "$impl" "$mode"
		done
	done
done

# ---- 3. file I/O --------------------------------------------------------------

DATA=$OUT/data
want=$((FILE_MB * 1024 * 1024))
if [ "$(stat -c %s "$DATA" 2>/dev/null || echo 0)" != "$want" ]; then
	echo "io/run.sh: writing a $FILE_MB MiB file of random bytes" >&2
	head -c "$want" /dev/urandom >"$DATA.tmp"
	mv "$DATA.tmp" "$DATA"
fi
FIO="fio --name=randread --filename=$DATA --rw=randread --bs=4k --ioengine=io_uring --gtod_reduce=1 --norandommap"
FIO="$FIO --invalidate=0 --time_based --runtime=$FDUR --group_reporting --output-format=terse --terse-version=3"

# fileio KIND IMPL QD: one run of benchmark 3 (KIND cache or direct).
fileio() {
	kind=$1 impl=$2 qd=$3
	d="" fd=""
	[ "$kind" = direct ] && d=direct fd=--direct=1
	case $impl in
	moirai-1 | moirai-2)
		[ "$HAVE_IO" = 1 ] || return 0
		timeout -s KILL "$LIMIT" "$OUT/bench_io_file" "$DATA" "$qd" "${impl#moirai-}" "$FDUR" $d >"$OUT/file.out" 2>&1 ||
			{ cat "$OUT/file.out" >&2; die "bench_io_file $qd ${impl#moirai-} failed"; }
		iops=$(sed -n 's/.* iops=\([0-9.]*\).*/\1/p' "$OUT/file.out")
		;;
	fio-1) $FIO $fd --numjobs=1 --iodepth="$qd" >"$OUT/file.out" 2>&1 || { cat "$OUT/file.out" >&2; die "fio failed"; }
		iops=$(cut -d';' -f8 "$OUT/file.out") ;;
	fio-2) $FIO $fd --numjobs=2 --iodepth=$((qd / 2)) >"$OUT/file.out" 2>&1 || { cat "$OUT/file.out" >&2; die "fio failed"; }
		iops=$(cut -d';' -f8 "$OUT/file.out") ;;
	esac
	[ -n "$iops" ] || { cat "$OUT/file.out" >&2; die "no IOPS from $impl"; }
	echo "FILE $kind $impl $qd $iops" | tee -a "$RES" | sed 's/^/  /' >&2
}

DIRECT=0
if dd if="$DATA" of=/dev/null bs=4096 count=1 iflag=direct >/dev/null 2>&1; then
	DIRECT=1
else
	echo "io/run.sh: O_DIRECT is refused on the file system of $1: the direct rows are skipped" >&2
fi
KINDS=cache
[ "$DIRECT" = 1 ] && KINDS="cache direct"
echo "io/run.sh: file reads, $REPS rounds of ${FDUR}-second runs" >&2
for kind in $KINDS; do
	for round in $(seq "$REPS"); do
		[ "$kind" = cache ] && cat "$DATA" >/dev/null # into the page cache, again
		for qd in 32 128; do
			for impl in $(rotate $((round - 1)) moirai-1 moirai-2 fio-1 fio-2); do
				fileio "$kind" "$impl" "$qd"
			done
		done
	done
done

# ---- tabulate -------------------------------------------------------------------

cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: *//' || true)
kernel=$(uname -r)
nginxv=$("$NGINX" -v 2>&1 | sed 's/.*nginx\///')
wrkv=$(wrk -v 2>&1 | head -n 1 | awk '{ print $2 }')
fiov=$(fio --version 2>/dev/null)
gov=$("$GO" version 2>/dev/null | sed 's/^go version //')
rustcv=$(rustc_bin=$(dirname "$CARGO")/rustc && [ -x "$rustc_bin" ] && "$rustc_bin" --version || echo "rustc ?")
tokiov=$(ls -d /usr/share/cargo/registry/tokio-1.* | sed 's/.*tokio-//' | sort -V | tail -n 1)
rayonv=$(ls -d /usr/share/cargo/registry/rayon-1.* | sed 's/.*rayon-//' | sort -V | tail -n 1)
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")

awk -v reps="$REPS" -v dur="$DUR" -v fdur="$FDUR" -v filemb="$FILE_MB" -v direct="$DIRECT" \
	-v ncpu="$(nproc 2>/dev/null || echo '?')" -v cpu="$cpu" -v kernel="$kernel" -v commit="$commit" \
	-v vers="nginx $nginxv; wrk $wrkv; $fiov; $gov; $rustcv, tokio $tokiov, rayon $rayonv" \
	-v date="$(date -u '+%Y-%m-%d %H:%M UTC')" -v out="$BUILD/bench/io.md" '
function median(s,    n, a, i, j, t) {
	n = split(s, a, " ")
	for (i = 2; i <= n; i++)	# insertion sort: a handful of values
		for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
	return n % 2 ? a[(n + 1) / 2] + 0 : (a[n / 2] + a[n / 2 + 1]) / 2
}
function get(k) { return (k in v) ? median(v[k]) : -1 }
function num(x) { return x < 0 ? "n/a" : sprintf(x < 100 ? "%.1f" : "%.0f", x) }
function ratio(x, y) { return (x < 0 || y <= 0) ? "n/a" : sprintf("%.2f", x / y) }
function mark(c, x) { return x == "n/a" ? "not measured" : c ? "met" : "**missed**" }
function add(k, x) { v[k] = v[k] " " x }
$1 == "HELLO" { add("h" SUBSEP $2 SUBSEP "rps", $3); add("h" SUBSEP $2 SUBSEP "p50", $4); add("h" SUBSEP $2 SUBSEP "p99", $5); herr[$2] += $6 }
$1 == "MIXED" {
	k = "m" SUBSEP $2 SUBSEP $3
	if ($5 != "-") { add(k SUBSEP "rps", $4); add(k SUBSEP "p50", $5); add(k SUBSEP "p99", $6) }
	add(k SUBSEP "cps", $7)
}
$1 == "FILE" { add("f" SUBSEP $2 SUBSEP $3 SUBSEP $4, $5) }
END {
	o = "# Moirai fiber I/O side by side\n\n"
	o = o sprintf("%s, commit %s. %s CPUs (%s), Linux %s. %s.\n", date, commit, ncpu, cpu, kernel, vers)
	o = o sprintf("Every number is the median of %d runs, the implementations alternating from run to run. ", reps)
	o = o "The load generator shares the 2 CPUs with the server. tools/bench/io/run.sh describes each benchmark exactly. "
	o = o "Targets are shown, not enforced.\n"

	o = o sprintf("\n## 1. HTTP hello: wrk -t1 -c64 -d%ds, keep-alive, 2 workers each\n\n", dur)
	o = o "| server | req/s | p50 (us) | p99 (us) | req/s vs nginx | req/s vs epoll loop | p99 vs nginx |\n|---|---:|---:|---:|---:|---:|---:|\n"
	rows = "moirai-uring|**Moirai** io_uring;moirai-epoll|**Moirai** epoll (MOIRAI_IO=epoll);nginx|nginx, 2 worker processes;"
	rows = rows "go|Go net/http, GOMAXPROCS=2;tokio|tokio, 2 workers (hand-written HTTP);epoll|C epoll loop, 2 threads (ceiling)"
	nr = split(rows, row, ";")
	ng = get("h" SUBSEP "nginx" SUBSEP "rps"); ep = get("h" SUBSEP "epoll" SUBSEP "rps"); np = get("h" SUBSEP "nginx" SUBSEP "p99")
	for (j = 1; j <= nr; j++) {
		split(row[j], rw, "|")
		r = get("h" SUBSEP rw[1] SUBSEP "rps"); p5 = get("h" SUBSEP rw[1] SUBSEP "p50"); p9 = get("h" SUBSEP rw[1] SUBSEP "p99")
		o = o "| " rw[2] " | " num(r) " | " num(p5) " | " num(p9) " | " ratio(r, ng) " | " ratio(r, ep) " | " ratio(p9, np) " |\n"
		if (herr[rw[1]] > 0) errs = errs " " rw[2] " " herr[rw[1]] ";"
	}
	mr = get("h" SUBSEP "moirai-uring" SUBSEP "rps"); mp = get("h" SUBSEP "moirai-uring" SUBSEP "p99")
	x = ratio(mr, ng)
	o = o "\nTargets (Moirai io_uring): req/s >= 1.1x nginx: " x " (" mark(x != "n/a" && mr >= 1.1 * ng, x) "); "
	x = ratio(mr, ep)
	o = o "req/s >= the epoll loop: " x " (" mark(x != "n/a" && mr >= ep, x) "); "
	x = ratio(mp, np)
	o = o "p99 <= nginx: " x " (" mark(x != "n/a" && mp <= np, x) ").\n"
	if (errs != "") o = o "\nwrk reported socket errors or non-2xx answers (summed over the runs):" errs "\n"

	o = o sprintf("\n## 2. Mixed: the same load while the same process computes fib(27) again and again (%d-second runs)\n\n", dur)
	o = o "fib(27) is forked down to n < 18: Moirai `mr_join`, Go goroutines + `sync.WaitGroup`, rayon `rayon::join` (2 threads) beside tokio (2 workers). "
	o = o "req/s is the server'"'"'s own count over its lifetime, p50/p99 are wrk'"'"'s; chunks/s is completed fib(27)s per second, loaded (under wrk) and alone (no HTTP load).\n\n"
	o = o "| server | req/s unloaded | req/s loaded | p50 unloaded (us) | p50 loaded (us) | p99 unloaded (us) | p99 loaded (us) | p99 loaded / unloaded | chunks/s alone | chunks/s loaded | CPU loaded / alone |\n"
	o = o "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
	split("moirai go tokio", im, " ")
	split("**Moirai** (httpd -c)|Go net/http + goroutines|tokio + rayon", nm, "|")
	for (j = 1; j <= 3; j++) {
		b = "m" SUBSEP im[j]
		ru[j] = get(b SUBSEP "unloaded" SUBSEP "rps"); rl[j] = get(b SUBSEP "loaded" SUBSEP "rps")
		pu5 = get(b SUBSEP "unloaded" SUBSEP "p50"); pl5 = get(b SUBSEP "loaded" SUBSEP "p50")
		pu[j] = get(b SUBSEP "unloaded" SUBSEP "p99"); pl[j] = get(b SUBSEP "loaded" SUBSEP "p99")
		ca = get(b SUBSEP "alone" SUBSEP "cps"); cl = get(b SUBSEP "loaded" SUBSEP "cps")
		cr[j] = (ca > 0 && cl >= 0) ? cl / ca : -1
		o = o "| " nm[j] " | " num(ru[j]) " | " num(rl[j]) " | " num(pu5) " | " num(pl5) " | " num(pu[j]) " | " num(pl[j]) " | " ratio(pl[j], pu[j]) " | " num(ca) " | " num(cl) " | " (cr[j] < 0 ? "n/a" : sprintf("%.2f", cr[j])) " |\n"
	}
	m = pl[1] < 0 ? "n/a" : ""
	o = o "\nTargets (Moirai): loaded p99 below both peers'"'"': " num(pl[1]) " us vs " num(pl[2]) " and " num(pl[3]) " (" mark(pl[1] >= 0 && pl[1] < pl[2] && pl[1] < pl[3], m) "); "
	x = ratio(pl[1], pu[1])
	o = o "loaded p99 <= 1.5x unloaded: " x " (" mark(x != "n/a" && pl[1] <= 1.5 * pu[1], x) "); "
	o = o "loaded req/s above both peers'"'"': " num(rl[1]) " vs " num(rl[2]) " and " num(rl[3]) " (" mark(rl[1] >= 0 && rl[1] > rl[2] && rl[1] > rl[3], m) "); "
	o = o "CPU loaded/alone above both peers'"'"': " (cr[1] < 0 ? "n/a" : sprintf("%.2f", cr[1])) " vs " (cr[2] < 0 ? "n/a" : sprintf("%.2f", cr[2])) " and " (cr[3] < 0 ? "n/a" : sprintf("%.2f", cr[3]))
	o = o " (" mark(cr[1] >= 0 && cr[1] > cr[2] && cr[1] > cr[3], cr[1] < 0 ? "n/a" : "") ").\n"

	o = o sprintf("\n## 3. File I/O: 4 KiB random reads of a %d MiB file, IOPS (%d-second runs)\n\n", filemb, fdur)
	o = o "Moirai: QD fibers each calling `mr_pread` in a loop (tools/bench/io/file.c). fio: `--ioengine=io_uring --rw=randread --bs=4k --gtod_reduce=1 --norandommap`, 1 job at iodepth QD or 2 jobs at QD/2.\n\n"
	o = o "| reads | QD | **Moirai** 1 worker | **Moirai** 2 workers | fio 1 job | fio 2 jobs | Moirai best / fio best |\n|---|---:|---:|---:|---:|---:|---:|\n"
	nk = split(direct ? "cache direct" : "cache", kinds, " ")
	for (a = 1; a <= nk; a++)
		for (q = 32; q <= 128; q *= 4) {
			b = "f" SUBSEP kinds[a]
			m1 = get(b SUBSEP "moirai-1" SUBSEP q); m2 = get(b SUBSEP "moirai-2" SUBSEP q)
			f1 = get(b SUBSEP "fio-1" SUBSEP q); f2 = get(b SUBSEP "fio-2" SUBSEP q)
			o = o "| " (kinds[a] == "cache" ? "page cache" : "O_DIRECT, disk") " | " q " | " num(m1) " | " num(m2) " | " num(f1) " | " num(f2) " | " ratio(m1 > m2 ? m1 : m2, f1 > f2 ? f1 : f2) " |\n"
		}
	if (!direct) o = o "\nO_DIRECT was refused on this file system: no direct rows.\n"
	o = o "\nRatios are the first over the second: above 1.00 the first has more requests/s (or IOPS), or a higher latency.\n"
	printf "%s", o > out
	close(out)
}' "$RES" || die "tabulating the results failed"

echo >&2
cat "$BUILD/bench/io.md"
echo >&2
echo "io/run.sh: saved $1/bench/io.md" >&2
