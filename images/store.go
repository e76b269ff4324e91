// Package images is ingot's local image store: built disks kept as named, content-addressed
// qcow2 layers, so that a later recipe can start from one (`source: { image: NAME }`) through a
// qcow2 backing file instead of a copy, and a family of images shares its base.
//
// Layout under the store directory (default ${XDG_CACHE_HOME:-~/.cache}/ingot/images):
//
//	layers/<sha256>          a layer, read-only; its name is the sha256 of its bytes
//	layers/<sha256>.json     what it is: format, parent layer (its qcow2 backing file), size
//	names/<NAME>.json        a name: which layer, when, from which recipe
//	lock                     flock(2): one writer at a time, across processes
//	holds/<id>               a build's hold: the layers it uses but has not named yet, one
//	                         digest a line, flock(2)-held by the build for as long as it runs
//	                         (and the keys of the checkpoints it restored from)
//	checkpoints/             saved build machines, private (see checkpoint.go)
//
// A layer's backing file is another layer, by absolute path, so layers never move. A layer is
// written to a temporary name, hashed, then renamed into place; a name is written last, atomically:
// a crash leaves no name pointing at a half-written layer. Removing a name frees the layers that no
// remaining name needs, directly or as a parent.
//
// A build keeps its layer before it knows whether it will publish, and names it only when it
// does, so an interrupted build never moves a name. Until then its hold keeps its layers (and
// their base) from being collected. A hold is a flock(2), which the kernel drops when the build
// dies however it dies, so the layers of a killed build are freed by the next Tag or Remove.
package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gofrs/flock"
	"github.com/google/renameio/v2"
	"github.com/ingot-build/ingot/internal/ctxio"
	"github.com/ingot-build/ingot/internal/digest"
)

// ErrNotFound is returned for a name the store does not have.
var ErrNotFound = errors.New("no such image in the store")

// Store is an image store directory. It is safe for concurrent use by several processes.
type Store struct {
	dir string
	now func() time.Time // checkpoints' Created and Used; a field so tests can age them
}

// Layer is one content-addressed file in the store.
type Layer struct {
	Digest string `json:"sha256"`
	Format string `json:"format"`           // qcow2, or the base image's own format
	Parent string `json:"parent,omitempty"` // the layer this one is a qcow2 overlay on
	Size   int64  `json:"size"`             // bytes on disk
	Path   string `json:"-"`
}

// Image is a named layer.
type Image struct {
	Name    string    `json:"name"`
	Layer   string    `json:"layer"` // sha256
	Created time.Time `json:"created"`
	Recipe  string    `json:"recipe,omitempty"`
	BuildID string    `json:"build_id,omitempty"`
}

// Open opens (creating if needed) the store at dir.
func Open(dir string) (*Store, error) {
	s := &Store{dir: dir, now: time.Now}
	for _, d := range []string{dir, s.layerDir(), s.nameDir(), s.holdDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("open image store: %w", err)
		}
	}
	// Checkpoints hold RAM images and the build's keys: private, also in a store made before.
	if err := os.MkdirAll(s.ckptDir(), 0o700); err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	if err := os.Chmod(s.ckptDir(), 0o700); err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	return s, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) layerDir() string               { return filepath.Join(s.dir, "layers") }
func (s *Store) nameDir() string                { return filepath.Join(s.dir, "names") }
func (s *Store) holdDir() string                { return filepath.Join(s.dir, "holds") }
func (s *Store) layerPath(digest string) string { return filepath.Join(s.layerDir(), digest) }
func (s *Store) layerMeta(digest string) string { return filepath.Join(s.layerDir(), digest+".json") }
func (s *Store) namePath(name string) string    { return filepath.Join(s.nameDir(), name+".json") }

// lock takes the store's write lock.
func (s *Store) lock(ctx context.Context) (func(), error) {
	l := flock.New(filepath.Join(s.dir, "lock"), flock.SetPermissions(0o600))
	if _, err := l.TryLockContext(ctx, 100*time.Millisecond); err != nil {
		return nil, fmt.Errorf("lock the image store %s: %w", s.dir, err)
	}
	return func() { _ = l.Unlock() }, nil
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// CheckName says whether name can name an image.
func CheckName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("image name %q: use letters, digits, '.', '_' and '-' (at most 128, starting with a letter or digit)", name)
	}
	return nil
}

// AddBase makes a verified source file (named by its sha256, as the source cache keeps it) a
// base layer, by hard link where the store and the cache share a file system, else by copy. It
// is a no-op when the layer exists. The returned path is what build overlays should back on.
func (s *Store) AddBase(ctx context.Context, src, digest, format string, h *Hold) (Layer, error) {
	unlock, err := s.lock(ctx)
	if err != nil {
		return Layer{}, err
	}
	defer unlock()
	if err := h.add(digest); err != nil {
		return Layer{}, err
	}
	if l, err := s.layer(digest); err == nil {
		return l, nil
	}
	dst := s.layerPath(digest)
	tmp := dst + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Link(src, tmp); err != nil {
		if err := copyFile(ctx, src, tmp); err != nil {
			_ = os.Remove(tmp)
			return Layer{}, fmt.Errorf("add base layer %s: %w", digest, err)
		}
	}
	fi, err := os.Stat(tmp)
	if err != nil {
		return Layer{}, err
	}
	l := Layer{Digest: digest, Format: format, Size: fi.Size(), Path: dst}
	return l, s.commitLayer(tmp, l)
}

// AddLayer moves the qcow2 file at tmp (an overlay whose backing file is the layer parent, or a
// standalone image when parent is "") into the store under the sha256 of its bytes, and returns
// the layer. tmp must be on the store's file system (see TempDir) and is consumed.
func (s *Store) AddLayer(ctx context.Context, tmp, parent string, h *Hold) (Layer, error) {
	digest, size, err := digest.File(ctx, tmp, nil)
	if err != nil {
		return Layer{}, fmt.Errorf("hash the new layer: %w", err)
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return Layer{}, err
	}
	defer unlock()
	if parent != "" {
		if _, err := s.layer(parent); err != nil {
			return Layer{}, fmt.Errorf("add layer: its parent %s: %w", parent, err)
		}
	}
	if err := h.add(digest); err != nil {
		return Layer{}, err
	}
	if l, err := s.layer(digest); err == nil {
		return l, os.Remove(tmp) // the same bytes are stored already
	}
	l := Layer{Digest: digest, Format: "qcow2", Parent: parent, Size: size, Path: s.layerPath(digest)}
	return l, s.commitLayer(tmp, l)
}

// TempDir is a directory on the store's file system for layers being written.
func (s *Store) TempDir() (string, error) {
	return os.MkdirTemp(s.dir, ".tmp-")
}

func (s *Store) commitLayer(tmp string, l Layer) error {
	if err := os.Chmod(tmp, 0o444); err != nil {
		return err
	}
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	// The record first: a layer file without one is incomplete and collected by Remove; a
	// record without its file is not a layer either.
	if err := renameio.WriteFile(s.layerMeta(l.Digest), b, 0o644); err != nil {
		return fmt.Errorf("record layer %s: %w", l.Digest, err)
	}
	if err := os.Rename(tmp, s.layerPath(l.Digest)); err != nil {
		return fmt.Errorf("store layer %s: %w", l.Digest, err)
	}
	return nil
}

func (s *Store) layer(digest string) (Layer, error) {
	var l Layer
	b, err := os.ReadFile(s.layerMeta(digest))
	if err != nil {
		return l, fmt.Errorf("layer %s: %w", digest, err)
	}
	if err := json.Unmarshal(b, &l); err != nil {
		return l, fmt.Errorf("layer %s: %w", digest, err)
	}
	l.Path = s.layerPath(digest)
	if _, err := os.Stat(l.Path); err != nil {
		return l, fmt.Errorf("layer %s: %w", digest, err)
	}
	return l, nil
}

// LayerFile is the path of a stored layer's file, for a disk to back on.
func (s *Store) LayerFile(digest string) (string, error) {
	l, err := s.layer(digest)
	if err != nil {
		return "", err
	}
	return l.Path, nil
}

// Tag names a layer, replacing what the name named before, then frees the layers that nothing
// needs any more: the one the name held before, if no other name or hold needs it, and those of
// builds that died before naming theirs. It returns the freed layers' digests.
func (s *Store) Tag(ctx context.Context, img Image) ([]string, error) {
	if err := CheckName(img.Name); err != nil {
		return nil, err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := s.layer(img.Layer); err != nil {
		return nil, fmt.Errorf("name %s: %w", img.Name, err)
	}
	b, err := json.MarshalIndent(img, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := renameio.WriteFile(s.namePath(img.Name), b, 0o644); err != nil {
		return nil, err
	}
	return s.collect()
}

// Lookup returns a named image and its layer chain, top first.
func (s *Store) Lookup(name string) (Image, []Layer, error) {
	if err := CheckName(name); err != nil {
		return Image{}, nil, err
	}
	var img Image
	b, err := os.ReadFile(s.namePath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return Image{}, nil, fmt.Errorf("%w: %q (see 'ingot images ls'; an image is stored by building its recipe)", ErrNotFound, name)
	}
	if err != nil {
		return Image{}, nil, err
	}
	if err := json.Unmarshal(b, &img); err != nil {
		return Image{}, nil, fmt.Errorf("image %s: %w", name, err)
	}
	chain, err := s.chain(img.Layer)
	return img, chain, err
}

func (s *Store) chain(digest string) ([]Layer, error) {
	var out []Layer
	for d := digest; d != ""; {
		l, err := s.layer(d)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
		if len(out) > 64 {
			return nil, fmt.Errorf("layer %s: the backing chain is longer than 64", digest)
		}
		d = l.Parent
	}
	return out, nil
}

// Entry is an image with its layers, for listing.
type Entry struct {
	Image
	Chain []Layer // top first
}

// List returns every named image, by name.
func (s *Store) List() ([]Entry, error) {
	des, err := os.ReadDir(s.nameDir())
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var out []Entry
	for _, de := range des {
		name, ok := strings.CutSuffix(de.Name(), ".json")
		if !ok {
			continue
		}
		img, chain, err := s.Lookup(name)
		if err != nil {
			return nil, err
		}
		out = append(out, Entry{img, chain})
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Remove deletes names, then every layer that no remaining name needs. It returns the freed
// layers' digests.
func (s *Store) Remove(ctx context.Context, names ...string) ([]string, error) {
	unlock, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	for _, name := range names {
		if err := CheckName(name); err != nil {
			return nil, err
		}
		if err := os.Remove(s.namePath(name)); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("remove %s: %w", name, ErrNotFound)
		} else if err != nil {
			return nil, fmt.Errorf("remove %s: %w", name, err)
		}
	}
	return s.collect()
}

// collect deletes layers that neither a name, a checkpoint nor a live hold needs, and what dead
// checkpoint writers left; the lock is held.
func (s *Store) collect() ([]string, error) {
	if err := s.sweepCheckpoints(); err != nil {
		return nil, err
	}
	keep := map[string]bool{}
	need := func(d string) {
		for d != "" && !keep[d] {
			keep[d] = true
			l, err := s.layer(d)
			if err != nil {
				break
			}
			d = l.Parent
		}
	}
	des, err := os.ReadDir(s.nameDir())
	if err != nil {
		return nil, err
	}
	for _, de := range des {
		var img Image
		b, err := os.ReadFile(filepath.Join(s.nameDir(), de.Name()))
		if err != nil || json.Unmarshal(b, &img) != nil {
			continue
		}
		need(img.Layer)
	}
	held, err := s.held()
	if err != nil {
		return nil, err
	}
	cps, err := s.checkpointLayers()
	if err != nil {
		return nil, err
	}
	for _, d := range append(held, cps...) {
		need(d)
	}
	files, err := os.ReadDir(s.layerDir())
	if err != nil {
		return nil, err
	}
	var freed []string
	for _, f := range files {
		d := strings.TrimSuffix(f.Name(), ".json")
		if keep[d] {
			continue
		}
		if err := os.Remove(filepath.Join(s.layerDir(), f.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return freed, err
		}
		if !strings.HasSuffix(f.Name(), ".json") {
			freed = append(freed, d)
		}
	}
	return freed, errors.Join(s.collectRecords(), s.collectFileSums())
}

func copyFile(ctx context.Context, src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, ctxio.Reader(ctx, in)); err != nil {
		out.Close()
		return err
	}
	return errors.Join(out.Sync(), out.Close())
}

// Hold keeps the layers a build uses from being collected until it names its own, or ends.
// The build holds a flock(2) on the hold's file, so a hold ends with its process even on SIGKILL.
// A nil *Hold holds nothing.
type Hold struct {
	s    *Store
	path string
	l    *flock.Flock
}

// NewHold starts a hold. It is made under the store lock, so no collect sees it unlocked.
func (s *Store) NewHold(ctx context.Context) (*Hold, error) {
	unlock, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	f, err := os.CreateTemp(s.holdDir(), "hold-")
	if err != nil {
		return nil, fmt.Errorf("hold layers in %s: %w", s.dir, err)
	}
	path := f.Name()
	if err := f.Close(); err != nil {
		return nil, errors.Join(err, os.Remove(path))
	}
	l := flock.New(path)
	if ok, err := l.TryLock(); !ok || err != nil {
		return nil, errors.Join(fmt.Errorf("hold layers: lock %s", path), err, os.Remove(path))
	}
	return &Hold{s: s, path: path, l: l}, nil
}

// Keep adds a stored layer (and so its parents) to the hold, failing if it is not stored.
func (h *Hold) Keep(ctx context.Context, digest string) error {
	if h == nil {
		return nil
	}
	unlock, err := h.s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := h.s.layer(digest); err != nil {
		return fmt.Errorf("hold layer %s: %w", digest, err)
	}
	return h.add(digest)
}

// add appends digest to the hold; the store lock is held.
func (h *Hold) add(digest string) error {
	if h == nil {
		return nil
	}
	f, err := os.OpenFile(h.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("hold layer %s: %w", digest, err)
	}
	_, err = f.WriteString(digest + "\n")
	return errors.Join(err, f.Close())
}

// Release ends the hold. The layers it held stay until a collect finds nothing else needs them.
func (h *Hold) Release() error {
	if h == nil {
		return nil
	}
	return errors.Join(os.Remove(h.path), h.l.Close())
}

// held returns the digests of the live holds, and removes the holds of processes that are gone;
// the store lock is held.
func (s *Store) held() ([]string, error) {
	des, err := os.ReadDir(s.holdDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, de := range des {
		path := filepath.Join(s.holdDir(), de.Name())
		l := flock.New(path)
		ok, err := l.TryLock()
		if err != nil {
			return nil, fmt.Errorf("read hold %s: %w", path, err)
		}
		if ok { // its build is gone
			err := errors.Join(os.Remove(path), l.Close())
			if err != nil {
				return nil, err
			}
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		out = append(out, strings.Fields(string(b))...)
	}
	return out, nil
}
