package bake

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ingot-build/ingot/recipes"
)

const testToken = "tok-0123456789abc"

// A build with a secret: the step that names it gets it (as SecretEnv, which the communicator
// sends on stdin), no checkpoint is taken from that step on, and neither the step's streamed
// output nor the error of a later failing step shows the value.
func TestFakeBuildSecrets(t *testing.T) {
	e := newFakeBuildIn(t, t.TempDir(), func(r string) string {
		r = strings.Replace(r, "  - shell: echo one\n", "  - shell: { inline: echo one, secrets: [TOKEN] }\n", 1)
		return r + "secrets:\n  TOKEN: { env: INGOT_TEST_TOKEN }\n"
	}, func(o *Options) {
		o.Getenv = func(k string) (string, bool) {
			if k == "INGOT_TEST_TOKEN" {
				return testToken, true
			}
			return "", false
		}
	})
	e.guest.reply = func(action string) string {
		if strings.HasPrefix(action, "run sudo echo one") {
			return "+ curl -H 'Authorization: " + testToken + "'\n"
		}
		return ""
	}
	e.guest.act = failOn("run sudo make-it-fail", errors.New("the server said: bad token "+testToken))
	// What Build does with the build newBuild made, wired here to the fake guest.
	_, err := e.b.bake(context.Background())
	err = e.b.secrets.Error(err)
	if err == nil || strings.Contains(err.Error(), testToken) || !strings.Contains(err.Error(), "bad token [secret TOKEN]") {
		t.Errorf("error = %v", err)
	}
	if strings.Contains(e.log.String(), testToken) || !strings.Contains(e.log.String(), "Authorization: [secret TOKEN]") {
		t.Errorf("the log:\n%s", e.log)
	}
	var got []byte
	for _, c := range e.guest.cmds {
		if c.Command == "echo one" {
			got = c.SecretEnv["TOKEN"]
		}
	}
	if string(got) != testToken {
		t.Errorf("the step got TOKEN=%q", got)
	}
	keys, err := e.b.checkpointKeys()
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys[1:] {
		if k != "" {
			t.Errorf("the checkpoint after provision[%d] has a key: a checkpoint would hold the secret", i)
		}
	}
}

func TestResolveSecrets(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key, short := write("key", "-----BEGIN KEY-----\nabcdefgh\n"), write("short", "abc\n")
	env := func(k string) (string, bool) {
		v, ok := map[string]string{"GOOD": "a-long-enough-value", "EMPTY": ""}[k]
		return v, ok
	}
	tests := []struct {
		name    string
		secrets map[string]recipes.Secret
		want    string // "" for success
	}{
		{"env and file", map[string]recipes.Secret{"A": {Env: "GOOD"}, "B": {File: key}}, ""},
		{"unset", map[string]recipes.Secret{"A": {Env: "NOPE", Pos: recipes.Pos{File: "r.yaml", Line: 3, Col: 3}}}, "r.yaml:3:3: secrets.A: the environment variable NOPE is not set"},
		{"empty", map[string]recipes.Secret{"A": {Env: "EMPTY"}}, "the environment variable EMPTY is not set"},
		{"a file gone", map[string]recipes.Secret{"A": {File: filepath.Join(dir, "gone")}}, "secrets.A: read the secret's file"},
		{"too short", map[string]recipes.Secret{"A": {File: short}}, "secret A: 3 bytes; a secret must be at least 8 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := resolveSecrets(&recipes.Recipe{File: "r.yaml", Secrets: tt.secrets}, env)
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want == "" && set.Len() != len(tt.secrets):
				t.Errorf("%d secrets, want %d", set.Len(), len(tt.secrets))
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestScanFindingsAndAllow(t *testing.T) {
	allow := []recipes.ScanAllow{
		{Pattern: "private-key", Path: "/etc/ssl/private/*.key", Reason: "snakeoil"},
		{Secret: "LICENSE", Reason: "the product's license key is meant to ship"},
	}
	tests := []struct {
		f       finding
		allowed bool
	}{
		{finding{Pattern: "private-key", Path: "/etc/ssl/private/ssl-cert-snakeoil.key"}, true},
		{finding{Pattern: "private-key", Path: "/root/.ssh/id_ed25519"}, false},
		{finding{Pattern: "aws-access-key", Path: "/etc/ssl/private/x.key"}, false},
		{finding{Secret: "LICENSE", Path: "/opt/app/license"}, true},
		{finding{Secret: "LICENSE", Offset: 4096, Count: 1}, true},
		{finding{Secret: "DB_PASSWORD", Path: "/etc/app/token"}, false},
		{finding{Pattern: "private-key", Offset: 1 << 20, Count: 2}, false}, // no path: a path glob cannot allow it
	}
	for _, tt := range tests {
		if _, ok := allowedBy(tt.f, allow); ok != tt.allowed {
			t.Errorf("%v: allowed %v, want %v", tt.f, ok, tt.allowed)
		}
	}

	b := &build{r: &recipes.Recipe{SecretScan: recipes.SecretScan{Allow: allow}}, log: slog.New(slog.DiscardHandler)}
	b.scanFound = []finding{tests[0].f, tests[1].f, tests[5].f}
	err := b.scan(context.Background())
	var se *ScanError
	if !errors.As(err, &se) || len(se.Findings) != 2 {
		t.Fatalf("scan = %v, want a ScanError of 2 findings", err)
	}
	for _, want := range []string{"credential pattern private-key in /root/.ssh/id_ed25519", "secret DB_PASSWORD in /etc/app/token", "secret_scan: { allow:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error lacks %q:\n%v", want, err)
		}
	}
	if s := (finding{Secret: "A", Offset: 8192, Count: 3}).String(); !strings.Contains(s, "in no file of the image the scan could name, 3 time(s), first at byte 8192") {
		t.Errorf("String() = %q", s)
	}
	b.scanFound = b.scanFound[:1]
	if err := b.scan(context.Background()); err != nil {
		t.Errorf("an allowed finding failed the scan: %v", err)
	}
}
