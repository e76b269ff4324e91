package source

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// payload returns n deterministic pseudo-random bytes and their sha256.
func payload(n int) ([]byte, string) {
	r := rand.New(rand.NewPCG(1, uint64(n)))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:])
}

func sumOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func sum512Of(b []byte) string {
	s := sha512.Sum512(b)
	return hex.EncodeToString(s[:])
}

// server is an httptest server that records the requests it gets.
type server struct {
	*httptest.Server
	mu     sync.Mutex
	ranges []string // the Range header of each request, in order ("" for none)
	count  atomic.Int64
}

// newServer serves handle(n, w, r), where n counts requests from 1.
func newServer(t *testing.T, handle func(n int, w http.ResponseWriter, r *http.Request)) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(s.count.Add(1))
		s.mu.Lock()
		s.ranges = append(s.ranges, r.Header.Get("Range"))
		s.mu.Unlock()
		handle(n, w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) requests() int { return int(s.count.Load()) }

func (s *server) rangeHeaders() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...)
}

var modTime = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// serveFile serves data with Range and If-Range support, as a real file server does.
func serveFile(w http.ResponseWriter, r *http.Request, data []byte) {
	w.Header().Set("ETag", `"v1"`)
	http.ServeContent(w, r, "file", modTime, bytes.NewReader(data))
}

// serveTruncated declares the whole file but sends only its first cut bytes, then the
// connection drops.
func serveTruncated(w http.ResponseWriter, data []byte, cut int) {
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.Header().Set("ETag", `"v1"`)
	w.WriteHeader(http.StatusOK)
	w.Write(data[:cut])
	w.(http.Flusher).Flush()
	if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
		conn.Close()
	}
}

// logBuffer collects log output safely across goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// notifyHandler passes records on and signals ch for each record whose message is msg.
type notifyHandler struct {
	slog.Handler
	msg string
	ch  chan<- struct{}
}

func (h notifyHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.ch <- struct{}{}
	}
	return h.Handler.Handle(ctx, r)
}

func (h notifyHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return notifyHandler{h.Handler.WithAttrs(as), h.msg, h.ch}
}

func (h notifyHandler) WithGroup(g string) slog.Handler {
	return notifyHandler{h.Handler.WithGroup(g), h.msg, h.ch}
}

// testLogger logs to the test's output and to the returned buffer.
func testLogger(t *testing.T) (*slog.Logger, *logBuffer) {
	buf := &logBuffer{}
	h := slog.NewTextHandler(io.MultiWriter(t.Output(), buf), &slog.HandlerOptions{Level: slog.LevelDebug})
	return slog.New(h), buf
}

// newFetcher returns a Fetcher on a fresh cache with quick retries, and its log.
func newFetcher(t *testing.T, dir string, opts ...Option) (*Fetcher, *logBuffer) {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	logger, buf := testLogger(t)
	opts = append([]Option{WithLogger(logger), WithRetry(3, time.Millisecond)}, opts...)
	f, err := New(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return f, buf
}

// filesIn lists the regular files under dir, relative to it.
func filesIn(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, path)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// assertNoEntry fails if the cache has an entry or sidecar for digest.
func assertNoEntry(t *testing.T, f *Fetcher, digest string) {
	t.Helper()
	if p, ok := f.Cached(digest); ok {
		t.Errorf("cache entry %s exists after a failed fetch", p)
	}
	if fs := filesIn(t, f.blobDir()); len(fs) != 0 {
		t.Errorf("files in %s after a failed fetch: %v", f.blobDir(), fs)
	}
}
