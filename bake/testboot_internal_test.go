package bake

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ingot-build/ingot/firmware"
	"github.com/ingot-build/ingot/manifest"
	"github.com/ingot-build/ingot/recipes"
)

func TestGrownResult(t *testing.T) {
	tests := []struct {
		name, out, result, says string
	}{
		{"grown", "/dev/vda3 4294967296 4227858432 131072 4120000000", manifest.CheckPass, "partition 3.94 GiB"},
		{"partition not grown", "/dev/vda3 4294967296 1073741824 131072 1000000000", manifest.CheckFail, "not grown to the end of the disk"},
		{"filesystem not grown", "/dev/vda3 4294967296 4227858432 131072 1000000000", manifest.CheckFail, "filesystem was not grown"},
		{"root on LVM", "/dev/mapper/vg-root  4294967296 1 2", manifest.CheckFail, "cannot tell"},
		{"garbage", "/dev/vda3 4294967296 x 131072 4120000000", manifest.CheckFail, "cannot read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			result, out := grownResult(tt.out)
			if result != tt.result || !strings.Contains(out, tt.says) {
				t.Errorf("grownResult(%q) = %s, %q; want %s saying %q", tt.out, result, out, tt.result, tt.says)
			}
		})
	}
}

func TestFatalBootLine(t *testing.T) {
	tests := []struct{ console, want string }{
		{"Booting from Hard Disk...\nBoot failed: not a bootable disk\n", "the firmware found nothing to boot"},
		{"BdsDxe: No bootable option or device was found.\n", "the firmware found nothing to boot"},
		{"error: unknown filesystem.\ngrub rescue> ", "the bootloader could not load the system"},
		{"[FAILED] Failed to mount mnt-bad.mount\nYou are in emergency mode. After logging in, type \"journalctl -xb\"\n", "emergency mode"},
		{"Cannot open access to console, the root account is locked.\n", "emergency mode"},
		{"[    1.0] Linux version 6.1.0\n[  OK  ] Reached target multi-user.target\n", ""},
	}
	for _, tt := range tests {
		got := fatalBootLine([]byte(tt.console))
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("fatalBootLine(%q) = %q, want %q", tt.console, got, tt.want)
		}
	}
}

// The wait for the kernel takes its banner, or any timestamped kernel line of a quiet boot, but
// not a bootloader's greeting; it ends at once when the machine does.
func TestWaitConsoleLine(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, console, want string
		abort               error
	}{
		{"banner", "\x1b[2J\x1b[01;01HWelcome to GRUB!\n[    0.000000] Linux version 6.1.0-50-cloud-amd64 (gcc)\n", "[    0.000000] Linux version 6.1.0-50-cloud-amd64 (gcc)", nil},
		{"quiet boot", "Welcome to GRUB!\n[    2.345678] EXT4-fs (vda1): mounted\n", "[    2.345678] EXT4-fs (vda1): mounted", nil},
		{"login prompt", "Debian GNU/Linux 12 host ttyS0\n\nhost login: ", "host login:", nil},
		{"grub only", "Welcome to GRUB!\n", "", errors.New("the machine powered off")},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, string(rune('a'+i)))
			if err := os.WriteFile(p, []byte(tt.console), 0o600); err != nil {
				t.Fatal(err)
			}
			abort := make(chan error, 1)
			if tt.abort != nil {
				abort <- tt.abort
			}
			got, err := waitConsoleLine(context.Background(), p, kernelLine, time.Minute, abort)
			if got != tt.want || (tt.abort != nil) != (err != nil) {
				t.Errorf("waitConsoleLine = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// The plan boots every output but a bmap, under each test firmware: the first fully and the
// others to the kernel, each on a disk of the build's size; all, or none, as test.boot says.
func TestTestPlan(t *testing.T) {
	outputs := []manifest.File{{File: "a-minimal.raw", Format: "raw"}, {File: "a.qcow2", Format: "qcow2"}, {File: "a.raw.zst", Format: "raw.zst"}, {File: "a.raw.bmap", Format: "bmap"}}
	tests := []struct {
		mode string
		fws  []string
		want []string
	}{
		{"", nil, []string{"a-minimal.raw/bios/full", "a.qcow2/bios/smoke", "a.raw.zst/bios/smoke"}},
		{recipes.TestBootAll, []string{"bios", "uefi"}, []string{"a-minimal.raw/bios/full", "a-minimal.raw/uefi/full", "a.qcow2/bios/full", "a.qcow2/uefi/full", "a.raw.zst/bios/full", "a.raw.zst/uefi/full"}},
		{recipes.TestBootFirst, []string{"uefi"}, []string{"a-minimal.raw/uefi/full", "a.qcow2/uefi/smoke", "a.raw.zst/uefi/smoke"}},
		{recipes.TestBootNone, nil, nil},
	}
	for _, tt := range tests {
		b := &build{r: &recipes.Recipe{Test: recipes.Test{Boot: tt.mode, Firmware: tt.fws}}, fwKind: firmware.BIOS, outputs: outputs, diskSize: 4 << 30, opts: Options{OutDir: "out"}, id: "x"}
		boots, err := b.testPlan()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, tb := range boots {
			got = append(got, filepath.Base(tb.path)+"/"+string(tb.firmware)+"/"+tb.kind())
			if tb.diskBytes != 4<<30 || outputs[tb.output].File != filepath.Base(tb.path) {
				t.Errorf("%s: boot %+v", tt.mode, tb)
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("test.boot %q firmware %v: plan %v, want %v", tt.mode, tt.fws, got, tt.want)
		}
	}
}

// A failed boot's report lists the units the console said failed, which have scrolled out of
// the tail by the time systemd gives up.
func TestConsoleFailures(t *testing.T) {
	p := filepath.Join(t.TempDir(), "console.log")
	console := "[  OK  ] Started a.service\n\x1b[0;1;31mFAILED\x1b[0m] nothing\n[\x1b[0;1;31mFAILED\x1b[0m] Failed to mount \x1b[0;1;39mmnt-bad.mount\x1b[0m - /mnt/bad.\n" +
		"[DEPEND] Dependency failed for local-fs.target\n[  OK  ] Reached target emergency.target\n"
	if err := os.WriteFile(p, []byte(console), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, want := consoleFailures(p, 10), "[FAILED] Failed to mount mnt-bad.mount - /mnt/bad."; got != want {
		t.Errorf("consoleFailures = %q, want %q", got, want)
	}
	if got := consoleFailures(filepath.Join(t.TempDir(), "none"), 10); got != "" {
		t.Errorf("consoleFailures of no file = %q", got)
	}
}
