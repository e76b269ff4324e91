package testguest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ingot-build/ingot/cloudinit"
)

// Access is what a test needs to reach a guest booted with a generated seed.
type Access struct {
	Seed     string // the seed image
	User     string
	Client   ssh.Signer
	HostKey  ssh.PublicKey // pinned: the key put in the seed
	HostLine string
}

// NewSeed makes per-test keys and a NoCloud seed (ingot's cloudinit package) in dir that lets
// Access log in as user "tester"; userData is the recipe-like user-data to merge (may be nil).
func NewSeed(t testing.TB, dir, hostname string, userData map[string]any) Access {
	t.Helper()
	client, clientLine := newKey(t)
	host, hostLine := newKey(t)
	hostPriv, err := ssh.MarshalPrivateKey(host, "")
	if err != nil {
		t.Fatal(err)
	}
	seed, err := cloudinit.New(cloudinit.Config{
		InstanceID: "i-" + hostname,
		Hostname:   hostname,
		BuildUser:  cloudinit.BuildUser{Name: "tester", AuthorizedKeys: []string{clientLine}},
		HostKeys:   []cloudinit.HostKey{{Private: pem.EncodeToMemory(hostPriv), Public: hostLine}},
		UserData:   userData,
	})
	if err != nil {
		t.Fatalf("make seed: %v", err)
	}
	path := filepath.Join(dir, "seed.iso")
	if err := seed.Write(context.Background(), path); err != nil {
		t.Fatalf("write seed: %v", err)
	}
	signer, err := ssh.NewSignerFromKey(client)
	if err != nil {
		t.Fatal(err)
	}
	hostSigner, err := ssh.NewSignerFromKey(host)
	if err != nil {
		t.Fatal(err)
	}
	return Access{Seed: path, User: "tester", Client: signer, HostKey: hostSigner.PublicKey(), HostLine: hostLine}
}

func newKey(t testing.TB) (ed25519.PrivateKey, string) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return priv, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
}

// Dial connects to the guest, retrying until it works, the guest stops (stopped is closed) or
// timeout passes. The host key is verified against the one in the seed.
func (a Access) Dial(t testing.TB, addr string, stopped <-chan struct{}, timeout time.Duration) *ssh.Client {
	t.Helper()
	cfg := &ssh.ClientConfig{
		User:              a.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(a.Client)},
		HostKeyCallback:   ssh.FixedHostKey(a.HostKey),
		HostKeyAlgorithms: []string{a.HostKey.Type()},
		Timeout:           5 * time.Second,
	}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		c, err := dialOnce(addr, cfg)
		if err == nil {
			return c
		}
		last = err
		select {
		case <-stopped:
			t.Fatalf("the guest stopped while waiting for SSH at %s (last error: %v)", addr, last)
		case <-time.After(500 * time.Millisecond):
		}
	}
	t.Fatalf("no SSH at %s within %s: %v", addr, timeout, last)
	return nil
}

func dialOnce(addr string, cfg *ssh.ClientConfig) (*ssh.Client, error) {
	conn, err := net.DialTimeout("tcp", addr, cfg.Timeout)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// Run runs a command over c and returns its combined output.
func Run(c *ssh.Client, command string) (string, error) {
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.CombinedOutput(command)
	var exit *ssh.ExitMissingError
	if errors.As(err, &exit) {
		err = fmt.Errorf("%s: the connection ended without an exit status: %w", command, err)
	}
	return string(out), err
}
