#!/bin/bash
# Bakes the demo recipe (the same build as `make demo`) and prints where its wall time went, step
# by step: waiting on the guest or on qemu-img, and ingot's own work. The source is cached first,
# so the figures are a warm build's. Usage: bash bench/overhead.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-1}
make -s build >&2
img=$(bash testdata/guests/ensure.sh cloud)
url=file://$img/debian-12-cloud.qcow2
sum=$(cut -d' ' -f1 "$img/debian-12-cloud.qcow2.sha256")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
nproc=$(nproc); load=$(cut -d' ' -f1-3 /proc/loadavg)
echo "machine: $nproc cores, load average before: $load; qemu: $(qemu-system-x86_64 --version | head -1)"
for i in $(seq "$runs"); do
	rm -rf "$out/demo"
	start=$(date +%s.%N)
	bin/ingot build --out "$out" --log-format json --var image_url="$url" --var image_sha256="$sum" demo \
		>"$out/stdout" 2>"$out/build.log" || { tail -20 "$out/build.log" >&2; exit 1; }
	end=$(date +%s.%N)
	echo; echo "run $i"
	go run ./bench/overhead "$out/demo/manifest.json" "$start" "$end"
done
