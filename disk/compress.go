package disk

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Compressed raw images (NAME.raw.zst, NAME.raw.xz) are made in Go from the sparse raw file, reading
// only its data (scanRaw). Both formats allow a file to be several compressed streams one after
// the other, which every decoder (zstd and xz, bmaptool, the Go readers) reads as one: that lets
// a zstd output say "1.5 GiB of zeros" in a few kilobytes instead of compressing them.

// zstdZeroFrameMin is the shortest hole written as a zero frame of its own; shorter holes go
// through the encoder, which keeps its window across them.
const zstdZeroFrameMin = 1 << 20

// zstdBlockMax is the largest zstd block (RFC 8878 §3.1.1.2.3: min(window, 128 KiB)).
const zstdBlockMax = 128 << 10

// zstdSink compresses a raw image into zstd frames: the data with klauspost/compress's encoder,
// asynchronous (input and output on their own goroutines, GOMAXPROCS encoders), and each long
// hole as a frame of RLE blocks made by hand, which costs 4 bytes per 128 KiB of zeros and no
// CPU. Not WithConcurrentBlocks: on this kind of data it measured three times slower (22 against
// 61 MB/s at SpeedDefault on 2 cores), while the asynchronous encoder matches `zstd -3 -T0`.
type zstdSink struct {
	w     io.Writer
	enc   *zstd.Encoder
	open  bool // a data frame has been started and not closed
	zeros []byte
}

func newZstdSink(w io.Writer) (*zstdSink, error) {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderConcurrency(0), // GOMAXPROCS
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithEncoderCRC(true))
	if err != nil {
		return nil, fmt.Errorf("start the zstd encoder: %w", err)
	}
	return &zstdSink{w: w, enc: enc, zeros: make([]byte, 1<<20)}, nil
}

func (s *zstdSink) data(p []byte) error {
	if !s.open {
		s.enc.Reset(s.w)
		s.open = true
	}
	_, err := s.enc.Write(p)
	return err
}

func (s *zstdSink) hole(n int64) error {
	if n < zstdZeroFrameMin {
		for n > 0 {
			c := min(n, int64(len(s.zeros)))
			if err := s.data(s.zeros[:c]); err != nil {
				return err
			}
			n -= c
		}
		return nil
	}
	if err := s.endFrame(); err != nil {
		return err
	}
	return writeZstdZeroFrame(s.w, n)
}

func (s *zstdSink) endFrame() error {
	if !s.open {
		return nil
	}
	s.open = false
	return s.enc.Close()
}

// Close ends the last frame.
func (s *zstdSink) Close() error { return s.endFrame() }

// writeZstdZeroFrame writes a zstd frame (RFC 8878 §3.1.1) that decodes to n zero bytes: a header
// with a 128 KiB window and the content size, then RLE blocks of at most 128 KiB, no checksum.
func writeZstdZeroFrame(w io.Writer, n int64) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var hdr [14]byte
	binary.LittleEndian.PutUint32(hdr[0:4], 0xFD2FB528) // magic
	hdr[4] = 3 << 6                                     // Frame_Header_Descriptor: 8-byte content size, windowed, no checksum, no dictionary
	hdr[5] = (17 - 10) << 3                             // Window_Descriptor: 2^17 = 128 KiB
	binary.LittleEndian.PutUint64(hdr[6:14], uint64(n))
	if _, err := bw.Write(hdr[:]); err != nil {
		return err
	}
	for n > 0 {
		c := min(n, zstdBlockMax)
		n -= c
		h := uint32(c)<<3 | 1<<1 // Block_Type 1: RLE
		if n == 0 {
			h |= 1 // Last_Block
		}
		if _, err := bw.Write([]byte{byte(h), byte(h >> 8), byte(h >> 16), 0}); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// xzSink compresses with ulikunitz/xz, a pure-Go LZMA2 encoder (one thread, CRC64 per block).
// It is slow; see the package's benchmark for figures against `xz -T0`.
type xzSink struct {
	*writerSink
	xw *xz.Writer
}

func newXZSink(w io.Writer) (*xzSink, error) {
	xw, err := xz.WriterConfig{CheckSum: xz.CRC64}.NewWriter(w)
	if err != nil {
		return nil, fmt.Errorf("start the xz encoder: %w", err)
	}
	return &xzSink{writerSink: newWriterSink(xw), xw: xw}, nil
}

func (s *xzSink) Close() error { return s.xw.Close() }

// compressSink is a rawSink that has to be closed to finish its output.
type compressSink interface {
	rawSink
	Close() error
}

func newCompressSink(kind string, w io.Writer) (compressSink, error) {
	switch kind {
	case "zstd":
		return newZstdSink(w)
	case "xz":
		return newXZSink(w)
	}
	return nil, fmt.Errorf("%w: compression %q", ErrUnsupported, kind)
}

// decodedSize decompresses r and returns how many bytes it gives. The decoders check the
// format's own checksums as they go (zstd: xxhash64 of each data frame's content; xz: CRC64 of
// each block), so corrupt or truncated data is an error.
func decodedSize(ctx context.Context, kind string, r io.Reader) (int64, error) {
	var dr io.Reader
	switch kind {
	case "zstd":
		dec, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return 0, fmt.Errorf("start the zstd decoder: %w", err)
		}
		defer dec.Close()
		dr = dec
	case "xz":
		xr, err := xz.NewReader(r)
		if err != nil {
			return 0, err
		}
		dr = xr
	default:
		return 0, fmt.Errorf("%w: compression %q", ErrUnsupported, kind)
	}
	return io.CopyBuffer(&discardCounter{ctx: ctx}, dr, make([]byte, 1<<20))
}

// streamCheck decompresses an output while it is being written, on a goroutine of its own, so
// the verification costs a core for a while instead of a second pass after the compression
// (with zstd on 2 cores it was 15% of the output's time). It sees exactly the bytes that go into
// the file, in order.
type streamCheck struct {
	ch   chan []byte
	done chan struct{}
	n    int64
	err  error
}

func startStreamCheck(ctx context.Context, kind string) *streamCheck {
	c := &streamCheck{ch: make(chan []byte, 16), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.n, c.err = decodedSize(ctx, kind, &chanReader{ch: c.ch})
		for range c.ch { // a failed decoder must not block the writer
		}
	}()
	return c
}

// Write hands a copy of p to the decoder.
func (c *streamCheck) Write(p []byte) (int, error) {
	c.ch <- bytes.Clone(p)
	return len(p), nil
}

// Wait ends the stream and returns how many bytes it decompressed to.
func (c *streamCheck) Wait() (int64, error) {
	close(c.ch)
	<-c.done
	return c.n, c.err
}

// chanReader reads the byte slices sent on ch, then EOF when it is closed.
type chanReader struct {
	ch  chan []byte
	cur []byte
}

func (r *chanReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		b, ok := <-r.ch
		if !ok {
			return 0, io.EOF
		}
		r.cur = b
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// discardCounter swallows what is written to it, counting, and stops the copy when ctx ends.
type discardCounter struct {
	ctx    context.Context
	n      int64
	report func(int64)
}

func (d *discardCounter) Write(p []byte) (int, error) {
	if err := d.ctx.Err(); err != nil {
		return 0, err
	}
	d.n += int64(len(p))
	if d.report != nil {
		d.report(d.n)
	}
	return len(p), nil
}
