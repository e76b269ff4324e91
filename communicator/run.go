package communicator

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/ingot-build/ingot/internal/execx"
)

// Cmd is one remote command.
type Cmd struct {
	Command string            // shell command line, run by the remote user's shell (sh -c semantics)
	Env     map[string]string // exported before Command (sorted, shell-quoted: sshd refuses setenv)
	Sudo    bool              // run as root: sudo -n (build user has NOPASSWD sudo)
	// SecretEnv are exported like Env, but their values never reach a command line (which sudo
	// logs and ps shows): they are sent first on the session's stdin, one base64 line each, and
	// read by the script before Command runs. A value may hold any byte but NUL.
	SecretEnv map[string][]byte
	// Stdin is what Command reads on its standard input, after the SecretEnv lines; nil: none.
	Stdin  io.Reader
	Stdout io.Writer // may be nil
	Stderr io.Writer // may be nil
}

// ExitError is a remote command that ended with a non-zero status or was killed by a signal.
// Run wraps it; use errors.As.
type ExitError struct {
	Status int
	Signal string // "TERM", "KILL", … (without "SIG"); empty when the command exited
}

func (e *ExitError) Error() string {
	if e.Signal != "" {
		return "killed by signal " + e.Signal
	}
	return fmt.Sprintf("exit status %d", e.Status)
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// script builds the remote command line. Env is exported inside the shell rather than sent as
// "env" requests because sshd refuses them unless AcceptEnv lists the name. With Sudo the whole
// script (exports included) runs under `sudo -n sh -c`, so Env reaches the command whatever
// sudoers says about preserving the environment (no -E, which a restrictive policy rejects), and
// -n makes a missing NOPASSWD rule fail at once instead of hanging on a password prompt.
func (cmd Cmd) script() (string, error) {
	var b strings.Builder
	keys := make([]string, 0, len(cmd.Env))
	for k := range cmd.Env {
		if !envName.MatchString(k) {
			return "", fmt.Errorf("environment variable name %q is not a valid shell name", k)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s=%s\n", k, ShellQuote(cmd.Env[k]))
	}
	secret, err := cmd.secretNames()
	if err != nil {
		return "", err
	}
	for _, k := range secret {
		// read is a builtin and reads no further than its line; base64 -d gets the value on a
		// pipe; the "." keeps the value's own final newlines from $(…)'s trimming.
		fmt.Fprintf(&b, "IFS= read -r %[1]s && %[1]s=$(printf %%s \"$%[1]s\" | base64 -d && echo .) && %[1]s=${%[1]s%%.} && export %[1]s || exit 125\n", k)
	}
	b.WriteString(cmd.Command)
	s := b.String()
	if cmd.Sudo {
		s = "sudo -n sh -c " + ShellQuote(s)
	}
	return s, nil
}

// secretNames checks SecretEnv's names and values and sorts the names: the order the values
// are sent in (stdin).
func (cmd Cmd) secretNames() ([]string, error) {
	names := make([]string, 0, len(cmd.SecretEnv))
	for k, v := range cmd.SecretEnv {
		switch {
		case !envName.MatchString(k):
			return nil, fmt.Errorf("environment variable name %q is not a valid shell name", k)
		case bytes.IndexByte(v, 0) >= 0:
			return nil, fmt.Errorf("the value for %s holds a NUL byte, which no environment variable can", k)
		case cmd.Env[k] != "":
			return nil, fmt.Errorf("%s is set twice, as an environment variable and as a secret", k)
		}
		names = append(names, k)
	}
	slices.Sort(names)
	return names, nil
}

// stdin is what the session's stdin carries: the SecretEnv lines, then Stdin. Commands that read
// stdin without being given one (apt's prompts) must see EOF, never a terminal.
func (cmd Cmd) stdin() io.Reader {
	names, _ := cmd.secretNames() // checked by script
	var lines bytes.Buffer
	for _, k := range names {
		lines.WriteString(base64.StdEncoding.EncodeToString(cmd.SecretEnv[k]))
		lines.WriteByte('\n')
	}
	if cmd.Stdin == nil {
		return &lines
	}
	return io.MultiReader(&lines, cmd.Stdin)
}

// describe names a command in errors: its first line, shortened. Env values are never included
// (they may hold secrets).
func (cmd Cmd) describe() string {
	s, _, _ := strings.Cut(strings.TrimSpace(cmd.Command), "\n")
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	if cmd.Sudo {
		s = "sudo " + s
	}
	return fmt.Sprintf("%q", s)
}

// Run runs cmd and waits for it. A non-zero exit or a signal is an *ExitError (wrapped). When ctx
// ends the remote command is sent SIGTERM and the session is closed (x/crypto/ssh has no
// contexts of its own).
func (c *Client) Run(ctx context.Context, cmd Cmd) error {
	script, err := cmd.script()
	if err != nil {
		return fmt.Errorf("running %s: %w", cmd.describe(), err)
	}
	conn, err := c.current()
	if err != nil {
		return fmt.Errorf("running %s: %w", cmd.describe(), err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("running %s: %w", cmd.describe(), context.Cause(ctx))
	}
	sess, err := conn.NewSession()
	if err != nil {
		return fmt.Errorf("running %s: opening session: %w", cmd.describe(), err)
	}
	defer sess.Close()
	sess.Stdout = cmd.Stdout
	sess.Stderr = cmd.Stderr
	sess.Stdin = cmd.stdin()

	stop := context.AfterFunc(ctx, func() {
		// Signals need OpenSSH >= 7.9 in the guest; closing the session covers older ones
		// (the command then dies of SIGPIPE/SIGHUP when it next writes).
		_ = sess.Signal(ssh.SIGTERM)
		_ = sess.Close()
	})
	defer stop()

	err = sess.Run(script)
	if ctx.Err() != nil {
		return fmt.Errorf("running %s: %w", cmd.describe(), context.Cause(ctx))
	}
	if err == nil {
		return nil
	}
	var ee *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case errors.As(err, &ee):
		return fmt.Errorf("running %s: %w", cmd.describe(), &ExitError{Status: ee.ExitStatus(), Signal: ee.Signal()})
	case c.lostReason() != nil:
		return fmt.Errorf("running %s: %w (%w)", cmd.describe(), c.lostReason(), err)
	case errors.As(err, &missing):
		return fmt.Errorf("running %s: the connection ended before the command reported its exit status (did the guest reboot or die?): %w", cmd.describe(), err)
	default:
		return fmt.Errorf("running %s: %w", cmd.describe(), err)
	}
}

// stderrTail is how much stderr Output keeps for its error message.
const stderrTail = 2 << 10

// Output runs cmd and returns its stdout. On failure the error carries the tail of stderr, which
// is where the reason usually is. cmd.Stdout is ignored; cmd.Stderr, if set, still gets all of it.
func (c *Client) Output(ctx context.Context, cmd Cmd) ([]byte, error) {
	var out bytes.Buffer
	tail := execx.NewTail(stderrTail)
	cmd.Stdout = &out
	if cmd.Stderr != nil {
		cmd.Stderr = io.MultiWriter(cmd.Stderr, tail)
	} else {
		cmd.Stderr = tail
	}
	if err := c.Run(ctx, cmd); err != nil {
		if t := strings.TrimSpace(tail.String()); t != "" {
			return out.Bytes(), fmt.Errorf("%w; stderr: %s", err, t)
		}
		return out.Bytes(), err
	}
	return out.Bytes(), nil
}
