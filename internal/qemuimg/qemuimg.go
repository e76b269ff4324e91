// Package qemuimg is the one place ingot runs qemu-img. Every call builds its argv here, runs it
// through execx (so a failure names the command line and the tail of its stderr) and decodes the
// JSON of a query into a typed result, tested on output captured from a real qemu-img
// (testdata/, with the QEMU version each field needs).
//
// Two rules hold for every call.
//
// Formats are given, never probed. Every call that opens an image passes its format (-f, and -F
// for a backing file) when ingot knows it: it made the image, the recipe said, or a probe found
// it. Probing reads the first bytes of the file as a header, and the first bytes of a raw image
// are the guest's: a guest that writes a qcow2 header there would have a probing qemu-img open
// the disk as a qcow2 with a backing file of its choosing on the host (CVE-2008-2004), and a
// conversion would copy that host file into the image. Probe is the one exception, for an image
// whose format nobody has said, and only where no guest chose the first bytes: an input ingot
// was handed (a download pinned by its sha256, a file named on the command line), or an image
// whose header qemu-img itself wrote (a qcow2 build disk or stored layer). Its caller probes once
// and passes the format it found to every later call. Every other call refuses an empty format.
//
// Force-share (-U) is for the info queries only. QEMU locks every image it opens: a running VM
// holds its disk's write lock, and without -U another qemu-img fails on that disk with `Failed to
// get shared "write" lock`. Info, Probe and BackingChain read the image's header (format, sizes,
// backing file), which a running VM does not change unless asked to (a resize, a commit), so
// they pass -U: the backing chain of a disk a VM is using can be read. Map, Measure, Check and
// Convert read the data and metadata a running VM changes under them: they never pass -U, so an
// image in use makes them fail loudly instead of answering from a torn read. Create and
// CreateOverlay write, and never share. (A backing file is opened read-only and shared by the VM
// running on its overlay, so every call works on it without -U; checked with QEMU 7.2.)
package qemuimg

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"

	"github.com/ingot-build/ingot/internal/execx"
)

// tool is the command run, looked up on PATH at each call.
const tool = "qemu-img"

// Binary is the qemu-img this host has.
type Binary struct {
	Path    string
	Version string // e.g. "7.2.22"
}

var versionLine = regexp.MustCompile(`qemu-img version (\S+)`)

// Find looks qemu-img up on PATH and asks it for its version.
func Find(ctx context.Context) (Binary, error) {
	path, err := exec.LookPath(tool)
	if err != nil {
		return Binary{}, fmt.Errorf("find qemu-img: %w", installHint(err))
	}
	out, err := execx.Output(ctx, path, "--version")
	if err != nil {
		return Binary{}, fmt.Errorf("ask qemu-img for its version: %w", err)
	}
	m := versionLine.FindSubmatch(out)
	if m == nil {
		return Binary{}, fmt.Errorf("ask qemu-img for its version: unexpected output %q", out)
	}
	return Binary{Path: path, Version: string(m[1])}, nil
}

// output runs qemu-img with args and returns its stdout; on failure, whatever it wrote to stdout
// too (check reports in JSON and fails when it finds a problem).
func output(ctx context.Context, args ...string) ([]byte, error) {
	out, err := execx.Output(ctx, tool, args...)
	return out, installHint(err)
}

// installHint says which package to install when qemu-img is not on PATH.
func installHint(err error) error {
	if errors.Is(err, exec.ErrNotFound) {
		return fmt.Errorf("%w; install it with: apt-get install qemu-utils", err)
	}
	return err
}

// needFormat refuses a call without a format: qemu-img would probe it (see the package doc).
func needFormat(what, format string) error {
	if format == "" {
		return fmt.Errorf("%s: no image format given; qemu-img must not probe it", what)
	}
	return nil
}
