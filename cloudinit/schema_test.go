package cloudinit

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// schemaCheck runs cloud-init's own schema validator on a user-data document. It passes only when
// the tool exits 0, says the document is valid, and reports no deprecation (which cloud-init
// prints but does not fail on, and which newer releases turn into errors).
func schemaCheck(t *testing.T, doc []byte) (ok bool, output string) {
	t.Helper()
	ci := lookTool(t, "cloud-init", "cloud-init")
	path := filepath.Join(t.TempDir(), "user-data")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), ci, "schema", "-c", path).CombinedOutput()
	if _, exited := err.(*exec.ExitError); err != nil && !exited {
		t.Fatalf("run %s schema: %v", ci, err)
	}
	valid := err == nil && bytes.Contains(out, []byte("Valid cloud-config")) &&
		!bytes.Contains(bytes.ToLower(out), []byte("deprecat"))
	return valid, string(out)
}

func TestUserDataPassesCloudInitSchema(t *testing.T) {
	tests := []struct {
		name      string
		recipe    map[string]any
		hostKeys  []string
		wantValid bool
	}{
		{name: "ingot's additions alone", wantValid: true},
		{
			name:     "every host key type",
			hostKeys: []string{"ed25519", "rsa", "ecdsa"},
			recipe:   map[string]any{"users": []any{"default"}},
			// rsa keys are slow to make; one case is enough.
			wantValid: true,
		},
		{
			name: "a realistic recipe",
			recipe: map[string]any{
				"package_update":  true,
				"package_upgrade": false,
				"packages":        []any{"qemu-guest-agent", "nginx"},
				"timezone":        "Europe/Berlin",
				"locale":          "en_US.UTF-8",
				"users":           []any{"default", map[string]any{"name": "alice", "groups": "adm,sudo", "shell": "/bin/zsh"}},
				"write_files": []any{map[string]any{
					"path": "/etc/motd", "content": "welcome: 'x' \"y\" # z\n✓\n", "permissions": "0644", "owner": "root:root",
				}},
				"runcmd":      []any{[]any{"sh", "-c", "echo 'yes: no' >> /tmp/x"}, "systemctl enable --now nginx"},
				"bootcmd":     []any{"echo on"},
				"power_state": map[string]any{"mode": "poweroff", "timeout": 30, "condition": true},
				"growpart":    map[string]any{"mode": "auto", "devices": []any{"/"}},
			},
			wantValid: true,
		},
		{
			name: "Ubuntu autoinstall",
			recipe: map[string]any{"autoinstall": map[string]any{
				"version": 1,
				"ssh":     map[string]any{"install-server": true},
				"storage": map[string]any{"layout": map[string]any{"name": "direct"}},
			}},
			wantValid: true,
		},
		// Negative controls: the recipe's own mistakes pass through, and the check must catch them,
		// or the positive cases above prove nothing.
		{name: "invalid: runcmd as a mapping", recipe: map[string]any{"runcmd": map[string]any{"a": 1}}, wantValid: false},
		{name: "invalid: ssh_pwauth as a list", recipe: map[string]any{"ssh_pwauth": []any{1}}, wantValid: false},
		{name: "deprecated: lock-passwd", recipe: map[string]any{"users": []any{map[string]any{"name": "a", "lock-passwd": true}}}, wantValid: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // each case runs cloud-init, which takes half a second to start
			cfg := testConfig(t)
			cfg.UserData = tt.recipe
			if tt.hostKeys != nil {
				cfg.HostKeys = nil
				for _, algo := range tt.hostKeys {
					cfg.HostKeys = append(cfg.HostKeys, newHostKey(t, algo))
				}
			}
			seed, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			docs := map[string][]byte{"user-data": seed.UserData()}
			if ai, ok := goLoad(t, seed.UserData())["autoinstall"].(map[string]any); ok {
				// The installed system's cloud-config, where ingot's access went, is checked on its
				// own: cloud-init's schema does not look inside autoinstall.
				inner, err := marshal(ai["user-data"].(map[string]any))
				if err != nil {
					t.Fatal(err)
				}
				docs["autoinstall.user-data"] = append([]byte(cloudConfigHeader), inner...)
			}
			for name, doc := range docs {
				if ok, out := schemaCheck(t, doc); ok != tt.wantValid {
					t.Errorf("%s: cloud-init schema says valid=%v, want %v:\n%s\n--- document:\n%s", name, ok, tt.wantValid, out, doc)
				}
			}
		})
	}
}

// netCheckScript parses a network config with cloud-init's own parser, strictly, the way the
// guest will when it renders it for netplan, networkd or ifupdown.
const netCheckScript = `
import sys
from cloudinit import safeyaml
from cloudinit.net.network_state import parse_net_config_data
parse_net_config_data(safeyaml.load(sys.stdin.buffer.read().decode("utf-8")), skip_broken=False)
`

func TestNetworkConfigAcceptedByCloudInit(t *testing.T) {
	tests := []struct {
		name   string
		config map[string]any
		wantOK bool
	}{
		{"dhcp on a matched NIC", map[string]any{"version": 2, "ethernets": map[string]any{
			"nic0": map[string]any{"match": map[string]any{"name": "en*"}, "dhcp4": true, "dhcp6": false},
		}}, true},
		{"static address, wrapped in network", map[string]any{"network": map[string]any{"version": 2, "ethernets": map[string]any{
			"eth0": map[string]any{
				"addresses":   []any{"10.0.2.15/24"},
				"routes":      []any{map[string]any{"to": "0.0.0.0/0", "via": "10.0.2.2"}}, // "default" needs cloud-init 23.1
				"nameservers": map[string]any{"addresses": []any{"10.0.2.3"}, "search": []any{"example.org"}},
			},
		}}}, true},
		// Negative controls: ingot only checks the version; cloud-init must reject these.
		{"invalid: ethernets as a number", map[string]any{"version": 2, "ethernets": 5}, false},
		{"invalid: address not an IP", map[string]any{"version": 2, "ethernets": map[string]any{
			"eth0": map[string]any{"addresses": []any{"not-an-ip"}},
		}}, false},
	}
	python := cloudInitPython(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.NetworkConfig = tt.config
			seed, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.CommandContext(t.Context(), python, "-c", netCheckScript)
			cmd.Stdin = bytes.NewReader(seed.NetworkConfig())
			out, err := cmd.CombinedOutput()
			if _, exited := err.(*exec.ExitError); err != nil && !exited {
				t.Fatal(err)
			}
			if ok := err == nil; ok != tt.wantOK {
				t.Errorf("cloud-init accepts=%v, want %v: %s\n--- network-config:\n%s", ok, tt.wantOK,
					strings.TrimSpace(string(out)), seed.NetworkConfig())
			}
		})
	}
}
