package cli

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	sevtest "github.com/google/go-sev-guest/testing"

	"confguest/agent/api/evidence"
	"confguest/hostside/verify"
)

// sevSigner returns go-sev-guest's default test AMD chain, or (other) one
// with freshly generated keys.
func sevSigner(t *testing.T, other bool) *sevtest.AmdSigner {
	t.Helper()
	now := time.Now()
	if !other {
		s, err := sevtest.DefaultTestOnlyCertChain("Milan-B1", now)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	keys := sevtest.DefaultAmdKeys()
	var err error
	if keys.Ark, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if keys.Ask, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if keys.Vcek, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	b := &sevtest.AmdSignerBuilder{Keys: keys, ProductName: "Milan-B1", CSPID: "other",
		ArkCreationTime: now, AskCreationTime: now, AsvkCreationTime: now, VcekCreationTime: now, VlekCreationTime: now}
	s, err := b.TestOnlyCertChain()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// signedReport writes an extended report signed by s through
// go-sev-guest's fake quote provider and returns its path.
func signedReport(t *testing.T, s *sevtest.AmdSigner, measurement, hostData, reportData []byte, debug bool) string {
	t.Helper()
	var rd [64]byte
	copy(rd[:], reportData)
	raw := sevtest.CreateRawReport(&sevtest.TestReportOptions{ReportData: rd[:]})
	binary.LittleEndian.PutUint64(raw[0x08:], abi.SnpPolicyToBytes(abi.SnpPolicy{SMT: true, Debug: debug}))
	copy(raw[0x90:0xC0], measurement)
	copy(raw[0xC0:0xE0], hostData)
	qp, err := sevtest.TcQuoteProvider([]sevtest.TestCase{{Input: rd, Output: raw}},
		&sevtest.DeviceOptions{Now: time.Now(), Signer: s, Product: abi.DefaultSevProduct()})
	if err != nil {
		t.Fatal(err)
	}
	q, err := qp.GetRawQuote(rd)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "report.bin")
	if err := os.WriteFile(p, q, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVerifyCommand(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	policyDoc := []byte(`{"version": 1}` + "\n")
	pol := write("policy.json", policyDoc)
	changed := write("changed.json", bytes.Replace(policyDoc, []byte(": 1"), []byte(":1"), 1))
	replaceable := []byte(`{"version": 1, "agent": {"replace_policy": true}}` + "\n")
	replPol, final := write("replaceable.json", replaceable), write("final.json", policyDoc)
	m := bytes.Repeat([]byte{0x5a}, 48)
	mjson := write("measurement.json", []byte(`{"qemu_ovmf":{"measurement":"`+strings.Repeat("00", 48)+`"},"cloud_hypervisor_igvm":{"measurement":"`+hex.EncodeToString(m)+`"}}`))
	hd := sha256.Sum256(policyDoc)
	nonce := bytes.Repeat([]byte{7}, 64)
	hostReport := evidence.ReportData(evidence.HostReport, hd, nonce)
	workload := evidence.ReportData(evidence.WorkloadEvidence, hd, nonce)
	good := sevSigner(t, false)
	roots := write("roots.pem", append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: good.Ask.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: good.Ark.Raw})...))
	goodReport := signedReport(t, good, m, hd[:], hostReport[:], false)
	workloadReport := signedReport(t, good, m, hd[:], workload[:], false)
	base := func(report string) []string {
		return []string{"verify", "--report", report, "--measurement", mjson, "--policy", pol,
			"--data", hex.EncodeToString(nonce), "--trusted-roots", roots}
	}
	// The evidence endpoint's JSON answer, as a workload passes it on.
	rep, err := os.ReadFile(workloadReport)
	if err != nil {
		t.Fatal(err)
	}
	answer, err := json.Marshal(map[string]any{"report": rep[:abi.ReportSize], "certificates": rep[abi.ReportSize:], "report_data": hex.EncodeToString(workload[:])})
	if err != nil {
		t.Fatal(err)
	}
	answerFile := write("evidence.json", answer)
	inForce := evidence.ReportData(evidence.HostReport, sha256.Sum256(policyDoc), nonce)
	replHD := sha256.Sum256(replaceable)
	replacedReport := signedReport(t, good, m, replHD[:], inForce[:], false)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string // substrings of stdout+stderr
	}{
		{"matching", base(goodReport), 0, []string{"OK: the report is genuine", "matches cloud_hypervisor_igvm"}},
		{"measurement in hex", append(base(goodReport), "--measurement", hex.EncodeToString(m)), 0, []string{"OK:"}},
		{"policy with one changed byte", append(base(goodReport), "--policy", changed), 1, []string{"REJECTED: 2 violations", "HOST_DATA", "confguest policy hash", "REPORT_DATA"}},
		{"another chain", base(signedReport(t, sevSigner(t, true), m, hd[:], hostReport[:], false)), 1, []string{"REJECTED: 1 violation", "SIGNATURE"}},
		{"built-in AMD roots", base(goodReport)[:9], 1, []string{"SIGNATURE"}},
		{"wrong measurement", base(signedReport(t, good, bytes.Repeat([]byte{9}, 48), hd[:], hostReport[:], false)), 1, []string{"MEASUREMENT", "want one of cloud_hypervisor_igvm=", "matches none expected"}},
		{"wrong host data", base(signedReport(t, good, m, make([]byte, 32), hostReport[:], false)), 1, []string{"REJECTED: 1 violation", "HOST_DATA"}},
		{"wrong report data", base(signedReport(t, good, m, hd[:], make([]byte, 64), false)), 1, []string{"REJECTED: 1 violation", "REPORT_DATA"}},
		{"the nonce signed as given", base(signedReport(t, good, m, hd[:], nonce, false)), 1, []string{"REJECTED: 1 violation", "REPORT_DATA is the caller data itself"}},
		{"workload evidence as a host report", base(workloadReport), 1, []string{"REJECTED: 1 violation", "the report is a workload-evidence, refused as host-report"}},
		{"workload evidence", append(base(workloadReport), "--purpose", "workload-evidence"), 0, []string{"OK:", "workload-evidence over the given data; policy in force: the launch policy " + hex.EncodeToString(hd[:])}},
		{"host report as workload evidence", append(base(goodReport), "--purpose", "workload-evidence"), 1, []string{"the report is a host-report, refused as workload-evidence"}},
		{"evidence endpoint answer", append(base(answerFile), "--purpose", "workload-evidence"), 0, []string{"OK:"}},
		{"caller data from a file", append(base(goodReport)[:7], "--data-file", write("nonce.bin", nonce), "--trusted-roots", roots), 0, []string{"OK:"}},
		{"replaceable launch policy", append(base(replacedReport), "--policy", replPol), 1, []string{"REJECTED: 2 violations", "POLICY_IN_FORCE", "agent.replace_policy", "--policy-in-force FILE", "--allow-policy-replacement"}},
		{"replaceable launch policy, replacement given", append(base(replacedReport), "--policy", replPol, "--policy-in-force", final), 0, []string{"OK:", "policy in force: the policy in force given " + hex.EncodeToString(hd[:])}},
		{"replaceable launch policy, replacement allowed", append(base(replacedReport), "--policy", replPol, "--allow-policy-replacement"), 1, []string{"REJECTED: 1 violation", "REPORT_DATA", "under the launch policy"}},
		{"policy in force without replacement", append(base(goodReport), "--policy-in-force", final), 1, []string{"drop --policy-in-force"}},
		{"bad purpose", append(base(goodReport), "--purpose", "report"), 2, []string{"--purpose", "host-report"}},
		{"debug bit", base(signedReport(t, good, m, hd[:], hostReport[:], true)), 1, []string{"REJECTED: 1 violation", "POLICY.DEBUG"}},
		{"every violation", base(signedReport(t, sevSigner(t, true), bytes.Repeat([]byte{9}, 48), make([]byte, 32), make([]byte, 64), true)), 1,
			[]string{"REJECTED: 5 violations", "SIGNATURE", "POLICY.DEBUG", "REPORT_DATA", "HOST_DATA", "MEASUREMENT"}},
		{"minimum TCB", append(base(goodReport), "--min-tcb", "snp=8"), 1, []string{"TCB", "policy minimum TCB"}},
		{"no policy", []string{"verify", "--report", goodReport, "--measurement", mjson}, 2, []string{"--policy is required"}},
		{"bad measurement", append(base(goodReport), "--measurement", "abc"), 2, []string{"--measurement"}},
		{"bad caller data", append(base(goodReport), "--data", "abc"), 2, []string{"--data", "want hex digits"}},
		{"data twice", append(base(goodReport), "--data-file", pol), 2, []string{"give one of --data and --data-file"}},
		{"not a report", append(base(goodReport), "--report", pol), 1, []string{"an SEV-SNP report has 1184"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(tc.args...)
			all := out + errOut
			if code != tc.wantCode {
				t.Errorf("confguest %s: exit %d, want %d\n%s", strings.Join(tc.args, " "), code, tc.wantCode, all)
			}
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("confguest verify (%s) output lacks %q:\n%s", tc.name, w, all)
				}
			}
		})
	}
}

func TestVerifyCommandJSON(t *testing.T) {
	dir := t.TempDir()
	policyDoc := []byte(`{"version":1}`)
	pol := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(pol, policyDoc, 0o644); err != nil {
		t.Fatal(err)
	}
	m := bytes.Repeat([]byte{1}, 48)
	report := signedReport(t, sevSigner(t, false), m, make([]byte, 32), nil, true)
	code, out, errOut := runCLI("verify", "--json", "--report", report, "--measurement", hex.EncodeToString(m), "--policy", pol)
	if code != 1 {
		t.Fatalf("confguest verify --json: exit %d, want 1\n%s%s", code, out, errOut)
	}
	var res verify.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("confguest verify --json printed %q: %v", out, err)
	}
	var fields []string
	for _, v := range res.Violations {
		fields = append(fields, v.Field)
	}
	want := "SIGNATURE POLICY.DEBUG HOST_DATA"
	if res.OK || strings.Join(fields, " ") != want || res.Report.Measurement != hex.EncodeToString(m) || res.Purpose != "host-report" {
		t.Errorf("confguest verify --json = ok %v, violations %v, measurement %s, purpose %q, want not ok, %s, host-report", res.OK, fields, res.Report.Measurement, res.Purpose, want)
	}
}
