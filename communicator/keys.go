// Package communicator talks to build guests over SSH: it waits for sshd to come up behind QEMU's
// hostfwd, runs provisioner commands (optionally as root), moves files in both directions and
// survives reboots.
//
// Why pinned host keys instead of trust-on-first-use: ingot generates the guest's host key itself
// and hands it to cloud-init in the seed (ssh_keys), so the key is known before the first boot.
// Anything answering on the forwarded port with another key is either a guest that ignored the
// seed or a different process; both are errors worth stopping for, never a prompt to accept.
package communicator

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/ingot-build/ingot/internal/execx"
)

// Keys are one build's ephemeral keys: the client's, and the guest's host key, which ingot
// generates and puts in the cloud-init seed (ssh_keys), so it is known before the first boot and
// verified on every connection.
type Keys struct {
	Client         ssh.Signer // ed25519
	AuthorizedKey  string     // the client's public key as an authorized_keys line (no newline)
	HostPrivatePEM []byte     // the guest host key (ed25519), OpenSSH PEM, for cloud-init
	HostPublic     string     // the host key as an authorized_keys-style line ("ssh-ed25519 AAAA…")

	clientPriv ed25519.PrivateKey
	hostPub    ssh.PublicKey
}

// keyComment marks the keys in authorized_keys and the seed so a person inspecting a guest can
// tell where they came from.
const keyComment = "ingot-build"

// GenerateKeys makes a fresh client key and guest host key (both ed25519: small, fast, and
// accepted by every sshd that cloud-init images ship).
func GenerateKeys() (*Keys, error) {
	_, clientPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating client key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(clientPriv)
	if err != nil {
		return nil, fmt.Errorf("wrapping client key: %w", err)
	}
	hostPubRaw, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating host key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(hostPriv, keyComment)
	if err != nil {
		return nil, fmt.Errorf("encoding host key: %w", err)
	}
	hostPub, err := ssh.NewPublicKey(hostPubRaw)
	if err != nil {
		return nil, fmt.Errorf("wrapping host public key: %w", err)
	}
	return &Keys{
		Client:         signer,
		AuthorizedKey:  authorizedLine(signer.PublicKey()),
		HostPrivatePEM: pem.EncodeToMemory(block),
		HostPublic:     authorizedLine(hostPub),
		clientPriv:     clientPriv,
		hostPub:        hostPub,
	}, nil
}

func authorizedLine(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + " " + keyComment
}

// HostFingerprint is the SHA256 fingerprint of the guest host key, as ssh-keygen -l prints it.
func (k *Keys) HostFingerprint() string {
	return ssh.FingerprintSHA256(k.hostPub)
}

// hostKey returns the pinned host key, parsing HostPublic when the Keys were built by hand (for
// example restored from a build directory) rather than by GenerateKeys.
func (k *Keys) hostKey() (ssh.PublicKey, error) {
	if k == nil {
		return nil, errors.New("no keys configured")
	}
	if k.hostPub != nil {
		return k.hostPub, nil
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k.HostPublic))
	if err != nil {
		return nil, fmt.Errorf("parsing pinned host key %q: %w", k.HostPublic, err)
	}
	return pub, nil
}

// ClientKeyFile is the name WriteClientKey uses inside its directory.
const ClientKeyFile = "id_ed25519"

// KnownHostsFile is the name SSHCommand uses for the pinned host key, next to the client key.
const KnownHostsFile = "known_hosts"

// WriteClientKey writes the client private key (OpenSSH PEM, mode 0600) into dir, atomically,
// and returns its path. It exists so a person can ssh into a paused build by hand.
// dir is created 0700 if missing; an existing dir that others can write to is refused, because
// whoever can write there could swap the key file under us.
func (k *Keys) WriteClientKey(dir string) (string, error) {
	if k.clientPriv == nil {
		return "", errors.New("writing client key: private key not available (Keys not made by GenerateKeys)")
	}
	if err := privateDir(dir); err != nil {
		return "", err
	}
	block, err := ssh.MarshalPrivateKey(k.clientPriv, keyComment)
	if err != nil {
		return "", fmt.Errorf("encoding client key: %w", err)
	}
	path := filepath.Join(dir, ClientKeyFile)
	if err := writeFileAtomic(path, 0o600, writeBytes(pem.EncodeToMemory(block))); err != nil {
		return "", fmt.Errorf("writing client key: %w", err)
	}
	return path, nil
}

// SSHCommand returns a line a person can paste to get a shell in the guest:
//
//	ssh -i KEY -p PORT -o UserKnownHostsFile=… -o StrictHostKeyChecking=yes user@127.0.0.1
//
// It writes the client key and a known_hosts holding the pinned host key into dir, so the
// person's ssh verifies the guest exactly as ingot does.
func (k *Keys) SSHCommand(dir, user, addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("building ssh command: address %q: %w", addr, err)
	}
	keyPath, err := k.WriteClientKey(dir)
	if err != nil {
		return "", err
	}
	hostPub, err := k.hostKey()
	if err != nil {
		return "", err
	}
	khPath := filepath.Join(dir, KnownHostsFile)
	line := knownhosts.Line([]string{knownhosts.Normalize(addr)}, hostPub) + "\n"
	if err := writeFileAtomic(khPath, 0o600, writeBytes([]byte(line))); err != nil {
		return "", fmt.Errorf("writing known_hosts: %w", err)
	}
	args := []string{
		"ssh", "-i", keyPath, "-p", port,
		"-o", "UserKnownHostsFile=" + khPath,
		"-o", "StrictHostKeyChecking=yes",
		"-o", "IdentitiesOnly=yes",
		user + "@" + host,
	}
	return execx.Quote(args), nil
}

// privateDir makes dir (0700) or checks that an existing one is not writable by others.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating key directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("checking key directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("key directory %s is not a directory", dir)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("refusing to write keys into %s: mode %04o lets others write there (want 0700)", dir, fi.Mode().Perm())
	}
	return nil
}

// writeFileAtomic writes what fill produces to a temporary file next to path, fsyncs it and renames
// it into place, so a reader never sees a half-written file and a failure leaves the old one intact.
func writeFileAtomic(path string, perm os.FileMode, fill func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := fill(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	return nil
}

// writeBytes is a writeFileAtomic fill that writes data.
func writeBytes(data []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := bytes.NewReader(data).WriteTo(w)
		return err
	}
}

// ShellQuote quotes s for a POSIX shell: single quotes, with embedded single quotes closed,
// escaped and reopened. Newlines, $, backquotes and spaces are all literal inside.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// savedKeys is what MarshalKeys keeps of Keys: enough to reconnect to the guest they were made
// for (the client key and the pinned host key), not the host's private key, which only the
// guest's seed needs.
type savedKeys struct {
	ClientPrivatePEM string `json:"client_private_pem"`
	HostPublic       string `json:"host_public"`
}

// MarshalKeys encodes the keys of a running guest, so that a later build restoring the guest
// from a checkpoint reconnects with the same client key and pins the same host key. The result
// holds a private key: keep it 0600.
func MarshalKeys(k *Keys) ([]byte, error) {
	if k.clientPriv == nil {
		return nil, errors.New("saving keys: private key not available (Keys not made by GenerateKeys)")
	}
	block, err := ssh.MarshalPrivateKey(k.clientPriv, keyComment)
	if err != nil {
		return nil, fmt.Errorf("saving keys: %w", err)
	}
	return json.Marshal(savedKeys{ClientPrivatePEM: string(pem.EncodeToMemory(block)), HostPublic: k.HostPublic})
}

// UnmarshalKeys decodes what MarshalKeys wrote.
func UnmarshalKeys(data []byte) (*Keys, error) {
	var s savedKeys
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("reading saved keys: %w", err)
	}
	raw, err := ssh.ParseRawPrivateKey([]byte(s.ClientPrivatePEM))
	if err != nil {
		return nil, fmt.Errorf("reading saved keys: client key: %w", err)
	}
	priv, ok := raw.(*ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("reading saved keys: client key is %T, want ed25519", raw)
	}
	signer, err := ssh.NewSignerFromKey(*priv)
	if err != nil {
		return nil, fmt.Errorf("reading saved keys: %w", err)
	}
	hostPub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s.HostPublic))
	if err != nil {
		return nil, fmt.Errorf("reading saved keys: host key %q: %w", s.HostPublic, err)
	}
	return &Keys{
		Client:        signer,
		AuthorizedKey: authorizedLine(signer.PublicKey()),
		HostPublic:    s.HostPublic,
		clientPriv:    *priv,
		hostPub:       hostPub,
	}, nil
}
