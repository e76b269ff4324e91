package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"aead.dev/minisign"

	"github.com/ingot-build/ingot/manifest"
	"github.com/ingot-build/ingot/sign"
)

// signedKey writes a fresh minisign key pair (secret key unencrypted, as minisign -G -W writes
// it) into a temporary directory and returns the loaded key and the .pub file's path.
func signedKey(t *testing.T) (*sign.Key, string) {
	t.Helper()
	dir := t.TempDir()
	pub, priv, err := minisign.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	privText, _ := priv.MarshalText()
	pubText, _ := pub.MarshalText()
	keyPath, pubPath := filepath.Join(dir, "ingot.key"), filepath.Join(dir, "ingot.pub")
	if err := os.WriteFile(keyPath, privText, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubPath, pubText, 0o644); err != nil {
		t.Fatal(err)
	}
	k, err := sign.LoadKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	return k, pubPath
}

func sha256Hex(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// signedOutputDir is a signed build's output directory, as bake publishes one: an output,
// manifest.json, an SPDX SBOM and SHA256SUMS, the records signed with k.
func signedOutputDir(t *testing.T, k *sign.Key) string {
	t.Helper()
	dir := t.TempDir()
	output := verifyOutput()
	if err := os.WriteFile(filepath.Join(dir, "demo.qcow2"), output, 0o644); err != nil {
		t.Fatal(err)
	}
	out := manifest.File{File: "demo.qcow2", Format: "qcow2", Size: int64(len(output)), SHA256: sha256Hex(output)}
	m := &manifest.Manifest{Name: "demo", BuildID: "b1", Outputs: []manifest.File{out}}
	if err := manifest.Write(filepath.Join(dir, "manifest.json"), m); err != nil {
		t.Fatal(err)
	}
	if err := manifest.WriteSums(filepath.Join(dir, "SHA256SUMS"), m.Outputs); err != nil {
		t.Fatal(err)
	}
	spdx := fmt.Sprintf(`{"spdxVersion":"SPDX-2.3","files":[{"SPDXID":"SPDXRef-File-demo.qcow2","fileName":"./demo.qcow2","checksums":[{"algorithm":"SHA256","checksumValue":%q}]}]}`, out.SHA256)
	if err := os.WriteFile(filepath.Join(dir, "sbom.spdx.json"), []byte(spdx), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"SHA256SUMS", "manifest.json", "sbom.spdx.json"} {
		if err := k.SignFile(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestVerifyCommand(t *testing.T) {
	tests := []struct {
		name string
		// mutate changes the signed directory; args is the command line after "ingot verify",
		// with DIR and PUB for the directory and the public key file.
		mutate func(t *testing.T, dir string)
		args   string
		code   int
		stdout []string
		stderr []string
	}{
		{
			name:   "an untouched build",
			args:   "DIR --pubkey PUB",
			code:   exitOK,
			stdout: []string{"verified with key ", "signatures  SHA256SUMS, manifest.json, sbom.spdx.json", "SHA256SUMS  1 file(s)", "1 output(s)", "sbom.spdx.json describes the 1 output(s)"},
		},
		{
			name:   "the flag first",
			args:   "--pubkey PUB DIR",
			code:   exitOK,
			stdout: []string{"verified with key "},
		},
		{
			name: "an output with one byte flipped",
			mutate: func(t *testing.T, dir string) {
				if err := os.WriteFile(filepath.Join(dir, "demo.qcow2"), flippedOutput(), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			args: "DIR --pubkey PUB",
			code: exitFailed,
			stderr: []string{
				"ingot: verify: demo.qcow2: sha256 differs: SHA256SUMS lists sha256 " + sha256Hex(verifyOutput()),
				"the file has " + sha256Hex(flippedOutput()),
				"is NOT verified: 1 problem(s)",
			},
		},
		{
			name: "SHA256SUMS edited to match the flipped byte",
			mutate: func(t *testing.T, dir string) {
				if err := os.WriteFile(filepath.Join(dir, "demo.qcow2"), flippedOutput(), 0o644); err != nil {
					t.Fatal(err)
				}
				sums := sha256Hex(flippedOutput()) + "  demo.qcow2\n"
				if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(sums), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			args:   "DIR --pubkey PUB",
			code:   exitFailed,
			stderr: []string{"ingot: verify: SHA256SUMS: bad signature: it does not match SHA256SUMS.minisig", "demo.qcow2: records disagree"},
		},
		{
			name: "a signature from another key",
			mutate: func(t *testing.T, dir string) {
				other, _ := signedKey(t)
				if err := other.SignFile(filepath.Join(dir, "manifest.json")); err != nil {
					t.Fatal(err)
				}
			},
			args:   "DIR --pubkey PUB",
			code:   exitFailed,
			stderr: []string{"ingot: verify: manifest.json: bad signature: signed by another key: manifest.json.minisig is from key ", "1 problem(s)"},
		},
		{
			name: "a signature missing",
			mutate: func(t *testing.T, dir string) {
				os.Remove(filepath.Join(dir, "SHA256SUMS.minisig"))
			},
			args:   "DIR --pubkey PUB",
			code:   exitFailed,
			stderr: []string{"ingot: verify: SHA256SUMS: no signature: SHA256SUMS.minisig is missing"},
		},
		{name: "no --pubkey", args: "DIR", code: exitUsage, stderr: []string{`Required flag "pubkey" not set`}},
		{name: "a --pubkey file that is not there", args: "DIR --pubkey DIR/none.pub", code: exitUsage, stderr: []string{"--pubkey: public key: open ", "none.pub: no such file"}},
		{name: "a --pubkey file that is not a key", args: "DIR --pubkey DIR/manifest.json", code: exitUsage, stderr: []string{"not a minisign public key"}},
		{name: "no DIR", args: "--pubkey PUB", code: exitUsage, stderr: []string{"name one output directory"}},
		{name: "two DIRs", args: "DIR DIR --pubkey PUB", code: exitUsage, stderr: []string{"name one output directory"}},
		{name: "a DIR that is no build's output", args: "DIR/.. --pubkey PUB", code: exitUsage, stderr: []string{"not an ingot output directory", "has no manifest.json"}},
		{name: "a DIR that is not there", args: "DIR/none --pubkey PUB", code: exitUsage, stderr: []string{"not an ingot output directory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, pub := signedKey(t)
			// Inside a directory of its own, so that DIR/.. holds no manifest.json.
			dir := signedOutputDir(t, k)
			if tt.mutate != nil {
				tt.mutate(t, dir)
			}
			args := []string{"ingot", "verify"}
			for _, a := range strings.Fields(tt.args) {
				a = strings.ReplaceAll(a, "DIR", dir)
				args = append(args, strings.ReplaceAll(a, "PUB", pub))
			}
			var stdout, stderr bytes.Buffer
			code := run(args, &stdout, &stderr)
			t.Logf("%q: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, stdout.String(), stderr.String())
			if code != tt.code {
				t.Errorf("%q: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, code, tt.code, stdout.String(), stderr.String())
			}
			for _, want := range tt.stdout {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("stdout does not say %q:\n%s", want, stdout.String())
				}
			}
			for _, want := range tt.stderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr does not say %q:\n%s", want, stderr.String())
				}
			}
			if tt.code == exitOK && stderr.Len() > 0 {
				t.Errorf("stderr of a verified build:\n%s", stderr.String())
			}
			if tt.code == exitUsage && (!strings.HasPrefix(stderr.String(), "ingot: ") || strings.Count(stderr.String(), "\n") != 1) {
				t.Errorf("stderr of bad usage is not one line starting %q:\n%s", "ingot: ", stderr.String())
			}
			if tt.code != exitOK && stdout.Len() > 0 {
				t.Errorf("stdout of a failed verify, which should say nothing verified:\n%s", stdout.String())
			}
		})
	}
}

// verifyOutput is the content of signedOutputDir's output, and flippedOutput the same with one
// byte flipped.
func verifyOutput() []byte { return bytes.Repeat([]byte("qcow2 image bytes "), 50000) }

func flippedOutput() []byte {
	b := verifyOutput()
	b[1000] ^= 1
	return b
}
