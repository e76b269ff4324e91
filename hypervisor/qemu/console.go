package qemu

import (
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
)

// tailLines is how much of the console is kept in memory for error messages.
const tailLines = 200

// console copies the guest's serial output to a log file and keeps its last lines, so every error
// about the guest can say what the guest said last.
type console struct {
	path string
	done chan struct{}

	mu      sync.Mutex
	lines   []string // ring of complete lines, oldest first
	partial string   // the line being written (a prompt has no newline yet)
	panic   string   // the kernel's panic line, once seen: it names the cause, which the tail of a long backtrace no longer shows
}

// panicLine is how a Linux kernel says it panicked; the console watcher catches a panic even when
// the guest has no pvpanic driver loaded.
var panicLine = regexp.MustCompile(`Kernel panic - not syncing`)

func newConsole(path string, r io.Reader, onPanic func()) (*console, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	c := &console{path: path, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		defer f.Close()
		// Write what arrives as it arrives: a boot menu or a prompt has no newline yet, and
		// whoever watches the file (a person, a test, a boot command's timing) needs it now.
		buf := make([]byte, 32<<10)
		panicked := false
		for {
			n, err := r.Read(buf)
			if n > 0 {
				_, _ = f.Write(buf[:n])
				if c.add(string(buf[:n])) && !panicked {
					panicked = true
					onPanic()
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return c, nil
}

// add records output; it reports whether a line it completed shows a kernel panic.
func (c *console) add(s string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	text := c.partial + s
	parts := strings.Split(text, "\n")
	c.partial = parts[len(parts)-1]
	if len(c.partial) > 64<<10 { // a runaway line without newlines: keep its end
		c.partial = c.partial[len(c.partial)-(64<<10):]
	}
	panicked := false
	for _, p := range parts[:len(parts)-1] {
		line := clean(p)
		c.lines = append(c.lines, line)
		if panicLine.MatchString(line) {
			panicked = true
			if c.panic == "" {
				c.panic = strings.TrimSpace(line[panicLine.FindStringIndex(line)[0]:])
			}
		}
	}
	if len(c.lines) > tailLines {
		c.lines = c.lines[len(c.lines)-tailLines:]
	}
	return panicked
}

// panicMessage is the kernel's "Kernel panic - not syncing: …" line, if one was seen.
func (c *console) panicMessage() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.panic
}

func (c *console) tail(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	lines := c.lines
	if p := clean(c.partial); p != "" {
		lines = append(lines[:len(lines):len(lines)], p)
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ansi matches terminal escape sequences (systemd colours its status lines).
var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]`)

func clean(s string) string {
	s = ansi.ReplaceAllString(s, "")
	s = strings.TrimRight(s, "\r\n")
	if i := strings.LastIndexByte(s, '\r'); i >= 0 {
		s = s[i+1:] // what a terminal would show after a carriage return
	}
	return s
}
