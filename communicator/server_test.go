package communicator

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// testServer is an in-process sshd on 127.0.0.1: exec runs /bin/sh -c locally with a fake sudo
// first on PATH (it drops -n/-E and execs the rest), "signal" requests reach the command's process
// group, and the sftp subsystem is pkg/sftp's server.
type testServer struct {
	t      *testing.T
	conf   *ssh.ServerConfig
	bin    string
	env    atomic.Value // []string added to the command environment
	reject atomic.Bool  // refuse authentication (cloud-init has not written authorized_keys yet)
	onExec func(command string)

	mu    sync.Mutex
	ln    net.Listener // nil until listen; set on whichever goroutine listens
	conns []net.Conn
	wg    sync.WaitGroup
}

const fakeSudo = `#!/bin/sh
while [ $# -gt 0 ]; do
	case "$1" in -n|-E) shift ;; *) break ;; esac
done
exec "$@"
`

// startServer serves on addr ("127.0.0.1:0" for any port) with hostKeyPEM as its host key,
// accepting only client.
func startServer(t *testing.T, addr string, hostKeyPEM []byte, client ssh.PublicKey) *testServer {
	t.Helper()
	s := newServer(t, hostKeyPEM, client)
	if err := s.listen(addr); err != nil {
		t.Fatal(err)
	}
	return s
}

// newServer makes a server that does not listen yet: listen starts it, from any goroutine (a
// "guest" that boots while the test waits for it). Close runs when the test ends.
func newServer(t *testing.T, hostKeyPEM []byte, client ssh.PublicKey) *testServer {
	t.Helper()
	hostSigner, err := ssh.ParsePrivateKey(hostKeyPEM)
	if err != nil {
		t.Fatalf("parsing host key: %v", err)
	}
	s := &testServer{t: t, bin: t.TempDir()}
	s.env.Store([]string(nil))
	if err := os.WriteFile(filepath.Join(s.bin, "sudo"), []byte(fakeSudo), 0o755); err != nil {
		t.Fatal(err)
	}
	s.conf = &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if s.reject.Load() || !bytes.Equal(k.Marshal(), client.Marshal()) {
				return nil, errors.New("unauthorized")
			}
			return nil, nil
		},
	}
	s.conf.AddHostKey(hostSigner)
	t.Cleanup(s.Close)
	return s
}

// listen starts serving on addr. It reports an error instead of failing the test, because the
// testing package allows FailNow (t.Fatal) only on the test's own goroutine.
func (s *testServer) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("test server: listen: %w", err)
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	s.wg.Add(1)
	go s.serve(ln)
	return nil
}

func (s *testServer) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ln.Addr().String()
}

// Close stops listening and drops every connection (what a guest reboot looks like).
func (s *testServer) Close() {
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	s.DropAll()
	s.wg.Wait()
}

func (s *testServer) DropAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.conns = nil
}

func (s *testServer) serve(ln net.Listener) {
	defer s.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, nc)
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(nc)
		}()
	}
}

func (s *testServer) handle(nc net.Conn) {
	defer nc.Close()
	_, chans, reqs, err := ssh.NewServerConn(nc, s.conf)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nch := range chans {
		if nch.ChannelType() != "session" {
			_ = nch.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			continue
		}
		go s.session(ch, creqs)
	}
}

func (s *testServer) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	var (
		mu   sync.Mutex
		proc *os.Process
	)
	for req := range reqs {
		switch req.Type {
		case "exec":
			var p struct{ Command string }
			if err := ssh.Unmarshal(req.Payload, &p); err != nil {
				_ = req.Reply(false, nil)
				continue
			}
			if s.onExec != nil {
				s.onExec(p.Command)
			}
			cmd := exec.Command("/bin/sh", "-c", p.Command)
			cmd.Env = append(os.Environ(), "PATH="+s.bin+":"+os.Getenv("PATH"))
			cmd.Env = append(cmd.Env, s.env.Load().([]string)...)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := cmd.Start(); err != nil {
				_ = req.Reply(false, nil)
				continue
			}
			mu.Lock()
			proc = cmd.Process
			mu.Unlock()
			_ = req.Reply(true, nil)
			go func() {
				err := cmd.Wait()
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					ws := ee.Sys().(syscall.WaitStatus)
					if ws.Signaled() {
						name := strings.TrimPrefix(unix.SignalName(ws.Signal()), "SIG")
						_, _ = ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
							Signal     string
							CoreDumped bool
							Error      string
							Lang       string
						}{Signal: name}))
					} else {
						_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(ws.ExitStatus())}))
					}
				} else if err == nil {
					_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
				}
				_ = ch.Close()
			}()
		case "signal":
			var p struct{ Signal string }
			_ = ssh.Unmarshal(req.Payload, &p)
			mu.Lock()
			if proc != nil {
				if sig := unix.SignalNum("SIG" + p.Signal); sig != 0 {
					_ = syscall.Kill(-proc.Pid, sig)
				}
			}
			mu.Unlock()
			if req.WantReply {
				_ = req.Reply(true, nil)
			}
		case "subsystem":
			var p struct{ Name string }
			_ = ssh.Unmarshal(req.Payload, &p)
			if p.Name != "sftp" {
				_ = req.Reply(false, nil)
				continue
			}
			_ = req.Reply(true, nil)
			go func() {
				srv, err := sftp.NewServer(ch)
				if err == nil {
					if err := srv.Serve(); err != nil && !errors.Is(err, io.EOF) {
						s.t.Logf("sftp server: %v", err)
					}
				}
				_ = ch.Close()
			}()
		default:
			if req.WantReply {
				_ = req.Reply(false, nil)
			}
		}
	}
}
