package images

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gofrs/flock"
)

// The store's lock held by a process that was then killed (a build SIGKILLed while it named its
// image) wedges nothing: while the holder lives, a writer waits only as long as its context
// allows and says which lock it waited for; once the holder is dead, the kernel has released its
// flock and the next writer goes ahead at once (issue 19's fault matrix).
func TestStoreLockHeldByADeadProcess(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	h, err := s.NewHold(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release()
	l := addLayer(t, s, h, Layer{}, "5a")

	// Another process takes the lock the way ingot does (flock(2) on the same file) and hangs;
	// -o: the lock is flock's own, not inherited by its sleep, so killing flock is killing the
	// holder. Its group is killed at the end, so no sleep outlives the test.
	holder := exec.Command("flock", "-o", filepath.Join(dir, "lock"), "sleep", "600")
	holder.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := holder.Start(); err != nil {
		t.Fatalf("start a lock holder (util-linux flock): %v", err)
	}
	defer syscall.Kill(-holder.Process.Pid, syscall.SIGKILL)
	probe := flock.New(filepath.Join(dir, "lock"))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		locked, err := probe.TryLock()
		if err != nil {
			t.Fatal(err)
		}
		if !locked {
			break // the holder has it
		}
		if err := probe.Unlock(); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the holder never took the store's lock")
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = s.Tag(ctx, Image{Name: "web", Layer: l.Digest})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "lock the image store "+dir) {
		t.Fatalf("Tag while a live process holds the lock = %v, want it bounded by its context and naming the lock", err)
	}

	if err := holder.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = holder.Wait() // killed: its exit status is the signal

	started := time.Now()
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.Tag(ctx, Image{Name: "web", Layer: l.Digest}); err != nil {
		t.Fatalf("Tag after the holder died: %v", err)
	}
	if took := time.Since(started); took > time.Second {
		t.Errorf("Tag took %s after the holder died, want the lock at once", took)
	}
	img, _, err := s.Lookup("web")
	if err != nil || img.Layer != l.Digest {
		t.Errorf("Lookup(web) = %+v, %v; want layer %s", img, err, l.Digest)
	}
}
