package qemu

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"

	"github.com/ingot-build/ingot/internal/execx"
)

// Binary is a qemu-system-* emulator found on this machine.
type Binary struct {
	Path    string
	Version string // e.g. "7.2.22"
	Package string // the distribution's build string, e.g. "Debian 1:7.2+dfsg-7+deb12u18"
}

var versionLine = regexp.MustCompile(`QEMU emulator version (\S+)(?: \(([^)]*)\))?`)

// FindBinary looks up qemu-system-ARCH on PATH and asks it for its version.
func FindBinary(ctx context.Context, arch string) (Binary, error) {
	name := "qemu-system-" + arch
	path, err := exec.LookPath(name)
	if err != nil {
		return Binary{}, fmt.Errorf("find %s: %w; install it with: apt-get install %s", name, err, debianPackage(arch))
	}
	out, err := execx.Output(ctx, path, "--version")
	if err != nil {
		return Binary{}, fmt.Errorf("ask %s for its version: %w", name, err)
	}
	return parseVersion(path, out)
}

func parseVersion(path string, out []byte) (Binary, error) {
	m := versionLine.FindSubmatch(out)
	if m == nil {
		return Binary{}, fmt.Errorf("ask %s for its version: unexpected output %q", path, out)
	}
	return Binary{Path: path, Version: string(m[1]), Package: string(m[2])}, nil
}

func debianPackage(arch string) string {
	switch arch {
	case "x86_64", "i386":
		return "qemu-system-x86"
	case "aarch64", "arm":
		return "qemu-system-arm"
	default:
		return "qemu-system-misc"
	}
}
