package manifest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"
	"github.com/klauspost/compress/zstd"
)

// InventoryFile is the name of the file inventory beside manifest.json.
const InventoryFile = "inventory.jsonl.zst"

// InventoryRef is how a manifest names its file inventory: the sidecar's name, its sha256 (of
// the compressed file, as SHA256SUMS has it), and how many entries it holds.
type InventoryRef struct {
	File    string `json:"file"`
	SHA256  string `json:"sha256"`
	Entries int    `json:"entries"`
}

// Entry is one file of an image's filesystems, as the inventory lists it: a JSON object a line.
type Entry struct {
	// Path is absolute, as the booted image sees it ("/etc/passwd").
	Path string `json:"path"`
	// Type is file, dir, symlink, char, block, fifo or socket.
	Type string `json:"type"`
	// Mode is the permission bits with setuid, setgid and sticky, in octal ("4755").
	Mode string `json:"mode"`
	UID  int    `json:"uid"`
	GID  int    `json:"gid"`
	Size int64  `json:"size"`
	// Target is a symlink's target.
	Target string `json:"target,omitempty"`
	// SHA256 is a regular file's content hash.
	SHA256 string `json:"sha256,omitempty"`
}

// WriteInventory writes entries to path as zstd-compressed JSON lines, atomically, and returns
// the reference a manifest records.
func WriteInventory(path string, entries []Entry) (InventoryRef, error) {
	f, err := renameio.NewPendingFile(path, renameio.WithPermissions(0o644))
	if err != nil {
		return InventoryRef{}, fmt.Errorf("write inventory %s: %w", path, err)
	}
	defer f.Cleanup()
	h := sha256.New()
	zw, err := zstd.NewWriter(io.MultiWriter(f, h), zstd.WithEncoderLevel(zstd.SpeedBetterCompression))
	if err != nil {
		return InventoryRef{}, err
	}
	bw := bufio.NewWriter(zw)
	enc := json.NewEncoder(bw)
	for _, e := range entries {
		if err := enc.Encode(e); err != nil {
			return InventoryRef{}, fmt.Errorf("write inventory %s: %w", path, err)
		}
	}
	if err := errors.Join(bw.Flush(), zw.Close()); err != nil {
		return InventoryRef{}, fmt.Errorf("write inventory %s: %w", path, err)
	}
	if err := f.CloseAtomicallyReplace(); err != nil {
		return InventoryRef{}, fmt.Errorf("write inventory %s: %w", path, err)
	}
	return InventoryRef{File: filepath.Base(path), SHA256: hex.EncodeToString(h.Sum(nil)), Entries: len(entries)}, nil
}

// ReadInventory reads the inventory a manifest in dir refers to, checking its sha256 first: a
// file that is not what the manifest recorded is refused.
func ReadInventory(dir string, ref InventoryRef) ([]Entry, error) {
	if ref.File == "" || filepath.Base(ref.File) != ref.File {
		return nil, fmt.Errorf("read inventory: the manifest names %q, not a file beside it", ref.File)
	}
	path := filepath.Join(dir, ref.File)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read inventory: %w", err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != ref.SHA256 {
		return nil, fmt.Errorf("read inventory %s: its sha256 is %x, the manifest says %s: the file was changed or damaged", path, sum, ref.SHA256)
	}
	zr, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	raw, err := zr.DecodeAll(data, nil)
	if err != nil {
		return nil, fmt.Errorf("read inventory %s: %w", path, err)
	}
	var out []Entry
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	for line := 1; ; line++ {
		var e Entry
		if err := dec.Decode(&e); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("read inventory %s: entry %d: %w", path, line, err)
		}
		out = append(out, e)
	}
	if len(out) != ref.Entries {
		return nil, fmt.Errorf("read inventory %s: %d entries, the manifest says %d", path, len(out), ref.Entries)
	}
	return out, nil
}
