package flash

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/ingot-build/ingot/internal/bmap"
)

// The tests below flash real images onto real loop devices: they need root, losetup, sgdisk,
// mkfs.ext4, e2fsck, zstd, xz and bmaptool (Makefile: APT_GUESTS and APT_TEST install them).

// imageSize is the size of the test image: a GPT disk with one ext4 partition of 60 MiB.
const imageSize = 64 << 20

// fixture is a raw disk image made by the tools a user's would be, and the files flash takes:
// NAME.raw (sparse), NAME.raw.zst, NAME.raw.xz, and NAME.raw.bmap from `bmaptool create`, so the
// bmap is a third party's, not ingot's own writer's.
type fixture struct {
	Dir, Raw, Zst, XZ, Bmap string
	SHA256                  string
	Map                     *bmap.Map
}

var (
	fixtureOnce sync.Once
	fixtureVal  fixture
	fixtureErr  error
	fixtureDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if fixtureDir != "" {
		os.RemoveAll(fixtureDir)
	}
	os.Exit(code)
}

func getFixture(t *testing.T) fixture {
	t.Helper()
	fixtureOnce.Do(func() { fixtureVal, fixtureErr = makeFixture() })
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	return fixtureVal
}

func makeFixture() (fixture, error) {
	dir, err := os.MkdirTemp("", "ingot-flash-test-")
	if err != nil {
		return fixture{}, err
	}
	fixtureDir = dir
	f := fixture{Dir: dir, Raw: filepath.Join(dir, "disk.raw")}
	f.Zst, f.XZ, f.Bmap = f.Raw+".zst", f.Raw+".xz", f.Raw+".bmap"
	content := filepath.Join(dir, "content")
	if err := os.MkdirAll(filepath.Join(content, "etc"), 0o755); err != nil {
		return f, err
	}
	// Random data (incompressible, so the zstd and xz outputs are not trivially small) and text.
	random := make([]byte, 6<<20)
	rand.Read(random)
	if err := os.WriteFile(filepath.Join(content, "random.bin"), random, 0o644); err != nil {
		return f, err
	}
	if err := os.WriteFile(filepath.Join(content, "etc/motd"), bytes.Repeat([]byte("flashed by ingot\n"), 1000), 0o644); err != nil {
		return f, err
	}
	fs := filepath.Join(dir, "part.ext4")
	steps := [][]string{
		{"truncate", "-s", fmt.Sprint(imageSize), f.Raw},
		{"sgdisk", "-n", "1:2048:+60M", "-t", "1:8300", "-c", "1:root", f.Raw},
		{"mkfs.ext4", "-q", "-F", "-L", "root", "-E", "lazy_itable_init=0,lazy_journal_init=0", "-d", content, fs, "60M"},
		{"dd", "if=" + fs, "of=" + f.Raw, "bs=1M", "seek=1", "conv=notrunc,sparse", "status=none"},
		{"bmaptool", "-q", "create", "-o", f.Bmap, f.Raw},
		{"zstd", "-q", "-T0", "-3", f.Raw, "-o", f.Zst},
		{"xz", "-T0", "-k", "-3", f.Raw},
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			return f, fmt.Errorf("%s: %v\n%s", strings.Join(s, " "), err, out)
		}
	}
	data, err := os.ReadFile(f.Bmap)
	if err != nil {
		return f, err
	}
	if f.Map, err = bmap.Parse(data); err != nil {
		return f, err
	}
	if f.SHA256, err = sha256File(f.Raw, imageSize); err != nil {
		return f, err
	}
	return f, os.Remove(fs)
}

// sha256File hashes the first n bytes of path.
func sha256File(path string, n int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, f, n); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// loopDevice attaches a loop device to a new sparse file of size bytes, filled first with
// pattern (a repeated byte) unless it is 0, with partition scanning; it is detached when the test
// ends.
func loopDevice(t *testing.T, size int64, pattern byte) (dev, backing string) {
	t.Helper()
	backing = filepath.Join(t.TempDir(), "card")
	f, err := os.Create(backing)
	if err != nil {
		t.Fatal(err)
	}
	if pattern != 0 {
		if _, err := f.Write(bytes.Repeat([]byte{pattern}, int(size))); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	dev = strings.TrimSpace(mustRun(t, "losetup", "-f", "--show", "-P", backing))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v\n%s", dev, err, out)
		}
	})
	return dev, backing
}

// TestFlashLoopDevice flashes the zstd image with bmaptool's bmap onto a loop device larger than
// the image, reads it back (Verify), and checks the result as a user would: the device's first
// bytes are the image (cmp), the kernel has dropped the old partition table (BLKRRPART), fsck
// finds the new partition's filesystem clean, and `bmaptool copy` of the same files writes the
// same bytes.
func TestFlashLoopDevice(t *testing.T) {
	fx := getFixture(t)
	dev, backing := loopDevice(t, 96<<20, 0)
	// An old partition table on the card, at another place than the image's partition, and the
	// kernel's partition device for it.
	mustRun(t, "sgdisk", "-n", "1:8192:+10M", backing)
	addPartitions(t, dev)
	stale := partStart(t, dev)
	if stale != "8192" {
		t.Fatalf("the old partition starts at sector %q, want 8192", stale)
	}
	var log bytes.Buffer
	p, err := Prepare(context.Background(), fx.Zst, dev, Options{Verify: true, Log: slogTo(&log)})
	if err != nil {
		t.Fatal(err)
	}
	if p.Image.BmapPath != fx.Bmap || p.Image.Compression != "zstd" || p.Image.Size != imageSize {
		t.Errorf("Prepare found %+v, want zstd of %d bytes with the bmap %s beside it", p.Image, imageSize, fx.Bmap)
	}
	if !p.Target.Block || p.Target.Size != 96<<20 || !strings.Contains(p.Target.Model, "loop device backed by") ||
		len(p.Target.Partitions) != 1 || p.Target.Partitions[0].Size != 10<<20 {
		t.Errorf("Prepare saw the target as %+v", p.Target)
	}
	t.Log(p.Target.Describe())
	res, err := p.Write(context.Background(), nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Logf("wrote %d of %d bytes in %v (%.1f MB/s), saved %v; %s", res.Written, res.ImageSize, res.Elapsed, res.Rate()/1e6, res.Saved(), log.String())
	if res.Written != fx.Map.MappedBytes() || !res.Verified || len(res.Warnings) != 0 {
		t.Errorf("result %+v, want %d bytes written (the bmap's), verified, no warnings", res, fx.Map.MappedBytes())
	}
	mustRun(t, "cmp", "-n", fmt.Sprint(imageSize), fx.Raw, dev)
	checkRanges(t, fx, dev)
	// BLKRRPART: the kernel no longer has the old partition. It has the new one where its
	// partition parsers read GPT, and none where they do not (this test's kernel has none), so
	// partx adds it from user space before fsck.
	if start := partStart(t, dev); start != "" && start != "2048" {
		t.Errorf("after the flash the kernel's partition 1 starts at sector %s; the image's starts at 2048 (the partition table was not re-read)", start)
	}
	addPartitions(t, dev)
	if start := partStart(t, dev); start != "2048" {
		t.Fatalf("partition 1 starts at sector %q, want 2048", start)
	}
	t.Log(strings.TrimSpace(mustRun(t, "e2fsck", "-f", "-n", dev+"p1")))
	// bmaptool writes the same bytes from the same files.
	theirs := filepath.Join(t.TempDir(), "bmaptool.img")
	mustRun(t, "bmaptool", "-q", "copy", "--bmap", fx.Bmap, fx.Zst, theirs)
	ours, err := sha256File(dev, imageSize)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := sha256File(theirs, imageSize); ours != want || ours != fx.SHA256 {
		t.Errorf("the device holds sha256 %s, bmaptool copy wrote %s, the image is %s", ours, want, fx.SHA256)
	}
}

// addPartitions makes the kernel's partition devices match dev's partition table, read by partx
// in user space (BLKPG): kernels built without partition parsers (this machine's has none)
// never create them from a scan.
func addPartitions(t *testing.T, dev string) {
	t.Helper()
	mustRun(t, "partx", "-u", dev)
	if _, err := os.Stat(dev + "p1"); err != nil {
		mustRun(t, "partx", "-a", dev)
	}
}

// partStart is the first sector of the kernel's partition 1 of dev, or "" when it has none.
func partStart(t *testing.T, dev string) string {
	t.Helper()
	name := filepath.Base(dev)
	b, err := os.ReadFile(filepath.Join("/sys/class/block", name, name+"p1", "start"))
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// checkRanges compares each mapped range of the target with the image's.
func checkRanges(t *testing.T, fx fixture, target string) {
	t.Helper()
	img, err := os.Open(fx.Raw)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	tg, err := os.Open(target)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	for i, r := range fx.Map.Ranges {
		off, n := fx.Map.Span(r)
		a, b := make([]byte, n), make([]byte, n)
		if _, err := img.ReadAt(a, off); err != nil {
			t.Fatal(err)
		}
		if _, err := tg.ReadAt(b, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("range %d (blocks %d-%d) differs on the target", i, r.First, r.Last)
		}
	}
}

// TestFlashFile flashes each form of the image into a regular file: raw, zstd and xz (with the
// xz tool and with ulikunitz/xz), with the bmap and without. Without one, zero blocks stay holes.
func TestFlashFile(t *testing.T) {
	fx := getFixture(t)
	tests := []struct {
		name, image string
		noBmap      bool
		goDecoders  bool
	}{
		{"raw with bmap", fx.Raw, false, false},
		{"zstd (tool) with bmap", fx.Zst, false, false},
		{"zstd (Go) with bmap", fx.Zst, false, true},
		{"xz (tool) with bmap", fx.XZ, false, false},
		{"xz (Go) with bmap", fx.XZ, false, true},
		{"raw without bmap", fx.Raw, true, false},
		{"zstd (tool) without bmap", fx.Zst, true, false},
		{"zstd (Go) without bmap", fx.Zst, true, true},
		{"xz (tool) without bmap", fx.XZ, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "sd.img")
			// An existing file with other contents: none of it may show through the image's holes.
			if err := os.WriteFile(target, bytes.Repeat([]byte{0xa5}, imageSize+4096), 0o644); err != nil {
				t.Fatal(err)
			}
			p, err := Prepare(context.Background(), tt.image, target, Options{NoBmap: tt.noBmap, Verify: true, goDecoders: tt.goDecoders})
			if err != nil {
				t.Fatal(err)
			}
			res, err := p.Write(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(target)
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() != imageSize {
				t.Errorf("the file is %d bytes, want the image's %d", st.Size(), imageSize)
			}
			if sum, _ := sha256File(target, imageSize); sum != fx.SHA256 {
				t.Errorf("the file has sha256 %s, the image %s", sum, fx.SHA256)
			}
			allocated := st.Sys().(*syscall.Stat_t).Blocks * 512
			if allocated > 2*fx.Map.MappedBytes() || res.Written > res.ImageSize/2 {
				t.Errorf("%d bytes written, %d allocated, of a %d-byte image with %d mapped: zeros were written", res.Written, allocated, imageSize, fx.Map.MappedBytes())
			}
			if !res.Verified || res.ImageSize != imageSize {
				t.Errorf("result %+v", res)
			}
		})
	}
}

// targetSum is the sha256 of a whole loop device's backing file, to prove nothing was written.
func targetSum(t *testing.T, path string) string {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := sha256File(path, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// TestRefusals are the three refusals, on real loop devices: a device with a mounted
// partition, a device smaller than the image, a --bmap that is not there. Each is ErrRefused with
// a message that says why, and the device's bytes are what they were.
func TestRefusals(t *testing.T) {
	fx := getFixture(t)

	mountedDev, mountedBacking := loopDevice(t, 96<<20, 0)
	mustRun(t, "dd", "if="+fx.Raw, "of="+mountedDev, "bs=1M", "conv=fsync", "status=none")
	addPartitions(t, mountedDev)
	mnt := t.TempDir()
	// Read-only, without replaying the journal: a mounted filesystem that writes nothing, so that
	// the device's bytes before and after the refusal can be compared.
	mustRun(t, "mount", "-o", "ro,noload", mountedDev+"p1", mnt)
	t.Cleanup(func() { mustRun(t, "umount", mnt) })

	smallDev, smallBacking := loopDevice(t, 32<<20, 0x5a)
	plainDev, plainBacking := loopDevice(t, 96<<20, 0x5a)

	tests := []struct {
		name, dev, backing string
		opts               Options
		want               string
	}{
		{"a mounted partition", mountedDev, mountedBacking, Options{}, filepath.Base(mountedDev) + "p1 is mounted on " + mnt},
		{"too small", smallDev, smallBacking, Options{}, "is 32.0 MiB (33554432 bytes), smaller than the image's 64.0 MiB (67108864 bytes)"},
		{"a missing --bmap", plainDev, plainBacking, Options{Bmap: filepath.Join(fx.Dir, "missing.bmap")}, "read the bmap: open " + filepath.Join(fx.Dir, "missing.bmap") + ": no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := targetSum(t, tt.backing)
			p, err := Prepare(context.Background(), fx.Zst, tt.dev, tt.opts)
			if err == nil {
				_, err = p.Write(context.Background(), nil)
				t.Errorf("Prepare did not refuse; Write: %v", err)
			}
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrRefused saying %q", err, tt.want)
			}
			if after := targetSum(t, tt.backing); after != before {
				t.Errorf("the target changed: sha256 %s before, %s after", before, after)
			}
		})
	}
}

// TestWriteRechecks mounts a partition of the target between Prepare and Write: Write refuses it
// (the exclusive open, then the same checks as Prepare's) and writes nothing.
func TestWriteRechecks(t *testing.T) {
	fx := getFixture(t)
	dev, backing := loopDevice(t, 96<<20, 0)
	mustRun(t, "dd", "if="+fx.Raw, "of="+dev, "bs=1M", "conv=fsync", "status=none")
	addPartitions(t, dev)
	p, err := Prepare(context.Background(), fx.Zst, dev, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	mustRun(t, "mount", "-o", "ro,noload", dev+"p1", mnt)
	t.Cleanup(func() { mustRun(t, "umount", mnt) })
	before := targetSum(t, backing)
	_, err = p.Write(context.Background(), nil)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "p1 is mounted on "+mnt) {
		t.Errorf("Write onto a device mounted since Prepare: %v, want ErrRefused naming the mount", err)
	}
	t.Log(err)
	if after := targetSum(t, backing); after != before {
		t.Errorf("the target changed")
	}
}

// TestChecksumMismatchStops flashes with a bmap whose second range's checksum is wrong (the file's
// own checksum redone, as a tampered or mismatched bmap would be): the flash fails with
// ErrChecksum at that range, and nothing after it is written.
func TestChecksumMismatchStops(t *testing.T) {
	fx := getFixture(t)
	if len(fx.Map.Ranges) < 3 {
		t.Fatalf("the fixture's bmap has %d ranges, want at least 3", len(fx.Map.Ranges))
	}
	ranges := append([]bmap.Range(nil), fx.Map.Ranges...)
	ranges[1].SHA256 = strings.Repeat("0", 64)
	bad := filepath.Join(t.TempDir(), "bad.bmap")
	if fx.Map.BlockSize != bmap.BlockSize {
		t.Fatalf("bmaptool chose blocks of %d; this test renders blocks of %d", fx.Map.BlockSize, bmap.BlockSize)
	}
	if err := os.WriteFile(bad, bmap.Render(fx.Map.ImageSize, ranges), 0o644); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "sd.img")
	if err := os.WriteFile(target, nil, 0o644); err != nil { // a file that was there is kept
		t.Fatal(err)
	}
	p, err := Prepare(context.Background(), fx.Zst, target, Options{Bmap: bad})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Write(context.Background(), nil)
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "bmap range 1 ") {
		t.Fatalf("err = %v, want ErrChecksum in range 1", err)
	}
	t.Log(err)
	f, err := os.Open(target)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	last := ranges[len(ranges)-1]
	off, n := fx.Map.Span(last)
	got := make([]byte, n)
	if _, err := f.ReadAt(got, off); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if !bytes.Equal(got, make([]byte, n)) {
		t.Errorf("the last range (blocks %d-%d) was written after the mismatch", last.First, last.Last)
	}
}

// TestWrongBmap flashes with the bmap of another image: refused before writing for a raw image
// (sizes differ), and an error rather than a silent success for a compressed one.
func TestWrongBmap(t *testing.T) {
	fx := getFixture(t)
	other := filepath.Join(t.TempDir(), "other.bmap")
	if err := os.WriteFile(other, bmap.Render(32<<20, fx.Map.Ranges[:1]), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Prepare(context.Background(), fx.Raw, filepath.Join(t.TempDir(), "x"), Options{Bmap: other})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "another image's bmap") {
		t.Errorf("raw image, other bmap: %v", err)
	}
	target := filepath.Join(t.TempDir(), "x")
	p, err := Prepare(context.Background(), fx.Zst, target, Options{Bmap: other})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("zstd image, other bmap: %v, want it found longer than the bmap says", err)
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the file the failed flash created is still there: %v", err)
	}
}

// TestVerifyCatchesCorruption reads back extents of a file one of which was changed after it was
// written.
func TestVerifyCatchesCorruption(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t")
	data := make([]byte, 3*chunkSize+100)
	rand.Read(data)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	exts := []extent{{0, 4096, sum(data[:4096])}, {8192, int64(len(data) - 8192), sum(data[8192:])}}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := verifyExtents(context.Background(), f, exts, newSHA256, nopTracker{}); err != nil {
		t.Fatalf("intact: %v", err)
	}
	if _, err := f.WriteAt([]byte{data[2*chunkSize] ^ 1}, 2*chunkSize); err != nil {
		t.Fatal(err)
	}
	err = verifyExtents(context.Background(), f, exts, newSHA256, nopTracker{})
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "bytes 8192-") {
		t.Errorf("corrupted: %v, want ErrChecksum for the second extent", err)
	}
}

func TestRefusesOddTargets(t *testing.T) {
	fx := getFixture(t)
	tests := []struct{ name, target, want string }{
		{"a character device", "/dev/null", "neither a block device nor a regular file"},
		{"a directory", t.TempDir(), "neither a block device nor a regular file"},
		{"the image itself", fx.Raw, "is the image itself"},
		{"no such directory", "/nonexistent/dir/sd.img", "no directory to create it in"},
	}
	for _, tt := range tests {
		_, err := Prepare(context.Background(), fx.Raw, tt.target, Options{NoBmap: true})
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want ErrRefused saying %q", tt.name, err, tt.want)
		}
	}
}
