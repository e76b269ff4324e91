package firmware

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ingot-build/ingot/internal/qemuimg"
)

// PrepareVars makes the build's own writable firmware image inside dir (the build's private work
// dir) and returns its path, for Args. For split flash that is a copy of the variable store
// template, "uefi-vars.qcow2"; for combined flash a copy of the whole firmware,
// "uefi-firmware.qcow2". Firmware that keeps no variables (BIOS, stateless flash) needs nothing:
// the path is "" and the error nil.
//
// The copy is converted to qcow2 (VarsFormat) with qemu-img, so that the VM can be snapshotted;
// its virtual size is the template's size, which is what the pflash device is sized from. It is
// written to a temporary name and renamed, so the path never names a half-written file; there is
// no fsync, because a crash loses the whole work dir anyway. The file is private to its owner
// (0600).
func PrepareVars(ctx context.Context, fw Firmware, dir string) (string, error) {
	if !fw.NeedsVars() {
		return "", nil
	}
	src, name := fw.VarsTemplate, "uefi-vars.qcow2"
	if fw.Mode == ModeCombined {
		src, name = fw.Executable, "uefi-firmware.qcow2"
	}
	if src.Path == "" || src.Format == "" {
		return "", fmt.Errorf("prepare UEFI variables: %s firmware has no template path and format", fw.Mode)
	}
	dst := filepath.Join(dir, name)
	tmp, err := os.CreateTemp(dir, "."+name+".*.tmp")
	if err != nil {
		return "", fmt.Errorf("prepare UEFI variables: %w", err)
	}
	tmpPath := tmp.Name()
	renamed := false
	defer func() {
		if !renamed {
			os.Remove(tmpPath)
		}
	}()
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("prepare UEFI variables: %w", err)
	}
	// qemu-img reuses the existing (0600) file rather than creating one with its own mode.
	if err := qemuimg.Convert(ctx, src.Path, tmpPath, qemuimg.ConvertOptions{InputFormat: src.Format, Format: VarsFormat}); err != nil {
		return "", fmt.Errorf("prepare UEFI variables from %s: %w", src.Path, err)
	}
	if err := os.Rename(tmpPath, dst); err != nil {
		return "", fmt.Errorf("prepare UEFI variables: %w", err)
	}
	renamed = true
	return dst, nil
}
