package hypervisor

import "testing"

func TestParseNames(t *testing.T) {
	tests := []struct {
		name    string
		parse   func(string) (string, error)
		in      string
		want    string
		wantErr string
	}{
		{"driver qemu", parseDriver, "qemu", "qemu", ""},
		{"driver libvirt", parseDriver, "libvirt", "libvirt", ""},
		{"driver unknown", parseDriver, "vbox", "", `"vbox": want qemu or libvirt`},
		{"driver empty", parseDriver, "", "", `"": want qemu or libvirt`},
		{"driver is case-sensitive", parseDriver, "QEMU", "", `"QEMU": want qemu or libvirt`},
		{"accel auto", parseAccel, "auto", "auto", ""},
		{"accel kvm", parseAccel, "kvm", "kvm", ""},
		{"accel tcg", parseAccel, "tcg", "tcg", ""},
		{"accel unknown", parseAccel, "hvf", "", `"hvf": want auto, kvm or tcg`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.parse(tt.in)
			switch {
			case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
				t.Errorf("parse(%q) = %q, %v; want error %q", tt.in, got, err, tt.wantErr)
			case tt.wantErr == "" && (err != nil || got != tt.want):
				t.Errorf("parse(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func parseDriver(s string) (string, error) {
	d, err := ParseDriverName(s)
	return string(d), err
}

func parseAccel(s string) (string, error) {
	a, err := ParseAccel(s)
	return string(a), err
}
