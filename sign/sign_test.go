package sign

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"aead.dev/minisign"
)

// newKey writes a fresh unencrypted secret key, as `minisign -G -W` does, and its public key
// file into dir, and returns the secret key's path and the public key.
func newKey(t *testing.T, dir string) (string, minisign.PublicKey) {
	t.Helper()
	pub, priv, err := minisign.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	text, err := priv.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "test.key")
	if err := os.WriteFile(path, text, 0o600); err != nil {
		t.Fatal(err)
	}
	pubText, _ := pub.MarshalText()
	if err := os.WriteFile(filepath.Join(dir, "test.pub"), pubText, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, pub
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, path string, at int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[at] ^= 0x01
	writeFile(t, path, data)
}

func TestSignThenVerify(t *testing.T) {
	dir := t.TempDir()
	keyPath, pub := newKey(t, dir)
	k, err := LoadKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if !k.Public().Equal(pub) {
		t.Fatalf("Public() = %s, want %s", k.Public(), pub)
	}
	if !k.PrivateKey().Public().(minisign.PublicKey).Equal(pub) {
		t.Fatal("PrivateKey() is not the key of Public()")
	}
	data := bytes.Repeat([]byte("ingot signs SHA256SUMS\n"), 100000) // 2.3 MB: several reads
	file := filepath.Join(dir, "SHA256SUMS")
	writeFile(t, file, data)
	if err := k.SignFile(file); err != nil {
		t.Fatal(err)
	}
	if err := VerifyFile(pub, file); err != nil {
		t.Fatalf("VerifyFile after SignFile: %v", err)
	}

	st, err := os.Stat(file + ".minisig")
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("signature mode %v, want 0644 (a signature is public)", st.Mode().Perm())
	}
	sig, err := minisign.SignatureFromFile(file + ".minisig")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	for _, want := range []string{"timestamp:", "\tfile:SHA256SUMS\t", "\tsha256:" + hex.EncodeToString(sum[:])} {
		if !strings.Contains(sig.TrustedComment, want) {
			t.Errorf("trusted comment %q does not hold %q", sig.TrustedComment, want)
		}
	}
	if sig.Algorithm != minisign.HashEdDSA {
		t.Errorf("algorithm %#x, want prehashed (HashEdDSA), minisign's default", sig.Algorithm)
	}
	if !strings.Contains(sig.UntrustedComment, k.ID()) || len(k.ID()) != 16 {
		t.Errorf("untrusted comment %q does not name the key ID %q (16 hex digits)", sig.UntrustedComment, k.ID())
	}

	// Signing again replaces the signature; it still verifies.
	writeFile(t, file, []byte("another content\n"))
	if err := k.SignFile(file); err != nil {
		t.Fatal(err)
	}
	if err := VerifyFile(pub, file); err != nil {
		t.Fatalf("VerifyFile after signing again: %v", err)
	}
}

// A Key that is printed or logged shows its ID and file, never its secret bytes.
func TestKeyPrintsNoSecret(t *testing.T) {
	dir := t.TempDir()
	keyPath, _ := newKey(t, dir)
	k, err := LoadKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	// The secret key's first bytes, as %v would print them, and in base64.
	text, _ := k.priv.MarshalText()
	raw, err := base64.StdEncoding.DecodeString(strings.SplitN(string(text), "\n", 2)[1])
	if err != nil {
		t.Fatal(err)
	}
	secretDecimal := strings.Trim(fmt.Sprint(raw[62:70]), "[]")
	secretBase64 := base64.StdEncoding.EncodeToString(raw[62:80])[:16]
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("signing", "key", k)
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("signing", "key", k)
	for _, got := range []string{fmt.Sprint(k), fmt.Sprintf("%+v", k), fmt.Sprintf("%#v", k), fmt.Sprintf("%v", *k), fmt.Sprintf("%+v", *k), logged.String()} {
		if !strings.Contains(got, k.ID()) || strings.Contains(got, secretDecimal) || strings.Contains(got, secretBase64) {
			t.Errorf("a printed key shows more than its ID and file, or not its ID: %s", got)
		}
	}
}

// Each way a signed file or its signature can be wrong is an error that says which, and names
// the file.
func TestVerifyFails(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(t *testing.T, file string, k, other *Key)
		want   error
		say    string
	}{
		{"a flipped byte at the start", func(t *testing.T, file string, _, _ *Key) { flipByte(t, file, 0) }, ErrBadSignature, "does not match"},
		{"a flipped byte at the end", func(t *testing.T, file string, _, _ *Key) { flipByte(t, file, 99999) }, ErrBadSignature, "does not match"},
		{"a byte added", func(t *testing.T, file string, _, _ *Key) {
			f, _ := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
			f.Write([]byte{0})
			f.Close()
		}, ErrBadSignature, "does not match"},
		{"the file emptied", func(t *testing.T, file string, _, _ *Key) { writeFile(t, file, nil) }, ErrBadSignature, "does not match"},
		{"a flipped byte in the signature", func(t *testing.T, file string, _, _ *Key) {
			// Line 2 is the signature's base64: flip a bit of its last decoded byte.
			sig, _ := os.ReadFile(file + ".minisig")
			lines := strings.Split(string(sig), "\n")
			b := []byte(lines[1])
			b[len(b)-4] ^= 0x01
			lines[1] = string(b)
			writeFile(t, file+".minisig", []byte(strings.Join(lines, "\n")))
		}, ErrBadSignature, "does not match"},
		{"the trusted comment edited", func(t *testing.T, file string, _, _ *Key) {
			sig, _ := os.ReadFile(file + ".minisig")
			writeFile(t, file+".minisig", bytes.Replace(sig, []byte("file:data"), []byte("file:evil"), 1))
		}, ErrBadSignature, "does not match"},
		{"a signature from another key", func(t *testing.T, file string, _, other *Key) {
			if err := other.SignFile(file); err != nil {
				t.Fatal(err)
			}
		}, ErrWrongKey, "is from key"},
		{"no signature", func(t *testing.T, file string, _, _ *Key) { os.Remove(file + ".minisig") }, ErrNoSignature, "data.minisig is missing"},
		{"a signature that is not one", func(t *testing.T, file string, _, _ *Key) { writeFile(t, file+".minisig", []byte("hello\n")) }, ErrBadSignature, "not a minisign signature"},
		{"a legacy signature (minisign -l)", func(t *testing.T, file string, k, _ *Key) {
			// The test's own key, so that only the algorithm is wrong.
			data, _ := os.ReadFile(file)
			writeFile(t, file+".minisig", minisign.SignWithComments(k.priv, data, "t", "u"))
		}, ErrBadSignature, "legacy"},
		{"the file gone", func(t *testing.T, file string, _, _ *Key) { os.Remove(file) }, ErrMissing, "signature of nothing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			keyPath, pub := newKey(t, dir)
			k, err := LoadKey(keyPath)
			if err != nil {
				t.Fatal(err)
			}
			otherPath, _ := newKey(t, t.TempDir())
			other, err := LoadKey(otherPath)
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(dir, "data")
			writeFile(t, file, bytes.Repeat([]byte{'x'}, 100000))
			if err := k.SignFile(file); err != nil {
				t.Fatal(err)
			}
			if err := VerifyFile(pub, file); err != nil {
				t.Fatalf("before the change: %v", err)
			}
			tt.mutate(t, file, k, other)
			err = VerifyFile(pub, file)
			if !errors.Is(err, tt.want) {
				t.Fatalf("VerifyFile = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), tt.say) {
				t.Errorf("error %q does not name %s or say %q", err, file, tt.say)
			}
		})
	}
}

func TestLoadKeyEncrypted(t *testing.T) {
	dir := t.TempDir()
	pub, priv, err := minisign.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	const password = "correct horse battery staple"
	enc, err := minisign.EncryptKey(password, priv) // scrypt at minisign's cost: seconds, 1 GiB
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "enc.key")
	writeFile(t, keyPath, enc)

	t.Run("without INGOT_SIGN_PASSWORD", func(t *testing.T) {
		t.Setenv(PasswordEnv, "")
		os.Unsetenv(PasswordEnv)
		_, err := LoadKey(keyPath)
		if err == nil {
			t.Fatal("LoadKey of an encrypted key without a password succeeded")
		}
		for _, want := range []string{keyPath, "INGOT_SIGN_PASSWORD", "minisign -G -W"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
	})
	t.Run("a wrong password", func(t *testing.T) {
		t.Setenv(PasswordEnv, "wrong horse")
		_, err := LoadKey(keyPath)
		if err == nil {
			t.Fatal("LoadKey with a wrong password succeeded")
		}
		if !strings.Contains(err.Error(), keyPath) || !strings.Contains(err.Error(), "password is wrong") {
			t.Errorf("error %q does not name the file or say the password is wrong", err)
		}
		if strings.Contains(err.Error(), "wrong horse") {
			t.Errorf("error %q holds the password", err)
		}
	})
	t.Run("the password", func(t *testing.T) {
		t.Setenv(PasswordEnv, password)
		k, err := LoadKey(keyPath)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, "manifest.json")
		writeFile(t, file, []byte(`{"schema_version":"1.2"}`))
		if err := k.SignFile(file); err != nil {
			t.Fatal(err)
		}
		if err := VerifyFile(pub, file); err != nil {
			t.Fatal(err)
		}
	})
}

func TestLoadKeyErrors(t *testing.T) {
	dir := t.TempDir()
	_, pub := newKey(t, dir)
	pubText, _ := pub.MarshalText()
	tests := []struct {
		name string
		data []byte // nil: no file
		want string
	}{
		{"no file", nil, "no such file"},
		{"a public key given as the secret key", pubText, "not a minisign secret key"},
		{"garbage", []byte("hello\nworld\n"), "not a minisign secret key"},
		{"too big", bytes.Repeat([]byte("A"), 100<<10), "not a minisign key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.key")
			if tt.data != nil {
				writeFile(t, path, tt.data)
			}
			_, err := LoadKey(path)
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("LoadKey = %v, want an error naming %s and saying %q", err, path, tt.want)
			}
		})
	}
}

func TestLoadPublicKey(t *testing.T) {
	dir := t.TempDir()
	_, pub := newKey(t, dir)
	oneLine := filepath.Join(dir, "one-line.pub")
	writeFile(t, oneLine, []byte(pub.String()+"\n"))
	for _, path := range []string{filepath.Join(dir, "test.pub"), oneLine} {
		got, err := LoadPublicKey(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if !got.Equal(pub) {
			t.Errorf("%s: got %s, want %s", path, got, pub)
		}
	}
	bad := filepath.Join(dir, "bad.pub")
	writeFile(t, bad, []byte("untrusted comment: x\nnot base64!\n"))
	for _, path := range []string{bad, filepath.Join(dir, "none.pub"), filepath.Join(dir, "test.key")} {
		if _, err := LoadPublicKey(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("LoadPublicKey(%s) = %v, want an error naming the file", path, err)
		}
	}
}
