package qemuimg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// ImageInfo is the part of `qemu-img info --output=json` (QAPI ImageInfo, since QEMU 1.3) that
// ingot uses. Fields a format has no use for are left out of the JSON, and stay zero here.
type ImageInfo struct {
	Filename string `json:"filename"`
	Format   string `json:"format"`
	// VirtualSize is the size of the disk the guest sees.
	VirtualSize int64 `json:"virtual-size"`
	// ActualSize is what the file takes on the host's disk.
	ActualSize  int64 `json:"actual-size"`
	ClusterSize int64 `json:"cluster-size"` // formats with clusters (qcow2, vmdk, vhdx)
	// BackingFilename is the backing file as the image's header names it (maybe relative to
	// the image), FullBackingFilename as qemu-img resolved it; both "" without a backing file.
	BackingFilename     string `json:"backing-filename"`
	FullBackingFilename string `json:"full-backing-filename"`
	// BackingFormat is the backing file's format as the header records it (-F at creation).
	BackingFormat string `json:"backing-filename-format"`
	// DirtyFlag is set on an image that was not closed cleanly (qcow2 with lazy refcounts).
	DirtyFlag      bool            `json:"dirty-flag"`
	FormatSpecific *FormatSpecific `json:"format-specific,omitempty"` // since QEMU 1.7
	// QEMU 8.0 adds "children" (the protocol and extent nodes under the image); nothing here
	// needs them, and QEMU 7.2 does not write them.
}

// FormatSpecific is what qemu-img info reports about one format.
type FormatSpecific struct {
	Type string     `json:"type"` // the format
	Data FormatData `json:"data"`
}

// FormatData is the part of a format's own information ingot uses.
type FormatData struct {
	// CompressionType is how a qcow2's compressed clusters are compressed, "zlib" or "zstd"
	// (since QEMU 5.1).
	CompressionType string `json:"compression-type"`
	// CreateType is a vmdk's subformat, e.g. "streamOptimized" (since QEMU 1.7).
	CreateType string `json:"create-type"`
}

// Info asks qemu-img what the image at path, in format, is. It passes -U (see the package doc).
func Info(ctx context.Context, path, format string) (ImageInfo, error) {
	what := "inspect " + path
	if err := needFormat(what, format); err != nil {
		return ImageInfo{}, err
	}
	return query(ctx, what, decodeInfo, "info", "-U", "-f", format, "--output=json", path)
}

// Probe is Info for an image whose format nobody has said, and lets qemu-img guess it from the
// file's first bytes. Only for an image whose first bytes no guest chose: an input ingot was
// handed, or a header qemu-img wrote (see the package doc). The caller passes the format it
// found on to every later call.
func Probe(ctx context.Context, path string) (ImageInfo, error) {
	return query(ctx, "inspect "+path, decodeInfo, "info", "-U", "--output=json", path)
}

// query runs a qemu-img query and decodes its JSON with decode; what says what it was for.
func query[T any](ctx context.Context, what string, decode func([]byte) (T, error), args ...string) (T, error) {
	out, err := output(ctx, args...)
	if err == nil {
		var v T
		if v, err = decode(out); err == nil {
			return v, nil
		}
	}
	var zero T
	return zero, fmt.Errorf("%s: %w", what, err)
}

func decodeInfo(out []byte) (ImageInfo, error) {
	var i ImageInfo
	if err := json.Unmarshal(out, &i); err != nil {
		return ImageInfo{}, fmt.Errorf("decode qemu-img info: %w", err)
	}
	if i.Filename == "" || i.Format == "" {
		return ImageInfo{}, errors.New("decode qemu-img info: no file name or format")
	}
	return i, nil
}

// BackingChain returns the image at path, in format, and the images under it, top first, as
// `qemu-img info --backing-chain` reports them. The formats of the images below the top are the
// ones their overlays' headers record. It passes -U (see the package doc): the chain may be
// under a running VM.
func BackingChain(ctx context.Context, path, format string) ([]ImageInfo, error) {
	what := "read the backing chain of " + path
	if err := needFormat(what, format); err != nil {
		return nil, err
	}
	return query(ctx, what, decodeChain, "info", "-U", "-f", format, "--backing-chain", "--output=json", path)
}

func decodeChain(out []byte) ([]ImageInfo, error) {
	var chain []ImageInfo
	if err := json.Unmarshal(out, &chain); err != nil {
		return nil, fmt.Errorf("decode qemu-img info --backing-chain: %w", err)
	}
	if len(chain) == 0 {
		return nil, errors.New("decode qemu-img info --backing-chain: no image")
	}
	for i, c := range chain {
		if c.Filename == "" || c.Format == "" {
			return nil, fmt.Errorf("decode qemu-img info --backing-chain: image %d has no file name or format", i)
		}
	}
	return chain, nil
}

// Extent is one entry of `qemu-img map --output=json` (QAPI MapEntry, since QEMU 2.6): a run of
// the guest disk and where its content comes from.
type Extent struct {
	Start  int64 `json:"start"`
	Length int64 `json:"length"`
	// Depth is how far down the backing chain the content lives (0: the image itself).
	Depth int `json:"depth"`
	// Present is whether some image of the chain holds the run (since QEMU 6.1; always false
	// from an older qemu-img).
	Present bool `json:"present"`
	Zero    bool `json:"zero"`
	Data    bool `json:"data"`
	// Offset is where the data sits in the file, for uncompressed clusters of formats that say.
	Offset *int64 `json:"offset,omitempty"`
}

// Map returns the extents of the guest disk of the image at path, in format, the whole backing
// chain flattened.
func Map(ctx context.Context, path, format string) ([]Extent, error) {
	what := "map " + path
	if err := needFormat(what, format); err != nil {
		return nil, err
	}
	return query(ctx, what, decodeMap, "map", "-f", format, "--output=json", path)
}

func decodeMap(out []byte) ([]Extent, error) {
	var ext []Extent
	if err := json.Unmarshal(out, &ext); err != nil {
		return nil, fmt.Errorf("decode qemu-img map: %w", err)
	}
	return ext, nil
}

// Allocated is how many bytes of the guest disk of the image at path, in format, hold data (not
// holes, not zero clusters), the backing chain included: what a conversion has to copy, and the
// yardstick for output sizes.
func Allocated(ctx context.Context, path, format string) (int64, error) {
	ext, err := Map(ctx, path, format)
	if err != nil {
		return 0, err
	}
	return DataBytes(ext), nil
}

// DataBytes is how many bytes of ext hold data.
func DataBytes(ext []Extent) int64 {
	var n int64
	for _, e := range ext {
		if e.Data && !e.Zero {
			n += e.Length
		}
	}
	return n
}

// Measurement is `qemu-img measure --output=json` (QAPI BlockMeasureInfo, since QEMU 2.10): how
// big an image would be in another format.
type Measurement struct {
	// Required is the file size of the converted image as qemu-img would write it.
	Required int64 `json:"required"`
	// FullyAllocated is the size once every cluster of the guest disk has been written.
	FullyAllocated int64 `json:"fully-allocated"`
	// Bitmaps is what the source's persistent dirty bitmaps would add; reported only when both
	// formats can hold them (qcow2 to qcow2), since QEMU 5.1.
	Bitmaps int64 `json:"bitmaps"`
}

// Measure asks qemu-img how big the image at path, in format, would be converted to outFormat
// (uncompressed).
func Measure(ctx context.Context, path, format, outFormat string) (Measurement, error) {
	what := fmt.Sprintf("measure %s as %s", path, outFormat)
	if err := needFormat(what, format); err != nil {
		return Measurement{}, err
	}
	return query(ctx, what, decodeMeasure, "measure", "--output=json", "-f", format, "-O", outFormat, path)
}

func decodeMeasure(out []byte) (Measurement, error) {
	var m struct {
		Required       *int64 `json:"required"`
		FullyAllocated *int64 `json:"fully-allocated"`
		Bitmaps        int64  `json:"bitmaps"`
	}
	if err := json.Unmarshal(out, &m); err != nil {
		return Measurement{}, fmt.Errorf("decode qemu-img measure: %w", err)
	}
	if m.Required == nil || m.FullyAllocated == nil {
		return Measurement{}, errors.New("decode qemu-img measure: no required or fully-allocated size")
	}
	return Measurement{Required: *m.Required, FullyAllocated: *m.FullyAllocated, Bitmaps: m.Bitmaps}, nil
}
