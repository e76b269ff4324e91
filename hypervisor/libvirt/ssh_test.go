package libvirt_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/hypervisor/libvirt"
	"github.com/ingot-build/ingot/internal/testguest"
)

// sshServer is an SSH server in the test process that does what OpenSSH's sshd does for a
// qemu+ssh client: public-key login, and channels to a unix socket (direct-streamlocal, for
// libvirtd's socket) and to a TCP address (direct-tcpip, for the guest's SSH forward). There is no
// sshd on the test machines; this stands in for the libvirt host's.
type sshServer struct {
	addr       string
	knownHosts string // a known_hosts file that pins its host key
	keyFile    string // the client's private key
	mu         sync.Mutex
	opened     []string // "unix:/path" and "tcp:host:port" channels, in order
}

func newSSHServer(t *testing.T) *sshServer {
	t.Helper()
	dir := t.TempDir()
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	_, clientPriv, _ := ed25519.GenerateKey(rand.Reader)
	clientSigner, _ := ssh.NewSignerFromKey(clientPriv)
	block, err := ssh.MarshalPrivateKey(clientPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	s := &sshServer{keyFile: filepath.Join(dir, "id_ed25519"), knownHosts: filepath.Join(dir, "known_hosts")}
	if err := os.WriteFile(s.keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) == string(clientSigner.PublicKey().Marshal()) {
			return nil, nil
		}
		return nil, fmt.Errorf("unknown key")
	}}
	cfg.AddHostKey(hostSigner)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s.addr = ln.Addr().String()
	line := knownhosts.Line([]string{knownhosts.Normalize(s.addr)}, hostSigner.PublicKey())
	if err := os.WriteFile(s.knownHosts, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c, cfg)
		}
	}()
	return s
}

func (s *sshServer) serve(c net.Conn, cfg *ssh.ServerConfig) {
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		c.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		var network, addr string
		switch nc.ChannelType() {
		case "direct-streamlocal@openssh.com":
			var p struct {
				Path      string
				Reserved0 string
				Reserved1 uint32
			}
			if ssh.Unmarshal(nc.ExtraData(), &p) != nil {
				nc.Reject(ssh.ConnectionFailed, "bad payload")
				continue
			}
			network, addr = "unix", p.Path
		case "direct-tcpip":
			var p struct {
				Host     string
				Port     uint32
				OrigHost string
				OrigPort uint32
			}
			if ssh.Unmarshal(nc.ExtraData(), &p) != nil {
				nc.Reject(ssh.ConnectionFailed, "bad payload")
				continue
			}
			network, addr = "tcp", net.JoinHostPort(p.Host, fmt.Sprint(p.Port))
		default:
			nc.Reject(ssh.UnknownChannelType, nc.ChannelType())
			continue
		}
		far, err := net.Dial(network, addr)
		if err != nil {
			nc.Reject(ssh.ConnectionFailed, err.Error())
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			far.Close()
			continue
		}
		s.mu.Lock()
		s.opened = append(s.opened, network+":"+addr)
		s.mu.Unlock()
		go ssh.DiscardRequests(creqs)
		go func() {
			defer far.Close()
			defer ch.Close()
			done := make(chan struct{}, 2)
			go func() { io.Copy(far, ch); done <- struct{}{} }()
			go func() { io.Copy(ch, far); done <- struct{}{} }()
			<-done
		}()
	}
}

func (s *sshServer) channels() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.opened...)
}

// qemu+ssh: libvirt's RPC and the guest's SSH forward both travel over one SSH connection whose
// host key is checked against known_hosts; SSHAddr is a local end of a tunnel to the forward on
// the libvirt host's loopback. A host key that does not match is refused.
func TestSSHTransportAndTunnel(t *testing.T) {
	t.Parallel()
	s := newSSHServer(t)
	host, port, _ := net.SplitHostPort(s.addr)
	q := url.Values{"keyfile": {s.keyFile}, "known_hosts": {s.knownHosts}}
	uri := fmt.Sprintf("qemu+ssh://tester@%s:%s/system?%s", host, port, q.Encode())
	d := newDriver(t, libvirt.Options{URI: uri})
	m := start(t, d, hypervisor.Spec{Name: "ssh", WorkDir: testguest.WorkDir(t), MemoryMiB: 64})

	c, err := net.DialTimeout("tcp", m.SSHAddr(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial the tunnel %s: %v", m.SSHAddr(), err)
	}
	// slirp accepts, then drops the connection (nothing listens in the guest): the tunnel
	// carried it if the SSH server opened a TCP channel to the libvirt host's loopback.
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = c.Read(make([]byte, 1))
	c.Close()
	var libvirtChans, forwardChans int
	for _, ch := range s.channels() {
		switch {
		case ch == "unix:/var/run/libvirt/libvirt-sock":
			libvirtChans++
		case strings.HasPrefix(ch, "tcp:127.0.0.1:") && ch != "tcp:"+m.SSHAddr():
			forwardChans++
		}
	}
	if libvirtChans < 3 || forwardChans != 1 {
		t.Errorf("SSH channels %v: want libvirt connections (driver, machine, console) and one forward", s.channels())
	}
	if err := m.Kill(context.Background()); err != nil {
		t.Fatal(err)
	}

	// known_hosts pins another key for this host: refused. So is a host known_hosts does not
	// list.
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	otherKey, _ := ssh.NewSignerFromKey(otherPriv)
	wrong := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(wrong, []byte(knownhosts.Line([]string{knownhosts.Normalize(s.addr)}, otherKey.PublicKey())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for kh, want := range map[string]string{wrong: "does not match", empty: "ssh-keyscan"} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		bad := fmt.Sprintf("qemu+ssh://tester@%s:%s/system?%s", host, port, url.Values{"keyfile": {s.keyFile}, "known_hosts": {kh}}.Encode())
		_, err := libvirt.New(ctx, libvirt.Options{URI: bad})
		cancel()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New with known_hosts %s = %v, want an error saying %q", kh, err, want)
		}
	}
}
