package recipes

// # Canonical forms: what a cache key hashes
//
// A build is checkpointed after "booted" and after each provisioning step, and a later build
// restores the longest prefix whose keys are unchanged (shared/DESIGN.md, "Checkpoints and
// keys"). The key of step N hashes the key of step N-1 and step N's canonical form; the key of
// "booted" hashes BootCanonical and what only the pipeline knows. A canonical form is therefore
// a promise in both directions:
//
//   - everything that can change what the guest ends up holding is in it (a miss costs a re-run;
//     a false hit bakes the wrong image), including the bytes of every local file a step reads;
//   - nothing else is: no source positions, comments, formatting, key order, names of local
//     paths that never reach the guest, or the recipe file's own name, so reformatting a recipe
//     or moving it to another directory is a cache hit.
//
// canonical_test.go holds the decision for every field of the recipe types (in a form, or left
// out and why), so a new field cannot be silently left out of the keys.
//
// # Encoding
//
// JSON with object keys sorted by their bytes, no insignificant white space, strings escaped
// only where JSON requires (", \ and control characters, as \u00XX), each form carrying
// "v": canonVersion at its top level. Values from cloud_init keep their YAML types: integers are
// written as digits, floats always with a '.' or an exponent (1.0, not 1), and the floats JSON
// cannot write as NaN, Infinity and -Infinity, so a float and an integer of the same value do
// not collide. Local file names that are not UTF-8 (file names are bytes on Linux) are written
// as {"base64": …}; recipe strings are always UTF-8.

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// canonVersion is the version of the canonical forms. Changing what they cover or how they are
// written must bump it, so that no key an older ingot computed can match by accident; bumping it
// changes every form, and so drops every checkpoint. A member added to one form that every form
// of the new kind carries needs no bump: no older form has it, so none can match. That is how
// test and tests joined the recipe's Canonical, leaving BootCanonical and Step.Canonical (the
// checkpoint keys) as they were.
const canonVersion = 1

// Canonical is the step's canonical form: what it does, and the size and sha256 of every local
// file it reads (a script, with its file name; an uploaded file with its mode, or every entry of
// an uploaded tree: its path relative to the tree, type, mode, size and sha256, a symlink by its
// target). Local paths are not in it, only what they hold. It excludes NoCache, which says
// whether a key is used rather than what the step does, and Pos. It reads the files now: call it
// when the key is needed, not when the recipe is loaded. An error names the step's position and
// the file that could not be read.
func (s *Step) Canonical() ([]byte, error) {
	body, err := s.canonicalBody()
	if err != nil {
		where := s.Pos.String()
		if where == "" {
			where = "provisioning step"
		}
		return nil, fmt.Errorf("%s: %s step: %w", where, s.Kind, err)
	}
	return encodeCanonical(object{"v": canonVersion, "step": s.Kind, s.Kind: body})
}

func (s *Step) canonicalBody() (object, error) {
	missing := fmt.Errorf("the step's %s part is missing", s.Kind)
	switch s.Kind {
	case StepShell:
		if s.Shell == nil {
			return nil, missing
		}
		return s.Shell.canonical()
	case StepFile:
		if s.File == nil {
			return nil, missing
		}
		return s.File.canonical()
	case StepReboot:
		if s.Reboot == nil {
			return nil, missing
		}
		return object{"timeout": canonDuration(s.Reboot.Timeout)}, nil
	case StepWaitCloudInit:
		return object{}, nil
	}
	return nil, fmt.Errorf("unknown step kind %q", s.Kind)
}

func (sh *Shell) canonical() (object, error) {
	o := object{
		"inline":  sh.Inline,
		"script":  nil,
		"env":     stringMap(sh.Env),
		"sudo":    sh.Sudo,
		"timeout": canonDuration(sh.Timeout),
	}
	if sh.Script != "" {
		f, err := canonicalFile(sh.Script)
		if err != nil {
			return nil, fmt.Errorf("reading script: %w", err)
		}
		// The script's directory never reaches the guest, nor its mode (it is uploaded 0755);
		// its name does, as $0 of the uploaded copy (bake names it /tmp/ingot-BUILD-N-NAME).
		delete(f, "mode")
		f["name"] = fsName(filepath.Base(sh.Script))
		o["script"] = f
	}
	// Secrets by name only: their values never reach a key or a manifest. Written only when
	// used, so a step without them keeps the key it had before secrets existed.
	if len(sh.Secrets) > 0 {
		names := make([]any, len(sh.Secrets))
		for i, n := range sh.Secrets {
			names[i] = n
		}
		o["secrets"] = names
	}
	if sh.Stdin != "" {
		o["stdin"] = sh.Stdin
	}
	return o, nil
}

func (f *File) canonical() (object, error) {
	o := object{"direction": f.Direction, "dst": f.Dst}
	if f.Direction == "download" {
		// Both are what the recipe wrote: a guest path, and a local one (relative: published
		// with the outputs).
		o["src"] = f.Src
		return o, nil
	}
	o["mode"] = canonMode(f.Mode)
	o["dir_mode"] = canonMode(f.DirMode)
	o["owner"] = f.Owner
	// The local path is not in the form, only what it holds: the guest sees the bytes at dst.
	fi, err := os.Stat(f.Src) // followed, as the upload follows it
	if err != nil {
		return nil, fmt.Errorf("reading upload source: %w", err)
	}
	if !fi.IsDir() {
		c, err := canonicalFile(f.Src)
		if err != nil {
			return nil, fmt.Errorf("reading upload source: %w", err)
		}
		o["src"] = object{"file": c}
		return o, nil
	}
	entries, err := canonicalTree(f.Src)
	if err != nil {
		return nil, fmt.Errorf("reading upload source: %w", err)
	}
	o["src"] = object{"tree": entries}
	return o, nil
}

// canonicalFile is a regular file's mode, size and sha256, read in one pass. It refuses anything
// else before opening it: opening a named pipe would wait for a writer.
func canonicalFile(path string) (object, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is a %s, not a regular file", path, fileKind(fi.Mode()))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, err
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return object{"mode": fmt.Sprintf("%04o", fi.Mode().Perm()), "size": n, "sha256": hex.EncodeToString(h.Sum(nil))}, nil
}

// canonicalTree lists an uploaded tree as the upload walks it (communicator's putTree): every
// entry in filepath.WalkDir's order (lexical within each directory), the top as ".". Modes are
// listed even where mode or dir_mode replace them: a form may say more than the guest sees,
// never less. Owners and times are left out: the upload sets the owner and keeps no times.
func canonicalTree(root string) ([]any, error) {
	var out []any
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		e := object{"path": fsName(filepath.ToSlash(rel))}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			e["type"], e["target"] = "symlink", fsName(target)
		case d.IsDir():
			info, err := d.Info()
			if err != nil {
				return err
			}
			e["type"], e["mode"] = "dir", fmt.Sprintf("%04o", info.Mode().Perm())
		case d.Type().IsRegular():
			c, err := canonicalFile(p)
			if err != nil {
				return err
			}
			c["type"] = "file"
			for k, v := range c {
				e[k] = v
			}
		default:
			return fmt.Errorf("%s is a %s, which cannot be uploaded", p, fileKind(d.Type()))
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

// fileKind names a type of file that is neither regular, a directory nor a symlink.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "device"
	case m.IsDir():
		return "directory"
	}
	return "special file"
}

// BootCanonical is the canonical form of what the guest sees before the first step, as far as
// the recipe says it: the source by its pin (not its URL: the same bytes from a mirror are the
// same input), the machine as the guest sees it (cpus, memory, disk size, firmware, qemu_args),
// the recipe's cloud_init documents and seed format, the build user's name, and an installer's
// settings. Not in it: the recipe's name, accel and driver (the guest sees the same machine),
// the SSH timeout, variables (they count where they are used).
//
// The caller adds what only a build knows: the digest of the base layer (for source.image, and
// for a pin that names a checksum file, "file:…", which is in the form as written), the QEMU
// version, the accelerator if a saved machine state depends on it, its own format version. And
// the recipe's name is today the build guest's hostname (bake's seed): a key that leaves it out
// must keep it from the guest, or add it.
func (r *Recipe) BootCanonical() ([]byte, error) {
	o, err := r.bootCanonical()
	if err != nil {
		return nil, err
	}
	return encodeCanonical(o)
}

func (r *Recipe) bootCanonical() (object, error) {
	var src object
	switch s := r.Source; {
	case s.Disk != nil:
		src = object{"disk": object{"pin": canonPin(s.Disk.SHA256, s.Disk.SHA512, s.Disk.URL), "format": s.Disk.Format}}
	case s.ISO != nil:
		src = object{"iso": object{
			"pin":             canonPin(s.ISO.SHA256, s.ISO.SHA512, s.ISO.URL),
			"kernel":          s.ISO.Kernel,
			"initrd":          s.ISO.Initrd,
			"append":          s.ISO.Append,
			"boot_keys":       stringList(s.ISO.BootKeys),
			"boot_wait":       canonDuration(s.ISO.BootWait),
			"install_timeout": canonDuration(s.ISO.InstallTimeout),
		}}
	case s.Image != nil:
		src = object{"image": object{"name": s.Image.Name}}
	default:
		return nil, errors.New("the recipe has no source")
	}
	qemuArgs := make([]any, 0, len(r.Machine.QemuArgs))
	for _, a := range r.Machine.QemuArgs {
		qemuArgs = append(qemuArgs, stringList(a))
	}
	return object{
		"v":      canonVersion,
		"source": src,
		"machine": object{
			"arch":       r.Machine.Arch,
			"cpus":       r.Machine.CPUs,
			"memory_mib": r.Machine.MemoryMiB,
			"disk_bytes": r.Machine.DiskBytes,
			"firmware":   r.Machine.Firmware,
			"qemu_args":  qemuArgs,
		},
		"cloud_init": object{
			"user_data":      anyMap(r.CloudInit.UserData),
			"network_config": anyMap(r.CloudInit.NetworkConfig),
			"seed_format":    r.CloudInit.SeedFormat,
		},
		"ssh": object{"user": r.SSH.User},
	}, nil
}

// Canonical is the canonical form of the whole recipe: BootCanonical, every step's Canonical in
// order, generalize, the outputs, test and tests, and the name (which names the outputs and the
// stored image).
// Two recipes that differ only in formatting, comments, key order, the file's name or
// directory, or unused variables, give the same bytes; one byte changed in a file a step uploads
// or runs changes them. It is what the manifest's recipe hash and "nothing changed, up to date"
// compare. The caller adds what BootCanonical leaves to it, and ingot's own version.
func (r *Recipe) Canonical() ([]byte, error) {
	boot, err := r.bootCanonical()
	if err != nil {
		return nil, err
	}
	steps := make([]any, 0, len(r.Provision))
	for i := range r.Provision {
		s, err := r.Provision[i].Canonical()
		if err != nil {
			return nil, err
		}
		steps = append(steps, rawJSON(s))
	}
	outputs := make([]any, 0, len(r.Outputs))
	for _, o := range r.Outputs {
		outputs = append(outputs, object{"format": o.Format, "compress": o.Compress, "subformat": o.Subformat, "bmap": o.Bmap, "shrink": o.Shrink})
	}
	keep := slices.Sorted(slices.Values(r.Generalize.Keep)) // a set: its order changes nothing
	// The test boots and their checks decide whether a build publishes, so changing a check
	// makes an up-to-date build run again. The firmwares and checks keep their order: it is the
	// order they run and are reported in.
	checks := make([]any, 0, len(r.Tests))
	for _, c := range r.Tests {
		checks = append(checks, object{"name": c.Name, "run": c.Run, "sudo": c.Sudo, "timeout": canonDuration(c.Timeout)})
	}
	form := object{
		"v":          canonVersion,
		"name":       r.Name,
		"boot":       boot,
		"provision":  steps,
		"generalize": object{"enabled": r.Generalize.Enabled, "keep": stringList(keep)},
		"outputs":    outputs,
		"test":       object{"boot": r.Test.Boot, "firmware": stringList(r.Test.Firmware)},
		"tests":      checks,
		// Like the checks, the drift thresholds decide whether a --baseline build publishes.
		"drift": object{"fail_on": stringList(r.Drift.FailOn), "ignore": stringList(r.Drift.Ignore)},
	}
	// What the secret scan accepts decides whether a build publishes, like the checks. Written
	// only when there is some, so a recipe without it keeps the inputs hash it had before.
	if len(r.SecretScan.Allow) > 0 {
		allow := make([]any, len(r.SecretScan.Allow))
		for i, a := range r.SecretScan.Allow {
			allow[i] = object{"secret": a.Secret, "pattern": a.Pattern, "path": a.Path}
		}
		form["secret_scan"] = object{"allow": allow}
	}
	return encodeCanonical(form)
}

// canonPin is an input's pin: its digest, with no URL, since the same bytes from any mirror are
// the same input. A pin that names a checksum file has no digest yet: it is the file's location
// and the input's URL (whose file name picks the line), and the caller must add the digest the
// fetch resolved. Both algorithms are listed (one is empty), so neither can hide the other.
func canonPin(sha256, sha512, url string) object {
	digest := func(pin string) any {
		switch loc, ok := strings.CutPrefix(pin, "file:"); {
		case pin == "":
			return nil
		case ok:
			return object{"checksum_file": loc, "url": url}
		}
		return strings.ToLower(pin)
	}
	return object{"sha256": digest(sha256), "sha512": digest(sha512)}
}

// canonMode writes an octal mode as four digits, so "644" and "0644" are the same mode.
func canonMode(s string) string {
	if m, err := strconv.ParseUint(s, 8, 32); err == nil {
		return fmt.Sprintf("%04o", m)
	}
	return s
}

// canonDuration writes a duration as Go does ("10m0s"), one text for each value.
func canonDuration(d time.Duration) string { return d.String() }

// fsName is a local file name as text: as it is when it is UTF-8, otherwise its bytes.
func fsName(s string) any {
	if utf8.ValidString(s) {
		return s
	}
	return object{"base64": base64.StdEncoding.EncodeToString([]byte(s))}
}

func stringList(ss []string) []any {
	out := make([]any, 0, len(ss))
	for _, s := range ss {
		out = append(out, s)
	}
	return out
}

func stringMap(m map[string]string) object {
	out := make(object, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// anyMap is a free-form document: absent and empty are the same (no document).
func anyMap(m map[string]any) object {
	if m == nil {
		return object{}
	}
	return m
}

// object is a JSON object of a canonical form; its keys are written sorted.
type object = map[string]any

// rawJSON is a canonical form encoded already, embedded as it is.
type rawJSON []byte

// encodeCanonical writes v in the canonical encoding described at the top of this file.
func encodeCanonical(v any) ([]byte, error) {
	return appendCanonical(make([]byte, 0, 512), v, 0)
}

func appendCanonical(b []byte, v any, depth int) ([]byte, error) {
	if depth > 2*maxDepth { // cloud_init data is bounded by the decoder; this bounds the rest
		return nil, errors.New("canonical form nested too deeply")
	}
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case int:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(b, v, 10), nil
	case uint64:
		return strconv.AppendUint(b, v, 10), nil
	case float64:
		return appendFloat(b, v), nil
	case string:
		return appendString(b, v)
	case rawJSON:
		return append(b, v...), nil
	case []any:
		b = append(b, '[')
		for i, x := range v {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendCanonical(b, x, depth+1); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendString(b, k); err != nil {
				return nil, err
			}
			b = append(b, ':')
			if b, err = appendCanonical(b, v[k], depth+1); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	}
	return nil, fmt.Errorf("canonical form: cannot encode %T", v)
}

// appendFloat writes a float so that it never reads as an integer: 1.0, 2.5, 1e+21.
func appendFloat(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, 1):
		return append(b, "Infinity"...)
	case math.IsInf(f, -1):
		return append(b, "-Infinity"...)
	}
	n := len(b)
	b = strconv.AppendFloat(b, f, 'g', -1, 64)
	if !strings.ContainsAny(string(b[n:]), ".e") {
		b = append(b, ".0"...)
	}
	return b
}

// appendString writes a JSON string, escaping only what JSON requires.
func appendString(b []byte, s string) ([]byte, error) {
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("canonical form: %q is not UTF-8", s)
	}
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"'), nil
}
