package cloudinit

import (
	"fmt"
	"strings"
)

// cloudConfigHeader is the first line cloud-init requires of a cloud-config user-data document.
const cloudConfigHeader = "#cloud-config\n"

// renderUserData merges the recipe's user-data with ingot's build user and host keys (the rules
// are in the package comment) and encodes it.
func renderUserData(recipe map[string]any, buildUser string, user, sshKeys map[string]any) ([]byte, error) {
	doc, err := mergeRecipe(recipe, buildUser, user, sshKeys)
	if err != nil {
		return nil, err
	}
	body, err := marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("render cloud-init user-data: %w", err)
	}
	return append([]byte(cloudConfigHeader), body...), nil
}

// mergeRecipe returns a merged copy of recipe; recipe itself is not modified.
func mergeRecipe(recipe map[string]any, buildUser string, user, sshKeys map[string]any) (map[string]any, error) {
	doc, err := normalizeMap("user_data", recipe)
	if err != nil {
		return nil, err
	}
	ai, ok := doc["autoinstall"]
	if !ok {
		if err := addBuildAccess(doc, "user_data", buildUser, user, sshKeys, true); err != nil {
			return nil, err
		}
		return doc, nil
	}

	// Ubuntu autoinstall: the installed system's cloud-init gets ingot's access through
	// autoinstall.user-data; the rest of the document is the installer's and passes through.
	install, ok := ai.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("user_data.autoinstall: %s, want a mapping (the autoinstall config)", kind(ai))
	}
	target := map[string]any{}
	if ud := install["user-data"]; ud != nil {
		if target, ok = ud.(map[string]any); !ok {
			return nil, fmt.Errorf("user_data.autoinstall.user-data: %s, want a mapping (cloud-config)", kind(ud))
		}
	}
	if err := addBuildAccess(target, "user_data.autoinstall.user-data", buildUser, user, sshKeys, false); err != nil {
		return nil, err
	}
	install["user-data"] = target
	return doc, nil
}

// addBuildAccess adds the build user, the host keys and, for a plain cloud-config
// (cloudConfig true; false inside autoinstall), the cloud-config defaults.
func addBuildAccess(doc map[string]any, path, buildUser string, user, sshKeys map[string]any, cloudConfig bool) error {
	if _, ok := doc["ssh_keys"]; ok {
		return fmt.Errorf("%s.ssh_keys: ingot sets the guest's SSH host keys itself, to pin them before the first boot; remove ssh_keys from the recipe", path)
	}
	users, err := mergeUsers(doc, path, buildUser, user)
	if err != nil {
		return err
	}
	doc["users"] = users
	doc["ssh_keys"] = sshKeys
	if _, ok := doc["ssh_pwauth"]; !ok && cloudConfig {
		doc["ssh_pwauth"] = false
	}
	return nil
}

// mergeUsers returns the recipe's users with the build user appended (see the package comment:
// no "default" is added).
func mergeUsers(doc map[string]any, path, buildUser string, user map[string]any) ([]any, error) {
	var list []any
	switch v := doc["users"].(type) {
	case nil:
	case []any:
		list = v
	case string:
		// cloud-init also accepts "default, alice": a comma-separated list of names.
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				list = append(list, name)
			}
		}
	default:
		return nil, fmt.Errorf("%s.users: %s; ingot appends its build user to the list, so write users as a list", path, kind(v))
	}
	for i, u := range list {
		if userName(u) == buildUser {
			return nil, fmt.Errorf("%s.users[%d]: %q is ingot's build user; give the recipe's user another name", path, i, buildUser)
		}
	}
	return append(list, user), nil
}

// userName is the account an entry of cloud-init's users list names: the string itself, or a
// mapping's name.
func userName(entry any) string {
	switch e := entry.(type) {
	case string:
		return e
	case map[string]any:
		name, _ := e["name"].(string)
		return name
	}
	return ""
}

// renderNetworkConfig checks and encodes a network config version 2. cloud-init 22.2 and later
// accept it with or without a top-level "network" key; older ones only without, so that is how it
// is written.
func renderNetworkConfig(nc map[string]any) ([]byte, error) {
	path := "network_config"
	doc, err := normalizeMap(path, nc)
	if err != nil {
		return nil, err
	}
	if inner, ok := doc["network"]; ok {
		if len(doc) != 1 {
			return nil, fmt.Errorf("%s: a top-level network key must be the only key", path)
		}
		path += ".network"
		if doc, ok = inner.(map[string]any); !ok {
			return nil, fmt.Errorf("%s: %s, want a mapping", path, kind(inner))
		}
	}
	if v, ok := doc["version"].(int64); !ok || v != 2 {
		return nil, fmt.Errorf("%s.version: want the number 2, ingot writes network config version 2 only", path)
	}
	b, err := marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("render cloud-init network-config: %w", err)
	}
	return b, nil
}

// kind names a normalized value's YAML kind for error messages (never the value itself).
func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	}
	return "a number"
}
