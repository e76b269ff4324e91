// Command installer is the test installer ISO's /init: a small unattended installer shaped like
// Ubuntu's autoinstall, so that ingot's installer-ISO path can be tested end to end without the
// network or a real distribution ISO.
//
// What it does, as PID 1 in the ISO's initrd:
//  1. refuses to touch any disk unless "autoinstall" is on the kernel command line (as subiquity
//     does), and otherwise says so on the console and waits;
//  2. finds its instructions on a NoCloud seed (a block device labelled "cidata" holding user-data
//     with an `autoinstall:` section, version 1);
//  3. writes the Debian system shipped on the ISO (/install/disk.raw.zst: the test cloud image, with
//     GRUB for BIOS and UEFI already in place) onto the largest empty disk;
//  4. hands `autoinstall.user-data` to the installed system's cloud-init as a NoCloud seed on its
//     disk (/var/lib/cloud/seed/nocloud), sets the hostname;
//  5. reboots, or powers off with `shutdown: poweroff`. Under QEMU's -no-reboot either ends QEMU.
//
// On any error it prints "INSTALL FAILED: …" and waits, as a real installer's error screen does.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

const (
	payloadPath = "install/disk.raw.zst"
	rootPartNum = 3 // the test cloud image's root filesystem partition
)

// modules the installer needs that the cloud kernel builds as modules; built-in ones are skipped.
var wantModules = []string{
	"virtio_pci", "virtio_blk", "virtio_scsi", "sd_mod", "sr_mod", "ata_piix", "ahci",
	"isofs", "vfat", "nls_cp437", "nls_ascii", "nls_utf8", "nls_iso8859_1",
}

type autoinstall struct {
	Version  int    `yaml:"version"`
	Shutdown string `yaml:"shutdown"`
	Identity struct {
		Hostname string `yaml:"hostname"`
	} `yaml:"identity"`
	UserData map[string]any `yaml:"user-data"`
}

func main() {
	setupConsole()
	logf("ingot test installer starting")
	if err := install(); err != nil {
		logf("INSTALL FAILED: %v", err)
		waitForever()
	}
}

func install() error {
	for _, m := range []struct{ fs, dir string }{{"devtmpfs", "/dev"}, {"proc", "/proc"}, {"sysfs", "/sys"}} {
		_ = os.MkdirAll(m.dir, 0o755)
		if err := unix.Mount(m.fs, m.dir, m.fs, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s: %w", m.dir, err)
		}
	}
	setupConsole() // now that /dev/console certainly exists
	cmdline, _ := os.ReadFile("/proc/cmdline")
	if !hasWord(string(cmdline), "autoinstall") {
		logf("autoinstall not requested: add 'autoinstall' to the kernel command line to install unattended")
		logf("refusing to write to any disk without it; waiting")
		waitForever()
	}
	if err := loadModules(wantModules); err != nil {
		return err
	}

	seedDev, media, err := findDevices(30 * time.Second)
	if err != nil {
		return err
	}
	cfg, err := readSeed(seedDev)
	if err != nil {
		return err
	}
	target, err := pickTarget(seedDev, media)
	if err != nil {
		return err
	}
	logf("installing onto /dev/%s from %s (seed on /dev/%s)", target, media, seedDev)
	if err := writePayload(media, target); err != nil {
		return err
	}
	if err := configureTarget(target, cfg); err != nil {
		return err
	}
	unix.Sync()
	logf("installation complete")
	if cfg.Shutdown == "poweroff" {
		logf("powering off")
		return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	}
	logf("rebooting")
	return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
}

func setupConsole() {
	f, err := os.OpenFile("/dev/console", os.O_RDWR, 0)
	if err != nil {
		return
	}
	for fd := 0; fd < 3; fd++ {
		_ = unix.Dup2(int(f.Fd()), fd)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stdout, "ingot-test-installer: "+format+"\n", args...)
}

func waitForever() {
	for {
		time.Sleep(time.Hour)
	}
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

// loadModules loads each module and its dependencies (modules.dep order) with finit_module.
func loadModules(names []string) error {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	dir := filepath.Join("/lib/modules", unix.ByteSliceToString(uts.Release[:]))
	deps, err := readModulesDep(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return err
	}
	loaded := map[string]bool{}
	var load func(rel string) error
	load = func(rel string) error {
		if loaded[rel] {
			return nil
		}
		loaded[rel] = true
		for _, d := range deps[rel] {
			if err := load(d); err != nil {
				return err
			}
		}
		f, err := os.Open(filepath.Join(dir, rel))
		if err != nil {
			return fmt.Errorf("load module %s: %w", rel, err)
		}
		defer f.Close()
		if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("load module %s: %w", rel, err)
		}
		return nil
	}
	for _, name := range names {
		rel, ok := moduleByName(deps, name)
		if !ok {
			continue // built into the kernel
		}
		if err := load(rel); err != nil {
			return err
		}
	}
	return nil
}

func readModulesDep(path string) (map[string][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read modules.dep: %w", err)
	}
	defer f.Close()
	deps := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if ok {
			deps[mod] = strings.Fields(rest)
		}
	}
	return deps, sc.Err()
}

func moduleByName(deps map[string][]string, name string) (string, bool) {
	for rel := range deps {
		base := strings.TrimSuffix(filepath.Base(rel), ".ko")
		if strings.ReplaceAll(base, "-", "_") == name {
			return rel, true
		}
	}
	return "", false
}

// findDevices waits for the seed (label cidata) and the install media (a CD holding the payload).
func findDevices(timeout time.Duration) (seed, media string, err error) {
	deadline := time.Now().Add(timeout)
	for {
		seed, media = "", ""
		for _, dev := range blockDevices() {
			if label(dev) == "cidata" {
				seed = dev
				continue
			}
			// Any device: the cloud kernel has no AHCI driver, so on q35 the ISO is attached as a
			// virtio-scsi CD or a virtio disk rather than the default SATA CD.
			if media == "" && hasPayload(dev) {
				media = dev
			}
		}
		if seed != "" && media != "" {
			return seed, media, nil
		}
		if time.Now().After(deadline) {
			return "", "", fmt.Errorf("after %s: seed (label cidata) found: %q, install media (CD with /%s) found: %q; block devices: %v",
				timeout, seed, payloadPath, media, blockDevices())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func blockDevices() []string {
	entries, _ := os.ReadDir("/sys/class/block")
	var devs []string
	for _, e := range entries {
		n := e.Name()
		if _, err := os.Stat(filepath.Join("/sys/class/block", n, "partition")); err == nil {
			continue
		}
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") {
			continue
		}
		devs = append(devs, n)
	}
	sort.Strings(devs)
	return devs
}

// label reads an ISO9660 volume identifier or a FAT volume label straight from the device.
func label(dev string) string {
	f, err := os.Open("/dev/" + dev)
	if err != nil {
		return ""
	}
	defer f.Close()
	buf := make([]byte, 2048)
	if _, err := f.ReadAt(buf, 16*2048); err == nil && buf[0] == 1 && string(buf[1:6]) == "CD001" {
		// Padding should be spaces; some writers (go-diskfs) pad with NULs.
		return strings.Trim(string(buf[40:72]), " \x00")
	}
	if _, err := f.ReadAt(buf[:512], 0); err == nil && buf[510] == 0x55 && buf[511] == 0xAA {
		if string(buf[82:87]) == "FAT32" {
			return strings.Trim(string(buf[71:82]), " \x00")
		}
		if string(buf[54:57]) == "FAT" {
			return strings.Trim(string(buf[43:54]), " \x00")
		}
	}
	return ""
}

func mountAny(dev, dir string) error {
	_ = os.MkdirAll(dir, 0o755)
	var errs []error
	for _, fs := range []string{"iso9660", "vfat"} {
		err := unix.Mount("/dev/"+dev, dir, fs, unix.MS_RDONLY, "")
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", fs, err))
	}
	return fmt.Errorf("mount /dev/%s: %w", dev, errors.Join(errs...))
}

func hasPayload(dev string) bool {
	dir := "/mnt/probe-" + dev
	if err := mountAny(dev, dir); err != nil {
		return false
	}
	defer unix.Unmount(dir, 0)
	_, err := os.Stat(filepath.Join(dir, payloadPath))
	return err == nil
}

func readSeed(dev string) (*autoinstall, error) {
	dir := "/mnt/seed"
	if err := mountAny(dev, dir); err != nil {
		return nil, err
	}
	defer unix.Unmount(dir, 0)
	data, err := os.ReadFile(filepath.Join(dir, "user-data"))
	if err != nil {
		return nil, fmt.Errorf("read the seed's user-data: %w", err)
	}
	var doc struct {
		Autoinstall *autoinstall `yaml:"autoinstall"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse the seed's user-data: %w", err)
	}
	if doc.Autoinstall == nil {
		return nil, errors.New("the seed's user-data has no 'autoinstall:' section")
	}
	if doc.Autoinstall.Version != 1 {
		return nil, fmt.Errorf("autoinstall version %d is not supported (want 1)", doc.Autoinstall.Version)
	}
	return doc.Autoinstall, nil
}

// pickTarget chooses the largest disk that is neither the seed, the install media, nor any other
// disk holding a filesystem with a label: an installer never overwrites what it cannot recognise as empty.
func pickTarget(seed, media string) (string, error) {
	best, bestSize := "", int64(0)
	for _, dev := range blockDevices() {
		if dev == seed || dev == media || strings.HasPrefix(dev, "sr") || label(dev) != "" {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/sys/class/block", dev, "size"))
		if err != nil {
			continue
		}
		var sectors int64
		fmt.Sscan(string(b), &sectors)
		if sectors*512 > bestSize {
			best, bestSize = dev, sectors*512
		}
	}
	if best == "" {
		return "", fmt.Errorf("no target disk found among %v", blockDevices())
	}
	return best, nil
}

// writePayload streams the compressed disk image onto the target, seeking over zero blocks so a
// thin-provisioned target (qcow2) stays thin.
func writePayload(media, target string) error {
	dir := "/mnt/media"
	if err := mountAny(media, dir); err != nil {
		return err
	}
	defer unix.Unmount(dir, 0)
	in, err := os.Open(filepath.Join(dir, payloadPath))
	if err != nil {
		return err
	}
	defer in.Close()
	zr, err := zstd.NewReader(in)
	if err != nil {
		return err
	}
	defer zr.Close()
	out, err := os.OpenFile("/dev/"+target, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer out.Close()
	buf := make([]byte, 1<<20)
	var off, written int64
	zero := make([]byte, len(buf))
	for {
		n, err := io.ReadFull(zr, buf)
		if n > 0 {
			if !bytes.Equal(buf[:n], zero[:n]) {
				if _, werr := out.WriteAt(buf[:n], off); werr != nil {
					return fmt.Errorf("write /dev/%s at %d: %w", target, off, werr)
				}
				written += int64(n)
			}
			off += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read the payload: %w", err)
		}
	}
	if err := out.Sync(); err != nil {
		return err
	}
	logf("wrote %d MiB of %d MiB image", written>>20, off>>20)
	// Have the kernel read the new partition table; devtmpfs then shows the partitions.
	if err := unix.IoctlSetInt(int(out.Fd()), unix.BLKRRPART, 0); err != nil {
		return fmt.Errorf("re-read the partition table of /dev/%s: %w", target, err)
	}
	return nil
}

func partition(disk string, n int) string {
	if strings.HasPrefix(disk, "nvme") {
		return fmt.Sprintf("%sp%d", disk, n)
	}
	return fmt.Sprintf("%s%d", disk, n)
}

func configureTarget(disk string, cfg *autoinstall) error {
	part := partition(disk, rootPartNum)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat("/dev/" + part); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("partition /dev/%s did not appear", part)
		}
		time.Sleep(200 * time.Millisecond)
	}
	dir := "/target"
	_ = os.MkdirAll(dir, 0o755)
	if err := unix.Mount("/dev/"+part, dir, "ext4", 0, ""); err != nil {
		return fmt.Errorf("mount the installed system (/dev/%s): %w", part, err)
	}
	defer unix.Unmount(dir, 0)

	userData, err := yaml.Marshal(cfg.UserData)
	if err != nil {
		return err
	}
	// The installed system's cloud-init gets the autoinstall section's user-data as a NoCloud
	// seed on its own disk (/var/lib/cloud/seed/nocloud), which ds-identify recognises; subiquity
	// uses the None datasource instead, which Debian's ds-identify treats as "no datasource" and
	// disables cloud-init (so no host keys, no user).
	meta := fmt.Sprintf("instance-id: ingot-test-installer\nlocal-hostname: %s\n", cmp.Or(cfg.Identity.Hostname, "debian"))
	files := map[string][]byte{
		"var/lib/cloud/seed/nocloud/user-data":    append([]byte("#cloud-config\n"), userData...),
		"var/lib/cloud/seed/nocloud/meta-data":    []byte(meta),
		"var/log/installer/autoinstall-user-data": userData,
	}
	if cfg.Identity.Hostname != "" {
		files["etc/hostname"] = []byte(cfg.Identity.Hostname + "\n")
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o600) // user-data may hold secrets
		if name == "etc/hostname" {
			mode = 0o644
		}
		if err := os.WriteFile(p, data, mode); err != nil {
			return fmt.Errorf("write %s on the target: %w", name, err)
		}
	}
	return nil
}
