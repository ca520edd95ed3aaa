package measure

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"testing"

	"confguest/measure/igvm"
)

// The tests below compute expected digests from first principles: PAGE_INFO records
// written byte by byte (SNP firmware ABI, table "PAGE_INFO") and chained with SHA-384,
// without calling Digest.Update or the VMSA code under test.

type pageRec struct {
	typ      byte
	gpa      uint64
	contents []byte // hashed for NORMAL (1) and VMSA (2) pages
}

func chain(recs []pageRec) [48]byte {
	var cur [48]byte
	for _, r := range recs {
		info := make([]byte, 0x70)
		copy(info[0:48], cur[:])
		if r.typ == 1 || r.typ == 2 {
			h := sha512.Sum384(r.contents)
			copy(info[48:96], h[:])
		}
		binary.LittleEndian.PutUint16(info[0x60:], 0x70)
		info[0x62] = r.typ
		binary.LittleEndian.PutUint64(info[0x68:], r.gpa)
		cur = sha512.Sum384(info)
	}
	return cur
}

// seg writes a VMSA segment register {selector, attrib, limit, base} at off.
func seg(p []byte, off int, sel, attr uint16, limit uint32, base uint64) {
	binary.LittleEndian.PutUint16(p[off:], sel)
	binary.LittleEndian.PutUint16(p[off+2:], attr)
	binary.LittleEndian.PutUint32(p[off+4:], limit)
	binary.LittleEndian.PutUint64(p[off+8:], base)
}

func put64(p []byte, off int, v uint64) { binary.LittleEndian.PutUint64(p[off:], v) }

// fileVMSA is the VMSA a direct-boot IGVM file carries for vCPU 0 (32-bit protected mode
// entry), plus fields KVM must not take from the file (CR2, XCR0 2, GDTR attributes).
func fileVMSA(features uint64) []byte {
	p := make([]byte, 4096)
	seg(p, 0x00, 0x18, 0xc093, 0xffffffff, 0) // es
	seg(p, 0x10, 0x10, 0xc09b, 0xffffffff, 0) // cs
	seg(p, 0x20, 0x18, 0xc093, 0xffffffff, 0) // ss
	seg(p, 0x30, 0x18, 0xc093, 0xffffffff, 0) // ds
	seg(p, 0x60, 0x55, 0x66, 0x2f, 0x3000)    // gdtr, with junk selector/attrib
	seg(p, 0x90, 0x28, 0x8b, 0x67, 0)         // tr
	put64(p, 0x158, 0x60000001)               // cr0: KVM clears CD and NW
	put64(p, 0x170, 0)                        // rflags: bit 1 missing on purpose
	put64(p, 0x178, 0x100000)                 // rip
	put64(p, 0x330, 0x7000)                   // rsi
	put64(p, 0x240, 0x1234)                   // cr2: not loaded by the VMM
	put64(p, 0x3B0, features)                 // sev_features
	put64(p, 0x3E8, 2)                        // xcr0: KVM uses its own 1
	return p
}

// kvmBSP is what KVM measures for fileVMSA(1) on a host with CR4.MCE.
func kvmBSP() []byte {
	p := make([]byte, 4096)
	seg(p, 0x00, 0x18, 0xc093, 0xffffffff, 0)
	seg(p, 0x10, 0x10, 0xc09b, 0xffffffff, 0)
	seg(p, 0x20, 0x18, 0xc093, 0xffffffff, 0)
	seg(p, 0x30, 0x18, 0xc093, 0xffffffff, 0)
	seg(p, 0x60, 0, 0, 0x2f, 0x3000)
	seg(p, 0x90, 0x28, 0x8b, 0x67, 0)
	put64(p, 0xD0, 0x1000)                           // efer: SVME
	put64(p, 0x148, 0x40)                            // cr4: MCE from the host
	put64(p, 0x158, 1)                               // cr0
	put64(p, 0x160, 0x400)                           // dr7
	put64(p, 0x168, 0xffff0ff0)                      // dr6
	put64(p, 0x170, 2)                               // rflags
	put64(p, 0x178, 0x100000)                        // rip
	put64(p, 0x268, 0x0007040600070406)              // g_pat
	put64(p, 0x330, 0x7000)                          // rsi
	put64(p, 0x3B0, 1)                               // sev_features
	put64(p, 0x3E8, 1)                               // xcr0
	binary.LittleEndian.PutUint32(p[0x408:], 0x1f80) // mxcsr
	binary.LittleEndian.PutUint16(p[0x410:], 0x37f)  // x87 fcw
	return p
}

// kvmAP is the VMSA of a vCPU without a VP context: KVM's reset state (KVM's
// init_vmcb: data segments 0x92, CS 0x9a at 0xffff0000, LDTR 0x82, TR 0x83) with CPUID
// signature sig in RDX.
func kvmAP(sig uint64) []byte {
	p := make([]byte, 4096)
	for _, off := range []int{0x00, 0x20, 0x30, 0x40, 0x50} {
		seg(p, off, 0, 0x92, 0xffff, 0)
	}
	seg(p, 0x10, 0xf000, 0x9a, 0xffff, 0xffff0000)
	seg(p, 0x60, 0, 0, 0xffff, 0)
	seg(p, 0x70, 0, 0x82, 0xffff, 0)
	seg(p, 0x80, 0, 0, 0xffff, 0)
	seg(p, 0x90, 0, 0x83, 0xffff, 0)
	put64(p, 0xD0, 0x1000)
	put64(p, 0x148, 0x40)
	put64(p, 0x158, 0x10)
	put64(p, 0x160, 0x400)
	put64(p, 0x168, 0xffff0ff0)
	put64(p, 0x170, 2)
	put64(p, 0x178, 0xfff0)
	put64(p, 0x268, 0x0007040600070406)
	put64(p, 0x310, sig)
	put64(p, 0x3B0, 1)
	put64(p, 0x3E8, 1)
	binary.LittleEndian.PutUint32(p[0x408:], 0x1f80)
	binary.LittleEndian.PutUint16(p[0x410:], 0x37f)
	return p
}

// smallIGVM builds a file: SNP platform, policy, the given directives, and a VP context
// for vCPU 0 at GPA 0x3000 holding vmsa.
func smallIGVM(t *testing.T, vmsa []byte, add func(b *igvm.Builder) error) *igvm.File {
	t.Helper()
	var b igvm.Builder
	b.Add(igvm.SupportedPlatform{CompatibilityMask: 1, PlatformType: igvm.PlatformSEVSNP, PlatformVersion: 1})
	b.Add(igvm.GuestPolicy{Policy: 0x30000, CompatibilityMask: 1})
	if err := add(&b); err != nil {
		t.Fatal(err)
	}
	if err := b.AddVPContext(igvm.VPContext{GPA: 0x3000, CompatibilityMask: 1}, vmsa); err != nil {
		t.Fatal(err)
	}
	out, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	f, err := igvm.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestIGVMFirstPrinciples(t *testing.T) {
	hello := make([]byte, 4096)
	copy(hello, "hello, measured page")
	zero := make([]byte, 4096)
	vmsaGPA := uint64(0xFFFFFFFFF000)
	normalPage := func(b *igvm.Builder) error {
		return b.AddPage(igvm.PageData{GPA: 0x1000, CompatibilityMask: 1}, []byte("hello, measured page"))
	}
	zeroPage := func(b *igvm.Builder) error {
		return b.AddPage(igvm.PageData{GPA: 0x2000, CompatibilityMask: 1}, nil)
	}
	paramInsert := func(b *igvm.Builder) error {
		b.Add(igvm.ParameterArea{NumberOfBytes: 0x2000, Index: 7})
		b.Add(igvm.Parameter{Kind: igvm.TypeMemoryMap, AreaIndex: 7})
		b.Add(igvm.ParameterInsert{GPA: 0x5000, CompatibilityMask: 1, Index: 7})
		return nil
	}
	special := func(b *igvm.Builder) error {
		if err := b.AddPage(igvm.PageData{GPA: 0x8000, CompatibilityMask: 1, DataType: igvm.DataCPUID}, []byte{9}); err != nil {
			return err
		}
		if err := b.AddPage(igvm.PageData{GPA: 0x9000, CompatibilityMask: 1, DataType: igvm.DataSecrets}, nil); err != nil {
			return err
		}
		return b.AddPage(igvm.PageData{GPA: 0xA000, CompatibilityMask: 1, Flags: igvm.PageFlagUnmeasured}, []byte{1})
	}
	flagged := func(b *igvm.Builder) error {
		// Cloud Hypervisor: the unmeasured flag counts for normal pages only, shared is ignored.
		if err := b.AddPage(igvm.PageData{GPA: 0x9000, CompatibilityMask: 1, DataType: igvm.DataSecrets, Flags: igvm.PageFlagUnmeasured}, nil); err != nil {
			return err
		}
		return b.AddPage(igvm.PageData{GPA: 0x1000, CompatibilityMask: 1, Flags: igvm.PageFlagShared}, []byte("hello, measured page"))
	}
	apContext := func(b *igvm.Builder) error {
		ap := fileVMSA(1)
		put64(ap, 0x178, 0x200000) // rip
		put64(ap, 0x310, 7)        // rdx
		put64(ap, 0x3B0, 0x9)      // sev_features: KVM uses vCPU 0's
		return b.AddVPContext(igvm.VPContext{GPA: 0x4000, CompatibilityMask: 1, VPIndex: 1}, ap)
	}
	apWant := kvmBSP()
	put64(apWant, 0x178, 0x200000)
	put64(apWant, 0x310, 7)
	both := func(fs ...func(*igvm.Builder) error) func(*igvm.Builder) error {
		return func(b *igvm.Builder) error {
			for _, f := range fs {
				if err := f(b); err != nil {
					return err
				}
			}
			return nil
		}
	}
	tests := []struct {
		name  string
		add   func(*igvm.Builder) error
		rules Rules
		vcpus int
		sig   uint32
		want  []pageRec
	}{
		{"one normal page", normalPage, RulesKVM, 1, 0,
			[]pageRec{{1, 0x1000, hello}, {2, vmsaGPA, kvmBSP()}}},
		{"one zero page", zeroPage, RulesKVM, 1, 0,
			[]pageRec{{3, 0x2000, nil}, {2, vmsaGPA, kvmBSP()}}},
		{"parameter insert", both(normalPage, paramInsert), RulesKVM, 1, 0,
			[]pageRec{{1, 0x1000, hello}, {4, 0x5000, nil}, {4, 0x6000, nil}, {2, vmsaGPA, kvmBSP()}}},
		{"cpuid, secrets, unmeasured", special, RulesKVM, 1, 0,
			[]pageRec{{6, 0x8000, nil}, {5, 0x9000, nil}, {4, 0xA000, nil}, {2, vmsaGPA, kvmBSP()}}},
		{"two vCPUs", both(normalPage, zeroPage), RulesKVM, 2, 0xa00f11,
			[]pageRec{{1, 0x1000, hello}, {3, 0x2000, nil}, {2, vmsaGPA, kvmBSP()}, {2, vmsaGPA, kvmAP(0xa00f11)}}},
		{"three vCPUs", zeroPage, RulesKVM, 3, 0,
			[]pageRec{{3, 0x2000, nil}, {2, vmsaGPA, kvmBSP()}, {2, vmsaGPA, kvmAP(0)}, {2, vmsaGPA, kvmAP(0)}}},
		{"flags on secrets and shared pages", flagged, RulesKVM, 1, 0,
			[]pageRec{{5, 0x9000, nil}, {1, 0x1000, hello}, {2, vmsaGPA, kvmBSP()}}},
		{"mshv: shared page left out", flagged, RulesMSHV, 1, 0,
			[]pageRec{{5, 0x9000, nil}, {2, 0x3000, fileVMSA(1)}}},
		{"second vCPU with its own VP context", both(zeroPage, apContext), RulesKVM, 2, 0,
			[]pageRec{{3, 0x2000, nil}, {2, vmsaGPA, kvmBSP()}, {2, vmsaGPA, apWant}}},
		{"mshv: zero page is normal, file VMSA at its GPA", both(normalPage, zeroPage, paramInsert), RulesMSHV, 4, 0,
			[]pageRec{{1, 0x1000, hello}, {1, 0x2000, zero}, {4, 0x5000, nil}, {4, 0x6000, nil}, {2, 0x3000, fileVMSA(1)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := smallIGVM(t, fileVMSA(1), tc.add)
			got, err := IGVM(f, IGVMOptions{Rules: tc.rules, VCPUs: tc.vcpus, VCPUSig: tc.sig})
			if err != nil {
				t.Fatalf("IGVM(%s, %v, %d vCPUs) = %v", tc.name, tc.rules, tc.vcpus, err)
			}
			if want := chain(tc.want); !bytes.Equal(got[:], want[:]) {
				t.Errorf("IGVM(%s, %v, %d vCPUs) = %x, want %x", tc.name, tc.rules, tc.vcpus, got, want)
			}
		})
	}
}

func TestKVMVMSAFields(t *testing.T) {
	f := smallIGVM(t, fileVMSA(1), func(*igvm.Builder) error { return nil })
	vp := f.Headers[len(f.Headers)-1].Body.(igvm.VPContext)
	v, err := KVMVMSA(f, vp, IGVMOptions{VCPUs: 1})
	if err != nil {
		t.Fatalf("KVMVMSA = %v", err)
	}
	if want := kvmBSP(); !bytes.Equal(v[:], want) {
		for i := range want {
			if v[i] != want[i] {
				t.Fatalf("KVMVMSA: first difference at offset 0x%x: got 0x%02x, want 0x%02x", i, v[i], want[i])
			}
		}
	}
	noMCE, err := KVMVMSA(f, vp, IGVMOptions{VCPUs: 1, HostCR4NoMCE: true})
	if err != nil {
		t.Fatal(err)
	}
	if cr4 := binary.LittleEndian.Uint64(noMCE[0x148:]); cr4 != 0 {
		t.Errorf("KVMVMSA(HostCR4NoMCE) CR4 = 0x%x, want 0", cr4)
	}
}

func TestIGVMErrors(t *testing.T) {
	ok := smallIGVM(t, fileVMSA(1), func(*igvm.Builder) error { return nil })
	restricted := smallIGVM(t, fileVMSA(0x9), func(*igvm.Builder) error { return nil })
	cpuidXF := smallIGVM(t, fileVMSA(1), func(b *igvm.Builder) error {
		return b.AddPage(igvm.PageData{GPA: 0x8000, CompatibilityMask: 1, DataType: igvm.DataCPUIDXF}, nil)
	})
	errorRange := smallIGVM(t, fileVMSA(1), func(b *igvm.Builder) error {
		b.Add(igvm.ErrorRange{GPA: 0x10000, CompatibilityMask: 1, SizeBytes: 0x1000})
		return nil
	})
	tests := []struct {
		name string
		f    *igvm.File
		o    IGVMOptions
		want error
	}{
		{"zero vCPUs", ok, IGVMOptions{Rules: RulesKVM, VCPUs: 0}, ErrInvalidOption},
		{"too many vCPUs", ok, IGVMOptions{Rules: RulesKVM, VCPUs: MaxVCPUs + 1}, ErrInvalidOption},
		{"unknown rules", ok, IGVMOptions{Rules: Rules(9), VCPUs: 1}, ErrInvalidOption},
		{"restricted injection on KVM", restricted, IGVMOptions{Rules: RulesKVM, VCPUs: 1}, ErrIGVMLaunch},
		{"CPUID_XF page on KVM", cpuidXF, IGVMOptions{Rules: RulesKVM, VCPUs: 1}, ErrIGVMLaunch},
		{"ERROR_RANGE header on KVM", errorRange, IGVMOptions{Rules: RulesKVM, VCPUs: 1}, ErrIGVMLaunch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := IGVM(tc.f, tc.o); !errors.Is(err, tc.want) {
				t.Errorf("IGVM(%s) = %v, want %v", tc.name, err, tc.want)
			}
		})
	}
	if _, err := IGVM(restricted, IGVMOptions{Rules: RulesMSHV}); err != nil {
		t.Errorf("IGVM(sev_features 0x9, mshv) = %v, want no error", err)
	}
}

func TestParseRules(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Rules
		err  bool
	}{{"kvm", RulesKVM, false}, {"", RulesKVM, false}, {"mshv", RulesMSHV, false}, {"hyperv", 0, true}} {
		got, err := ParseRules(tc.in)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("ParseRules(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}
