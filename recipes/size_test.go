package recipes

import (
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr string // substring of the error; empty for success
	}{
		{in: "2GiB", want: 2 * GiB},
		{in: "2G", want: 2 * GiB},
		{in: "2g", want: 2 * GiB},
		{in: "2 GiB", want: 2 * GiB},
		{in: "512MiB", want: 512 * MiB},
		{in: "512M", want: 512 * MiB},
		{in: "1.5G", want: 1536 * MiB},
		{in: "1T", want: TiB},
		{in: "4096B", want: 4096},
		{in: "64K", want: 64 * KiB},
		{in: "0.5KiB", want: 512},
		{in: " 8GiB ", want: 8 * GiB},
		{in: "2048", wantErr: `"2048" has no unit; write 2048MiB or 2048GiB`},
		{in: "8GB", wantErr: `decimal unit (GB); ingot sizes are binary: write 8GiB (or 8G), which is 8×1024^3 bytes`},
		{in: "100MB", wantErr: `write 100MiB (or 100M), which is 100×1024^2 bytes`},
		{in: "2 gigs", wantErr: `"2 gigs" is not a size (unknown unit "gigs"); use a number with a unit`},
		{in: "two GiB", wantErr: `"two GiB" is not a size`},
		{in: "-1G", wantErr: "is not a size"},
		{in: "1.5B", wantErr: "is not a whole number of bytes"},
		{in: "99999999999T", wantErr: "is too large"},
		{in: "", wantErr: "is not a size"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSize(%q) = %d, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestFormatSizeRoundTrips(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{2 * GiB, "2GiB"},
		{1536 * MiB, "1536MiB"},
		{TiB, "1TiB"},
		{3 * KiB, "3KiB"},
		{1000, "1000B"},
		{0, "0B"},
	}
	for _, tt := range tests {
		got := FormatSize(tt.n)
		if got != tt.want {
			t.Errorf("FormatSize(%d) = %q, want %q", tt.n, got, tt.want)
		}
		back, err := ParseSize(got)
		if err != nil || back != tt.n {
			t.Errorf("ParseSize(FormatSize(%d)) = %d, %v", tt.n, back, err)
		}
	}
}
