#!/bin/sh
# tests/install.sh - `make install` into a staging prefix, then build
# examples/hello.c against it with pkg-config and the shared library, and run it.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
stage="$root/build/stage"
rm -rf "$stage"
make -C "$root" --no-print-directory install PREFIX="$stage" >/dev/null
export PKG_CONFIG_PATH="$stage/lib/pkgconfig"
# shellcheck disable=SC2046
cc "$root/examples/hello.c" $(pkg-config --cflags --libs moirai) -o "$stage/hello"
out=$(LD_LIBRARY_PATH="$stage/lib" MOIRAI_WORKERS=2 "$stage/hello")
case "$out" in
*"fib(30) = 832040"*) echo "ok - install + pkg-config + shared library" ;;
*) echo "not ok - install: unexpected output: $out"; exit 1 ;;
esac
