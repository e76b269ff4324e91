package hypervisor

import (
	"reflect"
	"testing"
	"time"
)

func TestParseKeys(t *testing.T) {
	p := func(k string) KeyAction { return KeyAction{Key: k} }
	s := func(k string) KeyAction { return KeyAction{Key: k, Shift: true} }
	tests := []struct {
		in   string
		want []KeyAction
	}{
		{"ab", []KeyAction{p("a"), p("b")}},
		{"A:", []KeyAction{s("a"), s("semicolon")}},
		{"<enter><Return><esc><f10><F1>", []KeyAction{p("ret"), p("ret"), p("esc"), p("f10"), p("f1")}},
		{"<wait><wait5><wait1m30s>", []KeyAction{{Kind: Wait, Wait: time.Second}, {Kind: Wait, Wait: 5 * time.Second}, {Kind: Wait, Wait: 90 * time.Second}}},
		{"<leftCtrlOn>x<leftCtrlOff>", []KeyAction{{Kind: Down, Key: "ctrl"}, p("x"), {Kind: Up, Key: "ctrl"}}},
		{"<up><down><end><home><bs><del><tab><spacebar>", []KeyAction{p("up"), p("down"), p("end"), p("home"), p("backspace"), p("delete"), p("tab"), p("spc")}},
		{"a<b", []KeyAction{p("a"), s("comma"), p("b")}}, // not a key name: typed
		{"<notakey>", nil},                           // filled below
		{" autoinstall ds=nocloud\\;s=/cdrom/", nil}, // filled below
	}
	tests[7].want = []KeyAction{s("comma"), p("n"), p("o"), p("t"), p("a"), p("k"), p("e"), p("y"), s("dot")}
	tests[8].want = []KeyAction{p("spc")}
	for _, c := range "autoinstall" {
		tests[8].want = append(tests[8].want, p(string(c)))
	}
	tests[8].want = append(tests[8].want, p("spc"), p("d"), p("s"), p("equal"), p("n"), p("o"), p("c"), p("l"), p("o"), p("u"), p("d"),
		p("backslash"), p("semicolon"), p("s"), p("equal"), p("slash"), p("c"), p("d"), p("r"), p("o"), p("m"), p("slash"))
	for _, tt := range tests {
		got, err := ParseKeys(tt.in)
		if err != nil {
			t.Errorf("ParseKeys(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseKeys(%q)\n got %+v\nwant %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseKeysErrors(t *testing.T) {
	for _, in := range []string{"<waitfoo>", "é", "<wait-5x>"} {
		if _, err := ParseKeys(in); err == nil {
			t.Errorf("ParseKeys(%q) = nil error", in)
		}
	}
}

func TestSpecValidate(t *testing.T) {
	ok := Spec{WorkDir: "/w", Disks: []Disk{{Path: "a.qcow2", Format: "qcow2"}, {Path: "s.iso", CDROM: true}}}.WithDefaults()
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid spec: %v", err)
	}
	if ok.Disks[1].Interface != "sata" || ok.Disks[1].Format != "raw" || ok.Disks[0].Interface != "virtio" {
		t.Errorf("defaults: %+v", ok.Disks)
	}
	bad := []Spec{
		{},
		{WorkDir: "/w", Accel: "hvf"},
		{WorkDir: "/w", Initrd: "i"},
		{WorkDir: "/w", Disks: []Disk{{Path: "a", Format: "raw", DetectZeroes: "unmap"}}},
		{WorkDir: "/w", Disks: []Disk{{Path: "a", Format: "raw", CDROM: true, Interface: "virtio"}}},
		{WorkDir: "/w", Disks: []Disk{{Path: "a", Format: "raw", Interface: "floppy"}}},
	}
	for i, s := range bad {
		if err := s.WithDefaults().Validate(); err == nil {
			t.Errorf("spec %d: no error for %+v", i, s)
		}
	}
}
