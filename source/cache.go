package source

import (
	"cmp"
	"context"
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

func (f *Fetcher) blobDir() string    { return filepath.Join(f.dir, sha256Algo) }
func (f *Fetcher) aliasDir() string   { return filepath.Join(f.dir, sha512Algo) }
func (f *Fetcher) metaDir() string    { return filepath.Join(f.dir, "meta") }
func (f *Fetcher) partialDir() string { return filepath.Join(f.dir, "partial") }
func (f *Fetcher) lockDir() string    { return filepath.Join(f.dir, "locks") }

// Entries and metadata are named by sha256; aliases by sha512; partial downloads and locks by a
// digest.key.
func (f *Fetcher) blobPath(sum string) string     { return filepath.Join(f.blobDir(), sum) }
func (f *Fetcher) aliasPath(sum512 string) string { return filepath.Join(f.aliasDir(), sum512) }
func (f *Fetcher) metaPath(sum string) string     { return filepath.Join(f.metaDir(), sum+".json") }
func (f *Fetcher) partPath(key string) string     { return filepath.Join(f.partialDir(), key+".part") }
func (f *Fetcher) partMetaPath(key string) string { return filepath.Join(f.partialDir(), key+".json") }
func (f *Fetcher) lockPath(key string) string     { return filepath.Join(f.lockDir(), key+".lock") }

func newFlock(path string) *flock.Flock { return flock.New(path, flock.SetPermissions(0o600)) }

// isDigest reports whether s names a cache entry: a sha256 in lower-case hex.
func isDigest(s string) bool { return isHexDigest(s, sha256Algo) }

// readAlias returns the sha256 of the content whose sha512 is sum512, if a fetch recorded it.
func (f *Fetcher) readAlias(sum512 string) (string, bool) {
	b, err := os.ReadFile(f.aliasPath(sum512))
	if err != nil {
		return "", false
	}
	sum := strings.TrimSpace(string(b))
	return sum, isDigest(sum)
}

// writeAlias records that the content whose sha512 is sum512 is the entry sum. It is a file
// rather than a symlink so that it can be replaced atomically (renameio) and read without
// trusting a link target.
func (f *Fetcher) writeAlias(sum512, sum string) error {
	return renameio.WriteFile(f.aliasPath(sum512), []byte(sum+"\n"), 0o600)
}

// entryMeta is the sidecar of a cache entry, for `ingot cache ls`.
type entryMeta struct {
	URL     string    `json:"url"` // redacted
	Fetched time.Time `json:"fetched"`
}

// Cached returns the path of the cached file with the given digest, if there is one: a sha256 in
// hex, optionally "sha256:"-prefixed, or "sha512:HEX" for content that a fetch pinned by that
// sha512 stored (the forms Resolve returns).
func (f *Fetcher) Cached(d string) (string, bool) {
	algo := sha256Algo
	if rest, ok := cutPrefixFold(d, "sha512:"); ok {
		algo, d = sha512Algo, rest
	} else if rest, ok := cutPrefixFold(d, "sha256:"); ok {
		d = rest
	}
	sum, err := parseDigest(d, algo)
	if err != nil {
		return "", false
	}
	if algo == sha512Algo {
		var ok bool
		if sum, ok = f.readAlias(sum); !ok {
			return "", false
		}
	}
	path := f.blobPath(sum)
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return "", false
	}
	return path, true
}

// hit is Cached for a resolved pin that also records the use, so Prune keeps what builds still
// use.
func (f *Fetcher) hit(loc location, want digest) (string, bool) {
	path, ok := f.Cached(want.String())
	if !ok {
		return "", false
	}
	f.touch(filepath.Base(path), loc)
	return path, true
}

// touch records a use of the entry sum: its metadata's mtime, or new metadata if it has none.
func (f *Fetcher) touch(sum string, loc location) {
	now := time.Now()
	err := os.Chtimes(f.metaPath(sum), now, now)
	if errors.Is(err, fs.ErrNotExist) {
		err = f.writeMeta(sum, loc)
	}
	if err != nil {
		f.log.Debug("record cache use", "sha256", sum, "err", err)
	}
}

func (f *Fetcher) writeMeta(sum string, loc location) error {
	b, err := json.Marshal(entryMeta{URL: loc.String(), Fetched: time.Now().UTC()})
	if err != nil {
		return err
	}
	return renameio.WriteFile(f.metaPath(sum), b, 0o600)
}

// commit makes the verified file at tmp the cache entry for sum, its sha256: read-only, flushed,
// renamed into place, and the rename flushed too, so a crash leaves either no entry or a complete
// one. For a fetch pinned by sha512 (want), it then records the alias.
//
// A fetch pinned by sha512 holds the lock of its sha512, not of sum, so it takes that one too for
// the rename: an entry is never written by two fetches at once, nor pruned while it is written. If
// the entry exists by then (a fetch pinned by the sha256 stored the same bytes), tmp is dropped.
func (f *Fetcher) commit(ctx context.Context, tmp *os.File, sum string, want digest, loc location) error {
	if want.algo != sha256Algo {
		unlock, err := f.lock(ctx, loc, digest{algo: sha256Algo, hex: sum})
		if err != nil {
			return err
		}
		defer unlock()
	}
	if _, ok := f.Cached(sum); ok {
		if err := os.Remove(tmp.Name()); err != nil {
			return err
		}
		f.touch(sum, loc)
	} else if err := f.store(tmp, sum, loc); err != nil {
		return err
	}
	if want.algo != sha256Algo {
		if err := f.writeAlias(want.hex, sum); err != nil {
			// The entry is valid; only the next fetch with this pin cannot find it, and
			// downloads it again.
			f.log.Warn("record the sha512 of a cache entry", "sha256", sum, want.algo, want.hex, "err", err)
		}
	}
	return nil
}

func (f *Fetcher) store(tmp *os.File, sum string, loc location) error {
	if err := tmp.Chmod(0o444); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), f.blobPath(sum)); err != nil {
		return err
	}
	if err := syncDir(f.blobDir()); err != nil {
		return err
	}
	if err := f.writeMeta(sum, loc); err != nil {
		// The entry is valid without its sidecar; List just cannot say where it came from.
		f.log.Warn("write cache metadata", "sha256", sum, "err", err)
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
	SHA256 string // "" for a partial download pinned by sha512: not known until it is complete
	// SHA512 is the sha512 that a pin named the content by, if one did; it is computed only for
	// sha512 pins, so an entry fetched by its sha256 has none.
	SHA512   string
	Path     string
	Size     int64
	URL      string    // where it was fetched from, credentials redacted; "" if unknown
	LastUsed time.Time // last fetched or found in the cache
	Partial  bool      // an interrupted download, kept to be resumed

	key string // digest.key of its lock (and of its partial download)
}

// List returns the cache's entries and partial downloads, most recently used first.
func (f *Fetcher) List() ([]Entry, error) {
	var out []Entry
	blobs, err := os.ReadDir(f.blobDir())
	if err != nil {
		return nil, fmt.Errorf("list source cache: %w", err)
	}
	aliases, err := f.aliases()
	if err != nil {
		return nil, fmt.Errorf("list source cache: %w", err)
	}
	for _, de := range blobs {
		if e, ok := f.entry(de.Name()); ok {
			e.SHA512 = aliases[e.SHA256]
			out = append(out, e)
		}
	}
	parts, err := os.ReadDir(f.partialDir())
	if err != nil {
		return nil, fmt.Errorf("list source cache: %w", err)
	}
	for _, de := range parts {
		k, ok := strings.CutSuffix(de.Name(), ".part")
		if !ok {
			continue
		}
		d, ok := parseKey(k)
		if !ok {
			continue
		}
		if e, ok := f.partialEntry(d); ok {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b Entry) int {
		return cmp.Or(b.LastUsed.Compare(a.LastUsed), strings.Compare(a.SHA256, b.SHA256), strings.Compare(a.SHA512, b.SHA512))
	})
	return out, nil
}

// aliases maps the sha256 of entries to the sha512 they are also known by.
func (f *Fetcher) aliases() (map[string]string, error) {
	des, err := os.ReadDir(f.aliasDir())
	if err != nil {
		return nil, err
	}
	m := make(map[string]string)
	for _, de := range des {
		if !isHexDigest(de.Name(), sha512Algo) {
			continue // renameio's temporary files
		}
		if sum, ok := f.readAlias(de.Name()); ok {
			m[sum] = de.Name()
		}
	}
	return m, nil
}

func (f *Fetcher) entry(sum string) (Entry, bool) {
	if !isDigest(sum) {
		return Entry{}, false
	}
	fi, err := os.Stat(f.blobPath(sum))
	if err != nil || !fi.Mode().IsRegular() {
		return Entry{}, false
	}
	e := Entry{SHA256: sum, Path: f.blobPath(sum), Size: fi.Size(), LastUsed: fi.ModTime(), key: sum}
	if mfi, err := os.Stat(f.metaPath(sum)); err == nil {
		e.LastUsed = mfi.ModTime()
		if b, err := os.ReadFile(f.metaPath(sum)); err == nil {
			var m entryMeta
			if json.Unmarshal(b, &m) == nil {
				e.URL = m.URL
			}
		}
	}
	return e, true
}

func (f *Fetcher) partialEntry(d digest) (Entry, bool) {
	k := d.key()
	fi, err := os.Stat(f.partPath(k))
	if err != nil || !fi.Mode().IsRegular() {
		return Entry{}, false
	}
	e := Entry{Path: f.partPath(k), Size: fi.Size(), LastUsed: fi.ModTime(), Partial: true, key: k}
	if d.algo == sha256Algo {
		e.SHA256 = d.hex
	} else {
		e.SHA512 = d.hex
	}
	if m, err := f.readPartMeta(k); err == nil {
		if loc, err := parseLocation(m.URL); err == nil {
			e.URL = loc.String()
		}
	}
	return e, true
}

// Prune deletes the entries and partial downloads not used for olderThan and returns them, and
// the sha512 aliases of entries that are gone. Entries that a build is fetching right now (their
// lock is held) are left alone. A build that found an entry in the cache just before Prune removes
// it keeps what it already opened; Prune is meant for entries unused for days, not seconds.
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
		l := newFlock(f.lockPath(e.key))
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
			d, _ := parseKey(e.key)
			again, ok = f.partialEntry(d)
		} else {
			again.SHA512 = e.SHA512
		}
		if ok && again.LastUsed.Before(cutoff) {
			var rmErr error
			if e.Partial {
				rmErr = errors.Join(removeIfExists(f.partPath(e.key)), removeIfExists(f.partMetaPath(e.key)))
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
	if err := f.pruneAliases(); err != nil {
		errs = append(errs, fmt.Errorf("prune: %w", err))
	}
	if err := f.pruneStaleCopies(cutoff); err != nil {
		errs = append(errs, fmt.Errorf("prune: %w", err))
	}
	return removed, errors.Join(errs...)
}

// pruneAliases removes the sha512 aliases whose entry is gone (pruned, or deleted by hand) or
// that do not hold a sha256. It takes the lock of each such sha512 first, and skips it if held: a
// fetch with that pin may be storing the entry and recording the alias anew right now.
func (f *Fetcher) pruneAliases() error {
	des, err := os.ReadDir(f.aliasDir())
	if err != nil {
		return err
	}
	dangling := func(sum512 string) bool {
		sum, ok := f.readAlias(sum512)
		if !ok {
			return true
		}
		_, ok = f.Cached(sum)
		return !ok
	}
	var errs []error
	for _, de := range des {
		sum512 := de.Name()
		if !isHexDigest(sum512, sha512Algo) || !dangling(sum512) {
			continue
		}
		l := newFlock(f.lockPath(digest{algo: sha512Algo, hex: sum512}.key()))
		ok, err := l.TryLock()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.aliasPath(sum512), err))
			continue
		}
		if !ok {
			continue
		}
		if dangling(sum512) {
			if err := removeIfExists(f.aliasPath(sum512)); err != nil {
				errs = append(errs, err)
			}
		}
		if err := l.Unlock(); err != nil {
			errs = append(errs, fmt.Errorf("%s: unlock: %w", f.aliasPath(sum512), err))
		}
	}
	return errors.Join(errs...)
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
		k, _, _ := strings.Cut(de.Name(), ".")
		if _, ok := parseKey(k); !ok || !strings.HasSuffix(de.Name(), ".copy") {
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
