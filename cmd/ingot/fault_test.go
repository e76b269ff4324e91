package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ingot-build/ingot/internal/testguest"
)

// A guest that fails in the middle of a recipe step fails the build at that step, in words that
// say what happened, with nothing partial left and nothing wedged: no QEMU after 10 s, no output,
// no work dir (issue 19's fault matrix; SIGINT and SIGKILL are TestInterruptedBuildLeavesNothing).
// The two guests boot side by side.
func TestGuestFailsMidStep(t *testing.T) {
	img := testguest.CloudImage(t)
	bin := buildIngot(t)
	tests := []struct {
		name string
		step string   // provision[1]
		want []string // in the build's log
	}{
		{
			name: "kernel panic",
			step: `sync; echo c > /proc/sysrq-trigger; sleep 600`,
			// The machine's end fails the step at once, with the console's panic line.
			want: []string{"provision[1] shell failed", "panic", "Kernel panic - not syncing"},
		},
		{
			name: "network lost",
			step: `ip link set "$(ip -o route show default | awk '{print $5; exit}')" down; sleep 600`,
			// The guest still runs: keepalives find its SSH gone, and the error says so.
			want: []string{"provision[1] shell failed", "answered no SSH keepalive"},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			name := fmt.Sprintf("fault-%d", i)
			recipe := fmt.Sprintf("name: %s\nsource:\n  disk: { url: \"file://%s\", sha256: %s }\n"+
				"machine: { memory: 1GiB, disk: 4GiB, firmware: bios }\n"+
				"provision:\n  - shell: echo the guest is up\n  - shell: %q\n",
				name, img.Image, img.SHA256, tt.step)
			rp := filepath.Join(dir, "r.yaml")
			if err := os.WriteFile(rp, []byte(recipe), 0o644); err != nil {
				t.Fatal(err)
			}
			out, work := filepath.Join(dir, "out"), filepath.Join(dir, "work")
			cmd := exec.Command(bin, "build", "--out", out, "--work-dir", work, rp)
			cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+filepath.Join(dir, "cache"))
			var log strings.Builder
			cmd.Stdout, cmd.Stderr = &log, &log
			started := time.Now()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			// A wedged build would sleep for 600 s in the guest; the test's own bound is 8 min.
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(8 * time.Minute):
				cmd.Process.Kill()
				<-done
				t.Fatalf("the build was still running after 8 min:\n%s", log.String())
			}
			t.Logf("exit %d after %s; log:\n%s", cmd.ProcessState.ExitCode(), time.Since(started).Round(time.Second), log.String())
			if code := cmd.ProcessState.ExitCode(); code != 1 {
				t.Errorf("exit code %d, want 1 (build failed)", code)
			}
			for _, w := range tt.want {
				if !strings.Contains(log.String(), w) {
					t.Errorf("the log does not say %q", w)
				}
			}
			waitNoQEMU(t, name)
			if entries, _ := os.ReadDir(out); len(entries) != 0 {
				t.Errorf("the failed build left outputs: %v", entries)
			}
			if entries, _ := os.ReadDir(work); len(entries) != 0 {
				t.Errorf("the work root still holds %v", entries)
			}
		})
	}
}
