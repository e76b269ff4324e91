package disk

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ingot-build/ingot/internal/testguest"
)

// TestInspect reads the test disk as raw (directly) and as a qcow2 overlay (through qemu-nbd):
// both must show the same disk.
func TestInspect(t *testing.T) {
	d := fixture(t, "gpt")
	for _, img := range []string{d.Raw, d.Qcow2} {
		t.Run(filepath.Ext(img), func(t *testing.T) {
			in, err := Inspect(context.Background(), img)
			if err != nil {
				t.Fatal(err)
			}
			wantFormat := strings.TrimPrefix(filepath.Ext(img), ".")
			if in.Format != wantFormat || in.VirtualSize != d.Size || in.Allocated <= 0 || in.Allocated >= d.Size {
				t.Errorf("format %s, virtual %d, allocated %d", in.Format, in.VirtualSize, in.Allocated)
			}
			if (in.BackingFile != "") != (wantFormat == "qcow2") {
				t.Errorf("backing file %q", in.BackingFile)
			}
			if in.Table == nil || in.Table.Type != "gpt" || len(in.Table.Partitions) != 3 {
				t.Fatalf("partition table %+v", in.Table)
			}
			want := []struct {
				name, typeName string
				start          int64
				fs             *Filesystem
			}{
				{"bios", "BIOS boot", 1 << 20, nil},
				{"esp", "EFI System", d.ESPStart, &Filesystem{Type: "vfat", Label: "EFI", EFIBoot: []string{"EFI/BOOT/BOOTX64.EFI"}}},
				{"root", "Linux root (x86-64)", d.RootStart, &Filesystem{Type: "ext4", Label: "root", UUID: testRootUUID, Size: d.RootSize}},
			}
			for i, w := range want {
				p := in.Table.Partitions[i]
				if p.Index != i+1 || p.Name != w.name || p.TypeName != w.typeName || p.Start != w.start || len(p.UUID) != 36 {
					t.Errorf("partition %d: %+v, want %s %s at %d", i+1, p, w.name, w.typeName, w.start)
				}
				switch {
				case w.fs == nil && p.Filesystem != nil:
					t.Errorf("partition %d: filesystem %+v, want none", i+1, p.Filesystem)
				case w.fs != nil && p.Filesystem == nil:
					t.Errorf("partition %d: no filesystem, want %+v", i+1, w.fs)
				case w.fs != nil:
					got := *p.Filesystem
					if w.fs.Type == "vfat" {
						if len(got.UUID) != 9 {
							t.Errorf("vfat volume ID %q", got.UUID)
						}
						got.UUID = ""
					}
					if !reflect.DeepEqual(got, *w.fs) {
						t.Errorf("partition %d: filesystem %+v, want %+v", i+1, got, *w.fs)
					}
				}
			}
			var text bytes.Buffer
			if err := in.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			t.Logf("\n%s", text.String())
			if in.Arch != "x86_64" || in.ArchFrom != "EFI/BOOT/BOOTX64.EFI" {
				t.Errorf("arch %q from %q, want x86_64 from EFI/BOOT/BOOTX64.EFI", in.Arch, in.ArchFrom)
			}
			for _, line := range [][]string{{"table", "gpt"}, {"arch", "x86_64", "(its", "UEFI", "boot", "loader", "EFI/BOOT/BOOTX64.EFI)"}, {"2", "2.0", "MiB", "16.0", "MiB", "EFI", "System", "esp", "vfat", "EFI"}, {"3", "18.0", "MiB", "45.0", "MiB", "Linux", "root", "(x86-64)", "root", "ext4", "root", testRootUUID}} {
				if !hasLine(text.String(), line...) {
					t.Errorf("no line starts with %q", line)
				}
			}
			js, err := json.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			var back Inspection
			if err := json.Unmarshal(js, &back); err != nil || back.Table.Partitions[2].Filesystem.UUID != testRootUUID {
				t.Errorf("JSON round trip: %v\n%s", err, js)
			}
		})
	}
}

// TestInspectCloudImage inspects the compressed Debian test cloud image through qemu-nbd.
func TestInspectCloudImage(t *testing.T) {
	in, err := Inspect(context.Background(), testguest.CloudImage(t).Image)
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	in.WriteText(&text)
	t.Logf("\n%s", text.String())
	if in.Table == nil || len(in.Table.Partitions) != 3 {
		t.Fatalf("partitions: %+v", in.Table)
	}
	if fs := in.Table.Partitions[2].Filesystem; fs == nil || fs.Type != "ext4" || fs.UUID == "" {
		t.Errorf("root filesystem %+v", fs)
	}
	if fs := in.Table.Partitions[1].Filesystem; fs == nil || fs.Type != "vfat" {
		t.Errorf("ESP filesystem %+v", fs)
	}
	if in.Arch != "x86_64" {
		t.Errorf("arch %q from %q, want x86_64 from its ESP's EFI/BOOT/BOOTX64.EFI", in.Arch, in.ArchFrom)
	}
}

// TestInspectWholeDiskFilesystem inspects disks without a partition table: an ext4 and a blank one.
func TestInspectWholeDiskFilesystem(t *testing.T) {
	dir := t.TempDir()
	ext := filepath.Join(dir, "ext.raw")
	mustRun(t, "truncate", "-s", "16M", ext)
	mustRun(t, "mkfs.ext4", "-q", "-L", "data", ext)
	in, err := Inspect(context.Background(), ext)
	if err != nil {
		t.Fatal(err)
	}
	if in.Table != nil || in.Filesystem == nil || in.Filesystem.Type != "ext4" || in.Filesystem.Label != "data" {
		t.Errorf("table %+v, filesystem %+v", in.Table, in.Filesystem)
	}
	blank := filepath.Join(dir, "blank.qcow2")
	mustRun(t, "qemu-img", "create", "-q", "-f", "qcow2", blank, "8M")
	if in, err = Inspect(context.Background(), blank); err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	in.WriteText(&text)
	if in.Table != nil || in.Filesystem != nil || !hasLine(text.String(), "table", "none") {
		t.Errorf("blank disk: %+v\n%s", in, text.String())
	}
}

// TestNBDReadAt reads the qcow2 overlay through qemu-nbd and compares with the raw file, across
// the read-size limit and at the end of the disk.
func TestNBDReadAt(t *testing.T) {
	d := fixture(t, "gpt")
	n, err := openNBD(context.Background(), d.Qcow2, "qcow2")
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	raw, err := os.Open(d.Raw)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if n.Size() != d.Size {
		t.Fatalf("export size %d, disk %d", n.Size(), d.Size)
	}
	for _, c := range []struct{ off, n int64 }{{0, 512}, {1 << 20, 64 << 10}, {d.RootStart, 3 * nbdMaxRead / 2}, {d.Size - 100, 100}} {
		got, want := make([]byte, c.n), make([]byte, c.n)
		if _, err := n.ReadAt(got, c.off); err != nil {
			t.Fatalf("ReadAt(%d, %d): %v", c.off, c.n, err)
		}
		raw.ReadAt(want, c.off)
		if !bytes.Equal(got, want) {
			t.Errorf("ReadAt(%d, %d) differs from the raw disk", c.off, c.n)
		}
	}
	if k, err := n.ReadAt(make([]byte, 200), d.Size-100); k != 100 || err != io.EOF {
		t.Errorf("a read across the end: %d, %v; want 100, EOF", k, err)
	}
}

// hasLine says whether a line of text starts with these words.
func hasLine(text string, words ...string) bool {
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) >= len(words) && slices.Equal(f[:len(words)], words) {
			return true
		}
	}
	return false
}
