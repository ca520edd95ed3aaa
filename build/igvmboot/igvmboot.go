// Package igvmboot builds the IGVM file that boots the confguest kernel directly (no
// firmware) as an SEV-SNP guest under Cloud Hypervisor: kernel, initrd and command line
// in measured pages, entered through the Linux 32-bit boot protocol.
//
// Guest physical layout (every page of guest RAM is an IGVM page, in ascending order):
//
//	0x00000  zero page (real-mode IVT, BIOS data area)       RAM
//	0x01000  GDT: null, -, 0x10 flat code, 0x18 flat data, -, 0x28 TSS   RAM
//	0x02000  boot_params (setup header from the bzImage, e820)          RAM
//	0x03000  kernel command line, NUL-terminated (measured)             RAM
//	0x04000  setup_data node: SETUP_CC_BLOB → secrets and CPUID pages   RAM
//	0x05000  SNP CPUID page (page type CPUID, filled by the VMM)        reserved
//	0x06000  SNP secrets page (page type SECRETS)                       reserved
//	0x07000  vCPU 0's VMSA (the VP context; not an IGVM page: the VMM     reserved
//	         copies it here, KVM measures its own VMSA at 0xFFFFFFFFF000)
//	0x08000  ACPI tables: RSDP, XSDT, FADT, MADT, DSDT (2 pages)        ACPI
//	0x0A000  zero pages up to 0xA0000                                   RAM
//	(0xA0000 - 1 MiB: not RAM, no IGVM pages)
//	1 MiB    zero pages up to the kernel                                RAM
//	pref_address  protected-mode kernel, zero pages up to init_size     RAM
//	         initrd, page-aligned, then zero pages up to the RAM size   RAM
//
// vCPU 0 starts in 32-bit protected mode at pref_address (code32_start) with RSI pointing
// at boot_params, as Documentation/arch/x86/boot.rst describes; SEV features: SNP only.
package igvmboot

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"confguest/measure/bootparams"
	"confguest/measure/igvm"
)

// The guest the IGVM file describes unless Options say otherwise. The VMM must give the
// guest at least this much memory and exactly this many vCPUs.
const (
	DefaultMemoryMiB = 512
	DefaultVCPUs     = 1
	// MaxVCPUs bounds the vCPU count (the MADT must fit its pages).
	MaxVCPUs = 64
)

// GuestPolicy is the SNP guest policy of the file: ABI 0.0, SMT allowed, the
// must-be-one bit; no debugging, no migration agent, not limited to one socket.
const GuestPolicy = 0x30000

// SEVFeatures is the VMSA SEV_FEATURES of vCPU 0: SNPActive only (KVM rejects more).
const SEVFeatures = 0x1

// VMSAGPA is the GPA the VP context names for vCPU 0's VMSA. Cloud Hypervisor copies
// the VMSA there (so it must be guest memory, and no IGVM page); KVM measures the VMSA it
// builds at 0xFFFFFFFFF000 whatever this address.
const VMSAGPA = 0x7000

// Guest physical addresses of the boot structures.
const (
	pageSize       = igvm.PageSize
	gdtGPA         = 0x1000
	bootParamsGPA  = 0x2000
	cmdlineGPA     = 0x3000
	setupDataGPA   = 0x4000
	cpuidGPA       = 0x5000
	secretsGPA     = 0x6000
	acpiGPA        = 0x8000
	acpiPages      = 2
	lowMemEnd      = 0xA0000
	highMemStart   = 1 << 20
	maxCmdline     = pageSize - 1
	setupCCBlob    = 7
	ccBlobMagic    = 0x45444D41 // "AMDE"
	e820RAM        = 1
	e820Reserved   = 2
	e820ACPI       = 3
	bootCS         = 0x10
	bootDS         = 0x18
	bootTR         = 0x28
	gdtEntries     = 6
	attrCode32     = 0xC9B // G, D/B, P, S, execute/read accessed
	attrData32     = 0xC93 // G, D/B, P, S, read/write accessed
	attrTSSBusy    = 0x08B // P, busy 32-bit TSS
	tssLimit       = 0x67
	eferSVME       = 0x1000
	cr0PE          = 0x1
	rflagsReserved = 0x2
	xcr0x87        = 0x1
)

// Options configure the guest an IGVM file describes.
type Options struct {
	// MemoryMiB is the guest RAM size, every page of which becomes an IGVM page
	// (DefaultMemoryMiB when 0).
	MemoryMiB int
	// VCPUs is the number of vCPUs listed in the MADT (DefaultVCPUs when 0).
	VCPUs int
}

func (o Options) withDefaults() Options {
	if o.MemoryMiB == 0 {
		o.MemoryMiB = DefaultMemoryMiB
	}
	if o.VCPUs == 0 {
		o.VCPUs = DefaultVCPUs
	}
	return o
}

// Build returns the IGVM file that boots kernel (a bzImage) with initrd and cmdline. The
// output depends only on its inputs.
func Build(kernel, initrd []byte, cmdline string, o Options) ([]byte, error) {
	o = o.withDefaults()
	if o.VCPUs < 1 || o.VCPUs > MaxVCPUs {
		return nil, fmt.Errorf("%d vCPUs: want 1 to %d: %w", o.VCPUs, MaxVCPUs, ErrOption)
	}
	if o.MemoryMiB < 64 || o.MemoryMiB > 3072 {
		return nil, fmt.Errorf("guest memory %d MiB: want 64 to 3072 (below the 32-bit PCI hole): %w", o.MemoryMiB, ErrOption)
	}
	memSize := uint64(o.MemoryMiB) << 20
	k, err := parseBzImage(kernel)
	if err != nil {
		return nil, err
	}
	if len(cmdline) > maxCmdline || uint32(len(cmdline)) >= k.cmdlineSize {
		return nil, fmt.Errorf("command line of %d bytes exceeds the kernel's limit of %d (and this builder's %d): %w",
			len(cmdline), k.cmdlineSize-1, maxCmdline, ErrTooLarge)
	}
	if bytes.IndexByte([]byte(cmdline), 0) >= 0 {
		return nil, fmt.Errorf("command line contains a NUL byte: %w", ErrOption)
	}
	kernelEnd := align(k.prefAddress+uint64(k.initSize), pageSize)
	initrdGPA := kernelEnd
	initrdEnd := initrdGPA + uint64(len(initrd))
	if initrdEnd > memSize {
		return nil, fmt.Errorf("kernel (init_size %d MiB at 0x%x) and initrd (%d MiB) end at 0x%x, beyond the %d MiB of guest RAM: %w",
			k.initSize>>20, k.prefAddress, len(initrd)>>20, initrdEnd, o.MemoryMiB, ErrTooLarge)
	}
	if len(initrd) > 0 && initrdEnd-1 > uint64(k.initrdAddrMax) {
		return nil, fmt.Errorf("initrd would end at 0x%x, above the kernel's initrd_addr_max 0x%x: %w", initrdEnd-1, k.initrdAddrMax, ErrTooLarge)
	}

	acpi, err := acpiTables(acpiGPA, o.VCPUs)
	if err != nil {
		return nil, err
	}
	if len(acpi) > acpiPages*pageSize {
		return nil, fmt.Errorf("ACPI tables of %d bytes exceed %d pages: %w", len(acpi), acpiPages, ErrTooLarge)
	}
	low := map[uint64][]byte{
		gdtGPA:        gdt(),
		bootParamsGPA: bootParams(k, memSize, initrdGPA, uint32(len(initrd))),
		cmdlineGPA:    append([]byte(cmdline), 0),
		setupDataGPA:  setupData(),
	}
	for i := range acpiPages {
		start := min(i*pageSize, len(acpi))
		low[acpiGPA+uint64(i)*pageSize] = acpi[start:min(start+pageSize, len(acpi))]
	}

	var b igvm.Builder
	b.Add(igvm.SupportedPlatform{CompatibilityMask: 1, HighestVTL: 0, PlatformType: igvm.PlatformSEVSNP, PlatformVersion: 1})
	b.Add(igvm.GuestPolicy{Policy: GuestPolicy, CompatibilityMask: 1})
	page := func(gpa uint64, dataType uint16, data []byte) error {
		if isZero(data) {
			data = nil
		}
		return b.AddPage(igvm.PageData{GPA: gpa, CompatibilityMask: 1, DataType: dataType}, data)
	}
	for gpa := uint64(0); gpa < lowMemEnd; gpa += pageSize {
		var err error
		switch gpa {
		case VMSAGPA:
			continue
		case cpuidGPA:
			err = page(gpa, igvm.DataCPUID, nil)
		case secretsGPA:
			err = page(gpa, igvm.DataSecrets, nil)
		default:
			err = page(gpa, igvm.DataNormal, low[gpa])
		}
		if err != nil {
			return nil, err
		}
	}
	for gpa := uint64(highMemStart); gpa < memSize; gpa += pageSize {
		var data []byte
		switch {
		case gpa >= k.prefAddress && gpa < k.prefAddress+uint64(len(k.kernel)):
			data = slice(k.kernel, gpa-k.prefAddress)
		case gpa >= initrdGPA && gpa < initrdEnd:
			data = slice(initrd, gpa-initrdGPA)
		}
		if err := page(gpa, igvm.DataNormal, data); err != nil {
			return nil, err
		}
	}
	vmsa := bootVMSA(k.prefAddress)
	if err := b.AddVPContext(igvm.VPContext{GPA: VMSAGPA, CompatibilityMask: 1, VPIndex: 0}, vmsa[:]); err != nil {
		return nil, err
	}
	out, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("lay out IGVM file: %w", err)
	}
	return out, nil
}

// slice returns the page of data starting at off (shorter at the end).
func slice(data []byte, off uint64) []byte {
	return data[off:min(off+pageSize, uint64(len(data)))]
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// gdt returns the boot GDT: flat 4 GiB code at 0x10, flat data at 0x18, a TSS at 0x28.
func gdt() []byte {
	g := make([]byte, gdtEntries*8)
	binary.LittleEndian.PutUint64(g[bootCS:], 0x00CF9B000000FFFF)
	binary.LittleEndian.PutUint64(g[bootDS:], 0x00CF93000000FFFF)
	binary.LittleEndian.PutUint64(g[bootTR:], 0x00008B0000000000|tssLimit)
	return g
}

// e820Entry is one entry of the boot_params e820 table.
type e820Entry struct {
	addr, size uint64
	typ        uint32
}

// e820Map is the memory map the kernel is given.
func e820Map(memSize uint64) []e820Entry {
	return []e820Entry{
		{0, cpuidGPA, e820RAM},
		{cpuidGPA, VMSAGPA + pageSize - cpuidGPA, e820Reserved}, // CPUID, secrets, VMSA
		{acpiGPA, acpiPages * pageSize, e820ACPI},
		{acpiGPA + acpiPages*pageSize, lowMemEnd - acpiGPA - acpiPages*pageSize, e820RAM},
		{highMemStart, memSize - highMemStart, e820RAM},
	}
}

// bootParams returns the boot_params page ("zero page").
func bootParams(k *bzImage, memSize, initrdGPA uint64, initrdSize uint32) []byte {
	p := make([]byte, pageSize)
	le := binary.LittleEndian
	copy(p[bootparams.HeaderStart:], k.header)
	p[bootparams.TypeOfLoader] = bootparams.TypeOfLoaderNone
	le.PutUint32(p[bootparams.Code32Start:], uint32(k.prefAddress))
	if initrdSize > 0 {
		le.PutUint32(p[bootparams.RamdiskImage:], uint32(initrdGPA))
		le.PutUint32(p[bootparams.RamdiskSize:], initrdSize)
	} else {
		le.PutUint32(p[bootparams.RamdiskImage:], 0)
		le.PutUint32(p[bootparams.RamdiskSize:], 0)
	}
	le.PutUint32(p[bootparams.CmdLinePtr:], cmdlineGPA)
	le.PutUint64(p[bootparams.SetupData:], setupDataGPA)
	le.PutUint64(p[bootparams.ACPIRSDPAddr:], acpiGPA)
	m := e820Map(memSize)
	p[bootparams.E820Entries] = byte(len(m))
	for i, e := range m {
		o := bootparams.E820Table + 20*i
		le.PutUint64(p[o:], e.addr)
		le.PutUint64(p[o+8:], e.size)
		le.PutUint32(p[o+16:], e.typ)
	}
	return p
}

// setupData returns a setup_data node of type SETUP_CC_BLOB holding the SEV confidential
// computing blob that points Linux at the secrets and CPUID pages.
func setupData() []byte {
	le := binary.LittleEndian
	var b []byte
	b = le.AppendUint64(b, 0) // next
	b = le.AppendUint32(b, setupCCBlob)
	b = le.AppendUint32(b, 40) // len
	b = le.AppendUint32(b, ccBlobMagic)
	b = le.AppendUint16(b, 1) // version
	b = le.AppendUint16(b, 0)
	b = le.AppendUint64(b, secretsGPA)
	b = le.AppendUint32(b, pageSize)
	b = le.AppendUint32(b, 0)
	b = le.AppendUint64(b, cpuidGPA)
	b = le.AppendUint32(b, pageSize)
	return le.AppendUint32(b, 0)
}

// bootVMSA is vCPU 0's initial state: the 32-bit boot protocol entry.
func bootVMSA(entry uint64) *igvm.VMSA {
	v := new(igvm.VMSA)
	code := igvm.Segment{Selector: bootCS, Attrib: attrCode32, Limit: 0xFFFFFFFF}
	data := igvm.Segment{Selector: bootDS, Attrib: attrData32, Limit: 0xFFFFFFFF}
	v.SetSeg(igvm.SegCS, code)
	for _, s := range []int{igvm.SegDS, igvm.SegES, igvm.SegSS, igvm.SegFS, igvm.SegGS} {
		v.SetSeg(s, data)
	}
	v.SetSeg(igvm.SegTR, igvm.Segment{Selector: bootTR, Attrib: attrTSSBusy, Limit: tssLimit})
	v.SetSeg(igvm.SegGDTR, igvm.Segment{Limit: gdtEntries*8 - 1, Base: gdtGPA})
	v.SetU64(igvm.VMSAEFER, eferSVME)
	v.SetU64(igvm.VMSACR0, cr0PE)
	v.SetU64(igvm.VMSARFLAGS, rflagsReserved)
	v.SetU64(igvm.VMSARIP, entry)
	v.SetU64(igvm.VMSARSI, bootParamsGPA)
	v.SetU64(igvm.VMSASEVFeatures, SEVFeatures)
	v.SetU64(igvm.VMSAXCR0, xcr0x87)
	return v
}
