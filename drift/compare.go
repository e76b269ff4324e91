package drift

import (
	"cmp"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	debversion "github.com/knqyf263/go-deb-version"

	"github.com/ingot-build/ingot/manifest"
)

// SchemaVersion is the schema_version of a Report's JSON, MAJOR.MINOR as manifest.json's: a new
// minor only adds fields, a new major changes or removes one (docs/drift.md).
const SchemaVersion = "1.0"

// Options tune a comparison.
type Options struct {
	// Ignore are more noise patterns, added to DefaultNoise (see Noise for their syntax):
	// a recipe's `drift:` list, `ingot diff --ignore`.
	Ignore []string
}

// Validate checks the patterns of o (ValidatePattern), all of them, before any work.
func (o Options) Validate() error {
	var errs []error
	for _, p := range o.Ignore {
		errs = append(errs, ValidatePattern(p))
	}
	return errors.Join(errs...)
}

// Report is what differs from A (the baseline, the older build) to B. Its JSON is a documented
// contract (docs/drift.md): add fields with a new minor SchemaVersion, never rename one. Every
// list is in a deterministic order.
type Report struct {
	SchemaVersion string `json:"schema_version"`
	A             Build  `json:"a"`
	B             Build  `json:"b"`
	// Same says nothing differs beyond the noise list: no package and no file. Output sizes
	// do not count (two builds of the same files are rarely the same bytes on disk). It is
	// false when either side has no inventory: sameness cannot be shown then.
	Same bool `json:"same"`
	// Metrics are the numbers thresholds read, by name (Metrics lists them); a metric that
	// cannot be computed is absent here and in Unavailable, with why.
	Metrics     map[string]float64 `json:"metrics"`
	Unavailable map[string]string  `json:"unavailable,omitempty"`
	Packages    Packages           `json:"packages"`
	// Files is nil when either side has no inventory.
	Files   *Files         `json:"files"`
	Outputs []OutputChange `json:"outputs"`
	// Noise is the noise list the comparison applied: DefaultNoise, then Options.Ignore.
	Noise []string `json:"noise"`
}

// Build names one side of a Report.
type Build struct {
	Label    string    `json:"label"`
	Name     string    `json:"name"`
	BuildID  string    `json:"build_id"`
	Finished time.Time `json:"finished"`
	Packages int       `json:"packages"`
	// Inventory says the side has a file inventory; Files is how many entries it holds.
	Inventory bool `json:"inventory"`
	Files     int  `json:"files"`
}

// Packages is what differs in the package lists, each list sorted by name.
type Packages struct {
	Added      []manifest.Package `json:"added"`
	Removed    []manifest.Package `json:"removed"`
	Upgraded   []PackageChange    `json:"upgraded"`
	Downgraded []PackageChange    `json:"downgraded"`
	// Changed are versions that differ but cannot be ordered: one is not a Debian version,
	// or the two compare as equal though written differently.
	Changed []PackageChange `json:"changed"`
}

// PackageChange is one package whose version differs.
type PackageChange struct {
	Name string `json:"name"`
	From string `json:"from"`
	To   string `json:"to"`
}

// Files is what differs in the file inventories, noise left out (except from SetuidAdded).
type Files struct {
	Added   []manifest.Entry `json:"added"`
	Removed []manifest.Entry `json:"removed"`
	Changed []FileChange     `json:"changed"`
	// SetuidAdded are regular files that are setuid or setgid in B and were not in A: new
	// files with those bits, and files that gained one. The noise list does not apply here: a
	// privileged binary is never noise, wherever it hides.
	SetuidAdded []SetuidFile `json:"setuid_added"`
	// Dirs is the size of each top-level directory in regular-file bytes, largest absolute
	// change first; BytesA and BytesB are the totals.
	Dirs   []DirSize `json:"dirs"`
	BytesA int64     `json:"bytes_a"`
	BytesB int64     `json:"bytes_b"`
	// Ignored counts the paths (of either side) that the noise list left out.
	Ignored int `json:"ignored"`
}

// What a file change is in, in the order FileChange.What lists them.
const (
	ChangeContent = "content" // a regular file's sha256 or size, a symlink's target
	ChangeMode    = "mode"    // permission bits, setuid, setgid, sticky
	ChangeOwner   = "owner"   // uid or gid
	ChangeType    = "type"    // file, dir, symlink, …
)

// FileChange is one path on both sides whose entry differs.
type FileChange struct {
	Path string   `json:"path"`
	What []string `json:"what"`
	From Attrs    `json:"from"`
	To   Attrs    `json:"to"`
}

// Attrs is an inventory entry without its path.
type Attrs struct {
	Type   string `json:"type"`
	Mode   string `json:"mode"`
	UID    int    `json:"uid"`
	GID    int    `json:"gid"`
	Size   int64  `json:"size"`
	Target string `json:"target,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
}

// SetuidFile is a regular file that became setuid or setgid.
type SetuidFile struct {
	Path string `json:"path"`
	Mode string `json:"mode"`
	UID  int    `json:"uid"`
	GID  int    `json:"gid"`
	// Bits are the bits it gained: setuid, setgid or both.
	Bits []string `json:"bits"`
	// New says the file is new in B (rather than an existing file that gained a bit).
	New bool `json:"new"`
}

// DirSize is one top-level directory's regular-file bytes on both sides ("/" holds the files
// directly under the root).
type DirSize struct {
	Dir    string `json:"dir"`
	BytesA int64  `json:"bytes_a"`
	BytesB int64  `json:"bytes_b"`
	Change int64  `json:"change"`
}

// OutputChange is one output in either build, paired by format, then by file name.
type OutputChange struct {
	Format string `json:"format"`
	// A and B are the output in each build; nil where the build has none to pair.
	A      *OutputFile `json:"a"`
	B      *OutputFile `json:"b"`
	Change int64       `json:"change"`
	// Growth is Change in percent of A's size; absent when A is absent or empty.
	Growth *float64 `json:"growth,omitempty"`
}

// OutputFile is one output of one build.
type OutputFile struct {
	File   string `json:"file"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Compare reports what differs from a (the baseline) to b. Neither side is changed. A
// malformed Options.Ignore pattern matches nothing: check them with Options.Validate first.
func Compare(a, b Side, opts Options) *Report {
	n := newNoise(opts.Ignore)
	r := &Report{
		SchemaVersion: SchemaVersion,
		A:             buildOf(a),
		B:             buildOf(b),
		Metrics:       map[string]float64{},
		Unavailable:   map[string]string{},
		Packages:      comparePackages(packagesOf(a), packagesOf(b)),
		Outputs:       compareOutputs(outputsOf(a), outputsOf(b)),
		Noise:         n,
	}
	switch {
	case a.Inventory == nil && b.Inventory == nil:
		r.unavailable(fmt.Sprintf("neither %s nor %s has a file inventory", a.Label, b.Label))
	case a.Inventory == nil:
		r.unavailable(fmt.Sprintf("%s has no file inventory", a.Label))
	case b.Inventory == nil:
		r.unavailable(fmt.Sprintf("%s has no file inventory", b.Label))
	default:
		r.Files = compareFiles(a.Inventory, b.Inventory, n.matcher())
	}
	r.metrics()
	p := r.Packages
	r.Same = r.Files != nil && len(r.Files.Added)+len(r.Files.Removed)+len(r.Files.Changed)+len(r.Files.SetuidAdded) == 0 &&
		len(p.Added)+len(p.Removed)+len(p.Upgraded)+len(p.Downgraded)+len(p.Changed) == 0
	if len(r.Unavailable) == 0 {
		r.Unavailable = nil
	}
	r.emptyLists()
	return r
}

// emptyLists makes every list of r that has no element an empty one, so that its JSON says []
// rather than null: a reader iterates without checking.
func (r *Report) emptyLists() {
	p := &r.Packages
	p.Added, p.Removed = nonNil(p.Added), nonNil(p.Removed)
	p.Upgraded, p.Downgraded, p.Changed = nonNil(p.Upgraded), nonNil(p.Downgraded), nonNil(p.Changed)
	r.Outputs = nonNil(r.Outputs)
	r.Noise = nonNil(r.Noise)
	if f := r.Files; f != nil {
		f.Added, f.Removed, f.Changed = nonNil(f.Added), nonNil(f.Removed), nonNil(f.Changed)
		f.SetuidAdded, f.Dirs = nonNil(f.SetuidAdded), nonNil(f.Dirs)
	}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// Summary is what a build records in its manifest about its comparison with the baseline a.
func (r *Report) Summary() manifest.DriftSummary {
	counts := make(map[string]float64, len(r.Metrics))
	for k, v := range r.Metrics {
		counts[k] = v
	}
	return manifest.DriftSummary{Baseline: r.A.Label, BaselineBuild: r.A.BuildID, Counts: counts, Same: r.Same}
}

// unavailable marks the metrics of the file inventory as not computable, and why.
func (r *Report) unavailable(why string) {
	for _, m := range Metrics() {
		if m.NeedsInventory {
			r.Unavailable[m.Name] = why
		}
	}
}

func buildOf(s Side) Build {
	b := Build{Label: s.Label, Inventory: s.Inventory != nil, Files: len(s.Inventory)}
	if m := s.Manifest; m != nil {
		b.Name, b.BuildID, b.Finished, b.Packages = m.Name, m.BuildID, m.Finished, len(m.Packages)
	}
	return b
}

func packagesOf(s Side) []manifest.Package {
	if s.Manifest == nil {
		return nil
	}
	return s.Manifest.Packages
}

func outputsOf(s Side) []manifest.File {
	if s.Manifest == nil {
		return nil
	}
	return s.Manifest.Outputs
}

// comparePackages compares two package lists by name. A name listed more than once (dpkg
// lists a Multi-Arch package once per architecture, without it) is compared as a set of
// versions: versions on both sides cancel out, and the rest pair up in version order.
func comparePackages(a, b []manifest.Package) Packages {
	va, vb := versionsByName(a), versionsByName(b)
	var d Packages
	for _, name := range unionKeys(va, vb) {
		olds, news := minus(va[name], vb[name]), minus(vb[name], va[name])
		for i := 0; i < max(len(olds), len(news)); i++ {
			switch {
			case i >= len(news):
				d.Removed = append(d.Removed, manifest.Package{Name: name, Version: olds[i]})
			case i >= len(olds):
				d.Added = append(d.Added, manifest.Package{Name: name, Version: news[i]})
			default:
				c := PackageChange{Name: name, From: olds[i], To: news[i]}
				switch order, ok := compareVersions(c.From, c.To); {
				case ok && order < 0:
					d.Upgraded = append(d.Upgraded, c)
				case ok && order > 0:
					d.Downgraded = append(d.Downgraded, c)
				default:
					d.Changed = append(d.Changed, c)
				}
			}
		}
	}
	return d
}

// compareVersions orders two Debian versions (deb-version(7): epoch, upstream version, Debian
// revision, with ~ before anything). ok is false when either is not a Debian version.
func compareVersions(a, b string) (order int, ok bool) {
	va, errA := debversion.NewVersion(a)
	vb, errB := debversion.NewVersion(b)
	if errA != nil || errB != nil {
		return 0, false
	}
	return va.Compare(vb), true
}

// versionsByName groups versions by package name, each group in version order (then as
// strings, for versions that do not parse).
func versionsByName(ps []manifest.Package) map[string][]string {
	m := map[string][]string{}
	for _, p := range ps {
		m[p.Name] = append(m[p.Name], p.Version)
	}
	for _, vs := range m {
		slices.SortFunc(vs, func(x, y string) int {
			if o, ok := compareVersions(x, y); ok && o != 0 {
				return o
			}
			return strings.Compare(x, y)
		})
	}
	return m
}

// minus is a without one occurrence of each element of b, in a's order.
func minus(a, b []string) []string {
	left := map[string]int{}
	for _, v := range b {
		left[v]++
	}
	var out []string
	for _, v := range a {
		if left[v] > 0 {
			left[v]--
			continue
		}
		out = append(out, v)
	}
	return out
}

func unionKeys[V any](a, b map[string]V) []string {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// compareFiles compares two inventories path by path, leaving noise out.
func compareFiles(a, b []manifest.Entry, n matcher) *Files {
	byPath := make(map[string]manifest.Entry, len(a))
	for _, e := range a {
		byPath[e.Path] = e
	}
	f := &Files{}
	inB := make(map[string]bool, len(b))
	sizeA, sizeB := map[string]int64{}, map[string]int64{}
	for _, e := range b {
		inB[e.Path] = true
		old, had := byPath[e.Path]
		if s := setuidGained(old, had, e); s != nil {
			f.SetuidAdded = append(f.SetuidAdded, *s)
		}
		if n.match(e.Path) {
			f.Ignored++
			continue
		}
		if e.Type == typeFile {
			sizeB[topDir(e.Path)] += e.Size
			f.BytesB += e.Size
		}
		switch {
		case !had:
			f.Added = append(f.Added, e)
		default:
			if what := changes(old, e); len(what) > 0 {
				f.Changed = append(f.Changed, FileChange{Path: e.Path, What: what, From: attrsOf(old), To: attrsOf(e)})
			}
		}
	}
	for _, e := range a {
		if n.match(e.Path) {
			if !inB[e.Path] {
				f.Ignored++
			}
			continue
		}
		if e.Type == typeFile {
			sizeA[topDir(e.Path)] += e.Size
			f.BytesA += e.Size
		}
		if !inB[e.Path] {
			f.Removed = append(f.Removed, e)
		}
	}
	byPathOrder := func(x, y manifest.Entry) int { return strings.Compare(x.Path, y.Path) }
	slices.SortFunc(f.Added, byPathOrder)
	slices.SortFunc(f.Removed, byPathOrder)
	slices.SortFunc(f.Changed, func(x, y FileChange) int { return strings.Compare(x.Path, y.Path) })
	slices.SortFunc(f.SetuidAdded, func(x, y SetuidFile) int { return strings.Compare(x.Path, y.Path) })
	for _, dir := range unionKeys(sizeA, sizeB) {
		f.Dirs = append(f.Dirs, DirSize{Dir: dir, BytesA: sizeA[dir], BytesB: sizeB[dir], Change: sizeB[dir] - sizeA[dir]})
	}
	slices.SortStableFunc(f.Dirs, func(x, y DirSize) int { return cmp.Compare(abs(y.Change), abs(x.Change)) })
	return f
}

// changes lists what differs between two entries of one path.
func changes(a, b manifest.Entry) []string {
	var what []string
	if a.Type != b.Type {
		what = append(what, ChangeType)
	} else if contentDiffers(a, b) {
		what = append(what, ChangeContent)
	}
	ma, okA := parseMode(a.Mode)
	mb, okB := parseMode(b.Mode)
	if okA && okB && ma != mb || !(okA && okB) && a.Mode != b.Mode {
		what = append(what, ChangeMode)
	}
	if a.UID != b.UID || a.GID != b.GID {
		what = append(what, ChangeOwner)
	}
	if len(what) > 1 && what[0] == ChangeType {
		// "type" first, as listed in FileChange's order: content, mode, owner, type.
		what = append(what[1:], ChangeType)
	}
	return what
}

// contentDiffers compares what an entry of one type holds: a regular file's bytes (its sha256
// when both sides have one, and its size), a symlink's target. A directory's size is its
// listing's, which its children's entries already show; a device's number is not recorded.
func contentDiffers(a, b manifest.Entry) bool {
	switch a.Type {
	case typeFile:
		return a.Size != b.Size || a.SHA256 != "" && b.SHA256 != "" && a.SHA256 != b.SHA256
	case typeSymlink:
		return a.Target != b.Target
	}
	return false
}

const (
	modeSetuid = 0o4000
	modeSetgid = 0o2000
)

// setuidGained returns b as a SetuidFile when it is a regular file with a setuid or setgid bit
// that old (present when had) did not have. Directories are left out: setgid on a directory
// makes new files inherit its group, it grants nothing.
func setuidGained(old manifest.Entry, had bool, b manifest.Entry) *SetuidFile {
	if b.Type != typeFile {
		return nil
	}
	mb, _ := parseMode(b.Mode)
	var ma uint32
	if had && old.Type == typeFile {
		ma, _ = parseMode(old.Mode)
	}
	gained := mb &^ ma
	var bits []string
	if gained&modeSetuid != 0 {
		bits = append(bits, "setuid")
	}
	if gained&modeSetgid != 0 {
		bits = append(bits, "setgid")
	}
	if bits == nil {
		return nil
	}
	return &SetuidFile{Path: b.Path, Mode: b.Mode, UID: b.UID, GID: b.GID, Bits: bits, New: !had}
}

func attrsOf(e manifest.Entry) Attrs {
	return Attrs{Type: e.Type, Mode: e.Mode, UID: e.UID, GID: e.GID, Size: e.Size, Target: e.Target, SHA256: e.SHA256}
}

// topDir is the top-level directory p is under ("/usr/bin/ls" → "/usr"), or "/" for what is
// directly under the root.
func topDir(p string) string {
	rest := strings.TrimPrefix(p, "/")
	first, _, found := strings.Cut(rest, "/")
	if !found {
		return "/"
	}
	return path.Join("/", first)
}

// compareOutputs pairs the outputs of two builds: by format when a format has one output on
// each side, else by file name within the format; the rest are outputs only one build has.
func compareOutputs(a, b []manifest.File) []OutputChange {
	fa, fb := outputsByFormat(a), outputsByFormat(b)
	var out []OutputChange
	for _, format := range unionKeys(fa, fb) {
		as, bs := fa[format], fb[format]
		if len(as) == 1 && len(bs) == 1 {
			out = append(out, outputChange(format, &as[0], &bs[0]))
			continue
		}
		used := map[int]bool{}
		for i := range as {
			j := slices.IndexFunc(bs, func(f manifest.File) bool { return f.File == as[i].File })
			if j >= 0 {
				used[j] = true
				out = append(out, outputChange(format, &as[i], &bs[j]))
			} else {
				out = append(out, outputChange(format, &as[i], nil))
			}
		}
		for j := range bs {
			if !used[j] {
				out = append(out, outputChange(format, nil, &bs[j]))
			}
		}
	}
	slices.SortStableFunc(out, func(x, y OutputChange) int {
		return cmp.Or(cmp.Compare(x.Format, y.Format), cmp.Compare(x.file(), y.file()))
	})
	return out
}

func outputsByFormat(fs []manifest.File) map[string][]manifest.File {
	m := map[string][]manifest.File{}
	for _, f := range fs {
		m[f.Format] = append(m[f.Format], f)
	}
	return m
}

func outputChange(format string, a, b *manifest.File) OutputChange {
	c := OutputChange{Format: format}
	if a != nil {
		c.A = &OutputFile{File: a.File, Size: a.Size, SHA256: a.SHA256}
		c.Change -= a.Size
	}
	if b != nil {
		c.B = &OutputFile{File: b.File, Size: b.Size, SHA256: b.SHA256}
		c.Change += b.Size
	}
	if a != nil && b != nil && a.Size > 0 {
		g := percent(c.Change, a.Size)
		c.Growth = &g
	}
	return c
}

// file names the output for ordering: B's file, or A's when B has none.
func (c OutputChange) file() string {
	if c.B != nil {
		return c.B.File
	}
	return c.A.File
}

func percent(change, of int64) float64 { return float64(change) * 100 / float64(of) }

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}
