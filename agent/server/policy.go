package server

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	agentv1 "confguest/agent/api/v1"
	"confguest/agent/attest"
	"confguest/agent/policy"
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

// addAttestation adds the evidence endpoint's socket to the spec of a
// container whose policy entry allows attestation (as a read-only bind
// mount at attest.ContainerSocketPath), after the policy checked the
// spec. Other specs stay unchanged.
func (s *service) addAttestation(id string, sp *specs.Spec) {
	if s.gate == nil || s.evidence == "" {
		return
	}
	if c, ok := s.gate.Admitted(id); !ok || !c.Attestation {
		return
	}
	sp.Mounts = append(sp.Mounts, specs.Mount{Destination: attest.ContainerSocketPath, Type: "bind", Source: s.evidence, Options: []string{"bind", "ro"}})
}

func (s *service) SetPolicy(ctx context.Context, r *agentv1.SetPolicyRequest) (*agentv1.SetPolicyResponse, error) {
	if s.gate == nil {
		return nil, fmt.Errorf("set policy: %w: start the agent with a required policy", ErrNoPolicyGate)
	}
	_, replacing := s.gate.Installed()
	if err := s.gate.Install(ctx, r.GetPolicy()); err != nil {
		return nil, err
	}
	return &agentv1.SetPolicyResponse{Sha256: policy.HashHex(r.GetPolicy()), Bound: s.tee == TEESNP && !replacing}, nil
}

func (s *service) GetReport(ctx context.Context, r *agentv1.GetReportRequest) (*agentv1.GetReportResponse, error) {
	if len(r.GetReportData()) > 64 {
		return nil, fmt.Errorf("report_data: %w: %d bytes, at most 64: hash longer data (e.g. SHA-512)", ErrInvalidRequest, len(r.GetReportData()))
	}
	var rd [64]byte
	copy(rd[:], r.GetReportData())
	ev, err := s.attester.Report(ctx, rd)
	if err != nil {
		return nil, err
	}
	return &agentv1.GetReportResponse{ExtendedReport: ev.Raw()}, nil
}
