package measure

import (
	"fmt"
	"strconv"
	"testing"

	"confguest/measure/internal/vectors"
)

// caseOptions turns a vector case into Options.
func caseOptions(t *testing.T, s *vectors.Set, c vectors.Case) Options {
	t.Helper()
	o := Options{OVMF: s.OVMF, VCPUs: c.VCPUs, VCPUType: c.VCPUType, OVMFHash: c.SNPOVMFHash,
		Kernel: s.Path(t, c.Kernel), Initrd: s.Path(t, c.Initrd), GuestFeatures: DefaultGuestFeatures}
	var err error
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
	return fmt.Sprintf("%d-%s-%dvcpu-kernel%t-initrd%t-append%t",
		i, cpu, c.VCPUs, c.Kernel != nil, c.Initrd != nil, c.Append != nil)
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
