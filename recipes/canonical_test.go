package recipes

import (
	"bytes"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Decisions about every field of the recipe types: which canonical form holds it, or why none
// does. TestCanonicalFieldDecisions fails when a field is added without one, and
// TestCanonicalFieldChanges changes each field in turn and checks the forms against its decision.
const (
	inStep    = "step"    // the step's Canonical (and so the recipe's)
	inBoot    = "boot"    // BootCanonical (and so the recipe's)
	inRecipe  = "recipe"  // only the whole recipe's Canonical
	byContent = "content" // a local path: the bytes it names are in the step's form, not the path (TestCanonicalFileContent)
	holds     = "holds"   // a part of the recipe whose own fields have their decisions
	// Any other value starts with "ignored: " and says why no form holds the field.
)

const ignoredPos = "ignored: where a value was written is never in a key"

var canonicalDecisions = map[string]string{
	"Recipe.Name":        inRecipe, // names the outputs and the stored image; BootCanonical says why not in "booted"
	"Recipe.Description": "ignored: a note for people; no output holds it",
	"Recipe.Variables":   "ignored: a variable counts where it is substituted, as part of that value",
	"Recipe.Source":      holds,
	"Recipe.Machine":     holds,
	"Recipe.CloudInit":   holds,
	"Recipe.SSH":         holds,
	"Recipe.Provision":   holds,
	"Recipe.Generalize":  holds,
	"Recipe.Outputs":     holds,
	"Recipe.Test":        holds,
	"Recipe.Tests":       holds,
	"Recipe.Drift":       holds,
	"Recipe.File":        "ignored: where the recipe is, not what it says",
	"Recipe.Dir":         "ignored: where the recipe is, not what it says",
	"Recipe.positions":   ignoredPos,

	"Source.Disk":  holds,
	"Source.ISO":   holds,
	"Source.Image": holds,

	"DiskSource.URL":    "ignored: the pin names the bytes, and the same bytes from another mirror are the same input (a checksum-file pin keeps it: TestCanonicalChanges)",
	"DiskSource.SHA256": inBoot,
	"DiskSource.SHA512": inBoot,
	"DiskSource.Format": inBoot,
	"DiskSource.Pos":    ignoredPos,

	"ISOSource.URL":            "ignored: the pin names the bytes, as for DiskSource.URL",
	"ISOSource.SHA256":         inBoot,
	"ISOSource.SHA512":         inBoot,
	"ISOSource.Kernel":         inBoot,
	"ISOSource.Initrd":         inBoot,
	"ISOSource.Append":         inBoot,
	"ISOSource.BootKeys":       inBoot,
	"ISOSource.BootWait":       inBoot,
	"ISOSource.InstallTimeout": inBoot,
	"ISOSource.Pos":            ignoredPos,

	"ImageSource.Name": inBoot,
	"ImageSource.Pos":  ignoredPos,

	"Machine.Arch":      inBoot,
	"Machine.CPUs":      inBoot,
	"Machine.MemoryMiB": inBoot,
	"Machine.DiskBytes": inBoot,
	"Machine.Firmware":  inBoot,
	"Machine.Accel":     "ignored: the guest sees the same machine under KVM and TCG",
	"Machine.Driver":    "ignored: qemu and libvirt run the same machine; whether checkpoints exist at all is the driver's matter",
	"Machine.QemuArgs":  inBoot,
	"Machine.Pos":       ignoredPos,

	"CloudInit.UserData":      inBoot,
	"CloudInit.NetworkConfig": inBoot,
	"CloudInit.SeedFormat":    inBoot,
	"CloudInit.Pos":           ignoredPos,

	"SSH.User":    inBoot,
	"SSH.Timeout": "ignored: how long ingot waits for the guest, not what the guest holds",

	"Step.Kind":          inStep,
	"Step.Shell":         holds,
	"Step.File":          holds,
	"Step.Reboot":        holds,
	"Step.WaitCloudInit": holds,
	"Step.NoCache":       "ignored: it says whether the step's key is used, not what the step does",
	"Step.Pos":           ignoredPos,

	"Shell.Inline":  inStep,
	"Shell.Script":  byContent,
	"Shell.Env":     inStep,
	"Shell.Sudo":    inStep,
	"Shell.Timeout": inStep,

	"File.Src":       byContent, // for uploads; a download's src is a guest path, in the form (TestCanonicalChanges)
	"File.Dst":       inStep,
	"File.Mode":      inStep,
	"File.DirMode":   inStep,
	"File.Owner":     inStep,
	"File.Direction": inStep,

	"Reboot.Timeout": inStep,

	"Generalize.Enabled": inRecipe,
	"Generalize.Keep":    inRecipe,
	"Generalize.Pos":     ignoredPos,

	"Output.Format":    inRecipe,
	"Output.Compress":  inRecipe,
	"Output.Subformat": inRecipe,
	"Output.Bmap":      inRecipe,
	"Output.Shrink":    inRecipe,
	"Output.Pos":       ignoredPos,

	// Test boots run after the last checkpoint and change nothing in the image, but they decide
	// whether a build publishes: a changed check makes the build not up to date.
	"Test.Boot":     inRecipe,
	"Test.Firmware": inRecipe,
	"Test.Pos":      ignoredPos,

	"Check.Name":    inRecipe,
	"Check.Run":     inRecipe,
	"Check.Sudo":    inRecipe,
	"Check.Timeout": inRecipe,
	"Check.Pos":     ignoredPos,

	// Like the tests: the thresholds decide whether a --baseline build publishes.
	"Drift.FailOn": inRecipe,
	"Drift.Ignore": inRecipe,
	"Drift.Pos":    ignoredPos,

	// A secret's value is never hashed (a hash would let anyone holding a manifest test guesses),
	// nor where it comes from: the steps name the secrets they use (Shell.Secrets, Shell.Stdin),
	// and a step that uses one is never checkpointed.
	"Recipe.Secrets": "ignored: where values come from, not what a step does with them",
	"Shell.Secrets":  inStep,
	"Shell.Stdin":    inStep,

	// Like the tests: what the scan accepts decides whether a build publishes.
	"Recipe.SecretScan": holds,
	"SecretScan.Allow":  holds,
	"SecretScan.Pos":    ignoredPos,
	"ScanAllow.Secret":  inRecipe,
	"ScanAllow.Pattern": inRecipe,
	"ScanAllow.Path":    inRecipe,
	"ScanAllow.Reason":  "ignored: it documents the exception; the image is the same",
	"ScanAllow.Pos":     ignoredPos,
}

// noGenericChange lists fields that TestCanonicalFieldChanges cannot change on its own, and the
// test that covers them instead.
var noGenericChange = map[string]string{
	"Step.Kind":      "TestCanonicalChanges (a kind needs its own part)",
	"Recipe.Secrets": "TestSecretsNotInCanonical (a map of mappings)",
}

var posType = reflect.TypeFor[Pos]()

// recipeFields lists "Type.Field" for every field of every recipe type reachable from Recipe.
// Pos is a leaf: a field of type Pos is decided as a whole.
func recipeFields() []string {
	seen := map[reflect.Type]bool{}
	var out []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		if seen[t] {
			return
		}
		seen[t] = true
		for f := range t.Fields() {
			out = append(out, t.Name()+"."+f.Name)
			ft := f.Type
			for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft != posType && ft.PkgPath() == posType.PkgPath() {
				walk(ft)
			}
		}
	}
	walk(reflect.TypeFor[Recipe]())
	return out
}

func TestCanonicalFieldDecisions(t *testing.T) {
	fields := recipeFields()
	if len(fields) < 60 {
		t.Fatalf("only %d fields found: %v", len(fields), fields)
	}
	for _, f := range fields {
		d, ok := canonicalDecisions[f]
		switch {
		case !ok:
			t.Errorf("%s has no decision: add it to canonicalDecisions (and to a canonical form in canonical.go, or say why not)", f)
		case !slices.Contains([]string{inStep, inBoot, inRecipe, byContent, holds}, d) && !strings.HasPrefix(d, "ignored: "):
			t.Errorf("%s: decision %q is not one of the kinds", f, d)
		}
	}
	for f := range canonicalDecisions {
		if !slices.Contains(fields, f) {
			t.Errorf("canonicalDecisions names %s, which is no field of the recipe types", f)
		}
	}
}

// writeCanonFiles writes the local files the canonical tests' recipes read: conf (a file),
// script (a script) and site (a tree with a subdirectory and a symlink), each with explicit
// modes, so two copies are the same whatever the umask.
func writeCanonFiles(t *testing.T, dir, conf, script, site string) {
	t.Helper()
	write := func(rel, content string, mode os.FileMode) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	write(conf, "listen 80;\n", 0o644)
	write(script, "#!/bin/sh\necho setup\n", 0o755)
	write(filepath.Join(site, "index.html"), "<h1>hi</h1>\n", 0o644)
	write(filepath.Join(site, "sub", "a.txt"), "a\n", 0o600)
	for _, d := range []string{site, filepath.Join(site, "sub")} {
		if err := os.Chmod(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("index.html", filepath.Join(dir, site, "link")); err != nil {
		t.Fatal(err)
	}
}

// canonSourceDisk is canonRecipe's source, which variants replace.
const canonSourceDisk = `source:
  disk:
    url: https://example.org/t.qcow2
    sha256: ` + emptySHA256 + `
    format: qcow2
`

// canonRecipe sets every field that has a value in some form, in block style, with comments.
// Its steps: 0 inline shell, 1 script, 2 file upload, 3 tree upload, 4 download, 5 reboot,
// 6 wait_cloud_init.
const canonRecipe = `# The base recipe of the canonical tests.
name: t
description: a test
variables:
  one: "1"
` + canonSourceDisk + `machine:
  cpus: 2
  memory: 1GiB
  disk: 8GiB
  firmware: uefi
  accel: tcg
  driver: qemu
  qemu_args:
    - [-device, virtio-rng-pci]
cloud_init:
  user_data:
    packages: [nginx]
    n: 1
    f: 1.5
  network_config:
    version: 2
  seed_format: iso
ssh:
  user: builder
  timeout: 5m
provision:
  - shell:
      inline: echo hi
      env: { A: "1", B: "2" }
      sudo: true
      timeout: 1m
  - shell: { script: files/setup.sh }
  - file: { src: files/app.conf, dst: /etc/app.conf, mode: "0644", owner: root:root }
  - file: { src: files/site, dst: /srv/www, mode: "0644", dir_mode: "0755", owner: www-data }
  - file: { src: /var/log/x.log, dst: logs/x.log, direction: download }
  - reboot: { timeout: 5m }
  - wait_cloud_init: {}
generalize:
  keep: [logs, machine-id]
outputs:
  - { format: raw, compress: zstd, bmap: true, shrink: minimal }
  - { format: vmdk, subformat: streamOptimized }
test:
  boot: all
  firmware: [bios, uefi]
tests:
  - name: nginx-answers
    run: curl -fsS http://localhost/ | grep -q Welcome
    timeout: 30s
  - { name: motd, run: "grep -q ingot /etc/motd", sudo: false }
`

// canonVariants are canonRecipe with each kind of source, so every field is set in one of them.
var canonVariants = map[string]string{
	"disk": canonRecipe,
	"secrets": strings.Replace(canonRecipe, "      timeout: 1m\n", "      timeout: 1m\n      secrets: [TOKEN]\n      stdin: TOKEN\n", 1) + `secrets:
  TOKEN: { env: HOME }
secret_scan:
  allow:
    - { secret: TOKEN, pattern: private-key, path: "/etc/ssl/private/*", reason: the snakeoil key }
`,
	"iso-kernel": strings.Replace(canonRecipe, canonSourceDisk, `source:
  iso:
    url: https://example.org/i.iso
    sha256: `+emptySHA256+`
    kernel: /casper/vmlinuz
    initrd: /casper/initrd
    append: autoinstall
    install_timeout: 30m
`, 1),
	"iso-keys": strings.Replace(canonRecipe, canonSourceDisk, `source:
  iso: { url: https://example.org/i.iso, sha512: `+emptySHA512+`, boot_keys: ["<enter>"], boot_wait: 5s }
`, 1),
	"image": strings.Replace(canonRecipe, canonSourceDisk, "source: { image: base }\n", 1),
}

// canonDir writes canonRecipe's files into a fresh directory and returns it.
func canonDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeCanonFiles(t, dir, "files/app.conf", "files/setup.sh", "files/site")
	return dir
}

// loadIn writes a recipe into dir under name and loads it.
func loadIn(t *testing.T, dir, name, text string) *Recipe {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Load(path, nil, nil)
	if err != nil {
		t.Fatalf("%s:\n%v", name, err)
	}
	return r
}

// canonForms is every canonical form of a recipe.
type canonForms struct {
	boot, recipe []byte
	steps        [][]byte
}

func formsOf(t *testing.T, r *Recipe) canonForms {
	t.Helper()
	var f canonForms
	var err error
	if f.boot, err = r.BootCanonical(); err != nil {
		t.Fatal(err)
	}
	if f.recipe, err = r.Canonical(); err != nil {
		t.Fatal(err)
	}
	for i := range r.Provision {
		s, err := r.Provision[i].Canonical()
		if err != nil {
			t.Fatal(err)
		}
		f.steps = append(f.steps, s)
	}
	return f
}

// diff says which forms differ: "boot", "step N", "recipe".
func (a canonForms) diff(b canonForms) []string {
	var out []string
	if !bytes.Equal(a.boot, b.boot) {
		out = append(out, "boot")
	}
	for i := range max(len(a.steps), len(b.steps)) {
		if i >= len(a.steps) || i >= len(b.steps) || !bytes.Equal(a.steps[i], b.steps[i]) {
			out = append(out, "step "+strconv.Itoa(i))
		}
	}
	if !bytes.Equal(a.recipe, b.recipe) {
		out = append(out, "recipe")
	}
	return out
}

// fieldSite is one field of one value in a loaded recipe.
type fieldSite struct {
	name     string // Type.Field
	v        reflect.Value
	download bool // a field of a download step
}

func fieldSites(r *Recipe) []fieldSite {
	var out []fieldSite
	var walk func(v reflect.Value, download bool)
	walk = func(v reflect.Value, download bool) {
		t := v.Type()
		if t == reflect.TypeFor[File]() {
			download = v.FieldByName("Direction").String() == "download"
		}
		for i := range t.NumField() {
			fv := v.Field(i)
			out = append(out, fieldSite{name: t.Name() + "." + t.Field(i).Name, v: fv, download: download})
			switch {
			case fv.Kind() == reflect.Pointer && !fv.IsNil() && fv.Elem().Kind() == reflect.Struct:
				walk(fv.Elem(), download)
			case fv.Kind() == reflect.Struct && fv.Type() != posType:
				walk(fv, download)
			case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Struct:
				for j := range fv.Len() {
					walk(fv.Index(j), download)
				}
			}
		}
	}
	walk(reflect.ValueOf(r).Elem(), false)
	return out
}

// change changes a field's value to another of its type; false when it knows no change.
func change(v reflect.Value) bool {
	if v.Type() == posType {
		p := v.Addr().Interface().(*Pos)
		p.File, p.Line, p.Col = p.File+"x", p.Line+1, p.Col+1
		return true
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int64: // time.Duration too
		v.SetInt(v.Int() + 1)
	case reflect.Slice:
		switch v.Type().Elem() {
		case reflect.TypeFor[string]():
			v.Set(reflect.Append(v, reflect.ValueOf("x")))
		case reflect.TypeFor[[]string]():
			v.Set(reflect.Append(v, reflect.ValueOf([]string{"-x"})))
		default:
			return false
		}
	case reflect.Map:
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		v.SetMapIndex(reflect.ValueOf("zz"), reflect.ValueOf("x"))
	default:
		return false
	}
	return true
}

// Every field, changed on its own, changes exactly the forms its decision names: a step's field
// only that step's form and the recipe's, a boot field BootCanonical and the recipe's, an
// ignored field none.
func TestCanonicalFieldChanges(t *testing.T) {
	dir := canonDir(t)
	tested := map[string]bool{}
	for _, variant := range slices.Sorted(maps.Keys(canonVariants)) {
		text := canonVariants[variant]
		before := formsOf(t, loadIn(t, dir, "r.yaml", text))
		n := len(fieldSites(loadIn(t, dir, "r.yaml", text)))
		for k := range n {
			r := loadIn(t, dir, "r.yaml", text)
			s := fieldSites(r)[k]
			d := canonicalDecisions[s.name]
			switch {
			case d == holds, d == byContent, noGenericChange[s.name] != "", !s.v.CanSet():
				continue
			case s.download && slices.Contains([]string{"File.Mode", "File.DirMode", "File.Owner", "File.Direction"}, s.name):
				continue // the loader refuses these on a download, and a download's src is no local path
			}
			if !change(s.v) {
				t.Errorf("%s/%s: the test cannot change a %s: extend change()", variant, s.name, s.v.Type())
				continue
			}
			tested[s.name] = true
			got := before.diff(formsOf(t, r))
			var ok bool
			switch d {
			case inStep: // exactly one step
				ok = len(got) == 2 && strings.HasPrefix(got[0], "step ") && got[1] == "recipe"
			case inBoot:
				ok = slices.Equal(got, []string{"boot", "recipe"})
			case inRecipe:
				ok = slices.Equal(got, []string{"recipe"})
			default:
				ok = len(got) == 0
			}
			if !ok {
				t.Errorf("%s: changing %s (%s) changes %v", variant, s.name, d, got)
			}
		}
	}
	for name, d := range canonicalDecisions {
		if d != holds && d != byContent && noGenericChange[name] == "" && !tested[name] && name != "Recipe.positions" {
			t.Errorf("%s was never changed: set it in one of canonVariants", name)
		}
	}
}

// canonRecipeOther is canonRecipe written differently: flow style, keys in another order, other
// comments, an anchor, other spellings of the same values (60s, 1024M, "644", upper-case hex),
// files in other places and under other names (but the script's), cache: written out, and the
// fields no form holds (description, variables, URL, accel, driver, ssh timeout) changed.
const canonRecipeOther = `
# Another file, another directory, the same recipe as far as any build can tell.
tests:
  - { timeout: 0.5m, run: "curl -fsS http://localhost/ | grep -q Welcome", sudo: true, name: nginx-answers }
  - sudo: false
    timeout: 5m        # the default, written out
    run: |-
      grep -q ingot /etc/motd
    name: motd
test: { firmware: [bios, uefi], boot: all }
outputs: [ {shrink: minimal, bmap: true, compress: zstd, format: raw}, {subformat: streamOptimized, format: vmdk} ]
generalize: { keep: [machine-id, logs] }   # a set: its order changes nothing
provision:
  - shell: { timeout: 60s, sudo: true, env: { B: "2", A: *one }, inline: "echo hi" }
    cache: true
  - cache: false   # not in any form: it says whether the key is used
    shell:
      script: other/bin/setup.sh
  - file:
      owner: root:root
      mode: "644"
      dst: /etc/app.conf
      src: other/conf/copy.conf
  - file: { src: other/www/, dst: /srv/www, mode: "0644", dir_mode: "755", owner: www-data }
  - file: { direction: download, dst: logs/x.log, src: /var/log/x.log }
  - reboot: { timeout: 300s }
  - wait_cloud_init:
ssh: { timeout: 10m, user: builder }
cloud_init:
  seed_format: iso
  network_config: { version: 2 }
  user_data: { f: 1.50, n: 1, packages: [ nginx ] }
machine: { qemu_args: [[-device, virtio-rng-pci]], driver: libvirt, accel: kvm, firmware: uefi, disk: 8192MiB, memory: 1024M, cpus: 2 }
source: { disk: { format: qcow2, sha256: "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", url: "https://mirror.example.net/t.qcow2" } }
variables: { one: &one "1", unused: x }
description: written differently
name: t
`

// Reformatting, reordering, commenting, moving or renaming a recipe and its files changes no
// form; and no form holds a position, a local path or the recipe's file name.
func TestCanonicalFormatting(t *testing.T) {
	a := canonDir(t)
	b := t.TempDir()
	writeCanonFiles(t, b, "other/conf/copy.conf", "other/bin/setup.sh", "other/www")
	ra := loadIn(t, a, "recipe.yaml", canonRecipe)
	rb := loadIn(t, b, "another-name.yml", canonRecipeOther)
	fa, fb := formsOf(t, ra), formsOf(t, rb)
	if d := fa.diff(fb); len(d) > 0 {
		t.Errorf("the same recipe written differently changes %v:\n%s\n%s", d, fa.recipe, fb.recipe)
	}
	if !rb.Provision[1].NoCache || ra.Provision[1].NoCache {
		t.Fatalf("cache: was not read: %v %v", ra.Provision[1].NoCache, rb.Provision[1].NoCache)
	}
	if len(ra.Provision) != 7 || len(fa.steps) != 7 {
		t.Fatalf("%d steps, want 7", len(ra.Provision))
	}
	for _, leak := range []string{a, b, "recipe.yaml", "another-name", "files/", "other/", "mirror.example", "\"line\"", "written differently"} {
		for _, form := range append([][]byte{fa.boot, fa.recipe, fb.boot, fb.recipe}, slices.Concat(fa.steps, fb.steps)...) {
			if bytes.Contains(form, []byte(leak)) {
				t.Errorf("a form holds %q: %s", leak, form)
			}
		}
	}
	// The form is the same across loads and calls: nothing in it depends on map order.
	for range 20 {
		if d := fa.diff(formsOf(t, loadIn(t, a, "recipe.yaml", canonRecipe))); len(d) > 0 {
			t.Fatalf("loading the same recipe again changes %v", d)
		}
	}
}

// Changes written in the recipe change the forms they should and no other.
func TestCanonicalChanges(t *testing.T) {
	tests := []struct {
		name, old, new string
		want           []string
	}{
		{"a step's kind", "  - reboot: { timeout: 5m }\n", "  - wait_cloud_init: {}\n", []string{"step 5", "recipe"}},
		{"one character of a command", "inline: echo hi", "inline: echo ho", []string{"step 0", "recipe"}},
		{"an environment value", `A: "1"`, `A: "2"`, []string{"step 0", "recipe"}},
		{"an environment variable added", `B: "2" }`, `B: "2", C: "" }`, []string{"step 0", "recipe"}},
		{"sudo", "sudo: true", "sudo: false", []string{"step 0", "recipe"}},
		{"a shell timeout", "timeout: 1m", "timeout: 2m", []string{"step 0", "recipe"}},
		{"the script's name", "script: files/setup.sh", "script: files/setup2.sh", []string{"step 1", "recipe"}},
		{"an upload's destination", "dst: /etc/app.conf", "dst: /etc/app2.conf", []string{"step 2", "recipe"}},
		{"an upload's mode", `dst: /etc/app.conf, mode: "0644"`, `dst: /etc/app.conf, mode: "0640"`, []string{"step 2", "recipe"}},
		{"an upload's owner", "owner: root:root", "owner: root", []string{"step 2", "recipe"}},
		{"a tree's dir_mode", `dir_mode: "0755"`, `dir_mode: "0750"`, []string{"step 3", "recipe"}},
		{"a download's source", "src: /var/log/x.log", "src: /var/log/y.log", []string{"step 4", "recipe"}},
		{"a download's destination", "dst: logs/x.log", "dst: logs/y.log", []string{"step 4", "recipe"}},
		{"a reboot's timeout", "reboot: { timeout: 5m }", "reboot: { timeout: 6m }", []string{"step 5", "recipe"}},
		{"two steps swapped", "  - reboot: { timeout: 5m }\n  - wait_cloud_init: {}\n", "  - wait_cloud_init: {}\n  - reboot: { timeout: 5m }\n", []string{"step 5", "step 6", "recipe"}},
		{"a step added", "  - wait_cloud_init: {}\n", "  - wait_cloud_init: {}\n  - reboot: {}\n", []string{"step 7", "recipe"}},
		{"an integer becomes a float", "    n: 1\n", "    n: 1.0\n", []string{"boot", "recipe"}},
		{"an integer becomes a string", "    n: 1\n", "    n: \"1\"\n", []string{"boot", "recipe"}},
		{"a float's value", "f: 1.5", "f: 1.25", []string{"boot", "recipe"}},
		{"a list item added", "packages: [nginx]", "packages: [nginx, curl]", []string{"boot", "recipe"}},
		{"the pin", "sha256: " + emptySHA256, "sha256: " + strings.Repeat("a", 64), []string{"boot", "recipe"}},
		{"sha256 to sha512", "sha256: " + emptySHA256, "sha512: " + emptySHA512, []string{"boot", "recipe"}},
		{"a checksum-file pin's location", "sha256: " + emptySHA256, "sha256: file:https://example.org/SHA256SUMS", []string{"boot", "recipe"}},
		{"the seed format", "seed_format: iso", "seed_format: vfat", []string{"boot", "recipe"}},
		{"the build user", "user: builder", "user: maker", []string{"boot", "recipe"}},
		{"memory", "memory: 1GiB", "memory: 2GiB", []string{"boot", "recipe"}},
		{"the name", "name: t\n", "name: u\n", []string{"recipe"}},
		{"generalize", "generalize:\n  keep: [logs, machine-id]\n", "generalize: false\n", []string{"recipe"}},
		{"an output", "format: vmdk, subformat: streamOptimized", "format: vmdk, subformat: monolithicSparse", []string{"recipe"}},
		{"the test boots", "boot: all", "boot: first", []string{"recipe"}},
		{"a test firmware", "firmware: [bios, uefi]", "firmware: [bios, uefi-secure]", []string{"recipe"}},
		{"test firmwares swapped", "firmware: [bios, uefi]", "firmware: [uefi, bios]", []string{"recipe"}},
		{"test: left out (the defaults)", "test:\n  boot: all\n  firmware: [bios, uefi]\n", "", []string{"recipe"}},
		{"a check's name", "name: motd", "name: motd2", []string{"recipe"}},
		{"one character of a check", "grep -q ingot /etc/motd", "grep -q ingoT /etc/motd", []string{"recipe"}},
		{"a check's sudo", "sudo: false }", "sudo: true }", []string{"recipe"}},
		{"a check's timeout", "timeout: 30s", "timeout: 31s", []string{"recipe"}},
		{"a check added", "    timeout: 30s\n", "    timeout: 30s\n  - { name: more, run: \"true\" }\n", []string{"recipe"}},
		{"checks swapped", "  - name: nginx-answers\n    run: curl -fsS http://localhost/ | grep -q Welcome\n    timeout: 30s\n  - { name: motd, run: \"grep -q ingot /etc/motd\", sudo: false }\n",
			"  - { name: motd, run: \"grep -q ingot /etc/motd\", sudo: false }\n  - name: nginx-answers\n    run: curl -fsS http://localhost/ | grep -q Welcome\n    timeout: 30s\n", []string{"recipe"}},
		{"outputs swapped", "  - { format: raw, compress: zstd, bmap: true, shrink: minimal }\n  - { format: vmdk, subformat: streamOptimized }\n",
			"  - { format: vmdk, subformat: streamOptimized }\n  - { format: raw, compress: zstd, bmap: true, shrink: minimal }\n", []string{"recipe"}},
		// Fields no form holds.
		{"the URL", "url: https://example.org/t.qcow2", "url: https://mirror.example.org/t.qcow2", nil},
		{"accel", "accel: tcg", "accel: kvm", nil},
		{"the SSH timeout", "timeout: 5m\nprovision", "timeout: 7m\nprovision", nil},
		{"cache: false", "  - reboot: { timeout: 5m }\n", "  - reboot: { timeout: 5m }\n    cache: false\n", nil},
		{"a same-valued spelling", "memory: 1GiB", "memory: 1024MiB", nil},
		{"a check's default written out", "sudo: false }", "sudo: false, timeout: 5m }", nil},
	}
	dir := canonDir(t)
	if err := os.WriteFile(filepath.Join(dir, "files", "setup2.sh"), []byte("#!/bin/sh\necho setup\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	base := formsOf(t, loadIn(t, dir, "base.yaml", canonRecipe))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(canonRecipe, tt.old) {
				t.Fatalf("%q is not in the recipe", tt.old)
			}
			got := base.diff(formsOf(t, loadIn(t, dir, "changed.yaml", strings.Replace(canonRecipe, tt.old, tt.new, 1))))
			if !slices.Equal(got, tt.want) {
				t.Errorf("changes %v, want %v", got, tt.want)
			}
		})
	}
}

// The bytes of the files a step reads are in its form: changing them re-runs that step (and,
// through the chain of keys, every later one), and nothing else.
func TestCanonicalFileContent(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, dir string) error
		want   []string
	}{
		{"one byte of an uploaded file", func(t *testing.T, dir string) error {
			return os.WriteFile(filepath.Join(dir, "files/app.conf"), []byte("listen 81;\n"), 0o644)
		}, []string{"step 2", "recipe"}},
		{"an uploaded file's mode", func(t *testing.T, dir string) error {
			return os.Chmod(filepath.Join(dir, "files/app.conf"), 0o600)
		}, []string{"step 2", "recipe"}},
		{"one byte of a file deep in a tree", func(t *testing.T, dir string) error {
			return os.WriteFile(filepath.Join(dir, "files/site/sub/a.txt"), []byte("b\n"), 0o600)
		}, []string{"step 3", "recipe"}},
		{"a tree file's mode", func(t *testing.T, dir string) error {
			return os.Chmod(filepath.Join(dir, "files/site/sub/a.txt"), 0o640)
		}, []string{"step 3", "recipe"}},
		{"a tree directory's mode", func(t *testing.T, dir string) error {
			return os.Chmod(filepath.Join(dir, "files/site/sub"), 0o700)
		}, []string{"step 3", "recipe"}},
		{"an empty file added to a tree", func(t *testing.T, dir string) error {
			return os.WriteFile(filepath.Join(dir, "files/site/sub/empty"), nil, 0o644)
		}, []string{"step 3", "recipe"}},
		{"an empty directory added to a tree", func(t *testing.T, dir string) error {
			return os.Mkdir(filepath.Join(dir, "files/site/new"), 0o755)
		}, []string{"step 3", "recipe"}},
		{"a file renamed in a tree", func(t *testing.T, dir string) error {
			return os.Rename(filepath.Join(dir, "files/site/sub/a.txt"), filepath.Join(dir, "files/site/sub/b.txt"))
		}, []string{"step 3", "recipe"}},
		{"a symlink's target", func(t *testing.T, dir string) error {
			p := filepath.Join(dir, "files/site/link")
			if err := os.Remove(p); err != nil {
				return err
			}
			return os.Symlink("sub/a.txt", p)
		}, []string{"step 3", "recipe"}},
		{"one byte of the script", func(t *testing.T, dir string) error {
			return os.WriteFile(filepath.Join(dir, "files/setup.sh"), []byte("#!/bin/sh\necho setuq\n"), 0o755)
		}, []string{"step 1", "recipe"}},
		// What the guest never sees.
		{"the script's mode (it is uploaded 0755)", func(t *testing.T, dir string) error {
			return os.Chmod(filepath.Join(dir, "files/setup.sh"), 0o700)
		}, nil},
		{"times", func(t *testing.T, dir string) error {
			old := time.Unix(1e9, 0)
			for _, p := range []string{"files/app.conf", "files/setup.sh", "files/site/sub/a.txt", "files/site/sub", "files/site"} {
				if err := os.Chtimes(filepath.Join(dir, p), old, old); err != nil {
					return err
				}
			}
			return nil
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := canonDir(t)
			r := loadIn(t, dir, "recipe.yaml", canonRecipe)
			before := formsOf(t, r)
			if err := tt.change(t, dir); err != nil {
				t.Fatal(err)
			}
			// The same loaded recipe: the files are read when a form is asked for.
			if got := before.diff(formsOf(t, r)); !slices.Equal(got, tt.want) {
				t.Errorf("changes %v, want %v", got, tt.want)
			}
		})
	}
}

// A file that cannot be read fails the form with the step's position and the file's path.
func TestCanonicalErrors(t *testing.T) {
	tests := []struct {
		name  string
		step  int
		spoil func(dir string) error
		want  []string
	}{
		{"script gone", 1, func(dir string) error { return os.Remove(filepath.Join(dir, "files/setup.sh")) },
			[]string{"recipe.yaml:37:5: shell step: reading script: ", filepath.Join("files", "setup.sh"), "no such file"}},
		{"upload gone", 2, func(dir string) error { return os.Remove(filepath.Join(dir, "files/app.conf")) },
			[]string{"recipe.yaml:38:5: file step: reading upload source: ", filepath.Join("files", "app.conf"), "no such file"}},
		{"a symlink loop in a tree (uploaded as a link: no error)", 3, func(dir string) error {
			p := filepath.Join(dir, "files/site/sub/a.txt")
			if err := os.Remove(p); err != nil {
				return err
			}
			return os.Symlink("a.txt", p) // a loop is a file no one can read, even root
		}, nil},
		{"a named pipe in a tree", 3, func(dir string) error { return syscall.Mkfifo(filepath.Join(dir, "files/site/sub/pipe"), 0o644) },
			[]string{"recipe.yaml:39:5: file step: reading upload source: ", filepath.Join("files", "site", "sub", "pipe"), "is a named pipe, which cannot be uploaded"}},
		{"an upload become a named pipe (refused, not opened: that would wait for a writer)", 2, func(dir string) error {
			p := filepath.Join(dir, "files/app.conf")
			if err := os.Remove(p); err != nil {
				return err
			}
			return syscall.Mkfifo(p, 0o644)
		}, []string{"recipe.yaml:38:5: file step: reading upload source: ", filepath.Join("files", "app.conf"), "is a named pipe, not a regular file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := canonDir(t)
			r := loadIn(t, dir, "recipe.yaml", canonRecipe)
			if err := tt.spoil(dir); err != nil {
				t.Fatal(err)
			}
			_, err := r.Provision[tt.step].Canonical()
			if tt.want == nil {
				// A symlink in a tree is uploaded as a link, whatever it points at: no error.
				if err != nil {
					t.Errorf("a tree's symlink is read: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if _, rerr := r.Canonical(); rerr == nil || rerr.Error() != err.Error() {
				t.Errorf("the recipe's form fails with %v, want the step's error", rerr)
			}
		})
	}

	for _, tt := range []struct {
		name string
		step Step
		want string
	}{
		{"kind without its part", Step{Kind: StepShell, Pos: Pos{File: "r.yaml", Line: 3, Col: 5}}, "r.yaml:3:5: shell step: the step's shell part is missing"},
		{"unknown kind", Step{Kind: "teleport"}, `provisioning step: teleport step: unknown step kind "teleport"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.step.Canonical(); err == nil || err.Error() != tt.want {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := (&Recipe{}).BootCanonical(); err == nil {
		t.Error("a recipe without a source has a boot form")
	}
}

// The encoding, byte for byte: a change to it must bump canonVersion, and this test makes such
// a change visible.
func TestCanonicalEncoding(t *testing.T) {
	st := Step{Kind: StepShell, Shell: &Shell{Inline: "printf '%s\\n' \"a\\b\"\n\ttab é", Env: map[string]string{"B": "2", "A": "1"}, Sudo: true, Timeout: 90 * time.Second}}
	got, err := st.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"shell":{"env":{"A":"1","B":"2"},"inline":"printf '%s\\n' \"a\\b\"\u000a\u0009tab é","script":null,"sudo":true,"timeout":"1m30s"},"step":"shell","v":1}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}

	r := &Recipe{
		Source:  Source{Image: &ImageSource{Name: "base"}},
		Machine: Machine{Arch: "x86_64", CPUs: 1, MemoryMiB: 512, Firmware: "bios"},
		CloudInit: CloudInit{UserData: map[string]any{
			"i": int64(1), "f": 1.0, "g": 2.5, "e": 1e21, "z": math.Copysign(0, -1), "nan": math.NaN(), "inf": math.Inf(1), "ninf": math.Inf(-1),
			"u": uint64(math.MaxUint64), "s": "1", "l": []any{nil, true, false}, "m": map[string]any{"b": "", "a": map[string]any{}},
		}, SeedFormat: "iso"},
		SSH: SSH{User: "ingot"},
	}
	got, err = r.BootCanonical()
	if err != nil {
		t.Fatal(err)
	}
	want = `{"cloud_init":{"network_config":{},"seed_format":"iso","user_data":{"e":1e+21,"f":1.0,"g":2.5,"i":1,"inf":Infinity,"l":[null,true,false],"m":{"a":{},"b":""},"nan":NaN,"ninf":-Infinity,"s":"1","u":18446744073709551615,"z":-0.0}},` +
		`"machine":{"arch":"x86_64","cpus":1,"disk_bytes":0,"firmware":"bios","memory_mib":512,"qemu_args":[]},"source":{"image":{"name":"base"}},"ssh":{"user":"ingot"},"v":1}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// A file name in an uploaded tree that is not UTF-8 is kept as its bytes, not mangled into the
// same text as another name.
func TestCanonicalNonUTF8Names(t *testing.T) {
	forms := map[string]bool{}
	for _, name := range []string{"\xff", "\xfe", "\uFFFD"} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		s := Step{Kind: StepFile, File: &File{Src: dir, Dst: "/x", Direction: "upload"}}
		got, err := s.Canonical()
		if err != nil {
			t.Fatal(err)
		}
		forms[string(got)] = true
	}
	if len(forms) != 3 {
		t.Errorf("three names give %d forms", len(forms))
	}
}

// cache: false, beside a step's kind, sets NoCache; its mistakes are in testdata/broken/cache.yaml.
func TestStepCache(t *testing.T) {
	tests := []struct {
		name, step string
		want       bool
	}{
		{"default", "  - shell: apt-get -y upgrade\n", false},
		{"true", "  - shell: apt-get -y upgrade\n    cache: true\n", false},
		{"false", "  - shell: apt-get -y upgrade\n    cache: false\n", true},
		{"before the kind", "  - cache: false\n    shell: apt-get -y upgrade\n", true},
		{"flow", "  - { reboot: {}, cache: false }\n", true},
		{"on a file step", "  - file: { src: /var/log/syslog, dst: syslog, direction: download }\n    cache: false\n", true},
		{"from a variable", "  - wait_cloud_init: {}\n    cache: ${var.cache}\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := minimal + "variables: { cache: \"false\" }\nprovision:\n" + tt.step
			r, err := LoadBytes("r.yaml", []byte(text), "", nil, nil)
			if err != nil {
				t.Fatalf("%v\n%s", err, text)
			}
			if got := r.Provision[0].NoCache; got != tt.want {
				t.Errorf("NoCache = %v, want %v", got, tt.want)
			}
		})
	}
}
