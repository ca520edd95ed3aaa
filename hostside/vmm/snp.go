package vmm

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// SNPParam is the kvm_amd module parameter that says whether KVM runs SEV-SNP guests
// ("Y" or "1" when the firmware, the host kernel and the module all enabled it).
const SNPParam = "/sys/module/kvm_amd/parameters/sev_snp"

// ErrNoSNP means the host cannot run SEV-SNP guests.
var ErrNoSNP = errors.New("no SEV-SNP on this host")

// snpFix is what a user without SEV-SNP can do.
const snpFix = "SEV-SNP needs an AMD EPYC host (Milan or later) with SNP enabled in its firmware and kvm_amd loaded with sev_snp=1; run without --snp here"

// ProbeSNP reports whether KVM on this host runs SEV-SNP guests, by reading the kvm_amd
// parameter at param (SNPParam when ""). It only reads a file: call it before anything
// is built or started.
func ProbeSNP(param string) error {
	if param == "" {
		param = SNPParam
	}
	b, err := os.ReadFile(param)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w (%s: not present: kvm_amd is not loaded or has no SEV-SNP support): %s", ErrNoSNP, param, snpFix)
		}
		return fmt.Errorf("%w (%s: %w): %s", ErrNoSNP, param, err, snpFix)
	}
	switch v := strings.TrimSpace(string(b)); v {
	case "Y", "y", "1":
		return nil
	default:
		return fmt.Errorf("%w (%s: %q): %s", ErrNoSNP, param, v, snpFix)
	}
}

// hostDataBytes decodes Config.HostData (64 hex digits).
func hostDataBytes(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("host data %q: want 64 hex digits (a SHA-256, e.g. confguest policy hash POLICY.json)", s)
	}
	return b, nil
}

// checkSNPConfig checks what every SEV-SNP launch needs from cfg.
func checkSNPConfig(cfg Config) error {
	if _, err := hostDataBytes(cfg.HostData); err != nil {
		return fmt.Errorf("SEV-SNP launch: %w", err)
	}
	return nil
}

// hostDataBase64 is the host data as QEMU's sev-snp-guest host-data property takes it.
func hostDataBase64(s string) (string, error) {
	b, err := hostDataBytes(s)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}
