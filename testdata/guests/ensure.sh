#!/usr/bin/env bash
# Prints the cache directory of a test guest, building it first when it is missing.
#
# Usage: ensure.sh cloud|installer|arm64
#
# Guests are cached outside the clone, under ${XDG_CACHE_HOME:-~/.cache}/ingot/testdata/NAME-HASH,
# where HASH covers every file the build reads, so editing a build script rebuilds its guest (and the
# guests built on it). A build runs in a temporary directory beside the cache entry and is renamed into
# place only when complete: the cache never holds a half-built guest. A lock serialises concurrent
# callers (make test and go test may both ask).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

name=${1:?usage: ensure.sh cloud|installer|arm64}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/ingot/testdata

hash_of() { cat "$@" | sha256sum | cut -c1-16; }
key_cloud() { hash_of "$here/lib.sh" "$here/cloud-image.sh"; }
key_arm64() { hash_of "$here/lib.sh" "$here/cloud-image-arm64.sh"; }
key_installer() {
	{
		key_cloud
		cat "$here/lib.sh" "$here/installer-iso.sh" "$here"/installer/*.go
	} | sha256sum | cut -c1-16
}

case "$name" in
cloud) key=$(key_cloud) builder=$here/cloud-image.sh ;;
installer) key=$(key_installer) builder=$here/installer-iso.sh ;;
arm64) key=$(key_arm64) builder=$here/cloud-image-arm64.sh ;;
*) die "unknown guest '$name'; known: cloud, installer, arm64" ;;
esac

dir=$cache/$name-$key
if [ ! -f "$dir/.complete" ]; then
	mkdir -p "$cache"
	need_cmd flock util-linux
	exec 9>"$cache/.lock-$name"
	flock 9
	if [ ! -f "$dir/.complete" ]; then
		start=$(date +%s)
		tmp=$(mktemp -d "$cache/.$name-$key.XXXXXX")
		trap 'rm -rf "$tmp"' EXIT
		bash "$builder" "$tmp" >&2
		echo "$(($(date +%s) - start))" >"$tmp/build-seconds"
		touch "$tmp/.complete"
		rm -rf "$dir"
		mv "$tmp" "$dir"
		trap - EXIT
		step "$name guest built in $(cat "$dir/build-seconds") s: $dir"
		# Older builds of this guest are superseded; keep the cache from growing without bound.
		find "$cache" -maxdepth 1 -name "$name-*" ! -name "$name-$key" -exec rm -rf {} +
	fi
fi
echo "$dir"
