package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ingot-build/ingot/internal/testguest"
	"github.com/ingot-build/ingot/internal/testregistry"
)

// A release, end to end on real guests: a build with secrets that leaks them fails; the build that
// does not is signed, pushed to a registry, pulled back verified, and its raw output flashed onto
// a device bigger than the image, which boots and grows (issues 16, 17 and 18). One test, so
// that the guest boots once and the second build restores the first one's checkpoint.
//
// The leaky build hands a step two secrets in its environment and a key on its stdin; the step
// traces itself (set -x) and writes a secret to the console, so the values pass through the
// streamed output and the console capture. It writes one secret to a file and deletes it without
// scrubbing, among live files (so that its block shares a 64 KiB cluster with live ones, which
// generalize's trim cannot discard: a lone freed cluster it does), leaves the other in a file, and writes AWS's
// documented example key: the scan fails the build naming all three, nothing is published, and no
// value is in ingot's output or in the kept work dir's logs.
//
// The signed build restores the leaky build's checkpoint (the step before the secrets), shreds
// the file instead, and allows the example key with a reason; it publishes an SPDX and a
// CycloneDX SBOM taken from the guest's packages (purls, licenses from its copyright files), the
// provenance in a DSSE envelope, and minisign signatures; Debian's minisign binary verifies them,
// the SBOMs pass CycloneDX's and SPDX's own validators (sbom/testdata/validate), and `ingot
// verify` passes, then fails (exit 1) once an output is changed. No value is in its output,
// manifest, SBOMs or provenance.
//
// `ingot build --push` puts it in Debian's docker-registry on loopback: skopeo sees it and its
// annotations, `ingot pull --pubkey` gives every file back byte for byte, `ingot push` of the
// same build again works. (The device path, `ingot flash` of the minimal raw output onto a bigger
// loop device that `ingot test DEVICE` then boots, is TestEdgeArm64's.)
func TestReleasePipeline(t *testing.T) {
	t.Parallel() // one guest at a time: it shares the cores with the package's other guest tests
	img := testguest.CloudImage(t)
	bin := buildIngot(t)
	dir := t.TempDir()
	token, apiKey := "tok-e2e-"+randomHex(t), "api-e2e-"+randomHex(t)
	deployKey := "-----BEGIN DEPLOY KEY-----\n" + randomHex(t) + "\n-----END DEPLOY KEY-----\n"
	// ingot gets a cache of its own; the SBOM validators are found in the real one, where
	// make deps-test installed them.
	run := func(name string, args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(name, args...)
		if name != "node" {
			cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+filepath.Join(dir, "cache"), "INGOT_E2E_TOKEN="+token, "INGOT_E2E_API_KEY="+apiKey)
		}
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("%s: %v", name, err)
		}
		return string(out), cmd.ProcessState.ExitCode()
	}
	leaks := func(what, text string) {
		t.Helper()
		for name, v := range map[string]string{"TOKEN": token, "API_KEY": apiKey, "DEPLOY_KEY": deployKey[30:50]} {
			if strings.Contains(text, v) {
				t.Errorf("%s holds the value of %s", what, name)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "deploy.key"), []byte(deployKey), 0o600); err != nil {
		t.Fatal(err)
	}
	keySum := sha256.Sum256([]byte(deployKey))
	recipeText := func(remove, extra string) []byte {
		return fmt.Appendf(nil, `name: signed
source:
  disk: { url: "file://%s", sha256: %s }
machine: { memory: 1GiB, disk: 4GiB, firmware: bios }
secrets:
  TOKEN: { env: INGOT_E2E_TOKEN }
  API_KEY: { env: INGOT_E2E_API_KEY }
  DEPLOY_KEY: { file: deploy.key }
provision:
  - shell: echo signed > /etc/signed
  - shell:
      secrets: [TOKEN, API_KEY]
      stdin: DEPLOY_KEY
      inline: |
        set -x
        echo "deploy key sha256: $(sha256sum | cut -d' ' -f1)"
        mkdir -p /etc/app
        for i in $(seq 16); do echo "setting$i=1" > /etc/app/a$i.conf; done
        printf '%%s\n' "$TOKEN" > /etc/app/token
        for i in $(seq 16); do echo "setting$i=1" > /etc/app/b$i.conf; done
        printf 'aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n' > /etc/app/aws.conf
        sync
        echo "on the console: $TOKEN" > /dev/console
        %s
outputs: [ { format: qcow2 }, { format: raw, compress: zstd, bmap: true, shrink: minimal } ]
%s`, img.Image, img.SHA256, remove, extra)
	}
	recipe := filepath.Join(dir, "signed.yaml")
	out := filepath.Join(dir, "out")
	work := filepath.Join(dir, "work")

	// The leaky build.
	leaky := recipeText("rm /etc/app/token; printf '%s\\n' \"$API_KEY\" > /etc/app/api.key; sync", "")
	if err := os.WriteFile(recipe, leaky, 0o644); err != nil {
		t.Fatal(err)
	}
	log, code := run(bin, "build", "--test-boot", "none", "--keep-on-failure", "--out", out, "--work-dir", work, recipe)
	if code != 1 {
		t.Fatalf("the leaky build exited %d, want 1:\n%s", code, log)
	}
	for _, want := range []string{
		"secret TOKEN in no file of the image the scan could name", "secret API_KEY in /etc/app/api.key", "credential pattern aws-access-key in /etc/app/aws.conf",
		"[secret TOKEN]", "deploy key sha256: " + hex.EncodeToString(keySum[:]),
	} {
		if !strings.Contains(log, want) {
			t.Errorf("the leaky build's output lacks %q", want)
		}
	}
	leaks("the leaky build's output", log)
	t.Logf("the leaky build:\n%s", log)
	if _, err := os.Stat(filepath.Join(out, "signed")); err == nil {
		t.Error("the leaky build published its outputs")
	}
	consoles, _ := filepath.Glob(filepath.Join(work, "*", "console.log"))
	if len(consoles) != 1 {
		t.Fatalf("kept consoles %v, want the leaky build's", consoles)
	}
	console, err := os.ReadFile(consoles[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(console), "on the console: [secret TOKEN]") {
		t.Errorf("the kept console lacks the masked line:\n%s", console)
	}
	leaks("the kept console", string(console))
	if err := os.RemoveAll(work); err != nil {
		t.Fatal(err)
	}

	// The signed build: the file is shredded, the example key allowed.
	pub, sec := filepath.Join(dir, "key.pub"), filepath.Join(dir, "key.sec")
	if out, code := run("minisign", "-G", "-W", "-p", pub, "-s", sec); code != 0 {
		t.Fatalf("minisign -G (run make deps-test if it is missing): %s", out)
	}
	clean := recipeText("shred -u /etc/app/token; sync", "secret_scan:\n  allow:\n    - { pattern: aws-access-key, path: /etc/app/aws.conf, reason: AWS's documented example key }\n")
	if err := os.WriteFile(recipe, clean, 0o644); err != nil {
		t.Fatal(err)
	}
	reg := testregistry.Start(t)
	testregistry.Need(t, "skopeo")
	log, code = run(bin, "build", "--sign-key", sec, "--cyclonedx", "--test-boot", "none", "--out", out, "--work-dir", work,
		"--push", "oci://"+reg.Host+"/ingot/signed:1", recipe)
	if code != 0 {
		t.Fatalf("ingot build --sign-key --push exited %d:\n%s", code, log)
	}
	for _, want := range []string{"step restored from the checkpoint", "secret scan: allowed by the recipe", "AWS's documented example key"} {
		if !strings.Contains(log, want) {
			t.Errorf("the signed build's output lacks %q:\n%s", want, log)
		}
	}
	leaks("the signed build's output", log)
	t.Logf("the signed build:\n%s", log)
	built := filepath.Join(out, "signed")
	for _, f := range []string{"manifest.json", "sbom.spdx.json", "sbom.cdx.json", "provenance.intoto.jsonl"} {
		data, err := os.ReadFile(filepath.Join(built, f))
		if err != nil {
			t.Fatal(err)
		}
		leaks(f, string(data))
	}
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

	// The build went to the registry with --push: skopeo, an independent client, sees it and its
	// annotations; ingot pull, verifying the signatures, gives every file back byte for byte.
	var digested string
	for line := range strings.Lines(log) {
		if l := strings.TrimSpace(line); strings.HasPrefix(l, "oci://"+reg.Host+"/ingot/signed@sha256:") {
			digested = l
		}
	}
	if digested == "" {
		t.Fatalf("ingot build --push printed no digest:\n%s", log)
	}
	raw, code := run("skopeo", "inspect", "--raw", "--tls-verify=false", "docker://"+reg.Host+"/ingot/signed:1")
	for _, want := range []string{`"io.ingot.name": "signed"`, `"io.ingot.role": "output"`, `"org.opencontainers.image.title": "signed.qcow2"`} {
		if code != 0 || !strings.Contains(strings.ReplaceAll(raw, `":"`, `": "`), want) {
			t.Errorf("skopeo inspect --raw (exit %d) lacks %s:\n%s", code, want, raw)
		}
	}
	pulled := filepath.Join(dir, "pulled")
	if o, code := run(bin, "pull", digested, "--out", pulled, "--pubkey", pub); code != 0 {
		t.Fatalf("ingot pull exited %d:\n%s", code, o)
	}
	entries, err := os.ReadDir(built)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		a, errA := os.ReadFile(filepath.Join(built, e.Name()))
		b, errB := os.ReadFile(filepath.Join(pulled, e.Name()))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("%s did not round-trip: %v %v", e.Name(), errA, errB)
		}
	}
	if o, code := run(bin, "push", built, "oci://"+reg.Host+"/ingot/signed:again"); code != 0 || strings.TrimSpace(o) == "" {
		t.Errorf("ingot push of the same build exited %d:\n%s", code, o)
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
	// SHA256SUMS edited to match the changed output: its signature no longer holds.
	sums := filepath.Join(built, "SHA256SUMS")
	text, err := os.ReadFile(sums)
	if err != nil {
		t.Fatal(err)
	}
	qcow, err := os.ReadFile(filepath.Join(built, "signed.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	newSum := sha256.Sum256(qcow)
	var edited []string
	for line := range strings.Lines(string(text)) {
		if strings.HasSuffix(strings.TrimSpace(line), "  signed.qcow2") {
			line = hex.EncodeToString(newSum[:]) + "  signed.qcow2\n"
		}
		edited = append(edited, line)
	}
	if err := os.WriteFile(sums, []byte(strings.Join(edited, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	if o, code := run(bin, "verify", built, "--pubkey", pub); code != 1 || !strings.Contains(o, "SHA256SUMS") || !strings.Contains(o, "signature") {
		t.Errorf("ingot verify of an edited SHA256SUMS exited %d, want 1 naming its signature:\n%s", code, o)
	}
	// Everything signed again, with another key: not the key verify is given.
	pub2, sec2 := filepath.Join(dir, "other.pub"), filepath.Join(dir, "other.sec")
	if o, code := run("minisign", "-G", "-W", "-p", pub2, "-s", sec2); code != 0 {
		t.Fatalf("minisign -G: %s", o)
	}
	for _, f := range []string{"SHA256SUMS", "manifest.json", "sbom.spdx.json", "sbom.cdx.json"} {
		if o, code := run("minisign", "-S", "-W", "-s", sec2, "-m", filepath.Join(built, f), "-x", filepath.Join(built, f+".minisig")); code != 0 {
			t.Fatalf("minisign -S %s: %s", f, o)
		}
	}
	if o, code := run(bin, "verify", built, "--pubkey", pub); code != 1 || !strings.Contains(o, "signed by another key") {
		t.Errorf("ingot verify of signatures from another key exited %d, want 1:\n%s", code, o)
	}
	if o, code := run(bin, "verify", built, "--pubkey", pub2); code != 1 {
		t.Errorf("ingot verify with the other key exited %d, want 1 for the provenance the first key signed:\n%s", code, o)
	}
}

func randomHex(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
