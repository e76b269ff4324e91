package communicator

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The in-process server runs on this machine, so "remote" paths are local paths too.

func writeFile(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func checkFile(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Error(err)
		return
	}
	if fi.Mode().Perm() != mode {
		t.Errorf("%s: mode %04o, want %04o", p, fi.Mode().Perm(), mode)
	}
	data, err := os.ReadFile(p)
	if err != nil || string(data) != content {
		t.Errorf("%s: content %q, %v; want %q", p, data, err, content)
	}
}

func TestUploadDownloadFile(t *testing.T) {
	c, _, _ := setup(t)
	ctx := context.Background()
	dir := t.TempDir()
	local := filepath.Join(dir, "local.conf")
	writeFile(t, local, "key=value\n", 0o644)

	tests := []struct {
		name    string
		mode    os.FileMode
		owner   string
		want    os.FileMode
		wantUID int
	}{
		{"explicit mode", 0o640, "", 0o640, os.Getuid()},
		{"local mode", 0, "", 0o644, os.Getuid()},
		{"owner", 0o600, "root:root", 0o600, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			remote := filepath.Join(dir, "guest", tt.name, "etc", "app.conf") // parents created
			if err := c.Upload(ctx, local, remote, UploadOptions{Mode: tt.mode, Owner: tt.owner}); err != nil {
				t.Fatal(err)
			}
			checkFile(t, remote, "key=value\n", tt.want)
			if fi, err := os.Stat(remote); err == nil && int(fi.Sys().(*syscall.Stat_t).Uid) != tt.wantUID {
				t.Errorf("uid %d, want %d", fi.Sys().(*syscall.Stat_t).Uid, tt.wantUID)
			}

			back := filepath.Join(dir, "back-"+strings.ReplaceAll(tt.name, " ", "-"))
			if err := c.Download(ctx, remote, back); err != nil {
				t.Fatal(err)
			}
			checkFile(t, back, "key=value\n", tt.want)
		})
	}

	// A download replaces an existing file.
	existing := filepath.Join(dir, "existing")
	writeFile(t, existing, "old", 0o644)
	if err := c.Download(ctx, local, existing); err != nil {
		t.Fatal(err)
	}
	checkFile(t, existing, "key=value\n", 0o644)

	if err := c.Download(ctx, filepath.Join(dir, "missing"), filepath.Join(dir, "x")); err == nil {
		t.Error("downloading a missing file: want error")
	}
}

func TestUploadDownloadTree(t *testing.T) {
	c, _, _ := setup(t)
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeFile(t, filepath.Join(src, "bin", "run.sh"), "#!/bin/sh\n", 0o755)
	writeFile(t, filepath.Join(src, "secret"), "s3cret", 0o600)
	writeFile(t, filepath.Join(src, "a", "b", "deep.txt"), "deep", 0o644)
	if err := os.Symlink("bin/run.sh", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "a"), 0o750); err != nil {
		t.Fatal(err)
	}

	check := func(root string) {
		t.Helper()
		checkFile(t, filepath.Join(root, "bin", "run.sh"), "#!/bin/sh\n", 0o755)
		checkFile(t, filepath.Join(root, "secret"), "s3cret", 0o600)
		checkFile(t, filepath.Join(root, "a", "b", "deep.txt"), "deep", 0o644)
		if target, err := os.Readlink(filepath.Join(root, "link")); err != nil || target != "bin/run.sh" {
			t.Errorf("link = %q, %v", target, err)
		}
		if fi, err := os.Stat(filepath.Join(root, "a")); err != nil || fi.Mode().Perm() != 0o750 {
			t.Errorf("dir a: %v, %v", fi.Mode(), err)
		}
	}

	// Without modes, every entry keeps its local permission bits: a 0755 directory stays
	// enterable (issue 19: it used to get the file default 0644).
	remote := filepath.Join(dir, "guest", "opt", "app")
	if err := c.Upload(ctx, src, remote, UploadOptions{Owner: "root:root"}); err != nil {
		t.Fatal(err)
	}
	check(remote)
	if fi, err := os.Stat(remote); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("top dir mode: %v, %v; want the local 0755", fi.Mode(), err)
	}

	// mode applies to the files, dir_mode to the directories, the top one included.
	forced := filepath.Join(dir, "guest", "opt", "forced")
	if err := c.Upload(ctx, src, forced, UploadOptions{Mode: 0o640, DirMode: 0o711, Owner: "root:root"}); err != nil {
		t.Fatal(err)
	}
	checkFile(t, filepath.Join(forced, "bin", "run.sh"), "#!/bin/sh\n", 0o640)
	checkFile(t, filepath.Join(forced, "secret"), "s3cret", 0o640)
	for _, d := range []string{"", "a", "a/b", "bin"} {
		if fi, err := os.Stat(filepath.Join(forced, d)); err != nil || fi.Mode().Perm() != 0o711 {
			t.Errorf("dir %q: mode %v, %v; want 0711", d, fi.Mode(), err)
		}
	}

	back := filepath.Join(dir, "back")
	if err := c.Download(ctx, remote, back); err != nil {
		t.Fatal(err)
	}
	check(back)
	if err := c.Download(ctx, remote, back); err == nil {
		t.Error("downloading a tree onto an existing directory: want error")
	}
	// Nothing is left behind next to the destination.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("leftover temporary %s", e.Name())
		}
	}
}

func TestReboot(t *testing.T) {
	defer func(s string) { bootIDCommand = s }(bootIDCommand)
	bootIDCommand = `printf '%s\n' "$BOOT_ID"`

	k := newKeys(t)
	srv := startServer(t, "127.0.0.1:0", k.HostPrivatePEM, k.Client.PublicKey())
	srv.env.Store([]string{"BOOT_ID=first"})
	srv.onExec = func(cmd string) {
		if cmd != "fake-reboot" {
			return
		}
		// The old system keeps answering for a moment (Reboot must not mistake it for the
		// new one), then every connection drops and the new boot comes up.
		time.AfterFunc(600*time.Millisecond, func() {
			srv.env.Store([]string{"BOOT_ID=second"})
			srv.DropAll()
		})
	}
	// The fake reboot command returns at once, like systemctl reboot does.
	if err := os.WriteFile(filepath.Join(srv.bin, "fake-reboot"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	c, err := Connect(ctx, Config{Addr: srv.Addr(), User: "u", Keys: k, Timeout: 10 * time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	closeOnCleanup(t, c)
	if err := c.Reboot(ctx, "fake-reboot"); err != nil {
		t.Fatalf("Reboot: %v", err)
	}
	out, err := c.Output(ctx, Cmd{Command: `printf %s "$BOOT_ID"`})
	if err != nil || string(out) != "second" {
		t.Fatalf("after reboot: %q, %v", out, err)
	}

	// A reboot command that fails plainly (sudo refused) is an error, not a reboot.
	if err := c.Reboot(ctx, "exit 1"); err == nil {
		t.Error("failing reboot command: want error")
	}
}
