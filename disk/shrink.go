package disk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"

	"github.com/ingot-build/ingot/internal/execx"
)

// Minimal shrinking makes a raw image as small as its content allows, so that it fits the
// smallest SD card or USB stick: the last partition's filesystem is shrunk to what it holds,
// the partition is cut to it, and the disk ends right after it (after the backup GPT on a GPT
// disk). The guest grows it back to the card on first boot (cloud-init's growpart and
// resize_rootfs), so nothing is lost but the wasted bytes.
//
// It works on the host with no loop devices, mounts or root: the partition is copied out to a
// file of its own (sparsely: only its data), e2fsck and resize2fs shrink that file, and it is
// copied back. Why not resize2fs in place with e2fsprogs' "image?offset=N" syntax: resize2fs
// truncates a regular file to the filesystem's new size, and with an offset that cuts the disk
// in the middle of the partition (tried with e2fsprogs 1.47).

// mib is the alignment of partition ends, as partitioning tools align starts.
const mib = 1 << 20

// ShrinkMinimal shrinks the raw image at path in place, as described above. The last partition
// (the one that ends last) must hold ext2, ext3 or ext4; on a GPT disk the partition keeps its
// GUID, type, name and attributes, the disk its GUID, and both GPT headers are rewritten for
// the new size; on an MBR disk the last partition must be a primary one. On error the image may be
// left half shrunk: work on a copy (Produce works on its own raw conversion).
func ShrinkMinimal(ctx context.Context, path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("shrink %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("shrink %s: %w", path, err)
	}
	size := st.Size()
	tbl, err := readShrinkTable(f, size)
	if err != nil {
		return fmt.Errorf("shrink %s: %w", path, err)
	}
	start, end := tbl.last() // bytes, end exclusive
	fs, err := probeFilesystem(f, start, end-start)
	if err != nil {
		return fmt.Errorf("shrink %s: %w", path, err)
	}
	switch {
	case fs == nil:
		return fmt.Errorf("shrink %s: %w: its last partition (at %d) holds no filesystem ingot recognises; only ext2/3/4 can be shrunk", path, ErrUnsupported, start)
	case !strings.HasPrefix(fs.Type, "ext"):
		return fmt.Errorf("shrink %s: %w: its last partition holds %s; only ext2/3/4 can be shrunk", path, ErrUnsupported, fs.Type)
	}

	fsSize, err := shrinkExt(ctx, f, start, end-start)
	if err != nil {
		return fmt.Errorf("shrink %s: %w", path, err)
	}
	newEnd := min((start+fsSize+mib-1)/mib*mib, end)
	newSize := tbl.resize(newEnd)
	if err := f.Truncate(newSize); err != nil {
		return fmt.Errorf("shrink %s: cut the image to %d bytes: %w", path, newSize, err)
	}
	if err := tbl.write(f, newSize); err != nil {
		return fmt.Errorf("shrink %s: write the partition table: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("shrink %s: %w", path, err)
	}
	if err := tbl.verify(ctx, path); err != nil {
		return fmt.Errorf("shrink %s: verify the partition table: %w", path, err)
	}
	if err := execx.Run(ctx, "e2fsck", "-fn", path+"?offset="+strconv.FormatInt(start, 10)); err != nil {
		return fmt.Errorf("shrink %s: verify the shrunk filesystem: %w", path, err)
	}
	return nil
}

// shrinkExt shrinks the ext filesystem at [start, start+n) of f to its minimum and returns its new
// size. The filesystem is worked on in a copy beside f: only its data is copied, out and back.
func shrinkExt(ctx context.Context, f *os.File, start, n int64) (int64, error) {
	part, err := os.CreateTemp(dirOf(f.Name()), ".shrink-*.ext")
	if err != nil {
		return 0, err
	}
	defer os.Remove(part.Name())
	defer part.Close()
	if err := part.Truncate(n); err != nil {
		return 0, err
	}
	if err := copySparse(ctx, part, f, 0, start, n); err != nil {
		return 0, fmt.Errorf("copy the partition out: %w", err)
	}
	// resize2fs refuses a filesystem that was not checked since it was last mounted; -y lets
	// e2fsck fix what it finds (a guest that was powered off uncleanly leaves a journal to
	// replay). Exit status 1 means "errors corrected", which is success here.
	if err := execx.Run(ctx, "e2fsck", "-fy", part.Name()); err != nil && exitCode(err) != 1 {
		return 0, fmt.Errorf("check the filesystem before shrinking: %w", err)
	}
	if err := execx.Run(ctx, "resize2fs", "-M", part.Name()); err != nil {
		return 0, fmt.Errorf("shrink the filesystem: %w", err)
	}
	sb := make([]byte, 1024)
	if _, err := part.ReadAt(sb, 1024); err != nil {
		return 0, fmt.Errorf("read the shrunk filesystem's superblock: %w", err)
	}
	s := parseExtSuperblock(sb)
	fsSize := s.blocks * s.blockSize
	if fsSize <= 0 || fsSize > n {
		return 0, fmt.Errorf("the shrunk filesystem says it is %d bytes, the partition is %d", fsSize, n)
	}
	// Blocks past the new end are gone; what the partition range holds beyond the filesystem
	// must read as zeros, so cut the image at the partition start before copying back.
	if err := f.Truncate(start); err != nil {
		return 0, err
	}
	if err := copySparse(ctx, f, part, start, 0, fsSize); err != nil {
		return 0, fmt.Errorf("copy the partition back: %w", err)
	}
	return fsSize, nil
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

func dirOf(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[:i+1]
	}
	return "."
}

// shrinkTable is the partition table of a disk being shrunk: GPT or MBR.
type shrinkTable interface {
	// last returns the byte range of the partition that ends last.
	last() (start, end int64)
	// resize makes the last partition end at end (bytes, exclusive, sector-aligned) and returns
	// the disk's new size.
	resize(end int64) int64
	write(f *os.File, size int64) error
	verify(ctx context.Context, path string) error
}

// readShrinkTable reads the partition table with go-diskfs: GPT first, then MBR. A disk with a
// protective MBR whose GPT cannot be read is an error, not an MBR disk.
func readShrinkTable(f *os.File, size int64) (shrinkTable, error) {
	st := file.New(f, true)
	mbr0 := make([]byte, 512)
	if _, err := f.ReadAt(mbr0, 0); err != nil {
		return nil, fmt.Errorf("read the partition table: %w", err)
	}
	t, gerr := gpt.Read(st, 512, 512)
	if gerr == nil {
		return newGPTShrink(t, mbr0)
	}
	if mbr0[446+4] == 0xee {
		return nil, fmt.Errorf("the disk has a protective MBR but its GPT cannot be read: %w", gerr)
	}
	m, err := mbr.Read(st, 512, 512)
	if err != nil || mbr0[510] != 0x55 || mbr0[511] != 0xaa {
		return nil, fmt.Errorf("%w: the disk has no partition table (GPT or MBR) to shrink", ErrUnsupported)
	}
	return newMBRShrink(m)
}

type gptShrink struct {
	t    *gpt.Table
	p    *gpt.Partition // the last one
	size int64          // the disk's size the table was read for
	// backup is how many sectors the backup GPT takes at the end of the disk (header and
	// entries: 33 for the usual 128 entries).
	backup uint64
}

func newGPTShrink(t *gpt.Table, mbr0 []byte) (*gptShrink, error) {
	g := &gptShrink{t: t}
	for _, p := range t.Partitions {
		if g.p == nil || p.End > g.p.End {
			g.p = p
		}
	}
	if g.p == nil {
		return nil, fmt.Errorf("%w: the GPT has no partitions", ErrUnsupported)
	}
	// go-diskfs keeps the entry array's size private; Resize to a known size and read it back.
	const probe = 1 << 30
	t.Resize(probe)
	g.backup = probe/512 - 1 - t.LastDataSector()
	// go-diskfs rewrites the protective MBR only if it recognised it, which it does only when the
	// MBR's size is exact. A protective MBR that is the sole entry is still one, and has to say
	// the new size too.
	if !t.ProtectiveMBR && mbr0[446+4] == 0xee && allZero(mbr0[446+16:510]) {
		t.ProtectiveMBR = true
	}
	return g, nil
}

func (g *gptShrink) last() (int64, int64) {
	return int64(g.p.Start) * 512, (int64(g.p.End) + 1) * 512
}

func (g *gptShrink) resize(end int64) int64 {
	g.p.End = uint64(end/512) - 1
	g.p.Size = (g.p.End - g.p.Start + 1) * 512
	// The partition ends where the backup GPT starts: the last usable sector.
	size := int64(g.p.End+1+g.backup) * 512
	g.t.Resize(uint64(size))
	return size
}

func (g *gptShrink) write(f *os.File, size int64) error {
	w, err := file.New(f, false).Writable()
	if err != nil {
		return err
	}
	return g.t.Write(w, size)
}

// verify runs sgdisk -v, which checks both headers, both entry arrays, their CRCs and that the
// partitions lie in the usable area. It exits 0 even on problems, so its report is read.
func (g *gptShrink) verify(ctx context.Context, path string) error {
	out, err := execx.Output(ctx, "sgdisk", "-v", path)
	if err != nil {
		return err
	}
	if !strings.Contains(string(out), "No problems found") {
		return fmt.Errorf("sgdisk -v %s: %s", path, strings.TrimSpace(string(out)))
	}
	return nil
}

type mbrShrink struct {
	t *mbr.Table
	p *mbr.Partition
}

func newMBRShrink(t *mbr.Table) (*mbrShrink, error) {
	m := &mbrShrink{t: t}
	for _, p := range t.Partitions {
		if p.Type == mbr.Empty || p.Size == 0 {
			continue
		}
		if m.p == nil || p.Start+p.Size > m.p.Start+m.p.Size {
			m.p = p
		}
	}
	switch {
	case m.p == nil:
		return nil, fmt.Errorf("%w: the MBR has no partitions", ErrUnsupported)
	case m.p.Type == mbr.ExtendedCHS || m.p.Type == mbr.ExtendedLBA || m.p.Type == mbr.LinuxExtended:
		return nil, fmt.Errorf("%w: the last partition is an extended partition; only a primary one can be shrunk", ErrUnsupported)
	}
	return m, nil
}

func (m *mbrShrink) last() (int64, int64) {
	return int64(m.p.Start) * 512, int64(m.p.Start+m.p.Size) * 512
}

func (m *mbrShrink) resize(end int64) int64 {
	m.p.Size = uint32(end/512) - m.p.Start
	return end // an MBR disk has nothing after its partitions
}

func (m *mbrShrink) write(f *os.File, size int64) error {
	w, err := file.New(f, false).Writable()
	if err != nil {
		return err
	}
	return m.t.Write(w, size)
}

func (m *mbrShrink) verify(ctx context.Context, path string) error {
	return execx.Run(ctx, "sfdisk", "--verify", path)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
