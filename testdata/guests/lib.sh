# Shared helpers for the test-guest build scripts. Sourced, never run.
# Every check here stops the build with a message that names what is missing and how to fix it.

die() { echo "testguest: $*" >&2; exit 1; }
step() { printf '%s testguest: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

need_root() {
	[ "$(id -u)" = 0 ] || die "building test guests needs root (debootstrap, mkfs with device nodes); run as root or with sudo"
}

# need_cmd CMD PACKAGE: the Debian package is named so the message says what to install.
need_cmd() {
	command -v "$1" >/dev/null 2>&1 || die "'$1' not found; install it with: apt-get install $2"
}

# need_space DIR MiB: refuse to start a build that would fill the disk half-way through.
need_space() {
	local avail
	avail=$(df -Pm "$1" | awk 'NR==2 {print $4}')
	[ "${avail:-0}" -ge "$2" ] || die "need ${2} MiB free in $1 but only ${avail} MiB are; free some space or set TMPDIR/XDG_CACHE_HOME to a bigger disk"
}

# need_mirror URL SUITE: debootstrap's own error for an unreachable mirror is a page of noise.
need_mirror() {
	if command -v curl >/dev/null 2>&1; then
		curl -fsS --max-time 20 -o /dev/null "$1/dists/$2/Release" ||
			die "cannot reach the Debian mirror $1 (dists/$2/Release); check the network or set INGOT_DEBIAN_MIRROR to a reachable mirror"
	else
		wget -q -T 20 -O /dev/null "$1/dists/$2/Release" ||
			die "cannot reach the Debian mirror $1 (dists/$2/Release); check the network or set INGOT_DEBIAN_MIRROR to a reachable mirror"
	fi
}

# part_geometry DISK N: prints "START_SECTOR SECTORS" of partition N.
part_geometry() {
	partx -g -n "$2" -o START,SECTORS "$1" | awk '{print $1, $2}'
}

# write_at DISK FILE SECTOR: copy FILE into DISK at a 512-byte sector, keeping holes.
write_at() {
	dd if="$2" of="$1" bs=4M oflag=seek_bytes seek=$(($3 * 512)) conv=notrunc,sparse status=none
}

# configure_guest ROOT MIRROR SUITE ROOT_UUID: what makes the debootstrapped tree a cloud image,
# the same for every architecture: apt's source, hostname, fstab, cloud-init reading NoCloud only,
# the locale set, timers that would disturb tests masked, and no identity of its own (machine-id
# and host keys are made at first boot).
configure_guest() {
	local root=$1 mirror=$2 suite=$3 root_uuid=$4
	echo "deb $mirror $suite main" >"$root/etc/apt/sources.list"
	echo debian >"$root/etc/hostname"
	printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
	echo "UUID=$root_uuid / ext4 defaults,errors=remount-ro 0 1" >"$root/etc/fstab"
	# Only NoCloud: probing for EC2/GCE/Azure metadata servers under TCG costs tens of seconds.
	cat >"$root/etc/cloud/cloud.cfg.d/90-ingot-testguest.cfg" <<'CFG'
datasource_list: [ NoCloud, None ]
# As Debian's cloud images: the hostname resolves, so sudo does not complain.
manage_etc_hosts: true
# GRUB was installed from the host, not as a package: nothing for grub-dpkg to configure.
grub_dpkg: { enabled: false }
CFG
	# cloud-init's locale module sets en_US.UTF-8, as on Debian's cloud images, and fails unless it exists.
	# Made the system locale here too: cloud-init then finds it set and skips locale-gen, which takes
	# 20 s of every first boot under TCG (far more for arm64).
	sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' "$root/etc/locale.gen"
	chroot "$root" locale-gen >/dev/null
	chroot "$root" update-locale LANG=en_US.UTF-8
	# Timers that would start apt or scrubbing while a test provisions the guest.
	for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service; do
		ln -sf /dev/null "$root/etc/systemd/system/$unit"
	done
	# A template: per-instance identity is made at first boot.
	: >"$root/etc/machine-id"
	rm -f "$root"/etc/ssh/ssh_host_*
	rm -rf "$root/var/lib/cloud" "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/*_Packages
	chroot "$root" apt-get clean
}
