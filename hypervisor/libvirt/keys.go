package libvirt

import (
	"context"
	"fmt"
	"slices"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/ingot-build/ingot/hypervisor"
	"github.com/ingot-build/ingot/internal/ctxio"
)

// linuxKeycodes maps the QEMU qcodes hypervisor.ParseKeys produces to Linux input keycodes
// (linux/input-event-codes.h), the codeset virDomainSendKey is given here: it is libvirt's
// best-documented one, and QEMU translates it exactly.
var linuxKeycodes = func() map[string]uint32 {
	m := map[string]uint32{
		"esc": 1, "minus": 12, "equal": 13, "backspace": 14, "tab": 15,
		"bracket_left": 26, "bracket_right": 27, "ret": 28, "ctrl": 29,
		"semicolon": 39, "apostrophe": 40, "grave_accent": 41, "shift": 42, "backslash": 43,
		"comma": 51, "dot": 52, "slash": 53, "shift_r": 54, "alt": 56, "spc": 57,
		"f11": 87, "f12": 88, "ctrl_r": 97, "alt_r": 100, "home": 102, "up": 103, "pgup": 104,
		"left": 105, "right": 106, "end": 107, "down": 108, "pgdn": 109, "insert": 110,
		"delete": 111, "meta_l": 125, "meta_r": 126, "menu": 127,
	}
	for i, c := range "1234567890" {
		m[string(c)] = uint32(2 + i)
	}
	for i, row := range []string{"qwertyuiop", "asdfghjkl", "zxcvbnm"} {
		first := []uint32{16, 30, 44}[i]
		for j, c := range row {
			m[string(c)] = first + uint32(j)
		}
	}
	for i := range 10 {
		m[fmt.Sprintf("f%d", i+1)] = uint32(59 + i)
	}
	return m
}()

// sendKeyHold is how long each key is held down, as the QEMU driver's send-key hold-time: a bare
// down/up in one instant can be missed by firmware polling the keyboard.
const sendKeyHold = 50 // ms

// SendKeys types a boot command (Packer's syntax, see hypervisor.ParseKeys) through
// virDomainSendKey. That call presses its keys together and releases them together, so a key held
// with <leftCtrlOn> … <leftCtrlOff> is sent along with every key pressed while it is held (what
// a person holding it would produce); a held key with nothing pressed under it sends nothing.
func (m *Machine) SendKeys(ctx context.Context, sequence string) error {
	actions, err := hypervisor.ParseKeys(sequence)
	if err != nil {
		return err
	}
	// A wait between keys ends when the guest stops.
	typing, stop := hypervisor.UntilStopped(ctx, m.ended, func() error {
		return fmt.Errorf("while keys were typed: %w", m.stoppedErr())
	})
	defer stop()
	var held []uint32
	for i, a := range actions {
		var err error
		switch a.Kind {
		case hypervisor.Wait:
			err = ctxio.Sleep(typing, a.Wait)
		case hypervisor.Down, hypervisor.Up:
			code, ok := linuxKeycodes[a.Key]
			if !ok {
				err = fmt.Errorf("no keycode for %q", a.Key)
				break
			}
			held = slices.DeleteFunc(held, func(c uint32) bool { return c == code })
			if a.Kind == hypervisor.Down {
				held = append(held, code)
			}
		case hypervisor.Press:
			code, ok := linuxKeycodes[a.Key]
			if !ok {
				err = fmt.Errorf("no keycode for %q", a.Key)
				break
			}
			keys := slices.Clone(held)
			if a.Shift {
				keys = append(keys, linuxKeycodes["shift"])
			}
			keys = append(keys, code)
			err = m.sendKey(ctx, keys)
			if err == nil {
				err = ctxio.Sleep(typing, m.driver.opts.KeyInterval)
			}
		}
		if err != nil {
			if ctx.Err() == nil && typing.Err() != nil {
				err = context.Cause(typing)
			}
			return fmt.Errorf("type boot command (key %d of %d): %w", i+1, len(actions), err)
		}
	}
	return nil
}

func (m *Machine) sendKey(ctx context.Context, codes []uint32) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-m.ended:
		return fmt.Errorf("while keys were typed: %w", m.stoppedErr())
	default:
	}
	return m.conn.DomainSendKey(m.dom, uint32(golibvirt.KeycodeSetLinux), sendKeyHold, codes, 0)
}
