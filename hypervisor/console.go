package hypervisor

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
)

// guestErrorLines is how much of the console a GuestError carries: enough for a panic's
// backtrace or the last boot messages, short enough to read in a terminal.
const guestErrorLines = 25

// consoleLines is how many of the console's last lines a ConsoleLog keeps in memory: far more
// than an error shows (a driver asks Tail for a few dozen), so a caller may ask for more.
const consoleLines = 200

// consolePartialMax bounds the line being written: a guest that writes without newlines (a
// progress bar, a binary blob) keeps only its end.
const consolePartialMax = 64 << 10

// ConsoleLog is a guest's serial console as a driver receives it (QEMU's stdout, libvirt's
// console stream). It lives here, beside GuestError and its ConsoleTail, because every driver
// needs the same three things from it:
//   - the log file, written as bytes arrive: a boot menu or a prompt has no newline yet, and
//     whoever watches the file (a person, bake's cloud-init watch, a boot command's timing) needs
//     it now;
//   - the last lines, cleaned of terminal escapes, for errors about the guest;
//   - the kernel's panic line, remembered (it names the cause, which the end of a long backtrace
//     no longer shows), and a callback the first time one appears, so a guest without a pvpanic
//     device still stops the build at once.
type ConsoleLog struct {
	path    string
	onPanic func()

	mu       sync.Mutex
	f        *os.File
	ring     [consoleLines]string // complete lines; ring[next] is the oldest once full
	next     int
	full     bool
	partial  string // the line being written (a prompt has no newline yet)
	panic    string // the kernel's panic line, once seen
	panicked bool
	writeErr error // the first failure to write the file; nothing is written after it
	closed   bool
	closeErr error
}

// consolePanic is how a Linux kernel says it panicked.
var consolePanic = regexp.MustCompile(`Kernel panic - not syncing`)

// NewConsoleLog creates (or truncates) the log file at path. onPanic, if not nil, is called once,
// on the writer's goroutine and without the log's lock, when a kernel panic line first appears.
func NewConsoleLog(path string, onPanic func()) (*ConsoleLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	return &ConsoleLog{path: path, f: f, onPanic: onPanic}, nil
}

// Path is the log file.
func (c *ConsoleLog) Path() string { return c.path }

// Write records console output. It never fails and blocks on nothing but the file: it is fed
// from QEMU's stdout pipe or libvirt's stream, and a writer that stopped would stall the guest
// on its console (or every call on libvirt's connection). A failure to write the file is kept
// for Close instead, and the file is not written after it, so the log is a true prefix of what
// the guest said; the tail and the panic line stay complete. Writes after Close are ignored
// (a stream's last bytes after the machine was torn down).
func (c *ConsoleLog) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return len(p), nil
	}
	if c.writeErr == nil {
		if _, err := c.f.Write(p); err != nil {
			c.writeErr = fmt.Errorf("the console log stops early: %w", err)
		}
	}
	first := c.add(string(p)) && !c.panicked
	if first {
		c.panicked = true
	}
	c.mu.Unlock()
	if first && c.onPanic != nil {
		c.onPanic()
	}
	return len(p), nil
}

// Close closes the file and returns the first failure to write or close it. It may be called
// more than once; it returns the same each time.
func (c *ConsoleLog) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		var closeErr error
		if err := c.f.Close(); err != nil {
			closeErr = fmt.Errorf("close the console log: %w", err)
		}
		c.closeErr = errors.Join(c.writeErr, closeErr)
	}
	return c.closeErr
}

// add records output (c.mu held); it reports whether a line it completed shows a kernel panic.
func (c *ConsoleLog) add(s string) bool {
	parts := strings.Split(c.partial+s, "\n")
	c.partial = parts[len(parts)-1]
	if len(c.partial) > consolePartialMax {
		c.partial = c.partial[len(c.partial)-consolePartialMax:]
	}
	panicked := false
	for _, p := range parts[:len(parts)-1] {
		line := cleanConsoleLine(p)
		c.ring[c.next] = line
		c.next = (c.next + 1) % consoleLines
		c.full = c.full || c.next == 0
		if loc := consolePanic.FindStringIndex(line); loc != nil {
			panicked = true
			if c.panic == "" {
				c.panic = strings.TrimSpace(line[loc[0]:])
			}
		}
	}
	return panicked
}

// GuestError is why the guest stopped when it should not have, with what the console said: the
// kernel's panic line (if one was seen) after reason, and the last lines.
func (c *ConsoleLog) GuestError(reason string) *GuestError {
	if p := c.PanicMessage(); p != "" {
		reason += ": " + p
	}
	return &GuestError{Reason: reason, ConsoleTail: c.Tail(guestErrorLines)}
}

// PanicMessage is the kernel's first "Kernel panic - not syncing: …" line, if one was seen.
func (c *ConsoleLog) PanicMessage() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.panic
}

// Tail returns the last n lines (at most the 200 kept), the line still being written
// included, cleaned of terminal escapes.
func (c *ConsoleLog) Tail(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	lines := make([]string, 0, consoleLines+1)
	if c.full {
		lines = append(lines, c.ring[c.next:]...)
	}
	lines = append(lines, c.ring[:c.next]...)
	if p := cleanConsoleLine(c.partial); p != "" {
		lines = append(lines, p)
	}
	if len(lines) > n {
		lines = lines[len(lines)-max(n, 0):]
	}
	return strings.Join(lines, "\n")
}

// consoleEscape matches terminal escape sequences (systemd colours its status lines).
var consoleEscape = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]`)

// cleanConsoleLine is what a terminal would show of a line: no escapes, and only what follows
// its last carriage return (progress redrawn in place).
func cleanConsoleLine(s string) string {
	s = consoleEscape.ReplaceAllString(s, "")
	s = strings.TrimRight(s, "\r\n")
	if i := strings.LastIndexByte(s, '\r'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
