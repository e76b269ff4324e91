package qemuimg

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ingot-build/ingot/internal/execx"
)

// These tests run the real qemu-img (qemu-utils) on images of a few MiB; they take about a second.

// chain makes a raw base with 1 MiB of data at its start and a 128 MiB qcow2 overlay on it that
// holds nothing yet.
func chain(t *testing.T) (base, top string) {
	t.Helper()
	dir := t.TempDir()
	base, top = filepath.Join(dir, "base.raw"), filepath.Join(dir, "top.qcow2")
	ctx := context.Background()
	if err := Create(ctx, base, "raw", 64<<20); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(base, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteAt(bytes.Repeat([]byte{0xab}, 1<<20), 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	// A relative base, which the overlay must record as an absolute path.
	rel, err := filepath.Rel(mustGetwd(t), base)
	if err != nil {
		t.Fatal(err)
	}
	if err := CreateOverlay(ctx, top, rel, "raw", 128<<20); err != nil {
		t.Fatal(err)
	}
	return base, top
}

func mustGetwd(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}

func TestFind(t *testing.T) {
	b, err := Find(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(b.Path) || !regexp.MustCompile(`^\d+\.\d+`).MatchString(b.Version) {
		t.Errorf("Find = %+v", b)
	}
	t.Setenv("PATH", t.TempDir())
	if _, err := Find(context.Background()); err == nil || !strings.Contains(err.Error(), "apt-get install qemu-utils") {
		t.Errorf("Find without qemu-img on PATH: %v; want the package to install", err)
	}
}

func TestQueries(t *testing.T) {
	base, top := chain(t)
	ctx := context.Background()

	info, err := Info(ctx, top, "qcow2")
	if err != nil {
		t.Fatal(err)
	}
	if info.Format != "qcow2" || info.VirtualSize != 128<<20 || info.FullBackingFilename != base || info.BackingFormat != "raw" {
		t.Errorf("Info = %+v; want a 128 MiB qcow2 on %s (raw)", info, base)
	}
	got, err := BackingChain(ctx, top, "qcow2")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Filename != top || got[1].Filename != base || got[1].Format != "raw" {
		t.Errorf("BackingChain = %+v", got)
	}
	if p, err := Probe(ctx, base); err != nil || p.Format != "raw" {
		t.Errorf("Probe(base) = %+v, %v", p, err)
	}

	if n, err := Allocated(ctx, top, "qcow2"); err != nil || n != 1<<20 {
		t.Errorf("Allocated = %d, %v; want the base's 1 MiB", n, err)
	}
	m, err := Measure(ctx, top, "qcow2", "qcow2")
	if err != nil {
		t.Fatal(err)
	}
	if m.Required < 1<<20 || m.FullyAllocated < 128<<20 {
		t.Errorf("Measure = %+v for 1 MiB of data on a 128 MiB disk", m)
	}
	if r, err := Check(ctx, top, "qcow2"); err != nil || !r.Clean() || r.Format != "qcow2" {
		t.Errorf("Check = %+v, %v", r, err)
	}
	// raw has no check: qemu-img's own error.
	if _, err := Check(ctx, base, "raw"); err == nil || !strings.Contains(err.Error(), "does not support checks") {
		t.Errorf("Check(raw) = %v", err)
	}
	// Opened as what it is not: qemu-img's error, not a probe.
	if _, err := Info(ctx, base, "qcow2"); err == nil || !strings.Contains(err.Error(), "not in qcow2 format") {
		t.Errorf("Info(raw as qcow2) = %v", err)
	}
}

// TestNoFormatNoRun checks that every call refuses an image without its format before qemu-img
// runs (PATH holds none), since qemu-img would probe it.
func TestNoFormatNoRun(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	ctx := context.Background()
	calls := map[string]error{
		"Info":          second(Info(ctx, "x", "")),
		"BackingChain":  second(BackingChain(ctx, "x", "")),
		"Map":           second(Map(ctx, "x", "")),
		"Measure":       second(Measure(ctx, "x", "", "raw")),
		"Check":         second(Check(ctx, "x", "")),
		"Create":        Create(ctx, "x", "", 1),
		"CreateOverlay": CreateOverlay(ctx, "x", "b", "", 1),
		"Convert":       Convert(ctx, "x", "y", ConvertOptions{Format: "raw"}),
		"Convert -B":    Convert(ctx, "x", "y", ConvertOptions{InputFormat: "qcow2", Format: "qcow2", BackingFile: "b"}),
	}
	for name, err := range calls {
		if err == nil || !strings.Contains(err.Error(), "must not probe") {
			t.Errorf("%s without a format: %v", name, err)
		}
	}
}

func second[T any](_ T, err error) error { return err }

// TestForceShare holds an overlay open for writing, as a running VM holds its disk, and checks
// the package doc's rule: the info queries work on it (-U), the reads of data fail on qemu's lock.
func TestForceShare(t *testing.T) {
	base, top := chain(t)
	ctx := context.Background()
	holder := exec.Command("qemu-io", "-f", "qcow2", "-c", "sleep 60000", top)
	stderr := execx.NewTail(4 << 10)
	holder.Stderr = stderr
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		holder.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		holder.Process.Kill()
		<-exited
	})
	// Nothing that locks may touch the image until the holder has it: a qemu-img without -U
	// in the way would make qemu-io fail to take its write lock.
	if err := waitWriteLock(top, exited); err != nil {
		t.Fatalf("%v: %v: %s", holder.Args, err, stderr)
	}
	if _, err := Map(ctx, top, "qcow2"); err == nil || !strings.Contains(err.Error(), `Failed to get shared "write" lock`) {
		t.Errorf("Map of an image held for writing: %v; want qemu's lock error", err)
	}
	if _, err := Info(ctx, top, "qcow2"); err != nil {
		t.Errorf("Info: %v", err)
	}
	if c, err := BackingChain(ctx, top, "qcow2"); err != nil || len(c) != 2 {
		t.Errorf("BackingChain = %+v, %v", c, err)
	}
	if _, err := Check(ctx, top, "qcow2"); err == nil {
		t.Error("Check of an image held for writing worked")
	}
	// The base under it is open read-only and shared: every call reads it.
	if _, err := Map(ctx, base, "raw"); err != nil {
		t.Errorf("Map of the base: %v", err)
	}
}

// waitWriteLock waits until a QEMU process holds path for writing, or exited is closed. QEMU
// locks byte 100+n of the file for permission bit n, and write is bit 1 (block/file-posix.c,
// raw_apply_lock_bytes); its OFD locks are listed in /proc/locks by device and inode number.
func waitWriteLock(path string, exited <-chan struct{}) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	ino := strconv.FormatUint(st.Sys().(*syscall.Stat_t).Ino, 10)
	deadline := time.After(20 * time.Second)
	for {
		locks, err := os.ReadFile("/proc/locks")
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(locks), "\n") {
			f := strings.Fields(line)
			if len(f) != 8 || !strings.HasSuffix(f[5], ":"+ino) {
				continue
			}
			start, _ := strconv.Atoi(f[6])
			end, err := strconv.Atoi(f[7])
			if f[7] == "EOF" || err == nil && start <= 101 && 101 <= end {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before it held %s for writing", path)
		case <-deadline:
			return fmt.Errorf("did not hold %s for writing within 20s", path)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestConvert(t *testing.T) {
	base, top := chain(t)
	ctx := context.Background()
	dir := t.TempDir()

	flat := filepath.Join(dir, "flat.qcow2")
	var reports []float64
	err := Convert(ctx, top, flat, ConvertOptions{InputFormat: "qcow2", Format: "qcow2", Compress: true,
		Options: []string{"compression_type=zstd"}, Progress: func(f float64) { reports = append(reports, f) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(reports) == 0 || reports[len(reports)-1] != 1 || !slices.IsSorted(reports) {
		t.Errorf("progress reports %v, want them rising to 1", reports)
	}
	info, err := Info(ctx, flat, "qcow2")
	if err != nil {
		t.Fatal(err)
	}
	if info.BackingFilename != "" || info.VirtualSize != 128<<20 || info.FormatSpecific == nil || info.FormatSpecific.Data.CompressionType != "zstd" {
		t.Errorf("flattened: %+v", info)
	}
	if n, err := Allocated(ctx, flat, "qcow2"); err != nil || n != 1<<20 {
		t.Errorf("flattened: Allocated = %d, %v; want 1 MiB", n, err)
	}

	// An overlay on the same base holds only what differs from it: nothing.
	layer := filepath.Join(dir, "layer.qcow2")
	if err := Convert(ctx, top, layer, ConvertOptions{InputFormat: "qcow2", Format: "qcow2", BackingFile: base, BackingFormat: "raw"}); err != nil {
		t.Fatal(err)
	}
	c, err := BackingChain(ctx, layer, "qcow2")
	if err != nil {
		t.Fatal(err)
	}
	if len(c) != 2 || c[1].Filename != base {
		t.Errorf("layer chain %+v, want it on %s", c, base)
	}
	ext, err := Map(ctx, layer, "qcow2")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ext {
		if e.Depth == 0 && e.Data {
			t.Errorf("the layer holds data the base has: %+v", e)
		}
	}

	// A failure names the command and carries qemu-img's message.
	err = Convert(ctx, filepath.Join(dir, "gone.qcow2"), filepath.Join(dir, "x.raw"), ConvertOptions{InputFormat: "qcow2", Format: "raw"})
	if err == nil || !strings.Contains(err.Error(), "qemu-img convert -f qcow2 -O raw") || !strings.Contains(err.Error(), "No such file") {
		t.Errorf("convert of a missing file: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := Convert(cancelled, top, filepath.Join(dir, "c.raw"), ConvertOptions{InputFormat: "qcow2", Format: "raw"}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled convert: %v", err)
	}
}

// TestCheckFindsProblems damages the refcounts of a qcow2, as testdata/capture.sh does, and
// checks that Check returns the counts and an error that carries qemu-img's list of problems.
func TestCheckFindsProblems(t *testing.T) {
	ctx := context.Background()
	clean := filepath.Join(t.TempDir(), "clean.qcow2")
	if err := Create(ctx, clean, "qcow2", 16<<20); err != nil {
		t.Fatal(err)
	}
	// 128 KiB of data, through qemu-img convert from a raw file.
	raw := filepath.Join(t.TempDir(), "data.raw")
	if err := os.WriteFile(raw, bytes.Repeat([]byte{0x5a}, 128<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Convert(ctx, raw, clean, ConvertOptions{InputFormat: "raw", Format: "qcow2"}); err != nil {
		t.Fatal(err)
	}
	used := usedClusters(t, clean)
	tests := []struct {
		name    string
		damage  func(path string)
		want    func(CheckResult) bool
		wantErr []string
	}{
		{"refcount 0 on a data cluster", func(p string) { setRefcount(t, p, used-1, 0) },
			func(r CheckResult) bool { return r.Corruptions > 0 && r.Leaks == 0 },
			[]string{"corruption", "refcount=0 reference=1", "exit status 2"}},
		{"a counted cluster no one uses", func(p string) {
			if err := os.Truncate(p, int64(used+1)<<16); err != nil {
				t.Fatal(err)
			}
			setRefcount(t, p, used, 1)
		},
			func(r CheckResult) bool { return r.Corruptions == 0 && r.Leaks == 1 },
			[]string{"1 leaked cluster", "Leaked cluster", "exit status 3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "img.qcow2")
			data, err := os.ReadFile(clean)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(img, data, 0o644); err != nil {
				t.Fatal(err)
			}
			tt.damage(img)
			r, err := Check(ctx, img, "qcow2")
			if !tt.want(r) || r.Clean() {
				t.Errorf("Check = %+v", r)
			}
			for _, w := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v does not mention %q", err, w)
				}
			}
		})
	}
}

// qcow2 header fields (docs/interop/qcow2.txt): cluster_bits at 20, refcount_table_offset at 48.
// The images here have 64 KiB clusters and 16-bit refcounts, and one refcount block.

func refcountBlock(t *testing.T, f *os.File) int64 {
	t.Helper()
	var b [8]byte
	if _, err := f.ReadAt(b[:], 48); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(b[:], int64(binary.BigEndian.Uint64(b[:]))); err != nil {
		t.Fatal(err)
	}
	return int64(binary.BigEndian.Uint64(b[:]))
}

// usedClusters is how many clusters from the start have a refcount.
func usedClusters(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	block := make([]byte, 64<<10)
	if _, err := f.ReadAt(block, refcountBlock(t, f)); err != nil {
		t.Fatal(err)
	}
	n := 0
	for n < len(block)/2 && binary.BigEndian.Uint16(block[2*n:]) != 0 {
		n++
	}
	return n
}

func setRefcount(t *testing.T, path string, cluster int, refcount uint16) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], refcount)
	if _, err := f.WriteAt(b[:], refcountBlock(t, f)+2*int64(cluster)); err != nil {
		t.Fatal(err)
	}
}

func TestConvertArgs(t *testing.T) {
	tests := []struct {
		o    ConvertOptions
		want string
	}{
		{ConvertOptions{InputFormat: "qcow2", Format: "raw"}, "convert -f qcow2 -O raw in out"},
		{ConvertOptions{InputFormat: "qcow2", Format: "qcow2", Compress: true, Options: []string{"compression_type=zstd"}, Progress: func(float64) {}},
			"convert -f qcow2 -O qcow2 -p -c -o compression_type=zstd in out"},
		{ConvertOptions{InputFormat: "raw", Format: "vmdk", Options: []string{"subformat=streamOptimized", "adapter_type=lsilogic"}},
			"convert -f raw -O vmdk -o subformat=streamOptimized,adapter_type=lsilogic in out"},
		{ConvertOptions{InputFormat: "qcow2", Format: "qcow2", BackingFile: "/s/base.qcow2", BackingFormat: "qcow2"},
			"convert -f qcow2 -O qcow2 -B /s/base.qcow2 -F qcow2 in out"},
	}
	for _, tt := range tests {
		args, err := convertArgs("in", "out", tt.o)
		if got := strings.Join(args, " "); err != nil || got != tt.want {
			t.Errorf("convertArgs(%+v) = %q, %v; want %q", tt.o, got, err, tt.want)
		}
	}
}

// TestPercentWriter feeds qemu-img -p output cut at every possible place.
func TestPercentWriter(t *testing.T) {
	out := []byte("    (0.00/100%)\r    (1.01/100%)\r    (50.00/100%)\r    (100.00/100%)\r\n")
	for cut := 0; cut <= len(out); cut++ {
		var got []float64
		w := &percentWriter{report: func(f float64) { got = append(got, f) }}
		w.Write(out[:cut])
		w.Write(out[cut:])
		if len(got) == 0 || got[len(got)-1] != 1 {
			t.Fatalf("cut at %d: reports %v, want to end at 1", cut, got)
		}
		if !slices.IsSorted(got) {
			t.Errorf("cut at %d: reports went back: %v", cut, got)
		}
	}
}
