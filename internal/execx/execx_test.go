package execx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestQuote(t *testing.T) {
	tests := []struct {
		argv []string
		want string
	}{
		{[]string{"qemu-img", "info", "--output=json", "/tmp/a.qcow2"}, "qemu-img info --output=json /tmp/a.qcow2"},
		{[]string{"echo", "a b", ""}, "echo 'a b' ''"},
		{[]string{"sh", "-c", "echo 'hi'"}, `sh -c 'echo '\''hi'\'''`},
	}
	for _, tt := range tests {
		if got := Quote(tt.argv); got != tt.want {
			t.Errorf("Quote(%q) = %s, want %s", tt.argv, got, tt.want)
		}
	}
}

func TestOutputErrorCarriesArgvAndStderr(t *testing.T) {
	_, err := Output(context.Background(), "sh", "-c", "echo out; echo 'the real reason' >&2; exit 3")
	var xe *Error
	if !errors.As(err, &xe) {
		t.Fatalf("err = %v, want *Error", err)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("exit status not preserved: %v", err)
	}
	for _, want := range []string{"sh -c", "exit status 3", "the real reason"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestOutputCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Output(ctx, "sleep", "10")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled in the chain", err)
	}
}

func TestOutputStderrTail(t *testing.T) {
	_, err := Output(context.Background(), "sh", "-c", "head -c 10000 /dev/zero | tr '\\0' x >&2; echo END >&2; exit 1")
	var xe *Error
	if !errors.As(err, &xe) {
		t.Fatal(err)
	}
	if len(xe.Stderr) > stderrTail || !strings.HasSuffix(strings.TrimSpace(xe.Stderr), "END") {
		t.Errorf("stderr tail is %d bytes, ends %q", len(xe.Stderr), xe.Stderr[len(xe.Stderr)-10:])
	}
}

// TestChildrenDieWithParent runs this test binary as a stand-in for ingot (dieWithParentHelper)
// that starts two `sleep 60`: one with Start, called from a goroutine whose thread then exits
// (the child must not care: Pdeathsig follows the forking thread, so Start must not fork on the
// caller's), and one with Output. Once both children run, the stand-in is killed with SIGKILL,
// which it cannot handle, and both children must die with it.
func TestChildrenDieWithParent(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "output.pid")
	helper := exec.Command(os.Args[0], "-test.run=^TestDieWithParentHelper$")
	helper.Env = append(os.Environ(), dieWithParentHelper+"="+pidfile)
	helper.Stderr = os.Stderr
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	defer helper.Process.Kill() // if the test fails before its own kill
	var startPid int
	if _, err := fmt.Fscan(stdout, &startPid); err != nil {
		t.Fatalf("read the pid of the child started with Start: %v", err)
	}
	var outputPid int
	waitFor(t, "the child started with Output to write its pid", func() bool {
		b, err := os.ReadFile(pidfile)
		if err != nil || !bytes.HasSuffix(b, []byte("\n")) {
			return false
		}
		outputPid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	pids := map[string]int{"Start": startPid, "Output": outputPid}
	time.Sleep(200 * time.Millisecond) // the thread that called Start has had time to exit
	for how, pid := range pids {
		if !alive(pid) {
			t.Fatalf("the child started with %s (pid %d) died while ingot lived", how, pid)
		}
	}
	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	helper.Wait()
	for how, pid := range pids {
		waitFor(t, fmt.Sprintf("the child started with %s (pid %d) to die with its parent", how, pid), func() bool { return !alive(pid) })
	}
}

// dieWithParentHelper is the environment variable that makes this test binary the stand-in.
const dieWithParentHelper = "EXECX_DIE_WITH_PARENT_HELPER"

func init() {
	// In the stand-in, keep the main thread to the main goroutine: Go never ends the main thread
	// (a locked goroutine that exits there wedges it instead), so a goroutine that exits on it
	// would not test anything.
	if os.Getenv(dieWithParentHelper) != "" {
		runtime.LockOSThread()
	}
}

// TestDieWithParentHelper is TestChildrenDieWithParent's stand-in for ingot; on its own it skips.
func TestDieWithParentHelper(t *testing.T) {
	pidfile := os.Getenv(dieWithParentHelper)
	if pidfile == "" {
		t.Skip("run by TestChildrenDieWithParent")
	}
	cmd := exec.Command("sleep", "60")
	started := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: this thread exits with the goroutine, before the child
		_, err := Start(cmd)
		started <- err
	}()
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	fmt.Println(cmd.Process.Pid)
	// Blocks until killed; the pid goes to a file since Output keeps stdout to itself.
	Output(context.Background(), "sh", "-c", `echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec sleep 60`, pidfile)
	t.Fatal("sleep 60 ended before the test killed its parent")
}

// alive reports whether pid runs: it exists and is not a zombie (a container's init may never
// reap what it inherits).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...; comm may hold spaces and parentheses, so look after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] != 'Z' && stat[i+2] != 'X'
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestTailKeepsTheLastBytes(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		writes []string
		want   string
	}{
		{"under the bound", 8, []string{"abc", "de"}, "abcde"},
		{"exactly the bound", 4, []string{"ab", "cd"}, "abcd"},
		{"one write over", 4, []string{"abcdefgh"}, "efgh"},
		{"spread over writes", 5, []string{"abc", "def", "gh"}, "defgh"},
		{"nothing written", 4, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tail := NewTail(tt.max)
			for _, w := range tt.writes {
				if n, err := tail.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if got := tail.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			if got := string(tail.Bytes()); got != tt.want {
				t.Errorf("Bytes() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestStartOwnsTheProcessGroup: a child started by Start leads its own process group, and
// KillGroup takes its children down with it.
func TestStartOwnsTheProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "grandchild.pid")
	cmd := exec.Command("sh", "-c", "sleep 60 & echo $! > "+pidFile+"; wait")
	wait, err := Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	pgid, err := syscall.Getpgid(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if pgid != cmd.Process.Pid {
		t.Errorf("child's process group = %d, want its own (%d)", pgid, cmd.Process.Pid)
	}
	var grandchild int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if b, err := os.ReadFile(pidFile); err == nil && len(bytes.TrimSpace(b)) > 0 {
			grandchild, _ = strconv.Atoi(string(bytes.TrimSpace(b)))
			break
		}
	}
	if grandchild == 0 {
		t.Fatal("the child never wrote its child's pid")
	}
	if err := KillGroup(cmd); err != nil {
		t.Fatal(err)
	}
	_ = wait()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if err := syscall.Kill(grandchild, 0); errors.Is(err, syscall.ESRCH) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d outlived KillGroup", grandchild)
		}
	}
	if err := KillGroup(cmd); err != nil {
		t.Errorf("KillGroup of a gone group: %v", err)
	}
}

func TestStreamHandsStdoutOver(t *testing.T) {
	var out bytes.Buffer
	if err := Stream(context.Background(), &out, "sh", "-c", "printf 'a\\rb\\n'"); err != nil {
		t.Fatal(err)
	}
	if out.String() != "a\rb\n" {
		t.Errorf("stdout = %q", out.String())
	}
}
