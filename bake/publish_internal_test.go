package bake

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ingot-build/ingot/internal/progress"
	"github.com/ingot-build/ingot/manifest"
	"github.com/ingot-build/ingot/recipes"
)

// publishDownload never replaces what is in the staging dir, a file or an (empty) directory
// that a rename would silently take the place of.
func TestPublishDownloadRefusesToReplace(t *testing.T) {
	tests := []struct {
		name     string
		existing string // made in staging before: "file", "dir" or nothing
		tree     bool   // the download is a directory
		wantErr  bool
	}{
		{"a file into place", "", false, false},
		{"a tree into place", "", true, false},
		{"a file over a file", "file", false, true},
		{"a tree over an empty dir", "dir", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			work, staging := t.TempDir(), t.TempDir()
			src := filepath.Join(work, "got")
			if tt.tree {
				if err := os.MkdirAll(src, 0o755); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(src, []byte("download"), 0o644); err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(staging, "sub", "t.raw.bmap")
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			switch tt.existing {
			case "file":
				if err := os.WriteFile(dst, []byte("output"), 0o644); err != nil {
					t.Fatal(err)
				}
			case "dir":
				if err := os.Mkdir(dst, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			err := publishDownload(src, staging, "sub/t.raw.bmap")
			if !tt.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := os.Lstat(dst); err != nil {
					t.Errorf("not published: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "refusing to replace it") {
				t.Fatalf("publishDownload = %v, want it refused", err)
			}
			if _, err := os.Lstat(src); err != nil {
				t.Errorf("the download is gone: %v", err)
			}
			if tt.existing == "file" {
				if b, _ := os.ReadFile(dst); string(b) != "output" {
					t.Errorf("the file in place now holds %q", b)
				}
			}
		})
	}
}

// convert makes a recipe's outputs (through disk.ProduceAll) and publishes the downloads beside
// them, and record writes a manifest that manifest.Read reads back and a SHA256SUMS that
// sha256sum checks; a failing output is named by its place in the recipe, and nothing is
// published.
func TestConvertAndRecord(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "disk.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", src, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	newTestBuild := func(t *testing.T, outputs string) *build {
		r, err := recipes.LoadBytes("r.yaml", []byte(`name: t
source: { disk: { url: https://example.org/t.qcow2, sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 } }
provision:
  - file: { src: /var/log/a.log, dst: logs/a.log, direction: download }
outputs:
`+outputs), "", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		out, work := t.TempDir(), t.TempDir()
		if err := os.MkdirAll(filepath.Join(work, "downloads", "logs"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(work, "downloads", "logs", "a.log"), []byte("log\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return &build{
			opts: Options{OutDir: out, Progress: progress.Nop()}, r: r, log: slog.New(slog.DiscardHandler),
			id: "t-1", outDir: filepath.Join(out, "t"), workDir: work, diskPath: src, started: time.Now(),
			downloads: []string{"logs/a.log"},
		}
	}

	b := newTestBuild(t, "  - { format: qcow2, compress: zstd }\n  - { format: vmdk }\n")
	err := b.convert(ctx)
	if err == nil {
		err = b.record(ctx)
	}
	if err := errors.Join(err, b.cleanup()); err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Read(filepath.Join(b.outDir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, f := range slices.Concat(m.Outputs, m.Downloads) {
		files = append(files, f.File+" "+f.Format)
	}
	if want := []string{"t.qcow2 qcow2", "t.vmdk vmdk", "logs/a.log download"}; !slices.Equal(files, want) || m.SchemaVersion != manifest.Version {
		t.Errorf("manifest %s lists %q, want %q", m.SchemaVersion, files, want)
	}
	cmd := exec.Command("sha256sum", "--strict", "-c", "SHA256SUMS")
	cmd.Dir = b.outDir
	// The two outputs, the download and the SBOM.
	if out, err := cmd.CombinedOutput(); err != nil || strings.Count(string(out), ": OK") != 4 || !strings.Contains(string(out), "sbom.spdx.json: OK") {
		t.Errorf("%s: %v\n%s", cmd, err, out)
	}

	// A disk with no partition cannot be shrunk: the error names the output's line, and the
	// qcow2 made beside it is not published.
	b = newTestBuild(t, "  - { format: qcow2 }\n  - { format: raw, shrink: minimal }\n")
	err = b.convert(ctx)
	if err == nil || !strings.HasPrefix(err.Error(), "r.yaml:7:5: outputs[1]: produce t-minimal.raw: ") {
		t.Errorf("convert = %v, want the error of outputs[1] at r.yaml:7:5", err)
	}
	if err := b.cleanup(); err != nil {
		t.Fatal(err)
	}
	if entries, err := os.ReadDir(b.opts.OutDir); err != nil || len(entries) > 0 {
		t.Errorf("the output dir holds %v after the failure (%v)", entries, err)
	}
}
