package disk

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
)

// rawSink receives a raw image front to back: its data, and its holes as counts of zero bytes,
// so that a sink that can write zeros cheaply (a zstd RLE frame) does not have to be handed
// gigabytes of them.
type rawSink interface {
	data(p []byte) error
	hole(n int64) error
}

// scanChunk is how much is read at a time: big enough that syscalls do not matter, small enough
// to report progress often.
const scanChunk = 4 << 20

// scanRaw reads a sparse raw image once, in order, reading only its data (SEEK_DATA/SEEK_HOLE),
// and hands it to sink (nil: none). With bmap set it also hashes each run of mapped 4 KiB
// blocks and returns the runs, so the bmap costs no read of its own. report gets how far into
// the image the scan is.
func scanRaw(ctx context.Context, f *os.File, size int64, sink rawSink, bmap bool, report func(done int64)) ([]bmapRange, error) {
	spans, err := dataSpans(f, 0, size)
	if err != nil {
		return nil, err
	}
	if bmap {
		spans = blockSpans(spans, bmapBlockSize, size)
	}
	var ranges []bmapRange
	buf := make([]byte, scanChunk)
	var sum hash.Hash
	if bmap {
		sum = sha256.New()
	}
	pos := int64(0)
	for _, s := range spans {
		if sink != nil && s.Start > pos {
			if err := sink.hole(s.Start - pos); err != nil {
				return nil, fmt.Errorf("write the hole at %d: %w", pos, err)
			}
		}
		if sum != nil {
			sum.Reset()
		}
		for off := s.Start; off < s.End; {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			n := int(min(int64(len(buf)), s.End-off))
			if _, err := f.ReadAt(buf[:n], off); err != nil {
				return nil, fmt.Errorf("read %s at %d: %w", f.Name(), off, err)
			}
			if sink != nil {
				if err := sink.data(buf[:n]); err != nil {
					return nil, fmt.Errorf("write the data at %d: %w", off, err)
				}
			}
			if sum != nil {
				sum.Write(buf[:n])
			}
			off += int64(n)
			if report != nil {
				report(off)
			}
		}
		if bmap {
			ranges = append(ranges, bmapRange{
				First:  s.Start / bmapBlockSize,
				Last:   (s.End - 1) / bmapBlockSize,
				SHA256: hex.EncodeToString(sum.Sum(nil)),
			})
		}
		pos = s.End
	}
	if sink != nil && size > pos {
		if err := sink.hole(size - pos); err != nil {
			return nil, fmt.Errorf("write the hole at %d: %w", pos, err)
		}
	}
	if report != nil {
		report(size)
	}
	return ranges, nil
}

// writerSink hands everything, holes as real zeros, to an io.Writer: a hash of the whole image,
// or a compressor that has no cheaper way to say "zeros".
type writerSink struct {
	w     io.Writer
	zeros []byte
}

func newWriterSink(w io.Writer) *writerSink { return &writerSink{w: w, zeros: make([]byte, 1<<20)} }

func (s *writerSink) data(p []byte) error {
	_, err := s.w.Write(p)
	return err
}

func (s *writerSink) hole(n int64) error {
	for n > 0 {
		c := min(n, int64(len(s.zeros)))
		if _, err := s.w.Write(s.zeros[:c]); err != nil {
			return err
		}
		n -= c
	}
	return nil
}
