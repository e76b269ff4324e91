package bake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kdomanski/iso9660"

	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/internal/ctxio"
)

// install drives an installer ISO unattended (ISO sources only): either its kernel and initrd,
// taken out of the ISO, booted directly with the recipe's extra arguments (no typing, no timing),
// or the ISO booted through its own menu with boot keys typed over the monitor. The installer's
// final reboot ends the machine (-no-reboot): that is "install finished".
func (b *build) install(ctx context.Context) error {
	iso := b.r.Source.ISO
	if iso == nil {
		return nil
	}
	spec := b.spec("install")
	spec.NoReboot = true
	// Its own dir: its console log is kept beside the build machine's, not overwritten by it.
	spec.WorkDir = filepath.Join(b.workDir, "install")
	if err := mkdirPrivate(spec.WorkDir); err != nil {
		return err
	}
	// virtio-scsi, not SATA: cloud kernels (and our test installer's) have no AHCI driver, and
	// both firmwares boot from virtio-scsi CD-ROMs.
	cd := hypervisor.Disk{Path: b.iso, Format: "raw", CDROM: true, Interface: "scsi"}
	if iso.Kernel != "" {
		k, err := extractFromISO(ctx, b.iso, iso.Kernel, filepath.Join(b.workDir, "install-kernel"))
		if err != nil {
			return err
		}
		spec.Kernel = k
		if iso.Initrd != "" {
			if spec.Initrd, err = extractFromISO(ctx, b.iso, iso.Initrd, filepath.Join(b.workDir, "install-initrd")); err != nil {
				return err
			}
		}
		spec.Append = iso.Append
	} else {
		cd.BootIndex = 1
		spec.Disks[0].BootIndex = 2
	}
	spec.Disks = append(spec.Disks, cd)

	var m hypervisor.Machine
	err := b.waits.track(func() (err error) { m, err = b.opts.Driver.Start(ctx, spec); return err })
	if err != nil {
		return err
	}
	b.onCleanup("stop the installer machine", func(ctx context.Context) error { return m.Kill(ctx) })
	if len(iso.BootKeys) > 0 {
		ks, ok := m.(hypervisor.KeySender)
		if !ok {
			return fmt.Errorf("%s: source.iso.boot_keys: %w", iso.Pos, hypervisor.ErrNotSupported)
		}
		if err := ctxio.Sleep(ctx, iso.BootWait); err != nil {
			return err
		}
		for i, keys := range iso.BootKeys {
			if err := ks.SendKeys(ctx, keys); err != nil {
				return fmt.Errorf("%s: source.iso.boot_keys[%d]: %w", iso.Pos, i, err)
			}
		}
	}
	timeout := iso.InstallTimeout
	if timeout == 0 {
		timeout = time.Hour
	}
	b.log.Info("waiting for the installer to finish", "timeout", timeout, "console", m.ConsolePath())
	err = b.waitShown("waiting for the installer to finish", func() error {
		select {
		case <-m.Done():
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(timeout):
			return &hypervisor.GuestError{Reason: fmt.Sprintf("the installer did not finish within %s (source.iso.install_timeout)", timeout), ConsoleTail: m.ConsoleTail(25)}
		}
	})
	if err != nil {
		return err
	}
	if err := m.Err(); err != nil {
		return fmt.Errorf("the installer failed: %w", err)
	}
	b.log.Info("installer finished; booting the installed system")
	return nil
}

// extractFromISO copies one file out of an ISO9660 image. Names are matched case-insensitively
// and without ";1" versions: plain ISO9660 names are upper-case, Rock Ridge and Joliet ones not.
// The copy (an installer's initrd can be hundreds of MiB) stops when ctx ends.
func extractFromISO(ctx context.Context, isoPath, name, dst string) (string, error) {
	f, err := os.Open(isoPath)
	if err != nil {
		return "", err
	}
	defer f.Close()
	img, err := iso9660.OpenImage(f)
	if err != nil {
		return "", fmt.Errorf("read ISO %s: %w", isoPath, err)
	}
	dir, err := img.RootDir()
	if err != nil {
		return "", fmt.Errorf("read ISO %s: %w", isoPath, err)
	}
	parts := strings.Split(strings.Trim(name, "/"), "/")
	cur := dir
	for i, part := range parts {
		children, err := cur.GetChildren()
		if err != nil {
			return "", fmt.Errorf("read ISO %s: %w", isoPath, err)
		}
		var next *iso9660.File
		for _, c := range children {
			cn := strings.TrimSuffix(c.Name(), ";1")
			if strings.EqualFold(cn, part) || strings.EqualFold(strings.TrimSuffix(cn, "."), part) {
				next = c
				break
			}
		}
		if next == nil || (i < len(parts)-1 && !next.IsDir()) {
			return "", fmt.Errorf("the ISO %s has no %s (source.iso kernel/initrd path)", isoPath, name)
		}
		cur = next
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(out, ctxio.Reader(ctx, cur.Reader())); err != nil {
		out.Close()
		return "", fmt.Errorf("extract %s from the ISO: %w", name, err)
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	if fi, err := os.Stat(dst); err != nil || fi.Size() == 0 {
		return "", errors.Join(fmt.Errorf("extract %s from the ISO: empty file", name), err)
	}
	return dst, nil
}
