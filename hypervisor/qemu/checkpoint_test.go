package qemu_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ingot-build/ingot/firmware"
	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/hypervisor/qemu"
	"github.com/ingot-build/ingot/internal/qemuimg"
	"github.com/ingot-build/ingot/internal/testguest"
)

// One boot of the test cloud image proves UEFI boots and checkpoints end to end. The guest boots
// to SSH under OVMF (qcow2 vars copy), is checkpointed, its paused overlay copied to a layer, and
// it goes on; a new machine restored from the state (the firmware's flash travels in it) on an
// overlay of that layer is the same boot (same boot_id) with the disk as it was at the
// checkpoint, and powers off cleanly through QMP. The refusals (missing, truncated, corrupt,
// other machine) reuse the state file.
func TestUEFIBootCheckpointRestoreAndShutdown(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	d := qemu.New(qemu.WithLogger(testguest.Logger(t)))
	name := fmt.Sprintf("ckpt%d", os.Getpid()) // process=ingot-NAME, unique among concurrent test binaries
	spec, access := testguest.CloudSpec(t, firmware.UEFI, name)
	m := start(t, d, spec)
	if m.Firmware().Kind != firmware.UEFI || m.Accel().Name != hypervisor.AccelTCG {
		t.Errorf("firmware %+v accel %+v", m.Firmware(), m.Accel())
	}
	c := access.Dial(t, m.SSHAddr(), m.Done(), 5*time.Minute)
	defer c.Close()
	booted := strings.Fields(run(t, c, "test -d /sys/firmware/efi && echo uefi || echo bios; cloud-init status --wait >/dev/null && sudo sh -c 'echo checkpointed > /root/a' && cat /proc/sys/kernel/random/boot_id"))
	if len(booted) != 2 || booted[0] != "uefi" {
		t.Fatalf("guest says %q, want uefi and a boot_id", booted)
	}
	bootID := booted[1]

	stateDir := testguest.WorkDir(t)
	state := filepath.Join(stateDir, "state.zst")

	// A checkpoint given up half-way (its context ends) leaves nothing behind, and the guest
	// goes on after Resume.
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	err := m.Checkpoint(short, state)
	cancelShort()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Checkpoint with a context that ends = %v, want the deadline", err)
	}
	t.Logf("abandoned: %v", err)
	if entries, _ := os.ReadDir(stateDir); len(entries) != 0 {
		t.Errorf("an abandoned checkpoint left %v", entries)
	}
	if err := m.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	run(t, c, "true")

	began := time.Now()
	if err := m.Checkpoint(ctx, state); err != nil {
		t.Fatal(err)
	}
	saveTook := time.Since(began)
	fi, err := os.Stat(state)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(stateDir); len(entries) != 1 {
		t.Errorf("the state dir holds %d entries, want only the state file: %v", len(entries), entries)
	}
	// Paused, flushed and released: qemu-img check takes the image's lock (no -U, see
	// internal/qemuimg) and finds its metadata consistent.
	overlay := spec.Disks[0].Path
	if _, err := qemuimg.Check(ctx, overlay, "qcow2"); err != nil {
		t.Fatalf("the overlay of the checkpointed guest: %v", err)
	}
	layer := filepath.Join(testguest.WorkDir(t), "layer.qcow2")
	copyFile(t, overlay, layer, 0o400)
	if err := m.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	run(t, c, "sudo sh -c 'echo after > /root/b' && sync") // the same machine goes on
	if err := m.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("checkpoint: saved in %s, state file %.1f MiB (guest memory %d MiB)", saveTook.Round(time.Millisecond), float64(fi.Size())/(1<<20), spec.MemoryMiB)

	began = time.Now()
	r := start(t, d, restoreSpec(t, spec, layer, state))
	started := time.Since(began)
	rc := access.Dial(t, r.SSHAddr(), r.Done(), 2*time.Minute) // the same pinned host key
	defer rc.Close()
	out := run(t, rc, "cat /proc/sys/kernel/random/boot_id; sudo cat /root/a; sudo test -e /root/b && echo has-b || echo no-b; date +%s")
	toSSH := time.Since(began)
	lines := strings.Fields(out)
	if len(lines) != 4 || lines[0] != bootID || lines[1] != "checkpointed" || lines[2] != "no-b" {
		t.Fatalf("restored guest says %q; want boot_id %s, /root/a and no /root/b", out, bootID)
	}
	t.Logf("restore: Start returned in %s (guest running), SSH command done %s after Start; guest clock %s s vs host %d",
		started.Round(time.Millisecond), toSSH.Round(time.Millisecond), lines[3], time.Now().Unix())
	rc.Close()
	if err := r.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown of the restored machine: %v", err)
	}
	if err := r.Wait(ctx); err != nil {
		t.Fatalf("after a clean shutdown Wait = %v", err)
	}
	if !hasEvent(r.Events(), "SHUTDOWN") {
		t.Errorf("no SHUTDOWN event among %v", r.Events())
	}

	truncated := filepath.Join(stateDir, "truncated.zst")
	copyFile(t, state, truncated, 0o600)
	if err := os.Truncate(truncated, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	corrupt := filepath.Join(stateDir, "corrupt.zst")
	copyFile(t, state, corrupt, 0o600)
	flipByte(t, corrupt, fi.Size()*3/4)
	for _, tc := range []struct {
		name     string
		incoming string
		edit     func(*hypervisor.Spec)
		want     []string
		qemu     bool // whether QEMU gets started at all
	}{
		{name: "missing", incoming: filepath.Join(stateDir, "none.zst"), want: []string{filepath.Join(stateDir, "none.zst"), "no such file"}},
		{name: "truncated", incoming: truncated, want: []string{truncated, "truncated or corrupt", "unexpected EOF"}, qemu: true},
		{name: "corrupt", incoming: corrupt, want: []string{corrupt, "truncated or corrupt"}, qemu: true},
		{name: "other-memory", incoming: state, edit: func(s *hypervisor.Spec) { s.MemoryMiB = 512 }, want: []string{state, "QEMU did not load it", "Size mismatch: pc.ram"}, qemu: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := restoreSpec(t, spec, layer, tc.incoming)
			s.Name = fmt.Sprintf("%s-%s", name, tc.name)
			if tc.edit != nil {
				tc.edit(&s)
			}
			began := time.Now()
			m, err := d.Start(ctx, s)
			if err == nil {
				_ = m.Kill(ctx)
				t.Fatal("Start succeeded")
			}
			t.Logf("failed after %s: %v", time.Since(began).Round(time.Millisecond), err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error does not say %q", w)
				}
			}
			if out, err := exec.Command("pgrep", "-af", "process=ingot-"+s.Name).Output(); err == nil {
				t.Errorf("QEMU still runs after the failed restore:\n%s", out)
			}
			_, err = os.Stat(filepath.Join(s.WorkDir, "console.log"))
			if started := err == nil; started != tc.qemu {
				t.Errorf("QEMU started: %v, want %v", started, tc.qemu)
			}
		})
	}
}

// restoreSpec is spec (the checkpointed machine) restored from state in a new work dir, on a new
// overlay of layer; the seed is the same, and with it the keys.
func restoreSpec(t *testing.T, spec hypervisor.Spec, layer, state string) hypervisor.Spec {
	t.Helper()
	s := spec
	s.WorkDir = testguest.WorkDir(t)
	s.Disks = append([]hypervisor.Disk(nil), spec.Disks...)
	s.Disks[0].Path = filepath.Join(s.WorkDir, "disk.qcow2")
	if err := qemuimg.CreateOverlay(context.Background(), s.Disks[0].Path, layer, "qcow2", 4<<30); err != nil {
		t.Fatal(err)
	}
	s.Incoming = state
	return s
}

// run runs command on the guest, failing the test if it fails.
func run(t *testing.T, c *ssh.Client, command string) string {
	t.Helper()
	out, err := testguest.Run(c, command)
	if err != nil {
		t.Fatalf("guest: %s: %v\n%s", command, err, out)
	}
	return out
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, path string, at int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}
