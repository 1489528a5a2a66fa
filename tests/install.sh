#!/bin/sh
# tests/install.sh - `make install` into a staging prefix (not a directory
# the dynamic loader searches), then use it the way README.md says:
#  - build examples/hello.c with pkg-config against the shared library, the
#    run path taken from pkg-config (-Wl,-rpath,$(pkg-config --variable=libdir
#    moirai)), and run it with no LD_LIBRARY_PATH: it must find the staged
#    libmoirai.so.0 by itself;
#  - the same program without the run path, with LD_LIBRARY_PATH;
#  - a C++ file that fills options structs with MR_OPTS, compiled with
#    -Wall -Wextra -Werror (skipped when there is no C++ compiler).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
stage="$root/build/stage"
rm -rf "$stage"
make -C "$root" --no-print-directory install PREFIX="$stage" >/dev/null
export PKG_CONFIG_PATH="$stage/lib/pkgconfig"
unset LD_LIBRARY_PATH
libdir=$(pkg-config --variable=libdir moirai)
[ "$libdir" = "$stage/lib" ] || {
	echo "not ok - install: pkg-config says libdir=$libdir, expected $stage/lib"
	exit 1
}

fail() {
	echo "not ok - install: $*"
	exit 1
}

# check_hello PROG [ENV...]: PROG loads the staged library and prints fib(30).
check_hello() {
	prog=$1
	shift
	lib=$(env "$@" ldd "$prog" | awk '$1 == "libmoirai.so.0" { print $3 }')
	[ "$lib" = "$libdir/libmoirai.so.0" ] ||
		fail "$prog loads libmoirai.so.0 from '$lib', not from $libdir"
	out=$(env "$@" MOIRAI_WORKERS=2 "$prog") || fail "$prog failed: $out"
	case "$out" in
	*"fib(30) = 832040"*) ;;
	*) fail "$prog: unexpected output: $out" ;;
	esac
}

# shellcheck disable=SC2046 # pkg-config's output is a list of flags
cc "$root/examples/hello.c" $(pkg-config --cflags --libs moirai) \
	-Wl,-rpath,"$(pkg-config --variable=libdir moirai)" -o "$stage/hello"
check_hello "$stage/hello"
echo "ok - install + pkg-config + shared library found through the run path"

# shellcheck disable=SC2046
cc "$root/examples/hello.c" $(pkg-config --cflags --libs moirai) -o "$stage/hello-norpath"
check_hello "$stage/hello-norpath" LD_LIBRARY_PATH="$libdir"
echo "ok - install + pkg-config + shared library found through LD_LIBRARY_PATH"

cxx=${CXX:-c++}
if ! command -v "$cxx" >/dev/null 2>&1; then
	echo "ok - C++ and MR_OPTS # SKIP no C++ compiler ($cxx)"
	exit 0
fi
cat >"$stage/opts.cpp" <<'EOF'
#include <moirai/moirai.h>
#include <cstdio>

MR_OPTS(mr_fiber_opts, at_namespace_scope, .stack_size = 1 << 20);

int main()
{
	MR_OPTS(mr_config, cfg, .workers = 2);
	MR_OPTS(mr_config, plain);
	MR_OPTS(mr_fiber_opts, fo, .stack_size = 1 << 20);
	bool ok = cfg.sz == sizeof(cfg) && cfg.workers == 2 && cfg.spin_us == 0 &&
		  plain.sz == sizeof(plain) && plain.workers == 0 && fo.sz == sizeof(fo) &&
		  fo.stack_size == 1 << 20 && at_namespace_scope.sz == sizeof(fo);
	std::puts(ok ? "MR_OPTS ok" : "MR_OPTS wrong");
	return ok ? 0 : 1;
}
EOF
for std in "" -std=c++20; do
	# shellcheck disable=SC2046,SC2086 # $std: empty or one flag
	"$cxx" $std -Wall -Wextra -Werror "$stage/opts.cpp" $(pkg-config --cflags --libs moirai) \
		-Wl,-rpath,"$libdir" -o "$stage/opts" || fail "C++ ${std:-(default standard)}: MR_OPTS does not compile cleanly with -Wall -Wextra -Werror"
	out=$("$stage/opts") || fail "C++ ${std:-(default standard)}: $out"
done
echo "ok - C++ with -Wall -Wextra -Werror fills options with MR_OPTS"
