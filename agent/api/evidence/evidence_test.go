package evidence

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// TestReportData pins the construction to values computed independently
// (Python's hashlib, the recipe in the README).
func TestReportData(t *testing.T) {
	pol := sha256.Sum256([]byte("{\"version\":1}\n"))
	tests := []struct {
		purpose Purpose
		policy  [32]byte
		data    string
		want    string
	}{
		{HostReport, pol, "nonce", "6835aa008be8f47569297ff7540009b18b673f9d45afd15f772a344aa6df6442690024a08d63725b70081879a3956aabfed0bfcae2dde57c3d8b974b60344c98"},
		{WorkloadEvidence, pol, "nonce", "68a4100a1c5964c307290927443128ca2408f5f4aafda3ed4a574c644d6f17440638e9b8bcb7825f0b271609d928565f1047cc57ebaf08872e65fb998fc384af"},
		{HostReport, NoPolicy, "", "62f201cf8476f93996da0119cf2a6e3c39b20678b7577dfb17656c03b1afcae057e088c1b662c3af5555d36079743e1ae54746bed7d4aa99c793ff25a916b511"},
	}
	for _, tc := range tests {
		got := ReportData(tc.purpose, tc.policy, []byte(tc.data))
		if hex.EncodeToString(got[:]) != tc.want {
			t.Errorf("ReportData(%q, %x, %q) = %x, want %s", tc.purpose, tc.policy, tc.data, got, tc.want)
		}
	}
}

// TestReportDataDistinct checks that inputs a concatenation without
// lengths would confuse hash differently.
func TestReportDataDistinct(t *testing.T) {
	pol := sha256.Sum256([]byte("p"))
	type in struct {
		p    Purpose
		pol  [32]byte
		data string
	}
	ins := []in{
		{HostReport, pol, "x"},
		{WorkloadEvidence, pol, "x"},
		{HostDataRead, pol, "x"},
		{HostReport, NoPolicy, "x"},
		{HostReport, pol, "x\x00"},
		{HostReport, pol, ""},
		{Purpose(string(HostReport) + "x"), pol, ""},
		{Purpose(string(HostReport)[:len(HostReport)-1]), pol, "1x"},
	}
	seen := map[[64]byte]in{}
	for _, i := range ins {
		rd := ReportData(i.p, i.pol, []byte(i.data))
		if prev, ok := seen[rd]; ok {
			t.Errorf("ReportData(%q, %x, %q) = ReportData(%q, %x, %q), want different values", i.p, i.pol, i.data, prev.p, prev.pol, prev.data)
		}
		seen[rd] = i
	}
}

func TestPurposes(t *testing.T) {
	for name, p := range map[string]Purpose{"host-report": HostReport, "workload-evidence": WorkloadEvidence} {
		got, err := ParsePurpose(name)
		if err != nil || got != p || p.Name() != name || !p.Checkable() {
			t.Errorf("ParsePurpose(%q) = %q, %v (Name %q, checkable %v), want %q", name, got, err, p.Name(), p.Checkable(), p)
		}
	}
	if HostDataRead.Checkable() || Purpose("").Checkable() {
		t.Errorf("HostDataRead and the empty purpose are checkable, want not")
	}
	for _, p := range []Purpose{HostReport, WorkloadEvidence, HostDataRead} {
		for _, c := range []byte(p) {
			if c < ' ' || c > '~' || len(p) > 255 {
				t.Errorf("label %q: want at most 255 printable ASCII bytes", p)
				break
			}
		}
	}
	if _, err := ParsePurpose("report"); err == nil {
		t.Errorf("ParsePurpose(%q) = nil error, want one naming the purposes", "report")
	}
}
