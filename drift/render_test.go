package drift

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ingot-build/ingot/manifest"
)

// fixture is two builds that differ in each way a report shows.
func fixture() (Side, Side) {
	a := side("out/a", pkgs("bash", "5.2.15-2+b2", "openssl", "3.0.11-1~deb12u1", "vim-tiny", "2:9.0.1378-2", "foo", "1:2.3-1"), []manifest.Entry{
		dir("/etc", "0755"),
		file("/etc/motd", "0644", 10, "aa"),
		file("/usr/bin/tool", "0755", 1000, "cc"),
		link("/bin", "usr/bin"),
		file("/srv/old", "0644", 5, "ee"),
		file("/var/log/syslog", "0640", 0, "e3"),
	})
	a.Manifest.Finished = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	a.Manifest.Outputs = []manifest.File{{File: "web.qcow2", Format: "qcow2", Size: 300 << 20}}
	b := side("out/b", pkgs("bash", "5.2.15-2+b2", "openssl", "3.0.11-1~deb12u2", "nginx", "1.22.1-9", "foo", "2.3-1+deb12u1"), []manifest.Entry{
		dir("/etc", "0755"),
		file("/etc/motd", "0600", 12, "ab"),
		file("/usr/bin/tool", "4755", 1000, "cc"),
		link("/bin", "usr/bin"),
		file("/opt/big|pipe", "0644", 50<<20, "ff"),
		file("/var/log/syslog", "0640", 0, "e4"),
	})
	b.Manifest.Outputs = []manifest.File{{File: "web.qcow2", Format: "qcow2", Size: 350 << 20}, {File: "web.vmdk", Format: "vmdk", Size: 100 << 20}}
	return a, b
}

func TestWriteText(t *testing.T) {
	a, b := fixture()
	r := Compare(a, b, Options{})
	var buf bytes.Buffer
	if err := r.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		`(?m)^A  out/a  web, build out/a, finished 2025-01-02T03:04:05Z, 4 packages, 6 files$`,
		`(?m)^packages: 1 added, 1 removed, 1 upgraded, 1 downgraded, 0 changed$`,
		`(?m)^  added +nginx +1\.22\.1-9$`,
		`(?m)^  removed +vim-tiny +2:9\.0\.1378-2$`,
		`(?m)^  upgraded +openssl +3\.0\.11-1~deb12u1 -> 3\.0\.11-1~deb12u2$`,
		`(?m)^  downgraded +foo +1:2\.3-1 -> 2\.3-1\+deb12u1$`,
		`(?m)^files: 1 added, 1 removed, 2 changed; 1 paths left out as noise$`,
		`(?m)^  added +/opt/big\|pipe +file 0644 0:0 50\.0 MiB$`,
		`(?m)^  removed +/srv/old +file 0644 0:0 5 B$`,
		`(?m)^  changed +/etc/motd +content: 10 B -> 12 B, mode 0644 -> 0600$`,
		`(?m)^  changed +/usr/bin/tool +mode 0755 -> 4755$`,
		`(?m)^setuid/setgid files added: 1$`,
		`(?m)^  /usr/bin/tool +4755 0:0: gained setuid$`,
		`(?m)^  /opt +\+50\.0 MiB +\(0 B -> 50\.0 MiB\)$`,
		`(?m)^  total +\+50\.0 MiB \(\+5165398\.72%\) +\(1015 B -> 50\.0 MiB\)$`,
		`(?m)^  qcow2 +web\.qcow2 +300\.0 MiB -> 350\.0 MiB  \+50\.0 MiB \(\+16\.67%\)$`,
		`(?m)^  vmdk +web\.vmdk +new in B: 100\.0 MiB$`,
		`(?m)^  packages\.changed +4$`,
		`(?m)^  setuid\.added +1$`,
		`(?m)^  size\.growth +5165398\.72%$`,
		`(?m)^same: no$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("text output lacks %s\n%s", want, out)
		}
	}
	if strings.Contains(out, "/var/log") {
		t.Errorf("noise shown:\n%s", out)
	}

	// Without an inventory, the file parts say so instead of showing zeros.
	a.Inventory = nil
	buf.Reset()
	if err := Compare(a, b, Options{}).WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"files: unavailable: out/a has no file inventory\n",
		"  files.added          unavailable: out/a has no file inventory\n",
		"same: unknown: without both file inventories",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("text output lacks %q\n%s", want, buf.String())
		}
	}
}

func TestWriteMarkdown(t *testing.T) {
	a, b := fixture()
	// Enough added files to fold the table, and more than it shows.
	for i := range markdownRows + 5 {
		b.Inventory = append(b.Inventory, file(fmt.Sprintf("/usr/share/doc/x/%03d", i), "0644", 1, "x"))
	}
	var buf bytes.Buffer
	if err := Compare(a, b, Options{}).WriteMarkdown(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"### ingot diff\n",
		"- **A** `out/a`: web, build out/a, finished 2025-01-02T03:04:05Z, 4 packages, 6 files\n",
		"**Same:** no\n",
		"| metric | value |\n|---|---:|\n| `packages.added` | 1 |\n",
		"| `setuid.added` | 1 |\n",
		"#### Packages: 1 added, 1 removed, 1 upgraded, 1 downgraded, 0 changed\n\n| change | package | A | B |\n|---|---|---|---|\n| added | `nginx` |  | 1.22.1-9 |\n",
		"| upgraded | `openssl` | 3.0.11-1~deb12u1 | 3.0.11-1~deb12u2 |\n",
		"#### Files: 206 added, 1 removed, 2 changed\n",
		"<details><summary>209 rows</summary>\n\n| change | path | what |\n",
		"| added | `/opt/big\\|pipe` | file 0644 0:0 50.0 MiB |\n",
		"\n… and 9 more: `ingot diff --json` lists them all.\n",
		"</details>\n",
		"| `/usr/bin/tool` | 4755 0:0: gained setuid |\n",
		"| `/opt` | 0 B | 50.0 MiB | +50.0 MiB |\n",
		"| qcow2 | `web.qcow2` | 300.0 MiB | 350.0 MiB | +50.0 MiB (+16.67%) |\n",
		"| vmdk | `web.vmdk` |  | 100.0 MiB | +100.0 MiB |\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q\n%s", want, out)
		}
	}
	if n := strings.Count(out, "| added | `/usr/share/doc/x/"); n != markdownRows-1 {
		// 200 rows shown: /opt/big|pipe, then 199 of these.
		t.Errorf("%d rows of the long list shown, want %d", n, markdownRows-1)
	}
	if strings.Contains(out, "<details>") && strings.Count(out, "<details>") != 1 {
		t.Errorf("short tables folded too:\n%s", out)
	}
}

func TestMarkdownCode(t *testing.T) {
	for in, want := range map[string]string{
		"/etc/x":   "`/etc/x`",
		"/a`b":     "``/a`b``",
		"`x":       "`` `x ``",
		"/a|b":     "`/a\\|b`",
		"/a\nname": "`/a name`",
	} {
		if got := code(in); got != want {
			t.Errorf("code(%q) = %q, want %q", in, got, want)
		}
	}
}

// The JSON is the documented schema: versioned, every top-level field there, lists never null
// where the report has them.
func TestWriteJSON(t *testing.T) {
	a, b := fixture()
	var buf bytes.Buffer
	if err := Compare(a, b, Options{Ignore: []string{"/srv/**"}}).WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got["schema_version"] != "1.0" {
		t.Errorf("schema_version %v", got["schema_version"])
	}
	for _, k := range []string{"a", "b", "same", "metrics", "packages", "files", "outputs", "noise"} {
		if _, ok := got[k]; !ok {
			t.Errorf("no %q in %s", k, buf.String())
		}
	}
	var r Report
	dec := json.NewDecoder(bytes.NewReader(buf.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatal(err)
	}
	if len(r.Files.Removed) != 0 || r.Files.Ignored != 2 || r.Noise[len(r.Noise)-1] != "/srv/**" {
		t.Errorf("decoded: removed %v, ignored %d, noise %v", r.Files.Removed, r.Files.Ignored, r.Noise)
	}
	if r.Files.Changed[0].Path != "/etc/motd" || r.Files.Changed[0].From.Mode != "0644" || r.Files.Changed[0].To.SHA256 != "ab" {
		t.Errorf("decoded change %+v", r.Files.Changed[0])
	}
	// Deterministic: the same report, byte for byte.
	var again bytes.Buffer
	if err := Compare(a, b, Options{Ignore: []string{"/srv/**"}}).WriteJSON(&again); err != nil {
		t.Fatal(err)
	}
	if again.String() != buf.String() {
		t.Error("two renderings of one comparison differ")
	}
	// Without inventory: files is null, unavailable says why.
	a.Inventory = nil
	buf.Reset()
	if err := Compare(a, b, Options{}).WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"files": null`, `"changed": []`, `"unavailable": {`, `"files.added": "out/a has no file inventory"`, `"inventory": false`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("JSON lacks %s\n%s", want, buf.String())
		}
	}
}
