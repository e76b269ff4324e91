#!/bin/bash
# What the secret scan costs (issue 16: "scan at disk-read speed, so that it adds under 2 s"), on
# the demo recipe with one secret that a step leaves in a file, in one run:
#
#   1. the build, kept on failure (the scan fails it): the guest-side scan's time (the files the
#      build wrote, grepped for the value and the credential patterns) and the host-side scan's
#      (every byte the build wrote to its disk, read through qemu-nbd and searched), as ingot logs
#      them;
#   2. the real alternatives on the same kept disk, caches dropped before each: `dd` reading the
#      overlay file (disk-read speed), and `grep -c -a -F VALUE` over it.
#
# Under TCG on 2 shared cores the guest side is as noisy as the load, printed before and after.
# Exits non-zero only when the build does not fail the way it should. Usage: bash bench/secretscan.sh
set -euo pipefail
cd "$(dirname "$0")/.."
make -s build >&2
img=$(bash testdata/guests/ensure.sh cloud)
root=$(mktemp -d "${TMPDIR:-/var/tmp}/ingot-bench-scan.XXXXXX")
trap 'rm -rf "$root"' EXIT
vars=(--var image_url="file://$img/debian-12-cloud.qcow2" --var image_sha256="$(cut -d' ' -f1 "$img/debian-12-cloud.qcow2.sha256")")
value="bench-secret-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
{
	bin/ingot recipes show demo | sed '/^outputs:/,$d'
	cat <<'YAML'
secrets:
  BENCH_TOKEN: { env: BENCH_TOKEN }
outputs: [ { format: qcow2 } ]
YAML
} | sed 's|^provision:|provision:\n  - shell: { inline: "mkdir -p /etc/app \&\& printf \x27%s\\n\x27 \\"$BENCH_TOKEN\\" > /etc/app/token", secrets: [BENCH_TOKEN] }|' >"$root/demo-secret.yaml"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
t0=$(date +%s%N)
if env BENCH_TOKEN="$value" XDG_CACHE_HOME="$root/cache" bin/ingot build --no-cache --test-boot none --keep-on-failure \
	--out "$root/out" --work-dir "$root/work" "${vars[@]}" "$root/demo-secret.yaml" >"$root/build.log" 2>&1; then
	echo "bench: the build did not fail its secret scan" >&2
	exit 1
fi
wall=$(( ($(date +%s%N) - t0) / 1000000 ))
grep -q "secret BENCH_TOKEN in /etc/app/token" "$root/build.log" || { echo "bench: the scan did not name the file:" >&2; tail -n 20 "$root/build.log" >&2; exit 1; }
guest=$(sed -n 's/.*secret scan: \([0-9]*\) files the build wrote, [0-9]* findings, in \([0-9]*\) ms.*/\1 \2/p' "$root/build.log" | tail -1)
host=$(sed -n 's/.*scanned what the build wrote to its disk for its secrets bytes=\([0-9]*\) secrets=[0-9]* seconds=\([0-9.]*\).*/\1 \2/p' "$root/build.log" | tail -1)
disk=$(ls "$root"/work/demo-*/disk.qcow2)
echo "demo build with one leaked secret (no test boots): $((wall / 1000)).$((wall % 1000 / 100)) s"
echo "guest-side scan: ${guest% *} files the build wrote, grepped in ${guest#* } ms"
echo "host-side scan:  ${host% *} bytes the build wrote, searched in ${host#* } s ($(awk -v b="${host% *}" -v s="${host#* }" 'BEGIN{printf "%.0f", b/1e6/(s>0?s:1e-3)}') MB/s)"
timed() { sync; echo 3 >/proc/sys/vm/drop_caches; local t=$(date +%s%N); "$@" >/dev/null 2>&1 || true; echo $(( ($(date +%s%N) - t) / 1000000 )); }
size=$(stat -c %s "$disk")
dd_ms=$(timed dd if="$disk" of=/dev/null bs=4M)
grep_ms=$(timed grep -c -a -F "$value" "$disk")
echo "the same disk's overlay file, $size bytes, caches dropped: dd $dd_ms ms ($(awk -v b="$size" -v m="$dd_ms" 'BEGIN{printf "%.0f", b/1e3/(m>0?m:1)}') MB/s), grep -F $grep_ms ms"
echo "ingot's host-side scan / dd: $(awk -v s="${host#* }" -v m="$dd_ms" 'BEGIN{printf "%.2f", 1000*s/(m>0?m:1)}')x; the whole scan added $(awk -v s="${host#* }" -v g="${guest#* }" 'BEGIN{printf "%.1f", s+g/1000}') s (goal < 2 s)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
