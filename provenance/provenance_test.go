package provenance

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"aead.dev/minisign"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/ingot-build/ingot/manifest"
	"github.com/ingot-build/ingot/sign"
)

// minisignEd25519 is the Ed25519 public key inside a minisign public key.
func minisignEd25519(t *testing.T, pub minisign.PublicKey) ed25519.PublicKey {
	t.Helper()
	k, id, err := MinisignKey(pub)
	if err != nil || id != sign.KeyID(pub.ID()) {
		t.Fatalf("MinisignKey = %q, %v", id, err)
	}
	return k
}

// The statement records the outputs as subjects and every input by digest; its envelope, signed
// with a minisign key, verifies with that key's public half (here and with dsse's own verifier),
// and not with another key or after a change.
func TestSignVerify(t *testing.T) {
	ctx := context.Background()
	started := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
	m := &manifest.Manifest{
		Name: "web", BuildID: "web-1", Started: started, Finished: started.Add(time.Minute),
		Recipe:  manifest.Recipe{File: "web.yaml", SHA256: strings.Repeat("1", 64), Inputs: strings.Repeat("2", 64)},
		Inputs:  []manifest.Input{{Kind: "disk", URL: "https://cloud.debian.org/x.qcow2", SHA256: strings.Repeat("3", 64)}},
		Tool:    manifest.Tool{IngotVersion: "0.9", IngotCommit: "abc", QEMUVersion: "7.2.22", Driver: "qemu"},
		Outputs: []manifest.File{{File: "web.qcow2", Format: "qcow2", SHA256: strings.Repeat("4", 64)}},
	}
	st := New(Input{Manifest: m, RecipeFiles: []ResourceDescriptor{{URI: "file:scripts/a.sh", Digest: map[string]string{"sha256": strings.Repeat("5", 64)}}}})
	body, _ := json.Marshal(st)
	for _, want := range []string{`"_type":"https://in-toto.io/Statement/v1"`, `"predicateType":"https://slsa.dev/provenance/v1"`,
		`{"name":"web.qcow2","digest":{"sha256":"4444`, `"uri":"https://cloud.debian.org/x.qcow2"`, `"uri":"file:scripts/a.sh"`,
		`"invocationId":"web-1"`, `"qemu":"7.2.22"`, `"startedOn":"2026-12-06T20:00:00Z"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("the statement lacks %s:\n%s", want, body)
		}
	}
	pub, priv, err := minisign.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, keyID, err := MinisignSigner(priv)
	if err != nil || keyID != sign.KeyID(priv.ID()) {
		t.Fatalf("MinisignSigner: %q, %v", keyID, err)
	}
	env, err := Sign(ctx, st, key, keyID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Verify(ctx, env, minisignEd25519(t, pub), keyID)
	if err != nil || got.Predicate.RunDetails.Metadata.InvocationID != "web-1" {
		t.Fatalf("Verify = %+v, %v", got, err)
	}
	// The envelope is standard DSSE: its signature is Ed25519 over dsse.PAE, as any verifier
	// computes it.
	var e dsse.Envelope
	if err := json.Unmarshal(env, &e); err != nil || len(e.Signatures) != 1 || e.Signatures[0].KeyID != keyID {
		t.Fatalf("envelope %s: %v", env, err)
	}
	payload, _ := base64.StdEncoding.DecodeString(e.Payload)
	sig, _ := base64.StdEncoding.DecodeString(e.Signatures[0].Sig)
	if !ed25519.Verify(minisignEd25519(t, pub), dsse.PAE(PayloadType, payload), sig) {
		t.Error("the signature is not Ed25519 over the DSSE PAE")
	}

	other, _, _ := minisign.GenerateKey(rand.Reader)
	if _, err := Verify(ctx, env, minisignEd25519(t, other), keyID); err == nil {
		t.Error("an envelope verified with another key")
	}
	e.Payload = base64.StdEncoding.EncodeToString([]byte(strings.Replace(string(payload), "4444", "5555", 1)))
	tampered, _ := json.Marshal(e)
	if _, err := Verify(ctx, tampered, minisignEd25519(t, pub), keyID); err == nil {
		t.Error("a changed statement verified")
	}
}
