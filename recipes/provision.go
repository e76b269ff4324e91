package recipes

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

var (
	ownerRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$`)
	modeRE  = regexp.MustCompile(`^0?[0-7]{3,4}$`)
)

// provision reads the provisioning steps, in order; a step that is not valid is left out (and
// reported).
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
	kinds := stepKinds()
	if s, ok := n.(*ast.StringNode); ok {
		d.errorf(d.at(n), p, "write - shell: "+strconv.Quote(s.Value), "a step is a mapping such as shell: COMMAND, got a string")
		return st, false
	}
	if m, ok := n.(*ast.MappingNode); ok && len(m.Values) == 0 {
		d.errorf(d.at(n), p, "use one of "+strings.Join(kinds, ", "), "the step is empty")
		return st, false
	}
	f, ok := d.mapping(p, st.Pos, n, false, yamlKeys[Step]())
	if !ok {
		return st, false
	}
	if cn, ok := f.get(stepCacheKey); ok {
		if v, ok := d.boolean(f.child(stepCacheKey), cn); ok {
			st.NoCache = !v
		}
	}
	var found []string
	for _, k := range kinds {
		if _, ok := f.get(k); ok {
			found = append(found, k)
		}
	}
	switch len(found) {
	case 0:
		if len(f.vals) == f.raw { // only cache:, which is no step; unknown keys were each reported
			d.errorf(st.Pos, p, "write cache: false beside the kind of the step it applies to, in the same list item (no - of its own)", "has cache: but no step; a step is one of %s", strings.Join(kinds, ", "))
		}
		return st, false
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
	// cache: written inside the kind's mapping is reported there as an unknown key; the hint
	// says where it goes instead of listing the kind's own keys.
	reported := len(d.errs)
	defer func() {
		for _, e := range d.errs[reported:] {
			if e.Path == join(kp, stepCacheKey) && e.Msg == "unknown key" {
				e.Hint = "cache: belongs to the step: write it beside " + st.Kind + ":, not inside it"
			}
		}
	}()
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
		d.timeout(rf, "timeout", "the default of "+fmtDuration(DefaultRebootTimeout), &st.Reboot.Timeout)
	case StepWaitCloudInit:
		st.WaitCloudInit = &WaitCloudInit{}
		_, ok = d.mapping(kp, d.positions[kp], kn, true, yamlKeys[WaitCloudInit]())
	}
	return st, ok
}

// stepCacheKey is the key of Step.NoCache, the one key of a step that is not its kind.
const stepCacheKey = "cache"

// stepKinds lists the keys that name a step's kind: every key of a step but cache.
func stepKinds() []string {
	return slices.DeleteFunc(yamlKeys[Step](), func(k string) bool { return k == stepCacheKey })
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
	if n, ok := f.get("secrets"); ok {
		names, _ := d.strings(f.child("secrets"), n)
		for i, name := range names {
			ip := fmt.Sprintf("%s[%d]", f.child("secrets"), i)
			switch {
			case !varNameRE.MatchString(name):
				d.errorf(d.positions[ip], ip, "name a secret from secrets: (letters, digits and _)", "%q is not a secret name", name)
			case slices.Contains(sh.Secrets, name):
				d.errorf(d.positions[ip], ip, "remove it: each secret is exported once", "%q is listed twice", name)
			case sh.Env[name] != "":
				d.errorf(d.positions[ip], ip, "rename one: the secret would replace env's "+name, "%q is also set by env", name)
			default:
				sh.Secrets = append(sh.Secrets, name)
			}
		}
	}
	if n, ok := f.get("stdin"); ok {
		sh.Stdin, _ = d.nonEmpty(f.child("stdin"), n)
	}
	d.timeout(f, "timeout", "no timeout", &sh.Timeout)
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
	d.names(p, m, "environment variable name", func(name, kp string, _, value ast.Node) {
		if v, ok := d.text(kp, value); ok {
			out[name] = v
		}
	})
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
