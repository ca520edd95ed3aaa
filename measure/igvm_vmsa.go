package measure

import (
	"fmt"

	"confguest/measure/igvm"
)

// KVMVMSA returns the VMSA that KVM measures for vCPU 0 when Cloud Hypervisor launches
// an IGVM file: Cloud Hypervisor loads the registers of the VP context into the vCPU
// (KVM_SET_REGS / KVM_SET_SREGS, for every vCPU whose index has a VP context) and KVM
// builds the VMSA from its own vCPU state.
//
// Taken from the file's VMSA: the segment registers ES, CS, SS, DS, FS, GS, LDTR and TR
// (selector, attributes, limit, base); base and limit of GDTR and IDTR; CR0, CR3, CR4;
// EFER; RFLAGS; RIP; the general-purpose registers; SEV_FEATURES (SNPActive added, as KVM
// does for an SNP guest).
// KVM's own values: EFER.SVME set; CR0.CD and CR0.NW cleared (KVM's default quirk);
// CR4.MCE copied from the host (set unless o.HostCR4NoMCE); CPL from SS's DPL; RFLAGS
// bit 1; DR6 0xffff0ff0; DR7 0x400; PAT 0x0007040600070406; XCR0 1; x87 FCW 0x37f;
// MXCSR 0x1f80; everything else zero.
// This follows Cloud Hypervisor's setup_sev_snp_regs and KVM's sev_es_sync_vmsa as read
// in their sources; none of it was measured on SEV-SNP hardware. Least certain: the
// CR4.MCE rule and the FPU defaults (which depend on the host kernel's KVM version).
func KVMVMSA(f *igvm.File, vp igvm.VPContext, o IGVMOptions) (*igvm.VMSA, error) {
	b, err := f.VMSA(vp)
	if err != nil {
		return nil, err
	}
	var src igvm.VMSA
	copy(src[:], b)
	// Cloud Hypervisor passes vCPU 0's sev_features to KVM_SEV_INIT2, and KVM gives every
	// VMSA those features plus SNPActive.
	features := src.U64(igvm.VMSASEVFeatures) | sevFeatureSNP
	if bad := features &^ kvmSEVFeaturesAccept; bad != 0 {
		return nil, fmt.Errorf("VMSA sev_features 0x%x has bits 0x%x that KVM rejects (it accepts SNPActive, DebugSwap, SecureTSC only): build the IGVM file with sev_features 0x1: %w",
			src.U64(igvm.VMSASEVFeatures), bad, ErrIGVMLaunch)
	}
	return kvmVMSAFrom(&src, features, o), nil
}

// cr0CDNW is CR0.CD|CR0.NW, which KVM clears in the guest's CR0 (KVM_X86_QUIRK_CD_NW_CLEARED).
const cr0CDNW = 0x60000000

// kvmVMSAFrom builds the VMSA KVM measures for a vCPU whose registers Cloud Hypervisor
// loaded from src (see KVMVMSA), with the VM's SEV features.
func kvmVMSAFrom(src *igvm.VMSA, features uint64, o IGVMOptions) *igvm.VMSA {
	v := new(igvm.VMSA)
	for _, s := range []int{igvm.SegES, igvm.SegCS, igvm.SegSS, igvm.SegDS, igvm.SegFS, igvm.SegGS, igvm.SegLDTR, igvm.SegTR} {
		v.SetSeg(s, src.Seg(s))
	}
	for _, s := range []int{igvm.SegGDTR, igvm.SegIDTR} {
		t := src.Seg(s)
		v.SetSeg(s, igvm.Segment{Limit: t.Limit, Base: t.Base})
	}
	v[igvm.VMSACPL] = byte(src.Seg(igvm.SegSS).Attrib>>5) & 3
	v.SetU64(igvm.VMSAEFER, src.U64(igvm.VMSAEFER)|eferSVME)
	v.SetU64(igvm.VMSACR0, src.U64(igvm.VMSACR0)&^cr0CDNW)
	v.SetU64(igvm.VMSACR3, src.U64(igvm.VMSACR3))
	cr4 := src.U64(igvm.VMSACR4)
	if !o.HostCR4NoMCE {
		cr4 |= cr4MCE
	}
	v.SetU64(igvm.VMSACR4, cr4)
	v.SetU64(igvm.VMSARFLAGS, src.U64(igvm.VMSARFLAGS)|resetRFLAGS)
	v.SetU64(igvm.VMSARIP, src.U64(igvm.VMSARIP))
	for _, r := range igvm.GPRs {
		v.SetU64(r.Off, src.U64(r.Off))
	}
	v.SetU64(igvm.VMSADR6, resetDR6)
	v.SetU64(igvm.VMSADR7, resetDR7)
	v.SetU64(igvm.VMSAGPAT, resetPAT)
	v.SetU64(igvm.VMSAXCR0, resetXCR0)
	v.SetU32(igvm.VMSAMXCSR, resetMXCSR)
	v.SetU16(igvm.VMSAX87FCW, resetX87FCW)
	v.SetU64(igvm.VMSASEVFeatures, features)
	return v
}

// kvmResetVMSA is the VMSA KVM measures for a vCPU that has no VP context in the file:
// Cloud Hypervisor sets no registers on such a vCPU (only MSRs whose VMSA fields stay
// zero), so KVM's reset state stands, as KVM's init_vmcb and kvm_vcpu_reset build it.
// These attribute values are KVM's own and differ from QEMU's reset state (which sets the
// accessed bits and a 32-bit busy TSS through KVM_SET_SREGS): data segments 0x92, CS
// 0x9a, LDTR 0x82, TR 0x83 (16-bit busy TSS). RDX is the CPUID signature KVM finds in the
// vCPU's CPUID table, which Cloud Hypervisor copies from the host (o.VCPUSig).
func kvmResetVMSA(features uint64, o IGVMOptions) []byte {
	const (
		kvmAttrData = 0x92 // present, S, writable
		kvmAttrCode = 0x9A // present, S, code, readable
		kvmAttrLDT  = 0x82 // present, LDT
		kvmAttrTSS  = 0x83 // present, busy 16-bit TSS
	)
	v := new(igvm.VMSA)
	for _, s := range []int{igvm.SegES, igvm.SegSS, igvm.SegDS, igvm.SegFS, igvm.SegGS} {
		v.SetSeg(s, igvm.Segment{Attrib: kvmAttrData, Limit: resetSegLimit})
	}
	v.SetSeg(igvm.SegCS, igvm.Segment{Selector: resetCSSelector, Attrib: kvmAttrCode, Limit: resetSegLimit, Base: 0xFFFF0000})
	v.SetSeg(igvm.SegGDTR, igvm.Segment{Limit: resetSegLimit})
	v.SetSeg(igvm.SegIDTR, igvm.Segment{Limit: resetSegLimit})
	v.SetSeg(igvm.SegLDTR, igvm.Segment{Attrib: kvmAttrLDT, Limit: resetSegLimit})
	v.SetSeg(igvm.SegTR, igvm.Segment{Attrib: kvmAttrTSS, Limit: resetSegLimit})
	v.SetU64(igvm.VMSAEFER, eferSVME)
	if !o.HostCR4NoMCE {
		v.SetU64(igvm.VMSACR4, cr4MCE)
	}
	v.SetU64(igvm.VMSACR0, cr0ET)
	v.SetU64(igvm.VMSADR7, resetDR7)
	v.SetU64(igvm.VMSADR6, resetDR6)
	v.SetU64(igvm.VMSARFLAGS, resetRFLAGS)
	v.SetU64(igvm.VMSARIP, 0xFFF0)
	v.SetU64(igvm.VMSAGPAT, resetPAT)
	v.SetU64(igvm.VMSARDX, uint64(o.VCPUSig))
	v.SetU64(igvm.VMSASEVFeatures, features)
	v.SetU64(igvm.VMSAXCR0, resetXCR0)
	v.SetU32(igvm.VMSAMXCSR, resetMXCSR)
	v.SetU16(igvm.VMSAX87FCW, resetX87FCW)
	return v[:]
}
