package disk

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// Unpack gives each output as a machine boots it: the images QEMU opens as they are, and the
// compressed raw images and the OVA's disk as files in dir that read as the source disk does
// (qemu-img compare), the raw ones sparse.
func TestUnpack(t *testing.T) {
	d := fixture(t, "gpt")
	ctx := context.Background()
	out := t.TempDir()
	specs := []OutputSpec{
		{Name: "u", Format: "qcow2"}, {Name: "u", Format: "vmdk"}, {Name: "u", Format: "raw", Compress: "zstd"},
		{Name: "x", Format: "raw", Compress: "xz"}, {Name: "u", Format: "ova"},
	}
	arts, err := ProduceAll(ctx, d.Raw, "raw", specs, out, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range arts {
		t.Run(a.Format, func(t *testing.T) {
			dir := t.TempDir()
			if got, err := FormatOf(ctx, a.Path); err != nil || got != a.Format {
				t.Errorf("FormatOf(%s) = %q, %v; want %q", filepath.Base(a.Path), got, err, a.Format)
			}
			b, err := Unpack(ctx, a.Path, "", dir)
			if err != nil {
				t.Fatal(err)
			}
			wantUnpacked := a.Format == "raw.zst" || a.Format == "raw.xz" || a.Format == "ova"
			if b.Unpacked != wantUnpacked || (b.Unpacked && filepath.Dir(b.Path) != dir) || (!b.Unpacked && b.Path != a.Path) {
				t.Errorf("Unpack(%s) = %+v", filepath.Base(a.Path), b)
			}
			mustRun(t, "qemu-img", "compare", "-f", "raw", "-F", b.Format, d.Raw, b.Path)
			if b.Format == "raw" && b.Unpacked {
				if alloc, err := allocatedBytes(b.Path); err != nil || alloc >= d.Size {
					t.Errorf("the decompressed image takes %d bytes of its %d: not sparse (%v)", alloc, d.Size, err)
				}
			}
		})
	}
	// A corrupt compressed image fails and leaves nothing in dir.
	bad := filepath.Join(t.TempDir(), "bad.raw.zst")
	if err := os.WriteFile(bad, []byte("not zstd at all"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := Unpack(ctx, bad, "", dir); err == nil {
		t.Error("Unpack of a corrupt raw.zst succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a failed Unpack left %v", entries)
	}
	if _, err := Unpack(ctx, bad, "bmap", dir); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Unpack of a bmap: %v, want ErrUnsupported", err)
	}
}
