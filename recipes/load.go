package recipes

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Defaults, documented in docs/recipes.md.
const (
	DefaultCPUs           = 2
	DefaultMemoryMiB      = 2048
	DefaultISODisk        = 16 * GiB // an installer needs a blank disk of some size
	DefaultFirmware       = "uefi"
	DefaultSSHUser        = "ingot"
	DefaultSSHTimeout     = 10 * time.Minute
	DefaultRebootTimeout  = 10 * time.Minute
	DefaultInstallTimeout = time.Hour
	DefaultBootWait       = 10 * time.Second
)

// Limits on machine sizes: beyond them a value is a typo, not a plan.
const (
	minMemory = 128 * MiB // no current distribution boots in less
	maxMemory = TiB
	minDisk   = GiB
	maxDisk   = 64 * TiB // the largest VHDX; qcow2 allows more, but no output could hold it
	maxCPUs   = 256
)

var (
	nameRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	userRE  = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	ownerRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$`)
	modeRE  = regexp.MustCompile(`^0?[0-7]{3,4}$`)
)

// Load reads and validates the recipe at path. vars holds --var values; env is the process
// environment (os.Environ()), searched for INGOT_VAR_NAME. A recipe that is not valid yields
// Errors. Relative paths in the recipe are resolved against its directory.
func Load(path string, vars map[string]string, env []string) (*Recipe, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read recipe: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read recipe: %w", err)
	}
	if fi.IsDir() {
		return nil, Errors{dirError(path)}
	}
	// The head is judged before the rest is read: a disk image named by mistake can be gigabytes,
	// and its first bytes are enough to say what it is.
	head := make([]byte, sniffLen)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("read recipe: %w", err)
	}
	head = head[:n]
	if e := notText(path, head, n < sniffLen); e != nil {
		return nil, Errors{e}
	}
	rest, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read recipe: %w", err)
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("read recipe %s: %w", path, err)
	}
	return LoadBytes(path, append(head, rest...), dir, vars, env)
}

// LoadBytes reads a recipe held in memory. name stands for the file in positions and becomes
// Recipe.File. dir resolves relative paths; empty means the recipe may not refer to local files
// by relative path (built-in recipes). A leading UTF-8 byte-order mark is ignored: editors on
// Windows write one, and YAML 1.2 (section 5.2) allows it.
func LoadBytes(name string, data []byte, dir string, vars map[string]string, env []string) (*Recipe, error) {
	if e := notText(name, data, true); e != nil {
		return nil, Errors{e}
	}
	// Columns on line 1 stay right without the mark: editors do not show it, and the parser
	// counts columns from the first byte it is given.
	data = bytes.TrimPrefix(data, []byte(utf8BOM))
	d := &decoder{
		file:      name,
		dir:       dir,
		vars:      map[string]*variable{},
		anchors:   map[string]ast.Node{},
		positions: map[string]Pos{},
		open:      map[ast.Node]bool{},
	}
	r := d.decode(data, vars, env)
	if len(d.errs) > 0 {
		sortErrors(d.errs)
		return nil, d.errs
	}
	r.File, r.Dir, r.positions = name, dir, d.positions
	return r, nil
}

// dirError is the error for a directory named as a recipe, naming the recipes in it to pick from.
func dirError(path string) *Error {
	var found []string
	entries, _ := os.ReadDir(path) // unreadable: the hint just names no files
	for _, e := range entries {
		if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
			found = append(found, filepath.Join(path, e.Name()))
		}
	}
	hint := "name the recipe file (a .yaml file); this directory has none"
	switch {
	case len(found) == 1:
		hint = "name the recipe file in it: " + found[0]
	case len(found) > 1:
		const listed = 5
		if len(found) > listed {
			found = append(found[:listed:listed], fmt.Sprintf("(and %d more)", len(found)-listed))
		}
		hint = "name one recipe file in it: " + strings.Join(found, ", ")
	}
	return &Error{Pos: Pos{File: path}, Msg: "is a directory, not a recipe file", Hint: hint}
}

// sniffLen is how much of a file Load reads before deciding it is text: enough to reach the
// ISO 9660 volume descriptor at byte 32769.
const sniffLen = 64 << 10

// utf8BOM is the byte-order mark as UTF-8 encodes it (U+FEFF).
const utf8BOM = "\ufeff"

// signature is a file format recognised by its magic bytes, so that a disk image or an archive
// named as a recipe is called what it is rather than "binary data".
type signature struct {
	off   int
	magic string
	what  string
	hint  string
}

const (
	imageHint   = "name the recipe (a .yaml file) that builds from it: an image goes under source: disk: url: or iso: url:"
	archiveHint = "if a recipe is inside, unpack it and name the .yaml file"
	binaryHint  = "name the recipe file (YAML text)"
)

// signatures are checked only once a file has failed as text, so a recipe that happens to start
// with "BZh" or "PK" is still read as one.
func signatures() []signature {
	return []signature{
		{0, "QFI\xfb", "a qcow2 disk image", imageHint},
		{0, "KDMV", "a VMDK disk image", imageHint},
		{0, "vhdxfile", "a VHDX disk image", imageHint},
		{0, "conectix", "a VHD disk image", imageHint},
		{0x8001, "CD001", "an ISO 9660 image", imageHint}, // the primary volume descriptor, after 32 KiB of system area
		{0, "\x1f\x8b", "gzip-compressed data", archiveHint},
		{0, "\xfd7zXZ\x00", "xz-compressed data", archiveHint},
		{0, "\x28\xb5\x2f\xfd", "zstd-compressed data", archiveHint},
		{0, "BZh", "bzip2-compressed data", archiveHint},
		{0, "PK\x03\x04", "a zip archive", archiveHint},
		{257, "ustar", "a tar archive", archiveHint},
		{0, "\x7fELF", "a program (ELF)", binaryHint},
		{510, "\x55\xaa", "a raw disk image (it has a boot sector)", imageHint},
	}
}

// notText returns the error for data that is not UTF-8 text, or nil. Without it a binary file
// fails somewhere deep in the YAML parser ("found invalid tag character" at line 382), and a
// UTF-16 file as "a string". complete is false when data is only the head of a file: a character
// cut in two at its end is then not an error.
func notText(name string, data []byte, complete bool) *Error {
	start := 0
	if bytes.HasPrefix(data, []byte(utf8BOM)) {
		start = len(utf8BOM)
	}
	nul := bytes.IndexByte(data, 0)
	bad := -1 // the first byte that is not valid UTF-8
	for i := start; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 {
			if complete || utf8.FullRune(data[i:]) {
				bad = i
			}
			break
		}
		i += size
	}
	if nul < 0 && bad < 0 {
		return nil
	}
	// at is the position of the byte at off as an editor shows it: columns in characters, from the
	// first after the byte-order mark.
	at := func(off int) Pos {
		text := data[start:off]
		line := bytes.Count(text, []byte("\n")) + 1
		col := utf8.RuneCount(text[bytes.LastIndexByte(text, '\n')+1:]) + 1
		return Pos{File: name, Line: line, Col: col}
	}
	const saveUTF8 = "save it as UTF-8 (in Notepad: Save As, Encoding: UTF-8)"
	switch {
	case bytes.HasPrefix(data, []byte{0xFF, 0xFE, 0, 0}), bytes.HasPrefix(data, []byte{0, 0, 0xFE, 0xFF}):
		return &Error{Pos: at(start), Msg: "the recipe is UTF-32 text, not UTF-8", Hint: saveUTF8}
	case bytes.HasPrefix(data, []byte{0xFF, 0xFE}), bytes.HasPrefix(data, []byte{0xFE, 0xFF}), looksUTF16(data):
		return &Error{Pos: at(start), Msg: "the recipe is UTF-16 text, not UTF-8", Hint: saveUTF8}
	}
	for _, s := range signatures() {
		if bytes.HasPrefix(data[min(s.off, len(data)):], []byte(s.magic)) {
			return &Error{Pos: at(start), Msg: "the recipe is not a text YAML file: it looks like " + s.what, Hint: s.hint}
		}
	}
	// Text never has a NUL byte; binary data nearly always does (git's test for binary files).
	if nul >= 0 {
		return &Error{Pos: at(nul), Msg: fmt.Sprintf("the recipe is not a text YAML file: it looks like binary data (a NUL byte at offset %d)", nul), Hint: binaryHint}
	}
	return &Error{
		Pos:  at(bad),
		Msg:  fmt.Sprintf("the recipe is not UTF-8 text: the byte 0x%02X at offset %d is not valid UTF-8", data[bad], bad),
		Hint: saveUTF8 + "; it may have been written as Latin-1 or Windows-1252",
	}
}

// looksUTF16 reports whether data starts as UTF-16 text without a byte-order mark would: ASCII
// characters, each with a NUL byte beside it.
func looksUTF16(data []byte) bool {
	n := min(len(data), 64) &^ 1
	if n < 4 {
		return false
	}
	for _, zero := range []int{0, 1} { // 1: little-endian, 0: big-endian
		ok := true
		for i := 0; i < n && ok; i += 2 {
			z, c := data[i+zero], data[i+1-zero]
			ok = z == 0 && c != 0 && c < 0x80
		}
		if ok {
			return true
		}
	}
	return false
}

// parse parses a recipe's text into its single document body, recording syntax errors.
func (d *decoder) parse(data []byte) ast.Node {
	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		pos, msg := Pos{File: d.file, Line: 1, Col: 1}, err.Error()
		hint := ""
		var ye yaml.Error
		if errors.As(err, &ye) {
			msg = ye.GetMessage()
			if tk := ye.GetToken(); tk != nil && tk.Position != nil {
				pos.Line, pos.Col = tk.Position.Line, tk.Position.Column
				if at, h, ok := d.misindented(msg, tk); ok {
					pos, hint = at, h
				}
			}
		}
		switch {
		case hint != "":
		case strings.Contains(msg, "tab") || strings.Contains(msg, "\t"):
			hint = "indent with spaces, not tabs"
		case strings.Contains(msg, "already defined"):
			hint = "each key may appear once in a mapping"
		case strings.Contains(msg, "must be specified") || strings.Contains(msg, "not found"):
			hint = "a bracket or quote opened before this point is not closed"
		case strings.HasPrefix(msg, "mapping value is not allowed in this context"):
			// One line: a ':' followed by a space inside a plain value.
			hint = `quote a value that contains ": ", e.g. shell: 'echo a: b'`
		case strings.Contains(msg, "value is not allowed in this context") || strings.Contains(msg, "non-map value is specified"):
			hint = "check this line's indentation: the keys of one mapping start in the same column, and list items (- ) in theirs"
		}
		msg = strings.ReplaceAll(msg, "\t", `\t`)
		d.errorf(pos, "", hint, "YAML: %s", msg)
		return nil
	}
	// Empty documents (a stray "---" and comments) are not recipes; they are ignored.
	var bodies []ast.Node
	for _, doc := range file.Docs {
		if doc.Body != nil {
			bodies = append(bodies, doc.Body)
		}
	}
	switch len(bodies) {
	case 0:
		d.errorf(Pos{File: d.file, Line: 1, Col: 1}, "", "a recipe needs at least name: and source:; see docs/recipes.md", "the recipe is empty")
		return nil
	case 1:
		return bodies[0]
	}
	d.errorf(d.at(bodies[1]), "", "put each recipe in its own file", "a recipe is one YAML document; this file has %d", len(bodies))
	return nil
}

// misindented places and explains a syntax error that a line indented deeper than the key above
// it causes. YAML reads such a line as more of the value above (cpus: 2, then "   memory: 2G",
// is the plain scalar "2 memory"), so the parser reports the error at the start of that value,
// a line or more above the line to fix. The position returned is the start of the offending
// key; ok is false when tk is not such an error.
func (d *decoder) misindented(msg string, tk *token.Token) (at Pos, hint string, ok bool) {
	var key string // the key indented too deep
	switch {
	case strings.HasPrefix(msg, "mapping value is not allowed in this context"):
		// tk is the multi-line scalar that swallowed the key; the ':' after it is on the key's line.
		origin := strings.TrimLeft(tk.Origin, " \t\r\n")
		nl := strings.LastIndexByte(origin, '\n')
		if nl < 0 || tk.Next == nil || tk.Next.Type != token.MappingValueType || tk.Next.Position == nil {
			return Pos{}, "", false
		}
		last := origin[nl+1:]
		key = strings.TrimSpace(last)
		at = Pos{File: d.file, Line: tk.Next.Position.Line, Col: len(last) - len(strings.TrimLeft(last, " \t")) + 1}
	case strings.Contains(msg, "map key-value is pre-defined"):
		// A comment line ended the value above, so tk is the offending key itself.
		key = tk.Value
		at = Pos{File: d.file, Line: tk.Position.Line, Col: tk.Position.Column}
	default:
		return Pos{}, "", false
	}
	// The key above is the one before the nearest ':' on an earlier line.
	var above *token.Token
	for t := tk.Prev; t != nil; t = t.Prev {
		if t.Type == token.MappingValueType && t.Prev != nil && t.Prev.Position != nil && t.Prev.Position.Line < at.Line {
			above = t.Prev
			break
		}
	}
	if above == nil || above.Position.Column >= at.Col {
		return at, "check this line's indentation: the keys of one mapping start in the same column", true
	}
	return at, fmt.Sprintf("%q is indented deeper than %q on line %d (column %d, not %d), so YAML reads it as more of the value of %s; "+
		"start the keys of one mapping in the same column", key, above.Value, above.Position.Line, at.Col, above.Position.Column, above.Value), true
}

func (d *decoder) decode(data []byte, vars map[string]string, env []string) *Recipe {
	body := d.parse(data)
	if body == nil {
		return nil
	}
	d.collectAnchors(body, 0)
	if _, ok := d.resolve("", body).(*ast.MappingNode); !ok {
		d.errorf(d.at(body), "", "start with name: and source:; see docs/recipes.md", "a recipe is a mapping of keys, got %s", kindOf(body))
		return nil
	}
	top, ok := d.mapping("", d.at(body), body, false, yamlKeys[Recipe]())
	if !ok {
		return nil
	}
	r := &Recipe{Variables: map[string]string{}}
	d.variables(top, vars, env)
	for name, v := range d.vars {
		r.Variables[name] = v.value
	}

	if n, ok := top.get("name"); ok {
		if s, ok := d.nonEmpty("name", n); ok {
			r.Name = s
			if !nameRE.MatchString(s) || len(s) > 63 {
				d.errorf(d.at(n), "name", "use up to 63 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit (it names ./out/NAME/)", "%q is not a valid name", s)
			}
		}
	} else {
		d.missing(top, "name", "add name: my-image (it names ./out/NAME/)")
	}
	if n, ok := top.get("description"); ok {
		r.Description, _ = d.str("description", n)
	}
	r.Source = d.source(top)
	r.Machine = d.machine(top, r.Source)
	r.CloudInit = d.cloudInit(top)
	r.SSH = d.ssh(top)
	r.Provision = d.provision(top)
	r.Generalize = d.generalize(top)
	r.Outputs = d.outputs(top)
	d.checkDownloads(r)
	return r
}

// sub reads an optional sub-mapping of f; the bool is false when the key is absent or wrong.
func (d *decoder) sub(f *fields, key string, known []string) (*fields, bool) {
	n, ok := f.get(key)
	if !ok {
		return nil, false
	}
	p := f.child(key)
	return d.mapping(p, d.positions[p], n, true, known)
}

func (d *decoder) source(top *fields) Source {
	var src Source
	n, ok := top.get("source")
	if !ok {
		d.missing(top, "source", "add source: with disk: (a cloud image), iso: (an installer) or image: (a stored image)")
		return src
	}
	f, ok := d.mapping("source", d.positions["source"], n, false, yamlKeys[Source]())
	if !ok {
		return src
	}
	var kinds []string
	for _, k := range yamlKeys[Source]() {
		if _, ok := f.get(k); ok {
			kinds = append(kinds, k)
		}
	}
	switch len(kinds) {
	case 0:
		if f.raw == 0 {
			d.errorf(f.at, "source", "use disk: (a cloud image), iso: (an installer) or image: (a stored image)", "names no source")
		}
		return src
	case 1:
	default:
		second := f.child(kinds[1])
		d.errorf(d.positions[second], second, "a build starts from exactly one source", "source already names %s", kinds[0])
		return src
	}
	p := f.child(kinds[0])
	n, _ = f.get(kinds[0])
	switch kinds[0] {
	case "disk":
		src.Disk = d.diskSource(p, n)
	case "iso":
		src.ISO = d.isoSource(p, n)
	case "image":
		if s, ok := d.nonEmpty(p, n); ok {
			if !nameRE.MatchString(s) {
				d.errorf(d.at(n), p, "name an image as it was stored (a-z, 0-9, '.', '_', '-')", "%q is not a valid image name", s)
			}
			src.Image = &ImageSource{Name: s, Pos: d.positions[p]}
		}
	}
	return src
}

func (d *decoder) diskSource(p string, n ast.Node) *DiskSource {
	f, ok := d.mapping(p, d.positions[p], n, false, yamlKeys[DiskSource]())
	if !ok {
		return nil
	}
	ds := &DiskSource{Pos: f.at}
	ds.URL = d.location(f, "url")
	ds.SHA256, ds.SHA512 = d.pins(f)
	if n, ok := f.get("format"); ok {
		ds.Format, _ = d.enum(f.child("format"), n, "qcow2", "raw")
	}
	return ds
}

func (d *decoder) isoSource(p string, n ast.Node) *ISOSource {
	f, ok := d.mapping(p, d.positions[p], n, false, yamlKeys[ISOSource]())
	if !ok {
		return nil
	}
	is := &ISOSource{Pos: f.at, InstallTimeout: DefaultInstallTimeout}
	is.URL = d.location(f, "url")
	is.SHA256, is.SHA512 = d.pins(f)
	for _, k := range []string{"kernel", "initrd"} {
		n, ok := f.get(k)
		if !ok {
			continue
		}
		s, ok := d.nonEmpty(f.child(k), n)
		if ok && !strings.HasPrefix(s, "/") {
			d.errorf(d.at(n), f.child(k), "name a path inside the ISO, e.g. /casper/vmlinuz", "%q is not an absolute path", s)
		}
		if k == "kernel" {
			is.Kernel = s
		} else {
			is.Initrd = s
		}
	}
	if n, ok := f.get("append"); ok {
		is.Append, _ = d.str(f.child("append"), n)
	}
	if n, ok := f.get("boot_keys"); ok {
		is.BootKeys, _ = d.strings(f.child("boot_keys"), n)
	}
	bootWait, hasWait := f.get("boot_wait")
	if hasWait {
		is.BootWait, _ = d.duration(f.child("boot_wait"), bootWait)
	} else if len(is.BootKeys) > 0 {
		is.BootWait = DefaultBootWait
	}
	if n, ok := f.get("install_timeout"); ok {
		if v, ok := d.duration(f.child("install_timeout"), n); ok {
			if v == 0 {
				d.errorf(d.at(n), f.child("install_timeout"), "leave it out for the default of "+fmtDuration(DefaultInstallTimeout), "is zero")
			}
			is.InstallTimeout = v
		}
	}
	_, hasKernel := f.get("kernel")
	_, hasKeys := f.get("boot_keys")
	for _, k := range []string{"initrd", "append"} {
		if _, ok := f.get(k); ok && !hasKernel {
			d.errorf(d.positions[f.child(k)], f.child(k), "set kernel: too (e.g. /casper/vmlinuz): ingot boots the ISO's kernel directly", "needs kernel")
		}
	}
	if hasKernel && hasKeys {
		d.errorf(d.positions[f.child("boot_keys")], f.child("boot_keys"), "use kernel/initrd/append (no typing, no timing) or boot_keys (typed at the ISO's boot menu), not both", "conflicts with kernel")
	}
	if hasWait && !hasKeys {
		d.errorf(d.positions[f.child("boot_wait")], f.child("boot_wait"), "boot_wait is the pause before typing boot_keys", "has no boot_keys to wait for")
	}
	return is
}

// location reads a required URL or local path. Local paths (and file:// URLs) must exist: a
// recipe is checked before anything is downloaded or booted. Relative paths become absolute,
// relative to the recipe's directory.
func (d *decoder) location(f *fields, key string) string {
	p := f.child(key)
	n, ok := f.get(key)
	if !ok {
		d.missing(f, key, "give the input's https:// or file:// URL, or a local path")
		return ""
	}
	s, ok := d.nonEmpty(p, n)
	if !ok {
		return ""
	}
	loc, msg, hint := d.resolveLocation(strings.TrimSpace(s))
	if msg != "" {
		d.errorf(d.at(n), p, hint, "%s", msg)
	}
	return loc
}

// resolveLocation checks a URL or local path and returns it with a relative path made absolute.
func (d *decoder) resolveLocation(s string) (loc, msg, hint string) {
	scheme, _, isURL := strings.Cut(s, "://")
	if !isURL {
		local, msg, hint := d.localPath(s)
		if msg != "" {
			return "", msg, hint
		}
		if _, err := os.Stat(local); err != nil {
			hint := ""
			if !filepath.IsAbs(s) {
				hint = "relative paths are relative to the recipe's directory"
			}
			return "", fmt.Sprintf("%s does not exist", s), hint
		}
		return local, "", ""
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Sprintf("%q is not a URL: %v", s, err), ""
	}
	switch strings.ToLower(scheme) {
	case "http", "https":
		if u.Host == "" {
			return "", fmt.Sprintf("%q has no host", s), ""
		}
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return "", fmt.Sprintf("%q names another host", s), "file URLs name local files: file:///path"
		}
		if !path.IsAbs(u.Path) {
			return "", fmt.Sprintf("%q has no absolute path", s), "write file:///absolute/path"
		}
		if _, err := os.Stat(u.Path); err != nil {
			return "", fmt.Sprintf("%s does not exist", u.Path), ""
		}
	default:
		return "", fmt.Sprintf("unsupported scheme %q", scheme), "use https://, http://, file:// or a local path"
	}
	return s, "", ""
}

// localPath makes a recipe-relative path absolute.
func (d *decoder) localPath(s string) (string, string, string) {
	if filepath.IsAbs(s) {
		return filepath.Clean(s), "", ""
	}
	if d.dir == "" {
		return "", fmt.Sprintf("a built-in recipe cannot refer to the relative path %q", s), "use an absolute path or a URL"
	}
	return filepath.Join(d.dir, s), "", ""
}

// pins reads the sha256 or sha512 of an input: exactly one is required, because ingot does not
// build on inputs nobody vouched for.
func (d *decoder) pins(f *fields) (sha256, sha512 string) {
	n256, has256 := f.get("sha256")
	n512, has512 := f.get("sha512")
	switch {
	case has256 && has512:
		d.errorf(d.positions[f.child("sha512")], f.child("sha512"), "pin the input once: sha256 or sha512", "conflicts with sha256")
		return "", ""
	case !has256 && !has512:
		if f.suggested["sha512"] {
			return "", ""
		}
		d.missing(f, "sha256", "ingot refuses unpinned inputs: run `sha256sum FILE` on a copy you trust, or name the publisher's checksum file, e.g. sha256: file:https://cloud-images.ubuntu.com/…/SHA256SUMS (Debian publishes sha512: use sha512: file:…/SHA512SUMS)")
		return "", ""
	case has256:
		return d.pin(f.child("sha256"), n256, "sha256", 64), ""
	default:
		return "", d.pin(f.child("sha512"), n512, "sha512", 128)
	}
}

// pin reads one checksum: hex digits (an "ALGO:" prefix is allowed), or "file:" and the location
// of a checksum file (SHA256SUMS, SHA512SUMS) that lists the input by its file name.
func (d *decoder) pin(p string, n ast.Node, algo string, digits int) string {
	s, ok := d.nonEmpty(p, n)
	if !ok {
		return ""
	}
	s = strings.TrimSpace(s)
	if rest, ok := cutPrefixFold(s, "file:"); ok {
		rest = strings.TrimSpace(rest)
		if rest == "" {
			d.errorf(d.at(n), p, "write file: and the checksum file's URL, e.g. file:https://…/SHA256SUMS", "%q names no checksum file", s)
			return ""
		}
		loc, msg, hint := d.resolveLocation(rest)
		if msg != "" {
			d.errorf(d.at(n), p, hint, "checksum file: %s", msg)
			return ""
		}
		return "file:" + loc
	}
	if rest, ok := cutPrefixFold(s, algo+":"); ok {
		s = strings.TrimSpace(rest)
	} else if other, rest, ok := strings.Cut(s, ":"); ok && isHex(strings.TrimSpace(rest)) {
		if other == "sha256" || other == "sha512" {
			d.errorf(d.at(n), p, fmt.Sprintf("write it under %s: instead", other), "is a %s digest", other)
		} else {
			d.errorf(d.at(n), p, "pin the input with sha256: or sha512:", "%s digests are not supported", other)
		}
		return ""
	}
	// A digest with a digit missing is the common slip (a copy that stopped short), so the digits
	// are checked one by one rather than decoded: hex.DecodeString calls any odd length invalid,
	// which read as "not hexadecimal" for a digest that was one digit short.
	if i := strings.IndexFunc(s, notHexDigit); i >= 0 {
		r, _ := utf8.DecodeRuneInString(s[i:])
		d.errorf(d.at(n), p, "a "+algo+" is "+strconv.Itoa(digits)+" hex digits (0-9, a-f), as `"+algo+"sum FILE` prints it",
			"%q is not hexadecimal: %q (character %d) is not a hex digit", s, r, utf8.RuneCountInString(s[:i])+1)
		return ""
	}
	if len(s) != digits {
		guess := map[int]string{32: "an md5", 40: "a sha1", 64: "a sha256", 128: "a sha512"}[len(s)]
		hint := fmt.Sprintf("a %s has %d hex digits", algo, digits)
		switch {
		case len(s) == digits-1:
			hint += ": one digit short? copy it again from `" + algo + "sum FILE` or the publisher's checksum file"
		case len(s) == digits+1:
			hint += ": one digit too many? copy it again from `" + algo + "sum FILE` or the publisher's checksum file"
		case guess == "a sha256", guess == "a sha512":
			hint = fmt.Sprintf("that is %s digest: write it under %s: instead", guess, strings.TrimPrefix(guess, "a "))
		case guess != "":
			hint = fmt.Sprintf("that looks like %s digest, which ingot does not accept; %s", guess, hint)
		}
		d.errorf(d.at(n), p, hint, "has %d hex digits, not %d", len(s), digits)
		return ""
	}
	return strings.ToLower(s)
}

// isHex reports whether s is a non-empty run of hex digits, of any length.
func isHex(s string) bool {
	return s != "" && strings.IndexFunc(s, notHexDigit) < 0
}

func notHexDigit(r rune) bool {
	return !('0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F')
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

func (d *decoder) machine(top *fields, src Source) Machine {
	m := Machine{CPUs: DefaultCPUs, MemoryMiB: DefaultMemoryMiB, Firmware: DefaultFirmware, Accel: "auto", Driver: "qemu", Pos: top.at}
	if f, ok := d.sub(top, "machine", yamlKeys[Machine]()); ok {
		d.machineFields(f, &m)
	}
	if m.DiskBytes == 0 && src.ISO != nil {
		m.DiskBytes = DefaultISODisk
	}
	return m
}

func (d *decoder) machineFields(f *fields, m *Machine) {
	m.Pos = f.at
	if n, ok := f.get("cpus"); ok {
		if v, ok := d.integer(f.child("cpus"), n, 1, maxCPUs); ok {
			m.CPUs = int(v)
		}
	}
	if n, ok := f.get("memory"); ok {
		if v, ok := d.size(f.child("memory"), n, minMemory, maxMemory, MiB, "2GiB"); ok {
			m.MemoryMiB = int(v / MiB)
		}
	}
	if n, ok := f.get("disk"); ok {
		if v, ok := d.size(f.child("disk"), n, minDisk, maxDisk, MiB, "8GiB"); ok {
			m.DiskBytes = v
		}
	}
	if n, ok := f.get("firmware"); ok {
		m.Firmware, _ = d.enum(f.child("firmware"), n, "bios", "uefi", "uefi-secure")
	}
	if n, ok := f.get("accel"); ok {
		m.Accel, _ = d.enum(f.child("accel"), n, "auto", "kvm", "tcg")
	}
	if n, ok := f.get("driver"); ok {
		m.Driver, _ = d.enum(f.child("driver"), n, "qemu", "libvirt")
	}
	if n, ok := f.get("qemu_args"); ok {
		p := f.child("qemu_args")
		items, _ := d.list(p, n)
		for i, item := range items {
			ip := fmt.Sprintf("%s[%d]", p, i)
			args, ok := d.strings(ip, item)
			switch {
			case !ok:
			case len(args) == 0:
				d.errorf(d.at(item), ip, `give an option and its value, e.g. ["-device", "virtio-rng-pci"]`, "is empty")
			case !strings.HasPrefix(args[0], "-"):
				d.errorf(d.at(item), ip, `each element is an option with its values, e.g. ["-device", "virtio-rng-pci"]`, "%q is not an option (options start with -)", args[0])
			default:
				m.QemuArgs = append(m.QemuArgs, args)
			}
		}
	}
}

func (d *decoder) cloudInit(top *fields) CloudInit {
	c := CloudInit{SeedFormat: "iso", Pos: top.at}
	f, ok := d.sub(top, "cloud_init", yamlKeys[CloudInit]())
	if !ok {
		return c
	}
	c.Pos = d.positions["cloud_init"]
	for _, k := range []string{"user_data", "network_config"} {
		n, ok := f.get(k)
		if !ok {
			continue
		}
		p := f.child(k)
		v, ok := d.value(p, n, 0)
		if !ok || v == nil {
			continue
		}
		m, isMap := v.(map[string]any)
		if !isMap {
			hint := ""
			if s, isString := v.(string); isString && strings.HasPrefix(strings.TrimSpace(s), "#cloud-config") {
				hint = "write the cloud-config as YAML under " + k + ": (without the #cloud-config line); ingot merges it with its own"
			}
			d.errorf(d.at(d.resolve(p, n)), p, hint, "want a mapping, got %s", kindOf(d.resolve(p, n)))
			continue
		}
		if k == "user_data" {
			c.UserData = m
		} else {
			c.NetworkConfig = m
		}
	}
	if n, ok := f.get("seed_format"); ok {
		c.SeedFormat, _ = d.enum(f.child("seed_format"), n, "iso", "vfat")
	}
	return c
}

func (d *decoder) ssh(top *fields) SSH {
	s := SSH{User: DefaultSSHUser, Timeout: DefaultSSHTimeout}
	f, ok := d.sub(top, "ssh", yamlKeys[SSH]())
	if !ok {
		return s
	}
	if n, ok := f.get("user"); ok {
		if u, ok := d.nonEmpty(f.child("user"), n); ok {
			switch {
			case u == "root":
				d.errorf(d.at(n), f.child("user"), "ingot creates the build user with sudo rights and removes it when generalizing; name an account that does not exist in the image", "cannot be root")
			case !userRE.MatchString(u):
				d.errorf(d.at(n), f.child("user"), "use up to 32 of a-z, 0-9, '_' and '-', starting with a letter or '_'", "%q is not a valid user name", u)
			default:
				s.User = u
			}
		}
	}
	if n, ok := f.get("timeout"); ok {
		if v, ok := d.duration(f.child("timeout"), n); ok {
			if v == 0 {
				d.errorf(d.at(n), f.child("timeout"), "leave it out for the default of "+fmtDuration(DefaultSSHTimeout), "is zero")
			}
			s.Timeout = v
		}
	}
	return s
}

func (d *decoder) provision(top *fields) []Step {
	n, ok := top.get("provision")
	if !ok {
		return nil
	}
	items, _ := d.list("provision", n)
	steps := make([]Step, 0, len(items))
	for i, item := range items {
		if s, ok := d.step(fmt.Sprintf("provision[%d]", i), item); ok {
			steps = append(steps, s)
		}
	}
	return steps
}

// step decodes one provisioning step: a mapping with exactly one of the step kinds as its key.
func (d *decoder) step(p string, n ast.Node) (Step, bool) {
	n = d.resolve(p, n)
	if n == nil {
		return Step{}, false
	}
	st := Step{Pos: d.at(n)}
	kinds := yamlKeys[Step]()
	if s, ok := n.(*ast.StringNode); ok {
		d.errorf(d.at(n), p, "write - shell: "+strconv.Quote(s.Value), "a step is a mapping such as shell: COMMAND, got a string")
		return st, false
	}
	if m, ok := n.(*ast.MappingNode); ok && len(m.Values) == 0 {
		d.errorf(d.at(n), p, "use one of "+strings.Join(kinds, ", "), "the step is empty")
		return st, false
	}
	f, ok := d.mapping(p, st.Pos, n, false, kinds)
	if !ok {
		return st, false
	}
	var found []string
	for _, k := range kinds {
		if _, ok := f.get(k); ok {
			found = append(found, k)
		}
	}
	switch len(found) {
	case 0:
		return st, false // only unknown keys, each reported
	case 1:
	default:
		second := f.child(found[1])
		d.errorf(d.positions[second], second, "split it into two list items, each starting with -", "a step is exactly one of %s; this one is already %s", strings.Join(kinds, ", "), found[0])
		return st, false
	}
	st.Kind = found[0]
	kp := f.child(st.Kind)
	kn, _ := f.get(st.Kind)
	ok = true
	switch st.Kind {
	case StepShell:
		st.Shell, ok = d.shell(kp, kn)
	case StepFile:
		st.File, ok = d.fileStep(kp, kn)
	case StepReboot:
		st.Reboot = &Reboot{Timeout: DefaultRebootTimeout}
		rf, rok := d.mapping(kp, d.positions[kp], kn, true, yamlKeys[Reboot]())
		if !rok {
			return st, false
		}
		if tn, has := rf.get("timeout"); has {
			if v, vok := d.duration(rf.child("timeout"), tn); vok && v > 0 {
				st.Reboot.Timeout = v
			} else if vok {
				d.errorf(d.at(tn), rf.child("timeout"), "leave it out for the default of "+fmtDuration(DefaultRebootTimeout), "is zero")
			}
		}
	case StepWaitCloudInit:
		st.WaitCloudInit = &WaitCloudInit{}
		_, ok = d.mapping(kp, d.positions[kp], kn, true, yamlKeys[WaitCloudInit]())
	}
	return st, ok
}

func (d *decoder) shell(p string, n ast.Node) (*Shell, bool) {
	sh := &Shell{Sudo: true}
	if _, isMap := d.resolve(p, n).(*ast.MappingNode); !isMap {
		// The short form: shell: COMMAND.
		s, ok := d.nonEmpty(p, n)
		sh.Inline = s
		return sh, ok
	}
	f, ok := d.mapping(p, d.positions[p], n, false, yamlKeys[Shell]())
	if !ok {
		return sh, false
	}
	in, hasInline := f.get("inline")
	sc, hasScript := f.get("script")
	switch {
	case hasInline && hasScript:
		d.errorf(d.positions[f.child("script")], f.child("script"), "a shell step runs inline or script, not both: split it into two steps", "conflicts with inline")
	case hasInline:
		sh.Inline, _ = d.nonEmpty(f.child("inline"), in)
	case hasScript:
		sh.Script = d.localFile(f.child("script"), sc, false)
	default:
		d.errorf(f.at, p, "add inline: COMMAND or script: path/to/script.sh", "has neither inline nor script")
	}
	if n, ok := f.get("env"); ok {
		sh.Env = d.env(f.child("env"), n)
	}
	if n, ok := f.get("sudo"); ok {
		if v, ok := d.boolean(f.child("sudo"), n); ok {
			sh.Sudo = v
		}
	}
	if n, ok := f.get("timeout"); ok {
		if v, ok := d.duration(f.child("timeout"), n); ok {
			if v == 0 {
				d.errorf(d.at(n), f.child("timeout"), "leave it out for no timeout", "is zero")
			}
			sh.Timeout = v
		}
	}
	return sh, true
}

// env reads environment variables for a shell step: NAME: value, values taken as written.
func (d *decoder) env(p string, n ast.Node) map[string]string {
	r := d.resolve(p, n)
	if _, isNull := r.(*ast.NullNode); isNull || r == nil {
		return nil
	}
	m, ok := r.(*ast.MappingNode)
	if !ok {
		d.errorf(d.at(r), p, "", "want a mapping of NAME: value, got %s", kindOf(r))
		return nil
	}
	out := make(map[string]string, len(m.Values))
	for _, mv := range m.Values {
		name, keyNode, _, ok := d.key(p, mv)
		if !ok {
			continue
		}
		kp := join(p, name)
		d.positions[kp] = d.at(keyNode)
		if !varNameRE.MatchString(name) {
			d.errorf(d.at(keyNode), kp, "use letters, digits and _, not starting with a digit", "%q is not a valid environment variable name", name)
			continue
		}
		if v, ok := d.text(kp, mv.Value); ok {
			out[name] = v
		}
	}
	return out
}

// localFile reads a local path that must exist; dirOK allows a directory.
func (d *decoder) localFile(p string, n ast.Node, dirOK bool) string {
	s, ok := d.nonEmpty(p, n)
	if !ok {
		return ""
	}
	local, msg, hint := d.localPath(s)
	if msg != "" {
		d.errorf(d.at(n), p, hint, "%s", msg)
		return ""
	}
	fi, err := os.Stat(local)
	switch {
	case err != nil && d.dir != "" && !filepath.IsAbs(s):
		d.errorf(d.at(n), p, "relative paths are relative to the recipe's directory", "%s does not exist", s)
		return ""
	case err != nil:
		d.errorf(d.at(n), p, "", "%s does not exist", s)
		return ""
	case fi.IsDir() && !dirOK:
		d.errorf(d.at(n), p, "name a file", "%s is a directory", s)
		return ""
	case !fi.IsDir() && !fi.Mode().IsRegular():
		d.errorf(d.at(n), p, "", "%s is not a regular file", s)
		return ""
	}
	return local
}

func (d *decoder) fileStep(p string, n ast.Node) (*File, bool) {
	f, ok := d.mapping(p, d.positions[p], n, false, yamlKeys[File]())
	if !ok {
		return nil, false
	}
	fl := &File{Direction: "upload"}
	if n, ok := f.get("direction"); ok {
		v, ok := d.enum(f.child("direction"), n, "upload", "download")
		if !ok {
			return nil, false // src and dst mean different things in each direction
		}
		fl.Direction = v
	}
	src, hasSrc := f.get("src")
	dst, hasDst := f.get("dst")
	if !hasSrc {
		d.missing(f, "src", "")
	}
	if !hasDst {
		d.missing(f, "dst", "")
	}
	guestPath := func(key string, n ast.Node) string {
		s, ok := d.nonEmpty(f.child(key), n)
		if ok && !strings.HasPrefix(s, "/") {
			d.errorf(d.at(n), f.child(key), "name an absolute path in the guest, e.g. /etc/app.conf", "%q is not an absolute path", s)
		}
		return s
	}
	if fl.Direction == "upload" {
		if hasSrc {
			fl.Src = d.localFile(f.child("src"), src, true)
		}
		if hasDst {
			fl.Dst = guestPath("dst", dst)
		}
		if n, ok := f.get("mode"); ok {
			fl.Mode = d.mode(f.child("mode"), n)
		}
		if n, ok := f.get("dir_mode"); ok {
			fl.DirMode = d.mode(f.child("dir_mode"), n)
			if fi, err := os.Stat(fl.Src); err == nil && !fi.IsDir() {
				d.errorf(d.at(n), f.child("dir_mode"), "use mode: for a file; dir_mode: is for the directories of an uploaded tree", "%s is a file, not a directory", fl.Src)
			}
		}
		if n, ok := f.get("owner"); ok {
			if s, ok := d.nonEmpty(f.child("owner"), n); ok {
				if !ownerRE.MatchString(s) {
					d.errorf(d.at(n), f.child("owner"), "write user or user:group, e.g. root:root", "%q is not an owner", s)
				}
				fl.Owner = s
			}
		}
		return fl, true
	}
	if hasSrc {
		fl.Src = guestPath("src", src)
	}
	if hasDst {
		if s, ok := d.nonEmpty(f.child("dst"), dst); ok {
			clean := filepath.Clean(s)
			if !filepath.IsAbs(s) && (clean == ".." || strings.HasPrefix(clean, "../")) {
				d.errorf(d.at(dst), f.child("dst"), "a relative destination is published with the outputs and must stay inside their directory", "%q leaves the output directory", s)
			}
			fl.Dst = s
		}
	}
	for _, k := range []string{"mode", "dir_mode", "owner"} {
		if _, ok := f.get(k); ok {
			d.errorf(d.positions[f.child(k)], f.child(k), "a download keeps the local user's ownership and a 0644 mode; remove it", "applies to uploads only")
		}
	}
	return fl, true
}

// mode reads an octal file mode written as a string. An unquoted 0644 is a number to YAML (read
// as octal by some parsers, decimal by others), so it is refused with a hint.
func (d *decoder) mode(p string, n ast.Node) string {
	r := d.resolve(p, n)
	if s, ok := d.scalarOf(p, r); ok && s.kind == "number" {
		d.errorf(d.at(r), p, fmt.Sprintf("quote it: mode: %q", s.text), "%s was read as a number", s.text)
		return ""
	}
	s, ok := d.nonEmpty(p, n)
	if !ok {
		return ""
	}
	if !modeRE.MatchString(s) {
		d.errorf(d.at(r), p, `write an octal mode, e.g. "0644"`, "%q is not a file mode", s)
		return ""
	}
	return s
}

func (d *decoder) generalize(top *fields) Generalize {
	g := Generalize{Enabled: true, Pos: top.at}
	n, ok := top.get("generalize")
	if !ok {
		return g
	}
	g.Pos = d.positions["generalize"]
	r := d.resolve("generalize", n)
	if _, isMap := r.(*ast.MappingNode); !isMap {
		if _, isNull := r.(*ast.NullNode); !isNull {
			if v, ok := d.boolean("generalize", n); ok {
				g.Enabled = v
			}
			return g
		}
	}
	f, ok := d.mapping("generalize", g.Pos, n, true, yamlKeys[Generalize]())
	if !ok {
		return g
	}
	if kn, ok := f.get("keep"); ok {
		p := f.child("keep")
		items, _ := d.list(p, kn)
		for i, item := range items {
			ip := fmt.Sprintf("%s[%d]", p, i)
			v, ok := d.enum(ip, item, GeneralizeKeepable()...)
			if !ok {
				continue
			}
			if slices.Contains(g.Keep, v) {
				d.errorf(d.at(item), ip, "", "%q is listed twice", v)
				continue
			}
			g.Keep = append(g.Keep, v)
		}
	}
	return g
}

// outputOptions lists the options each output format takes, with their allowed values (nil for
// booleans) and defaults.
func outputOptions(format string) map[string][]string {
	switch format {
	case "qcow2":
		return map[string][]string{"compress": {"none", "zlib", "zstd"}}
	case "vmdk":
		return map[string][]string{"subformat": {"streamOptimized", "monolithicSparse"}}
	case "raw":
		return map[string][]string{"compress": {"none", "zstd", "xz"}, "bmap": nil, "shrink": {"none", "minimal"}}
	}
	return nil
}

// OutputFormats lists the output formats a recipe may ask for.
func OutputFormats() []string { return []string{"qcow2", "vmdk", "vhdx", "raw", "ova"} }

func (d *decoder) outputs(top *fields) []Output {
	n, ok := top.get("outputs")
	if !ok {
		return []Output{{Format: "qcow2", Compress: "none", Pos: top.at}}
	}
	items, ok := d.list("outputs", n)
	if ok && len(items) == 0 {
		d.errorf(d.positions["outputs"], "outputs", "list at least one, or leave outputs out for a single qcow2", "is empty")
		return nil
	}
	var outs []Output
	for i, item := range items {
		p := fmt.Sprintf("outputs[%d]", i)
		f, ok := d.mapping(p, d.at(d.resolve(p, item)), item, false, yamlKeys[Output]())
		if !ok {
			continue
		}
		o := Output{Pos: f.at}
		fn, ok := f.get("format")
		if !ok {
			d.missing(f, "format", "use one of "+strings.Join(OutputFormats(), ", "))
			continue
		}
		if o.Format, ok = d.enum(f.child("format"), fn, OutputFormats()...); !ok {
			continue
		}
		opts := outputOptions(o.Format)
		for _, k := range slices.Sorted(maps.Keys(f.vals)) {
			if k == "format" {
				continue
			}
			if _, ok := opts[k]; !ok {
				hint := o.Format + " outputs take no options"
				if len(opts) > 0 {
					hint = o.Format + " outputs take " + strings.Join(slices.Sorted(maps.Keys(opts)), ", ")
				}
				d.errorf(d.positions[f.child(k)], f.child(k), hint, "does not apply to %s outputs", o.Format)
			}
		}
		for k, allowed := range opts {
			kn, has := f.get(k)
			switch k {
			case "compress":
				o.Compress = "none"
				if has {
					o.Compress, _ = d.enum(f.child(k), kn, allowed...)
				}
			case "subformat":
				o.Subformat = "streamOptimized"
				if has {
					o.Subformat, _ = d.enum(f.child(k), kn, allowed...)
				}
			case "shrink":
				o.Shrink = "none"
				if has {
					o.Shrink, _ = d.enum(f.child(k), kn, allowed...)
				}
			case "bmap":
				if has {
					o.Bmap, _ = d.boolean(f.child(k), kn)
				}
			}
		}
		// Which outputs clash (the same file twice, a bmap bmaptool would pair with another
		// image) is disk's naming to know: bake.Check refuses them, at this output's line.
		outs = append(outs, o)
	}
	return outs
}

// fmtDuration writes a duration as a recipe would: 10m, not 10m0s.
func fmtDuration(v time.Duration) string {
	s := v.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// checkDownloads refuses download destinations that the build's own files would overwrite.
func (d *decoder) checkDownloads(r *Recipe) {
	reserved := map[string]bool{"manifest.json": true, "SHA256SUMS": true}
	for _, o := range r.Outputs {
		reserved[r.Name+"."+o.Format] = true
	}
	for i, s := range r.Provision {
		if s.File == nil || s.File.Direction != "download" || filepath.IsAbs(s.File.Dst) {
			continue
		}
		if reserved[filepath.Clean(s.File.Dst)] {
			p := fmt.Sprintf("provision[%d].file.dst", i)
			d.errorf(d.positions[p], p, "choose another name", "%q would overwrite one of the build's own files", s.File.Dst)
		}
	}
}
