package cloudinit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
	"github.com/google/renameio/v2"
)

const (
	// maxSeedBytes bounds the documents a seed holds. Real seeds are kilobytes; the bound keeps the
	// vfat image in the size range where go-diskfs picks 512-byte clusters (up to 260 MB), which
	// is what makes fat32MinSize enough clusters for a valid FAT32.
	maxSeedBytes = 64 << 20

	// fat32MinSize is the smallest image that holds a valid FAT32. FAT32 needs at least 65525
	// clusters (fewer, and the FAT type is by definition FAT16: fsck.fat warns and mtools refuses
	// the volume), but go-diskfs v1.9.4's fat32.Create accepts any size above 32 sectors plus 32 KiB
	// and picks 512-byte clusters below 260 MB. 33 MiB gives 66512 clusters. The image is sparse:
	// it costs about half a megabyte of disk.
	fat32MinSize = 33 << 20
	fatSector    = 512

	isoBlockSize = 2048
)

// Write stores the seed as an image at path, replacing any file there, atomically: it is built in
// a temporary file in path's directory and renamed into place, so path holds either the old file
// or the complete new seed. The image is mode 0600, as it holds a private key.
//
// FormatISO is ISO9660 with Rock Ridge, volume label "cidata". It is not byte-for-byte
// reproducible: go-diskfs stamps the volume descriptor with the current time and Rock Ridge
// entries with the workspace files' change times, and has no option to fix either. The documents
// inside are reproducible.
//
// FormatVFAT is FAT32, label "cidata", at least 33 MiB (see fat32MinSize) and sparse. It is
// written with go-diskfs's reproducible option (volume serial number 0); file and label
// timestamps come from SOURCE_DATE_EPOCH when it is set, which makes the image reproducible.
func (s *Seed) Write(ctx context.Context, path string) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("write cloud-init seed %s: %w", path, err)
		}
	}()
	if err := ctx.Err(); err != nil {
		return err
	}
	files := s.Files()
	total := 0
	for _, f := range files {
		total += len(f.Data)
	}
	if total > maxSeedBytes {
		return fmt.Errorf("%d bytes of documents, more than the %d a seed may hold", total, maxSeedBytes)
	}

	dir := filepath.Dir(path)
	pending, err := renameio.NewPendingFile(path, renameio.WithTempDir(dir), renameio.WithPermissions(0o600))
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, pending.Cleanup()) }()

	switch s.format {
	case FormatVFAT:
		err = writeVFAT(ctx, pending.File, files)
	default:
		err = writeISO(ctx, pending.File, dir, files)
	}
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return pending.CloseAtomicallyReplace()
}

// writeISO builds an ISO9660 image with Rock Ridge names. go-diskfs builds it from a workspace
// directory; ours is private (0700, files 0600) and sits next to the destination rather than in
// /tmp, because the files hold the host private key.
func writeISO(ctx context.Context, img *os.File, dir string, files []File) (err error) {
	ws, err := os.MkdirTemp(dir, ".cidata-")
	if err != nil {
		return fmt.Errorf("create ISO workspace: %w", err)
	}
	// Finalize removes the workspace itself; this covers every path that does not get there.
	defer func() { err = errors.Join(err, os.RemoveAll(ws)) }()
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(ws, f.Name), f.Data, 0o600); err != nil {
			return fmt.Errorf("stage %s: %w", f.Name, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	fs, err := iso9660.Create(file.New(img, false), 0, 0, isoBlockSize, ws)
	if err != nil {
		return fmt.Errorf("create ISO9660 file system: %w", err)
	}
	// Rock Ridge carries the real file names; without it the guest sees USER_DAT.;1-style names.
	if err := fs.Finalize(iso9660.FinalizeOptions{RockRidge: true, VolumeIdentifier: Label}); err != nil {
		return fmt.Errorf("finalize ISO9660 file system: %w", err)
	}
	return nil
}

// writeVFAT builds a FAT32 image; long file names keep the real names.
func writeVFAT(ctx context.Context, img *os.File, files []File) error {
	size := vfatSize(files)
	if err := img.Truncate(size); err != nil {
		return fmt.Errorf("size FAT32 image: %w", err)
	}
	fs, err := fat32.Create(file.New(img, false), size, 0, fatSector, Label, true)
	if err != nil {
		return fmt.Errorf("create FAT32 file system: %w", err)
	}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		w, err := fs.OpenFile("/"+f.Name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return fmt.Errorf("create %s: %w", f.Name, err)
		}
		_, err = w.Write(f.Data)
		if err = errors.Join(err, w.Close()); err != nil {
			return fmt.Errorf("write %s: %w", f.Name, err)
		}
	}
	return fs.Close()
}

// vfatSize is fat32MinSize plus room for the files' clusters, rounded up to a MiB.
func vfatSize(files []File) int64 {
	const mib = 1 << 20
	var data int64 = 64 << 10 // root directory and long-name entries, with room to spare
	for _, f := range files {
		data += (int64(len(f.Data)) + fatSector - 1) / fatSector * fatSector
	}
	return fat32MinSize + (data+mib-1)/mib*mib
}
