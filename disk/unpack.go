package disk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/ingot-build/ingot/internal/ctxio"
	"github.com/ingot-build/ingot/internal/qemuimg"
)

// Bootable is an output as a machine boots it: a file and the QEMU block format to open it as.
type Bootable struct {
	Path   string
	Format string
	// Unpacked says Path is a file Unpack made (in the dir it was given), not the output itself.
	Unpacked bool
}

// FormatOf says what an output file is, as Artifact.Format names it (qcow2, vmdk, vhdx, raw,
// raw.zst, raw.xz, ova), from its name, or by probing its bytes with qemu-img when the name does
// not say (an image built elsewhere, say disk.img).
func FormatOf(ctx context.Context, path string) (string, error) {
	name := strings.ToLower(filepath.Base(path))
	for _, f := range []string{"raw.zst", "raw.xz", "qcow2", "vmdk", "vhdx", "ova", "raw"} {
		if strings.HasSuffix(name, "."+f) {
			return f, nil
		}
	}
	switch {
	case strings.HasSuffix(name, ".img.zst"):
		return "raw.zst", nil
	case strings.HasSuffix(name, ".img.xz"):
		return "raw.xz", nil
	}
	info, err := qemuimg.Probe(ctx, path)
	if err != nil {
		return "", fmt.Errorf("what image is %s: %w", path, err)
	}
	return info.Format, nil
}

// Unpack gives an output as a user boots it. qcow2, vmdk, vhdx and raw images are booted as they
// are, through QEMU's own drivers (the caller puts an overlay on them, so the output itself is
// never written). A compressed raw image is decompressed into dir, sparse, as `zstd -d` or
// `unxz` would leave it; an OVA's disk is taken out of the tar into dir, as an importer does.
// format is an Artifact.Format; "" asks FormatOf.
func Unpack(ctx context.Context, path, format, dir string) (Bootable, error) {
	if format == "" {
		f, err := FormatOf(ctx, path)
		if err != nil {
			return Bootable{}, err
		}
		format = f
	}
	switch format {
	case "qcow2", "vmdk", "vhdx", "raw":
		return Bootable{Path: path, Format: format}, nil
	case "raw.zst", "raw.xz":
		dst := filepath.Join(dir, strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)))
		if !strings.HasSuffix(dst, ".raw") && !strings.HasSuffix(dst, ".img") {
			dst += ".raw"
		}
		if err := decompressSparse(ctx, path, strings.TrimPrefix(format, "raw."), dst); err != nil {
			return Bootable{}, fmt.Errorf("decompress %s: %w", path, err)
		}
		return Bootable{Path: dst, Format: "raw", Unpacked: true}, nil
	case "ova":
		dst, err := extractOVADisk(ctx, path, dir)
		if err != nil {
			return Bootable{}, fmt.Errorf("take the disk out of %s: %w", path, err)
		}
		return Bootable{Path: dst, Format: "vmdk", Unpacked: true}, nil
	default:
		return Bootable{}, fmt.Errorf("%w: cannot boot a %s file (%s)", ErrUnsupported, format, path)
	}
}

// decompressSparse decompresses src (zstd or xz) to dst, seeking over zero blocks instead of
// writing them, so the file takes the room of its data only.
func decompressSparse(ctx context.Context, src, kind, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	var r io.Reader
	switch kind {
	case "zst":
		dec, err := zstd.NewReader(in)
		if err != nil {
			return fmt.Errorf("start the zstd decoder: %w", err)
		}
		defer dec.Close()
		r = dec
	case "xz":
		xr, err := xz.NewReader(in)
		if err != nil {
			return err
		}
		r = xr
	default:
		return fmt.Errorf("%w: compression %q", ErrUnsupported, kind)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(dst)
		}
	}()
	n, err := writeSparse(ctx, out, r)
	if err != nil {
		return err
	}
	return out.Truncate(n) // a trailing hole was only seeked over
}

// sparseBlock is the unit writeSparse looks for zeros in: the file system block.
const sparseBlock = 4096

// writeSparse writes r to the start of f, seeking over all-zero blocks, and returns the length
// written (holes included).
func writeSparse(ctx context.Context, f *os.File, r io.Reader) (int64, error) {
	buf := make([]byte, 1<<20)
	zero := make([]byte, sparseBlock)
	var off int64
	for {
		if err := ctx.Err(); err != nil {
			return off, err
		}
		n, rerr := io.ReadFull(r, buf)
		for i := 0; i < n; i += sparseBlock {
			blk := buf[i:min(i+sparseBlock, n)]
			if !bytes.Equal(blk, zero[:len(blk)]) {
				if _, err := f.WriteAt(blk, off); err != nil {
					return off, err
				}
			}
			off += int64(len(blk))
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			return off, nil
		}
		if rerr != nil {
			return off, rerr
		}
	}
}

// extractOVADisk copies the OVA's first disk (the first file its descriptor references) into
// dir, checking it against the OVA's manifest on the way.
func extractOVADisk(ctx context.Context, path, dir string) (string, error) {
	c, err := readOVA(path)
	if err != nil {
		return "", err
	}
	if len(c.Desc.Files) == 0 {
		return "", fmt.Errorf("the descriptor references no disk")
	}
	ref := c.Desc.Files[0]
	var m *tarMember
	for i := range c.Members {
		if c.Members[i].Name == ref.Href {
			m = &c.Members[i]
		}
	}
	if m == nil || strings.ContainsAny(ref.Href, `/\`) {
		return "", fmt.Errorf("the descriptor's disk %q is not a member of the archive", ref.Href)
	}
	in, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer in.Close()
	dst := filepath.Join(dir, ref.Href)
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	_, err = io.CopyBuffer(io.MultiWriter(out, h), ctxio.Reader(ctx, io.NewSectionReader(in, m.Offset, m.Size)), make([]byte, 4<<20))
	sum := hex.EncodeToString(h.Sum(nil))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && c.Manifest[ref.Href] != "" && c.Manifest[ref.Href] != sum {
		err = fmt.Errorf("%s has sha256 %s, the OVA's manifest says %s", ref.Href, sum, c.Manifest[ref.Href])
	}
	if err != nil {
		os.Remove(dst)
		return "", err
	}
	return dst, nil
}
