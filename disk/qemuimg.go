// Package disk owns what is done to disk images: qemu-img (create, info, convert, measure, check),
// the output formats, shrinking, bmap and OVA. Image formats are qemu-img's business: this package
// drives the real tool and never re-implements a format it handles.
package disk

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/ingot-build/ingot/internal/execx"
)

// QemuImg is the qemu-img binary that this build uses.
type QemuImg struct {
	Path    string
	Version string // e.g. "7.2.22"
}

var qemuImgVersion = regexp.MustCompile(`qemu-img version (\S+)`)

// FindQemuImg looks qemu-img up on PATH and asks it for its version.
func FindQemuImg(ctx context.Context) (QemuImg, error) {
	path, err := exec.LookPath("qemu-img")
	if err != nil {
		return QemuImg{}, fmt.Errorf("find qemu-img: %w; install it with: apt-get install qemu-utils", err)
	}
	out, err := execx.Output(ctx, path, "--version")
	if err != nil {
		return QemuImg{}, fmt.Errorf("ask qemu-img for its version: %w", err)
	}
	m := qemuImgVersion.FindSubmatch(out)
	if m == nil {
		return QemuImg{}, fmt.Errorf("ask qemu-img for its version: unexpected output %q", out)
	}
	return QemuImg{Path: path, Version: string(m[1])}, nil
}

// ImageInfo is the part of `qemu-img info --output=json` ingot uses.
type ImageInfo struct {
	Filename    string `json:"filename"`
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
	ActualSize  int64  `json:"actual-size"`
	BackingFile string `json:"backing-filename"`
}

// Info asks qemu-img what an image is. Format probing is safe here: ingot only probes files it
// verified by sha256 or made itself.
func Info(ctx context.Context, path string) (ImageInfo, error) {
	out, err := execx.Output(ctx, "qemu-img", "info", "--output=json", path)
	if err != nil {
		return ImageInfo{}, fmt.Errorf("inspect %s: %w", path, err)
	}
	var info ImageInfo
	if err := json.Unmarshal(out, &info); err != nil {
		return ImageInfo{}, fmt.Errorf("inspect %s: decode qemu-img info: %w", path, err)
	}
	return info, nil
}

// Create makes a blank image.
func Create(ctx context.Context, path, format string, size int64) error {
	if err := execx.Run(ctx, "qemu-img", "create", "-q", "-f", format, path, strconv.FormatInt(size, 10)); err != nil {
		return fmt.Errorf("create %s disk %s: %w", format, path, err)
	}
	return nil
}

// CreateOverlay makes a qcow2 overlay on a read-only base (the cached source image, never
// modified), grown to size.
func CreateOverlay(ctx context.Context, path, base, baseFormat string, size int64) error {
	abs, err := filepath.Abs(base)
	if err != nil {
		return err
	}
	if err := execx.Run(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-b", abs, "-F", baseFormat, path, strconv.FormatInt(size, 10)); err != nil {
		return fmt.Errorf("create the build disk on %s: %w", base, err)
	}
	return nil
}

// Check runs qemu-img check on a format that has one (qcow2, vmdk, vhdx…).
func Check(ctx context.Context, path, format string) error {
	if err := execx.Run(ctx, "qemu-img", "check", "-q", "-f", format, path); err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	return nil
}

// ConvertOptions are one qemu-img convert.
type ConvertOptions struct {
	// InputFormat is the source's format (-f); empty lets qemu-img probe it.
	InputFormat string
	Format      string   // output format
	Compress    bool     // -c (qcow2: zlib unless Options says otherwise)
	Options     []string // -o key=value
	// BackingFile makes the output an overlay on it (-B), holding only what differs from it:
	// the image store keeps a build as such a layer. It must have the content in's backing
	// chain has below its top.
	BackingFile, BackingFormat string
	// Progress, when set, is called with the fraction done (0 to 1) as qemu-img reports it (-p).
	Progress func(fraction float64)
}

// Convert writes in (any format qemu-img reads, backing chain flattened) to out.
func Convert(ctx context.Context, in, out string, o ConvertOptions) error {
	args := []string{"convert", "-O", o.Format}
	if o.InputFormat != "" {
		args = append(args, "-f", o.InputFormat)
	}
	if o.Progress != nil {
		args = append(args, "-p")
	}
	if o.Compress {
		args = append(args, "-c")
	}
	if len(o.Options) > 0 {
		args = append(args, "-o", strings.Join(o.Options, ","))
	}
	if o.BackingFile != "" {
		args = append(args, "-B", o.BackingFile, "-F", o.BackingFormat)
	}
	args = append(args, in, out)
	var err error
	if o.Progress != nil {
		err = runStreaming(ctx, &percentWriter{report: o.Progress}, "qemu-img", args...)
	} else {
		err = execx.Run(ctx, "qemu-img", args...)
	}
	if err != nil {
		return fmt.Errorf("convert %s to %s: %w", in, o.Format, err)
	}
	return nil
}

// Extent is one entry of `qemu-img map --output=json`: a run of the guest disk and where its
// content comes from.
type Extent struct {
	Start  int64 `json:"start"`
	Length int64 `json:"length"`
	// Depth is how far down the backing chain the content lives (0: the image itself).
	Depth   int  `json:"depth"`
	Present bool `json:"present"`
	Zero    bool `json:"zero"`
	Data    bool `json:"data"`
	// Offset is where the data sits in the file, for uncompressed clusters of formats that say.
	Offset *int64 `json:"offset,omitempty"`
}

// Map returns the guest disk's extents, the whole backing chain flattened.
func Map(ctx context.Context, path string) ([]Extent, error) {
	out, err := execx.Output(ctx, "qemu-img", "map", "--output=json", path)
	if err != nil {
		return nil, fmt.Errorf("map %s: %w", path, err)
	}
	return parseMap(out)
}

func parseMap(out []byte) ([]Extent, error) {
	var ext []Extent
	if err := json.Unmarshal(out, &ext); err != nil {
		return nil, fmt.Errorf("decode qemu-img map: %w", err)
	}
	return ext, nil
}

// Allocated is how many bytes of the guest disk hold data (not holes, not zero clusters), the
// backing chain included: what a conversion has to copy, and the yardstick for output sizes.
func Allocated(ctx context.Context, path string) (int64, error) {
	ext, err := Map(ctx, path)
	if err != nil {
		return 0, err
	}
	return dataBytes(ext), nil
}

func dataBytes(ext []Extent) int64 {
	var n int64
	for _, e := range ext {
		if e.Data && !e.Zero {
			n += e.Length
		}
	}
	return n
}

// Measurement is `qemu-img measure --output=json`: how big an image would be in another format.
type Measurement struct {
	// Required is the file size of the converted image as qemu-img would write it.
	Required int64 `json:"required"`
	// FullyAllocated is the size once every cluster of the guest disk has been written.
	FullyAllocated int64 `json:"fully-allocated"`
}

// Measure asks qemu-img how big path would be converted to format (uncompressed).
func Measure(ctx context.Context, path, format string) (Measurement, error) {
	out, err := execx.Output(ctx, "qemu-img", "measure", "--output=json", "-O", format, path)
	if err != nil {
		return Measurement{}, fmt.Errorf("measure %s as %s: %w", path, format, err)
	}
	var m Measurement
	if err := json.Unmarshal(out, &m); err != nil {
		return Measurement{}, fmt.Errorf("measure %s as %s: decode qemu-img measure: %w", path, format, err)
	}
	return m, nil
}
