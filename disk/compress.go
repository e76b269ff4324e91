package disk

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os/exec"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/ingot-build/ingot/internal/execx"
)

// Compressed raw images (NAME.raw.zst, NAME.raw.xz) are made from one pass of Go over the sparse
// raw file, reading only its data (scanRaw), into an encoder: klauspost/compress for zstd, the xz
// tool (or ulikunitz/xz without it) for xz. Both formats allow a file to be several compressed streams one after
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

// xzSink compresses with ulikunitz/xz, a pure-Go LZMA2 encoder: one thread, CRC64 per block,
// holes as real zeros. It is slow (on text-like data about 1 MB/s, a fiftieth of the zstd sink;
// see BenchmarkXZ), so it is only the fallback for a host without the xz tool (xzToolSink).
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

// xzToolArgs make `xz` compress stdin to stdout: one thread per core (-T0; since XZ Utils 5.2,
// and multithreaded from a pipe too), the same level and check as xzSink. The output is one .xz
// stream of independent blocks of 3×dict = 24 MiB, each with its sizes in its header, which xz,
// bmaptool and ulikunitz/xz (the verification in decodedSize) all read.
var xzToolArgs = []string{"-T0", "-6", "--check=crc64", "-c"}

// xzStderrTail bounds the stderr of xz kept for an error: its message, not pages of it.
const xzStderrTail = 2 << 10

// xzToolSink compresses by piping the image, holes as real zeros, through the xz tool (XZ
// Utils, Debian's xz-utils), whose output goes to w. It is why a raw.xz costs minutes rather
// than an hour: liblzma is several times faster than ulikunitz/xz on one core and uses them all.
// xz is killed when ctx ends and when ingot dies (execx.Start).
type xzToolSink struct {
	*writerSink // to xz's stdin
	stdin       io.WriteCloser
	argv        []string
	ctx         context.Context
	stderr      *execx.Tail
	wait        func() error
	closed      bool
	err         error // Close's result
}

func startXZTool(ctx context.Context, w io.Writer) (*xzToolSink, error) {
	cmd := exec.CommandContext(ctx, "xz", xzToolArgs...)
	s := &xzToolSink{argv: cmd.Args, ctx: ctx, stderr: execx.NewTail(xzStderrTail)}
	cmd.Stdout = w
	cmd.Stderr = s.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", execx.Quote(cmd.Args), err)
	}
	if s.wait, err = execx.Start(cmd); err != nil {
		return nil, &execx.Error{Argv: cmd.Args, Err: err}
	}
	s.stdin = stdin
	s.writerSink = newWriterSink(stdin)
	return s, nil
}

func (s *xzToolSink) data(p []byte) error {
	if err := s.writerSink.data(p); err != nil {
		return s.fail(err)
	}
	return nil
}

func (s *xzToolSink) hole(n int64) error {
	if err := s.writerSink.hole(n); err != nil {
		return s.fail(err)
	}
	return nil
}

// fail turns a failed write to xz's stdin (EPIPE: xz has exited) into what xz said.
func (s *xzToolSink) fail(err error) error {
	if cerr := s.Close(); cerr != nil {
		return cerr
	}
	return fmt.Errorf("write to %s: %w", execx.Quote(s.argv), err)
}

// Close ends xz's input and waits for it to write the rest of its output and exit.
func (s *xzToolSink) Close() error {
	if s.closed {
		return s.err
	}
	s.closed = true
	cerr := s.stdin.Close()
	if err := s.wait(); err != nil {
		if s.ctx.Err() != nil {
			err = errors.Join(s.ctx.Err(), err)
		}
		s.err = &execx.Error{Argv: s.argv, Stderr: s.stderr.String(), Err: err}
	} else if cerr != nil {
		s.err = fmt.Errorf("end the input of %s: %w", execx.Quote(s.argv), cerr)
	}
	return s.err
}

// compressSink is a rawSink that has to be closed to finish its output.
type compressSink interface {
	rawSink
	Close() error
}

// newCompressSink returns the in-process encoder of kind writing to w.
func newCompressSink(kind string, w io.Writer) (compressSink, error) {
	switch kind {
	case "zstd":
		return newZstdSink(w)
	case "xz":
		return newXZSink(w)
	}
	return nil, fmt.Errorf("%w: compression %q", ErrUnsupported, kind)
}

// compressOptions say how compressRaw compresses. The zero value, which Produce uses, is the
// fastest way the host has.
type compressOptions struct {
	// goXZ makes xz outputs with ulikunitz/xz even when the xz tool is on PATH (for tests).
	goXZ bool
}

// useXZTool reports whether xz outputs are made by the xz tool rather than ulikunitz/xz.
func (o compressOptions) useXZTool() bool {
	if o.goXZ {
		return false
	}
	_, err := exec.LookPath("xz")
	return err == nil
}

// openCompressSink returns the sink compressRaw writes an image through to w, and what
// compresses it, in words for an error: for xz the xz tool when there is one, ulikunitz/xz
// otherwise; for zstd always klauspost/compress (as fast as `zstd -T0`, and its zero frames are
// cheaper than the tool's).
func openCompressSink(ctx context.Context, kind string, w io.Writer, o compressOptions) (compressSink, string, error) {
	how := kind
	if kind == "xz" {
		switch {
		case o.useXZTool():
			s, err := startXZTool(ctx, w)
			return s, "the xz tool", err
		case o.goXZ:
			how = "ulikunitz/xz"
		default:
			how = "ulikunitz/xz (no xz tool on PATH)"
		}
	}
	s, err := newCompressSink(kind, w)
	return s, how, err
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
