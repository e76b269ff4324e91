package qemu_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/hypervisor/qemu"
	"github.com/ingot-build/ingot/internal/testguest"
)

// The start and stop paths, ingot's driver against bare QEMU doing the same work in the same run:
//
//	go test ./hypervisor/qemu -run '^$' -bench . -benchtime 20x
//
// Start: process start until QMP answers (bare: exec, dial the socket until it exists, greeting,
// qmp_capabilities; ingot: the same plus the firmware lookup, console capture and reading the SSH
// forward back). Stop: from the stop request until the process is reaped (bare: QMP quit; ingot:
// Shutdown with a zero grace period, i.e. system_powerdown, then quit).

func BenchmarkStartToQMPIngot(b *testing.B) {
	d := qemu.New(qemu.WithShutdownTimeout(time.Nanosecond))
	for b.Loop() {
		m, err := d.Start(context.Background(), hypervisor.Spec{Name: "bench", WorkDir: testguest.WorkDir(b), MemoryMiB: 64, Accel: hypervisor.AccelTCG})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		_ = m.Kill(context.Background())
		b.StartTimer()
	}
}

func BenchmarkStartToQMPBare(b *testing.B) {
	for b.Loop() {
		cmd, conn := bareStart(b)
		b.StopTimer()
		conn.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		b.StartTimer()
	}
}

func BenchmarkStopIngot(b *testing.B) {
	d := qemu.New(qemu.WithShutdownTimeout(time.Nanosecond))
	for b.Loop() {
		b.StopTimer()
		m, err := d.Start(context.Background(), hypervisor.Spec{Name: "bench", WorkDir: testguest.WorkDir(b), MemoryMiB: 64, Accel: hypervisor.AccelTCG})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		_ = m.Shutdown(context.Background()) // ErrForced: SeaBIOS ignores the power button
		<-m.Done()
	}
}

func BenchmarkStopBare(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		cmd, conn := bareStart(b)
		b.StartTimer()
		_, _ = conn.Write([]byte(`{"execute":"quit"}` + "\n"))
		_ = cmd.Wait()
		conn.Close()
	}
}

func bareStart(b *testing.B) (*exec.Cmd, net.Conn) {
	sock := filepath.Join(testguest.WorkDir(b), "q.sock")
	cmd := exec.Command("qemu-system-x86_64", "-nodefaults", "-machine", "q35", "-accel", "tcg", "-m", "64M",
		"-display", "none", "-vga", "std", "-qmp", "unix:"+sock+",server=on,wait=off")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	var conn net.Conn
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			conn = c
			break
		}
		time.Sleep(time.Millisecond)
	}
	r := bufio.NewReader(conn)
	var msg map[string]any
	line, _ := r.ReadBytes('\n') // greeting
	if err := json.Unmarshal(line, &msg); err != nil {
		b.Fatalf("greeting %q: %v", line, err)
	}
	_, _ = conn.Write([]byte(`{"execute":"qmp_capabilities"}` + "\n"))
	if _, err := r.ReadBytes('\n'); err != nil {
		b.Fatal(err)
	}
	return cmd, conn
}
