// Package testregistry gives tests a real OCI registry: Debian's docker-registry (the
// distribution registry) on a loopback port, started by testdata/registry/start.sh with its
// storage in a temporary directory, and stopped when the test ends. `make test` installs it
// (APT_TEST); a missing one fails the test rather than skipping it.
package testregistry

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Registry is a running test registry.
type Registry struct {
	Host    string // 127.0.0.1:PORT
	Storage string // the registry's filesystem root
	log     *lockedBuffer
}

// Log is what the registry printed so far (its access log among it).
func (r *Registry) Log() string { return r.log.String() }

// BlobPath is where the registry keeps a blob's bytes, for tests that tamper with one.
func (r *Registry) BlobPath(dgst string) string {
	hexd := strings.TrimPrefix(dgst, "sha256:")
	return filepath.Join(r.Storage, "docker/registry/v2/blobs/sha256", hexd[:2], hexd, "data")
}

// Need fails the test when a program it runs is missing: the test command installs them.
func Need(t testing.TB, progs ...string) {
	t.Helper()
	for _, p := range progs {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s is not installed: apt-get install -y docker-registry skopeo qemu-utils (make deps-test)", p)
		}
	}
}

// Start starts a registry with env added to start.sh's environment (HTPASSWD=FILE asks for
// basic auth).
func Start(t testing.TB, env ...string) *Registry {
	t.Helper()
	Need(t, "docker-registry")
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	r := &Registry{Host: fmt.Sprintf("127.0.0.1:%d", port), Storage: filepath.Join(dir, "storage"), log: &lockedBuffer{}}
	cmd := exec.Command(filepath.Join(repoRoot(), "testdata", "registry", "start.sh"), dir, fmt.Sprint(port))
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = r.log, r.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill() // the script execs the registry: this pid is the registry's
		<-done
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + r.Host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return r
			}
		}
		select {
		case err := <-done:
			t.Fatalf("the registry exited: %v\n%s", err, r.log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the registry did not answer on %s in 30s:\n%s", r.Host, r.log)
		}
	}
}

// repoRoot is the root of the ingot checkout this package was compiled from.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
