package verify

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-sev-guest/kds"
)

func TestMeasurements(t *testing.T) {
	hexA := strings.Repeat("a5", 48)
	hexB := strings.Repeat("0b", 48)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	both := write("measurement.json", `{"qemu_ovmf":{"mode":"snp","measurement":"`+hexA+`","ovmf":{}},"cloud_hypervisor_igvm":{"measurement":"`+hexB+`"}}`)
	tests := []struct {
		name, arg string
		want      []string // name=hex prefix
		wantErr   string
	}{
		{"hex", hexA, []string{"given=a5a5"}, ""},
		{"0x hex", "0x" + hexB, []string{"given=0b0b"}, ""},
		{"measurement.json", both, []string{"cloud_hypervisor_igvm=0b0b", "qemu_ovmf=a5a5"}, ""},
		{"short hex", "abcd", nil, "neither 96 hex digits nor a readable measurement.json"},
		{"not json", write("bad.json", "[1"), nil, "not a measurement.json"},
		{"no launch path", write("empty.json", `{"x":{}}`), nil, `no launch path with a "measurement"`},
		{"bad digest", write("short.json", `{"x":{"measurement":"abcd"}}`), nil, "x: measurement"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ms, err := Measurements(tc.arg)
			if tc.wantErr != "" {
				if err == nil || !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("Measurements(%q) = %v, want an error with %q", tc.arg, err, tc.wantErr)
				}
				return
			}
			var got []string
			for _, m := range ms {
				got = append(got, m.Name+"="+hex.EncodeToString(m.Value[:2]))
			}
			if err != nil || strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("Measurements(%q) = %v, %v, want %v", tc.arg, got, err, tc.want)
			}
		})
	}
}

func TestParseTCB(t *testing.T) {
	tests := []struct {
		in      string
		want    kds.TCBParts
		wantErr bool
	}{
		{"bl=3,tee=0,snp=8,ucode=115", kds.TCBParts{BlSpl: 3, SnpSpl: 8, UcodeSpl: 115}, false},
		{"snp=22", kds.TCBParts{SnpSpl: 22}, false},
		{"0x7308000000000003", kds.TCBParts{BlSpl: 3, SnpSpl: 8, UcodeSpl: 0x73}, false},
		{"fw=1", kds.TCBParts{}, true},
		{"snp=300", kds.TCBParts{}, true},
		{"0xzz", kds.TCBParts{}, true},
	}
	for _, tc := range tests {
		got, err := ParseTCB(tc.in)
		if (err != nil) != tc.wantErr || (!tc.wantErr && got != tc.want) {
			t.Errorf("ParseTCB(%q) = %+v, %v, want %+v (error %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
		if !tc.wantErr {
			if again, err := ParseTCB(FormatTCB(got)); err != nil || again != got {
				t.Errorf("ParseTCB(FormatTCB(%+v)) = %+v, %v", got, again, err)
			}
		}
	}
}
