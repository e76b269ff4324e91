package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ingot-build/ingot/internal/testguest"
)

// A signed build on a real guest (issue 16): `ingot build --sign-key` publishes an SPDX and a
// CycloneDX SBOM taken from the guest's packages (purls, licenses from its copyright files), the
// provenance in a DSSE envelope, and minisign signatures; Debian's minisign binary verifies them,
// the SBOMs pass CycloneDX's and SPDX's own validators (sbom/testdata/validate), and `ingot
// verify` passes, then fails (exit 1) once an output is changed.
func TestSignedBuild(t *testing.T) {
	img := testguest.CloudImage(t)
	bin := buildIngot(t)
	dir := t.TempDir()
	// ingot gets a cache of its own; the SBOM validators are found in the real one, where
	// make deps-test installed them.
	run := func(name string, args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(name, args...)
		if name != "node" {
			cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+filepath.Join(dir, "cache"))
		}
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("%s: %v", name, err)
		}
		return string(out), cmd.ProcessState.ExitCode()
	}
	pub, sec := filepath.Join(dir, "key.pub"), filepath.Join(dir, "key.sec")
	if out, code := run("minisign", "-G", "-W", "-p", pub, "-s", sec); code != 0 {
		t.Fatalf("minisign -G (run make deps-test if it is missing): %s", out)
	}
	recipe := filepath.Join(dir, "signed.yaml")
	if err := os.WriteFile(recipe, fmt.Appendf(nil, "name: signed\nsource:\n  disk: { url: \"file://%s\", sha256: %s }\n"+
		"machine: { memory: 1GiB, disk: 4GiB, firmware: bios }\nprovision:\n  - shell: echo signed > /etc/signed\n"+
		"outputs: [ { format: qcow2 } ]\n", img.Image, img.SHA256), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if log, code := run(bin, "build", "--sign-key", sec, "--cyclonedx", "--test-boot", "none", "--no-cache",
		"--out", out, "--work-dir", filepath.Join(dir, "work"), recipe); code != 0 {
		t.Fatalf("ingot build --sign-key exited %d:\n%s", code, log)
	}
	built := filepath.Join(out, "signed")
	for _, f := range []string{"SHA256SUMS", "manifest.json", "sbom.spdx.json", "sbom.cdx.json"} {
		if o, code := run("minisign", "-Vm", filepath.Join(built, f), "-p", pub); code != 0 {
			t.Errorf("minisign -V %s: %s", f, o)
		}
	}
	spdx, err := os.ReadFile(filepath.Join(built, "sbom.spdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`pkg:deb/debian/bash@`, `arch=amd64`, `distro=debian-12`, `"licenseDeclared": "GPL-3.0-or-later`, `"fileName": "./signed.qcow2"`} {
		if !strings.Contains(string(spdx), want) {
			t.Errorf("the SPDX SBOM lacks %s", want)
		}
	}
	validator := filepath.Join("..", "..", "sbom", "testdata", "validate", "validate.cjs")
	for kind, f := range map[string]string{"spdx": "sbom.spdx.json", "cyclonedx": "sbom.cdx.json"} {
		if o, code := run("node", validator, kind, filepath.Join(built, f)); code != 0 {
			t.Errorf("the %s validator refused %s (exit %d; 3: run make deps-test):\n%s", kind, f, code, o)
		}
	}
	if o, code := run(bin, "verify", built, "--pubkey", pub); code != 0 || !strings.Contains(o, "provenance  provenance.intoto.jsonl: an SLSA v1 statement") {
		t.Errorf("ingot verify exited %d:\n%s", code, o)
	}

	// An output changed after signing: verify names it and exits 1.
	f, err := os.OpenFile(filepath.Join(built, "signed.qcow2"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff}, 1<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if o, code := run(bin, "verify", built, "--pubkey", pub); code != 1 || !strings.Contains(o, "signed.qcow2") {
		t.Errorf("ingot verify of a changed output exited %d, want 1 naming it:\n%s", code, o)
	}
}
