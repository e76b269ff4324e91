package bake

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"time"
)

// cloudInitFatal are the cloud-init messages after which waiting for SSH is pointless: the seed
// was not found or not understood, or a module failed (the one that adds ingot's user and key may
// be among them). cloud-init logs them at WARNING, which its console handler writes to the serial
// console as "cloud-init[PID]: DATE - FILE[WARNING]: MESSAGE" (cloud-init 22.4 to 24.x).
var cloudInitFatal = []struct {
	re   *regexp.Regexp
	what string
}{
	{regexp.MustCompile(`No instance datasource found|Failed to fetch your datasource|Failed to initialize, likely bad things`), "cloud-init found no usable seed (datasource), so the build user and its key were never set up"},
	{regexp.MustCompile(`Failed loading yaml blob|Failed at merging in cloud config part|Unhandled unknown content-type`), "cloud-init could not read the user-data ingot gave it"},
	{regexp.MustCompile(`Running module (\S+) \(.*\) failed`), "a cloud-init module failed"},
}

// bootFatal are the console messages of a machine that will not come up: no boot device, a
// bootloader that cannot go on, or systemd in emergency mode (a mount in /etc/fstab failed, say).
// A test boot that sees one fails its boots check at once, with the console, instead of waiting
// minutes for an SSH server that will never start.
var bootFatal = []struct {
	re   *regexp.Regexp
	what string
}{
	{regexp.MustCompile(`No bootable device|No bootable option or device was found|Boot failed: not a bootable disk`), "the firmware found nothing to boot"},
	{regexp.MustCompile(`grub rescue>|error: (unknown filesystem|no such device|file .* not found)`), "the bootloader could not load the system"},
	{regexp.MustCompile(`You are in (emergency|rescue) mode|Give root password for maintenance|Cannot open access to console, the root account is locked`), "systemd stopped in emergency mode (a unit the boot needs failed: often a mount in /etc/fstab)"},
	{regexp.MustCompile(`Kernel panic - not syncing`), "the kernel panicked"},
}

// consoleWatch scans a machine's serial console log as it grows and reports the first fatal
// message: by default a fatal cloud-init one, so that a build waiting for SSH fails at once,
// saying what went wrong, instead of timing out minutes later (Packer's "Waiting for SSH…" black
// box); with boot set, a boot that cannot succeed (bootFatal) too.
type consoleWatch struct {
	path  string
	every time.Duration
	boot  bool
}

// watch returns a channel that receives one error if a fatal line appears before ctx ends.
func (w consoleWatch) watch(ctx context.Context) <-chan error {
	out := make(chan error, 1)
	go func() {
		var off int64
		var partial []byte // an unfinished last line, kept for the next read
		t := time.NewTicker(w.every)
		defer t.Stop()
		for {
			chunk, n, err := readFrom(w.path, off)
			if err == nil {
				off += n
				data := append(partial, chunk...)
				lines := data
				if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
					lines, partial = data[:i+1], bytes.Clone(data[i+1:])
				} else {
					lines, partial = nil, data
				}
				msg := fatalCloudInitLine(lines)
				if msg == "" && w.boot {
					msg = fatalBootLine(lines)
				}
				if msg != "" {
					out <- errors.New(msg)
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return out
}

// readFrom reads what a file holds past off.
func readFrom(path string, off int64) ([]byte, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, 0, err
	}
	b, err := io.ReadAll(f)
	return b, int64(len(b)), err
}

// fatalBootLine returns a description of the first bootFatal message in lines, with the line
// itself, or "".
func fatalBootLine(lines []byte) string {
	for line := range bytes.Lines(lines) {
		for _, f := range bootFatal {
			if f.re.Match(line) {
				return fmt.Sprintf("%s; the console says: %s", f.what, bytes.TrimSpace(line))
			}
		}
	}
	return ""
}

// fatalCloudInitLine returns a description of the first fatal cloud-init message in lines, with
// the line itself, or "".
func fatalCloudInitLine(lines []byte) string {
	for line := range bytes.Lines(lines) {
		if !bytes.Contains(line, []byte("cloud-init")) && !bytes.Contains(line, []byte("[WARNING]")) {
			continue
		}
		for _, f := range cloudInitFatal {
			if m := f.re.FindSubmatch(line); m != nil {
				what := f.what
				if len(m) > 1 {
					what = fmt.Sprintf("the cloud-init module %s failed", m[1])
				}
				return fmt.Sprintf("%s; the console says: %s", what, bytes.TrimSpace(line))
			}
		}
	}
	return ""
}
