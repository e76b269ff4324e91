package firmware

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ingot-build/ingot/internal/execx"
	"github.com/ingot-build/ingot/internal/qemuimg"
)

func TestPrepareVars(t *testing.T) {
	needTool(t, "qemu-img", "qemu-utils")
	src := t.TempDir()
	// Random contents, so that a copy that loses or moves data cannot compare equal.
	raw := filepath.Join(src, "VARS.fd")
	data := make([]byte, 192<<10)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(raw, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// A qcow2 template, as Fedora ships them.
	qcow := filepath.Join(src, "VARS.qcow2")
	if err := qemuimg.Convert(context.Background(), raw, qcow, qemuimg.ConvertOptions{InputFormat: "raw", Format: "qcow2"}); err != nil {
		t.Fatal(err)
	}
	code := Image{"/usr/share/OVMF/OVMF_CODE_4M.fd", "raw"}

	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name     string
		ctx      context.Context
		fw       Firmware
		wantName string // "" when no file is wanted
		wantErr  []string
	}{
		{name: "raw template", fw: Firmware{Device: DeviceFlash, Mode: ModeSplit, Executable: code, VarsTemplate: Image{raw, "raw"}}, wantName: "uefi-vars.qcow2"},
		{name: "qcow2 template", fw: Firmware{Device: DeviceFlash, Mode: ModeSplit, Executable: code, VarsTemplate: Image{qcow, "qcow2"}}, wantName: "uefi-vars.qcow2"},
		{name: "combined copies the executable", fw: Firmware{Device: DeviceFlash, Mode: ModeCombined, Executable: Image{raw, "raw"}}, wantName: "uefi-firmware.qcow2"},
		{name: "bios needs nothing", fw: Firmware{Device: DeviceMemory, Executable: Image{"/usr/share/seabios/bios-256k.bin", "raw"}}},
		{name: "stateless needs nothing", fw: Firmware{Device: DeviceFlash, Mode: ModeStateless, Executable: code}},
		{name: "missing template", fw: Firmware{Device: DeviceFlash, Mode: ModeSplit, Executable: code, VarsTemplate: Image{filepath.Join(src, "gone.fd"), "raw"}},
			wantErr: []string{"prepare UEFI variables from " + filepath.Join(src, "gone.fd"), "qemu-img convert"}},
		{name: "wrong format is qemu-img's error, with its stderr", fw: Firmware{Device: DeviceFlash, Mode: ModeSplit, Executable: code, VarsTemplate: Image{raw, "qcow2"}},
			wantErr: []string{"qemu-img convert -f qcow2", "Image is not in qcow2 format"}},
		{name: "template without format", fw: Firmware{Device: DeviceFlash, Mode: ModeSplit, Executable: code, VarsTemplate: Image{raw, ""}},
			wantErr: []string{"has no template path and format"}},
		{name: "canceled", ctx: canceled, fw: Firmware{Device: DeviceFlash, Mode: ModeSplit, Executable: code, VarsTemplate: Image{raw, "raw"}},
			wantErr: []string{"context canceled"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			dir := filepath.Join(t.TempDir(), "work")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			got, err := PrepareVars(ctx, tt.fw, dir)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("PrepareVars = %q, want an error", got)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q\ndoes not contain %q", err, w)
					}
				}
				if names := dirNames(t, dir); len(names) != 0 {
					t.Errorf("left behind %q", names)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantName == "" {
				if got != "" {
					t.Errorf("PrepareVars = %q, want no file", got)
				}
				if names := dirNames(t, dir); len(names) != 0 {
					t.Errorf("made %q", names)
				}
				return
			}
			if want := filepath.Join(dir, tt.wantName); got != want {
				t.Fatalf("PrepareVars = %q, want %q", got, want)
			}
			if names := dirNames(t, dir); !slices.Equal(names, []string{tt.wantName}) {
				t.Errorf("work dir holds %q, want only %s", names, tt.wantName)
			}
			// Probed, not opened as VarsFormat: the test asks what the file really is.
			info, err := qemuimg.Probe(ctx, got)
			if err != nil {
				t.Fatal(err)
			}
			if info.Format != VarsFormat || info.VirtualSize != int64(len(data)) {
				t.Errorf("qemu-img info: %+v, want format %s and virtual size %d", info, VarsFormat, len(data))
			}
			// The guest must see the template's bytes exactly.
			if err := execx.Run(ctx, "qemu-img", "compare", "-f", "raw", "-F", VarsFormat, raw, got); err != nil {
				t.Errorf("copy differs from the template: %v", err)
			}
			st, err := os.Stat(got)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("mode %v, want 0600", st.Mode().Perm())
			}
		})
	}
}

func TestPrepareVarsReplaces(t *testing.T) {
	needTool(t, "qemu-img", "qemu-utils")
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "tmpl.fd")
	if err := os.WriteFile(tmpl, make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	fw := Firmware{Device: DeviceFlash, Mode: ModeSplit, Executable: Image{"/c.fd", "raw"}, VarsTemplate: Image{tmpl, "raw"}}
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o700); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(work, "uefi-vars.qcow2")
	if err := os.WriteFile(stale, []byte("a previous attempt"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := PrepareVars(context.Background(), fw, work)
	if err != nil {
		t.Fatal(err)
	}
	if got != stale {
		t.Fatalf("PrepareVars = %q, want %q", got, stale)
	}
	if info, err := qemuimg.Probe(context.Background(), got); err != nil || info.Format != "qcow2" || info.VirtualSize != 64<<10 {
		t.Errorf("qemu-img info: %+v, %v", info, err)
	}
}

func TestPrepareVarsMissingDir(t *testing.T) {
	fw := Firmware{Device: DeviceFlash, Mode: ModeSplit, Executable: Image{"/c.fd", "raw"}, VarsTemplate: Image{"/v.fd", "raw"}}
	_, err := PrepareVars(context.Background(), fw, filepath.Join(t.TempDir(), "absent"))
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "prepare UEFI variables") {
		t.Fatalf("PrepareVars into a missing dir: %v", err)
	}
}

func TestPrepareVarsWithoutQemuImg(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no qemu-img on it
	dir := t.TempDir()
	fw := Firmware{Device: DeviceFlash, Mode: ModeSplit, Executable: Image{"/c.fd", "raw"}, VarsTemplate: Image{"/v.fd", "raw"}}
	_, err := PrepareVars(context.Background(), fw, dir)
	if err == nil || !strings.Contains(err.Error(), "apt-get install qemu-utils") {
		t.Fatalf("PrepareVars without qemu-img: %v; want the package to install", err)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("left behind %q", names)
	}
}
