package qemu_test

// End-to-end tests against real QEMU (TCG here) and the test cloud image. Boots are the expensive
// part, so each booted guest proves more than one thing.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ingot-build/ingot/firmware"
	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/hypervisor/qemu"
	"github.com/ingot-build/ingot/internal/execx"
	"github.com/ingot-build/ingot/internal/testguest"
)

// start starts a machine for the rest of the test (testguest.Start).
func start(t *testing.T, d *qemu.Driver, spec hypervisor.Spec) *qemu.Machine {
	t.Helper()
	return testguest.Start(t, d, spec).(*qemu.Machine)
}

// A guest kernel panic ends the machine with an error carrying the panic line and the console
// tail. The cloud kernel (from the installer ISO) is booted directly without an initrd or a root
// disk, so it panics within seconds: a full boot to SSH proves nothing more about the reporting.
// BIOS boots to SSH through this driver in the bake tests (their recipes use firmware: bios).
func TestPanicReportedWithConsoleTail(t *testing.T) {
	t.Parallel()
	iso := testguest.InstallerISO(t)
	dir := testguest.WorkDir(t)
	kernel := filepath.Join(dir, "vmlinuz")
	if err := execx.Run(context.Background(), "xorriso", "-osirrox", "on", "-indev", iso.ISO, "-extract", "/casper/vmlinuz", kernel); err != nil {
		t.Fatal(err)
	}
	d := qemu.New(qemu.WithLogger(testguest.Logger(t)))
	m := start(t, d, hypervisor.Spec{Name: "panic", WorkDir: dir, MemoryMiB: 256, Firmware: firmware.BIOS,
		Kernel: kernel, Append: "console=ttyS0,115200n8 root=/dev/vda"})
	select {
	case <-m.Done():
	case <-time.After(3 * time.Minute):
		t.Fatal("the guest did not panic, or the machine did not report it, within 3 minutes")
	}
	var ge *hypervisor.GuestError
	if err := m.Err(); !errors.As(err, &ge) {
		t.Fatalf("Err() = %v, want a *GuestError", err)
	}
	for _, want := range []string{"panic", "Kernel panic - not syncing: VFS: Unable to mount root fs", "Call Trace"} {
		if !strings.Contains(ge.Error(), want) {
			t.Errorf("the panic error does not say %q:\n%v", want, ge)
		}
	}
	t.Logf("reported: %v", ge)
}

func hasEvent(events []hypervisor.Event, name string) bool {
	for _, e := range events {
		if e.Name == name {
			return true
		}
	}
	return false
}

// A machine that ignores the ACPI power button (here: SeaBIOS with nothing to boot, which has no
// ACPI event handling) is stopped within the timeout, and Shutdown says it had to force it.
func TestShutdownForcesAGuestThatIgnoresACPI(t *testing.T) {
	t.Parallel()
	d := qemu.New(qemu.WithShutdownTimeout(2 * time.Second))
	m := start(t, d, hypervisor.Spec{Name: "deaf", WorkDir: testguest.WorkDir(t), MemoryMiB: 64})
	began := time.Now()
	err := m.Shutdown(context.Background())
	if !errors.Is(err, hypervisor.ErrForced) {
		t.Fatalf("Shutdown = %v, want ErrForced", err)
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("Shutdown took %s with a 2 s timeout", took)
	}
	select {
	case <-m.Done():
	default:
		t.Fatal("the machine still runs after Shutdown")
	}
	if alive(m.PID()) {
		t.Errorf("QEMU pid %d still alive", m.PID())
	}
	t.Logf("Shutdown: %v", err)
}

// Eight machines started at once get eight different SSH ports, each really listening.
func TestEightMachinesNeverShareAPort(t *testing.T) {
	t.Parallel()
	d := qemu.New()
	var wg sync.WaitGroup
	addrs := make([]string, 8)
	errs := make([]error, 8)
	for i := range addrs {
		wg.Go(func() {
			m, err := d.Start(context.Background(), hypervisor.Spec{Name: fmt.Sprint("m", i), WorkDir: testguest.WorkDir(t), MemoryMiB: 64})
			if err != nil {
				errs[i] = err
				return
			}
			t.Cleanup(func() { _ = m.Kill(context.Background()) })
			addrs[i] = m.SSHAddr()
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, a := range addrs {
		if errs[i] != nil {
			t.Fatalf("machine %d: %v", i, errs[i])
		}
		if seen[a] {
			t.Errorf("port %s handed out twice: %v", a, addrs)
		}
		seen[a] = true
		host, _, _ := net.SplitHostPort(a)
		if host != "127.0.0.1" {
			t.Errorf("forward bound to %s, want loopback", a)
		}
		c, err := net.DialTimeout("tcp", a, time.Second)
		if err != nil {
			t.Errorf("machine %d: nothing listens on %s: %v", i, a, err)
			continue
		}
		c.Close()
	}
}

// QEMU dies with the process that started it, even when that process is SIGKILLed.
func TestNoOrphanWhenIngotIsKilled(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "INGOT_TEST_ORPHAN_CHILD="+testguest.WorkDir(t))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	pid := 0
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "QEMU-PID "); ok {
			pid, _ = strconv.Atoi(v)
			break
		}
	}
	go io.Copy(io.Discard, stdout)
	if pid == 0 {
		t.Fatal("the child did not start a machine")
	}
	if !alive(pid) {
		t.Fatalf("QEMU %d is not running before the kill", pid)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("QEMU %d outlived the SIGKILLed process that started it", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMain doubles as the child half of TestNoOrphanWhenIngotIsKilled: a process that starts a
// machine, says QEMU's pid, and waits to be killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv("INGOT_TEST_ORPHAN_CHILD"); dir != "" {
		mach, err := qemu.New().Start(context.Background(), hypervisor.Spec{Name: "orphan", WorkDir: dir, MemoryMiB: 64})
		if err != nil {
			fmt.Println("start:", err)
			os.Exit(1)
		}
		fmt.Printf("QEMU-PID %d\n", mach.(*qemu.Machine).PID())
		select {} // killed by the parent test
	}
	os.Exit(m.Run())
}

// alive reports whether pid runs (a zombie does not count: it is dead, only not yet reaped).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// Keys typed over QMP reach the guest: GRUB's command line on the installer ISO echoes them.
func TestSendKeysReachesTheGuest(t *testing.T) {
	t.Parallel()
	iso := testguest.InstallerISO(t)
	d := qemu.New(qemu.WithKeyInterval(50 * time.Millisecond))
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
}
