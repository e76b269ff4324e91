package disk

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"testing"
)

// ReadWritten reads what the overlay holds, not its base; a run that straddles two written
// extents arrives contiguous; zeroed clusters are left out.
func TestReadWritten(t *testing.T) {
	dir := t.TempDir()
	base, top := filepath.Join(dir, "base.qcow2"), filepath.Join(dir, "top.qcow2")
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	run("qemu-img", "create", "-q", "-f", "qcow2", base, "64M")
	run("qemu-io", "-f", "qcow2", "-c", "write -P 0x42 0 1M", base) // the base's own bytes: not read
	run("qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", top)
	run("qemu-io", "-f", "qcow2", "-c", "write -P 0x61 4M 64k", "-c", "write -P 0x62 4160k 64k", "-c", "write -z 8M 64k", top)

	var got bytes.Buffer
	var offs []int64
	n, err := ReadWritten(context.Background(), top, "qcow2", base, func(off int64, p []byte) error {
		offs = append(offs, off)
		got.Write(p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := append(bytes.Repeat([]byte{0x61}, 64<<10), bytes.Repeat([]byte{0x62}, 64<<10)...)
	if n != int64(len(want)) || !bytes.Equal(got.Bytes(), want) || len(offs) != 1 || offs[0] != 4<<20 {
		t.Errorf("read %d bytes at %v; want the two written clusters from 4 MiB, %d bytes", n, offs, len(want))
	}

	// Without a base in the chain (an installer build's standalone disk), everything is read.
	got.Reset()
	n, err = ReadWritten(context.Background(), top, "qcow2", "", func(off int64, p []byte) error { got.Write(p); return nil })
	if err != nil || n != 1<<20+int64(len(want)) || !bytes.HasPrefix(got.Bytes(), bytes.Repeat([]byte{0x42}, 1<<20)) {
		t.Errorf("the whole chain: %d bytes, %v", n, err)
	}
}
