package disk

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ingot-build/ingot/internal/qemuimg"
)

// TestProduce makes every output from the qcow2 overlay of the test disk and checks each file:
// the names Files announces and nothing else in the directory, the sha256 and size it reports,
// qemu-img check, and that its content is the disk's (qemu-img compare, or decompressing).
func TestProduce(t *testing.T) {
	d := fixture(t, "gpt")
	tests := []struct {
		spec OutputSpec
		// formats of the artifacts, in order
		formats []string
	}{
		{OutputSpec{Format: "qcow2"}, []string{"qcow2"}},
		{OutputSpec{Format: "qcow2", Compress: "zlib"}, []string{"qcow2"}},
		{OutputSpec{Format: "qcow2", Compress: "zstd"}, []string{"qcow2"}},
		{OutputSpec{Format: "vmdk"}, []string{"vmdk"}},
		{OutputSpec{Format: "vmdk", Subformat: "monolithicSparse"}, []string{"vmdk"}},
		{OutputSpec{Format: "vhdx"}, []string{"vhdx"}},
		{OutputSpec{Format: "raw"}, []string{"raw"}},
		{OutputSpec{Format: "raw", Bmap: true}, []string{"raw", "bmap"}},
		{OutputSpec{Format: "raw", Compress: "zstd", Bmap: true}, []string{"raw.zst", "bmap"}},
		{OutputSpec{Format: "raw", Compress: "xz"}, []string{"raw.xz"}},
		{OutputSpec{Format: "ova", CPUs: 2, MemoryMiB: 2048, Firmware: "uefi"}, []string{"ova"}},
	}
	for _, tt := range tests {
		tt.spec.Name = "img"
		name := strings.Join(append([]string{tt.spec.Format}, nonEmpty(tt.spec.Compress, tt.spec.Subformat)...), "-")
		if tt.spec.Bmap {
			name += "-bmap"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			var calls, last, total int64
			arts, err := Produce(context.Background(), d.Qcow2, "", tt.spec, dir, func(done, tot int64) {
				calls++
				if done < last {
					t.Errorf("progress went back from %d to %d", last, done)
				}
				if total != 0 && tot != total {
					t.Errorf("total changed from %d to %d", total, tot)
				}
				last, total = done, tot
			})
			if err != nil {
				t.Fatal(err)
			}
			if calls < 2 || last != total || total <= 0 {
				t.Errorf("progress: %d calls, ended at %d of %d", calls, last, total)
			}

			var gotFormats, gotNames []string
			for _, a := range arts {
				gotFormats = append(gotFormats, a.Format)
				gotNames = append(gotNames, filepath.Base(a.Path))
				if filepath.Dir(a.Path) != dir {
					t.Errorf("%s is not in %s", a.Path, dir)
				}
				st, err := os.Stat(a.Path)
				if err != nil {
					t.Fatal(err)
				}
				if st.Size() != a.Size || a.Size <= 0 {
					t.Errorf("%s: size %d, artifact says %d", a.Path, st.Size(), a.Size)
				}
				if sum, _ := sha256File(a.Path); sum != a.SHA256 {
					t.Errorf("%s: sha256 %s, artifact says %s", a.Path, sum, a.SHA256)
				}
			}
			if !slices.Equal(gotFormats, tt.formats) {
				t.Errorf("formats %v, want %v", gotFormats, tt.formats)
			}
			if files := tt.spec.Files(); !slices.Equal(gotNames, files) {
				t.Errorf("files %v, Files() says %v", gotNames, files)
			}
			if names := dirNames(t, dir); !slices.Equal(names, slices.Sorted(slices.Values(gotNames))) {
				t.Errorf("dir holds %v, want only %v", names, gotNames)
			}
			checkContent(t, d, arts[0], tt.spec)
		})
	}
}

// checkContent checks that an output holds the test disk.
func checkContent(t *testing.T, d *testDisk, a Artifact, spec OutputSpec) {
	t.Helper()
	switch a.Format {
	case "qcow2", "vmdk", "vhdx":
		mustRun(t, "qemu-img", "check", "-f", a.Format, a.Path)
		mustRun(t, "qemu-img", "compare", "-q", "-f", a.Format, "-F", "raw", a.Path, d.Raw)
		info, err := qemuimg.Info(context.Background(), a.Path, a.Format)
		if err != nil {
			t.Fatal(err)
		}
		if info.BackingFilename != "" {
			t.Errorf("%s has a backing file %s", a.Path, info.BackingFilename)
		}
		if a.Format == "qcow2" && spec.Compress != "none" && spec.Compress != "" {
			if fs := info.FormatSpecific; fs == nil || fs.Data.CompressionType != spec.Compress {
				t.Errorf("%s: want compression type %s: %+v", a.Path, spec.Compress, fs)
			}
		}
		if a.Format == "vmdk" {
			desc := mustRun(t, "sh", "-c", "head -c 4096 "+a.Path+" | strings")
			for _, want := range []string{`createType="` + spec.Subformat + `"`, `ddb.adapterType = "lsilogic"`, `ddb.virtualHWVersion = "10"`} {
				if spec.Subformat == "" {
					want = strings.Replace(want, `createType=""`, `createType="streamOptimized"`, 1)
				}
				if !strings.Contains(desc, want) {
					t.Errorf("%s: descriptor lacks %s:\n%s", a.Path, want, desc)
				}
			}
		}
	case "raw":
		if a.SHA256 != d.SHA256 {
			t.Errorf("raw sha256 %s, the disk's is %s", a.SHA256, d.SHA256)
		}
		alloc, err := allocatedBytes(a.Path)
		if err != nil {
			t.Fatal(err)
		}
		if alloc >= a.Size/2 {
			t.Errorf("raw output allocates %d of its %d bytes: not sparse", alloc, a.Size)
		}
	case "raw.zst", "raw.xz":
		tool := map[string]string{"raw.zst": "zstd", "raw.xz": "xz"}[a.Format]
		out := mustRun(t, "sh", "-c", tool+" -dc "+a.Path+" | sha256sum")
		if got, _, _ := strings.Cut(out, " "); got != d.SHA256 {
			t.Errorf("%s decompresses to sha256 %s, the disk's is %s", a.Path, got, d.SHA256)
		}
	case "ova":
		checkOVA(t, d, a, spec)
	}
}

// TestProduceErrors checks that a bad spec or a failing tool gives an error that says what went
// wrong, and leaves nothing in the output directory.
func TestProduceErrors(t *testing.T) {
	d := fixture(t, "gpt")
	real, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Fatal(err)
	}
	// A qemu-img that misbehaves as FAKE_QEMU_IMG says and otherwise is the real one.
	fake := t.TempDir()
	script := `#!/bin/sh
case "$FAKE_QEMU_IMG:$1" in
check-fails:check) echo '{"check-errors": 0, "corruptions": 1, "filename": "x", "format": "qcow2"}'
	echo "ERROR cluster 42 refcount=0 reference=1" >&2; exit 2 ;;
empty:convert) for last; do :; done; : > "$last"; exit 0 ;;
esac
exec ` + real + ` "$@"
`
	if err := os.WriteFile(filepath.Join(fake, "qemu-img"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	tests := []struct {
		name    string
		spec    OutputSpec
		fake    string
		ctx     context.Context
		src     string
		want    []string // in the error
		unsupp  bool     // errors.Is(err, ErrUnsupported)
		notSpec bool
	}{
		{name: "bmap on qcow2", spec: OutputSpec{Format: "qcow2", Bmap: true}, want: []string{"bmap", "raw"}, unsupp: true},
		{name: "xz on qcow2", spec: OutputSpec{Format: "qcow2", Compress: "xz"}, want: []string{`compress "xz"`, "zlib, zstd"}, unsupp: true},
		{name: "zlib on raw", spec: OutputSpec{Format: "raw", Compress: "zlib"}, want: []string{`compress "zlib"`}, unsupp: true},
		{name: "compressed vhdx", spec: OutputSpec{Format: "vhdx", Compress: "zstd"}, want: []string{"not compressed"}, unsupp: true},
		{name: "shrink qcow2", spec: OutputSpec{Format: "qcow2", Shrink: "minimal"}, want: []string{"shrink"}, unsupp: true},
		{name: "subformat raw", spec: OutputSpec{Format: "raw", Subformat: "streamOptimized"}, want: []string{"only vmdk"}, unsupp: true},
		{name: "bad vmdk subformat", spec: OutputSpec{Format: "vmdk", Subformat: "twoGbMaxExtentFlat"}, want: []string{"twoGbMaxExtentFlat"}, unsupp: true},
		{name: "unknown format", spec: OutputSpec{Format: "vdi"}, want: []string{`format "vdi"`}, unsupp: true},
		{name: "bad name", spec: OutputSpec{Name: "a/b", Format: "raw"}, want: []string{"plain file name"}, unsupp: true},
		{name: "check fails", spec: OutputSpec{Format: "qcow2"}, fake: "check-fails", want: []string{"qemu-img check", "1 corruption", "refcount=0"}},
		{name: "empty raw", spec: OutputSpec{Format: "raw"}, fake: "empty", want: []string{"empty raw image"}},
		{name: "empty vhdx", spec: OutputSpec{Format: "vhdx"}, fake: "empty", want: []string{"qemu-img check"}},
		{name: "cancelled", spec: OutputSpec{Format: "raw", Compress: "zstd"}, ctx: cancelled, want: []string{"context canceled"}},
		{name: "missing source", spec: OutputSpec{Format: "qcow2"}, src: "/nonexistent.qcow2", want: []string{"/nonexistent.qcow2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.fake != "" {
				t.Setenv("PATH", fake+string(os.PathListSeparator)+os.Getenv("PATH"))
				t.Setenv("FAKE_QEMU_IMG", tt.fake)
			}
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			src := tt.src
			if src == "" {
				src = d.Qcow2
			}
			if tt.spec.Name == "" {
				tt.spec.Name = "img"
			}
			dir := t.TempDir()
			arts, err := Produce(ctx, src, "", tt.spec, dir, nil)
			if err == nil {
				t.Fatalf("no error; made %v", arts)
			}
			t.Logf("error: %v", err)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if tt.unsupp != errors.Is(err, ErrUnsupported) {
				t.Errorf("errors.Is(err, ErrUnsupported) = %v, want %v: %v", !tt.unsupp, tt.unsupp, err)
			}
			if names := dirNames(t, dir); len(names) > 0 {
				t.Errorf("dir holds %v after the error", names)
			}
		})
	}
}

func TestValidateAndFiles(t *testing.T) {
	tests := []struct {
		spec  OutputSpec
		files []string
	}{
		{OutputSpec{Name: "a", Format: "qcow2", Compress: "zstd"}, []string{"a.qcow2"}},
		{OutputSpec{Name: "a", Format: "vmdk"}, []string{"a.vmdk"}},
		{OutputSpec{Name: "a", Format: "vhdx", Compress: "none"}, []string{"a.vhdx"}},
		{OutputSpec{Name: "a", Format: "raw", Shrink: "minimal"}, []string{"a-minimal.raw"}},
		{OutputSpec{Name: "a", Format: "raw", Compress: "zstd", Shrink: "minimal", Bmap: true}, []string{"a-minimal.raw.zst", "a-minimal.raw.bmap"}},
		{OutputSpec{Name: "a", Format: "raw", Bmap: true}, []string{"a.raw", "a.raw.bmap"}},
		{OutputSpec{Name: "a", Format: "raw", Compress: "zstd", Bmap: true}, []string{"a.raw.zst", "a.raw.bmap"}},
		{OutputSpec{Name: "a", Format: "raw", Compress: "xz"}, []string{"a.raw.xz"}},
		{OutputSpec{Name: "a", Format: "ova", Firmware: "uefi", DiskBus: "sata"}, []string{"a.ova"}},
	}
	for _, tt := range tests {
		if err := tt.spec.Validate(); err != nil {
			t.Errorf("%+v: %v", tt.spec, err)
		}
		if got := tt.spec.Files(); !slices.Equal(got, tt.files) {
			t.Errorf("%+v: Files() = %v, want %v", tt.spec, got, tt.files)
		}
	}
}

// TestProduceAll makes several outputs at once, and checks that a failing one takes the others
// with it and that clashing names are refused before any work.
func TestProduceAll(t *testing.T) {
	d := fixture(t, "gpt")
	ctx := context.Background()
	dir := t.TempDir()
	specs := []OutputSpec{
		{Name: "a", Format: "qcow2", Compress: "zstd"},
		{Name: "a", Format: "raw", Compress: "zstd", Bmap: true},
		{Name: "a", Format: "ova"},
	}
	arts, err := ProduceAll(ctx, d.Qcow2, "", specs, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range arts {
		names = append(names, filepath.Base(a.Path))
	}
	if want := []string{"a.qcow2", "a.raw.zst", "a.raw.bmap", "a.ova"}; !slices.Equal(names, want) {
		t.Errorf("artifacts %v, want %v", names, want)
	}

	_, err = ProduceAll(ctx, d.Qcow2, "", []OutputSpec{{Name: "a", Format: "raw", Bmap: true}, {Name: "a", Format: "raw", Compress: "xz", Bmap: true}}, t.TempDir(), nil)
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "a.raw.bmap") {
		t.Errorf("clashing bmaps: err = %v", err)
	}

	// A disk whose last partition is FAT cannot be shrunk: the qcow2 made beside it goes too.
	fat := filepath.Join(t.TempDir(), "fat.raw")
	mustRun(t, "truncate", "-s", "40M", fat)
	mustRun(t, "sgdisk", "-n1:2048:0", "-t1:ef00", fat)
	mustRun(t, "mkfs.fat", "--offset", "2048", fat, "38000")
	dir = t.TempDir()
	_, err = ProduceAll(ctx, fat, "", []OutputSpec{{Name: "f", Format: "qcow2"}, {Name: "f", Format: "raw", Shrink: "minimal"}}, dir, nil)
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "vfat") {
		t.Errorf("err = %v, want the shrink's ErrUnsupported", err)
	}
	if names := dirNames(t, dir); len(names) > 0 {
		t.Errorf("dir holds %v after the error", names)
	}
}

func TestMeter(t *testing.T) {
	var got [][2]int64
	m := newMeter(func(d, tot int64) { got = append(got, [2]int64{d, tot}) }, 100, 50)
	a := m.next()
	a(0.5)
	a(0.25) // going back is not reported
	a(2)    // clamped to the stage
	b := m.nextBytes()
	b(10, 20)
	m.finish()
	want := [][2]int64{{0, 150}, {50, 150}, {100, 150}, {125, 150}, {150, 150}}
	if len(got) != len(want) {
		t.Fatalf("reports %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("reports %v, want %v", got, want)
		}
	}
}
