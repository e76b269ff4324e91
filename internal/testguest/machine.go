package testguest

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ingot-build/ingot/firmware"
	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/internal/qemuimg"
)

// WorkDir is a private (0700) temporary directory, as hypervisor.Spec.WorkDir must be.
func WorkDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Logger logs into the test's log, at debug level: a failed boot test shows what the driver did.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// CloudSpec is a machine spec that boots the test cloud image (CloudImage) through a fresh
// overlay in a new work dir, with a seed that lets Access in.
func CloudSpec(t testing.TB, fw firmware.Kind, name string) (hypervisor.Spec, Access) {
	t.Helper()
	img := CloudImage(t)
	dir := WorkDir(t)
	disk := filepath.Join(dir, "disk.qcow2")
	if err := qemuimg.CreateOverlay(context.Background(), disk, img.Image, "qcow2", 4<<30); err != nil {
		t.Fatal(err)
	}
	access := NewSeed(t, dir, name, nil)
	return hypervisor.Spec{
		Name: name, WorkDir: dir, Firmware: fw, MemoryMiB: 1024,
		Disks: []hypervisor.Disk{
			{Path: disk, Format: "qcow2", Discard: true, DetectZeroes: "unmap", BootIndex: 1},
			{Path: access.Seed, Format: "raw", ReadOnly: true},
		},
	}, access
}

// WaitConsole waits until m's serial console shows want, failing the test if the machine ends
// first or timeout passes.
func WaitConsole(t testing.TB, m hypervisor.Machine, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(m.ConsolePath()); strings.Contains(string(b), want) {
			return
		}
		select {
		case <-m.Done():
			t.Fatalf("machine ended (%v) before the console showed %q", m.Err(), want)
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatalf("the console did not show %q within %s; it ends with:\n%s", want, timeout, m.ConsoleTail(20))
}

// Start starts a machine and makes sure it is gone when the test ends; on failure the test log
// gets what the driver ran (a QEMU command line, a libvirt domain's XML) and the console tail.
func Start(t testing.TB, d hypervisor.Driver, spec hypervisor.Spec) hypervisor.Machine {
	t.Helper()
	m, err := d.Start(context.Background(), spec)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s\nconsole tail:\n%s", describe(m), m.ConsoleTail(30))
		}
		if err := m.Kill(context.Background()); err != nil {
			t.Errorf("kill: %v", err)
		}
	})
	return m
}

// describe says how a driver ran m, for a failed test's log.
func describe(m hypervisor.Machine) string {
	switch m := m.(type) {
	case interface{ CommandLine() string }:
		return "command: " + m.CommandLine()
	case interface{ DomainXML() string }:
		return "domain XML:\n" + m.DomainXML()
	default:
		return "machine: " + m.SSHAddr()
	}
}
