#!/bin/sh
# tests/run.sh DIR [quick] - run every test binary in DIR, print their KTAP,
# and end with the totals: "N passed, N failed, N skipped". Exit 1 on any
# failure. Sanitizer builds (DIR under build/asan or build/tsan) run scaled
# down sizes with longer timeouts. "quick" runs a smaller scale (smoke run).
set -u
dir=${1:?usage: run.sh DIR [quick]}
case "$dir" in
*tsan*) export MR_TEST_SCALE=${MR_TEST_SCALE:-10} MR_TEST_TIMEOUT_SCALE=5
	export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 atexit_sleep_ms=0 ${TSAN_OPTIONS:-}" ;;
*asan*) export MR_TEST_SCALE=${MR_TEST_SCALE:-4} MR_TEST_TIMEOUT_SCALE=3
	export ASAN_OPTIONS="detect_leaks=1 abort_on_error=0 ${ASAN_OPTIONS:-}"
	export UBSAN_OPTIONS="print_stacktrace=1 halt_on_error=1 ${UBSAN_OPTIONS:-}" ;;
esac
[ "${2:-}" = quick ] && export MR_TEST_SCALE=${MR_TEST_SCALE:-10}
pass=0 fail=0 skip=0 bad=""
for t in "$dir"/*; do
	[ -x "$t" ] && [ -f "$t" ] || continue
	case "$t" in *.d) continue ;; esac
	out=$("$t" 2>&1)
	rc=$?
	printf '%s\n' "$out"
	last=$(printf '%s\n' "$out" | tail -n 1)
	set -- $last
	if [ $# -ge 6 ] && [ "$2" = passed, ]; then
		pass=$((pass + $1)); fail=$((fail + $3)); skip=$((skip + $5))
	else
		fail=$((fail + 1))
	fi
	[ $rc -ne 0 ] && bad="$bad $(basename "$t")"
done
echo "# suite $dir: failing binaries:${bad:- none}"
echo "$pass passed, $fail failed, $skip skipped"
[ -z "$bad" ] && [ $fail -eq 0 ]
