package libvirt

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/libvirttest"
	"github.com/digitalocean/go-libvirt/socket/dialers"

	"github.com/ingot-build/ingot/hypervisor"
)

func TestParseURI(t *testing.T) {
	for _, tc := range []struct {
		uri                                     string
		transport, host, port, user, socket, nm string
		local, loopback                         bool
		err                                     string
	}{
		{uri: "qemu:///system", transport: "unix", socket: defaultSocket, nm: "qemu:///system", local: true, loopback: true},
		{uri: "qemu+unix:///system?socket=/run/x.sock", transport: "unix", socket: "/run/x.sock", nm: "qemu:///system", local: true, loopback: true},
		{uri: "qemu+tcp://127.0.0.1:16599/system", transport: "tcp", host: "127.0.0.1", port: "16599", nm: "qemu:///system", loopback: true},
		{uri: "qemu+tcp://build.example/system", transport: "tcp", host: "build.example", port: "16509", nm: "qemu:///system"},
		{uri: "qemu+ssh://ci@build.example:2222/system", transport: "ssh", host: "build.example", port: "2222", user: "ci", socket: defaultSocket, nm: "qemu:///system"},
		{uri: "qemu+ssh://[::1]/system?socket=/var/run/libvirt/virtqemud-sock", transport: "ssh", host: "::1", port: "22", socket: "/var/run/libvirt/virtqemud-sock", nm: "qemu:///system", loopback: true},
		{uri: "qemu+ssh://h/system?no_verify=1", err: "verifies the host key"},
		{uri: "qemu+tls://h/system", err: "qemu+ssh://"},
		{uri: "qemu://h/system", err: "TLS"},
		{uri: "qemu:///session", err: "system daemon"},
		{uri: "lxc:///system", err: "QEMU only"},
		{uri: "qemu+tcp:///system", err: "no host"},
		{uri: "qemu+fd:///system", err: "unknown transport"},
	} {
		t.Run(tc.uri, func(t *testing.T) {
			got, err := parseURI(tc.uri)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("parseURI = %+v, %v; want an error saying %q", got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.transport != tc.transport || got.host != tc.host || got.port != tc.port || got.user != tc.user ||
				got.socket != tc.socket || string(got.name) != tc.nm || got.local() != tc.local || got.loopback() != tc.loopback {
				t.Errorf("parseURI = %+v (local %v, loopback %v)", got, got.local(), got.loopback())
			}
		})
	}
}

func TestLifecycleEvents(t *testing.T) {
	for _, tc := range []struct {
		event, detail int32
		name, reason  string
		ok            bool
	}{
		{int32(golibvirt.DomainEventShutdown), 1, EventShutdown, "guest", true},
		{int32(golibvirt.DomainEventShutdown), 2, EventShutdown, "host", true},
		{int32(golibvirt.DomainEventCrashed), 0, EventGuestPanicked, "panicked", true},
		{int32(golibvirt.DomainEventSuspended), 0, EventStop, "paused", true},
		{int32(golibvirt.DomainEventResumed), 0, EventResume, "unpaused", true},
		{int32(golibvirt.DomainEventStopped), 0, EventStopped, "shutdown", true},
		{int32(golibvirt.DomainEventStopped), 1, EventStopped, "destroyed", true},
		{int32(golibvirt.DomainEventStarted), 0, EventStarted, "booted", true},
		{int32(golibvirt.DomainEventPmsuspended), 0, EventSuspend, "memory", true},
		{int32(golibvirt.DomainEventStopped), 42, EventStopped, "42", true},
		{int32(golibvirt.DomainEventDefined), 0, "", "", false},
		{int32(golibvirt.DomainEventUndefined), 0, "", "", false},
	} {
		name, data, ok := lifecycleEvent(tc.event, tc.detail)
		if ok != tc.ok || name != tc.name || ok && data["reason"] != tc.reason {
			t.Errorf("lifecycleEvent(%d, %d) = %s %v %v; want %s %s %v", tc.event, tc.detail, name, data, ok, tc.name, tc.reason, tc.ok)
		}
	}
}

func TestStoppedError(t *testing.T) {
	for detail, want := range map[golibvirt.DomainEventStoppedDetailType]string{
		golibvirt.DomainEventStoppedShutdown:  "",
		golibvirt.DomainEventStoppedDestroyed: "destroyed by someone else",
		golibvirt.DomainEventStoppedCrashed:   "QEMU crashed",
		golibvirt.DomainEventStoppedFailed:    "failed",
		golibvirt.DomainEventStoppedSaved:     "(saved)",
	} {
		got := stoppedError(int32(detail))
		if want == "" && got != "" || want != "" && !strings.Contains(got, want) {
			t.Errorf("stoppedError(%d) = %q, want %q", detail, got, want)
		}
	}
}

// Every key a boot command can name has a Linux keycode; a few are checked against
// linux/input-event-codes.h.
func TestEveryParsedKeyHasAKeycode(t *testing.T) {
	var seq strings.Builder
	for c := ' '; c <= '~'; c++ {
		if c != '<' {
			seq.WriteRune(c)
		}
	}
	seq.WriteString("\n\t<bs><del><enter><return><esc><tab><spacebar><insert><home><end><pageup><pagedown><up><down><left><right>")
	seq.WriteString("<leftAltOn><leftAltOff><rightAlt><leftCtrl><rightCtrl><leftShift><rightShift><leftSuper><rightSuper><menu>")
	for i := 1; i <= 12; i++ {
		seq.WriteString("<f" + string(rune('0'+i/10)) + string(rune('0'+i%10)) + ">")
	}
	actions, err := hypervisor.ParseKeys(strings.ReplaceAll(seq.String(), "<f0", "<f"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range actions {
		if a.Kind == hypervisor.Wait {
			continue
		}
		if _, ok := linuxKeycodes[a.Key]; !ok {
			t.Errorf("no keycode for qcode %q", a.Key)
		}
	}
	for k, want := range map[string]uint32{"esc": 1, "1": 2, "0": 11, "q": 16, "a": 30, "z": 44, "m": 50, "ret": 28, "spc": 57, "f1": 59, "f10": 68, "f11": 87, "f12": 88, "shift": 42, "ctrl": 29, "alt": 56, "up": 103, "delete": 111, "meta_l": 125} {
		if got := linuxKeycodes[k]; got != want {
			t.Errorf("keycode of %q = %d, want %d", k, got, want)
		}
	}
}

func TestDataExtentsAndSparseWriter(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sparse")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data := bytes.Repeat([]byte{7}, 64<<10)
	for _, off := range []int64{0, 128 << 10, 8 << 20, 8<<20 + 256<<10} {
		if _, err := f.WriteAt(data, off); err != nil {
			t.Fatal(err)
		}
	}
	size := int64(32 << 20)
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	extents, err := dataExtents(f, size, 0)
	if err != nil {
		t.Fatal(err)
	}
	var data0 int64
	for _, e := range extents {
		data0 += e.len
	}
	if len(extents) < 2 || data0 >= size/4 {
		t.Errorf("extents %v: the holes were not found (is %s on a filesystem with SEEK_HOLE?)", extents, dir)
	}
	merged, _ := dataExtents(f, size, uploadGap)
	if len(merged) != 2 || merged[0].off != 0 || merged[1].off != 8<<20 || merged[1].len != 256<<10+64<<10 {
		t.Errorf("merged extents %v, want [0, 192K) and [8M, 8M+320K)", merged)
	}

	// The sparse writer writes the same bytes and leaves zeros as holes.
	out, err := os.Create(filepath.Join(dir, "copy"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	w := &sparseWriter{f: out}
	src, _ := os.ReadFile(path)
	for p := src; len(p) > 0; {
		n := min(len(p), 262120) // libvirt's stream packets are not block-aligned
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := out.Truncate(w.off); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out.Name())
	if !bytes.Equal(got, src) {
		t.Error("the sparse writer's copy differs")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(out.Name(), &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 > 1<<20 {
		t.Errorf("the copy has %d bytes allocated for 256 KiB of data", st.Blocks*512)
	}
}

// Captured from QEMU 7.2 under libvirt 9.0 (HMP through virDomainQemuMonitorCommand).
func TestParseForward(t *testing.T) {
	info := "net0: index=0,type=nic,model=virtio-net-pci,macaddr=52:54:00:38:89:e4\r\n \\ hostnet0: index=0,type=user,net=10.0.2.0,restrict=off\r\n"
	if m := userNetdev.FindStringSubmatch(info); m == nil || m[1] != "hostnet0" {
		t.Errorf("netdev %q", m)
	}
	usernet := "Hub -1 (hostnet0):\r\n  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ\r\n" +
		"  TCP[HOST_FORWARD]  14       127.0.0.1 41115       10.0.2.15    22     0     0\r\n" +
		"  TCP[HOST_FORWARD]  15         0.0.0.0 40000       10.0.2.15    22     0     0\r\n"
	if port, err := parseForward(usernet, "127.0.0.1", 22); err != nil || port != 41115 {
		t.Errorf("parseForward = %d, %v", port, err)
	}
	if port, err := parseForward(usernet, "0.0.0.0", 22); err != nil || port != 40000 {
		t.Errorf("parseForward = %d, %v", port, err)
	}
	if _, err := parseForward(usernet, "127.0.0.1", 2222); err == nil {
		t.Error("a forward to another guest port was taken")
	}
}

func TestNames(t *testing.T) {
	for spec, prefix := range map[string]string{
		"web":                   "ingot-web-",
		"debian 12/web-build":   "ingot-debian-12-web-build-",
		"":                      "ingot-machine-",
		"..":                    "ingot-machine-",
		strings.Repeat("x", 90): "ingot-" + strings.Repeat("x", 40) + "-",
	} {
		got := domainName(spec)
		if !strings.HasPrefix(got, prefix) || len(got) != len(prefix)+8 {
			t.Errorf("domainName(%q) = %q, want %s + 8 hex", spec, got, prefix)
		}
		for _, vol := range []string{got + "-d0.qcow2", got + "-d1-b2.img", got + "-kernel", got + "-initrd", got + "-VARS.fd"} {
			if m := volumeName.FindStringSubmatch(vol); m == nil || m[1] != got {
				t.Errorf("volume %s: the sweep would not recognise it (%q)", vol, m)
			}
		}
	}
	for _, other := range []string{"debian.qcow2", "ingot-web-d0.qcow2", "ingot-web-0a1b2c3d-notes.txt", "xingot-a-0a1b2c3d-kernel"} {
		if volumeName.MatchString(other) {
			t.Errorf("the sweep would delete %s", other)
		}
	}
}

func TestParseTimestamp(t *testing.T) {
	if got := parseTimestamp("1700000000.5"); !got.Equal(time.Unix(1700000000, 500000000)) {
		t.Errorf("parseTimestamp = %v", got)
	}
	if got := parseTimestamp("1700000000"); !got.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("parseTimestamp = %v", got)
	}
}

func TestXDR(t *testing.T) {
	var x xdr
	x.string("abcde")
	x.optString("qemu:///system")
	x.uint64(1 << 40)
	want := []byte{0, 0, 0, 5, 'a', 'b', 'c', 'd', 'e', 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 14}
	want = append(want, "qemu:///system"...)
	want = append(want, 0, 0, 0, 0, 0x01, 0, 0, 0, 0, 0) // padding, then 1<<40
	if !bytes.Equal(x.b, want) {
		t.Errorf("xdr = %v\nwant %v", x.b, want)
	}
	// remote_error: code 42 (no domain), domain 10, message "Domain not found".
	var e xdr
	e.uint32(42)
	e.uint32(10)
	e.optString("Domain not found")
	err := decodeRPCError(e.b)
	var lerr golibvirt.Error
	if !errors.As(err, &lerr) || !isCode(err, golibvirt.ErrNoDomain) || lerr.Message != "Domain not found" {
		t.Errorf("decodeRPCError = %#v", err)
	}
	if decodeRPCError(binary.BigEndian.AppendUint32(nil, 1)) == nil {
		t.Error("a short error decoded to nil")
	}
}

// Captured from QEMU 7.2's "info registers" (SeaBIOS halted after finding nothing to boot), and
// the reset state a vCPU that never ran keeps.
func TestRanGuestCode(t *testing.T) {
	for regs, want := range map[string]bool{
		"CPU#0\r\nEAX=00000000 EBX=00000000 ECX=0000b79d EDX=00000000\r\nEIP=0000b7b9 EFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1\r\n": true,
		"CPU#0\r\nEAX=00000000 EBX=00000000 ECX=00000000 EDX=00000663\r\nEIP=0000fff0 EFL=00000002 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=0\r\n": false,
		"RAX=0000000000000000 RBX=0000000000000000\r\nRIP=ffffffff81e0c4ab RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1\r\n":            true,
		"error: no CPU": false,
	} {
		if got := ranGuestCode(regs); got != want {
			t.Errorf("ranGuestCode(%q) = %v, want %v", regs, got, want)
		}
	}
}

// Kill is bounded by its context even when libvirtd never answers (go-libvirt's calls have none):
// go-libvirt's mock daemon accepts the connection but does not know virDomainDestroy, so the
// call would block forever. Kill must close the connection (libvirtd destroys an autodestroy
// domain with it), return the context's error in time, and the teardown must still finish.
func TestKillIsBoundedByContext(t *testing.T) {
	raw, err := libvirttest.New().Dial()
	if err != nil {
		t.Fatal(err)
	}
	l := golibvirt.NewWithDialer(dialers.NewAlreadyConnected(raw))
	if err := l.ConnectToURI(golibvirt.QEMUSystem); err != nil {
		t.Fatalf("connect to the mock daemon: %v", err)
	}
	dir := t.TempDir()
	con, err := hypervisor.NewConsoleLog(filepath.Join(dir, "console.log"), nil)
	if err != nil {
		t.Fatal(err)
	}
	consoleEnd, consoleGone := net.Pipe()
	consoleGone.Close()
	log := slog.New(slog.DiscardHandler)
	m := &Machine{
		// The teardown reconnects to copy disks back and delete volumes (none here) when it
		// finds the connection gone: there is no daemon to reach.
		driver:       &Driver{log: log, connector: &connector{t: target{transport: transportUnix, socket: filepath.Join(dir, "no-libvirtd.sock")}}},
		name:         "ingot-kill-00000000",
		conn:         &conn{Libvirt: l, raw: raw},
		console:      con,
		consoleConn:  &rpcClient{conn: consoleEnd, r: bufio.NewReader(consoleEnd)},
		cancelEvents: func() {},
		log:          log,
		ended:        make(chan struct{}),
		done:         make(chan struct{}),
		consoleDone:  make(chan struct{}),
	}
	close(m.consoleDone)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	started := time.Now()
	err = m.Kill(ctx)
	if took := time.Since(started); took > 5*time.Second {
		t.Errorf("Kill took %s with a 200 ms context", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "closed the connection") {
		t.Errorf("Kill = %v; want the context's deadline, and that the connection was closed", err)
	}
	select {
	case <-l.Disconnected():
	case <-time.After(5 * time.Second):
		t.Error("the connection to the daemon is still open after Kill gave up on it")
	}
	select {
	case <-m.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the teardown did not finish")
	}
}

// The libvirt driver restores no checkpoint: a spec with Incoming is refused with
// ErrNotSupported before anything is asked of the daemon, not booted as if it were restored.
func TestStartRefusesIncoming(t *testing.T) {
	_, err := (&Driver{}).Start(context.Background(), hypervisor.Spec{Name: "x", Incoming: "/nonexistent/state.zst"})
	if !errors.Is(err, hypervisor.ErrNotSupported) || !strings.Contains(err.Error(), "/nonexistent/state.zst") {
		t.Fatalf("Start with Incoming = %v, want ErrNotSupported naming the file", err)
	}
	if _, ok := any(&Driver{}).(hypervisor.Restorer); ok {
		t.Error("the libvirt driver says it can restore")
	}
}
