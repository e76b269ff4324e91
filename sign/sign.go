// Package sign signs a build's records (SHA256SUMS, manifest.json, the SBOM) with minisign, and
// verifies them: one file against its signature (VerifyFile), or a whole output directory, its
// signatures, its sums and the agreement of manifest, SBOM and outputs (VerifyDir).
//
// # Why minisign
//
// A minisign signature is a small text file beside the file it signs (FILE.minisig), checked with
// one public key that fits on a line. Users verify an ingot build with ingot, or with Debian's
// `minisign` binary alone, and then `sha256sum -c SHA256SUMS`: nothing of ingot's is needed to trust
// the outputs. The format is aead.dev/minisign's, never written by hand here.
//
// Signatures are "prehashed" (minisign's default since 0.8, algorithm ED): the file is read once,
// streaming, through BLAKE2b-512, whatever its size.
package sign

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"aead.dev/minisign"
	"github.com/google/renameio/v2"
)

// PasswordEnv is the environment variable that holds the password of an encrypted secret key.
// It is read from the environment only, never from a flag (which `ps` shows to every user of the
// machine) and never logged.
const PasswordEnv = "INGOT_SIGN_PASSWORD"

// SigExt is what a signature's file name adds to the name of the file it signs.
const SigExt = ".minisig"

// maxKeyFile bounds what LoadKey and LoadPublicKey read: minisign's key files are a few hundred
// bytes, so anything much bigger is not one.
const maxKeyFile = 64 << 10

// Errors of VerifyFile (and of VerifyDir's problems), for errors.Is.
var (
	// ErrNoSignature is a file without its FILE.minisig.
	ErrNoSignature = errors.New("no signature")
	// ErrBadSignature is a signature that does not verify: the file or the signature changed
	// after signing, or the signature is not one.
	ErrBadSignature = errors.New("bad signature")
	// ErrWrongKey is a signature made by another key than the public key given. It is also an
	// ErrBadSignature.
	ErrWrongKey = fmt.Errorf("%w: signed by another key", ErrBadSignature)
	// ErrMissing is a file that is not there: one that SHA256SUMS lists, or the file of a
	// signature.
	ErrMissing = errors.New("missing")
)

// Key is a minisign secret key, decrypted, ready to sign.
type Key struct {
	path string
	priv minisign.PrivateKey
}

// LoadKey reads a minisign secret key file as `minisign -G` writes it. A key encrypted with a
// password (minisign's default) is decrypted with the password in the environment variable
// INGOT_SIGN_PASSWORD; an unencrypted key (`minisign -G -W`) needs none. Errors name the file and
// say what to do; they never hold the password.
//
// Decrypting takes a few seconds and 1 GiB of memory: minisign derives the key with scrypt at
// libsodium's "sensitive" cost, on purpose. Load a key once per build, not once per file.
func LoadKey(path string) (*Key, error) {
	data, err := readSmall(path, os.Open)
	if err != nil {
		return nil, fmt.Errorf("sign key: %w", err)
	}
	k := &Key{path: path}
	if minisign.IsEncrypted(data) {
		password, ok := os.LookupEnv(PasswordEnv)
		if !ok || password == "" {
			return nil, fmt.Errorf("sign key %s is encrypted with a password: set %s to it (or make a key without one: minisign -G -W)", path, PasswordEnv)
		}
		if k.priv, err = minisign.DecryptKey(password, data); err != nil {
			return nil, fmt.Errorf("sign key %s: cannot decrypt it with the password in %s: the password is wrong, or the file is damaged", path, PasswordEnv)
		}
		return k, nil
	}
	if err := k.priv.UnmarshalText(data); err != nil {
		return nil, fmt.Errorf("sign key %s: not a minisign secret key (make one with minisign -G): %w", path, err)
	}
	return k, nil
}

// Public is the public key that verifies k's signatures. Its String is the one-line form that
// `minisign -P` takes; MarshalText is the content of a .pub file.
func (k *Key) Public() minisign.PublicKey {
	return k.priv.Public().(minisign.PublicKey)
}

// PrivateKey is the decrypted secret key itself, for what signs in another format with the same
// key (the provenance's DSSE envelope: plain Ed25519). It is the secret: never print or log it.
func (k *Key) PrivateKey() minisign.PrivateKey { return k.priv }

// ID is the key's ID as minisign prints it: 16 upper-case hex digits.
func (k *Key) ID() string { return KeyID(k.priv.ID()) }

// String names the key by its ID and file. With GoString, it keeps the secret key's bytes out of
// whatever prints or logs a Key (%v, %+v and %#v alike).
func (k Key) String() string { return fmt.Sprintf("minisign key %s (%s)", k.ID(), k.path) }

// GoString is String: see there.
func (k Key) GoString() string { return k.String() }

// SignFile signs the file at path, reading it once, streaming, and writes its signature to
// path+".minisig" atomically (a synced temporary file renamed over it): a reader never sees half
// a signature, and a failed SignFile leaves any previous one as it was. The trusted comment,
// which the signature covers too, names the file and its sha256:
//
//	timestamp:1767225600	file:SHA256SUMS	sha256:9f86d08…
//
// so that `minisign -V` shows what was signed, in the form sha256sum prints.
func (k *Key) SignFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sign %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	r := minisign.NewReader(io.TeeReader(f, h))
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("sign %s: read it: %w", path, err)
	}
	trusted := fmt.Sprintf("timestamp:%d\tfile:%s\tsha256:%s", time.Now().Unix(), filepath.Base(path), hex.EncodeToString(h.Sum(nil)))
	untrusted := "signature from ingot, minisign secret key " + k.ID()
	sig := r.SignWithComments(k.priv, trusted, untrusted)
	if err := renameio.WriteFile(path+SigExt, sig, 0o644); err != nil {
		return fmt.Errorf("sign %s: %w", path, err)
	}
	return nil
}

// LoadPublicKey reads a minisign public key file, as `minisign -G` writes it (a comment line,
// then the key), or the key's one line alone (as `minisign -P` takes it).
func LoadPublicKey(path string) (minisign.PublicKey, error) {
	data, err := readSmall(path, os.Open)
	if err != nil {
		return minisign.PublicKey{}, fmt.Errorf("public key: %w", err)
	}
	var pub minisign.PublicKey
	if err := pub.UnmarshalText(data); err != nil {
		return minisign.PublicKey{}, fmt.Errorf("public key %s: not a minisign public key (minisign -G writes one, NAME.pub): %w", path, err)
	}
	return pub, nil
}

// VerifyFile checks the file at path against its signature, path+".minisig", with pub, reading
// the file once, streaming. The error says which of these it is: ErrNoSignature (none there),
// ErrWrongKey (signed, but by another key), ErrBadSignature (the file or its signature changed
// after signing, or the signature is malformed); each names the file.
func VerifyFile(pub minisign.PublicKey, path string) error {
	return verify(pub, path, os.Open)
}

// verify is VerifyFile, opening name and name+".minisig" with open: os.Open, or an os.Root's
// Open for the files of an output directory, so that none is read from outside it.
func verify(pub minisign.PublicKey, name string, open func(string) (*os.File, error)) error {
	sigName := filepath.Base(name) + SigExt
	data, err := readSmall(name+SigExt, open)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w: %s is missing", name, ErrNoSignature, sigName)
	}
	if err != nil {
		return fmt.Errorf("%s: read its signature: %w", name, err)
	}
	var sig minisign.Signature
	if err := sig.UnmarshalText(data); err != nil {
		return fmt.Errorf("%s: %w: %s is not a minisign signature: %v", name, ErrBadSignature, sigName, err)
	}
	if sig.KeyID != pub.ID() {
		return fmt.Errorf("%s: %w: %s is from key %s, the public key given is %s", name, ErrWrongKey, sigName, KeyID(sig.KeyID), KeyID(pub.ID()))
	}
	if sig.Algorithm != minisign.HashEdDSA {
		// minisign -l signs the whole file as one message, which would have to be read into
		// memory; minisign has signed prehashed by default since 0.8.
		return fmt.Errorf("%s: %w: %s is a legacy (minisign -l) signature; sign it again without -l", name, ErrBadSignature, sigName)
	}
	f, err := open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w: %s is a signature of nothing", name, ErrMissing, sigName)
	}
	if err != nil {
		return fmt.Errorf("verify %s: %w", name, err)
	}
	defer f.Close()
	r := minisign.NewReader(f)
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("verify %s: read it: %w", name, err)
	}
	if !r.Verify(pub, data) {
		return fmt.Errorf("%s: %w: it does not match %s: the file or its signature changed after signing", name, ErrBadSignature, sigName)
	}
	return nil
}

// KeyID formats a key ID as minisign prints it in a public key file's comment: upper-case hex
// without leading zeros, so the ID a user reads from ingot matches the one minisign shows.
func KeyID(id uint64) string { return fmt.Sprintf("%X", id) }

// readSmall reads a key or signature file, opened with open, refusing one too big to be either.
func readSmall(path string, open func(string) (*os.File, error)) ([]byte, error) {
	f, err := open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("%s: over %d KiB: not a minisign key or signature", path, maxKeyFile>>10)
	}
	return data, nil
}
