package igvm

import "fmt"

// VMSA is an SEV-SNP VM save area page (the layout of Linux's struct sev_es_save_area
// and of AMD's APM vol. 2, table "VMSA layout, state save area for SEV-ES").
type VMSA [PageSize]byte

// Segment registers of the VMSA, in their order at offset 0 (16 bytes each).
const (
	SegES = iota
	SegCS
	SegSS
	SegDS
	SegFS
	SegGS
	SegGDTR
	SegLDTR
	SegIDTR
	SegTR
	numSegs
)

var segNames = [numSegs]string{"es", "cs", "ss", "ds", "fs", "gs", "gdtr", "ldtr", "idtr", "tr"}

// SegName returns the name of segment register i.
func SegName(i int) string { return segNames[i] }

// Offsets of VMSA fields.
const (
	VMSACPL         = 0x0CB // u8
	VMSAEFER        = 0x0D0
	VMSAXSS         = 0x140
	VMSACR4         = 0x148
	VMSACR3         = 0x150
	VMSACR0         = 0x158
	VMSADR7         = 0x160
	VMSADR6         = 0x168
	VMSARFLAGS      = 0x170
	VMSARIP         = 0x178
	VMSARSP         = 0x1D8
	VMSARAX         = 0x1F8
	VMSACR2         = 0x240
	VMSAGPAT        = 0x268
	VMSAPKRU        = 0x2E8 // u32
	VMSARCX         = 0x308
	VMSARDX         = 0x310
	VMSARBX         = 0x318
	VMSARBP         = 0x328
	VMSARSI         = 0x330
	VMSARDI         = 0x338
	VMSAR8          = 0x340 // r8..r15 follow, 8 bytes apart
	VMSASEVFeatures = 0x3B0
	VMSAVirtualTOM  = 0x3C8
	VMSAXCR0        = 0x3E8
	VMSAMXCSR       = 0x408 // u32
	VMSAX87FTW      = 0x40C // u16
	VMSAX87FSW      = 0x40E // u16
	VMSAX87FCW      = 0x410 // u16
)

// Segment is a VMSA segment register (struct vmcb_seg).
type Segment struct {
	Selector uint16
	Attrib   uint16
	Limit    uint32
	Base     uint64
}

func (s Segment) String() string {
	return fmt.Sprintf("sel=0x%04x attr=0x%04x limit=0x%08x base=0x%x", s.Selector, s.Attrib, s.Limit, s.Base)
}

// Seg returns segment register i.
func (v *VMSA) Seg(i int) Segment {
	b := v[i*16:]
	return Segment{Selector: le.Uint16(b[0:]), Attrib: le.Uint16(b[2:]), Limit: le.Uint32(b[4:]), Base: le.Uint64(b[8:])}
}

// SetSeg sets segment register i.
func (v *VMSA) SetSeg(i int, s Segment) {
	b := v[i*16:]
	le.PutUint16(b[0:], s.Selector)
	le.PutUint16(b[2:], s.Attrib)
	le.PutUint32(b[4:], s.Limit)
	le.PutUint64(b[8:], s.Base)
}

// U64 returns the 8-byte field at off.
func (v *VMSA) U64(off int) uint64 { return le.Uint64(v[off:]) }

// SetU64 sets the 8-byte field at off.
func (v *VMSA) SetU64(off int, x uint64) { le.PutUint64(v[off:], x) }

// U32 returns the 4-byte field at off.
func (v *VMSA) U32(off int) uint32 { return le.Uint32(v[off:]) }

// SetU32 sets the 4-byte field at off.
func (v *VMSA) SetU32(off int, x uint32) { le.PutUint32(v[off:], x) }

// U16 returns the 2-byte field at off.
func (v *VMSA) U16(off int) uint16 { return le.Uint16(v[off:]) }

// SetU16 sets the 2-byte field at off.
func (v *VMSA) SetU16(off int, x uint16) { le.PutUint16(v[off:], x) }

// GPRs lists the general-purpose registers with their VMSA offsets, in the usual order.
var GPRs = []struct {
	Name string
	Off  int
}{
	{"rax", VMSARAX}, {"rbx", VMSARBX}, {"rcx", VMSARCX}, {"rdx", VMSARDX},
	{"rsi", VMSARSI}, {"rdi", VMSARDI}, {"rbp", VMSARBP}, {"rsp", VMSARSP},
	{"r8", VMSAR8}, {"r9", VMSAR8 + 8}, {"r10", VMSAR8 + 16}, {"r11", VMSAR8 + 24},
	{"r12", VMSAR8 + 32}, {"r13", VMSAR8 + 40}, {"r14", VMSAR8 + 48}, {"r15", VMSAR8 + 56},
}
