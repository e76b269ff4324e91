package source

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// fixture is an input served over loopback HTTP and kept as a local file, so one table can fetch
// it either way.
type fixture struct {
	data   []byte
	sum    string // sha256
	sum512 string
	path   string // the local file
	srv    *server
}

func newFixture(t *testing.T, n int) *fixture {
	t.Helper()
	data, sum := payload(n)
	fx := &fixture{data: data, sum: sum, sum512: sum512Of(data)}
	fx.path = filepath.Join(t.TempDir(), "debian-12-genericcloud-amd64.qcow2")
	if err := os.WriteFile(fx.path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	fx.srv = newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { serveFile(w, r, data) })
	return fx
}

// sources are the ways a fixture can be named: a URL, a file:// URL, a path. offline makes the
// input unreachable by that way, to prove that a later fetch does not need it.
var sources = []struct {
	name    string
	url     func(fx *fixture) string
	offline func(t *testing.T, fx *fixture)
}{{
	name:    "http",
	url:     func(fx *fixture) string { return fx.srv.URL + "/debian-12-genericcloud-amd64.qcow2" },
	offline: func(_ *testing.T, fx *fixture) { fx.srv.Close() },
}, {
	name:    "file URL",
	url:     func(fx *fixture) string { return "file://" + fx.path },
	offline: func(t *testing.T, fx *fixture) { removeFile(t, fx.path) },
}, {
	name:    "path",
	url:     func(fx *fixture) string { return fx.path },
	offline: func(t *testing.T, fx *fixture) { removeFile(t, fx.path) },
}}

func removeFile(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func TestFetchSHA512(t *testing.T) {
	for _, src := range sources {
		t.Run(src.name, func(t *testing.T) {
			fx := newFixture(t, 300<<10)
			dir := t.TempDir()
			f, _ := newFetcher(t, dir)
			in := Input{URL: src.url(fx), SHA256: "sha512:" + strings.ToUpper(fx.sum512)}

			// Not cached yet: the sha256 is unknown, Resolve says what the fetch will check.
			if got, err := f.Resolve(t.Context(), in); err != nil || got != "sha512:"+fx.sum512 {
				t.Errorf("Resolve before Fetch = %q, %v; want sha512:%s", got, err, fx.sum512)
			}
			if p, ok := f.Cached("sha512:" + fx.sum512); ok {
				t.Errorf("Cached(sha512:…) = %q before any fetch", p)
			}

			path, err := f.Fetch(t.Context(), in)
			if err != nil {
				t.Fatal(err)
			}
			if want := f.blobPath(fx.sum); path != want {
				t.Errorf("Fetch = %s, want the entry named by the sha256, %s", path, want)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if sumOf(got) != fx.sum || sum512Of(got) != fx.sum512 {
				t.Errorf("cached content has sha256 %s, sha512 %s; want %s, %s", sumOf(got), sum512Of(got), fx.sum, fx.sum512)
			}
			alias, err := os.ReadFile(filepath.Join(dir, "sources", "sha512", fx.sum512))
			if err != nil || string(alias) != fx.sum+"\n" {
				t.Errorf("alias sha512/%s = %q, %v; want the sha256 and a newline", fx.sum512, alias, err)
			}
			if fi, err := os.Stat(f.aliasPath(fx.sum512)); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("alias mode %v, %v; want 0600", fi.Mode(), err)
			}
			if left := filesIn(t, f.partialDir()); len(left) != 0 {
				t.Errorf("partial directory not empty after success: %v", left)
			}
			if got, err := f.Resolve(t.Context(), in); err != nil || got != fx.sum {
				t.Errorf("Resolve after Fetch = %q, %v; want the sha256 %s", got, err, fx.sum)
			}
			for _, d := range []string{"sha512:" + fx.sum512, "SHA512:" + strings.ToUpper(fx.sum512), fx.sum, "sha256:" + fx.sum} {
				if p, ok := f.Cached(d); !ok || p != path {
					t.Errorf("Cached(%s) = %q, %v; want %q", d, p, ok, path)
				}
			}
			entries, err := f.List()
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 || entries[0].SHA256 != fx.sum || entries[0].SHA512 != fx.sum512 || entries[0].Partial {
				t.Errorf("List() = %+v, want one entry with sha256 %s and sha512 %s", entries, fx.sum, fx.sum512)
			}

			// Another build, later, with the same pin: a cache hit by the alias, though the
			// input cannot be reached any more.
			src.offline(t, fx)
			f2, _ := newFetcher(t, dir)
			again, err := f2.Fetch(t.Context(), in)
			if err != nil || again != path {
				t.Fatalf("Fetch by the alias = %q, %v; want %q without touching the input", again, err, path)
			}
			if n := fx.srv.requests(); src.name == "http" && n != 1 {
				t.Errorf("server got %d requests, want 1", n)
			}
		})
	}
}

func TestFetchSHA512Mismatch(t *testing.T) {
	for _, src := range sources {
		t.Run(src.name, func(t *testing.T) {
			fx := newFixture(t, 100<<10)
			f, _ := newFetcher(t, "")
			url := src.url(fx)
			_, err := f.Fetch(t.Context(), Input{URL: url, SHA256: "sha512:" + sum512B})
			var mm *MismatchError
			if !errors.As(err, &mm) {
				t.Fatalf("Fetch error = %v, want a *MismatchError", err)
			}
			if mm.Algorithm != "sha512" || mm.Expected != sum512B || mm.Actual != fx.sum512 {
				t.Errorf("MismatchError = %+v, want sha512 expected %s, actual %s", mm, sum512B, fx.sum512)
			}
			for _, s := range []string{"sha512 mismatch: expected " + sum512B + ", got " + fx.sum512, "update the sha512 pin"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			assertNoEntry(t, f, fx.sum)
			if left := filesIn(t, f.aliasDir()); len(left) != 0 {
				t.Errorf("aliases recorded after a mismatch: %v", left)
			}
			if left := filesIn(t, f.partialDir()); len(left) != 0 {
				t.Errorf("download not deleted after a mismatch: %v", left)
			}
		})
	}
}

func TestMismatchErrorNamesAlgorithm(t *testing.T) {
	tests := []struct {
		err  MismatchError
		want string
	}{
		{MismatchError{Expected: "aa", Actual: "bb"}, "sha256 mismatch: expected aa, got bb (update the sha256 pin"},
		{MismatchError{Algorithm: "sha256", Expected: "aa", Actual: "bb"}, "sha256 mismatch: expected aa, got bb"},
		{MismatchError{Algorithm: "sha512", Expected: "aa", Actual: "bb"}, "sha512 mismatch: expected aa, got bb (update the sha512 pin"},
		{MismatchError{Algorithm: "sha512", Expected: "aa", Actual: "bb", ChecksumFile: "https://x/SHA512SUMS"}, "sha512 mismatch: expected aa, got bb (https://x/SHA512SUMS lists aa;"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); !strings.HasPrefix(got, tt.want) {
			t.Errorf("%+v.Error() = %q, want it to start %q", tt.err, got, tt.want)
		}
	}
}

func TestFetchSHA512Resumes(t *testing.T) {
	data, sum := payload(256 << 10)
	sum512 := sum512Of(data)
	key := "sha512-" + sum512
	cut := 100 << 10

	t.Run("after truncation", func(t *testing.T) {
		srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
			if n == 1 {
				serveTruncated(w, data, cut)
				return
			}
			serveFile(w, r, data)
		})
		dir := t.TempDir()
		in := Input{URL: srv.URL + "/img", SHA256: "sha512:" + sum512}

		// The first run gives up after the connection drops, and keeps what arrived under the
		// sha512's key: the sha256 is not known yet.
		f, _ := newFetcher(t, dir, WithRetry(1, time.Millisecond))
		if _, err := f.Fetch(t.Context(), in); err == nil {
			t.Fatal("Fetch of a truncated body succeeded")
		}
		if fi, err := os.Stat(f.partPath(key)); err != nil || fi.Size() != int64(cut) {
			t.Fatalf("partial download %s: %v, %v; want %d bytes", f.partPath(key), fi, err, cut)
		}
		if _, err := os.Stat(f.partMetaPath(key)); err != nil {
			t.Errorf("partial download metadata: %v", err)
		}
		entries, err := f.List()
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 || !entries[0].Partial || entries[0].SHA256 != "" || entries[0].SHA512 != sum512 || entries[0].Size != int64(cut) {
			t.Errorf("List() = %+v, want one partial download known by its sha512", entries)
		}

		// The next run resumes, and verifies the whole file.
		f2, _ := newFetcher(t, dir)
		path, err := f2.Fetch(t.Context(), in)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(path); sumOf(got) != sum || filepath.Base(path) != sum {
			t.Errorf("resumed file %s has sha256 %s, want %s", path, sumOf(got), sum)
		}
		if want := []string{"", "bytes=102400-"}; !slices.Equal(srv.rangeHeaders(), want) {
			t.Errorf("Range headers = %q, want %q", srv.rangeHeaders(), want)
		}
		if left := filesIn(t, f2.partialDir()); len(left) != 0 {
			t.Errorf("partial directory not empty after success: %v", left)
		}
	})

	t.Run("corrupt prefix starts over", func(t *testing.T) {
		// The resumed bytes are hashed with the ones already there: a wrong prefix fails the
		// sha512, and the download starts over instead of reporting a mismatch.
		srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { serveFile(w, r, data) })
		f, log := newFetcher(t, "")
		url := srv.URL + "/img"
		garbage, _ := payload(1000)
		seedPartial(t, f, key, garbage, partMeta{URL: url})
		path, err := f.Fetch(t.Context(), Input{URL: url, SHA256: "sha512:" + sum512})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(path); sum512Of(got) != sum512 {
			t.Errorf("cached sha512 %s, want %s", sum512Of(got), sum512)
		}
		if want := []string{"bytes=1000-", ""}; !slices.Equal(srv.rangeHeaders(), want) {
			t.Errorf("Range headers = %q, want %q", srv.rangeHeaders(), want)
		}
		if !strings.Contains(log.String(), "sha512 mismatch after resuming a download") {
			t.Errorf("log does not report the mismatch of the resumed download:\n%s", log)
		}
	})
}

func TestFetchSHA512SUMS(t *testing.T) {
	const name = "debian-12-genericcloud-amd64.qcow2"
	data, sum := payload(64 << 10)
	sum512 := sum512Of(data)
	// As cloud.debian.org publishes them: GNU lines, sha512 only.
	sha512sums := sum512B + "  debian-12-genericcloud-amd64.json\n" +
		sum512A + "  debian-12-genericcloud-amd64.raw\n" +
		sum512 + "  " + name + "\n"
	sha256sums := sumB + " *other.img\n" + sum + " *" + name + "\n"
	tests := []struct {
		name      string
		dir       string // on the server, of the input and its checksum file
		pin       string // before the checksum file's URL
		sums      string // the checksum file's name
		resolved  string // what Resolve returns before the fetch
		wantAlias bool
		wantErr   bool
	}{
		{name: "sha512:file: pin", pin: "sha512:file:", sums: "SHA512SUMS", resolved: "sha512:" + sum512, wantAlias: true},
		{name: "plain file: pin on SHA512SUMS", pin: "file:", sums: "SHA512SUMS", resolved: "sha512:" + sum512, wantAlias: true},
		{name: "sha512:file: pin on SHA256SUMS", pin: "sha512:file:", sums: "SHA256SUMS", resolved: sum},
		{name: "stale SHA512SUMS", dir: "/stale", pin: "sha512:file:", sums: "SHA512SUMS", resolved: "sha512:" + sum512A, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var payloadRequests int
			srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/SHA512SUMS":
					w.Write([]byte(sha512sums))
				case "/stale/SHA512SUMS":
					w.Write([]byte(sum512A + "  " + name + "\n"))
				case "/SHA256SUMS":
					w.Write([]byte(sha256sums))
				case "/" + name, "/stale/" + name:
					payloadRequests++
					serveFile(w, r, data)
				default:
					http.NotFound(w, r)
				}
			})
			base := srv.URL + tt.dir + "/"
			in := Input{URL: base + name, SHA256: tt.pin + base + tt.sums}
			f, _ := newFetcher(t, "")

			if got, err := f.Resolve(t.Context(), in); err != nil || got != tt.resolved {
				t.Fatalf("Resolve = %q, %v; want %q", got, err, tt.resolved)
			}
			if payloadRequests != 0 {
				t.Errorf("Resolve downloaded the input itself (%d requests)", payloadRequests)
			}
			path, err := f.Fetch(t.Context(), in)
			if tt.wantErr {
				var mm *MismatchError
				sumsURL := srv.URL + "/stale/SHA512SUMS"
				if !errors.As(err, &mm) || mm.Algorithm != "sha512" || mm.Expected != sum512A || mm.ChecksumFile != sumsURL {
					t.Fatalf("Fetch error = %v, want a sha512 MismatchError naming %s", err, sumsURL)
				}
				if !strings.Contains(err.Error(), "sha512 mismatch") || !strings.Contains(err.Error(), sumsURL+" lists "+sum512A) {
					t.Errorf("error %q does not name the algorithm and the checksum file", err)
				}
				assertNoEntry(t, f, sum)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if path != f.blobPath(sum) {
				t.Errorf("Fetch = %s, want %s", path, f.blobPath(sum))
			}
			if alias, ok := f.readAlias(sum512); ok != tt.wantAlias || (ok && alias != sum) {
				t.Errorf("alias for the sha512 = %q, %v; want one: %v", alias, ok, tt.wantAlias)
			}
			if got, err := f.Resolve(t.Context(), in); err != nil || got != sum {
				t.Errorf("Resolve after Fetch = %q, %v; want %s", got, err, sum)
			}
			// The checksum file is read again, the input is not.
			if _, err := f.Fetch(t.Context(), in); err != nil {
				t.Fatal(err)
			}
			if payloadRequests != 1 {
				t.Errorf("input requested %d times, want 1", payloadRequests)
			}
		})
	}
}

func TestFetchSameContentByBothPins(t *testing.T) {
	data, sum := payload(64 << 10)
	sum512 := sum512Of(data)
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { serveFile(w, r, data) })
	by256 := Input{URL: srv.URL + "/img", SHA256: sum}
	by512 := Input{URL: srv.URL + "/img", SHA256: "sha512:" + sum512}

	t.Run("sha512 first", func(t *testing.T) {
		f, _ := newFetcher(t, "")
		before := srv.requests()
		p512, err := f.Fetch(t.Context(), by512)
		if err != nil {
			t.Fatal(err)
		}
		// The entry is named by its sha256: a sha256 pin finds it.
		p256, err := f.Fetch(t.Context(), by256)
		if err != nil || p256 != p512 {
			t.Fatalf("Fetch by sha256 = %q, %v; want %q", p256, err, p512)
		}
		if n := srv.requests() - before; n != 1 {
			t.Errorf("server got %d requests, want 1", n)
		}
	})

	t.Run("sha256 first", func(t *testing.T) {
		// A sha256 fetch computes no sha512, so the sha512 pin downloads again; the entry that
		// is there already is kept, and the alias recorded.
		f, _ := newFetcher(t, "")
		before := srv.requests()
		p256, err := f.Fetch(t.Context(), by256)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			p512, err := f.Fetch(t.Context(), by512)
			if err != nil || p512 != p256 {
				t.Fatalf("Fetch by sha512 = %q, %v; want %q", p512, err, p256)
			}
		}
		if n := srv.requests() - before; n != 2 {
			t.Errorf("server got %d requests, want 2 (the second sha512 fetch is a hit)", n)
		}
		if alias, ok := f.readAlias(sum512); !ok || alias != sum {
			t.Errorf("alias = %q, %v; want %s", alias, ok, sum)
		}
		if got := filesIn(t, f.blobDir()); !slices.Equal(got, []string{sum}) {
			t.Errorf("entries %v, want only %s", got, sum)
		}
		if left := filesIn(t, f.partialDir()); len(left) != 0 {
			t.Errorf("partial directory not empty: %v", left)
		}
	})
}

func TestPruneSHA512Aliases(t *testing.T) {
	oldData, oldSum := payload(1000)
	newData, newSum := payload(2000)
	partData, _ := payload(3000)
	old512, new512, part512 := sum512Of(oldData), sum512Of(newData), sum512Of(partData)
	dir := t.TempDir()
	f, _ := newFetcher(t, "")
	for _, d := range [][]byte{oldData, newData} {
		src := filepath.Join(dir, sumOf(d))
		if err := os.WriteFile(src, d, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Fetch(t.Context(), Input{URL: src, SHA256: "sha512:" + sum512Of(d)}); err != nil {
			t.Fatal(err)
		}
	}
	seedPartial(t, f, "sha512-"+part512, partData[:100], partMeta{URL: "https://example.org/part"})
	// Aliases that lead nowhere: to an entry deleted by hand, and garbage.
	if err := f.writeAlias(sum512A, sumA); err != nil {
		t.Fatal(err)
	}
	if err := f.writeAlias(sum512B, "not a sha256"); err != nil {
		t.Fatal(err)
	}
	// Another dangling alias, whose pin a build is fetching right now.
	busy := strings.Repeat("c", 128)
	if err := f.writeAlias(busy, sumB); err != nil {
		t.Fatal(err)
	}
	monthAgo := time.Now().Add(-30 * 24 * time.Hour)
	for _, p := range []string{f.metaPath(oldSum), f.partPath("sha512-" + part512)} {
		if err := os.Chtimes(p, monthAgo, monthAgo); err != nil {
			t.Fatal(err)
		}
	}

	type row struct {
		sum, sum512 string
		partial     bool
	}
	list := func() []row {
		t.Helper()
		entries, err := f.List()
		if err != nil {
			t.Fatal(err)
		}
		var rows []row
		for _, e := range entries {
			rows = append(rows, row{e.SHA256, e.SHA512, e.Partial})
		}
		return rows
	}
	// Least recently used last; equal times sort by sha256, the partial download (none) first.
	want := []row{{newSum, new512, false}, {"", part512, true}, {oldSum, old512, false}}
	if got := list(); !slices.Equal(got, want) {
		t.Errorf("List() =\n%v\nwant\n%v", got, want)
	}

	l := newFlock(f.lockPath("sha512-" + busy))
	if err := l.Lock(); err != nil {
		t.Fatal(err)
	}
	removed, err := f.Prune(7 * 24 * time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var got []row
	for _, e := range removed {
		got = append(got, row{e.SHA256, e.SHA512, e.Partial})
	}
	slices.SortFunc(got, func(a, b row) int { return strings.Compare(a.sum512, b.sum512) })
	want = []row{{"", part512, true}, {oldSum, old512, false}}
	slices.SortFunc(want, func(a, b row) int { return strings.Compare(a.sum512, b.sum512) })
	if !slices.Equal(got, want) {
		t.Errorf("Prune removed %v, want %v", got, want)
	}
	if aliases := filesIn(t, f.aliasDir()); !slices.Equal(aliases, slices.Sorted(slices.Values([]string{busy, new512}))) {
		t.Errorf("aliases after Prune: %v, want the live one (%s) and the locked one", aliases, new512)
	}
	if _, ok := f.Cached("sha512:" + old512); ok {
		t.Error("pruned entry still found by its sha512")
	}
	if _, ok := f.Cached("sha512:" + new512); !ok {
		t.Error("recent entry no longer found by its sha512")
	}

	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Prune(7 * 24 * time.Hour); err != nil {
		t.Fatal(err)
	}
	if aliases := filesIn(t, f.aliasDir()); !slices.Equal(aliases, []string{new512}) {
		t.Errorf("aliases after the lock was released: %v, want only %s", aliases, new512)
	}
}
