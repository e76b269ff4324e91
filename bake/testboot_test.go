package bake_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ingot-build/ingot/bake"
	"github.com/ingot-build/ingot/internal/testguest"
)

// A build whose provisioning breaks booting (a bad /etc/fstab entry) fails in its test step,
// naming the output and the check, with the console showing why, and publishes nothing; so does
// a build whose own check fails, which --keep-on-failure keeps, saying how to boot it by hand.
// (Passing test boots of every output format: TestDemoRecipeThroughRemoteLibvirt.) The second
// build restores the first one's "booted" checkpoint instead of booting.
func TestTestBootFailures(t *testing.T) {
	t.Parallel()
	img := testguest.CloudImage(t)
	dir := t.TempDir()
	recipe := func(name, step, tests string) string {
		return fmt.Sprintf(`name: %s
source:
  disk: { url: "file://%s", sha256: %s }
machine: { cpus: 2, memory: 1GiB, disk: 4GiB, firmware: bios }
provision:
  - shell: %s
%s
outputs: [ { format: qcow2 } ]
`, name, img.Image, img.SHA256, step, tests)
	}
	withTests := func(o *bake.Options) { o.NoCache = false; o.TestBoot = "" }
	out := filepath.Join(dir, "out")
	published := func(name string) {
		t.Helper()
		if _, err := os.Stat(filepath.Join(out, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s was published (%v) although its test boot failed", name, err)
		}
	}

	_, err := runBuildIn(t, dir, recipe("e2e-fstab", `"mkdir -p /mnt/bad && echo 'tmpfs /mnt/bad nosuchfs defaults 0 0' >> /etc/fstab"`, ""), nil, withTests)
	var te *bake.TestError
	var se *bake.StepError
	switch {
	case !errors.As(err, &te) || !errors.As(err, &se):
		t.Fatalf("build with a bad fstab: %v, want a *bake.TestError in a *bake.StepError", err)
	case se.Step != "test" || te.File != "e2e-fstab.qcow2" || te.Check != "boots" || te.Boot != "full" || te.Firmware != "bios":
		t.Errorf("failed in step %s, %+v; want step test, check boots of the full boot of e2e-fstab.qcow2 under bios", se.Step, te)
	case !strings.Contains(err.Error(), "emergency mode") || !strings.Contains(te.Seen, "the console reported:") || !strings.Contains(te.Seen, "/mnt/bad"):
		t.Errorf("the error does not say systemd stopped in emergency mode over /mnt/bad, with the console:\n%v", err)
	}
	published("e2e-fstab")

	_, err = runBuildIn(t, dir, recipe("e2e-check", "echo no nginx here > /etc/motd", `tests:
  - { name: nginx-installed, run: "cat /etc/motd; command -v nginx", timeout: 30s }`), nil,
		func(o *bake.Options) { withTests(o); o.KeepOnFailure = true })
	// dash's command -v says 127 for a command it does not find.
	if !errors.As(err, &te) || te.Check != "nginx-installed" || !strings.Contains(te.Seen, "no nginx here") || !strings.Contains(te.Seen, "(exit status 127)") {
		t.Fatalf("build with a failing check: %v, want check nginx-installed failing with its output and exit status", err)
	}
	if !strings.Contains(te.Manual, "qemu-system-x86_64") || !strings.Contains(err.Error(), "boot it by hand") {
		t.Errorf("the kept failure does not say how to boot it by hand: %v", err)
	}
	published("e2e-check")
	kept, _ := filepath.Glob(filepath.Join(out, ".ingot-staging-e2e-check-*", "e2e-check.qcow2"))
	if len(kept) != 1 {
		t.Errorf("--keep-on-failure did not keep the output whose test failed: %v", kept)
	}
	if log, _ := os.ReadFile(filepath.Join(dir, "build.log")); !strings.Contains(string(log), "step restored from the checkpoint") {
		t.Errorf("the second build booted instead of restoring the first one's checkpoint")
	}
}
