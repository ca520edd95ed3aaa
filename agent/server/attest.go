package server

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"confguest/agent/api/evidence"
	agentv1 "confguest/agent/api/v1/wire"
	"confguest/agent/attest"
	"confguest/agent/request"
)

// openAttester returns the attester of a guest with TEE tee: the quote
// provider of cfg, or the SEV-SNP device (configfs-tsm, then
// /dev/sev-guest) with confguest.tee=snp. A guest with tee=none gets an
// attester that fails every call with attest.ErrNoDevice. An SNP guest
// without the device is an error only when the policy must be bound.
func openAttester(cfg Config, tee string, log *slog.Logger) (*attest.Attester, error) {
	if cfg.QuoteProvider != nil {
		return attest.New(cfg.QuoteProvider), nil
	}
	if tee != TEESNP {
		return attest.New(nil), nil
	}
	qp, err := attest.OpenDevice()
	if err != nil {
		if cfg.RequirePolicy {
			return nil, fmt.Errorf("confguest.tee=snp: %w", err)
		}
		log.Warn("no SEV-SNP device: attestation calls will fail", "err", err)
		return attest.New(nil), nil
	}
	return attest.New(qp), nil
}

// evidenceSocket is the path of the workload evidence endpoint, or "".
func evidenceSocket(cfg Config) string {
	switch cfg.EvidenceSocket {
	case "-":
		return ""
	case "":
		return filepath.Join(cfg.StateDir, "shared", filepath.Base(attest.SocketPath))
	}
	return cfg.EvidenceSocket
}

// policyInForce returns the SHA-256 of the installed policy, or
// evidence.NoPolicy before one is installed (and in an agent without a
// policy gate). Every report the agent produces names it.
func (s *service) policyInForce() [32]byte {
	var h [32]byte
	if s.gate == nil {
		return evidence.NoPolicy
	}
	hx, ok := s.gate.Installed()
	if !ok {
		return evidence.NoPolicy
	}
	if n, err := hex.Decode(h[:], []byte(hx)); err != nil || n != len(h) {
		panic(fmt.Sprintf("policy gate: installed policy hash %q is not 64 hex digits", hx))
	}
	return h
}

// addAttestation adds the evidence endpoint's socket to the spec of a
// container whose policy entry allows attestation (as a read-only bind
// mount at attest.ContainerSocketPath), after the policy checked the
// spec. Other specs stay unchanged.
func (s *service) addAttestation(r *request.CreateContainer) {
	if s.gate == nil || s.evidence == "" || !r.Attestation {
		return
	}
	r.Spec.Mounts = append(r.Spec.Mounts, specs.Mount{Destination: attest.ContainerSocketPath, Type: "bind", Source: s.evidence, Options: []string{"bind", "ro"}})
}

// GetReport returns a host report: REPORT_DATA =
// evidence.ReportData(evidence.HostReport, policy in force, report_data),
// never report_data itself, so that no host request yields a report a
// relying party would take for workload evidence. The policy gate allows
// it before any policy and then only under agent.get_report.
func (s *service) GetReport(ctx context.Context, r *agentv1.GetReportRequest) (*agentv1.GetReportResponse, error) {
	if len(r.GetReportData()) > evidence.MaxHostData {
		return nil, fmt.Errorf("report_data: %w: %d bytes, at most %d: hash longer data (e.g. SHA-512)", ErrInvalidRequest, len(r.GetReportData()), evidence.MaxHostData)
	}
	ev, err := s.attester.Report(ctx, evidence.HostReport, s.policyInForce(), r.GetReportData())
	if err != nil {
		return nil, err
	}
	return &agentv1.GetReportResponse{ExtendedReport: ev.Raw()}, nil
}
