# shellcheck shell=sh disable=SC2034
# tools/vm/lib.sh - helpers shared by the VM lab scripts (sourced, never run).
#
# Defines:
#   VM_CACHE           the download cache, ${MOIRAI_VM_CACHE:-$HOME/.cache/moirai-vm};
#                      it lives outside the repository and survives `make clean`
#   vm_say MSG...      one line "vm: MSG" on stderr
#   vm_die MSG...      vm_say, then exit 1
#   vm_skip MSG...     "SKIP: MSG" on stderr, then exit 3 (cannot run here: no network,
#                      package missing from the archive, cannot install)
#   vm_need PKG...     install Debian packages from the system's archive, only the ones
#                      not installed yet (the style of tools/deps.sh); exits 3 when that fails
#
# Exit code convention of every tools/vm script: 0 ok, 1 failure, 3 skipped (the lab
# cannot run on this machine: the reason is on stderr).

if [ -n "${MOIRAI_VM_CACHE:-}" ]; then
	VM_CACHE=$MOIRAI_VM_CACHE
elif [ -n "${HOME:-}" ]; then
	VM_CACHE=$HOME/.cache/moirai-vm
else
	VM_CACHE=/tmp/moirai-vm-cache-$(id -u)
fi

vm_say() { echo "vm: $*" >&2; }
vm_die() { vm_say "$@"; exit 1; }
vm_skip() { echo "SKIP: $*" >&2; exit 3; }

# vm_installed PKG: true when dpkg has PKG installed.
vm_installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

vm_need() {
	_missing=""
	for _p in "$@"; do
		vm_installed "$_p" || _missing="$_missing $_p"
	done
	[ -z "$_missing" ] && return 0
	vm_say "installing$_missing"
	_sudo=""
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null 2>&1 || vm_skip "not root and no sudo: cannot install$_missing"
		_sudo="sudo"
	fi
	# Wait for other apt users (this machine is shared) instead of failing on the lock.
	# A fresh machine may have empty package lists: retry once after an update.
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive $_sudo apt-get install -y -q --no-install-recommends \
		-o DPkg::Lock::Timeout=600 $_missing >/dev/null 2>&1 ||
		{ $_sudo apt-get update -q -o DPkg::Lock::Timeout=600 >/dev/null 2>&1 &&
			DEBIAN_FRONTEND=noninteractive $_sudo apt-get install -y -q \
				--no-install-recommends -o DPkg::Lock::Timeout=600 $_missing >/dev/null; } ||
		vm_skip "cannot install$_missing from the Debian archive"
}
