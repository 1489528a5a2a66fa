#!/bin/sh
# tests/valgrind.sh BUILD_DIR - build tests/leak/leak.c against
# BUILD_DIR/libmoirai.a and run it under valgrind's memcheck: any definite or
# indirect leak, any memory error, or a wrong result fails. Prints KTAP and
# ends with "N passed, N failed, N skipped"; exits non-zero on failure.
# Paths are relative to this script (the repository it lives in).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${1:?usage: valgrind.sh BUILD_DIR}
case "$build" in
/*) ;;
*) build=$(pwd)/$build ;;
esac
lib=$build/libmoirai.a
out=$build/valgrind/leak # not in tests/: run.sh runs everything there
CC=${CC:-gcc}

echo "KTAP version 1"
echo "# valgrind leak check: $lib"
echo "1..1"
fail() {
	echo "not ok 1 valgrind_leak_check # $1"
	echo "0 passed, 1 failed, 0 skipped"
	exit 1
}
if [ ! -f "$lib" ]; then
	fail "no $lib (build it first: make lib BUILD=...)"
fi
if ! command -v valgrind >/dev/null 2>&1; then
	echo "ok 1 valgrind_leak_check # SKIP valgrind not installed"
	echo "0 passed, 0 failed, 1 skipped"
	exit 0
fi
mkdir -p "$(dirname "$out")"
# Valgrind cannot run sanitizer builds.
case "$build" in
*asan*) fail "valgrind cannot run an ASan build ($build); use the release build" ;;
*tsan*) fail "valgrind cannot run a TSan build ($build); use the release build" ;;
esac
if ! "$CC" -std=gnu17 -O1 -g -Wall -Wextra -Werror -pthread -I"$root/include" \
	-D_GNU_SOURCE "$here/leak/leak.c" -o "$out" "$lib" -pthread -lm; then
	fail "cannot compile tests/leak/leak.c"
fi
log=$out.valgrind.log
start=$(date +%s)
valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect \
	--show-leak-kinds=definite,indirect --error-exitcode=1 --fair-sched=yes \
	--log-file="$log" "$out"
rc=$?
end=$(date +%s)
summary=$(grep -E "ERROR SUMMARY|definitely lost|indirectly lost|All heap blocks|in use at exit" "$log" | sed 's/^==[0-9]*== */# /')
[ -n "$summary" ] && printf '%s\n' "$summary"
if [ $rc -ne 0 ]; then
	sed 's/^/# /' "$log" | tail -n 60
	echo "not ok 1 valgrind_leak_check # exit status $rc ($((end - start))s)"
	echo "0 passed, 1 failed, 0 skipped"
	exit 1
fi
echo "ok 1 valgrind_leak_check # $((end - start))s"
echo "1 passed, 0 failed, 0 skipped"
exit 0
