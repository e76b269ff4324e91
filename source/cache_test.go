package source

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ingot-build/ingot/internal/progress"
)

func TestFetchLocal(t *testing.T) {
	data, sum := payload(64 << 10)
	src := filepath.Join(t.TempDir(), "local image.qcow2")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, url := range []string{src, "file://" + src} {
		t.Run(url, func(t *testing.T) {
			f, _ := newFetcher(t, "")
			path, err := f.Fetch(t.Context(), Input{URL: url, SHA256: sum})
			if err != nil {
				t.Fatal(err)
			}
			if path == src || filepath.Dir(path) != f.blobDir() {
				t.Fatalf("Fetch = %s, want a copy in %s", path, f.blobDir())
			}
			// The cache keeps what was verified, whatever happens to the original.
			if err := os.WriteFile(src+".new", []byte("changed"), 0o644); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(path)
			if sumOf(got) != sum {
				t.Errorf("cached copy sha256 %s, want %s", sumOf(got), sum)
			}
			if left := filesIn(t, f.partialDir()); len(left) != 0 {
				t.Errorf("temporary files left: %v", left)
			}
		})
	}
}

func TestFetchLocalErrors(t *testing.T) {
	data, sum := payload(4 << 10)
	dir := t.TempDir()
	src := filepath.Join(dir, "img")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, other := payload(5)
	tests := []struct {
		name  string
		in    Input
		check func(error) bool
	}{
		{"mismatch", Input{URL: src, SHA256: other}, func(err error) bool {
			var mm *MismatchError
			return errors.As(err, &mm) && mm.Actual == sum && mm.Expected == other && strings.Contains(err.Error(), src)
		}},
		{"missing", Input{URL: filepath.Join(dir, "nope"), SHA256: sum}, func(err error) bool { return errors.Is(err, os.ErrNotExist) }},
		{"directory", Input{URL: dir, SHA256: sum}, func(err error) bool { return strings.Contains(err.Error(), "not a regular file") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := newFetcher(t, "")
			_, err := f.Fetch(t.Context(), tt.in)
			if err == nil || !tt.check(err) {
				t.Fatalf("Fetch error = %v", err)
			}
			assertNoEntry(t, f, sum)
			assertNoEntry(t, f, other)
			if left := filesIn(t, f.partialDir()); len(left) != 0 {
				t.Errorf("temporary files left: %v", left)
			}
		})
	}
}

func TestListAndPrune(t *testing.T) {
	oldData, oldSum := payload(1000)
	newData, newSum := payload(2000)
	partData, partSum := payload(3000)
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/old":
			serveFile(w, r, oldData)
		case "/new":
			serveFile(w, r, newData)
		}
	})
	f, _ := newFetcher(t, "")
	for _, in := range []Input{{URL: srv.URL + "/old", SHA256: oldSum}, {URL: srv.URL + "/new", SHA256: newSum}} {
		if _, err := f.Fetch(t.Context(), in); err != nil {
			t.Fatal(err)
		}
	}
	seedPartial(t, f, partSum, partData[:100], partMeta{URL: srv.URL + "/part?token=secret"})
	// A stray copy that a crashed process left behind.
	stray := filepath.Join(f.partialDir(), oldSum+".123.copy")
	if err := os.WriteFile(stray, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}

	monthAgo := time.Now().Add(-30 * 24 * time.Hour)
	for _, p := range []string{f.metaPath(oldSum), f.partPath(partSum), stray} {
		if err := os.Chtimes(p, monthAgo, monthAgo); err != nil {
			t.Fatal(err)
		}
	}

	entries, err := f.List()
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		sum, url string
		size     int64
		partial  bool
	}
	var got []row
	for _, e := range entries {
		got = append(got, row{e.SHA256, e.URL, e.Size, e.Partial})
	}
	want := []row{
		{newSum, srv.URL + "/new", 2000, false},
		// Least recently used last; equal times sort by sum.
		{min(oldSum, partSum), "", 0, false},
		{max(oldSum, partSum), "", 0, false},
	}
	want[1], want[2] = row{oldSum, srv.URL + "/old", 1000, false}, row{partSum, srv.URL + "/part?token=REDACTED", 100, true}
	if oldSum > partSum {
		want[1], want[2] = want[2], want[1]
	}
	if !slices.Equal(got, want) {
		t.Errorf("List() =\n%v\nwant\n%v", got, want)
	}

	// Fetching the old entry again marks it used, so a week's prune keeps it.
	if _, err := f.Fetch(t.Context(), Input{URL: srv.URL + "/old", SHA256: oldSum}); err != nil {
		t.Fatal(err)
	}
	removed, err := f.Prune(7 * 24 * time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0].SHA256 != partSum || !removed[0].Partial {
		t.Errorf("Prune removed %+v, want only the stale partial download", removed)
	}
	if err := os.Chtimes(f.metaPath(oldSum), monthAgo, monthAgo); err != nil {
		t.Fatal(err)
	}
	removed, err = f.Prune(7 * 24 * time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0].SHA256 != oldSum {
		t.Errorf("Prune removed %+v, want only %s", removed, oldSum)
	}
	if _, ok := f.Cached(oldSum); ok {
		t.Error("pruned entry still cached")
	}
	if _, ok := f.Cached(newSum); !ok {
		t.Error("recent entry pruned")
	}
	if _, err := os.Stat(stray); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale copy not pruned: %v", err)
	}
}

func TestPruneSkipsLockedEntries(t *testing.T) {
	data, sum := payload(100)
	src := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, _ := newFetcher(t, "")
	if _, err := f.Fetch(t.Context(), Input{URL: src, SHA256: sum}); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(f.metaPath(sum), old, old); err != nil {
		t.Fatal(err)
	}
	l := newFlock(f.lockPath(sum))
	if err := l.Lock(); err != nil {
		t.Fatal(err)
	}
	removed, err := f.Prune(time.Minute)
	l.Unlock()
	if err != nil || len(removed) != 0 {
		t.Fatalf("Prune = %v, %v; want nothing removed while the entry is locked", removed, err)
	}
	if _, ok := f.Cached(sum); !ok {
		t.Error("locked entry was pruned")
	}
}

func TestCacheLayoutPermissions(t *testing.T) {
	data, sum := payload(100)
	src := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "cache")
	f, _ := newFetcher(t, root)
	if _, err := f.Fetch(t.Context(), Input{URL: src, SHA256: sum}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{root, f.dir, f.blobDir(), f.metaDir(), f.partialDir(), f.lockDir()} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, %v; want a 0700 directory", d, fi.Mode(), err)
		}
	}
	if fi, err := os.Stat(f.metaPath(sum)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("metadata %v, %v; want 0600", fi.Mode(), err)
	}
}

func TestCachedRejectsBadDigests(t *testing.T) {
	f, _ := newFetcher(t, "")
	for _, d := range []string{"", "../../etc/passwd", strings.Repeat("z", 64), sumA[:10]} {
		if p, ok := f.Cached(d); ok {
			t.Errorf("Cached(%q) = %q, true", d, p)
		}
	}
}

// recorder is a progress.Reporter that keeps what it was told.
type recorder struct {
	mu     sync.Mutex
	events []string
	cur    int64
	total  int64
	done   []error
}

func (r *recorder) Start(name string, total int64) progress.Tracker {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, "start "+name)
	r.total = total
	return r
}
func (r *recorder) Add(n int64)          { r.mu.Lock(); r.cur += n; r.mu.Unlock() }
func (r *recorder) SetCurrent(c int64)   { r.mu.Lock(); r.cur = c; r.mu.Unlock() }
func (r *recorder) SetTotal(total int64) { r.mu.Lock(); r.total = total; r.mu.Unlock() }
func (r *recorder) Done(err error)       { r.mu.Lock(); r.done = append(r.done, err); r.mu.Unlock() }

func TestFetchReportsProgress(t *testing.T) {
	data, sum := payload(200 << 10)
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			serveTruncated(w, data, 1000)
			return
		}
		serveFile(w, r, data)
	})
	rec := &recorder{}
	f, _ := newFetcher(t, "", WithProgress(rec))
	if _, err := f.Fetch(t.Context(), Input{URL: srv.URL + "/dl/img.qcow2", SHA256: sum}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rec.events, []string{"start img.qcow2"}) || rec.cur != int64(len(data)) ||
		rec.total != int64(len(data)) || len(rec.done) != 1 || rec.done[0] != nil {
		t.Errorf("progress: events %v, current %d, total %d, done %v; want one tracker that reached %d and succeeded",
			rec.events, rec.cur, rec.total, rec.done, len(data))
	}

	// A failure ends the tracker with its error.
	rec = &recorder{}
	f, _ = newFetcher(t, "", WithProgress(rec))
	_, other := payload(1)
	_, err := f.Fetch(t.Context(), Input{URL: srv.URL + "/dl/img.qcow2", SHA256: other})
	var mm *MismatchError
	if len(rec.done) != 1 || !errors.As(rec.done[0], &mm) || !errors.As(err, &mm) {
		t.Errorf("tracker ended with %v, want the fetch error %v", rec.done, err)
	}
}
