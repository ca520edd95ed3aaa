package igvmboot

import (
	"encoding/binary"
	"fmt"
)

// Offsets in the bzImage / boot_params setup header (Documentation/arch/x86/boot.rst).
const (
	hdrSetupSects     = 0x1F1
	hdrStart          = 0x1F1
	hdrJump           = 0x200 // 2-byte jump; the byte at 0x201 sizes the header
	hdrMagic          = 0x202 // "HdrS"
	hdrVersion        = 0x206
	hdrTypeOfLoader   = 0x210
	hdrLoadflags      = 0x211
	hdrCode32Start    = 0x214
	hdrRamdiskImage   = 0x218
	hdrRamdiskSize    = 0x21C
	hdrCmdLinePtr     = 0x228
	hdrInitrdAddrMax  = 0x22C
	hdrKernelAlign    = 0x230
	hdrCmdlineSize    = 0x238
	hdrSetupData      = 0x250
	hdrPrefAddress    = 0x258
	hdrInitSize       = 0x260
	bootParamsACPI    = 0x070 // acpi_rsdp_addr
	bootParamsE820Num = 0x1E8
	bootParamsE820    = 0x2D0
	e820Max           = 128

	loadedHigh       = 0x01
	minProtocol      = 0x20E // 2.14: acpi_rsdp_addr in boot_params
	typeOfLoaderNone = 0xFF  // "undefined" boot loader
)

// bzImage is a parsed Linux x86 bzImage.
type bzImage struct {
	header        []byte // the setup header, from 0x1F1 to its end
	protocol      uint16
	kernel        []byte // the protected-mode kernel
	prefAddress   uint64
	initSize      uint32
	initrdAddrMax uint32
	cmdlineSize   uint32
}

func parseBzImage(b []byte) (*bzImage, error) {
	if len(b) < 0x264 {
		return nil, fmt.Errorf("kernel is %d bytes, too short for a bzImage setup header: %w", len(b), ErrKernel)
	}
	le := binary.LittleEndian
	if string(b[hdrMagic:hdrMagic+4]) != "HdrS" {
		return nil, fmt.Errorf("kernel has no \"HdrS\" setup header magic at 0x%x (not a bzImage): %w", hdrMagic, ErrKernel)
	}
	k := &bzImage{protocol: le.Uint16(b[hdrVersion:])}
	if k.protocol < minProtocol {
		return nil, fmt.Errorf("kernel boot protocol %d.%02d, need 2.14 or later: %w", k.protocol>>8, k.protocol&0xff, ErrKernel)
	}
	if b[hdrLoadflags]&loadedHigh == 0 {
		return nil, fmt.Errorf("kernel is not loadable at 1 MiB or above (LOADED_HIGH clear; a zImage?): %w", ErrKernel)
	}
	end := hdrJump + 2 + int(b[hdrJump+1])
	if end > len(b) || end < 0x268 {
		return nil, fmt.Errorf("setup header end 0x%x is outside the kernel: %w", end, ErrKernel)
	}
	k.header = b[hdrStart:end]
	sects := int(b[hdrSetupSects])
	if sects == 0 {
		sects = 4
	}
	off := (sects + 1) * 512
	if off >= len(b) {
		return nil, fmt.Errorf("kernel has %d setup sectors but is only %d bytes: %w", sects, len(b), ErrKernel)
	}
	k.kernel = b[off:]
	k.prefAddress = le.Uint64(b[hdrPrefAddress:])
	k.initSize = le.Uint32(b[hdrInitSize:])
	k.initrdAddrMax = le.Uint32(b[hdrInitrdAddrMax:])
	k.cmdlineSize = le.Uint32(b[hdrCmdlineSize:])
	if k.prefAddress%pageSize != 0 || k.prefAddress < 1<<20 {
		return nil, fmt.Errorf("kernel pref_address 0x%x is not a page-aligned address at or above 1 MiB: %w", k.prefAddress, ErrKernel)
	}
	if uint64(k.initSize) < uint64(len(k.kernel)) {
		return nil, fmt.Errorf("kernel init_size 0x%x is smaller than its %d-byte protected-mode part: %w", k.initSize, len(k.kernel), ErrKernel)
	}
	return k, nil
}
