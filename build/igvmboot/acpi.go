package igvmboot

import (
	"encoding/binary"
	"fmt"
)

// Minimal ACPI tables for a Cloud Hypervisor guest (ACPI 6.x, hardware-reduced): RSDP,
// XSDT, FADT, MADT (one local APIC per vCPU and the I/O APIC), and a DSDT with the PCI
// host bridge and the \_S5 sleep state. The values of the fixed hardware (the shutdown
// and reset port 0x600, the PM timer at 0x608, the I/O APIC at 0xFEC00000, the PCI
// windows) are those of Cloud Hypervisor's x86-64 platform.

const (
	acpiOEMID      = "CONFGU"
	acpiOEMTableID = "CONFGUST"
	acpiCreatorID  = "CFGT"

	ioAPICAddress    = 0xFEC00000
	localAPICAddress = 0xFEE00000
	acpiShutdownPort = 0x600 // Cloud Hypervisor's sleep control/status and reset register
	acpiPMTimerPort  = 0x608
	s5SleepType      = 5 // SLP_TYP Cloud Hypervisor powers off on

	pci32Start = 0xC0000000 // Cloud Hypervisor's 32-bit PCI device area
	pci32End   = 0xFEBFFFFF
	pci64Start = 1 << 32
	pci64End   = 1<<46 - 1
)

var le = binary.LittleEndian

// sdtHeader returns a 36-byte system description table header; length and checksum are
// filled in by finishTable.
func sdtHeader(sig string, rev byte) []byte {
	h := make([]byte, 36)
	copy(h[0:4], sig)
	h[8] = rev
	copy(h[10:16], acpiOEMID)
	copy(h[16:24], acpiOEMTableID)
	le.PutUint32(h[24:], 1) // OEM revision
	copy(h[28:32], acpiCreatorID)
	le.PutUint32(h[32:], 1) // creator revision
	return h
}

// finishTable sets a table's length and checksum.
func finishTable(t []byte) []byte {
	le.PutUint32(t[4:], uint32(len(t)))
	t[9] = 0
	t[9] = -sum8(t)
	return t
}

func sum8(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}

// gas encodes a 12-byte Generic Address Structure for a system I/O register.
func gasIO(bits, access byte, port uint64) []byte {
	g := make([]byte, 12)
	g[0] = 1 // system I/O
	g[1] = bits
	g[3] = access
	le.PutUint64(g[4:], port)
	return g
}

// acpiTables lays out the tables at base and returns their bytes (from base) and the
// address of the RSDP (base).
func acpiTables(base uint64, vcpus int) ([]byte, error) {
	const (
		rsdpOff = 0x000
		xsdtOff = 0x040
		fadtOff = 0x080
		madtOff = 0x200
	)
	madt := madtTable(vcpus)
	dsdtOff := align(uint64(madtOff+len(madt)), 64)
	dsdt := dsdtTable()
	fadt := fadtTable(base + dsdtOff)
	if fadtOff+len(fadt) > madtOff {
		return nil, fmt.Errorf("FADT of %d bytes overruns the MADT", len(fadt))
	}
	xsdt := sdtHeader("XSDT", 1)
	xsdt = le.AppendUint64(xsdt, base+fadtOff)
	xsdt = le.AppendUint64(xsdt, base+madtOff)
	finishTable(xsdt)

	rsdp := make([]byte, 36)
	copy(rsdp[0:8], "RSD PTR ")
	copy(rsdp[9:15], acpiOEMID)
	rsdp[15] = 2 // revision: ACPI 2.0+, XSDT
	le.PutUint32(rsdp[20:], 36)
	le.PutUint64(rsdp[24:], base+xsdtOff)
	rsdp[8] = -sum8(rsdp[:20])
	rsdp[32] = -sum8(rsdp)

	out := make([]byte, dsdtOff+uint64(len(dsdt)))
	copy(out[rsdpOff:], rsdp)
	copy(out[xsdtOff:], xsdt)
	copy(out[fadtOff:], fadt)
	copy(out[madtOff:], madt)
	copy(out[dsdtOff:], dsdt)
	return out, nil
}

// fadtTable is a revision 6.3 hardware-reduced FADT pointing at the DSDT.
func fadtTable(dsdt uint64) []byte {
	t := sdtHeader("FACP", 6)
	t = append(t, make([]byte, 276-36)...)
	le.PutUint32(t[40:], uint32(dsdt))      // DSDT (32-bit)
	le.PutUint32(t[112:], 1<<20|1<<10|1<<8) // flags: HW_REDUCED_ACPI, RESET_REG_SUP, TMR_VAL_EXT
	copy(t[116:], gasIO(8, 1, acpiShutdownPort))
	t[128] = 1                                   // reset value
	t[131] = 3                                   // FADT minor revision
	le.PutUint64(t[140:], dsdt)                  // X_DSDT
	copy(t[208:], gasIO(32, 3, acpiPMTimerPort)) // X_PM_TMR_BLK
	copy(t[244:], gasIO(8, 1, acpiShutdownPort)) // sleep control register
	copy(t[256:], gasIO(8, 1, acpiShutdownPort)) // sleep status register
	copy(t[268:], "CONFGUST")                    // hypervisor vendor identity
	return finishTable(t)
}

// madtTable lists one enabled local APIC per vCPU and the I/O APIC.
func madtTable(vcpus int) []byte {
	t := sdtHeader("APIC", 5)
	t = le.AppendUint32(t, localAPICAddress)
	t = le.AppendUint32(t, 0) // flags: no 8259 PICs
	for i := range vcpus {
		t = append(t, 0, 8, byte(i), byte(i))
		t = le.AppendUint32(t, 1) // enabled
	}
	t = append(t, 1, 12, 0, 0)
	t = le.AppendUint32(t, ioAPICAddress)
	t = le.AppendUint32(t, 0) // global system interrupt base
	return finishTable(t)
}

// dsdtTable holds, in AML: Device (\_SB.PC00) { _HID PNP0A08, _CID PNP0A03, _ADR 0,
// _SEG 0, _UID 0, _CRS (bus 0-255, config ports 0xCF8-0xCFF, I/O 0-0xCF7 and
// 0xD00-0xFFFF, the 32-bit and 64-bit PCI windows) } and Name (\_S5, Package {5, 0, 0, 0}).
func dsdtTable() []byte {
	var crs []byte
	crs = append(crs, wordAddr(2, 0, 0, 0xFF)...)            // bus numbers
	crs = append(crs, 0x47, 1, 0xF8, 0x0C, 0xF8, 0x0C, 1, 8) // IO(Decode16, 0xCF8, 0xCF8, 1, 8)
	crs = append(crs, wordAddr(1, 3, 0, 0x0CF7)...)          // I/O below the config ports
	crs = append(crs, wordAddr(1, 3, 0x0D00, 0xFFFF)...)     // I/O above
	crs = append(crs, dwordMem(pci32Start, pci32End)...)     // 32-bit MMIO
	crs = append(crs, qwordMem(pci64Start, pci64End)...)     // 64-bit MMIO
	crs = append(crs, 0x79, 0)                               // end tag

	var dev []byte
	dev = append(dev, amlName("_HID", amlEISAID("PNP0A08"))...)
	dev = append(dev, amlName("_CID", amlEISAID("PNP0A03"))...)
	dev = append(dev, amlName("_ADR", []byte{0x00})...)
	dev = append(dev, amlName("_SEG", []byte{0x00})...)
	dev = append(dev, amlName("_UID", []byte{0x00})...)
	dev = append(dev, amlName("_CRS", amlBuffer(crs))...)

	t := sdtHeader("DSDT", 2)
	// DeviceOp (ExtOpPrefix 0x5B 0x82) PkgLength NameString TermList.
	path := append([]byte{'\\', 0x2E}, "_SB_PC00"...) // \ DualNamePrefix _SB_ PC00
	body := append(path, dev...)
	t = append(t, 0x5B, 0x82)
	t = append(t, pkgLength(len(body))...)
	t = append(t, body...)
	// Name (\_S5_, Package (4) {5, 0, 0, 0})
	pkg := []byte{4, 0x0A, s5SleepType, 0x00, 0x00, 0x00}
	s5 := append([]byte{0x12}, pkgLength(len(pkg))...)
	s5 = append(s5, pkg...)
	t = append(t, 0x08, '\\')
	t = append(t, "_S5_"...)
	t = append(t, s5...)
	return finishTable(t)
}

// pkgLength encodes an AML PkgLength for n bytes that follow it (the encoding counts itself).
func pkgLength(n int) []byte {
	switch {
	case n+1 < 0x40:
		return []byte{byte(n + 1)}
	case n+2 < 0x1000:
		l := n + 2
		return []byte{0x40 | byte(l&0xF), byte(l >> 4)}
	case n+3 < 0x100000:
		l := n + 3
		return []byte{0x80 | byte(l&0xF), byte(l >> 4), byte(l >> 12)}
	}
	l := n + 4
	return []byte{0xC0 | byte(l&0xF), byte(l >> 4), byte(l >> 12), byte(l >> 20)}
}

// amlName encodes Name (seg, obj).
func amlName(seg string, obj []byte) []byte {
	return append(append([]byte{0x08}, seg...), obj...)
}

// amlEISAID encodes EisaId ("PNP0A08") as a DWord constant.
func amlEISAID(id string) []byte {
	c := func(i int) uint16 { return uint16(id[i]-0x40) & 0x1F }
	v := c(0)<<10 | c(1)<<5 | c(2)
	hex := func(b byte) byte {
		if b >= 'A' {
			return b - 'A' + 10
		}
		return b - '0'
	}
	return []byte{0x0C, byte(v >> 8), byte(v), hex(id[3])<<4 | hex(id[4]), hex(id[5])<<4 | hex(id[6])}
}

// amlBuffer encodes Buffer () {data}.
func amlBuffer(data []byte) []byte {
	size := []byte{0x0B, byte(len(data)), byte(len(data) >> 8)} // WordConst
	body := append(size, data...)
	return append(append([]byte{0x11}, pkgLength(len(body))...), body...)
}

// wordAddr is a Word Address Space descriptor (producer, fixed min and max) of resource
// type typ (1 I/O, 2 bus number) with type-specific flags tflags.
func wordAddr(typ, tflags byte, min, max uint16) []byte {
	d := []byte{0x88, 13, 0, typ, 0x0C, tflags}
	d = le.AppendUint16(d, 0)
	d = le.AppendUint16(d, min)
	d = le.AppendUint16(d, max)
	d = le.AppendUint16(d, 0)
	return le.AppendUint16(d, max-min+1)
}

// dwordMem is a DWord memory window (producer, fixed, cacheable, read-write).
func dwordMem(min, max uint32) []byte {
	d := []byte{0x87, 23, 0, 0, 0x0C, 0x03}
	d = le.AppendUint32(d, 0)
	d = le.AppendUint32(d, min)
	d = le.AppendUint32(d, max)
	d = le.AppendUint32(d, 0)
	return le.AppendUint32(d, max-min+1)
}

// qwordMem is a QWord memory window (producer, fixed, cacheable, read-write).
func qwordMem(min, max uint64) []byte {
	d := []byte{0x8A, 43, 0, 0, 0x0C, 0x03}
	d = le.AppendUint64(d, 0)
	d = le.AppendUint64(d, min)
	d = le.AppendUint64(d, max)
	d = le.AppendUint64(d, 0)
	return le.AppendUint64(d, max-min+1)
}

func align(x, a uint64) uint64 { return (x + a - 1) &^ (a - 1) }
