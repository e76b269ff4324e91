package disk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/ext4"

	"github.com/ingot-build/ingot/internal/testguest"
)

// TestShrinkMinimalCloudImage shrinks the Debian test cloud image (GPT: bios, esp, root as
// partition 3, 2 GiB) through Produce, as a flashable raw image.
func TestShrinkMinimalCloudImage(t *testing.T) {
	cloud := testguest.CloudImage(t)
	dir := t.TempDir()
	ref := filepath.Join(t.TempDir(), "ref.raw")
	mustRun(t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", cloud.Image, ref)
	before := sgdiskInfo(t, ref, 3)
	hostname := readExtFile(t, ref, before.start, "/etc/os-release")

	arts, err := Produce(context.Background(), cloud.Image, "", OutputSpec{Name: "flash", Format: "raw", Shrink: "minimal", Bmap: true}, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	img := arts[0].Path
	checkShrunk(t, ref, img, 3)
	if got := readExtFile(t, img, before.start, "/etc/os-release"); got != hostname {
		t.Errorf("/etc/os-release changed:\n%s\nwas\n%s", got, hostname)
	}
	target := filepath.Join(t.TempDir(), "card")
	mustRun(t, "bmaptool", "copy", "--bmap", arts[1].Path, img, target)
	if sum, _ := sha256File(target); sum != arts[0].SHA256 {
		t.Errorf("bmaptool copy of the shrunk image gives sha256 %s, want %s", sum, arts[0].SHA256)
	}
}

// TestShrinkMinimal shrinks small disks: GPT and MBR with ext4 last, and refuses what it cannot.
func TestShrinkMinimal(t *testing.T) {
	d := fixture(t, "gpt")
	t.Run("gpt", func(t *testing.T) {
		img := filepath.Join(t.TempDir(), "disk.raw")
		mustRun(t, "cp", "--sparse=always", d.Raw, img)
		if err := ShrinkMinimal(context.Background(), img); err != nil {
			t.Fatal(err)
		}
		checkShrunk(t, d.Raw, img, 3)
		if got := readExtFile(t, img, d.RootStart, "/etc/hostname"); got != "ingot-test\n" {
			t.Errorf("/etc/hostname is %q", got)
		}
	})
	t.Run("mbr", func(t *testing.T) {
		img := filepath.Join(t.TempDir(), "mbr.raw")
		if err := os.WriteFile(img, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(img, 64<<20); err != nil {
			t.Fatal(err)
		}
		mustRunStdin(t, "label: dos\nstart=2048, size=16384, type=c\nstart=18432, type=83\n", "sfdisk", "-q", img)
		root := filepath.Join(t.TempDir(), "root")
		if err := writeTree(root); err != nil {
			t.Fatal(err)
		}
		mustRun(t, "mkfs.ext4", "-q", "-d", root, "-E", "offset="+strconv.Itoa(18432*512), img, strconv.Itoa((64<<20-18432*512)/1024)+"k")
		if err := ShrinkMinimal(context.Background(), img); err != nil {
			t.Fatal(err)
		}
		st, _ := os.Stat(img)
		out := mustRun(t, "sfdisk", "--dump", img)
		m := regexp.MustCompile(`start=\s*18432, size=\s*(\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no partition 2 in\n%s", out)
		}
		sectors, _ := strconv.ParseInt(m[1], 10, 64)
		if end := (18432 + sectors) * 512; end != st.Size() || end%mib != 0 || st.Size() >= 64<<20 {
			t.Errorf("partition 2 ends at %d, the image is %d bytes (was %d)", end, st.Size(), 64<<20)
		}
		mustRun(t, "e2fsck", "-fn", img+"?offset="+strconv.Itoa(18432*512))
	})
	t.Run("vfat last", func(t *testing.T) {
		img := filepath.Join(t.TempDir(), "fat.raw")
		if err := os.WriteFile(img, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(img, 32<<20); err != nil {
			t.Fatal(err)
		}
		mustRun(t, "sgdisk", "-n1:2048:0", "-t1:ef00", img)
		mustRun(t, "mkfs.fat", "--offset", "2048", img, strconv.Itoa((32<<20-2048*512-34*512)/1024))
		err := ShrinkMinimal(context.Background(), img)
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "vfat") {
			t.Errorf("err = %v, want ErrUnsupported naming vfat", err)
		}
	})
	t.Run("no table", func(t *testing.T) {
		img := filepath.Join(t.TempDir(), "blank.raw")
		if err := os.WriteFile(img, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(img, 8<<20); err != nil {
			t.Fatal(err)
		}
		err := ShrinkMinimal(context.Background(), img)
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "no partition table") {
			t.Errorf("err = %v, want ErrUnsupported: no partition table", err)
		}
	})
}

// checkShrunk checks a shrunk GPT image against the original: smaller; sgdisk -v clean; the last
// partition ends on a MiB boundary at the last usable sector, right before the backup GPT; its
// start, GUIDs, name and attributes unchanged; its filesystem clean and filling it.
func checkShrunk(t *testing.T, orig, img string, part int) {
	t.Helper()
	ost, _ := os.Stat(orig)
	st, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() >= ost.Size() {
		t.Errorf("the shrunk image is %d bytes, the original %d", st.Size(), ost.Size())
	}
	t.Logf("shrunk from %d to %d bytes", ost.Size(), st.Size())
	if out := mustRun(t, "sgdisk", "-v", img); !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v:\n%s", out)
	}
	before, after := sgdiskInfo(t, orig, part), sgdiskInfo(t, img, part)
	lastUsable := st.Size()/512 - 34
	if after.last != lastUsable {
		t.Errorf("partition %d ends at sector %d, the last usable one is %d", part, after.last, lastUsable)
	}
	if (after.last+1)*512%mib != 0 {
		t.Errorf("partition %d ends at sector %d, not on a MiB boundary", part, after.last)
	}
	if before.start != after.start || before.rest != after.rest {
		t.Errorf("partition %d changed beyond its end:\n%+v\n%+v", part, before, after)
	}
	mustRun(t, "e2fsck", "-fn", img+"?offset="+strconv.FormatInt(after.start, 10))
	sb := make([]byte, 1024)
	f, _ := os.Open(img)
	defer f.Close()
	if _, err := f.ReadAt(sb, after.start+1024); err != nil {
		t.Fatal(err)
	}
	s := parseExtSuperblock(sb)
	if fsEnd := after.start + s.blocks*s.blockSize; fsEnd > (after.last+1)*512 || (after.last+1)*512-fsEnd >= mib {
		t.Errorf("the filesystem ends at %d, the partition at %d", fsEnd, (after.last+1)*512)
	}
}

type partInfo struct {
	start, last int64  // start in bytes, last sector
	rest        string // GUIDs, name, attributes
}

func sgdiskInfo(t *testing.T, img string, part int) partInfo {
	t.Helper()
	out := mustRun(t, "sgdisk", "-i", strconv.Itoa(part), img)
	var p partInfo
	var rest []string
	for _, line := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(line, ": ")
		switch k {
		case "First sector":
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			p.start = n * 512
		case "Last sector":
			p.last, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		case "Partition GUID code", "Partition unique GUID", "Attribute flags", "Partition name":
			rest = append(rest, line)
		}
	}
	p.rest = strings.Join(rest, "\n")
	if p.rest == "" {
		t.Fatalf("sgdisk -i %d %s:\n%s", part, img, out)
	}
	return p
}

// readExtFile reads a file from the ext4 filesystem at off in img with go-diskfs.
func readExtFile(t *testing.T, img string, off int64, name string) string {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, off+1024); err != nil {
		t.Fatal(err)
	}
	s := parseExtSuperblock(sb)
	fs, err := ext4.Read(file.New(f, true), s.blocks*s.blockSize, off, 512)
	if err != nil {
		t.Fatalf("read the ext4 at %d of %s: %v", off, img, err)
	}
	data, err := fs.ReadFile(strings.TrimPrefix(name, "/")) // io/fs paths are unrooted
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return string(data)
}

func mustRunStdin(t *testing.T, stdin string, name string, args ...string) {
	t.Helper()
	out := mustRun(t, "sh", "-c", fmt.Sprintf("printf '%%s' \"$0\" | %s %s", name, strings.Join(args, " ")), stdin)
	_ = out
}
