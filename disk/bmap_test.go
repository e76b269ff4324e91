package disk

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBmapIsBmaptools checks that the bmap Produce writes is the one `bmaptool create` writes for
// the same raw image, byte for byte.
func TestBmapIsBmaptools(t *testing.T) {
	d := fixture(t, "gpt")
	dir := t.TempDir()
	arts, err := Produce(context.Background(), d.Qcow2, OutputSpec{Name: "img", Format: "raw", Bmap: true}, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	ours, err := os.ReadFile(arts[1].Path)
	if err != nil {
		t.Fatal(err)
	}
	theirs := filepath.Join(t.TempDir(), "bmaptool.bmap")
	mustRun(t, "bmaptool", "create", "-o", theirs, arts[0].Path)
	want, err := os.ReadFile(theirs)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ours, want) {
		t.Errorf("our bmap differs from bmaptool's:\n--- ours\n%s\n--- bmaptool\n%s", ours, want)
	}
}

// TestBmaptoolCopy flashes each raw output with bmaptool to a file, through its bmap, and checks
// that the file is the disk.
func TestBmaptoolCopy(t *testing.T) {
	d := fixture(t, "gpt")
	for _, compress := range []string{"none", "zstd", "xz"} {
		t.Run(compress, func(t *testing.T) {
			dir := t.TempDir()
			arts, err := Produce(context.Background(), d.Qcow2, OutputSpec{Name: "img", Format: "raw", Compress: compress, Bmap: true}, dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			target := filepath.Join(t.TempDir(), "card")
			out := mustRun(t, "bmaptool", "copy", "--bmap", arts[1].Path, arts[0].Path, target)
			t.Log(strings.TrimSpace(out))
			if sum, _ := sha256File(target); sum != d.SHA256 {
				t.Errorf("bmaptool copy of %s wrote sha256 %s, the disk's is %s", filepath.Base(arts[0].Path), sum, d.SHA256)
			}
		})
	}
}

func TestVerifyBmapCatchesDamage(t *testing.T) {
	ranges := []bmapRange{{0, 3, strings.Repeat("a", 64)}, {10, 10, strings.Repeat("b", 64)}}
	good := renderBmap(1<<20, ranges)
	if err := verifyBmap(good, 1<<20); err != nil {
		t.Fatalf("a good bmap fails: %v\n%s", err, good)
	}
	tests := []struct {
		name string
		data []byte
		size int64
		want string
	}{
		{"other image size", good, 2 << 20, "the image is"},
		{"edited range", bytes.Replace(good, []byte("> 10 <"), []byte("> 11 <"), 1), 1 << 20, "checksum mismatch"},
		{"truncated", good[:len(good)/2], 1 << 20, "parse"},
		{"overlapping", renderBmap(1<<20, []bmapRange{{0, 3, strings.Repeat("a", 64)}, {2, 5, strings.Repeat("b", 64)}}), 1 << 20, "out of order"},
		{"past the end", renderBmap(1<<20, []bmapRange{{256, 256, strings.Repeat("a", 64)}}), 1 << 20, "outside"},
	}
	for _, tt := range tests {
		err := verifyBmap(tt.data, tt.size)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want it to mention %q", tt.name, err, tt.want)
		}
	}
}

func TestBlockSpans(t *testing.T) {
	tests := []struct {
		in   []span
		size int64
		want []span
	}{
		{nil, 8192, nil},
		{[]span{{0, 1}}, 8192, []span{{0, 4096}}},
		{[]span{{100, 200}, {4000, 4100}}, 16384, []span{{0, 8192}}},
		{[]span{{0, 4096}, {8192, 9000}}, 10000, []span{{0, 4096}, {8192, 10000}}},
		{[]span{{4096, 8192}, {8192, 12288}}, 1 << 20, []span{{4096, 12288}}},
	}
	for _, tt := range tests {
		if got := blockSpans(tt.in, 4096, tt.size); !equalSpans(got, tt.want) {
			t.Errorf("blockSpans(%v, %d) = %v, want %v", tt.in, tt.size, got, tt.want)
		}
	}
}

func equalSpans(a, b []span) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestBmapHumanSize(t *testing.T) {
	for n, want := range map[int64]string{1: "1 byte", 511: "511 bytes", 512: "0.5 KiB", 64 << 20: "64.0 MiB", 2 << 30: "2.0 GiB", 1023 << 20: "1023.0 MiB"} {
		if got := bmapHumanSize(n); got != want {
			t.Errorf("bmapHumanSize(%d) = %q, want %q", n, got, want)
		}
	}
}
