package server

import (
	"errors"
	"testing"

	"confguest/init/cmdline"
)

// TestGuestTEE checks that the agent reads confguest.tee as PID 1 does
// and refuses tee=none on a guest with an SEV-SNP device.
func TestGuestTEE(t *testing.T) {
	none := func() (string, bool) { return "", false }
	snp := func() (string, bool) { return "/dev/sev-guest", true }
	tests := []struct {
		cmdline string
		probe   SNPDeviceProbe
		want    string
		wantErr error
	}{
		{"console=ttyS0", none, TEESNP, nil},
		{"", snp, TEESNP, nil},
		{"console=ttyS0 confguest.tee=none quiet", none, TEENone, nil},
		{"confguest.tee=snp", snp, TEESNP, nil},
		{"xconfguest.tee=none", none, TEESNP, nil},
		{"confguest.tee=none", snp, "", ErrTEEMismatch},
		{"confguest.tee=none confguest.tee=snp", none, "", cmdline.ErrDuplicate},
		{"confguest.tee=snp confguest.tee=none", none, "", cmdline.ErrDuplicate},
		{"confguest.tee=snp -- confguest.tee=none", none, TEESNP, nil},
		{"confguest.tee=tdx", none, "", cmdline.ErrInvalid},
		{"confguest.tee=", none, "", cmdline.ErrInvalid},
		{"confguest.tea=none", none, "", cmdline.ErrUnknownKey},
	}
	for _, tc := range tests {
		t.Run(tc.cmdline, func(t *testing.T) {
			got, err := guestTEE(tc.cmdline, tc.probe)
			if got != tc.want || !errors.Is(err, tc.wantErr) {
				t.Fatalf("guestTEE(%q) = %q, %v, want %q, %v", tc.cmdline, got, err, tc.want, tc.wantErr)
			}
		})
	}
}
