#!/bin/bash
# `ingot flash` against `bmaptool copy` (issue 18, "within 1.1× of bmaptool"), in one run, of the
# same NAME.raw.zst and NAME.raw.bmap onto the same loop device, and `dd conv=sparse` of the same
# image for scale:
#
#   1. an image like a build's: a sparse 2 GiB GPT disk whose ext4 partition holds 320 MiB of
#      files (random and text), zstd-compressed, its bmap from `bmaptool create`;
#   2. a loop device of 3 GiB on a sparse file; each tool writes the image onto it RUNS times,
#      in turn (ingot, bmaptool, dd, ingot, …) so that load drifts affect all of them alike; each
#      run ends with the data synced (ingot: fsync + BLKFLSBUF; bmaptool: its own fsync; dd:
#      conv=fsync), and the device's first 2 GiB are then compared with the image;
#   3. the median wall time of each, and the ratios.
#
# Needs root (losetup), bmap-tools, zstd, gdisk, e2fsprogs. Exits non-zero only when a tool
# fails or writes the wrong bytes, never on a missed goal.
# Usage: bash bench/flash.sh   (INGOT=path/to/ingot to use a built binary; RUNS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
if [ -z "${INGOT:-}" ]; then
	make -s build >&2
	INGOT=bin/ingot
fi
if ! "$INGOT" flash --help >/dev/null 2>&1; then
	echo "bench: $INGOT has no flash command" >&2
	exit 1
fi
root=$(mktemp -d "${TMPDIR:-/var/tmp}/ingot-bench-flash.XXXXXX")
dev=
cleanup() {
	if [ -n "$dev" ]; then losetup -d "$dev" || true; fi
	rm -rf "$root"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

size=$((2 << 30))
img=$root/disk.raw
mkdir -p "$root/content"
head -c $((160 << 20)) /dev/urandom >"$root/content/random.bin"
head -c $((120 << 20)) /dev/urandom | base64 >"$root/content/text.b64" # ~160 MiB, compressible
truncate -s $size "$img"
sgdisk -q -n 1:2048:0 -t 1:8300 "$img"
part_mib=$(( (size >> 20) - 2 ))
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 -d "$root/content" "$root/part.ext4" "${part_mib}M" >/dev/null
dd if="$root/part.ext4" of="$img" bs=1M seek=1 conv=notrunc,sparse status=none
rm -rf "$root/part.ext4" "$root/content"
bmaptool -q create -o "$img.bmap" "$img"
zstd -q -T0 "$img" -o "$img.zst"
want=$(sha256sum <"$img" | cut -d' ' -f1)
mapped=$(sed -n 's/.*<MappedBlocksCount> *\([0-9]*\) *<.*/\1/p' "$img.bmap")
echo "image: $(numfmt --to=iec $size) raw, $(numfmt --to=iec $((mapped * 4096))) mapped, $(numfmt --to=iec "$(stat -c %s "$img.zst")") as raw.zst"

truncate -s 3G "$root/card"
dev=$(losetup -f --show "$root/card")
echo "target: $dev, a loop device on a sparse file in $(df --output=target "$root" | tail -1) ($(findmnt -no FSTYPE -T "$root"))"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

# run NAME CMD…: time one write onto the device (ms on stdout), then check its first 2 GiB.
run() {
	local name=$1 t0 ms
	shift
	sync
	echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true # a cold page cache for each, where allowed
	t0=$(date +%s%N)
	if ! "$@" >"$root/$name.log" 2>&1; then
		echo "bench: $name failed:" >&2
		tail -n 20 "$root/$name.log" >&2
		exit 1
	fi
	ms=$(( ($(date +%s%N) - t0) / 1000000 ))
	if [ "$(head -c $size "$dev" | sha256sum | cut -d' ' -f1)" != "$want" ]; then
		echo "bench: $name wrote the wrong bytes" >&2
		exit 1
	fi
	# Zero the device again, cheaply (a hole punched in the whole backing file), so every run
	# writes onto the same blank target.
	fallocate --punch-hole --offset 0 --length $((3 << 30)) "$root/card"
	blockdev --flushbufs "$dev"
	echo "$ms"
}
ingot_ms=() bmaptool_ms=() dd_ms=()
for ((i = 1; i <= runs; i++)); do
	ingot_ms+=("$(run ingot "$INGOT" flash --yes "$img.zst" "$dev")")
	bmaptool_ms+=("$(run bmaptool bmaptool -q copy --bmap "$img.bmap" "$img.zst" "$dev")")
	dd_ms+=("$(run dd sh -c "zstd -dc '$img.zst' | dd of='$dev' bs=4M iflag=fullblock conv=sparse,fsync status=none")")
done
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
i=$(median "${ingot_ms[@]}")
b=$(median "${bmaptool_ms[@]}")
d=$(median "${dd_ms[@]}")
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "runs each: $runs (ms) ingot ${ingot_ms[*]}; bmaptool ${bmaptool_ms[*]}; dd ${dd_ms[*]}"
printf '%-34s %8s ms\n' "ingot flash (bmap)" "$i" "bmaptool copy (bmap)" "$b" "zstd -dc | dd conv=sparse,fsync" "$d"
echo "ingot / bmaptool: $(awk -v a="$i" -v b="$b" 'BEGIN{printf "%.2f", a/b}')× (goal ≤ 1.10×); ingot / dd: $(awk -v a="$i" -v b="$d" 'BEGIN{printf "%.2f", a/b}')×"
echo "ingot's own report of its last run:"
sed -n '/flashed/,$p' "$root/ingot.log"
