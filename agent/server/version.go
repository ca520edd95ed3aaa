package server

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
)

// AgentVersion is the agent's release version.
const AgentVersion = "0.1.0"

// APIVersion names the API package the agent serves.
const APIVersion = "confguest.agent.v1"

// TEE types reported by Version.
const (
	TEESNP  = "snp"
	TEENone = "none"
)

// ParseTEE reads confguest.tee= from a kernel command line: "snp" when
// absent, "none" for a guest booted without SEV-SNP (measured, so a host
// cannot switch it silently).
func ParseTEE(cmdline string) (string, error) {
	tee := TEESNP
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, "confguest.tee="); ok {
			tee = v
		}
	}
	switch tee {
	case TEESNP, TEENone:
		return tee, nil
	}
	return "", fmt.Errorf("kernel command line confguest.tee=%q: %w: use snp or none", tee, ErrBadTEE)
}

// fileDigest returns the hex SHA-256 of the file at path.
func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
