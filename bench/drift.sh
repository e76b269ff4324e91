#!/bin/bash
# What drift costs (issue 15, "the inventory adds at most 10 % to the demo build's wall time"), in
# one run:
#
#   1. the demo recipe built cold (--no-cache, its default test boots): the whole build's wall
#      time, and the time the guest took to list and hash the final image's files (the build
#      logs it), as a share of the build;
#   2. the same recipe again with --force --baseline (the first build; it restores that build's
#      checkpoints): whether it found the image the same, beyond the noise list;
#   3. `ingot diff` of the two builds' records, as text and as JSON: its wall time.
#
# Under TCG on 2 shared cores the times are as noisy as the load, printed before and after.
# Exits non-zero only when a build fails, never on a missed goal. Usage: bash bench/drift.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
make -s build >&2
img=$(bash testdata/guests/ensure.sh cloud)
bench_root drift

vars=(--var image_url="file://$img/debian-12-cloud.qcow2" --var image_sha256="$(cut -d' ' -f1 "$img/debian-12-cloud.qcow2.sha256")")
ingot() { env XDG_CACHE_HOME="$root/cache" bin/ingot "$@"; }
# build LOG ARGS…: one build; prints its wall ms.
build() {
	local log=$1 t0
	shift
	t0=$(date +%s%N)
	in_background "$log" "the build" ingot build --out "$root/out" --work-dir "$root/work" --store "$root/images" "${vars[@]}" "$@" demo
	echo $(( ($(date +%s%N) - t0) / 1000000 ))
}
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
wall=$(build "$root/cold.log" --no-cache)
inv=$(sed -n 's/.*file inventory: \([0-9]*\) files hashed in \([0-9]*\) ms.*/\1 \2/p' "$root/cold.log" | tail -1)
files=${inv% *}
ms=${inv#* }
echo "cold demo build: $((wall / 1000)).$((wall % 1000 / 100)) s; the file inventory ($files files hashed): $((ms / 1000)).$((ms % 1000 / 100)) s = $(awk -v a="$ms" -v b="$wall" 'BEGIN{printf "%.1f", 100*a/b}')% of the build (goal ≤ 10%)"
cp -r "$root/out/demo" "$root/first"
wall2=$(build "$root/again.log" --force --baseline "$root/first" --test-boot none)
same=$(grep -o '"same": *[a-z]*' "$root/out/demo/manifest.json" | tail -1)
echo "rebuild of the unchanged recipe against the first: $((wall2 / 1000)).$((wall2 % 1000 / 100)) s; drift ${same:-\"same\": missing} (true: nothing differs beyond noise)"
for f in text json; do
	t0=$(date +%s%N)
	ingot diff --store "$root/images" --format "$f" "$root/first" image:demo >/dev/null
	echo "ingot diff --format $f of the two records: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
done
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"
