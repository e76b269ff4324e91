package source

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// pin is a parsed Input.SHA256: either the digest itself or where to look it up.
type pin struct {
	digest string    // 64 lowercase hex digits, or "" when sums is set
	sums   *location // a checksum file listing the input by its base name
}

// parsePin accepts "HEX", "sha256:HEX" and "file:LOCATION" (a checksum file, as Packer's
// iso_checksum does). Digests are case-insensitive and returned in lower case.
func parsePin(s string) (pin, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return pin{}, ErrUnpinned
	}
	if rest, ok := cutPrefixFold(s, "file:"); ok {
		rest = strings.TrimSpace(rest)
		if rest == "" {
			return pin{}, fmt.Errorf("%w: %q names no checksum file", ErrInvalidPin, s)
		}
		loc, err := parseLocation(rest)
		if err != nil {
			return pin{}, fmt.Errorf("%w: checksum file: %w", ErrInvalidPin, err)
		}
		return pin{sums: &loc}, nil
	}
	if rest, ok := cutPrefixFold(s, "sha256:"); ok {
		s = strings.TrimSpace(rest)
	} else if algo, _, ok := strings.Cut(s, ":"); ok {
		return pin{}, fmt.Errorf("%w: %q: only sha256 is supported, not %s", ErrInvalidPin, s, algo)
	}
	d, err := parseDigest(s)
	if err != nil {
		return pin{}, err
	}
	return pin{digest: d}, nil
}

// parseDigest checks that s is a sha256 in hex and returns it in lower case.
func parseDigest(s string) (string, error) {
	if len(s) != 2*32 {
		hint := ""
		switch len(s) {
		case 2 * 16:
			hint = " (an md5?)"
		case 2 * 20:
			hint = " (a sha1?)"
		case 2 * 64:
			hint = " (a sha512?)"
		}
		return "", fmt.Errorf("%w: %q has %d characters%s, a sha256 has 64 hex digits", ErrInvalidPin, s, len(s), hint)
	}
	if _, err := hex.DecodeString(s); err != nil {
		return "", fmt.Errorf("%w: %q is not hexadecimal", ErrInvalidPin, s)
	}
	return strings.ToLower(s), nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// location is where an input lives: an http(s) URL or a local file (a path or a file:// URL).
type location struct {
	url  *url.URL // http or https; nil for local files
	path string   // local files only, cleaned
}

func parseLocation(s string) (location, error) {
	if s == "" {
		return location{}, errors.New("empty location")
	}
	scheme, _, ok := strings.Cut(s, "://")
	if !ok {
		return location{path: filepath.Clean(s)}, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return location{}, err
	}
	switch strings.ToLower(scheme) {
	case "http", "https":
		if u.Host == "" {
			return location{}, fmt.Errorf("%s: no host", redact(u))
		}
		return location{url: u}, nil
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return location{}, fmt.Errorf("%s: file URLs on another host (%s) are not supported", s, u.Host)
		}
		if !path.IsAbs(u.Path) {
			return location{}, fmt.Errorf("%s: file URL without an absolute path", s)
		}
		return location{path: filepath.Clean(u.Path)}, nil
	default:
		return location{}, fmt.Errorf("%s: unsupported scheme %q (use https://, http://, file:// or a path)", redact(u), scheme)
	}
}

func (l location) local() bool { return l.url == nil }

// String is the location fit for logs and errors: URLs lose their password and query values,
// which are often credentials (presigned URLs).
func (l location) String() string {
	if l.local() {
		return l.path
	}
	return redact(l.url)
}

// baseName is the file name that a checksum file lists the input under.
func (l location) baseName() string {
	if l.local() {
		return filepath.Base(l.path)
	}
	return path.Base(l.url.Path)
}

func redact(u *url.URL) string {
	c := *u
	if c.RawQuery != "" {
		q := c.Query()
		for k := range q {
			q[k] = []string{"REDACTED"}
		}
		c.RawQuery = q.Encode()
	}
	return c.Redacted()
}

// lookupSum finds the sha256 of name in a checksum file: GNU coreutils lines ("HASH  name",
// "HASH *name", names optionally "./"-prefixed or backslash-escaped) and BSD/OpenSSL lines
// ("SHA256 (name) = HASH"), as Debian, Ubuntu and Fedora publish them. Anything else (comments,
// PGP armour, other algorithms) is skipped. An entry in a subdirectory ("dir/name") matches only
// when no entry names the file directly, and only if all such entries agree.
func lookupSum(data []byte, name string) (string, error) {
	var exact, byBase []string
	var otherAlgo string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		algo, sum, file, ok := parseSumLine(sc.Text())
		if !ok {
			continue
		}
		file = strings.TrimPrefix(file, "./")
		base := path.Base(file)
		if file != name && base != name {
			continue
		}
		if algo != "sha256" {
			otherAlgo = algo
			continue
		}
		d, err := parseDigest(sum)
		if err != nil {
			return "", fmt.Errorf("entry for %s: %w", name, err)
		}
		if file == name {
			exact = append(exact, d)
		} else {
			byBase = append(byBase, d)
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	for _, found := range [][]string{exact, byBase} {
		if len(found) == 0 {
			continue
		}
		for _, d := range found[1:] {
			if d != found[0] {
				return "", fmt.Errorf("%w: %q is listed with different sums (%s, %s)", ErrNoSum, name, found[0], d)
			}
		}
		return found[0], nil
	}
	if otherAlgo != "" {
		return "", fmt.Errorf("%w: %q is listed only with a %s sum; use the SHA256SUMS file or pin the sha256 itself", ErrNoSum, name, otherAlgo)
	}
	return "", fmt.Errorf("%w (no line names %q)", ErrNoSum, name)
}

// taggedSumLine matches the BSD/OpenSSL checksum line: algorithm, file name, digest.
var taggedSumLine = regexp.MustCompile(`^([A-Za-z0-9-]+) ?\((.*)\) ?= ?([0-9A-Fa-f]+)$`)

// parseSumLine splits one checksum-file line. algo is guessed from the digest length for GNU lines.
func parseSumLine(line string) (algo, sum, file string, ok bool) {
	line = strings.TrimRight(line, "\r")
	if line == "" || line[0] == '#' {
		return "", "", "", false
	}
	// BSD and OpenSSL: "SHA256 (name) = HASH", "SHA2-256(name)= HASH".
	if m := taggedSumLine.FindStringSubmatch(line); m != nil {
		algo = strings.ToLower(m[1])
		algo = strings.ReplaceAll(strings.Replace(algo, "sha2-", "sha", 1), "-", "") // SHA3-256 stays apart
		return algo, m[3], m[2], true
	}
	// GNU: "HASH  name" (text mode) or "HASH *name" (binary mode); a leading backslash means the
	// name has \\ and \n escapes.
	escaped := strings.HasPrefix(line, "\\")
	if escaped {
		line = line[1:]
	}
	sum, file, found := strings.Cut(line, " ")
	if !found || len(file) < 2 || (file[0] != ' ' && file[0] != '*') {
		return "", "", "", false
	}
	if _, err := hex.DecodeString(sum); err != nil {
		return "", "", "", false
	}
	file = file[1:]
	if escaped {
		file = strings.NewReplacer(`\\`, `\`, `\n`, "\n").Replace(file)
	}
	switch len(sum) {
	case 32:
		algo = "md5"
	case 40:
		algo = "sha1"
	case 56:
		algo = "sha224"
	case 64:
		algo = "sha256"
	case 96:
		algo = "sha384"
	case 128:
		algo = "sha512"
	default:
		return "", "", "", false
	}
	return algo, sum, file, true
}
