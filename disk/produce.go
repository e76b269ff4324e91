package disk

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"os"
	"path/filepath"

	"github.com/ingot-build/ingot/internal/digest"
	"github.com/ingot-build/ingot/internal/qemuimg"
	"golang.org/x/sync/errgroup"
)

// Produce writes one output of the disk image src (any format qemu-img reads; a backing chain is
// flattened, never referenced) into dir and returns the files it made, main file first. srcFormat
// is src's format, passed to every qemu-img call; empty, it is probed once (qemuimg.Probe), which
// is for a file the user named (`ingot convert`), never for a disk a guest wrote.
//
// Everything is made in a private work dir inside dir and verified there: qemu-img check for the
// formats that have one, format, virtual size and no backing file; a compressed raw decompressed
// (checksums included) and counted as it is written; a raw image's sparseness; a bmap parsed back
// and its own checksum checked; an OVA re-read member by member. An empty output is an error.
// Only then are the files renamed into place, so dir never holds half an output, and on error it
// holds nothing new. The sha256 of each file is taken while it is written where Produce writes it
// (compressed raw, bmap, OVA) and by reading it back, alongside qemu-img check, where qemu-img
// writes it. Files are not fsynced: that is for whoever publishes the whole set (a build's
// outputs appear together or not at all), and syncing each one would cost its writeback.
//
// progress, if not nil, is called with how far the whole output has got; total is fixed for the
// call, and done never goes back. The stages (convert, shrink, compress, hash) share total in
// rough proportion to the time they take.
//
// Produce may run concurrently for several specs on the same src and dir, as long as their files
// (OutputSpec.Files) differ.
func Produce(ctx context.Context, src, srcFormat string, spec OutputSpec, dir string, progress func(done, total int64)) ([]Artifact, error) {
	spec = spec.withDefaults()
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	what := spec.Files()[0]
	var info qemuimg.ImageInfo
	var err error
	if srcFormat == "" {
		info, err = qemuimg.Probe(ctx, src)
	} else {
		info, err = qemuimg.Info(ctx, src, srcFormat)
	}
	if err != nil {
		return nil, fmt.Errorf("produce %s: %w", what, err)
	}
	if info.VirtualSize <= 0 {
		return nil, fmt.Errorf("produce %s: %s has a virtual size of %d bytes", what, src, info.VirtualSize)
	}
	work, err := os.MkdirTemp(dir, "."+spec.Name+"."+spec.Format+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("produce %s: make a work dir: %w", what, err)
	}
	defer os.RemoveAll(work)

	p := &producer{src: src, srcFormat: info.Format, spec: spec, size: info.VirtualSize, work: work}
	var files []staged
	switch spec.Format {
	case "qcow2", "vmdk", "vhdx":
		p.meter = newMeter(progress, p.size, p.size/4)
		files, err = p.image(ctx)
	case "raw":
		p.meter = newMeter(progress, p.rawWeights()...)
		files, err = p.raw(ctx)
	case "ova":
		p.meter = newMeter(progress, p.size, p.size/4, p.size/4)
		files, err = p.ova(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("produce %s: %w", what, err)
	}
	arts, err := publish(dir, files)
	if err != nil {
		return nil, fmt.Errorf("produce %s: %w", what, err)
	}
	p.meter.finish()
	return arts, nil
}

// producer is one Produce call.
type producer struct {
	src       string
	srcFormat string // as qemuimg.Probe found it, passed on so no later step probes again
	spec      OutputSpec
	size      int64 // the source's virtual size
	work      string
	meter     *meter
}

// staged is a verified file in the work dir, and what it will be once published.
type staged struct {
	tmp string
	art Artifact // Path is the final file name, without dir
}

// vmdkOptions are the qemu-img options of every vmdk ingot writes. adapter_type=lsilogic is
// what VMware products default to for a Linux guest and what the OVA's SCSI controller is; the
// ide default would make Workstation attach the disk to an IDE bus. hwversion=10 (ESXi 5.5,
// Workstation 10 and later) matches the OVA's vmx-10: qemu's default, 4, is from 2004 and
// newer vSphere tools warn about it.
func vmdkOptions(subformat, adapter string) []string {
	return []string{"subformat=" + subformat, "adapter_type=" + adapter, "hwversion=10"}
}

// image makes a qcow2, vmdk or vhdx: one qemu-img convert, then check and hash.
func (p *producer) image(ctx context.Context) ([]staged, error) {
	s := p.spec
	name := s.Files()[0]
	out := filepath.Join(p.work, name)
	co := qemuimg.ConvertOptions{InputFormat: p.srcFormat, Format: s.Format, Progress: p.meter.next()}
	switch s.Format {
	case "qcow2":
		switch s.Compress {
		case "zlib":
			co.Compress, co.Options = true, []string{"compression_type=zlib"}
		case "zstd": // since QEMU 5.1
			co.Compress, co.Options = true, []string{"compression_type=zstd"}
		}
	case "vmdk":
		co.Options = vmdkOptions(s.Subformat, "lsilogic")
	case "vhdx":
		co.Options = []string{"subformat=dynamic"}
	}
	if err := qemuimg.Convert(ctx, p.src, out, co); err != nil {
		return nil, err
	}
	sum, size, err := p.checkAndHash(ctx, out, s.Format)
	if err != nil {
		return nil, err
	}
	return []staged{{tmp: out, art: Artifact{Path: name, Format: s.Format, Size: size, SHA256: sum}}}, nil
}

// checkAndHash verifies an image qemu-img wrote and hashes it, both at once: qemu-img check
// reads the metadata while the hash reads everything, and both read from the page cache.
func (p *producer) checkAndHash(ctx context.Context, path, format string) (sum string, size int64, err error) {
	report := p.meter.nextBytes()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.verifyImage(gctx, path, format) })
	g.Go(func() error {
		var err error
		sum, size, err = digest.File(gctx, path, report)
		return err
	})
	return sum, size, g.Wait()
}

// verifyImage checks an image qemu-img wrote: qemu-img check (no corruption, no leak), then that
// it is the whole disk, and standalone. That it is the format asked for is checked by both: they
// open it as that format (-f), which fails on anything else.
func (p *producer) verifyImage(ctx context.Context, path, format string) error {
	if _, err := qemuimg.Check(ctx, path, format); err != nil {
		return err
	}
	info, err := qemuimg.Info(ctx, path, format)
	if err != nil {
		return err
	}
	switch {
	case info.VirtualSize < p.size: // a format may round the size up to its own unit, never down
		return fmt.Errorf("verify %s: its virtual size is %d bytes, the source's %d", path, info.VirtualSize, p.size)
	case info.BackingFilename != "":
		return fmt.Errorf("verify %s: it has a backing file (%s)", path, info.BackingFilename)
	}
	return nil
}

// publish renames the staged files into dir. If one rename fails, the ones already done are
// removed again: an output appears whole or not at all.
func publish(dir string, files []staged) ([]Artifact, error) {
	arts := make([]Artifact, 0, len(files))
	for _, f := range files {
		if f.art.Size <= 0 {
			return nil, fmt.Errorf("%s is empty", f.art.Path)
		}
		final := filepath.Join(dir, f.art.Path)
		if err := os.Rename(f.tmp, final); err != nil {
			for _, a := range arts {
				os.Remove(a.Path)
			}
			return nil, fmt.Errorf("publish %s: %w", final, err)
		}
		a := f.art
		a.Path = final
		arts = append(arts, a)
	}
	return arts, nil
}

// hashingFile is a new file written through a buffer, hashed and counted as it is written, so
// the sha256 of what Produce writes itself costs no second read.
type hashingFile struct {
	f   *os.File
	bw  *bufio.Writer
	sum hash.Hash
	n   int64
}

func createHashing(path string) (*hashingFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	h := &hashingFile{f: f, sum: sha256.New()}
	h.bw = bufio.NewWriterSize(writerFunc(func(p []byte) (int, error) {
		n, err := f.Write(p)
		h.sum.Write(p[:n])
		h.n += int64(n)
		return n, err
	}), 1<<20)
	return h, nil
}

func (h *hashingFile) Write(p []byte) (int, error) { return h.bw.Write(p) }

// Close flushes and closes the file and returns its sha256 and size.
func (h *hashingFile) Close() (string, int64, error) {
	err := h.bw.Flush()
	if cerr := h.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", 0, fmt.Errorf("write %s: %w", h.f.Name(), err)
	}
	return hex.EncodeToString(h.sum.Sum(nil)), h.n, nil
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// meter turns the progress of successive stages into one (done, total) for the caller. Each
// stage gets a share of total (its weight) set up front, so total never changes.
type meter struct {
	fn      func(done, total int64)
	weights []int64
	total   int64
	base    int64 // where the current stage starts
	stage   int   // the next stage
	last    int64
	told    bool // whether last has been reported
}

func newMeter(fn func(done, total int64), weights ...int64) *meter {
	m := &meter{fn: fn, weights: weights}
	for _, w := range weights {
		m.total += w
	}
	return m
}

// next starts the next stage and returns its reporter of a fraction done.
func (m *meter) next() func(fraction float64) {
	if m.stage > 0 {
		m.base += m.weights[m.stage-1]
	}
	w := int64(0)
	if m.stage < len(m.weights) {
		w = m.weights[m.stage]
	}
	m.stage++
	base := m.base
	m.emit(base)
	return func(f float64) {
		m.emit(base + int64(min(max(f, 0), 1)*float64(w)))
	}
}

// nextBytes is next for a stage that counts bytes out of a total.
func (m *meter) nextBytes() func(done, of int64) {
	report := m.next()
	return func(done, of int64) {
		if of > 0 {
			report(float64(done) / float64(of))
		}
	}
}

func (m *meter) emit(done int64) {
	if m == nil || m.fn == nil || done < m.last || (done == m.last && m.told) {
		return
	}
	m.last, m.told = done, true
	m.fn(done, m.total)
}

func (m *meter) finish() { m.emit(m.total) }
