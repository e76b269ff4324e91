// Package source turns pinned inputs (a URL or a path, plus the sha256 it must have) into verified
// files in a content-addressed cache, so a build never runs on bytes nobody vouched for and never
// downloads the same image twice.
//
// The cache lives under ingot's cache directory (DefaultCacheDir):
//
//	sources/sha256/<hex>        verified content, read-only; the name is its sha256
//	sources/meta/<hex>.json     where it came from; the file's mtime is when it was last used
//	sources/partial/<hex>.part  an interrupted download, kept for an HTTP Range resume
//	sources/partial/<hex>.json  the URL and validators (ETag, Last-Modified) that .part came from
//	sources/locks/<hex>.lock    flock(2): one download per sha256 across goroutines and processes
//
// Content appears in sha256/ only by rename after verification, so a reader never sees a partial or
// unverified file, whatever kills the process.
package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/ingot-build/ingot/internal/progress"
)

// Input is one pinned input of a build.
type Input struct {
	// URL is https://…, http://…, file:///… or a local path (relative paths are taken relative to
	// the working directory: the recipe layer makes them relative to the recipe first).
	URL string
	// SHA256 pins the content: 64 hex digits, optionally prefixed "sha256:", or "file:" and the
	// location of a checksum file (SHA256SUMS, CHECKSUM) that lists the input by its file name.
	SHA256 string
}

var (
	// ErrUnpinned is returned for an input without a sha256: ingot does not build on inputs that
	// nobody vouched for.
	ErrUnpinned = errors.New("no sha256 pin")
	// ErrInvalidPin is returned for a sha256 that is not one (wrong length, not hex, another
	// algorithm).
	ErrInvalidPin = errors.New("invalid sha256 pin")
	// ErrNoSum is returned when a checksum file does not list the input.
	ErrNoSum = errors.New("checksum file has no sha256 for the input")
)

// MismatchError is returned when content does not have the pinned sha256. The download has been
// deleted by then. Its message leaves the URL to the "fetch URL: " wrapping that Fetch adds.
type MismatchError struct {
	URL          string // redacted
	Expected     string
	Actual       string
	ChecksumFile string // where Expected came from, if the pin named a checksum file
}

func (e *MismatchError) Error() string {
	hint := "update the sha256 pin if the upstream file changed; otherwise the download was corrupted or tampered with"
	if e.ChecksumFile != "" {
		hint = fmt.Sprintf("%s lists %s; the file and its checksum file may have been updated at different times (retry later), or the download was corrupted or tampered with", e.ChecksumFile, e.Expected)
	}
	return fmt.Sprintf("sha256 mismatch: expected %s, got %s (%s)", e.Expected, e.Actual, hint)
}

// Check validates in without touching the network or the disk: the location is one ingot can
// fetch and the pin is present and well formed. Errors wrap ErrUnpinned or ErrInvalidPin where
// they apply.
func (in Input) Check() error {
	_, _, err := in.parse()
	return err
}

func (in Input) parse() (location, pin, error) {
	loc, err := parseLocation(in.URL)
	if err != nil {
		return location{}, pin{}, fmt.Errorf("input %q: %w", in.URL, err)
	}
	p, err := parsePin(in.SHA256)
	if errors.Is(err, ErrUnpinned) {
		return location{}, pin{}, fmt.Errorf("%s: %w: add `sha256: <64 hex digits>` or `sha256: file:<URL of its SHA256SUMS>`", loc, err)
	}
	if err != nil {
		return location{}, pin{}, fmt.Errorf("%s: %w", loc, err)
	}
	return loc, p, nil
}

// DefaultCacheDir is ingot's cache directory: $XDG_CACHE_HOME/ingot, else ~/.cache/ingot.
func DefaultCacheDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find the cache directory: %w", err)
	}
	return filepath.Join(dir, "ingot"), nil
}

// Fetcher fetches inputs into the cache. It is safe for concurrent use, and several processes
// may share one cache.
type Fetcher struct {
	dir      string // <cache>/sources
	log      *slog.Logger
	progress progress.Reporter
	client   *http.Client
	attempts int
	backoff  time.Duration
	stall    time.Duration
	lockPoll time.Duration
}

// Option configures a Fetcher.
type Option func(*Fetcher)

// WithLogger sets where the Fetcher logs (default: nowhere).
func WithLogger(l *slog.Logger) Option { return func(f *Fetcher) { f.log = l } }

// WithProgress sets how downloads and copies report progress (default: not at all).
func WithProgress(r progress.Reporter) Option { return func(f *Fetcher) { f.progress = r } }

// WithHTTPClient sets the client for http(s) inputs. The default honours the proxy environment
// variables.
func WithHTTPClient(c *http.Client) Option { return func(f *Fetcher) { f.client = c } }

// WithRetry sets how many attempts a download gets without making progress (default 5) and the
// first pause between them (default 2s, doubling up to 1m).
func WithRetry(attempts int, backoff time.Duration) Option {
	return func(f *Fetcher) { f.attempts, f.backoff = max(attempts, 1), backoff }
}

// WithStallTimeout sets how long a download may go without receiving a byte, headers included,
// before the attempt is abandoned and resumed (default 1m). Downloads have no overall deadline:
// a 5 GiB image on a slow link is not an error, a connection that went silent is.
func WithStallTimeout(d time.Duration) Option { return func(f *Fetcher) { f.stall = d } }

// New returns a Fetcher whose cache is under cacheDir (see DefaultCacheDir), creating the
// directories it needs (0700: URLs in the metadata may carry tokens).
func New(cacheDir string, opts ...Option) (*Fetcher, error) {
	f := &Fetcher{
		dir:      filepath.Join(cacheDir, "sources"),
		log:      slog.New(slog.DiscardHandler),
		progress: progress.Nop(),
		attempts: 5,
		backoff:  2 * time.Second,
		stall:    time.Minute,
		lockPoll: 250 * time.Millisecond,
	}
	for _, o := range opts {
		o(f)
	}
	if f.client == nil {
		f.client = defaultClient()
	}
	for _, d := range []string{cacheDir, f.dir, f.blobDir(), f.metaDir(), f.partialDir(), f.lockDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create cache directory: %w", err)
		}
	}
	return f, nil
}

func defaultClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = 2 * time.Minute
	return &http.Client{Transport: t}
}

// Fetch returns the path of a cached file whose sha256 is the one in.SHA256 pins, downloading or
// copying it first if it is not cached yet. The file is read-only and shared: callers must not
// modify it (use it as a qcow2 backing file, or copy it).
//
// Local files are copied into the cache too (a reflink where the file system can): a build that
// uses the file as a backing image must not see it change after it was verified.
func (f *Fetcher) Fetch(ctx context.Context, in Input) (string, error) {
	loc, p, err := in.parse()
	if err != nil {
		return "", err
	}
	digest, err := f.resolve(ctx, loc, p)
	if err != nil {
		return "", err
	}
	if path, ok := f.hit(loc, digest); ok {
		f.log.Debug("source cached", "url", loc.String(), "sha256", digest, "path", path)
		return path, nil
	}

	unlock, err := f.lock(ctx, loc, digest)
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", loc, err)
	}
	defer unlock()
	// Whoever held the lock before us may have fetched it.
	if path, ok := f.hit(loc, digest); ok {
		f.log.Info("source fetched by another build", "url", loc.String(), "sha256", digest)
		return path, nil
	}

	if loc.local() {
		err = f.copyLocal(ctx, loc, digest, p)
	} else {
		err = f.download(ctx, loc, digest, p)
	}
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", loc, err)
	}
	return f.blobPath(digest), nil
}

// Resolve returns the sha256 that in is pinned to, fetching only its checksum file if the pin
// names one; the input itself is not downloaded. It lets `ingot validate` check pins up front.
func (f *Fetcher) Resolve(ctx context.Context, in Input) (string, error) {
	loc, p, err := in.parse()
	if err != nil {
		return "", err
	}
	return f.resolve(ctx, loc, p)
}

func (f *Fetcher) resolve(ctx context.Context, loc location, p pin) (string, error) {
	if p.sums == nil {
		return p.digest, nil
	}
	data, err := f.readSums(ctx, *p.sums)
	if err != nil {
		return "", fmt.Errorf("%s: read checksum file %s: %w", loc, p.sums, err)
	}
	d, err := lookupSum(data, loc.baseName())
	if err != nil {
		return "", fmt.Errorf("%s: pinned by file:%s: %w", loc, p.sums, err)
	}
	f.log.Debug("pin resolved", "url", loc.String(), "checksum_file", p.sums.String(), "sha256", d)
	return d, nil
}

// lock takes the per-digest lock, telling the user when it has to wait for someone else.
func (f *Fetcher) lock(ctx context.Context, loc location, digest string) (unlock func(), err error) {
	l := newFlock(f.lockPath(digest))
	ok, err := l.TryLock()
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", l.Path(), err)
	}
	if !ok {
		f.log.Info("waiting for another build fetching the same file", "url", loc.String(), "sha256", digest, "lock", l.Path())
		if _, err := l.TryLockContext(ctx, f.lockPoll); err != nil {
			return nil, fmt.Errorf("wait for lock %s: %w", l.Path(), err)
		}
	}
	return func() {
		if err := l.Unlock(); err != nil {
			f.log.Warn("unlock", "lock", l.Path(), "err", err)
		}
	}, nil
}
