// Package evidence defines REPORT_DATA of every SEV-SNP report the
// confguest agent produces. A report's REPORT_DATA is the only field that
// tells a relying party what the report is for, and the host can ask the
// guest for reports, so the agent never signs caller data as given: it
// signs a hash that names the report's purpose and the policy in force.
//
//	REPORT_DATA = SHA-512( len(label) ‖ label ‖ policy ‖ len(data) ‖ data )
//
// len(label) is one byte, label the purpose's ASCII label, policy the
// 32-byte SHA-256 of the policy in force (32 zero bytes while none is
// installed), len(data) an 8-byte big-endian byte count and data the
// caller's bytes (the host's nonce, a workload's runtime data). Every
// field has a fixed size or a length before it, so the encoding is
// prefix-free: two different (label, policy, data) never hash the same
// bytes, and no host request can yield the REPORT_DATA of workload
// evidence. The agent and the host's verifier share this package.
package evidence

import (
	"crypto/sha512"
	"encoding/binary"
	"fmt"
)

// Purpose is what a report is for; its value is the label hashed into
// REPORT_DATA (printable ASCII, at most 255 bytes).
type Purpose string

const (
	// HostReport labels a report the host asked for (GetReport), its
	// data the host's nonce.
	HostReport Purpose = "confguest host report v1"
	// WorkloadEvidence labels a report a workload asked for at the
	// evidence endpoint (GET /v1/evidence), its data the runtime data.
	WorkloadEvidence Purpose = "confguest workload evidence v1"
	// HostDataRead labels the report the agent reads HOST_DATA from to
	// bind the first policy (no policy, no data). It never leaves the
	// agent.
	HostDataRead Purpose = "confguest host data read v1"
)

// NoPolicy is the policy hash in REPORT_DATA while no policy is
// installed.
var NoPolicy [32]byte

// MaxHostData bounds the data of a host report (GetReport) in bytes.
const MaxHostData = 64

// names are the short names of the purposes a relying party can check.
var names = map[string]Purpose{"host-report": HostReport, "workload-evidence": WorkloadEvidence}

// Name returns the short name of p ("host-report", "workload-evidence"),
// or its label for a purpose without one.
func (p Purpose) Name() string {
	for n, q := range names {
		if q == p {
			return n
		}
	}
	return string(p)
}

// Checkable reports whether a relying party can check a report for p:
// HostReport and WorkloadEvidence.
func (p Purpose) Checkable() bool { return p == HostReport || p == WorkloadEvidence }

// ParsePurpose reads a checkable purpose by its short name.
func ParsePurpose(name string) (Purpose, error) {
	if p, ok := names[name]; ok {
		return p, nil
	}
	return "", fmt.Errorf("purpose %q: want host-report (GetReport) or workload-evidence (GET /v1/evidence)", name)
}

// ReportData returns the REPORT_DATA of a report for purpose p, under the
// policy whose SHA-256 is policy, over the caller's data.
func ReportData(p Purpose, policy [32]byte, data []byte) [64]byte {
	h := sha512.New()
	h.Write([]byte{byte(len(p))})
	h.Write([]byte(p))
	h.Write(policy[:])
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(data)))
	h.Write(n[:])
	h.Write(data)
	var rd [64]byte
	h.Sum(rd[:0])
	return rd
}
