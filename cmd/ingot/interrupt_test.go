package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ingot-build/ingot/internal/testguest"
)

// buildIngot compiles this command once per test binary.
func buildIngot(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ingot")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// qemuRunning reports QEMU processes of the named machine (the driver names them ingot-NAME-…).
func qemuRunning(name string) []string {
	out, _ := exec.Command("pgrep", "-af", "process=ingot-"+name).Output()
	var procs []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(l, "qemu-system") {
			procs = append(procs, l)
		}
	}
	return procs
}

// waitNoQEMU fails the test if a QEMU of the named machine is still running 10 s after its build
// ended: no child outlives a build, whatever ends it.
func waitNoQEMU(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(qemuRunning(name)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("QEMU outlived the build: %v", qemuRunning(name))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Ctrl-C or SIGTERM in the middle of a build (here: while the guest boots) stops QEMU, removes the
// work dir and publishes nothing, says where it was interrupted, and exits 130. SIGKILL, which no
// process can handle, still leaves no QEMU (parent-death signal) and no output.
func TestInterruptedBuildLeavesNothing(t *testing.T) {
	img := testguest.CloudImage(t)
	bin := buildIngot(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			name := fmt.Sprintf("int-%d", sig)
			recipe := fmt.Sprintf("name: %s\nsource:\n  disk: { url: \"file://%s\", sha256: %s }\nmachine: { memory: 1GiB, disk: 4GiB, firmware: bios }\nprovision:\n  - shell: sleep 600\n",
				name, img.Image, img.SHA256)
			rp := filepath.Join(dir, "r.yaml")
			if err := os.WriteFile(rp, []byte(recipe), 0o644); err != nil {
				t.Fatal(err)
			}
			out, work := filepath.Join(dir, "out"), filepath.Join(dir, "work")
			metricsFile := filepath.Join(dir, "ingot.prom")
			cmd := exec.Command(bin, "build", "--out", out, "--work-dir", work, "--metrics", metricsFile, rp)
			cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+filepath.Join(dir, "cache"))
			stderr, _ := cmd.StderrPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			var log strings.Builder
			sc := bufio.NewScanner(stderr)
			started := false
			for sc.Scan() {
				log.WriteString(sc.Text() + "\n")
				if strings.Contains(sc.Text(), "machine started") {
					started = true
					break
				}
			}
			if !started {
				t.Fatalf("the build never started its machine:\n%s", log.String())
			}
			if len(qemuRunning(name)) == 0 {
				t.Fatal("no QEMU process found for the running build")
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			rest, _ := io.ReadAll(stderr)
			log.Write(rest)
			err := cmd.Wait()
			code := cmd.ProcessState.ExitCode()
			t.Logf("exit %d (%v); log:\n%s", code, err, log.String())
			if sig != syscall.SIGKILL {
				if code != 130 {
					t.Errorf("exit code %d, want 130", code)
				}
				if !strings.Contains(log.String(), "interrupted during step") {
					t.Errorf("no line saying where the build was interrupted")
				}
				if entries, _ := os.ReadDir(work); len(entries) != 0 {
					t.Errorf("work root still holds %v", entries)
				}
				// The interrupted build is a failed build to an operator's metrics, and the
				// file is what Prometheus's own parser accepts (issue 19's SLIs).
				prom, err := os.ReadFile(metricsFile)
				for _, want := range []string{
					fmt.Sprintf("ingot_build_success{recipe=%q} 0\n", name),
					fmt.Sprintf("ingot_step_duration_seconds{recipe=%q,step=\"boot\"}", name),
				} {
					if err != nil || !strings.Contains(string(prom), want) {
						t.Errorf("metrics file lacks %q (%v):\n%s", want, err, prom)
					}
				}
				check := exec.Command("promtool", "check", "metrics")
				check.Stdin = strings.NewReader(string(prom))
				if out, err := check.CombinedOutput(); err != nil || len(out) != 0 {
					t.Errorf("promtool check metrics: %v\n%s", err, out)
				}
			}
			waitNoQEMU(t, name)
			if entries, _ := os.ReadDir(out); len(entries) != 0 {
				t.Errorf("the interrupted build left outputs: %v", entries)
			}
			if sig == syscall.SIGKILL {
				// No process can clean up after SIGKILL: its work dir (gigabytes, in real
				// builds) stays until a later build or `ingot cache prune` sweeps it, which
				// the kernel's release of the dead build's lock allows (issue 19.4).
				if entries, _ := os.ReadDir(work); len(entries) == 0 {
					t.Fatal("the killed build left no work dir: this test no longer tests the sweep")
				}
				prune := exec.Command(bin, "cache", "prune", "--work-dir", work, "--out", out)
				prune.Env = cmd.Env
				got, err := prune.CombinedOutput()
				if err != nil || !strings.Contains(string(got), "removed "+work+"/") {
					t.Errorf("ingot cache prune: %v\n%s", err, got)
				}
				if entries, _ := os.ReadDir(work); len(entries) != 0 {
					t.Errorf("after ingot cache prune, the work root still holds %v", entries)
				}
			}
		})
	}
}
