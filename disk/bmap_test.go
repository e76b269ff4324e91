package disk

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBmapIsBmaptools checks that the bmap Produce writes is the one `bmaptool create` writes for
// the same raw image, byte for byte.
func TestBmapIsBmaptools(t *testing.T) {
	d := fixture(t, "gpt")
	dir := t.TempDir()
	arts, err := Produce(context.Background(), d.Qcow2, "", OutputSpec{Name: "img", Format: "raw", Bmap: true}, dir, nil)
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
			arts, err := Produce(context.Background(), d.Qcow2, "", OutputSpec{Name: "img", Format: "raw", Compress: compress, Bmap: true}, dir, nil)
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
	ranges := []bmapRange{{First: 0, Last: 3, SHA256: strings.Repeat("a", 64)}, {First: 10, Last: 10, SHA256: strings.Repeat("b", 64)}}
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
		{"overlapping", renderBmap(1<<20, []bmapRange{{First: 0, Last: 3, SHA256: strings.Repeat("a", 64)}, {First: 2, Last: 5, SHA256: strings.Repeat("b", 64)}}), 1 << 20, "out of order"},
		{"past the end", renderBmap(1<<20, []bmapRange{{First: 256, Last: 256, SHA256: strings.Repeat("a", 64)}}), 1 << 20, "outside"},
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

// TestBmaptoolFindsItsOwnBmap makes sets of outputs together, as a build does, and runs the real
// `bmaptool copy` on every raw image of a set without --bmap, so that bmaptool finds a bmap by
// name as a user's would. An image whose image has a bmap in the set must find that one and copy
// to exactly the image; one without must find none (bmaptool then refuses to copy without
// --nobmap), never the bmap of another image. Issue 19: `raw+zstd+bmap` with `raw+minimal` used
// to write NAME.raw (the minimal image) beside NAME.raw.bmap (the full one's), and bmaptool
// paired them and died with a traceback.
func TestBmaptoolFindsItsOwnBmap(t *testing.T) {
	d := fixture(t, "gpt")
	tests := []struct {
		name  string
		specs []OutputSpec
	}{
		{"issue 19: zstd with bmap, minimal without", []OutputSpec{
			{Format: "raw", Compress: "zstd", Bmap: true}, {Format: "raw", Shrink: "minimal"}}},
		{"full and minimal, both with bmap", []OutputSpec{
			{Format: "raw", Compress: "zstd", Bmap: true}, {Format: "raw", Compress: "xz", Shrink: "minimal", Bmap: true}}},
		{"one bmap serves zstd and xz", []OutputSpec{
			{Format: "raw", Compress: "zstd", Bmap: true}, {Format: "raw", Compress: "xz"}, {Format: "raw", Shrink: "minimal"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range tt.specs {
				tt.specs[i].Name = "img"
			}
			dir := t.TempDir()
			arts, err := ProduceAll(context.Background(), d.Qcow2, "", tt.specs, dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			// Which bmap describes which image: one per shrink, all outputs being of one disk.
			bmapOf := map[string]string{}
			k := 0
			for _, s := range tt.specs {
				n := len(s.Files())
				if s.Bmap {
					bmapOf[s.withDefaults().Shrink] = arts[k+1].Path
				}
				k += n
			}
			k = 0
			for _, s := range tt.specs {
				img := arts[k]
				k += len(s.Files())
				want := imageSHA256(t, img)
				target := filepath.Join(t.TempDir(), "card")
				cmd := exec.Command("bmaptool", "copy", img.Path, target)
				out, err := cmd.CombinedOutput()
				bmap, ok := bmapOf[s.withDefaults().Shrink]
				switch {
				case !ok && err == nil:
					t.Errorf("%s: bmaptool copy found a bmap for an image that has none:\n%s", cmd, out)
				case !ok && !bytes.Contains(out, []byte("bmap file not found")):
					t.Errorf("%s: %v, want bmaptool to find no bmap:\n%s", cmd, err, out)
					continue
				case !ok:
					mustRun(t, "bmaptool", "copy", "--nobmap", img.Path, target)
				case err != nil:
					t.Errorf("%s: %v\n%s", cmd, err, out)
					continue
				case !bytes.Contains(out, []byte("discovered bmap file '"+bmap+"'")):
					t.Errorf("%s: want it to discover %s:\n%s", cmd, bmap, out)
				}
				if sum, _ := sha256File(target); sum != want {
					t.Errorf("bmaptool copy of %s wrote sha256 %s, the image's is %s", filepath.Base(img.Path), sum, want)
				}
			}
		})
	}
}

// imageSHA256 is the sha256 of the image a raw artifact holds, decompressed.
func imageSHA256(t *testing.T, a Artifact) string {
	t.Helper()
	tool := map[string]string{"raw.zst": "zstd", "raw.xz": "xz"}[a.Format]
	if tool == "" {
		return a.SHA256
	}
	sum, _, _ := strings.Cut(mustRun(t, "sh", "-c", tool+" -dc '"+a.Path+"' | sha256sum"), " ")
	return sum
}
