package firmware

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ingot-build/ingot/internal/execx"
)

// The tests in this file use this machine's own descriptors and firmware, which `make test`
// installs (ovmf, seabios, qemu-utils, qemu-system-x86). A missing package fails them, and the
// error names it.

func TestThisMachine(t *testing.T) {
	f := NewFinder()
	descs, err := f.List()
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, d := range descs {
		listed[d.Path] = true
	}
	tests := []struct {
		kind        Kind
		machine     string
		secureBoot  bool
		requiresSMM bool
		device      Device
	}{
		{UEFI, "q35", false, false, DeviceFlash},
		{UEFI, "pc", false, false, DeviceFlash},
		{UEFISecure, "q35", true, true, DeviceFlash},
		{BIOS, "q35", false, false, DeviceMemory},
		{BIOS, "pc", false, false, DeviceMemory},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind)+"/"+tt.machine, func(t *testing.T) {
			fw, err := f.Select(tt.kind, "x86_64", tt.machine)
			if err != nil {
				t.Fatal(err) // names the package to install
			}
			t.Logf("%s on %s: %s (%s)", tt.kind, tt.machine, fw.Description, fw.Descriptor)
			if fw.SecureBoot != tt.secureBoot || fw.RequiresSMM != tt.requiresSMM || fw.Device != tt.device {
				t.Errorf("got %+v", fw)
			}
			if fw.Descriptor != "" && !listed[fw.Descriptor] {
				t.Errorf("descriptor %s is not among List's", fw.Descriptor)
			}
			for _, img := range []Image{fw.Executable, fw.VarsTemplate} {
				if img.Path == "" {
					continue
				}
				if st, err := os.Stat(img.Path); err != nil || st.Size() == 0 {
					t.Errorf("firmware file %s: %v", img.Path, err)
				}
			}
			if tt.kind == UEFISecure && !slices.Contains(fw.Features, FeatureEnrolledKeys) {
				t.Errorf("uefi-secure without enrolled keys: %q", fw.Features)
			}
			if tt.kind != BIOS && fw.VarsTemplate.Path == "" && fw.Mode == ModeSplit {
				t.Error("split UEFI without a vars template")
			}
		})
	}
}

// TestBootOVMF boots the selected OVMF builds, with their per-build qcow2 variable stores, under
// TCG and without a disk, and reads the serial console: plain UEFI must start the UEFI shell that
// OVMF carries, Secure Boot must refuse that same unsigned shell. This proves the argv, SMM, the
// pflash "secure" property and a qcow2 pflash unit on this machine's QEMU; booting guests is the
// hypervisor's tests' job.
func TestBootOVMF(t *testing.T) {
	needTool(t, "qemu-system-x86_64", "qemu-system-x86")
	needTool(t, "qemu-img", "qemu-utils")
	tests := []struct {
		kind Kind
		want string // on the serial console
	}{
		{UEFI, "Shell>"},
		{UEFISecure, `"EFI Internal Shell"` + " from Fv(7CB8BDC9-F8EB-4F34-AAEA-3EE4AF6516A1)/FvFile(7C04A583-9E3E-4F1C-AD65-E05268D0B4D1): Security Violation"},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			fw, err := NewFinder().Select(tt.kind, "x86_64", "q35")
			if err != nil {
				t.Fatal(err)
			}
			vars, err := PrepareVars(ctx, fw, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			fwArgs, err := fw.Args(vars)
			if err != nil {
				t.Fatal(err)
			}
			machine := strings.Join(append([]string{"q35", "accel=tcg"}, fw.MachineOptions()...), ",")
			argv := append([]string{"qemu-system-x86_64", "-machine", machine, "-m", "256",
				"-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot"}, fwArgs...)
			t.Logf("replay: %s", execx.Quote(argv))
			console, err := runUntil(ctx, argv, []byte(tt.want))
			if err != nil {
				t.Fatalf("%v; console:\n%s", err, tail(console, 2000))
			}
			if tt.kind == UEFI && bytes.Contains(console, []byte("Security Violation")) {
				t.Errorf("plain UEFI enforced Secure Boot; console:\n%s", tail(console, 2000))
			}
		})
	}
}

// runUntil starts argv, collects its stdout until want appears in it, then kills it. The marker
// may come without a newline ("Shell>"), so output is read in chunks, not lines.
func runUntil(ctx context.Context, argv []string, want []byte) ([]byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var console []byte
	buf := make([]byte, 4096)
	found := false
	for !found {
		n, rerr := out.Read(buf)
		console = append(console, buf[:n]...)
		found = bytes.Contains(console, want)
		if rerr != nil {
			break
		}
	}
	cmd.Process.Kill()
	werr := cmd.Wait()
	if found {
		return console, nil
	}
	return console, &execx.Error{Argv: argv, Stderr: stderr.String(),
		Err: fmt.Errorf("never printed %q (exit: %v, context: %v)", want, werr, ctx.Err())}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
