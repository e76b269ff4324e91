package libvirt

import (
	"context"

	"github.com/ingot-build/ingot/internal/qemuimg"
)

// backingChain returns a local image and the images under it, top first. Every image in the
// chain has to go to the libvirt host: a qcow2 overlay is nothing without its base.
//
// Why the chain and not a flattened copy: the test cloud image's base is a compressed qcow2 of
// ~165 MB for a 2 GiB disk; flattening would decompress it (to ~1 GB of data) before sending.
// Uploaded as it is, the chain costs its compressed size once, the overlay is tiny, and only the
// overlay (the guest's writes) comes back.
func backingChain(ctx context.Context, path, format string) ([]qemuimg.ImageInfo, error) {
	if format == "raw" {
		// Raw images have no header, hence no backing file; and qemu-img need not run.
		return []qemuimg.ImageInfo{{Filename: path, Format: "raw"}}, nil
	}
	return qemuimg.BackingChain(ctx, path, format)
}
