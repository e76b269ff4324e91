package bake

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/ingot-build/ingot/cloudinit"
	"github.com/ingot-build/ingot/communicator"
	"github.com/ingot-build/ingot/disk"
	"github.com/ingot-build/ingot/firmware"
	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/internal/qemuimg"
	"github.com/ingot-build/ingot/manifest"
	"github.com/ingot-build/ingot/recipes"
)

// The test step boots every output as a user gets it, in a fresh machine under the build's
// driver (so with the same ownership, console capture, panic detection and KVM-or-TCG choice as
// the build), with a new NoCloud seed: a new instance-id, a new user and key, and a new pinned
// host key, so that cloud-init runs the real first boot a user's VM will have. The output file
// itself is never written: each boot runs on a qcow2 overlay over it (over the decompressed
// image of a raw.zst or raw.xz, over the disk taken out of an OVA).
//
// A full boot runs every check; a smoke boot only watches the console until the kernel starts
// from that file, which proves the bootloader and the disk format, and is killed then: under TCG
// a full boot costs about a minute, a smoke boot seconds.

// testBoot is one boot of one output.
type testBoot struct {
	output   int    // the output's index in the build's outputs
	path     string // the output file
	format   string // as disk.Artifact names it ("" asks disk.FormatOf)
	full     bool
	firmware firmware.Kind
	// diskBytes is the size of the disk the image boots on; 0 or less than the image: its own.
	// A shrunk image booted on a bigger disk must grow to it (the grown check).
	diskBytes int64
	// device says path is a block device a raw image was flashed onto (ingot test DEVICE): the
	// image on it is smaller than the device, or was; its root filesystem must fill it (grown).
	device bool
}

func (tb testBoot) kind() string {
	if tb.full {
		return "full"
	}
	return "smoke"
}

// TestError is a failed check of a test boot: which output, under which firmware, which check,
// what it saw, and how the console ended.
type TestError struct {
	File     string // the output file's name
	Firmware string
	Boot     string // full or smoke
	Check    string
	Seen     string // what the check saw
	// Console is the boot's serial console log, and ConsoleTail its last lines.
	Console     string
	ConsoleTail string
	// Manual says how to boot the image by hand when the failing boot was kept.
	Manual string
}

func (e *TestError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "test boot of %s (%s, %s boot): check %s failed", e.File, e.Firmware, e.Boot, e.Check)
	if s := strings.TrimSpace(e.Seen); s != "" {
		fmt.Fprintf(&b, ":\n    %s", strings.ReplaceAll(s, "\n", "\n    "))
	}
	if e.ConsoleTail != "" {
		fmt.Fprintf(&b, "\nthe serial console (%s) ends with:\n    %s", e.Console, strings.ReplaceAll(strings.TrimRight(e.ConsoleTail, "\n"), "\n", "\n    "))
	}
	if e.Manual != "" {
		fmt.Fprintf(&b, "\nkept; boot it by hand: %s", e.Manual)
	}
	return b.String()
}

// tester boots outputs and checks them: the build's test step, and `ingot test`.
type tester struct {
	driver    hypervisor.Driver
	log       *slog.Logger
	dir       string // private: each boot's overlay, seed and console go in a dir of their own here
	name      string // the machines' name prefix
	arch      string // x86_64 or aarch64
	cpus      int
	memoryMiB int
	accel     hypervisor.Accel
	extraArgs []string
	checks    []recipes.Check
	// build is who the build machine was; nil when unknown (an image built elsewhere).
	build      *manifest.BuildMachine
	sshTimeout time.Duration
	// kernelWithin bounds a boot's wait for the kernel on the console (0: defaultKernelWithin).
	kernelWithin time.Duration
	// keep keeps a failing boot's dir (and says how to boot it by hand).
	keep bool
	dial func(context.Context, communicator.Config) (guestConn, error)
}

// defaultKernelWithin bounds the wait for a kernel under TCG: firmware, bootloader and kernel
// take 5 to 20 s here.
const defaultKernelWithin = 3 * time.Minute

// testUser is the test boots' own account; never the build user, whose absence they check.
func (t *tester) user() string {
	if t.build != nil && t.build.User == "ingot-test" {
		return "ingot-tester"
	}
	return "ingot-test"
}

// run makes every boot, as many at once as the host's cores allow (a full boot takes the
// machine's vCPUs, a smoke boot one), and returns each one's result, in the order of boots. The
// error joins a *TestError for each failed check.
func (t *tester) run(ctx context.Context, boots []testBoot) ([]manifest.TestBoot, error) {
	capacity := int64(max(runtime.NumCPU(), 1))
	sem := semaphore.NewWeighted(capacity)
	results := make([]manifest.TestBoot, len(boots))
	errs := make([]error, len(boots))
	var g errgroup.Group
	for i, tb := range boots {
		weight := int64(1)
		if tb.full {
			weight = min(int64(max(t.cpus, 1)), capacity)
		}
		if err := sem.Acquire(ctx, weight); err != nil {
			errs[i] = fmt.Errorf("test boot of %s: %w", filepath.Base(tb.path), err)
			break
		}
		g.Go(func() error {
			defer sem.Release(weight)
			results[i], errs[i] = t.boot(ctx, i, tb)
			return nil
		})
	}
	_ = g.Wait()
	return results, errors.Join(errs...)
}

// boot makes one test boot and runs its checks. A check that fails does not stop the ones
// after it (each result is worth having), except boots: nothing else can run on a machine that
// did not come up.
func (t *tester) boot(ctx context.Context, i int, tb testBoot) (res manifest.TestBoot, err error) {
	started := time.Now()
	res = manifest.TestBoot{Boot: tb.kind(), Firmware: string(tb.firmware)}
	file := filepath.Base(tb.path)
	log := t.log.With("output", file, "firmware", tb.firmware, "boot", tb.kind())
	dir := filepath.Join(t.dir, fmt.Sprintf("%d-%s-%s", i, file, tb.firmware))
	if err := mkdirPrivate(dir); err != nil {
		return res, fmt.Errorf("test boot of %s: %w", file, err)
	}
	var failed []error
	defer func() {
		res.Seconds = time.Since(started).Seconds()
		res.Passed = err == nil && len(failed) == 0
		if err == nil {
			err = errors.Join(failed...)
		}
		if err != nil && t.keep {
			return
		}
		if rerr := os.RemoveAll(dir); rerr != nil {
			log.Warn("removing the test boot's dir", "dir", dir, "err", rerr)
		}
	}()
	m, disk, seed, err := t.start(ctx, tb, dir, log)
	if err != nil {
		return res, fmt.Errorf("test boot of %s (%s): %w", file, tb.firmware, err)
	}
	defer func() {
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if kerr := m.machine.Kill(kctx); kerr != nil {
			log.Warn("stopping the test machine", "err", kerr)
		}
		if m.conn != nil {
			_ = m.conn.Close()
		}
	}()
	fail := func(check, seen string) {
		e := &TestError{File: file, Firmware: string(tb.firmware), Boot: tb.kind(), Check: check, Seen: seen,
			Console: m.machine.ConsolePath(), ConsoleTail: m.machine.ConsoleTail(25)}
		if t.keep {
			e.Manual = manualBoot(t.arch, t.memoryMiB, t.cpus, tb.firmware, disk, seed)
		}
		failed = append(failed, e)
	}
	record := func(c manifest.Check) {
		res.Checks = append(res.Checks, c)
		log.Info("test check", "check", c.Name, "result", c.Result, "duration", time.Duration(c.Seconds*float64(time.Second)).Round(time.Millisecond))
		if c.Result == manifest.CheckFail {
			fail(c.Name, c.Output)
		}
	}

	boots := t.boots(ctx, m, tb)
	record(boots)
	if boots.Result != manifest.CheckPass || !tb.full {
		return res, nil
	}
	for _, c := range []func(context.Context, *testMachine, testBoot) (manifest.Check, bool){
		t.cloudInit, t.freshIdentity, t.noBuildUser, t.grown,
	} {
		if r, ok := c(ctx, m, tb); ok {
			record(r)
		}
	}
	for _, c := range t.checks {
		record(t.recipeCheck(ctx, m, c))
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, nil
}

// testMachine is a running test boot: the machine and, once boots has connected, SSH to it.
type testMachine struct {
	machine  hypervisor.Machine
	conn     guestConn
	keys     *communicator.Keys
	instance string
	started  time.Time
	// grows says the disk is bigger than the image: its root filesystem must grow to it.
	grows bool
	// note says how the image was booted when not as it is (the boots check reports it).
	note string
}

// start makes the boot's disk (an overlay over the unpacked output) and seed, and starts the
// machine. It returns the disk and seed paths for a by-hand boot.
func (t *tester) start(ctx context.Context, tb testBoot, dir string, log *slog.Logger) (*testMachine, string, string, error) {
	bootable, err := disk.Unpack(ctx, tb.path, tb.format, dir)
	if err != nil {
		return nil, "", "", err
	}
	info, err := qemuimg.Info(ctx, bootable.Path, bootable.Format)
	if err != nil {
		return nil, "", "", err
	}
	overlay := filepath.Join(dir, "disk.qcow2")
	if err := qemuimg.CreateOverlay(ctx, overlay, bootable.Path, bootable.Format, max(info.VirtualSize, tb.diskBytes)); err != nil {
		return nil, "", "", err
	}
	keys, err := communicator.GenerateKeys()
	if err != nil {
		return nil, "", "", err
	}
	idb := make([]byte, 6)
	_, _ = rand.Read(idb)
	instance := "ingot-test-" + hex.EncodeToString(idb)
	seed, err := cloudinit.New(cloudinit.Config{
		InstanceID: instance,
		Hostname:   "ingot-test",
		BuildUser:  cloudinit.BuildUser{Name: t.user(), AuthorizedKeys: []string{keys.AuthorizedKey}},
		HostKeys:   []cloudinit.HostKey{{Private: keys.HostPrivatePEM, Public: keys.HostPublic}},
		Format:     cloudinit.FormatISO,
	})
	if err != nil {
		return nil, "", "", fmt.Errorf("cloud-init seed: %w", err)
	}
	seedPath := filepath.Join(dir, "seed.img")
	if err := seed.Write(ctx, seedPath); err != nil {
		return nil, "", "", err
	}
	cpus := t.cpus
	if !tb.full {
		cpus = 1 // the kernel starts as well on one, and two smoke boots then share two cores
	}
	spec := hypervisor.Spec{
		Name: t.name + "-test", WorkDir: dir, Arch: t.arch, CPUs: cpus, MemoryMiB: t.memoryMiB, Accel: t.accel, Firmware: tb.firmware,
		Disks: []hypervisor.Disk{
			{Path: overlay, Format: "qcow2", BootIndex: 1},
			{Path: seedPath, Format: "raw", ReadOnly: true},
		},
		ExtraArgs: t.extraArgs,
	}
	started := time.Now()
	note := ""
	m, err := t.driver.Start(ctx, spec)
	if errors.Is(err, hypervisor.ErrNotSupported) && bootable.Format != "qcow2" {
		// libvirt attaches no vhdx: qemu-img reads it through QEMU's own vhdx driver instead,
		// into a qcow2 that boots.
		log.Warn("the driver cannot attach the image as it is; booting a qcow2 that qemu-img read from it", "format", bootable.Format, "err", err)
		converted := filepath.Join(dir, "converted.qcow2")
		if err := qemuimg.Convert(ctx, bootable.Path, converted, qemuimg.ConvertOptions{InputFormat: bootable.Format, Format: "qcow2"}); err != nil {
			return nil, "", "", err
		}
		if err := os.Remove(overlay); err != nil {
			return nil, "", "", err
		}
		if err := qemuimg.CreateOverlay(ctx, overlay, converted, "qcow2", max(info.VirtualSize, tb.diskBytes)); err != nil {
			return nil, "", "", err
		}
		started = time.Now()
		m, err = t.driver.Start(ctx, spec)
		note = fmt.Sprintf("the driver cannot attach a %s disk: booted a qcow2 that qemu-img read from it\n", bootable.Format)
	}
	if err != nil {
		return nil, "", "", err
	}
	log.Info("test machine started", "ssh", m.SSHAddr(), "console", m.ConsolePath())
	tm := &testMachine{machine: m, keys: keys, instance: instance, started: started, grows: tb.diskBytes > info.VirtualSize || tb.device, note: note}
	return tm, overlay, seedPath, nil
}

// kernelLine is console output that only a running Linux kernel (or the system it starts)
// writes: its banner, a timestamped kernel message (images booted "quiet" print few), the EFI
// stub, systemd, or a login prompt. Not a bootloader's greeting ("Welcome to GRUB!").
var kernelLine = regexp.MustCompile(`Linux version \d|^\[\s*\d+\.\d{6}\] |EFI stub: |systemd\[1\]: |login: *$`)

// ansiEscape is a terminal control sequence, as firmware and bootloaders write to the console.
var ansiEscape = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// boots is the boots check: the console shows the kernel; for a full boot, SSH answers with the
// pinned host key and systemd reports the system running or degraded (the failed units listed).
func (t *tester) boots(ctx context.Context, m *testMachine, tb testBoot) manifest.Check {
	started := time.Now()
	c := manifest.Check{Name: "boots"}
	done := func(result, out string) manifest.Check {
		if result == manifest.CheckFail {
			if f := consoleFailures(m.machine.ConsolePath(), 10); f != "" {
				out += "\nthe console reported:\n" + f
			}
		}
		c.Result, c.Output, c.Seconds = result, tailString(out, 4096), time.Since(started).Seconds()
		return c
	}
	watchCtx, stop := context.WithCancel(ctx)
	defer stop()
	fatal := consoleWatch{path: m.machine.ConsolePath(), every: 250 * time.Millisecond, boot: true}.watch(watchCtx)
	abort := make(chan error, 1)
	go func() {
		select {
		case <-m.machine.Done():
			err := m.machine.Err()
			if err == nil {
				err = errors.New("the machine powered off")
			}
			abort <- err
		case err := <-fatal:
			abort <- err
		case <-watchCtx.Done():
		}
	}()
	within := t.kernelWithin
	if within == 0 {
		within = defaultKernelWithin
	}
	line, err := waitConsoleLine(watchCtx, m.machine.ConsolePath(), kernelLine, within, abort)
	if err != nil {
		return done(manifest.CheckFail, fmt.Sprintf("the kernel did not start: %v", err))
	}
	kernel := fmt.Sprintf("%sthe kernel started %.1f s after power-on: %s", m.note, time.Since(m.started).Seconds(), line)
	if !tb.full {
		return done(manifest.CheckPass, kernel)
	}
	conn, err := t.dial(ctx, communicator.Config{
		Addr: m.machine.SSHAddr(), User: t.user(), Keys: m.keys, Timeout: t.sshTimeout, Logger: t.log, Abort: abort,
	})
	if err != nil {
		return done(manifest.CheckFail, fmt.Sprintf("%s\nSSH did not answer as %s at %s: %v", kernel, t.user(), m.machine.SSHAddr(), err))
	}
	m.conn = conn
	out, _, err := run(ctx, conn, `state=$(systemctl is-system-running --wait); echo "$state"; systemctl --failed --no-legend --plain --no-pager`, false, 5*time.Minute)
	if err != nil {
		return done(manifest.CheckFail, fmt.Sprintf("%s\nsystemctl is-system-running: %v", kernel, err))
	}
	state, failedUnits, _ := strings.Cut(strings.TrimSpace(out), "\n")
	summary := fmt.Sprintf("%s\nSSH answered %.1f s after power-on; systemd says %s", kernel, time.Since(m.started).Seconds(), state)
	if f := strings.TrimSpace(failedUnits); f != "" {
		summary += "; failed units:\n" + f
	}
	if state != "running" && state != "degraded" {
		return done(manifest.CheckFail, summary)
	}
	return done(manifest.CheckPass, summary)
}

// cloudInit is the cloud-init check: it finished without errors, on this boot's first boot of
// its new instance-id. It reads cloud-init's result.json, which `cloud-init status` reads too,
// without starting Python (2 to 3 s under TCG); a cloud-init without it is asked the slow way.
func (t *tester) cloudInit(ctx context.Context, m *testMachine, _ testBoot) (manifest.Check, bool) {
	return t.timed("cloud-init", func() (string, string) {
		out, _, err := run(ctx, m.conn, `cat /var/lib/cloud/data/instance-id; echo ---; cat /run/cloud-init/result.json 2>/dev/null || cloud-init status --wait --long`, true, 10*time.Minute)
		if err != nil {
			return manifest.CheckFail, fmt.Sprintf("read cloud-init's result: %v\n%s", err, out)
		}
		id, result, _ := strings.Cut(out, "---\n")
		id = strings.TrimSpace(id)
		result = strings.TrimSpace(result)
		seen := "instance-id " + id
		var r struct {
			V1 *struct {
				Datasource string   `json:"datasource"`
				Errors     []string `json:"errors"`
			} `json:"v1"`
		}
		switch {
		case json.Unmarshal([]byte(result), &r) == nil && r.V1 != nil:
			seen += "; " + r.V1.Datasource
			if len(r.V1.Errors) > 0 {
				return manifest.CheckFail, seen + "\ncloud-init's errors:\n" + strings.Join(r.V1.Errors, "\n")
			}
		case !strings.Contains(result, "status: done"):
			return manifest.CheckFail, seen + "\n" + result
		}
		if id != m.instance {
			return manifest.CheckFail, seen + fmt.Sprintf("\ncloud-init did not take this boot's instance-id %s: its first boot did not run", m.instance)
		}
		return manifest.CheckPass, seen + ", finished without errors"
	}), true
}

// machineIDForm is what systemd writes to /etc/machine-id: 32 lower-case hex digits.
var machineIDForm = regexp.MustCompile(`^[0-9a-f]{32}$`)

// freshIdentity is the fresh-identity check: /etc/machine-id was made on this boot and is not
// the build machine's; none of the SSH host keys is the build machine's. Without a record of
// the build machine, "made on this boot" is what systemd logged.
func (t *tester) freshIdentity(ctx context.Context, m *testMachine, _ testBoot) (manifest.Check, bool) {
	return t.timed("fresh-identity", func() (string, string) {
		b := t.build
		if b != nil && (!b.Generalized || (slices.Contains(b.Kept, "machine-id") && slices.Contains(b.Kept, "ssh-host-keys"))) {
			return manifest.CheckSkip, "the build did not generalize the machine's identity (generalize: false, or keep: [machine-id, ssh-host-keys])"
		}
		out, _, err := run(ctx, m.conn, `cat /etc/machine-id; echo ---; cat /etc/ssh/ssh_host_*_key.pub 2>/dev/null; echo ---; journalctl -b -o cat 2>/dev/null | grep -m1 'Initializing machine ID' || true`, true, time.Minute)
		if err != nil {
			return manifest.CheckFail, fmt.Sprintf("read the identity: %v", err)
		}
		parts := strings.SplitN(out, "---\n", 3)
		for len(parts) < 3 {
			parts = append(parts, "")
		}
		id, hostKeys, journal := strings.TrimSpace(parts[0]), parts[1], strings.TrimSpace(parts[2])
		var problems []string
		keepID := b != nil && slices.Contains(b.Kept, "machine-id")
		keepKeys := b != nil && slices.Contains(b.Kept, "ssh-host-keys")
		seen := fmt.Sprintf("machine-id %s", id)
		if journal != "" {
			seen += " (" + journal + ")"
		}
		switch {
		case keepID:
		case !machineIDForm.MatchString(id):
			problems = append(problems, fmt.Sprintf("/etc/machine-id is %q, not 32 hex digits", id))
		case b != nil && b.MachineID != "" && id == b.MachineID:
			problems = append(problems, "/etc/machine-id is the build machine's")
		case (b == nil || b.MachineID == "") && journal == "":
			problems = append(problems, "systemd did not log making a new machine ID on this boot: the image carries one")
		}
		var keys []string
		for _, l := range strings.Split(strings.TrimSpace(hostKeys), "\n") {
			if f := strings.Fields(l); len(f) >= 2 {
				keys = append(keys, f[0]+" "+f[1])
			}
		}
		seen += fmt.Sprintf("; %d SSH host keys", len(keys))
		if !keepKeys {
			if len(keys) == 0 {
				problems = append(problems, "the guest has no SSH host keys")
			}
			if b != nil {
				for _, k := range keys {
					if slices.Contains(b.HostKeys, k) {
						problems = append(problems, fmt.Sprintf("the host key %s is the build machine's", strings.Fields(k)[0]))
					}
				}
			}
		}
		if len(problems) > 0 {
			return manifest.CheckFail, seen + "\n" + strings.Join(problems, "\n")
		}
		return manifest.CheckPass, seen
	}), true
}

// noBuildUser is the no-build-user check: no account, home, sudo rule or authorized key of the
// build user is left.
func (t *tester) noBuildUser(ctx context.Context, m *testMachine, _ testBoot) (manifest.Check, bool) {
	return t.timed("no-build-user", func() (string, string) {
		b := t.build
		switch {
		case b == nil || b.User == "":
			return manifest.CheckSkip, "no manifest beside the image names its build user"
		case !b.Generalized || slices.Contains(b.Kept, "build-user"):
			return manifest.CheckSkip, "the build kept its user (generalize: false, or keep: [build-user])"
		}
		blob := ""
		if f := strings.Fields(b.AuthorizedKey); len(f) >= 2 {
			blob = f[1]
		}
		u := communicator.ShellQuote(b.User)
		script := fmt.Sprintf(`u=%s; k=%s
getent passwd "$u" >/dev/null && echo "the account $u exists: $(getent passwd "$u")"
[ -e "/home/$u" ] && echo "/home/$u exists"
awk -v u="$u" '$1 == u { print "a sudo rule names it: " FILENAME; nextfile }' /etc/sudoers /etc/sudoers.d/* 2>/dev/null
[ -n "$k" ] && grep -lF -- "$k" /root/.ssh/authorized_keys* /home/*/.ssh/authorized_keys* /etc/ssh/authorized_keys* 2>/dev/null | sed 's/^/its key is in /'
true`, u, communicator.ShellQuote(blob))
		out, _, err := run(ctx, m.conn, script, true, time.Minute)
		if err != nil {
			return manifest.CheckFail, fmt.Sprintf("look for the build user: %v", err)
		}
		if s := strings.TrimSpace(out); s != "" {
			return manifest.CheckFail, "the build user " + b.User + " is still in the image:\n" + s
		}
		return manifest.CheckPass, fmt.Sprintf("no account, home, sudo rule or key of %s", b.User)
	}), true
}

// grownSlack is how far from the disk's end a grown root partition may end (the GPT's backup
// header and alignment), and grownFill how much of it the filesystem must fill (ext4 and xfs
// report their size less their own metadata).
const (
	grownSlack = 16 << 20
	grownFill  = 0.90
)

// grown is the grown check, made when the image boots on a disk bigger than itself (a shrunk
// output): the root partition reaches the disk's end and its filesystem fills it.
func (t *tester) grown(ctx context.Context, m *testMachine, _ testBoot) (manifest.Check, bool) {
	if !m.grows {
		return manifest.Check{}, false
	}
	return t.timed("grown", func() (string, string) {
		out, _, err := run(ctx, m.conn, `src=$(findmnt -no SOURCE /); pk=$(lsblk -no PKNAME "$src" | head -n1)
echo "$src $(lsblk -bdno SIZE "/dev/$pk") $(lsblk -bdno SIZE "$src") $(cat "/sys/class/block/${src##*/}/start") $(findmnt -bno SIZE /)"`, true, time.Minute)
		if err != nil {
			return manifest.CheckFail, fmt.Sprintf("measure the root filesystem: %v", err)
		}
		return grownResult(strings.TrimSpace(out))
	}), true
}

// grownResult judges the grown check's measurement: "SOURCE DISK PART START_SECTORS FS" (bytes).
func grownResult(out string) (string, string) {
	f := strings.Fields(out)
	if len(f) != 5 {
		return manifest.CheckFail, fmt.Sprintf("cannot tell the root partition and its disk apart (is root on a partition of a disk?): %q", out)
	}
	var n [4]int64
	for i := range n {
		v, err := strconv.ParseInt(f[i+1], 10, 64)
		if err != nil {
			return manifest.CheckFail, fmt.Sprintf("cannot read the root filesystem's sizes: %q", out)
		}
		n[i] = v
	}
	diskSize, part, end, fs := n[0], n[1], n[2]*512+n[1], n[3]
	seen := fmt.Sprintf("root %s: disk %s, partition %s ending %s before the disk's end, filesystem %s",
		f[0], humanBytes(diskSize), humanBytes(part), humanBytes(diskSize-end), humanBytes(fs))
	switch {
	case diskSize-end > grownSlack:
		return manifest.CheckFail, seen + "\nthe root partition was not grown to the end of the disk (is cloud-guest-utils' growpart in the image, and cloud-init's growpart module on?)"
	case float64(fs) < grownFill*float64(part):
		return manifest.CheckFail, seen + "\nthe root filesystem was not grown to fill its partition (cloud-init's resizefs module)"
	}
	return manifest.CheckPass, seen
}

// recipeCheck runs one of the recipe's tests, bounded by its timeout.
func (t *tester) recipeCheck(ctx context.Context, m *testMachine, c recipes.Check) manifest.Check {
	return t.timed(c.Name, func() (string, string) {
		out, status, err := run(ctx, m.conn, c.Run, c.Sudo, c.Timeout)
		switch {
		case err == nil:
			return manifest.CheckPass, out
		case status > 0:
			return manifest.CheckFail, fmt.Sprintf("%s\n(exit status %d)", strings.TrimRight(out, "\n"), status)
		default:
			return manifest.CheckFail, fmt.Sprintf("%s\n%v", strings.TrimRight(out, "\n"), err)
		}
	})
}

// timed runs a check and times it.
func (t *tester) timed(name string, check func() (result, output string)) manifest.Check {
	started := time.Now()
	result, out := check()
	return manifest.Check{Name: name, Result: result, Seconds: time.Since(started).Seconds(), Output: tailString(strings.TrimSpace(out), 4096)}
}

// run runs script in the guest (with sh, as root when sudo), bounded by within, and returns
// what it wrote (stdout and stderr together) and its exit status (-1 when it has none).
func run(ctx context.Context, g guestConn, script string, sudo bool, within time.Duration) (string, int, error) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var out lockedBuffer
	err := g.Run(ctx, communicator.Cmd{Command: "sh -c " + communicator.ShellQuote(script), Sudo: sudo, Stdout: &out, Stderr: &out})
	var exit *communicator.ExitError
	switch {
	case err == nil:
		return out.String(), 0, nil
	case errors.As(err, &exit):
		return out.String(), exit.Status, err
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return out.String(), -1, fmt.Errorf("did not finish within %s", within)
	default:
		return out.String(), -1, err
	}
}

// waitConsoleLine waits until a line of the console log at path matches re and returns it; it
// fails when within passes, when abort yields (the machine ended, or a fatal line), or ctx ends.
func waitConsoleLine(ctx context.Context, path string, re *regexp.Regexp, within time.Duration, abort <-chan error) (string, error) {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var off int64
	var partial []byte
	for {
		if chunk, n, err := readFrom(path, off); err == nil {
			off += n
			data := append(partial, chunk...)
			partial = nil
			for line := range bytes.Lines(data) {
				if !bytes.HasSuffix(line, []byte("\n")) {
					partial = bytes.Clone(line) // read again with what follows; a prompt ends here
				}
				if l := ansiEscape.ReplaceAll(bytes.TrimRight(line, "\r\n"), nil); re.Match(l) {
					return string(bytes.TrimSpace(l)), nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case err := <-abort:
			return "", err
		case <-deadline.C:
			return "", fmt.Errorf("nothing from a kernel on the console within %s", within)
		case <-tick.C:
		}
	}
}

// consoleFailure is systemd's line for a unit that failed ("[FAILED] Failed to mount …").
var consoleFailure = regexp.MustCompile(`\[FAILED\].*|Failed to (mount|start) .*`)

// consoleFailures returns the last n lines of the console log at path that say a unit failed
// (they scroll out of the tail an error shows), or "".
func consoleFailures(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var lines []string
	for line := range bytes.Lines(ansiEscape.ReplaceAll(data, nil)) {
		if m := consoleFailure.Find(line); m != nil {
			if l := strings.TrimSpace(string(m)); len(lines) == 0 || lines[len(lines)-1] != l {
				lines = append(lines, l)
			}
		}
	}
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// lockedBuffer is a buffer that stdout and stderr copy into at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// tailString is s, or its last n bytes after "…" when longer.
func tailString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d B", n)
	}
}

// manualBoot is a QEMU command line that boots disk (with its seed) by hand, SSH forwarded to
// 127.0.0.1:2222.
func manualBoot(arch string, memoryMiB, cpus int, fw firmware.Kind, disk, seed string) string {
	machine := "-machine q35"
	if fw != firmware.BIOS {
		machine += " -bios /usr/share/ovmf/OVMF.fd"
	}
	if arch == recipes.ArchAArch64 {
		// QEMU_EFI.fd: qemu-efi-aarch64's image for -bios (AAVMF_CODE.fd is for pflash with its vars).
		machine = "-machine virt,gic-version=max -cpu max,pauth-impdef=on -bios /usr/share/qemu-efi-aarch64/QEMU_EFI.fd"
	}
	return fmt.Sprintf("qemu-system-%s %s -m %d -smp %d -drive file=%s,if=virtio -drive file=%s,if=virtio,format=raw,readonly=on -netdev user,id=n0,hostfwd=tcp:127.0.0.1:2222-:22 -device virtio-net-pci,netdev=n0 -serial stdio -display none",
		arch, machine, memoryMiB, cpus, disk, seed)
}
