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
