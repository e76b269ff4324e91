// Package secrets owns the values a build uses but its image must not keep (issue 16; docs/secrets.md):
// the set of a build's secrets, how they are masked wherever ingot writes text (log records,
// errors, a kept console), and what the scan of a finished disk looks for: each secret's bytes
// and the common credential patterns.
//
// It reads no disk and runs no guest: bake resolves the recipe's secrets into a Set, hands
// Needles to the guest-side file search and the disk's bytes to a Finder, and decides.
package secrets

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// MinLen is the shortest secret ingot accepts: below it, masking would hide ordinary words and
// a scan of gigabytes would match by chance.
const MinLen = 8

// Secret is one secret of a build: its name in the recipe and its value.
type Secret struct {
	Name  string
	Value []byte
}

// Set is a build's secrets. The zero Set and a nil *Set hold none: Mask returns text unchanged.
type Set struct {
	secrets []Secret
	// pieces are what Mask replaces, longest first: each value, trimmed of its final line
	// ending, and each of its lines of MinLen bytes or more (a log line never holds two lines
	// of a multi-line value such as a private key).
	pieces []piece
}

type piece struct {
	text   string
	secret int // index in secrets
}

// New makes a Set. A value shorter than MinLen, or a name given twice, is an error that names it.
func New(list ...Secret) (*Set, error) {
	s := &Set{}
	seen := map[string]bool{}
	for _, sec := range list {
		if seen[sec.Name] {
			return nil, fmt.Errorf("secret %s: declared twice", sec.Name)
		}
		seen[sec.Name] = true
		core := trimEOL(sec.Value)
		if len(core) < MinLen {
			return nil, fmt.Errorf("secret %s: %d bytes; a secret must be at least %d bytes, or masking and scanning for it would match ordinary text", sec.Name, len(core), MinLen)
		}
		i := len(s.secrets)
		s.secrets = append(s.secrets, Secret{Name: sec.Name, Value: slices.Clone(sec.Value)})
		s.pieces = append(s.pieces, piece{string(core), i})
		if bytes.ContainsAny(core, "\r\n") {
			for _, line := range strings.FieldsFunc(string(core), func(r rune) bool { return r == '\n' || r == '\r' }) {
				if line = strings.TrimSpace(line); len(line) >= MinLen {
					s.pieces = append(s.pieces, piece{line, i})
				}
			}
		}
	}
	slices.SortStableFunc(s.pieces, func(a, b piece) int { return len(b.text) - len(a.text) })
	return s, nil
}

// trimEOL drops one final line ending: a secret read from a file usually ends with one that is
// not part of the value a step echoes.
func trimEOL(v []byte) []byte {
	v = bytes.TrimSuffix(v, []byte("\n"))
	return bytes.TrimSuffix(v, []byte("\r"))
}

// Len is how many secrets the set holds.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.secrets)
}

// Value is the value of the secret name, and whether the set holds it.
func (s *Set) Value(name string) ([]byte, bool) {
	if s == nil {
		return nil, false
	}
	for _, sec := range s.secrets {
		if sec.Name == name {
			return sec.Value, true
		}
	}
	return nil, false
}

// Mask replaces every secret's value in text with [secret NAME].
func (s *Set) Mask(text string) string {
	if s == nil || len(s.pieces) == 0 {
		return text
	}
	for _, p := range s.pieces {
		if strings.Contains(text, p.text) {
			text = strings.ReplaceAll(text, p.text, "[secret "+s.secrets[p.secret].Name+"]")
		}
	}
	return text
}

// MaskBytes is Mask for a file's contents.
func (s *Set) MaskBytes(b []byte) []byte {
	if s == nil {
		return b
	}
	for _, p := range s.pieces {
		if bytes.Contains(b, []byte(p.text)) {
			b = bytes.ReplaceAll(b, []byte(p.text), []byte("[secret "+s.secrets[p.secret].Name+"]"))
		}
	}
	return b
}

// Needle is one byte string a scan looks for, and the secret it belongs to.
type Needle struct {
	Secret string
	Bytes  []byte
}

// Needles are what a scan of raw bytes looks for: each value, trimmed of its final line ending.
// Not the lines of a multi-line value, which Mask does replace: a private key's armor and its
// first lines are the same in every key of its kind, and the build's own deleted host keys would
// match them.
func (s *Set) Needles() []Needle {
	if s == nil {
		return nil
	}
	out := make([]Needle, 0, len(s.secrets))
	for _, sec := range s.secrets {
		out = append(out, Needle{Secret: sec.Name, Bytes: trimEOL(sec.Value)})
	}
	return out
}

// Error masks err's message and keeps err itself for errors.Is and errors.As: what bake returns
// once a build has secrets, so that no caller can print a value a step's output or a console
// tail carried into an error.
func (s *Set) Error(err error) error {
	if err == nil || s.Len() == 0 {
		return err
	}
	var m *maskedError
	if errors.As(err, &m) && m.set == s {
		return err
	}
	return &maskedError{err: err, set: s}
}

type maskedError struct {
	err error
	set *Set
}

func (e *maskedError) Error() string { return e.set.Mask(e.err.Error()) }
func (e *maskedError) Unwrap() error { return e.err }
