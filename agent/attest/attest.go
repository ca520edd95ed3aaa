// Package attest gets SEV-SNP attestation reports inside the guest
// (through the kernel's configfs-tsm report interface), reads HOST_DATA for
// the policy binding, and serves the workload evidence endpoint. Every report's REPORT_DATA is built by
// confguest/agent/api/evidence: it names the report's purpose and the
// policy in force.
package attest

import (
	"context"
	"errors"
	"fmt"

	"confguest/agent/api/evidence"
)

// ErrNoDevice reports a guest without an SEV-SNP device.
var ErrNoDevice = errors.New("no SEV-SNP device")

// QuoteProvider returns an extended SEV-SNP report (the report followed by
// the certificate table) for a REPORT_DATA value. The guest's configfs-tsm
// interface (OpenDevice) and go-sev-guest's testing fakes implement it.
type QuoteProvider interface {
	GetRawQuote(reportData [64]byte) ([]byte, error)
}

// OpenDevice returns the guest's SEV-SNP quote provider: configfs-tsm
// (/sys/kernel/config/tsm/report) with the report provider sev_guest.
//
// The agent used go-sev-guest's client for this, which also falls back to
// the /dev/sev-guest ioctls; that fallback is gone with the library (its
// abi package, protobuf messages, logger and UUID package: 0.15 MB of the
// agent). The guest kernel (kernelcfg: CONFIG_SEV_GUEST, CONFIG_TSM_REPORTS)
// registers the SEV-SNP guest driver with configfs-tsm whenever the driver
// binds, and init mounts configfs, so a guest with /dev/sev-guest also has
// the configfs-tsm provider; a kernel built without CONFIG_TSM_REPORTS
// could not attest.
func OpenDevice() (QuoteProvider, error) {
	qp, err := openSystemDevice()
	if err != nil {
		return nil, fmt.Errorf("open SEV-SNP device: %w: configfs-tsm (/sys/kernel/config/tsm/report) with provider sev_guest: %w: "+
			"boot the guest as an SEV-SNP VM (a guest booted with confguest.tee=none cannot attest)", ErrNoDevice, err)
	}
	return qp, nil
}

// Evidence is an extended attestation report.
type Evidence struct {
	Report       []byte // the signed report, ReportSize bytes
	Certificates []byte // the certificate table (may be empty)
}

// Raw returns the report followed by the certificate table, as GetReport
// sends it and confguest verify reads it.
func (e Evidence) Raw() []byte { return append(append([]byte(nil), e.Report...), e.Certificates...) }

// Split separates a raw extended report into report and certificate
// table.
func Split(raw []byte) (Evidence, error) {
	if len(raw) < ReportSize {
		return Evidence{}, fmt.Errorf("extended report: %d bytes, shorter than a %d-byte SEV-SNP report", len(raw), ReportSize)
	}
	return Evidence{Report: raw[:ReportSize:ReportSize], Certificates: raw[ReportSize:]}, nil
}

// Attester gets reports from one quote provider. The zero value (no
// provider) fails every call with ErrNoDevice.
type Attester struct {
	qp QuoteProvider
}

// New returns an attester over qp; qp nil means a guest without SEV-SNP.
func New(qp QuoteProvider) *Attester { return &Attester{qp: qp} }

// Report returns a fresh extended report for purpose p, under the policy
// whose SHA-256 is policy (evidence.NoPolicy while none is installed),
// over the caller's data: REPORT_DATA = evidence.ReportData(p, policy,
// data). It is the only way the agent gets a report, so every report it
// produces names its purpose and the policy in force.
func (a *Attester) Report(ctx context.Context, p evidence.Purpose, policy [32]byte, data []byte) (Evidence, error) {
	if a == nil || a.qp == nil {
		return Evidence{}, fmt.Errorf("get SEV-SNP report: %w: this guest was booted with confguest.tee=none", ErrNoDevice)
	}
	if err := ctx.Err(); err != nil {
		return Evidence{}, err
	}
	reportData := evidence.ReportData(p, policy, data)
	raw, err := a.qp.GetRawQuote(reportData)
	if err != nil {
		return Evidence{}, fmt.Errorf("get SEV-SNP report: %w", err)
	}
	ev, err := Split(raw)
	if err != nil {
		return Evidence{}, fmt.Errorf("get SEV-SNP report: %w", err)
	}
	got, err := reportField(ev.Report, reportDataOffset, len(reportData))
	if err != nil {
		return Evidence{}, fmt.Errorf("get SEV-SNP report: %w", err)
	}
	if string(got) != string(reportData[:]) {
		return Evidence{}, errors.New("get SEV-SNP report: the report's REPORT_DATA is not the one requested")
	}
	return ev, nil
}

// HostData returns HOST_DATA from a fresh report: the SHA-256 of the
// policy the VM was launched for. It implements policy.HostDataSource.
func (a *Attester) HostData(ctx context.Context) ([32]byte, error) {
	var hd [32]byte
	ev, err := a.Report(ctx, evidence.HostDataRead, evidence.NoPolicy, nil)
	if err != nil {
		return hd, err
	}
	b, err := reportField(ev.Report, hostDataOffset, len(hd))
	if err != nil {
		return hd, fmt.Errorf("read HOST_DATA: %w", err)
	}
	copy(hd[:], b)
	return hd, nil
}
