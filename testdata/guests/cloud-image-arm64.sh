#!/usr/bin/env bash
# Builds the Debian 12 arm64 test cloud image: the stand-in for debian-12-genericcloud-arm64.qcow2,
# made the way cloud-image.sh makes the amd64 one (same packages, same configuration, so ingot's
# pipeline meets the same guest), for `qemu-system-aarch64 -M virt` with UEFI (AAVMF).
#
# What differs from amd64, and why:
#   - debootstrap of arm64 packages runs its second stage and every chroot command under
#     qemu-aarch64-static through binfmt_misc. The handler is registered with the F (fix-binary) flag,
#     so the emulator is opened once by the kernel and need not be copied into the root filesystem.
#     On an arm64 host none of this is needed and the chroot runs natively.
#   - UEFI only (virt has no BIOS): a standalone GRUB arm64-efi image at the removable-media path
#     \EFI\BOOT\BOOTAA64.EFI, so no NVRAM entry is needed. GRUB's arm64 modules come from Debian's
#     grub-efi-arm64-bin, an arm64-only package: it is downloaded inside the guest's chroot and
#     unpacked here, not installed on the host (that would need dpkg's multiarch) nor in the guest
#     (the amd64 guest has no GRUB package either). The host's grub-mkimage builds the image; it
#     writes any target from that target's module directory.
#   - The console is the PL011 UART, ttyAMA0; GRUB itself talks through the UEFI console, which
#     AAVMF puts on that same UART, so grub.cfg has no serial commands.
#
# Usage: cloud-image-arm64.sh OUTDIR   (writes OUTDIR/debian-12-cloud-arm64.qcow2, compressed, and its .sha256)
# Called through ensure.sh, which caches the result by the hash of this script.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

out=${1:?usage: cloud-image-arm64.sh OUTDIR}
mirror=${INGOT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
disk_size=2G
root_uuid=7d2a5b1c-3e4f-4a6b-8c9d-0e1f2a3b4c5d # fixed, so the image's grub.cfg is stable

need_root
need_cmd debootstrap debootstrap
need_cmd sgdisk gdisk
need_cmd partx util-linux
need_cmd mkfs.ext4 e2fsprogs
need_cmd mkfs.vfat dosfstools
need_cmd mcopy mtools
need_cmd grub-mkimage grub-common
need_cmd dpkg-deb dpkg
need_cmd qemu-img qemu-utils
[ -x /usr/bin/python3 ] || die "/usr/bin/python3 is missing; install it with: apt-get install python3"
/usr/bin/python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
	die "the host's /usr/bin/python3 is not Python 3.11, the guest's (Debian 12): its bytecode would not load there"

# ensure_binfmt_aarch64: lets this (non-arm64) kernel run arm64 binaries in the chroot. Debian
# registers the handlers at boot through systemd-binfmt or binfmt-support's service; where neither
# ran (a container, a machine without systemd) this does the same by hand, from the line that
# qemu-user-static ships for systemd-binfmt, which is already in the kernel's register format.
ensure_binfmt_aarch64() {
	local fs=/proc/sys/fs/binfmt_misc conf=/usr/lib/binfmt.d/qemu-aarch64.conf
	need_cmd qemu-aarch64-static qemu-user-static
	[ -f "$conf" ] || die "$conf is missing; install it with: apt-get install qemu-user-static"
	if [ ! -e "$fs/register" ]; then
		mount -t binfmt_misc binfmt_misc "$fs" ||
			die "cannot mount binfmt_misc on $fs, so arm64 programs cannot run here; load the module (modprobe binfmt_misc) or build on an arm64 host"
	fi
	if [ ! -e "$fs/qemu-aarch64" ]; then
		cat "$conf" >"$fs/register" || die "registering $conf with binfmt_misc failed"
	fi
	grep -qx enabled "$fs/qemu-aarch64" || echo 1 >"$fs/qemu-aarch64"
	grep -q '^flags:.*F' "$fs/qemu-aarch64" ||
		die "the qemu-aarch64 binfmt handler lacks the F flag, so the chroot cannot find its emulator; remove it (echo -1 >$fs/qemu-aarch64) and build again, which registers it from $conf"
}
case "$(uname -m)" in
aarch64 | arm64) ;;
*) ensure_binfmt_aarch64 ;;
esac

work=$(mktemp -d "${TMPDIR:-/var/tmp}/ingot-cloud-arm64.XXXXXX")
trap 'rm -rf "$work"' EXIT
need_space "$work" 4096
need_space "$out" 1024
need_mirror "$mirror" "$suite"

root=$work/rootfs
# One stage: with the handler registered, debootstrap's second stage runs in the chroot as it would
# natively, and --foreign plus a separate --second-stage would only add a step.
step "debootstrap $suite arm64 from $mirror"
debootstrap --arch=arm64 --variant=minbase "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
	tail -n 30 "$work/debootstrap.log" >&2
	die "debootstrap failed (log above); check the mirror $mirror, free disk space, and that arm64 binaries run here (binfmt_misc)"
}

# As cloud-image.sh: the rest through apt inside the chroot, /proc mounted only meanwhile, and no
# service may start inside the chroot. The same packages, with the arm64 cloud kernel.
packages=(
	systemd-sysv udev kmod dbus procps iproute2 netbase ifupdown isc-dhcp-client
	linux-image-cloud-arm64 initramfs-tools
	cloud-init cloud-guest-utils fdisk e2fsprogs locales
	openssh-server sudo less ca-certificates
)
step "install ${#packages[@]} packages into the guest"
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
# Under emulation every program is several times slower, so two costs native builds barely notice
# are cut: dpkg's fsyncs (the image is made from these files at once; a crash means a rebuild anyway),
# and a second initramfs. The kernel's hook makes one and initramfs-tools' trigger remakes it after
# later packages; update-initramfs is diverted to a no-op during apt and run once afterwards.
#
# Three more, measured from dpkg's log of a build (7m50s in all): the initramfs took two minutes
# with Debian's MODULES=most, a modprobe under emulation for each of hundreds of modules; this
# guest only ever boots on QEMU's virt machine, so its initramfs carries the virtio drivers
# (everything else it needs, ext4 included, is built into the cloud kernel) and takes seconds.
# Python's byte-compilation (py3compile in each python3-* package's postinst, a Python start
# under emulation each time) took about a minute: it is diverted to a no-op during apt and done
# once afterwards by the host's own Python 3.11 (bytecode is the same on every architecture, and
# Debian's python3.11 on the host writes what the guest's would).
echo force-unsafe-io >"$root/etc/dpkg/dpkg.cfg.d/ingot-unsafe-io"
mkdir -p "$root/etc/initramfs-tools/conf.d"
echo MODULES=list >"$root/etc/initramfs-tools/conf.d/ingot-testguest"
printf '%s\n' virtio_pci virtio_blk virtio_scsi sd_mod virtio_net >>"$root/etc/initramfs-tools/modules"
for f in /usr/sbin/update-initramfs /usr/bin/py3compile; do
	chroot "$root" dpkg-divert --local --rename --add "$f" >/dev/null
	printf '#!/bin/sh\nexit 0\n' >"$root$f"
	chmod +x "$root$f"
done
mount -t proc proc "$root/proc"
# umount first, and never follow a still-mounted /proc out of the work dir.
trap 'umount "$root/proc" 2>/dev/null || true; rm -rf --one-file-system "$work"' EXIT
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}" \
	>"$work/apt.log" 2>&1 || {
	tail -n 30 "$work/apt.log" >&2
	die "installing packages into the guest failed (log above)"
}
rm -f "$root/etc/dpkg/dpkg.cfg.d/ingot-unsafe-io"
for f in /usr/sbin/update-initramfs /usr/bin/py3compile; do
	rm -f "$root$f"
	chroot "$root" dpkg-divert --local --rename --remove "$f" >/dev/null
done
step "byte-compile the guest's Python modules (on the host)"
# -s/-p: the paths inside the .pyc files are the guest's, not the work dir's.
/usr/bin/python3 -m compileall -q -j 0 -s "$root" -p / "$root/usr/lib/python3/dist-packages" "$root/usr/share/python3" >"$work/pycompile.log" 2>&1 || {
	tail -n 30 "$work/pycompile.log" >&2
	die "byte-compiling the guest's Python modules failed (log above)"
}
step "make the initramfs"
chroot "$root" update-initramfs -c -k all >"$work/initramfs.log" 2>&1 || {
	tail -n 30 "$work/initramfs.log" >&2
	die "making the guest's initramfs failed (log above)"
}
step "fetch GRUB's arm64-efi modules"
chroot "$root" sh -c 'cd /tmp && apt-get download grub-efi-arm64-bin' >"$work/grub.log" 2>&1 || {
	tail -n 30 "$work/grub.log" >&2
	die "downloading grub-efi-arm64-bin from $mirror failed (log above)"
}
dpkg-deb -x "$root"/tmp/grub-efi-arm64-bin_*.deb "$work/grub"
rm -f "$root"/tmp/grub-efi-arm64-bin_*.deb
grub_dir=$work/grub/usr/lib/grub/arm64-efi
[ -f "$grub_dir/linux.mod" ] || die "grub-efi-arm64-bin has no $grub_dir/linux.mod; has the package's layout changed?"
umount "$root/proc"
rm -f "$root/usr/sbin/policy-rc.d"

step "configure the guest"
configure_guest "$root" "$mirror" "$suite" "$root_uuid"

# Debian's kernel package links /vmlinuz and /initrd.img at the root on arm64 as on amd64; look
# rather than assume, so a change there fails here and not as a guest that does not boot.
[ -e "$root/vmlinuz" ] && [ -e "$root/initrd.img" ] ||
	die "the guest has no /vmlinuz or /initrd.img; did linux-image-cloud-arm64 install?"
mkdir -p "$root/boot/grub"
cat >"$root/boot/grub/grub.cfg" <<CFG
set timeout=0
menuentry 'Debian GNU/Linux 12 arm64 (ingot test guest)' {
	search --no-floppy --fs-uuid --set=root $root_uuid
	linux /vmlinuz root=UUID=$root_uuid ro console=ttyAMA0,115200n8
	initrd /initrd.img
}
CFG

step "partition a $disk_size GPT disk (ESP, root)"
disk=$work/disk.raw
truncate -s "$disk_size" "$disk"
# 8305: the Discoverable Partitions type for an arm64 root, as Debian's arm64 cloud images use.
sgdisk -a 2048 \
	-n 1:2048:+64M -t 1:ef00 -c 1:esp \
	-n 2:0:0 -t 2:8305 -c 2:root \
	"$disk" >/dev/null
read -r esp_start esp_sectors < <(part_geometry "$disk" 1)
read -r root_start root_sectors < <(part_geometry "$disk" 2)

step "make the root filesystem"
mkfs.ext4 -q -F -L root -U "$root_uuid" -d "$root" "$work/root.img" "$((root_sectors / 2))k"
write_at "$disk" "$work/root.img" "$root_start"
rm -f "$work/root.img"

step "install GRUB for UEFI"
cat >"$work/early.cfg" <<CFG
search --no-floppy --fs-uuid --set=root $root_uuid
set prefix=(\$root)/boot/grub
configfile (\$root)/boot/grub/grub.cfg
CFG
# gzio: Debian's arm64 vmlinuz is a gzip-compressed Image, which GRUB unpacks as it reads it.
modules="part_gpt ext2 fat search search_fs_uuid normal linux configfile echo test gzio"
grub-mkimage -d "$grub_dir" -O arm64-efi -o "$work/BOOTAA64.EFI" -c "$work/early.cfg" -p /boot/grub $modules
mkfs.vfat -n ESP -C "$work/esp.img" "$((esp_sectors / 2))" >/dev/null
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT
mcopy -i "$work/esp.img" "$work/BOOTAA64.EFI" ::/EFI/BOOT/BOOTAA64.EFI
write_at "$disk" "$work/esp.img" "$esp_start"

step "compress to qcow2"
qemu-img convert -c -f raw -O qcow2 "$disk" "$out/debian-12-cloud-arm64.qcow2.tmp"
mv "$out/debian-12-cloud-arm64.qcow2.tmp" "$out/debian-12-cloud-arm64.qcow2"
(cd "$out" && sha256sum debian-12-cloud-arm64.qcow2 >debian-12-cloud-arm64.qcow2.sha256)
# The kernel and its version, for tests.
basename "$(readlink -f "$root/vmlinuz")" >"$out/kernel-version"
step "done: $out/debian-12-cloud-arm64.qcow2 ($(du -h "$out/debian-12-cloud-arm64.qcow2" | cut -f1))"
