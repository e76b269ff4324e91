package disk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// A raw image is a sparse file: the holes are the disk's unwritten (zero) blocks. Everything in
// this file reads only the data and treats holes as zeros without reading them, which is what
// makes raw outputs cheap: a 4 GiB disk with 1 GiB of data costs 1 GiB of reads.

// span is a byte range [Start, End) of a file.
type span struct{ Start, End int64 }

func (s span) len() int64 { return s.End - s.Start }

// dataSpans lists where f has data between off and end, as the filesystem reports it with
// SEEK_DATA and SEEK_HOLE (Linux ≥ 3.1). A filesystem without them reports all of it as data,
// which is still correct, just not sparse.
func dataSpans(f *os.File, off, end int64) ([]span, error) {
	fd := int(f.Fd())
	var out []span
	for off < end {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, syscall.ENXIO) { // nothing but a hole up to EOF
			break
		}
		if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EOPNOTSUPP) {
			return []span{{off, end}}, nil
		}
		if err != nil {
			return nil, fmt.Errorf("look for data in %s: %w", f.Name(), err)
		}
		if data >= end {
			break
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("look for holes in %s: %w", f.Name(), err)
		}
		hole = min(hole, end)
		out = append(out, span{data, hole})
		off = hole
	}
	return out, nil
}

// blockSpans rounds spans out to whole blocks of bs bytes (the last one stops at size) and merges
// the ones that then touch: the mapped ranges of a bmap.
func blockSpans(spans []span, bs, size int64) []span {
	var out []span
	for _, s := range spans {
		r := span{s.Start / bs * bs, min((s.End+bs-1)/bs*bs, size)}
		if n := len(out); n > 0 && r.Start <= out[n-1].End {
			out[n-1].End = max(out[n-1].End, r.End)
			continue
		}
		out = append(out, r)
	}
	return out
}

// allocatedBytes is how much of the host's disk a file takes (st_blocks), holes excluded.
func allocatedBytes(path string) (int64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", path, err)
	}
	return st.Blocks * 512, nil
}

// copySparse copies the data of src's range [off, off+n) to dst at dstOff, leaving holes where src
// has holes (dst must read as zeros there already: a new or truncated file). copy_file_range
// moves the bytes inside the kernel; where it cannot (across filesystems on old kernels), a
// buffer does.
func copySparse(ctx context.Context, dst, src *os.File, dstOff, off, n int64) error {
	spans, err := dataSpans(src, off, off+n)
	if err != nil {
		return err
	}
	for _, s := range spans {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := copyRange(ctx, dst, src, dstOff+(s.Start-off), s.Start, s.len()); err != nil {
			return fmt.Errorf("copy %s to %s: %w", src.Name(), dst.Name(), err)
		}
	}
	return nil
}

func copyRange(ctx context.Context, dst, src *os.File, dstOff, off, n int64) error {
	for n > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		roff, woff := off, dstOff
		c, err := unix.CopyFileRange(int(src.Fd()), &roff, int(dst.Fd()), &woff, int(min(n, 1<<30)), 0)
		if err != nil {
			if errors.Is(err, syscall.EXDEV) || errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.EINVAL) {
				_, err := io.Copy(io.NewOffsetWriter(dst, dstOff), io.NewSectionReader(src, off, n))
				return err
			}
			return err
		}
		if c == 0 {
			return io.ErrUnexpectedEOF
		}
		off, dstOff, n = off+int64(c), dstOff+int64(c), n-int64(c)
	}
	return nil
}
