package hypervisor

import (
	"fmt"
	"strings"
	"time"
)

// KeyAction is one step of a typed boot command.
type KeyAction struct {
	Kind KeyKind
	Key  string // QEMU qcode ("a", "ret", "f10", "ctrl", …) for Press, Down and Up
	// Shift presses shift around Key (upper-case letters and shifted symbols).
	Shift bool
	Wait  time.Duration // for Wait
}

// KeyKind says what a KeyAction does.
type KeyKind int

const (
	Press KeyKind = iota // down then up
	Down                 // hold (…On)
	Up                   // release (…Off)
	Wait
)

// specialKeys are the names Packer's boot_command knows, mapped to QEMU qcodes, so a Packer user's
// boot command types the same here.
var specialKeys = map[string]string{
	"bs": "backspace", "del": "delete", "enter": "ret", "return": "ret", "esc": "esc",
	"tab": "tab", "spacebar": "spc", "insert": "insert", "home": "home", "end": "end",
	"pageup": "pgup", "pagedown": "pgdn", "up": "up", "down": "down", "left": "left", "right": "right",
	"leftalt": "alt", "rightalt": "alt_r", "leftctrl": "ctrl", "rightctrl": "ctrl_r",
	"leftshift": "shift", "rightshift": "shift_r", "leftsuper": "meta_l", "rightsuper": "meta_r",
	"menu": "menu",
}

// charKeys maps printable ASCII to a qcode and whether shift is needed (US layout, as QEMU's
// default keymap and every installer's default).
var charKeys = func() map[rune]KeyAction {
	m := map[rune]KeyAction{' ': {Key: "spc"}}
	for c := 'a'; c <= 'z'; c++ {
		m[c] = KeyAction{Key: string(c)}
		m[c-'a'+'A'] = KeyAction{Key: string(c), Shift: true}
	}
	for c := '0'; c <= '9'; c++ {
		m[c] = KeyAction{Key: string(c)}
	}
	plain := map[rune]string{'-': "minus", '=': "equal", '[': "bracket_left", ']': "bracket_right",
		'\\': "backslash", ';': "semicolon", '\'': "apostrophe", '`': "grave_accent", ',': "comma",
		'.': "dot", '/': "slash", '\n': "ret", '\t': "tab"}
	for c, k := range plain {
		m[c] = KeyAction{Key: k}
	}
	shifted := map[rune]string{'!': "1", '@': "2", '#': "3", '$': "4", '%': "5", '^': "6", '&': "7",
		'*': "8", '(': "9", ')': "0", '_': "minus", '+': "equal", '{': "bracket_left",
		'}': "bracket_right", '|': "backslash", ':': "semicolon", '"': "apostrophe", '~': "grave_accent",
		'<': "comma", '>': "dot", '?': "slash"}
	for c, k := range shifted {
		m[c] = KeyAction{Key: k, Shift: true}
	}
	return m
}()

// ParseKeys parses a boot command in Packer's syntax: plain text is typed; <enter>, <f10>, <esc>,
// <up>… press special keys; <leftCtrlOn>/<leftCtrlOff> (any special key with On/Off) hold and
// release; <wait> waits a second, <wait5> five, <wait1m30s> any Go duration. Names are
// case-insensitive. A "<" that does not start a known name is typed as it is.
func ParseKeys(seq string) ([]KeyAction, error) {
	var out []KeyAction
	for i := 0; i < len(seq); {
		if seq[i] == '<' {
			if end := strings.IndexByte(seq[i:], '>'); end > 0 {
				name := strings.ToLower(seq[i+1 : i+end])
				if a, ok, err := special(name); err != nil {
					return nil, fmt.Errorf("boot command at byte %d: %w", i, err)
				} else if ok {
					out = append(out, a)
					i += end + 1
					continue
				}
			}
		}
		r := []rune(seq[i:])[0]
		a, ok := charKeys[r]
		if !ok {
			return nil, fmt.Errorf("boot command at byte %d: cannot type %q (US keyboard layout, printable ASCII only)", i, r)
		}
		out = append(out, a)
		i += len(string(r))
	}
	return out, nil
}

func special(name string) (KeyAction, bool, error) {
	if rest, ok := strings.CutPrefix(name, "wait"); ok {
		if rest == "" {
			return KeyAction{Kind: Wait, Wait: time.Second}, true, nil
		}
		if d, err := time.ParseDuration(rest); err == nil {
			return KeyAction{Kind: Wait, Wait: d}, true, nil
		}
		var n int
		if _, err := fmt.Sscanf(rest, "%d", &n); err == nil && fmt.Sprint(n) == rest {
			return KeyAction{Kind: Wait, Wait: time.Duration(n) * time.Second}, true, nil
		}
		return KeyAction{}, false, fmt.Errorf("<wait%s>: not a duration (write <wait5> or <wait1m30s>)", rest)
	}
	kind := Press
	base := name
	if b, ok := strings.CutSuffix(name, "on"); ok && keyName(b) != "" {
		kind, base = Down, b
	} else if b, ok := strings.CutSuffix(name, "off"); ok && keyName(b) != "" {
		kind, base = Up, b
	}
	if k := keyName(base); k != "" {
		return KeyAction{Kind: kind, Key: k}, true, nil
	}
	return KeyAction{}, false, nil
}

func keyName(name string) string {
	if k, ok := specialKeys[name]; ok {
		return k
	}
	var n int
	if _, err := fmt.Sscanf(name, "f%d", &n); err == nil && n >= 1 && n <= 12 && name == fmt.Sprintf("f%d", n) {
		return name
	}
	return ""
}
