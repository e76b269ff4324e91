package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"aead.dev/minisign"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/crypto/bcrypt"

	"github.com/ingot-build/ingot/sign"
)

// skopeo runs skopeo, the independent client, against the loopback registry.
func skopeo(t *testing.T, args ...string) []byte {
	t.Helper()
	need(t, "skopeo")
	cmd := exec.Command("skopeo", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

func verifyWith(pub minisign.PublicKey) func(context.Context, string) error {
	return func(ctx context.Context, dir string) error {
		r, err := sign.VerifyDir(ctx, dir, pub)
		if err != nil {
			return err
		}
		if !r.OK() {
			return errors.Join(r.Problems...)
		}
		return nil
	}
}

// files maps each regular file under dir to its bytes.
func files(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		data, err := os.ReadFile(p)
		out[filepath.ToSlash(rel)] = data
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameFiles(t *testing.T, want, got string) {
	t.Helper()
	w, g := files(t, want), files(t, got)
	if len(w) != len(g) {
		t.Errorf("%s has %d files, %s has %d", want, len(w), got, len(g))
	}
	for name, data := range w {
		if !bytes.Equal(data, g[name]) {
			t.Errorf("%s differs after the round trip (%d bytes pushed, %d pulled)", name, len(data), len(g[name]))
		}
	}
}

// TestPushPullRoundTrip pushes a signed build, with its containerDisk, in small chunks; skopeo
// sees the artifact, its annotations and platform, and the containerDisk as an image; a pull by
// digest verifies the signatures and gives back every file byte for byte.
func TestPushPullRoundTrip(t *testing.T) {
	reg := startRegistry(t)
	dir, pub := makeBuild(t)
	ctx := context.Background()
	rec := newRecorder()
	var logBuf bytes.Buffer
	remote := Remote{Transport: rec, Log: slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))}

	res, err := PushBuild(ctx, dir, "oci://"+reg.Host+"/ingot/demo:v1", PushOptions{Remote: remote, ContainerDisk: true, ChunkSize: 64 << 10})
	if err != nil {
		t.Fatalf("push: %v\nregistry log:\n%s", err, reg.Log())
	}
	if !strings.HasPrefix(res.Build.Digest, "sha256:") {
		t.Fatalf("digest %q", res.Build.Digest)
	}
	if res.Requests < 4 {
		t.Errorf("%d PATCH requests: the 700 KiB output in 64 KiB chunks should take 11", res.Requests)
	}
	// distribution 2.8 has no referrers API: the records travel as layers only.
	if res.ReferrersBy != "" || len(res.Referrers) != 0 {
		t.Errorf("referrers attached %q %v on a registry without the API", res.ReferrersBy, res.Referrers)
	}

	var raw ocispec.Manifest
	if err := json.Unmarshal(skopeo(t, "inspect", "--tls-verify=false", "--raw", "docker://"+reg.Host+"/ingot/demo:v1"), &raw); err != nil {
		t.Fatal(err)
	}
	if raw.ArtifactType != ArtifactType || raw.Config.MediaType != ConfigMediaType {
		t.Errorf("skopeo sees artifactType %q, config %q", raw.ArtifactType, raw.Config.MediaType)
	}
	if raw.Annotations[AnnotationName] != "demo" || raw.Annotations[AnnotationBuildID] != "b-0001" || raw.Annotations[AnnotationOS] != "debian 12" {
		t.Errorf("skopeo sees annotations %v", raw.Annotations)
	}
	titles := map[string]ocispec.Descriptor{}
	for _, l := range raw.Layers {
		titles[l.Annotations[ocispec.AnnotationTitle]] = l
	}
	for name, want := range map[string][2]string{
		"demo.qcow2":              {DiskMediaType("qcow2"), RoleOutput},
		"demo.raw.zst":            {"application/vnd.ingot.disk.v1.raw+zstd", RoleOutput},
		"manifest.json":           {MediaTypeManifest, RoleRecord},
		"SHA256SUMS":              {MediaTypeSums, RoleRecord},
		"sbom.spdx.json":          {MediaTypeSPDX, RoleRecord},
		"SHA256SUMS.minisig":      {MediaTypeMinisig, RoleSignature},
		"provenance.intoto.jsonl": {MediaTypeProvenance, RoleRecord},
	} {
		l, ok := titles[name]
		if !ok || l.MediaType != want[0] || l.Annotations[AnnotationRole] != want[1] {
			t.Errorf("layer %s: %v, want media type %s, role %s", name, l, want[0], want[1])
		}
	}
	var cfg Config
	if err := json.Unmarshal(skopeo(t, "inspect", "--tls-verify=false", "--raw", "--config", "docker://"+reg.Host+"/ingot/demo:v1"), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Architecture != "amd64" || cfg.OS != "linux" || cfg.Ingot.Name != "demo" || len(cfg.Ingot.Outputs) != 3 {
		t.Errorf("config %+v", cfg)
	}

	// The containerDisk is an image skopeo inspects in full, with /disk/demo.qcow2 owned 107:107.
	var img struct{ Architecture, Os string }
	if err := json.Unmarshal(skopeo(t, "inspect", "--tls-verify=false", "docker://"+reg.Host+"/ingot/demo:v1-containerdisk"), &img); err != nil {
		t.Fatal(err)
	}
	if img.Architecture != "amd64" || img.Os != "linux" {
		t.Errorf("containerDisk platform %+v", img)
	}
	cdDir := filepath.Join(t.TempDir(), "cd")
	skopeo(t, "copy", "--src-tls-verify=false", "docker://"+reg.Host+"/ingot/demo:v1-containerdisk", "dir:"+cdDir)
	checkContainerDisk(t, cdDir, filepath.Join(dir, "demo.qcow2"))

	out := filepath.Join(t.TempDir(), "pulled")
	pr, err := Pull(ctx, res.Build.Digested(), out, PullOptions{Remote: remote, Verify: verifyWith(pub)})
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	if pr.Config.Architecture != "amd64" || pr.Summed != 4 {
		t.Errorf("pull result %+v", pr)
	}
	sameFiles(t, dir, out)

	// The same pull with another key is refused, and publishes nothing.
	other, _, _ := minisign.GenerateKey(nil)
	out2 := filepath.Join(t.TempDir(), "pulled")
	if _, err := Pull(ctx, res.Build.Digested(), out2, PullOptions{Remote: remote, Verify: verifyWith(other)}); !errors.Is(err, sign.ErrWrongKey) {
		t.Errorf("pull verified with another key: %v, want ErrWrongKey", err)
	}
	nothingPublished(t, out2)

	// A second push of the same build sends nothing: every blob is there.
	again, err := PushBuild(ctx, dir, "oci://"+reg.Host+"/ingot/demo:v1", PushOptions{Remote: remote, ContainerDisk: true, ChunkSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if again.Uploaded != 0 || again.Build.Digest != res.Build.Digest || again.ContainerDisk.Digest != res.ContainerDisk.Digest {
		t.Errorf("a second push uploaded %d blobs, digests %s %s, first %s %s", again.Uploaded, again.Build.Digest, again.ContainerDisk.Digest, res.Build.Digest, res.ContainerDisk.Digest)
	}
}

func checkContainerDisk(t *testing.T, dir, qcow2 string) {
	t.Helper()
	var m ocispec.Manifest
	data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &m); err != nil || len(m.Layers) != 1 {
		t.Fatalf("containerDisk manifest: %v %s", err, data)
	}
	f, err := os.Open(filepath.Join(dir, m.Layers[0].Digest.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want, err := os.ReadFile(qcow2)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(f)
	var seen []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, h.Name)
		if h.Uid != 107 || h.Gid != 107 {
			t.Errorf("%s is owned %d:%d, want 107:107", h.Name, h.Uid, h.Gid)
		}
		if h.Name == "disk/demo.qcow2" {
			got, _ := io.ReadAll(tr)
			if !bytes.Equal(got, want) {
				t.Errorf("disk/demo.qcow2 is not the build's qcow2")
			}
		}
	}
	if !slices.Equal(seen, []string{"disk/", "disk/demo.qcow2"}) {
		t.Errorf("containerDisk layer holds %v", seen)
	}
}

func nothingPublished(t *testing.T, out string) {
	t.Helper()
	if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s exists after a refused pull (%v)", out, err)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".ingot-pull-*"))
	if len(left) > 0 {
		t.Errorf("a refused pull left its stage behind: %v", left)
	}
}

// TestPullTampered changes a blob's bytes in the registry's storage: the pull is refused and
// publishes nothing.
func TestPullTampered(t *testing.T) {
	reg := startRegistry(t)
	dir, pub := makeBuild(t)
	ctx := context.Background()
	res, err := PushBuild(ctx, dir, "oci://"+reg.Host+"/ingot/demo:v1", PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"demo.raw.zst", "SHA256SUMS"} {
		t.Run(name, func(t *testing.T) {
			s, _ := fileSHA(t, filepath.Join(dir, name))
			blob := reg.BlobPath("sha256:" + s)
			orig, err := os.ReadFile(blob)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.WriteFile(blob, orig, 0o644) })
			bad := bytes.Clone(orig)
			bad[len(bad)/2] ^= 0x55 // same size, other bytes
			if err := os.WriteFile(blob, bad, 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "pulled")
			_, err = Pull(ctx, res.Build.Digested(), out, PullOptions{Verify: verifyWith(pub)})
			if !errors.Is(err, ErrMismatch) {
				t.Fatalf("pull of a tampered %s: %v, want ErrMismatch", name, err)
			}
			t.Logf("refused: %v", err)
			nothingPublished(t, out)
		})
	}
}

// TestPushResume interrupts a push after two blobs went up; run again, it uploads only the
// blobs that are missing, and the tag appears only then.
func TestPushResume(t *testing.T) {
	reg := startRegistry(t)
	dir, _ := makeBuild(t)
	ref := "oci://" + reg.Host + "/ingot/demo:v1"

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := newRecorder()
	first.hook = func(r recorded, done bool) error {
		if done && blobDone(r) && first.count(blobDone) == 2 {
			cancel()
		}
		return nil
	}
	_, err := PushBuild(ctx, dir, ref, PushOptions{Remote: Remote{Transport: first}, Concurrency: 1, ChunkSize: 64 << 10})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted push: %v, want context.Canceled", err)
	}
	if got := first.count(blobDone); got != 2 {
		t.Fatalf("the interrupted push completed %d blobs, want 2", got)
	}
	resp, err := http.Get("http://" + reg.Host + "/v2/ingot/demo/manifests/v1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("the tag exists after an interrupted push: HTTP %d", resp.StatusCode)
	}

	second := newRecorder()
	res, err := PushBuild(context.Background(), dir, ref, PushOptions{Remote: Remote{Transport: second}, ChunkSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	total := len(files(t, dir)) + 1 // every file, and the config
	if res.Uploaded != total-2 || res.Skipped != 2 {
		t.Errorf("the second run uploaded %d and skipped %d blobs, want %d and 2", res.Uploaded, res.Skipped, total-2)
	}
	if got := second.count(blobStart); got != total-2 {
		t.Errorf("the second run started %d uploads, want %d", got, total-2)
	}
	skopeo(t, "inspect", "--tls-verify=false", "--raw", "docker://"+reg.Host+"/ingot/demo:v1")
}

// TestPushChunkFails drops one PATCH on the floor: the upload asks the registry where it got
// to, goes on from there, and the build round-trips.
func TestPushChunkFails(t *testing.T) {
	reg := startRegistry(t)
	dir, _ := makeBuild(t)
	rec := newRecorder()
	failed := false
	rec.hook = func(r recorded, done bool) error {
		if !done && r.Method == http.MethodPatch && !failed && rec.count(func(r recorded) bool { return r.Method == http.MethodPatch }) == 3 {
			failed = true
			return errors.New("injected: the connection dropped")
		}
		return nil
	}
	res, err := PushBuild(context.Background(), dir, "oci://"+reg.Host+"/ingot/demo:v1", PushOptions{Remote: Remote{Transport: rec}, Concurrency: 1, ChunkSize: 64 << 10})
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	if !failed {
		t.Fatal("no PATCH was failed")
	}
	if got := rec.count(func(r recorded) bool {
		return r.Method == http.MethodGet && strings.Contains(r.Path, "/blobs/uploads/")
	}); got != 1 {
		t.Errorf("%d upload status requests, want 1", got)
	}
	out := filepath.Join(t.TempDir(), "pulled")
	if _, err := Pull(context.Background(), res.Build.Digested(), out, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	sameFiles(t, dir, out)
}

// TestReferrersTagSchema asks for referrers on a registry without the API: they are indexed
// under the referrers tag schema (sha256-HEX), which skopeo reads as an index.
func TestReferrersTagSchema(t *testing.T) {
	reg := startRegistry(t)
	dir, _ := makeBuild(t)
	res, err := PushBuild(context.Background(), dir, "oci://"+reg.Host+"/ingot/demo:v1", PushOptions{Referrers: ReferrersTagSchema})
	if err != nil {
		t.Fatal(err)
	}
	if res.ReferrersBy != "tag schema" || len(res.Referrers) != 4 {
		t.Fatalf("referrers %q %v, want 4 by tag schema", res.ReferrersBy, res.Referrers)
	}
	tag := strings.Replace(res.Build.Digest, ":", "-", 1)
	var idx ocispec.Index
	if err := json.Unmarshal(skopeo(t, "inspect", "--tls-verify=false", "--raw", "docker://"+reg.Host+"/ingot/demo:"+tag), &idx); err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, m := range idx.Manifests {
		types = append(types, m.ArtifactType)
	}
	slices.Sort(types)
	want := []string{MediaTypeProvenance, MediaTypeSPDX, MediaTypeManifest, MediaTypeSums}
	slices.Sort(want)
	if !slices.Equal(types, want) {
		t.Errorf("the referrers index lists %v, want %v", types, want)
	}
}

// TestPushWithCredentials pushes to a registry that asks for a password: without credentials
// the push fails; with them from the environment, or from a Docker config file, it succeeds;
// and the password appears in no log line.
func TestPushWithCredentials(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	writeFile(t, htpasswd, []byte("pusher:"+string(hash)+"\n"))
	reg := startRegistryEnv(t, []string{"HTPASSWD=" + htpasswd})
	dir, _ := makeBuild(t)
	ref := "oci://" + reg.Host + "/ingot/demo:v1"
	dockerDir := t.TempDir()
	writeFile(t, filepath.Join(dockerDir, "config.json"), []byte(`{"auths":{"`+reg.Host+`":{"auth":"`+
		base64.StdEncoding.EncodeToString([]byte("pusher:s3cret-pw"))+`"}}}`))
	for _, tc := range []struct {
		name string
		env  map[string]string
		ok   bool
	}{
		{"anonymous", map[string]string{"HOME": t.TempDir()}, false},
		{"wrong password", map[string]string{EnvUser: "pusher", EnvPassword: "wrong"}, false},
		{"environment", map[string]string{EnvUser: "pusher", EnvPassword: "s3cret-pw"}, true},
		{"Docker config", map[string]string{"DOCKER_CONFIG": dockerDir}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logBuf bytes.Buffer
			remote := Remote{
				Getenv: func(k string) string { return tc.env[k] },
				Log:    slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug})),
			}
			res, err := PushBuild(context.Background(), dir, ref, PushOptions{Remote: remote, ChunkSize: 64 << 10})
			if (err == nil) != tc.ok {
				t.Fatalf("push: %v, want ok %v", err, tc.ok)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret-pw") {
				t.Errorf("the error holds the password: %v", err)
			}
			if strings.Contains(logBuf.String(), "s3cret-pw") {
				t.Errorf("the log holds the password:\n%s", logBuf.String())
			}
			if tc.ok {
				if _, err := Pull(context.Background(), res.Build.Digested(), filepath.Join(t.TempDir(), "p"), PullOptions{Remote: remote}); err != nil {
					t.Errorf("pull with the same credentials: %v", err)
				}
			}
		})
	}
}
