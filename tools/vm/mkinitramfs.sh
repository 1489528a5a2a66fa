#!/bin/sh
# tools/vm/mkinitramfs.sh - build the VM lab's initramfs (gzip'd newc cpio).
#
# Usage: tools/vm/mkinitramfs.sh OUT.cpio.gz DIR
#
# The image holds:
#   /init                 tools/vm/init: mounts, runs /moirai/run-all, powers off
#   /bin/busybox          Debian's busybox-static, with a symlink per applet
#   /moirai/...           a copy of everything under DIR (symlinks followed); the caller
#                         stages run-all, tests/ and the binaries under test there
#   /usr/sbin/bpftool     the cache's bpftool 7.5 (tools/vm/fetch.sh bpf)
#   /usr/bin/hackbench    from the host's rt-tests
#   /usr/bin/stress-ng    from the host's stress-ng
#   shared libraries      every library `ldd` lists for any ELF file in the image
#                         (those under DIR too), at the path ldd gives, plus the dynamic
#                         loader and libgcc_s (glibc dlopens it for thread cancellation);
#                         /etc/ld.so.cache is built for the image
# No kernel modules: the kernel (7.3 cloud) has everything the lab uses built in.
# Host packages installed when missing: busybox-static rt-tests stress-ng cpio.
# A library that a binary under DIR finds through an $ORIGIN runpath inside DIR is
# already in /moirai and is not copied again.
#
# OUT is written atomically. Exit codes: 0 ok; 3 a host package or the cache cannot be
# had ("SKIP:" on stderr); 1 anything else (e.g. a library ldd cannot find).
set -eu
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
# shellcheck source=tools/vm/lib.sh
. "$here/lib.sh"

if [ $# -ne 2 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
	sed -n '2,/^set -eu/{/^#/s/^# \{0,1\}//p}' "$0" >&2
	exit 1
fi
out=$1
[ -d "$2" ] || vm_die "$2 is not a directory"
dir=$(CDPATH='' cd -- "$2" && pwd -P)

vm_need busybox-static rt-tests stress-ng cpio
"$here/fetch.sh" bpf
# shellcheck source=/dev/null
. "$VM_CACHE/bpf/env"

work=$(mktemp -d "${TMPDIR:-/tmp}/moirai-initramfs.XXXXXX")
root=$work/root
trap 'rm -rf "$work" "$out.tmp.$$"' EXIT
trap 'exit 1' HUP INT TERM

is_elf() {
	[ "$(head -c 4 "$1" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]
}

# put SRC DEST: copy the file SRC (symlinks followed) to DEST inside the image.
put() {
	mkdir -p "$root/$(dirname -- "$2")"
	cp -L "$1" "$root/$2"
}

for d in bin sbin usr/bin usr/sbin etc proc sys dev tmp run root moirai \
	lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu lib64; do
	mkdir -p "$root/$d"
done

put /bin/busybox /bin/busybox
# Applet links, e.g. "usr/bin/timeout" (relative to / in the image), made in one perl
# process (perl-base is essential in Debian): ~400 ln forks took seconds.
"$root/bin/busybox" --list-full | (cd "$root" && perl -nle '
	my $d = $_; $d =~ s{/[^/]*$}{};
	mkdir $d unless $d eq $_ || -d $d;
	symlink("/bin/busybox", $_) unless -e $_ || -l $_;')
put "$here/init" /init
chmod 755 "$root/init"

put "$BPFTOOL" /usr/sbin/bpftool
put "$(command -v hackbench || echo /usr/bin/hackbench)" /usr/bin/hackbench
put "$(command -v stress-ng || echo /usr/bin/stress-ng)" /usr/bin/stress-ng

cp -RL "$dir/." "$root/moirai/"

printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
	>"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
printf '/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n' >"$root/etc/ld.so.conf"

# Libraries: ldd prints "name => /path (addr)" or "/path/ld-linux... (addr)".
libs=$work/libs
: >"$libs"
find "$root" -type f | while read -r f; do
	is_elf "$f" || continue
	# Static programs (busybox) make ldd fail: nothing to add.
	ldd "$f" 2>/dev/null >"$libs.one" || continue
	if grep -q 'not found' "$libs.one"; then
		echo "${f#"$root"}: $(grep 'not found' "$libs.one" | tr -s ' \t\n' ' ')" >>"$libs.missing"
	fi
	sed -n -e 's/^[[:space:]]*[^ ]* => \(\/[^ ]*\) (0x.*/\1/p' \
		-e 's/^[[:space:]]*\(\/[^ ]*\) (0x.*/\1/p' "$libs.one" >>"$libs"
done
if [ -s "$libs.missing" ]; then
	cat "$libs.missing" >&2
	vm_die "ldd cannot find some libraries (above)"
fi
gcc_s=$(ldconfig -p | sed -n 's/^[[:space:]]*libgcc_s\.so\.1 (libc6,x86-64) => //p' | head -n 1)
[ -n "$gcc_s" ] && echo "$gcc_s" >>"$libs"
sort -u "$libs" | while read -r lib; do
	real=$(readlink -f "$lib")
	case $real in "$dir"/*) continue ;; esac
	[ -e "$root$lib" ] || put "$lib" "$lib"
done
ldconfig -r "$root" 2>/dev/null || vm_say "ldconfig -r failed; the image relies on ld.so's default paths"

mkdir -p "$(dirname -- "$out")"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) |
	gzip -6n >"$out.tmp.$$"
mv "$out.tmp.$$" "$out"
vm_say "initramfs $out: $(wc -c <"$out") bytes, $(find "$root" | wc -l) entries"
