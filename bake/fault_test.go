package bake

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// smallDisk mounts a tmpfs of the given size on a new dir (make test runs as root) and returns
// the dir; it is unmounted when the test ends.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a %s tmpfs (the test needs root, as make test has): %v\n%s", size, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", dir, err, out)
		}
	})
	return dir
}

// The output dir's file system fills up during convert (a real qemu-img writing a real 8 MiB
// qcow2 into a 4 MiB tmpfs): the build fails at convert saying so, publishes nothing, leaves no
// staging dir or temp file in the output dir and no work dir, and returns at once (issue 19's
// fault matrix).
func TestFakeBuildOutputDiskFills(t *testing.T) {
	out := smallDisk(t, "4m")
	e := newFakeBuild(t, func(o *Options) { o.OutDir = out })
	// The guest writes 8 MiB that are not zeros: qemu-io stands in for it on the build disk,
	// which no QEMU has open here.
	e.guest.act = func(_ context.Context, action string) error {
		if action != "run sudo echo one" {
			return nil
		}
		if b, err := exec.Command("qemu-io", "-f", "qcow2", "-c", "write -P 0xab 0 8M", e.b.diskPath).CombinedOutput(); err != nil {
			t.Errorf("qemu-io: %v\n%s", err, b)
		}
		return nil
	}
	started := time.Now()
	_, err := e.b.bake(context.Background())
	var se *StepError
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "no space left on device") {
		t.Fatalf("err = %v, want the convert step to say the disk is full", err)
	}
	if !errors.As(err, &se) || se.Step != "convert" {
		t.Errorf("err = %v, want it to fail at convert", err)
	}
	if took := time.Since(started); took > 30*time.Second {
		t.Errorf("the build took %s to fail", took)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("the output dir holds %v after a failed convert", names)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(out, &st); err == nil && st.Bfree != st.Blocks {
		t.Errorf("the output dir's file system still has %d of %d blocks used", st.Blocks-st.Bfree, st.Blocks)
	}
	if entries, _ := os.ReadDir(e.work); len(entries) != 0 {
		t.Errorf("the work root holds %v", entries)
	}
}
