package hypervisor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestConsoleLog(t *testing.T) {
	var ring []string // 500 numbered lines: more than the ring holds
	for i := range 500 {
		ring = append(ring, fmt.Sprintf("line %d\n", i))
	}
	wantRing := strings.TrimSuffix(strings.Join(ring[500-consoleLines:], ""), "\n")
	tests := []struct {
		name      string
		writes    []string
		tail      int
		wantTail  string
		wantPanic string
		wantCalls int
	}{
		{
			name:     "a partial line is in the tail before its newline",
			writes:   []string{"GRUB menu \x1b[7m*Install\x1b[m"},
			tail:     5,
			wantTail: "GRUB menu *Install",
		},
		{
			name:     "lines split across writes, carriage returns and escapes",
			writes:   []string{"GRUB menu", " done\r\n[ 1.0] o", "k\nprogress 10%\rprogress 100%\n", "login: "},
			tail:     3,
			wantTail: "[ 1.0] ok\nprogress 100%\nlogin: ",
		},
		{
			name:     "tail of more lines than written",
			writes:   []string{"a\nb\n"},
			tail:     10,
			wantTail: "a\nb",
		},
		{
			name:     "the ring keeps the last lines once it wraps",
			writes:   ring,
			tail:     1000,
			wantTail: wantRing,
		},
		{
			name:     "the ring exactly full",
			writes:   ring[:consoleLines],
			tail:     1000,
			wantTail: strings.TrimSuffix(strings.Join(ring[:consoleLines], ""), "\n"),
		},
		{
			name:     "the ring, asked for fewer",
			writes:   ring,
			tail:     2,
			wantTail: "line 498\nline 499",
		},
		{
			name:      "the first panic line is kept, onPanic called once",
			writes:    []string{"[ 9.1] Kernel panic - not syncing: sysrq triggered crash\n[ 9.2] Kernel panic - not syncing: again\n", "Kernel panic - not syncing: third\n"},
			tail:      1,
			wantTail:  "Kernel panic - not syncing: third",
			wantPanic: "Kernel panic - not syncing: sysrq triggered crash",
			wantCalls: 1,
		},
		{
			name:      "a panic line split across writes",
			writes:    []string{"[ 3.2] Kernel pa", "nic - not syn", "cing: VFS: Unable to mount root fs\n"},
			tail:      1,
			wantTail:  "[ 3.2] Kernel panic - not syncing: VFS: Unable to mount root fs",
			wantPanic: "Kernel panic - not syncing: VFS: Unable to mount root fs",
			wantCalls: 1,
		},
		{
			name:     "a panic line not yet finished is not a panic yet",
			writes:   []string{"Kernel panic - not syncing: half"},
			tail:     1,
			wantTail: "Kernel panic - not syncing: half",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			c, err := NewConsoleLog(filepath.Join(t.TempDir(), "console.log"), func() { calls++ })
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.writes {
				if n, err := c.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if got := c.Tail(tt.tail); got != tt.wantTail {
				t.Errorf("Tail(%d) = %q, want %q", tt.tail, got, tt.wantTail)
			}
			if got := c.PanicMessage(); got != tt.wantPanic {
				t.Errorf("PanicMessage = %q, want %q", got, tt.wantPanic)
			}
			if calls != tt.wantCalls {
				t.Errorf("onPanic called %d times, want %d", calls, tt.wantCalls)
			}
			if err := c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			// The file holds every byte as it came, escapes and all.
			b, err := os.ReadFile(c.Path())
			if err != nil {
				t.Fatal(err)
			}
			if want := strings.Join(tt.writes, ""); string(b) != want {
				t.Errorf("the log file holds %.80q…, want %.80q…", b, want)
			}
		})
	}
}

func TestConsoleLogAfterClose(t *testing.T) {
	c, err := NewConsoleLog(filepath.Join(t.TempDir(), "console.log"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("before\n"))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Write([]byte("after close\n")); n != 12 || err != nil {
		t.Errorf("a write after Close (a stream's last bytes) = %d, %v; want it accepted", n, err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
	if b, _ := os.ReadFile(c.Path()); string(b) != "before\n" {
		t.Errorf("log file %q", b)
	}
}

// A log that cannot be written (here /dev/full: every write is ENOSPC) still takes every write,
// so the guest is never stalled, keeps its tail and panic line, and Close says what went wrong.
func TestConsoleLogWriteErrorSurfaces(t *testing.T) {
	calls := 0
	c, err := NewConsoleLog("/dev/full", func() { calls++ })
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"booting\n", "Kernel panic - not syncing: x\n"} {
		if n, err := c.Write([]byte(w)); n != len(w) || err != nil {
			t.Fatalf("Write(%q) = %d, %v; want it accepted", w, n, err)
		}
	}
	if got := c.Tail(5); got != "booting\nKernel panic - not syncing: x" || calls != 1 {
		t.Errorf("tail %q, %d panic calls", got, calls)
	}
	err = c.Close()
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "console log") {
		t.Fatalf("Close = %v, want the write's ENOSPC, said to be the console log's", err)
	}
	if again := c.Close(); again == nil || again.Error() != err.Error() {
		t.Errorf("a second Close = %v, want %v again", again, err)
	}
}

func TestConsoleLogGuestError(t *testing.T) {
	tests := []struct {
		name       string
		output     string
		wantReason string
	}{
		{"no panic", "a\nb\n", "QEMU exited"},
		{"panic line appended", "Kernel panic - not syncing: Attempted to kill init!\n", "QEMU exited: Kernel panic - not syncing: Attempted to kill init!"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewConsoleLog(filepath.Join(t.TempDir(), "console.log"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte(strings.Repeat("boot\n", 100) + tt.output))
			ge := c.GuestError("QEMU exited")
			if ge.Reason != tt.wantReason {
				t.Errorf("Reason = %q, want %q", ge.Reason, tt.wantReason)
			}
			if want := c.Tail(guestErrorLines); ge.ConsoleTail != want {
				t.Errorf("ConsoleTail = %q, want the last %d lines %q", ge.ConsoleTail, guestErrorLines, want)
			}
		})
	}
}
