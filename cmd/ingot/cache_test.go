package main

import (
	"testing"
	"time"
)

func TestParseAge(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{in: "30d", want: 30 * 24 * time.Hour},
		{in: "0d", want: 0},
		{in: "0", want: 0},
		{in: "12h", want: 12 * time.Hour},
		{in: "90m", want: 90 * time.Minute},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "", wantErr: true},
		{in: "d", wantErr: true},
		{in: "-1d", wantErr: true},
		{in: "-5m", wantErr: true},
		{in: "1.5d", wantErr: true},
		{in: "2w", wantErr: true},
		{in: "30", wantErr: true},                      // no unit: days or seconds?
		{in: "99999999999d", wantErr: true},            // more than a time.Duration holds
		{in: "106751d", want: 106751 * 24 * time.Hour}, // the most it holds
	}
	for _, tt := range tests {
		got, err := parseAge(tt.in)
		switch {
		case tt.wantErr && err == nil:
			t.Errorf("parseAge(%q) = %v, want an error", tt.in, got)
		case !tt.wantErr && (err != nil || got != tt.want):
			t.Errorf("parseAge(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}
