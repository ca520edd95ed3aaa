package measure

import "fmt"

// VMMType is the hypervisor that launches the OVMF guest. They differ in a few initial
// register values and in how they present the metadata sections.
type VMMType int

// VMM types, named as sev-snp-measure's --vmm-type names them.
const (
	VMMQEMU VMMType = iota // QEMU with KVM
	VMMEC2                 // AWS EC2: CPUID page last, fixed RDX, other segment flags
	VMMGCE                 // Google Compute Engine: SEC_MEM unmeasured, its own PAT
)

var vmmNames = []string{VMMQEMU: "QEMU", VMMEC2: "ec2", VMMGCE: "gce"}

func (v VMMType) String() string {
	if v >= 0 && int(v) < len(vmmNames) {
		return vmmNames[v]
	}
	return fmt.Sprintf("VMMType(%d)", int(v))
}

// ParseVMMType parses "QEMU", "ec2" or "gce".
func ParseVMMType(s string) (VMMType, error) {
	for i, n := range vmmNames {
		if n == s {
			return VMMType(i), nil
		}
	}
	return 0, fmt.Errorf("VMM type %q: want QEMU, ec2 or gce: %w", s, ErrInvalidOption)
}

// resetState is the part of a VMSA's initial state that differs between VMMs.
type resetState struct {
	csAttr, ssAttr, trAttr uint16
	rdx                    uint64
	pat                    uint64
	mxcsr                  uint32
	x87FCW                 uint16
}

// reset returns the VMM's initial state for a vCPU starting at eip with signature sig.
func (v VMMType) reset(eip, sig uint32) resetState {
	switch v {
	case VMMEC2:
		s := resetState{csAttr: segmentAttrCode, ssAttr: 0x92, trAttr: 0x83, rdx: 0x600, pat: resetPAT}
		if eip == bspResetEIP {
			s.csAttr = 0x9A
		}
		return s
	case VMMGCE:
		return resetState{csAttr: segmentAttrCode, ssAttr: segmentAttrData, trAttr: segmentAttrTSS, rdx: 0x600, pat: 0x00070106}
	}
	return resetState{csAttr: segmentAttrCode, ssAttr: segmentAttrData, trAttr: segmentAttrTSS,
		rdx: uint64(sig), pat: resetPAT, mxcsr: resetMXCSR, x87FCW: resetX87FCW}
}
