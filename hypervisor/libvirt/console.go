package libvirt

import (
	"os"
	"regexp"
	"strings"
	"sync"
)

// tailLines is how much of the console is kept in memory for error messages.
const tailLines = 200

// console is the guest's serial output as it arrives over virDomainOpenConsole: written to a local
// log file at once (a boot menu or a prompt has no newline yet, and whoever watches the file needs
// it now), its last lines kept for error messages, and watched for a kernel panic.
//
// It is the io.Writer go-libvirt copies the console stream into. go-libvirt calls Write on the
// goroutine that reads the whole RPC connection, so Write must never block on anything but the
// file.
//
// (The line handling is the QEMU driver's console.go; the two could share an internal package.)
type console struct {
	path    string
	f       *os.File
	onPanic func()

	mu       sync.Mutex
	lines    []string // ring of complete lines, oldest first
	partial  string   // the line being written (a prompt has no newline yet)
	panic    string   // the kernel's panic line, once seen
	panicked bool
	closed   bool
}

// panicLine is how a Linux kernel says it panicked; the console watcher catches a panic even when
// the guest has no pvpanic driver loaded.
var panicLine = regexp.MustCompile(`Kernel panic - not syncing`)

func newConsole(path string, onPanic func()) (*console, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	return &console{path: path, f: f, onPanic: onPanic}, nil
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return len(p), nil
	}
	_, _ = c.f.Write(p)
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

func (c *console) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		_ = c.f.Close()
	}
}

// add records output (c.mu held); it reports whether a line it completed shows a kernel panic.
func (c *console) add(s string) bool {
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
