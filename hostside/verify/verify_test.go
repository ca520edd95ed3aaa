package verify

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	sevtest "github.com/google/go-sev-guest/testing"
	"github.com/google/go-sev-guest/verify/trust"

	"confguest/agent/api/evidence"
)

var (
	testPolicy      = []byte(`{"version":1}` + "\n")
	testMeasurement = bytes.Repeat([]byte{0xa5}, abi.MeasurementSize)
	testNonce       = []byte("verifier nonce")
	productLine     = "Milan"
)

// reportFields are the fields a test report carries.
type reportFields struct {
	measurement, hostData, reportData []byte
	debug                             bool
}

func goodFields() reportFields {
	h := sha256.Sum256(testPolicy)
	rd := evidence.ReportData(evidence.HostReport, h, testNonce)
	return reportFields{measurement: testMeasurement, hostData: h[:], reportData: rd[:]}
}

// signer returns a go-sev-guest test signer: the library's default test
// AMD chain, or (other) a chain with freshly generated keys.
func signer(t *testing.T, other bool) *sevtest.AmdSigner {
	t.Helper()
	now := time.Now()
	if !other {
		s, err := sevtest.DefaultTestOnlyCertChain("Milan-B1", now)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ark, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ask, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	vcek, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys := sevtest.DefaultAmdKeys()
	keys.Ark, keys.Ask, keys.Vcek = ark, ask, vcek
	b := &sevtest.AmdSignerBuilder{Keys: keys, ProductName: "Milan-B1", CSPID: "other",
		ArkCreationTime: now, AskCreationTime: now, AsvkCreationTime: now, VcekCreationTime: now, VlekCreationTime: now}
	s, err := b.TestOnlyCertChain()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// extendedReport returns a report with fields f signed by s through
// go-sev-guest's fake quote provider, followed by its certificate table.
func extendedReport(t *testing.T, s *sevtest.AmdSigner, f reportFields) []byte {
	t.Helper()
	var rd [64]byte
	copy(rd[:], f.reportData)
	raw := sevtest.CreateRawReport(&sevtest.TestReportOptions{ReportData: rd[:]})
	binary.LittleEndian.PutUint64(raw[0x08:], abi.SnpPolicyToBytes(abi.SnpPolicy{SMT: true, Debug: f.debug}))
	copy(raw[0x90:0xC0], f.measurement)
	copy(raw[0xC0:0xE0], f.hostData)
	qp, err := sevtest.TcQuoteProvider([]sevtest.TestCase{{Input: rd, Output: raw}},
		&sevtest.DeviceOptions{Now: time.Now(), Signer: s, Product: abi.DefaultSevProduct()})
	if err != nil {
		t.Fatal(err)
	}
	q, err := qp.GetRawQuote(rd)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// testRoots trusts the default go-sev-guest test chain.
func testRoots(t *testing.T) Option {
	s := signer(t, false)
	r := trust.AMDRootCertsProduct(productLine)
	r.ProductCerts = &trust.ProductCerts{Ark: s.Ark, Ask: s.Ask}
	return WithTrustedRoots(map[string][]*trust.AMDRootCerts{productLine: {r}})
}

func expected() Expected {
	return Expected{
		Measurements: []Measurement{{Name: "given", Value: testMeasurement}},
		Policy:       testPolicy,
		Purpose:      evidence.HostReport,
		Data:         testNonce,
	}
}

func TestReport(t *testing.T) {
	good := signer(t, false)
	roots := testRoots(t)
	changedPolicy := bytes.Clone(testPolicy)
	changedPolicy[len(changedPolicy)-1] = ' ' // the same policy, another hash
	tests := []struct {
		name       string
		signer     *sevtest.AmdSigner
		fields     func(*reportFields)
		expect     func(*Expected)
		opts       []Option
		wantFields []string // violations, in order; none: accepted
	}{
		{name: "matching", signer: good},
		{name: "matching, measurement.json with two launch paths", signer: good, expect: func(e *Expected) {
			e.Measurements = []Measurement{{Name: "qemu_ovmf", Value: make([]byte, 48)}, {Name: "cloud_hypervisor_igvm", Value: testMeasurement}}
		}},
		{name: "policy with one changed byte", signer: good, expect: func(e *Expected) { e.Policy = changedPolicy }, wantFields: []string{FieldHostData, FieldReportData}},
		{name: "another chain", signer: signer(t, true), wantFields: []string{FieldSignature}},
		{name: "embedded AMD roots do not trust the test chain", signer: good, opts: []Option{}, wantFields: []string{FieldSignature}},
		{name: "wrong measurement", signer: good, fields: func(f *reportFields) { f.measurement = bytes.Repeat([]byte{1}, 48) }, wantFields: []string{FieldMeasurement}},
		{name: "wrong host data", signer: good, fields: func(f *reportFields) { f.hostData = make([]byte, 32) }, wantFields: []string{FieldHostData}},
		{name: "wrong report data", signer: good, fields: func(f *reportFields) { f.reportData = make([]byte, 64) }, wantFields: []string{FieldReportData}},
		{name: "report data not checked", signer: good, fields: func(f *reportFields) { f.reportData = make([]byte, 64) }, expect: func(e *Expected) { e.Data = nil }},
		{name: "debug bit", signer: good, fields: func(f *reportFields) { f.debug = true }, wantFields: []string{FieldDebug}},
		{name: "debug bit allowed", signer: good, fields: func(f *reportFields) { f.debug = true }, expect: func(e *Expected) { e.AllowDebug = true }},
		{name: "below minimum TCB", signer: good, expect: func(e *Expected) { e.MinimumTCB = &kds.TCBParts{SnpSpl: 8} }, wantFields: []string{FieldTCB}},
		{name: "every violation at once", signer: good, fields: func(f *reportFields) {
			f.measurement, f.hostData, f.reportData, f.debug = make([]byte, 48), make([]byte, 32), make([]byte, 64), true
		}, wantFields: []string{FieldDebug, FieldHostData, FieldMeasurement, FieldReportData}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := goodFields()
			if tc.fields != nil {
				tc.fields(&f)
			}
			exp := expected()
			if tc.expect != nil {
				tc.expect(&exp)
			}
			opts := []Option{roots}
			if tc.opts != nil {
				opts = tc.opts
			}
			ext := extendedReport(t, tc.signer, f)
			res, err := Report(context.Background(), ext, exp, opts...)
			if err != nil {
				t.Fatalf("Report(%s) = %v", tc.name, err)
			}
			t.Logf("violations: %v", res.Violations)
			var got []string
			for _, v := range res.Violations {
				got = append(got, v.Field)
			}
			if strings.Join(got, " ") != strings.Join(tc.wantFields, " ") || res.OK != (len(tc.wantFields) == 0) {
				t.Errorf("Report(%s) = ok %v, violations %v, want %v", tc.name, res.OK, res.Violations, tc.wantFields)
			}
		})
	}
}

func TestReportBadInput(t *testing.T) {
	ext := extendedReport(t, signer(t, false), goodFields())
	tests := []struct {
		name    string
		ext     []byte
		exp     func(*Expected)
		wantErr string
	}{
		{"short report", ext[:100], nil, "100 bytes"},
		{"no measurement", ext, func(e *Expected) { e.Measurements = nil }, "no expected measurement"},
		{"short measurement", ext, func(e *Expected) { e.Measurements[0].Value = []byte{1} }, "96 hex digits"},
		{"no policy", ext, func(e *Expected) { e.Policy = nil }, "no policy"},
		{"host report data over 64 bytes", ext, func(e *Expected) { e.Data = make([]byte, 65) }, "at most 64"},
		{"no purpose", ext, func(e *Expected) { e.Purpose = "" }, "want host-report or workload-evidence"},
		{"internal purpose", ext, func(e *Expected) { e.Purpose = evidence.HostDataRead }, "want host-report or workload-evidence"},
		{"launch policy not a policy", ext, func(e *Expected) { e.Policy = []byte("{}") }, "launch policy"},
		{"policy in force without replacement", ext, func(e *Expected) { e.PolicyInForce = testPolicy }, "drop --policy-in-force"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			exp := expected()
			if tc.exp != nil {
				tc.exp(&exp)
			}
			_, err := Report(context.Background(), tc.ext, exp)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Report(%s) = %v, want an error with %q", tc.name, err, tc.wantErr)
			}
		})
	}
}

// TestReportWithoutCertificates checks a bare report: without a VCEK the
// signature cannot be checked, but the fields still are; a VCEK copy
// given as an option restores the full check.
func TestReportWithoutCertificates(t *testing.T) {
	s := signer(t, false)
	ext := extendedReport(t, s, goodFields())
	bare := ext[:abi.ReportSize]
	res, err := Report(context.Background(), bare, expected(), testRoots(t))
	if err != nil {
		t.Fatal(err)
	}
	if res.OK || len(res.Violations) != 1 || res.Violations[0].Field != FieldSignature || !strings.Contains(res.Violations[0].Message, "--vcek") {
		t.Errorf("Report(bare) = %+v, want only a SIGNATURE violation suggesting --vcek", res.Violations)
	}
	res, err = Report(context.Background(), bare, expected(), testRoots(t), WithVCEK(s.Vcek.Raw))
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK {
		t.Errorf("Report(bare, WithVCEK) = %+v, want accepted", res.Violations)
	}
}
