package libvirt

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// sshConfig is how ingot logs in to a libvirt host for qemu+ssh://. It is the user's own SSH
// identity, checked the way OpenSSH checks it: the host key must already be in known_hosts (no
// trust on first use, never InsecureIgnoreHostKey), keys come from the agent and the usual key
// files.
//
// Why x/crypto/ssh rather than go-libvirt's SSH dialer: the same SSH connection must also carry
// the tunnel to the guest's SSH forward, which is bound to the libvirt host's loopback; go-libvirt's
// dialer keeps its SSH client to itself.
type sshConfig struct {
	user       string
	keyFiles   []string // tried in order; encrypted keys are skipped (use the agent for those)
	knownHosts []string
}

func defaultSSHConfig(t target, keyFile, knownHosts string) (sshConfig, error) {
	c := sshConfig{user: t.user}
	if c.user == "" {
		u, err := user.Current()
		if err != nil {
			return c, fmt.Errorf("SSH user for %s: %w", t, err)
		}
		c.user = u.Username
	}
	home, _ := os.UserHomeDir()
	switch {
	case t.keyFile != "":
		c.keyFiles = []string{t.keyFile}
	case keyFile != "":
		c.keyFiles = []string{keyFile}
	case home != "":
		for _, k := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
			c.keyFiles = append(c.keyFiles, filepath.Join(home, ".ssh", k))
		}
	}
	switch {
	case t.knownHosts != "":
		c.knownHosts = []string{t.knownHosts}
	case knownHosts != "":
		c.knownHosts = []string{knownHosts}
	default:
		if home != "" {
			c.knownHosts = append(c.knownHosts, filepath.Join(home, ".ssh", "known_hosts"))
		}
		c.knownHosts = append(c.knownHosts, "/etc/ssh/ssh_known_hosts")
	}
	return c, nil
}

// dialSSH logs in to the libvirt host.
func dialSSH(ctx context.Context, t target, cfg sshConfig, log *slog.Logger) (*ssh.Client, error) {
	addr := net.JoinHostPort(t.host, t.port)
	at := fmt.Sprintf("connect to libvirtd at %s: SSH to %s@%s", t, cfg.user, addr)

	var files []string
	for _, f := range cfg.knownHosts {
		if _, err := os.Stat(f); err == nil {
			files = append(files, f)
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no known_hosts file (looked at %v); add the host's key after checking its fingerprint: ssh-keyscan -p %s %s >> ~/.ssh/known_hosts", at, cfg.knownHosts, t.port, t.host)
	}
	hostKeys, err := knownhosts.New(files...)
	if err != nil {
		return nil, fmt.Errorf("%s: read %v: %w", at, files, err)
	}
	algos := hostKeyAlgorithms(hostKeys, addr)
	if len(algos) == 0 {
		return nil, fmt.Errorf("%s: the host is not in %v; add its key after checking its fingerprint: ssh-keyscan -p %s %s >> %s", at, files, t.port, t.host, files[0])
	}

	var auth []ssh.AuthMethod
	var signers []ssh.Signer
	var notes []string
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		if a, err := net.Dial("unix", sock); err == nil {
			defer a.Close()
			if s, err := agent.NewClient(a).Signers(); err == nil {
				signers = append(signers, s...)
			} else {
				notes = append(notes, "agent: "+err.Error())
			}
		} else {
			notes = append(notes, "agent: "+err.Error())
		}
	}
	for _, f := range cfg.keyFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				notes = append(notes, err.Error())
			}
			continue
		}
		s, err := ssh.ParsePrivateKey(b)
		if err != nil {
			// A passphrase-protected key cannot be used without a prompt; the agent can.
			notes = append(notes, fmt.Sprintf("%s: %v (load it into ssh-agent)", f, err))
			continue
		}
		signers = append(signers, s)
	}
	if len(signers) == 0 {
		return nil, fmt.Errorf("%s: no usable key: no ssh-agent keys and none of %v (%v)", at, cfg.keyFiles, notes)
	}
	auth = append(auth, ssh.PublicKeys(signers...))

	conf := &ssh.ClientConfig{
		User:              cfg.user,
		Auth:              auth,
		HostKeyCallback:   hostKeys,
		HostKeyAlgorithms: algos,
		Timeout:           dialTimeout,
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", at, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = raw.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	c, chans, reqs, err := ssh.NewClientConn(raw, addr, conf)
	stop()
	if err != nil {
		raw.Close()
		var kerr *knownhosts.KeyError
		if errors.As(err, &kerr) {
			return nil, fmt.Errorf("%s: the host key does not match %v: %w; if the host was reinstalled, check its new fingerprint and update known_hosts", at, files, err)
		}
		if len(notes) > 0 {
			err = fmt.Errorf("%w (%v)", err, notes)
		}
		return nil, fmt.Errorf("%s: %w", at, err)
	}
	_ = raw.SetDeadline(time.Time{})
	log.Debug("ssh connected", "host", addr, "user", cfg.user)
	return ssh.NewClient(c, chans, reqs), nil
}

// hostKeyAlgorithms lists the algorithms of the keys known_hosts holds for addr. Without it the
// server may offer a key type known_hosts does not list, and the handshake fails with a "key
// mismatch" although the host is known (x/crypto/ssh picks the first common algorithm, OpenSSH
// prefers the known ones). The known keys are found by asking the callback about a key that cannot
// match: its KeyError lists the keys it wanted.
func hostKeyAlgorithms(cb ssh.HostKeyCallback, addr string) []string {
	probe, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	if err != nil {
		return nil
	}
	tcp, _ := net.ResolveTCPAddr("tcp", addr)
	if tcp == nil {
		tcp = &net.TCPAddr{}
	}
	var kerr *knownhosts.KeyError
	if err := cb(addr, tcp, probe.PublicKey()); !errors.As(err, &kerr) {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	for _, k := range kerr.Want {
		for _, a := range algorithmsFor(k.Key.Type()) {
			if !seen[a] {
				seen[a] = true
				algos = append(algos, a)
			}
		}
	}
	return algos
}

func algorithmsFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}

// dialSSHChannel opens a channel to network/addr as seen from the SSH server, giving up when ctx
// ends (x/crypto/ssh's Dial has no context).
func dialSSHChannel(ctx context.Context, c *ssh.Client, network, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := c.Dial(network, addr)
		done <- result{conn, err}
	}()
	select {
	case r := <-done:
		return r.conn, r.err
	case <-ctx.Done():
		go func() {
			if r := <-done; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// tunnel is a local listener whose connections are carried over SSH to an address on the libvirt
// host: the guest's SSH forward, which is bound to that host's loopback.
type tunnel struct {
	ln   net.Listener
	wg   sync.WaitGroup
	once sync.Once
}

func newTunnel(c *ssh.Client, remote string, log *slog.Logger) (*tunnel, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("tunnel to %s: %w", remote, err)
	}
	t := &tunnel{ln: ln}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		for {
			local, err := ln.Accept()
			if err != nil {
				return
			}
			t.wg.Add(1)
			go func() {
				defer t.wg.Done()
				defer local.Close()
				far, err := c.Dial("tcp", remote)
				if err != nil {
					log.Debug("tunnel dial failed", "remote", remote, "err", err)
					return
				}
				defer far.Close()
				pipe(local, far)
			}()
		}
	}()
	return t, nil
}

func (t *tunnel) addr() string { return t.ln.Addr().String() }

func (t *tunnel) close() {
	t.once.Do(func() { t.ln.Close() })
}

// pipe copies both ways until either side ends, then ends the other.
func pipe(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	a.Close()
	b.Close()
	<-done
}
