package images

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// A build's record is kept with its layer, found by the image's name, replaced by a later
// record of the same layer, and collected with the layer.
func TestRecords(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l := addLayer(t, s, nil, Layer{}, "11")
	src := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(src, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := s.RecordDir("web"); err == nil {
		t.Error("RecordDir of an unknown name succeeded")
	}
	if _, err := s.Tag(ctx, Image{Name: "web", Layer: l.Digest}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordDir("web"); err == nil {
		t.Error("RecordDir of an image without a record succeeded")
	}
	for _, v := range []string{"one", "two"} {
		if err := s.PutRecord(ctx, l.Digest, []string{write("manifest.json", v), write("inventory.jsonl.zst", v)}); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := s.RecordDir("web")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "manifest.json")); err != nil || string(b) != "two" {
		t.Errorf("the record's manifest = %q, %v; want the later record's", b, err)
	}
	if err := s.PutRecord(ctx, "0000", nil); err == nil {
		t.Error("PutRecord for a layer the store does not have succeeded")
	}
	if _, err := s.Remove(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the record outlived its layer: %v", err)
	}
}
