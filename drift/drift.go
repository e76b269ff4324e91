// Package drift compares two builds of an image: their packages (from manifest.json), their files
// (from the file inventory beside it) and their outputs, and checks the differences against
// thresholds that CI can enforce (`ingot diff --fail-on`, a recipe's `drift:` section).
//
// It is pure data: it reads manifests and inventories through the manifest package and never
// touches an image, a guest or the image store. What changes on every rebuild of an unchanged
// recipe (logs, apt indexes, timer stamps, …) is left out by a documented noise list
// (DefaultNoise), so that "nothing differs" can mean the same image, and a threshold fires on
// drift rather than on churn.
//
// A manifest without an inventory (one written before inventories were recorded) still compares
// by packages and outputs; the file parts of its report are marked unavailable, not zero, and a
// threshold on one of their metrics is an error rather than a silent pass.
package drift

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/ingot-build/ingot/manifest"
)

// Side is one of the two builds compared: its manifest and, when the manifest names one, its
// file inventory.
type Side struct {
	// Label names the side for people: the argument it was loaded from ("out/web",
	// "image:web").
	Label    string
	Manifest *manifest.Manifest
	// Inventory is the image's files; nil when the manifest has no inventory (an empty,
	// non-nil slice is an inventory of no files).
	Inventory []manifest.Entry
}

// ImagePrefix marks an argument that names an image in the store ("image:web") rather than a
// directory or a file.
const ImagePrefix = "image:"

// Resolver finds the directory holding the manifest.json (and its inventory) of the image
// stored under name. The store is not this package's: the caller supplies it.
type Resolver func(name string) (dir string, err error)

// Load reads one side of a comparison. arg is an output directory holding manifest.json, the
// path of a manifest.json, or image:NAME, which resolve turns into a directory. It reads the
// inventory too when the manifest names one, and checks its entries (clean absolute paths,
// each once, known types, octal modes): an inventory that the manifest names but that cannot
// be read, or that is malformed, is an error like an unreadable manifest (a comparison without
// it would be silently partial).
func Load(arg string, resolve Resolver) (Side, error) {
	if arg == "" {
		return Side{}, errors.New("an empty argument names no build")
	}
	target := arg
	if name, ok := strings.CutPrefix(arg, ImagePrefix); ok {
		if name == "" {
			return Side{}, fmt.Errorf("%s: name the stored image after %q", arg, ImagePrefix)
		}
		if resolve == nil {
			return Side{}, fmt.Errorf("%s: stored images cannot be compared here", arg)
		}
		dir, err := resolve(name)
		if err != nil {
			return Side{}, fmt.Errorf("%s: %w", arg, err)
		}
		target = dir
	}
	fi, err := os.Stat(target)
	if err != nil {
		return Side{}, fmt.Errorf("%s: %w", arg, err)
	}
	file, dir := target, filepath.Dir(target)
	if fi.IsDir() {
		file, dir = filepath.Join(target, "manifest.json"), target
	}
	m, err := manifest.Read(file)
	if err != nil {
		return Side{}, err
	}
	s := Side{Label: arg, Manifest: m}
	if m.Inventory != nil {
		inv, err := manifest.ReadInventory(dir, *m.Inventory)
		if err != nil {
			return Side{}, err
		}
		if inv == nil {
			inv = []manifest.Entry{}
		}
		seen := make(map[string]bool, len(inv))
		for i, e := range inv {
			err := checkEntry(e)
			if err == nil && seen[e.Path] {
				err = fmt.Errorf("%s is listed twice", e.Path)
			}
			if err != nil {
				return Side{}, fmt.Errorf("read inventory %s: entry %d: %w", filepath.Join(dir, m.Inventory.File), i+1, err)
			}
			seen[e.Path] = true
		}
		s.Inventory = inv
	}
	return s, nil
}

// Entry types, as the inventory writes them.
const (
	typeFile    = "file"
	typeDir     = "dir"
	typeSymlink = "symlink"
)

// checkEntry refuses an entry Compare would misread: a relative or unclean path, an unknown
// type, a mode that is not octal permission bits.
func checkEntry(e manifest.Entry) error {
	if !path.IsAbs(e.Path) || path.Clean(e.Path) != e.Path {
		return fmt.Errorf("path %q is not a clean absolute path", e.Path)
	}
	if types := []string{typeFile, typeDir, typeSymlink, "char", "block", "fifo", "socket"}; !slices.Contains(types, e.Type) {
		return fmt.Errorf("%s: type %q is none of %s", e.Path, e.Type, strings.Join(types, ", "))
	}
	if _, ok := parseMode(e.Mode); !ok {
		return fmt.Errorf("%s: mode %q is not octal permission bits such as 0755 or 4755", e.Path, e.Mode)
	}
	return nil
}

// parseMode reads an inventory mode: octal permission bits with setuid, setgid and sticky.
func parseMode(s string) (uint32, bool) {
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o7777 {
		return 0, false
	}
	return uint32(v), true
}
