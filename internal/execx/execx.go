// Package execx runs external tools (qemu-img, ssh-keygen, …) so that every failure says what was run
// and what the tool said: an error carries the argv, quoted so a person can paste it into a shell, the
// exit status, and the tail of stderr.
//
// Every command started here is owned (Start): it dies with ingot, and it has its own process
// group. A qemu-img or xz left running after a crash would go on writing, and nothing would be
// left to wait for it.
package execx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
)

// stderrTail bounds how much of a tool's stderr goes into an error: enough for the real message,
// not a page of progress output.
const stderrTail = 2048

// Error is a failed command.
type Error struct {
	Argv   []string
	Stderr string // the last stderrTail bytes
	Err    error  // *exec.ExitError, context error, or start failure
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s: %v", Quote(e.Argv), e.Err)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Output runs name with args and returns its stdout. The command is killed when ctx ends, and
// when ingot dies (Start).
func Output(ctx context.Context, name string, args ...string) ([]byte, error) {
	var stdout bytes.Buffer
	err := Stream(ctx, &stdout, name, args...)
	return stdout.Bytes(), err
}

// Stream runs name with args like Output, but hands its stdout to out as it comes (qemu-img's
// progress, a decompressor's data), and fails with the same *Error: the command line, its exit
// status and the tail of its stderr.
func Stream(ctx context.Context, out io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	stderr := NewTail(stderrTail)
	cmd.Stdout = out
	cmd.Stderr = stderr
	wait, err := Start(cmd)
	if err == nil {
		err = wait()
	}
	if err != nil {
		if ctx.Err() != nil {
			err = errors.Join(ctx.Err(), err)
		}
		return &Error{Argv: cmd.Args, Stderr: stderr.String(), Err: err}
	}
	return nil
}

// Start starts cmd as an owned child and returns the function that waits for it, as cmd.Wait
// would; it may be called more than once. The errors are cmd.Start's and cmd.Wait's, not yet an
// *Error: the caller knows what the command was for. An owned child
//   - is in its own process group, so a terminal's Ctrl-C reaches ingot (which stops its work in
//     order) rather than the child directly, and the whole group can be killed (KillGroup);
//   - gets SIGKILL from the kernel when ingot dies, even by SIGKILL (PR_SET_PDEATHSIG).
//
// The parent-death signal (PR_SET_PDEATHSIG, Linux) fires when the thread that forked the child
// exits, not the process, and the Go runtime ends threads of its own accord. So the child is
// started and waited for on a goroutine locked to its thread and never unlocked: that thread
// exits only with the goroutine, once the child is gone, or with ingot.
func Start(cmd *exec.Cmd) (wait func() error, err error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	started := make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		done <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return sync.OnceValue(func() error { return <-done }), nil
}

// Run is Output for commands whose stdout does not matter.
func Run(ctx context.Context, name string, args ...string) error {
	_, err := Output(ctx, name, args...)
	return err
}

// KillGroup sends SIGKILL to the process group of a child started by Start. A group already
// gone is not an error.
func KillGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill process group %d: %w", cmd.Process.Pid, err)
	}
	return nil
}

// Tail is an io.Writer that keeps the last bytes written to it: a tool's stderr or a guest's
// console, bounded, for an error message. It is safe for concurrent use.
type Tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

// NewTail returns a Tail that keeps the last max bytes.
func NewTail(max int) *Tail { return &Tail{max: max} }

func (t *Tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

// Bytes returns a copy of what is kept.
func (t *Tail) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Clone(t.buf)
}

// String returns what is kept.
func (t *Tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// Quote renders argv as one shell command line that reproduces it when pasted.
func Quote(argv []string) string {
	var sb strings.Builder
	for i, a := range argv {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(quoteArg(a))
	}
	return sb.String()
}

func quoteArg(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
