package bake

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ingot-build/ingot/communicator"
	"github.com/ingot-build/ingot/hypervisor"
)

// fakeTestGuest answers the test boots' commands as a healthy generalized guest does, and the
// build's inventory with its packages and identity; fail names recipe checks that fail.
func fakeTestGuest(instance func() string, fail string) func(string) string {
	return func(action string) string {
		switch {
		case strings.Contains(action, "dpkg-query"):
			return "bash\t5.2\n"
		case strings.HasPrefix(action, "output sudo cat /etc/machine-id"):
			return "11111111111111111111111111111111\n---\nssh-ed25519 AAAABUILD build\n"
		case strings.Contains(action, "is-system-running"):
			return "degraded\nfoo.service loaded failed failed Foo\n"
		case strings.Contains(action, "/var/lib/cloud/data/instance-id"):
			return instance() + "\n---\n" + `{"v1": {"datasource": "DataSourceNoCloud [seed=/dev/vdb]", "errors": []}}` + "\n"
		case strings.Contains(action, "cat /etc/machine-id"):
			return "22222222222222222222222222222222\n---\nssh-ed25519 AAAANEW test\n---\nInitializing machine ID from random generator.\n"
		case fail != "" && strings.Contains(action, fail):
			return "no such thing\n"
		}
		return ""
	}
}

// The test step on the fake driver: the first output fully (every built-in check, then the
// recipe's), the others to the kernel, results in the manifest; a failing check fails the build
// with a *TestError and publishes nothing (kept with --keep-on-failure); a console that shows
// the firmware finding nothing to boot fails boots at once.
func TestFakeBuildTestBoots(t *testing.T) {
	seedID := regexp.MustCompile(`instance-id: (ingot-test-[0-9a-f]{12})`)
	tests := []struct {
		name    string
		checks  string
		console func(hypervisor.Spec) string
		fail    string // the check that fails; "" for none
	}{
		{name: "pass", checks: "  - { name: answers, run: curl -fsS localhost }\n"},
		{name: "recipe check fails", checks: "  - { name: has-nginx, run: command -v nginx }\n", fail: "has-nginx"},
		{name: "nothing to boot", console: func(hypervisor.Spec) string { return "Boot failed: not a bootable disk\n" }, fail: "boots"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newFakeBuildIn(t, t.TempDir(), func(r string) string {
				r = strings.Replace(r, "outputs: [ { format: qcow2 } ]", "outputs: [ { format: qcow2 }, { format: vmdk } ]", 1)
				return r + "tests:\n" + tt.checks
			}, func(o *Options) { o.TestBoot = ""; o.KeepOnFailure = true })
			if tt.checks == "" {
				e.b.r.Tests = nil
			}
			// The seed of the full boot (of fake.qcow2), whose instance-id the fake guest
			// answers; the smoke boot of fake.vmdk starts beside it and asks nothing.
			var fullSeed atomic.Pointer[string]
			d := e.b.opts.Driver.(*fakeDriver)
			d.console = func(spec hypervisor.Spec) string {
				if len(spec.Disks) > 1 && strings.Contains(spec.Disks[1].Path, "fake.qcow2") {
					fullSeed.Store(&spec.Disks[1].Path)
				}
				if tt.console != nil {
					return tt.console(spec)
				}
				return "Welcome to GRUB!\n[    0.000000] Linux version 6.1.0-fake\n"
			}
			failing := ""
			if tt.fail != "" && tt.fail != "boots" {
				failing = "command -v nginx"
			}
			e.guest.reply = fakeTestGuest(func() string {
				seed := fullSeed.Load()
				if seed == nil {
					return "no-seed"
				}
				data, _ := os.ReadFile(*seed)
				if m := seedID.FindSubmatch(data); m != nil {
					return string(m[1])
				}
				return "no-seed"
			}, failing)
			e.guest.act = func(_ context.Context, action string) error {
				if failing != "" && strings.Contains(action, failing) {
					return &communicator.ExitError{Status: 1}
				}
				return nil
			}
			res, err := e.b.bake(context.Background())
			if tt.fail == "" {
				if err != nil {
					t.Fatal(err)
				}
				m := res.Manifest
				var got []string
				for _, o := range m.Outputs {
					for _, tb := range o.Tests {
						s := o.File + ":" + tb.Boot + ":" + tb.Firmware
						for _, c := range tb.Checks {
							s += " " + c.Name + "=" + c.Result
						}
						got = append(got, s)
					}
				}
				want := []string{
					"fake.qcow2:full:bios boots=pass cloud-init=pass fresh-identity=pass no-build-user=pass answers=pass",
					"fake.vmdk:smoke:bios boots=pass",
				}
				if strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Errorf("test boots:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
				if c := m.Outputs[0].Tests[0].Checks[0]; !strings.Contains(c.Output, "systemd says degraded; failed units:\nfoo.service") {
					t.Errorf("boots output %q does not list the failed unit", c.Output)
				}
				if bm := m.BuildMachine; bm == nil || bm.MachineID != "11111111111111111111111111111111" || len(bm.HostKeys) != 1 {
					t.Errorf("build_machine = %+v", bm)
				}
				return
			}
			var te *TestError
			if !errors.As(err, &te) || te.Check != tt.fail || te.File != "fake.qcow2" || !strings.Contains(te.Manual, "qemu-system-x86_64") {
				t.Fatalf("err = %v, want check %s of fake.qcow2 failing, kept", err, tt.fail)
			}
			if _, err := os.Stat(filepath.Join(e.out, "fake")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("published although a test failed: %v", err)
			}
			kept, _ := filepath.Glob(filepath.Join(e.out, stagingPrefix+"*", "fake.qcow2"))
			if len(kept) != 1 {
				t.Errorf("--keep-on-failure kept %v, want the staged fake.qcow2", kept)
			}
			if tt.fail == "boots" && !strings.Contains(err.Error(), "the firmware found nothing to boot") {
				t.Errorf("err = %v, want it to say the firmware found nothing to boot", err)
			}
		})
	}
}
