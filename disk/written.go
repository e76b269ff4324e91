package disk

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/ingot-build/ingot/internal/qemuimg"
)

// writtenChunk is how much ReadWritten hands over at a time.
const writtenChunk = 4 << 20

// ReadWritten reads the data a build wrote to the disk image at path (in format): every extent of
// the guest disk that an image of path's backing chain above below holds, in order of offset,
// zero extents left out; below "" (or not in the chain) means the whole chain. fn gets each
// chunk with its offset on the guest disk; contiguous extents arrive as contiguous chunks. It
// returns how many bytes it read.
//
// The secret scan reads a finished build disk this way: what the build wrote, free space
// included (a deleted file's blocks stay in an overlay until a trim discards whole clusters),
// and not the pinned base image the build started from, which it did not choose the bytes of.
func ReadWritten(ctx context.Context, path, format, below string, fn func(off int64, p []byte) error) (int64, error) {
	chain, err := qemuimg.BackingChain(ctx, path, format)
	if err != nil {
		return 0, err
	}
	depth := len(chain)
	if below != "" {
		for i, img := range chain {
			if samePath(img.Filename, below) {
				depth = i
				break
			}
		}
	}
	ext, err := qemuimg.Map(ctx, path, format)
	if err != nil {
		return 0, err
	}
	var spans []span
	for _, e := range ext {
		if !e.Data || e.Zero || e.Depth >= depth {
			continue
		}
		if n := len(spans); n > 0 && spans[n-1].End == e.Start {
			spans[n-1].End += e.Length
			continue
		}
		spans = append(spans, span{Start: e.Start, End: e.Start + e.Length})
	}
	if len(spans) == 0 {
		return 0, nil
	}
	img, err := openNBD(ctx, path, format)
	if err != nil {
		return 0, err
	}
	defer img.Close()
	buf := make([]byte, writtenChunk)
	var read int64
	for _, s := range spans {
		for off := s.Start; off < s.End; {
			if err := ctx.Err(); err != nil {
				return read, err
			}
			n := int(min(int64(len(buf)), s.End-off))
			if _, err := img.ReadAt(buf[:n], off); err != nil {
				return read, fmt.Errorf("read %s at %d: %w", path, off, err)
			}
			if err := fn(off, buf[:n]); err != nil {
				return read, err
			}
			read += int64(n)
			off += int64(n)
		}
	}
	return read, nil
}

// samePath says whether two paths name the same file, as qemu-img and ingot may spell it.
func samePath(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	ra, errA := filepath.EvalSymlinks(a)
	rb, errB := filepath.EvalSymlinks(b)
	return errA == nil && errB == nil && ra == rb
}
