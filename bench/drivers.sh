#!/bin/bash
# Bakes the demo recipe (as `make demo` does) with each hypervisor driver in turn, one build at a
# time, and prints their steps side by side: the QEMU driver, libvirt on this host
# (qemu:///system), and libvirt on the stand-in remote daemon (qemu+tcp, its own pool; disks go
# up and come back through the volume API). The difference is each driver's cost: uploads, domain
# start, console streaming, downloads. Usage: bash bench/drivers.sh   (as root: it starts libvirtd)
set -euo pipefail
cd "$(dirname "$0")/.."
make -s build >&2
bash testdata/libvirt/start.sh all >/dev/null
img=$(bash testdata/guests/ensure.sh cloud)
url=file://$img/debian-12-cloud.qcow2
sum=$(cut -d' ' -f1 "$img/debian-12-cloud.qcow2.sha256")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
remote=qemu+tcp://127.0.0.1:${INGOT_LIBVIRT_REMOTE_PORT:-16599}/system
echo "machine: $(nproc) cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg); qemu: $(qemu-system-x86_64 --version | head -1)"
args=()
for side in qemu libvirt-local libvirt-remote; do
	case $side in
	qemu) flags=(--driver qemu) ;;
	libvirt-local) flags=(--driver libvirt --connect qemu:///system) ;;
	libvirt-remote) flags=(--driver libvirt --connect "$remote") ;;
	esac
	start=$(date +%s)
	bin/ingot build "${flags[@]}" --out "$out/$side" --log-format json --var image_url="$url" --var image_sha256="$sum" demo \
		>/dev/null 2>"$out/$side.log" || { tail -20 "$out/$side.log" >&2; exit 1; }
	echo "$side: ingot build took $(( $(date +%s) - start )) s" >&2
	args+=("$side=$out/$side/demo/manifest.json")
done
go run ./bench/compare "${args[@]}"
