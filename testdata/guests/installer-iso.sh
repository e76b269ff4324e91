#!/usr/bin/env bash
# Builds the test installer ISO: a hybrid BIOS + UEFI bootable ISO (grub-mkrescue) laid out like
# Ubuntu's live-server ISO (/casper/vmlinuz, /casper/initrd), whose initrd runs a small unattended
# installer (installer/main.go) driven by a NoCloud seed's `autoinstall:` section. The system it
# installs is the test cloud image, shipped on the ISO as /install/disk.raw.zst.
#
# The GRUB menu's entry does not say "autoinstall", as on Ubuntu's ISO: ingot has to add it, either
# by booting the kernel and initrd it extracts from the ISO with extra arguments, or by typing it.
#
# Usage: installer-iso.sh OUTDIR   (writes OUTDIR/installer.iso and its .sha256)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
out=${1:?usage: installer-iso.sh OUTDIR}

need_cmd go "Go 1.26 (https://go.dev/dl)"
need_cmd grub-mkrescue grub-common
need_cmd xorriso xorriso
need_cmd mformat mtools
need_cmd debugfs e2fsprogs
need_cmd cpio cpio
need_cmd zstd zstd
need_cmd partx util-linux
need_cmd qemu-img qemu-utils
[ -d /usr/lib/grub/i386-pc ] || die "GRUB's BIOS modules are missing; install them with: apt-get install grub-pc-bin"
[ -d /usr/lib/grub/x86_64-efi ] || die "GRUB's UEFI modules are missing; install them with: apt-get install grub-efi-amd64-bin"

cloud=$(bash "$here/ensure.sh" cloud)
work=$(mktemp -d "${TMPDIR:-/var/tmp}/ingot-installer.XXXXXX")
trap 'rm -rf "$work"' EXIT
need_space "$work" 4096
kver=$(cat "$cloud/kernel-version")
kver=${kver#vmlinuz-}

step "unpack the test cloud image"
qemu-img convert -f qcow2 -O raw "$cloud/debian-12-cloud.qcow2" "$work/disk.raw"
read -r root_start root_sectors < <(part_geometry "$work/disk.raw" 3)
dd if="$work/disk.raw" of="$work/root.img" bs=4M iflag=skip_bytes,count_bytes \
	skip=$((root_start * 512)) count=$((root_sectors * 512)) conv=sparse status=none

iso=$work/iso
mkdir -p "$iso/casper" "$iso/install" "$iso/boot/grub" "$iso/.disk"
step "take kernel $kver and its modules from the image"
debugfs -R "dump /boot/vmlinuz-$kver $iso/casper/vmlinuz" "$work/root.img" 2>/dev/null
[ -s "$iso/casper/vmlinuz" ] || die "could not read /boot/vmlinuz-$kver from the test cloud image"
initrd=$work/initrd
mkdir -p "$initrd/lib/modules" "$initrd/dev" "$initrd/proc" "$initrd/sys" "$initrd/mnt" "$initrd/target"
debugfs -R "rdump /lib/modules/$kver $initrd/lib/modules" "$work/root.img" 2>/dev/null
[ -f "$initrd/lib/modules/$kver/modules.dep" ] || die "could not read /lib/modules/$kver from the test cloud image"
# Keep only the storage, CD and filesystem drivers the installer loads: the initrd stays small.
moddir=$initrd/lib/modules/$kver/kernel
find "$moddir" -name '*.ko*' -printf '%P\n' |
	{ grep -Ev '^(drivers/(block|scsi|ata|cdrom|virtio)|fs/(isofs|fat|nls)|lib|crypto)/' || true; } |
	(cd "$moddir" && xargs -r rm -f)
rm -f "$work/root.img"

step "build the installer and its initrd"
(cd "$here/installer" && CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$initrd/init" .)
mknod -m 600 "$initrd/dev/console" c 5 1
(cd "$initrd" && find . | sort | cpio --quiet -o -H newc --reproducible | zstd -q -19 -T0 >"$iso/casper/initrd")

step "compress the system image"
zstd -q -T0 -6 "$work/disk.raw" -o "$iso/install/disk.raw.zst"
rm -f "$work/disk.raw"

echo "ingot test installer (Debian 12, kernel $kver)" >"$iso/.disk/info"
cat >"$iso/boot/grub/grub.cfg" <<'CFG'
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout=5
menuentry "Install Debian 12 (ingot test installer)" {
	linux /casper/vmlinuz console=tty0 console=ttyS0,115200n8 ---
	initrd /casper/initrd
}
CFG

step "make the hybrid BIOS + UEFI ISO"
grub-mkrescue -o "$out/installer.iso.tmp" "$iso" -- -volid INGOT_INSTALLER >"$work/mkrescue.log" 2>&1 || {
	cat "$work/mkrescue.log" >&2
	die "grub-mkrescue failed (log above)"
}
mv "$out/installer.iso.tmp" "$out/installer.iso"
(cd "$out" && sha256sum installer.iso >installer.iso.sha256)
step "done: $out/installer.iso ($(du -h "$out/installer.iso" | cut -f1))"
