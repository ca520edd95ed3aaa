package verify

import (
	"context"
	"crypto/sha256"
	"strings"
	"testing"

	"confguest/agent/api/evidence"
)

// TestReportDataPurpose checks REPORT_DATA against purpose, policy in
// force and caller data, and the replacement rule: each refusal names the
// field and says what the report is instead.
func TestReportDataPurpose(t *testing.T) {
	s, roots := signer(t, false), testRoots(t)
	launch := []byte(`{"version":1,"agent":{"replace_policy":true}}` + "\n")
	final := []byte(`{"version":1,"agent":{"get_report":true}}` + "\n")
	chain := []byte(`{"version":1,"agent":{"replace_policy":true,"get_report":true}}` + "\n")
	runtime := []byte("workload nonce and key")
	h := func(doc []byte) [32]byte { return sha256.Sum256(doc) }
	tests := []struct {
		name        string
		launch      []byte // default testPolicy
		purpose     evidence.Purpose
		policy      [32]byte // policy the report names
		raw         bool     // REPORT_DATA = the data itself
		data        []byte   // the report's data; default: exp's
		expect      func(*Expected)
		wantField   string // "" accepted
		wantMsg     string
		wantInForce string
	}{
		{name: "host report", purpose: evidence.HostReport, policy: h(testPolicy), wantInForce: "the launch policy"},
		{name: "host report of a fresh guest", purpose: evidence.HostReport, policy: evidence.NoPolicy, wantInForce: "no policy installed yet"},
		{name: "workload evidence", purpose: evidence.WorkloadEvidence, policy: h(testPolicy), data: runtime,
			expect: func(e *Expected) { e.Purpose, e.Data = evidence.WorkloadEvidence, runtime }, wantInForce: "the launch policy"},
		{name: "workload evidence as a host report", purpose: evidence.WorkloadEvidence, policy: h(testPolicy),
			wantField: FieldReportData, wantMsg: "the report is a workload-evidence, refused as host-report"},
		{name: "host report as workload evidence", purpose: evidence.HostReport, policy: h(testPolicy), data: runtime,
			expect: func(e *Expected) { e.Purpose, e.Data = evidence.WorkloadEvidence, runtime }, wantField: FieldReportData, wantMsg: "the report is a host-report, refused as workload-evidence"},
		{name: "workload evidence without a policy", purpose: evidence.WorkloadEvidence, policy: evidence.NoPolicy, data: runtime,
			expect: func(e *Expected) { e.Purpose, e.Data = evidence.WorkloadEvidence, runtime }, wantField: FieldReportData, wantMsg: "names no policy as in force"},
		{name: "caller data signed as given", raw: true, wantField: FieldReportData, wantMsg: "REPORT_DATA is the caller data itself"},
		{name: "other data", purpose: evidence.HostReport, policy: h(testPolicy), data: []byte("stale nonce"), wantField: FieldReportData, wantMsg: "another purpose, policy in force or data"},
		{name: "replaceable launch policy", launch: launch, purpose: evidence.HostReport, policy: h(launch),
			wantField: FieldPolicyInForce, wantMsg: "--policy-in-force FILE"},
		{name: "replaceable launch policy, replacement allowed", launch: launch, purpose: evidence.HostReport, policy: h(launch),
			expect: func(e *Expected) { e.AllowPolicyReplacement = true }, wantInForce: "the launch policy"},
		{name: "replaced, replacement allowed but not named", launch: launch, purpose: evidence.HostReport, policy: h(final),
			expect: func(e *Expected) { e.AllowPolicyReplacement = true }, wantField: FieldReportData, wantMsg: "under the launch policy"},
		{name: "replacement named", launch: launch, purpose: evidence.WorkloadEvidence, policy: h(final), data: runtime,
			expect: func(e *Expected) { e.Purpose, e.Data, e.PolicyInForce = evidence.WorkloadEvidence, runtime, final }, wantInForce: "the policy in force given"},
		{name: "replacement named, launch policy in force", launch: launch, purpose: evidence.WorkloadEvidence, policy: h(launch), data: runtime,
			expect: func(e *Expected) { e.Purpose, e.Data, e.PolicyInForce = evidence.WorkloadEvidence, runtime, final }, wantField: FieldReportData, wantMsg: "names the launch policy"},
		{name: "replacement that is replaceable", launch: launch, purpose: evidence.HostReport, policy: h(chain),
			expect: func(e *Expected) { e.PolicyInForce = chain }, wantField: FieldPolicyInForce, wantMsg: "allows replacing it too"},
		{name: "replacement that is replaceable, allowed", launch: launch, purpose: evidence.HostReport, policy: h(chain),
			expect: func(e *Expected) { e.PolicyInForce, e.AllowPolicyReplacement = chain, true }, wantInForce: "the policy in force given"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			exp := expected()
			if tc.launch != nil {
				exp.Policy = tc.launch
			}
			if tc.expect != nil {
				tc.expect(&exp)
			}
			data := exp.Data
			if tc.data != nil {
				data = tc.data
			}
			f := goodFields()
			hd := h(exp.Policy)
			f.hostData = hd[:]
			rd := evidence.ReportData(tc.purpose, tc.policy, data)
			f.reportData = rd[:]
			if tc.raw {
				f.reportData = make([]byte, 64)
				copy(f.reportData, data)
			}
			res, err := Report(context.Background(), extendedReport(t, s, f), exp, roots)
			if err != nil {
				t.Fatalf("Report(%s) = %v", tc.name, err)
			}
			if tc.wantField == "" {
				if !res.OK || !strings.HasPrefix(res.PolicyInForce, tc.wantInForce) {
					t.Errorf("Report(%s) = ok %v, violations %v, policy in force %q, want accepted naming %q", tc.name, res.OK, res.Violations, res.PolicyInForce, tc.wantInForce)
				}
				return
			}
			if res.OK || len(res.Violations) != 1 || res.Violations[0].Field != tc.wantField || !strings.Contains(res.Violations[0].Message, tc.wantMsg) {
				t.Errorf("Report(%s) = ok %v, violations %v, want one %s violation saying %q", tc.name, res.OK, res.Violations, tc.wantField, tc.wantMsg)
			}
		})
	}
}
