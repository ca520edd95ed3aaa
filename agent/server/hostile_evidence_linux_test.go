package server

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/verify/trust"
	"google.golang.org/grpc/codes"

	"confguest/agent/api/evidence"
	agentv1 "confguest/agent/api/v1"
	"confguest/agent/attest"
	"confguest/hostside/verify"
)

// Policies of the hostile-host evidence cases: what the VM is launched
// with, the replacement a relying party accepts, the permissive one the
// host installs instead, and a replacement that is itself replaceable.
var (
	launchReports     = []byte(`{"version":1,"agent":{"get_report":true}}` + "\n")
	launchNoReports   = []byte(`{"version":1}` + "\n")
	launchReplaceable = []byte(`{"version":1,"agent":{"replace_policy":true,"get_report":true}}` + "\n")
	acceptedFinal     = []byte(`{"version":1,"agent":{"get_report":true,"stats":false}}` + "\n")
	hostsChoice       = []byte(`{"version":1,"agent":{"get_report":true,"stats":true,"shutdown":true}}` + "\n")
	replaceableFinal  = []byte(`{"version":1,"agent":{"replace_policy":true,"get_report":true,"stats":false}}` + "\n")
)

// The key broker's runtime data (its nonce and the workload's key); the
// host wants a report that passes for workload evidence over it.
var brokerRuntime = []byte("broker nonce 8c1f2e|workload public key 04ab77")

// getEvidence asks the agent's evidence endpoint for workload evidence
// over runtime, as a container with attestation does, and returns the
// HTTP status and body.
func getEvidence(t *testing.T, ta *testAgent, runtime []byte) (int, []byte) {
	t.Helper()
	sock := filepath.Join(ta.stateDir, "shared", filepath.Base(attest.SocketPath))
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	var resp *http.Response
	var err error
	for range 100 { // the endpoint starts beside the API server
		if resp, err = hc.Get("http://guest" + attest.EvidencePath + "?runtime_data=" + base64.RawURLEncoding.EncodeToString(runtime)); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("GET evidence over %s = %v", sock, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// workloadEvidence returns the extended report of the endpoint's answer
// over runtime and the policy hash the answer names.
func workloadEvidence(t *testing.T, ta *testAgent, runtime []byte) ([]byte, string) {
	t.Helper()
	code, body := getEvidence(t, ta, runtime)
	var a struct {
		Report       []byte `json:"report"`
		Certificates []byte `json:"certificates"`
		Policy       string `json:"policy_sha256"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &a) != nil {
		t.Fatalf("GET evidence = %d %.300s, want 200 and the evidence", code, body)
	}
	return append(a.Report, a.Certificates...), a.Policy
}

// relyingParty checks ext the way a key broker does, with confguest's
// verifier: the guest image's MEASUREMENT (the fake device's, zero),
// HOST_DATA = SHA-256(launch), the test AMD chain, and what rp sets
// (purpose, caller data, the policy in force it accepts).
func relyingParty(t *testing.T, dev *snpDevice, ext, launch []byte, rp func(*verify.Expected)) *verify.Result {
	t.Helper()
	exp := verify.Expected{
		Measurements: []verify.Measurement{{Name: "image", Value: make([]byte, abi.MeasurementSize)}},
		Policy:       launch,
	}
	rp(&exp)
	r := trust.AMDRootCertsProduct("Milan")
	r.ProductCerts = &trust.ProductCerts{Ark: dev.signer.Ark, Ask: dev.signer.Ask}
	res, err := verify.Report(context.Background(), ext, exp, verify.WithTrustedRoots(map[string][]*trust.AMDRootCerts{"Milan": {r}}))
	if err != nil {
		t.Fatalf("verify.Report = %v", err)
	}
	return res
}

// workloadCheck is a relying party that wants workload evidence over
// brokerRuntime.
func workloadCheck(more func(*verify.Expected)) func(*verify.Expected) {
	return func(e *verify.Expected) {
		e.Purpose, e.Data = evidence.WorkloadEvidence, brokerRuntime
		if more != nil {
			more(e)
		}
	}
}

// attack is what a hostile host does to the agent: it returns the report
// it hands the relying party, or the agent's refusal.
type attack func(t *testing.T, ta *testAgent) ([]byte, error)

// hostReport installs docs in order (SetPolicy), then asks for a host
// report over data.
func hostReport(data []byte, docs ...[]byte) attack {
	return func(t *testing.T, ta *testAgent) ([]byte, error) {
		if err := setPolicies(t, ta, docs...); err != nil {
			return nil, err
		}
		r, err := ta.client.GetReport(ctx(t), &agentv1.GetReportRequest{ReportData: data})
		return r.GetExtendedReport(), err
	}
}

// evidenceUnder installs docs in order, then lets the workload fetch its
// evidence over brokerRuntime, which the host passes on.
func evidenceUnder(docs ...[]byte) attack {
	return func(t *testing.T, ta *testAgent) ([]byte, error) {
		if err := setPolicies(t, ta, docs...); err != nil {
			return nil, err
		}
		ext, _ := workloadEvidence(t, ta, brokerRuntime)
		return ext, nil
	}
}

// setPolicies sends each document with SetPolicy, in order.
func setPolicies(t *testing.T, ta *testAgent, docs ...[]byte) error {
	for i, d := range docs {
		if _, err := ta.client.SetPolicy(ctx(t), &agentv1.SetPolicyRequest{Policy: d}); err != nil {
			return fmt.Errorf("SetPolicy #%d: %w", i+1, err)
		}
	}
	return nil
}

// TestHostileEvidence runs the attacks of a host that controls every
// request to the agent on the guest's evidence (issue 14, points 1 and
// 6): it forges workload evidence with GetReport, or hides which policy
// is in force by replacing the measured one. Each runs the real agent
// (Run, with an SEV-SNP device from go-sev-guest's fakes that signs any
// REPORT_DATA, as the hardware does) and hands what it gets to a relying
// party using confguest's verifier. Each attack must be refused: by the
// agent, naming the policy rule, or by the verifier, showing which field
// differs.
func TestHostileEvidence(t *testing.T) {
	// The REPORT_DATA a relying party expects of workload evidence over
	// brokerRuntime under each policy: what a forging host asks to sign.
	forged := func(doc []byte) []byte {
		rd := evidence.ReportData(evidence.WorkloadEvidence, sha256.Sum256(doc), brokerRuntime)
		return rd[:]
	}
	tests := []struct {
		name   string
		point  int    // of issue 14
		launch []byte // the measured policy (HOST_DATA)
		// attack drives the agent as the host and returns the report the
		// host hands the relying party, or the agent's refusal.
		attack attack
		rp     func(*verify.Expected)
		want   string // in the refusal, or in a verifier violation
	}{
		// Point 1: the host asks GetReport to sign exactly the REPORT_DATA
		// the relying party expects of workload evidence over its runtime
		// data, under each policy the relying party may accept.
		{name: "forge under the policy", point: 1, launch: launchReports,
			attack: hostReport(forged(launchReports), launchReports), rp: workloadCheck(nil), want: "report field REPORT_DATA is"},
		{name: "forge before a policy", point: 1, launch: launchReports,
			attack: hostReport(forged(launchReports)), rp: workloadCheck(nil), want: "report field REPORT_DATA is"},
		{name: "report not allowed", point: 1, launch: launchNoReports,
			attack: hostReport(forged(launchNoReports), launchNoReports), rp: workloadCheck(nil), want: "denied by policy rule agent.get_report"},
		{name: "forge as launch policy", point: 1, launch: launchReplaceable,
			attack: hostReport(forged(launchReplaceable), launchReplaceable, hostsChoice),
			rp:     workloadCheck(func(e *verify.Expected) { e.AllowPolicyReplacement = true }), want: "report field REPORT_DATA is"},
		{name: "forge as accepted policy", point: 1, launch: launchReplaceable,
			attack: hostReport(forged(acceptedFinal), launchReplaceable, acceptedFinal),
			rp:     workloadCheck(func(e *verify.Expected) { e.PolicyInForce = acceptedFinal }), want: "report field REPORT_DATA is"},
		// A host report over the runtime data itself.
		{name: "raw runtime data", point: 1, launch: launchReports,
			attack: hostReport(brokerRuntime, launchReports), rp: workloadCheck(nil), want: "the report is a host-report, refused as workload-evidence"},

		// Point 6: the launch policy lets the host replace it; the host
		// installs its own choice and passes genuine evidence on.
		{name: "replaceable launch", point: 6, launch: launchReplaceable,
			attack: evidenceUnder(launchReplaceable, hostsChoice), rp: workloadCheck(nil), want: "agent.replace_policy"},
		{name: "replacement allowed", point: 6, launch: launchReplaceable,
			attack: evidenceUnder(launchReplaceable, hostsChoice), rp: workloadCheck(func(e *verify.Expected) { e.AllowPolicyReplacement = true }),
			want: "want " + hex64(evidence.ReportData(evidence.WorkloadEvidence, sha256.Sum256(launchReplaceable), brokerRuntime))},
		{name: "other replacement", point: 6, launch: launchReplaceable,
			attack: evidenceUnder(launchReplaceable, hostsChoice), rp: workloadCheck(func(e *verify.Expected) { e.PolicyInForce = acceptedFinal }),
			want: "under the policy in force given " + hex32(sha256.Sum256(acceptedFinal))},
		{name: "other replacement, host", point: 6, launch: launchReplaceable,
			attack: hostReport([]byte("verifier nonce"), launchReplaceable, hostsChoice), rp: func(e *verify.Expected) {
				e.Purpose, e.Data, e.PolicyInForce = evidence.HostReport, []byte("verifier nonce"), acceptedFinal
			}, want: "report field REPORT_DATA is"},
		{name: "replaceable replacement", point: 6, launch: launchReplaceable,
			attack: evidenceUnder(launchReplaceable, replaceableFinal), rp: workloadCheck(func(e *verify.Expected) { e.PolicyInForce = replaceableFinal }),
			want: "allows replacing it too (agent.replace_policy)"},
		{name: "replace not allowed", point: 6, launch: launchReports,
			attack: evidenceUnder(launchReports, hostsChoice), rp: workloadCheck(nil), want: "denied by policy rule agent.replace_policy"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("p%d %s", tc.point, tc.name), func(t *testing.T) {
			dev := fakeSNP(t, tc.launch)
			ta := startPolicyAgent(t, "confguest.tee=snp", dev)
			ext, err := tc.attack(t, ta)
			if err != nil {
				if code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("attack = %v, want PermissionDenied naming %q", err, tc.want)
				}
				return
			}
			res := relyingParty(t, dev, ext, tc.launch, tc.rp)
			var msgs []string
			for _, v := range res.Violations {
				msgs = append(msgs, v.String())
			}
			if res.OK || !strings.Contains(strings.Join(msgs, "\n"), tc.want) {
				t.Errorf("the relying party's verdict on the host's report: ok %v, violations:\n%s\nwant it refused with %q", res.OK, strings.Join(msgs, "\n"), tc.want)
			}
		})
	}
}

func hex64(b [64]byte) string { return fmt.Sprintf("%x", b) }
func hex32(b [32]byte) string { return fmt.Sprintf("%x", b) }

// TestEvidencePurposes is the end-to-end check the guest cannot run under
// TCG (no SEV-SNP device there): through the real agent, its evidence
// endpoint and confguest's verifier, a host report and workload evidence
// over the same caller data carry different REPORT_DATA, each is
// accepted for its own purpose and refused for the other, and after a
// replacement both name the policy in force.
func TestEvidencePurposes(t *testing.T) {
	data := []byte("the same 32 bytes of caller data")
	tests := []struct {
		name     string
		launch   []byte
		policies [][]byte // sent with SetPolicy
		inForce  []byte   // what the reports must name
		rp       func(*verify.Expected)
	}{
		{"launch policy", launchReports, [][]byte{launchReports}, launchReports, func(*verify.Expected) {}},
		{"accepted replacement", launchReplaceable, [][]byte{launchReplaceable, acceptedFinal}, acceptedFinal,
			func(e *verify.Expected) { e.PolicyInForce = acceptedFinal }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dev := fakeSNP(t, tc.launch)
			ta := startPolicyAgent(t, "confguest.tee=snp", dev)
			if err := setPolicies(t, ta, tc.policies...); err != nil {
				t.Fatal(err)
			}
			host, err := hostReport(data)(t, ta)
			if err != nil {
				t.Fatalf("GetReport = %v", err)
			}
			workload, named := workloadEvidence(t, ta, data)
			if want := hex32(sha256.Sum256(tc.inForce)); named != want {
				t.Errorf("evidence endpoint policy_sha256 = %s, want %s", named, want)
			}
			if string(host[0x50:0x90]) == string(workload[0x50:0x90]) {
				t.Errorf("host report and workload evidence over the same data share REPORT_DATA %x", host[0x50:0x90])
			}
			reports := map[evidence.Purpose][]byte{evidence.HostReport: host, evidence.WorkloadEvidence: workload}
			for made, ext := range reports {
				for _, checked := range []evidence.Purpose{evidence.HostReport, evidence.WorkloadEvidence} {
					res := relyingParty(t, dev, ext, tc.launch, func(e *verify.Expected) {
						tc.rp(e)
						e.Purpose, e.Data = checked, data
					})
					if made == checked {
						if !res.OK || !strings.Contains(res.PolicyInForce, hex32(sha256.Sum256(tc.inForce))) {
							t.Errorf("verify %s as %s = ok %v, %v, policy in force %q, want accepted naming %x", made.Name(), checked.Name(), res.OK, res.Violations, res.PolicyInForce, sha256.Sum256(tc.inForce))
						}
						continue
					}
					want := fmt.Sprintf("the report is a %s, refused as %s", made.Name(), checked.Name())
					if res.OK || len(res.Violations) != 1 || !strings.Contains(res.Violations[0].Message, want) {
						t.Errorf("verify %s as %s = ok %v, %v, want refused: %q", made.Name(), checked.Name(), res.OK, res.Violations, want)
					}
				}
			}
		})
	}
}

// TestFreshGuestReport checks a guest before any policy: a host report
// names no policy and is accepted as such (a verifier can check a fresh
// guest), while workload evidence naming no policy is refused.
func TestFreshGuestReport(t *testing.T) {
	dev := fakeSNP(t, launchReports)
	ta := startPolicyAgent(t, "confguest.tee=snp", dev)
	nonce := []byte("fresh guest nonce")
	host, err := hostReport(nonce)(t, ta)
	if err != nil {
		t.Fatalf("GetReport before a policy = %v", err)
	}
	res := relyingParty(t, dev, host, launchReports, func(e *verify.Expected) { e.Purpose, e.Data = evidence.HostReport, nonce })
	if !res.OK || res.PolicyInForce != "no policy installed yet" {
		t.Errorf("verify the fresh guest's host report = ok %v, %v, policy in force %q, want accepted naming no policy", res.OK, res.Violations, res.PolicyInForce)
	}
	workload, named := workloadEvidence(t, ta, nonce)
	if named != strings.Repeat("0", 64) {
		t.Errorf("evidence endpoint policy_sha256 before a policy = %s, want 64 zeros", named)
	}
	res = relyingParty(t, dev, workload, launchReports, func(e *verify.Expected) { e.Purpose, e.Data = evidence.WorkloadEvidence, nonce })
	if res.OK || len(res.Violations) != 1 || !strings.Contains(res.Violations[0].Message, "names no policy as in force") {
		t.Errorf("verify workload evidence made before any policy = ok %v, %v, want refused: names no policy", res.OK, res.Violations)
	}
}
