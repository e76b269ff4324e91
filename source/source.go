// Package source turns pinned inputs (a URL or a path, plus the sha256 or sha512 it must have)
// into verified files in a content-addressed cache, so a build never runs on bytes nobody vouched
// for and never downloads the same image twice.
//
// The cache lives under ingot's cache directory (DefaultCacheDir):
//
//	sources/sha256/<hex>        verified content, read-only; the name is its sha256
//	sources/sha512/<hex>        the sha256 of the content whose sha512 is <hex>, one line
//	sources/meta/<hex>.json     where it came from; the file's mtime is when it was last used
//	sources/partial/<key>.part  an interrupted download, kept for an HTTP Range resume
//	sources/partial/<key>.json  the URL and validators (ETag, Last-Modified) that .part came from
//	sources/locks/<key>.lock    flock(2): one download per pin across goroutines and processes
//
// <key> is the pinned sha256, or "sha512-<hex>" for an input pinned by sha512, whose sha256 is not
// known until it has been downloaded. The cache is keyed by sha256 either way: a sha512-pinned
// download is hashed with both, verified by its sha512 and stored under its sha256, and the alias
// in sha512/ lets the next fetch with the same pin find it without the network. Debian publishes
// only SHA512SUMS for its cloud images, which is why sha512 pins exist at all.
//
// Content appears in sha256/ only by rename after verification, and an alias only after its
// content, so a reader never sees a partial or unverified file, whatever kills the process.
package source

import (
	"cmp"
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
	// SHA256 pins the content. Despite its name it takes either algorithm:
	//
	//	HEX, sha256:HEX         the sha256, 64 hex digits
	//	sha512:HEX              the sha512, 128 hex digits
	//	file:LOCATION           a checksum file (SHA256SUMS, CHECKSUM) that lists the input by its
	//	                        file name; sha256:file:LOCATION is the same
	//	sha512:file:LOCATION    the same, preferring the file's sha512 entry (SHA512SUMS)
	//
	// A checksum file that lists the input only with the other of the two algorithms is accepted
	// too, and the content is verified with that one: `file:…/SHA512SUMS` works.
	SHA256 string
}

var (
	// ErrUnpinned is returned for an input without a pin: ingot does not build on inputs that
	// nobody vouched for.
	ErrUnpinned = errors.New("no sha256 or sha512 pin")
	// ErrInvalidPin is returned for a pin that is not one (wrong length, not hex, an algorithm
	// other than sha256 and sha512).
	ErrInvalidPin = errors.New("invalid checksum pin")
	// ErrNoSum is returned when a checksum file does not list the input with a sha256 or sha512.
	ErrNoSum = errors.New("checksum file has no sha256 or sha512 for the input")
)

// MismatchError is returned when content does not have the pinned digest. The download has been
// deleted by then. Its message leaves the URL to the "fetch URL: " wrapping that Fetch adds.
type MismatchError struct {
	URL          string // redacted
	Algorithm    string // of Expected and Actual: "sha256" or "sha512"; "" means sha256
	Expected     string
	Actual       string
	ChecksumFile string // where Expected came from, if the pin named a checksum file
}

func (e *MismatchError) Error() string {
	algo := cmp.Or(e.Algorithm, sha256Algo)
	hint := fmt.Sprintf("update the %s pin if the upstream file changed; otherwise the download was corrupted or tampered with", algo)
	if e.ChecksumFile != "" {
		hint = fmt.Sprintf("%s lists %s; the file and its checksum file may have been updated at different times (retry later), or the download was corrupted or tampered with", e.ChecksumFile, e.Expected)
	}
	return fmt.Sprintf("%s mismatch: expected %s, got %s (%s)", algo, e.Expected, e.Actual, hint)
}

// mismatch is the MismatchError for content of loc whose hash under want.algo is actual.
func mismatch(loc location, want digest, actual string, p pin) *MismatchError {
	mm := &MismatchError{URL: loc.String(), Algorithm: want.algo, Expected: want.hex, Actual: actual}
	if p.sums != nil {
		mm.ChecksumFile = p.sums.String()
	}
	return mm
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
		return location{}, pin{}, fmt.Errorf("%s: %w: add `sha256: <64 hex digits>` or `sha256: file:<URL of its SHA256SUMS>` (or sha512: the same with 128 digits or SHA512SUMS)", loc, err)
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
		client:   defaultClient(),
	}
	for _, o := range opts {
		o(f)
	}
	for _, d := range []string{cacheDir, f.dir, f.blobDir(), f.aliasDir(), f.metaDir(), f.partialDir(), f.lockDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create cache directory: %w", err)
		}
	}
	return f, nil
}

// Dir is the source cache's directory (<cache>/sources), for messages that say where it is.
func (f *Fetcher) Dir() string { return f.dir }

// defaultClient is the client for http(s) inputs: http.DefaultTransport's, so it honours the proxy
// environment variables (HTTPS_PROXY, NO_PROXY) and SSL_CERT_FILE, with a bound on how long a
// server may take to answer.
func defaultClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = 2 * time.Minute
	return &http.Client{Transport: t}
}

// Fetch returns the path of a cached file with the content in.SHA256 pins, downloading or copying
// it first if it is not cached yet. The file is read-only and shared: callers must not modify it
// (use it as a qcow2 backing file, or copy it). Its name is its sha256, whichever algorithm the
// pin uses.
//
// Local files are copied into the cache too (a reflink where the file system can): a build that
// uses the file as a backing image must not see it change after it was verified.
func (f *Fetcher) Fetch(ctx context.Context, in Input) (string, error) {
	loc, p, err := in.parse()
	if err != nil {
		return "", err
	}
	want, err := f.resolve(ctx, loc, p)
	if err != nil {
		return "", err
	}
	if path, ok := f.hit(loc, want); ok {
		f.log.Debug("source cached", "url", loc.String(), want.algo, want.hex, "path", path)
		return path, nil
	}

	unlock, err := f.lock(ctx, loc, want)
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", loc, err)
	}
	defer unlock()
	// Whoever held the lock before us may have fetched it.
	if path, ok := f.hit(loc, want); ok {
		f.log.Info("source fetched by another build", "url", loc.String(), want.algo, want.hex)
		return path, nil
	}

	var sum string // the sha256 the content is stored under
	if loc.local() {
		sum, err = f.copyLocal(ctx, loc, want, p)
	} else {
		sum, err = f.download(ctx, loc, want, p)
	}
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", loc, err)
	}
	return f.blobPath(sum), nil
}

// Resolve returns the sha256 that in is pinned to, fetching only its checksum file if the pin
// names one; the input itself is not downloaded. It checks a pin that names a checksum file (the
// file is there and lists the input) without the cost of a download.
//
// An input pinned by sha512 (by sha512:HEX, or by a checksum file that lists only its sha512) has
// a sha256 only once it is in the cache: Resolve returns it if so, and otherwise the digest it
// will be verified with, as "sha512:HEX". Cached accepts both forms.
func (f *Fetcher) Resolve(ctx context.Context, in Input) (string, error) {
	loc, p, err := in.parse()
	if err != nil {
		return "", err
	}
	want, err := f.resolve(ctx, loc, p)
	if err != nil {
		return "", err
	}
	if want.algo == sha256Algo {
		return want.hex, nil
	}
	if sum, ok := f.readAlias(want.hex); ok {
		if _, ok := f.Cached(sum); ok {
			return sum, nil
		}
	}
	return want.String(), nil
}

// resolve returns the digest that the content must have: the pin's own, or the checksum file's.
func (f *Fetcher) resolve(ctx context.Context, loc location, p pin) (digest, error) {
	if p.sums == nil {
		return digest{algo: p.algo, hex: p.digest}, nil
	}
	data, err := f.readSums(ctx, *p.sums)
	if err != nil {
		return digest{}, fmt.Errorf("%s: read checksum file %s: %w", loc, p.sums, err)
	}
	d, err := lookupSum(data, loc.baseName(), p.algo)
	if err != nil {
		return digest{}, fmt.Errorf("%s: pinned by file:%s: %w", loc, p.sums, err)
	}
	if d.algo != p.algo {
		f.log.Debug("checksum file lists the input only with another algorithm; verifying with it",
			"url", loc.String(), "checksum_file", p.sums.String(), "pinned", p.algo, "using", d.algo)
	}
	f.log.Debug("pin resolved", "url", loc.String(), "checksum_file", p.sums.String(), d.algo, d.hex)
	return d, nil
}

// lock takes the lock for fetching d, telling the user when it has to wait for someone else.
func (f *Fetcher) lock(ctx context.Context, loc location, d digest) (unlock func(), err error) {
	l := newFlock(f.lockPath(d.key()))
	ok, err := l.TryLock()
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", l.Path(), err)
	}
	if !ok {
		f.log.Info("waiting for another build fetching the same file", "url", loc.String(), d.algo, d.hex, "lock", l.Path())
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
