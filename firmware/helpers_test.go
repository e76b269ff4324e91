package firmware

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var fwRef = regexp.MustCompile(`@FW@(/[^"]+)`)

// fixtureSet is a copy of testdata fixture sets with their placeholders filled in.
type fixtureSet struct {
	root string // sets are copied to root/sets/NAME
	fw   string // what @FW@ became; every file named under it exists
}

// dir is the copied fixture set name, e.g. "overrides/etc".
func (s fixtureSet) dir(name string) string { return filepath.Join(s.root, "sets", name) }

// dirs is dir for each name, in order.
func (s fixtureSet) dirs(names ...string) []string {
	var ds []string
	for _, n := range names {
		ds = append(ds, s.dir(n))
	}
	return ds
}

// rel turns a copied descriptor path back into its fixture name, e.g. "debian12/60-edk2-x86_64.json".
func (s fixtureSet) rel(t *testing.T, path string) string {
	t.Helper()
	if path == "" {
		return ""
	}
	r, err := filepath.Rel(filepath.Join(s.root, "sets"), path)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.ToSlash(r)
}

// newFixture copies all of testdata to a temporary directory, replacing "@FW@" with a directory
// in which it creates every file named after the placeholder, and "@MISSING@" with a directory
// that does not exist. Empty files stay empty: they are the "disable" case.
func newFixture(t *testing.T) fixtureSet {
	t.Helper()
	s := fixtureSet{root: t.TempDir()}
	s.fw = filepath.Join(s.root, "fw")
	missing := filepath.Join(s.root, "missing")
	err := filepath.WalkDir("testdata", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range fwRef.FindAllSubmatch(data, -1) {
			img := filepath.Join(s.fw, string(m[1]))
			if err := os.MkdirAll(filepath.Dir(img), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(img, []byte("fixture firmware image\n"), 0o644); err != nil {
				return err
			}
		}
		text := strings.ReplaceAll(string(data), "@FW@", s.fw)
		text = strings.ReplaceAll(text, "@MISSING@", missing)
		rel, err := filepath.Rel("testdata", path)
		if err != nil {
			return err
		}
		dst := filepath.Join(s.root, "sets", rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, []byte(text), 0o644)
	})
	if err != nil {
		t.Fatalf("copy fixtures: %v", err)
	}
	return s
}

// needTool fails the test, naming the Debian package, when a tool is missing: a skip would hide it.
func needTool(t *testing.T, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is needed by this test: %v; install it with: apt-get install %s", name, err, pkg)
	}
}

// dirNames lists a directory's entries, to catch temporary files left behind.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
