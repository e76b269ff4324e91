package source

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestFetchGoodSum(t *testing.T) {
	data, sum := payload(300 << 10)
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { serveFile(w, r, data) })
	f, _ := newFetcher(t, "")
	in := Input{URL: srv.URL + "/debian.qcow2", SHA256: "sha256:" + strings.ToUpper(sum)}

	path, err := f.Fetch(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(f.blobDir(), sum); path != want {
		t.Errorf("path = %s, want %s", path, want)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if sumOf(got) != sum {
		t.Errorf("cached content has sha256 %s, want %s", sumOf(got), sum)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o444 {
		t.Errorf("cached file mode %v, want read-only 0444", fi.Mode().Perm())
	}
	if p, ok := f.Cached(sum); !ok || p != path {
		t.Errorf("Cached(%s) = %q, %v; want %q, true", sum, p, ok, path)
	}
	if left := filesIn(t, f.partialDir()); len(left) != 0 {
		t.Errorf("partial directory not empty after success: %v", left)
	}

	// A second fetch is served from the cache without asking the server.
	again, err := f.Fetch(t.Context(), in)
	if err != nil || again != path {
		t.Fatalf("second Fetch = %q, %v; want %q", again, err, path)
	}
	if n := srv.requests(); n != 1 {
		t.Errorf("server got %d requests, want 1", n)
	}

	entries, err := f.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].SHA256 != sum || entries[0].Size != int64(len(data)) ||
		entries[0].URL != in.URL || entries[0].Partial || entries[0].LastUsed.IsZero() {
		t.Errorf("List() = %+v, want one complete entry for %s from %s", entries, sum, in.URL)
	}
}

func TestFetchBadSum(t *testing.T) {
	data, actual := payload(100 << 10)
	_, wrong := payload(7)
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { serveFile(w, r, data) })
	f, _ := newFetcher(t, "")
	url := srv.URL + "/img.raw"

	_, err := f.Fetch(t.Context(), Input{URL: url, SHA256: wrong})
	var mm *MismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("Fetch error = %v, want a *MismatchError", err)
	}
	if mm.Expected != wrong || mm.Actual != actual || mm.URL != url {
		t.Errorf("MismatchError = %+v, want expected %s, actual %s, URL %s", mm, wrong, actual, url)
	}
	for _, s := range []string{url, wrong, actual, "update the sha256 pin"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
	assertNoEntry(t, f, wrong)
	assertNoEntry(t, f, actual)
	if left := filesIn(t, f.partialDir()); len(left) != 0 {
		t.Errorf("download not deleted after a mismatch: %v", left)
	}
	if n := srv.requests(); n != 1 {
		t.Errorf("server got %d requests, want 1 (a fresh download that mismatches is not retried)", n)
	}
}

func TestFetchTruncatedBody(t *testing.T) {
	// The server always drops the connection half-way and cannot resume: every attempt fails
	// the same way, and the fetch gives up after the retry budget.
	data, sum := payload(200 << 10)
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { serveTruncated(w, data, len(data)/2) })
	f, _ := newFetcher(t, "")

	_, err := f.Fetch(t.Context(), Input{URL: srv.URL + "/img", SHA256: sum})
	if err == nil {
		t.Fatal("Fetch of a truncated body succeeded")
	}
	if !strings.Contains(err.Error(), "giving up after 3 attempts") || !strings.Contains(err.Error(), "before the end of the file") {
		t.Errorf("error %q does not say it gave up on a truncated transfer", err)
	}
	if n := srv.requests(); n != 3 {
		t.Errorf("server got %d requests, want 3 (the retry budget)", n)
	}
	for i, r := range srv.rangeHeaders()[1:] {
		if r != "bytes=102400-" {
			t.Errorf("request %d Range = %q, want a resume from the half that arrived", i+2, r)
		}
	}
	assertNoEntry(t, f, sum)
	// What arrived is kept for a later resume.
	if fi, err := os.Stat(f.partPath(sum)); err != nil || fi.Size() != int64(len(data)/2) {
		t.Errorf("partial download: %v, %v; want %d bytes kept", fi, err, len(data)/2)
	}
}

func TestFetchResumesAfterTruncation(t *testing.T) {
	data, sum := payload(256 << 10)
	cut := 100 << 10
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			serveTruncated(w, data, cut)
			return
		}
		if r.Header.Get("If-Range") != `"v1"` {
			t.Errorf("resume request If-Range = %q, want the ETag seen first", r.Header.Get("If-Range"))
		}
		serveFile(w, r, data)
	})
	f, log := newFetcher(t, "")

	path, err := f.Fetch(t.Context(), Input{URL: srv.URL + "/img", SHA256: sum})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if sumOf(got) != sum {
		t.Fatalf("resumed file has sha256 %s, want %s", sumOf(got), sum)
	}
	if want := []string{"", "bytes=102400-"}; !slices.Equal(srv.rangeHeaders(), want) {
		t.Errorf("Range headers = %q, want %q", srv.rangeHeaders(), want)
	}
	if !strings.Contains(log.String(), "attempt=\"1 of 3\"") {
		t.Errorf("log does not say which attempt failed:\n%s", log)
	}
}

func TestFetchServerWithoutRange(t *testing.T) {
	// The first response is cut; the server ignores Range and sends everything again: the
	// partial download must start over, not be appended to.
	data, sum := payload(256 << 10)
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			serveTruncated(w, data, 50<<10)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data)
	})
	f, _ := newFetcher(t, "")

	path, err := f.Fetch(t.Context(), Input{URL: srv.URL + "/img", SHA256: sum})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if len(got) != len(data) || sumOf(got) != sum {
		t.Fatalf("file has %d bytes, sha256 %s; want %d, %s", len(got), sumOf(got), len(data), sum)
	}
	if want := []string{"", "bytes=51200-"}; !slices.Equal(srv.rangeHeaders(), want) {
		t.Errorf("Range headers = %q, want %q", srv.rangeHeaders(), want)
	}
}

func TestFetchNotFound(t *testing.T) {
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	f, _ := newFetcher(t, "")
	_, sum := payload(1)
	url := srv.URL + "/gone.iso"

	_, err := f.Fetch(t.Context(), Input{URL: url, SHA256: sum})
	if err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), url) {
		t.Fatalf("Fetch error = %v, want a 404 naming %s", err, url)
	}
	if n := srv.requests(); n != 1 {
		t.Errorf("server got %d requests, want 1: a 404 is not retried", n)
	}
	assertNoEntry(t, f, sum)
	if left := filesIn(t, f.partialDir()); len(left) != 0 {
		t.Errorf("files left in the partial directory: %v", left)
	}
}

func TestFetchRetriesServerErrors(t *testing.T) {
	data, sum := payload(10 << 10)
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		serveFile(w, r, data)
	})
	f, log := newFetcher(t, "")
	if _, err := f.Fetch(t.Context(), Input{URL: srv.URL + "/img", SHA256: sum}); err != nil {
		t.Fatal(err)
	}
	if n := srv.requests(); n != 2 {
		t.Errorf("server got %d requests, want 2", n)
	}
	if l := log.String(); !strings.Contains(l, "503 Service Unavailable") || !strings.Contains(l, `attempt="1 of 3"`) {
		t.Errorf("log does not report the failed attempt:\n%s", l)
	}
}

func TestFetchUnpinned(t *testing.T) {
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { w.Write([]byte("x")) })
	f, _ := newFetcher(t, "")
	for _, pin := range []string{"", "   "} {
		url := srv.URL + "/latest.qcow2"
		_, err := f.Fetch(t.Context(), Input{URL: url, SHA256: pin})
		if !errors.Is(err, ErrUnpinned) {
			t.Fatalf("Fetch(sha256 %q) error = %v, want ErrUnpinned", pin, err)
		}
		if !strings.Contains(err.Error(), url) {
			t.Errorf("error %q does not name the URL", err)
		}
		if err := (Input{URL: url, SHA256: pin}).Check(); !errors.Is(err, ErrUnpinned) {
			t.Errorf("Check error = %v, want ErrUnpinned", err)
		}
		if _, err := f.Resolve(t.Context(), Input{URL: url, SHA256: pin}); !errors.Is(err, ErrUnpinned) {
			t.Errorf("Resolve error = %v, want ErrUnpinned", err)
		}
	}
	if n := srv.requests(); n != 0 {
		t.Errorf("server got %d requests for an unpinned input, want 0", n)
	}
}

func TestFetchCancelledMidDownload(t *testing.T) {
	data, sum := payload(256 << 10)
	half := len(data) / 2
	sent := make(chan struct{})
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n > 1 { // the next run resumes
			serveFile(w, r, data)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data[:half])
		w.(http.Flusher).Flush()
		close(sent)
		<-r.Context().Done()
	})
	f, _ := newFetcher(t, "")
	in := Input{URL: srv.URL + "/img", SHA256: sum}

	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := f.Fetch(ctx, in)
		errc <- err
	}()
	<-sent
	// Wait until the first half is on disk, then interrupt.
	waitFor(t, func() bool { fi, err := os.Stat(f.partPath(sum)); return err == nil && fi.Size() == int64(half) })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Fetch error = %v, want context.Canceled", err)
	}
	assertNoEntry(t, f, sum)

	// The next run resumes where the interrupted one stopped.
	if _, err := f.Fetch(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	if got := srv.rangeHeaders(); len(got) != 2 || got[1] != "bytes="+strconv.Itoa(half)+"-" {
		t.Errorf("Range headers = %q, want the second run to resume at %d", got, half)
	}
}

func TestFetchStalledTransferResumes(t *testing.T) {
	data, sum := payload(128 << 10)
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n > 1 {
			serveFile(w, r, data)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Header().Set("ETag", `"v1"`)
		w.Write(data[:1000])
		w.(http.Flusher).Flush()
		<-r.Context().Done() // goes silent
	})
	f, log := newFetcher(t, "", WithStallTimeout(300*time.Millisecond))
	if _, err := f.Fetch(t.Context(), Input{URL: srv.URL + "/img", SHA256: sum}); err != nil {
		t.Fatal(err)
	}
	if got := srv.rangeHeaders(); !slices.Equal(got, []string{"", "bytes=1000-"}) {
		t.Errorf("Range headers = %q, want a resume at 1000", got)
	}
	if !strings.Contains(log.String(), "no data received for 300ms") {
		t.Errorf("log does not explain the stall:\n%s", log)
	}
}

// seedPartial leaves a partial download as an interrupted run would.
func seedPartial(t *testing.T, f *Fetcher, digest string, content []byte, m partMeta) {
	t.Helper()
	if err := os.WriteFile(f.partPath(digest), content, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.writePartMeta(digest, m); err != nil {
		t.Fatal(err)
	}
}

func TestFetchPartialLeftovers(t *testing.T) {
	data, sum := payload(64 << 10)
	garbage, _ := payload(1000)
	tests := []struct {
		name       string
		content    []byte
		meta       func(url string) partMeta
		wantRanges []string
	}{{
		// A corrupt prefix from the same URL without validators is resumed blindly; the sum then
		// fails and the download starts over once, instead of reporting a mismatch.
		name:       "corrupt prefix starts over",
		content:    garbage,
		meta:       func(url string) partMeta { return partMeta{URL: url} },
		wantRanges: []string{"bytes=1000-", ""},
	}, {
		// Everything arrived but the run died before verifying: the server's 416 says so.
		name:       "complete part is verified",
		content:    data,
		meta:       func(url string) partMeta { return partMeta{URL: url, ETag: `"v1"`} },
		wantRanges: []string{"bytes=65536-"},
	}, {
		name:       "other URL without validator is not resumed",
		content:    data[:1000],
		meta:       func(string) partMeta { return partMeta{URL: "https://mirror.example/img"} },
		wantRanges: []string{""},
	}, {
		// Another mirror with the same sum may resume it if its server confirms the ETag.
		name:       "other URL with a matching ETag resumes",
		content:    data[:1000],
		meta:       func(string) partMeta { return partMeta{URL: "https://mirror.example/img", ETag: `"v1"`} },
		wantRanges: []string{"bytes=1000-"},
	}, {
		name:       "other URL with a stale ETag gets the whole file",
		content:    data[:1000],
		meta:       func(string) partMeta { return partMeta{URL: "https://mirror.example/img", ETag: `"old"`} },
		wantRanges: []string{"bytes=1000-"}, // If-Range fails, the server sends 200
	}, {
		name:       "unknown origin starts over",
		content:    data[:1000],
		wantRanges: []string{""},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { serveFile(w, r, data) })
			f, _ := newFetcher(t, "")
			url := srv.URL + "/img"
			if tt.meta != nil {
				seedPartial(t, f, sum, tt.content, tt.meta(url))
			} else if err := os.WriteFile(f.partPath(sum), tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			path, err := f.Fetch(t.Context(), Input{URL: url, SHA256: sum})
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(path); sumOf(got) != sum {
				t.Errorf("cached sha256 %s, want %s", sumOf(got), sum)
			}
			if got := srv.rangeHeaders(); !slices.Equal(got, tt.wantRanges) {
				t.Errorf("Range headers = %q, want %q", got, tt.wantRanges)
			}
		})
	}
}

func TestFetchRedactsCredentials(t *testing.T) {
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { http.Error(w, "denied", http.StatusForbidden) })
	f, log := newFetcher(t, "")
	_, sum := payload(1)
	url := strings.Replace(srv.URL, "http://", "http://user:hunter2@", 1) + "/img?X-Amz-Signature=s3cr3t&v=1"
	_, err := f.Fetch(t.Context(), Input{URL: url, SHA256: sum})
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("Fetch error = %v, want a 403", err)
	}
	for _, secret := range []string{"hunter2", "s3cr3t"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q shows a credential", err)
		}
		if strings.Contains(log.String(), secret) {
			t.Errorf("log shows a credential:\n%s", log)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatal("condition not met in 10s")
		case <-tick.C:
		}
	}
}
