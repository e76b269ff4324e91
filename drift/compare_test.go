package drift

import (
	"reflect"
	"slices"
	"testing"

	"github.com/ingot-build/ingot/manifest"
)

func file(path, mode string, size int64, sha string) manifest.Entry {
	return manifest.Entry{Path: path, Type: "file", Mode: mode, Size: size, SHA256: sha}
}

func dir(path, mode string) manifest.Entry {
	return manifest.Entry{Path: path, Type: "dir", Mode: mode, Size: 4096}
}

func link(path, target string) manifest.Entry {
	return manifest.Entry{Path: path, Type: "symlink", Mode: "0777", Size: int64(len(target)), Target: target}
}

func owned(e manifest.Entry, uid, gid int) manifest.Entry {
	e.UID, e.GID = uid, gid
	return e
}

func side(label string, pkgs []manifest.Package, inv []manifest.Entry) Side {
	return Side{Label: label, Manifest: &manifest.Manifest{Name: "web", BuildID: label, Packages: pkgs}, Inventory: inv}
}

func pkgs(nv ...string) []manifest.Package {
	var out []manifest.Package
	for i := 0; i < len(nv); i += 2 {
		out = append(out, manifest.Package{Name: nv[i], Version: nv[i+1]})
	}
	return out
}

func TestComparePackages(t *testing.T) {
	tests := []struct {
		name string
		a, b []manifest.Package
		want Packages
	}{
		{"nothing", nil, nil, Packages{}},
		{"same", pkgs("bash", "5.2.15-2+b2"), pkgs("bash", "5.2.15-2+b2"), Packages{}},
		{"added and removed",
			pkgs("bash", "5.2.15-2+b2", "vim-tiny", "2:9.0.1378-2"),
			pkgs("bash", "5.2.15-2+b2", "nginx", "1.22.1-9"),
			Packages{Added: pkgs("nginx", "1.22.1-9"), Removed: pkgs("vim-tiny", "2:9.0.1378-2")}},
		{"a security update is an upgrade",
			pkgs("openssl", "3.0.11-1~deb12u1"), pkgs("openssl", "3.0.11-1~deb12u2"),
			Packages{Upgraded: []PackageChange{{"openssl", "3.0.11-1~deb12u1", "3.0.11-1~deb12u2"}}}},
		{"tilde sorts before the release it precedes",
			pkgs("tzdata", "2024a-0+deb12u1"), pkgs("tzdata", "2024a-0~deb12u1"),
			Packages{Downgraded: []PackageChange{{"tzdata", "2024a-0+deb12u1", "2024a-0~deb12u1"}}}},
		{"an epoch outranks the version: 1:2.3-1 is above 2.3-1+deb12u1",
			pkgs("foo", "1:2.3-1"), pkgs("foo", "2.3-1+deb12u1"),
			Packages{Downgraded: []PackageChange{{"foo", "1:2.3-1", "2.3-1+deb12u1"}}}},
		{"and the other way round",
			pkgs("foo", "2.3-1+deb12u1"), pkgs("foo", "1:2.3-1"),
			Packages{Upgraded: []PackageChange{{"foo", "2.3-1+deb12u1", "1:2.3-1"}}}},
		{"numbers compare as numbers, not strings",
			pkgs("linux-image-amd64", "6.1.9-1"), pkgs("linux-image-amd64", "6.1.10-1"),
			Packages{Upgraded: []PackageChange{{"linux-image-amd64", "6.1.9-1", "6.1.10-1"}}}},
		{"a version that is not Debian's is only changed",
			pkgs("odd", "v1.0"), pkgs("odd", "v2.0"),
			Packages{Changed: []PackageChange{{"odd", "v1.0", "v2.0"}}}},
		{"equal in Debian's order though written differently",
			pkgs("zero", "1.0"), pkgs("zero", "1.00"),
			Packages{Changed: []PackageChange{{"zero", "1.0", "1.00"}}}},
		{"a Multi-Arch package listed twice: the common version cancels",
			pkgs("libc6", "2.36-9+deb12u3", "libc6", "2.36-9+deb12u3"),
			pkgs("libc6", "2.36-9+deb12u3", "libc6", "2.36-9+deb12u4"),
			Packages{Upgraded: []PackageChange{{"libc6", "2.36-9+deb12u3", "2.36-9+deb12u4"}}}},
		{"a second architecture added",
			pkgs("libc6", "2.36-9+deb12u3"),
			pkgs("libc6", "2.36-9+deb12u3", "libc6", "2.36-9+deb12u3"),
			Packages{Added: pkgs("libc6", "2.36-9+deb12u3")}},
		{"lists are sorted by name whatever the input order",
			pkgs("zsh", "5.9-4", "apt", "2.6.1"),
			pkgs(),
			Packages{Removed: pkgs("apt", "2.6.1", "zsh", "5.9-4")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Compare(side("a", tt.a, nil), side("b", tt.b, nil), Options{})
			if !reflect.DeepEqual(nilEmpty(r.Packages), tt.want) {
				t.Errorf("packages:\n got %+v\nwant %+v", r.Packages, tt.want)
			}
			p := tt.want
			if got, want := r.Metrics["packages.changed"], float64(len(p.Added)+len(p.Removed)+len(p.Upgraded)+len(p.Downgraded)+len(p.Changed)); got != want {
				t.Errorf("packages.changed = %v, want %v", got, want)
			}
		})
	}
}

func TestCompareFiles(t *testing.T) {
	base := []manifest.Entry{
		dir("/etc", "0755"),
		file("/etc/motd", "0644", 10, "aa"),
		file("/etc/nginx.conf", "0644", 100, "bb"),
		file("/usr/bin/tool", "0755", 1000, "cc"),
		file("/usr/bin/passwd", "4755", 2000, "dd"),
		link("/bin", "usr/bin"),
		file("/srv/data", "0644", 5, "ee"),
		file("/opt/old", "0644", 7, "ff"),
		dir("/var/mail", "2775"),
	}
	with := func(changes ...manifest.Entry) []manifest.Entry {
		out := slices.Clone(base)
		for _, c := range changes {
			if i := slices.IndexFunc(out, func(e manifest.Entry) bool { return e.Path == c.Path }); i >= 0 {
				out[i] = c
			} else {
				out = append(out, c)
			}
		}
		return out
	}
	without := func(path string) []manifest.Entry {
		return slices.DeleteFunc(slices.Clone(base), func(e manifest.Entry) bool { return e.Path == path })
	}
	tests := []struct {
		name     string
		b        []manifest.Entry
		opts     Options
		added    []string
		removed  []string
		changed  map[string][]string
		setuid   map[string][]string // path → bits
		ignored  int
		sizeDiff int64
	}{
		{name: "same", b: base},
		{name: "order does not matter", b: reversed(base)},
		{name: "content by hash", b: with(file("/etc/nginx.conf", "0644", 100, "XX")),
			changed: map[string][]string{"/etc/nginx.conf": {"content"}}},
		{name: "content by size", b: with(file("/etc/motd", "0644", 12, "aa")),
			changed: map[string][]string{"/etc/motd": {"content"}}, sizeDiff: 2},
		{name: "a symlink's target", b: with(link("/bin", "/usr/local/bin")),
			changed: map[string][]string{"/bin": {"content"}}},
		{name: "mode", b: with(file("/usr/bin/tool", "0700", 1000, "cc")),
			changed: map[string][]string{"/usr/bin/tool": {"mode"}}},
		{name: "modes compare as numbers", b: with(file("/usr/bin/tool", "755", 1000, "cc"))},
		{name: "owner", b: with(owned(file("/srv/data", "0644", 5, "ee"), 1000, 1000)),
			changed: map[string][]string{"/srv/data": {"owner"}}},
		{name: "type, with the mode", b: with(manifest.Entry{Path: "/opt/old", Type: "dir", Mode: "0755", Size: 4096}),
			changed: map[string][]string{"/opt/old": {"mode", "type"}}, sizeDiff: -7},
		{name: "content, mode and owner at once", b: with(owned(file("/etc/motd", "0600", 11, "zz"), 0, 4)),
			changed: map[string][]string{"/etc/motd": {"content", "mode", "owner"}}, sizeDiff: 1},
		{name: "a directory's size is not content", b: with(manifest.Entry{Path: "/etc", Type: "dir", Mode: "0755", Size: 12288})},
		{name: "added and removed", b: with(file("/opt/new", "0644", 50<<20, "11")),
			added: []string{"/opt/new"}, sizeDiff: 50 << 20},
		{name: "removed", b: without("/srv/data"), removed: []string{"/srv/data"}, sizeDiff: -5},
		{name: "a new setuid file", b: with(file("/usr/local/bin/su2", "4755", 10, "12")),
			added: []string{"/usr/local/bin/su2"}, setuid: map[string][]string{"/usr/local/bin/su2": {"setuid"}}, sizeDiff: 10},
		{name: "a file that gained setgid", b: with(file("/usr/bin/tool", "2755", 1000, "cc")),
			changed: map[string][]string{"/usr/bin/tool": {"mode"}}, setuid: map[string][]string{"/usr/bin/tool": {"setgid"}}},
		{name: "both bits", b: with(file("/usr/bin/tool", "6755", 1000, "cc")),
			changed: map[string][]string{"/usr/bin/tool": {"mode"}}, setuid: map[string][]string{"/usr/bin/tool": {"setuid", "setgid"}}},
		{name: "a setuid file that stays setuid is not added", b: with(file("/usr/bin/passwd", "4755", 2001, "d2")),
			changed: map[string][]string{"/usr/bin/passwd": {"content"}}, sizeDiff: 1},
		{name: "setuid to setgid gains setgid", b: with(file("/usr/bin/passwd", "2755", 2000, "dd")),
			changed: map[string][]string{"/usr/bin/passwd": {"mode"}}, setuid: map[string][]string{"/usr/bin/passwd": {"setgid"}}},
		{name: "a setgid directory is not a setuid file", b: with(dir("/srv/shared", "2775")), added: []string{"/srv/shared"}},
		{name: "noise is left out",
			b: with(file("/var/log/syslog", "0640", 0, "e3"), file("/var/lib/apt/lists/deb.debian.org_dists_bookworm_InRelease", "0644", 151000, "12"),
				file("/etc/machine-id", "0444", 0, "e3"), file("/var/lib/dpkg/status-old", "0644", 9, "34"), file("/etc/shadow-", "0640", 900, "56")),
			ignored: 5},
		{name: "noise on the removed side too", b: without("/opt/old"), opts: Options{Ignore: []string{"/opt/**"}}, ignored: 1},
		{name: "a recipe's own noise", b: with(file("/opt/app/build-stamp", "0644", 20, "77")), opts: Options{Ignore: []string{"/opt/app/build-stamp"}}, ignored: 1},
		{name: "a setuid file hidden in a noise path is still reported",
			b:       with(file("/var/cache/apt/archives/partial/sh", "4755", 100, "88")),
			setuid:  map[string][]string{"/var/cache/apt/archives/partial/sh": {"setuid"}},
			ignored: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Compare(side("a", nil, base), side("b", nil, tt.b), tt.opts)
			f := r.Files
			if f == nil {
				t.Fatal("no file report")
			}
			paths := func(es []manifest.Entry) []string {
				var out []string
				for _, e := range es {
					out = append(out, e.Path)
				}
				return out
			}
			if got := paths(f.Added); !slices.Equal(got, tt.added) {
				t.Errorf("added %q, want %q", got, tt.added)
			}
			if got := paths(f.Removed); !slices.Equal(got, tt.removed) {
				t.Errorf("removed %q, want %q", got, tt.removed)
			}
			changed := map[string][]string{}
			for _, c := range f.Changed {
				changed[c.Path] = c.What
			}
			if len(changed) != len(tt.changed) || len(tt.changed) > 0 && !reflect.DeepEqual(changed, tt.changed) {
				t.Errorf("changed %v, want %v", changed, tt.changed)
			}
			setuid := map[string][]string{}
			for _, s := range f.SetuidAdded {
				setuid[s.Path] = s.Bits
			}
			if len(setuid) != len(tt.setuid) || len(tt.setuid) > 0 && !reflect.DeepEqual(setuid, tt.setuid) {
				t.Errorf("setuid added %v, want %v", setuid, tt.setuid)
			}
			if f.Ignored != tt.ignored {
				t.Errorf("ignored %d, want %d", f.Ignored, tt.ignored)
			}
			if got := f.BytesB - f.BytesA; got != tt.sizeDiff {
				t.Errorf("size change %d, want %d", got, tt.sizeDiff)
			}
			for name, want := range map[string]int{"files.added": len(tt.added), "files.removed": len(tt.removed), "files.changed": len(tt.changed), "setuid.added": len(tt.setuid)} {
				if r.Metrics[name] != float64(want) {
					t.Errorf("%s = %v, want %d", name, r.Metrics[name], want)
				}
			}
			if wantSame := len(tt.added)+len(tt.removed)+len(tt.changed)+len(tt.setuid) == 0; r.Same != wantSame {
				t.Errorf("same = %v, want %v", r.Same, wantSame)
			}
		})
	}
}

func TestSetuidNewVersusGained(t *testing.T) {
	a := []manifest.Entry{file("/usr/bin/x", "0755", 1, "a")}
	b := []manifest.Entry{file("/usr/bin/x", "4755", 1, "a"), owned(file("/usr/bin/y", "2711", 1, "b"), 0, 42)}
	got := Compare(side("a", nil, a), side("b", nil, b), Options{}).Files.SetuidAdded
	want := []SetuidFile{
		{Path: "/usr/bin/x", Mode: "4755", Bits: []string{"setuid"}},
		{Path: "/usr/bin/y", Mode: "2711", GID: 42, Bits: []string{"setgid"}, New: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("setuid added\n got %+v\nwant %+v", got, want)
	}
}

func TestDirSizes(t *testing.T) {
	a := []manifest.Entry{
		file("/usr/lib/a.so", "0644", 1000, "1"), file("/usr/bin/b", "0755", 500, "2"),
		file("/etc/x", "0644", 100, "3"), file("/var/lib/y", "0644", 40, "4"),
		file("/vmlinuz.old", "0644", 3, "5"),
		file("/var/log/huge.log", "0644", 1<<30, "6"), // noise: not counted
		dir("/opt", "0755"), link("/opt/link", "/usr/lib/a.so"),
	}
	b := []manifest.Entry{
		file("/usr/lib/a.so", "0644", 1200, "1b"), file("/usr/bin/b", "0755", 500, "2"),
		file("/etc/x", "0644", 50, "3b"), file("/var/lib/y", "0644", 40, "4"),
		file("/opt/big", "0644", 50<<20, "7"), file("/vmlinuz.old", "0644", 4, "5b"),
		dir("/opt", "0755"), link("/opt/link", "/usr/lib/a.so"),
	}
	f := Compare(side("a", nil, a), side("b", nil, b), Options{}).Files
	want := []DirSize{
		{Dir: "/opt", BytesA: 0, BytesB: 50 << 20, Change: 50 << 20},
		{Dir: "/usr", BytesA: 1500, BytesB: 1700, Change: 200},
		{Dir: "/etc", BytesA: 100, BytesB: 50, Change: -50},
		{Dir: "/", BytesA: 3, BytesB: 4, Change: 1},
		{Dir: "/var", BytesA: 40, BytesB: 40, Change: 0},
	}
	if !reflect.DeepEqual(f.Dirs, want) {
		t.Errorf("dirs\n got %+v\nwant %+v", f.Dirs, want)
	}
	if f.BytesA != 1643 || f.BytesB != 1794+50<<20 {
		t.Errorf("totals %d → %d", f.BytesA, f.BytesB)
	}
}

func TestNoInventory(t *testing.T) {
	inv := []manifest.Entry{file("/etc/motd", "0644", 1, "a")}
	for _, tt := range []struct {
		name string
		a, b []manifest.Entry
		why  string
	}{
		{"baseline without", nil, inv, "a has no file inventory"},
		{"new build without", inv, nil, "b has no file inventory"},
		{"neither", nil, nil, "neither a nor b has a file inventory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := Compare(side("a", pkgs("bash", "1"), tt.a), side("b", pkgs("bash", "1"), tt.b), Options{})
			if r.Files != nil {
				t.Errorf("a file report without an inventory: %+v", r.Files)
			}
			if r.Same {
				t.Error("same without inventories: sameness cannot be shown")
			}
			for _, m := range Metrics() {
				_, have := r.Metrics[m.Name]
				if m.NeedsInventory && (have || r.Unavailable[m.Name] != tt.why) {
					t.Errorf("%s: have=%v, unavailable %q, want unavailable %q", m.Name, have, r.Unavailable[m.Name], tt.why)
				}
				if !m.NeedsInventory && !have {
					t.Errorf("%s: missing: %q", m.Name, r.Unavailable[m.Name])
				}
			}
		})
	}
	// An empty inventory is an inventory.
	r := Compare(side("a", nil, []manifest.Entry{}), side("b", nil, []manifest.Entry{}), Options{})
	if r.Files == nil || !r.Same || r.Metrics["size.growth"] != 0 {
		t.Errorf("empty inventories: files %+v, same %v, metrics %v", r.Files, r.Same, r.Metrics)
	}
}

func TestCompareOutputs(t *testing.T) {
	out := func(file, format string, size int64) manifest.File {
		return manifest.File{File: file, Format: format, Size: size, SHA256: "x"}
	}
	a := side("a", nil, nil)
	a.Manifest.Outputs = []manifest.File{out("web-1.qcow2", "qcow2", 1000), out("web.raw.zst", "raw.zst", 400), out("web.raw.bmap", "bmap", 10),
		out("web.vmdk", "vmdk", 800)}
	b := side("b", nil, nil)
	b.Manifest.Outputs = []manifest.File{out("web-2.qcow2", "qcow2", 1100), out("web.raw.zst", "raw.zst", 300), out("web.raw.bmap", "bmap", 10),
		out("web.ova", "ova", 900)}
	r := Compare(a, b, Options{})
	type row struct {
		format, fileA, fileB string
		change               int64
		growth               float64
	}
	var got []row
	for _, o := range r.Outputs {
		x := row{format: o.Format, change: o.Change, growth: -1}
		if o.A != nil {
			x.fileA = o.A.File
		}
		if o.B != nil {
			x.fileB = o.B.File
		}
		if o.Growth != nil {
			x.growth = *o.Growth
		}
		got = append(got, x)
	}
	want := []row{
		{"bmap", "web.raw.bmap", "web.raw.bmap", 0, 0},
		{"ova", "", "web.ova", 900, -1},
		{"qcow2", "web-1.qcow2", "web-2.qcow2", 100, 10},
		{"raw.zst", "web.raw.zst", "web.raw.zst", -100, -25},
		{"vmdk", "web.vmdk", "", -800, -1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("outputs\n got %+v\nwant %+v", got, want)
	}
	if r.Metrics["outputs.bytes"] != 100 || r.Metrics["outputs.growth"] != 100*100.0/2210 {
		t.Errorf("outputs metrics %v %v", r.Metrics["outputs.bytes"], r.Metrics["outputs.growth"])
	}

	// Two outputs of one format pair by file name.
	a.Manifest.Outputs = []manifest.File{out("web.raw", "raw", 10), out("web-min.raw", "raw", 5)}
	b.Manifest.Outputs = []manifest.File{out("web-min.raw", "raw", 6), out("web.raw", "raw", 12), out("web-x.raw", "raw", 1)}
	got = nil
	for _, o := range Compare(a, b, Options{}).Outputs {
		x := row{format: o.Format, change: o.Change, growth: -1}
		if o.A != nil {
			x.fileA = o.A.File
		}
		if o.B != nil {
			x.fileB = o.B.File
		}
		got = append(got, x)
	}
	want = []row{
		{"raw", "web-min.raw", "web-min.raw", 1, -1},
		{"raw", "", "web-x.raw", 1, -1},
		{"raw", "web.raw", "web.raw", 2, -1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("same-format outputs\n got %+v\nwant %+v", got, want)
	}
}

func TestSummary(t *testing.T) {
	a := side("out/a", pkgs("bash", "1"), []manifest.Entry{})
	b := side("out/b", pkgs("bash", "2"), []manifest.Entry{})
	s := Compare(a, b, Options{}).Summary()
	if s.Baseline != "out/a" || s.BaselineBuild != "out/a" || s.Same || s.Counts["packages.upgraded"] != 1 {
		t.Errorf("summary %+v", s)
	}
}

func reversed(es []manifest.Entry) []manifest.Entry {
	out := slices.Clone(es)
	slices.Reverse(out)
	return out
}

// nilEmpty is p with its empty lists nil, as the tables write them.
func nilEmpty(p Packages) Packages {
	n := func(l []PackageChange) []PackageChange {
		if len(l) == 0 {
			return nil
		}
		return l
	}
	if len(p.Added) == 0 {
		p.Added = nil
	}
	if len(p.Removed) == 0 {
		p.Removed = nil
	}
	p.Upgraded, p.Downgraded, p.Changed = n(p.Upgraded), n(p.Downgraded), n(p.Changed)
	return p
}
