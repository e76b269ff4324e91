package images

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/gofrs/flock"
	"github.com/google/renameio/v2"
	"github.com/ingot-build/ingot/internal/digest"
)

// Checkpoints live beside the layers:
//
//	checkpoints/<key>.json  the record: recipe, step, disk layer, each file's size and sha256;
//	                        written last, atomically, so it exists only for a complete checkpoint
//	checkpoints/<key>/      its files: the VM state, the UEFI vars, the build's keys, the seed
//	checkpoints/.tmp-*/     a writer's staging dir, flock(2)-held through its .writer file for as
//	                        long as the writer lives
//
// Everything under checkpoints/ is private (0600 files, 0700 dirs): a RAM image holds whatever
// the guest held, and the keys are the build's SSH identity. The disk layer is an ordinary
// layer of the store (layers/), which collect keeps while a checkpoint names it.

var (
	// ErrNoCheckpoint is returned for a key the store has no checkpoint for.
	ErrNoCheckpoint = errors.New("no such checkpoint")
	// ErrCorruptCheckpoint is returned for a checkpoint whose files or layer do not match their
	// recorded sha256 (truncated, overwritten, missing). It has been removed when this is returned.
	ErrCorruptCheckpoint = errors.New("corrupt checkpoint")
)

// DefaultCheckpointCap is the size cap bake enforces, least recently used first, after each
// build. A checkpoint of a 1 GiB guest is ~100 MiB of zstd RAM state plus the disk layer a step
// wrote (10–500 MiB), so a recipe's chain of "booted" plus a handful of steps is 1–3 GiB;
// 10 GiB keeps the latest chains of a few recipes, which is what makes rebuilds fast, while the
// chains orphaned by every edit of a step age out instead of filling a laptop's disk. Evicting
// too much only costs a cold build; users with more room raise it (ingot cache prune --max-size).
const DefaultCheckpointCap = 10 << 30

// writerLock is the file in a staging dir that its writer holds flock(2) on. Its name starts
// with '.', which no checkpoint file name may (see checkFileName).
const writerLock = ".writer"

// A Checkpoint is a build machine saved after a step: its disk as a layer of this store (an
// overlay on the build's base layer), and files: the VM state, the UEFI vars if any, the build's
// SSH keys and host key, and the seed the guest holds. It is keyed by a content hash that bake
// computes; the store only checks that the key is one.
type Checkpoint struct {
	Key     string             `json:"key"`    // hex sha256, given by the caller
	Recipe  string             `json:"recipe"` // recipe name, for ls and prune --keep-last
	Step    string             `json:"step"`   // "booted", "provision[2] shell"
	Layer   string             `json:"layer"`  // the disk layer's digest in this store
	Files   map[string]FileSum `json:"files"`  // name → size and sha256 of each file in Dir
	Created time.Time          `json:"created"`
	Used    time.Time          `json:"used"` // last restore (or creation): the LRU order
	Size    int64              `json:"size"` // the files plus the layer's own file (not its parents)
	Dir     string             `json:"-"`    // where its files are, for the restorer
}

// FileSum is what a checkpoint file must be for the checkpoint to be restored.
type FileSum struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// PruneCheckpoints says which checkpoints PruneCheckpoints removes; the rules add up.
// Checkpoints that a live build holds (it restored from them) are never removed.
type PruneCheckpoints struct {
	OlderThan time.Duration // not used for longer than this; 0: no age rule
	KeepLast  int           // keep this many per recipe, most recently used; 0: no rule
	MaxSize   int64         // then remove least recently used until the total fits; 0: no cap
	All       bool          // every checkpoint
}

func (s *Store) ckptDir() string             { return filepath.Join(s.dir, "checkpoints") }
func (s *Store) ckptMeta(key string) string  { return filepath.Join(s.ckptDir(), key+".json") }
func (s *Store) ckptFiles(key string) string { return filepath.Join(s.ckptDir(), key) }

var validKey = regexp.MustCompile(`^[0-9a-f]{64}$`)

func checkKey(key string) error {
	if !validKey.MatchString(key) {
		return fmt.Errorf("checkpoint key %q: want a lower-case hex sha256", key)
	}
	return nil
}

// checkFileName keeps checkpoint file names to one plain path element that is not the writer's
// lock file.
func checkFileName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("checkpoint file name %q: use letters, digits, '.', '_' and '-', starting with a letter or digit", name)
	}
	return nil
}

// CheckpointTempDir is a private directory on the store's file system for writing a
// checkpoint's files (the VM state, the disk layer), so that PutCheckpoint moves them in by
// rename rather than by copy. done removes it; if the process dies first, the next checkpoint
// write or collection removes it.
func (s *Store) CheckpointTempDir(ctx context.Context) (dir string, done func() error, err error) {
	st, err := s.newStaging(ctx)
	if err != nil {
		return "", nil, err
	}
	return st.dir, st.release, nil
}

// staging is a writer's private dir under checkpoints/. Its writer holds flock(2) on the
// .writer file inside, which the kernel drops when the writer dies however it dies, so a sweep
// tells a live writer's dir from a dead one's the way collect tells live holds from dead ones.
type staging struct {
	dir string
	l   *flock.Flock
}

// newStaging makes a staging dir under the store lock, so that no sweep sees it before it is
// locked, and sweeps the dirs of dead writers while it holds the lock.
func (s *Store) newStaging(ctx context.Context) (*staging, error) {
	unlock, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := s.sweepCheckpoints(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(s.ckptDir(), ".tmp-") // 0700
	if err != nil {
		return nil, fmt.Errorf("make a checkpoint staging dir: %w", err)
	}
	l := flock.New(filepath.Join(dir, writerLock), flock.SetPermissions(0o600))
	if ok, err := l.TryLock(); !ok || err != nil {
		return nil, errors.Join(fmt.Errorf("lock checkpoint staging dir %s", dir), err, os.RemoveAll(dir))
	}
	return &staging{dir: dir, l: l}, nil
}

// release removes the staging dir (a no-op once it has been renamed into place) and drops
// the lock.
func (st *staging) release() error {
	return errors.Join(os.RemoveAll(st.dir), st.l.Close())
}

// sweepCheckpoints removes what dead writers left under checkpoints/: staging dirs whose
// writer no longer holds its lock, and files dirs without a record (a writer killed between
// renaming the dir into place and writing the record). The store lock is held, and writers
// rename and record under it, so neither can be a live writer's.
func (s *Store) sweepCheckpoints() error {
	des, err := os.ReadDir(s.ckptDir())
	if err != nil {
		return fmt.Errorf("sweep checkpoints: %w", err)
	}
	for _, de := range des {
		path := filepath.Join(s.ckptDir(), de.Name())
		switch {
		case de.IsDir() && strings.HasPrefix(de.Name(), ".tmp-"):
			l := flock.New(filepath.Join(path, writerLock), flock.SetPermissions(0o600))
			ok, err := l.TryLock()
			if errors.Is(err, fs.ErrNotExist) {
				continue // its live writer removed it just now
			}
			if err != nil {
				return fmt.Errorf("sweep checkpoints: %w", err)
			}
			if ok { // its writer is gone
				if err := errors.Join(os.RemoveAll(path), l.Close()); err != nil {
					return fmt.Errorf("sweep checkpoints: %w", err)
				}
			}
		case de.IsDir() && validKey.MatchString(de.Name()):
			if _, err := os.Stat(s.ckptMeta(de.Name())); errors.Is(err, fs.ErrNotExist) {
				if err := os.RemoveAll(path); err != nil {
					return fmt.Errorf("sweep checkpoints: %w", err)
				}
			}
		}
	}
	return nil
}

// PutCheckpoint stores a checkpoint under c.Key: the files (name → path of a file to move in;
// the names are the ones the restorer asks for) and the qcow2 overlay at layerTmp, backed by
// the layer parent ("" for a standalone disk). The files and layerTmp are consumed: moved in
// (renamed when they are on the store's file system, see CheckpointTempDir, else copied), or
// removed when the key is stored already. Of c it uses Key, Recipe and Step; it fills in the
// rest.
//
// The files are moved into a private staging dir, made 0600, fsynced and hashed; the layer is
// added as a layer of the store; then, under the store lock, the dir is renamed into place and
// the record is written last. A writer killed at any point leaves nothing that GetCheckpoint
// returns, and its leftovers are swept. When two builds put the same key at once, the first to
// commit wins and the other gets its checkpoint; a put of a key that is stored is a no-op that
// returns the stored checkpoint.
func (s *Store) PutCheckpoint(ctx context.Context, c Checkpoint, files map[string]string, layerTmp, parent string) (_ Checkpoint, err error) {
	if err := checkKey(c.Key); err != nil {
		return Checkpoint{}, err
	}
	if layerTmp == "" {
		return Checkpoint{}, fmt.Errorf("checkpoint %s: no disk layer", short(c.Key))
	}
	names := make([]string, 0, len(files))
	for name := range files {
		if err := checkFileName(name); err != nil {
			return Checkpoint{}, err
		}
		names = append(names, name)
	}
	slices.Sort(names)
	if old, err := s.readCheckpoint(c.Key); err == nil {
		return old, consume(files, layerTmp)
	}

	st, err := s.newStaging(ctx)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint %s: %w", short(c.Key), err)
	}
	defer func() { err = errors.Join(err, st.release()) }()
	c.Files = make(map[string]FileSum, len(files))
	c.Size = 0
	for _, name := range names {
		sum, err := stage(ctx, files[name], filepath.Join(st.dir, name))
		if err != nil {
			return Checkpoint{}, fmt.Errorf("checkpoint %s: %s: %w", short(c.Key), name, err)
		}
		c.Files[name] = sum
		c.Size += sum.Size
	}
	if err := errors.Join(syncPath(st.dir), syncPath(layerTmp)); err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint %s: %w", short(c.Key), err)
	}

	// The layer is held from AddLayer until the record names it, so no collect frees it between.
	h, err := s.NewHold(ctx)
	if err != nil {
		return Checkpoint{}, err
	}
	defer func() { err = errors.Join(err, h.Release()) }()
	l, err := s.AddLayer(ctx, layerTmp, parent, h)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint %s: %w", short(c.Key), err)
	}
	c.Layer = l.Digest
	c.Size += l.Size
	c.Created = s.now().UTC()
	c.Used = c.Created

	unlock, err := s.lock(ctx)
	if err != nil {
		return Checkpoint{}, err
	}
	defer unlock()
	if old, err := s.readCheckpoint(c.Key); err == nil {
		return old, nil // another build committed it first; ours goes with the staging dir
	}
	dst := s.ckptFiles(c.Key)
	if err := errors.Join(os.RemoveAll(dst), os.Remove(filepath.Join(st.dir, writerLock))); err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint %s: %w", short(c.Key), err)
	}
	if err := os.Rename(st.dir, dst); err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint %s: %w", short(c.Key), err)
	}
	if err := s.writeCheckpoint(c); err != nil {
		return Checkpoint{}, errors.Join(err, os.RemoveAll(dst))
	}
	c.Dir = dst
	return c, nil
}

// stage moves src to dst (a rename, or a copy across file systems), makes it private, fsyncs
// it and hashes it.
func stage(ctx context.Context, src, dst string) (FileSum, error) {
	if err := os.Rename(src, dst); errors.Is(err, syscall.EXDEV) {
		if err := copyFile(ctx, src, dst); err != nil {
			return FileSum{}, err
		}
		if err := os.Remove(src); err != nil {
			return FileSum{}, err
		}
	} else if err != nil {
		return FileSum{}, err
	}
	if err := os.Chmod(dst, 0o600); err != nil {
		return FileSum{}, err
	}
	if err := syncPath(dst); err != nil {
		return FileSum{}, err
	}
	sum, n, err := digest.File(ctx, dst, nil)
	if err != nil {
		return FileSum{}, err
	}
	return FileSum{Size: n, SHA256: sum}, nil
}

// syncPath fsyncs a file or a directory (its entries).
func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	return f.Close()
}

// consume removes a put's inputs when the checkpoint is stored already.
func consume(files map[string]string, layerTmp string) error {
	var errs []error
	for _, p := range files {
		errs = append(errs, os.Remove(p))
	}
	return errors.Join(append(errs, os.Remove(layerTmp))...)
}

// writeCheckpoint writes c's record atomically and durably (renameio: temp file, fsync, rename).
func (s *Store) writeCheckpoint(c Checkpoint) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := renameio.WriteFile(s.ckptMeta(c.Key), b, 0o600); err != nil {
		return fmt.Errorf("record checkpoint %s: %w", short(c.Key), err)
	}
	return nil
}

// readCheckpoint reads key's record: ErrNoCheckpoint when there is none, ErrCorruptCheckpoint
// when it does not decode as key's.
func (s *Store) readCheckpoint(key string) (Checkpoint, error) {
	var c Checkpoint
	b, err := os.ReadFile(s.ckptMeta(key))
	if errors.Is(err, fs.ErrNotExist) {
		return c, fmt.Errorf("%w: %s", ErrNoCheckpoint, short(key))
	}
	if err != nil {
		return c, fmt.Errorf("checkpoint %s: %w", short(key), err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%w %s: its record: %v", ErrCorruptCheckpoint, short(key), err)
	}
	if c.Key != key {
		return c, fmt.Errorf("%w %s: its record is for %s", ErrCorruptCheckpoint, short(key), short(c.Key))
	}
	c.Dir = s.ckptFiles(key)
	return c, nil
}

// GetCheckpoint returns the checkpoint stored under key, verified, and marks it used now. The
// restoring build then keeps it with Hold.KeepCheckpoint, so that no prune removes its files or
// layer while the build uses them.
//
// Every file is hashed and so is the disk layer, on every restore: the state file of a 1 GiB
// guest is ~100 MiB, ~0.3 s of sha256, small beside the seconds a restore takes and the minutes
// a corrupt one would cost. (The layer's parents are checked to exist, not hashed: the base is
// large and was verified when it was fetched.) A checkpoint that fails is removed, so no build
// tries it again, and the error wraps ErrCorruptCheckpoint and says what was wrong; the caller
// warns and falls back to an earlier checkpoint. It returns ErrNoCheckpoint when key has none.
func (s *Store) GetCheckpoint(ctx context.Context, key string) (Checkpoint, error) {
	if err := checkKey(key); err != nil {
		return Checkpoint{}, err
	}
	c, err := s.readCheckpoint(key)
	if errors.Is(err, ErrCorruptCheckpoint) {
		return Checkpoint{}, errors.Join(err, s.removeCorrupt(ctx, Checkpoint{}, key))
	}
	if err != nil {
		return Checkpoint{}, err
	}
	// Hold it while it is hashed, so that a concurrent prune does not remove it half-read.
	vh, err := s.NewHold(ctx)
	if err != nil {
		return Checkpoint{}, err
	}
	release := once(vh.Release)
	defer release()
	if c, err = s.holdCheckpoint(ctx, vh, c, false); err != nil {
		return Checkpoint{}, err
	}
	if bad, err := s.verify(ctx, c); err != nil {
		return Checkpoint{}, fmt.Errorf("verify checkpoint %s: %w", short(key), err)
	} else if bad != nil {
		err := fmt.Errorf("%w %s (%s, %s): %w", ErrCorruptCheckpoint, short(key), c.Recipe, c.Step, bad)
		return Checkpoint{}, errors.Join(err, release(), s.removeCorrupt(ctx, c, key))
	}
	return s.holdCheckpoint(ctx, nil, c, true)
}

// KeepCheckpoint adds a checkpoint (its files and its layer, and so the layer's parents) to the
// hold: no prune or collect removes them until the hold ends. It fails with ErrNoCheckpoint if c
// is no longer stored (pruned, or replaced, since GetCheckpoint returned it).
func (h *Hold) KeepCheckpoint(ctx context.Context, c Checkpoint) error {
	if h == nil {
		return nil
	}
	_, err := h.s.holdCheckpoint(ctx, h, c, false)
	return err
}

// once makes f safe to call twice (the second call is a no-op returning nil).
func once(f func() error) func() error {
	done := false
	return func() error {
		if done {
			return nil
		}
		done = true
		return f()
	}
}

// holdCheckpoint adds c (its key and its layer) to h under the store lock, after checking that
// c is still the stored checkpoint; with use, it also records that c was used now.
func (s *Store) holdCheckpoint(ctx context.Context, h *Hold, c Checkpoint, use bool) (Checkpoint, error) {
	unlock, err := s.lock(ctx)
	if err != nil {
		return Checkpoint{}, err
	}
	defer unlock()
	now, err := s.readCheckpoint(c.Key)
	if err != nil {
		return Checkpoint{}, err
	}
	if !same(now, c) {
		return Checkpoint{}, fmt.Errorf("%w: %s was replaced while it was read", ErrNoCheckpoint, short(c.Key))
	}
	if err := errors.Join(h.add(c.Key), h.add(c.Layer)); err != nil {
		return Checkpoint{}, err
	}
	if use {
		now.Used = s.now().UTC()
		if err := s.writeCheckpoint(now); err != nil {
			return Checkpoint{}, err
		}
	}
	return now, nil
}

// same says whether a and b are records of the same write of a checkpoint.
func same(a, b Checkpoint) bool {
	return a.Key == b.Key && a.Layer == b.Layer && a.Created.Equal(b.Created)
}

// verify checks c's files and layer against their record. It returns what is wrong (nil when
// nothing is), or an error when it could not tell (the context ended).
func (s *Store) verify(ctx context.Context, c Checkpoint) (bad, err error) {
	var problems []error
	names := make([]string, 0, len(c.Files))
	for name := range c.Files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		want := c.Files[name]
		path := filepath.Join(c.Dir, name)
		fi, err := os.Stat(path)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: %w", name, err))
			continue
		}
		if fi.Size() != want.Size {
			problems = append(problems, fmt.Errorf("%s: %d bytes, want %d (truncated or overwritten)", name, fi.Size(), want.Size))
			continue
		}
		sum, _, err := digest.File(ctx, path, nil)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			problems = append(problems, err)
		} else if sum != want.SHA256 {
			problems = append(problems, fmt.Errorf("%s: sha256 %s, want %s", name, short(sum), short(want.SHA256)))
		}
	}
	chain, err := s.chain(c.Layer)
	if err != nil {
		problems = append(problems, fmt.Errorf("its disk layer: %w", err))
	} else {
		sum, _, err := digest.File(ctx, chain[0].Path, nil)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			problems = append(problems, fmt.Errorf("its disk layer: %w", err))
		} else if sum != c.Layer {
			problems = append(problems, fmt.Errorf("its disk layer %s: sha256 %s", short(c.Layer), short(sum)))
		}
	}
	return errors.Join(problems...), nil
}

// removeCorrupt removes key's checkpoint if it is still the one that failed (c; a zero c for a
// record that did not decode), then frees its layer if nothing else needs it.
func (s *Store) removeCorrupt(ctx context.Context, c Checkpoint, key string) error {
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	now, err := s.readCheckpoint(key)
	switch {
	case errors.Is(err, ErrNoCheckpoint):
		return nil // removed by someone else already
	case err == nil && (c.Key == "" || !same(now, c)):
		return nil // replaced by a good one meanwhile
	}
	if err := s.removeCheckpoint(key); err != nil {
		return err
	}
	_, err = s.collect()
	return err
}

// RemoveCheckpoint removes key's checkpoint, held or not, and frees its layer if nothing else
// needs it: for a checkpoint whose files hash right but that does not restore. A build that is
// restoring it meanwhile keeps what it has open, and its hold keeps the layer. Removing a key
// that is not stored is not an error.
func (s *Store) RemoveCheckpoint(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := s.removeCheckpoint(key); err != nil {
		return err
	}
	_, err = s.collect()
	return err
}

// removeCheckpoint deletes key's record, then its files; the store lock is held. A crash
// between the two leaves a files dir without a record, which the next sweep removes.
func (s *Store) removeCheckpoint(key string) error {
	if err := os.Remove(s.ckptMeta(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove checkpoint %s: %w", short(key), err)
	}
	if err := os.RemoveAll(s.ckptFiles(key)); err != nil {
		return fmt.Errorf("remove checkpoint %s: %w", short(key), err)
	}
	return nil
}

// Checkpoints returns the stored checkpoints, most recently used first. Records that do not
// decode are left out (GetCheckpoint removes them when they are asked for).
func (s *Store) Checkpoints() ([]Checkpoint, error) {
	des, err := os.ReadDir(s.ckptDir())
	if err != nil {
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	var out []Checkpoint
	for _, de := range des {
		key, ok := strings.CutSuffix(de.Name(), ".json")
		if !ok || !validKey.MatchString(key) {
			continue
		}
		c, err := s.readCheckpoint(key)
		if errors.Is(err, ErrNoCheckpoint) || errors.Is(err, ErrCorruptCheckpoint) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Checkpoint) int {
		return cmp.Or(b.Used.Compare(a.Used), strings.Compare(a.Key, b.Key))
	})
	return out, nil
}

// PruneCheckpoints removes the checkpoints that p selects, except those a live build holds,
// then frees the layers that nothing needs any more. It returns the removed checkpoints, least
// recently used first. Sizes count each checkpoint's own layer, not the base it is backed by,
// which belongs to the build's source.
func (s *Store) PruneCheckpoints(ctx context.Context, p PruneCheckpoints) ([]Checkpoint, error) {
	unlock, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	all, err := s.Checkpoints()
	if err != nil {
		return nil, err
	}
	held, err := s.held()
	if err != nil {
		return nil, err
	}
	isHeld := make(map[string]bool, len(held))
	for _, k := range held {
		isHeld[k] = true
	}
	now := s.now()
	drop := map[string]bool{}
	perRecipe := map[string]int{}
	for _, c := range all { // most recently used first
		perRecipe[c.Recipe]++
		switch {
		case p.All,
			p.OlderThan > 0 && now.Sub(c.Used) > p.OlderThan,
			p.KeepLast > 0 && perRecipe[c.Recipe] > p.KeepLast:
			drop[c.Key] = !isHeld[c.Key]
		}
	}
	if p.MaxSize > 0 {
		var total int64
		for _, c := range all {
			if !drop[c.Key] {
				total += c.Size
			}
		}
		for _, c := range slices.Backward(all) { // least recently used first
			if total <= p.MaxSize {
				break
			}
			if !drop[c.Key] && !isHeld[c.Key] {
				drop[c.Key] = true
				total -= c.Size
			}
		}
	}
	var removed []Checkpoint
	for _, c := range slices.Backward(all) {
		if !drop[c.Key] {
			continue
		}
		if err := s.removeCheckpoint(c.Key); err != nil {
			return removed, err
		}
		removed = append(removed, c)
	}
	if _, err := s.collect(); err != nil {
		return removed, err
	}
	return removed, nil
}

// checkpointLayers returns the layers that checkpoints name; the store lock is held.
func (s *Store) checkpointLayers() ([]string, error) {
	cs, err := s.Checkpoints()
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.Layer)
	}
	return out, nil
}

// short is a key or digest as logs show it.
func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
