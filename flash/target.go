package flash

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ingot-build/ingot/internal/progress"
)

// ErrRefused marks a flash that was refused before a byte was written: a target in use, too
// small, of the wrong kind, or a bmap that was named but cannot be read.
var ErrRefused = errors.New("refused")

// System is where the kernel's views of mounts, swap and block devices are read from: "/proc"
// and "/sys" on a real host (Host), a fake tree in tests.
type System struct {
	Proc string // /proc: self/mountinfo, swaps
	Sys  string // /sys: class/block, dev/block
}

// Host is the running system.
var Host = System{Proc: "/proc", Sys: "/sys"}

// Target is what an image is flashed onto: a block device, or a regular file (which need not
// exist yet) for SD-card image workflows.
type Target struct {
	Path   string
	Block  bool   // a block device; otherwise a regular file
	Name   string // the kernel's name of a block device (sdb, mmcblk0, loop3)
	DevNum string // "major:minor" of a block device
	// Size is a block device's size (BLKGETSIZE64), or a file's current size (0 when it does not
	// exist yet).
	Size       int64
	Exists     bool        // whether a regular file target exists already
	Model      string      // a block device's vendor and model from sysfs, or what a loop device is backed by
	Partitions []Partition // a block device's partitions, as the kernel knows them now
}

// Partition is a partition of a target block device.
type Partition struct {
	Name string
	Size int64
}

// Describe says what the target is in a line a user can recognise their device by before
// agreeing to overwrite it: model, size and partitions.
func (t *Target) Describe() string {
	if !t.Block {
		if !t.Exists {
			return fmt.Sprintf("%s: a new file", t.Path)
		}
		return fmt.Sprintf("%s: a regular file of %s", t.Path, progress.Bytes(t.Size))
	}
	model := t.Model
	if model == "" {
		model = "unknown model"
	}
	parts := "no partitions"
	if len(t.Partitions) > 0 {
		var ps []string
		for _, p := range t.Partitions {
			ps = append(ps, fmt.Sprintf("%s (%s)", p.Name, progress.Bytes(p.Size)))
		}
		parts = fmt.Sprintf("%d partition(s): %s", len(t.Partitions), strings.Join(ps, ", "))
	}
	return fmt.Sprintf("%s (%s): %s, %s, %s", t.Path, t.Name, model, progress.Bytes(t.Size), parts)
}

// Inspect looks at path without writing to it: what kind of target it is, and for a block device
// its name, size, model and partitions. A path that does not exist is a new regular file.
func (s System) Inspect(path string) (*Target, error) {
	t := &Target{Path: path}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		dir := filepath.Dir(path)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("%w: %s does not exist, and %s is no directory to create it in", ErrRefused, path, dir)
		}
		return t, nil
	case err != nil:
		return nil, fmt.Errorf("look at the target: %w", err)
	case st.Mode().IsRegular():
		t.Exists, t.Size = true, st.Size()
		return t, nil
	case st.Mode()&fs.ModeDevice == 0 || st.Mode()&fs.ModeCharDevice != 0:
		return nil, fmt.Errorf("%w: %s is neither a block device nor a regular file (%s)", ErrRefused, path, st.Mode().Type())
	}
	t.Block = true
	rdev := uint64(st.Sys().(*syscall.Stat_t).Rdev) //nolint:unconvert // uint32 on some Linux arches
	t.DevNum = fmt.Sprintf("%d:%d", unix.Major(rdev), unix.Minor(rdev))
	link, err := os.Readlink(filepath.Join(s.Sys, "dev/block", t.DevNum))
	if err != nil {
		return nil, fmt.Errorf("find block device %s (%s) in sysfs: %w", path, t.DevNum, err)
	}
	t.Name = filepath.Base(link)
	f, err := os.Open(path) // read-only: looking writes nothing
	if err != nil {
		return nil, fmt.Errorf("open %s to read its size: %w", path, err)
	}
	defer f.Close()
	if t.Size, err = deviceSize(f); err != nil {
		return nil, err
	}
	t.Model = s.model(t.Name)
	t.Partitions = s.partitions(t.Name)
	return t, nil
}

// deviceSize asks the kernel for the size of the block device f in bytes (BLKGETSIZE64, as
// gokrazy does: sysfs's size counts 512-byte sectors of the partition table's view).
func deviceSize(f *os.File) (int64, error) {
	var size uint64
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size))); errno != 0 {
		return 0, fmt.Errorf("read the size of %s (BLKGETSIZE64): %w", f.Name(), errno)
	}
	return int64(size), nil
}

// class is the sysfs directory of the block device called name.
func (s System) class(name string, elem ...string) string {
	return filepath.Join(append([]string{s.Sys, "class/block", name}, elem...)...)
}

func (s System) read(name string, elem ...string) string {
	b, err := os.ReadFile(s.class(name, elem...))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// model is how a user knows the device: vendor and model (USB readers, SATA and SCSI disks), the
// name of an MMC card, or the file a loop device is backed by. A partition is its disk's.
func (s System) model(name string) string {
	if s.read(name, "partition") != "" {
		if dir, err := filepath.EvalSymlinks(s.class(name)); err == nil {
			name = filepath.Base(filepath.Dir(dir))
		}
	}
	if f := s.read(name, "loop/backing_file"); f != "" {
		return "loop device backed by " + f
	}
	m := strings.Join(strings.Fields(s.read(name, "device/vendor")+" "+s.read(name, "device/model")), " ")
	if m == "" {
		m = s.read(name, "device/name") // MMC and SD cards
	}
	return m
}

// partitions lists the partitions of the device called name: its sysfs directory's
// subdirectories that have a "partition" file.
func (s System) partitions(name string) []Partition {
	entries, err := os.ReadDir(s.class(name))
	if err != nil {
		return nil
	}
	var ps []Partition
	for _, e := range entries {
		if s.read(name, e.Name(), "partition") == "" {
			continue
		}
		sectors, _ := strconv.ParseInt(s.read(name, e.Name(), "size"), 10, 64)
		ps = append(ps, Partition{Name: e.Name(), Size: sectors * 512}) // sysfs sizes are in 512-byte sectors whatever the device's
	}
	return ps
}

// holders lists the devices stacked on the device called name (device-mapper, LVM, RAID,
// dm-crypt): /sys/class/block/NAME/holders.
func (s System) holders(name string) []string {
	entries, err := os.ReadDir(s.class(name, "holders"))
	if err != nil {
		return nil
	}
	var hs []string
	for _, e := range entries {
		hs = append(hs, e.Name())
	}
	return hs
}

// InUse reports why writing to the block device called name would destroy something the host is
// using: a filesystem mounted from it, from one of its partitions or from a device stacked on
// them (which includes the host's root), swap on any of those, or a device stacked on it at all.
// It reads mountinfo, swaps and sysfs afresh each time, and returns nil when nothing is in use.
//
// Mounts are matched by device number, and by source name for filesystems such as btrfs that
// report an anonymous device number; this sees the mounts of the caller's mount namespace only.
func (s System) InUse(name string) error {
	// The device, its partitions, and everything stacked on them, transitively.
	owner := map[string]string{} // member → the device or partition of the target it sits on
	queue := []string{name}
	owner[name] = name
	for _, p := range s.partitions(name) {
		owner[p.Name] = p.Name
		queue = append(queue, p.Name)
	}
	var reasons []string
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for _, h := range s.holders(n) {
			if n == owner[n] && n != "" {
				reasons = append(reasons, fmt.Sprintf("%s is in use by %s (device-mapper, LVM, RAID or dm-crypt on top of it)", n, h))
			}
			if _, seen := owner[h]; !seen {
				owner[h] = owner[n]
				queue = append(queue, h)
			}
		}
	}
	byDev := map[string]string{}
	for n := range owner {
		if d := s.read(n, "dev"); d != "" {
			byDev[d] = n
		}
	}
	via := func(n string) string {
		if owner[n] == n {
			return n
		}
		return fmt.Sprintf("%s (through %s)", owner[n], n)
	}
	member := func(devnum, source string) (string, bool) {
		if n, ok := byDev[devnum]; ok && devnum != "" {
			return n, true
		}
		if strings.HasPrefix(source, "/dev/") {
			if r, err := filepath.EvalSymlinks(source); err == nil {
				source = r
			}
			if _, ok := owner[filepath.Base(source)]; ok {
				return filepath.Base(source), true
			}
		}
		return "", false
	}

	mounts, err := readMountinfo(filepath.Join(s.Proc, "self/mountinfo"))
	if err != nil {
		return err
	}
	for _, m := range mounts {
		n, ok := member(m.devNum, m.source)
		switch {
		case !ok:
		case m.mountPoint == "/":
			reasons = append(reasons, fmt.Sprintf("%s holds the host's root filesystem (/)", via(n)))
		default:
			reasons = append(reasons, fmt.Sprintf("%s is mounted on %s", via(n), m.mountPoint))
		}
	}
	swaps, err := readSwaps(filepath.Join(s.Proc, "swaps"))
	if err != nil {
		return err
	}
	for _, sw := range swaps {
		if n, ok := member("", sw); ok {
			reasons = append(reasons, fmt.Sprintf("%s is in use as swap", via(n)))
		}
	}
	if len(reasons) == 0 {
		return nil
	}
	slices.Sort(reasons)
	return fmt.Errorf("%w: %s", ErrRefused, strings.Join(slices.Compact(reasons), "; "))
}

type mount struct {
	devNum, mountPoint, source string
}

// readMountinfo reads the fields of /proc/PID/mountinfo that say what is mounted where
// (proc(5)): the device number (3rd), the mount point (5th) and, after the "-" that ends the
// optional fields, the mount source.
func readMountinfo(path string) ([]mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read the mounts: %w", err)
	}
	defer f.Close()
	var ms []mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if len(fields) < 5 || sep < 6 || sep+2 >= len(fields) {
			return nil, fmt.Errorf("read the mounts: %s: malformed line %q", path, sc.Text())
		}
		ms = append(ms, mount{devNum: fields[2], mountPoint: unescape(fields[4]), source: unescape(fields[sep+2])})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read the mounts: %w", err)
	}
	return ms, nil
}

// readSwaps lists the files and devices in use as swap (/proc/swaps, after its header line).
func readSwaps(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) { // a kernel without CONFIG_SWAP
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the swap areas: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var out []string
	for _, l := range lines[1:] {
		if f := strings.Fields(l); len(f) > 0 {
			out = append(out, unescape(f[0]))
		}
	}
	return out, nil
}

// unescape undoes the octal escapes (\040 for a space) that the kernel writes in paths in
// mountinfo and swaps.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
