package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ingot-build/ingot/internal/testguest"
)

// A build killed with SIGKILL while it writes a checkpoint leaves nothing a later build would
// restore: the next build restores the last checkpoint that was whole, or boots, and succeeds;
// what the killed writer left in the store is swept (issue 13's safety bar).
func TestKilledWhileCheckpointing(t *testing.T) {
	t.Parallel()
	img := testguest.CloudImage(t)
	bin := buildIngot(t)
	dir := t.TempDir()
	recipe := fmt.Sprintf("name: ck-kill\nsource:\n  disk: { url: \"file://%s\", sha256: %s }\n"+
		"machine: { memory: 1GiB, disk: 4GiB, firmware: bios }\n"+
		"provision:\n  - shell: echo a > /etc/a\n  - shell: echo b > /etc/b\n  - shell: cat /etc/a /etc/b\n"+
		"outputs: [ { format: qcow2 } ]\n", img.Image, img.SHA256)
	rp := filepath.Join(dir, "r.yaml")
	if err := os.WriteFile(rp, []byte(recipe), 0o644); err != nil {
		t.Fatal(err)
	}
	out, work := filepath.Join(dir, "out"), filepath.Join(dir, "work")
	env := append(os.Environ(), "XDG_CACHE_HOME="+filepath.Join(dir, "cache"))
	build := func() *exec.Cmd {
		cmd := exec.Command(bin, "build", "--test-boot", "none", "--out", out, "--work-dir", work, rp)
		cmd.Env = env
		return cmd
	}

	// Kill the first build as it starts the checkpoint after provision[0], once "booted" is
	// stored whole.
	cmd := build()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var log strings.Builder
	sc := bufio.NewScanner(stderr)
	booted, killed, provisionDone := false, false, false
	for sc.Scan() {
		line := sc.Text()
		log.WriteString(line + "\n")
		if strings.Contains(line, "checkpoint taken") && strings.Contains(line, "checkpoint=booted") {
			booted = true
		}
		if strings.Contains(line, "checkpoint taken") && strings.Contains(line, `provision[0]`) {
			provisionDone = true // too late: the kill must come while it is written
		}
		if booted && strings.Contains(line, "taking a checkpoint") && strings.Contains(line, "provision[0]") {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killed = true
			break
		}
	}
	rest, _ := io.ReadAll(stderr)
	log.Write(rest)
	_ = cmd.Wait()
	if !killed {
		t.Fatalf("the build never started the checkpoint after provision[0] with booted stored:\n%s", log.String())
	}
	if provisionDone {
		t.Fatalf("provision[0]'s checkpoint was stored before the kill: the test did not test a kill mid-write:\n%s", log.String())
	}
	waitNoQEMU(t, "ck-kill")

	// The next build restores "booted", not the half-written checkpoint, and succeeds.
	cmd = build()
	got, err := cmd.CombinedOutput()
	t.Logf("second build:\n%s", got)
	if err != nil {
		t.Fatalf("the build after the kill failed: %v", err)
	}
	if !strings.Contains(string(got), "resuming after booted from checkpoint") {
		t.Error("the build after the kill did not resume from booted")
	}
	if strings.Contains(string(got), "checkpoint unusable") {
		t.Error("the half-written checkpoint was offered to the build at all")
	}
	entries, err := os.ReadDir(filepath.Join(dir, "cache", "ingot", "images", "checkpoints"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("the killed build's staging dir %s is still in the store after the next build", e.Name())
		}
	}
	ls := exec.Command(bin, "cache", "ls")
	ls.Env = env
	listed, err := ls.CombinedOutput()
	if err != nil || !strings.Contains(string(listed), "ck-kill") || !strings.Contains(string(listed), "3 checkpoint(s)") {
		t.Errorf("ingot cache ls: %v\n%s", err, listed)
	}
}
