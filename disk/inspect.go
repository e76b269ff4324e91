package disk

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"text/tabwriter"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"

	"github.com/ingot-build/ingot/internal/progress"
	"github.com/ingot-build/ingot/internal/qemuimg"
)

// Inspection is what `ingot inspect IMAGE` shows: the image as qemu-img sees it, and the disk
// inside as go-diskfs reads it. The JSON form is for --json.
type Inspection struct {
	Path   string `json:"path"`
	Format string `json:"format"`
	// VirtualSize is the size of the disk the guest sees.
	VirtualSize int64 `json:"virtual_size"`
	// ActualSize is what the image file takes on the host's disk.
	ActualSize int64 `json:"actual_size"`
	// Allocated is how much of the guest's disk holds data, backing chain included.
	Allocated   int64  `json:"allocated"`
	BackingFile string `json:"backing_file,omitempty"`
	// Table is the partition table; nil if the disk has none.
	Table *PartitionTable `json:"partition_table,omitempty"`
	// Filesystem is a filesystem on the whole disk (an ISO, a partitionless image).
	Filesystem *Filesystem `json:"filesystem,omitempty"`
	// Arch is the architecture the disk boots as (QEMU's name: x86_64, aarch64), from its UEFI
	// default boot loader (ArchFrom); empty when it has none, or loaders of several.
	Arch     string `json:"arch,omitempty"`
	ArchFrom string `json:"arch_from,omitempty"`
}

// efiArch maps the UEFI specification's default boot loader names (/EFI/BOOT/BOOT<arch>.EFI)
// to QEMU's names of the architectures.
var efiArch = map[string]string{
	"BOOTX64.EFI": "x86_64", "BOOTAA64.EFI": "aarch64", "BOOTIA32.EFI": "i386", "BOOTARM.EFI": "arm",
	"BOOTRISCV64.EFI": "riscv64", "BOOTLOONGARCH64.EFI": "loongarch64",
}

// guessArch sets Arch from the UEFI default boot loaders of the disk's filesystems.
func (in *Inspection) guessArch() {
	var all []*Filesystem
	if in.Filesystem != nil {
		all = append(all, in.Filesystem)
	}
	if in.Table != nil {
		for _, p := range in.Table.Partitions {
			if p.Filesystem != nil {
				all = append(all, p.Filesystem)
			}
		}
	}
	for _, fs := range all {
		for _, l := range fs.EFIBoot {
			a := efiArch[strings.ToUpper(path.Base(l))]
			if a == "" {
				continue
			}
			if in.Arch != "" && in.Arch != a {
				in.Arch, in.ArchFrom = "", ""
				return
			}
			in.Arch, in.ArchFrom = a, l
		}
	}
}

// PartitionTable is a GPT or an MBR.
type PartitionTable struct {
	Type string `json:"type"` // gpt or mbr
	// ID is the disk GUID (GPT) or the disk signature (MBR, 8 hex digits).
	ID         string      `json:"id,omitempty"`
	Partitions []Partition `json:"partitions"`
}

// Partition is one entry of the partition table.
type Partition struct {
	Index int   `json:"index"`
	Start int64 `json:"start"` // bytes
	Size  int64 `json:"size"`  // bytes
	// Type is the type GUID (GPT) or the type byte (MBR, "0x83").
	Type     string `json:"type"`
	TypeName string `json:"type_name,omitempty"`
	// Name is the GPT partition name (what blkid calls PARTLABEL).
	Name string `json:"name,omitempty"`
	// UUID is the GPT partition GUID (PARTUUID).
	UUID       string      `json:"uuid,omitempty"`
	Bootable   bool        `json:"bootable,omitempty"` // MBR active flag
	Filesystem *Filesystem `json:"filesystem,omitempty"`
}

// Inspect reads what an image is and what its disk holds. A raw image is read directly; any
// other format through qemu-nbd (see nbd.go). Both are read-only. The image is a file the user
// named, so its format is probed, once (qemuimg.Probe), and passed on.
func Inspect(ctx context.Context, path string) (Inspection, error) {
	info, err := qemuimg.Probe(ctx, path)
	if err != nil {
		return Inspection{}, err
	}
	in := Inspection{
		Path: path, Format: info.Format, VirtualSize: info.VirtualSize,
		ActualSize: info.ActualSize, BackingFile: info.BackingFilename,
	}
	if in.Allocated, err = qemuimg.Allocated(ctx, path, info.Format); err != nil {
		return in, err
	}

	var r io.ReaderAt
	var st backend.Storage
	if info.Format == "raw" {
		f, err := os.Open(path)
		if err != nil {
			return in, fmt.Errorf("inspect %s: %w", path, err)
		}
		defer f.Close()
		r, st = f, file.New(f, true)
	} else {
		n, err := openNBD(ctx, path, info.Format)
		if err != nil {
			return in, fmt.Errorf("inspect %s: %w", path, err)
		}
		defer n.Close()
		r, st = n, readerStorage(n, n.Size())
	}
	if err := in.readDisk(r, st); err != nil {
		return in, fmt.Errorf("inspect %s: %w", path, err)
	}
	in.guessArch()
	return in, nil
}

// readDisk fills in the partition table and the filesystems.
func (in *Inspection) readDisk(r io.ReaderAt, st backend.Storage) error {
	size := in.VirtualSize
	if t, err := gpt.Read(st, 512, 512); err == nil {
		in.Table = &PartitionTable{Type: "gpt", ID: t.GUID}
		for _, p := range t.Partitions {
			in.Table.Partitions = append(in.Table.Partitions, Partition{
				Index: p.Index, Start: int64(p.Start) * 512, Size: int64(p.End-p.Start+1) * 512,
				Type: string(p.Type), TypeName: gptTypeName(string(p.Type)),
				Name: p.Name, UUID: p.GUID,
			})
		}
	} else {
		// Anything with 0x55AA at byte 510 reads as an MBR, a FAT filesystem's boot sector
		// included: a filesystem at sector 0 wins unless it is an ISO9660 (hybrid ISOs carry
		// a real MBR beside it).
		fs, err := probeFilesystem(r, 0, size)
		if err != nil {
			return err
		}
		in.Filesystem = fs
		if fs == nil || fs.Type == "iso9660" {
			if m, err := mbr.Read(st, 512, 512); err == nil {
				in.Table = mbrTable(m, size)
			}
		}
	}
	if in.Table == nil {
		return nil
	}
	for i := range in.Table.Partitions {
		p := &in.Table.Partitions[i]
		fs, err := probeFilesystem(r, p.Start, p.Size)
		if err != nil {
			return fmt.Errorf("partition %d: %w", p.Index, err)
		}
		p.Filesystem = fs
	}
	return nil
}

// mbrTable lists an MBR's used entries, or returns nil if one of them does not fit the disk (the
// 0x55AA was not a partition table).
func mbrTable(m *mbr.Table, size int64) *PartitionTable {
	t := &PartitionTable{Type: "mbr", ID: m.UUID()}
	for _, p := range m.Partitions {
		if p.Type == mbr.Empty || p.Size == 0 {
			continue
		}
		start, n := int64(p.Start)*512, int64(p.Size)*512
		if start+n > size {
			return nil
		}
		t.Partitions = append(t.Partitions, Partition{
			Index: p.Index, Start: start, Size: n, Type: fmt.Sprintf("0x%02x", byte(p.Type)),
			TypeName: mbrTypeName(byte(p.Type)), Bootable: p.Bootable,
		})
	}
	if len(t.Partitions) == 0 {
		return nil
	}
	return t
}

// WriteText writes the inspection as a person reads it, e.g.
//
//	image    disk.qcow2 (qcow2)
//	size     2.0 GiB virtual, 429.0 MiB data, 163.2 MiB on disk
//	table    gpt 3F1A599F-8724-4851-92A8-013A26FD2FCB
//	arch     x86_64 (its UEFI boot loader EFI/BOOT/BOOTX64.EFI)
//
//	#  START     SIZE       TYPE                    NAME  FS    LABEL  UUID
//	1  1.0 MiB   1.0 MiB    BIOS boot               bios
//	2  2.0 MiB   64.0 MiB   EFI System              esp   vfat         9A2B-51C4
//	3  66.0 MiB  1.9 GiB    Linux root (x86-64)     root  ext4  root   8e4f…
func (in Inspection) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "image\t%s (%s)\n", in.Path, in.Format)
	fmt.Fprintf(tw, "size\t%s virtual, %s data, %s on disk\n",
		progress.Bytes(in.VirtualSize), progress.Bytes(in.Allocated), progress.Bytes(in.ActualSize))
	if in.BackingFile != "" {
		fmt.Fprintf(tw, "backing\t%s\n", in.BackingFile)
	}
	switch {
	case in.Table != nil:
		fmt.Fprintf(tw, "table\t%s %s\n", in.Table.Type, in.Table.ID)
	case in.Filesystem == nil:
		fmt.Fprintf(tw, "table\tnone\n")
	}
	if fs := in.Filesystem; fs != nil {
		fmt.Fprintf(tw, "filesystem\t%s\n", strings.Join(nonEmpty(fs.Type, quoteLabel(fs.Label), fs.UUID), " "))
	}
	if in.Arch != "" {
		fmt.Fprintf(tw, "arch\t%s (its UEFI boot loader %s)\n", in.Arch, in.ArchFrom)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if in.Table == nil {
		return nil
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tSTART\tSIZE\tTYPE\tNAME\tFS\tLABEL\tUUID")
	for _, p := range in.Table.Partitions {
		typ := p.TypeName
		if typ == "" {
			typ = p.Type
		}
		if p.Bootable {
			typ += " (boot)"
		}
		var fsType, label, uuid string
		if fs := p.Filesystem; fs != nil {
			fsType, label, uuid = fs.Type, fs.Label, fs.UUID
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Index, progress.Bytes(p.Start), progress.Bytes(p.Size),
			typ, p.Name, fsType, label, uuid)
	}
	return tw.Flush()
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func quoteLabel(s string) string {
	if s == "" {
		return ""
	}
	return fmt.Sprintf("label=%q", s)
}

// gptTypeName names the partition types an image is likely to hold, as sgdisk names them.
func gptTypeName(guid string) string {
	switch gpt.Type(strings.ToUpper(guid)) {
	case gpt.EFISystemPartition:
		return "EFI System"
	case gpt.BIOSBoot:
		return "BIOS boot"
	case gpt.LinuxFilesystem:
		return "Linux filesystem"
	case gpt.LinuxRootX86_64:
		return "Linux root (x86-64)"
	case gpt.LinuxRootX86:
		return "Linux root (x86)"
	case gpt.LinuxRootArm64:
		return "Linux root (ARM64)"
	case gpt.LinuxRootArm:
		return "Linux root (ARM)"
	case "8484680C-9521-48C6-9C11-B0720656F69E":
		return "Linux /usr (x86-64)"
	case "B0E01050-EE5F-4390-949A-9101B17104E9":
		return "Linux /usr (ARM64)"
	case gpt.LinuxSwap:
		return "Linux swap"
	case gpt.LinuxHome:
		return "Linux /home"
	case gpt.LinuxLVM:
		return "Linux LVM"
	case gpt.LinuxRAID:
		return "Linux RAID"
	case gpt.LinuxLUKS:
		return "Linux LUKS"
	case gpt.LinuxExtendedBoot:
		return "Linux extended boot"
	case gpt.MicrosoftBasicData:
		return "Microsoft basic data"
	case gpt.MicrosoftReserved:
		return "Microsoft reserved"
	}
	return ""
}

// mbrTypeName names common MBR partition types, as fdisk does.
func mbrTypeName(t byte) string {
	switch t {
	case 0x01:
		return "FAT12"
	case 0x04:
		return "FAT16 <32M"
	case 0x05:
		return "Extended"
	case 0x06:
		return "FAT16"
	case 0x07:
		return "HPFS/NTFS/exFAT"
	case 0x0b:
		return "W95 FAT32"
	case 0x0c:
		return "W95 FAT32 (LBA)"
	case 0x0e:
		return "W95 FAT16 (LBA)"
	case 0x0f:
		return "W95 Ext'd (LBA)"
	case 0x82:
		return "Linux swap"
	case 0x83:
		return "Linux"
	case 0x85:
		return "Linux extended"
	case 0x8e:
		return "Linux LVM"
	case 0xee:
		return "GPT"
	case 0xef:
		return "EFI (FAT-12/16/32)"
	case 0xfd:
		return "Linux raid autodetect"
	}
	return ""
}
