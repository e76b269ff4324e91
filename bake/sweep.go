package bake

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gofrs/flock"
)

// A build's scratch directories (its work dir, its staging dir beside the outputs) can hold
// gigabytes, and a build killed with SIGKILL cannot remove them. So each is owned through a
// lock: before the directory is made, the build takes flock(2) on a sibling file DIR.lock and
// holds it for the directory's whole life. The kernel drops the lock when the process dies,
// however it dies, so a lock that can be taken marks an orphan that any later build, or
// `ingot cache prune`, may remove. A pid and start-time file would say the same thing less
// reliably: pids are reused, and the file can be half-written when the kill comes.

// stagingPrefix starts the name of a build's staging dir in the output dir.
const stagingPrefix = ".ingot-staging-"

// lockSuffix names the sibling lock file of an owned directory.
const lockSuffix = ".lock"

// keptMarker, inside a work dir, marks one that --keep-on-failure kept for the user: no sweep
// removes it (its build is gone, but the user asked for it).
const keptMarker = "KEPT-ON-FAILURE"

// unlockedGrace is how old a directory without a lock file must be before a sweep takes it for
// an orphan: such dirs come from ingot versions before owned dirs, never from a live build of
// this one, which makes the lock file first.
const unlockedGrace = time.Hour

// ownedDir is a directory a live build holds the lock of.
type ownedDir struct {
	path string
	lock *flock.Flock
}

// claimDir takes the lock of dir and then makes dir (0700 when private, else 0755).
func claimDir(dir string, private bool) (*ownedDir, error) {
	l := flock.New(dir+lockSuffix, flock.SetPermissions(0o600))
	ok, err := l.TryLock()
	if err != nil {
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	if !ok {
		return nil, fmt.Errorf("locking %s: another build holds it", dir)
	}
	mk := os.MkdirAll
	if private {
		mk = func(p string, _ os.FileMode) error { return mkdirPrivate(p) }
	}
	if err := mk(dir, 0o755); err != nil {
		return nil, errors.Join(err, l.Close(), os.Remove(l.Path()))
	}
	return &ownedDir{path: dir, lock: l}, nil
}

// Remove removes the directory, then its lock, so nothing is ever left unowned.
func (o *ownedDir) Remove() error {
	return errors.Join(os.RemoveAll(o.path), os.Remove(o.lock.Path()), o.lock.Close())
}

// Keep leaves the directory for the user, marked so that no sweep takes it, and drops its lock.
func (o *ownedDir) Keep(note string) error {
	return errors.Join(os.WriteFile(filepath.Join(o.path, keptMarker), []byte(note), 0o600),
		os.Remove(o.lock.Path()), o.lock.Close())
}

// Sweep removes what builds that are gone left behind: work dirs under workRoot, and staging
// dirs (".ingot-staging-*") in outDir. Live builds' dirs and kept failed builds' work dirs are
// left alone. It returns the paths it removed; a missing workRoot or outDir is not an error.
func Sweep(ctx context.Context, log *slog.Logger, workRoot, outDir string) ([]string, error) {
	var removed []string
	var errs []error
	for _, s := range []struct {
		parent string
		match  func(string) bool
	}{
		{workRoot, func(string) bool { return true }},
		{outDir, func(n string) bool { return strings.HasPrefix(n, stagingPrefix) }},
	} {
		if s.parent == "" {
			continue
		}
		r, err := sweepDir(ctx, log, s.parent, s.match)
		removed = append(removed, r...)
		errs = append(errs, err)
	}
	return removed, errors.Join(errs...)
}

func sweepDir(ctx context.Context, log *slog.Logger, parent string, match func(string) bool) ([]string, error) {
	entries, err := os.ReadDir(parent)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sweeping %s: %w", parent, err)
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		if ctx.Err() != nil {
			return removed, context.Cause(ctx)
		}
		if !e.IsDir() || !match(e.Name()) {
			continue
		}
		dir := filepath.Join(parent, e.Name())
		if _, err := os.Stat(filepath.Join(dir, keptMarker)); err == nil {
			log.Debug("left a kept work dir of a failed build", "dir", dir)
			continue
		}
		gone, err := sweepOne(dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if gone {
			log.Info("removed what a build that is gone left behind", "dir", dir)
			removed = append(removed, dir)
		}
	}
	return removed, errors.Join(errs...)
}

// sweepOne removes dir if its owner is gone, holding the owner's lock while it does. A staging
// dir's ".old" sibling (the previous outputs, moved aside while publishing) shares its lock.
func sweepOne(dir string) (bool, error) {
	lockPath := strings.TrimSuffix(dir, ".old") + lockSuffix
	if _, err := os.Stat(lockPath); errors.Is(err, fs.ErrNotExist) {
		fi, err := os.Stat(dir)
		if err != nil || time.Since(fi.ModTime()) < unlockedGrace {
			return false, nil
		}
		return true, os.RemoveAll(dir)
	}
	l := flock.New(lockPath, flock.SetPermissions(0o600))
	ok, err := l.TryLock()
	if err != nil {
		return false, fmt.Errorf("sweeping %s: %w", dir, err)
	}
	if !ok {
		return false, nil // a live build
	}
	defer l.Close()
	if err := errors.Join(os.RemoveAll(dir), os.RemoveAll(strings.TrimSuffix(dir, ".old")+".old")); err != nil {
		return false, fmt.Errorf("sweeping %s: %w", dir, err)
	}
	return true, os.Remove(lockPath)
}
