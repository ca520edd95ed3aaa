package measure

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCPUSig(t *testing.T) {
	// CPUID Fn0000_0001_EAX values of the processors the QEMU models imitate.
	for _, tc := range []struct {
		name string
		want uint32
	}{
		{"EPYC", 0x800f12},
		{"EPYC-v4", 0x800f12},
		{"EPYC-IBPB", 0x800f12},
		{"EPYC-Rome", 0x830f10},
		{"EPYC-Rome-v3", 0x830f10},
		{"EPYC-Milan", 0xa00f11},
		{"EPYC-Milan-v2", 0xa00f11},
		{"EPYC-Genoa", 0xa10f10},
		{"EPYC-Turin", 0xb00f00},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := VCPUByName(tc.name)
			if err != nil || v.Sig != tc.want {
				t.Errorf("VCPUByName(%q) = 0x%x, %v, want 0x%x", tc.name, v.Sig, err, tc.want)
			}
		})
	}
	if got := CPUSig(6, 0x55, 7); got != 0x50657 {
		t.Errorf("CPUSig(6, 0x55, 7) = 0x%x, want 0x50657 (family below 0x10 has no extended family)", got)
	}
}

func TestVCPUByNameUnknown(t *testing.T) {
	for _, name := range []string{"", "EPYC-v5", "epyc-milan", "Skylake-Server"} {
		t.Run(name, func(t *testing.T) {
			_, err := VCPUByName(name)
			if !errors.Is(err, ErrUnknownVCPUType) {
				t.Fatalf("VCPUByName(%q) = %v, want %v", name, err, ErrUnknownVCPUType)
			}
			for _, known := range VCPUTypes() {
				if !strings.Contains(err.Error(), known) {
					t.Errorf("VCPUByName(%q) = %q, want it to list %s", name, err, known)
				}
			}
		})
	}
}

func TestKernelHashesTable(t *testing.T) {
	k := KernelHashes{Kernel: sha256.Sum256([]byte("k")), Initrd: emptySHA256, Cmdline: CmdlineHash("")}
	if want := sha256.Sum256([]byte{0}); k.Cmdline != want {
		t.Errorf(`CmdlineHash("") = %x, want SHA-256 of a lone NUL %x`, k.Cmdline, want)
	}
	if got, want := CmdlineHash("console=ttyS0"), sha256.Sum256([]byte("console=ttyS0\x00")); got != want {
		t.Errorf("CmdlineHash(console=ttyS0) = %x, want %x", got, want)
	}
	tab := k.table()
	if len(tab) != 176 || len(tab)%16 != 0 {
		t.Fatalf("len(table()) = %d, want 168 bytes padded to 176", len(tab))
	}
	if l := binary.LittleEndian.Uint16(tab[16:]); l != 168 {
		t.Errorf("table length field = %d, want 168 (unpadded)", l)
	}
	for i, e := range []struct {
		guid efiGUID
		sum  [32]byte
	}{{guidHashCmdline, k.Cmdline}, {guidHashInitrd, k.Initrd}, {guidHashKernel, k.Kernel}} {
		off := 18 + i*50
		if efiGUID(tab[off:off+16]) != e.guid || binary.LittleEndian.Uint16(tab[off+16:]) != 50 || [32]byte(tab[off+18:off+50]) != e.sum {
			t.Errorf("table entry %d = % x, want GUID %s, length 50, hash %x", i, tab[off:off+50], e.guid, e.sum)
		}
	}
	if _, err := k.page(PageSize - 175); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("page(%d) = %v, want %v", PageSize-175, err, ErrOutOfRange)
	}
	p, err := k.page(0xc00)
	if err != nil || len(p) != PageSize || [16]byte(p[0xc00:]) != guidHashTableHeader {
		t.Errorf("page(0xc00) = %v, want the table at offset 0xc00 of one page", err)
	}
}

func TestVMSAPage(t *testing.T) {
	le := binary.LittleEndian
	for _, tc := range []struct {
		name           string
		eip            uint32
		csBase, rip    uint64
		sig            uint32
		features       uint64
		wantSEVFeature uint64
	}{
		{"bsp", bspResetEIP, 0xffff0000, 0xfff0, 0xa00f11, 0x1, 0x1},
		{"ap", 0x80b004, 0x800000, 0xb004, 0x800f12, 0x21, 0x21},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := vmsaPage(tc.eip, tc.sig, tc.features)
			if got := le.Uint64(p[vmsaCS+8:]); got != tc.csBase {
				t.Errorf("vmsaPage(0x%x) CS.base = 0x%x, want 0x%x", tc.eip, got, tc.csBase)
			}
			if got := le.Uint16(p[vmsaCS:]); got != 0xf000 {
				t.Errorf("vmsaPage(0x%x) CS.selector = 0x%x, want 0xf000", tc.eip, got)
			}
			if got := le.Uint64(p[vmsaRIP:]); got != tc.rip {
				t.Errorf("vmsaPage(0x%x) RIP = 0x%x, want 0x%x", tc.eip, got, tc.rip)
			}
			if got := le.Uint64(p[vmsaRDX:]); got != uint64(tc.sig) {
				t.Errorf("vmsaPage(0x%x) RDX = 0x%x, want the signature 0x%x", tc.eip, got, tc.sig)
			}
			if got := le.Uint64(p[vmsaSEVFeatures:]); got != tc.wantSEVFeature {
				t.Errorf("vmsaPage(0x%x) SEV_FEATURES = 0x%x, want 0x%x", tc.eip, got, tc.wantSEVFeature)
			}
		})
	}
}

func TestParseDigest(t *testing.T) {
	d := goodFirmwareParsed(t).Hash()
	for _, s := range []string{d.String(), "0x" + d.String(), strings.ToUpper(d.String())} {
		if got, err := ParseDigest(s); err != nil || got != d {
			t.Errorf("ParseDigest(%q) = %s, %v, want %s", s, got, err, d)
		}
	}
	for _, s := range []string{"", "abcd", d.String() + "00", "zz" + d.String()[2:]} {
		if _, err := ParseDigest(s); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("ParseDigest(%q) = %v, want %v", s, err, ErrInvalidOption)
		}
	}
}

func goodFirmwareParsed(t *testing.T) *OVMF {
	t.Helper()
	fw, err := ParseOVMF(goodFirmware().build())
	if err != nil {
		t.Fatal(err)
	}
	return fw
}

func TestLaunchDigest(t *testing.T) {
	fw := goodFirmwareParsed(t)
	hashes := &KernelHashes{Kernel: sha256.Sum256([]byte("kernel")), Initrd: emptySHA256, Cmdline: CmdlineHash("")}
	base := Launch{Firmware: fw, Hashes: hashes, VCPUs: 2, VCPUSig: 0xa00f11, GuestFeatures: 1}
	want, err := base.Digest()
	if err != nil {
		t.Fatalf("Digest() error: %v", err)
	}
	start := fw.Hash()
	fromHash := base
	fromHash.Start = &start
	if got, err := fromHash.Digest(); got != want || err != nil {
		t.Errorf("Digest() from the OVMF hash = %s, %v, want %s as from the firmware", got, err, want)
	}
	// Every input changes the digest.
	for _, tc := range []struct {
		name string
		edit func(*Launch)
	}{
		{"vcpus", func(l *Launch) { l.VCPUs = 3 }},
		{"signature", func(l *Launch) { l.VCPUSig = 0xa10f10 }},
		{"features", func(l *Launch) { l.GuestFeatures = 0x21 }},
		{"no kernel", func(l *Launch) { l.Hashes = nil }},
		{"cmdline", func(l *Launch) { h := *hashes; h.Cmdline = CmdlineHash("x"); l.Hashes = &h }},
		{"initrd", func(l *Launch) { h := *hashes; h.Initrd = sha256.Sum256([]byte("i")); l.Hashes = &h }},
		{"start", func(l *Launch) { var d Digest; l.Start = &d }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := base
			tc.edit(&l)
			if got, err := l.Digest(); err != nil || got == want {
				t.Errorf("Digest() with other %s = %s, %v, want a digest other than %s", tc.name, got, err, want)
			}
		})
	}
}

func TestLaunchDigestErrors(t *testing.T) {
	hashes := &KernelHashes{}
	for _, tc := range []struct {
		name   string
		fw     func(*testFirmware)
		launch func(*Launch)
		want   error
	}{
		{"zero vcpus", nil, func(l *Launch) { l.VCPUs = 0 }, ErrInvalidOption},
		{"too many vcpus", nil, func(l *Launch) { l.VCPUs = MaxVCPUs + 1 }, ErrInvalidOption},
		{"no firmware", nil, func(l *Launch) { l.Firmware = nil }, ErrInvalidOption},
		{"no AP reset block", func(f *testFirmware) { f.entries = f.entries[:1] }, nil, ErrMissingEntry},
		{"AP reset block zero", func(f *testFirmware) { f.entries[1].data = u32(0) }, nil, ErrOutOfRange},
		{"no hashes table entry", func(f *testFirmware) { f.entries = f.entries[1:] }, nil, ErrMissingEntry},
		{"no kernel hashes section", func(f *testFirmware) { f.meta = f.meta[:4] }, nil, ErrNoKernelHashes},
		{"hashes table outside section", func(f *testFirmware) { f.entries[0].data = u32(0x811c00) }, nil, ErrOutOfRange},
		{"hashes table past page end", func(f *testFirmware) { f.entries[0].data = u32(0x810fc0) }, nil, ErrOutOfRange},
		{"kernel hashes section two pages", func(f *testFirmware) { f.meta[4].Size = 0x2000 }, nil, ErrMetadata},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := goodFirmware()
			if tc.fw != nil {
				tc.fw(&f)
			}
			fw, err := ParseOVMF(f.build())
			if err != nil {
				t.Fatal(err)
			}
			l := Launch{Firmware: fw, Hashes: hashes, VCPUs: 2, GuestFeatures: 1}
			if tc.launch != nil {
				tc.launch(&l)
			}
			if _, err := l.Digest(); !errors.Is(err, tc.want) {
				t.Errorf("Digest() with %s = %v, want %v", tc.name, err, tc.want)
			}
		})
	}
	// Without a kernel the hashes table entry is not needed; with one vCPU an AP reset
	// address of 0 is not either (but the reset block must exist).
	for _, tc := range []struct {
		name string
		fw   func(*testFirmware)
		want error
	}{
		{"no hashes table entry", func(f *testFirmware) { f.entries = f.entries[1:] }, nil},
		{"AP reset block zero", func(f *testFirmware) { f.entries[1].data = u32(0) }, nil},
		{"no AP reset block", func(f *testFirmware) { f.entries = f.entries[:1] }, ErrMissingEntry},
	} {
		t.Run("1 vCPU, no kernel, "+tc.name, func(t *testing.T) {
			f := goodFirmware()
			tc.fw(&f)
			fw, err := ParseOVMF(f.build())
			if err != nil {
				t.Fatal(err)
			}
			l := Launch{Firmware: fw, VCPUs: 1, GuestFeatures: 1}
			if _, err := l.Digest(); !errors.Is(err, tc.want) {
				t.Errorf("Digest() = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestMeasureErrors(t *testing.T) {
	dir := t.TempDir()
	ovmf := filepath.Join(dir, "OVMF.fd")
	if err := os.WriteFile(ovmf, goodFirmware().build(), 0o644); err != nil {
		t.Fatal(err)
	}
	kernel := filepath.Join(dir, "bzImage")
	if err := os.WriteFile(kernel, []byte("kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	good := Options{OVMF: ovmf, Kernel: kernel, VCPUs: 1, VCPUType: "EPYC-Milan", GuestFeatures: 1}
	if _, err := Measure(good); err != nil {
		t.Fatalf("Measure(%+v) error: %v", good, err)
	}
	for _, tc := range []struct {
		name     string
		edit     func(*Options)
		want     error
		mentions string
	}{
		{"no ovmf", func(o *Options) { o.OVMF = "" }, ErrInvalidOption, "OVMF"},
		{"missing ovmf", func(o *Options) { o.OVMF = missing }, os.ErrNotExist, missing},
		{"missing kernel", func(o *Options) { o.Kernel = missing }, os.ErrNotExist, missing},
		{"missing initrd", func(o *Options) { o.Initrd = missing }, os.ErrNotExist, missing},
		{"directory as kernel", func(o *Options) { o.Kernel = dir }, nil, dir},
		{"initrd without kernel", func(o *Options) { o.Kernel, o.Initrd = "", kernel }, ErrInvalidOption, "kernel"},
		{"append without kernel", func(o *Options) { o.Kernel, o.Append = "", "quiet" }, ErrInvalidOption, "kernel"},
		{"unknown vcpu type", func(o *Options) { o.VCPUType = "EPYC-Zen9" }, ErrUnknownVCPUType, "EPYC-Genoa"},
		{"bad ovmf hash", func(o *Options) { o.OVMFHash = "1234" }, ErrInvalidOption, "1234"},
		{"bad mode", func(o *Options) { o.Mode = "sev" }, ErrInvalidOption, "sev"},
		{"zero vcpus", func(o *Options) { o.VCPUs = 0 }, ErrInvalidOption, "vCPU"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.edit(&o)
			_, err := Measure(o)
			if err == nil {
				t.Fatalf("Measure(%+v) succeeded, want an error", o)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Measure(%+v) = %v, want %v", o, err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.mentions) {
				t.Errorf("Measure(%+v) = %q, want it to mention %q", o, err, tc.mentions)
			}
		})
	}
}
