package cloudinit

import (
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

func TestUserDataMerge(t *testing.T) {
	cfg := testConfig(t)
	user, keys := wantBuildUser(cfg), wantSSHKeys(cfg)

	tests := []struct {
		name   string
		recipe map[string]any
		want   map[string]any
	}{
		{
			name:   "no recipe user-data: the build user alone, no default account baked in",
			recipe: nil,
			want:   map[string]any{"users": []any{user}, "ssh_keys": keys, "ssh_pwauth": false},
		},
		{
			name: "recipe modules pass through unchanged",
			recipe: map[string]any{
				"packages":        []any{"qemu-guest-agent", "nginx"},
				"package_upgrade": true,
				"timezone":        "UTC",
				"runcmd":          []any{[]any{"sh", "-c", "echo hi > /tmp/x"}, "systemctl enable --now nginx"},
				"write_files": []any{map[string]any{
					"path": "/etc/motd", "content": "built by ingot\n", "permissions": "0644", "owner": "root:root",
				}},
				"ssh_deletekeys": false,
				"power_state":    map[string]any{"mode": "poweroff", "timeout": 30, "delay": "now"},
			},
			want: map[string]any{
				"packages":        []any{"qemu-guest-agent", "nginx"},
				"package_upgrade": true,
				"timezone":        "UTC",
				"runcmd":          []any{[]any{"sh", "-c", "echo hi > /tmp/x"}, "systemctl enable --now nginx"},
				"write_files": []any{map[string]any{
					"path": "/etc/motd", "content": "built by ingot\n", "permissions": "0644", "owner": "root:root",
				}},
				"ssh_deletekeys": false,
				"power_state":    map[string]any{"mode": "poweroff", "timeout": int64(30), "delay": "now"},
				"users":          []any{user},
				"ssh_keys":       keys,
				"ssh_pwauth":     false,
			},
		},
		{
			name:   "recipe users: build user appended",
			recipe: map[string]any{"users": []any{"default", map[string]any{"name": "alice", "groups": []any{"wheel"}}}},
			want: map[string]any{
				"users":    []any{"default", map[string]any{"name": "alice", "groups": []any{"wheel"}}, user},
				"ssh_keys": keys, "ssh_pwauth": false,
			},
		},
		{
			name:   "recipe users without default stay without it",
			recipe: map[string]any{"users": []any{map[string]any{"name": "alice"}}},
			want: map[string]any{
				"users":    []any{map[string]any{"name": "alice"}, user},
				"ssh_keys": keys, "ssh_pwauth": false,
			},
		},
		{
			name:   "empty users list means no default user",
			recipe: map[string]any{"users": []any{}},
			want:   map[string]any{"users": []any{user}, "ssh_keys": keys, "ssh_pwauth": false},
		},
		{
			name:   "null users means no default user",
			recipe: map[string]any{"users": nil},
			want:   map[string]any{"users": []any{user}, "ssh_keys": keys, "ssh_pwauth": false},
		},
		{
			name:   "comma-separated users string becomes a list",
			recipe: map[string]any{"users": "default, bob"},
			want:   map[string]any{"users": []any{"default", "bob", user}, "ssh_keys": keys, "ssh_pwauth": false},
		},
		{
			name:   "recipe ssh_pwauth wins",
			recipe: map[string]any{"ssh_pwauth": true},
			want:   map[string]any{"users": []any{user}, "ssh_keys": keys, "ssh_pwauth": true},
		},
		{
			name: "autoinstall: access goes into the installed system's user-data",
			recipe: map[string]any{"autoinstall": map[string]any{
				"version":  1,
				"identity": map[string]any{"hostname": "ubuntu", "username": "ubuntu", "password": "$6$x$y"},
				"ssh":      map[string]any{"install-server": true},
			}},
			want: map[string]any{"autoinstall": map[string]any{
				"version":   int64(1),
				"identity":  map[string]any{"hostname": "ubuntu", "username": "ubuntu", "password": "$6$x$y"},
				"ssh":       map[string]any{"install-server": true},
				"user-data": map[string]any{"users": []any{user}, "ssh_keys": keys},
			}},
		},
		{
			name: "autoinstall: recipe's user-data merged, outer document untouched",
			recipe: map[string]any{
				"ssh_pwauth": true, // the live installer's, not the target's
				"autoinstall": map[string]any{
					"version":   1,
					"ssh":       map[string]any{"install-server": true, "allow-pw": false},
					"user-data": map[string]any{"users": []any{map[string]any{"name": "alice"}}, "packages": []any{"htop"}},
				},
			},
			want: map[string]any{
				"ssh_pwauth": true,
				"autoinstall": map[string]any{
					"version": int64(1),
					"ssh":     map[string]any{"install-server": true, "allow-pw": false},
					"user-data": map[string]any{
						"users":    []any{map[string]any{"name": "alice"}, user},
						"packages": []any{"htop"},
						"ssh_keys": keys,
					},
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cfg
			c.UserData = tt.recipe
			before := mustNormalize(t, tt.recipe)
			seed, err := New(c)
			if err != nil {
				t.Fatal(err)
			}
			doc := seed.UserData()
			if !strings.HasPrefix(string(doc), "#cloud-config\n") {
				t.Fatalf("user-data does not start with #cloud-config:\n%s", doc)
			}
			if got := goLoad(t, doc); !sameValue(tt.want, got) {
				t.Errorf("user-data differs:\n%s\n%s", diff("user-data", tt.want, got), doc)
			}
			if after := mustNormalize(t, tt.recipe); !sameValue(before, after) {
				t.Errorf("New modified the recipe's map:\n%s", diff("recipe", before, after))
			}
		})
	}
}

type notYAML struct{ A int }

func TestUserDataMergeErrors(t *testing.T) {
	selfRef := map[string]any{}
	selfRef["loop"] = selfRef

	tests := []struct {
		name    string
		recipe  map[string]any
		wantErr string
	}{
		{"recipe sets ssh_keys", map[string]any{"ssh_keys": map[string]any{"rsa_private": "x"}}, "user_data.ssh_keys: ingot sets the guest's SSH host keys"},
		{"autoinstall user-data sets ssh_keys", map[string]any{"autoinstall": map[string]any{"version": 1, "user-data": map[string]any{"ssh_keys": map[string]any{}}}}, "user_data.autoinstall.user-data.ssh_keys"},
		{"users as a mapping", map[string]any{"users": map[string]any{"alice": map[string]any{}}}, "user_data.users: a mapping"},
		{"users names the build user", map[string]any{"users": []any{"default", "ingot"}}, `user_data.users[1]: "ingot" is ingot's build user`},
		{"users entry names the build user", map[string]any{"users": []any{map[string]any{"name": "ingot"}}}, `user_data.users[0]: "ingot"`},
		{"users string names the build user", map[string]any{"users": "default,ingot"}, `user_data.users[1]`},
		{"autoinstall users name the build user", map[string]any{"autoinstall": map[string]any{"user-data": map[string]any{"users": []any{"ingot"}}}}, `user_data.autoinstall.user-data.users[0]`},
		{"autoinstall not a mapping", map[string]any{"autoinstall": "yes"}, "user_data.autoinstall: a string, want a mapping"},
		{"autoinstall user-data not a mapping", map[string]any{"autoinstall": map[string]any{"user-data": []any{}}}, "user_data.autoinstall.user-data: a list, want a mapping"},
		{"struct value", map[string]any{"x": []any{notYAML{1}}}, "user_data.x[0]: value of type cloudinit.notYAML"},
		{"bytes value", map[string]any{"write_files": []any{map[string]any{"content": []byte("x")}}}, "user_data.write_files[0].content: []uint8"},
		{"non-string map key", map[string]any{"x": map[int]any{1: "a"}}, "user_data.x: map key of type int"},
		{"non-string key in map[any]any", map[string]any{"x": map[any]any{true: "a"}}, "user_data.x: map key of type bool"},
		{"invalid UTF-8", map[string]any{"runcmd": []any{"echo \xff"}}, "user_data.runcmd[0]: string is not valid UTF-8"},
		{"self-referencing map", selfRef, "nested deeper than"},
		{"duplicate key in an ordered map", map[string]any{"x": yaml.MapSlice{{Key: "a", Value: 1}, {Key: "a", Value: 2}}}, `user_data.x: duplicate key "a"`},
		{"non-string key in an ordered map", map[string]any{"x": yaml.MapSlice{{Key: 1, Value: 1}}}, "user_data.x: map key of type int"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.UserData = tt.recipe
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New: got error %v, want one containing %q", err, tt.wantErr)
			}
			// The plan-time check refuses the same recipes.
			if err := CheckRecipe(tt.recipe, nil, cfg.BuildUser.Name); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("CheckRecipe: got error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestCheckRecipeAccepts(t *testing.T) {
	recipe := map[string]any{"users": []any{"default"}, "packages": []any{"git"}}
	network := map[string]any{"network": map[string]any{"version": 2, "ethernets": map[string]any{}}}
	if err := CheckRecipe(recipe, network, "ingot"); err != nil {
		t.Fatal(err)
	}
	if err := CheckRecipe(nil, map[string]any{"version": 1}, "ingot"); err == nil {
		t.Fatal("CheckRecipe accepted network config version 1")
	}
}

func TestUserDataAcceptsGoTypes(t *testing.T) {
	// Go callers (the end-to-end test, bake) may pass typed maps and slices, not only decoded YAML.
	type mode string
	cfg := testConfig(t)
	n := 7
	cfg.UserData = map[string]any{
		"packages":    []string{"a", "b"},
		"write_files": []map[string]string{{"path": "/x", "content": "y"}},
		"ints":        []any{int8(-1), uint16(2), &n, uint64(1 << 63)},
		"floats":      []float32{0.5},
		"named":       mode("on"),
		"nilptr":      (*int)(nil),
		"ordered":     yaml.MapSlice{{Key: "b", Value: 1}, {Key: "a", Value: "x"}},
	}
	seed, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := goLoad(t, seed.UserData())
	want := map[string]any{
		"packages":    []any{"a", "b"},
		"write_files": []any{map[string]any{"path": "/x", "content": "y"}},
		"ints":        []any{int64(-1), int64(2), int64(7), uint64(1 << 63)},
		"floats":      []any{0.5},
		"named":       "on",
		"nilptr":      nil,
		"ordered":     map[string]any{"a": "x", "b": int64(1)},
	}
	for k, w := range want {
		if !sameValue(w, got[k]) {
			t.Errorf("%s", diff(k, w, got[k]))
		}
	}
}

func TestNetworkConfig(t *testing.T) {
	eth := map[string]any{"id0": map[string]any{"match": map[string]any{"name": "en*"}, "dhcp4": true}}
	want := map[string]any{"version": int64(2), "ethernets": eth}
	tests := []struct {
		name    string
		in      map[string]any
		wantErr string
	}{
		{"bare version 2", map[string]any{"version": 2, "ethernets": eth}, ""},
		{"wrapped in network", map[string]any{"network": map[string]any{"version": 2, "ethernets": eth}}, ""},
		{"version 1", map[string]any{"version": 1, "config": []any{}}, "network_config.version: want the number 2"},
		{"version as a string", map[string]any{"version": "2"}, "network_config.version"},
		{"no version", map[string]any{"ethernets": eth}, "network_config.version"},
		{"network beside other keys", map[string]any{"network": map[string]any{"version": 2}, "version": 2}, "must be the only key"},
		{"network not a mapping", map[string]any{"network": []any{}}, "network_config.network: a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.NetworkConfig = tt.in
			seed, err := New(cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := goLoad(t, seed.NetworkConfig()); !sameValue(want, got) {
				t.Errorf("network-config differs:\n%s", diff("network-config", want, got))
			}
		})
	}

	seed, err := New(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if seed.NetworkConfig() != nil {
		t.Error("a seed without network config has a network-config document")
	}
	for _, f := range seed.Files() {
		if f.Name == NetworkConfigFile {
			t.Error("a seed without network config has a network-config file")
		}
	}
}
