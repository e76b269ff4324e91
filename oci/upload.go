package oci

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/ingot-build/ingot/internal/progress"
)

// DefaultChunkSize is the size of one PATCH of a chunked upload: large enough that requests
// cost little next to the bytes they carry, small enough that a retry resends little.
const DefaultChunkSize = 64 << 20

// DefaultAttempts is how many times one blob upload is tried before the push fails.
const DefaultAttempts = 5

// uploader is the destination of a push: the repository, with blob uploads replaced by this
// package's own, which send a blob larger than chunk in chunks, report progress, retry, and count
// what they sent. Manifests, existence checks and tags go to oras-go's repository unchanged.
type uploader struct {
	*remote.Repository
	ref      Ref
	chunk    int64
	attempts int
	progress progress.Reporter
	names    *sync.Map // digest → the file's name, for progress and errors
	stats    *stats
	backoff  func(attempt int) time.Duration
}

// stats counts a push's transfers; safe for concurrent use.
type stats struct {
	uploaded atomic.Int64 // blobs sent
	bytes    atomic.Int64 // bytes of the blobs sent
	skipped  atomic.Int64 // blobs the registry had already
	requests atomic.Int64 // PATCH requests of chunked uploads
}

// Push stores one blob or manifest. It is what oras.CopyGraph calls for every node the registry
// does not have yet.
func (u *uploader) Push(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	if isManifest(desc.MediaType) {
		return u.Repository.Push(ctx, desc, r)
	}
	name := u.name(desc)
	tr := u.progress.Start(name, desc.Size)
	err := u.pushBlob(ctx, desc, r, tr)
	tr.Done(err)
	if err != nil {
		return fmt.Errorf("upload %s (%s): %w", name, desc.Digest, err)
	}
	u.stats.uploaded.Add(1)
	u.stats.bytes.Add(desc.Size)
	return nil
}

func (u *uploader) name(desc ocispec.Descriptor) string {
	if t := desc.Annotations[ocispec.AnnotationTitle]; t != "" {
		return t
	}
	if v, ok := u.names.Load(desc.Digest); ok {
		return v.(string)
	}
	return desc.Digest.Encoded()[:12]
}

// pushBlob uploads one blob, trying up to u.attempts times. A source that can be read at an
// offset (a file) is retried from where the registry says the upload got to; anything else is
// read into memory first when small, and tried once when not.
func (u *uploader) pushBlob(ctx context.Context, desc ocispec.Descriptor, r io.Reader, tr progress.Tracker) error {
	ra, ok := r.(io.ReaderAt)
	if !ok {
		if desc.Size > 4*DefaultChunkSize {
			return u.upload(ctx, desc, &onceReaderAt{r: r}, tr)
		}
		data, err := content.ReadAll(r, desc)
		if err != nil {
			return fmt.Errorf("read it: %w", err)
		}
		ra = bytes.NewReader(data)
	}
	var err error
	for attempt := 1; attempt <= u.attempts; attempt++ {
		if err = u.upload(ctx, desc, ra, tr); err == nil || !retryable(ctx, err) {
			return err
		}
		if attempt < u.attempts {
			wait := u.backoff(attempt)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		}
		err = fmt.Errorf("attempt %d of %d: %w", attempt, u.attempts, err)
	}
	return err
}

// retryable says whether an upload that failed with err is worth starting again: not when ctx
// ended, nor when the registry refused the content itself (a wrong digest or size is no
// transient failure).
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var se *statusError
	if errors.As(err, &se) {
		return se.code >= 500 || se.code == http.StatusTooManyRequests || se.code == http.StatusRequestTimeout ||
			se.code == http.StatusRequestedRangeNotSatisfiable || se.code == http.StatusNotFound
	}
	return !errors.Is(err, errRefused)
}

// errRefused marks an error that no retry fixes.
var errRefused = errors.New("refused")

// statusError is an unexpected HTTP status, with the registry's error body.
type statusError struct {
	op   string
	code int
	body string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%s: HTTP %d: %s", e.op, e.code, e.body)
}

func newStatusError(op string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return &statusError{op: op, code: resp.StatusCode, body: strings.TrimSpace(string(b))}
}

// upload is one attempt: start an upload session (POST), send the content (one PUT when it is
// at most one chunk; PATCHes of u.chunk bytes then an empty PUT otherwise), per the distribution
// spec, "Pushing a blob in chunks". A PATCH that fails is recovered in the same session: the
// registry says how much it has (GET on the session's Location answers Range: 0-N), and the
// upload goes on from there.
func (u *uploader) upload(ctx context.Context, desc ocispec.Descriptor, ra io.ReaderAt, tr progress.Tracker) error {
	ctx = scoped(ctx, u.ref, auth.ActionPull, auth.ActionPush)
	tr.SetCurrent(0)
	start := &url.URL{Scheme: u.scheme(), Host: u.ref.Registry, Path: "/v2/" + u.ref.Repository + "/blobs/uploads/"}
	resp, err := u.do(ctx, http.MethodPost, start, nil, nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return newStatusError("start upload", resp)
	}
	loc, err := u.location(start, resp)
	if err != nil {
		return err
	}

	if desc.Size <= u.chunk {
		return u.finish(ctx, loc, desc, ra, desc.Size, tr)
	}
	var off int64
	recoveries := 0
	for off < desc.Size {
		n := min(u.chunk, desc.Size-off)
		next, err := u.patch(ctx, loc, ra, off, n, tr)
		if err == nil {
			loc, off = next, off+n
			continue
		}
		if ctx.Err() != nil || recoveries >= u.attempts {
			return err
		}
		recoveries++
		got, at, serr := u.status(ctx, loc)
		if serr != nil {
			return errors.Join(err, serr) // the session is gone: the caller starts anew
		}
		loc, off = got, at
		tr.SetCurrent(off)
	}
	return u.finish(ctx, loc, desc, nil, 0, tr)
}

func (u *uploader) scheme() string {
	if u.PlainHTTP {
		return "http"
	}
	return "https"
}

// do sends one request through the repository's client (authentication, retries of requests
// without a body). body, when not nil, must be re-readable: getBody makes it anew.
func (u *uploader) do(ctx context.Context, method string, to *url.URL, body func() io.Reader, hdr http.Header) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = body()
	}
	req, err := http.NewRequestWithContext(ctx, method, to.String(), rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(body()), nil }
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if cl := hdr.Get("Content-Length"); cl != "" {
		req.ContentLength, _ = strconv.ParseInt(cl, 10, 64)
		req.Header.Del("Content-Length")
	}
	resp, err := u.Repository.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, to.Path, err)
	}
	return resp, nil
}

// location is the upload session's URL from resp's Location, resolved against the request's,
// and refused when it leaves the registry's host or drops TLS: the session's requests carry
// the credentials (oras-go's rule too, GHSA-jxpm-75mh-9fp7).
func (u *uploader) location(base *url.URL, resp *http.Response) (*url.URL, error) {
	raw := resp.Header.Get("Location")
	if raw == "" {
		return nil, fmt.Errorf("%w: the registry gave no Location for the upload", errRefused)
	}
	loc, err := base.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: upload Location %q: %w", errRefused, raw, err)
	}
	if loc.Host != base.Host || (base.Scheme == "https" && loc.Scheme != "https") {
		return nil, fmt.Errorf("%w: upload Location %q is not on %s://%s", errRefused, raw, base.Scheme, base.Host)
	}
	return loc, nil
}

// patch sends bytes [off, off+n) of ra and returns the session's next URL.
func (u *uploader) patch(ctx context.Context, loc *url.URL, ra io.ReaderAt, off, n int64, tr progress.Tracker) (*url.URL, error) {
	u.stats.requests.Add(1)
	body := func() io.Reader {
		tr.SetCurrent(off)
		return io.TeeReader(io.NewSectionReader(ra, off, n), progress.Writer(tr))
	}
	hdr := http.Header{
		"Content-Type":   {"application/octet-stream"},
		"Content-Range":  {fmt.Sprintf("%d-%d", off, off+n-1)},
		"Content-Length": {strconv.FormatInt(n, 10)},
	}
	resp, err := u.do(ctx, http.MethodPatch, loc, body, hdr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return nil, newStatusError(fmt.Sprintf("send bytes %d-%d", off, off+n-1), resp)
	}
	return u.location(loc, resp)
}

// status asks where the upload session is: its URL and how many bytes the registry has.
func (u *uploader) status(ctx context.Context, loc *url.URL) (*url.URL, int64, error) {
	resp, err := u.do(ctx, http.MethodGet, loc, nil, nil)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return nil, 0, newStatusError("ask the upload's progress", resp)
	}
	next, err := u.location(loc, resp)
	if err != nil {
		return nil, 0, err
	}
	// Range: 0-N is the last byte held, inclusive. The distribution registry answers 0-0 for
	// both nothing and one byte; only nothing is safe to assume, since a wrong guess upward
	// loses a byte while one downward is refused (416) and retried from the start.
	_, last, ok := strings.Cut(strings.TrimPrefix(resp.Header.Get("Range"), "bytes="), "-")
	end, perr := strconv.ParseInt(last, 10, 64)
	if !ok || perr != nil {
		return nil, 0, fmt.Errorf("ask the upload's progress: Range %q", resp.Header.Get("Range"))
	}
	if end == 0 {
		return next, 0, nil
	}
	return next, end + 1, nil
}

// finish closes the session with the blob's digest (and, when ra is not nil, the n bytes of the
// whole blob, a monolithic upload): the registry
// checks the digest of everything it received before it keeps the blob.
func (u *uploader) finish(ctx context.Context, loc *url.URL, desc ocispec.Descriptor, ra io.ReaderAt, n int64, tr progress.Tracker) error {
	to := *loc
	q := to.Query()
	q.Set("digest", desc.Digest.String())
	to.RawQuery = q.Encode()
	hdr := http.Header{"Content-Type": {"application/octet-stream"}, "Content-Length": {strconv.FormatInt(n, 10)}}
	var mk func() io.Reader
	if ra != nil {
		mk = func() io.Reader {
			tr.SetCurrent(0)
			return io.TeeReader(io.NewSectionReader(ra, 0, n), progress.Writer(tr))
		}
	}
	resp, err := u.do(ctx, http.MethodPut, &to, mk, hdr)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		err := newStatusError("finish the upload", resp)
		if resp.StatusCode == http.StatusBadRequest {
			// DIGEST_INVALID, SIZE_INVALID: what was sent is not what the descriptor says.
			return fmt.Errorf("%w: the registry refused the content as not matching %s (size %d): the file changed after the build? %w", errRefused, desc.Digest, desc.Size, err)
		}
		return err
	}
	tr.SetCurrent(desc.Size)
	return nil
}

// onceReaderAt serves a large stream that cannot be reread: in order, once.
type onceReaderAt struct {
	r   io.Reader
	off int64
}

func (o *onceReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off != o.off {
		return 0, fmt.Errorf("%w: the content cannot be read again from offset %d", errRefused, off)
	}
	n, err := io.ReadFull(o.r, p)
	o.off += int64(n)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	return n, err
}

// isManifest says whether mediaType is one of the manifests this package pushes.
func isManifest(mediaType string) bool {
	switch mediaType {
	case ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex,
		"application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.distribution.manifest.list.v2+json":
		return true
	}
	return false
}
