package hypervisor

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestUntilStopped(t *testing.T) {
	errStopped := errors.New("the guest stopped")
	tests := []struct {
		name      string
		end       func(stopped chan struct{}, cancelParent, stop context.CancelFunc)
		wantCause error
	}{
		{"the machine stops", func(stopped chan struct{}, _, _ context.CancelFunc) { close(stopped) }, errStopped},
		{"the parent ends", func(_ chan struct{}, cancelParent, _ context.CancelFunc) { cancelParent() }, context.Canceled},
		{"the caller is done", func(_ chan struct{}, _, stop context.CancelFunc) { stop() }, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent, cancelParent := context.WithCancel(context.Background())
			defer cancelParent()
			stopped := make(chan struct{})
			ctx, stop := UntilStopped(parent, stopped, func() error { return errStopped })
			defer stop()
			if ctx.Err() != nil {
				t.Fatalf("ended before anything happened: %v", ctx.Err())
			}
			tt.end(stopped, cancelParent, stop)
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("the context did not end")
			}
			if got := context.Cause(ctx); !errors.Is(got, tt.wantCause) {
				t.Errorf("cause = %v, want %v", got, tt.wantCause)
			}
		})
	}
}

func TestSpecArch(t *testing.T) {
	tests := []struct {
		name        string
		spec        Spec
		wantMachine string
		wantCD      string // the CD-ROM's interface after defaults
		wantErr     string
	}{
		{"x86_64 by default", Spec{WorkDir: "/w", Disks: []Disk{{Path: "a.iso", CDROM: true}}}, "q35", "sata", ""},
		{"aarch64", Spec{WorkDir: "/w", Arch: "aarch64", Disks: []Disk{{Path: "a.iso", CDROM: true}}}, "virt", "scsi", ""},
		{"aarch64 has no SATA", Spec{WorkDir: "/w", Arch: "aarch64", Disks: []Disk{{Path: "a.iso", CDROM: true, Interface: "sata"}}}, "virt", "sata", "no SATA controller"},
		{"an unknown arch", Spec{WorkDir: "/w", Arch: "riscv64", Disks: []Disk{{Path: "a.iso", CDROM: true, Interface: "scsi"}}}, "q35", "scsi", `arch "riscv64"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.spec.WithDefaults()
			if s.Machine != tt.wantMachine || s.Disks[0].Interface != tt.wantCD {
				t.Errorf("machine %s, CD-ROM on %s; want %s, %s", s.Machine, s.Disks[0].Interface, tt.wantMachine, tt.wantCD)
			}
			err := s.Validate()
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Validate() = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
