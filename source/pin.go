package source

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"unicode/utf8"
)

// The algorithms a pin may name. The cache is keyed by sha256 whatever the pin says.
const (
	sha256Algo = "sha256"
	sha512Algo = "sha512"
)

// digestLen is the length in hex digits of each algorithm's digest.
var digestLen = map[string]int{sha256Algo: 64, sha512Algo: 128}

// otherAlgo is the algorithm a checksum-file pin falls back to when the file does not list the
// input with the pinned one.
var otherAlgo = map[string]string{sha256Algo: sha512Algo, sha512Algo: sha256Algo}

// digest is what a pin resolves to: the hash that the content must have.
type digest struct {
	algo string // sha256Algo or sha512Algo
	hex  string // lower case
}

func (d digest) String() string { return d.algo + ":" + d.hex }

// logPin is a log attribute for the pin beside the sha256 that names the content: the sha512, or
// for a sha256 pin an empty Attr, which slog's handlers drop.
func (d digest) logPin() slog.Attr {
	if d.algo == sha256Algo {
		return slog.Attr{}
	}
	return slog.String(d.algo, d.hex)
}

// key names the partial download and the lock of a fetch for d: the sha256 itself (the names
// partial/ and locks/ always had), or "sha512-HEX", whose "-" no sha256 name has.
func (d digest) key() string {
	if d.algo == sha256Algo {
		return d.hex
	}
	return d.algo + "-" + d.hex
}

// parseKey is the inverse of digest.key.
func parseKey(s string) (digest, bool) {
	if h, ok := strings.CutPrefix(s, sha512Algo+"-"); ok {
		return digest{algo: sha512Algo, hex: h}, isHexDigest(h, sha512Algo)
	}
	return digest{algo: sha256Algo, hex: s}, isHexDigest(s, sha256Algo)
}

// pin is a parsed Input.SHA256: either the digest itself or where to look it up.
type pin struct {
	algo   string    // sha256Algo or sha512Algo: digest's, or the one wanted from sums
	digest string    // lower-case hex, or "" when sums is set
	sums   *location // a checksum file listing the input by its base name
}

// parsePin accepts "HEX" (a sha256), "sha256:HEX", "sha512:HEX", and a checksum file (as
// Packer's iso_checksum does): "file:LOCATION" or "sha256:file:LOCATION" want its sha256 entry,
// "sha512:file:LOCATION" its sha512 entry; either falls back to the other algorithm's entry (see
// lookupSum). A bare 128-digit digest is refused rather than guessed to be a sha512: the recipe
// says which algorithm it means. Digests are case-insensitive and returned in lower case.
func parsePin(s string) (pin, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return pin{}, ErrUnpinned
	}
	algo := sha256Algo
	if rest, ok := cutPrefixFold(s, "sha256:"); ok {
		s = strings.TrimSpace(rest)
	} else if rest, ok := cutPrefixFold(s, "sha512:"); ok {
		algo, s = sha512Algo, strings.TrimSpace(rest)
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
		return pin{algo: algo, sums: &loc}, nil
	}
	if other, _, ok := strings.Cut(s, ":"); ok {
		return pin{}, fmt.Errorf("%w: %q: only sha256 and sha512 are supported, not %s", ErrInvalidPin, s, other)
	}
	d, err := parseDigest(s, algo)
	if err != nil {
		return pin{}, err
	}
	return pin{algo: algo, digest: d}, nil
}

// parseDigest checks that s is a digest of algo in hex and returns it in lower case. A digest one
// digit short or long is a copy that went wrong, and is called that.
func parseDigest(s, algo string) (string, error) {
	bad := strings.IndexFunc(s, notHexDigit)
	if want, n := digestLen[algo], utf8.RuneCountInString(s); n != want {
		hint := ""
		switch {
		case bad < 0 && n == want-1:
			hint = " (one digit short?)"
		case bad < 0 && n == want+1:
			hint = " (one digit too many?)"
		case n == 2*16:
			hint = " (an md5?)"
		case n == 2*20:
			hint = " (a sha1?)"
		case n == 2*32:
			hint = " (a sha256? write sha256:HEX)"
		case n == 2*64:
			hint = " (a sha512? write sha512:HEX)"
		}
		return "", fmt.Errorf("%w: %q has %d characters%s, not the %d hex digits of a %s (a sha256 has 64, a sha512 128)",
			ErrInvalidPin, s, n, hint, want, algo)
	}
	if bad >= 0 {
		r, _ := utf8.DecodeRuneInString(s[bad:])
		return "", fmt.Errorf("%w: %q is not hexadecimal: %q (character %d) is not a hex digit",
			ErrInvalidPin, s, r, utf8.RuneCountInString(s[:bad])+1)
	}
	return strings.ToLower(s), nil
}

func notHexDigit(r rune) bool {
	return !('0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F')
}

// isHexDigest reports whether s is a digest of algo in lower-case hex, as cache file names are.
func isHexDigest(s, algo string) bool {
	_, err := parseDigest(s, algo)
	return err == nil && s == strings.ToLower(s)
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

// lookupSum finds the digest of name in a checksum file: GNU coreutils lines ("HASH  name",
// "HASH *name", names optionally "./"-prefixed or backslash-escaped) and BSD/OpenSSL lines
// ("SHA256 (name) = HASH"), as Debian, Ubuntu and Fedora publish them. Anything else (comments,
// PGP armour, other algorithms) is skipped. An entry in a subdirectory ("dir/name") matches only
// when no entry names the file directly, and only if all such entries agree.
//
// The entry for the algorithm the pin wants (prefer) is taken if there is one; else the other of
// sha256 and sha512. Both are sound, and the checksum file is what the user vouched for, so a
// plain `file:` pin on Debian's SHA512SUMS works as well as `sha512:file:`.
func lookupSum(data []byte, name, prefer string) (digest, error) {
	// Candidates by how well the name matched, then by algorithm.
	exact, byBase := map[string][]string{}, map[string][]string{}
	var unsupported string
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
		if _, ok := digestLen[algo]; !ok {
			unsupported = algo
			continue
		}
		d, err := parseDigest(sum, algo)
		if err != nil {
			return digest{}, fmt.Errorf("entry for %s: %w", name, err)
		}
		if file == name {
			exact[algo] = append(exact[algo], d)
		} else {
			byBase[algo] = append(byBase[algo], d)
		}
	}
	if err := sc.Err(); err != nil {
		return digest{}, err
	}
	for _, class := range []map[string][]string{exact, byBase} {
		for _, algo := range []string{prefer, otherAlgo[prefer]} {
			found := class[algo]
			if len(found) == 0 {
				continue
			}
			for _, d := range found[1:] {
				if d != found[0] {
					return digest{}, fmt.Errorf("%w: %q is listed with different %s sums (%s, %s)", ErrNoSum, name, algo, found[0], d)
				}
			}
			return digest{algo: algo, hex: found[0]}, nil
		}
	}
	if unsupported != "" {
		return digest{}, fmt.Errorf("%w: %q is listed only with a %s sum; use the SHA256SUMS or SHA512SUMS file, or pin the sha256 itself", ErrNoSum, name, unsupported)
	}
	return digest{}, fmt.Errorf("%w (no line names %q)", ErrNoSum, name)
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
