package cloudinit

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
)

// readImage opens a seed image read-only with go-diskfs and returns its label and files.
func readImage(t *testing.T, path string, format Format) (label string, files map[string][]byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	var fsys filesystem.FileSystem
	switch format {
	case FormatISO:
		fsys, err = iso9660.Read(file.New(f, true), st.Size(), 0, isoBlockSize)
	case FormatVFAT:
		fsys, err = fat32.Read(file.New(f, true), st.Size(), 0, fatSector)
	}
	if err != nil {
		t.Fatalf("go-diskfs cannot read the %s image: %v", format, err)
	}
	entries, err := fsys.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	files = map[string][]byte{}
	for _, e := range entries {
		if e.IsDir() || e.Type()&fs.ModeType != 0 {
			t.Errorf("unexpected entry %s (%v) in the seed", e.Name(), e.Type())
			continue
		}
		files[e.Name()] = readExactly(t, fsys, e.Name())
	}
	return strings.TrimRight(fsys.Label(), " \x00"), files
}

// readExactly reads a file in one Read of its recorded size. go-diskfs v1.9.4's FAT reader
// (fat12.File.Read) ignores the file's end when a read starts inside a cluster, so io.ReadAll
// (ReadFile) returns the cluster's padding too; the directory entry's size is right (mtools
// reads it back exactly), so one read of that size gives the true content.
func readExactly(t *testing.T, fsys filesystem.FileSystem, name string) []byte {
	t.Helper()
	f, err := fsys.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, info.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return data
}

// blkid reports the image as cloud-init finds it: NoCloud looks devices up with blkid by label
// and file system type.
func blkid(t *testing.T, path string) map[string]string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), lookTool(t, "blkid", "util-linux"), "-p", "-o", "export", path).Output()
	if err != nil {
		t.Fatalf("blkid -p %s: %v", path, err)
	}
	tags := map[string]string{}
	for line := range strings.Lines(string(out)) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			tags[k] = v
		}
	}
	return tags
}

// readIndependently reads the image with a second, unrelated implementation, so that go-diskfs
// reading its own output back is not the only witness: xorriso (libisofs, Rock Ridge) for ISO,
// mtools for FAT, plus fsck.fat, which also checks the FAT32 is valid (enough clusters).
func readIndependently(t *testing.T, path string, format Format) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	switch format {
	case FormatISO:
		out := t.TempDir()
		cmd := exec.CommandContext(t.Context(), lookTool(t, "xorriso", "xorriso"),
			"-osirrox", "on", "-indev", path, "-extract", "/", out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("xorriso cannot extract the seed: %v\n%s", err, b)
		}
		entries, err := os.ReadDir(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if files[e.Name()], err = os.ReadFile(filepath.Join(out, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	case FormatVFAT:
		b, err := exec.CommandContext(t.Context(), lookTool(t, "fsck.fat", "dosfstools"), "-n", "-v", path).CombinedOutput()
		if err != nil || bytes.Contains(b, []byte("Warning")) {
			t.Fatalf("fsck.fat -n finds problems (%v):\n%s", err, b)
		}
		env := append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		cmd := exec.CommandContext(t.Context(), lookTool(t, "mdir", "mtools"), "-b", "-i", path, "::/")
		cmd.Env = env
		listing, err := cmd.Output()
		if err != nil {
			t.Fatalf("mdir cannot list the seed: %v", err)
		}
		for line := range strings.Lines(string(listing)) {
			name := strings.TrimPrefix(strings.TrimSpace(line), "::/")
			if name == "" {
				continue
			}
			cmd := exec.CommandContext(t.Context(), lookTool(t, "mtype", "mtools"), "-i", path, "::/"+name)
			cmd.Env = env
			if files[name], err = cmd.Output(); err != nil {
				t.Fatalf("mtype %s: %v", name, err)
			}
		}
	}
	return files
}

func seedFiles(s *Seed) map[string][]byte {
	m := map[string][]byte{}
	for _, f := range s.Files() {
		m[f.Name] = f.Data
	}
	return m
}

func sameFiles(t *testing.T, reader string, want, got map[string][]byte) {
	t.Helper()
	wantNames, gotNames := slices.Sorted(maps.Keys(want)), slices.Sorted(maps.Keys(got))
	if !slices.Equal(wantNames, gotNames) {
		t.Fatalf("%s sees files %q, want %q", reader, gotNames, wantNames)
	}
	for name, data := range want {
		if !bytes.Equal(got[name], data) {
			t.Errorf("%s reads %s with different content:\n%q\nwant\n%q", reader, name, got[name], data)
		}
	}
}

func TestWriteImage(t *testing.T) {
	tests := []struct {
		format   Format
		network  bool
		wantType string
	}{
		{FormatISO, false, "iso9660"},
		{FormatISO, true, "iso9660"},
		{"", true, "iso9660"}, // the default
		{FormatVFAT, false, "vfat"},
		{FormatVFAT, true, "vfat"},
	}
	for _, tt := range tests {
		name := string(tt.format)
		if name == "" {
			name = "default"
		}
		if tt.network {
			name += "+network"
		}
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Format = tt.format
			cfg.UserData = map[string]any{"runcmd": []any{"echo 'yes: no' # ✓"}}
			if tt.network {
				cfg.NetworkConfig = map[string]any{"version": 2, "ethernets": map[string]any{"e": map[string]any{"dhcp4": true}}}
			}
			seed, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			path := filepath.Join(dir, "seed.img")
			if err := seed.Write(t.Context(), path); err != nil {
				t.Fatal(err)
			}

			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("seed image mode %v, want 0600: it holds a private key", st.Mode().Perm())
			}
			assertOnlyFile(t, dir, "seed.img")

			want := seedFiles(seed)
			label, got := readImage(t, path, seed.Format())
			if label != Label {
				t.Errorf("go-diskfs reads label %q, want %q", label, Label)
			}
			sameFiles(t, "go-diskfs", want, got)
			sameFiles(t, "an independent reader", want, readIndependently(t, path, seed.Format()))

			tags := blkid(t, path)
			if tags["LABEL"] != Label || tags["TYPE"] != tt.wantType {
				t.Errorf("blkid sees LABEL=%q TYPE=%q, want %q %q", tags["LABEL"], tags["TYPE"], Label, tt.wantType)
			}
			if tt.wantType == "vfat" && tags["VERSION"] != "FAT32" {
				t.Errorf("blkid sees %s, want FAT32", tags["VERSION"])
			}
		})
	}
}

func assertOnlyFile(t *testing.T, dir, name string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{name}; name == "" && len(names) != 0 || name != "" && !slices.Equal(names, want) {
		t.Errorf("directory holds %q, want only %q (no temporary files or workspaces left behind)", names, name)
	}
}

func TestWriteReplacesAtomically(t *testing.T) {
	for _, format := range []Format{FormatISO, FormatVFAT} {
		t.Run(string(format), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "seed.img")
			newSeed := func(id string) *Seed {
				cfg := testConfig(t)
				cfg.Format = format
				cfg.InstanceID = id
				s, err := New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
			first, second := newSeed("first"), newSeed("second")
			if err := first.Write(t.Context(), path); err != nil {
				t.Fatal(err)
			}
			old, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}

			// A write that fails leaves the old seed in place and nothing else.
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			if err := second.Write(ctx, path); err == nil {
				t.Fatal("Write with a canceled context succeeded")
			}
			if now, err := os.ReadFile(path); err != nil || !bytes.Equal(now, old) {
				t.Fatalf("a failed write changed the existing seed (err %v)", err)
			}
			assertOnlyFile(t, dir, "seed.img")

			if err := second.Write(t.Context(), path); err != nil {
				t.Fatal(err)
			}
			_, got := readImage(t, path, format)
			sameFiles(t, "go-diskfs", seedFiles(second), got)
			assertOnlyFile(t, dir, "seed.img")
		})
	}
}

func TestWriteErrors(t *testing.T) {
	seed, err := New(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	missing := filepath.Join(dir, "no-such-dir", "seed.iso")
	if err := seed.Write(t.Context(), missing); err == nil || !strings.Contains(err.Error(), "write cloud-init seed "+missing) {
		t.Fatalf("Write into a missing directory: got %v, want an error naming the seed", err)
	}
	assertOnlyFile(t, dir, "")

	big := testConfig(t)
	big.UserData = map[string]any{"write_files": []any{map[string]any{"path": "/x", "content": strings.Repeat("x", maxSeedBytes)}}}
	s, err := New(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(t.Context(), filepath.Join(dir, "big.iso")); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("Write of an oversized seed: got %v", err)
	}
	assertOnlyFile(t, dir, "")
}

// TestVFATReproducible: with SOURCE_DATE_EPOCH set, two vfat seeds from one Config are the same
// bytes (go-diskfs takes file and label times from it; the volume serial is fixed at 0).
func TestVFATReproducible(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	cfg := testConfig(t)
	cfg.Format = FormatVFAT
	seed, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var images [][]byte
	for _, name := range []string{"a.img", "b.img"} {
		path := filepath.Join(dir, name)
		if err := seed.Write(t.Context(), path); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		images = append(images, b)
	}
	if !bytes.Equal(images[0], images[1]) {
		t.Error("two vfat seeds from the same config differ")
	}
}
