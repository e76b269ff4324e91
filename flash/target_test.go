package flash

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeSystem builds a /proc and /sys with the files InUse reads, laid out as the kernel lays
// them out: a disk sda with partitions sda1 and sda2 (each also a link in class/block, as there),
// a disk sdb with dm-1 stacked on it, and a disk sdc whose partition sdc1 has dm-0 stacked on it.
func fakeSystem(t *testing.T, mountinfo, swaps string) System {
	t.Helper()
	root := t.TempDir()
	s := System{Proc: filepath.Join(root, "proc"), Sys: filepath.Join(root, "sys")}
	write := func(path, data string) {
		t.Helper()
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, path string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(root, path)); err != nil {
			t.Fatal(err)
		}
	}
	write("sys/class/block/sda/dev", "8:0\n")
	write("sys/class/block/sda/size", "2097152\n")
	write("sys/class/block/sda/device/vendor", "ATA     \n")
	write("sys/class/block/sda/device/model", "Samsung SSD 870 \n")
	write("sys/class/block/sda/sda1/dev", "8:1\n")
	write("sys/class/block/sda/sda1/partition", "1\n")
	write("sys/class/block/sda/sda1/size", "1024\n")
	write("sys/class/block/sda/sda2/dev", "8:2\n")
	write("sys/class/block/sda/sda2/partition", "2\n")
	write("sys/class/block/sda/sda2/size", "2048\n")
	write("sys/class/block/sda/holders/.keep", "")
	link("sda/sda1", "sys/class/block/sda1")
	link("sda/sda2", "sys/class/block/sda2")
	write("sys/class/block/sdc/dev", "8:32\n")
	write("sys/class/block/sdc/sdc1/dev", "8:33\n")
	write("sys/class/block/sdc/sdc1/partition", "1\n")
	write("sys/class/block/sdc/sdc1/holders/dm-0", "")
	link("sdc/sdc1", "sys/class/block/sdc1")
	write("sys/class/block/dm-0/dev", "254:0\n")
	write("sys/class/block/sdb/dev", "8:16\n")
	write("sys/class/block/sdb/holders/dm-1", "")
	write("sys/class/block/dm-1/dev", "254:1\n")
	write("proc/self/mountinfo", mountinfo)
	write("proc/swaps", "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"+swaps)
	if err := os.Remove(filepath.Join(root, "sys/class/block/sda/holders/.keep")); err != nil {
		t.Fatal(err)
	}
	return s
}

// mountLine is a line of mountinfo (proc(5)) for a filesystem from source with device number dev
// mounted on mnt.
func mountLine(dev, mnt, source string) string {
	return "36 35 " + dev + " / " + mnt + " rw,noatime master:1 - ext4 " + source + " rw,errors=continue\n"
}

func TestInUse(t *testing.T) {
	base := mountLine("0:21", "/proc", "proc") + mountLine("0:6", "/dev", "devtmpfs")
	tests := []struct {
		name      string
		device    string
		mountinfo string
		swaps     string
		want      []string // each in the error; none: no error
	}{
		{"nothing in use", "sda", base, "", nil},
		{"another disk mounted", "sda", base + mountLine("8:17", "/mnt", "/dev/sdb1"), "", nil},
		{"the disk itself mounted", "sda", base + mountLine("8:0", "/mnt/usb", "/dev/sda"), "", []string{"sda is mounted on /mnt/usb"}},
		{"a partition mounted, escaped path", "sda", base + mountLine("8:1", `/media/my\040card`, "/dev/sda1"), "", []string{"sda1 is mounted on /media/my card"}},
		{"root on a partition", "sda", mountLine("8:1", "/", "/dev/sda1") + base, "", []string{"sda1 holds the host's root filesystem (/)"}},
		{"root on device-mapper over a partition", "sdc", mountLine("254:0", "/", "/dev/mapper/vg-root") + base, "",
			[]string{"sdc1 (through dm-0) holds the host's root filesystem (/)", "sdc1 is in use by dm-0"}},
		{"btrfs: anonymous device number, matched by source", "sda", base + mountLine("0:45", "/data", "/dev/sda1"), "", []string{"sda1 is mounted on /data"}},
		{"swap on a partition", "sda", base, "/dev/sda2                               partition\t1048572\t\t0\t\t-2\n", []string{"sda2 is in use as swap"}},
		{"swap on another disk", "sda", base, "/dev/sdb1                               partition\t1048572\t\t0\t\t-2\n", nil},
		{"held by device-mapper, nothing mounted", "sdb", base, "", []string{"sdb is in use by dm-1"}},
		{"a partition as the target, its disk's other partition mounted", "sda1", base + mountLine("8:2", "/srv", "/dev/sda2"), "", nil},
		{"a partition as the target, mounted", "sda1", base + mountLine("8:1", "/srv", "/dev/sda1"), "", []string{"sda1 is mounted on /srv"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := fakeSystem(t, tt.mountinfo, tt.swaps).InUse(tt.device)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("InUse(%s) = %v, want nil", tt.device, err)
				}
				return
			}
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("InUse(%s) = %v, want ErrRefused", tt.device, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("InUse(%s) = %q, want it to say %q", tt.device, err, w)
				}
			}
		})
	}
}

func TestInUseBadMountinfo(t *testing.T) {
	s := fakeSystem(t, "36 35 8:1 /\n", "")
	if err := s.InUse("sda"); err == nil || !strings.Contains(err.Error(), "malformed") {
		t.Errorf("InUse with a broken mountinfo = %v, want a malformed-line error", err)
	}
}

func TestModelAndPartitions(t *testing.T) {
	s := fakeSystem(t, "", "")
	if got, want := s.model("sda"), "ATA Samsung SSD 870"; got != want {
		t.Errorf("model(sda) = %q, want %q", got, want)
	}
	if got, want := s.model("sda1"), "ATA Samsung SSD 870"; got != want {
		t.Errorf("model(sda1) = %q, want the disk's %q", got, want)
	}
	ps := s.partitions("sda")
	if len(ps) != 2 || ps[0] != (Partition{"sda1", 512 << 10}) || ps[1] != (Partition{"sda2", 1 << 20}) {
		t.Errorf("partitions(sda) = %v", ps)
	}
	tg := &Target{Path: "/dev/sda", Block: true, Name: "sda", Size: 1 << 30, Model: s.model("sda"), Partitions: ps}
	if got, want := tg.Describe(), "/dev/sda (sda): ATA Samsung SSD 870, 1.0 GiB, 2 partition(s): sda1 (512.0 KiB), sda2 (1.0 MiB)"; got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", `/x\011y\012`: "/x\ty\n", `\134`: `\`, `/plain`: "/plain", `/end\04`: `/end\04`} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}
