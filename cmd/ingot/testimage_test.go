package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ingot-build/ingot/internal/testguest"
)

// `ingot test IMAGE` boots any image with a fresh seed and runs the checks: on the test cloud
// image (built elsewhere: no manifest beside it) with a --tests file it passes and exits 0; on
// the same image with its boot sector zeroed it fails the boots check at once, with the console
// tail, and exits 1; bad input exits 2 before anything boots.
func TestTestImage(t *testing.T) {
	t.Parallel() // one guest at a time: it shares the cores with the package's other guest tests
	img := testguest.CloudImage(t)
	bin := buildIngot(t)
	dir := t.TempDir()
	ingot := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"test", "--work-dir", filepath.Join(dir, "work")}, args...)...)
		cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+filepath.Join(dir, "cache"))
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("ingot test: %v", err)
		}
		return string(out), cmd.ProcessState.ExitCode()
	}

	checks := filepath.Join(dir, "checks.yaml")
	if err := os.WriteFile(checks, []byte("tests:\n  - { name: has-cloud-init, run: \"command -v cloud-init\", sudo: false }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := ingot("--tests", checks, img.Image)
	if code != 0 {
		t.Fatalf("ingot test of the test cloud image exited %d:\n%s", code, out)
	}
	for _, want := range []string{"full boot under bios: passed", "pass  boots", "pass  cloud-init", "pass  fresh-identity",
		"skip  no-build-user", "no manifest beside the image names its build user", "pass  has-cloud-init", "/usr/bin/cloud-init"} {
		if !strings.Contains(out, want) {
			t.Errorf("ingot test's report lacks %q:\n%s", want, out)
		}
	}

	broken := filepath.Join(dir, "broken.raw")
	if b, err := exec.Command("qemu-img", "convert", "-f", "qcow2", "-O", "raw", img.Image, broken).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, b)
	}
	f, err := os.OpenFile(broken, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 512), 0); err != nil { // GRUB's boot.img and the MBR's signature
		t.Fatal(err)
	}
	f.Close()
	out, code = ingot("--firmware", "bios", broken)
	if code != 1 || !strings.Contains(out, "check boots failed") || !strings.Contains(out, "the firmware found nothing to boot") ||
		!strings.Contains(out, "serial console") || !strings.Contains(out, "not a bootable disk") {
		t.Errorf("ingot test of an image without a boot sector exited %d, want 1 with the boots check and the console tail:\n%s", code, out)
	}

	for _, args := range [][]string{
		{filepath.Join(dir, "missing.qcow2")},
		{"--firmware", "coreboot", img.Image},
		{"--tests", filepath.Join(dir, "missing.yaml"), img.Image},
		{img.Image, broken},
	} {
		if out, code := ingot(args...); code != 2 {
			t.Errorf("ingot test %q exited %d, want 2 (bad input):\n%s", args, code, out)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "work")); len(entries) != 0 {
		t.Errorf("ingot test left %d entries in its work dir", len(entries))
	}
}
