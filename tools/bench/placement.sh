#!/bin/sh
# tools/bench/placement.sh BUILD_DIR - a 2-worker runtime against the ideal
# of its two CPUs (placement.c), pinned (MR_PIN_HOME) and unpinned (the default), without
# and with a competing CPU hog, 20 rounds each; the last line of each run
# says how many rounds reached 90% of the ideal. Writes
# BUILD_DIR/bench/placement.md. Needs 2 CPUs in the affinity mask.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=$1/bench
mkdir -p "$OUT"
${BENCH_CC:-gcc} -O2 -std=gnu17 -I "$ROOT/include" "$HERE/placement.c" "$1/libmoirai.a" \
	-o "$OUT/placement" -pthread -lm
if [ "$(nproc)" -lt 2 ]; then
	echo "placement.sh: needs 2 CPUs, skipped" >&2
	exit 0
fi
{
	echo "## 2-worker fork-join against the ideal of its two CPUs (fib(30), 20 rounds)"
	echo
	echo "| hog | pinned (MR_PIN_HOME): rounds >= 90% | unpinned (default): rounds >= 90% |"
	echo "|---|---|---|"
	for h in none free b; do
		p=$("$OUT/placement" -r 20 -m pin -H "$h" | tail -n 1)
		u=$("$OUT/placement" -r 20 -m default -H "$h" | tail -n 1)
		echo "| $h | ${p#reached: } | ${u#reached: } |"
	done
} >"$OUT/placement.md"
cat "$OUT/placement.md"
echo "placement.sh: saved $OUT/placement.md" >&2
