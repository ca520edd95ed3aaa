package cli

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"confguest/build/igvmboot"
	"confguest/measure"
)

// igvmVectorDir holds the igvmgen reference file and its JSON description.
var igvmVectorDir = filepath.Join("..", "..", "..", "shared", "vectors", "igvm")

type igvmVector struct {
	path, append, mshv string
}

func loadIGVMVector(t *testing.T) igvmVector {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(igvmVectorDir, "igvm-vectors.json"))
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("IGVM vectors missing under CI=true: %v", err)
		}
		t.Skipf("IGVM vectors not available: %v", err)
	}
	var v struct {
		Cases []struct {
			File            string `json:"file"`
			Append          string `json:"append"`
			MSHVMeasurement string `json:"mshv_measurement"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(b, &v); err != nil || len(v.Cases) == 0 {
		t.Fatalf("igvm-vectors.json: %v (%d cases)", err, len(v.Cases))
	}
	c := v.Cases[0]
	return igvmVector{filepath.Join(igvmVectorDir, c.File), c.Append, c.MSHVMeasurement}
}

// fakeBzImage is a minimal bzImage: a boot protocol 2.15 setup header and a small
// protected-mode part, enough for igvmboot.
func fakeBzImage() []byte {
	b := make([]byte, 5*512+6000)
	le := binary.LittleEndian
	b[0x1F1] = 4
	le.PutUint16(b[0x1FE:], 0xAA55)
	b[0x200], b[0x201] = 0xEB, 0x6A
	copy(b[0x202:], "HdrS")
	le.PutUint16(b[0x206:], 0x20F)
	b[0x211] = 1
	le.PutUint32(b[0x22C:], 0x7FFFFFFF)
	le.PutUint32(b[0x238:], 2048)
	le.PutUint64(b[0x258:], 0x1000000)
	le.PutUint32(b[0x260:], 1<<20)
	for i := 5 * 512; i < len(b); i++ {
		b[i] = byte(i)
	}
	return b
}

// builtIGVM writes an igvmboot file for cmdline and returns its path.
func builtIGVM(t *testing.T, cmdline string) string {
	t.Helper()
	out, err := igvmboot.Build(fakeBzImage(), []byte("initrd"), cmdline, igvmboot.Options{MemoryMiB: 64})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "guest.igvm")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestIGVMInspect(t *testing.T) {
	const cmdline = "console=ttyS0 confguest.root=0123456789abcdef"
	built := builtIGVM(t, cmdline)
	code, out, errOut := runCLI("igvm", "inspect", built)
	if code != 0 {
		t.Fatalf("igvm inspect %s: exit %d, stderr %q", built, code, errOut)
	}
	for _, want := range []string{
		`in measured pages at 0x3000 (boot_params.cmd_line_ptr): "` + cmdline + `"`,
		"platform SEV-SNP: mask 0x1",
		"guest policy 0x30000 (ABI 0.0, SMT)",
		"0x000000005000-0x000000005fff       1 page  cpuid",
		"0x000000006000-0x000000006fff       1 page  secrets",
		"0x000000001000-0x000000004fff       4 pages data",
		"VP context for vCPU 0 (VMSA at GPA 0x7000",
		"cs   sel=0x0010 attr=0x0c9b limit=0xffffffff base=0x0",
		"rip          0x1000000",
		"sev_features 0x1",
		"gprs         rsi=0x2000",
		"total 16287 pages", // 160 below 0xA0000 + 63 MiB from 1 MiB, less the VMSA page,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("igvm inspect output lacks %q:\n%s", want, out)
		}
	}

	v := loadIGVMVector(t)
	code, out, errOut = runCLI("igvm", "inspect", v.path)
	if code != 0 {
		t.Fatalf("igvm inspect %s: exit %d, stderr %q", v.path, code, errOut)
	}
	for _, want := range []string{
		`(boot_params.cmd_line_ptr): "` + v.append + `"`,
		"SNP ID block: launch digest " + v.mshv,
		"MEMORY_MAP at byte 24 of area 0",
		"area 0 inserted at 0x802000-0x802fff (unmeasured)",
		"sev_features 0x9",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("igvm inspect %s lacks %q:\n%s", v.path, want, out)
		}
	}
}

func TestIGVMInspectErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.igvm")
	if err := os.WriteFile(bad, []byte("not an IGVM file, just text"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		errWant string
	}{
		{"no subcommand", []string{"igvm"}, 2, "inspect"},
		{"unknown subcommand", []string{"igvm", "dump", bad}, 2, "inspect"},
		{"no file", []string{"igvm", "inspect"}, 2, "one IGVM file"},
		{"missing file", []string{"igvm", "inspect", bad + ".none"}, 1, "no such file"},
		{"malformed", []string{"igvm", "inspect", bad}, 1, "bad magic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCLI(tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.errWant) {
				t.Errorf("confguest %q = exit %d, stderr %q; want exit %d mentioning %q", tc.args, code, errOut, tc.code, tc.errWant)
			}
		})
	}
}

func TestMeasureIGVM(t *testing.T) {
	built := builtIGVM(t, "console=ttyS0")
	want, err := measure.MeasureIGVM(built, measure.IGVMOptions{Rules: measure.RulesKVM, VCPUs: 2, VCPUSig: 0xa00f11})
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI("measure", "--igvm", built, "--vcpus", "2", "--vcpu-sig", "0xa00f11")
	if code != 0 || strings.TrimSpace(out) != want.Measurement {
		t.Errorf("measure --igvm %s --vcpus 2 = exit %d, %q (stderr %q); want %s", built, code, out, errOut, want.Measurement)
	}
	code, out, _ = runCLI("measure", "--igvm", built, "--output-format", "json")
	var m measure.IGVMMeasurement
	if err := json.Unmarshal([]byte(out), &m); code != 0 || err != nil || m.Rules != "kvm" || m.VMM != "cloud-hypervisor" || m.VCPUs != 1 || m.IGVM.Name != "guest.igvm" {
		t.Errorf("measure --igvm --output-format json = exit %d, %+v (%v)", code, m, err)
	}

	v := loadIGVMVector(t)
	code, out, errOut = runCLI("measure", "--igvm", v.path, "--rules", "mshv")
	if code != 0 || strings.TrimSpace(out) != v.mshv {
		t.Errorf("measure --igvm %s --rules mshv = exit %d, %q (stderr %q); want %s", v.path, code, out, errOut, v.mshv)
	}
	code, _, errOut = runCLI("measure", "--igvm", v.path, "--rules", "kvm")
	if code != 1 || !strings.Contains(errOut, "sev_features 0x9") {
		t.Errorf("measure --igvm %s --rules kvm = exit %d, stderr %q; want exit 1 naming sev_features 0x9", v.path, code, errOut)
	}

	for _, args := range [][]string{
		{"measure", "--igvm", built, "--ovmf", "x.fd"},
		{"measure", "--igvm", built, "--rules", "hyperv"},
		{"measure", "--igvm", built, "--rules", "mshv", "--vcpus", "2"},
		{"measure", "--igvm", built, "--vcpus", "0"},
		{"measure", "--igvm", built, "--vcpus", "2"},
		{"measure", "--igvm", built, "--vmm-type", "ec2"},
		{"measure", "--rules", "kvm", "--ovmf", "x.fd"},
	} {
		if code, _, errOut := runCLI(args...); code != 2 {
			t.Errorf("confguest %q = exit %d (stderr %q), want 2", args, code, errOut)
		}
	}
}
