package communicator_test

// End-to-end against a real guest (the test cloud image under QEMU/TCG) with a seed made by
// ingot's cloudinit package: the host key is verified from the first connection.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ingot-build/ingot/cloudinit"
	"github.com/ingot-build/ingot/communicator"
	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/hypervisor/qemu"
	"github.com/ingot-build/ingot/internal/execx"
	"github.com/ingot-build/ingot/internal/testguest"
)

// bootGuest boots the test cloud image with a seed carrying seedKeys' host key and client key,
// and returns the machine. The caller connects with whatever keys it wants to test.
func bootGuest(t testing.TB, name string, seedKeys *communicator.Keys, userData map[string]any) hypervisor.Machine {
	t.Helper()
	img := testguest.CloudImage(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "disk.qcow2")
	if err := execx.Run(context.Background(), "qemu-img", "create", "-q", "-f", "qcow2", "-b", img.Image, "-F", "qcow2", disk, "4G"); err != nil {
		t.Fatal(err)
	}
	seed, err := cloudinit.New(cloudinit.Config{
		InstanceID: "i-" + name, Hostname: name,
		BuildUser: cloudinit.BuildUser{Name: "ingot", AuthorizedKeys: []string{seedKeys.AuthorizedKey}},
		HostKeys:  []cloudinit.HostKey{{Private: seedKeys.HostPrivatePEM, Public: seedKeys.HostPublic}},
		UserData:  userData,
	})
	if err != nil {
		t.Fatal(err)
	}
	seedPath := filepath.Join(dir, "seed.iso")
	if err := seed.Write(context.Background(), seedPath); err != nil {
		t.Fatal(err)
	}
	m, err := qemu.New().Start(context.Background(), hypervisor.Spec{Name: name, WorkDir: dir, MemoryMiB: 1024,
		Disks: []hypervisor.Disk{{Path: disk, Format: "qcow2"}, {Path: seedPath, Format: "raw", ReadOnly: true}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("console tail:\n%s", m.ConsoleTail(30))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := m.Kill(ctx); err != nil {
			t.Errorf("killing the guest: %v", err)
		}
	})
	return m
}

func abortOn(m hypervisor.Machine) <-chan error {
	ch := make(chan error, 1)
	go func() {
		<-m.Done()
		ch <- fmt.Errorf("the guest stopped: %v", m.Err())
	}()
	return ch
}

// The whole round trip from the issue: seed → boot → SSH with the host key verified → upload a
// file → run a script that reads it → download the result → reboot → reconnect → power off.
func TestGuestRoundTrip(t *testing.T) {
	t.Parallel()
	keys, err := communicator.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	// Values full of YAML specials must arrive in the guest unchanged.
	tricky := "quotes ' \" colon: hash # newline\nunicode ✓ ünï yes no on 0644 - [x] {y}"
	m := bootGuest(t, "roundtrip", keys, map[string]any{
		"write_files": []any{map[string]any{"path": "/etc/tricky", "content": tricky}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := communicator.Connect(ctx, communicator.Config{Addr: m.SSHAddr(), User: "ingot", Keys: keys, Timeout: 5 * time.Minute, Abort: abortOn(m)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeClient(t, c) }) // a no-op once closed below; there for early failures
	if err := c.Run(ctx, communicator.Cmd{Command: "cloud-init status --wait"}); err != nil {
		t.Fatal(err)
	}
	got, err := c.Output(ctx, communicator.Cmd{Command: "cat /etc/tricky"})
	if err != nil || string(got) != tricky {
		t.Errorf("write_files content in the guest = %q (%v), want %q", got, err, tricky)
	}

	local := t.TempDir()
	payload := make([]byte, 1<<20)
	_, _ = rand.Read(payload)
	if err := os.WriteFile(filepath.Join(local, "payload.bin"), payload, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Upload(ctx, filepath.Join(local, "payload.bin"), "/opt/in/payload.bin", communicator.UploadOptions{Mode: 0o640, Owner: "root:root"}); err != nil {
		t.Fatal(err)
	}
	var lines []string
	w := communicator.LineWriter(func(l string) { lines = append(lines, l) })
	err = c.Run(ctx, communicator.Cmd{
		Command: `stat -c '%a %U' /opt/in/payload.bin; sha256sum /opt/in/payload.bin | cut -d' ' -f1 > /opt/out.txt; echo "$MSG" >> /opt/out.txt`,
		Env:     map[string]string{"MSG": "it's $HOME \"here\""}, Sudo: true, Stdout: w, Stderr: w,
	})
	if err := w.Close(); err != nil {
		t.Errorf("closing the line writer: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) == 0 || lines[0] != "640 root" {
		t.Errorf("uploaded file mode/owner = %q, want 640 root", lines)
	}
	if err := c.Download(ctx, "/opt/out.txt", filepath.Join(local, "out.txt")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(local, "out.txt"))
	sum, _ := execx.Output(ctx, "sha256sum", filepath.Join(local, "payload.bin"))
	want := strings.Fields(string(sum))[0] + "\nit's $HOME \"here\"\n"
	if string(b) != want {
		t.Errorf("downloaded %q, want %q", b, want)
	}

	var ee *communicator.ExitError
	if err := c.Run(ctx, communicator.Cmd{Command: "exit 7"}); !errors.As(err, &ee) || ee.Status != 7 {
		t.Errorf("exit 7 gave %v", err)
	}

	// The same sshd, pinned to another host key (same client key, so only the host key check can
	// fail): refused at once, not retried, naming both fingerprints. It shares this guest
	// because boots are the test suite's expensive part.
	other, _ := communicator.GenerateKeys()
	mixed := *other
	mixed.Client, mixed.AuthorizedKey = keys.Client, keys.AuthorizedKey
	started := time.Now()
	_, err = communicator.Connect(ctx, communicator.Config{Addr: m.SSHAddr(), User: "ingot", Keys: &mixed, Timeout: time.Minute})
	if !errors.Is(err, communicator.ErrHostKeyMismatch) {
		t.Errorf("Connect with the wrong pinned host key = %v, want ErrHostKeyMismatch", err)
	} else {
		if time.Since(started) > 10*time.Second {
			t.Errorf("a host key mismatch was retried (%s)", time.Since(started))
		}
		for _, want := range []string{other.HostFingerprint(), keys.HostFingerprint()} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %s", err, want)
			}
		}
	}

	// Reboot against a real guest (it waits for a new boot id) is exercised by bake's end-to-end
	// builds, whose recipes reboot; TestReboot covers its edges against an in-process server.
	closeClient(t, c)
	if err := m.Shutdown(ctx); err != nil {
		t.Errorf("power off: %v", err)
	}
}

// BenchmarkUpload100MB compares SFTP upload (ingot) with OpenSSH's scp to the same guest, in the
// same run:  go test ./communicator -run '^$' -bench Upload -benchtime 3x
func BenchmarkUpload100MB(b *testing.B) {
	keys, _ := communicator.GenerateKeys()
	m := bootGuest(b, "bench", keys, nil)
	ctx := context.Background()
	c, err := communicator.Connect(ctx, communicator.Config{Addr: m.SSHAddr(), User: "ingot", Keys: keys, Timeout: 5 * time.Minute, Abort: abortOn(m)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { closeClient(b, c) })
	dir := b.TempDir()
	src := filepath.Join(dir, "100MB")
	data := make([]byte, 100<<20)
	_, _ = rand.Read(data)
	if err := os.WriteFile(src, data, 0o600); err != nil {
		b.Fatal(err)
	}
	keyPath, err := keys.WriteClientKey(dir)
	if err != nil {
		b.Fatal(err)
	}
	known := filepath.Join(dir, "known_hosts")
	host, port, _ := strings.Cut(m.SSHAddr(), ":")
	_ = os.WriteFile(known, fmt.Appendf(nil, "[%s]:%s %s\n", host, port, keys.HostPublic), 0o600)
	b.Run("sftp-ingot", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if err := c.Upload(ctx, src, "/tmp/up-ingot", communicator.UploadOptions{Mode: 0o600}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("scp-openssh", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			out, err := exec.Command("scp", "-q", "-i", keyPath, "-o", "UserKnownHostsFile="+known, "-o", "StrictHostKeyChecking=yes",
				"-P", port, src, "ingot@"+host+":/tmp/up-scp").CombinedOutput()
			if err != nil {
				b.Fatalf("scp: %v %s", err, out)
			}
		}
	})
}

// BenchmarkFirstSession is the time from the guest's sshd accepting connections to the first
// working session through Connect (the wait loop's own latency and the handshake).
func BenchmarkFirstSession(b *testing.B) {
	keys, _ := communicator.GenerateKeys()
	m := bootGuest(b, "session", keys, nil)
	ctx := context.Background()
	c, err := communicator.Connect(ctx, communicator.Config{Addr: m.SSHAddr(), User: "ingot", Keys: keys, Timeout: 5 * time.Minute, Abort: abortOn(m)})
	if err != nil {
		b.Fatal(err)
	}
	closeClient(b, c)
	b.Run("ingot", func(b *testing.B) {
		for b.Loop() {
			c, err := communicator.Connect(ctx, communicator.Config{Addr: m.SSHAddr(), User: "ingot", Keys: keys, Timeout: time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			if err := c.Run(ctx, communicator.Cmd{Command: "true"}); err != nil {
				b.Fatal(err)
			}
			closeClient(b, c)
		}
	})
	// The same session with OpenSSH's client: what the guest's sshd itself costs under this CPU.
	dir := b.TempDir()
	keyPath, err := keys.WriteClientKey(dir)
	if err != nil {
		b.Fatal(err)
	}
	host, port, _ := strings.Cut(m.SSHAddr(), ":")
	known := filepath.Join(dir, "known_hosts")
	_ = os.WriteFile(known, fmt.Appendf(nil, "[%s]:%s %s\n", host, port, keys.HostPublic), 0o600)
	b.Run("openssh", func(b *testing.B) {
		for b.Loop() {
			out, err := exec.Command("ssh", "-F", "none", "-i", keyPath, "-o", "UserKnownHostsFile="+known, "-o", "StrictHostKeyChecking=yes",
				"-o", "BatchMode=yes", "-p", port, "ingot@"+host, "true").CombinedOutput()
			if err != nil {
				b.Fatalf("ssh: %v %s", err, out)
			}
		}
	})
}

// closeClient closes c; an error closing it fails the test.
func closeClient(tb testing.TB, c *communicator.Client) {
	if err := c.Close(); err != nil {
		tb.Errorf("closing the ssh client: %v", err)
	}
}
