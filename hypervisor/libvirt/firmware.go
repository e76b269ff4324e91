package libvirt

import (
	"fmt"
	"path"
	"slices"

	"github.com/ingot-build/ingot/firmware"
	"github.com/ingot-build/ingot/hypervisor"
)

// chooseFirmware decides how the domain loads its firmware.
//
// On a local daemon the firmware package chooses, exactly as for the QEMU driver (same
// descriptors, same preference), and the domain names the chosen files: both drivers boot the
// same firmware. Its variable store is the build's own, created by libvirt from the template in
// the storage pool (QEMU runs as libvirt-qemu, which cannot read ingot's private work dir), and
// deleted with the build's volumes.
//
// On a remote daemon the local descriptors say nothing about the other host's files, so libvirt's
// own firmware autoselection (<os firmware='efi'>, from that host's descriptors) chooses, asked
// for the same features: no Secure Boot for uefi, Secure Boot with enrolled keys for uefi-secure.
// BIOS needs nothing there: libvirt's default is QEMU's SeaBIOS.
func chooseFirmware(finder *firmware.Finder, spec hypervisor.Spec, local bool, p pool, name string) (firmwareLayout, *firmware.Firmware, error) {
	nvram := path.Join(p.dir, name+"-VARS.fd")
	if !local {
		switch spec.Firmware {
		case firmware.BIOS:
			return firmwareLayout{}, nil, nil
		case firmware.UEFI:
			return firmwareLayout{auto: true, nvram: nvram}, nil, nil
		case firmware.UEFISecure:
			return firmwareLayout{auto: true, nvram: nvram, secureBoot: true, smm: true}, nil, nil
		}
		return firmwareLayout{}, nil, fmt.Errorf("firmware %q", spec.Firmware)
	}
	fw, err := finder.Select(spec.Firmware, spec.Arch, spec.Machine)
	if err != nil {
		return firmwareLayout{}, nil, err
	}
	l := firmwareLayout{loader: fw.Executable.Path, smm: fw.RequiresSMM}
	switch fw.Device {
	case firmware.DeviceMemory:
		l.loaderType = "rom"
	case firmware.DeviceFlash:
		l.loaderType = "pflash"
		switch fw.Mode {
		case firmware.ModeSplit:
			if fw.VarsTemplate.Format != "raw" {
				return firmwareLayout{}, nil, fmt.Errorf("firmware %s: its variable store template is %s; libvirt 9 copies only raw templates", fw.Descriptor, fw.VarsTemplate.Format)
			}
			l.nvram, l.template = nvram, fw.VarsTemplate.Path
		case firmware.ModeStateless:
		default:
			return firmwareLayout{}, nil, fmt.Errorf("firmware %s: %s flash (code and variables in one writable image) is not supported by the libvirt driver; use the qemu driver", fw.Descriptor, fw.Mode)
		}
		// Secure-Boot-capable firmware that requires SMM: only SMM code may write its variable
		// store (firmware.Firmware.Args's cfi.pflash01 secure=on for the QEMU driver).
		l.secure = fw.RequiresSMM && slices.Contains(fw.Features, firmware.FeatureSecureBoot)
	default:
		return firmwareLayout{}, nil, fmt.Errorf("firmware %s: cannot load firmware mapped as %q", fw.Descriptor, fw.Device)
	}
	return l, &fw, nil
}
