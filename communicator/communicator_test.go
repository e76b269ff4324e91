package communicator

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func newKeys(t *testing.T) *Keys {
	t.Helper()
	k, err := GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// setup starts a server and connects to it.
func setup(t *testing.T) (*Client, *testServer, *Keys) {
	t.Helper()
	k := newKeys(t)
	srv := startServer(t, "127.0.0.1:0", k.HostPrivatePEM, k.Client.PublicKey())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Connect(ctx, Config{Addr: srv.Addr(), User: "builder", Keys: k, Timeout: 5 * time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	closeOnCleanup(t, c)
	return c, srv, k
}

// closeOnCleanup closes c when the test ends; an error closing it fails the test.
func closeOnCleanup(t *testing.T, c *Client) {
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
}

// freeAddr returns a 127.0.0.1 address nothing listens on (connections are refused).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func TestKeys(t *testing.T) {
	k := newKeys(t)
	if !bytes.HasPrefix(k.HostPrivatePEM, []byte("-----BEGIN OPENSSH PRIVATE KEY-----")) {
		t.Errorf("HostPrivatePEM is not OpenSSH PEM: %.40q", k.HostPrivatePEM)
	}
	for name, line := range map[string]string{"AuthorizedKey": k.AuthorizedKey, "HostPublic": k.HostPublic} {
		if !strings.HasPrefix(line, "ssh-ed25519 AAAA") || strings.Contains(line, "\n") {
			t.Errorf("%s = %q, want one ssh-ed25519 line", name, line)
		}
	}
	if fp := k.HostFingerprint(); !strings.HasPrefix(fp, "SHA256:") {
		t.Errorf("HostFingerprint = %q", fp)
	}
	// Keys rebuilt from the public line alone pin the same key.
	hk, err := (&Keys{HostPublic: k.HostPublic}).hostKey()
	if err != nil || !bytes.Equal(hk.Marshal(), k.hostPub.Marshal()) {
		t.Errorf("parsing HostPublic back: %v", err)
	}

	dir := filepath.Join(t.TempDir(), "ssh")
	path, err := k.WriteClientKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", p, fi.Mode().Perm(), want)
		}
	}
	data, _ := os.ReadFile(path)
	if !bytes.HasPrefix(data, []byte("-----BEGIN OPENSSH PRIVATE KEY-----")) {
		t.Errorf("client key is not OpenSSH PEM")
	}

	line, err := k.SSHCommand(dir, "builder", "127.0.0.1:2222")
	if err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(dir, KnownHostsFile)
	want := "ssh -i " + path + " -p 2222 -o UserKnownHostsFile=" + kh + " -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes builder@127.0.0.1"
	if line != want {
		t.Errorf("SSHCommand:\n got %s\nwant %s", line, want)
	}
	khData, _ := os.ReadFile(kh)
	if !strings.HasPrefix(string(khData), "[127.0.0.1]:2222 ssh-ed25519 ") {
		t.Errorf("known_hosts = %q", khData)
	}

	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := k.WriteClientKey(open); err == nil {
		t.Error("WriteClientKey into a world-writable dir: want error")
	}
}

func TestConnectPinnedKey(t *testing.T) {
	c, _, _ := setup(t)
	out, err := c.Output(context.Background(), Cmd{Command: "echo hello"})
	if err != nil || string(out) != "hello\n" {
		t.Fatalf("Output = %q, %v", out, err)
	}
}

func TestHostKeyMismatchFailsAtOnce(t *testing.T) {
	k, other := newKeys(t), newKeys(t)
	srv := startServer(t, "127.0.0.1:0", other.HostPrivatePEM, k.Client.PublicKey())
	start := time.Now()
	_, err := Connect(context.Background(), Config{Addr: srv.Addr(), User: "u", Keys: k, Timeout: 30 * time.Second})
	if !errors.Is(err, ErrHostKeyMismatch) {
		t.Fatalf("err = %v, want ErrHostKeyMismatch", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("mismatch took %v; must not be retried", d)
	}
	for _, want := range []string{srv.Addr(), k.HostFingerprint(), other.HostFingerprint(), "seed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestWaitRetries(t *testing.T) {
	tests := []struct {
		name string
		// boot runs concurrently with Connect, so it reports errors instead of failing the test
		// (FailNow belongs to the test's goroutine); the server was made on the test's.
		boot func(s *testServer, addr string) error
	}{
		{"refused then listening", func(s *testServer, addr string) error {
			time.Sleep(time.Second) // the "guest" boots
			return s.listen(addr)
		}},
		{"auth refused then accepted", func(s *testServer, addr string) error {
			s.reject.Store(true)
			if err := s.listen(addr); err != nil {
				return err
			}
			time.Sleep(time.Second) // cloud-init writes authorized_keys
			s.reject.Store(false)
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newKeys(t)
			addr := freeAddr(t)
			srv := newServer(t, k.HostPrivatePEM, k.Client.PublicKey())
			booted := make(chan error, 1)
			go func() { booted <- tt.boot(srv, addr) }()
			c, err := Connect(context.Background(), Config{Addr: addr, User: "u", Keys: k, Timeout: 10 * time.Second, Logger: testLogger(t)})
			if bootErr := <-booted; bootErr != nil {
				t.Fatalf("the test server did not start: %v (Connect: %v)", bootErr, err)
			}
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			closeOnCleanup(t, c)
			if err := c.Run(context.Background(), Cmd{Command: "true"}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestWaitEnds(t *testing.T) {
	sentinel := errors.New("guest powered off (console: Kernel panic)")
	tests := []struct {
		name    string
		timeout time.Duration
		setup   func(t *testing.T, cfg *Config) context.Context
		want    []string
		is      error
		maxTime time.Duration
	}{
		{
			name:    "timeout",
			timeout: 1500 * time.Millisecond,
			setup:   func(*testing.T, *Config) context.Context { return context.Background() },
			want:    []string{"no SSH session at ", "after 2s (", "attempts); last error: ", "refused"},
			maxTime: 3 * time.Second,
		},
		{
			name:    "abort",
			timeout: time.Minute,
			setup: func(t *testing.T, cfg *Config) context.Context {
				ch := make(chan error, 1)
				time.AfterFunc(300*time.Millisecond, func() { ch <- sentinel })
				cfg.Abort = ch
				return context.Background()
			},
			want:    []string{"waiting for SSH at ", sentinel.Error()},
			is:      sentinel,
			maxTime: 2 * time.Second,
		},
		{
			name:    "context",
			timeout: time.Minute,
			setup: func(t *testing.T, cfg *Config) context.Context {
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				t.Cleanup(cancel)
				return ctx
			},
			want:    []string{"waiting for SSH at "},
			is:      context.DeadlineExceeded,
			maxTime: 2 * time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Addr: freeAddr(t), User: "u", Keys: newKeys(t), Timeout: tt.timeout, Logger: testLogger(t)}
			ctx := tt.setup(t, &cfg)
			start := time.Now()
			_, err := Connect(ctx, cfg)
			if err == nil {
				t.Fatal("Connect succeeded")
			}
			if d := time.Since(start); d > tt.maxTime {
				t.Errorf("took %v, want < %v", d, tt.maxTime)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
		})
	}
}

// A port that accepts TCP but never speaks SSH (QEMU's hostfwd before sshd is up) must not
// hang an attempt forever.
func TestWaitSilentListener(t *testing.T) {
	defer func(d time.Duration) { attemptTimeout = d }(attemptTimeout)
	attemptTimeout = 300 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	_, err = Connect(context.Background(), Config{Addr: ln.Addr().String(), User: "u", Keys: newKeys(t), Timeout: 2 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "no SSH session") {
		t.Fatalf("err = %v", err)
	}
	var n int
	if _, scanErr := fmt.Sscanf(err.Error()[strings.Index(err.Error(), "(")+1:], "%d attempts", &n); scanErr != nil || n < 3 {
		t.Errorf("want several bounded attempts, got %q", err)
	}
}

func TestRunExitStatus(t *testing.T) {
	c, _, _ := setup(t)
	tests := []struct {
		cmd  string
		want *ExitError // nil = success
	}{
		{"true", nil},
		{"exit 3", &ExitError{Status: 3}},
		{"kill -TERM $$", &ExitError{Signal: "TERM"}},
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			err := c.Run(context.Background(), Cmd{Command: tt.cmd})
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ee *ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("err = %v, want *ExitError", err)
			}
			if ee.Signal != tt.want.Signal || (tt.want.Signal == "" && ee.Status != tt.want.Status) {
				t.Errorf("got %+v, want %+v", ee, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want.Error()) {
				t.Errorf("message %q lacks %q", err, tt.want.Error())
			}
		})
	}
	if got := (&ExitError{Signal: "TERM"}).Error(); got != "killed by signal TERM" {
		t.Errorf("Error() = %q", got)
	}
}

func TestEnvQuoting(t *testing.T) {
	c, _, _ := setup(t)
	env := map[string]string{
		"SPACES":  "a b  c",
		"QUOTES":  `it's "quoted"`,
		"DOLLAR":  "$HOME `id` $(id)",
		"NEWLINE": "one\ntwo\n",
		"BACKSL":  `back\slash\n`,
		"EMPTY":   "",
	}
	for _, sudo := range []bool{false, true} {
		t.Run(fmt.Sprintf("sudo=%v", sudo), func(t *testing.T) {
			for name, want := range env {
				out, err := c.Output(context.Background(), Cmd{Command: `printf '%s' "$` + name + `"`, Env: env, Sudo: sudo})
				if err != nil {
					t.Fatal(err)
				}
				if string(out) != want {
					t.Errorf("%s = %q, want %q", name, out, want)
				}
			}
		})
	}
	if err := c.Run(context.Background(), Cmd{Command: "true", Env: map[string]string{"BAD NAME": "x"}}); err == nil {
		t.Error("invalid env name accepted")
	}
}

func TestOutputStderrTail(t *testing.T) {
	c, _, _ := setup(t)
	_, err := c.Output(context.Background(), Cmd{Command: "echo out; echo 'E: unable to locate package' >&2; exit 100"})
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Status != 100 {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "E: unable to locate package") {
		t.Errorf("error %q lacks the stderr tail", err)
	}
}

func TestRunCancelKillsRemote(t *testing.T) {
	c, _, _ := setup(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Run(ctx, Cmd{Command: "echo $$ > " + pidFile + "; exec sleep 30"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("cancel took %v", d)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	deadline := time.Now().Add(3 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("remote command (pid %d) still running after cancel", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The connection is still usable afterwards.
	if err := c.Run(context.Background(), Cmd{Command: "true"}); err != nil {
		t.Fatal(err)
	}
}

func TestLineWriter(t *testing.T) {
	long := strings.Repeat("x", maxLine+10)
	tests := []struct {
		name   string
		writes []string
		want   []string
	}{
		{"lines", []string{"a\nb\n"}, []string{"a", "b"}},
		{"split across writes", []string{"he", "llo\nwor", "ld"}, []string{"hello", "world"}},
		{"crlf and empty", []string{"a\r\n\n"}, []string{"a", ""}},
		{"long line", []string{long + "\n"}, []string{long[:maxLine], long[maxLine:]}},
		{"nothing", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			w := LineWriter(func(l string) { got = append(got, l) })
			for _, s := range tt.writes {
				if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) || len(got) != len(tt.want) {
				t.Errorf("got %d lines %.80q, want %d %.80q", len(got), got, len(tt.want), tt.want)
			}
		})
	}
}

// Keys saved with MarshalKeys (in a checkpoint) connect again to the guest they were made for,
// pinning the same host key; a host with another key is still refused.
func TestSavedKeysReconnect(t *testing.T) {
	k := newKeys(t)
	srv := startServer(t, "127.0.0.1:0", k.HostPrivatePEM, k.Client.PublicKey())
	data, err := MarshalKeys(k)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, k.HostPrivatePEM) {
		t.Error("the saved keys hold the host's private key, which only the seed needs")
	}
	saved, err := UnmarshalKeys(data)
	if err != nil {
		t.Fatal(err)
	}
	if saved.AuthorizedKey != k.AuthorizedKey || saved.HostFingerprint() != k.HostFingerprint() {
		t.Errorf("saved keys: %q %s, want %q %s", saved.AuthorizedKey, saved.HostFingerprint(), k.AuthorizedKey, k.HostFingerprint())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Connect(ctx, Config{Addr: srv.Addr(), User: "builder", Keys: saved, Timeout: 5 * time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Connect with saved keys: %v", err)
	}
	closeOnCleanup(t, c)
	if _, err := MarshalKeys(saved); err != nil {
		t.Errorf("saved keys cannot be saved again: %v", err)
	}

	other := newKeys(t)
	impostor := startServer(t, "127.0.0.1:0", other.HostPrivatePEM, k.Client.PublicKey())
	if _, err := Connect(ctx, Config{Addr: impostor.Addr(), User: "builder", Keys: saved, Timeout: 2 * time.Second, Logger: testLogger(t)}); err == nil {
		t.Error("saved keys accepted a guest with another host key")
	}
	for _, bad := range []string{"", "{}", `{"client_private_pem": "x", "host_public": "y"}`} {
		if _, err := UnmarshalKeys([]byte(bad)); err == nil {
			t.Errorf("UnmarshalKeys(%q) = nil error", bad)
		}
	}
}

// Secret values reach the command's environment and stdin byte for byte, and never its command
// line (what sudo logs and ps shows in the guest).
func TestSecretEnvAndStdin(t *testing.T) {
	c, srv, _ := setup(t)
	var mu sync.Mutex
	var lines []string
	srv.onExec = func(cmd string) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, cmd)
	}
	secrets := map[string][]byte{
		"TOKEN":   []byte("tok-0123456789"),
		"PEM":     []byte("-----BEGIN KEY-----\nabc\n-----END KEY-----\n\n"),
		"TRICKY":  []byte("it's \"$(id)\" `id` $HOME\\n\x01\xff"),
		"ENDS_IN": []byte("dot."),
	}
	for _, sudo := range []bool{false, true} {
		for name, want := range secrets {
			t.Run(fmt.Sprintf("%s/sudo=%v", name, sudo), func(t *testing.T) {
				out, err := c.Output(context.Background(), Cmd{Command: `printf '%s' "$` + name + `"; cat`, SecretEnv: secrets, Sudo: sudo,
					Env: map[string]string{"PLAIN": "p"}, Stdin: strings.NewReader("<stdin>")})
				if err != nil {
					t.Fatal(err)
				}
				if want := string(want) + "<stdin>"; string(out) != want {
					t.Errorf("got %q, want %q", out, want)
				}
			})
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lines) == 0 {
		t.Fatal("no command line was seen")
	}
	for _, l := range lines {
		for name, v := range secrets {
			if strings.Contains(l, string(v[:4])) || strings.Contains(l, base64.StdEncoding.EncodeToString(v)) {
				t.Errorf("the command line holds %s: %s", name, l)
			}
		}
	}
	for _, bad := range []Cmd{
		{Command: "true", SecretEnv: map[string][]byte{"BAD NAME": []byte("x")}},
		{Command: "true", SecretEnv: map[string][]byte{"NUL": []byte("a\x00b")}},
		{Command: "true", SecretEnv: map[string][]byte{"A": []byte("x")}, Env: map[string]string{"A": "y"}},
	} {
		if err := c.Run(context.Background(), bad); err == nil {
			t.Errorf("%v accepted", bad.SecretEnv)
		}
	}
}
