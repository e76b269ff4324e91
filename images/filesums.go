package images

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/google/renameio/v2"
	"github.com/klauspost/compress/zstd"
)

// The store keeps, for each base layer, the sha256 of the files builds on that base found in
// their file inventories, by what the guest's find says of each file: "INODE CTIME SIZE PATH".
// A build's guest then reads again only the files that are not as a build left them: ctime
// changes whenever a file's content does (userspace cannot set it), so a file of the same path,
// inode, ctime and size is the file that was hashed. Only the bytes ingot hashed itself are kept;
// nothing of a file's content.

func (s *Store) sumsDir() string              { return filepath.Join(s.dir, "filesums") }
func (s *Store) sumsPath(layer string) string { return filepath.Join(s.sumsDir(), layer+".zst") }

// validSum is a kept record: the hash, a space, and "INODE CTIME SIZE PATH".
var validSum = regexp.MustCompile(`^[0-9a-f]{64} [0-9]+ [0-9]+(\.[0-9]+)? [0-9]+ /`)

// FileSums reads the checksums kept for the base layer: sha256 by "INODE CTIME SIZE PATH", empty
// when none are kept. A kept file that fails its zstd checksum or holds a record PutFileSums
// does not write is an error, naming the file; the caller hashes everything then, and its
// PutFileSums replaces the file.
func (s *Store) FileSums(layer string) (map[string]string, error) {
	if err := checkKey(layer); err != nil {
		return nil, err
	}
	path := s.sumsPath(layer)
	zb, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the kept file checksums: %w", err)
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	b, err := dec.DecodeAll(zb, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: corrupt: %w", path, err)
	}
	sums := map[string]string{}
	for rec := range bytes.SplitSeq(b, []byte{0}) {
		if len(rec) == 0 {
			continue
		}
		if !validSum.Match(rec) {
			return nil, fmt.Errorf("%s: corrupt: record %.80q is not \"SHA256 INODE CTIME SIZE PATH\"", path, rec)
		}
		sums[string(rec[65:])] = string(rec[:64])
	}
	return sums, nil
}

// PutFileSums keeps sums (sha256 by "INODE CTIME SIZE PATH") for the base layer, with the kept
// records of paths sums does not list (a file one recipe deletes is still another's), replacing
// the kept file atomically under the store's lock.
func (s *Store) PutFileSums(ctx context.Context, layer string, sums map[string]string) error {
	if err := checkKey(layer); err != nil {
		return err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := os.Stat(s.layerPath(layer)); err != nil {
		return fmt.Errorf("keep file checksums for layer %s: %w", layer, err)
	}
	if err := os.MkdirAll(s.sumsDir(), 0o700); err != nil {
		return fmt.Errorf("keep file checksums: %w", err)
	}
	merged := map[string]string{}
	paths := map[string]bool{}
	for key, sum := range sums {
		if _, p, ok := cutPath(key); ok && len(sum) == 64 {
			merged[key], paths[p] = sum, true
		}
	}
	// A corrupt kept file is replaced by what this build found.
	if old, err := s.FileSums(layer); err == nil {
		for key, sum := range old {
			if _, p, ok := cutPath(key); ok && !paths[p] {
				merged[key] = sum
			}
		}
	}
	var b bytes.Buffer
	for key, sum := range merged {
		b.WriteString(sum)
		b.WriteByte(' ')
		b.WriteString(key)
		b.WriteByte(0)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(true))
	if err != nil {
		return err
	}
	zb := enc.EncodeAll(b.Bytes(), nil)
	if err := renameio.WriteFile(s.sumsPath(layer), zb, 0o600); err != nil {
		return fmt.Errorf("keep file checksums: %w", err)
	}
	return nil
}

// cutPath splits "INODE CTIME SIZE PATH" after its size.
func cutPath(key string) (meta, path string, ok bool) {
	i := 0
	for range 3 {
		j := strings.IndexByte(key[i:], ' ')
		if j < 0 {
			return "", "", false
		}
		i += j + 1
	}
	return key[:i-1], key[i:], strings.HasPrefix(key[i:], "/")
}

// collectFileSums removes the checksums kept for layers that are gone, and the temporary files
// of PutFileSums that were killed (renameio's, named ".…").
func (s *Store) collectFileSums() error {
	return s.collectOrphans(s.sumsDir(), ".", func(name string) string { return strings.TrimSuffix(name, ".zst") })
}
