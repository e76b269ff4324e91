package qemu

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/ingot-build/ingot/hypervisor"
)

// A state file that cannot be one is refused before any QEMU starts, with its name.
func TestOpenState(t *testing.T) {
	dir := t.TempDir()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	good := enc.EncodeAll([]byte("QEVM\x00\x00\x00\x03"), nil)
	for _, tc := range []struct {
		name    string
		content []byte // nil: no file
		want    string // "" for success
	}{
		{"missing", nil, "no such file"},
		{"empty", []byte{}, "is not a state file"},
		{"short", []byte{0x28, 0xb5}, "is not a state file"},
		{"qcow2", []byte("QFI\xfb\x00\x00\x00\x03"), "is not a state file"},
		{"zstd", good, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			if tc.content != nil {
				if err := os.WriteFile(path, tc.content, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			f, err := openState(path)
			if tc.want != "" {
				if err == nil {
					f.Close()
					t.Fatal("no error")
				}
				if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not say %q and name %s", err, tc.want, path)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			all, err := io.ReadAll(f) // from the start: the header check read nothing away
			if err != nil || string(all) != string(good) {
				t.Errorf("read back %q, %v", all, err)
			}
		})
	}
}

// A restore defers the migration to QMP: the state file's path never reaches the command line.
func TestArgvIncoming(t *testing.T) {
	spec := hypervisor.Spec{Name: "r", WorkDir: "/w", Incoming: "/s/state.zst"}.WithDefaults()
	argv := launch{spec: spec, accel: Accel{Name: hypervisor.AccelTCG, CPU: "max"}, qmpFD: 3}.argv()
	i := slices.Index(argv, "-incoming")
	if i < 0 || i+1 >= len(argv) || argv[i+1] != "defer" {
		t.Errorf("no -incoming defer in %q", argv)
	}
	if slices.Contains(argv, spec.Incoming) {
		t.Errorf("the state file is on the command line: %q", argv)
	}
	spec.Incoming = ""
	if slices.Contains(launch{spec: spec, qmpFD: 3}.argv(), "-incoming") {
		t.Error("-incoming without Spec.Incoming")
	}
}

// query-migrate, captured from QEMU 7.2 at the end of a checkpoint's migration.
func TestDecodeMigrationInfo(t *testing.T) {
	const captured = `{"status": "completed", "setup-time": 1, "downtime": 4, "total-time": 48, "ram": {"total": 268967936, "postcopy-requests": 0, "dirty-sync-count": 2, "multifd-bytes": 0, "pages-per-second": 0, "downtime-bytes": 1098866, "page-size": 4096, "remaining": 0, "postcopy-bytes": 0, "mbps": 207.83897872340427, "transferred": 1098866, "dirty-sync-missed-zero-copy": 0, "precopy-bytes": 0, "duplicate": 65542, "dirty-pages-rate": 0, "skipped": 0, "normal-bytes": 507904, "normal": 124}}`
	var info migrationInfo
	if err := json.Unmarshal([]byte(captured), &info); err != nil {
		t.Fatal(err)
	}
	if info.Status != "completed" || info.TotalTime != 48 || info.Downtime != 4 || info.RAM == nil || info.RAM.Transferred != 1098866 || info.RAM.Total != 268967936 {
		t.Errorf("decoded %+v", info)
	}
}
