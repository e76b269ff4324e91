#!/bin/bash
# Bakes the demo recipe (as `make demo` does) N times back to back and prints the success rate,
# the p50 and p95 wall time, and what each build left behind: processes (QEMU, qemu-img,
# qemu-nbd, ingot), work dirs, staging dirs in the output dir, temp files and loop devices.
# The goal (issue 19): N of N, zero leftovers. Every build is a whole one (--no-cache): a restored
# checkpoint would skip the boot and the steps, which are what a soak must repeat.
# Usage: bash bench/soak.sh [N]   (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}
make -s build >&2
img=$(bash testdata/guests/ensure.sh cloud)
url=file://$img/debian-12-cloud.qcow2
sum=$(cut -d' ' -f1 "$img/debian-12-cloud.qcow2.sha256")
root=$(mktemp -d "${TMPDIR:-/tmp}/ingot-soak.XXXXXX")
trap 'rm -rf "$root"' EXIT
work=$root/work # the builds' work root, so that only theirs is counted
tmp=$root/tmp   # TMPDIR of the builds
mkdir -p "$work" "$tmp"

# The builds' processes: QEMU, qemu-img, qemu-nbd and ingot itself all name a path under $root on
# their command lines (the work dir, the disks, the output dir); other users' are not counted.
procs() { { pgrep -f -- "$root/" || true; } | wc -l; }
loops() { { losetup -a 2>/dev/null || true; } | wc -l; }
procs0=$(procs)
loops0=$(loops)
echo "machine: $(nproc) cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg); qemu: $(qemu-system-x86_64 --version | head -1)"
echo "before: $procs0 QEMU-related processes, $loops0 loop devices (not counted as leftovers)"
printf '%-4s %-6s %8s  %s\n' run result seconds leftovers

ok=0
leftover_runs=0
times=()
for i in $(seq 1 "$n"); do
	out=$root/out-$i
	start=$(date +%s%N)
	if TMPDIR=$tmp bin/ingot build --no-cache --out "$out" --work-dir "$work" --log-format json \
		--var image_url="$url" --var image_sha256="$sum" demo >/dev/null 2>"$root/build-$i.log"; then
		result=ok
		ok=$((ok + 1))
	else
		result=FAILED
	fi
	secs=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN {printf "%.1f", (b - a) / 1e9}')
	times+=("$secs")
	sleep 1 # a child that outlives ingot by more than this is a leftover
	left=()
	p=$(( $(procs) - procs0 )); [ "$p" -gt 0 ] && left+=("$p processes")
	w=$(find "$work" -mindepth 1 -maxdepth 1 | wc -l); [ "$w" -gt 0 ] && left+=("$w work dirs")
	s=$(find "$out" -mindepth 1 -maxdepth 1 -name '.ingot-*' 2>/dev/null | wc -l); [ "$s" -gt 0 ] && left+=("$s staging dirs")
	f=$(find "$tmp" -mindepth 1 | wc -l); [ "$f" -gt 0 ] && left+=("$f temp files")
	l=$(( $(loops) - loops0 )); [ "$l" -gt 0 ] && left+=("$l loop devices")
	if [ "${#left[@]}" -gt 0 ]; then
		leftover_runs=$((leftover_runs + 1))
		summary=$(IFS=,; echo "${left[*]}")
	else
		summary=none
	fi
	printf '%-4s %-6s %8.1f  %s\n' "$i" "$result" "$secs" "$summary"
	[ "$result" = ok ] || tail -5 "$root/build-$i.log" | sed 's/^/      /'
	rm -rf "$out"
done

sorted=$(printf '%s\n' "${times[@]}" | sort -n)
pct() { echo "$sorted" | awk -v p="$1" '{a[NR]=$1} END {i=int((NR*p+99)/100); if (i<1) i=1; print a[i]}'; }
echo
echo "success: $ok/$n; wall time p50 $(pct 50) s, p95 $(pct 95) s; runs with leftovers: $leftover_runs/$n"
[ "$ok" -eq "$n" ] && [ "$leftover_runs" -eq 0 ]
