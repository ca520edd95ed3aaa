package measure

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"confguest/measure/vectors"
)

// caseOptions turns a vector case into Options.
func caseOptions(t *testing.T, s *vectors.Set, c vectors.Case) Options {
	t.Helper()
	o := Options{OVMF: s.OVMF, VCPUs: c.VCPUs, VCPUType: c.VCPUType, OVMFHash: c.SNPOVMFHash,
		Kernel: s.Path(t, c.Kernel), Initrd: s.Path(t, c.Initrd), GuestFeatures: DefaultGuestFeatures}
	var err error
	if c.VMMType != "" {
		if o.VMM, err = ParseVMMType(c.VMMType); err != nil {
			t.Fatal(err)
		}
	}
	if c.GuestFeatures != "" {
		if o.GuestFeatures, err = strconv.ParseUint(c.GuestFeatures, 0, 64); err != nil {
			t.Fatalf("guest_features %q: %v", c.GuestFeatures, err)
		}
	}
	if c.VCPUSig != "" {
		sig, err := strconv.ParseUint(c.VCPUSig, 0, 32)
		if err != nil {
			t.Fatalf("vcpu_sig %q: %v", c.VCPUSig, err)
		}
		o.VCPUSig = uint32(sig)
	}
	if c.VCPUFamily != nil {
		o.VCPUSig = CPUSig(uint32(*c.VCPUFamily), uint32(*c.VCPUModel), uint32(*c.VCPUStepping))
	}
	if c.Append != nil {
		o.Append = *c.Append
	}
	return o
}

func caseName(i int, c vectors.Case) string {
	cpu := c.VCPUType
	if cpu == "" {
		cpu = "sig"
	}
	return fmt.Sprintf("%d-%s%s-%dvcpu-kernel%t-initrd%t-append%t",
		i, c.VMMType, cpu, c.VCPUs, c.Kernel != nil, c.Initrd != nil, c.Append != nil)
}

func TestReferenceVectors(t *testing.T) {
	s := vectors.Load(t)
	cases := append(s.Cases, vectors.Extra(t, "testdata/sev-snp-measure-extra.json")...)
	for i, c := range cases {
		o := caseOptions(t, s, c)
		t.Run(caseName(i, c), func(t *testing.T) {
			got, err := SNP(o)
			if err != nil {
				t.Fatalf("SNP(%+v) error: %v", o, err)
			}
			if got.String() != c.Measurement {
				t.Errorf("SNP(%+v) = %s, want %s", o, got, c.Measurement)
			}
		})
	}
}

func TestForImage(t *testing.T) {
	s := vectors.Load(t)
	var c *vectors.Case
	for i := range s.Cases {
		if k := s.Cases[i]; k.Kernel != nil && k.Initrd != nil && k.Append != nil && k.GuestFeatures == "0x1" {
			c = &k
			break
		}
	}
	if c == nil {
		t.Fatal("no vector with kernel, initrd, command line and default guest features")
	}
	kernel, initrd := s.Path(t, c.Kernel), s.Path(t, c.Initrd)
	m, err := ForImage(s.OVMF, kernel, initrd, *c.Append, c.VCPUs, c.VCPUType)
	if err != nil {
		t.Fatalf("ForImage error: %v", err)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	fileSum := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(b)
		return hex.EncodeToString(s[:])
	}
	cmdSum := sha256.Sum256([]byte(*c.Append + "\x00"))
	for _, tc := range []struct {
		path []string
		want any
	}{
		{[]string{"measurement"}, c.Measurement},
		{[]string{"mode"}, ModeSNP},
		{[]string{"ovmf", "sha256"}, fileSum(s.OVMF)},
		{[]string{"ovmf", "name"}, "OVMF.amdsev.fd"},
		{[]string{"kernel", "sha256"}, fileSum(kernel)},
		{[]string{"initrd", "sha256"}, fileSum(initrd)},
		{[]string{"append"}, *c.Append},
		{[]string{"cmdline_sha256"}, hex.EncodeToString(cmdSum[:])},
		{[]string{"vcpus"}, float64(c.VCPUs)},
		{[]string{"vcpu_type"}, c.VCPUType},
		{[]string{"guest_features"}, "0x1"},
	} {
		var v any = got
		for _, k := range tc.path {
			obj, _ := v.(map[string]any)
			v = obj[k]
		}
		if v != tc.want {
			t.Errorf("ForImage JSON %s = %v, want %v", strings.Join(tc.path, "."), v, tc.want)
		}
	}
}
