package bake

import (
	"maps"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestParseInventory(t *testing.T) {
	// rec is a meta record: find's seven fields, then "INODE CTIME".
	rec := func(fields ...string) string { return strings.Join(fields, "\x00") + "\x00" }
	h := strings.Repeat("a", 64)
	meta := rec("d", "0755", "0", "0", "4096", "/", "", "2 1700000000.1") +
		rec("f", "04755", "0", "0", "55", "/usr/bin/su", "", "12 1700000000.2") +
		rec("l", "0777", "0", "0", "7", "/bin", "usr/bin", "13 1700000000.3") +
		rec("f", "0644", "1000", "1000", "3", "/etc/odd\nname", "", "14 1733000000.4") +
		rec("f", "0644", "0", "0", "8", "/etc/kept", "", "15 1700000000.5") +
		rec("d", "0700", "0", "0", "4096", "/boot/efi", "", "16 1700000000.6") +
		rec("d", "0755", "0", "0", "2048", "/boot/efi", "", "1 1700000000.7") +
		rec("d", "0755", "0", "0", "2048", "/run/ingot-inventory/mnt/part1", "", "1 1700000000.8") +
		rec("f", "0755", "0", "0", "9", "/run/ingot-inventory/mnt/part1/EFI/BOOT/BOOTX64.EFI", "", "20 1700000000.9")
	sums := h + "  /usr/bin/su\x00" + strings.Repeat("b", 64) + "  /etc/odd\nname\x00" + strings.Repeat("c", 64) + "  /run/ingot-inventory/mnt/part1/EFI/BOOT/BOOTX64.EFI\x00"
	// /etc/kept was not read: an earlier build hashed it as it is. The record of another inode
	// of /usr/bin/su is not used: the guest read that file again.
	known := map[string]string{
		"15 1700000000.5 8 /etc/kept":    strings.Repeat("d", 64),
		"11 1600000000.0 55 /usr/bin/su": strings.Repeat("e", 64),
	}
	got, next, err := parseInventory([]byte(meta), []byte(sums), known)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, e := range got {
		lines = append(lines, strings.Join([]string{e.Path, e.Type, e.Mode, e.Target, e.SHA256[:min(4, len(e.SHA256))]}, " "))
	}
	want := []string{"/ dir 0755  ", "/[part1] dir 0755  ", "/[part1]/EFI/BOOT/BOOTX64.EFI file 0755  cccc", "/bin symlink 0777 usr/bin ", "/boot/efi dir 0755  ",
		"/etc/kept file 0644  dddd", "/etc/odd\nname file 0644  bbbb", "/usr/bin/su file 4755  aaaa"}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Errorf("entries:\n%q\nwant\n%q", lines, want)
	}
	// The next build knows every regular file, by the guest's own path and find's line.
	wantNext := map[string]string{
		"12 1700000000.2 55 /usr/bin/su":                                        h,
		"14 1733000000.4 3 /etc/odd\nname":                                      strings.Repeat("b", 64),
		"15 1700000000.5 8 /etc/kept":                                           strings.Repeat("d", 64),
		"20 1700000000.9 9 /run/ingot-inventory/mnt/part1/EFI/BOOT/BOOTX64.EFI": strings.Repeat("c", 64),
	}
	if !maps.Equal(next, wantNext) {
		t.Errorf("checksums for the next build:\n%q\nwant\n%q", next, wantNext)
	}
	for _, bad := range []struct{ meta, sums string }{
		{strings.Repeat(rec("f", "0644", "0", "0", "1", "/nosum", "", "3 1.0"), 11), ""},
		{rec("x", "0644", "0", "0", "1", "/weird", "", "3 1.0"), ""},
		{rec("f", "0644", "root", "0", "1", "/a", "", "3 1.0"), h + "  /a\x00"},
		{rec("f", "0644", "0", "0", "1", "/a", ""), h + "  /a\x00"},
		{"d\x000755\x00", ""},
		{"", "short  /a\x00"},
	} {
		if _, _, err := parseInventory([]byte(bad.meta), []byte(bad.sums), nil); err == nil {
			t.Errorf("parseInventory(%q, %q) succeeded", bad.meta, bad.sums)
		}
	}
}

func TestParsePackages(t *testing.T) {
	out := "bash\t5.2.15-2+b2\tamd64\tGPL-3+\njq\t1.6-2.1\tamd64\t\ntzdata\t2024a-0+deb12u1\tall\n" +
		"old-style\t1.0\n---\ndebian\t12\n"
	pkgs, os := parsePackages(out)
	var got []string
	for _, p := range pkgs {
		got = append(got, strings.Join([]string{p.Name, p.Version, p.Arch, p.License}, "|"))
	}
	want := []string{"bash|5.2.15-2+b2|amd64|GPL-3+", "jq|1.6-2.1|amd64|", "tzdata|2024a-0+deb12u1|all|", "old-style|1.0||"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("packages %q, want %q", got, want)
	}
	if os == nil || os.ID != "debian" || os.VersionID != "12" {
		t.Errorf("os = %+v", os)
	}
	if _, os := parsePackages("bash\t5.2\n"); os != nil {
		t.Errorf("no os-release part: os = %+v", os)
	}
}

// The package listing runs on this Debian host as it runs in a guest: every package dpkg knows
// is listed once, with the first License: line of its copyright file, as a reader in Go finds it.
func TestPackagesScriptOnADebianSystem(t *testing.T) {
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		t.Fatalf("this test reads the host's dpkg database, and the tests run on Debian 12: %v", err)
	}
	out, err := exec.Command("sh", "-c", packagesScript).Output()
	if err != nil {
		t.Fatalf("packagesScript: %v", err)
	}
	pkgs, dist := parsePackages(string(out))
	want, err := exec.Command("dpkg-query", "-W", "-f", "${Package}\n").Output()
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(want), "\n"); len(pkgs) != n || n < 50 {
		t.Fatalf("listed %d packages, dpkg-query knows %d", len(pkgs), n)
	}
	licensed := 0
	for _, p := range pkgs {
		if p.Version == "" || p.Arch == "" {
			t.Errorf("package %+v has no version or architecture", p)
		}
		if p.License != firstLicense(t, p.Name) {
			t.Errorf("package %s: license %q, its copyright file says %q", p.Name, p.License, firstLicense(t, p.Name))
		}
		if p.License != "" {
			licensed++
		}
	}
	if licensed < len(pkgs)/2 {
		t.Errorf("only %d of %d packages have a license", licensed, len(pkgs))
	}
	if dist == nil || dist.ID != "debian" {
		t.Errorf("os = %+v, want debian", dist)
	}
}

// firstLicense is what the first License: line of a package's copyright file says.
func firstLicense(t *testing.T, pkg string) string {
	t.Helper()
	b, err := os.ReadFile("/usr/share/doc/" + pkg + "/copyright")
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "License:"); ok {
			return strings.TrimSpace(strings.NewReplacer("\t", " ", "\r", " ").Replace(rest))
		}
	}
	return ""
}
