package recipes

import (
	"fmt"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

// The loader knows a key when the Go types have it (yamlKeys); that alone would accept a key and
// then ignore its value. This test proves each key is read: for every leaf key of the types, a
// recipe with a valid value loads, and the same recipe with a wrong value ([1], wrong for every
// field) fails with an error at that key's path. A new field without decoding, or without a
// valid value here, fails the test.

// emptySHA512 is the sha512 of an empty file.
const emptySHA512 = "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"

// leafPaths lists the field paths of a recipe type's leaves: scalars, lists and free-form maps.
// Lists of mappings are entered at index 0.
func leafPaths(t reflect.Type, prefix string) []string {
	var out []string
	for f := range t.Fields() {
		tag := f.Tag.Get("yaml")
		if tag == "" || tag == "-" {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		p := join(prefix, tag)
		switch {
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			out = append(out, leafPaths(ft.Elem(), p+"[0]")...)
		case hasYAMLFields(ft):
			out = append(out, leafPaths(ft, p)...)
		default:
			out = append(out, p)
		}
	}
	return out
}

func TestEveryKeyIsDecoded(t *testing.T) {
	script, _ := filepath.Abs("testdata/files/scripts/setup.sh")
	conf, _ := filepath.Abs("testdata/files/app.conf")
	valid := map[string]any{
		"name":                         "t",
		"description":                  "d",
		"variables":                    map[string]any{"a": "b"},
		"source.disk.url":              "https://example.org/t.qcow2",
		"source.disk.sha256":           emptySHA256,
		"source.disk.sha512":           emptySHA512,
		"source.disk.format":           "qcow2",
		"source.iso.url":               "https://example.org/i.iso",
		"source.iso.sha256":            emptySHA256,
		"source.iso.sha512":            emptySHA512,
		"source.iso.kernel":            "/casper/vmlinuz",
		"source.iso.initrd":            "/casper/initrd",
		"source.iso.append":            "autoinstall",
		"source.iso.boot_keys":         []any{"<enter>"},
		"source.iso.boot_wait":         "5s",
		"source.iso.install_timeout":   "30m",
		"source.image":                 "base",
		"machine.cpus":                 4,
		"machine.memory":               "1GiB",
		"machine.disk":                 "10GiB",
		"machine.firmware":             "bios",
		"machine.accel":                "tcg",
		"machine.driver":               "libvirt",
		"machine.qemu_args":            []any{[]any{"-nographic"}},
		"cloud_init.user_data":         map[string]any{"packages": []any{"x"}},
		"cloud_init.network_config":    map[string]any{"version": 2},
		"cloud_init.seed_format":       "vfat",
		"ssh.user":                     "builder",
		"ssh.timeout":                  "5m",
		"provision[0].shell.inline":    "true",
		"provision[0].shell.script":    script,
		"provision[0].shell.env":       map[string]any{"A": "b"},
		"provision[0].shell.sudo":      false,
		"provision[0].shell.timeout":   "1m",
		"provision[0].file.src":        conf,
		"provision[0].file.dst":        "/etc/x",
		"provision[0].file.mode":       "0600",
		"provision[0].file.dir_mode":   "0750",
		"provision[0].file.owner":      "root",
		"provision[0].file.direction":  "upload",
		"provision[0].reboot.timeout":  "1m",
		"provision[0].wait_cloud_init": map[string]any{},
		"provision[0].cache":           false,
		"generalize.keep":              []any{"logs"},
		"outputs[0].format":            "raw",
		"outputs[0].compress":          "zstd",
		"outputs[0].subformat":         "monolithicSparse",
		"outputs[0].bmap":              true,
		"outputs[0].shrink":            "minimal",
		"test.boot":                    "all",
		"machine.arch":                 "aarch64",
		"drift.fail_on":                []any{"packages.changed>0"},
		"drift.ignore":                 []any{"/opt/app/cache/**"},
		"test.firmware":                []any{"bios", "uefi"},
		"tests[0].name":                "nginx",
		"tests[0].run":                 "curl -fsS http://localhost/",
		"tests[0].sudo":                false,
		"tests[0].timeout":             "30s",
		"secrets":                      map[string]any{"A": map[string]any{"env": "A"}},
		"provision[0].shell.secrets":   []any{"A"},
		"provision[0].shell.stdin":     "A",
		"secret_scan.allow[0].secret":  "A",
		"secret_scan.allow[0].pattern": "private-key",
		"secret_scan.allow[0].path":    "/etc/ssl/private/*.key",
		"secret_scan.allow[0].reason":  "the snakeoil key ssl-cert makes",
	}
	leaves := leafPaths(reflect.TypeFor[Recipe](), "")
	if len(leaves) < 40 {
		t.Fatalf("only %d leaves: %v", len(leaves), leaves)
	}
	for _, leaf := range leaves {
		t.Run(leaf, func(t *testing.T) {
			good, ok := valid[leaf]
			if !ok {
				t.Fatalf("no valid value for %s: add one to this test", leaf)
			}
			r := skeleton(leaf)
			setPath(t, r, leaf, good)
			if _, err := LoadBytes("t.yaml", marshal(t, r), t.TempDir(), nil, nil); err != nil {
				t.Fatalf("a valid %s is refused:\n%v\n%s", leaf, err, marshal(t, r))
			}
			setPath(t, r, leaf, []any{1})
			_, err := LoadBytes("t.yaml", marshal(t, r), t.TempDir(), nil, nil)
			es, _ := err.(Errors)
			for _, e := range es {
				if e.Path == leaf || strings.HasPrefix(e.Path, leaf+"[") || strings.HasPrefix(e.Path, leaf+".") {
					return
				}
			}
			t.Errorf("[1] as %s gives no error at that path: %v", leaf, err)
		})
	}
}

// skeleton is the smallest valid recipe around a leaf: its siblings that must be there, and none
// that would conflict with it.
func skeleton(leaf string) map[string]any {
	r := map[string]any{
		"name":   "t",
		"source": map[string]any{"disk": map[string]any{"url": "https://example.org/t.qcow2", "sha256": emptySHA256}},
	}
	switch {
	case strings.HasPrefix(leaf, "source.iso."):
		iso := map[string]any{"url": "https://example.org/i.iso", "sha256": emptySHA256}
		switch leaf {
		case "source.iso.initrd", "source.iso.append":
			iso["kernel"] = "/casper/vmlinuz"
		case "source.iso.boot_wait":
			iso["boot_keys"] = []any{"<enter>"}
		case "source.iso.sha512":
			delete(iso, "sha256")
		}
		r["source"] = map[string]any{"iso": iso}
	case leaf == "source.image":
		r["source"] = map[string]any{}
	case leaf == "source.disk.sha512":
		delete(r["source"].(map[string]any)["disk"].(map[string]any), "sha256")
	case leaf == "provision[0].shell.inline", leaf == "provision[0].shell.script":
		r["provision"] = []any{map[string]any{"shell": map[string]any{}}}
	case strings.HasPrefix(leaf, "provision[0].shell."):
		r["provision"] = []any{map[string]any{"shell": map[string]any{"inline": "true"}}}
		if leaf == "provision[0].shell.secrets" || leaf == "provision[0].shell.stdin" {
			r["secrets"] = map[string]any{"A": map[string]any{"env": "A"}}
		}
	case strings.HasPrefix(leaf, "provision[0].file."):
		conf, _ := filepath.Abs("testdata/files/app.conf")
		if leaf == "provision[0].file.dir_mode" {
			conf = filepath.Dir(conf) // dir_mode is for trees only
		}
		r["provision"] = []any{map[string]any{"file": map[string]any{"src": conf, "dst": "/etc/x"}}}
	case leaf == "provision[0].cache":
		r["provision"] = []any{map[string]any{"shell": "true"}} // cache: goes beside a kind
	case strings.HasPrefix(leaf, "provision[0].reboot."):
		r["provision"] = []any{map[string]any{"reboot": map[string]any{}}}
	case strings.HasPrefix(leaf, "provision[0]."):
		r["provision"] = []any{map[string]any{}}
	case strings.HasPrefix(leaf, "outputs[0]."):
		format := "raw"
		if leaf == "outputs[0].subformat" {
			format = "vmdk"
		}
		r["outputs"] = []any{map[string]any{"format": format}}
	case strings.HasPrefix(leaf, "generalize."):
		r["generalize"] = map[string]any{}
	case strings.HasPrefix(leaf, "tests[0]."):
		r["tests"] = []any{map[string]any{"name": "c", "run": "true"}}
	case strings.HasPrefix(leaf, "secret_scan.allow[0]."):
		r["secrets"] = map[string]any{"A": map[string]any{"env": "A"}}
		allow := map[string]any{"pattern": "private-key", "reason": "r"}
		r["secret_scan"] = map[string]any{"allow": []any{allow}}
	}
	return r
}

var pathPart = regexp.MustCompile(`^([a-z_0-9]+)(?:\[(\d+)\])?$`)

// setPath sets a value at a field path such as provision[0].shell.env, creating mappings.
func setPath(t *testing.T, doc map[string]any, path string, v any) {
	t.Helper()
	parts := strings.Split(path, ".")
	cur := doc
	for i, part := range parts {
		m := pathPart.FindStringSubmatch(part)
		if m == nil {
			t.Fatalf("bad path %s", path)
		}
		last := i == len(parts)-1
		if m[2] == "" {
			if last {
				cur[m[1]] = v
				return
			}
			next, ok := cur[m[1]].(map[string]any)
			if !ok {
				next = map[string]any{}
				cur[m[1]] = next
			}
			cur = next
			continue
		}
		idx, _ := strconv.Atoi(m[2])
		list, _ := cur[m[1]].([]any)
		if idx >= len(list) {
			t.Fatalf("%s: no item %d in the skeleton", path, idx)
		}
		if last {
			list[idx] = v
			return
		}
		cur = list[idx].(map[string]any)
	}
}

func marshal(t *testing.T, doc map[string]any) []byte {
	t.Helper()
	data, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(fmt.Errorf("marshal %v: %w", doc, err))
	}
	return data
}
