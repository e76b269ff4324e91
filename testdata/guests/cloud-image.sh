#!/usr/bin/env bash
# Builds the Debian 12 test cloud image: the stand-in for debian-12-genericcloud-amd64.qcow2 that the
# end-to-end tests boot. Debian packages only (debootstrap from the configured mirror); no loop devices,
# no mounts: the root filesystem is made with `mkfs.ext4 -d`, the ESP with mtools, and GRUB is written
# for both firmwares by hand (BIOS: boot.img in the MBR + core.img in a BIOS boot partition; UEFI:
# a standalone image at the removable-media path \EFI\BOOT\BOOTX64.EFI, so no NVRAM entry is needed).
#
# Usage: cloud-image.sh OUTDIR   (writes OUTDIR/debian-12-cloud.qcow2, compressed, and its .sha256)
# Called through ensure.sh, which caches the result by the hash of this script.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

out=${1:?usage: cloud-image.sh OUTDIR}
mirror=${INGOT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
disk_size=2G
root_uuid=4c1e6a3e-1a7b-4f0e-9b8d-1e2a3b4c5d6e # fixed, so the image's grub.cfg is stable

need_root
need_cmd debootstrap debootstrap
need_cmd sgdisk gdisk
need_cmd partx util-linux
need_cmd mkfs.ext4 e2fsprogs
need_cmd mkfs.vfat dosfstools
need_cmd mcopy mtools
need_cmd grub-mkimage grub-common
[ -f /usr/lib/grub/i386-pc/boot.img ] || die "GRUB's BIOS modules are missing; install them with: apt-get install grub-pc-bin"
[ -d /usr/lib/grub/x86_64-efi ] || die "GRUB's UEFI modules are missing; install them with: apt-get install grub-efi-amd64-bin"
need_cmd qemu-img qemu-utils
work=$(mktemp -d "${TMPDIR:-/var/tmp}/ingot-cloud.XXXXXX")
trap 'rm -rf "$work"' EXIT
need_space "$work" 4096
need_space "$out" 1024
need_mirror "$mirror" "$suite"

root=$work/rootfs
step "debootstrap $suite from $mirror"
debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
	tail -n 30 "$work/debootstrap.log" >&2
	die "debootstrap failed (log above); check the mirror $mirror and free disk space"
}

# The rest through apt inside the chroot: debootstrap's --include does not order maintainer scripts
# well enough for cloud-init's Python stack. /proc is mounted only for the duration, and no service
# may start inside the chroot.
packages=(
	systemd-sysv udev kmod dbus procps iproute2 netbase ifupdown isc-dhcp-client
	linux-image-cloud-amd64 initramfs-tools
	cloud-init cloud-guest-utils fdisk e2fsprogs locales
	openssh-server sudo less ca-certificates
)
step "install ${#packages[@]} packages into the guest"
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
mount -t proc proc "$root/proc"
# umount first, and never follow a still-mounted /proc out of the work dir.
trap 'umount "$root/proc" 2>/dev/null || true; rm -rf --one-file-system "$work"' EXIT
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}" \
	>"$work/apt.log" 2>&1 || {
	tail -n 30 "$work/apt.log" >&2
	die "installing packages into the guest failed (log above)"
}
umount "$root/proc"
rm -f "$root/usr/sbin/policy-rc.d"

step "configure the guest"
configure_guest "$root" "$mirror" "$suite" "$root_uuid"

mkdir -p "$root/boot/grub"
cat >"$root/boot/grub/grub.cfg" <<CFG
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout=0
menuentry 'Debian GNU/Linux 12 (ingot test guest)' {
	search --no-floppy --fs-uuid --set=root $root_uuid
	linux /vmlinuz root=UUID=$root_uuid ro console=tty0 console=ttyS0,115200n8
	initrd /initrd.img
}
CFG

step "partition a $disk_size GPT disk (BIOS boot, ESP, root)"
disk=$work/disk.raw
truncate -s "$disk_size" "$disk"
sgdisk -a 2048 \
	-n 1:2048:+1M -t 1:ef02 -c 1:bios \
	-n 2:0:+64M -t 2:ef00 -c 2:esp \
	-n 3:0:0 -t 3:8304 -c 3:root \
	"$disk" >/dev/null
read -r bios_start _ < <(part_geometry "$disk" 1)
read -r esp_start esp_sectors < <(part_geometry "$disk" 2)
read -r root_start root_sectors < <(part_geometry "$disk" 3)

step "make the root filesystem"
mkfs.ext4 -q -F -L root -U "$root_uuid" -d "$root" "$work/root.img" "$((root_sectors / 2))k"
write_at "$disk" "$work/root.img" "$root_start"
rm -f "$work/root.img"

step "install GRUB for UEFI and BIOS"
cat >"$work/early.cfg" <<CFG
search --no-floppy --fs-uuid --set=root $root_uuid
set prefix=(\$root)/boot/grub
configfile (\$root)/boot/grub/grub.cfg
CFG
modules="part_gpt ext2 search search_fs_uuid normal linux configfile echo serial terminal test gzio"
grub-mkimage -O x86_64-efi -o "$work/BOOTX64.EFI" -c "$work/early.cfg" -p /boot/grub $modules fat all_video efi_gop
mkfs.vfat -n ESP -C "$work/esp.img" "$((esp_sectors / 2))" >/dev/null
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT
mcopy -i "$work/esp.img" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
write_at "$disk" "$work/esp.img" "$esp_start"

grub-mkimage -O i386-pc -o "$work/core.img" -c "$work/early.cfg" -p "(hd0,gpt3)/boot/grub" $modules biosdisk
[ "$(stat -c %s "$work/core.img")" -le $((1024 * 1024)) ] || die "GRUB core.img is larger than the 1 MiB BIOS boot partition"
# What grub-bios-setup would do, on a file: boot.img's code (not the partition table) into the MBR,
# pointed at core.img's first sector (offset 0x5c, GRUB_BOOT_MACHINE_KERNEL_SECTOR), and core.img's
# first-sector blocklist (offset 0x1f4 of diskboot.img) pointed at the sector after it.
le64() { printf "$(printf '%016x' "$1" | sed -E 's/(..)(..)(..)(..)(..)(..)(..)(..)/\\x\8\\x\7\\x\6\\x\5\\x\4\\x\3\\x\2\\x\1/')"; }
dd if=/usr/lib/grub/i386-pc/boot.img of="$disk" bs=440 count=1 conv=notrunc status=none
le64 "$bios_start" | dd of="$disk" bs=1 seek=$((0x5c)) conv=notrunc status=none
le64 "$((bios_start + 1))" | dd of="$work/core.img" bs=1 seek=$((0x1f4)) conv=notrunc status=none
write_at "$disk" "$work/core.img" "$bios_start"

step "compress to qcow2"
qemu-img convert -c -f raw -O qcow2 "$disk" "$out/debian-12-cloud.qcow2.tmp"
mv "$out/debian-12-cloud.qcow2.tmp" "$out/debian-12-cloud.qcow2"
(cd "$out" && sha256sum debian-12-cloud.qcow2 >debian-12-cloud.qcow2.sha256)
# The kernel and its version, for tests and the installer ISO that reuses this build.
basename "$(readlink -f "$root/vmlinuz")" >"$out/kernel-version"
step "done: $out/debian-12-cloud.qcow2 ($(du -h "$out/debian-12-cloud.qcow2" | cut -f1))"
