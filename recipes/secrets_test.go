package recipes

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const secretsBase = "name: t\nsource:\n  disk: { url: https://example.org/t.qcow2, sha256: " + emptySHA256 + " }\n"

func TestSecretsDecode(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "key"), []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := LoadBytes("t.yaml", []byte(secretsBase+`secrets:
  DB_PASSWORD: { env: APP_DB_PASSWORD }
  DEPLOY_KEY: { file: key }
provision:
  - shell: { inline: ./setup, secrets: [DB_PASSWORD], stdin: DEPLOY_KEY }
  - shell: echo no secrets
secret_scan:
  allow:
    - { pattern: private-key, path: /etc/ssl/private/ssl-cert-snakeoil.key, reason: made by ssl-cert at install }
`), dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.SecretNames(); !slices.Equal(got, []string{"DB_PASSWORD", "DEPLOY_KEY"}) {
		t.Errorf("SecretNames = %v", got)
	}
	if s := r.Secrets["DEPLOY_KEY"]; s.File != filepath.Join(dir, "key") || s.Env != "" {
		t.Errorf("DEPLOY_KEY = %+v", s)
	}
	if s := r.Secrets["DB_PASSWORD"]; s.Env != "APP_DB_PASSWORD" {
		t.Errorf("DB_PASSWORD = %+v", s)
	}
	sh := r.Provision[0].Shell
	if !slices.Equal(sh.Secrets, []string{"DB_PASSWORD"}) || sh.Stdin != "DEPLOY_KEY" || !r.Provision[0].UsesSecrets() || r.Provision[1].UsesSecrets() {
		t.Errorf("step 0 = %+v", sh)
	}
	if a := r.SecretScan.Allow; len(a) != 1 || a[0].Pattern != "private-key" || a[0].Reason == "" {
		t.Errorf("allow = %+v", a)
	}
}

func TestSecretsErrors(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"undeclared, with a suggestion", "secrets:\n  DB_PASSWORD: { env: X1 }\nprovision:\n  - shell: { inline: x, secrets: [DB_PASWORD] }\n",
			`t.yaml:7:35: provision[0].shell.secrets[0]: secret "DB_PASWORD" is not declared; did you mean "DB_PASSWORD"?`},
		{"undeclared stdin", "provision:\n  - shell: { inline: x, stdin: KEY }\n",
			`provision[0].shell.stdin: secret "KEY" is not declared; declare it: secrets: { KEY: { env: KEY } }`},
		{"both sources", "secrets:\n  A: { env: X1, file: /etc/hostname }\n", "secrets.A.file: conflicts with env; a secret comes from one place"},
		{"no source", "secrets:\n  A: {}\n", "secrets.A: says neither where the value comes from"},
		{"not a variable name", "secrets:\n  A: { env: 'my var' }\n", `secrets.A.env: "my var" is not an environment variable name`},
		{"a missing file", "secrets:\n  A: { file: /nonexistent/key }\n", "secrets.A.file: /nonexistent/key does not exist"},
		{"a bad name", "secrets:\n  my-key: { env: X1 }\n", `secrets.my-key: "my-key" is not a valid secret name`},
		{"listed twice", "secrets:\n  A: { env: X1 }\nprovision:\n  - shell: { inline: x, secrets: [A, A] }\n", `provision[0].shell.secrets[1]: "A" is listed twice`},
		{"also in env", "secrets:\n  A: { env: X1 }\nprovision:\n  - shell: { inline: x, env: { A: b }, secrets: [A] }\n", `provision[0].shell.secrets[0]: "A" is also set by env`},
		{"allow without a reason", "secret_scan:\n  allow:\n    - { pattern: private-key }\n", "secret_scan.allow[0].reason: is missing; add reason: why the image may hold this"},
		{"allow of nothing", "secret_scan:\n  allow:\n    - { reason: because }\n", "secret_scan.allow[0]: allows nothing in particular"},
		{"allow of an undeclared secret", "secret_scan:\n  allow:\n    - { secret: NOPE, reason: r }\n", `secret_scan.allow[0].secret: secret "NOPE" is not declared`},
		{"allow of a relative path", "secret_scan:\n  allow:\n    - { path: etc/key, reason: r }\n", `secret_scan.allow[0].path: "etc/key" is not an absolute path glob`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadBytes("t.yaml", []byte(secretsBase+tt.yaml), t.TempDir(), nil, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v\nwant %q", err, tt.want)
			}
		})
	}
}

// Where a secret comes from is in no canonical form (a hash of a file secret would let anyone
// with a manifest test guesses), and neither is its value; the steps name what they use.
func TestSecretsNotInCanonical(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	if err := os.WriteFile(key, []byte("s3cret-value-in-a-file"), 0o600); err != nil {
		t.Fatal(err)
	}
	forms := func(secrets string) string {
		r, err := LoadBytes("t.yaml", []byte(secretsBase+secrets+"provision:\n  - shell: { inline: x, secrets: [A] }\n"), dir, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		c, err := r.Canonical()
		if err != nil {
			t.Fatal(err)
		}
		return string(c)
	}
	a := forms("secrets:\n  A: { env: X1 }\n")
	for _, other := range []string{"secrets:\n  A: { env: X2 }\n", "secrets:\n  A: { file: key }\n", "secrets:\n  A: { file: key }\n  B: { env: X3 }\n"} {
		if b := forms(other); b != a {
			t.Errorf("%q changes the recipe's form:\n%s\n%s", other, a, b)
		}
	}
	for _, leak := range []string{"X1", "key", "s3cret"} {
		if strings.Contains(a, leak) {
			t.Errorf("the form holds %q: %s", leak, a)
		}
	}
}
