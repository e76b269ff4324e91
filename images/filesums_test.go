package images

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// File checksums kept for a base layer: read back as written; a later build's replace the
// records of the paths it lists and keep the others; a corrupt file is an error that names it,
// and the next write replaces it; they go with their layer.
func TestFileSums(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l := addLayer(t, s, nil, Layer{}, "22")
	sum := func(c string) string { return strings.Repeat(c, 64) }

	if got, err := s.FileSums(l.Digest); err != nil || len(got) != 0 {
		t.Fatalf("FileSums before any = %v, %v; want none", got, err)
	}
	first := map[string]string{
		"12 1700000000.1234567890 55 /usr/bin/su": sum("a"),
		"13 1700000000.2 3 /etc/odd name":         sum("b"),
		"14 1733000000.3 9 /etc/app.conf":         sum("c"),
	}
	if err := s.PutFileSums(ctx, l.Digest, first); err != nil {
		t.Fatal(err)
	}
	if got, err := s.FileSums(l.Digest); err != nil || !maps.Equal(got, first) {
		t.Fatalf("FileSums = %v, %v; want %v", got, err, first)
	}
	if fi, err := os.Stat(s.sumsPath(l.Digest)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the kept file: %v, %v; want mode 0600", fi, err)
	}
	// A second build changed /etc/app.conf and did not have /etc/odd name.
	second := map[string]string{
		"12 1700000000.1234567890 55 /usr/bin/su": sum("a"),
		"14 1733000100.5 10 /etc/app.conf":        sum("d"),
	}
	if err := s.PutFileSums(ctx, l.Digest, second); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"12 1700000000.1234567890 55 /usr/bin/su": sum("a"),
		"13 1700000000.2 3 /etc/odd name":         sum("b"),
		"14 1733000100.5 10 /etc/app.conf":        sum("d"),
	}
	if got, err := s.FileSums(l.Digest); err != nil || !maps.Equal(got, want) {
		t.Fatalf("FileSums after the second build = %v, %v; want %v", got, err, want)
	}

	// A flipped byte fails zstd's checksum.
	path := s.sumsPath(l.Digest)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FileSums(l.Digest); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("FileSums of a flipped byte: %v; want an error naming %s", err, path)
	}
	if err := s.PutFileSums(ctx, l.Digest, second); err != nil {
		t.Fatal(err)
	}
	if got, err := s.FileSums(l.Digest); err != nil || !maps.Equal(got, second) {
		t.Errorf("FileSums after a write over a corrupt file = %v, %v; want %v", got, err, second)
	}

	for _, bad := range []string{"", "x", "0000"} {
		if err := s.PutFileSums(ctx, bad, first); err == nil {
			t.Errorf("PutFileSums(%q) succeeded", bad)
		}
	}
	if err := s.PutFileSums(ctx, strings.Repeat("0", 64), first); err == nil {
		t.Error("PutFileSums for a layer the store does not have succeeded")
	}

	// What killed writers left (renameio's temporary files) goes after an hour.
	stale, fresh := filepath.Join(s.sumsDir(), ".stale.zst123"), filepath.Join(s.sumsDir(), ".fresh.zst456")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(stale, time.Now().Add(-2*time.Hour), time.Now().Add(-2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Tag(ctx, Image{Name: "base", Layer: l.Digest}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Remove(ctx, "base"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the file checksums outlived their layer: %v", err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("a killed writer's temporary file two hours old is still there: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a live writer's temporary file was removed: %v", err)
	}
}

// A kept file whose records are not what PutFileSums writes is corrupt.
func TestFileSumsRefusesBadRecords(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l := addLayer(t, s, nil, Layer{}, "33")
	for _, rec := range []string{
		"nothex 12 1.0 5 /a",
		strings.Repeat("a", 64) + " 12 1.0 5 relative",
		strings.Repeat("a", 64) + " 12 x 5 /a",
		strings.Repeat("a", 63) + " 12 1.0 5 /a",
	} {
		if err := os.MkdirAll(s.sumsDir(), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(s.sumsPath(l.Digest), zstdOf(t, rec+"\x00"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := s.FileSums(l.Digest); err == nil {
			t.Errorf("FileSums of the record %q succeeded", rec)
		}
	}
}

func zstdOf(t *testing.T, s string) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	return enc.EncodeAll([]byte(s), nil)
}
