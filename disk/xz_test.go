package disk

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ulikunitz/xz"
)

// TestCompressRawXZ makes the test disk's raw.xz with the xz tool and with ulikunitz/xz, and
// checks that each decompresses to the raw image byte for byte (with xz and with the Go reader
// that Produce verifies with), passes `xz -t`, is the file its Artifact describes, and that the
// bmap ranges do not depend on the encoder.
func TestCompressRawXZ(t *testing.T) {
	d := fixture(t, "gpt")
	want, err := os.ReadFile(d.Raw)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(d.Raw)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wantRanges, err := scanRaw(context.Background(), f, d.Size, nil, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Both encoders are checked with the xz tool: a missing one fails the test rather than
	// skipping it, since a skip would leave raw.xz outputs untested.
	if _, err := exec.LookPath("xz"); err != nil {
		t.Fatalf("xz is needed by this test: %v; install xz-utils (make deps-test)", err)
	}

	tests := []struct {
		name string
		opts compressOptions
		// blockFlags is what `xz --robot -lvv` says each block header holds: the xz tool in
		// threaded mode writes the compressed and uncompressed sizes ("cu"), ulikunitz/xz neither.
		blockFlags string
	}{
		{"xz tool", compressOptions{}, "cu"},
		{"ulikunitz", compressOptions{goXZ: true}, "--"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "disk.raw.xz")
			art, ranges, err := compressRaw(context.Background(), f, d.Size, out, "xz", true, nil, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if art.Format != "raw.xz" {
				t.Errorf("format %q, want raw.xz", art.Format)
			}
			if sum, err := sha256File(out); err != nil || sum != art.SHA256 {
				t.Errorf("the file's sha256 is %s (%v), the artifact says %s", sum, err, art.SHA256)
			}
			if st, err := os.Stat(out); err != nil || st.Size() != art.Size {
				t.Errorf("the file is %v bytes (%v), the artifact says %d", st.Size(), err, art.Size)
			}
			if !reflect.DeepEqual(ranges, wantRanges) {
				t.Errorf("bmap ranges %v, want %v", ranges, wantRanges)
			}
			mustRun(t, "xz", "-t", out)
			if got := mustRun(t, "xz", "-dc", out); !bytes.Equal([]byte(got), want) {
				t.Errorf("xz -dc gives %d bytes that differ from the %d of the raw image", len(got), len(want))
			}
			data, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			xr, err := xz.NewReader(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if got, err := io.ReadAll(xr); err != nil || !bytes.Equal(got, want) {
				t.Errorf("ulikunitz/xz gives %d bytes (%v) that differ from the %d of the raw image", len(got), err, len(want))
			}
			list := mustRun(t, "xz", "--robot", "-lvv", out)
			blocks := 0
			for _, line := range strings.Split(list, "\n") {
				if fields := strings.Split(line, "\t"); fields[0] == "block" && len(fields) > 12 {
					blocks++
					if fields[12] != tt.blockFlags {
						t.Errorf("block %s has header flags %q, want %q: not the encoder asked for", fields[2], fields[12], tt.blockFlags)
					}
				}
			}
			if blocks == 0 {
				t.Errorf("xz --robot -lvv lists no blocks:\n%s", list)
			}
		})
	}
}

// TestProduceXZToolFails runs Produce with an xz on PATH that fails in ways the real one can,
// and checks that the error names the command and what it said, and that nothing is left in
// the output directory.
func TestProduceXZToolFails(t *testing.T) {
	d := fixture(t, "gpt")
	tests := []struct {
		name    string
		script  string
		timeout time.Duration
		want    []string
		is      error
	}{
		{
			name:   "exits at once",
			script: `echo "xz: cannot allocate memory" >&2; exit 1`,
			want:   []string{"compress", "with the xz tool", "xz -T0 -6 --check=crc64 -c", "exit status 1", "cannot allocate memory"},
		},
		{
			name:   "fails at the end",
			script: `cat >/dev/null; echo "xz: (stdout): No space left on device" >&2; exit 1`,
			want:   []string{"xz -T0 -6 --check=crc64 -c", "exit status 1", "No space left on device"},
		},
		{
			name:   "writes no xz",
			script: `cat >/dev/null; echo "not xz"`,
			want:   []string{"verify", "made with the xz tool", "decompresses to 0 bytes"},
		},
		{
			name:    "hangs",
			script:  `exec sleep 60`,
			timeout: 3 * time.Second,
			want:    []string{"xz -T0 -6 --check=crc64 -c", "signal: killed"},
			is:      context.DeadlineExceeded,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bin := t.TempDir()
			if err := os.WriteFile(filepath.Join(bin, "xz"), []byte("#!/bin/sh\n"+tt.script+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
			ctx := context.Background()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			dir := t.TempDir()
			start := time.Now()
			_, err := Produce(ctx, d.Qcow2, "", OutputSpec{Name: "disk", Format: "raw", Compress: "xz", Bmap: true}, dir, nil)
			if err == nil {
				t.Fatal("Produce succeeded with a failing xz")
			}
			t.Logf("after %v: %v", time.Since(start).Round(time.Millisecond), err)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %v", err, tt.is)
			}
			if tt.timeout > 0 && time.Since(start) > tt.timeout+5*time.Second {
				t.Errorf("Produce took %v to stop after its context ended at %v", time.Since(start), tt.timeout)
			}
			if names := dirNames(t, dir); len(names) > 0 {
				t.Errorf("the output directory holds %v after the failure", names)
			}
		})
	}
}
