package measure

import "encoding/binary"

// VMSAGPA is the guest physical address the SNP firmware measures every VMSA page at.
const VMSAGPA = 0xFFFFFFFFF000

// bspResetEIP is where the bootstrap processor starts: the x86 reset vector.
const bspResetEIP = 0xFFFFFFF0

// Offsets into the VMSA page, the SEV-ES save area (AMD64 Architecture Programmer's
// Manual Vol. 2, Table B-4 "VMSA Layout, State Save Area for SEV-ES").
const (
	vmsaES          = 0x000 // segment registers: selector u16, attributes u16, limit u32, base u64
	vmsaCS          = 0x010
	vmsaSS          = 0x020
	vmsaDS          = 0x030
	vmsaFS          = 0x040
	vmsaGS          = 0x050
	vmsaGDTR        = 0x060
	vmsaLDTR        = 0x070
	vmsaIDTR        = 0x080
	vmsaTR          = 0x090
	vmsaEFER        = 0x0D0
	vmsaCR4         = 0x148
	vmsaCR0         = 0x158
	vmsaDR7         = 0x160
	vmsaDR6         = 0x168
	vmsaRFLAGS      = 0x170
	vmsaRIP         = 0x178
	vmsaGPAT        = 0x268
	vmsaRDX         = 0x310
	vmsaSEVFeatures = 0x3B0
	vmsaXCR0        = 0x3E8
	vmsaMXCSR       = 0x408
	vmsaX87FCW      = 0x410
	segmentAttrData = 0x93 // present, writable, accessed data segment
	segmentAttrCode = 0x9B // present, readable, accessed code segment
	segmentAttrLDT  = 0x82
	segmentAttrTSS  = 0x8B // busy 32-bit TSS
	resetSegLimit   = 0xFFFF
	resetCSSelector = 0xF000
	eferSVME        = 0x1000 // KVM sets EFER.SVME for SEV-ES guests
	cr4MCE          = 0x40   // KVM sets CR4.MCE
	cr0ET           = 0x10
	resetDR7        = 0x400
	resetDR6        = 0xFFFF0FF0
	resetRFLAGS     = 0x2
	resetPAT        = 0x0007040600070406 // power-on PAT (APM Vol. 2, A.3)
	resetXCR0       = 0x1
	resetMXCSR      = 0x1F80
	resetX87FCW     = 0x37F
)

// vmsaPage returns the initial VMSA QEMU gives a vCPU that starts at eip.
func vmsaPage(eip uint32, vcpuSig uint32, guestFeatures uint64) []byte {
	return vmsaPageFor(VMMQEMU, eip, vcpuSig, guestFeatures)
}

// vmsaPageFor returns the initial VMSA the VMM gives a vCPU that starts at eip: in real
// mode with CS based so that CS.base + IP = eip and, under QEMU, RDX holding the CPUID
// signature, as at x86 reset.
func vmsaPageFor(vmm VMMType, eip uint32, vcpuSig uint32, guestFeatures uint64) []byte {
	r := vmm.reset(eip, vcpuSig)
	p := make([]byte, PageSize)
	le := binary.LittleEndian
	seg := func(off int, selector, attrib uint16, limit uint32, base uint64) {
		le.PutUint16(p[off:], selector)
		le.PutUint16(p[off+2:], attrib)
		le.PutUint32(p[off+4:], limit)
		le.PutUint64(p[off+8:], base)
	}
	seg(vmsaES, 0, segmentAttrData, resetSegLimit, 0)
	seg(vmsaCS, resetCSSelector, r.csAttr, resetSegLimit, uint64(eip&0xFFFF0000))
	seg(vmsaSS, 0, r.ssAttr, resetSegLimit, 0)
	seg(vmsaDS, 0, segmentAttrData, resetSegLimit, 0)
	seg(vmsaFS, 0, segmentAttrData, resetSegLimit, 0)
	seg(vmsaGS, 0, segmentAttrData, resetSegLimit, 0)
	seg(vmsaGDTR, 0, 0, resetSegLimit, 0)
	seg(vmsaLDTR, 0, segmentAttrLDT, resetSegLimit, 0)
	seg(vmsaIDTR, 0, 0, resetSegLimit, 0)
	seg(vmsaTR, 0, r.trAttr, resetSegLimit, 0)
	le.PutUint64(p[vmsaEFER:], eferSVME)
	le.PutUint64(p[vmsaCR4:], cr4MCE)
	le.PutUint64(p[vmsaCR0:], cr0ET)
	le.PutUint64(p[vmsaDR7:], resetDR7)
	le.PutUint64(p[vmsaDR6:], resetDR6)
	le.PutUint64(p[vmsaRFLAGS:], resetRFLAGS)
	le.PutUint64(p[vmsaRIP:], uint64(eip&0xFFFF))
	le.PutUint64(p[vmsaGPAT:], r.pat)
	le.PutUint64(p[vmsaRDX:], r.rdx)
	le.PutUint64(p[vmsaSEVFeatures:], guestFeatures)
	le.PutUint64(p[vmsaXCR0:], resetXCR0)
	le.PutUint32(p[vmsaMXCSR:], r.mxcsr)
	le.PutUint16(p[vmsaX87FCW:], r.x87FCW)
	return p
}
