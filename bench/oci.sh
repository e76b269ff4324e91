#!/usr/bin/env bash
# bench/oci.sh: push and pull throughput of `ingot push`/`ingot pull` against a loopback registry,
# next to `skopeo copy` of the same files in the same run, as ratios (issue 17: within 1.2x).
#
#   bench/oci.sh                 # SIZE_MB=1024 RUNS=3 INGOT=bin/ingot
#   SIZE_MB=256 RUNS=1 bench/oci.sh
#
# The build is synthetic: a qcow2 from qemu-img and one incompressible SIZE_MB output, with
# manifest.json and SHA256SUMS. skopeo copies the same files, laid out for its dir: transport as
# an image whose layers are those files. Every run gets a fresh registry (testdata/registry/start.sh),
# so neither tool finds a blob there already nor mounts one across repositories. Times are wall
# clock, best of RUNS; the files are read from the page cache by both.
#
# Needs: docker-registry skopeo qemu-utils curl (apt-get install -y docker-registry skopeo).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-1024}
RUNS=${RUNS:-3}
INGOT=${INGOT:-bin/ingot}
for p in docker-registry skopeo qemu-img curl; do
	command -v "$p" >/dev/null || { echo "bench/oci.sh: $p is missing: apt-get install -y docker-registry skopeo qemu-utils curl" >&2; exit 1; }
done
[ -x "$INGOT" ] || { echo "bench/oci.sh: $INGOT is not built (make, or INGOT=path)" >&2; exit 1; }

work=$(mktemp -d /var/tmp/ingot-bench-oci.XXXXXX)
regpid=
cleanup() {
	if [ -n "$regpid" ]; then kill "$regpid" 2>/dev/null || true; wait "$regpid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

# The build.
build=$work/out/demo
mkdir -p "$build"
qemu-img create -q -f qcow2 "$build/demo.qcow2" 4G
head -c "$((SIZE_MB << 20))" /dev/urandom >"$build/demo.raw.zst"
q=$(sha256sum "$build/demo.qcow2" | cut -d' ' -f1)
r=$(sha256sum "$build/demo.raw.zst" | cut -d' ' -f1)
cat >"$build/manifest.json" <<JSON
{"schema_version":"1.2","name":"demo","build_id":"bench","started":"2026-01-01T00:00:00Z","finished":"2026-01-01T00:10:00Z",
 "recipe":{"file":"bench"},"inputs":[],"tool":{"ingot_version":"bench","ingot_commit":"","qemu_version":"","qemu_img_version":""},
 "firmware":"bios","steps":[],"provisioners":[],"packages":[],
 "outputs":[{"file":"demo.qcow2","format":"qcow2","size":$(stat -c%s "$build/demo.qcow2"),"sha256":"$q"},
            {"file":"demo.raw.zst","format":"raw.zst","size":$((SIZE_MB << 20)),"sha256":"$r"}]}
JSON
printf '%s  demo.qcow2\n%s  demo.raw.zst\n' "$q" "$r" >"$build/SHA256SUMS"
bytes=$(du -cb "$build"/* | tail -1 | cut -f1)

# The same files for skopeo's dir: transport: blobs named by their hex digest, an OCI image
# manifest that lists them as layers.
sk=$work/skopeo-src
mkdir -p "$sk"
layers=
for f in "$build"/*; do
	h=$(sha256sum "$f" | cut -d' ' -f1)
	ln "$f" "$sk/$h"
	layers="$layers${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"sha256:$h\",\"size\":$(stat -c%s "$f")}"
done
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$work/config.json"
ch=$(sha256sum "$work/config.json" | cut -d' ' -f1)
mv "$work/config.json" "$sk/$ch"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[%s]}' \
	"$ch" "$(stat -c%s "$sk/$ch")" "$layers" >"$sk/manifest.json"
echo "Directory Transport Version: 1.1" >"$sk/version"

# fresh_registry starts a registry with empty storage on a free port, sets $host.
fresh_registry() {
	if [ -n "$regpid" ]; then kill "$regpid"; wait "$regpid" 2>/dev/null || true; fi
	local port dir
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	dir=$(mktemp -d "$work/reg.XXXXXX")
	testdata/registry/start.sh "$dir" "$port" >"$dir/log" 2>&1 &
	regpid=$!
	host=127.0.0.1:$port
	for _ in $(seq 100); do curl -fs "http://$host/v2/" >/dev/null && return; sleep 0.1; done
	echo "bench/oci.sh: the registry did not start:" >&2; cat "$dir/log" >&2; exit 1
}

now() { date +%s.%N; }
best() { printf '%s\n' "$@" | sort -g | head -1; }

ip=(); ipl=(); sp=(); spl=()
for i in $(seq "$RUNS"); do
	fresh_registry
	t0=$(now); ref=$("$INGOT" push "$build" "oci://$host/bench/ingot:1" 2>/dev/null); t1=$(now)
	ip+=("$(echo "$t1 - $t0" | bc)")
	rm -rf "$work/pulled"
	t0=$(now); "$INGOT" pull --out "$work/pulled" "$ref" >/dev/null 2>&1; t1=$(now)
	ipl+=("$(echo "$t1 - $t0" | bc)")
	cmp -s "$work/pulled/demo.raw.zst" "$build/demo.raw.zst" || { echo "bench/oci.sh: ingot pull gave other bytes" >&2; exit 1; }

	fresh_registry
	t0=$(now); skopeo copy -q --dest-tls-verify=false "dir:$sk" "docker://$host/bench/skopeo:1"; t1=$(now)
	sp+=("$(echo "$t1 - $t0" | bc)")
	rm -rf "$work/skopeo-pulled"
	t0=$(now); skopeo copy -q --src-tls-verify=false "docker://$host/bench/skopeo:1" "dir:$work/skopeo-pulled"; t1=$(now)
	spl+=("$(echo "$t1 - $t0" | bc)")
done

mb=$(echo "scale=1; $bytes / 1048576" | bc)
report() { # name ingot skopeo
	printf '%-5s %8.1f MiB  ingot %6.2fs (%6.1f MiB/s)  skopeo %6.2fs (%6.1f MiB/s)  ratio %.2fx\n' \
		"$1" "$mb" "$2" "$(echo "$mb / $2" | bc -l)" "$3" "$(echo "$mb / $3" | bc -l)" "$(echo "$2 / $3" | bc -l)"
}
echo "bench/oci.sh: $RUNS run(s), best of each; ratio = ingot time / skopeo time (goal <= 1.20)"
report push "$(best "${ip[@]}")" "$(best "${sp[@]}")"
report pull "$(best "${ipl[@]}")" "$(best "${spl[@]}")"
