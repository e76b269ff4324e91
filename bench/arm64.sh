#!/bin/bash
# arm64 against x86_64 (issue 18, "the arm64 TCG build time next to the x86 one for the same
# recipe"), in one run: the same recipe (a file upload, a shell step, a minimal raw+zstd+bmap and a
# qcow2, the default test step) built cold from the x86_64 test cloud image and from the arm64
# one, which testdata/guests builds from the same Debian packages and configuration. x86_64 runs
# as the host's own architecture (KVM where it works, TCG here), aarch64 under TCG
# (qemu-system-aarch64 -M virt, AAVMF). Each build's steps are read back from its manifest.
#
# Exits non-zero only when a build fails, never on a ratio. Usage: bash bench/arm64.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
need jq jq
make -s build >&2
x86=$(bash testdata/guests/ensure.sh cloud)
arm=$(bash testdata/guests/ensure.sh arm64)
bench_root arm64
echo "edge gateway 7" >"$root/motd"

# build ARCH IMAGE: one cold build (a cache of its own, no checkpoints to restore); prints its
# wall seconds.
build() {
	local arch=$1 image=$2 dir=$root/$1
	mkdir -p "$dir"
	cat >"$dir/edge.yaml" <<EOF
name: edge
source:
  disk: { url: "file://$image", sha256: $(cut -d' ' -f1 "$image.sha256"), format: qcow2 }
machine: { arch: $arch, memory: 1GiB, disk: 3GiB }
provision:
  - file: { src: $root/motd, dst: /etc/motd }
  - shell: |
      echo "built on \$(uname -m)" > /etc/edge-build
outputs:
  - { format: raw, compress: zstd, bmap: true, shrink: minimal }
  - { format: qcow2 }
EOF
	local start
	start=$(date +%s.%N)
	in_background "$dir/build.log" "the $arch build" \
		env XDG_CACHE_HOME="$dir/cache" bin/ingot build --out "$dir/out" --work-dir "$dir/work" "$dir/edge.yaml"
	awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }' 
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
tx=$(build x86_64 "$x86/debian-12-cloud.qcow2")
ta=$(build aarch64 "$arm/debian-12-cloud-arm64.qcow2")
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"
steps() {
	jq -r '[.steps[] | select(.step | test("^(boot|connect|provision|inventory|generalize|shutdown|convert|test)")) | "\(.step | sub(" .*"; ""))=\(.seconds * 10 | round / 10)"] | join(" ")' "$1"
}
printf '%-8s %8s  %s\n' arch seconds "steps (s)"
printf '%-8s %8.1f  %s\n' x86_64 "$tx" "$(steps "$root/x86_64/out/edge/manifest.json")"
printf '%-8s %8.1f  %s\n' aarch64 "$ta" "$(steps "$root/aarch64/out/edge/manifest.json")"
echo "aarch64 / x86_64: $(awk -v a="$ta" -v x="$tx" 'BEGIN { printf "%.2f", a / x }')× ($(jq -r .tool.qemu_version "$root/aarch64/out/edge/manifest.json"), accelerator: $(grep -o 'KVM is not usable[^:]*' "$root/x86_64/build.log" | head -1 || echo kvm))"
