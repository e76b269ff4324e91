package disk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	iofs "io/fs"
	"path"
	"slices"
	"strings"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/filesystem/ext4"
	"github.com/diskfs/go-diskfs/filesystem/fat16"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
	"github.com/diskfs/go-diskfs/filesystem/squashfs"
)

// Filesystem is what a partition, or a disk without a partition table, holds.
type Filesystem struct {
	// Type is named as blkid names it: ext4, ext3, ext2, vfat, iso9660, squashfs, xfs, btrfs,
	// swap, crypto_LUKS.
	Type  string `json:"type"`
	Label string `json:"label,omitempty"`
	UUID  string `json:"uuid,omitempty"`
	// Size is how many bytes the filesystem spans, where its superblock says (ext2/3/4).
	Size int64 `json:"size,omitempty"`
	// EFIBoot lists the UEFI default boot loaders of a FAT filesystem, /EFI/BOOT/BOOT*.EFI: the
	// files a firmware boots from removable media, named for their architecture.
	EFIBoot []string `json:"efi_boot,omitempty"`
}

// probeFilesystem says what filesystem starts at off in r (size bytes long), or nil if it knows
// none there. The type comes from the filesystem's magic number, read directly: trying each
// go-diskfs reader in turn (as disk.GetFilesystem does) is slower and cannot name the
// filesystems go-diskfs does not read (xfs, btrfs). Labels come from go-diskfs where it reads
// the filesystem; UUIDs, which it does not expose, from the superblock.
func probeFilesystem(r io.ReaderAt, off, size int64) (*Filesystem, error) {
	head := make([]byte, 64<<10+4096)
	n, err := r.ReadAt(head[:min(int64(len(head)), size)], off)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("read the filesystem at %d: %w", off, err)
	}
	head = head[:n]
	at := func(o, l int) []byte {
		if o+l > len(head) {
			return nil
		}
		return head[o : o+l]
	}
	le32 := func(o int) uint32 { return binary.LittleEndian.Uint32(head[o:]) }
	switch {
	case bytes.Equal(at(1024+0x38, 2), []byte{0x53, 0xef}):
		return probeExt(r, off, size, head[1024:2048]), nil
	case bytes.Equal(at(510, 2), []byte{0x55, 0xaa}) && (bytes.Equal(at(0x52, 5), []byte("FAT32")) || bytes.Equal(at(0x36, 4), []byte("FAT1"))):
		fs := &Filesystem{Type: "vfat"}
		idAt, labelAt := 0x27, 0x2b
		if bytes.Equal(at(0x52, 5), []byte("FAT32")) {
			idAt, labelAt = 0x43, 0x47
		}
		id := le32(idAt)
		fs.UUID = fmt.Sprintf("%04X-%04X", id>>16, id&0xffff)
		fs.Label, fs.EFIBoot = readFAT(r, off, size, string(at(labelAt, 11)))
		return fs, nil
	case bytes.Equal(at(32769, 5), []byte("CD001")):
		fs := &Filesystem{Type: "iso9660", Label: strings.TrimSpace(string(at(32768+40, 32)))}
		if iso, err := iso9660.Read(readerStorage(r, off+size), size, off, 0); err == nil {
			fs.Label = strings.TrimSpace(iso.Label())
		}
		return fs, nil
	case bytes.Equal(at(0, 4), []byte("hsqs")):
		fs := &Filesystem{Type: "squashfs"}
		if sq, err := squashfs.Read(readerStorage(r, off+size), size, off, 0); err == nil {
			fs.Label = strings.TrimSpace(sq.Label())
		}
		return fs, nil
	case bytes.Equal(at(0, 4), []byte("XFSB")):
		return &Filesystem{Type: "xfs", UUID: formatUUID(at(32, 16)), Label: cString(at(108, 12))}, nil
	case bytes.Equal(at(0x10040, 8), []byte("_BHRfS_M")):
		return &Filesystem{Type: "btrfs", UUID: formatUUID(at(0x10020, 16)), Label: cString(at(0x1012b, 256))}, nil
	case bytes.Equal(at(4086, 10), []byte("SWAPSPACE2")):
		return &Filesystem{Type: "swap", UUID: formatUUID(at(1024+12, 16)), Label: cString(at(1024+28, 16))}, nil
	case bytes.Equal(at(0, 6), []byte("LUKS\xba\xbe")):
		return &Filesystem{Type: "crypto_LUKS", UUID: cString(at(168, 40))}, nil
	}
	return nil, nil
}

// extSuperblock is the part of an ext2/3/4 superblock ingot reads (the 1024 bytes at offset
// 1024 of the filesystem; offsets from the kernel's struct ext4_super_block).
type extSuperblock struct {
	blockSize int64
	blocks    int64
	compat    uint32
	incompat  uint32
	roCompat  uint32
	uuid      []byte
	label     string
}

func parseExtSuperblock(sb []byte) extSuperblock {
	le32 := func(o int) uint32 { return binary.LittleEndian.Uint32(sb[o:]) }
	s := extSuperblock{
		blockSize: 1024 << le32(0x18),
		blocks:    int64(le32(0x04)),
		compat:    le32(0x5c),
		incompat:  le32(0x60),
		roCompat:  le32(0x64),
		uuid:      sb[0x68:0x78],
		label:     cString(sb[0x78:0x88]),
	}
	if s.incompat&0x80 != 0 { // INCOMPAT_64BIT: the high half of the block count is valid
		s.blocks |= int64(le32(0x150)) << 32
	}
	return s
}

// probeExt names an ext filesystem the way blkid does: ext4 if it uses any feature ext3 lacks,
// ext3 if it has a journal, else ext2.
func probeExt(r io.ReaderAt, off, size int64, sb []byte) *Filesystem {
	s := parseExtSuperblock(sb)
	fs := &Filesystem{Type: "ext2", UUID: formatUUID(s.uuid), Label: s.label, Size: s.blocks * s.blockSize}
	const ext3Incompat = 0x0002 | 0x0004 // FILETYPE, RECOVER
	const ext3ROCompat = 0x0001 | 0x0002 | 0x0004
	switch {
	case s.incompat&^ext3Incompat != 0 || s.roCompat&^ext3ROCompat != 0:
		fs.Type = "ext4"
	case s.compat&0x0004 != 0: // HAS_JOURNAL
		fs.Type = "ext3"
	}
	if e, err := ext4.Read(readerStorage(r, off+size), size, off, 512); err == nil {
		fs.Label = strings.TrimSpace(e.Label())
	}
	return fs
}

// readFAT reads a FAT filesystem's volume label and its UEFI default boot loaders. go-diskfs
// reads the label in the root directory, which is the one that counts; the boot sector's copy
// is the fallback.
func readFAT(r io.ReaderAt, off, size int64, bootSector string) (label string, efiBoot []string) {
	st := readerStorage(r, off+size)
	var fsys interface {
		Label() string
		ReadDir(string) ([]iofs.DirEntry, error)
	}
	if fs, err := fat32.Read(st, size, off, 512); err == nil {
		fsys = fs
	} else if fs, err := fat16.Read(st, size, off, 512); err == nil {
		fsys = fs
	} else {
		return cleanFATLabel(bootSector), nil
	}
	// FAT names are case-insensitive: the directories are found whatever their case. The
	// paths are io/fs's: relative, "." the root.
	dir := "."
	for _, want := range []string{"EFI", "BOOT"} {
		des, err := fsys.ReadDir(dir)
		if err != nil {
			return cleanFATLabel(fsys.Label()), nil
		}
		i := slices.IndexFunc(des, func(de iofs.DirEntry) bool { return de.IsDir() && strings.EqualFold(de.Name(), want) })
		if i < 0 {
			return cleanFATLabel(fsys.Label()), nil
		}
		dir = path.Join(dir, des[i].Name())
	}
	des, _ := fsys.ReadDir(dir)
	for _, de := range des {
		name := strings.ToUpper(de.Name())
		if !de.IsDir() && strings.HasPrefix(name, "BOOT") && strings.HasSuffix(name, ".EFI") {
			efiBoot = append(efiBoot, path.Join(dir, de.Name()))
		}
	}
	return cleanFATLabel(fsys.Label()), efiBoot
}

func cleanFATLabel(s string) string {
	s = strings.TrimSpace(strings.TrimRight(s, "\x00"))
	if s == "NO NAME" {
		return ""
	}
	return s
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return strings.TrimSpace(string(b))
}

func formatUUID(b []byte) string {
	if len(b) != 16 || bytes.Equal(b, make([]byte, 16)) {
		return ""
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// readerStorage adapts an io.ReaderAt of size bytes to the read-only backend.Storage that go-diskfs
// reads from: an NBD export of a qcow2, or a raw file.
func readerStorage(r io.ReaderAt, size int64) backend.Storage {
	if s, ok := r.(backend.Storage); ok {
		return s
	}
	return &readOnlyStorage{r: r, size: size}
}
