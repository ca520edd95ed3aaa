package igvmboot

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// tablesAt splits the ACPI blob into its tables by following RSDP → XSDT → FADT → DSDT.
func tablesAt(t *testing.T, blob []byte, base uint64) map[string][]byte {
	t.Helper()
	le := binary.LittleEndian
	at := func(addr uint64) []byte {
		off := addr - base
		if off+36 > uint64(len(blob)) {
			t.Fatalf("table at 0x%x is outside the ACPI blob", addr)
		}
		n := uint64(le.Uint32(blob[off+4:]))
		return blob[off : off+n]
	}
	out := map[string][]byte{"RSDP": blob[:36]}
	xsdt := at(le.Uint64(blob[24:]))
	out["XSDT"] = xsdt
	for i := 36; i < len(xsdt); i += 8 {
		tab := at(le.Uint64(xsdt[i:]))
		out[string(tab[:4])] = tab
	}
	out["DSDT"] = at(le.Uint64(out["FACP"][140:]))
	return out
}

func TestACPITables(t *testing.T) {
	for _, vcpus := range []int{1, 2, MaxVCPUs} {
		blob, err := acpiTables(0x8000, vcpus)
		if err != nil {
			t.Fatalf("acpiTables(%d vCPUs) = %v", vcpus, err)
		}
		tabs := tablesAt(t, blob, 0x8000)
		if string(tabs["RSDP"][:8]) != "RSD PTR " || sum8(tabs["RSDP"][:20]) != 0 || sum8(tabs["RSDP"]) != 0 {
			t.Errorf("RSDP signature or checksums wrong: % x", tabs["RSDP"])
		}
		for _, name := range []string{"XSDT", "FACP", "APIC", "DSDT"} {
			tab, ok := tabs[name]
			if !ok {
				t.Fatalf("%d vCPUs: no %s table", vcpus, name)
			}
			if sum8(tab) != 0 {
				t.Errorf("%s checksum: bytes sum to 0x%02x, want 0", name, sum8(tab))
			}
		}
		madt := tabs["APIC"]
		var lapics int
		for i := 44; i < len(madt); i += int(madt[i+1]) {
			if madt[i] == 0 {
				if int(madt[i+3]) != lapics || madt[i+4]&1 == 0 {
					t.Errorf("MADT local APIC %d: id %d, flags %d", lapics, madt[i+3], madt[i+4])
				}
				lapics++
			}
		}
		if lapics != vcpus {
			t.Errorf("MADT for %d vCPUs lists %d local APICs", vcpus, lapics)
		}
		if f := binary.LittleEndian.Uint32(tabs["FACP"][112:]); f&(1<<20) == 0 {
			t.Errorf("FADT flags 0x%x: HW_REDUCED_ACPI missing", f)
		}
	}
}

func TestPkgLength(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want []byte
	}{
		{0, []byte{0x01}},
		{0x3E, []byte{0x3F}},
		{0x3F, []byte{0x41, 0x04}}, // 0x41 = 0x3F+2
		{0x100, []byte{0x42, 0x10}},
		{0xFFE, []byte{0x81, 0x00, 0x01}}, // 0x1001
	} {
		if got := pkgLength(tc.n); string(got) != string(tc.want) {
			t.Errorf("pkgLength(%d) = % x, want % x", tc.n, got, tc.want)
		}
	}
}

// TestACPIWithIASL disassembles the tables with ACPICA's iasl (Debian acpica-tools), the
// reference implementation, and checks it reads what was meant.
func TestACPIWithIASL(t *testing.T) {
	iasl, err := exec.LookPath("iasl")
	if err != nil {
		t.Skip("iasl (Debian acpica-tools) not installed")
	}
	blob, err := acpiTables(0x8000, 2)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	want := map[string][]string{
		"DSDT": {`Device (\_SB.PC00)`, `EisaId ("PNP0A08")`, `EisaId ("PNP0A03")`, `WordBusNumber (ResourceProducer`,
			`0xFEBFFFFF`, `0x00003FFFFFFFFFFF`, `IO (Decode16`, `Name (\_S5, Package (0x04)`},
		"APIC": {`Local Apic Address : FEE00000`, `Local Apic ID : 01`, `Address : FEC00000`},
		"FACP": {`Hardware Reduced (V5) : 1`, `Address : 0000000000000600`, `DSDT Address : 0000000000008`},
	}
	for name, tab := range tablesAt(t, blob, 0x8000) {
		if name == "RSDP" {
			continue
		}
		path := filepath.Join(dir, name+".aml")
		if err := os.WriteFile(path, tab, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(iasl, "-d", path).CombinedOutput()
		if err != nil {
			t.Fatalf("iasl -d %s: %v\n%s", name, err, out)
		}
		dsl, err := os.ReadFile(filepath.Join(dir, name+".dsl"))
		if err != nil {
			t.Fatal(err)
		}
		text := strings.Join(strings.Fields(string(dsl)), " ")
		if strings.Contains(text, "Invalid") || strings.Contains(text, "**** ") {
			t.Errorf("iasl finds problems in %s:\n%s", name, dsl)
		}
		for _, w := range want[name] {
			if !strings.Contains(text, strings.Join(strings.Fields(w), " ")) {
				t.Errorf("iasl's disassembly of %s lacks %q:\n%s", name, w, dsl)
			}
		}
	}
}
