package source

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gofrs/flock"
	"github.com/google/renameio/v2"
)

func (f *Fetcher) blobDir() string    { return filepath.Join(f.dir, "sha256") }
func (f *Fetcher) metaDir() string    { return filepath.Join(f.dir, "meta") }
func (f *Fetcher) partialDir() string { return filepath.Join(f.dir, "partial") }
func (f *Fetcher) lockDir() string    { return filepath.Join(f.dir, "locks") }

func (f *Fetcher) blobPath(d string) string     { return filepath.Join(f.blobDir(), d) }
func (f *Fetcher) metaPath(d string) string     { return filepath.Join(f.metaDir(), d+".json") }
func (f *Fetcher) partPath(d string) string     { return filepath.Join(f.partialDir(), d+".part") }
func (f *Fetcher) partMetaPath(d string) string { return filepath.Join(f.partialDir(), d+".json") }
func (f *Fetcher) lockPath(d string) string     { return filepath.Join(f.lockDir(), d+".lock") }

func newFlock(path string) *flock.Flock { return flock.New(path, flock.SetPermissions(0o600)) }

// isDigest reports whether s names a cache entry: a sha256 in lower-case hex.
func isDigest(s string) bool {
	_, err := parseDigest(s)
	return err == nil && s == strings.ToLower(s)
}

// entryMeta is the sidecar of a cache entry, for `ingot cache ls`.
type entryMeta struct {
	URL     string    `json:"url"` // redacted
	Fetched time.Time `json:"fetched"`
}

// Cached returns the path of the cached file with sha256 digest, if there is one.
func (f *Fetcher) Cached(digest string) (string, bool) {
	d, err := parseDigest(digest)
	if err != nil {
		return "", false
	}
	path := f.blobPath(d)
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return "", false
	}
	return path, true
}

// hit is Cached that also records the use, so Prune keeps what builds still use.
func (f *Fetcher) hit(loc location, digest string) (string, bool) {
	path, ok := f.Cached(digest)
	if !ok {
		return "", false
	}
	now := time.Now()
	if err := os.Chtimes(f.metaPath(digest), now, now); errors.Is(err, fs.ErrNotExist) {
		err = f.writeMeta(digest, loc)
		if err != nil {
			f.log.Debug("record cache use", "path", path, "err", err)
		}
	} else if err != nil {
		f.log.Debug("record cache use", "path", path, "err", err)
	}
	return path, true
}

func (f *Fetcher) writeMeta(digest string, loc location) error {
	b, err := json.Marshal(entryMeta{URL: loc.String(), Fetched: time.Now().UTC()})
	if err != nil {
		return err
	}
	return renameio.WriteFile(f.metaPath(digest), b, 0o600)
}

// commit makes the verified file at tmp the cache entry for digest: read-only, flushed, renamed
// into place, and the rename flushed too, so a crash leaves either no entry or a complete one.
func (f *Fetcher) commit(tmp *os.File, digest string, loc location) error {
	if err := tmp.Chmod(0o444); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), f.blobPath(digest)); err != nil {
		return err
	}
	if err := syncDir(f.blobDir()); err != nil {
		return err
	}
	if err := f.writeMeta(digest, loc); err != nil {
		// The entry is valid without its sidecar; List just cannot say where it came from.
		f.log.Warn("write cache metadata", "sha256", digest, "err", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}

// Entry is one file in the source cache.
type Entry struct {
	SHA256   string
	Path     string
	Size     int64
	URL      string    // where it was fetched from, credentials redacted; "" if unknown
	LastUsed time.Time // last fetched or found in the cache
	Partial  bool      // an interrupted download, kept to be resumed
}

// List returns the cache's entries and partial downloads, most recently used first.
func (f *Fetcher) List() ([]Entry, error) {
	var out []Entry
	blobs, err := os.ReadDir(f.blobDir())
	if err != nil {
		return nil, fmt.Errorf("list source cache: %w", err)
	}
	for _, de := range blobs {
		if e, ok := f.entry(de.Name()); ok {
			out = append(out, e)
		}
	}
	parts, err := os.ReadDir(f.partialDir())
	if err != nil {
		return nil, fmt.Errorf("list source cache: %w", err)
	}
	for _, de := range parts {
		d, ok := strings.CutSuffix(de.Name(), ".part")
		if !ok || !isDigest(d) {
			continue
		}
		if e, ok := f.partialEntry(d); ok {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b Entry) int {
		if c := b.LastUsed.Compare(a.LastUsed); c != 0 {
			return c
		}
		return strings.Compare(a.SHA256, b.SHA256)
	})
	return out, nil
}

func (f *Fetcher) entry(digest string) (Entry, bool) {
	if !isDigest(digest) {
		return Entry{}, false
	}
	fi, err := os.Stat(f.blobPath(digest))
	if err != nil || !fi.Mode().IsRegular() {
		return Entry{}, false
	}
	e := Entry{SHA256: digest, Path: f.blobPath(digest), Size: fi.Size(), LastUsed: fi.ModTime()}
	if mfi, err := os.Stat(f.metaPath(digest)); err == nil {
		e.LastUsed = mfi.ModTime()
		if b, err := os.ReadFile(f.metaPath(digest)); err == nil {
			var m entryMeta
			if json.Unmarshal(b, &m) == nil {
				e.URL = m.URL
			}
		}
	}
	return e, true
}

func (f *Fetcher) partialEntry(digest string) (Entry, bool) {
	fi, err := os.Stat(f.partPath(digest))
	if err != nil || !fi.Mode().IsRegular() {
		return Entry{}, false
	}
	e := Entry{SHA256: digest, Path: f.partPath(digest), Size: fi.Size(), LastUsed: fi.ModTime(), Partial: true}
	if m, err := f.readPartMeta(digest); err == nil {
		if loc, err := parseLocation(m.URL); err == nil {
			e.URL = loc.String()
		}
	}
	return e, true
}

// Prune deletes the entries and partial downloads not used for olderThan and returns them.
// Entries that a build is fetching right now (their lock is held) are left alone. A build that
// found an entry in the cache just before Prune removes it keeps what it already opened; Prune is
// meant for entries unused for days, not seconds.
func (f *Fetcher) Prune(olderThan time.Duration) ([]Entry, error) {
	entries, err := f.List()
	if err != nil {
		return nil, err
	}
	cutoff := time.Now().Add(-olderThan)
	var removed []Entry
	var errs []error
	for _, e := range entries {
		if !e.LastUsed.Before(cutoff) {
			continue
		}
		l := newFlock(f.lockPath(e.SHA256))
		ok, err := l.TryLock()
		if err != nil {
			errs = append(errs, fmt.Errorf("prune %s: %w", e.Path, err))
			continue
		}
		if !ok {
			continue
		}
		// Look again under the lock: a build may have used it since List.
		again, ok := f.entry(e.SHA256)
		if e.Partial {
			again, ok = f.partialEntry(e.SHA256)
		}
		if ok && again.LastUsed.Before(cutoff) {
			var rmErr error
			if e.Partial {
				rmErr = errors.Join(removeIfExists(f.partPath(e.SHA256)), removeIfExists(f.partMetaPath(e.SHA256)))
			} else {
				rmErr = errors.Join(removeIfExists(f.blobPath(e.SHA256)), removeIfExists(f.metaPath(e.SHA256)))
			}
			if rmErr != nil {
				errs = append(errs, fmt.Errorf("prune %s: %w", e.Path, rmErr))
			} else {
				removed = append(removed, again)
			}
		}
		if err := l.Unlock(); err != nil {
			errs = append(errs, fmt.Errorf("prune %s: unlock: %w", e.Path, err))
		}
	}
	if err := f.pruneStaleCopies(cutoff); err != nil {
		errs = append(errs, fmt.Errorf("prune: %w", err))
	}
	return removed, errors.Join(errs...)
}

// pruneStaleCopies removes copies of local files that a crash left in the partial directory
// (copies in progress are being written, so they are never older than the cutoff).
func (f *Fetcher) pruneStaleCopies(cutoff time.Time) error {
	entries, err := os.ReadDir(f.partialDir())
	if err != nil {
		return err
	}
	var errs []error
	for _, de := range entries {
		d, _, ok := strings.Cut(de.Name(), ".")
		if !ok || !isDigest(d) || !strings.HasSuffix(de.Name(), ".copy") {
			continue
		}
		if fi, err := de.Info(); err == nil && fi.ModTime().Before(cutoff) {
			errs = append(errs, removeIfExists(filepath.Join(f.partialDir(), de.Name())))
		}
	}
	return errors.Join(errs...)
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
