package main

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/hypervisor/libvirt"
	"github.com/ingot-build/ingot/hypervisor/qemu"
	"github.com/ingot-build/ingot/manifest"
	"github.com/ingot-build/ingot/recipes"
)

var driverFlags = []cli.Flag{
	&cli.StringFlag{Name: "driver", Usage: "override machine.driver: `qemu` (ingot runs QEMU itself) or libvirt", EnvVars: []string{"INGOT_DRIVER"}},
	&cli.StringFlag{Name: "connect", Usage: "the libvirt daemon's `URI`: qemu:///system (default), qemu+ssh://USER@HOST/system, qemu+tcp://HOST:PORT/system", EnvVars: []string{"INGOT_LIBVIRT_URI"}},
	&cli.StringFlag{Name: "pool", Usage: "the libvirt storage `POOL` build disks are uploaded to (default ingot, created if missing)", EnvVars: []string{"INGOT_LIBVIRT_POOL"}},
}

// drivers holds the hypervisor drivers a command's builds use, each made once: one libvirt
// connection (and one KVM probe) serves every build of `ingot build -j N`.
type drivers struct {
	byName map[hypervisor.DriverName]hypervisor.Driver
	tools  map[hypervisor.DriverName]manifest.Tool
	closes []driverClose
	log    *slog.Logger
}

// driverClose releases one driver's connection.
type driverClose struct {
	name hypervisor.DriverName
	fn   func() error
}

// driverFor is the driver a recipe builds with: --driver wins over machine.driver. Both names
// are known ones by then: openDrivers checks --driver, and loading a recipe checks machine.driver.
func driverFor(c *cli.Context, r *recipes.Recipe) hypervisor.DriverName {
	if d := c.String("driver"); d != "" {
		return hypervisor.DriverName(d)
	}
	if r.Machine.Driver != "" {
		return hypervisor.DriverName(r.Machine.Driver)
	}
	return hypervisor.DriverQEMU
}

// archOf is the architecture a recipe builds for: machine.arch, or the host's for a recipe made
// in code without one.
func archOf(r *recipes.Recipe) string {
	if r.Machine.Arch != "" {
		return r.Machine.Arch
	}
	return recipes.HostArch()
}

// openDrivers connects every driver the recipes need before any build starts, so a stopped
// libvirtd or a wrong URI fails the command in its first second, not after a download.
func openDrivers(c *cli.Context, log *slog.Logger, rs []*recipes.Recipe, base manifest.Tool) (*drivers, error) {
	if d := c.String("driver"); d != "" {
		if _, err := hypervisor.ParseDriverName(d); err != nil {
			return nil, usageError{fmt.Errorf("--driver %w", err)}
		}
	}
	var names []hypervisor.DriverName
	for _, r := range rs {
		if n := driverFor(c, r); !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if !slices.Contains(names, hypervisor.DriverLibvirt) && (c.IsSet("connect") || c.IsSet("pool")) {
		return nil, usageError{errors.New("--connect and --pool are for the libvirt driver: add --driver libvirt (or machine.driver: libvirt in the recipe)")}
	}
	ds := &drivers{byName: map[hypervisor.DriverName]hypervisor.Driver{}, tools: map[hypervisor.DriverName]manifest.Tool{}, log: log}
	for _, n := range names {
		tool := base
		tool.Driver = string(n)
		switch n {
		case hypervisor.DriverQEMU:
			ds.byName[n] = qemu.New(qemu.WithLogger(log))
			// Every architecture's emulator is looked up now: a recipe for aarch64 on a host
			// without qemu-system-aarch64 fails here, with the package to install.
			for _, r := range rs {
				if driverFor(c, r) != n {
					continue
				}
				bin, err := qemu.FindBinary(c.Context, archOf(r))
				if err != nil {
					ds.Close()
					return nil, fmt.Errorf("%s: %w", r.Machine.Pos, err)
				}
				if tool.QEMUVersion == "" {
					tool.QEMUVersion = bin.Version
				}
			}
		case hypervisor.DriverLibvirt:
			for _, r := range rs {
				if driverFor(c, r) == n && archOf(r) != recipes.ArchX86_64 {
					ds.Close()
					return nil, fmt.Errorf("%s: machine.arch %s: the libvirt driver builds x86_64 guests only; build this recipe with the qemu driver (--driver qemu)", r.Machine.Pos, archOf(r))
				}
			}
			d, err := libvirt.New(c.Context, libvirt.Options{URI: c.String("connect"), Pool: c.String("pool"), Logger: log})
			if err != nil {
				ds.Close()
				return nil, err
			}
			ds.closes = append(ds.closes, driverClose{n, d.Close})
			ds.byName[n] = d
			info := d.Info()
			tool.QEMUVersion = info.QEMUVersion
			tool.Libvirt = &manifest.Libvirt{URI: info.URI, Host: info.Hostname, Version: info.LibvirtVersion, Pool: info.Pool}
			log.Info("libvirt connected", "uri", info.URI, "host", info.Hostname, "libvirt", info.LibvirtVersion, "qemu", info.QEMUVersion, "pool", info.Pool)
		}
		ds.tools[n] = tool
	}
	return ds, nil
}

// Close releases the drivers' connections, after every build ended. A failure is logged, not
// returned: the builds' results are in by then, and a connection that did not close cleanly
// (an SSH tunnel to a remote libvirtd) changes none of them.
func (ds *drivers) Close() {
	for _, c := range ds.closes {
		if err := c.fn(); err != nil {
			ds.log.Warn("closing the hypervisor driver failed", "driver", c.name, "err", err)
		}
	}
}
