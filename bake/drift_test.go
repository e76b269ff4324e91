package bake_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ingot-build/ingot/bake"
	"github.com/ingot-build/ingot/images"
	"github.com/ingot-build/ingot/internal/testguest"
	"github.com/ingot-build/ingot/manifest"
)

// Drift on real builds (issue 15): a build records the file inventory of its final image; the
// same recipe built again, compared with the first through the image store (image:NAME), differs
// in nothing beyond the noise list, so --skip-if-same publishes nothing; a build that adds a
// setuid file crosses its recipe's drift threshold, and its outputs go to quarantine while the
// published build stays. The later builds restore the first one's checkpoints.
func TestDriftAgainstBaseline(t *testing.T) {
	t.Parallel()
	img := testguest.CloudImage(t)
	dir := t.TempDir()
	recipe := func(extra string) string {
		return fmt.Sprintf(`name: e2e-drift
source:
  disk: { url: "file://%s", sha256: %s }
machine: { cpus: 2, memory: 1GiB, disk: 4GiB, firmware: bios }
provision:
  - shell: echo drift > /etc/e2e-drift
  - shell: date > /var/tmp/built-at%s
drift:
  fail_on: [ "setuid.added>0", "packages.changed>0" ]
outputs: [ { format: qcow2 } ]
`, img.Image, img.SHA256, extra)
	}
	withCache := func(o *bake.Options) { o.NoCache = false }
	res, err := runBuildIn(t, dir, recipe(""), nil, withCache)
	if err != nil {
		t.Fatal(err)
	}
	first := res.Manifest
	if first.Inventory == nil || first.Inventory.Entries < 1000 {
		t.Fatalf("manifest inventory = %+v, want the image's files", first.Inventory)
	}
	entries, err := manifest.ReadInventory(res.Dir, *first.Inventory)
	if err != nil {
		t.Fatal(err)
	}
	byPath := map[string]manifest.Entry{}
	for _, e := range entries {
		byPath[e.Path] = e
	}
	if e := byPath["/etc/e2e-drift"]; e.Type != "file" || e.Size != 6 || e.Mode != "0644" || len(e.SHA256) != 64 {
		t.Errorf("/etc/e2e-drift in the inventory: %+v", e)
	}
	if e := byPath["/usr/bin/sudo"]; e.Mode != "4755" || e.UID != 0 {
		t.Errorf("/usr/bin/sudo in the inventory: %+v, want setuid root", e)
	}
	if _, ok := byPath["/home/ingot"]; ok {
		t.Error("the inventory lists the build user's home: it was taken before generalize")
	}
	// The test guest mounts no ESP: its partition (the second) is listed as /[part2].
	if e := byPath["/[part2]/EFI/BOOT/BOOTX64.EFI"]; e.Type != "file" || len(e.SHA256) != 64 {
		t.Errorf("the ESP's files are not in the inventory: %+v", e)
	}

	// The same recipe again, against the stored image's record: nothing but noise differs.
	store, err := images.Open(filepath.Join(dir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	base, err := bake.LoadBaseline("image:e2e-drift", store)
	if err != nil {
		t.Fatal(err)
	}
	res, err = runBuildIn(t, dir, recipe(""), nil, func(o *bake.Options) {
		withCache(o)
		o.Force, o.Baseline, o.SkipIfSame = true, base, true
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Skipped || res.Manifest.Drift == nil || !res.Manifest.Drift.Same {
		report, _ := os.ReadFile(filepath.Join(dir, "build.log"))
		t.Fatalf("a rebuild of the same recipe: skipped %v, drift %+v; want nothing to differ beyond noise:\n%s", res.Skipped, res.Manifest.Drift, report)
	}
	if m, err := manifest.Read(filepath.Join(res.Dir, "manifest.json")); err != nil || m.BuildID != first.BuildID {
		t.Errorf("--skip-if-same published something: %v, %v", m, err)
	}

	// A setuid file added: the threshold is crossed, the outputs go to quarantine.
	base, err = bake.LoadBaseline(res.Dir, store)
	if err != nil {
		t.Fatal(err)
	}
	_, err = runBuildIn(t, dir, recipe("\n  - shell: install -m 4755 /bin/true /usr/local/bin/sneaky"), nil, func(o *bake.Options) {
		withCache(o)
		o.Baseline = base
	})
	var de *bake.DriftError
	if !errors.As(err, &de) || len(de.Crossed) != 1 || de.Crossed[0].Metric != "setuid.added" || de.Crossed[0].Value != 1 {
		t.Fatalf("build with a new setuid file: %v, want a *bake.DriftError crossing setuid.added>0 once", err)
	}
	for _, f := range []string{"e2e-drift.qcow2", "manifest.json", "drift.txt", "drift.json", manifest.InventoryFile} {
		if _, err := os.Stat(filepath.Join(de.Quarantine, f)); err != nil {
			t.Errorf("quarantine lacks %s: %v", f, err)
		}
	}
	if report, _ := os.ReadFile(filepath.Join(de.Quarantine, "drift.txt")); !strings.Contains(string(report), "/usr/local/bin/sneaky") {
		t.Errorf("the drift report does not name the setuid file:\n%s", report)
	}
	if m, err := manifest.Read(filepath.Join(res.Dir, "manifest.json")); err != nil || m.BuildID != first.BuildID {
		t.Errorf("the quarantined build replaced the published one: %v, %v", m, err)
	}
	if names, _ := filepath.Glob(filepath.Join(dir, "out", "*")); !slices.Contains(names, de.Quarantine) {
		t.Errorf("quarantine %s not in the output dir: %v", de.Quarantine, names)
	}
}
