#!/bin/sh
# tools/deps.sh - install, only when missing, the Debian packages a make target needs.
#
#   tools/deps.sh build   compiler and make (gcc's sanitizer runtimes come with gcc)
#   tools/deps.sh check   build + what `make check` needs (valgrind, clang-19 for the clang build)
#   tools/deps.sh bench   build + the peers the benchmarks compare against
#   tools/deps.sh aarch64 build + an aarch64 cross compiler and qemu-user (make check-aarch64)
#
# Idempotent: a package already installed is not touched, and apt-get runs
# only when something is missing. Needs root (or sudo) only in that case.
set -eu

want=""
case "${1:-build}" in
build) want="gcc make pkg-config systemtap-sdt-dev" ;;
check) want="gcc make pkg-config systemtap-sdt-dev valgrind clang-19 bpftrace" ;;
bench) want="gcc g++ make pkg-config systemtap-sdt-dev libtbb-dev cargo librust-rayon-dev libboost-context-dev golang-go"
	want="$want libck-dev libzmq3-dev libnng-dev wrk nginx fio curl librust-tokio-dev" ;;
aarch64) want="gcc make pkg-config systemtap-sdt-dev gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
	want="$want qemu-user-static" ;;
*) echo "usage: $0 build|check|bench|aarch64" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

echo "deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have empty package lists; retry once after an update.
# shellcheck disable=SC2086
$SUDO apt-get install -y --no-install-recommends $missing >/dev/null 2>&1 ||
	{ $SUDO apt-get update >/dev/null && $SUDO apt-get install -y --no-install-recommends $missing >/dev/null; }
