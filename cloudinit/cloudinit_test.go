package cloudinit

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestNewRejectsBadConfig(t *testing.T) {
	other := newHostKey(t, "ed25519")
	tests := []struct {
		name    string
		edit    func(t *testing.T, c *Config)
		wantErr string
	}{
		{"empty instance-id", func(_ *testing.T, c *Config) { c.InstanceID = "" }, "instance-id"},
		{"instance-id with a slash", func(_ *testing.T, c *Config) { c.InstanceID = "a/../b" }, "instance-id"},
		{"instance-id with a newline", func(_ *testing.T, c *Config) { c.InstanceID = "a\nb" }, "instance-id"},
		{"hostname with underscore", func(_ *testing.T, c *Config) { c.Hostname = "my_host" }, "local-hostname"},
		{"hostname with a leading dash", func(_ *testing.T, c *Config) { c.Hostname = "-x" }, "local-hostname"},
		{"hostname with an empty label", func(_ *testing.T, c *Config) { c.Hostname = "a..b" }, "local-hostname"},
		{"hostname label too long", func(_ *testing.T, c *Config) { c.Hostname = strings.Repeat("a", 64) }, "local-hostname"},
		{"build user upper-case", func(_ *testing.T, c *Config) { c.BuildUser.Name = "Ingot" }, "build user name"},
		{"build user empty", func(_ *testing.T, c *Config) { c.BuildUser.Name = "" }, "build user name"},
		{"build user root", func(_ *testing.T, c *Config) { c.BuildUser.Name = "root" }, "reserved"},
		{"build user default", func(_ *testing.T, c *Config) { c.BuildUser.Name = "default" }, "reserved"},
		{"no authorized key", func(_ *testing.T, c *Config) { c.BuildUser.AuthorizedKeys = nil }, "no authorized key"},
		{"garbage authorized key", func(_ *testing.T, c *Config) { c.BuildUser.AuthorizedKeys = []string{"ssh-ed25519 notbase64"} }, "authorized key 0"},
		{"two keys on one line", func(t *testing.T, c *Config) {
			c.BuildUser.AuthorizedKeys = []string{authorizedKey(t) + "\n" + authorizedKey(t)}
		}, "spans several lines"},
		{"no host key", func(_ *testing.T, c *Config) { c.HostKeys = nil }, "no SSH host key"},
		{"host key halves from two pairs", func(_ *testing.T, c *Config) { c.HostKeys[0].Private = other.Private }, "does not match"},
		{"host key private not a key", func(_ *testing.T, c *Config) { c.HostKeys[0].Private = []byte("nope") }, "private key"},
		{"host key public not a key", func(_ *testing.T, c *Config) { c.HostKeys[0].Public = "nope" }, "public key"},
		{"two ed25519 host keys", func(t *testing.T, c *Config) { c.HostKeys = append(c.HostKeys, newHostKey(t, "ed25519")) }, "a second ed25519 key"},
		{"encrypted host key", func(t *testing.T, c *Config) {
			block, _ := pem.Decode(c.HostKeys[0].Private)
			raw, err := ssh.ParseRawPrivateKey(pem.EncodeToMemory(block))
			if err != nil {
				t.Fatal(err)
			}
			enc, err := ssh.MarshalPrivateKeyWithPassphrase(raw, "", []byte("secret"))
			if err != nil {
				t.Fatal(err)
			}
			c.HostKeys[0].Private = pem.EncodeToMemory(enc)
		}, "private key"},
		{"unknown format", func(_ *testing.T, c *Config) { c.Format = "udf" }, `format "udf"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			tt.edit(t, &cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			}
			for _, k := range append(cfg.HostKeys, other) {
				if len(k.Private) > 0 && strings.Contains(err.Error(), string(k.Private)) || strings.Contains(err.Error(), "PRIVATE KEY") {
					t.Fatalf("error leaks a private key: %v", err)
				}
			}
		})
	}
}

func TestHostKeyTypes(t *testing.T) {
	cfg := testConfig(t)
	cfg.HostKeys = []HostKey{newHostKey(t, "ed25519"), newHostKey(t, "rsa"), newHostKey(t, "ecdsa")}
	// A key file without its final newline is refused by OpenSSH; the seed must add it.
	cfg.HostKeys[1].Private = bytes.TrimRight(cfg.HostKeys[1].Private, "\n")

	seed, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := goLoad(t, seed.UserData())["ssh_keys"]
	want := map[string]any{}
	for i, name := range []string{"ed25519", "rsa", "ecdsa"} {
		private := string(cfg.HostKeys[i].Private)
		if !strings.HasSuffix(private, "\n") {
			private += "\n"
		}
		want[name+"_private"] = private
		want[name+"_public"] = cfg.HostKeys[i].Public
	}
	if !sameValue(want, got) {
		t.Errorf("ssh_keys differ:\n%s", diff("ssh_keys", want, got))
	}
}

func TestMetaData(t *testing.T) {
	tests := []struct {
		name, hostname string
		want           map[string]any
	}{
		{"with hostname", "web-1.example.org", map[string]any{"instance-id": "ingot-0123abcd", "local-hostname": "web-1.example.org"}},
		{"without hostname", "", map[string]any{"instance-id": "ingot-0123abcd"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Hostname = tt.hostname
			seed, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := goLoad(t, seed.MetaData()); !sameValue(tt.want, got) {
				t.Errorf("meta-data differs:\n%s", diff("meta-data", tt.want, got))
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	// Go randomizes map iteration, so rendering a wide map many times would expose any order that
	// leaked from it into the output.
	cfg := testConfig(t)
	wide := map[string]any{}
	for i := range 200 {
		wide[fmt.Sprintf("k%03d", i)] = map[string]any{"b": i, "a": []any{i, "x"}, "c": nil}
	}
	cfg.UserData = map[string]any{"x_wide": wide, "packages": []any{"b", "a"}}
	cfg.NetworkConfig = map[string]any{"version": 2, "ethernets": map[string]any{"b": map[string]any{}, "a": map[string]any{}}}

	first, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		again, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for i, f := range again.Files() {
			if !bytes.Equal(f.Data, first.Files()[i].Data) {
				t.Fatalf("%s differs between two renderings of the same config", f.Name)
			}
		}
	}
	// Sorted keys: the fixed order is part of the contract, check it on the top level.
	var keys []string
	for _, line := range strings.Split(string(first.UserData()), "\n") {
		if k, _, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "-") {
			keys = append(keys, k)
		}
	}
	if got, want := strings.Join(keys, ","), "packages,ssh_keys,ssh_pwauth,users,x_wide"; got != want {
		t.Errorf("top-level keys in order %s, want %s", got, want)
	}
}

func TestSeedAccessorsReturnCopies(t *testing.T) {
	seed, err := New(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	ud := seed.UserData()
	clear(ud)
	md := seed.MetaData()
	clear(md)
	if bytes.Equal(seed.UserData(), ud) || bytes.Equal(seed.MetaData(), md) {
		t.Fatal("changing a returned document changed the seed")
	}
}

func TestSecretsStayOutOfLogs(t *testing.T) {
	cfg := testConfig(t)
	seed, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	log.Info("seed", "seed", seed, "key", cfg.HostKeys[0])
	fmt.Fprintf(&buf, "%v %+v %#v %s", cfg.HostKeys[0], cfg.HostKeys, cfg.HostKeys[0], cfg.HostKeys[0])
	out := buf.String()
	if strings.Contains(out, "PRIVATE KEY") || strings.Contains(out, string(cfg.HostKeys[0].Private)) {
		t.Fatalf("private key printed:\n%s", out)
	}
	if !strings.Contains(out, cfg.HostKeys[0].Public) || !strings.Contains(out, cfg.InstanceID) {
		t.Fatalf("log lines lost the useful, public parts:\n%s", out)
	}
}
