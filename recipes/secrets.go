package recipes

import (
	"fmt"
	"maps"
	"path"
	"slices"

	"github.com/goccy/go-yaml/ast"
)

// Secret is a value a build's steps use and its image must not keep (docs/secrets.md): a
// password, a token, a deploy key. The recipe names where it comes from, never the value; bake
// reads it when the build starts, hands it to the steps that name it, masks it in everything ingot
// writes, and scans the finished disk for it.
type Secret struct {
	Name string `yaml:"-"`
	// Env is the host environment variable that holds the value.
	Env string `yaml:"env"`
	// File is an absolute local path whose bytes are the value.
	File string `yaml:"file"`
	Pos  Pos    `yaml:"-"`
}

// SecretScan is the recipe's secret_scan: section: the findings a build accepts.
type SecretScan struct {
	Allow []ScanAllow `yaml:"allow"`
	Pos   Pos         `yaml:"-"`
}

// ScanAllow is one accepted finding: every field given must match. Reason is required: the
// entry documents why the image may hold what the scan found.
type ScanAllow struct {
	// Secret is a name from secrets:.
	Secret string `yaml:"secret"`
	// Pattern is a credential pattern's name (secrets.PatternNames; bake checks it).
	Pattern string `yaml:"pattern"`
	// Path is a glob of absolute paths in the image (doublestar syntax: ** crosses directories).
	Path   string `yaml:"path"`
	Reason string `yaml:"reason"`
	Pos    Pos    `yaml:"-"`
}

// SecretNames lists the names a step may use: the keys of secrets:, sorted.
func (r *Recipe) SecretNames() []string {
	return slices.Sorted(maps.Keys(r.Secrets))
}

// UsesSecrets says whether the step is handed a secret: such a step, and every one after it, is
// never checkpointed, since its machine's memory may hold the value.
func (s *Step) UsesSecrets() bool {
	return s.Shell != nil && (len(s.Shell.Secrets) > 0 || s.Shell.Stdin != "")
}

// secrets reads secrets:, a mapping of NAME: { env: VAR } or NAME: { file: PATH }.
func (d *decoder) secrets(top *fields) map[string]Secret {
	n, ok := top.get("secrets")
	if !ok {
		return nil
	}
	r := d.resolve("secrets", n)
	if _, isNull := r.(*ast.NullNode); isNull || r == nil {
		return nil
	}
	m, ok := r.(*ast.MappingNode)
	if !ok {
		d.errorf(d.at(r), "secrets", "write secrets: { NAME: { env: VARIABLE } } or NAME: { file: path }", "want a mapping of names, got %s", kindOf(r))
		return nil
	}
	out := map[string]Secret{}
	d.names("secrets", m, "secret name", func(name, p string, keyNode, value ast.Node) {
		s := Secret{Name: name, Pos: d.at(keyNode)}
		f, ok := d.mapping(p, s.Pos, value, false, yamlKeys[Secret]())
		if !ok {
			return
		}
		en, hasEnv := f.get("env")
		fn, hasFile := f.get("file")
		switch {
		case hasEnv && hasFile:
			d.errorf(d.positions[f.child("file")], f.child("file"), "a secret comes from one place: keep env or file", "conflicts with env")
			return
		case hasEnv:
			v, ok := d.nonEmpty(f.child("env"), en)
			if !ok {
				return
			}
			if !varNameRE.MatchString(v) {
				d.errorf(d.at(en), f.child("env"), "name an environment variable: letters, digits and _", "%q is not an environment variable name", v)
				return
			}
			s.Env = v
		case hasFile:
			s.File = d.localFile(f.child("file"), fn, false)
			if s.File == "" {
				return
			}
		default:
			d.errorf(s.Pos, p, "add env: VARIABLE (read from ingot's environment) or file: path", "says neither where the value comes from")
			return
		}
		out[name] = s
	})
	return out
}

// checkStepSecrets reports each name a shell step uses that secrets: does not declare.
func (d *decoder) checkStepSecrets(steps []Step, declared []string) {
	for i, s := range steps {
		if s.Shell == nil {
			continue
		}
		p := fmt.Sprintf("provision[%d].shell", i)
		for j, name := range s.Shell.Secrets {
			if !slices.Contains(declared, name) {
				ip := fmt.Sprintf("%s.secrets[%d]", p, j)
				d.errorf(d.positions[ip], ip, undeclaredSecretHint(name, declared), "secret %q is not declared", name)
			}
		}
		if name := s.Shell.Stdin; name != "" && !slices.Contains(declared, name) {
			ip := p + ".stdin"
			d.errorf(d.positions[ip], ip, undeclaredSecretHint(name, declared), "secret %q is not declared", name)
		}
	}
}

func undeclaredSecretHint(name string, declared []string) string {
	hint := fmt.Sprintf("declare it: secrets: { %s: { env: %s } }", name, name)
	if s := suggest(name, declared); s != "" {
		hint = fmt.Sprintf("did you mean %q? Or %s", s, hint)
	}
	return hint
}

// secretScan reads secret_scan:, a mapping with allow, a list of accepted findings.
func (d *decoder) secretScan(top *fields, declared []string) SecretScan {
	sc := SecretScan{Pos: top.at}
	f, ok := d.sub(top, "secret_scan", yamlKeys[SecretScan]())
	if !ok {
		return sc
	}
	sc.Pos = d.positions["secret_scan"]
	n, ok := f.get("allow")
	if !ok {
		return sc
	}
	items, _ := d.list("secret_scan.allow", n)
	for i, item := range items {
		p := fmt.Sprintf("secret_scan.allow[%d]", i)
		a := ScanAllow{Pos: d.at(item)}
		af, ok := d.mapping(p, a.Pos, item, false, yamlKeys[ScanAllow]())
		if !ok {
			continue
		}
		for _, kv := range []struct {
			key string
			dst *string
		}{{"secret", &a.Secret}, {"pattern", &a.Pattern}, {"path", &a.Path}, {"reason", &a.Reason}} {
			if vn, has := af.get(kv.key); has {
				*kv.dst, _ = d.nonEmpty(af.child(kv.key), vn)
			}
		}
		if a.Secret == "" && a.Pattern == "" && a.Path == "" {
			d.errorf(a.Pos, p, "add secret: NAME, pattern: NAME or path: GLOB (any together): what the image may hold", "allows nothing in particular")
			continue
		}
		if a.Reason == "" {
			d.missing(af, "reason", "add reason: why the image may hold this (the entry documents the exception)")
			continue
		}
		if a.Secret != "" && !slices.Contains(declared, a.Secret) {
			d.errorf(d.positions[af.child("secret")], af.child("secret"), undeclaredSecretHint(a.Secret, declared), "secret %q is not declared", a.Secret)
			continue
		}
		if a.Path != "" {
			if _, err := path.Match(a.Path, "/"); err != nil || a.Path[0] != '/' {
				d.errorf(d.positions[af.child("path")], af.child("path"), "write an absolute glob such as /etc/ssl/private/*.key", "%q is not an absolute path glob", a.Path)
				continue
			}
		}
		sc.Allow = append(sc.Allow, a)
	}
	return sc
}
