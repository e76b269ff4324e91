package execx

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
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
