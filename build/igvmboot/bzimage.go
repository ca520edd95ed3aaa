package igvmboot

import (
	"encoding/binary"
	"fmt"

	"confguest/measure/bootparams"
)

// minProtocol is the oldest boot protocol the builder takes: 2.14 has acpi_rsdp_addr in
// boot_params.
const minProtocol = 0x20E

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
	if string(b[bootparams.Magic:bootparams.Magic+4]) != bootparams.MagicValue {
		return nil, fmt.Errorf("kernel has no \"HdrS\" setup header magic at 0x%x (not a bzImage): %w", bootparams.Magic, ErrKernel)
	}
	k := &bzImage{protocol: le.Uint16(b[bootparams.Version:])}
	if k.protocol < minProtocol {
		return nil, fmt.Errorf("kernel boot protocol %d.%02d, need 2.14 or later: %w", k.protocol>>8, k.protocol&0xff, ErrKernel)
	}
	if b[bootparams.Loadflags]&bootparams.LoadedHigh == 0 {
		return nil, fmt.Errorf("kernel is not loadable at 1 MiB or above (LOADED_HIGH clear; a zImage?): %w", ErrKernel)
	}
	end := bootparams.Jump + 2 + int(b[bootparams.Jump+1])
	if end > len(b) || end < 0x268 {
		return nil, fmt.Errorf("setup header end 0x%x is outside the kernel: %w", end, ErrKernel)
	}
	k.header = b[bootparams.HeaderStart:end]
	sects := int(b[bootparams.SetupSects])
	if sects == 0 {
		sects = 4
	}
	off := (sects + 1) * 512
	if off >= len(b) {
		return nil, fmt.Errorf("kernel has %d setup sectors but is only %d bytes: %w", sects, len(b), ErrKernel)
	}
	k.kernel = b[off:]
	k.prefAddress = le.Uint64(b[bootparams.PrefAddress:])
	k.initSize = le.Uint32(b[bootparams.InitSize:])
	k.initrdAddrMax = le.Uint32(b[bootparams.InitrdAddrMax:])
	k.cmdlineSize = le.Uint32(b[bootparams.CmdlineSize:])
	if k.prefAddress%pageSize != 0 || k.prefAddress < 1<<20 {
		return nil, fmt.Errorf("kernel pref_address 0x%x is not a page-aligned address at or above 1 MiB: %w", k.prefAddress, ErrKernel)
	}
	if uint64(k.initSize) < uint64(len(k.kernel)) {
		return nil, fmt.Errorf("kernel init_size 0x%x is smaller than its %d-byte protected-mode part: %w", k.initSize, len(k.kernel), ErrKernel)
	}
	return k, nil
}
