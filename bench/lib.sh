#!/bin/bash
# What the bench scripts share; they source it from the repository root.

# need CMD PACKAGE: installs Debian's PACKAGE when CMD is missing (as root).
need() {
	command -v "$1" >/dev/null && return
	echo "bench: installing $2 (apt-get install $2)" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y "$2" >/dev/null
}

# bench_root NAME: makes the run's scratch directory, $root, removed when the script exits, and
# the traps that stop a build still running in the background ($pid) when it is interrupted.
bench_root() {
	root=$(mktemp -d "${TMPDIR:-/var/tmp}/ingot-bench-$1.XXXXXX")
	pid=
	trap bench_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

bench_cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$root"
}

# in_background LOG WHAT CMD…: runs CMD with its output in LOG, in the background so that the
# traps can stop it, and waits for it; when it fails, says WHAT failed, shows LOG's end and exits.
in_background() {
	local log=$1 what=$2
	shift 2
	"$@" >"$log" 2>&1 &
	pid=$!
	if ! wait "$pid"; then
		pid=
		echo "bench: $what failed:" >&2
		tail -n 30 "$log" >&2
		exit 1
	fi
	pid=
}
