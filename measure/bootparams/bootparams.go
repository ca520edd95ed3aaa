// Package bootparams is the layout of the Linux x86 boot_params page (the "zero page") and
// of the setup header in it and in a bzImage (Documentation/arch/x86/boot.rst and
// zero-page.rst): the offsets the IGVM builder (build/igvmboot) writes and the IGVM
// inspector (confguest igvm) reads.
package bootparams

import "encoding/binary"

// Offsets in boot_params; those from 0x1F1 on are the setup header, copied from the bzImage.
const (
	ACPIRSDPAddr  = 0x070 // acpi_rsdp_addr (boot protocol 2.14)
	ExtCmdLinePtr = 0x0C8 // ext_cmd_line_ptr: the high 32 bits of cmd_line_ptr
	E820Entries   = 0x1E8 // e820_entries
	SetupSects    = 0x1F1 // setup_sects; the setup header starts here
	HeaderStart   = 0x1F1
	BootFlag      = 0x1FE // boot_flag, BootFlagValue
	Jump          = 0x200 // 2-byte jump; the byte at 0x201 sizes the header
	Magic         = 0x202 // header, MagicValue
	Version       = 0x206 // boot protocol version
	TypeOfLoader  = 0x210
	Loadflags     = 0x211
	Code32Start   = 0x214
	RamdiskImage  = 0x218
	RamdiskSize   = 0x21C
	CmdLinePtr    = 0x228 // cmd_line_ptr: the low 32 bits of the command line's address
	InitrdAddrMax = 0x22C
	KernelAlign   = 0x230
	CmdlineSize   = 0x238
	SetupData     = 0x250
	PrefAddress   = 0x258
	InitSize      = 0x260
	E820Table     = 0x2D0 // e820_table: E820Max entries of 20 bytes
	E820Max       = 128
)

// Values of fields.
const (
	MagicValue       = "HdrS"
	BootFlagValue    = 0xAA55
	LoadedHigh       = 0x01 // in Loadflags: the protected-mode kernel loads at 1 MiB
	TypeOfLoaderNone = 0xFF // an "undefined" boot loader
)

// HeaderEnd is how many bytes of boot_params HasHeader and CmdLineAddress read.
const HeaderEnd = KernelAlign

// HasHeader reports whether b, at least HeaderEnd bytes, is a boot_params page (or the
// start of a bzImage) with a setup header: the magic "HdrS" and the boot flag 0xAA55.
func HasHeader(b []byte) bool {
	return len(b) >= HeaderEnd && string(b[Magic:Magic+len(MagicValue)]) == MagicValue &&
		binary.LittleEndian.Uint16(b[BootFlag:]) == BootFlagValue
}

// CmdLineAddress is the guest-physical address of the command line boot_params b points
// to (cmd_line_ptr, with ext_cmd_line_ptr above it); 0 for none.
func CmdLineAddress(b []byte) uint64 {
	le := binary.LittleEndian
	return uint64(le.Uint32(b[CmdLinePtr:])) | uint64(le.Uint32(b[ExtCmdLinePtr:]))<<32
}
