#!/bin/sh
# bpftool dumps the stats maps with named fields and non-zero counts
# (a value per CPU).
. "$(dirname "$0")/lib.inc"
load_bg
mrvm busy 2 4 || fail "workload failed"
P=/sys/fs/bpf/moirai
check() { # map field
	bpftool map dump pinned "$P/$1" >/tmp/$1.txt 2>&1 || { cat /tmp/$1.txt; fail "bpftool cannot dump $1"; }
	grep -Eq "\"$2\": [1-9]" /tmp/$1.txt || { head -40 /tmp/$1.txt; fail "$1.$2 not shown by name with a non-zero count"; }
	echo "$1.$2: $(grep -Eo "\"$2\": [0-9]+" /tmp/$1.txt | head -3 | tr '\n' ' ')"
}
check cpu_stats dispatch_local
check cpu_stats worker_runs
check node_stats worker_home_ns
check node_stats worker_home_runs
check latency count
# The statistics maps are per-CPU: bpftool lists each CPU's value.
for m in cpu_stats node_stats latency; do
	grep -q '"cpu": [0-9]' /tmp/$m.txt || { head -20 /tmp/$m.txt; fail "$m not dumped per CPU"; }
done
echo "per-CPU values: cpu_stats $(grep -c '"cpu": [0-9]' /tmp/cpu_stats.txt), node_stats $(grep -c '"cpu": [0-9]' /tmp/node_stats.txt), latency $(grep -c '"cpu": [0-9]' /tmp/latency.txt)"
unload
# Stats stay readable after unload.
bpftool map dump pinned "$P/node_stats" >/dev/null || fail "stats not readable after unload"
exit 0
