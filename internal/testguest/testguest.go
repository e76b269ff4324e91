// Package testguest gives tests the test guests that testdata/guests builds from Debian packages: a
// Debian 12 cloud image (amd64 and arm64) and an installer ISO. They are built once and cached outside the clone (see
// testdata/guests/ensure.sh); asking for one that is missing builds it, so a test never skips for
// want of a fixture. `make test` builds them up front so the build time is not charged to a test.
package testguest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// Cloud is the cached Debian 12 test cloud image.
type Cloud struct {
	Dir           string
	Image         string // compressed qcow2
	SHA256        string
	KernelVersion string // e.g. 6.1.0-50-cloud-amd64
}

// Installer is the cached test installer ISO.
type Installer struct {
	Dir    string
	ISO    string
	SHA256 string
}

var ensured sync.Map // guest name -> *ensureResult; one build per test binary

type ensureResult struct {
	once sync.Once
	dir  string
	err  error
	log  string
}

// RepoRoot is the root of the ingot checkout this package was compiled from.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func ensure(t testing.TB, name string) string {
	t.Helper()
	v, _ := ensured.LoadOrStore(name, &ensureResult{})
	r := v.(*ensureResult)
	r.once.Do(func() {
		cmd := exec.Command("bash", filepath.Join(RepoRoot(), "testdata", "guests", "ensure.sh"), name)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		r.err = cmd.Run()
		r.dir = strings.TrimSpace(stdout.String())
		r.log = stderr.String()
	})
	if r.err != nil {
		t.Fatalf("build the %s test guest: %v\n%s", name, r.err, r.log)
	}
	return r.dir
}

// CloudImage returns the test cloud image, building it if it is not cached yet.
func CloudImage(t testing.TB) Cloud {
	return cloudImage(t, "cloud", "debian-12-cloud.qcow2")
}

// CloudImageArm64 returns the arm64 test cloud image (for qemu-system-aarch64 -M virt with
// UEFI), building it if it is not cached yet.
func CloudImageArm64(t testing.TB) Cloud {
	return cloudImage(t, "arm64", "debian-12-cloud-arm64.qcow2")
}

// cloudImage is the cloud image file of the test guest ensure.sh builds as guest.
func cloudImage(t testing.TB, guest, file string) Cloud {
	t.Helper()
	dir := ensure(t, guest)
	return Cloud{
		Dir:           dir,
		Image:         filepath.Join(dir, file),
		SHA256:        readSum(t, filepath.Join(dir, file+".sha256")),
		KernelVersion: strings.TrimPrefix(strings.TrimSpace(readFile(t, filepath.Join(dir, "kernel-version"))), "vmlinuz-"),
	}
}

// InstallerISO returns the test installer ISO, building it if it is not cached yet.
func InstallerISO(t testing.TB) Installer {
	dir := ensure(t, "installer")
	return Installer{
		Dir:    dir,
		ISO:    filepath.Join(dir, "installer.iso"),
		SHA256: readSum(t, filepath.Join(dir, "installer.iso.sha256")),
	}
}

func readSum(t testing.TB, path string) string {
	sum, _, _ := strings.Cut(readFile(t, path), " ")
	if len(sum) != 64 {
		t.Fatalf("%s: not a sha256 line", path)
	}
	return sum
}

func readFile(t testing.TB, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("test guest: %v", err)
	}
	return string(b)
}
