package firmware

import (
	"slices"
	"strings"
	"testing"

	"github.com/ingot-build/ingot/internal/execx"
)

func TestArgs(t *testing.T) {
	debian := Firmware{
		Kind: UEFI, Device: DeviceFlash, Mode: ModeSplit,
		Executable:   Image{"/usr/share/OVMF/OVMF_CODE_4M.fd", "raw"},
		VarsTemplate: Image{"/usr/share/OVMF/OVMF_VARS_4M.fd", "raw"},
		Features:     []string{"acpi-s3", "amd-sev", "verbose-dynamic"},
	}
	secure := Firmware{
		Kind: UEFISecure, Device: DeviceFlash, Mode: ModeSplit,
		Executable:   Image{"/usr/share/OVMF/OVMF_CODE_4M.ms.fd", "raw"},
		VarsTemplate: Image{"/usr/share/OVMF/OVMF_VARS_4M.ms.fd", "raw"},
		Features:     []string{"acpi-s3", "amd-sev", "enrolled-keys", "requires-smm", "secure-boot", "verbose-dynamic"},
		SecureBoot:   true, RequiresSMM: true,
	}
	// SMM without Secure Boot: SMM is still needed, the pflash "secure" property is not.
	smmOnly := debian
	smmOnly.Features = []string{"requires-smm"}
	smmOnly.RequiresSMM = true
	fedora := debian
	fedora.Executable = Image{"/usr/share/edk2/ovmf/OVMF_CODE_4M.qcow2", "qcow2"}
	combined := Firmware{Kind: UEFI, Device: DeviceFlash, Mode: ModeCombined, Executable: Image{"/opt/ovmf/OVMF.fd", "raw"}}
	stateless := Firmware{Kind: UEFI, Device: DeviceFlash, Mode: ModeStateless, Executable: Image{"/fw/OVMF.inteltdx.fd", "raw"}}
	bios := Firmware{Kind: BIOS, Device: DeviceMemory, Executable: Image{"/usr/share/seabios/bios-256k.bin", "raw"}}
	unknownMode := debian
	unknownMode.Mode = "hybrid"
	kernel := Firmware{Kind: UEFI, Device: DeviceKernel, Executable: Image{"/fw/fw_dynamic.bin", "raw"}}

	tests := []struct {
		name      string
		fw        Firmware
		vars      string
		want      []string
		wantMOpts []string
		needsVars bool
		wantErr   string
	}{
		{name: "uefi split", fw: debian, vars: "/work/b1/uefi-vars.qcow2", needsVars: true, want: []string{
			"-drive", "if=pflash,format=raw,unit=0,file=/usr/share/OVMF/OVMF_CODE_4M.fd,readonly=on",
			"-drive", "if=pflash,format=qcow2,unit=1,file=/work/b1/uefi-vars.qcow2",
		}},
		{name: "uefi-secure split", fw: secure, vars: "/work/b1/uefi-vars.qcow2", needsVars: true, wantMOpts: []string{"smm=on"}, want: []string{
			"-drive", "if=pflash,format=raw,unit=0,file=/usr/share/OVMF/OVMF_CODE_4M.ms.fd,readonly=on",
			"-drive", "if=pflash,format=qcow2,unit=1,file=/work/b1/uefi-vars.qcow2",
			"-global", "driver=cfi.pflash01,property=secure,value=on",
		}},
		{name: "smm without secure boot", fw: smmOnly, vars: "/v.qcow2", needsVars: true, wantMOpts: []string{"smm=on"}, want: []string{
			"-drive", "if=pflash,format=raw,unit=0,file=/usr/share/OVMF/OVMF_CODE_4M.fd,readonly=on",
			"-drive", "if=pflash,format=qcow2,unit=1,file=/v.qcow2",
		}},
		{name: "qcow2 code keeps its format", fw: fedora, vars: "/v.qcow2", needsVars: true, want: []string{
			"-drive", "if=pflash,format=qcow2,unit=0,file=/usr/share/edk2/ovmf/OVMF_CODE_4M.qcow2,readonly=on",
			"-drive", "if=pflash,format=qcow2,unit=1,file=/v.qcow2",
		}},
		{name: "commas in paths are doubled", fw: debian, vars: "/tmp/a,b/uefi-vars.qcow2", needsVars: true, want: []string{
			"-drive", "if=pflash,format=raw,unit=0,file=/usr/share/OVMF/OVMF_CODE_4M.fd,readonly=on",
			"-drive", "if=pflash,format=qcow2,unit=1,file=/tmp/a,,b/uefi-vars.qcow2",
		}},
		{name: "spaces need no quoting: argv is no shell line", fw: debian, vars: "/tmp/a b/v.qcow2", needsVars: true, want: []string{
			"-drive", "if=pflash,format=raw,unit=0,file=/usr/share/OVMF/OVMF_CODE_4M.fd,readonly=on",
			"-drive", "if=pflash,format=qcow2,unit=1,file=/tmp/a b/v.qcow2",
		}},
		{name: "combined: one writable unit, the per-build copy", fw: combined, vars: "/work/b1/uefi-firmware.qcow2", needsVars: true, want: []string{
			"-drive", "if=pflash,format=qcow2,unit=0,file=/work/b1/uefi-firmware.qcow2",
		}},
		{name: "stateless: shared read-only code", fw: stateless, vars: "", want: []string{
			"-drive", "if=pflash,format=raw,unit=0,file=/fw/OVMF.inteltdx.fd,readonly=on",
		}},
		{name: "bios", fw: bios, vars: "", want: []string{"-bios", "/usr/share/seabios/bios-256k.bin"}, wantMOpts: []string{"graphics=off"}},
		{name: "bios ignores vars", fw: bios, vars: "/v.qcow2", want: []string{"-bios", "/usr/share/seabios/bios-256k.bin"}, wantMOpts: []string{"graphics=off"}},
		{name: "split without vars", fw: debian, needsVars: true, wantErr: "split firmware needs its per-build copy"},
		{name: "combined without vars", fw: combined, needsVars: true, wantErr: "combined firmware needs its per-build copy"},
		{name: "zero firmware", fw: Firmware{}, wantErr: "no firmware executable"},
		{name: "kernel mapping", fw: kernel, wantErr: `cannot load firmware mapped as "kernel"`},
		{name: "unknown mode", fw: unknownMode, vars: "/v.qcow2", wantErr: `unknown flash mode "hybrid"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.fw.NeedsVars(); got != tt.needsVars {
				t.Errorf("NeedsVars() = %v, want %v", got, tt.needsVars)
			}
			if got := tt.fw.MachineOptions(); !slices.Equal(got, tt.wantMOpts) {
				t.Errorf("MachineOptions() = %q, want %q", got, tt.wantMOpts)
			}
			got, err := tt.fw.Args(tt.vars)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Args = %q, %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Args:\n got %s\nwant %s", execx.Quote(got), execx.Quote(tt.want))
			}
		})
	}
}
