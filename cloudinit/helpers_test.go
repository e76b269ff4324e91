package cloudinit

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"golang.org/x/crypto/ssh"
)

// newHostKey generates a host key pair the way the communicator hands it over: OpenSSH PEM and an
// authorized_keys line.
func newHostKey(t *testing.T, algo string) HostKey {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch algo {
	case "ed25519":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case "rsa":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ecdsa":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		t.Fatalf("unknown key algorithm %q", algo)
	}
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return HostKey{
		Private: pem.EncodeToMemory(block),
		Public:  strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))) + " root@guest",
	}
}

func authorizedKey(t *testing.T) string {
	t.Helper()
	k := newHostKey(t, "ed25519")
	return strings.Replace(k.Public, "root@guest", "ingot@host", 1)
}

// testConfig is a valid Config with fresh keys.
func testConfig(t *testing.T) Config {
	t.Helper()
	return Config{
		InstanceID: "ingot-0123abcd",
		Hostname:   "build-guest",
		BuildUser:  BuildUser{Name: "ingot", AuthorizedKeys: []string{authorizedKey(t)}},
		HostKeys:   []HostKey{newHostKey(t, "ed25519")},
	}
}

// wantBuildUser and wantSSHKeys are what the merge adds, spelled out independently of the code.
func wantBuildUser(cfg Config) map[string]any {
	keys := []any{}
	for _, k := range cfg.BuildUser.AuthorizedKeys {
		keys = append(keys, k)
	}
	return map[string]any{
		"name":                cfg.BuildUser.Name,
		"sudo":                "ALL=(ALL) NOPASSWD:ALL",
		"lock_passwd":         true,
		"shell":               "/bin/bash",
		"ssh_authorized_keys": keys,
	}
}

func wantSSHKeys(cfg Config) map[string]any {
	m := map[string]any{}
	for _, k := range cfg.HostKeys {
		name := strings.TrimPrefix(strings.Fields(k.Public)[0], "ssh-")
		if strings.HasPrefix(name, "ecdsa") {
			name = "ecdsa"
		}
		m[name+"_private"] = string(k.Private)
		m[name+"_public"] = k.Public
	}
	return m
}

// goLoad parses a document with go-yaml (YAML 1.2) into the package's document model.
func goLoad(t *testing.T, doc []byte) map[string]any {
	t.Helper()
	var v map[string]any
	if err := yaml.Unmarshal(doc, &v); err != nil {
		t.Fatalf("go-yaml cannot parse the document: %v\n%s", err, doc)
	}
	m, err := normalizeMap("doc", v)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// cloudInitPython is the interpreter cloud-init runs with: its PyYAML (and cloud-init's own
// modules) are what read the seed in a guest.
func cloudInitPython(t *testing.T) string {
	t.Helper()
	ci := lookTool(t, "cloud-init", "cloud-init")
	f, err := os.Open(ci)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "#!") {
		t.Fatalf("%s: no #! line to find cloud-init's Python (%v)", ci, err)
	}
	argv := strings.Fields(strings.TrimPrefix(line, "#!"))
	if len(argv) == 0 {
		t.Fatalf("%s: empty #! line", ci)
	}
	if filepath.Base(argv[0]) == "env" && len(argv) > 1 {
		return lookTool(t, argv[1], "cloud-init")
	}
	return argv[0]
}

// lookTool finds a tool the tests need; a missing tool fails the test (make test installs it).
func lookTool(t *testing.T, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (%v): install Debian package %s (make test does)", name, err, debianPackage)
	}
	return p
}

// pyLoadScript loads YAML with cloud-init's own loader (cloudinit.safeyaml, PyYAML's SafeLoader,
// YAML 1.1) as cloud-init does for user-data, and prints it as JSON with numbers tagged, so that
// ints, floats and booleans stay distinct and non-string keys (which JSON would silently turn into
// strings) are an error.
const pyLoadScript = `
import json, sys
from cloudinit import safeyaml

def conv(o):
    if isinstance(o, dict):
        for k in o:
            if not isinstance(k, str):
                raise SystemExit("non-string key %r (%s)" % (k, type(k).__name__))
        return {k: conv(v) for k, v in o.items()}
    if isinstance(o, list):
        return [conv(v) for v in o]
    if o is None or isinstance(o, (bool, str)):
        return o
    if isinstance(o, int):
        return {"$int": str(o)}
    if isinstance(o, float):
        return {"$float": repr(o)}
    raise SystemExit("unexpected %s: %r" % (type(o).__name__, o))

print(json.dumps(conv(safeyaml.load(sys.stdin.buffer.read().decode("utf-8")))))
`

// pyLoad parses a document the way cloud-init in the guest will.
func pyLoad(t *testing.T, doc []byte) map[string]any {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), cloudInitPython(t), "-c", pyLoadScript)
	cmd.Stdin = bytes.NewReader(doc)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cloud-init's YAML loader rejects the document: %v: %s\n%s", err, stderr.Bytes(), doc)
	}
	var v any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	m, ok := untag(t, v).(map[string]any)
	if !ok {
		t.Fatalf("document is not a mapping: %s", out)
	}
	return m
}

// untag turns pyLoad's JSON back into the document model.
func untag(t *testing.T, v any) any {
	switch v := v.(type) {
	case map[string]any:
		if s, ok := v["$int"].(string); ok && len(v) == 1 {
			if i, err := strconv.ParseInt(s, 10, 64); err == nil {
				return i
			}
			u, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				t.Fatalf("integer %s out of range", s)
			}
			return u
		}
		if s, ok := v["$float"].(string); ok && len(v) == 1 {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				t.Fatalf("float %s: %v", s, err)
			}
			return f
		}
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[k] = untag(t, x)
		}
		return m
	case []any:
		for i := range v {
			v[i] = untag(t, v[i])
		}
	}
	return v
}

// sameValue is reflect.DeepEqual on the document model, except that NaN equals NaN and -0.0
// differs from 0.0 (the value must survive exactly).
func sameValue(a, b any) bool {
	switch a := a.(type) {
	case float64:
		b, ok := b.(float64)
		if !ok {
			return false
		}
		if math.IsNaN(a) || math.IsNaN(b) {
			return math.IsNaN(a) && math.IsNaN(b)
		}
		return math.Float64bits(a) == math.Float64bits(b)
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, x := range a {
			y, ok := b[k]
			if !ok || !sameValue(x, y) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !sameValue(a[i], b[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

// diff explains where two document-model values differ, for failure messages.
func diff(path string, want, got any) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			break
		}
		var sb strings.Builder
		for k, x := range w {
			y, ok := g[k]
			if !ok {
				fmt.Fprintf(&sb, "%s.%s: missing\n", path, k)
			} else if !sameValue(x, y) {
				sb.WriteString(diff(path+"."+k, x, y))
			}
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				fmt.Fprintf(&sb, "%s.%s: unexpected %#v\n", path, k, g[k])
			}
		}
		return sb.String()
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			break
		}
		var sb strings.Builder
		for i := range w {
			if !sameValue(w[i], g[i]) {
				sb.WriteString(diff(fmt.Sprintf("%s[%d]", path, i), w[i], g[i]))
			}
		}
		return sb.String()
	}
	return fmt.Sprintf("%s: want %#v (%T), got %#v (%T)\n", path, want, want, got, got)
}

func mustNormalize(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	n, err := normalizeMap("test", m)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
