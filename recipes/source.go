package recipes

import (
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/goccy/go-yaml/ast"
)

// source reads source:, exactly one of disk, iso and image.
func (d *decoder) source(top *fields) Source {
	var src Source
	n, ok := top.get("source")
	if !ok {
		d.missing(top, "source", "add source: with disk: (a cloud image), iso: (an installer) or image: (a stored image)")
		return src
	}
	f, ok := d.mapping("source", d.positions["source"], n, false, yamlKeys[Source]())
	if !ok {
		return src
	}
	var kinds []string
	for _, k := range yamlKeys[Source]() {
		if _, ok := f.get(k); ok {
			kinds = append(kinds, k)
		}
	}
	switch len(kinds) {
	case 0:
		if f.raw == 0 {
			d.errorf(f.at, "source", "use disk: (a cloud image), iso: (an installer) or image: (a stored image)", "names no source")
		}
		return src
	case 1:
	default:
		second := f.child(kinds[1])
		d.errorf(d.positions[second], second, "a build starts from exactly one source", "source already names %s", kinds[0])
		return src
	}
	p := f.child(kinds[0])
	n, _ = f.get(kinds[0])
	switch kinds[0] {
	case "disk":
		src.Disk = d.diskSource(p, n)
	case "iso":
		src.ISO = d.isoSource(p, n)
	case "image":
		if s, ok := d.nonEmpty(p, n); ok {
			if !nameRE.MatchString(s) {
				d.errorf(d.at(n), p, "name an image as it was stored (a-z, 0-9, '.', '_', '-')", "%q is not a valid image name", s)
			}
			src.Image = &ImageSource{Name: s, Pos: d.positions[p]}
		}
	}
	return src
}

func (d *decoder) diskSource(p string, n ast.Node) *DiskSource {
	f, ok := d.mapping(p, d.positions[p], n, false, yamlKeys[DiskSource]())
	if !ok {
		return nil
	}
	ds := &DiskSource{Pos: f.at}
	ds.URL = d.location(f, "url")
	ds.SHA256, ds.SHA512 = d.pins(f)
	if n, ok := f.get("format"); ok {
		ds.Format, _ = d.enum(f.child("format"), n, "qcow2", "raw")
	}
	return ds
}

func (d *decoder) isoSource(p string, n ast.Node) *ISOSource {
	f, ok := d.mapping(p, d.positions[p], n, false, yamlKeys[ISOSource]())
	if !ok {
		return nil
	}
	is := &ISOSource{Pos: f.at, InstallTimeout: DefaultInstallTimeout}
	is.URL = d.location(f, "url")
	is.SHA256, is.SHA512 = d.pins(f)
	for _, k := range []string{"kernel", "initrd"} {
		n, ok := f.get(k)
		if !ok {
			continue
		}
		s, ok := d.nonEmpty(f.child(k), n)
		if ok && !strings.HasPrefix(s, "/") {
			d.errorf(d.at(n), f.child(k), "name a path inside the ISO, e.g. /casper/vmlinuz", "%q is not an absolute path", s)
		}
		if k == "kernel" {
			is.Kernel = s
		} else {
			is.Initrd = s
		}
	}
	if n, ok := f.get("append"); ok {
		is.Append, _ = d.str(f.child("append"), n)
	}
	if n, ok := f.get("boot_keys"); ok {
		is.BootKeys, _ = d.strings(f.child("boot_keys"), n)
	}
	bootWait, hasWait := f.get("boot_wait")
	if hasWait {
		is.BootWait, _ = d.duration(f.child("boot_wait"), bootWait)
	} else if len(is.BootKeys) > 0 {
		is.BootWait = DefaultBootWait
	}
	d.timeout(f, "install_timeout", "the default of "+fmtDuration(DefaultInstallTimeout), &is.InstallTimeout)
	_, hasKernel := f.get("kernel")
	_, hasKeys := f.get("boot_keys")
	for _, k := range []string{"initrd", "append"} {
		if _, ok := f.get(k); ok && !hasKernel {
			d.errorf(d.positions[f.child(k)], f.child(k), "set kernel: too (e.g. /casper/vmlinuz): ingot boots the ISO's kernel directly", "needs kernel")
		}
	}
	if hasKernel && hasKeys {
		d.errorf(d.positions[f.child("boot_keys")], f.child("boot_keys"), "use kernel/initrd/append (no typing, no timing) or boot_keys (typed at the ISO's boot menu), not both", "conflicts with kernel")
	}
	if hasWait && !hasKeys {
		d.errorf(d.positions[f.child("boot_wait")], f.child("boot_wait"), "boot_wait is the pause before typing boot_keys", "has no boot_keys to wait for")
	}
	return is
}

// location reads a required URL or local path. Local paths (and file:// URLs) must exist: a
// recipe is checked before anything is downloaded or booted. Relative paths become absolute,
// relative to the recipe's directory.
func (d *decoder) location(f *fields, key string) string {
	p := f.child(key)
	n, ok := f.get(key)
	if !ok {
		d.missing(f, key, "give the input's https:// or file:// URL, or a local path")
		return ""
	}
	s, ok := d.nonEmpty(p, n)
	if !ok {
		return ""
	}
	loc, msg, hint := d.resolveLocation(strings.TrimSpace(s))
	if msg != "" {
		d.errorf(d.at(n), p, hint, "%s", msg)
	}
	return loc
}

// resolveLocation checks a URL or local path and returns it with a relative path made absolute.
func (d *decoder) resolveLocation(s string) (loc, msg, hint string) {
	scheme, _, isURL := strings.Cut(s, "://")
	if !isURL {
		local, msg, hint := d.localPath(s)
		if msg != "" {
			return "", msg, hint
		}
		if _, err := os.Stat(local); err != nil {
			hint := ""
			if !filepath.IsAbs(s) {
				hint = "relative paths are relative to the recipe's directory"
			}
			return "", fmt.Sprintf("%s does not exist", s), hint
		}
		return local, "", ""
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Sprintf("%q is not a URL: %v", s, err), ""
	}
	switch strings.ToLower(scheme) {
	case "http", "https":
		if u.Host == "" {
			return "", fmt.Sprintf("%q has no host", s), ""
		}
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return "", fmt.Sprintf("%q names another host", s), "file URLs name local files: file:///path"
		}
		if !path.IsAbs(u.Path) {
			return "", fmt.Sprintf("%q has no absolute path", s), "write file:///absolute/path"
		}
		if _, err := os.Stat(u.Path); err != nil {
			return "", fmt.Sprintf("%s does not exist", u.Path), ""
		}
	default:
		return "", fmt.Sprintf("unsupported scheme %q", scheme), "use https://, http://, file:// or a local path"
	}
	return s, "", ""
}

// pins reads the sha256 or sha512 of an input: exactly one is required, because ingot does not
// build on inputs nobody vouched for.
func (d *decoder) pins(f *fields) (sha256, sha512 string) {
	n256, has256 := f.get("sha256")
	n512, has512 := f.get("sha512")
	switch {
	case has256 && has512:
		d.errorf(d.positions[f.child("sha512")], f.child("sha512"), "pin the input once: sha256 or sha512", "conflicts with sha256")
		return "", ""
	case !has256 && !has512:
		if f.suggested["sha512"] {
			return "", ""
		}
		d.missing(f, "sha256", "ingot refuses unpinned inputs: run `sha256sum FILE` on a copy you trust, or name the publisher's checksum file, e.g. sha256: file:https://cloud-images.ubuntu.com/…/SHA256SUMS (Debian publishes sha512: use sha512: file:…/SHA512SUMS)")
		return "", ""
	case has256:
		return d.pin(f.child("sha256"), n256, "sha256", 64), ""
	default:
		return "", d.pin(f.child("sha512"), n512, "sha512", 128)
	}
}

// pin reads one checksum: hex digits (an "ALGO:" prefix is allowed), or "file:" and the location
// of a checksum file (SHA256SUMS, SHA512SUMS) that lists the input by its file name.
func (d *decoder) pin(p string, n ast.Node, algo string, digits int) string {
	s, ok := d.nonEmpty(p, n)
	if !ok {
		return ""
	}
	s = strings.TrimSpace(s)
	if rest, ok := cutPrefixFold(s, "file:"); ok {
		rest = strings.TrimSpace(rest)
		if rest == "" {
			d.errorf(d.at(n), p, "write file: and the checksum file's URL, e.g. file:https://…/SHA256SUMS", "%q names no checksum file", s)
			return ""
		}
		loc, msg, hint := d.resolveLocation(rest)
		if msg != "" {
			d.errorf(d.at(n), p, hint, "checksum file: %s", msg)
			return ""
		}
		return "file:" + loc
	}
	if rest, ok := cutPrefixFold(s, algo+":"); ok {
		s = strings.TrimSpace(rest)
	} else if other, rest, ok := strings.Cut(s, ":"); ok && isHex(strings.TrimSpace(rest)) {
		if other == "sha256" || other == "sha512" {
			d.errorf(d.at(n), p, fmt.Sprintf("write it under %s: instead", other), "is a %s digest", other)
		} else {
			d.errorf(d.at(n), p, "pin the input with sha256: or sha512:", "%s digests are not supported", other)
		}
		return ""
	}
	// A digest with a digit missing is the common slip (a copy that stopped short), so the digits
	// are checked one by one rather than decoded: hex.DecodeString calls any odd length invalid,
	// which read as "not hexadecimal" for a digest that was one digit short.
	if i := strings.IndexFunc(s, notHexDigit); i >= 0 {
		r, _ := utf8.DecodeRuneInString(s[i:])
		d.errorf(d.at(n), p, "a "+algo+" is "+strconv.Itoa(digits)+" hex digits (0-9, a-f), as `"+algo+"sum FILE` prints it",
			"%q is not hexadecimal: %q (character %d) is not a hex digit", s, r, utf8.RuneCountInString(s[:i])+1)
		return ""
	}
	if len(s) != digits {
		guess := map[int]string{32: "an md5", 40: "a sha1", 64: "a sha256", 128: "a sha512"}[len(s)]
		hint := fmt.Sprintf("a %s has %d hex digits", algo, digits)
		switch {
		case len(s) == digits-1:
			hint += ": one digit short? copy it again from `" + algo + "sum FILE` or the publisher's checksum file"
		case len(s) == digits+1:
			hint += ": one digit too many? copy it again from `" + algo + "sum FILE` or the publisher's checksum file"
		case guess == "a sha256", guess == "a sha512":
			hint = fmt.Sprintf("that is %s digest: write it under %s: instead", guess, strings.TrimPrefix(guess, "a "))
		case guess != "":
			hint = fmt.Sprintf("that looks like %s digest, which ingot does not accept; %s", guess, hint)
		}
		d.errorf(d.at(n), p, hint, "has %d hex digits, not %d", len(s), digits)
		return ""
	}
	return strings.ToLower(s)
}

// isHex reports whether s is a non-empty run of hex digits, of any length.
func isHex(s string) bool {
	return s != "" && strings.IndexFunc(s, notHexDigit) < 0
}

func notHexDigit(r rune) bool {
	return !('0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F')
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}
