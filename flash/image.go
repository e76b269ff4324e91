package flash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"

	"github.com/ingot-build/ingot/internal/bmap"
	"github.com/ingot-build/ingot/internal/ctxio"
	"github.com/ingot-build/ingot/internal/execx"
)

// Image is a raw image to flash: NAME.raw, NAME.raw.zst or NAME.raw.xz, and its bmap if it has
// one.
type Image struct {
	Path string
	// Compression is "zstd", "xz" or "" (raw), from the file's first bytes rather than its name.
	Compression string
	// Size is the raw image's size in bytes: the file's for a raw image, the bmap's for a
	// compressed one, or what a pass of decompression counted; -1 while unknown.
	Size     int64
	Bmap     *bmap.Map // nil without one
	BmapPath string
}

// Magic numbers: zstd (RFC 8878 §3.1.1), xz (the .xz file format, §2.1.1.1), and qcow2, which is
// refused with a hint rather than written onto a disk as if it were raw.
var (
	zstdMagic  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	xzMagic    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	qcow2Magic = []byte{'Q', 'F', 'I', 0xfb}
)

// openImage looks at the image and reads its bmap: the one named (bmapPath), or when none is
// named and noBmap is false the one beside it, as ingot writes it (NAME.raw.bmap beside
// NAME.raw.zst) or as bmaptool looks for it (IMAGE.bmap). A bmap that was named and cannot be
// read is a refusal: the user asked for that map, and a flash without it would write everything.
func openImage(path, bmapPath string, noBmap bool) (*Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open the image: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("open the image: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("open the image: %s is not a regular file", path)
	}
	head := make([]byte, 8)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read the image: %w", err)
	}
	head = head[:n]
	img := &Image{Path: path, Size: -1}
	switch {
	case bytes.HasPrefix(head, zstdMagic):
		img.Compression = "zstd"
	case bytes.HasPrefix(head, xzMagic):
		img.Compression = "xz"
	case bytes.HasPrefix(head, qcow2Magic):
		return nil, fmt.Errorf("%s is a qcow2 image; flash writes raw images (a raw output, or `ingot convert --to raw`)", path)
	default:
		img.Size = st.Size()
	}

	if noBmap {
		return img, nil
	}
	if bmapPath == "" {
		bmapPath = findBmap(path)
		if bmapPath == "" {
			return img, nil
		}
	}
	data, err := os.ReadFile(bmapPath)
	if err != nil {
		return nil, fmt.Errorf("%w: read the bmap: %w", ErrRefused, err)
	}
	m, err := bmap.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrRefused, bmapPath, err)
	}
	if img.Size >= 0 && img.Size != m.ImageSize {
		return nil, fmt.Errorf("%w: %s describes an image of %d bytes, %s has %d: it is another image's bmap", ErrRefused, bmapPath, m.ImageSize, path, img.Size)
	}
	img.Bmap, img.BmapPath, img.Size = m, bmapPath, m.ImageSize
	return img, nil
}

// findBmap returns the bmap beside the image at path, or "": IMAGE.bmap, then the name without
// its compression suffix, NAME.raw.bmap, which is where ingot writes the one bmap shared by
// NAME.raw.zst and NAME.raw.xz.
func findBmap(path string) string {
	cands := []string{path + ".bmap"}
	for _, ext := range []string{".zst", ".xz"} {
		if base, ok := strings.CutSuffix(path, ext); ok {
			cands = append(cands, base+".bmap")
		}
	}
	for _, c := range cands {
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() {
			return c
		}
	}
	return ""
}

// stream is the decompressed image as it is read: Read gives the raw image's bytes in order.
type stream interface {
	io.Reader
	// skip moves n bytes on without handing them out: a seek on a raw file, a read into nothing
	// otherwise.
	skip(n int64) error
	Close() error
}

// open starts reading the raw image: the file itself, klauspost/compress's zstd decoder, or for
// xz the xz tool (multithreaded, several times faster than Go) or ulikunitz/xz without it. No
// temporary file: the decompressed bytes go from the decoder to the target.
func (img *Image) open(ctx context.Context, goDecoders bool) (stream, error) {
	f, err := os.Open(img.Path)
	if err != nil {
		return nil, fmt.Errorf("open the image: %w", err)
	}
	switch img.Compression {
	case "":
		return &rawStream{f: f, ctx: ctx}, nil
	case "zstd":
		// The zstd tool where there is one: it decodes this image twice as fast as klauspost's
		// decoder here (2 GiB, mostly zeros: 0.46 s against 1.1 s), and the decoder is what a
		// flash waits on. Both check each frame's xxhash64.
		if _, err := exec.LookPath("zstd"); err == nil && !goDecoders {
			f.Close()
			return startTool(ctx, "zstd", zstdArgs, img.Path)
		}
		dec, err := zstd.NewReader(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("start the zstd decoder: %w", err)
		}
		return &readerStream{r: ctxio.Reader(ctx, dec), close: func() error { dec.Close(); return f.Close() }}, nil
	case "xz":
		if _, err := exec.LookPath("xz"); err == nil && !goDecoders {
			f.Close()
			return startTool(ctx, "xz", xzArgs, img.Path)
		}
		xr, err := xz.NewReader(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("start the xz decoder: %w", err)
		}
		return &readerStream{r: ctxio.Reader(ctx, xr), close: f.Close}, nil
	}
	f.Close()
	return nil, fmt.Errorf("compression %q", img.Compression)
}

// rawStream reads a raw image file, seeking over what is skipped: the holes of a sparse raw
// image between its bmap's ranges are never read.
type rawStream struct {
	f   *os.File
	ctx context.Context
}

func (s *rawStream) Read(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		return 0, err
	}
	return s.f.Read(p)
}

func (s *rawStream) skip(n int64) error {
	_, err := s.f.Seek(n, io.SeekCurrent)
	return err
}

func (s *rawStream) Close() error { return s.f.Close() }

// readerStream is a decoder's output.
type readerStream struct {
	r     io.Reader
	close func() error
	buf   []byte
}

func (s *readerStream) Read(p []byte) (int, error) { return s.r.Read(p) }

func (s *readerStream) skip(n int64) error {
	if s.buf == nil {
		s.buf = make([]byte, 1<<20)
	}
	for n > 0 {
		k, err := io.ReadFull(s.r, s.buf[:min(n, int64(len(s.buf)))])
		n -= int64(k)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

func (s *readerStream) Close() error { return s.close() }

// xzArgs make the xz tool decompress a file to stdout, with a thread per core where the file has
// several blocks (as ingot's raw.xz outputs have; multithreaded decompression since XZ Utils 5.4).
var xzArgs = []string{"-dc", "-T0", "--"}

// zstdArgs make the zstd tool decompress a file to stdout, quietly (no progress on stderr).
var zstdArgs = []string{"-dcq", "--"}

// startTool decompresses path with a decompression tool (xz, zstd), an owned child (execx.Start)
// that is killed when the flash stops early.
func startTool(ctx context.Context, tool string, args []string, path string) (stream, error) {
	cmd := exec.CommandContext(ctx, tool, append(slices.Clone(args), path)...)
	stderr := execx.NewTail(2 << 10)
	cmd.Stderr = stderr
	// A blocking pipe, unlike os.Pipe's: the reading goroutine then waits in read(2) rather than
	// in Go's poller, which costs an epoll round and a goroutine switch per 64 KiB the tool writes
	// (with the poller, ingot spent 1.7 s of system time on 2 GiB; bmaptool 0.3 s).
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("start %s: pipe: %w", execx.Quote(cmd.Args), err)
	}
	out, w := os.NewFile(uintptr(fds[0]), "|"+tool), os.NewFile(uintptr(fds[1]), tool+"|")
	// A 1 MiB pipe instead of 64 KiB: the tool and the flash then trade a chunk in one go, not
	// sixteen (zstd's 2 GiB here: 0.72 s through it, 0.85 to 1.5 s through the default). The
	// kernel may refuse (a lower fs.pipe-max-size); the default pipe works, only slower.
	_, _ = unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, chunkSize)
	cmd.Stdout = w
	wait, err := execx.Start(cmd)
	w.Close() // the tool has its copy: the pipe ends when the tool does
	if err != nil {
		out.Close()
		return nil, &execx.Error{Argv: cmd.Args, Err: err}
	}
	s := &toolStream{cmd: cmd, out: out, wait: wait, stderr: stderr, ctx: ctx}
	s.readerStream = readerStream{r: readFunc(s.readOut), close: s.finish}
	return s, nil
}

// toolStream is a decompression tool's output.
type toolStream struct {
	readerStream
	cmd    *exec.Cmd
	out    *os.File
	wait   func() error
	stderr *execx.Tail
	ctx    context.Context
	eof    bool
}

// readFunc is a function that is an io.Reader.
type readFunc func([]byte) (int, error)

func (f readFunc) Read(p []byte) (int, error) { return f(p) }

// readOut gives the tool's output; at its end it waits for the tool, so that a failure (a corrupt
// file, whose checksums both tools check) is the read's error rather than a short image.
func (s *toolStream) readOut(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := s.out.Read(p)
	if errors.Is(err, io.EOF) {
		s.eof = true
		if werr := s.wait(); werr != nil {
			return n, &execx.Error{Argv: s.cmd.Args, Stderr: s.stderr.String(), Err: werr}
		}
	}
	return n, err
}

// finish ends the tool: at once (its process group killed) if its output was not read to the end.
func (s *toolStream) finish() error {
	if !s.eof {
		_ = execx.KillGroup(s.cmd) // an error here is a group already gone
		_ = s.wait()               // killed: its status says only that
	}
	return s.out.Close()
}

func newSHA256() hash.Hash { return sha256.New() }
