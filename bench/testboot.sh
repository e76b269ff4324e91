#!/bin/bash
# What test boots cost (issue 14, "Bars → Benchmark"), in one run: the demo recipe (the test cloud
# image, six outputs) built once, cold, with its default test step (a full boot of the first
# output, a smoke boot of each of the five others). Read back from the build's manifest:
#
#   - the build's own boot, from power-on to cloud-init done (its boot and connect steps): the
#     normal boot a full test boot is held to (goal: a full test boot costs no more);
#   - the full test boot of the first output, every check included;
#   - each smoke boot (goal: at most 20 s for an extra format), and what the five together added
#     to the test step's wall time (they run side by side, one vCPU each).
#
# Under TCG on 2 shared cores these times are as noisy as the load, printed before and after.
# Exits non-zero only when the build fails, never on a missed goal. Usage: bash bench/testboot.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
need jq jq
make -s build >&2
img=$(bash testdata/guests/ensure.sh cloud)
bench_root testboot

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
in_background "$root/build.log" "the demo build" env XDG_CACHE_HOME="$root/cache" bin/ingot build --no-cache --out "$root/out" --work-dir "$root/work" \
	--var image_url="file://$img/debian-12-cloud.qcow2" --var image_sha256="$(cut -d' ' -f1 "$img/debian-12-cloud.qcow2.sha256")" \
	demo
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"
jq -r '
  def step(n): [.steps[] | select(.step == n) | .seconds] | add;
  (step("boot") + step("connect")) as $boot
  | [.outputs[] | select(.tests) | {file, boot: .tests[0].boot, s: .tests[0].seconds}] as $t
  | ($t | map(select(.boot == "full")) | .[0]) as $full
  | ($t | map(select(.boot == "smoke"))) as $smoke
  | step("test") as $step
  | "build boot (power-on to cloud-init done): \($boot * 10 | round / 10) s",
    "full test boot of \($full.file), every check: \($full.s * 10 | round / 10) s = \(($full.s / $boot) * 100 | round / 100)× the build boot (goal ≤ 1.00)",
    ($smoke[] | "smoke boot of \(.file): \(.s * 10 | round / 10) s (goal ≤ 20 s)"),
    "the test step: \($step * 10 | round / 10) s; the \($smoke | length) smoke boots added \(($step - $full.s) * 10 | round / 10) s to it, \((($step - $full.s) / ($smoke | length)) * 10 | round / 10) s per extra format (goal ≤ 20 s)",
    "the whole build: \((.finished | sub("\\.[0-9]+";"") | fromdateiso8601) - (.started | sub("\\.[0-9]+";"") | fromdateiso8601)) s"
' "$root/out/demo/manifest.json"
