package libvirt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"golang.org/x/sys/unix"

	"github.com/ingot-build/ingot/internal/ctxio"
)

// Disk images travel through libvirt's storage volume streams (virStorageVolUpload/Download), the
// one way to put a file on a libvirt host that works the same for a local and a remote daemon.
//
// Sparse files: libvirt ≥ 3.4 can stream holes (VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM), and Debian
// 12's 9.0 does, but go-libvirt routes stream packets without looking at their type, so a hole
// packet would be written as data. Sparseness is kept another way:
//   - upload sends only the file's data extents (SEEK_DATA/SEEK_HOLE), one ranged upload each,
//     into a volume created sparse at the file's size; holes are never sent;
//   - download receives everything (zeros included) but writes zero blocks as holes, so the local
//     file is as sparse as the guest left it.

// uploadGap: holes smaller than this between two data extents are sent as zeros rather than
// costing a ranged upload (an RPC round trip and a pool refresh in libvirtd) each.
const uploadGap = 1 << 20

// extent is a byte range of a file.
type extent struct{ off, len int64 }

// dataExtents lists where a file has data, merging extents closer than gap. A filesystem without
// SEEK_DATA gets one extent, the whole file.
func dataExtents(f *os.File, size, gap int64) ([]extent, error) {
	var out []extent
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, syscall.ENXIO) {
			break // no data after off
		}
		if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EOPNOTSUPP) {
			return []extent{{0, size}}, nil
		}
		if err != nil {
			return nil, fmt.Errorf("find data in %s: %w", f.Name(), err)
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("find holes in %s: %w", f.Name(), err)
		}
		end = min(end, size)
		if n := len(out); n > 0 && start-(out[n-1].off+out[n-1].len) < gap {
			out[n-1].len = end - out[n-1].off
		} else {
			out = append(out, extent{start, end - start})
		}
		off = end
	}
	return out, nil
}

// fileSizes is a file's length and how much of it is data (holes are not sent).
func fileSizes(path string) (size, alloc int64, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	alloc = fi.Size()
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		alloc = min(st.Blocks*512, fi.Size())
	}
	return fi.Size(), alloc, nil
}

// transferStats is what a transfer moved, for logs and the report.
type transferStats struct {
	bytes   int64 // sent or received over the connection
	elapsed time.Duration
}

func (s transferStats) String() string {
	mb := float64(s.bytes) / (1 << 20)
	return fmt.Sprintf("%.1f MiB in %s (%.0f MiB/s)", mb, s.elapsed.Round(10*time.Millisecond), mb/max(s.elapsed.Seconds(), 1e-3))
}

// upload fills vol (created empty at the file's size) with the local file's data.
func upload(ctx context.Context, c *conn, vol golibvirt.StorageVol, local string) (transferStats, error) {
	started := time.Now()
	f, err := os.Open(local)
	if err != nil {
		return transferStats{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return transferStats{}, err
	}
	extents, err := dataExtents(f, fi.Size(), uploadGap)
	if err != nil {
		return transferStats{}, err
	}
	var st transferStats
	for _, e := range extents {
		// go-libvirt aborts the upload when its reader fails: ending the reader with ctx is the
		// only way to stop it.
		r := ctxio.Reader(ctx, io.NewSectionReader(f, e.off, e.len))
		if err := c.StorageVolUpload(vol, r, uint64(e.off), uint64(e.len), 0); err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return st, fmt.Errorf("upload %s to volume %s (bytes %d-%d): %w", local, vol.Name, e.off, e.off+e.len, err)
		}
		st.bytes += e.len
	}
	st.elapsed = time.Since(started)
	return st, nil
}

// download replaces the local file with the volume's content, atomically: it is written to a
// temporary file beside it and renamed over it, so a failed download leaves the old file whole.
// It runs on a connection of its own (see stream.go for why not go-libvirt's).
func download(ctx context.Context, cn *connector, vol golibvirt.StorageVol, local string) (transferStats, error) {
	started := time.Now()
	fi, err := os.Stat(local)
	if err != nil {
		return transferStats{}, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(local), "."+filepath.Base(local)+".download-*")
	if err != nil {
		return transferStats{}, fmt.Errorf("download volume %s: %w", vol.Name, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(fi.Mode().Perm()); err != nil {
		return transferStats{}, fmt.Errorf("download volume %s: %w", vol.Name, err)
	}
	w := &sparseWriter{f: tmp}
	rc, err := cn.rawConnect(ctx)
	if err != nil {
		return transferStats{}, fmt.Errorf("download volume %s: %w", vol.Name, err)
	}
	stop := context.AfterFunc(ctx, func() { rc.conn.Close() })
	_, err = rc.download(vol, w)
	stop()
	if err != nil {
		rc.conn.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return transferStats{}, fmt.Errorf("download volume %s to %s: %w", vol.Name, local, err)
	}
	rc.close()
	if w.err != nil {
		return transferStats{}, fmt.Errorf("download volume %s to %s: %w", vol.Name, local, w.err)
	}
	if err := tmp.Truncate(w.off); err != nil {
		return transferStats{}, fmt.Errorf("download volume %s to %s: %w", vol.Name, local, err)
	}
	// No fsync: the caller converts the image next, and a crash loses the whole work dir anyway.
	if err := tmp.Close(); err != nil {
		return transferStats{}, fmt.Errorf("download volume %s to %s: %w", vol.Name, local, err)
	}
	if err := os.Rename(tmp.Name(), local); err != nil {
		return transferStats{}, fmt.Errorf("download volume %s to %s: %w", vol.Name, local, err)
	}
	done = true
	return transferStats{bytes: w.off, elapsed: time.Since(started)}, nil
}

// sparseBlock is the granularity at which zeros become holes: the filesystem block size of
// common filesystems and qcow2's smallest cluster is 4 KiB; 64 KiB keeps the zero test cheap
// and matches qcow2's default cluster.
const sparseBlock = 64 << 10

// sparseWriter writes a stream at increasing offsets, skipping all-zero blocks (they stay holes
// of the file, which is truncated to its full length at the end).
type sparseWriter struct {
	f   *os.File
	off int64
	err error
}

func (w *sparseWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n := len(p)
	for len(p) > 0 {
		// Align blocks to the file offset, so holes fall on block boundaries.
		k := min(len(p), sparseBlock-int(w.off%sparseBlock))
		block := p[:k]
		if !allZero(block) {
			if _, err := w.f.WriteAt(block, w.off); err != nil {
				w.err = err
				return 0, err
			}
		}
		w.off += int64(k)
		p = p[k:]
	}
	return n, nil
}

var zeros = make([]byte, sparseBlock)

func allZero(b []byte) bool { return bytes.Equal(b, zeros[:len(b)]) }
