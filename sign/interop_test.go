package sign

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The signatures are minisign's, not a look-alike: Debian's minisign binary verifies what
// SignFile writes, with keys it made itself, and VerifyFile verifies what the binary signs.

// minisignBin is Debian's minisign. Its absence fails the test: a skip would hide that the
// interoperability this package promises is unproven.
func minisignBin(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("minisign")
	if err != nil {
		t.Fatal("the minisign binary is missing: run make deps-test (it installs Debian's minisign)")
	}
	return bin
}

// runMinisign runs minisign in dir with stdin, and returns its combined output and error.
func runMinisign(t *testing.T, dir, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(minisignBin(t), args...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	t.Logf("minisign %s: %v\n%s", strings.Join(args, " "), err, out)
	return string(out), err
}

// pubKeyLine is the key line of a .pub file and the ID its comment names.
func pubKeyLine(t *testing.T, path string) (id, key string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 {
		t.Fatalf("%s: want 2 lines, got %q", path, data)
	}
	return lines[0][strings.LastIndex(lines[0], " ")+1:], lines[1]
}

func TestMinisignVerifiesOurSignature(t *testing.T) {
	tests := []struct {
		name     string
		password string // "": minisign -G -W, a key without one
	}{
		{"unencrypted key (minisign -G -W)", ""},
		{"encrypted key (minisign -G)", "s3cret pass"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			args := []string{"-G", "-p", "k.pub", "-s", "k.key"}
			stdin := ""
			if tt.password == "" {
				args = append(args, "-W")
			} else {
				stdin = tt.password + "\n" + tt.password + "\n"
			}
			if _, err := runMinisign(t, dir, stdin, args...); err != nil {
				t.Fatal(err)
			}
			t.Setenv(PasswordEnv, tt.password)
			k, err := LoadKey(filepath.Join(dir, "k.key"))
			if err != nil {
				t.Fatal(err)
			}
			wantID, wantKey := pubKeyLine(t, filepath.Join(dir, "k.pub"))
			if k.ID() != wantID || k.Public().String() != wantKey {
				t.Errorf("key %s %s, minisign's public key file says %s %s", k.ID(), k.Public(), wantID, wantKey)
			}

			data := bytes.Repeat([]byte("0123456789abcdef\n"), 200000) // 3.4 MB
			file := filepath.Join(dir, "SHA256SUMS")
			writeFile(t, file, data)
			if err := k.SignFile(file); err != nil {
				t.Fatal(err)
			}
			out, err := runMinisign(t, dir, "", "-Vm", "SHA256SUMS", "-p", "k.pub")
			if err != nil {
				t.Fatalf("minisign -V refused our signature: %v", err)
			}
			sum := sha256.Sum256(data)
			if want := "file:SHA256SUMS\tsha256:" + hex.EncodeToString(sum[:]); !strings.Contains(out, want) {
				t.Errorf("minisign -V does not show the trusted comment %q", want)
			}
			// And it can fail: a byte changed, minisign refuses.
			flipByte(t, file, len(data)/2)
			if _, err := runMinisign(t, dir, "", "-Vm", "SHA256SUMS", "-p", "k.pub"); err == nil {
				t.Fatal("minisign -V accepted a file with a flipped byte")
			}
		})
	}
}

func TestWeVerifyMinisignSignature(t *testing.T) {
	dir := t.TempDir()
	if _, err := runMinisign(t, dir, "", "-G", "-W", "-p", "k.pub", "-s", "k.key"); err != nil {
		t.Fatal(err)
	}
	pub, err := LoadPublicKey(filepath.Join(dir, "k.pub"))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "manifest.json")
	writeFile(t, file, bytes.Repeat([]byte(`{"name":"demo"}`+"\n"), 100000))
	if _, err := runMinisign(t, dir, "", "-S", "-W", "-s", "k.key", "-m", "manifest.json"); err != nil {
		t.Fatal(err)
	}
	if err := VerifyFile(pub, file); err != nil {
		t.Fatalf("VerifyFile of minisign's signature: %v", err)
	}

	// A signature by another key that minisign made: the wrong key.
	other := t.TempDir()
	if _, err := runMinisign(t, other, "", "-G", "-W", "-p", "k.pub", "-s", "k.key"); err != nil {
		t.Fatal(err)
	}
	if _, err := runMinisign(t, dir, "", "-S", "-W", "-s", filepath.Join(other, "k.key"), "-m", "manifest.json"); err != nil {
		t.Fatal(err)
	}
	if err := VerifyFile(pub, file); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("VerifyFile of another key's signature = %v, want ErrWrongKey", err)
	}

	// minisign -l (legacy, not prehashed) is refused with a reason, not misread.
	if _, err := runMinisign(t, dir, "", "-S", "-l", "-W", "-s", "k.key", "-m", "manifest.json"); err != nil {
		t.Fatal(err)
	}
	if err := VerifyFile(pub, file); !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "legacy") {
		t.Fatalf("VerifyFile of a legacy signature = %v, want ErrBadSignature saying legacy", err)
	}

	// And a file changed after minisign signed it fails.
	if _, err := runMinisign(t, dir, "", "-S", "-W", "-s", "k.key", "-m", "manifest.json"); err != nil {
		t.Fatal(err)
	}
	flipByte(t, file, 7)
	if err := VerifyFile(pub, file); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("VerifyFile of a changed file = %v, want ErrBadSignature", err)
	}
}
