package disk

import (
	"fmt"

	"github.com/ingot-build/ingot/internal/bmap"
)

// A bmap (block map) lists the blocks of a raw image that hold data, with a checksum of each run,
// so bmaptool (or `ingot flash`) writes only those and verifies them as it goes. The format, its
// writer and its reader are internal/bmap's, shared with flash; what is here is what disk asks of
// the maps it writes.

// bmapBlockSize is the block size of the maps disk writes (bmap.BlockSize).
const bmapBlockSize = bmap.BlockSize

// bmapRange is a run of mapped blocks and the sha256 of their bytes.
type bmapRange = bmap.Range

// renderBmap writes the bmap of an image of size bytes whose mapped blocks are ranges.
func renderBmap(size int64, ranges []bmapRange) []byte { return bmap.Render(size, ranges) }

// verifyBmap checks a bmap the way bmaptool reads it before it trusts it (bmap.Parse), and that
// it describes an image of size bytes in blocks of bmapBlockSize, as every map disk writes does.
// The range checksums are not recomputed here: they were taken from the very bytes that went into
// the image, in the same pass, and bmaptool or `ingot flash` checks each one as it flashes.
func verifyBmap(data []byte, size int64) error {
	m, err := bmap.Parse(data)
	if err != nil {
		return err
	}
	if m.ImageSize != size || m.BlockSize != bmapBlockSize {
		return fmt.Errorf("bmap says %d bytes in %d blocks of %d, the image is %d bytes", m.ImageSize, m.BlocksCount, m.BlockSize, size)
	}
	if m.ChecksumType != "sha256" {
		return fmt.Errorf("bmap checksum type %q, want sha256", m.ChecksumType)
	}
	return nil
}
