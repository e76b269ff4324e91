// Package disk owns what is done to disk images: qemu-img (create, info, convert, measure, check),
// the output formats, shrinking, bmap and OVA. Image formats are qemu-img's business: this package
// drives the real tool and never re-implements a format it handles.
package disk

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"

	"github.com/ingot-build/ingot/internal/execx"
)

// QemuImg is the qemu-img binary that this build uses.
type QemuImg struct {
	Path    string
	Version string // e.g. "7.2.22"
}

var qemuImgVersion = regexp.MustCompile(`qemu-img version (\S+)`)

// FindQemuImg looks qemu-img up on PATH and asks it for its version.
func FindQemuImg(ctx context.Context) (QemuImg, error) {
	path, err := exec.LookPath("qemu-img")
	if err != nil {
		return QemuImg{}, fmt.Errorf("find qemu-img: %w; install it with: apt-get install qemu-utils", err)
	}
	out, err := execx.Output(ctx, path, "--version")
	if err != nil {
		return QemuImg{}, fmt.Errorf("ask qemu-img for its version: %w", err)
	}
	m := qemuImgVersion.FindSubmatch(out)
	if m == nil {
		return QemuImg{}, fmt.Errorf("ask qemu-img for its version: unexpected output %q", out)
	}
	return QemuImg{Path: path, Version: string(m[1])}, nil
}
