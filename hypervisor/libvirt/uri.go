package libvirt

import (
	"fmt"
	"net"
	"net/url"
	"strings"

	golibvirt "github.com/digitalocean/go-libvirt"
)

// DefaultURI is the system daemon on this host.
const DefaultURI = "qemu:///system"

// defaultSocket is where a privileged libvirtd (monolithic or virtqemud's proxy) listens.
const defaultSocket = "/var/run/libvirt/libvirt-sock"

// Transports ingot speaks.
const (
	transportUnix = "unix" // qemu:///system
	transportTCP  = "tcp"  // qemu+tcp://host[:port]/system
	transportSSH  = "ssh"  // qemu+ssh://[user@]host[:port]/system
)

// target is a parsed connection URI.
type target struct {
	uri       string
	transport string
	host      string // tcp and ssh
	port      string // tcp: libvirtd's port (16509); ssh: sshd's (22)
	user      string // ssh
	socket    string // unix: the local socket; ssh: the socket on the remote host
	// name is the URI libvirtd is asked to open once the byte stream is there: always a local
	// one from the daemon's point of view ("qemu:///system").
	name golibvirt.ConnectURI
	// keyFile and knownHosts are the URI's keyfile= and known_hosts= parameters (ssh).
	keyFile, knownHosts string
}

// parseURI accepts the libvirt URIs of the QEMU driver's system daemon that ingot can use. The
// others are refused with what to use instead, rather than half working.
func parseURI(raw string) (target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return target{}, fmt.Errorf("libvirt URI %q: %w", raw, err)
	}
	driver, transport, _ := strings.Cut(u.Scheme, "+")
	if driver != "qemu" {
		return target{}, fmt.Errorf("libvirt URI %q: driver %q: ingot drives QEMU only (qemu:///system, qemu+tcp://HOST/system, qemu+ssh://USER@HOST/system)", raw, driver)
	}
	if u.Path != "/system" {
		return target{}, fmt.Errorf("libvirt URI %q: path %q: ingot needs the system daemon (…/system): its storage pools and its libvirt-qemu user are what lets a guest open the uploaded disks", raw, u.Path)
	}
	q := u.Query()
	t := target{uri: raw, name: golibvirt.RemoteURI(u), keyFile: q.Get("keyfile"), knownHosts: q.Get("known_hosts")}
	switch transport {
	case "", "unix":
		if u.Host != "" {
			return target{}, fmt.Errorf("libvirt URI %q: a host without a transport means TLS, which ingot does not speak; use qemu+ssh://%s/system (or qemu+tcp:// on a trusted network)", raw, u.Host)
		}
		t.transport = transportUnix
		t.socket = defaultSocket
		if s := q.Get("socket"); s != "" {
			t.socket = s
		}
	case "tcp":
		t.transport = transportTCP
		t.host, t.port = u.Hostname(), u.Port()
		if t.port == "" {
			t.port = "16509"
		}
	case "ssh", "libssh", "libssh2":
		t.transport = transportSSH
		t.host, t.port = u.Hostname(), u.Port()
		if t.port == "" {
			t.port = "22"
		}
		t.user = u.User.Username()
		t.socket = defaultSocket
		if s := q.Get("socket"); s != "" {
			t.socket = s
		}
		if v := q.Get("no_verify"); v != "" && v != "0" {
			return target{}, fmt.Errorf("libvirt URI %q: no_verify: ingot always verifies the host key against known_hosts", raw)
		}
	case "tls":
		return target{}, fmt.Errorf("libvirt URI %q: the TLS transport needs client certificates, which ingot does not handle; use qemu+ssh://USER@%s/system", raw, u.Host)
	default:
		return target{}, fmt.Errorf("libvirt URI %q: unknown transport %q: want qemu:///system, qemu+tcp:// or qemu+ssh://", raw, transport)
	}
	if (t.transport == transportTCP || t.transport == transportSSH) && t.host == "" {
		return target{}, fmt.Errorf("libvirt URI %q: no host", raw)
	}
	return t, nil
}

// local reports whether the daemon runs on this host and sees its files: only the unix socket says
// so for sure. A TCP daemon on 127.0.0.1 is on this host too, but may live in another mount
// namespace (the tests' second daemon does), so it is treated as remote for files.
func (t target) local() bool { return t.transport == transportUnix }

// loopback reports whether the daemon's host is this host's loopback, where a forward bound to the
// daemon's 127.0.0.1 is reachable from here.
func (t target) loopback() bool {
	if t.transport == transportUnix {
		return true
	}
	if t.host == "localhost" {
		return true
	}
	ip := net.ParseIP(t.host)
	return ip != nil && ip.IsLoopback()
}

// hostOrLoopback is the daemon's host as this host reaches it.
func (t target) hostOrLoopback() string {
	if t.transport == transportUnix {
		return "127.0.0.1"
	}
	return t.host
}

func (t target) String() string { return t.uri }
