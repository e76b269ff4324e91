package disk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The tests share fixtures built once per test binary in one temp dir, removed by TestMain.
var (
	sharedDir  string
	fixtureMu  sync.Mutex
	testDisks  = map[string]*testDisk{}
	testErrors = map[string]error{}
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ingot-disk-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sharedDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testDisk is a small disk laid out like the images ingot builds: a GPT with a BIOS boot
// partition, an ESP (FAT, label EFI) and an ext4 root (label root, fixed UUID) holding random
// and compressible files; the same disk as a raw file and as a qcow2 overlay on a qcow2 base,
// so that conversions have a backing chain to flatten.
type testDisk struct {
	Raw    string
	Qcow2  string // overlay; its backing file is Base
	Base   string
	Size   int64
	SHA256 string // of Raw, which is what the overlay chain reads as
	// Offsets of the partitions, bytes.
	ESPStart, RootStart, RootSize int64
}

const (
	testRootUUID = "5d3c1c1e-8d49-4c4a-9b7e-2f5a8f3a6a01"
	testESPStart = 2 << 20
	testESPSize  = 16 << 20
)

// fixture returns the named shared test disk ("gpt": 64 MiB GPT), building it on first use.
func fixture(t testing.TB, name string) *testDisk {
	t.Helper()
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	if d, ok := testDisks[name]; ok {
		return d
	}
	if err, ok := testErrors[name]; ok {
		t.Fatal(err)
	}
	d, err := buildTestDisk(filepath.Join(sharedDir, name), 64<<20)
	if err != nil {
		testErrors[name] = err
		t.Fatal(err)
	}
	testDisks[name] = d
	return d
}

func buildTestDisk(dir string, size int64) (*testDisk, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	d := &testDisk{
		Raw: filepath.Join(dir, "disk.raw"), Base: filepath.Join(dir, "base.qcow2"), Qcow2: filepath.Join(dir, "disk.qcow2"),
		Size: size, ESPStart: testESPStart, RootStart: testESPStart + testESPSize,
	}
	d.RootSize = size - d.RootStart - 1<<20 // the root partition ends 1 MiB before the disk
	run := func(name string, args ...string) error {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := os.WriteFile(d.Raw, nil, 0o644); err != nil {
		return nil, err
	}
	if err := os.Truncate(d.Raw, size); err != nil {
		return nil, err
	}
	if err := run("sgdisk",
		"-n1:2048:+1M", "-t1:ef02", "-c1:bios",
		fmt.Sprintf("-n2:%d:+%dM", d.ESPStart/512, testESPSize>>20), "-t2:ef00", "-c2:esp",
		fmt.Sprintf("-n3:%d:%d", d.RootStart/512, (d.RootStart+d.RootSize)/512-1), "-t3:8304", "-c3:root",
		d.Raw); err != nil {
		return nil, err
	}
	if err := run("mkfs.fat", "-n", "EFI", "--offset", fmt.Sprint(d.ESPStart/512), d.Raw, fmt.Sprint(testESPSize/1024)); err != nil {
		return nil, err
	}
	boot := filepath.Join(dir, "BOOTX64.EFI")
	if err := os.WriteFile(boot, bytes.Repeat([]byte("not really an EFI binary\n"), 1000), 0o644); err != nil {
		return nil, err
	}
	esp := fmt.Sprintf("%s@@%d", d.Raw, d.ESPStart)
	if err := run("mmd", "-i", esp, "::EFI", "::EFI/BOOT"); err != nil {
		return nil, err
	}
	if err := run("mcopy", "-i", esp, boot, "::EFI/BOOT/BOOTX64.EFI"); err != nil {
		return nil, err
	}
	root := filepath.Join(dir, "root")
	if err := writeTree(root); err != nil {
		return nil, err
	}
	if err := run("mkfs.ext4", "-q", "-L", "root", "-U", testRootUUID, "-d", root,
		"-E", fmt.Sprintf("offset=%d", d.RootStart), d.Raw, fmt.Sprintf("%dk", d.RootSize/1024)); err != nil {
		return nil, err
	}
	if err := run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", d.Raw, d.Base); err != nil {
		return nil, err
	}
	if err := run("qemu-img", "create", "-q", "-f", "qcow2", "-b", d.Base, "-F", "qcow2", d.Qcow2); err != nil {
		return nil, err
	}
	// A write in the overlay only (in the BIOS boot partition, which holds nothing), mirrored
	// into the raw file so both read the same.
	if err := run("qemu-io", "-c", "write -P 0x5a 1M 64k", d.Qcow2); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(d.Raw, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, err = f.WriteAt(bytes.Repeat([]byte{0x5a}, 64<<10), 1<<20)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if d.SHA256, err = sha256File(d.Raw); err != nil {
		return nil, err
	}
	return d, nil
}

// writeTree writes the root filesystem's files: random data (incompressible) and text.
func writeTree(root string) error {
	r := rand.New(rand.NewSource(1))
	files := map[string][]byte{
		"etc/hostname":   []byte("ingot-test\n"),
		"etc/os-release": []byte("PRETTY_NAME=\"ingot test\"\nID=debian\n"),
		"var/random.bin": randomBytes(r, 3<<20),
		"usr/share/text": textBytes(r, 2<<20),
	}
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func randomBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	r.Read(b)
	return b
}

// textBytes is text-like data: words from a small vocabulary, which compresses about 3:1.
func textBytes(r *rand.Rand, n int) []byte {
	words := strings.Fields("the disk image boots a guest over ssh and provisions it with packages files " +
		"users keys then shuts down converts and publishes outputs qcow2 vmdk raw bmap ova zstd xz " +
		"partition filesystem superblock journal inode extent block group descriptor kernel initrd")
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.Intn(len(words))])
		if r.Intn(12) == 0 {
			b.WriteString(fmt.Sprintf(" %d\n", r.Intn(100000)))
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

func sha256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// mustRun runs a command and returns its stdout, failing the test with its output on error.
func mustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(context.Background(), name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// dirNames lists the names in dir.
func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}
