// Package flash writes a build's raw output onto a block device (an SD card, an eMMC, a USB disk)
// or into an image file: `ingot flash IMAGE DEVICE`. It is bmaptool's BmapCopy in Go, with the
// safety of gokrazy's installer:
//
//   - Data only. With a bmap (bmap-tools' format 2.0, ingot's or bmaptool's) only the mapped
//     ranges are written, and each range's checksum is checked on the decompressed bytes as they
//     go to the target: a mismatch stops the flash before the next range. Without a bmap every
//     byte is written, except that zero blocks become holes in a regular file target.
//   - No temporary file: zstd and xz are decompressed as a stream, straight onto the target.
//   - Refusals first. Prepare reads the image, the bmap and the target, and refuses a device that
//     is mounted, holds a mounted partition, swap or the host's root, is held by a device stacked
//     on it, or is smaller than the image, and a named bmap that cannot be read. Nothing is
//     written until Write, which checks again once it holds the device exclusively (O_EXCL).
//   - Finish. fsync, then BLKFLSBUF (the block device's cache written and dropped, so a read-back
//     sees the device) and BLKRRPART (the kernel re-reads the new partition table).
//
// The lifecycle is Prepare (look, refuse, nothing written) → the caller confirms with the user,
// using Target.Describe → Write.
package flash

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/ingot-build/ingot/internal/bmap"
	"github.com/ingot-build/ingot/internal/progress"
)

// Options say how to flash. The zero value looks for a bmap beside the image, does not read the
// target back, and looks at the running host.
type Options struct {
	// Bmap is the bmap to use; "" looks beside the image (NAME.raw.bmap, IMAGE.bmap).
	Bmap string
	// NoBmap writes the whole image even when a bmap is beside it.
	NoBmap bool
	// Verify reads back what was written, after it has been synced, and checks it.
	Verify bool
	// System is where mounts, swap and block devices are read from; the zero value is Host.
	System System
	// Log gets what a user would want to know before the flash (the bmap found beside the image,
	// a decompression pass to learn its size); nil discards it.
	Log *slog.Logger

	goDecoders bool // decompress with klauspost/compress and ulikunitz/xz even when the zstd and xz tools are there (tests)
}

// Plan is a flash that has passed every check and not yet written anything.
type Plan struct {
	Image  *Image
	Target *Target
	opts   Options
}

// Prepare opens the image and its bmap and inspects the target, and refuses (ErrRefused) a
// dangerous or unsuitable one. It writes nothing. For a compressed image without a bmap going onto
// a block device it decompresses the image once to learn its size: a target too small for it must
// be refused before the first byte, and neither format has to record the size.
func Prepare(ctx context.Context, image, target string, o Options) (*Plan, error) {
	if o.System == (System{}) {
		o.System = Host
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	img, err := openImage(image, o.Bmap, o.NoBmap)
	if err != nil {
		return nil, err
	}
	if img.BmapPath != "" && o.Bmap == "" {
		o.Log.Info("found a bmap beside the image", "bmap", img.BmapPath)
	}
	t, err := o.System.Inspect(target)
	if err != nil {
		return nil, err
	}
	if t.Exists || t.Block {
		if same, err := sameFile(image, target); err != nil || same {
			return nil, errors.Join(err, fmt.Errorf("%w: the target %s is the image itself", ErrRefused, target))
		}
	}
	if t.Block {
		if err := o.System.InUse(t.Name); err != nil {
			return nil, fmt.Errorf("%s (%s): %w", target, t.Name, err)
		}
		if img.Size < 0 {
			o.Log.Info("no bmap: decompressing the image once to learn its size", "image", image)
			if img.Size, err = countImage(ctx, img, o.goDecoders); err != nil {
				return nil, err
			}
		}
		if t.Size < img.Size {
			return nil, fmt.Errorf("%w: %s (%s) is %s (%d bytes), smaller than the image's %s (%d bytes)",
				ErrRefused, target, t.Name, progress.Bytes(t.Size), t.Size, progress.Bytes(img.Size), img.Size)
		}
	}
	return &Plan{Image: img, Target: t, opts: o}, nil
}

func sameFile(a, b string) (bool, error) {
	sa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	sb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(sa, sb), nil
}

// countImage decompresses the image and counts its bytes.
func countImage(ctx context.Context, img *Image, goDecoders bool) (int64, error) {
	s, err := img.open(ctx, goDecoders)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	n, err := io.CopyBuffer(io.Discard, s, make([]byte, 1<<20))
	if err != nil {
		return 0, fmt.Errorf("decompress %s: %w", img.Path, err)
	}
	return n, nil
}

// ToWrite is how many bytes the flash will write at most: the bmap's mapped bytes, or the whole
// image (fewer when zero blocks become holes in a file), or -1 when that is not known yet.
func (p *Plan) ToWrite() int64 {
	if p.Image.Bmap != nil {
		return p.Image.Bmap.MappedBytes()
	}
	return p.Image.Size
}

// Result is what a flash did.
type Result struct {
	ImageSize int64
	Written   int64 // bytes written to the target
	// Elapsed is the time from the first byte read to the last one synced onto the target.
	Elapsed  time.Duration
	Verified bool // read back and checked (Options.Verify)
	// Warnings are what went wrong without failing the flash (a partition table not re-read).
	Warnings []string
}

// Rate is the flash's throughput: bytes written per second, sync included.
func (r *Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Written) / r.Elapsed.Seconds()
}

// Saved is the time a full copy of the image would have spent writing the bytes this flash did not
// write (unmapped or zero), at the rate this one measured.
func (r *Result) Saved() time.Duration {
	rate := r.Rate()
	if rate <= 0 {
		return 0
	}
	return time.Duration(float64(r.ImageSize-r.Written) / rate * float64(time.Second))
}

// ErrChecksum marks data that is not what the bmap says: a range of the image while flashing, or
// a range read back from the target with Verify.
var ErrChecksum = errors.New("checksum mismatch")

// chunkSize is how much is read, hashed and written at a time, and chunks how many are in flight
// between the reader and the writer.
const (
	chunkSize = 1 << 20
	chunks    = 4
	// writebackEvery is how much is written between starts of writeback.
	writebackEvery = 32 << 20
)

// extent is a run of the target that was written, and its checksum, for Verify.
type extent struct {
	off, n int64
	sum    string
}

// chunk is bytes of the image to write at off; runs are the parts of buf that are written (all of
// it, except zero blocks skipped on a file target).
type chunk struct {
	buf  []byte
	off  int64
	runs [][2]int
	// rng is the index of the bmap range the chunk is part of (-1 without a bmap), and last
	// marks the range's last chunk, after which its checksum is compared.
	rng  int
	last bool
}

// Write flashes the image onto the target. The target is opened exclusively and checked again,
// since a device may have been mounted (or an SD card swapped) since Prepare. rep shows the bytes
// written; nil shows nothing.
func (p *Plan) Write(ctx context.Context, rep progress.Reporter) (res *Result, err error) {
	if rep == nil {
		rep = progress.Nop()
	}
	f, err := p.openTarget()
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", p.Target.Path, cerr)
		}
		if err != nil && !p.Target.Block && !p.Target.Exists {
			// A file this flash created holds no image: leave nothing that looks like one.
			err = errors.Join(err, os.Remove(p.Target.Path))
		}
	}()
	src, err := p.Image.open(ctx, p.opts.goDecoders)
	if err != nil {
		return nil, err
	}
	defer src.Close()

	res = &Result{ImageSize: p.Image.Size}
	tr := rep.Start("flash "+p.Target.Path, p.ToWrite())
	start := time.Now()
	exts, err := p.copy(ctx, src, f, tr, res)
	if err == nil {
		err = p.sync(f)
	}
	res.Elapsed = time.Since(start)
	tr.Done(err)
	if err != nil {
		return nil, err
	}
	res.ImageSize = p.Image.Size // known now, if it was not before
	if p.opts.Verify {
		tv := rep.Start("verify "+p.Target.Path, res.Written)
		err := verifyExtents(ctx, f, exts, p.newHash, tv)
		tv.Done(err)
		if err != nil {
			return nil, err
		}
		res.Verified = true
	}
	if p.Target.Block {
		// The kernel refuses BLKRRPART while a partition is open, and on a loop device made without
		// partition scanning (losetup -P): the image is written either way, so this is a warning.
		if err := ioctl(f, unix.BLKRRPART); err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("the kernel did not re-read the partition table of %s (BLKRRPART: %v); unplug and replug the device, or run partprobe", p.Target.Path, err))
		}
	}
	return res, nil
}

func (p *Plan) newHash() hash.Hash {
	if p.Image.Bmap != nil {
		return p.Image.Bmap.NewHash()
	}
	return newSHA256()
}

// openTarget opens the target for writing and reading back. A block device is opened with O_EXCL,
// which for a block device is the kernel's exclusive claim: it fails while the device is mounted
// or held, and while it is open so, nothing can mount it. Then it is checked again: still the same
// device, still not in use, still large enough. A regular file is created or truncated, then
// extended to the image's size as one hole.
func (p *Plan) openTarget() (*os.File, error) {
	t := p.Target
	if !t.Block {
		f, err := os.OpenFile(t.Path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open the target: %w", err)
		}
		// Truncate to nothing first: the old contents must not show through the image's holes.
		err = f.Truncate(0)
		if err == nil && p.Image.Size > 0 {
			err = f.Truncate(p.Image.Size)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("size the target %s: %w", t.Path, err)
		}
		return f, nil
	}
	f, err := os.OpenFile(t.Path, os.O_RDWR|unix.O_EXCL, 0)
	if errors.Is(err, unix.EBUSY) {
		if why := p.opts.System.InUse(t.Name); why != nil {
			return nil, fmt.Errorf("%s (%s): %w", t.Path, t.Name, why)
		}
		return nil, fmt.Errorf("%w: %s (%s) is in use: the kernel refuses to open it exclusively (mounted, swap, or held by another device)", ErrRefused, t.Path, t.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("open the target: %w", err)
	}
	fail := func(err error) (*os.File, error) { f.Close(); return nil, err }
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fail(fmt.Errorf("look at the target: %w", err))
	}
	if dev := fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)); dev != t.DevNum {
		return fail(fmt.Errorf("%w: %s is now device %s, not the %s (%s) that was checked", ErrRefused, t.Path, dev, t.DevNum, t.Name))
	}
	if err := p.opts.System.InUse(t.Name); err != nil {
		return fail(fmt.Errorf("%s (%s): %w", t.Path, t.Name, err))
	}
	size, err := deviceSize(f)
	if err != nil {
		return fail(err)
	}
	if size < p.Image.Size {
		return fail(fmt.Errorf("%w: %s (%s) is now %d bytes, smaller than the image's %d", ErrRefused, t.Path, t.Name, size, p.Image.Size))
	}
	return f, nil
}

// copy reads the image on one goroutine (decompressing, finding zero blocks), checks the bmap's
// checksums on a second, and writes on a third, a few chunks apart, so that the decoder, the
// hash and the device work at once (bmaptool runs its decompressor as a process of its own and
// hashes apart from its writer thread for the same reason). A range's last chunk is written only
// once the range's checksum matched, and nothing after it otherwise. It returns what was written,
// with checksums when Verify will need them.
func (p *Plan) copy(ctx context.Context, src stream, f *os.File, tr progress.Tracker, res *Result) ([]extent, error) {
	g, ctx := errgroup.WithContext(ctx)
	free := make(chan []byte, chunks)
	for range chunks {
		free <- make([]byte, chunkSize)
	}
	full := make(chan chunk, chunks)
	checked := make(chan chunk, chunks)
	var exts []extent
	g.Go(func() error {
		defer close(full)
		r := reader{ctx: ctx, src: src, free: free, full: full}
		var err error
		if p.Image.Bmap != nil {
			exts, err = r.mapped(p.Image)
		} else {
			exts, err = r.whole(p.Image, !p.Target.Block, p.opts.Verify)
		}
		if err != nil {
			return err
		}
		if !p.Target.Block && p.Image.Size < 0 { // a compressed image without a bmap onto a file
			p.Image.Size = r.pos
			return f.Truncate(r.pos) // the image's trailing zeros, as a hole
		}
		return nil
	})
	g.Go(func() error {
		defer close(checked)
		return checkSums(ctx, p.Image.Bmap, full, checked)
	})
	g.Go(func() error {
		var unsynced int64
		for c := range checked {
			for _, run := range c.runs {
				if _, err := f.WriteAt(c.buf[run[0]:run[1]], c.off+int64(run[0])); err != nil {
					return fmt.Errorf("write to %s at byte %d: %w", p.Target.Path, c.off+int64(run[0]), err)
				}
				n := int64(run[1] - run[0])
				res.Written += n
				unsynced += n
				tr.Add(n)
			}
			free <- c.buf[:cap(c.buf)]
			if unsynced >= writebackEvery {
				// Start writing back what is written so far, without waiting for it: the
				// device works while the image decodes, rather than all at the final sync
				// (bmaptool syncs as it goes for the same reason). Advice only: an error
				// here is one the final sync reports.
				_ = unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
				unsynced = 0
			}
		}
		return nil
	})
	err := g.Wait()
	return exts, err
}

// checkSums passes chunks from in to out, hashing those of each bmap range and comparing the
// range's checksum before its last chunk goes on: a mismatch stops the flash there. Without a
// bmap it only passes them on.
func checkSums(ctx context.Context, m *bmap.Map, in <-chan chunk, out chan<- chunk) error {
	var h hash.Hash
	cur := -1
	for c := range in {
		if m != nil && c.rng >= 0 {
			if c.rng != cur {
				h, cur = m.NewHash(), c.rng
			}
			h.Write(c.buf)
			if c.last {
				rg := m.Ranges[c.rng]
				if got := hex.EncodeToString(h.Sum(nil)); got != rg.SHA256 {
					off, n := m.Span(rg)
					return fmt.Errorf("%w in bmap range %d (blocks %d-%d, bytes %d-%d): the image's %s is %s, the bmap says %s; stopped before the rest of the image",
						ErrChecksum, c.rng, rg.First, rg.Last, off, off+n-1, m.ChecksumType, got, rg.SHA256)
				}
			}
		}
		select {
		case out <- c:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// reader hands out the image in chunks, in order.
type reader struct {
	ctx  context.Context
	src  stream
	free chan []byte
	full chan chunk
	pos  int64 // how far into the image
}

// next reads the next n bytes (at most chunkSize) of the image into a free buffer.
func (r *reader) next(n int) ([]byte, error) {
	var buf []byte
	select {
	case buf = <-r.free:
	case <-r.ctx.Done():
		return nil, r.ctx.Err()
	}
	k, err := io.ReadFull(r.src, buf[:n])
	r.pos += int64(k)
	if err != nil {
		if errors.Is(err, io.EOF) && k == 0 {
			return buf[:0], io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return buf[:k], io.EOF
		}
		return nil, fmt.Errorf("read the image at byte %d: %w", r.pos, err)
	}
	return buf[:k], nil
}

func (r *reader) send(c chunk) error {
	select {
	case r.full <- c:
		return nil
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
}

// mapped hands out the ranges of the bmap and checks each one's checksum once it has been read,
// before reading the next: a mismatch stops the flash there. The image must then end where the
// bmap says: more or less of it means the bmap is another image's.
func (r *reader) mapped(img *Image) ([]extent, error) {
	m := img.Bmap
	exts := make([]extent, 0, len(m.Ranges))
	for i, rg := range m.Ranges {
		off, n := m.Span(rg)
		if err := r.src.skip(off - r.pos); err != nil {
			return nil, fmt.Errorf("read the image up to bmap range %d (byte %d): %w", i, off, err)
		}
		r.pos = off
		for left := n; left > 0; {
			buf, err := r.next(int(min(left, chunkSize)))
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("the image ends at byte %d, inside bmap range %d (blocks %d-%d); the bmap says %d bytes: is it another image's?", r.pos, i, rg.First, rg.Last, m.ImageSize)
			}
			if err != nil {
				return nil, err
			}
			left -= int64(len(buf))
			// checkSums hashes the range as it passes and compares at its last chunk.
			if err := r.send(chunk{buf: buf, off: r.pos - int64(len(buf)), runs: [][2]int{{0, len(buf)}}, rng: i, last: left == 0}); err != nil {
				return nil, err
			}
		}
		exts = append(exts, extent{off: off, n: n, sum: rg.SHA256})
	}
	if img.Compression == "" {
		return exts, nil // a raw file's size was checked against the bmap's
	}
	// The rest of a compressed image: zeros, if the bmap is the image's. Decoding them is cheap
	// (a zstd output holds them as RLE blocks) and tells a wrong bmap from a right one.
	if err := r.src.skip(m.ImageSize - r.pos); err != nil {
		return nil, fmt.Errorf("the image ends before the %d bytes its bmap says: %w", m.ImageSize, err)
	}
	r.pos = m.ImageSize
	if n, err := io.ReadFull(r.src, make([]byte, 1)); n > 0 || !errors.Is(err, io.EOF) {
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("read the image's end: %w", err)
		}
		return nil, fmt.Errorf("the image is longer than the %d bytes its bmap says: is the bmap another image's?", m.ImageSize)
	}
	return exts, nil
}

// zeroBlock is the granularity at which zeros are skipped on a file target: the block size of
// the filesystems images live on, so that each skipped block is a hole.
const zeroBlock = 4096

var zeros = make([]byte, zeroBlock)

// whole hands out the whole image; with skipZeros (a file target), without its zero blocks, which
// stay holes in the file. With sums it hashes each run of what is written, for Verify.
func (r *reader) whole(img *Image, skipZeros, sums bool) ([]extent, error) {
	var exts []extent
	var h hash.Hash
	cur := extent{off: -1}
	closeExtent := func() {
		if cur.off >= 0 {
			if h != nil {
				cur.sum = hex.EncodeToString(h.Sum(nil))
			}
			exts = append(exts, cur)
		}
		cur = extent{off: -1}
	}
	for {
		buf, err := r.next(chunkSize)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		off := r.pos - int64(len(buf))
		var runs [][2]int
		for i := 0; i < len(buf); i += zeroBlock {
			end := min(i+zeroBlock, len(buf))
			if skipZeros && slices.Equal(buf[i:end], zeros[:end-i]) {
				closeExtent()
				continue
			}
			if cur.off < 0 {
				cur = extent{off: off + int64(i)}
				if sums {
					h = newSHA256()
				}
			}
			cur.n += int64(end - i)
			if h != nil {
				h.Write(buf[i:end])
			}
			if len(runs) > 0 && runs[len(runs)-1][1] == i {
				runs[len(runs)-1][1] = end
			} else {
				runs = append(runs, [2]int{i, end})
			}
		}
		if len(buf) > 0 || errors.Is(err, io.EOF) {
			if serr := r.send(chunk{buf: buf, off: off, runs: runs, rng: -1}); serr != nil {
				return nil, serr
			}
		}
		if errors.Is(err, io.EOF) {
			closeExtent()
			if img.Size >= 0 && r.pos != img.Size {
				return nil, fmt.Errorf("the image gave %d bytes, expected %d", r.pos, img.Size)
			}
			return exts, nil
		}
	}
}

// sync makes what was written durable: fsync, then for a block device BLKFLSBUF, which writes
// and drops the kernel's cache of the device, so that a read-back (Verify) and whatever reads the
// device next see the device; for a file, the page cache is dropped for the same reason.
func (p *Plan) sync(f *os.File) error {
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", p.Target.Path, err)
	}
	if p.Target.Block {
		if err := ioctl(f, unix.BLKFLSBUF); err != nil {
			return fmt.Errorf("flush the buffers of %s (BLKFLSBUF): %w", p.Target.Path, err)
		}
		return nil
	}
	// Advice, not a promise: a failure only means a read-back may come from memory.
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	return nil
}

// ioctl makes an ioctl request that takes no argument.
func ioctl(f *os.File, req uint) error {
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), uintptr(req), 0); errno != 0 {
		return errno
	}
	return nil
}

// verifyExtents reads each written extent back from f and checks its checksum.
func verifyExtents(ctx context.Context, f *os.File, exts []extent, newHash func() hash.Hash, tr progress.Tracker) error {
	buf := make([]byte, chunkSize)
	for _, e := range exts {
		h := newHash()
		for off := e.off; off < e.off+e.n; {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := int(min(int64(len(buf)), e.off+e.n-off))
			if _, err := f.ReadAt(buf[:n], off); err != nil {
				return fmt.Errorf("read back %s at byte %d: %w", f.Name(), off, err)
			}
			h.Write(buf[:n])
			tr.Add(int64(n))
			off += int64(n)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != e.sum {
			return fmt.Errorf("%w: read back, bytes %d-%d of %s have checksum %s, %s was written", ErrChecksum, e.off, e.off+e.n-1, f.Name(), got, e.sum)
		}
	}
	return nil
}
