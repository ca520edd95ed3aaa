package measure

import (
	"fmt"
)

// DefaultGuestFeatures is the SEV_FEATURES of the VMSA that QEMU uses unless told
// otherwise: only SNPActive.
const DefaultGuestFeatures = 0x1

// MaxVCPUs bounds the vCPU count (KVM's limit on x86).
const MaxVCPUs = 4096

// Launch describes a QEMU SEV-SNP launch of an OVMF image, with everything the launch
// digest depends on.
type Launch struct {
	Firmware *OVMF
	// Start, when set, replaces the firmware pages' part of the digest (the "OVMF hash",
	// Firmware.Hash()); the firmware is still needed for its metadata sections.
	Start *Digest
	// Hashes is the kernel hashes table of a direct kernel boot, nil when no kernel is
	// given: the KERNEL_HASHES section is then measured as zero pages.
	Hashes        *KernelHashes
	VMM           VMMType // the zero value is QEMU
	VCPUs         int
	VCPUSig       uint32
	GuestFeatures uint64
}

// Digest computes the launch digest: the firmware pages, the SEV metadata sections in
// table order, then one VMSA page per vCPU (the bootstrap processor first, starting at the
// reset vector; the others at the firmware's AP reset address).
func (l *Launch) Digest() (Digest, error) {
	var d Digest
	fw := l.Firmware
	if fw == nil {
		return d, fmt.Errorf("no firmware given: %w", ErrInvalidOption)
	}
	if l.VCPUs < 1 || l.VCPUs > MaxVCPUs {
		return d, fmt.Errorf("vCPU count %d: want 1 to %d: %w", l.VCPUs, MaxVCPUs, ErrInvalidOption)
	}
	// QEMU refuses an SEV-ES or SNP guest whose firmware has no AP reset block, however
	// many vCPUs it has.
	apEIP, err := fw.ResetEIP()
	if err != nil {
		return d, err
	}
	if apEIP == 0 && l.VCPUs > 1 {
		return d, fmt.Errorf("SEV-ES AP reset block holds address 0, so only 1 vCPU can start: %w", ErrOutOfRange)
	}
	if l.Start != nil {
		d = *l.Start
	} else {
		d.UpdateData(fw.GPA(), fw.data)
	}
	hasKernelHashes := false
	for _, s := range fw.sections {
		switch s.Type {
		case SectionSNPSecMem:
			if l.VMM == VMMGCE {
				d.UpdateRange(PageUnmeasured, uint64(s.GPA), uint64(s.Size))
			} else {
				d.UpdateRange(PageZero, uint64(s.GPA), uint64(s.Size))
			}
		case SectionSVSMCAA:
			d.UpdateRange(PageZero, uint64(s.GPA), uint64(s.Size))
		case SectionSNPSecrets:
			d.Update(PageSecrets, uint64(s.GPA), nil)
		case SectionCPUID:
			if l.VMM != VMMEC2 {
				d.Update(PageCPUID, uint64(s.GPA), nil)
			}
		case SectionSNPKernelHashes:
			hasKernelHashes = true
			if l.Hashes == nil {
				d.UpdateRange(PageZero, uint64(s.GPA), uint64(s.Size))
				continue
			}
			page, err := l.hashesPage(s)
			if err != nil {
				return d, err
			}
			d.Update(PageNormal, uint64(s.GPA), page)
		}
	}
	if l.VMM == VMMEC2 { // EC2 adds the CPUID pages after all other sections
		for _, s := range fw.sections {
			if s.Type == SectionCPUID {
				d.Update(PageCPUID, uint64(s.GPA), nil)
			}
		}
	}
	if l.Hashes != nil && !hasKernelHashes {
		return d, fmt.Errorf("a kernel was given but the firmware's SEV metadata has no KERNEL_HASHES section, so it cannot verify one: %w (use an OVMF AmdSev build, or measure without --kernel)", ErrNoKernelHashes)
	}
	bsp := vmsaPageFor(l.VMM, bspResetEIP, l.VCPUSig, l.GuestFeatures)
	var ap []byte
	for i := range l.VCPUs {
		if i == 0 {
			d.Update(PageVMSA, VMSAGPA, bsp)
			continue
		}
		if ap == nil {
			ap = vmsaPageFor(l.VMM, apEIP, l.VCPUSig, l.GuestFeatures)
		}
		d.Update(PageVMSA, VMSAGPA, ap)
	}
	return d, nil
}

// hashesPage returns the KERNEL_HASHES section's single page holding the hashes table.
func (l *Launch) hashesPage(s Section) ([]byte, error) {
	gpa, err := l.Firmware.HashesTableGPA()
	if err != nil {
		return nil, err
	}
	if s.Size != PageSize {
		return nil, fmt.Errorf("KERNEL_HASHES section at 0x%x is 0x%x bytes, want one page: %w", s.GPA, s.Size, ErrMetadata)
	}
	if gpa&^(PageSize-1) != s.GPA {
		return nil, fmt.Errorf("SEV hashes table at 0x%x lies outside the KERNEL_HASHES section at 0x%x: %w", gpa, s.GPA, ErrOutOfRange)
	}
	return l.Hashes.page(int(gpa & (PageSize - 1)))
}
