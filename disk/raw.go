package disk

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ingot-build/ingot/internal/qemuimg"
)

// rawWeights are the shares of progress of a raw output's stages, in the order raw runs them.
// Only their ratios matter: they are rough shares of the time each stage takes.
func (p *producer) rawWeights() []int64 {
	w := []int64{p.size} // qemu-img convert
	if p.spec.Shrink == "minimal" {
		w = append(w, p.size/2) // e2fsck, resize2fs, copies
	}
	switch p.spec.Compress {
	case "zstd":
		w = append(w, p.size) // compress, and decompress to verify alongside
	case "xz":
		w = append(w, 8*p.size) // xz is that much slower than qemu-img
	default:
		w = append(w, p.size/2) // hash, holes included
	}
	return w
}

// raw makes a raw image (sparse), optionally shrunk, compressed and with a bmap: qemu-img writes
// the sparse raw, and one pass over its data then makes the output's hash, the compressed file
// and the bmap's checksums together.
func (p *producer) raw(ctx context.Context) ([]staged, error) {
	s := p.spec
	files := s.Files()
	image := s.stem() + ".raw" // the uncompressed image, which is files[0] unless compressed
	raw := filepath.Join(p.work, image)
	if err := qemuimg.Convert(ctx, p.src, raw, qemuimg.ConvertOptions{InputFormat: p.srcFormat, Format: "raw", Progress: p.meter.next()}); err != nil {
		return nil, err
	}
	if s.Shrink == "minimal" {
		done := p.meter.next()
		if err := ShrinkMinimal(ctx, raw); err != nil {
			return nil, err
		}
		done(1)
	}
	f, err := os.Open(raw)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size == 0 {
		return nil, fmt.Errorf("qemu-img wrote an empty raw image %s", raw)
	}
	if err := checkSparse(raw, size); err != nil {
		return nil, err
	}

	var made []staged
	var ranges []bmapRange
	report := p.meter.nextBytes()
	scanned := func(done int64) { report(done, size) }
	if s.Compress == "none" {
		h := sha256.New()
		ranges, err = scanRaw(ctx, f, size, newWriterSink(h), s.Bmap, scanned)
		if err != nil {
			return nil, err
		}
		made = append(made, staged{tmp: raw, art: Artifact{
			Path: image, Format: "raw", Size: size, SHA256: hex.EncodeToString(h.Sum(nil)),
		}})
	} else {
		name := files[0]
		out := filepath.Join(p.work, name)
		art, rs, err := compressRaw(ctx, f, size, out, s.Compress, s.Bmap, scanned, compressOptions{})
		if err != nil {
			return nil, err
		}
		ranges = rs
		art.Path = name
		f.Close()
		if err := os.Remove(raw); err != nil { // not an output: free its space now
			return nil, err
		}
		made = append(made, staged{tmp: out, art: art})
	}

	if s.Bmap {
		data := renderBmap(size, ranges)
		if err := verifyBmap(data, size); err != nil {
			return nil, fmt.Errorf("verify the bmap of %s: %w", raw, err)
		}
		path := filepath.Join(p.work, files[1])
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return nil, fmt.Errorf("write the bmap: %w", err)
		}
		sum := sha256.Sum256(data)
		made = append(made, staged{tmp: path, art: Artifact{
			Path: files[1], Format: "bmap", Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:]),
		}})
	}
	return made, nil
}

// compressRaw writes the raw image f (size bytes) compressed with kind to out, hashing the
// output as it is written and, with bmap, the image's mapped blocks. The output is decompressed
// as it is written (streamCheck) and must give back exactly size bytes. On error out is removed.
func compressRaw(ctx context.Context, f *os.File, size int64, out, kind string, bmap bool, report func(int64), o compressOptions) (Artifact, []bmapRange, error) {
	hf, err := createHashing(out)
	if err != nil {
		return Artifact{}, nil, err
	}
	art, ranges, err := func() (Artifact, []bmapRange, error) {
		// A failed scan stops the encoder (kills xz) rather than letting it finish.
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		check := startStreamCheck(ctx, kind)
		sink, how, err := openCompressSink(ctx, kind, io.MultiWriter(hf, check), o)
		if err != nil {
			hf.Close()
			check.Wait()
			return Artifact{}, nil, fmt.Errorf("compress %s with %s: %w", f.Name(), how, err)
		}
		ranges, err := scanRaw(ctx, f, size, sink, bmap, report)
		if err != nil {
			cancel()
		}
		if cerr := sink.Close(); err == nil { // always: it waits for xz
			err = cerr
		}
		sum, n, cerr := hf.Close()
		if err == nil {
			err = cerr
		}
		decoded, derr := check.Wait()
		if err != nil {
			return Artifact{}, nil, fmt.Errorf("compress %s with %s: %w", f.Name(), how, err)
		}
		if derr != nil || decoded != size {
			return Artifact{}, nil, fmt.Errorf("verify %s (made with %s): it decompresses to %d bytes (%v), the image is %d", out, how, decoded, derr, size)
		}
		ext := map[string]string{"zstd": "zst", "xz": "xz"}[kind]
		return Artifact{Format: "raw." + ext, Size: n, SHA256: sum}, ranges, nil
	}()
	if err != nil {
		os.Remove(out)
		return Artifact{}, nil, err
	}
	return art, ranges, nil
}

// checkSparse fails if a raw image has no holes at all: qemu-img leaves every zero block of the
// disk unwritten, and a real disk always has some (the gap after the partition table if
// nothing else), so a fully allocated file means the filesystem under the work dir cannot
// hold holes and every output from it would cost its whole virtual size.
func checkSparse(path string, size int64) error {
	alloc, err := allocatedBytes(path)
	if err != nil {
		return err
	}
	if size > 1<<20 && alloc >= size {
		return fmt.Errorf("the raw image %s is not sparse (%d of its %d bytes are allocated): the filesystem of the output directory does not seem to support sparse files", path, alloc, size)
	}
	return nil
}
