package images

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ingot-build/ingot/internal/digest"
)

func qemuImg(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
	}
}

// A base, a layer on it, a layer on that: names keep what they need, removing frees the rest.
func TestStoreLayersNamesAndCollection(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(filepath.Join(dir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	// The "source cache" file, named by its sha256 as the cache names it.
	src := filepath.Join(dir, "src.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", src, "64M")
	digest, _, err := digest.File(ctx, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	base, err := s.AddBase(ctx, src, digest, "qcow2", nil)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := s.AddBase(ctx, src, digest, "qcow2", nil); err != nil || again.Path != base.Path {
		t.Fatalf("adding the base again = %+v, %v", again, err)
	}

	addOn := func(parent Layer, data string) Layer { t.Helper(); return addLayer(t, s, nil, parent, data) }
	web := addOn(base, "aa")
	if _, err := s.Tag(ctx, Image{Name: "web", Layer: web.Digest, Recipe: "web.yaml"}); err != nil {
		t.Fatal(err)
	}
	app := addOn(web, "bb")
	if _, err := s.Tag(ctx, Image{Name: "app", Layer: app.Digest}); err != nil {
		t.Fatal(err)
	}

	_, chain, err := s.Lookup("app")
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 3 || chain[0].Digest != app.Digest || chain[1].Digest != web.Digest || chain[2].Digest != base.Digest {
		t.Fatalf("app's chain = %+v", chain)
	}
	qemuImg(t, "check", "-q", app.Path) // the stored overlay opens through its backing chain

	list, err := s.List()
	if err != nil || len(list) != 2 || list[0].Name != "app" || list[1].Name != "web" {
		t.Fatalf("List = %+v, %v", list, err)
	}

	// web's name goes, but app still needs web's layer and the base.
	freed, err := s.Remove(ctx, "web")
	if err != nil || len(freed) != 0 {
		t.Fatalf("Remove(web) freed %v, %v; want nothing", freed, err)
	}
	if _, _, err := s.Lookup("web"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Lookup(web) after removal: %v", err)
	}
	freed, err = s.Remove(ctx, "app")
	slices.Sort(freed)
	want := []string{app.Digest, web.Digest, base.Digest}
	slices.Sort(want)
	if err != nil || !slices.Equal(freed, want) {
		t.Fatalf("Remove(app) freed %v, %v; want %v", freed, err, want)
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "images", "layers")); len(left) != 0 {
		t.Fatalf("layers left: %v", left)
	}
	if _, err := os.Stat(src); err != nil {
		t.Fatalf("the source file must survive its base layer: %v", err)
	}
}

func TestCheckName(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{{"debian-12", true}, {"a.b_c", true}, {"", false}, {"../x", false}, {"-x", false}, {"a/b", false}} {
		if err := CheckName(tt.name); (err == nil) != tt.ok {
			t.Errorf("CheckName(%q) = %v", tt.name, err)
		}
	}
}

// A build keeps its layer before it publishes and names it only then. Until then its hold keeps
// the layer and its base; when the build dies (its flock dropped, the hold file left behind, as
// after SIGKILL), the next Tag frees them and the dead hold.
func TestHoldKeepsUnnamedLayersUntilItsBuildDies(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(filepath.Join(dir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	newLayer := func(h *Hold, parent Layer, data string) Layer { t.Helper(); return addLayer(t, s, h, parent, data) }
	stored := func(l Layer) bool { _, err := os.Stat(l.Path); return err == nil }

	other := newLayer(nil, Layer{}, "11")
	if _, err := s.Tag(ctx, Image{Name: "other", Layer: other.Digest}); err != nil {
		t.Fatal(err)
	}

	// A live build: its base and its kept layer are held, not named.
	h, err := s.NewHold(ctx)
	if err != nil {
		t.Fatal(err)
	}
	base := newLayer(h, Layer{}, "22")
	kept := newLayer(h, base, "33")
	if freed, err := s.Tag(ctx, Image{Name: "other", Layer: other.Digest}); err != nil || len(freed) != 0 {
		t.Fatalf("a collect during the build freed %v (%v); want nothing", freed, err)
	}
	if !stored(base) || !stored(kept) {
		t.Fatal("the live build's layers were collected")
	}

	// The build dies without naming its layer: the kernel drops the lock, the file stays.
	if err := h.l.Close(); err != nil {
		t.Fatal(err)
	}
	freed, err := s.Tag(ctx, Image{Name: "other", Layer: other.Digest})
	slices.Sort(freed)
	want := []string{base.Digest, kept.Digest}
	slices.Sort(want)
	if err != nil || !slices.Equal(freed, want) {
		t.Fatalf("after the build died, Tag freed %v (%v); want %v", freed, err, want)
	}
	if holds, _ := os.ReadDir(s.holdDir()); len(holds) != 0 {
		t.Errorf("the dead build's hold is still there: %v", holds)
	}
	if !stored(other) {
		t.Error("a named layer was collected")
	}

	// A build that publishes names its layer, then releases its hold: the layer stays.
	h2, err := s.NewHold(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := h2.Keep(ctx, other.Digest); err != nil {
		t.Fatal(err)
	}
	published := newLayer(h2, other, "44")
	if _, err := s.Tag(ctx, Image{Name: "published", Layer: published.Digest}); err != nil {
		t.Fatal(err)
	}
	if err := h2.Release(); err != nil {
		t.Fatal(err)
	}
	if freed, err := s.Remove(ctx); err != nil || len(freed) != 0 || !stored(published) {
		t.Fatalf("after publishing, a collect freed %v (%v)", freed, err)
	}
	if err := h2.Keep(ctx, "0000"); err == nil {
		t.Error("holding a layer the store does not have: want an error")
	}
}

// addLayer stores a qcow2 layer on parent (standalone when parent is zero) whose first 64 KiB
// are the byte data (two hex digits), held by h.
func addLayer(t *testing.T, s *Store, h *Hold, parent Layer, data string) Layer {
	t.Helper()
	tmpDir, err := s.TempDir()
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "layer.qcow2")
	args := []string{"create", "-q", "-f", "qcow2"}
	if parent.Path != "" {
		args = append(args, "-b", parent.Path, "-F", parent.Format)
	}
	qemuImg(t, append(args, tmp, "64M")...)
	if out, err := exec.Command("qemu-io", "-c", "write -P 0x"+data+" 0 64k", tmp).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io: %v\n%s", err, out)
	}
	l, err := s.AddLayer(context.Background(), tmp, parent.Digest, h)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
