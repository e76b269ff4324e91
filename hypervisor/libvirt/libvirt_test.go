package libvirt_test

// End-to-end tests against real libvirt daemons (TCG guests here): the host's qemu:///system and a
// second daemon that stands in for a remote host (testdata/libvirt/start.sh). Boots are the
// expensive part: one guest boots to SSH; the others prove their point in seconds.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kdomanski/iso9660"

	"github.com/ingot-build/ingot/firmware"
	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/hypervisor/libvirt"
	"github.com/ingot-build/ingot/internal/execx"
	"github.com/ingot-build/ingot/internal/testguest"
)

// TestMain makes sure both daemons answer, starting them with testdata/libvirt/start.sh if they do
// not; if that fails, the tests fail: a skip would hide a missing install.
func TestMain(m *testing.M) {
	if os.Getenv("INGOT_TEST_CONNECT_AS_CHILD") != "" {
		// The child half of TestUnprivilegedUserIsToldWhatToDo, running as nobody.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := libvirt.New(ctx, libvirt.Options{})
		fmt.Println(err)
		os.Exit(0)
	}
	if err := daemonsUp(); err != nil {
		script := filepath.Join(testguest.RepoRoot(), "testdata", "libvirt", "start.sh")
		cmd := exec.Command("bash", script)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if rerr := cmd.Run(); rerr != nil {
			fmt.Fprintf(os.Stderr, "FAIL: libvirtd is not reachable (%v) and %s failed (%v).\nRun it yourself (as root): bash testdata/libvirt/start.sh\n", err, script, rerr)
			os.Exit(1)
		}
		if err := daemonsUp(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: libvirtd is still not reachable after %s: %v\n", script, err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

func daemonsUp() error {
	for _, addr := range []struct{ network, addr string }{
		{"unix", "/var/run/libvirt/libvirt-sock"},
		{"tcp", strings.TrimSuffix(strings.TrimPrefix(testguest.RemoteLibvirtURI(), "qemu+tcp://"), "/system")},
	} {
		c, err := net.DialTimeout(addr.network, addr.addr, 2*time.Second)
		if err != nil {
			return err
		}
		c.Close()
	}
	return nil
}

func newDriver(t *testing.T, opts libvirt.Options) *libvirt.Driver {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testguest.Logger(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := libvirt.New(ctx, opts)
	if err != nil {
		t.Fatalf("libvirt.New: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// start starts a machine for the rest of the test (testguest.Start).
func start(t *testing.T, d *libvirt.Driver, spec hypervisor.Spec) *libvirt.Machine {
	t.Helper()
	return testguest.Start(t, d, spec).(*libvirt.Machine)
}

func hasEvent(events []hypervisor.Event, name string) bool {
	for _, e := range events {
		if e.Name == name {
			return true
		}
	}
	return false
}

// A machine that ignores the ACPI power button (SeaBIOS with nothing to boot has no ACPI event
// handling) is stopped within the timeout, and Shutdown says it had to force it.
func TestShutdownForcesAGuestThatIgnoresACPI(t *testing.T) {
	t.Parallel()
	d := newDriver(t, libvirt.Options{ShutdownTimeout: 2 * time.Second})
	m := start(t, d, hypervisor.Spec{Name: "deaf", WorkDir: testguest.WorkDir(t), MemoryMiB: 64})
	began := time.Now()
	err := m.Shutdown(context.Background())
	if !errors.Is(err, hypervisor.ErrForced) {
		t.Fatalf("Shutdown = %v, want ErrForced", err)
	}
	if took := time.Since(began); took > 15*time.Second {
		t.Errorf("Shutdown took %s with a 2 s timeout", took)
	}
	select {
	case <-m.Done():
	default:
		t.Fatal("the machine still runs after Shutdown")
	}
	if err := m.Err(); err != nil {
		t.Errorf("Err after a forced Shutdown = %v, want nil (Shutdown asked for the end)", err)
	}
	if out, err := exec.Command("virsh", "-c", "qemu:///system", "domstate", m.Name()).CombinedOutput(); err == nil {
		t.Errorf("the domain %s still exists: %s", m.Name(), out)
	}
	t.Logf("Shutdown: %v; accel: %+v", err, m.Accel())
}

// Errors say what to do.
func TestConnectErrorsSayWhatToDo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		uri  string
		want string
	}{
		{"qemu:///system?socket=/nonexistent/libvirt-sock", "start it with: libvirtd -d"},
		{"qemu+tcp://127.0.0.1:1/system", "--listen"},
		{"qemu+tls://example.com/system", "qemu+ssh://"},
		{"qemu:///session", "system daemon"},
		{"xen:///system", "QEMU only"},
		// Another host over TCP: its loopback, where the SSH forward is, is out of reach.
		{"qemu+tcp://192.0.2.1/system", "use qemu+ssh://192.0.2.1/system"},
	} {
		t.Run(tc.uri, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := libvirt.New(ctx, libvirt.Options{URI: tc.uri})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New(%s) = %v, want an error saying %q", tc.uri, err, tc.want)
			}
		})
	}
}

// A kernel that cannot mount a root file system panics; the machine ends with a GuestError that
// carries the panic line and the console tail. (Cheap: a direct kernel boot with no disk and no
// initrd, the kernel taken from the test installer ISO; the guest has no pvpanic driver loaded,
// so this is the console watcher's catch.)
func TestKernelPanicReportedWithConsoleTail(t *testing.T) {
	t.Parallel()
	iso := testguest.InstallerISO(t)
	dir := testguest.WorkDir(t)
	kernel := extractFromISO(t, iso.ISO, "casper/vmlinuz", filepath.Join(dir, "vmlinuz"))
	d := newDriver(t, libvirt.Options{})
	m := start(t, d, hypervisor.Spec{Name: "panic", WorkDir: dir, MemoryMiB: 256, Kernel: kernel, Append: "console=ttyS0 panic=0"})
	select {
	case <-m.Done():
	case <-time.After(3 * time.Minute):
		t.Fatal("the kernel did not panic, or the machine did not report it, within 3 minutes")
	}
	var ge *hypervisor.GuestError
	if err := m.Err(); !errors.As(err, &ge) {
		t.Fatalf("Err() = %v, want a *GuestError", err)
	}
	if !strings.Contains(ge.Error(), "Kernel panic - not syncing: VFS: Unable to mount root fs") {
		t.Errorf("the panic error does not say what happened:\n%v", ge)
	}
	if !strings.Contains(ge.ConsoleTail, "Kernel panic") {
		t.Errorf("the console tail does not show the panic:\n%s", ge.ConsoleTail)
	}
	// The console was attached before the guest ran: the log starts with the kernel's first line.
	if log := diskBytes(t, m.ConsolePath()); !bytes.Contains(log[:min(len(log), 4096)], []byte("Linux version")) {
		t.Errorf("the console log does not start with the kernel's first lines:\n%.2000s", log)
	}
	if err := m.Wait(context.Background()); !errors.As(err, &ge) {
		t.Errorf("Wait = %v, want the GuestError", err)
	}
	assertNoVolumes(t, "qemu:///system", m.Name())
	t.Logf("reported: %v", ge)
}

// extractFromISO copies a file out of an ISO (names matched case-insensitively, ";1" ignored).
func extractFromISO(t *testing.T, isoPath, name, dst string) string {
	t.Helper()
	f, err := os.Open(isoPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := iso9660.OpenImage(f)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := img.RootDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range strings.Split(name, "/") {
		children, err := cur.GetChildren()
		if err != nil {
			t.Fatal(err)
		}
		var next *iso9660.File
		for _, c := range children {
			if strings.EqualFold(strings.TrimSuffix(c.Name(), ";1"), part) {
				next = c
			}
		}
		if next == nil {
			t.Fatalf("%s has no %s", isoPath, name)
		}
		cur = next
	}
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, cur.Reader()); err != nil {
		t.Fatal(err)
	}
	return dst
}

// assertNoVolumes checks that nothing of the machine is left in the daemon's pool.
func assertNoVolumes(t *testing.T, uri, domain string) {
	t.Helper()
	out, err := exec.Command("virsh", "-c", uri, "vol-list", "--pool", libvirt.DefaultPool).CombinedOutput()
	if err != nil {
		t.Errorf("virsh vol-list: %v: %s", err, out)
		return
	}
	if strings.Contains(string(out), domain) {
		t.Errorf("volumes of %s left in pool %s:\n%s", domain, libvirt.DefaultPool, out)
	}
	if out, err := exec.Command("virsh", "-c", uri, "domstate", domain).CombinedOutput(); err == nil {
		t.Errorf("the domain %s still exists: %s", domain, out)
	}
}

// The one full boot: the test cloud image under SeaBIOS, uploaded with its backing chain, reaches
// SSH (host key pinned), writes a file, and powers off cleanly through the ACPI button; the
// guest's write is then in the local overlay, and nothing is left in the pool.
func TestBIOSBootToSSHWriteAndCleanShutdown(t *testing.T) {
	t.Parallel()
	d := newDriver(t, libvirt.Options{})
	spec, access := testguest.CloudSpec(t, firmware.BIOS, "bios")
	before := sha256File(t, spec.Disks[0].Path)
	began := time.Now()
	m := start(t, d, spec)
	started := time.Since(began)
	c := access.Dial(t, m.SSHAddr(), m.Done(), 5*time.Minute)
	toSSH := time.Since(began)
	marker := fmt.Sprintf("ingot-libvirt-marker-%d", time.Now().UnixNano())
	out, err := testguest.Run(c, "test -d /sys/firmware/efi && echo uefi || echo bios; cloud-init status --wait; echo "+marker+" | sudo tee /var/tmp/marker >/dev/null && sync")
	if err != nil || !strings.Contains(out, "bios") || !strings.Contains(out, "status: done") {
		t.Fatalf("guest: %v: %s", err, out)
	}
	c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := m.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := m.Wait(ctx); err != nil {
		t.Fatalf("after a clean shutdown Wait = %v", err)
	}
	if !hasEvent(m.Events(), libvirt.EventShutdown) {
		t.Errorf("no SHUTDOWN event among %v", m.Events())
	}
	if sha256File(t, spec.Disks[0].Path) == before {
		t.Fatal("the local overlay did not change: the guest's writes did not come back")
	}
	if !fileContains(t, spec.Disks[0].Path, []byte(marker)) {
		t.Error("the marker the guest wrote is not in the local overlay")
	}
	if err := execx.Run(ctx, "qemu-img", "check", "-q", "-f", "qcow2", spec.Disks[0].Path); err != nil {
		t.Errorf("the downloaded overlay: %v", err)
	}
	assertNoVolumes(t, "qemu:///system", m.Name())
	up, down := m.Transfers()
	t.Logf("Start (upload + domain) %s; start to SSH %s; uploaded %s; downloaded %s", started.Round(time.Millisecond), toSSH.Round(time.Second), up, down)
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func fileContains(t *testing.T, path string, needle []byte) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4<<20)
	var carry []byte
	for {
		n, err := f.Read(buf)
		if n > 0 {
			chunk := append(carry, buf[:n]...)
			if bytes.Contains(chunk, needle) {
				return true
			}
			carry = append([]byte(nil), chunk[max(0, len(chunk)-len(needle)):]...)
		}
		if err != nil {
			return false
		}
	}
}

// UEFI, proven cheaply: OVMF (chosen by the firmware package, as for the QEMU driver) boots the
// cloud image's GRUB and kernel far enough for the kernel to report EFI; then the machine is
// killed, and its variable store is gone from the pool with its volumes.
func TestUEFIBootReachesTheKernel(t *testing.T) {
	t.Parallel()
	d := newDriver(t, libvirt.Options{})
	spec, _ := testguest.CloudSpec(t, firmware.UEFI, "uefi")
	m := start(t, d, spec)
	if fw := m.Firmware(); fw == nil || fw.Kind != firmware.UEFI || fw.VarsTemplate.Path == "" {
		t.Errorf("firmware %+v", fw)
	}
	if !strings.Contains(m.DomainXML(), "<nvram template=") {
		t.Errorf("no per-build variable store in the domain XML:\n%s", m.DomainXML())
	}
	testguest.WaitConsole(t, m, "efi: EFI v", 4*time.Minute)
	if err := m.Kill(context.Background()); err != nil {
		t.Fatalf("kill: %v", err)
	}
	if err := m.Err(); err != nil {
		t.Errorf("Err after Kill = %v, want nil", err)
	}
	assertNoVolumes(t, "qemu:///system", m.Name())
	if matches, _ := filepath.Glob("/var/lib/libvirt/images/ingot/" + m.Name() + "*"); len(matches) > 0 {
		t.Errorf("files of %s left in the pool directory: %v", m.Name(), matches)
	}
}

// Through the second daemon, which stands in for another host (its pool directory is not visible
// from here): a raw disk with holes and a qcow2 overlay on a qcow2 base go up, the running QEMU
// writes into both (qemu-io through the monitor: a guest write at the block layer, without booting
// a guest that could write), and after Kill the local files hold exactly the old bytes plus those
// writes, the raw one still sparse. Nothing is left on the daemon.
func TestRemoteTCPDisksRoundTrip(t *testing.T) {
	t.Parallel()
	uri := testguest.RemoteLibvirtURI()
	dir := testguest.WorkDir(t)
	raw := filepath.Join(dir, "data.raw")
	want := make([]byte, 32<<20)
	for i := range 1 << 20 {
		want[i] = 0x11
		want[8<<20+i] = 0x22
	}
	f, err := os.Create(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 8 << 20} {
		if _, err := f.WriteAt(want[off:off+1<<20], off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(int64(len(want))); err != nil {
		t.Fatal(err)
	}
	f.Close()
	base := filepath.Join(dir, "base.qcow2")
	over := filepath.Join(dir, "over.qcow2")
	ctx := context.Background()
	for _, argv := range [][]string{
		{"qemu-img", "create", "-q", "-f", "qcow2", base, "16M"},
		{"qemu-io", "-f", "qcow2", "-c", "write -q -P 0x33 0 1M", base},
		{"qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", over},
	} {
		if err := execx.Run(ctx, argv[0], argv[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	baseSum := sha256File(t, base)

	d := newDriver(t, libvirt.Options{URI: uri})
	if info := d.Info(); info.PoolDir == "" || info.LibvirtVersion == "" {
		t.Errorf("Info() = %+v", info)
	}
	m := start(t, d, hypervisor.Spec{Name: "remote", WorkDir: dir, MemoryMiB: 64, Disks: []hypervisor.Disk{
		{Path: raw, Format: "raw", Discard: true},
		{Path: over, Format: "qcow2"},
	}})
	if c, err := net.DialTimeout("tcp", m.SSHAddr(), 5*time.Second); err != nil {
		t.Errorf("the SSH forward %s is not reachable: %v", m.SSHAddr(), err)
	} else {
		c.Close()
	}
	for _, cmd := range []string{
		`qemu-io -d virtio-disk0/virtio-backend "write -P 0x5a 4M 64k"`,
		`qemu-io -d virtio-disk1/virtio-backend "write -P 0x5b 2M 64k"`,
	} {
		out, err := exec.Command("virsh", "-c", uri, "qemu-monitor-command", m.Name(), "--hmp", cmd).CombinedOutput()
		if err != nil || strings.Contains(string(out), "rror") {
			t.Fatalf("%s: %v: %s", cmd, err, out)
		}
	}
	if err := m.Kill(context.Background()); err != nil {
		t.Fatalf("kill: %v", err)
	}
	for i := range 64 << 10 {
		want[4<<20+i] = 0x5a
	}
	if got := diskBytes(t, raw); !bytes.Equal(got, want) {
		t.Errorf("the raw disk did not come back as written (%d bytes, want %d)", len(got), len(want))
	}
	var st syscall.Stat_t
	if err := syscall.Stat(raw, &st); err != nil {
		t.Fatal(err)
	}
	if alloc := st.Blocks * 512; alloc > 4<<20 {
		t.Errorf("the raw disk came back with %d bytes allocated; its data is 2 MiB + 64 KiB: holes were filled", alloc)
	}
	out, err := execx.Output(ctx, "qemu-io", "-r", "-f", "qcow2", "-c", "read -P 0x5b 2M 64k", "-c", "read -P 0x33 0 1M", "-c", "read -P 0 4M 64k", over)
	if err != nil || strings.Contains(string(out), "failed") {
		t.Errorf("the qcow2 overlay did not come back as written: %v: %s", err, out)
	}
	if sha256File(t, base) != baseSum {
		t.Error("the read-only base changed")
	}
	assertNoVolumes(t, uri, m.Name())
	up, down := m.Transfers()
	t.Logf("uploaded %s; downloaded %s", up, down)
}

func diskBytes(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Keys typed through virDomainSendKey reach the guest: GRUB's command line on the installer ISO
// (a SATA CD-ROM, uploaded like a disk) echoes them on the serial console.
func TestSendKeysReachesTheGuest(t *testing.T) {
	t.Parallel()
	iso := testguest.InstallerISO(t)
	d := newDriver(t, libvirt.Options{KeyInterval: 50 * time.Millisecond})
	m := start(t, d, hypervisor.Spec{Name: "keys", WorkDir: testguest.WorkDir(t), MemoryMiB: 256,
		Disks: []hypervisor.Disk{{Path: iso.ISO, CDROM: true, BootIndex: 1}}})
	testguest.WaitConsole(t, m, "Install Debian 12", 2*time.Minute)
	// "c" opens GRUB's command line; what is typed there is echoed on the serial console.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.SendKeys(ctx, "c<wait>echo Typed-By_Ingot:42<enter>"); err != nil {
		t.Fatal(err)
	}
	testguest.WaitConsole(t, m, "Typed-By_Ingot:42", 30*time.Second)
	up, _ := m.Transfers()
	t.Logf("uploaded %s", up)
}

// A build whose ingot was SIGKILLed leaves its volumes (libvirtd destroys the domain with the
// connection, not the volumes); the next Driver deletes those over an hour old, and nothing else.
func TestNewSweepsVolumesOfKilledBuilds(t *testing.T) {
	t.Parallel()
	newDriver(t, libvirt.Options{}) // the pool exists
	virsh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("virsh", append([]string{"-q", "-c", "qemu:///system"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("virsh %v: %v: %s", args, err, out)
		}
	}
	dir := "/var/lib/libvirt/images/" + libvirt.DefaultPool
	stale, fresh, foreign := "ingot-killed-0badc0de-d0.qcow2", "ingot-running-0badc0de-d0.qcow2", "ingot-notes-0badc0de.txt"
	for _, v := range []string{stale, fresh, foreign} {
		virsh("vol-create-as", libvirt.DefaultPool, v, "1M")
		t.Cleanup(func() {
			_ = exec.Command("virsh", "-q", "-c", "qemu:///system", "vol-delete", "--pool", libvirt.DefaultPool, v).Run()
		})
	}
	old := time.Now().Add(-2 * time.Hour)
	for _, v := range []string{stale, foreign} {
		if err := os.Chtimes(filepath.Join(dir, v), old, old); err != nil {
			t.Fatal(err)
		}
	}
	virsh("pool-refresh", libvirt.DefaultPool)
	newDriver(t, libvirt.Options{})
	out, _ := exec.Command("virsh", "-q", "-c", "qemu:///system", "vol-list", libvirt.DefaultPool).CombinedOutput()
	if strings.Contains(string(out), stale) {
		t.Errorf("the stale volume %s was kept:\n%s", stale, out)
	}
	if !strings.Contains(string(out), fresh) || !strings.Contains(string(out), foreign) {
		t.Errorf("a fresh volume or one ingot did not make was deleted:\n%s", out)
	}
}

// A pool without room for the machine's images is refused before anything is uploaded, with the
// numbers and what to do.
func TestPoolWithoutSpaceIsRefused(t *testing.T) {
	t.Parallel()
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "ingot-test", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount a small tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", mnt).Run() })
	pool := fmt.Sprintf("ingot-test-small-%d", time.Now().UnixNano())
	if out, err := exec.Command("virsh", "-q", "-c", "qemu:///system", "pool-create-as", pool, "dir", "--target", mnt).CombinedOutput(); err != nil {
		t.Fatalf("virsh pool-create-as: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("virsh", "-q", "-c", "qemu:///system", "pool-destroy", pool).Run() })
	dir := testguest.WorkDir(t)
	disk := filepath.Join(dir, "big.raw")
	if err := os.WriteFile(disk, bytes.Repeat([]byte{1}, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	d := newDriver(t, libvirt.Options{Pool: pool})
	_, err := d.Start(context.Background(), hypervisor.Spec{Name: "big", WorkDir: dir, MemoryMiB: 64, Disks: []hypervisor.Disk{{Path: disk, Format: "raw"}}})
	if err == nil || !strings.Contains(err.Error(), "MiB free") || !strings.Contains(err.Error(), "need 8 MiB") {
		t.Fatalf("Start = %v, want the pool's free space refused", err)
	}
	if entries, _ := os.ReadDir(mnt); len(entries) > 0 {
		t.Errorf("something was uploaded: %v", entries)
	}
	t.Log(err)
}

// Machines started at once get their own names, SSH ports and volumes.
func TestConcurrentMachinesDoNotCollide(t *testing.T) {
	t.Parallel()
	d := newDriver(t, libvirt.Options{})
	const n = 3
	machines := make([]*libvirt.Machine, n)
	errs := make([]error, n)
	done := make(chan int)
	for i := range n {
		go func() {
			dir := testguest.WorkDir(t)
			disk := filepath.Join(dir, "d.raw")
			errs[i] = os.WriteFile(disk, []byte("same name, same size"), 0o600)
			if errs[i] == nil {
				var m hypervisor.Machine
				m, errs[i] = d.Start(context.Background(), hypervisor.Spec{Name: "same", WorkDir: dir, MemoryMiB: 64, Disks: []hypervisor.Disk{{Path: disk, Format: "raw"}}})
				if m != nil {
					machines[i] = m.(*libvirt.Machine)
				}
			}
			done <- i
		}()
	}
	for range n {
		<-done
	}
	names, addrs := map[string]bool{}, map[string]bool{}
	for i, m := range machines {
		if errs[i] != nil {
			t.Fatalf("machine %d: %v", i, errs[i])
		}
		t.Cleanup(func() { _ = m.Kill(context.Background()) })
		if names[m.Name()] || addrs[m.SSHAddr()] {
			t.Errorf("machine %d shares a name or port: %s %s", i, m.Name(), m.SSHAddr())
		}
		names[m.Name()], addrs[m.SSHAddr()] = true, true
	}
	for _, m := range machines {
		if err := m.Kill(context.Background()); err != nil {
			t.Error(err)
		}
		assertNoVolumes(t, "qemu:///system", m.Name())
	}
}

// A user libvirt does not let in is told to join the libvirt group or use sudo. (The test binary
// runs itself as nobody; see TestMain.)
func TestUnprivilegedUserIsToldWhatToDo(t *testing.T) {
	t.Parallel()
	// The go-build directory is root's alone: run a copy nobody can reach.
	dir, err := os.MkdirTemp("", "ingot-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "libvirt.test")
	if err := os.WriteFile(bin, diskBytes(t, os.Args[0]), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "INGOT_TEST_CONNECT_AS_CHILD=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil && !strings.Contains(string(out), "connect to libvirtd") {
		t.Fatalf("run the test binary as nobody: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "libvirt group") || !strings.Contains(string(out), "sudo") {
		t.Errorf("as nobody, New said:\n%s", out)
	}
	t.Logf("as nobody: %s", out)
}

// UEFI on a remote daemon: the local firmware descriptors say nothing about that host, so
// libvirt's own autoselection chooses OVMF there (the domain XML asks for features, names no
// file); OVMF runs, and its variable store, which libvirt made in the pool, goes with the volumes.
func TestRemoteUEFIChosenByLibvirt(t *testing.T) {
	t.Parallel()
	d := newDriver(t, libvirt.Options{URI: testguest.RemoteLibvirtURI()})
	m := start(t, d, hypervisor.Spec{Name: "remote-uefi", WorkDir: testguest.WorkDir(t), MemoryMiB: 256, Firmware: firmware.UEFI})
	if !strings.Contains(m.DomainXML(), `<os firmware="efi">`) || strings.Contains(m.DomainXML(), "<loader") || m.Firmware() != nil {
		t.Errorf("the firmware was not left to the remote libvirt:\n%s", m.DomainXML())
	}
	// The NIC's option ROM is iPXE; its banner lists "EFI" among its features only in the build
	// OVMF loads (under SeaBIOS it lists PXE instead).
	testguest.WaitConsole(t, m, " EFI Menu", 3*time.Minute)
	if err := m.Kill(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertNoVolumes(t, testguest.RemoteLibvirtURI(), m.Name())
}

// NoReboot (an installer's "done" signal): a reset of the machine ends it, cleanly. The reset
// comes from outside here (virsh reset: QMP system_reset, which -no-reboot turns into an exit the
// way it does a guest's own reboot), so the guest can be SeaBIOS with nothing to boot.
func TestNoRebootEndsTheMachineOnReset(t *testing.T) {
	t.Parallel()
	d := newDriver(t, libvirt.Options{})
	m := start(t, d, hypervisor.Spec{Name: "noreboot", WorkDir: testguest.WorkDir(t), MemoryMiB: 64, NoReboot: true})
	if out, err := exec.Command("virsh", "-c", "qemu:///system", "reset", m.Name()).CombinedOutput(); err != nil {
		t.Fatalf("virsh reset: %v: %s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.Wait(ctx); err != nil {
		t.Fatalf("Wait = %v, want a clean end", err)
	}
	if !hasEvent(m.Events(), libvirt.EventShutdown) || !hasEvent(m.Events(), libvirt.EventStopped) {
		t.Errorf("events %v, want SHUTDOWN and DOMAIN_STOPPED", m.Events())
	}
}

// A domain destroyed behind the machine's back (virsh destroy) is an error that says so.
func TestDestroyedBehindItsBackIsAnError(t *testing.T) {
	t.Parallel()
	d := newDriver(t, libvirt.Options{})
	m := start(t, d, hypervisor.Spec{Name: "victim", WorkDir: testguest.WorkDir(t), MemoryMiB: 64})
	if out, err := exec.Command("virsh", "-c", "qemu:///system", "destroy", m.Name()).CombinedOutput(); err != nil {
		t.Fatalf("virsh destroy: %v: %s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var ge *hypervisor.GuestError
	if err := m.Wait(ctx); !errors.As(err, &ge) || !strings.Contains(ge.Reason, "destroyed by someone else") {
		t.Fatalf("Wait = %v, want a GuestError saying the domain was destroyed", err)
	}
	if !hasEvent(m.Events(), libvirt.EventStopped) {
		t.Errorf("events %v, want DOMAIN_STOPPED", m.Events())
	}
	assertNoVolumes(t, "qemu:///system", m.Name())
}
