package testguest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// RemoteLibvirtURI is the qemu+tcp URI of the second libvirtd that testdata/libvirt/start.sh
// runs to stand in for a remote KVM host (its own storage, reachable only through the libvirt
// API). INGOT_LIBVIRT_REMOTE_PORT changes its port.
func RemoteLibvirtURI() string {
	port := os.Getenv("INGOT_LIBVIRT_REMOTE_PORT")
	if port == "" {
		port = "16599"
	}
	return "qemu+tcp://127.0.0.1:" + port + "/system"
}

// Libvirt makes sure the host's libvirtd (qemu:///system) and the stand-in remote one run,
// starting them with testdata/libvirt/start.sh (idempotent) once per test binary. A failure fails
// the test: a skip would hide a missing install.
func Libvirt(t testing.TB) {
	t.Helper()
	v, _ := ensured.LoadOrStore("libvirtd", &ensureResult{})
	r := v.(*ensureResult)
	r.once.Do(func() {
		cmd := exec.Command("bash", filepath.Join(RepoRoot(), "testdata", "libvirt", "start.sh"), "all")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		r.err = cmd.Run()
		r.log = out.String()
	})
	if r.err != nil {
		t.Fatalf("start the libvirt daemons (bash testdata/libvirt/start.sh, as root): %v\n%s", r.err, strings.TrimSpace(r.log))
	}
}
