package server

import (
	"errors"
	"testing"
)

func TestParseTEE(t *testing.T) {
	tests := []struct {
		cmdline string
		want    string
		wantErr error
	}{
		{"console=ttyS0", TEESNP, nil},
		{"", TEESNP, nil},
		{"console=ttyS0 confguest.tee=none quiet", TEENone, nil},
		{"confguest.tee=snp", TEESNP, nil},
		{"confguest.tee=none confguest.tee=snp", TEESNP, nil},
		{"confguest.tee=tdx", "", ErrBadTEE},
		{"confguest.tee=", "", ErrBadTEE},
		{"xconfguest.tee=none", TEESNP, nil},
	}
	for _, tc := range tests {
		t.Run(tc.cmdline, func(t *testing.T) {
			got, err := ParseTEE(tc.cmdline)
			if got != tc.want || !errors.Is(err, tc.wantErr) {
				t.Fatalf("ParseTEE(%q) = %q, %v, want %q, %v", tc.cmdline, got, err, tc.want, tc.wantErr)
			}
		})
	}
}
