package source

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/renameio/v2"

	"github.com/ingot-build/ingot/internal/ctxio"
	"github.com/ingot-build/ingot/internal/progress"
)

const userAgent = "ingot (+https://github.com/ingot-build/ingot)"

// errStalled cancels an attempt that received nothing for the stall timeout.
var errStalled = errors.New("stalled")

// partMeta records where a partial download came from, so a later run resumes it only from the
// same file: the same URL, or a server that confirms (If-Range) that its validator still holds.
// It holds the full URL, tokens included, so it is 0600 like everything in the cache.
type partMeta struct {
	URL          string `json:"url"`
	ETag         string `json:"etag,omitempty"` // strong ETags only: If-Range refuses weak ones
	LastModified string `json:"last_modified,omitempty"`
}

func (m partMeta) validator() string {
	if m.ETag != "" {
		return m.ETag
	}
	return m.LastModified
}

func (f *Fetcher) readPartMeta(key string) (partMeta, error) {
	var m partMeta
	b, err := os.ReadFile(f.partMetaPath(key))
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal(b, &m)
}

func (f *Fetcher) writePartMeta(key string, m partMeta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return renameio.WriteFile(f.partMetaPath(key), b, 0o600)
}

// hasher hashes content as it is written: always with sha256, which names the cache entry, and
// also with the pinned algorithm when that is another one. sha512 is not computed for sha256
// pins: it would slow down copies of large local files for nobody.
type hasher struct {
	sha256 hash.Hash
	pinned hash.Hash // sha256 itself for a sha256 pin
	w      io.Writer
}

func newHasher(want digest) *hasher {
	h := &hasher{sha256: sha256.New()}
	h.pinned, h.w = h.sha256, h.sha256
	if want.algo == sha512Algo {
		h.pinned = sha512.New()
		h.w = io.MultiWriter(h.sha256, h.pinned)
	}
	return h
}

func (h *hasher) Write(p []byte) (int, error) { return h.w.Write(p) }

func (h *hasher) Reset() { h.sha256.Reset(); h.pinned.Reset() }

// sums returns the sha256 of what was written, and its digest under the pinned algorithm.
func (h *hasher) sums() (sum, pinned string) {
	return hex.EncodeToString(h.sha256.Sum(nil)), hex.EncodeToString(h.pinned.Sum(nil))
}

// part is a download in progress into <partial>/<key>.part. The hashes cover exactly the bytes
// in the file, so verification needs no second pass over it.
type part struct {
	f       *Fetcher
	loc     location
	key     string // want.key()
	file    *os.File
	h       *hasher
	size    int64 // bytes in file, and in h
	high    int64 // the most bytes any attempt reached: progress beyond it resets the retry count
	total   int64 // full size, -1 if unknown
	meta    partMeta
	resumed bool // the content includes bytes from before a Range request
	tr      progress.Tracker
}

// download fetches loc into the cache, verifying it against want, and returns the sha256 it is
// stored under. It resumes a partial download if one is left over; the hashes then cover the
// bytes from before too, so the whole file is verified. If a resumed download fails
// verification, the fault may be ours (the file changed between the two halves and the server
// could not tell), so it starts over once before reporting a mismatch.
func (f *Fetcher) download(ctx context.Context, loc location, want digest, p pin) (sum string, err error) {
	tr := f.progress.Start(loc.baseName(), 0)
	defer func() { tr.Done(err) }()
	for fresh := false; ; fresh = true {
		pt, err := f.openPart(ctx, loc, want, tr, fresh)
		if err != nil {
			return "", err
		}
		if err := f.retry(ctx, loc.String(), pt.attempt); err != nil {
			return "", pt.abandon(err)
		}
		sum, actual := pt.h.sums()
		if actual == want.hex {
			err := f.commit(ctx, pt.file, sum, want, loc)
			err = errors.Join(err, pt.file.Close())
			if err != nil {
				return "", fmt.Errorf("store in cache: %w", err)
			}
			if err := removeIfExists(f.partMetaPath(pt.key)); err != nil {
				f.log.Warn("remove partial download metadata", "err", err)
			}
			f.log.Info("source fetched", "url", loc.String(), "sha256", sum, want.logPin(), "size", progress.Bytes(pt.size))
			return sum, nil
		}
		pt.discard()
		if pt.resumed && !fresh {
			f.log.Warn(want.algo+" mismatch after resuming a download; downloading it again from the start",
				"url", loc.String(), "expected", want.hex, "actual", actual)
			continue
		}
		return "", mismatch(loc, want, actual, p)
	}
}

// openPart opens the partial download for want, keeping what an earlier attempt left if it can
// be resumed from loc (and fresh is false).
func (f *Fetcher) openPart(ctx context.Context, loc location, want digest, tr progress.Tracker, fresh bool) (*part, error) {
	key := want.key()
	file, err := os.OpenFile(f.partPath(key), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open partial download: %w", err)
	}
	pt := &part{f: f, loc: loc, key: key, file: file, h: newHasher(want), total: -1, tr: tr}
	fi, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("open partial download: %w", err)
	}
	if fresh || fi.Size() == 0 {
		return pt, pt.reset()
	}
	m, err := f.readPartMeta(key)
	switch {
	case err != nil:
		f.log.Info("partial download of unknown origin; starting over", "path", file.Name(), "err", err)
		return pt, pt.reset()
	case m.URL != loc.url.String() && m.validator() == "":
		f.log.Info("partial download came from another URL that gave no ETag or Last-Modified to check it against; starting over", "path", file.Name())
		return pt, pt.reset()
	}
	// Hash what is there, so the resumed bytes continue the same hash.
	if _, err := io.Copy(pt.h, ctxio.Reader(ctx, io.NewSectionReader(file, 0, fi.Size()))); err != nil {
		file.Close()
		return nil, fmt.Errorf("read partial download: %w", err)
	}
	pt.size, pt.high, pt.meta = fi.Size(), fi.Size(), m
	f.log.Info("found a partial download", "url", loc.String(), "have", progress.Bytes(pt.size))
	return pt, nil
}

// reset empties the partial download, to start over.
func (pt *part) reset() error {
	pt.h.Reset()
	pt.size, pt.total, pt.meta, pt.resumed = 0, -1, partMeta{}, false
	pt.tr.SetCurrent(0)
	err := errors.Join(pt.file.Truncate(0), removeIfExists(pt.f.partMetaPath(pt.key)))
	if err != nil {
		pt.file.Close()
		return fmt.Errorf("reset partial download: %w", err)
	}
	return nil
}

// discard deletes the partial download.
func (pt *part) discard() {
	pt.file.Close()
	if err := errors.Join(removeIfExists(pt.file.Name()), removeIfExists(pt.f.partMetaPath(pt.key))); err != nil {
		pt.f.log.Warn("remove partial download", "err", err)
	}
}

// abandon gives up on this fetch: what was received stays for the next run to resume (unless
// nothing was), and err is returned.
func (pt *part) abandon(err error) error {
	if pt.size == 0 {
		pt.discard()
		return err
	}
	pt.file.Close()
	pt.f.log.Info("kept the partial download to resume next time", "url", pt.loc.String(), "have", progress.Bytes(pt.size))
	return err
}

// attempt makes one request and appends what it receives to the partial download.
func (pt *part) attempt(ctx context.Context) (progressed bool, err error) {
	f := pt.f
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(f.stall, func() { cancel(errStalled) })
	defer stall.Stop()

	req, err := http.NewRequestWithContext(actx, http.MethodGet, pt.loc.url.String(), nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("User-Agent", userAgent)
	// Byte offsets must mean the same thing in every attempt: no transparent compression.
	req.Header.Set("Accept-Encoding", "identity")
	if pt.size > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", pt.size))
		if v := pt.meta.validator(); v != "" {
			req.Header.Set("If-Range", v)
		}
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return false, pt.f.netErr(ctx, actx, err)
	}
	defer resp.Body.Close()

	switch resp.StatusCode {
	case http.StatusPartialContent:
		cr := resp.Header.Get("Content-Range")
		start, total, ok := parseContentRange(cr)
		if !ok || pt.size == 0 || start != pt.size {
			err := fmt.Errorf("asked for bytes from %d, server sent range %q", pt.size, cr)
			if rerr := pt.reset(); rerr != nil {
				return false, rerr
			}
			return false, transient(err)
		}
		pt.total, pt.resumed = total, true
		f.log.Info("resuming download", "url", pt.loc.String(), "at", progress.Bytes(pt.size), "of", progress.Bytes(total))
	case http.StatusOK:
		if pt.size > 0 {
			f.log.Info("server sent the whole file (it does not do ranges, or the file changed); starting over",
				"url", pt.loc.String())
			if err := pt.reset(); err != nil {
				return false, err
			}
		}
		pt.total = resp.ContentLength
		pt.meta = partMeta{URL: pt.loc.url.String(), ETag: strongETag(resp.Header.Get("ETag")), LastModified: resp.Header.Get("Last-Modified")}
		if err := f.writePartMeta(pt.key, pt.meta); err != nil {
			return false, fmt.Errorf("record partial download: %w", err)
		}
	case http.StatusRequestedRangeNotSatisfiable:
		if total, ok := parseUnsatisfiedRange(resp.Header.Get("Content-Range")); ok && pt.size > 0 && total == pt.size {
			// An earlier run received everything but stopped before verifying it.
			pt.total, pt.resumed = total, true
			return false, nil
		}
		f.log.Info("server cannot resume the partial download; starting over", "url", pt.loc.String(), "had", progress.Bytes(pt.size))
		if err := pt.reset(); err != nil {
			return false, err
		}
		return pt.attempt(ctx)
	default:
		return false, statusError(resp)
	}

	pt.tr.SetTotal(pt.total)
	pt.tr.SetCurrent(pt.size)
	rerr, werr := pt.copyBody(resp.Body, stall)
	progressed = pt.size > pt.high
	pt.high = max(pt.high, pt.size)
	if werr != nil {
		return progressed, fmt.Errorf("write partial download: %w", werr)
	}
	if rerr != nil {
		return progressed, f.netErr(ctx, actx, rerr)
	}
	if pt.total >= 0 && pt.size != pt.total {
		return progressed, transient(fmt.Errorf("transfer ended after %d of %d bytes", pt.size, pt.total))
	}
	return progressed, nil
}

// copyBody appends body to the partial download, restarting the stall timer whenever bytes
// arrive. It returns read and write errors apart: only the first are worth a retry.
func (pt *part) copyBody(body io.Reader, stall *time.Timer) (rerr, werr error) {
	buf := make([]byte, 256<<10)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			stall.Reset(pt.f.stall)
			if _, werr := pt.file.WriteAt(buf[:n], pt.size); werr != nil {
				return nil, werr
			}
			pt.h.Write(buf[:n])
			pt.size += int64(n)
			pt.tr.Add(int64(n))
		}
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			return err, nil
		}
	}
}

// netErr classifies a failed request or read: the caller's cancellation ends the fetch, anything
// else is worth a retry. It drops *url.Error's copy of the URL, which would show its query
// (tokens) in messages; callers name the input themselves.
func (f *Fetcher) netErr(ctx, actx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(context.Cause(actx), errStalled) {
		return transient(fmt.Errorf("no data received for %s", f.stall))
	}
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("connection closed before the end of the file: %w", err)
	}
	return transient(err)
}

// statusError turns an unexpected HTTP status into an error; server trouble and rate limits are
// transient, the rest (404, 403) is not going to change by asking again.
func statusError(resp *http.Response) error {
	err := fmt.Errorf("server answered %s", resp.Status)
	switch c := resp.StatusCode; {
	case c == http.StatusRequestTimeout, c == http.StatusTooManyRequests, c >= 500:
		return &transientError{err: err, after: retryAfter(resp.Header.Get("Retry-After"))}
	}
	return err
}

// retryAfter parses Retry-After (RFC 9110 §10.2.3): seconds or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// parseContentRange parses "bytes START-END/TOTAL" (RFC 9110 §14.4); total is -1 if "*".
func parseContentRange(v string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	s, e, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(s, 10, 64)
	end, err2 := strconv.ParseInt(e, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, false
	}
	if tot == "*" {
		return start, -1, true
	}
	total, err := strconv.ParseInt(tot, 10, 64)
	if err != nil || total <= end {
		return 0, 0, false
	}
	return start, total, true
}

// parseUnsatisfiedRange parses a 416's "bytes */TOTAL".
func parseUnsatisfiedRange(v string) (total int64, ok bool) {
	tot, found := strings.CutPrefix(v, "bytes */")
	if !found {
		return 0, false
	}
	total, err := strconv.ParseInt(tot, 10, 64)
	return total, err == nil && total >= 0
}

// strongETag returns etag unless it is weak (W/"…"), which If-Range must not carry (RFC 9110
// §13.1.5).
func strongETag(etag string) string {
	if strings.HasPrefix(etag, "W/") {
		return ""
	}
	return etag
}
