package bake

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ingot-build/ingot/recipes"
)

// The source image is opened as the format that is known (a stored layer's, or the recipe's
// source.disk.format, which is checked against the download) and probed only when none is.
func TestInspectBase(t *testing.T) {
	dir := t.TempDir()
	qcow2, raw := filepath.Join(dir, "a.qcow2"), filepath.Join(dir, "a.raw")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", qcow2, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	if err := os.WriteFile(raw, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		path       string
		source     string // the recipe's source
		baseFormat string // a stored layer's format
		want       string // the format, or the error's text
	}{
		{"probed when no one says", qcow2, "disk: { url: https://example.org/a, sha256: %s }", "", "qcow2"},
		{"the recipe's qcow2", qcow2, "disk: { url: https://example.org/a, sha256: %s, format: qcow2 }", "", "qcow2"},
		{"the recipe's raw", raw, "disk: { url: https://example.org/a, sha256: %s, format: raw }", "", "raw"},
		{"a stored layer's", qcow2, "image: base", "qcow2", "qcow2"},
		{"a qcow2 said to be raw", qcow2, "disk: { url: https://example.org/a, sha256: %s, format: raw }", "", "r.yaml:2:11: source.disk.format says raw but the image is qcow2"},
		{"a raw said to be qcow2", raw, "disk: { url: https://example.org/a, sha256: %s, format: qcow2 }", "", "r.yaml:2:11: source.disk.format says qcow2 but the image is raw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := strings.ReplaceAll(tt.source, "%s", strings.Repeat("e", 64))
			r, err := recipes.LoadBytes("r.yaml", []byte("name: t\nsource: { "+src+" }\n"), "", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			b := &build{r: r, base: tt.path, baseFormat: tt.baseFormat}
			info, err := b.inspectBase(context.Background())
			got := info.Format
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("inspectBase = %q, want %q", got, tt.want)
			}
		})
	}
}
