package server

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
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

// TestExecutableDigest checks that the agent reports the image builder's record beside
// its executable when there is one, hashes the file when there is none, and refuses a
// record that holds no SHA-256.
func TestExecutableDigest(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "agent")
	if err := os.WriteFile(exe, []byte("agent binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("agent binary"))
	computed := hex.EncodeToString(sum[:])
	recorded := strings.Repeat("ab", sha256.Size) // differs from computed: shows which was used
	tests := []struct {
		name    string
		record  *string // nil: no record
		want    string
		wantErr string
	}{
		{"no record", nil, computed, ""},
		{"sha256sum format", ptr(recorded + "  agent\n"), recorded, ""},
		{"bare digest", ptr(recorded), recorded, ""},
		{"upper case", ptr(strings.ToUpper(recorded) + "\n"), recorded, ""},
		{"empty", ptr(""), "", "want a hex SHA-256"},
		{"short", ptr("abcd  agent\n"), "", "want a hex SHA-256"},
		{"not hex", ptr(strings.Repeat("zz", sha256.Size) + "  agent\n"), "", "want a hex SHA-256"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(exe + DigestSuffix)
			if tc.record != nil {
				if err := os.WriteFile(exe+DigestSuffix, []byte(*tc.record), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := executableDigest(exe)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), exe+DigestSuffix) {
					t.Fatalf("executableDigest = %q, %v, want an error naming %s and containing %q", got, err, exe+DigestSuffix, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("executableDigest = %q, %v, want %q", got, err, tc.want)
			}
		})
	}
}

func ptr(s string) *string { return &s }
