package main

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/ingot-build/ingot/hypervisor"
)

// A driver connection that fails to close is logged with the driver's name, and the others are
// still closed.
func TestDriversCloseLogsFailures(t *testing.T) {
	var logged bytes.Buffer
	var closed []string
	closer := func(name string, err error) func() error {
		return func() error { closed = append(closed, name); return err }
	}
	ds := &drivers{
		log: slog.New(slog.NewTextHandler(&logged, nil)),
		closes: []driverClose{
			{hypervisor.DriverLibvirt, closer("first", errors.New("ssh tunnel: broken pipe"))},
			{hypervisor.DriverLibvirt, closer("second", nil)},
		},
	}
	ds.Close()
	if strings.Join(closed, ",") != "first,second" {
		t.Errorf("closed %v, want both", closed)
	}
	for _, want := range []string{"level=WARN", "driver=libvirt", `err="ssh tunnel: broken pipe"`} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("log %q lacks %s", logged.String(), want)
		}
	}
	if n := strings.Count(logged.String(), "\n"); n != 1 {
		t.Errorf("%d log lines, want 1 (only the failure):\n%s", n, logged.String())
	}
}
