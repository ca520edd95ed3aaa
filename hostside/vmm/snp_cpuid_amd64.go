package vmm

// cpuid executes the CPUID instruction (snp_cpuid_amd64.s).
func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)

// hostCBit reads the memory encryption C-bit position and the number of physical address
// bits lost to it from CPUID leaf 0x8000001F (AMD APM vol. 3, EBX bits 5:0 and 11:6), as
// QEMU checks them against its sev-snp-guest object. ok is false on CPUs without the leaf
// or without SEV (EAX bit 1).
func hostCBit() (pos, reduced int, ok bool) {
	if maxExt, _, _, _ := cpuid(0x80000000, 0); maxExt < 0x8000001f {
		return 0, 0, false
	}
	eax, ebx, _, _ := cpuid(0x8000001f, 0)
	if eax&(1<<1) == 0 {
		return 0, 0, false
	}
	return int(ebx & 0x3f), int(ebx >> 6 & 0x3f), true
}
