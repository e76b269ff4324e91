package bake

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ingot-build/ingot/disk"
	"github.com/ingot-build/ingot/firmware"
	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/manifest"
	"github.com/ingot-build/ingot/recipes"
)

// TestOptions configure TestImage: `ingot test IMAGE`.
type TestOptions struct {
	// Image is the file to boot: any output format (a raw.zst or an OVA too), from ingot or not;
	// or a block device a raw image was flashed onto (ingot flash), which gets the grown check.
	Image string
	// Firmware lists the firmwares to boot it under; empty: the firmware of the build that made
	// it (its manifest beside it), else bios (uefi for aarch64, which has no other).
	Firmware []firmware.Kind
	// Arch is the machine's architecture (x86_64, aarch64); empty: the one its manifest
	// records, else the one its UEFI default boot loader is for (disk.Inspection.Arch), else
	// the host's.
	Arch string
	// Checks are run after the built-in ones (--tests FILE).
	Checks    []recipes.Check
	CPUs      int // default 2
	MemoryMiB int // default 1024
	// DiskBytes is the disk the image boots on; 0: the build's disk when its manifest says
	// (a shrunk output then grows), else the image's own size.
	DiskBytes     int64
	Driver        hypervisor.Driver
	Accel         hypervisor.Accel
	Logger        *slog.Logger
	WorkRoot      string // default DefaultWorkRoot
	KeepOnFailure bool
	SSHTimeout    time.Duration // default recipes.DefaultSSHTimeout
}

// TestImage test-boots one image with every check, as a build's test step boots its first
// output, once per firmware. When a manifest.json beside the image lists it, the image is
// checked against the build machine it records (fresh-identity, no-build-user) and booted under
// its firmware on a disk of its build's size; otherwise those parts are skipped or relaxed, and
// the results say so. The error joins a *TestError per failed check.
func TestImage(ctx context.Context, o TestOptions) ([]manifest.TestBoot, error) {
	if o.Driver == nil {
		return nil, errors.New("bake: TestOptions.Driver is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.CPUs == 0 {
		o.CPUs = 2
	}
	if o.MemoryMiB == 0 {
		o.MemoryMiB = 1024
	}
	if o.SSHTimeout == 0 {
		o.SSHTimeout = recipes.DefaultSSHTimeout
	}
	if o.WorkRoot == "" {
		root, err := DefaultWorkRoot()
		if err != nil {
			return nil, err
		}
		o.WorkRoot = root
	}
	var bm *manifest.BuildMachine
	fws := o.Firmware
	arch := o.Arch
	diskBytes := o.DiskBytes
	if m, err := manifestOf(o.Image); err != nil {
		o.Logger.Warn("the manifest beside the image cannot be read: testing without it", "err", err)
	} else if m != nil {
		o.Logger.Info("testing against the build the manifest records", "build", m.BuildID)
		bm = m.BuildMachine
		if len(fws) == 0 && m.Firmware != "" {
			if k, err := firmware.ParseKind(m.Firmware); err == nil {
				fws = []firmware.Kind{k}
			}
		}
		if diskBytes == 0 && bm != nil {
			diskBytes = bm.DiskBytes
		}
		if arch == "" {
			arch = cmp.Or(m.Arch, recipes.ArchX86_64) // manifests before 1.3 are all x86_64
		}
	}
	if arch == "" {
		// No manifest says: the image's UEFI default boot loader does (a flashed device has
		// no manifest beside it); a BIOS-only image has none, and boots as the host's.
		if in, err := disk.Inspect(ctx, o.Image); err == nil && in.Arch != "" {
			if in.Arch != recipes.ArchX86_64 && in.Arch != recipes.ArchAArch64 {
				return nil, fmt.Errorf("%s boots as %s (its UEFI boot loader %s): ingot tests x86_64 and aarch64 images", o.Image, in.Arch, in.ArchFrom)
			}
			arch = in.Arch
			o.Logger.Info("testing as the architecture the image's UEFI boot loader is for", "arch", arch, "loader", in.ArchFrom)
		}
	}
	if arch == "" {
		arch = recipes.HostArch()
	}
	if len(fws) == 0 {
		fws = []firmware.Kind{firmware.BIOS}
		if arch == recipes.ArchAArch64 {
			fws = []firmware.Kind{firmware.UEFI}
		}
	}
	if err := mkdirPrivate(o.WorkRoot); err != nil {
		return nil, fmt.Errorf("work root: %w", err)
	}
	idb := make([]byte, 4)
	_, _ = rand.Read(idb)
	dir := filepath.Join(o.WorkRoot, "test-"+time.Now().UTC().Format("20060102T150405")+"-"+hex.EncodeToString(idb))
	wd, err := claimDir(dir, true)
	if err != nil {
		return nil, fmt.Errorf("work dir: %w", err)
	}
	t := &tester{
		driver: o.Driver, log: o.Logger, dir: dir, name: "ingot", arch: arch, cpus: o.CPUs, memoryMiB: o.MemoryMiB, accel: o.Accel,
		checks: o.Checks, build: bm, sshTimeout: o.SSHTimeout, keep: o.KeepOnFailure, dial: dialSSH,
	}
	var boots []testBoot
	st, err := os.Stat(o.Image)
	device := err == nil && st.Mode()&fs.ModeDevice != 0 && st.Mode()&fs.ModeCharDevice == 0
	for _, fw := range fws {
		boots = append(boots, testBoot{path: o.Image, full: true, firmware: fw, diskBytes: diskBytes, device: device})
	}
	results, err := t.run(ctx, boots)
	if err != nil && o.KeepOnFailure {
		o.Logger.Warn("kept the failing test boot", "dir", dir)
		return results, errors.Join(err, wd.Keep("kept by ingot test --keep-on-failure; remove this directory when done\n"))
	}
	return results, errors.Join(err, wd.Remove())
}

// manifestOf reads the manifest.json beside image when it lists image as an output; nil when
// there is none or it lists other files.
func manifestOf(image string) (*manifest.Manifest, error) {
	p := filepath.Join(filepath.Dir(image), "manifest.json")
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	m, err := manifest.Read(p)
	if err != nil {
		return nil, err
	}
	for _, f := range m.Outputs {
		if f.File == filepath.Base(image) {
			return m, nil
		}
	}
	return nil, nil
}
