package libvirt

import (
	"fmt"

	golibvirt "github.com/digitalocean/go-libvirt"
)

// Event names. Where QEMU's QMP has an event for the same thing, the name is QMP's, so that what
// the bake pipeline and its logs know from the QEMU driver reads the same here (SHUTDOWN,
// GUEST_PANICKED, STOP, RESUME, RESET, SUSPEND). Lifecycle changes QMP has no event for carry
// libvirt's name with a DOMAIN_ prefix.
const (
	EventShutdown      = "SHUTDOWN"       // the guest began powering off (ACPI, or its own halt)
	EventGuestPanicked = "GUEST_PANICKED" // pvpanic
	EventStop          = "STOP"           // paused
	EventResume        = "RESUME"
	EventReset         = "RESET" // the guest rebooted
	EventSuspend       = "SUSPEND"
	EventStarted       = "DOMAIN_STARTED"
	EventStopped       = "DOMAIN_STOPPED" // the QEMU process is gone; Data["reason"] says why
)

// lifecycleEvent maps a libvirt lifecycle event (virDomainEventType and its detail) to an event
// name and data; ok is false for events that say nothing about the running guest (defined,
// undefined).
func lifecycleEvent(event, detail int32) (name string, data map[string]any, ok bool) {
	e := golibvirt.DomainEventType(event)
	reason := detailName(e, detail)
	data = map[string]any{"reason": reason}
	switch e {
	case golibvirt.DomainEventStarted:
		return EventStarted, data, true
	case golibvirt.DomainEventSuspended:
		return EventStop, data, true
	case golibvirt.DomainEventResumed:
		return EventResume, data, true
	case golibvirt.DomainEventStopped:
		return EventStopped, data, true
	case golibvirt.DomainEventShutdown:
		return EventShutdown, data, true
	case golibvirt.DomainEventPmsuspended:
		return EventSuspend, data, true
	case golibvirt.DomainEventCrashed:
		return EventGuestPanicked, data, true
	}
	return "", nil, false
}

// detailNames are libvirt's event details in words (virsh event's), indexed by event type and
// detail number.
var detailNames = map[golibvirt.DomainEventType][]string{
	golibvirt.DomainEventStarted:     {"booted", "migrated", "restored", "from-snapshot", "wakeup", "recreated"},
	golibvirt.DomainEventSuspended:   {"paused", "migrated", "io-error", "watchdog", "restored", "from-snapshot", "api-error", "postcopy", "postcopy-failed"},
	golibvirt.DomainEventResumed:     {"unpaused", "migrated", "from-snapshot", "postcopy", "postcopy-failed"},
	golibvirt.DomainEventStopped:     {"shutdown", "destroyed", "crashed", "migrated", "saved", "failed", "from-snapshot", "recreated"},
	golibvirt.DomainEventShutdown:    {"finished", "guest", "host"},
	golibvirt.DomainEventPmsuspended: {"memory", "disk"},
	golibvirt.DomainEventCrashed:     {"panicked", "crashloaded"},
}

func detailName(e golibvirt.DomainEventType, detail int32) string {
	names := detailNames[e]
	if detail >= 0 && int(detail) < len(names) {
		return names[detail]
	}
	return fmt.Sprint(detail)
}

// stoppedError says why a domain stopped when nobody asked it to, or nil for a guest that powered
// itself off (STOPPED with detail shutdown: ACPI, halt, or NoReboot's reboot).
func stoppedError(detail int32) string {
	switch golibvirt.DomainEventStoppedDetailType(detail) {
	case golibvirt.DomainEventStoppedShutdown:
		return ""
	case golibvirt.DomainEventStoppedDestroyed:
		return "the domain was destroyed by someone else (virsh destroy, or libvirtd when its connection closed)"
	case golibvirt.DomainEventStoppedCrashed:
		return "QEMU crashed"
	case golibvirt.DomainEventStoppedFailed:
		return "libvirt reports that the domain failed (see the QEMU log in /var/log/libvirt/qemu on the libvirt host)"
	}
	return "the domain stopped (" + detailName(golibvirt.DomainEventStopped, detail) + ")"
}
