package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"confguest/measure"
	"confguest/measure/vectors"
)

// runCLI runs confguest with args and returns its exit status, stdout and stderr.
func runCLI(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := Main(context.Background(), args, Stdio{In: strings.NewReader(""), Out: &out, Err: &errOut})
	return code, out.String(), errOut.String()
}

// vectorArgs turns a reference case into sev-snp-measure style flags.
func vectorArgs(t *testing.T, s *vectors.Set, c vectors.Case) []string {
	args := []string{"measure", "--mode", "snp", "--ovmf", s.OVMF, "--vcpus", fmt.Sprint(c.VCPUs)}
	if c.VMMType != "" {
		args = append(args, "--vmm-type", c.VMMType)
	}
	switch {
	case c.VCPUType != "":
		args = append(args, "--vcpu-type", c.VCPUType)
	case c.VCPUSig != "":
		args = append(args, "--vcpu-sig", c.VCPUSig)
	case c.VCPUFamily != nil:
		args = append(args, "--vcpu-family", fmt.Sprint(*c.VCPUFamily), "--vcpu-model", fmt.Sprint(*c.VCPUModel),
			"--vcpu-stepping", fmt.Sprint(*c.VCPUStepping))
	}
	if c.GuestFeatures != "" {
		args = append(args, "--guest-features", c.GuestFeatures)
	}
	if c.SNPOVMFHash != "" {
		args = append(args, "--snp-ovmf-hash", c.SNPOVMFHash)
	}
	if c.Kernel != nil {
		args = append(args, "--kernel", s.Path(t, c.Kernel))
	}
	if c.Initrd != nil {
		args = append(args, "--initrd", s.Path(t, c.Initrd))
	}
	if c.Append != nil {
		args = append(args, "--append", *c.Append)
	}
	return args
}

func TestMeasureVectors(t *testing.T) {
	s := vectors.Load(t)
	cases := append(s.Cases, vectors.Extra(t, "../../measure/testdata/sev-snp-measure-extra.json")...)
	for i, c := range cases {
		args := vectorArgs(t, s, c)
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			code, out, errOut := runCLI(args...)
			if code != 0 || out != c.Measurement+"\n" || errOut != "" {
				t.Errorf("confguest %q = %d, stdout %q, stderr %q, want 0, %q, no stderr", args, code, out, errOut, c.Measurement+"\n")
			}
		})
	}
}

func TestMeasureOutputFormats(t *testing.T) {
	s := vectors.Load(t)
	c := s.Cases[0]
	args := vectorArgs(t, s, c)
	want, err := hex.DecodeString(c.Measurement)
	if err != nil {
		t.Fatal(err)
	}

	code, out, _ := runCLI(append(args, "--output-format", "base64")...)
	if got, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(out, "\n")); code != 0 || err != nil || !bytes.Equal(got, want) {
		t.Errorf("--output-format base64 = %d, %q, want base64 of %s", code, out, c.Measurement)
	}

	code, out, _ = runCLI(append(args, "--output-format", "json")...)
	var m measure.Measurement
	if err := json.Unmarshal([]byte(out), &m); code != 0 || err != nil {
		t.Fatalf("--output-format json = %d, %q (%v), want JSON", code, out, err)
	}
	if m.Measurement != c.Measurement || m.Kernel == nil || m.OVMF.SHA256 == "" || m.VCPUs != c.VCPUs || m.VCPUType != c.VCPUType {
		t.Errorf("--output-format json = %+v, want measurement %s with the inputs", m, c.Measurement)
	}

	code, out, _ = runCLI("measure", "--mode", "snp:ovmf-hash", "--ovmf", s.OVMF)
	hash := strings.TrimSuffix(out, "\n")
	if code != 0 || len(hash) != 2*measure.DigestSize {
		t.Fatalf("--mode snp:ovmf-hash = %d, %q, want 96 hex digits", code, out)
	}
	code, out, _ = runCLI(append(args, "--snp-ovmf-hash", hash)...)
	if code != 0 || out != c.Measurement+"\n" {
		t.Errorf("--snp-ovmf-hash $(--mode snp:ovmf-hash) = %d, %q, want %s", code, out, c.Measurement)
	}
}

func TestMeasureBadInput(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.fd")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte("not a firmware"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	ovmf := filepath.Join(vectors.Dir(t), "OVMF.amdsev.fd") // good where the failure lies elsewhere
	base := []string{"measure", "--ovmf", ovmf, "--vcpus", "1"}
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		mentions string
	}{
		{"no ovmf", []string{"measure", "--vcpus", "1", "--vcpu-type", "EPYC"}, 2, "--ovmf"},
		{"no vcpus", []string{"measure", "--ovmf", ovmf, "--vcpu-type", "EPYC"}, 2, "--vcpus"},
		{"zero vcpus", []string{"measure", "--ovmf", ovmf, "--vcpus", "0", "--vcpu-type", "EPYC"}, 2, "--vcpus"},
		{"no vcpu type", base, 2, "--vcpu-type"},
		{"unknown vcpu type", append(base, "--vcpu-type", "EPYC-Zen9"), 2, "EPYC-Milan-v2"},
		{"two vcpu kinds", append(base, "--vcpu-type", "EPYC", "--vcpu-sig", "0x800f12"), 2, "only one"},
		{"family alone", append(base, "--vcpu-family", "25"), 2, "all three"},
		{"bad signature", append(base, "--vcpu-sig", "milan"), 2, "--vcpu-sig"},
		{"bad features", append(base, "--vcpu-type", "EPYC", "--guest-features", "0xzz"), 2, "--guest-features"},
		{"bad format", append(base, "--vcpu-type", "EPYC", "--output-format", "yaml"), 2, "yaml"},
		{"bad mode", append(base, "--vcpu-type", "EPYC", "--mode", "seves"), 2, "seves"},
		{"initrd without kernel", append(base, "--vcpu-type", "EPYC", "--initrd", garbage), 2, "--kernel"},
		{"stray argument", append(base, "--vcpu-type", "EPYC", "extra"), 2, "extra"},
		{"unknown flag", append(base, "--dump-vmsa"), 2, "dump-vmsa"},
		{"unknown vmm type", append(base, "--vcpu-type", "EPYC", "--vmm-type", "azure"), 2, "azure"},
		{"missing ovmf file", []string{"measure", "--ovmf", missing, "--vcpus", "1", "--vcpu-type", "EPYC"}, 1, missing},
		{"garbage ovmf", []string{"measure", "--ovmf", garbage, "--vcpus", "1", "--vcpu-type", "EPYC"}, 1, garbage},
		{"garbage ovmf hash mode", []string{"measure", "--mode", "snp:ovmf-hash", "--ovmf", garbage}, 1, "footer"},
		{"missing kernel", append(base, "--vcpu-type", "EPYC", "--kernel", missing), 1, missing},
		{"bad ovmf hash", append(base, "--vcpu-type", "EPYC", "--snp-ovmf-hash", "abc"), 1, "abc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(tc.args...)
			if code != tc.code || out != "" || !strings.Contains(errOut, tc.mentions) {
				t.Errorf("confguest %q = %d, stdout %q, stderr %q, want %d, no stdout, stderr mentioning %q",
					tc.args, code, out, errOut, tc.code, tc.mentions)
			}
		})
	}
}
