package disk

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ingot-build/ingot/internal/formats"
)

// TestClashes checks the naming rule of a set of outputs made into one directory: which sets are
// refused, for which pair of outputs, and that the error says what to change.
func TestClashes(t *testing.T) {
	type clash struct {
		first, second int
		want          []string // in the error
	}
	raw := func(compress, shrink string, bmap bool) OutputSpec {
		return OutputSpec{Name: "a", Format: "raw", Compress: compress, Shrink: shrink, Bmap: bmap}
	}
	tests := []struct {
		name  string
		specs []OutputSpec
		want  []clash
	}{
		{"issue 19: zstd with bmap, minimal without", []OutputSpec{raw("zstd", "", true), raw("", "minimal", false)}, nil},
		{"full and minimal, both with bmap", []OutputSpec{raw("", "", true), raw("", "minimal", true)}, nil},
		{"full and minimal, both zstd", []OutputSpec{raw("zstd", "", true), raw("zstd", "minimal", true)}, nil},
		{"xz finds the zstd's bmap, of the same image", []OutputSpec{raw("zstd", "", true), raw("xz", "", false)}, nil},
		{"every format once", []OutputSpec{{Name: "a", Format: "qcow2"}, {Name: "a", Format: "vmdk"}, {Name: "a", Format: "vhdx"}, {Name: "a", Format: "ova"}, raw("", "", true)}, nil},
		{"two bmaps of one image", []OutputSpec{raw("zstd", "", true), raw("xz", "", true)},
			[]clash{{0, 1, []string{"both write a.raw.bmap", "one serves a.raw.zst and a.raw.xz", "bmap on one of them"}}}},
		{"two bmaps of the minimal image", []OutputSpec{raw("", "minimal", true), raw("xz", "minimal", true)},
			[]clash{{0, 1, []string{"both write a-minimal.raw.bmap", "one serves a-minimal.raw and a-minimal.raw.xz"}}}},
		{"one file twice, one clash", []OutputSpec{raw("", "", false), raw("", "", true)},
			[]clash{{0, 1, []string{"both write a.raw", "drop one of them"}}}},
		{"two pairs", []OutputSpec{{Name: "a", Format: "qcow2"}, raw("zstd", "", true), {Name: "a", Format: "qcow2", Compress: "zstd"}, raw("xz", "", true)},
			[]clash{{0, 2, []string{"both write a.qcow2"}}, {1, 3, []string{"both write a.raw.bmap"}}}},
		// Names differ only in ProduceAll's sets (`ingot convert`); a build has one name.
		{"a name that extends another, another image", []OutputSpec{{Name: "c-minimal.raw", Format: "raw"}, {Name: "c", Format: "raw", Shrink: "minimal", Bmap: true}},
			[]clash{{0, 1, []string{"bmaptool would pair c-minimal.raw.raw with c-minimal.raw.bmap", "a different image", "names that do not extend one another"}}}},
		{"a name that extends another, the same image", []OutputSpec{{Name: "a", Format: "raw", Bmap: true}, {Name: "a.raw", Format: "raw", Compress: "zstd"}}, nil},
		{"a name ending in -minimal", []OutputSpec{{Name: "b-minimal", Format: "raw"}, {Name: "b", Format: "raw", Shrink: "minimal"}},
			[]clash{{0, 1, []string{"both write b-minimal.raw"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, s := range tt.specs {
				if err := s.Validate(); err != nil {
					t.Fatalf("spec %d: %v", i, err)
				}
			}
			got := Clashes(tt.specs)
			if len(got) != len(tt.want) {
				t.Fatalf("Clashes = %v, want %d clashes", got, len(tt.want))
			}
			for i, c := range got {
				w := tt.want[i]
				if c.First != w.first || c.Second != w.second {
					t.Errorf("clash %d is of outputs %d and %d, want %d and %d: %v", i, c.First, c.Second, w.first, w.second, c)
				}
				for _, s := range w.want {
					if !strings.Contains(c.Error(), s) {
						t.Errorf("clash %q does not mention %q", c, s)
					}
				}
				if !errors.Is(c, ErrUnsupported) {
					t.Errorf("clash %q is not ErrUnsupported", c)
				}
			}
		})
	}
}

// TestValidateFollowsFormats checks Validate against the formats table, option by option: every
// value a format's option lists is accepted, anything else refused, and an option the format
// does not take refused unless empty (or "none"), with a message naming the formats that take it.
func TestValidateFollowsFormats(t *testing.T) {
	candidates := []string{"", "none", "zlib", "zstd", "xz", "streamOptimized", "monolithicSparse", "minimal", "dynamic"}
	for _, f := range formats.All() {
		for _, key := range optionKeys() {
			o, takes := f.Option(key)
			values := candidates
			if key == "bmap" {
				values = []string{"", "true"}
			}
			for _, v := range values {
				spec := OutputSpec{Name: "a", Format: f.Name}
				if p := spec.option(key); p != nil {
					*p = v
				} else {
					spec.Bmap = v == "true"
				}
				want := v == "" || (!takes && v == "none") || (takes && (o.Values == nil || slices.Contains(o.Values, v)))
				err := spec.Validate()
				if (err == nil) != want {
					t.Errorf("%s with %s %q: Validate = %v, want ok = %v", f.Name, key, v, err, want)
				}
				if err != nil && !errors.Is(err, ErrUnsupported) {
					t.Errorf("%s with %s %q: %v is not ErrUnsupported", f.Name, key, v, err)
				}
				for _, taker := range formats.TakenBy(key) {
					if err != nil && !takes && !strings.Contains(err.Error(), taker) {
						t.Errorf("%s with %s %q: %v does not name %s, which takes %s", f.Name, key, v, err, taker, key)
					}
				}
			}
		}
	}
	if err := (OutputSpec{Name: "a", Format: "qcow3"}).Validate(); err == nil || !strings.Contains(err.Error(), "known: qcow2, vmdk, vhdx, raw, ova") {
		t.Errorf("an unknown format: Validate = %v", err)
	}
}

// withDefaults gives each option the format takes its default, and leaves the others empty.
func TestWithDefaults(t *testing.T) {
	tests := []struct {
		in, want OutputSpec
	}{
		{OutputSpec{Format: "raw"}, OutputSpec{Format: "raw", Compress: "none", Shrink: "none"}},
		{OutputSpec{Format: "vmdk", Compress: "none"}, OutputSpec{Format: "vmdk", Subformat: "streamOptimized"}},
		{OutputSpec{Format: "qcow2", Compress: "zstd", Shrink: "none"}, OutputSpec{Format: "qcow2", Compress: "zstd"}},
		{OutputSpec{Format: "ova"}, OutputSpec{Format: "ova"}},
	}
	for _, tt := range tests {
		got := tt.in.withDefaults()
		got.CPUs, got.MemoryMiB, got.Firmware, got.DiskBus = 0, 0, "", ""
		if got != tt.want {
			t.Errorf("%+v.withDefaults() = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// TestBmaptoolCandidates checks bmaptoolCandidates against the real bmaptool's discovery:
// find_and_open_bmap of the installed bmaptools, run in a directory holding every candidate,
// deleting each one it finds, must find them all, in our order.
func TestBmaptoolCandidates(t *testing.T) {
	python := bmaptoolPython(t)
	tests := []struct {
		image string
		want  []string
	}{
		{"img.raw.zst", []string{"img.raw.zst.bmap", "img.raw.bmap", "img.bmap"}},
		{"img.raw", []string{"img.raw.bmap", "img.bmap"}},
		{"img-minimal.raw.xz", []string{"img-minimal.raw.xz.bmap", "img-minimal.raw.bmap", "img-minimal.bmap"}},
		{"web-1.2-minimal.raw", []string{"web-1.2-minimal.raw.bmap", "web-1.2-minimal.bmap", "web-1.bmap"}},
		{".hidden.raw", []string{".hidden.raw.bmap", ".hidden.bmap"}},
		{"..a", []string{"..a.bmap"}},
		{"a..b", []string{"a..b.bmap", "a..bmap", "a.bmap"}},
		{"noext", []string{"noext.bmap"}},
	}
	for _, tt := range tests {
		got := bmaptoolCandidates(tt.image)
		if !slices.Equal(got, tt.want) {
			t.Errorf("bmaptoolCandidates(%q) = %q, want %q", tt.image, got, tt.want)
		}
		dir := t.TempDir()
		for _, c := range got {
			if err := os.WriteFile(filepath.Join(dir, c), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command(python, "-c", `
import argparse, os, sys
from bmaptools import CLI
while True:
    obj, path = CLI.find_and_open_bmap(argparse.Namespace(nobmap=False, bmap=None, image=sys.argv[1]))
    if obj is None:
        break
    obj.close()
    print(path)
    os.remove(path)
`, tt.image)
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		if real := strings.Fields(string(out)); !slices.Equal(real, got) {
			t.Errorf("bmaptool finds the bmaps of %q in the order %q, bmaptoolCandidates says %q", tt.image, real, got)
		}
	}
}

// bmaptoolPython is the interpreter bmaptool runs with (its #! line), which has its modules.
func bmaptoolPython(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("bmaptool")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	python, ok := strings.CutPrefix(strings.TrimSpace(line), "#!")
	if err != nil || !ok {
		t.Fatal(fmt.Errorf("%s has no #! line: %q, %v", path, line, err))
	}
	return strings.Fields(python)[0]
}
