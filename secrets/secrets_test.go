package secrets

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"regexp"
	"strings"
	"testing"
)

func mustSet(t *testing.T, list ...Secret) *Set {
	t.Helper()
	s, err := New(list...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewRefuses(t *testing.T) {
	tests := []struct {
		name string
		list []Secret
		want string
	}{
		{"too short", []Secret{{"PIN", []byte("1234\n")}}, "secret PIN: 4 bytes; a secret must be at least 8 bytes"},
		{"twice", []Secret{{"A", []byte("aaaaaaaaaa")}, {"A", []byte("bbbbbbbbbb")}}, "secret A: declared twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.list...); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestMask(t *testing.T) {
	key := "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\nAAAAAAABAAAAMwAAAAtzc2gtZWQyNTUxOQ\n-----END OPENSSH PRIVATE KEY-----\n"
	s := mustSet(t, Secret{"DB_PASSWORD", []byte("hunter2-correct-horse\n")}, Secret{"DEPLOY_KEY", []byte(key)})
	tests := []struct{ in, want string }{
		{"connecting with hunter2-correct-horse now", "connecting with [secret DB_PASSWORD] now"},
		{"hunter2-correct-horsehunter2-correct-horse", "[secret DB_PASSWORD][secret DB_PASSWORD]"},
		{"+ echo b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ", "+ echo [secret DEPLOY_KEY]"},
		{"nothing here", "nothing here"},
		{"hunter2", "hunter2"}, // a prefix is not the secret
	}
	for _, tt := range tests {
		if got := s.Mask(tt.in); got != tt.want {
			t.Errorf("Mask(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := string(s.MaskBytes([]byte("pw=hunter2-correct-horse\n"))); got != "pw=[secret DB_PASSWORD]\n" {
		t.Errorf("MaskBytes = %q", got)
	}
	var none *Set
	if none.Mask("x") != "x" || none.Len() != 0 || none.Error(fs.ErrNotExist) != fs.ErrNotExist {
		t.Error("a nil Set changed something")
	}
}

func TestHandlerMasks(t *testing.T) {
	s := mustSet(t, Secret{"TOKEN", []byte("tok-0123456789")})
	var buf bytes.Buffer
	log := slog.New(s.Handler(slog.NewJSONHandler(&buf, nil))).With("preset", "tok-0123456789")
	log.Info("line tok-0123456789", "str", "a tok-0123456789 b", "err", errors.New("failed: tok-0123456789"),
		"n", 42, slog.Group("g", "inner", "tok-0123456789"))
	out := buf.String()
	if strings.Contains(out, "tok-0123456789") {
		t.Fatalf("the value reached the log: %s", out)
	}
	for _, want := range []string{`"msg":"line [secret TOKEN]"`, `"str":"a [secret TOKEN] b"`, `"err":"failed: [secret TOKEN]"`, `"n":42`, `"inner":"[secret TOKEN]"`, `"preset":"[secret TOKEN]"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s: %s", want, out)
		}
	}
}

func TestErrorMasksAndUnwraps(t *testing.T) {
	s := mustSet(t, Secret{"TOKEN", []byte("tok-0123456789")})
	err := s.Error(fmt.Errorf("step failed with output tok-0123456789: %w", fs.ErrPermission))
	if strings.Contains(err.Error(), "tok-0123456789") || !strings.Contains(err.Error(), "[secret TOKEN]") {
		t.Errorf("Error() = %q", err)
	}
	if !errors.Is(err, fs.ErrPermission) {
		t.Error("the masked error lost its chain")
	}
	if s.Error(err) != err {
		t.Error("masking twice wrapped twice")
	}
}

func TestFinder(t *testing.T) {
	s := mustSet(t, Secret{"A", []byte("needle-AAAA")}, Secret{"B", []byte("other-BBBBBB")})
	tests := []struct {
		name   string
		chunks []string // written back to back, from offset 100
		gap    bool     // leave a hole between chunks
		want   string
	}{
		{"none", []string{"hay stack", "more hay"}, false, ""},
		{"inside", []string{"xx needle-AAAA yy"}, false, "A@103x1"},
		{"straddles", []string{"xxxneedle-", "AAAAyyy"}, false, "A@103x1"},
		{"straddles three writes", []string{"xneed", "le-A", "AAAy"}, false, "A@101x1"},
		{"not across a hole", []string{"xxxneedle-", "AAAAyyy"}, true, ""},
		{"counted once at the seam", []string{"needle-AAAA", "needle-AAAA"}, false, "A@100x2"},
		{"two secrets", []string{"other-BBBBBB", " needle-AAAA"}, false, "B@100x1 A@113x1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFinder(s)
			off := int64(100)
			for _, c := range tt.chunks {
				f.Write(off, []byte(c))
				off += int64(len(c))
				if tt.gap {
					off += 4096
				}
			}
			var got []string
			for _, h := range f.Hits() {
				got = append(got, fmt.Sprintf("%s@%dx%d", h.Secret, h.Offset, h.Count))
			}
			if g := strings.Join(got, " "); g != tt.want {
				t.Errorf("hits %q, want %q", g, tt.want)
			}
		})
	}
}

func TestPatterns(t *testing.T) {
	misses := []string{
		"-----BEGIN CERTIFICATE-----", "-----BEGIN PUBLIC KEY-----", "AKIA0123", "xAKIAIOSFODNN7EXAMPLEx",
		"ghp_short", "glpat-short", "xoxb-1", "AIzaShort",
	}
	for _, p := range Patterns() {
		re, err := regexp.CompilePOSIX(p.ERE)
		if err != nil {
			t.Fatalf("%s: not an ERE: %v", p.Name, err)
		}
		if !re.MatchString(p.Example) {
			t.Errorf("%s does not match its example %q", p.Name, p.Example)
		}
		for _, m := range misses {
			if re.MatchString(m) {
				t.Errorf("%s matches %q", p.Name, m)
			}
		}
	}
}
