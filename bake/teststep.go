package bake

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/ingot-build/ingot/communicator"
	"github.com/ingot-build/ingot/firmware"
	"github.com/ingot-build/ingot/manifest"
	"github.com/ingot-build/ingot/recipes"
)

// testBootMode is how the build test-boots its outputs: Options.TestBoot, else the recipe's
// test.boot (recipes.TestBootFirst unless written).
func (b *build) testBootMode() string {
	if b.opts.TestBoot != "" {
		return b.opts.TestBoot
	}
	if b.r.Test.Boot != "" {
		return b.r.Test.Boot
	}
	return recipes.TestBootFirst
}

// testPlan lists the build's test boots: each output (a bmap is not one) under each of the
// recipe's test firmwares (the machine's own by default), the first output fully and the others
// to the kernel, or every one fully (all), or none. Every image boots on a disk the size of the
// build's, so a shrunk one must grow to it.
func (b *build) testPlan() ([]testBoot, error) {
	mode := b.testBootMode()
	if mode == recipes.TestBootNone {
		return nil, nil
	}
	fws := []firmware.Kind{b.fwKind}
	if len(b.r.Test.Firmware) > 0 {
		fws = nil
		for _, f := range b.r.Test.Firmware {
			k, err := firmware.ParseKind(f)
			if err != nil {
				return nil, fmt.Errorf("%s: test.firmware: %w", b.r.Test.Pos, err)
			}
			fws = append(fws, k)
		}
	}
	var boots []testBoot
	first := true
	for i, o := range b.outputs {
		if o.Format == "bmap" {
			continue
		}
		for _, fw := range fws {
			boots = append(boots, testBoot{output: i, path: filepath.Join(b.stagingDir(), o.File), format: o.Format,
				full: mode == recipes.TestBootAll || first, firmware: fw, diskBytes: b.diskSize})
		}
		first = false
	}
	return boots, nil
}

// test is the build's test step, between convert and record: it boots the staged outputs as
// testPlan says. A failed check fails the build, so nothing is published; with
// --keep-on-failure the staged outputs and the failing boot's disk and seed are kept, and the
// error says how to boot it by hand. The results go into the manifest, output by output.
func (b *build) test(ctx context.Context) error {
	boots, err := b.testPlan()
	if err != nil || len(boots) == 0 {
		if err == nil {
			b.log.Info("no test boots (test.boot: none)")
		}
		return err
	}
	spec := b.spec("test")
	t := &tester{
		driver: b.opts.Driver, log: b.log, dir: filepath.Join(b.workDir, "test"), name: b.r.Name, arch: spec.Arch,
		cpus: b.r.Machine.CPUs, memoryMiB: b.r.Machine.MemoryMiB, accel: spec.Accel, extraArgs: spec.ExtraArgs,
		checks: b.r.Tests, build: b.buildMachine, sshTimeout: b.r.SSH.Timeout, keep: b.opts.KeepOnFailure, dial: b.dial,
	}
	if err := mkdirPrivate(t.dir); err != nil {
		return fmt.Errorf("test dir: %w", err)
	}
	var results []manifest.TestBoot
	err = b.waits.track(func() (err error) { results, err = t.run(ctx, boots); return err })
	full, smoke := 0, 0
	for i, tb := range boots {
		if results[i].Boot == "" {
			continue // never started
		}
		b.outputs[tb.output].Tests = append(b.outputs[tb.output].Tests, results[i])
		if tb.full {
			full++
		} else {
			smoke++
		}
	}
	if err != nil {
		b.testFailed = true
		return err
	}
	b.log.Info("every test boot passed", "full", full, "smoke", smoke)
	return nil
}

// readBuildMachine records who the build machine is, before generalize changes it: what the
// test boots check the image no longer is.
func (b *build) readBuildMachine(ctx context.Context) error {
	// sudo: cloud-init writes the host keys' .pub files 0600.
	out, err := b.guest.Output(ctx, communicator.Cmd{Command: `cat /etc/machine-id 2>/dev/null; echo ---; cat /etc/ssh/ssh_host_*_key.pub 2>/dev/null; true`, Sudo: true})
	if err != nil {
		return fmt.Errorf("read the build machine's identity: %w", err)
	}
	id, keys, _ := strings.Cut(string(out), "---\n")
	bm := &manifest.BuildMachine{
		User: b.r.SSH.User, AuthorizedKey: b.keys.AuthorizedKey, MachineID: strings.TrimSpace(id),
		DiskBytes: b.diskSize, Generalized: b.r.Generalize.Enabled, Kept: b.r.Generalize.Keep,
	}
	for _, l := range strings.Split(strings.TrimSpace(keys), "\n") {
		if f := strings.Fields(l); len(f) >= 2 {
			bm.HostKeys = append(bm.HostKeys, f[0]+" "+f[1])
		}
	}
	b.buildMachine = bm
	return nil
}
