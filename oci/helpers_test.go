package oci

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"aead.dev/minisign"

	"github.com/ingot-build/ingot/internal/testregistry"
	"github.com/ingot-build/ingot/manifest"
	"github.com/ingot-build/ingot/sign"
)

// need fails the test when a program the test runs is missing: the test command installs them;
// a skip would hide that.
func need(t *testing.T, progs ...string) { t.Helper(); testregistry.Need(t, progs...) }

func startRegistry(t *testing.T) *testregistry.Registry { t.Helper(); return testregistry.Start(t) }

// startRegistryEnv starts the registry with env added to start.sh's environment.
func startRegistryEnv(t *testing.T, env []string) *testregistry.Registry {
	t.Helper()
	return testregistry.Start(t, env...)
}

func sha(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func fileSHA(t *testing.T, path string) (string, int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha(data), int64(len(data))
}

// makeBuild writes an output directory as bake publishes one, signed with a fresh minisign key:
// a real qcow2 (qemu-img create), a compressed raw and its bmap (synthetic bytes), the SPDX SBOM,
// a provenance envelope, manifest.json and SHA256SUMS; SHA256SUMS, manifest.json and the SBOM
// signed. It returns the directory (OUT/demo) and the public key.
func makeBuild(t *testing.T) (string, minisign.PublicKey) {
	t.Helper()
	need(t, "qemu-img")
	dir := filepath.Join(t.TempDir(), "demo")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", filepath.Join(dir, "demo.qcow2"), "2G").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	raw := make([]byte, 700<<10)
	for i := range raw {
		raw[i] = byte(rng.IntN(256))
	}
	writeFile(t, filepath.Join(dir, "demo.raw.zst"), raw)
	writeFile(t, filepath.Join(dir, "demo.raw.bmap"), []byte("<?xml version=\"1.0\"?>\n<bmap version=\"2.0\"></bmap>\n"))

	m := &manifest.Manifest{
		Name: "demo", BuildID: "b-0001",
		Started:  time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Finished: time.Date(2026, 1, 2, 3, 14, 5, 0, time.UTC),
		Tool:     manifest.Tool{IngotVersion: "test"},
		OS:       &manifest.OS{ID: "debian", VersionID: "12"},
		Packages: []manifest.Package{{Name: "bash", Version: "5.2", Arch: "amd64"}, {Name: "tzdata", Version: "1", Arch: "all"}},
	}
	for _, o := range []struct{ file, format string }{{"demo.qcow2", "qcow2"}, {"demo.raw.zst", "raw.zst"}, {"demo.raw.bmap", "bmap"}} {
		s, n := fileSHA(t, filepath.Join(dir, o.file))
		m.Outputs = append(m.Outputs, manifest.File{File: o.file, Format: o.format, Size: n, SHA256: s})
	}
	writeSPDX(t, dir, m.Outputs)
	writeFile(t, filepath.Join(dir, "provenance.intoto.jsonl"), []byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}`+"\n"))
	if err := manifest.Write(filepath.Join(dir, "manifest.json"), m); err != nil {
		t.Fatal(err)
	}
	sbomSHA, sbomSize := fileSHA(t, filepath.Join(dir, "sbom.spdx.json"))
	sums := append(append([]manifest.File{}, m.Outputs...), manifest.File{File: "sbom.spdx.json", Format: "sbom", Size: sbomSize, SHA256: sbomSHA})
	if err := manifest.WriteSums(filepath.Join(dir, "SHA256SUMS"), sums); err != nil {
		t.Fatal(err)
	}

	pub, priv, err := minisign.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	text, err := priv.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(t.TempDir(), "test.key")
	if err := os.WriteFile(keyPath, text, 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := sign.LoadKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"SHA256SUMS", "manifest.json", "sbom.spdx.json"} {
		if err := k.SignFile(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := sign.VerifyDir(context.Background(), dir, pub); err != nil || !r.OK() {
		t.Fatalf("the synthetic build does not verify: %v %v", err, r.Problems)
	}
	return dir, pub
}

// writeSPDX writes a minimal SPDX 2.3 document that describes files, as an SBOM does.
func writeSPDX(t *testing.T, dir string, files []manifest.File) {
	t.Helper()
	type checksum struct {
		Algorithm string `json:"algorithm"`
		Value     string `json:"checksumValue"`
	}
	type file struct {
		SPDXID    string     `json:"SPDXID"`
		FileName  string     `json:"fileName"`
		Checksums []checksum `json:"checksums"`
	}
	doc := struct {
		SPDXVersion string `json:"spdxVersion"`
		Files       []file `json:"files"`
	}{SPDXVersion: "SPDX-2.3"}
	for i, f := range files {
		doc.Files = append(doc.Files, file{SPDXID: fmt.Sprintf("SPDXRef-File-%d", i), FileName: "./" + f.File, Checksums: []checksum{{"SHA256", f.SHA256}}})
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "sbom.spdx.json"), data)
}

// recorder is an http.RoundTripper that records every request and its status, and can fail or
// cancel on a condition.
type recorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	reqs []recorded
	// hook, when set, sees each request before it goes (fail it by returning an error) and
	// after (done true, with the status).
	hook func(r recorded, done bool) error
}

type recorded struct {
	Method, Path, Query string
	Status              int
}

func newRecorder() *recorder { return &recorder{base: http.DefaultTransport} }

func (c *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r := recorded{Method: req.Method, Path: req.URL.Path, Query: req.URL.RawQuery}
	if c.hook != nil {
		if err := c.hook(r, false); err != nil {
			if req.Body != nil {
				req.Body.Close()
			}
			return nil, err
		}
	}
	resp, err := c.base.RoundTrip(req)
	if err == nil {
		r.Status = resp.StatusCode
	}
	c.mu.Lock()
	c.reqs = append(c.reqs, r)
	c.mu.Unlock()
	if c.hook != nil && err == nil {
		c.hook(r, true)
	}
	return resp, err
}

// count counts the recorded requests that match.
func (c *recorder) count(match func(recorded) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.reqs {
		if match(r) {
			n++
		}
	}
	return n
}

// blobDone matches a completed blob upload: the PUT that closes an upload session.
func blobDone(r recorded) bool {
	return r.Method == http.MethodPut && strings.Contains(r.Path, "/blobs/uploads/") && r.Status == http.StatusCreated
}

// blobStart matches the start of a blob upload.
func blobStart(r recorded) bool {
	return r.Method == http.MethodPost && strings.HasSuffix(r.Path, "/blobs/uploads/")
}
