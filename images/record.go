package images

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// A record is what a build wrote beside its outputs (manifest.json and its sidecars, such as the
// file inventory), kept with the build's layer: `ingot diff image:NAME` and `ingot build
// --baseline image:NAME` read the stored image's record, not a directory that may have moved
// on. It lives as long as the layer (collect removes the records of freed layers).

func (s *Store) recordDir() string              { return filepath.Join(s.dir, "records") }
func (s *Store) recordPath(layer string) string { return filepath.Join(s.recordDir(), layer) }

// PutRecord keeps copies of files (paths; each kept under its base name) as the record of the
// build whose layer is layer, replacing an earlier record of that layer. The record appears
// whole or not at all.
func (s *Store) PutRecord(ctx context.Context, layer string, files []string) error {
	if _, err := s.layer(layer); err != nil {
		return fmt.Errorf("keep the build's record: %w", err)
	}
	if err := os.MkdirAll(s.recordDir(), 0o755); err != nil {
		return fmt.Errorf("keep the build's record: %w", err)
	}
	tmp, err := os.MkdirTemp(s.recordDir(), ".tmp-")
	if err != nil {
		return fmt.Errorf("keep the build's record: %w", err)
	}
	defer os.RemoveAll(tmp)
	for _, f := range files {
		if err := copyFile(ctx, f, filepath.Join(tmp, filepath.Base(f))); err != nil {
			return fmt.Errorf("keep the build's record: %w", err)
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	dst := s.recordPath(layer)
	old := tmp + ".old"
	if err := os.Rename(dst, old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("keep the build's record: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("keep the build's record: %w", err)
	}
	return os.RemoveAll(old)
}

// RecordDir returns the directory holding the record of the image named name.
func (s *Store) RecordDir(name string) (string, error) {
	img, _, err := s.Lookup(name)
	if err != nil {
		return "", err
	}
	dir := s.recordPath(img.Layer)
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err != nil {
		return "", fmt.Errorf("image %s has no build record (it was stored by an ingot before records were kept; rebuild it to get one): %w", name, err)
	}
	return dir, nil
}

// collectRecords removes the records of layers that are gone, and what interrupted PutRecords
// left.
func (s *Store) collectRecords() error {
	return s.collectOrphans(s.recordDir(), ".tmp-", func(name string) string { return name })
}

// collectOrphans removes from dir the entries whose layer (layerOf of the entry's name) is gone,
// and the entries named tmpPrefix… that are more than an hour old: a live writer's are younger,
// the others were left by a writer that was killed.
func (s *Store) collectOrphans(dir, tmpPrefix string, layerOf func(name string) string) error {
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, de := range des {
		if strings.HasPrefix(de.Name(), tmpPrefix) {
			if info, err := de.Info(); err == nil && s.now().Sub(info.ModTime()) > time.Hour {
				errs = append(errs, os.RemoveAll(filepath.Join(dir, de.Name())))
			}
			continue
		}
		if _, err := os.Stat(s.layerPath(layerOf(de.Name()))); errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, os.RemoveAll(filepath.Join(dir, de.Name())))
		}
	}
	return errors.Join(errs...)
}
