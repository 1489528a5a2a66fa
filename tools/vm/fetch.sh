#!/bin/sh
# tools/vm/fetch.sh - fill the VM lab's cache: a kernel with sched_ext, libbpf and bpftool.
#
# Usage: tools/vm/fetch.sh [kernel|old-kernel|bpf|all|mirror]   (default: all)
#
# The cache is ${MOIRAI_VM_CACHE:-$HOME/.cache/moirai-vm}, outside the repository.
# Packages come from Debian's backports through a private apt setup kept in the cache
# ($CACHE/apt: its own sources.list, package lists and apt cache). Its mirror is the
# one the machine's own apt sources use for Debian (/etc/apt/sources.list and
# /etc/apt/sources.list.d/, one-line or deb822 format, as apt reads them: see
# `mirror`), or MOIRAI_VM_MIRROR (a URI such as the one after "deb" in sources.list);
# when neither names one the script fails and says so. The system's apt configuration
# is never changed. When the cache is complete the script touches no network and
# returns at once; MOIRAI_VM_REFRESH=1 makes it look for a newer kernel/libbpf/bpftool
# in the archive and replace what changed.
#
#   mirror  print the mirror the private apt setup would use, and why, and exit.
#           The machine's sources give the first URI (in apt's order) whose component
#           main is Debian's: Origin and Label "Debian" in its Release file when apt
#           has downloaded that, otherwise a Debian suite name (the host's codename,
#           stable, testing, unstable, sid, with -updates or -backports; never
#           -security, which is not a full mirror). APT_CONFIG is honoured, so
#           APT_CONFIG=FILE with Dir::Etc::SourceList/SourceParts shows what other
#           sources would give.
#   kernel  the newest linux-binary-<ver>+deb13-cloud-amd64 from trixie-backports and the
#           config from its companion linux-base-<ver>+deb13-cloud-amd64. The config must
#           have CONFIG_SCHED_CLASS_EXT, DEBUG_INFO_BTF, NUMA and BPF_SYSCALL =y. Gives
#             $CACHE/kernel/vmlinuz   bzImage for qemu -kernel
#             $CACHE/kernel/vmlinux   the decompressed ELF kernel, with .BTF (for vmlinux.h)
#             $CACHE/kernel/config    its .config
#             $CACHE/kernel/version   e.g. "7.3.4+deb13-cloud-amd64"
#           Only those files are kept (the modules in linux-base are never unpacked).
#   old-kernel  the oldest kernel series trixie-backports has (newest patch release of it),
#           or the series MOIRAI_VM_OLD_KERNEL names (e.g. 6.19): the other kernel the
#           scheduler is built against (make check-bpf-kernels) and booted on (make
#           check-vm-old). Its linux-base (the config) is often gone from the archive, so
#           sched_ext is checked in its BTF (struct sched_ext_ops) instead. Gives
#             $CACHE/kernel-old/vmlinuz   bzImage
#             $CACHE/kernel-old/btf       its raw BTF (the .BTF section, ~5 MB; the
#                                         60 MB vmlinux is not kept)
#             $CACHE/kernel-old/version   e.g. "6.19.14+deb13-cloud-amd64"
#           Not part of `all`. Debian's 6.12 kernels (trixie, bookworm-backports) are built
#           without CONFIG_SCHED_CLASS_EXT, so none of them can serve.
#   bpf     libbpf-dev + libbpf1 (>= 1.4) and bpftool 7.5.x from bookworm-backports,
#           unpacked in $CACHE/bpf/root (usr/include/bpf/libbpf.h,
#           usr/lib/x86_64-linux-gnu/libbpf.a, usr/sbin/bpftool), and
#             $CACHE/bpf/env      for sh:   . $CACHE/bpf/env
#                                  LIBBPF_CFLAGS, LIBBPF_LIBS, BPFTOOL, LIBBPF_VERSION,
#                                  BPFTOOL_VERSION
#             $CACHE/bpf/env.mk   the same for make:  include $CACHE/bpf/env.mk
#           Also installs on the host, when missing, what linking libbpf.a and compiling
#           BPF need: libelf-dev zlib1g-dev clang-19 llvm-19.
#
# Exit codes: 0 ok; 3 the archive cannot be reached, a package is missing from it or a
# host package cannot be installed ("SKIP: <reason>" on stderr); 1 anything else (e.g. a
# kernel config without sched_ext: the message names the option).
set -eu
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
# shellcheck source=tools/vm/lib.sh
. "$here/lib.sh"

usage() { sed -n '2,/^set -eu/{/^#/s/^# \{0,1\}//p}' "$0"; }

what=${1:-all}
case $what in
kernel | old-kernel | bpf | all | mirror) ;;
-h | --help) usage; exit 0 ;;
*) usage >&2; exit 1 ;;
esac

APT_DIR=$VM_CACHE/apt
REFRESH=${MOIRAI_VM_REFRESH:-0}
KERNEL_OPTS="CONFIG_SCHED_CLASS_EXT CONFIG_DEBUG_INFO_BTF CONFIG_NUMA CONFIG_BPF_SYSCALL"

mkdir -p "$VM_CACHE"
# One fetch at a time per cache: parallel `make check`s share it.
exec 9>"$VM_CACHE/.lock"
flock 9

tmp=""
cleanup() { if [ -n "$tmp" ]; then rm -rf "$tmp"; fi; }
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# papt apt-get|apt-cache ARGS...: apt with the private sources, lists and cache.
papt() {
	_cmd=$1
	shift
	if [ "$(id -u)" -eq 0 ]; then
		# Root would hand downloads to the _apt user, who cannot enter $HOME.
		set -- -o APT::Sandbox::User=root "$@"
	fi
	"$_cmd" -o Dir::Etc::SourceList="$APT_DIR/sources.list" \
		-o Dir::Etc::SourceParts=/dev/null \
		-o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null \
		-o Dir::State::Lists="$APT_DIR/lists" -o Dir::Cache="$APT_DIR/cache" \
		-o Debug::NoLocking=1 "$@"
}

# system_mirror: print the URI of the machine's Debian archive and, on a second line,
# how it was chosen; nothing when its apt sources name none. apt parses the sources
# (both formats, Enabled: no, options) and lists their index targets in its order;
# with Release information only those whose Release file it has downloaded.
system_mirror() {
	command -v apt-get >/dev/null 2>&1 || return 0
	# shellcheck disable=SC2016 # $(...) are apt's fields, not the shell's
	_fmt='$(TARGET_OF)|$(IDENTIFIER)|$(COMPONENT)|$(RELEASE)|$(ORIGIN)|$(LABEL)|$(REPO_URI)'
	_codename=$( (. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}") || true)
	{
		apt-get indextargets --format "$_fmt" 2>/dev/null
		apt-get indextargets --no-release-info --format "$_fmt" 2>/dev/null
	} | awk -F'|' -v cn="$_codename" '
		$1 != "deb" || $2 != "Packages" || $3 != "main" { next }
		$5 == "Debian" && $6 == "Debian" {
			print $7
			print "its Release file says Origin: Debian, Label: Debian (suite " $4 ")"
			found = 1
			exit
		}
		guess == "" && $4 !~ /-security$/ &&
		($4 ~ /^(stable|oldstable|testing|unstable|sid)(-updates|-backports)?$/ ||
		 (cn != "" && ($4 == cn || $4 == cn "-updates" || $4 == cn "-backports"))) {
			guess = $7
			why = "its suite " $4 " is a Debian suite (apt has not downloaded its Release file)"
		}
		END { if (!found && guess != "") { print guess; print why } }'
}

# mirror: the mirror for the private sources (MOIRAI_VM_MIRROR, else the system's).
mirror() {
	if [ -n "${MOIRAI_VM_MIRROR:-}" ]; then
		echo "$MOIRAI_VM_MIRROR"
		return 0
	fi
	_m=$(system_mirror | head -n 1)
	if [ -z "$_m" ]; then
		eval "$(apt-config shell _list Dir::Etc::SourceList/f _parts Dir::Etc::SourceParts/d \
			2>/dev/null)"
		vm_die "the machine's apt sources (${_list:-?}, ${_parts:-?}) name no Debian" \
			"archive (a deb entry with component main and a Debian suite): add one," \
			"or set MOIRAI_VM_MIRROR to a Debian mirror's URI"
	fi
	echo "$_m"
}

apt_ready=0
# apt_update: refresh the private package lists, once per run.
apt_update() {
	[ "$apt_ready" = 1 ] && return 0
	_mirror=$(mirror) || exit
	mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
	cat >"$APT_DIR/sources.list" <<-EOF
		# written by tools/vm/fetch.sh: the only sources its private apt setup reads;
		# the mirror is the one the machine's apt sources use (or MOIRAI_VM_MIRROR)
		deb $_mirror trixie-backports main
		deb $_mirror bookworm-backports main
	EOF
	vm_say "private apt sources use the mirror $_mirror"
	vm_say "updating the private package lists in $APT_DIR"
	if ! papt apt-get -q update >"$APT_DIR/update.log" 2>&1 ||
		grep -Eq '^(W|E): (Failed to fetch|Some index files failed)' "$APT_DIR/update.log"; then
		for s in trixie-backports bookworm-backports; do
			ls "$APT_DIR/lists/"*"_dists_${s}_main_binary-amd64_Packages"* >/dev/null 2>&1 ||
				vm_skip "cannot reach the Debian archive ($s): $(grep -E '^(W|E):' \
					"$APT_DIR/update.log" | head -n 1)"
		done
		vm_say "apt-get update failed; using the package lists from an earlier run"
	fi
	apt_ready=1
}

# newest: the highest Debian version among the lines of stdin.
newest() {
	_best=""
	while read -r _v; do
		[ -z "$_v" ] && continue
		if [ -z "$_best" ] || dpkg --compare-versions "$_v" gt "$_best"; then
			_best=$_v
		fi
	done
	echo "$_best"
}

# versions_in PKG SUITE: the versions of PKG that SUITE offers, one a line.
versions_in() {
	papt apt-cache madison "$1" 2>/dev/null |
		awk -F'|' -v s="$2" '$3 ~ (" " s "/") { gsub(/ /, "", $2); print $2 }'
}

# download DIR PKG[=VER]...: apt-get download into DIR; a failure is a skip.
download() {
	_dir=$1
	shift
	if ! (cd "$_dir" && papt apt-get -q download "$@") >"$_dir/download.log" 2>&1; then
		vm_skip "cannot download $*: $(grep -E '^(W|E):' "$_dir/download.log" | head -n 1)"
	fi
}

# deb_member DEB GLOB OUT: extract the one file of DEB matching GLOB to OUT.
deb_member() {
	_t=$(dirname -- "$3")/member.$$
	rm -rf "$_t"
	mkdir -p "$_t"
	dpkg-deb --fsys-tarfile "$1" | tar -x -C "$_t" --wildcards "$2" 2>/dev/null || true
	_f=$(find "$_t" -type f | head -n 1)
	[ -n "$_f" ] || vm_die "$(basename -- "$1") has no file matching $2"
	mv "$_f" "$3"
	rm -rf "$_t"
}

is_elf() {
	[ "$(head -c 4 "$1" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]
}

# ---------------------------------------------------------------- kernel
kernel_complete() {
	for f in vmlinuz vmlinux config version; do
		[ -s "$VM_CACHE/kernel/$f" ] || return 1
	done
	[ -e "$VM_CACHE/kernel/.complete" ]
}

fetch_kernel() {
	if kernel_complete && [ "$REFRESH" != 1 ]; then
		return 0
	fi
	vm_need zstd binutils
	apt_update
	# Names like linux-binary-7.3.4+deb13-cloud-amd64; not -unsigned-, -dbg, -rt-, plain.
	vers=$(papt apt-cache pkgnames linux-binary- |
		sed -n 's/^linux-binary-\([0-9][0-9.]*+deb13-cloud-amd64\)$/\1/p' | sort -rV)
	ver=""
	for v in $vers; do
		if papt apt-cache pkgnames "linux-base-$v" | grep -qx "linux-base-$v"; then
			ver=$v
			break
		fi
	done
	[ -n "$ver" ] || vm_skip "trixie-backports has no linux-binary-<ver>+deb13-cloud-amd64 with its linux-base"
	if kernel_complete && [ "$(cat "$VM_CACHE/kernel/version")" = "$ver" ]; then
		vm_say "kernel $ver is the newest; cache unchanged"
		return 0
	fi
	vm_say "fetching kernel $ver"
	tmp=$(mktemp -d "$VM_CACHE/tmp.XXXXXX")
	download "$tmp" "linux-binary-$ver" "linux-base-$ver"
	out=$tmp/kernel
	mkdir -p "$out"
	deb_member "$tmp"/linux-binary-*.deb "*/modules/$ver/vmlinuz" "$out/vmlinuz"
	deb_member "$tmp"/linux-base-*.deb "*/modules/$ver/config" "$out/config"
	rm -f "$tmp"/*.deb
	for o in $KERNEL_OPTS; do
		grep -qx "$o=y" "$out/config" ||
			vm_die "kernel $ver: $o is not =y in its config ($(grep -E "^(# )?${o}[= ]" \
				"$out/config" || echo absent)); cannot use it"
	done
	echo "$ver" >"$out/version"
	unzstd_vmlinux "$out/vmlinuz" "$out/vmlinux" ||
		vm_die "no zstd-compressed ELF found in the vmlinuz of $ver"
	readelf -S "$out/vmlinux" | grep -q '\.BTF' || vm_die "vmlinux of $ver has no .BTF section"
	touch "$out/.complete"
	rm -rf "$VM_CACHE/kernel"
	mv "$out" "$VM_CACHE/kernel"
	rm -rf "$tmp"
	tmp=""
	vm_say "kernel $ver: $VM_CACHE/kernel/{vmlinuz,vmlinux,config,version}"
}

# unzstd_vmlinux VMLINUZ OUT: the ELF kernel inside a bzImage (a zstd frame: find its
# magic, decompress, check).
unzstd_vmlinux() {
	# shellcheck disable=SC2013 # offsets are numbers
	for off in $(LC_ALL=C grep -obUaP '\x28\xb5\x2f\xfd' "$1" | cut -d: -f1); do
		tail -c +$((off + 1)) "$1" | zstdcat -q --long=31 >"$2" 2>/dev/null || true
		is_elf "$2" && return 0
	done
	return 1
}

old_kernel_complete() {
	for f in vmlinuz btf version; do
		[ -s "$VM_CACHE/kernel-old/$f" ] || return 1
	done
	[ -e "$VM_CACHE/kernel-old/.complete" ]
}

fetch_old_kernel() {
	if old_kernel_complete && [ "$REFRESH" != 1 ] &&
		case $(cat "$VM_CACHE/kernel-old/version") in
		"${MOIRAI_VM_OLD_KERNEL:-}"*) true ;;
		*) false ;;
		esac; then
		return 0
	fi
	vm_need zstd binutils
	fetch_bpf
	# shellcheck source=/dev/null
	. "$VM_CACHE/bpf/env"
	apt_update
	vers=$(papt apt-cache pkgnames linux-binary- |
		sed -n 's/^linux-binary-\([0-9][0-9.]*+deb13-cloud-amd64\)$/\1/p' | sort -V)
	series=${MOIRAI_VM_OLD_KERNEL:-$(echo "$vers" | head -n 1 | cut -d. -f1-2)}
	ver=$(echo "$vers" | grep "^${series}[.+]" | tail -n 1)
	[ -n "$ver" ] || vm_skip "trixie-backports has no linux-binary-${series}.*+deb13-cloud-amd64"
	if old_kernel_complete && [ "$(cat "$VM_CACHE/kernel-old/version")" = "$ver" ]; then
		vm_say "old kernel $ver is the newest of its series; cache unchanged"
		return 0
	fi
	vm_say "fetching the old kernel $ver"
	tmp=$(mktemp -d "$VM_CACHE/tmp.XXXXXX")
	download "$tmp" "linux-binary-$ver"
	out=$tmp/kernel-old
	mkdir -p "$out"
	deb_member "$tmp"/linux-binary-*.deb "*vmlinuz*" "$out/vmlinuz"
	rm -f "$tmp"/*.deb
	unzstd_vmlinux "$out/vmlinuz" "$tmp/vmlinux" ||
		vm_die "no zstd-compressed ELF found in the vmlinuz of $ver"
	if ! objcopy -O binary --only-section=.BTF "$tmp/vmlinux" "$out/btf" 2>/dev/null ||
		[ ! -s "$out/btf" ]; then
		vm_die "vmlinux of $ver has no .BTF section"
	fi
	rm -f "$tmp/vmlinux"
	# No config to read: sched_ext's ops type in the BTF says CONFIG_SCHED_CLASS_EXT=y.
	"$BPFTOOL" btf dump file "$out/btf" format raw | grep -q "STRUCT 'sched_ext_ops'" ||
		vm_die "kernel $ver has no sched_ext (no sched_ext_ops in its BTF); cannot use it"
	echo "$ver" >"$out/version"
	touch "$out/.complete"
	rm -rf "$VM_CACHE/kernel-old"
	mv "$out" "$VM_CACHE/kernel-old"
	rm -rf "$tmp"
	tmp=""
	vm_say "old kernel $ver: $VM_CACHE/kernel-old/{vmlinuz,btf,version}"
}

# ---------------------------------------------------------------- bpf
BPF_ROOT=$VM_CACHE/bpf/root
LIBBPF_H=usr/include/bpf/libbpf.h
LIBBPF_A=usr/lib/x86_64-linux-gnu/libbpf.a
BPFTOOL_BIN=usr/sbin/bpftool

bpf_complete() {
	for f in "$LIBBPF_H" "$LIBBPF_A" "$BPFTOOL_BIN"; do
		[ -e "$BPF_ROOT/$f" ] || return 1
	done
	[ -s "$VM_CACHE/bpf/env" ] && [ -s "$VM_CACHE/bpf/env.mk" ] && [ -e "$VM_CACHE/bpf/.complete" ]
}

fetch_bpf() {
	# Host side of a BPF build: linking libbpf.a needs libelf and zlib.
	vm_need libelf-dev zlib1g-dev clang-19 llvm-19
	if bpf_complete && [ "$REFRESH" != 1 ]; then
		return 0
	fi
	apt_update
	# bookworm-backports only: a trixie build would want a newer glibc than the host's.
	lver=$(versions_in libbpf-dev bookworm-backports | newest)
	[ -n "$lver" ] || vm_skip "bookworm-backports has no libbpf-dev"
	dpkg --compare-versions "$lver" ge 1:1.4 || vm_die "libbpf-dev $lver is older than 1.4"
	versions_in libbpf1 bookworm-backports | grep -qx "$lver" ||
		vm_skip "bookworm-backports has no libbpf1 $lver"
	bver=$(versions_in bpftool bookworm-backports | grep '^7\.5\.' | newest)
	[ -n "$bver" ] || vm_skip "bookworm-backports has no bpftool 7.5.x"
	if bpf_complete && grep -qx "LIBBPF_DEB=$lver" "$VM_CACHE/bpf/env" &&
		grep -qx "BPFTOOL_DEB=$bver" "$VM_CACHE/bpf/env"; then
		vm_say "libbpf $lver and bpftool $bver are the newest; cache unchanged"
		return 0
	fi
	vm_say "fetching libbpf $lver and bpftool $bver"
	tmp=$(mktemp -d "$VM_CACHE/tmp.XXXXXX")
	download "$tmp" "libbpf-dev=$lver" "libbpf1=$lver" "bpftool=$bver"
	out=$tmp/bpf
	mkdir -p "$out/root"
	for deb in "$tmp"/*.deb; do
		dpkg -x "$deb" "$out/root"
	done
	rm -rf "$out/root/usr/share/man" "$out/root/usr/share/bash-completion" "$tmp"/*.deb
	for f in "$LIBBPF_H" "$LIBBPF_A" "$BPFTOOL_BIN"; do
		[ -e "$out/root/$f" ] || vm_die "$f missing after unpacking libbpf-dev/libbpf1/bpftool"
	done
	is_elf "$out/root/$BPFTOOL_BIN" || vm_die "$BPFTOOL_BIN is not an ELF executable"
	if ldd "$out/root/$BPFTOOL_BIN" | grep -q 'not found'; then
		vm_die "bpftool needs libraries the host lacks: $(ldd "$out/root/$BPFTOOL_BIN" |
			grep 'not found' | tr -s ' \n' ' ')"
	fi
	# Paths name the final place, not $tmp.
	root=$BPF_ROOT
	uver=${lver#*:}
	uver=${uver%%-*}
	ubver=${bver%%+*}
	cat >"$out/env" <<-EOF
		# written by tools/vm/fetch.sh bpf; source it: . $VM_CACHE/bpf/env
		LIBBPF_CFLAGS="-I$root/usr/include"
		LIBBPF_LIBS="$root/$LIBBPF_A -lelf -lz"
		BPFTOOL="$root/$BPFTOOL_BIN"
		LIBBPF_VERSION=$uver
		BPFTOOL_VERSION=$ubver
		LIBBPF_DEB=$lver
		BPFTOOL_DEB=$bver
	EOF
	cat >"$out/env.mk" <<-EOF
		# written by tools/vm/fetch.sh bpf; for make: include $VM_CACHE/bpf/env.mk
		LIBBPF_CFLAGS := -I$root/usr/include
		LIBBPF_LIBS := $root/$LIBBPF_A -lelf -lz
		BPFTOOL := $root/$BPFTOOL_BIN
		LIBBPF_VERSION := $uver
		BPFTOOL_VERSION := $ubver
	EOF
	touch "$out/.complete"
	rm -rf "$VM_CACHE/bpf"
	mv "$out" "$VM_CACHE/bpf"
	rm -rf "$tmp"
	tmp=""
	vm_say "libbpf $uver: $root/$LIBBPF_H, $root/$LIBBPF_A"
	vm_say "bpftool $ubver: $root/$BPFTOOL_BIN; variables in $VM_CACHE/bpf/env"
}

case $what in
mirror)
	mirror
	if [ -n "${MOIRAI_VM_MIRROR:-}" ]; then
		vm_say "from MOIRAI_VM_MIRROR"
	else
		vm_say "from the machine's apt sources: $(system_mirror | sed -n 2p)"
	fi
	;;
kernel) fetch_kernel ;;
old-kernel) fetch_old_kernel ;;
bpf) fetch_bpf ;;
all)
	fetch_kernel
	fetch_bpf
	;;
esac
