package measure

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// igvmVectorsDir holds igvmgen-6.12.igvm and igvm-vectors.json.
var igvmVectorsDir = filepath.Join("..", "..", "shared", "vectors", "igvm")

type igvmVectors struct {
	Cases []struct {
		File            string `json:"file"`
		SHA256          string `json:"sha256"`
		Append          string `json:"append"`
		MSHVMeasurement string `json:"mshv_measurement"`
	} `json:"cases"`
}

func readIGVMVectors(t *testing.T) igvmVectors {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(igvmVectorsDir, "igvm-vectors.json"))
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("IGVM vectors missing under CI=true: %v", err)
		}
		t.Skipf("IGVM vectors not available: %v", err)
	}
	var v igvmVectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("igvm-vectors.json: %v", err)
	}
	if len(v.Cases) == 0 {
		t.Fatal("igvm-vectors.json has no cases")
	}
	return v
}

func TestIGVMVectorMSHV(t *testing.T) {
	for _, c := range readIGVMVectors(t).Cases {
		t.Run(c.File, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(igvmVectorsDir, c.File))
			if err != nil {
				t.Fatal(err)
			}
			got, err := IGVMBytes(b, IGVMOptions{Rules: RulesMSHV})
			if err != nil {
				t.Fatalf("IGVMBytes(%s, mshv) = %v", c.File, err)
			}
			if hex.EncodeToString(got[:]) != c.MSHVMeasurement {
				t.Errorf("IGVMBytes(%s, mshv) = %x, want %s", c.File, got, c.MSHVMeasurement)
			}
			m, err := MeasureIGVM(filepath.Join(igvmVectorsDir, c.File), IGVMOptions{Rules: RulesMSHV})
			if err != nil {
				t.Fatalf("MeasureIGVM(%s, mshv) = %v", c.File, err)
			}
			if m.Measurement != c.MSHVMeasurement || m.IGVM.SHA256 != c.SHA256 || m.VMM != "hyper-v" {
				t.Errorf("MeasureIGVM(%s, mshv) = %+v, want measurement %s, sha256 %s, vmm hyper-v", c.File, m, c.MSHVMeasurement, c.SHA256)
			}
			// Under KVM rules the vector is refused: igvmgen sets restricted injection.
			if _, err := MeasureIGVM(filepath.Join(igvmVectorsDir, c.File), IGVMOptions{Rules: RulesKVM, VCPUs: 1}); !errors.Is(err, ErrIGVMLaunch) {
				t.Errorf("MeasureIGVM(%s, kvm) = %v, want %v", c.File, err, ErrIGVMLaunch)
			}
		})
	}
}
