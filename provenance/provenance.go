// Package provenance is a build's signed provenance: an in-toto Statement (v1) whose predicate is
// SLSA Provenance v1, in a DSSE envelope signed with the build's signing key (Ed25519, the key
// minisign signs with). It records what was built from what: the recipe and every file its
// steps read, by sha256; the resolved pins of the sources; ingot's version and commit and the
// QEMU version; the build's start and end; and the outputs as subjects, by sha256.
//
// The envelope is made and checked with go-securesystemslib's dsse (the reference DSSE
// implementation); the Statement and predicate are the JSON the specifications define
// (https://in-toto.io/Statement/v1, https://slsa.dev/provenance/v1), written out as plain structs
// here because in-toto-golang's Go types for them are deprecated in favour of protobuf types
// whose dependencies outweigh the dozen fields used.
package provenance

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"aead.dev/minisign"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/ingot-build/ingot/manifest"
	"github.com/ingot-build/ingot/sign"
)

// File names and types.
const (
	// FileName is the envelope beside the outputs.
	FileName      = "provenance.intoto.jsonl"
	PayloadType   = "application/vnd.in-toto+json"
	StatementType = "https://in-toto.io/Statement/v1"
	PredicateType = "https://slsa.dev/provenance/v1"
	// BuildType names how ingot builds: a recipe baked into images (docs/signing.md, "Provenance").
	BuildType = "https://github.com/ingot-build/ingot/blob/main/docs/signing.md#provenance"
	// BuilderID names the builder: ingot, run by whoever holds the signing key.
	BuilderID = "https://github.com/ingot-build/ingot"
)

// Statement is an in-toto Statement v1 with an SLSA Provenance v1 predicate.
type Statement struct {
	Type          string    `json:"_type"`
	Subject       []Subject `json:"subject"`
	PredicateType string    `json:"predicateType"`
	Predicate     Predicate `json:"predicate"`
}

// Subject is an artifact the statement is about.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// Predicate is SLSA Provenance v1.
type Predicate struct {
	BuildDefinition BuildDefinition `json:"buildDefinition"`
	RunDetails      RunDetails      `json:"runDetails"`
}

// BuildDefinition is what went into the build.
type BuildDefinition struct {
	BuildType            string               `json:"buildType"`
	ExternalParameters   map[string]any       `json:"externalParameters"`
	InternalParameters   map[string]any       `json:"internalParameters,omitempty"`
	ResolvedDependencies []ResourceDescriptor `json:"resolvedDependencies,omitempty"`
}

// ResourceDescriptor names an artifact by URI and digest.
type ResourceDescriptor struct {
	URI    string            `json:"uri,omitempty"`
	Name   string            `json:"name,omitempty"`
	Digest map[string]string `json:"digest,omitempty"`
}

// RunDetails is who ran the build, and when.
type RunDetails struct {
	Builder  Builder  `json:"builder"`
	Metadata Metadata `json:"metadata"`
}

// Builder is ingot, with the versions of what it ran.
type Builder struct {
	ID      string            `json:"id"`
	Version map[string]string `json:"version,omitempty"`
}

// Metadata is the build's invocation id and times.
type Metadata struct {
	InvocationID string    `json:"invocationId"`
	StartedOn    time.Time `json:"startedOn"`
	FinishedOn   time.Time `json:"finishedOn"`
}

// Input is what New records.
type Input struct {
	Manifest *manifest.Manifest
	// RecipeFiles are the files the recipe's steps read (scripts, uploads), by path relative to
	// the recipe's directory, with their sha256.
	RecipeFiles []ResourceDescriptor
	// Variables are the recipe's variables as the build resolved them.
	Variables map[string]string
}

// New makes the statement of the build in's manifest records.
func New(in Input) Statement {
	m := in.Manifest
	var subjects []Subject
	for _, f := range m.Outputs {
		subjects = append(subjects, Subject{Name: f.File, Digest: map[string]string{"sha256": f.SHA256}})
	}
	deps := []ResourceDescriptor{{URI: recipeURI(m.Recipe.File), Name: "recipe", Digest: digest(m.Recipe.SHA256)}}
	for _, in := range m.Inputs {
		deps = append(deps, ResourceDescriptor{URI: in.URL, Name: "source." + in.Kind, Digest: digest(in.SHA256)})
	}
	deps = append(deps, in.RecipeFiles...)
	ext := map[string]any{"recipe": m.Recipe.File}
	if len(in.Variables) > 0 {
		ext["variables"] = in.Variables
	}
	internal := map[string]any{"inputs_sha256": m.Recipe.Inputs, "driver": m.Tool.Driver, "firmware": m.Firmware}
	version := map[string]string{"ingot": m.Tool.IngotVersion, "ingot_commit": m.Tool.IngotCommit, "qemu": m.Tool.QEMUVersion, "qemu-img": m.Tool.QemuImgVer}
	for k, v := range version {
		if v == "" {
			delete(version, k)
		}
	}
	return Statement{
		Type: StatementType, Subject: subjects, PredicateType: PredicateType,
		Predicate: Predicate{
			BuildDefinition: BuildDefinition{BuildType: BuildType, ExternalParameters: ext, InternalParameters: internal, ResolvedDependencies: deps},
			RunDetails: RunDetails{
				Builder:  Builder{ID: BuilderID, Version: version},
				Metadata: Metadata{InvocationID: m.BuildID, StartedOn: m.Started.UTC(), FinishedOn: m.Finished.UTC()},
			},
		},
	}
}

func recipeURI(file string) string {
	if file == "" {
		return ""
	}
	return "file:" + file
}

func digest(sha string) map[string]string {
	if sha == "" {
		return nil
	}
	return map[string]string{"sha256": sha}
}

// signer makes DSSE signatures with an Ed25519 key (a minisign key's), named by keyID.
type signer struct {
	key   crypto.Signer
	keyID string
}

func (s signer) Sign(_ context.Context, data []byte) ([]byte, error) {
	return s.key.Sign(nil, data, crypto.Hash(0))
}
func (s signer) KeyID() (string, error) { return s.keyID, nil }

// verifier checks DSSE signatures with an Ed25519 public key.
type verifier struct {
	pub   ed25519.PublicKey
	keyID string
}

func (v verifier) Verify(_ context.Context, data, sig []byte) error {
	if !ed25519.Verify(v.pub, data, sig) {
		return errors.New("the signature does not verify with this public key")
	}
	return nil
}
func (v verifier) KeyID() (string, error)   { return v.keyID, nil }
func (v verifier) Public() crypto.PublicKey { return v.pub }

// MinisignKey returns the Ed25519 public key inside a minisign public key (its last text line
// is base64 of "Ed", the key id, the key) and the key id as minisign prints it, which names the
// key in the envelope's signature.
func MinisignKey(pub minisign.PublicKey) (ed25519.PublicKey, string, error) {
	text, err := pub.MarshalText()
	if err != nil {
		return nil, "", err
	}
	lines := strings.Split(strings.TrimSpace(string(text)), "\n")
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(lines[len(lines)-1]))
	if err != nil || len(raw) != 2+8+ed25519.PublicKeySize || string(raw[:2]) != "Ed" {
		return nil, "", fmt.Errorf("not a minisign Ed25519 public key: %q", text)
	}
	return ed25519.PublicKey(raw[10:]), sign.KeyID(pub.ID()), nil
}

// MinisignSigner returns the Ed25519 private key inside a minisign private key, and its key id.
// minisign's API signs only in minisign's own format, and a DSSE signature is plain Ed25519 over
// the envelope's PAE, so the key is taken out of the unencrypted secret-key encoding that
// MarshalText writes (minisign's documented layout: "Ed", KDF and checksum algorithms, KDF salt
// and limits, then the key id and the 64-byte Ed25519 secret key), and checked against the
// public key before it is used.
func MinisignSigner(priv minisign.PrivateKey) (ed25519.PrivateKey, string, error) {
	text, err := priv.MarshalText()
	if err != nil {
		return nil, "", err
	}
	lines := strings.Split(strings.TrimSpace(string(text)), "\n")
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(lines[len(lines)-1]))
	const at = 2 + 2 + 2 + 32 + 8 + 8 + 8
	if err != nil || len(raw) < at+ed25519.PrivateKeySize || string(raw[:2]) != "Ed" || raw[2] != 0 || raw[3] != 0 {
		return nil, "", errors.New("the minisign key is not an unencrypted Ed25519 key once decrypted")
	}
	key := ed25519.PrivateKey(append([]byte(nil), raw[at:at+ed25519.PrivateKeySize]...))
	pub, ok := priv.Public().(minisign.PublicKey)
	if !ok {
		return nil, "", errors.New("the minisign key has no public key")
	}
	want, id, err := MinisignKey(pub)
	if err != nil {
		return nil, "", err
	}
	if !want.Equal(key.Public()) {
		return nil, "", errors.New("the Ed25519 key taken from the minisign key does not match its public key")
	}
	return key, id, nil
}

// Sign puts the statement in a DSSE envelope signed with key, an Ed25519 signer (signing the
// message itself, crypto.Hash(0)), whose id is keyID, and returns the envelope's JSON.
func Sign(ctx context.Context, st Statement, key crypto.Signer, keyID string) ([]byte, error) {
	body, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	es, err := dsse.NewEnvelopeSigner(signer{key, keyID})
	if err != nil {
		return nil, err
	}
	env, err := es.SignPayload(ctx, PayloadType, body)
	if err != nil {
		return nil, fmt.Errorf("sign the provenance: %w", err)
	}
	return json.Marshal(env)
}

// Verify checks an envelope's signature with pub and returns its statement.
func Verify(ctx context.Context, envelope []byte, pub ed25519.PublicKey, keyID string) (*Statement, error) {
	var env dsse.Envelope
	if err := json.Unmarshal(envelope, &env); err != nil {
		return nil, fmt.Errorf("not a DSSE envelope: %w", err)
	}
	if env.PayloadType != PayloadType {
		return nil, fmt.Errorf("the envelope's payload is %q, not an in-toto statement", env.PayloadType)
	}
	ev, err := dsse.NewEnvelopeVerifier(verifier{pub, keyID})
	if err != nil {
		return nil, err
	}
	if _, err := ev.Verify(ctx, &env); err != nil {
		return nil, fmt.Errorf("the provenance's signature: %w", err)
	}
	body, err := env.DecodeB64Payload()
	if err != nil {
		return nil, err
	}
	var st Statement
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("the provenance's statement: %w", err)
	}
	if st.Type != StatementType || st.PredicateType != PredicateType {
		return nil, fmt.Errorf("the statement is %s with %s, not %s with %s", st.Type, st.PredicateType, StatementType, PredicateType)
	}
	return &st, nil
}
