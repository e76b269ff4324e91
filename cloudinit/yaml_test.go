package cloudinit

import (
	"math"
	"strings"
	"testing"
)

// trickyStrings are values that YAML, and YAML 1.1 (PyYAML, cloud-init) in particular, would read
// as something else if written carelessly.
var trickyStrings = []string{
	// quotes and YAML indicators
	`it's`, `say "hi"`, `'single'`, `"double"`, "key: value", "a #comment", "#not a comment", "trailing colon:",
	"- dash", "-", "--", "---", "...", "?", "? q", "!tag", "!!str", "&anchor", "*alias", "%dir", "@at", "`tick`",
	"{a: 1}", "[1, 2]", "a, b", "|", "|-", ">", "=", "<<", "~", "", " ",
	// whitespace and newlines
	"line1\nline2", "ends with newline\n", "two newlines\n\n", "\n\nleading newlines", "  leading spaces",
	"trailing spaces  ", "\ttab first", "tab\tinside", "crlf\r\nline", "bare\rcr", "  \n  indented\n",
	// YAML 1.1 booleans and nulls
	"yes", "no", "on", "off", "y", "n", "Yes", "NO", "On", "OFF", "Y", "N", "true", "False", "TRUE", "null", "Null", "NULL",
	// numbers, dates and other implicit types in YAML 1.1 or 1.2
	"0644", "0o17", "0x1F", "0b101", "1_000", "1:20", "190:20:30", "-1:30", "1e3", "1.5", "1.", ".5", "+1", "-0",
	".inf", "-.inf", ".NaN", "inf", "nan", "1,000", "2001-12-14", "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10 -5",
	"12:30:45", "0", "00", "1.0e+06", "6.8523015e+5",
	// unicode and control characters
	"ünïcödé ✓ 日本語 🎉", "nbsp\u00a0here", "line\u2028separator", "para\u2029graph", "next\u0085line",
	"\ufeffbom first", "zero\u200bwidth", "e\u0301 combining", "private\ue000use", "nul\x00byte", "del\x7f",
	"\x1b[31mansi\x1b[0m", "bell\a", "back\\slash", `\n not a newline`, `\x41`, "\\",
	// shell and template text that must arrive literally
	"${HOME} $(id -u) `id`", "{{ v1.local_hostname }}", "## template: jinja", "#cloud-config",
	"echo 'a' \"b\" | tee -a /tmp/x && exit 0 # done",
	// plain-looking strings must stay strings, too
	"plain", "/bin/bash", "qemu-guest-agent", "a.b-c_d/e", "_under", "ALL=(ALL) NOPASSWD:ALL",
}

func TestPlainSafe(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{"plain", true}, {"/bin/bash", true}, {"qemu-guest-agent", true}, {"lock_passwd", true}, {"_x", true},
		{"a1.2", true}, {"", false}, {"yes", false}, {"Off", false}, {"Y", false}, {"NaN", false}, {"Null", false},
		{"1abc", false}, {"-a", false}, {".inf", false}, {"a b", false}, {"a:b", false}, {"a#b", false},
		{"é", false}, {"a\n", false}, {"0644", false},
	}
	for _, tt := range tests {
		if got := plainSafe(tt.s); got != tt.want {
			t.Errorf("plainSafe(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}

func TestFormatFloat(t *testing.T) {
	tests := []struct {
		f    float64
		want string
	}{
		{0, "0.0"}, {math.Copysign(0, -1), "-0.0"}, {1, "1.0"}, {100, "100.0"}, {1.5, "1.5"}, {-2.25, "-2.25"},
		{1e6, "1.0e+06"}, {1e21, "1.0e+21"}, {1.5e-7, "1.5e-07"}, {123456.789, "123456.789"},
		{math.Inf(1), ".inf"}, {math.Inf(-1), "-.inf"}, {math.NaN(), ".nan"},
	}
	for _, tt := range tests {
		if got := formatFloat(tt.f); got != tt.want {
			t.Errorf("formatFloat(%v) = %q, want %q", tt.f, got, tt.want)
		}
	}
}

// TestValuesSurviveCloudInitParser renders user-data, meta-data and network-config full of
// awkward values and reads them back with cloud-init's own YAML loader, and with go-yaml: every
// value must come back exactly, with its type.
func TestValuesSurviveCloudInitParser(t *testing.T) {
	long := strings.Repeat("x: 'y' \"z\" #\n\t✓ ", 2000)
	strs := append(append([]string{}, trickyStrings...), long)

	var files, list []any
	keyed := map[string]any{}
	for i, s := range strs {
		files = append(files, map[string]any{"path": "/tmp/f" + string(rune('a'+i%26)), "content": s})
		list = append(list, s)
		if s != long { // a key of more than 1024 characters is refused, see TestLongKeyRefused
			keyed[s] = i // every tricky string as a mapping key, too
		}
	}
	// The longest key allowed: 2 quotes, 340 escaped backslashes and é's, 2 more: 1024 as written.
	keyed[strings.Repeat(`\é`, 340)+"ab"] = "longest"
	scalars := []any{
		0, -1, 42, int64(math.MaxInt64), int64(math.MinInt64), uint64(math.MaxUint64),
		0.0, math.Copysign(0, -1), 1.0, 100.0, 1.5, -2.25, 1e6, 1e21, 1.5e-7, 0.1,
		math.Inf(1), math.Inf(-1), math.NaN(), true, false, nil,
		map[string]any{}, []any{}, []any{[]any{}}, map[string]any{"": ""},
	}
	recipe := map[string]any{
		"write_files": files,
		"runcmd":      list,
		"x_keyed":     keyed,
		"x_scalars":   scalars,
		"x_nested":    map[string]any{"yes": map[string]any{"on": []any{map[string]any{"1:20": []any{"no", nil}}}}},
	}
	cfg := testConfig(t)
	cfg.UserData = recipe
	cfg.NetworkConfig = map[string]any{
		"version": 2,
		"ethernets": map[string]any{"on": map[string]any{
			"match":       map[string]any{"name": "en*", "macaddress": "52:54:00:12:34:56"},
			"set-name":    "yes",
			"dhcp4":       true,
			"nameservers": map[string]any{"search": []any{"no", "example.org"}},
		}},
	}
	seed, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}

	wantUser := mustNormalize(t, recipe)
	wantUser["users"] = []any{wantBuildUser(cfg)}
	wantUser["ssh_keys"] = wantSSHKeys(cfg)
	wantUser["ssh_pwauth"] = false
	wantNet := mustNormalize(t, cfg.NetworkConfig)
	wantMeta := map[string]any{"instance-id": cfg.InstanceID, "local-hostname": cfg.Hostname}

	docs := []struct {
		name string
		data []byte
		want map[string]any
	}{
		{UserDataFile, seed.UserData(), wantUser},
		{MetaDataFile, seed.MetaData(), wantMeta},
		{NetworkConfigFile, seed.NetworkConfig(), wantNet},
	}
	for _, d := range docs {
		t.Run(d.name, func(t *testing.T) {
			for parser, load := range map[string]func(*testing.T, []byte) map[string]any{
				"cloud-init (PyYAML)": pyLoad,
				"go-yaml":             goLoad,
			} {
				if got := load(t, d.data); !sameValue(d.want, got) {
					t.Errorf("%s reads %s differently:\n%s", parser, d.name, diff(d.name, d.want, got))
				}
			}
		})
	}
}

func TestLongKeyRefused(t *testing.T) {
	cfg := testConfig(t)
	cfg.UserData = map[string]any{"x": map[string]any{strings.Repeat(`\`, maxKeyLen/2): 1}}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "user_data.x: map key of 1026 characters") {
		t.Fatalf("got error %v, want a key length error", err)
	}
}

// TestQuotedOutputIsReadable pins a few renderings, so that a change in go-yaml's printer that
// would still parse back, but differently styled, is noticed.
func TestQuotedOutputIsReadable(t *testing.T) {
	out, err := marshal(map[string]any{
		"plain": "/bin/bash", "bool-like": "on", "mode": "0644", "multi": "a\nb", "key: colon": 1.0, "n": int64(3), "z": nil,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `bool-like: "on"
"key: colon": 1.0
mode: "0644"
multi: "a\nb"
"n": 3
plain: /bin/bash
z: null
`
	if string(out) != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
}
