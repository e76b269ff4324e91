#!/bin/sh
# Captures this directory's qemu-img JSON from this host's qemu-img, on small images it makes in
# /tmp/qemuimg-capture (so that the file names in the JSON do not depend on the checkout). Run it
# from this directory. The *-cloud-overlay files are not made here: they were captured by hand on
# a qcow2 overlay over the test cloud image.
set -eu
out=$(pwd)
dir=/tmp/qemuimg-capture
rm -rf "$dir"
mkdir "$dir"
cd "$dir"

# A chain of three formats: a raw base, a zstd-compressed qcow2 on it, a qcow2 on that.
qemu-img create -q -f raw base.raw 64M
qemu-io -f raw -c 'write -P 0xab 0 1M' base.raw >/dev/null
qemu-img create -q -f qcow2 -o compression_type=zstd -b "$dir/base.raw" -F raw mid.qcow2 64M
qemu-io -f qcow2 -c 'write -P 0xcd 4M 64k' mid.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b "$dir/mid.qcow2" -F qcow2 top.qcow2 128M
qemu-io -f qcow2 -c 'write -P 0x11 64k 64k' -c 'write -z 4M 64k' top.qcow2 >/dev/null
qemu-img info -f qcow2 --backing-chain --output=json "$dir/top.qcow2" >"$out/info-backing-chain.json"
qemu-img map -f qcow2 --output=json "$dir/top.qcow2" >"$out/map-backing-chain.json"
qemu-img measure --output=json -f qcow2 -O raw "$dir/top.qcow2" >"$out/measure-backing-chain-raw.json"
qemu-img measure --output=json -f qcow2 -O qcow2 "$dir/top.qcow2" >"$out/measure-backing-chain-qcow2.json"

qemu-img convert -f qcow2 -O vmdk -o subformat=streamOptimized top.qcow2 stream.vmdk
qemu-img info -f vmdk --output=json "$dir/stream.vmdk" >"$out/info-vmdk-stream.json"
qemu-img check -f vmdk --output=json "$dir/stream.vmdk" >"$out/check-vmdk-stream.json"

# check exits 2 on corruptions and 3 on leaks: its report is on stdout all the same.
check() { qemu-img check -f qcow2 --output=json "$dir/$1" >"$out/$2" || true; }
qemu-img create -q -f qcow2 clean.qcow2 16M
qemu-io -f qcow2 -c 'write -P 0x5a 0 128k' clean.qcow2 >/dev/null
check clean.qcow2 check-clean.json

# setref FILE CLUSTER VALUE sets a cluster's 16-bit refcount in the first refcount block.
be64() { od -An -tx1 -j"$2" -N8 "$1" | tr -d ' \n'; }
setref() {
	table=$((0x$(be64 "$1" 48)))
	block=$((0x$(be64 "$1" "$table")))
	printf "$(printf '\\%03o\\%03o' $(($3 >> 8)) $(($3 & 255)))" |
		dd of="$1" bs=1 seek=$((block + 2 * $2)) conv=notrunc status=none
}
# The last data cluster (6) loses its refcount: a corruption.
cp clean.qcow2 corrupt.qcow2
setref corrupt.qcow2 6 0
check corrupt.qcow2 check-corrupt.json
# One more cluster, counted but used by nothing: a leak.
cp clean.qcow2 leak.qcow2
truncate -s +64K leak.qcow2
setref leak.qcow2 7 1
check leak.qcow2 check-leak.json

cd "$out"
rm -rf "$dir"
