package bake

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// A sweep removes exactly the dirs whose owner is gone: one whose owner was SIGKILLed (a real
// process holding the lock, as a killed build does), one from before owned dirs that is old;
// it leaves a live build's dir, a kept failed build's, a young unlocked one and unrelated
// entries of the output dir.
func TestSweepRemovesOnlyOrphans(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	work, out := filepath.Join(root, "work"), filepath.Join(root, "out")
	mk := func(p string) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(p, "sub"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "sub", "disk.qcow2"), []byte("gigabytes"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// A process that holds a dir's lock the way a build does, then dies by SIGKILL.
	killed := filepath.Join(work, "killed")
	holder := exec.Command("flock", "--exclusive", "--no-fork", killed+lockSuffix, "sleep", "600")
	if err := os.MkdirAll(work, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer holder.Process.Kill()
	mk(killed)
	waitLocked(t, killed+lockSuffix)

	// This process's own live build: claimDir holds the lock.
	live := filepath.Join(work, "live")
	owned, err := claimDir(live, true)
	if err != nil {
		t.Fatal(err)
	}
	defer owned.Remove()

	kept := filepath.Join(work, "kept")
	keptDir, err := claimDir(kept, true)
	if err != nil {
		t.Fatal(err)
	}
	mk(kept)
	if err := keptDir.Keep("kept\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(kept + lockSuffix); err == nil {
		t.Error("a kept work dir still has its lock file beside it")
	}
	young := mk(filepath.Join(work, "young-unlocked"))
	old := mk(filepath.Join(work, "old-unlocked"))
	long := time.Now().Add(-2 * unlockedGrace)
	if err := os.Chtimes(old, long, long); err != nil {
		t.Fatal(err)
	}
	// A staging dir whose build was killed: its lock file is there, held by nobody.
	staleStaging := mk(filepath.Join(out, stagingPrefix+"dead"))
	if err := os.WriteFile(staleStaging+lockSuffix, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// Killed between publishing's two renames: the previous outputs moved aside, under the
	// same (free) lock.
	staleOld := mk(staleStaging + ".old")
	userDir := mk(filepath.Join(out, "web")) // a published build: not ours to touch

	// Before the kill, the holder's dir is live.
	if removed, err := Sweep(ctx, slog.New(slog.DiscardHandler), work, out); err != nil || !slices.Contains(removed, old) || slices.Contains(removed, killed) {
		t.Fatalf("sweep before the kill removed %v (%v), want %s and not %s", removed, err, old, killed)
	}
	if err := holder.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = holder.Wait()
	removed, err := Sweep(ctx, slog.New(slog.DiscardHandler), work, out)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	if want := []string{killed}; !slices.Equal(removed, want) {
		t.Errorf("removed %v after the kill, want %v", removed, want)
	}
	for _, p := range []string{live, kept, young, userDir} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was swept: %v", p, err)
		}
	}
	for _, p := range []string{killed, killed + lockSuffix, staleStaging, staleStaging + lockSuffix, staleOld, old} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s is still there", p)
		}
	}
}

// waitLocked waits until another process holds the lock at path.
func waitLocked(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			if err := exec.Command("flock", "--nonblock", path, "true").Run(); err != nil {
				return // held
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("nobody took the lock %s", path)
}
