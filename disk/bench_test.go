package disk

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ulikunitz/xz"

	"github.com/ingot-build/ingot/internal/qemuimg"
)

// The benchmarks compare Produce with the real alternative, run on the same input in the same
// process: a bare qemu-img convert (plus the CLI tools a person would chain for compressed raw,
// bmap and OVA). The input is a 4 GiB qcow2 disk with about 1 GiB of data, a quarter random
// (incompressible) and the rest text-like (about 3:1), built once per run in a temp dir:
//
//	go test ./disk -run '^$' -bench . -benchtime 1x
//
// Metrics: produce-s and bare-s (wall seconds, the fastest of up to three alternating runs),
// produce-cpu-s and bare-cpu-s (CPU seconds, all processes; steadier on a busy machine), ratio
// (produce/bare; the goal is ≤ 1.1), size/data (output bytes over the disk's allocated data; for
// a plain raw image, its allocated bytes).

var (
	benchOnce sync.Once
	benchSrc  string
	benchErr  error
)

func benchDisk(b *testing.B) string {
	b.Helper()
	// Kept in the temp dir across runs (it takes a minute to build); the name says its version.
	benchOnce.Do(func() { benchSrc, benchErr = buildBenchDisk(filepath.Join(os.TempDir(), "ingot-disk-bench-v1")) })
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchSrc
}

func buildBenchDisk(dir string) (string, error) {
	const size = 4 << 30
	qcow2 := filepath.Join(dir, "disk.qcow2")
	if _, err := os.Stat(filepath.Join(dir, "complete")); err == nil {
		return qcow2, nil
	}
	os.RemoveAll(dir)
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	r := rand.New(rand.NewSource(2))
	for i := 0; i < 64; i++ { // 64 files of 16 MiB: 16 random, 48 text
		data := textBytes(r, 16<<20)
		if i%4 == 0 {
			data = randomBytes(r, 16<<20)
		}
		if err := os.WriteFile(filepath.Join(root, fmt.Sprintf("f%02d", i)), data, 0o644); err != nil {
			return "", err
		}
	}
	raw := filepath.Join(dir, "disk.raw")
	steps := [][]string{
		{"truncate", "-s", fmt.Sprint(size), raw},
		{"sgdisk", "-n1:2048:+1M", "-t1:ef02", "-n2:0:+64M", "-t2:ef00", "-n3:0:0", "-t3:8304", raw},
		{"mkfs.fat", "-F", "16", "--offset", "4096", raw, fmt.Sprint(64 << 10)},
		{"mkfs.ext4", "-q", "-d", root, "-E", fmt.Sprintf("offset=%d", 135168*512), raw, fmt.Sprintf("%dk", (size-135168*512-1<<20)/1024)},
		{"qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow2},
		{"touch", filepath.Join(dir, "complete")},
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			return "", fmt.Errorf("%s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	os.Remove(raw)
	os.RemoveAll(root)
	return qcow2, nil
}

type benchCase struct {
	name string
	spec OutputSpec
	// bare does the same conversion with the tools alone, into dir.
	bare [][]string
}

func benchCases(src string) []benchCase {
	qi := func(args ...string) []string { return append([]string{"qemu-img", "convert"}, append(args, src)...) }
	return []benchCase{
		{"qcow2", OutputSpec{Format: "qcow2"}, [][]string{qi("-O", "qcow2"), {"out.qcow2"}}},
		{"qcow2-zstd", OutputSpec{Format: "qcow2", Compress: "zstd"}, [][]string{qi("-O", "qcow2", "-c", "-o", "compression_type=zstd"), {"out.qcow2"}}},
		{"qcow2-zlib", OutputSpec{Format: "qcow2", Compress: "zlib"}, [][]string{qi("-O", "qcow2", "-c"), {"out.qcow2"}}},
		{"vmdk-stream", OutputSpec{Format: "vmdk"}, [][]string{qi("-O", "vmdk", "-o", "subformat=streamOptimized"), {"out.vmdk"}}},
		{"vmdk-sparse", OutputSpec{Format: "vmdk", Subformat: "monolithicSparse"}, [][]string{qi("-O", "vmdk"), {"out.vmdk"}}},
		{"vhdx", OutputSpec{Format: "vhdx"}, [][]string{qi("-O", "vhdx", "-o", "subformat=dynamic"), {"out.vhdx"}}},
		{"raw", OutputSpec{Format: "raw"}, [][]string{qi("-O", "raw"), {"out.raw"}}},
		{"raw+sha256sum", OutputSpec{Format: "raw"}, [][]string{qi("-O", "raw"), {"out.raw"}, {"sha256sum", "out.raw"}}},
		{"raw-bmap", OutputSpec{Format: "raw", Bmap: true}, [][]string{qi("-O", "raw"), {"out.raw"}, {"bmaptool", "create", "-o", "out.bmap", "out.raw"}}},
		{"raw-zstd-bmap", OutputSpec{Format: "raw", Compress: "zstd", Bmap: true}, [][]string{qi("-O", "raw"), {"out.raw"},
			{"bmaptool", "create", "-o", "out.bmap", "out.raw"}, {"zstd", "-q", "-T0", "--sparse", "out.raw", "-o", "out.raw.zst"}}},
		{"ova", OutputSpec{Format: "ova"}, [][]string{qi("-O", "vmdk", "-o", "subformat=streamOptimized"), {"out.vmdk"}, {"tar", "-cf", "out.ova", "out.vmdk"}}},
	}
}

// runBare runs a case's bare commands in dir, returning the CPU time they took; the first command
// gets its output path appended from the second entry.
func runBare(b *testing.B, dir string, steps [][]string) time.Duration {
	b.Helper()
	cmds := [][]string{append(append([]string{}, steps[0]...), steps[1][0])}
	cmds = append(cmds, steps[2:]...)
	var cpu time.Duration
	for _, c := range cmds {
		cmd := exec.Command(c[0], c[1:]...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%s: %v: %s", strings.Join(c, " "), err, out)
		}
		cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	return cpu
}

// cpuTime is the CPU time this process and its waited-for children have used.
func cpuTime() time.Duration {
	var self, children syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(children.Utime) + tv(children.Stime)
}

// warm reads the source into the page cache and writes back what earlier runs left dirty, so
// that every run starts from the same state.
func warm(b *testing.B, path string) {
	syscall.Sync()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, f)
	f.Close()
}

func BenchmarkProduce(b *testing.B) {
	src := benchDisk(b)
	ctx := context.Background()
	data, err := qemuimg.Allocated(ctx, src, "qcow2")
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range benchCases(src) {
		b.Run(c.name, func(b *testing.B) {
			// The machine is shared and noisy: each iteration runs the pair alternately, three
			// times when it is quick, and keeps the fastest of each.
			var bare, prod, bareCPU, prodCPU time.Duration
			var size int64
			keep := func(best *time.Duration, d time.Duration) {
				if *best == 0 || d < *best {
					*best = d
				}
			}
			for i := 0; i < b.N; i++ {
				for rep := 0; rep < 3; rep++ {
					warm(b, src)
					dir := b.TempDir()
					start := time.Now()
					keep(&bareCPU, runBare(b, dir, c.bare))
					keep(&bare, time.Since(start))
					os.RemoveAll(dir)

					warm(b, src)
					dir = b.TempDir()
					spec := c.spec
					spec.Name = "out"
					start, cpu0 := time.Now(), cpuTime()
					arts, err := Produce(ctx, src, "", spec, dir, nil)
					d := time.Since(start)
					if err != nil {
						b.Fatal(err)
					}
					keep(&prod, d)
					keep(&prodCPU, cpuTime()-cpu0)
					size = arts[0].Size
					if spec.Format == "raw" && (spec.Compress == "" || spec.Compress == "none") { // a sparse file: count what it allocates
						size, _ = allocatedBytes(arts[0].Path)
					}
					os.RemoveAll(dir)
					if d > 15*time.Second {
						break
					}
				}
			}
			b.ReportMetric(prod.Seconds(), "produce-s")
			b.ReportMetric(bare.Seconds(), "bare-s")
			b.ReportMetric(prod.Seconds()/bare.Seconds(), "ratio")
			b.ReportMetric(prodCPU.Seconds(), "produce-cpu-s")
			b.ReportMetric(bareCPU.Seconds(), "bare-cpu-s")
			b.ReportMetric(float64(size)/float64(data), "size/data")
		})
	}
}

// BenchmarkProduceAll makes one build's usual outputs together (ProduceAll) and one by one, and
// compares the together time with the slowest single one and with the sum.
func BenchmarkProduceAll(b *testing.B) {
	src := benchDisk(b)
	ctx := context.Background()
	specs := []OutputSpec{
		{Name: "out", Format: "qcow2", Compress: "zstd"},
		{Name: "out", Format: "vmdk"},
		{Name: "out", Format: "vhdx"},
		{Name: "out", Format: "raw", Compress: "zstd", Bmap: true},
		{Name: "out", Format: "ova"},
	}
	for i := 0; i < b.N; i++ {
		var slowest, sum time.Duration
		for _, s := range specs {
			warm(b, src)
			dir := b.TempDir()
			start := time.Now()
			if _, err := Produce(ctx, src, "", s, dir, nil); err != nil {
				b.Fatal(err)
			}
			d := time.Since(start)
			sum += d
			slowest = max(slowest, d)
			b.Logf("%s alone: %.1fs", s.Files()[0], d.Seconds())
			os.RemoveAll(dir)
		}
		warm(b, src)
		dir := b.TempDir()
		start := time.Now()
		if _, err := ProduceAll(ctx, src, "", specs, dir, nil); err != nil {
			b.Fatal(err)
		}
		all := time.Since(start)
		os.RemoveAll(dir)
		b.ReportMetric(all.Seconds(), "together-s")
		b.ReportMetric(slowest.Seconds(), "slowest-s")
		b.ReportMetric(sum.Seconds(), "sum-s")
		b.ReportMetric(all.Seconds()/slowest.Seconds(), "together/slowest")
	}
}

// BenchmarkXZ measures xz compression speed on 64 MiB of the benchmark's kind of data (a quarter
// random, the rest text) and on 64 MiB of zeros: ulikunitz/xz (what Produce uses) against
// `xz -T0 -6` and, for scale, Produce's zstd.
func BenchmarkXZ(b *testing.B) {
	r := rand.New(rand.NewSource(3))
	var mixed bytes.Buffer
	for i := 0; i < 16; i++ {
		if i%4 == 0 {
			mixed.Write(randomBytes(r, 4<<20))
		} else {
			mixed.Write(textBytes(r, 4<<20))
		}
	}
	inputs := map[string][]byte{"mixed": mixed.Bytes(), "zeros": make([]byte, 64<<20)}
	for _, in := range []string{"mixed", "zeros"} {
		data := inputs[in]
		path := filepath.Join(b.TempDir(), in)
		os.WriteFile(path, data, 0o644)
		compressors := []struct {
			name string
			run  func() (int64, error)
		}{
			{"ulikunitz-xz", func() (int64, error) {
				var cw countWriter
				w, err := xz.WriterConfig{CheckSum: xz.CRC64}.NewWriter(&cw)
				if err != nil {
					return 0, err
				}
				if _, err := w.Write(data); err != nil {
					return 0, err
				}
				return cw.n, w.Close()
			}},
			{"xz-T0-cli", func() (int64, error) {
				out, err := exec.Command("xz", "-T0", "-6", "-c", path).Output()
				return int64(len(out)), err
			}},
			{"zstd-go", func() (int64, error) {
				var cw countWriter
				s, err := newZstdSink(&cw)
				if err != nil {
					return 0, err
				}
				if err := s.data(data); err != nil {
					return 0, err
				}
				return cw.n, s.Close()
			}},
		}
		for _, c := range compressors {
			b.Run(in+"/"+c.name, func(b *testing.B) {
				var out int64
				for i := 0; i < b.N; i++ {
					n, err := c.run()
					if err != nil {
						b.Fatal(err)
					}
					out = n
				}
				b.SetBytes(int64(len(data)))
				b.ReportMetric(float64(out)/float64(len(data)), "out/in")
				b.ReportMetric(float64(runtime.GOMAXPROCS(0)), "cores")
			})
		}
	}
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }
