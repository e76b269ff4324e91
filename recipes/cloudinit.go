package recipes

import (
	"strings"
)

// cloudInit reads cloud_init:, the recipe's part of the seed, kept as decoded YAML.
func (d *decoder) cloudInit(top *fields) CloudInit {
	c := CloudInit{SeedFormat: "iso", Pos: top.at}
	f, ok := d.sub(top, "cloud_init", yamlKeys[CloudInit]())
	if !ok {
		return c
	}
	c.Pos = d.positions["cloud_init"]
	for _, k := range []string{"user_data", "network_config"} {
		n, ok := f.get(k)
		if !ok {
			continue
		}
		p := f.child(k)
		v, ok := d.value(p, n, 0)
		if !ok || v == nil {
			continue
		}
		m, isMap := v.(map[string]any)
		if !isMap {
			hint := ""
			if s, isString := v.(string); isString && strings.HasPrefix(strings.TrimSpace(s), "#cloud-config") {
				hint = "write the cloud-config as YAML under " + k + ": (without the #cloud-config line); ingot merges it with its own"
			}
			d.errorf(d.at(d.resolve(p, n)), p, hint, "want a mapping, got %s", kindOf(d.resolve(p, n)))
			continue
		}
		if k == "user_data" {
			c.UserData = m
		} else {
			c.NetworkConfig = m
		}
	}
	if n, ok := f.get("seed_format"); ok {
		c.SeedFormat, _ = d.enum(f.child("seed_format"), n, "iso", "vfat")
	}
	return c
}
