// Package verify checks confguest attestation evidence on the host (or
// anywhere): the AMD signature chain with go-sev-guest's verify (roots
// embedded in the library, certificates from the extended report or a
// local copy, never the network) and the report's fields with its
// validate: MEASUREMENT, HOST_DATA = SHA-256(policy), the debug bit and a
// minimum TCB; and REPORT_DATA, recomputed with confguest/agent/api/evidence
// from the report's purpose, the policy in force and the caller data. It
// lists every violation, not just the first.
package verify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/validate"
	sevverify "github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"

	"confguest/agent/api/evidence"
)

// Fields a violation can name.
const (
	FieldSignature   = "SIGNATURE"
	FieldMeasurement = "MEASUREMENT"
	FieldHostData    = "HOST_DATA"
	FieldReportData  = "REPORT_DATA"
	FieldDebug       = "POLICY.DEBUG"
	FieldMigrateMA   = "POLICY.MIGRATE_MA"
	FieldTCB         = "TCB"
	FieldReport      = "REPORT"
)

// Measurement is one acceptable launch measurement.
type Measurement struct {
	Name  string // where it came from, e.g. qemu_ovmf or "--measurement"
	Value []byte // 48 bytes
}

// Expected is what a report must show.
type Expected struct {
	// Measurements lists the acceptable launch digests (one per launch
	// path); the report's MEASUREMENT must be one of them. Required.
	Measurements []Measurement
	// Policy is the exact policy document the guest was launched with;
	// HOST_DATA must be its SHA-256. Required.
	Policy []byte
	// Purpose is what the report must be for: evidence.HostReport (a
	// GetReport answer) or evidence.WorkloadEvidence (the in-guest
	// evidence endpoint). A report for another purpose is refused.
	Purpose evidence.Purpose
	// Data is the caller data the report was asked for over (the host's
	// nonce, the workload's runtime data): REPORT_DATA must be
	// evidence.ReportData(Purpose, policy in force, Data). Nil: REPORT_DATA
	// is not checked.
	Data []byte
	// PolicyInForce is the exact replacement policy the verifier accepts
	// as in force (the launch policy must allow replacement); REPORT_DATA
	// must name it. Nil: the launch policy must be in force (or, for a
	// host report, none yet).
	PolicyInForce []byte
	// AllowPolicyReplacement accepts a policy in force that lets the host
	// replace it. Without it such a policy is a violation.
	AllowPolicyReplacement bool
	// MinimumTCB, if not nil, is the component-wise minimum REPORTED_TCB.
	MinimumTCB *kds.TCBParts
	// AllowDebug accepts a guest whose policy lets the host debug it
	// (decrypt its memory). Never for production.
	AllowDebug bool
}

// Violation is one failed check.
type Violation struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (v Violation) String() string { return v.Field + ": " + v.Message }

// Summary is what the report says, for printing.
type Summary struct {
	Measurement string `json:"measurement"`
	HostData    string `json:"host_data"`
	ReportData  string `json:"report_data"`
	Debug       bool   `json:"debug"`
	Policy      string `json:"guest_policy"`
	ReportedTCB string `json:"reported_tcb"`
	VMPL        uint32 `json:"vmpl"`
	Version     uint32 `json:"version"`
	Signer      string `json:"signer"`
}

// Result is the verdict on one report.
type Result struct {
	OK bool `json:"ok"`
	// MatchedMeasurement names the expected measurement the report has.
	MatchedMeasurement string `json:"matched_measurement,omitempty"`
	PolicySHA256       string `json:"policy_sha256"`
	// Purpose is the short name of the purpose checked.
	Purpose string `json:"purpose"`
	// PolicyInForce says which policy REPORT_DATA names ("" when
	// REPORT_DATA was not checked or matches none).
	PolicyInForce string      `json:"policy_in_force,omitempty"`
	Report        Summary     `json:"report"`
	Violations    []Violation `json:"violations"`
}

// Option configures Report.
type Option func(*options)

type options struct {
	roots map[string][]*trust.AMDRootCerts
	now   time.Time
	vcek  []byte
}

// WithTrustedRoots replaces the AMD roots embedded in go-sev-guest (for
// tests with go-sev-guest's test chain). Keyed by product line.
func WithTrustedRoots(roots map[string][]*trust.AMDRootCerts) Option {
	return func(o *options) { o.roots = roots }
}

// WithNow sets the time at which certificates must be valid.
func WithNow(t time.Time) Option { return func(o *options) { o.now = t } }

// WithVCEK supplies the VCEK certificate (DER or PEM) when the extended
// report carries none, e.g. a copy kept from AMD's key distribution
// service for this chip and TCB.
func WithVCEK(cert []byte) Option { return func(o *options) { o.vcek = cert } }

// ErrInput reports evidence or expectations that cannot be checked at all.
var ErrInput = errors.New("cannot check")

// Report checks an extended report (the report, optionally followed by
// its certificate table). It returns an error only when the inputs cannot
// be checked; failed checks are the Result's violations.
func Report(ctx context.Context, extended []byte, exp Expected, opts ...Option) (*Result, error) {
	o := options{now: time.Now()}
	for _, opt := range opts {
		opt(&o)
	}
	if len(exp.Measurements) == 0 {
		return nil, fmt.Errorf("%w: no expected measurement: give one in hex or a build's measurement.json", ErrInput)
	}
	for _, m := range exp.Measurements {
		if len(m.Value) != abi.MeasurementSize {
			return nil, fmt.Errorf("%w: expected measurement %s: %d bytes, want %d (96 hex digits)", ErrInput, m.Name, len(m.Value), abi.MeasurementSize)
		}
	}
	if exp.Policy == nil {
		return nil, fmt.Errorf("%w: no policy: give the policy file the guest was launched with", ErrInput)
	}
	if !exp.Purpose.Checkable() {
		return nil, fmt.Errorf("%w: purpose %q: want host-report or workload-evidence", ErrInput, exp.Purpose)
	}
	if exp.Purpose == evidence.HostReport && len(exp.Data) > evidence.MaxHostData {
		return nil, fmt.Errorf("%w: host report data: %d bytes, GetReport takes at most %d", ErrInput, len(exp.Data), evidence.MaxHostData)
	}
	policies, replaceable, err := policyCheck(exp)
	if err != nil {
		return nil, err
	}
	att, err := parse(extended)
	if err != nil {
		return nil, err
	}
	if len(att.CertificateChain.GetVcekCert()) == 0 && o.vcek != nil {
		der, err := decodeCert(o.vcek)
		if err != nil {
			return nil, fmt.Errorf("%w: VCEK certificate: %w", ErrInput, err)
		}
		att.CertificateChain.VcekCert = der
	}
	rep := att.GetReport()
	policyHash := sha256.Sum256(exp.Policy)
	res := &Result{PolicySHA256: hex.EncodeToString(policyHash[:]), Purpose: exp.Purpose.Name(), Report: summarize(rep)}

	vopts := &sevverify.Options{DisableCertFetching: true, TrustedRoots: o.roots, Now: o.now}
	switch err := sevverify.SnpAttestationContext(ctx, att, vopts); {
	case err == nil:
	case len(att.CertificateChain.GetVcekCert()) == 0 && len(att.CertificateChain.GetVlekCert()) == 0:
		res.Violations = append(res.Violations, Violation{FieldSignature, "cannot check the signature: the report carries no VCEK or VLEK certificate: " +
			"give the VCEK for this chip and TCB (from AMD's key distribution service) with --vcek"})
	default:
		res.Violations = append(res.Violations, Violation{FieldSignature, "not signed by a genuine AMD SEV-SNP chain: " + err.Error()})
	}

	measurement := exp.Measurements[0].Value
	for _, m := range exp.Measurements {
		if bytes.Equal(m.Value, rep.GetMeasurement()) {
			measurement, res.MatchedMeasurement = m.Value, m.Name
		}
	}
	vo := &validate.Options{
		// Everything but debugging and a migration agent is acceptable.
		GuestPolicy: abi.SnpPolicy{SMT: true, Debug: exp.AllowDebug, CXLAllowed: true},
		Measurement: measurement,
		HostData:    policyHash[:],
		// The committed TCB may trail the current one (provisional
		// firmware); MinimumTCB bounds what the report claims.
		PermitProvisionalFirmware: true,
	}
	if exp.MinimumTCB != nil {
		vo.MinimumTCB = *exp.MinimumTCB
	}
	if len(att.CertificateChain.GetVcekCert()) == 0 && len(att.CertificateChain.GetVlekCert()) == 0 {
		// validate needs the endorsement certificate for the TCB checks;
		// without it only the field comparisons can run.
		res.Violations = append(res.Violations, compareFields(rep, vo)...)
	} else if err := validate.SnpAttestation(att, vo); err != nil {
		res.Violations = append(res.Violations, classify(err, res.MatchedMeasurement == "" && len(exp.Measurements) > 1, exp.Measurements)...)
	}
	if exp.Data != nil {
		p, v := checkReportData(rep.GetReportData(), exp, policies, exp.Policy)
		if v != nil {
			res.Violations = append(res.Violations, *v)
		} else {
			res.PolicyInForce = p.String()
		}
	}
	if replaceable != nil {
		res.Violations = append(res.Violations, *replaceable)
	}
	res.OK = len(res.Violations) == 0
	return res, nil
}

// parse reads an extended report into go-sev-guest's representation.
func parse(extended []byte) (*spb.Attestation, error) {
	if len(extended) < abi.ReportSize {
		return nil, fmt.Errorf("%w: report: %d bytes, an SEV-SNP report has %d: give the raw report (GetReport output), not hex or base64", ErrInput, len(extended), abi.ReportSize)
	}
	if len(extended) == abi.ReportSize {
		r, err := abi.ReportToProto(extended)
		if err != nil {
			return nil, fmt.Errorf("%w: report: %w", ErrInput, err)
		}
		return &spb.Attestation{Report: r, CertificateChain: &spb.CertificateChain{Extras: map[string][]byte{}}}, nil
	}
	att, err := abi.ReportCertsToProto(extended)
	if err != nil {
		return nil, fmt.Errorf("%w: extended report: %w", ErrInput, err)
	}
	return att, nil
}

func summarize(r *spb.Report) Summary {
	s := Summary{
		Measurement: hex.EncodeToString(r.GetMeasurement()),
		HostData:    hex.EncodeToString(r.GetHostData()),
		ReportData:  hex.EncodeToString(r.GetReportData()),
		Policy:      fmt.Sprintf("%#x", r.GetPolicy()),
		VMPL:        r.GetVmpl(),
		Version:     r.GetVersion(),
	}
	if p, err := abi.ParseSnpPolicy(r.GetPolicy()); err == nil {
		s.Debug = p.Debug
	}
	t := kds.DecomposeTCBVersion(kds.TCBVersion(r.GetReportedTcb()))
	s.ReportedTCB = FormatTCB(t)
	if info, err := abi.ParseSignerInfo(r.GetSignerInfo()); err == nil {
		s.Signer = info.SigningKey.String()
	}
	return s
}

// classify splits validate's combined error into one violation per
// failed check, named by the report field it is about.
func classify(err error, measurementSet bool, ms []Measurement) []Violation {
	var errs []error
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		errs = u.Unwrap()
	} else {
		errs = []error{err}
	}
	var out []Violation
	for _, e := range errs {
		msg := e.Error()
		field := FieldReport
		switch {
		case strings.Contains(msg, "MEASUREMENT"):
			field = FieldMeasurement
			if measurementSet {
				msg = fmt.Sprintf("report field MEASUREMENT is %s, want one of %s", measurementHex(msg), names(ms))
			}
		case strings.Contains(msg, "HOST_DATA"):
			field, msg = FieldHostData, msg+" (HOST_DATA must be the SHA-256 of the policy: launch the VM with host_data = confguest policy hash POLICY)"
		case strings.Contains(msg, "debug"):
			field, msg = FieldDebug, msg+": the host can decrypt this guest's memory"
		case strings.Contains(msg, "migration agent"):
			field = FieldMigrateMA
		case strings.Contains(msg, "TCB"):
			field = FieldTCB
		}
		out = append(out, Violation{field, msg})
	}
	return out
}

func measurementHex(msg string) string {
	if _, after, ok := strings.Cut(msg, "MEASUREMENT is "); ok {
		v, _, _ := strings.Cut(after, ".")
		return v
	}
	return "?"
}

func names(ms []Measurement) string {
	var b strings.Builder
	for i, m := range ms {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%s", m.Name, hex.EncodeToString(m.Value))
	}
	return b.String()
}

// compareFields checks the byte fields and the debug bit directly, for a
// report without certificates (its signature check has already failed).
func compareFields(r *spb.Report, vo *validate.Options) []Violation {
	var out []Violation
	check := func(field string, got, want []byte) {
		if want != nil && !bytes.Equal(got, want) {
			out = append(out, Violation{field, fmt.Sprintf("report field %s is %x, want %x", field, got, want)})
		}
	}
	check(FieldMeasurement, r.GetMeasurement(), vo.Measurement)
	check(FieldHostData, r.GetHostData(), vo.HostData)
	if p, err := abi.ParseSnpPolicy(r.GetPolicy()); err != nil {
		out = append(out, Violation{FieldReport, "guest policy: " + err.Error()})
	} else if p.Debug && !vo.GuestPolicy.Debug {
		out = append(out, Violation{FieldDebug, "found unauthorized debug capability: the host can decrypt this guest's memory"})
	}
	return out
}
