package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ingot-build/ingot/internal/ctxio"
	"github.com/ingot-build/ingot/internal/progress"
)

// maxSumsSize bounds a checksum file: the real ones are a few KiB; anything huge is a mistake.
const maxSumsSize = 8 << 20

// copyLocal copies a local file into the cache, verifying it against want on the way, and returns
// the sha256 it is stored under. Where the file system can (btrfs, XFS), the copy is a reflink
// that costs no space; the hash is then taken from the clone, so what was verified is what is
// kept, whatever happens to the original.
func (f *Fetcher) copyLocal(ctx context.Context, loc location, want digest, p pin) (sum string, err error) {
	src, err := os.Open(loc.path)
	if err != nil {
		return "", err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	tmp, err := os.CreateTemp(f.partialDir(), want.key()+".*.copy")
	if err != nil {
		return "", fmt.Errorf("copy into cache: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()

	tr := f.progress.Start(loc.baseName(), fi.Size())
	defer func() { tr.Done(err) }()
	h := newHasher(want)
	if unix.IoctlFileClone(int(tmp.Fd()), int(src.Fd())) == nil {
		f.log.Debug("reflinked into the cache", "path", loc.path)
		_, err = io.Copy(io.MultiWriter(h, progress.Writer(tr)), ctxio.Reader(ctx, tmp))
	} else {
		_, err = io.Copy(io.MultiWriter(tmp, h, progress.Writer(tr)), ctxio.Reader(ctx, src))
	}
	if err != nil {
		return "", fmt.Errorf("copy into cache: %w", err)
	}
	sum, actual := h.sums()
	if actual != want.hex {
		return "", mismatch(loc, want, actual, p)
	}
	if err := f.commit(ctx, tmp, sum, want, loc); err != nil {
		return "", fmt.Errorf("store in cache: %w", err)
	}
	committed = true
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("store in cache: %w", err)
	}
	f.log.Info("source copied into the cache", "path", loc.path, "sha256", sum, want.logPin(), "size", progress.Bytes(fi.Size()))
	return sum, nil
}

// readSums reads a checksum file. It is not cached: a checksum file is how upstream says which
// file is current, so it is asked every time.
func (f *Fetcher) readSums(ctx context.Context, loc location) ([]byte, error) {
	if loc.local() {
		file, err := os.Open(loc.path)
		if err != nil {
			return nil, err
		}
		defer file.Close()
		return readLimited(file)
	}
	var data []byte
	err := f.retry(ctx, loc.String(), func(ctx context.Context) (bool, error) {
		// A checksum file is small: the stall timeout bounds the whole request.
		actx, cancel := context.WithTimeoutCause(ctx, f.stall, errStalled)
		defer cancel()
		req, err := http.NewRequestWithContext(actx, http.MethodGet, loc.url.String(), nil)
		if err != nil {
			return false, err
		}
		req.Header.Set("User-Agent", userAgent)
		resp, err := f.client.Do(req)
		if err != nil {
			return false, f.netErr(ctx, actx, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, statusError(resp)
		}
		data, err = readLimited(resp.Body)
		if err != nil && !errors.Is(err, errTooBig) {
			return false, f.netErr(ctx, actx, err)
		}
		return false, err
	})
	return data, err
}

var errTooBig = fmt.Errorf("larger than %d MiB: not a checksum file?", maxSumsSize>>20)

func readLimited(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxSumsSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxSumsSize {
		return nil, errTooBig
	}
	return data, nil
}
