package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ingot-build/ingot/internal/testguest"
	"github.com/ingot-build/ingot/manifest"
)

// TestEdgeArm64 is issue 18's edge path end to end, on the arm64 test guest under TCG: an
// aarch64 build (qemu-system-aarch64 -M virt with AAVMF) with a file upload and a shell step
// writes a minimal raw+zstd+bmap and a qcow2; the manifest says aarch64 and the SBOM's purls
// arm64, and `ingot inspect` of the qcow2 says aarch64. `ingot flash` writes the raw onto a loop
// device bigger than the build's disk, and `ingot test` boots that device as aarch64 (its UEFI
// boot loader says so; a device has no manifest) under UEFI: SSH with the pinned key, cloud-init
// done, the root filesystem grown to the device, and checks that find the uploaded file and an
// aarch64 kernel. The build runs no test step of its own (--test-boot none): the device boot is
// the raw output's boot, byte for byte, and one TCG boot of arm64 is enough for CI's budget.
func TestEdgeArm64(t *testing.T) {
	t.Parallel()
	img := testguest.CloudImageArm64(t)
	bin := buildIngot(t)
	dir := t.TempDir()
	run := func(name string, args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+filepath.Join(dir, "cache"))
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("%s: %v", name, err)
		}
		return string(out), cmd.ProcessState.ExitCode()
	}
	write := func(name, text string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("motd", "edge gateway 7\n")
	recipe := write("edge.yaml", fmt.Sprintf(`name: edge
source:
  disk: { url: "file://%s", sha256: %s, format: qcow2 }
machine: { arch: aarch64, memory: 1GiB, disk: 3GiB }
provision:
  - file: { src: motd, dst: /etc/motd }
  - shell: |
      test "$(uname -m)" = aarch64
      echo "built on $(uname -m)" > /etc/edge-build
outputs:
  - { format: raw, compress: zstd, bmap: true, shrink: minimal }
  - { format: qcow2 }
`, img.Image, img.SHA256))
	out, work := filepath.Join(dir, "out"), filepath.Join(dir, "work")
	log, code := run(bin, "build", "--test-boot", "none", "--out", out, "--work-dir", work, recipe)
	if code != 0 {
		t.Fatalf("the arm64 build exited %d:\n%s", code, log)
	}
	t.Logf("the arm64 build:\n%s", log)
	if !strings.Contains(log, "KVM runs guests of the host's own architecture only") {
		t.Error("the build did not say why it runs under TCG")
	}
	built := filepath.Join(out, "edge")
	m, err := manifest.Read(filepath.Join(built, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Arch != "aarch64" || m.Firmware != "uefi" {
		t.Errorf("manifest: arch %q, firmware %q; want aarch64, uefi", m.Arch, m.Firmware)
	}
	arm64 := 0
	for _, p := range m.Packages {
		if p.Arch == "arm64" {
			arm64++
		} else if p.Arch != "all" {
			t.Errorf("package %s is %s", p.Name, p.Arch)
		}
	}
	if arm64 < 100 {
		t.Errorf("only %d arm64 packages in the manifest", arm64)
	}
	var spdx struct {
		Packages []struct {
			Name string `json:"name"`
			Refs []struct {
				Locator string `json:"referenceLocator"`
			} `json:"externalRefs"`
		} `json:"packages"`
	}
	b, err := os.ReadFile(filepath.Join(built, "sbom.spdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &spdx); err != nil {
		t.Fatal(err)
	}
	purl := ""
	for _, p := range spdx.Packages {
		for _, r := range p.Refs {
			if p.Name == "bash" && strings.HasPrefix(r.Locator, "pkg:deb/") {
				purl = r.Locator
			}
		}
	}
	if !strings.Contains(purl, "arch=arm64") {
		t.Errorf("the SBOM's purl for bash is %q, want arch=arm64", purl)
	}
	for _, f := range []string{"edge-minimal.raw.zst", "edge-minimal.raw.bmap", "edge.qcow2"} {
		if _, err := os.Stat(filepath.Join(built, f)); err != nil {
			t.Errorf("output %s: %v", f, err)
		}
	}
	if o, code := run("qemu-img", "info", "--output=json", filepath.Join(built, "edge.qcow2")); code != 0 || !strings.Contains(o, `"format": "qcow2"`) {
		t.Errorf("qemu-img info edge.qcow2 exited %d:\n%s", code, o)
	}
	// The image says what it boots as: its ESP's UEFI default boot loader.
	if o, code := run(bin, "inspect", filepath.Join(built, "edge.qcow2")); code != 0 || !strings.Contains(o, "aarch64 (its UEFI boot loader EFI/BOOT/BOOTAA64.EFI)") {
		t.Errorf("ingot inspect edge.qcow2 exited %d, without the image's arch:\n%s", code, o)
	}

	// Flashed onto a device bigger than the build's 3 GiB disk, it boots under AAVMF and grows.
	device := loopDevice(t, filepath.Join(dir, "device.img"), 5<<30)
	o, code := run(bin, "flash", "--yes", "--verify", filepath.Join(built, "edge-minimal.raw.zst"), device)
	if code != 0 || !strings.Contains(o, "saved") {
		t.Fatalf("ingot flash exited %d:\n%s", code, o)
	}
	t.Logf("ingot flash:\n%s", o)
	checks := write("checks.yaml", `tests:
  - { name: uploaded, run: 'grep -qx "edge gateway 7" /etc/motd' }
  - { name: built-by-the-step, run: 'grep -qx "built on aarch64" /etc/edge-build' }
  - { name: arm64-kernel, run: 'test "$(uname -m)" = aarch64' }
`)
	// No --arch: a device has no manifest beside it, and its UEFI boot loader says aarch64.
	o, code = run(bin, "test", "--tests", checks, "--work-dir", work, device)
	if code != 0 {
		t.Fatalf("ingot test of the flashed device exited %d:\n%s", code, o)
	}
	for _, want := range []string{`arch=aarch64 loader=EFI/BOOT/BOOTAA64.EFI`, "full boot under uefi: passed", "pass  boots", "pass  cloud-init", "pass  grown", "pass  uploaded", "pass  built-by-the-step", "pass  arm64-kernel"} {
		if !strings.Contains(o, want) {
			t.Errorf("ingot test of the flashed device lacks %q:\n%s", want, o)
		}
	}
	t.Logf("the flashed device:\n%s", o)
}

// loopDevice attaches a loop device to a new sparse file of size bytes at backing, detached when
// the test ends, and returns its path: a stand-in for an SD card or an SSD.
func loopDevice(t *testing.T, backing string, size int64) string {
	t.Helper()
	if err := os.WriteFile(backing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(backing, size); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", backing).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	device := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", device).Run() })
	return device
}
