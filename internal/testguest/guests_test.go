package testguest

// End-to-end proofs that the test guests work, with plain tools only (qemu-system-x86_64, ssh,
// ssh-keygen, xorriso): if a fixture is broken, these fail here, before any ingot package is blamed.

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// guest is one QEMU process started by a test.
type guest struct {
	t       *testing.T
	dir     string
	console string
	port    int
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

func startQEMU(t *testing.T, dir string, args ...string) *guest {
	t.Helper()
	g := &guest{t: t, dir: dir, console: filepath.Join(dir, "console.log"), port: freePort(t), exited: make(chan struct{})}
	argv := append([]string{
		"-machine", "q35", "-accel", "tcg", "-cpu", "max", "-m", "1024", "-smp", "2",
		"-display", "none", "-serial", "file:" + g.console,
		"-netdev", fmt.Sprintf("user,id=n0,hostfwd=tcp:127.0.0.1:%d-:22", g.port),
		"-device", "virtio-net-pci,netdev=n0",
	}, args...)
	g.cmd = exec.Command("qemu-system-x86_64", argv...)
	var stderr bytes.Buffer
	g.cmd.Stderr = &stderr
	if err := g.cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	t.Logf("qemu-system-x86_64 %s", strings.Join(argv, " "))
	go func() {
		g.waitErr = g.cmd.Wait()
		if stderr.Len() > 0 {
			g.waitErr = fmt.Errorf("%v: %s", g.waitErr, stderr.String())
		}
		close(g.exited)
	}()
	t.Cleanup(func() {
		_ = g.cmd.Process.Kill()
		<-g.exited
		if t.Failed() {
			t.Logf("console tail:\n%s", g.consoleTail(40))
		}
	})
	return g
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (g *guest) consoleTail(n int) string {
	b, _ := os.ReadFile(g.console)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitConsole waits until the serial console shows want.
func (g *guest) waitConsole(want string, timeout time.Duration) {
	g.t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, _ := os.ReadFile(g.console); bytes.Contains(b, []byte(want)) {
			return
		}
		select {
		case <-g.exited:
			if b, _ := os.ReadFile(g.console); bytes.Contains(b, []byte(want)) {
				return
			}
			g.t.Fatalf("QEMU exited (%v) before the console showed %q", g.waitErr, want)
		case <-deadline:
			g.t.Fatalf("the console did not show %q within %s", want, timeout)
		case <-tick.C:
		}
	}
}

// waitExit waits for QEMU to exit by itself.
func (g *guest) waitExit(timeout time.Duration) {
	g.t.Helper()
	select {
	case <-g.exited:
		if g.waitErr != nil {
			g.t.Fatalf("QEMU exited with an error: %v", g.waitErr)
		}
	case <-time.After(timeout):
		g.t.Fatalf("QEMU did not exit within %s", timeout)
	}
}

// keys are a client key pair and a host key pair made with ssh-keygen.
type keys struct {
	client, clientPub, host, hostPub string
}

func makeKeys(t *testing.T, dir string) keys {
	t.Helper()
	k := keys{client: filepath.Join(dir, "client"), host: filepath.Join(dir, "host")}
	for _, f := range []string{k.client, k.host} {
		run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ingot-test", "-f", f)
	}
	k.clientPub = strings.TrimSpace(readFile(t, k.client+".pub"))
	k.hostPub = strings.TrimSpace(readFile(t, k.host+".pub"))
	return k
}

// cloudConfig is the user-data that makes a guest reachable: a user with the client key, and
// the host key we generated, so the client can verify it from the first connection.
func (k keys) cloudConfig(user string) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "users:\n  - name: %s\n    sudo: ALL=(ALL) NOPASSWD:ALL\n    shell: /bin/bash\n    lock_passwd: true\n    ssh_authorized_keys: [%q]\n", user, k.clientPub)
	sb.WriteString("ssh_keys:\n  ed25519_private: |\n")
	for _, l := range strings.Split(strings.TrimSpace(readFileNoT(k.host)), "\n") {
		sb.WriteString("    " + l + "\n")
	}
	fmt.Fprintf(&sb, "  ed25519_public: %q\n", k.hostPub)
	return sb.String()
}

func readFileNoT(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return prefix + strings.Join(lines, "\n"+prefix) + "\n"
}

func writeSeed(t *testing.T, dir, userData, metaData string) string {
	t.Helper()
	src := filepath.Join(dir, "seed")
	if err := os.MkdirAll(src, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"user-data": userData, "meta-data": metaData} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	iso := filepath.Join(dir, "seed.iso")
	run(t, "xorriso", "-as", "mkisofs", "-quiet", "-o", iso, "-V", "cidata", "-J", "-r", src)
	return iso
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func ovmf(t *testing.T) string {
	const path = "/usr/share/ovmf/OVMF.fd"
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("UEFI firmware missing (%v); install it with: apt-get install ovmf", err)
	}
	return path
}

// The cloud image is not booted here: every package that needs a guest boots it through ingot's
// own drivers (to SSH under BIOS in communicator and bake, under UEFI in hypervisor/qemu, grown
// onto a bigger disk in bake), and a broken image fails those at once. Boots are the suite's
// expensive part; each is paid once.

// The installer ISO boots from CD under BIOS and UEFI into its installer, which refuses to install
// without "autoinstall" on the kernel command line (as Ubuntu's does).
func TestInstallerISOBootsFromCD(t *testing.T) {
	t.Parallel()
	iso := InstallerISO(t)
	for _, fw := range []string{"bios", "uefi"} {
		t.Run(fw, func(t *testing.T) {
			dir := t.TempDir()
			args := []string{"-drive", "file=" + iso.ISO + ",media=cdrom,readonly=on", "-boot", "d"}
			if fw == "uefi" {
				args = append(args, "-bios", ovmf(t))
			}
			g := startQEMU(t, dir, args...)
			g.waitConsole("autoinstall not requested", 3*time.Minute)
		})
	}
}

func TestInstallerISOInstallsTheSystem(t *testing.T) {
	t.Parallel()
	iso := InstallerISO(t)
	dir := t.TempDir()
	k := makeKeys(t, dir)
	for _, f := range []string{"vmlinuz", "initrd"} {
		run(t, "xorriso", "-osirrox", "on", "-indev", iso.ISO, "-extract", "/casper/"+f, filepath.Join(dir, f))
	}
	userData := "#cloud-config\nautoinstall:\n  version: 1\n  shutdown: poweroff\n  identity:\n    hostname: installed\n  user-data:\n" +
		indent(k.cloudConfig("tester"), "    ")
	seed := writeSeed(t, dir, userData, "instance-id: i-installer\n")
	target := filepath.Join(dir, "target.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", target, "4G")

	inst := startQEMU(t, filepath.Join(dir), "-no-reboot",
		"-kernel", filepath.Join(dir, "vmlinuz"), "-initrd", filepath.Join(dir, "initrd"),
		"-append", "console=ttyS0,115200n8 autoinstall",
		"-drive", "file="+target+",if=virtio,format=qcow2",
		"-drive", "file="+seed+",if=virtio,format=raw,readonly=on",
		// The cloud kernel has no AHCI driver: the ISO goes on virtio-scsi, where it has one.
		"-device", "virtio-scsi-pci,id=scsi0",
		"-drive", "file="+iso.ISO+",if=none,id=cd0,media=cdrom,readonly=on", "-device", "scsi-cd,drive=cd0")
	inst.waitExit(5 * time.Minute)
	inst.waitConsole("installation complete", 0)

	// Look at what was installed without booting it (TestBuildFromInstallerISO in bake boots
	// it to SSH): root is partition 3 of a GPT disk, and the installer left the autoinstall
	// user-data as a local NoCloud seed, with the hostname from identity.
	raw := filepath.Join(dir, "target.raw")
	run(t, "qemu-img", "convert", "-O", "raw", target, raw)
	part := run(t, "sgdisk", "-i", "3", raw)
	var first, last int64
	for _, line := range strings.Split(part, "\n") {
		if v, ok := strings.CutPrefix(line, "First sector: "); ok {
			fmt.Sscan(v, &first)
		}
		if v, ok := strings.CutPrefix(line, "Last sector: "); ok {
			fmt.Sscan(v, &last)
		}
	}
	if first == 0 || last <= first {
		t.Fatalf("no root partition 3 on the installed disk:\n%s", part)
	}
	root := filepath.Join(dir, "root.ext4")
	run(t, "dd", "if="+raw, "of="+root, "bs=1M", "iflag=skip_bytes,count_bytes", "conv=sparse", "status=none",
		fmt.Sprintf("skip=%d", first*512), fmt.Sprintf("count=%d", (last-first+1)*512))
	seeded := run(t, "debugfs", "-R", "cat /var/lib/cloud/seed/nocloud/user-data", root)
	metaData := run(t, "debugfs", "-R", "cat /var/lib/cloud/seed/nocloud/meta-data", root)
	if !strings.Contains(seeded, strings.Fields(k.clientPub)[1]) || !strings.Contains(metaData+seeded, "installed") {
		t.Errorf("the installed seed lacks the user's key or the hostname:\nuser-data:\n%s\nmeta-data:\n%s", seeded, metaData)
	}
	run(t, "e2fsck", "-fn", root)
}
