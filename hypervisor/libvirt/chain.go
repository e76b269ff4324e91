package libvirt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"

	"github.com/ingot-build/ingot/internal/execx"
)

// chainImage is one image of a backing chain, as qemu-img info --backing-chain reports it.
type chainImage struct {
	Filename    string `json:"filename"`
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
	ActualSize  int64  `json:"actual-size"`
	// FullBackingFilename is the resolved backing file ("" for the last image).
	FullBackingFilename string `json:"full-backing-filename"`
}

// backingChain returns a local image and the images under it, top first. Every image in the
// chain has to go to the libvirt host: a qcow2 overlay is nothing without its base.
//
// Why the chain and not a flattened copy: the test cloud image's base is a compressed qcow2 of
// ~165 MB for a 2 GiB disk; flattening would decompress it (to ~1 GB of data) before sending.
// Uploaded as it is, the chain costs its compressed size once, the overlay is tiny, and only the
// overlay (the guest's writes) comes back.
func backingChain(ctx context.Context, path, format string) ([]chainImage, error) {
	if format == "raw" {
		// Raw images have no header, hence no backing file; and qemu-img need not run.
		return []chainImage{{Filename: path, Format: "raw"}}, nil
	}
	// -f: the top's format is known; never let qemu-img probe it. -U: another process (a
	// concurrent build on the same base) may hold a lock on it.
	out, err := execx.Output(ctx, "qemu-img", "info", "-U", "-f", format, "--backing-chain", "--output=json", path)
	if errors.Is(err, exec.ErrNotFound) {
		return nil, fmt.Errorf("read the backing chain of %s: %w; install it with: apt-get install qemu-utils", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("read the backing chain of %s: %w", path, err)
	}
	return parseChain(out)
}

func parseChain(out []byte) ([]chainImage, error) {
	var chain []chainImage
	if err := json.Unmarshal(out, &chain); err != nil {
		return nil, fmt.Errorf("qemu-img info --backing-chain: %w", err)
	}
	if len(chain) == 0 {
		return nil, errors.New("qemu-img info --backing-chain: no image")
	}
	for i, c := range chain {
		if c.Filename == "" || c.Format == "" {
			return nil, fmt.Errorf("qemu-img info --backing-chain: image %d has no file name or format", i)
		}
	}
	return chain, nil
}
