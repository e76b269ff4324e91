package bake

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFatalCloudInitLine(t *testing.T) {
	tests := []struct {
		name, console, want string
	}{
		{"clean boot", "[  OK  ] Started cloud-init.service\n[   30.1] cloud-init[512]: Cloud-init v. 22.4.2 finished at Sun, 22 Nov 2026 10:00:00 +0000. Datasource DataSourceNoCloud [seed=/dev/vdb][dsmode=net].  Up 30.10 seconds\n", ""},
		{"recoverable warning", "[   12.0] cloud-init[400]: 2026-11-22 10:00:00,000 - cc_growpart.py[WARNING]: No free disk space to grow\n", ""},
		{"module failed", "[   20.5] cloud-init[433]: 2026-11-22 10:00:00,000 - modules.py[WARNING]: Running module bootcmd (<module 'cloudinit.config.cc_bootcmd' from '/usr/lib/python3/dist-packages/cloudinit/config/cc_bootcmd.py'>) failed\n", "the cloud-init module bootcmd failed"},
		{"no seed", "[    9.9] cloud-init[300]: 2026-11-22 10:00:00,000 - main.py[WARNING]: No instance datasource found! Likely bad things to come!\n", "found no usable seed"},
		{"bad yaml", "[    9.9] cloud-init[300]: 2026-11-22 10:00:00,000 - util.py[WARNING]: Failed loading yaml blob. Invalid format at line 2 column 1\n", "could not read the user-data"},
		{"other program", "[    9.9] myapp[300]: Running module x (y) failed\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fatalCloudInitLine([]byte(tt.console))
			if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
				t.Fatalf("fatalCloudInitLine = %q, want one containing %q", got, tt.want)
			}
		})
	}
}

// The watch sees a line that arrives in pieces, after the watch started, as QEMU writes it.
func TestConsoleWatchFollowsTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	if err := os.WriteFile(path, []byte("GRUB loading...\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	got := consoleWatch{path: path, every: 10 * time.Millisecond}.watch(ctx)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, piece := range []string{"[ 20.5] cloud-init[433]: 2026-11-22 - modules.py[WARNING]: Running mod", "ule users_groups (<module>) failed", "\n"} {
		time.Sleep(30 * time.Millisecond)
		if _, err := f.WriteString(piece); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-got:
		if !strings.Contains(err.Error(), "users_groups failed") {
			t.Fatalf("watch reported %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the watch did not report the failed module")
	}
}
