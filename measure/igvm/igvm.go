// Package igvm reads and writes Independent Guest Virtual Machine (IGVM) files, format
// version 1 as defined by the igvm_defs 0.4.0 crate: a fixed header with a CRC32, variable
// headers (platform, initialization, directive) each padded to 8 bytes, then file data.
//
// Parse keeps every byte it does not interpret (unknown header types, padding, file data)
// so that Marshal of a parsed file reproduces the input exactly. Builder lays out new files.
package igvm

import (
	"encoding/binary"
	"fmt"
)

// Magic is the first u32 of every IGVM file ("IGVM" in little-endian byte order).
const Magic = 0x4D564749

// FormatVersion is the only format version this package reads and writes.
const FormatVersion = 1

// FixedHeaderSize is the size of the fixed header.
const FixedHeaderSize = 24

// PageSize is the size of a page of data; PageSize2M that of a large page.
const (
	PageSize   = 4096
	PageSize2M = 2 << 20
)

// HeaderType is the type of a variable header.
type HeaderType uint32

// Variable header types of igvm_defs 0.4.0.
const (
	TypeSupportedPlatform   HeaderType = 0x1
	TypeGuestPolicy         HeaderType = 0x101
	TypeRelocatableRegion   HeaderType = 0x102
	TypePageTableRelocation HeaderType = 0x103
	TypeParameterArea       HeaderType = 0x301
	TypePageData            HeaderType = 0x302
	TypeParameterInsert     HeaderType = 0x303
	TypeVPContext           HeaderType = 0x304
	TypeRequiredMemory      HeaderType = 0x305
	TypeVPCount             HeaderType = 0x307
	TypeSRAT                HeaderType = 0x308
	TypeMADT                HeaderType = 0x309
	TypeMMIORanges          HeaderType = 0x30A
	TypeSNPIDBlock          HeaderType = 0x30B
	TypeMemoryMap           HeaderType = 0x30C
	TypeErrorRange          HeaderType = 0x30D
	TypeCommandLine         HeaderType = 0x30E
	TypeSLIT                HeaderType = 0x30F
	TypePPTT                HeaderType = 0x310
	TypeVBSMeasurement      HeaderType = 0x311
	TypeDeviceTree          HeaderType = 0x312
	TypeEnvironmentInfo     HeaderType = 0x313
	typeRangePlatformFirst  HeaderType = 0x1
	typeRangePlatformLast   HeaderType = 0x100
	typeRangeInitFirst      HeaderType = 0x101
	typeRangeInitLast       HeaderType = 0x200
	typeRangeDirectiveFirst HeaderType = 0x301
	typeRangeDirectiveLast  HeaderType = 0x400
)

var typeNames = map[HeaderType]string{
	TypeSupportedPlatform:   "SUPPORTED_PLATFORM",
	TypeGuestPolicy:         "GUEST_POLICY",
	TypeRelocatableRegion:   "RELOCATABLE_REGION",
	TypePageTableRelocation: "PAGE_TABLE_RELOCATION_REGION",
	TypeParameterArea:       "PARAMETER_AREA",
	TypePageData:            "PAGE_DATA",
	TypeParameterInsert:     "PARAMETER_INSERT",
	TypeVPContext:           "VP_CONTEXT",
	TypeRequiredMemory:      "REQUIRED_MEMORY",
	TypeVPCount:             "VP_COUNT_PARAMETER",
	TypeSRAT:                "SRAT",
	TypeMADT:                "MADT",
	TypeMMIORanges:          "MMIO_RANGES",
	TypeSNPIDBlock:          "SNP_ID_BLOCK",
	TypeMemoryMap:           "MEMORY_MAP",
	TypeErrorRange:          "ERROR_RANGE",
	TypeCommandLine:         "COMMAND_LINE",
	TypeSLIT:                "SLIT",
	TypePPTT:                "PPTT",
	TypeVBSMeasurement:      "VBS_MEASUREMENT",
	TypeDeviceTree:          "DEVICE_TREE",
	TypeEnvironmentInfo:     "ENVIRONMENT_INFO_PARAMETER",
}

func (t HeaderType) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("0x%x", uint32(t))
}

// section is the header section a type belongs to: 0 platform, 1 initialization,
// 2 directive, -1 none (invalid).
func (t HeaderType) section() int {
	switch {
	case t >= typeRangePlatformFirst && t <= typeRangePlatformLast:
		return 0
	case t >= typeRangeInitFirst && t <= typeRangeInitLast:
		return 1
	case t >= typeRangeDirectiveFirst && t <= typeRangeDirectiveLast:
		return 2
	}
	return -1
}

var sectionNames = [...]string{"platform", "initialization", "directive"}

// IsParameterUsage reports whether t is a header that places a host-supplied parameter
// into a parameter area (an IGVM_VHS_PARAMETER: area index and byte offset).
func (t HeaderType) IsParameterUsage() bool {
	switch t {
	case TypeVPCount, TypeSRAT, TypeMADT, TypeMemoryMap, TypeCommandLine, TypeSLIT,
		TypePPTT, TypeDeviceTree, TypeEnvironmentInfo:
		return true
	}
	return false
}

// Body is the content of one variable header.
type Body interface {
	// Type is the header's type.
	Type() HeaderType
	// encode returns the body's bytes, without padding.
	encode() []byte
}

// Header is one variable header as it appears in a file.
type Header struct {
	Body Body
	// pad holds the padding bytes after the body as read (not always zero: some
	// writers pad with other bytes); nil means zeros.
	pad []byte
}

// Platform types of SUPPORTED_PLATFORM.
const (
	PlatformNative       = 0x00
	PlatformVSMIsolation = 0x01
	PlatformSEVSNP       = 0x02
	PlatformTDX          = 0x03
)

// SupportedPlatform is IGVM_VHS_SUPPORTED_PLATFORM (16 bytes).
type SupportedPlatform struct {
	CompatibilityMask uint32
	HighestVTL        uint8
	PlatformType      uint8
	PlatformVersion   uint16
	SharedGPABoundary uint64
}

// GuestPolicy is IGVM_VHS_GUEST_POLICY (16 bytes). For SEV-SNP, Policy is the guest
// policy of SNP_LAUNCH_START.
type GuestPolicy struct {
	Policy            uint64
	CompatibilityMask uint32
	Reserved          uint32
}

// Flags of PAGE_DATA.
const (
	PageFlag2M         = 1 << 0
	PageFlagUnmeasured = 1 << 1
	PageFlagShared     = 1 << 2
)

// Data types of PAGE_DATA.
const (
	DataNormal  = 0
	DataSecrets = 1
	DataCPUID   = 2
	DataCPUIDXF = 3
)

// PageData is IGVM_VHS_PAGE_DATA (24 bytes): one page to import at GPA. FileOffset is the
// absolute offset of its data in the file, or 0 for a page of zeros.
type PageData struct {
	GPA               uint64
	CompatibilityMask uint32
	FileOffset        uint32
	Flags             uint32
	DataType          uint16
	Reserved          uint16
}

// Size is the number of bytes the page covers.
func (p PageData) Size() uint64 {
	if p.Flags&PageFlag2M != 0 {
		return PageSize2M
	}
	return PageSize
}

// ParameterArea is IGVM_VHS_PARAMETER_AREA (16 bytes): a region the loader fills with
// parameters. FileOffset 0 means the area starts as zeros.
type ParameterArea struct {
	NumberOfBytes uint64
	Index         uint32
	FileOffset    uint32
}

// ParameterInsert is IGVM_VHS_PARAMETER_INSERT (16 bytes): import parameter area Index at GPA.
type ParameterInsert struct {
	GPA               uint64
	CompatibilityMask uint32
	Index             uint32
}

// Parameter is IGVM_VHS_PARAMETER (8 bytes), used by VP_COUNT, MEMORY_MAP, COMMAND_LINE and
// the other parameter usages: the loader writes the parameter named by Kind at ByteOffset
// of parameter area AreaIndex.
type Parameter struct {
	Kind       HeaderType
	AreaIndex  uint32
	ByteOffset uint32
}

// VPContext is IGVM_VHS_VP_CONTEXT (20 bytes): for SEV-SNP, FileOffset points to a
// 4096-byte VMSA for virtual processor VPIndex.
type VPContext struct {
	GPA               uint64
	CompatibilityMask uint32
	FileOffset        uint32
	VPIndex           uint16
	Reserved          uint16
}

// RequiredMemory is IGVM_VHS_REQUIRED_MEMORY (24 bytes).
type RequiredMemory struct {
	GPA               uint64
	CompatibilityMask uint32
	NumberOfBytes     uint32
	Flags             uint32
	Reserved          uint32
}

// RequiredMemoryVTL2Protectable is the one defined flag of REQUIRED_MEMORY.
const RequiredMemoryVTL2Protectable = 1

// ErrorRange is IGVM_VHS_ERROR_RANGE (16 bytes).
type ErrorRange struct {
	GPA               uint64
	CompatibilityMask uint32
	SizeBytes         uint32
}

// SNPSignature is IGVM_VHS_SNP_ID_BLOCK_SIGNATURE (144 bytes).
type SNPSignature struct {
	R [72]byte
	S [72]byte
}

// SNPPublicKey is IGVM_VHS_SNP_ID_BLOCK_PUBLIC_KEY (152 bytes).
type SNPPublicKey struct {
	Curve    uint32
	Reserved uint32
	QX       [72]byte
	QY       [72]byte
}

// SNPIDBlock is IGVM_VHS_SNP_ID_BLOCK (696 bytes). LD is the launch digest the ID block
// vouches for.
type SNPIDBlock struct {
	CompatibilityMask  uint32
	AuthorKeyEnabled   uint8
	Reserved           [3]byte
	LD                 [48]byte
	FamilyID           [16]byte
	ImageID            [16]byte
	Version            uint32
	GuestSVN           uint32
	IDKeyAlgorithm     uint32
	AuthorKeyAlgorithm uint32
	IDKeySignature     SNPSignature
	IDPublicKey        SNPPublicKey
	AuthorKeySignature SNPSignature
	AuthorPublicKey    SNPPublicKey
}

// Raw is a header this package does not interpret, kept byte for byte.
type Raw struct {
	Kind HeaderType
	Data []byte
}

// Sizes of the typed header bodies.
const (
	sizeSupportedPlatform = 16
	sizeGuestPolicy       = 16
	sizePageData          = 24
	sizeParameterArea     = 16
	sizeParameterInsert   = 16
	sizeParameter         = 8
	sizeVPContext         = 20
	sizeRequiredMemory    = 24
	sizeErrorRange        = 16
	sizeSNPIDBlock        = 696
)

func (SupportedPlatform) Type() HeaderType { return TypeSupportedPlatform }
func (GuestPolicy) Type() HeaderType       { return TypeGuestPolicy }
func (PageData) Type() HeaderType          { return TypePageData }
func (ParameterArea) Type() HeaderType     { return TypeParameterArea }
func (ParameterInsert) Type() HeaderType   { return TypeParameterInsert }
func (p Parameter) Type() HeaderType       { return p.Kind }
func (VPContext) Type() HeaderType         { return TypeVPContext }
func (RequiredMemory) Type() HeaderType    { return TypeRequiredMemory }
func (ErrorRange) Type() HeaderType        { return TypeErrorRange }
func (SNPIDBlock) Type() HeaderType        { return TypeSNPIDBlock }
func (r Raw) Type() HeaderType             { return r.Kind }

var le = binary.LittleEndian

func (h SupportedPlatform) encode() []byte {
	b := make([]byte, sizeSupportedPlatform)
	le.PutUint32(b[0:], h.CompatibilityMask)
	b[4] = h.HighestVTL
	b[5] = h.PlatformType
	le.PutUint16(b[6:], h.PlatformVersion)
	le.PutUint64(b[8:], h.SharedGPABoundary)
	return b
}

func (h GuestPolicy) encode() []byte {
	b := make([]byte, sizeGuestPolicy)
	le.PutUint64(b[0:], h.Policy)
	le.PutUint32(b[8:], h.CompatibilityMask)
	le.PutUint32(b[12:], h.Reserved)
	return b
}

func (h PageData) encode() []byte {
	b := make([]byte, sizePageData)
	le.PutUint64(b[0:], h.GPA)
	le.PutUint32(b[8:], h.CompatibilityMask)
	le.PutUint32(b[12:], h.FileOffset)
	le.PutUint32(b[16:], h.Flags)
	le.PutUint16(b[20:], h.DataType)
	le.PutUint16(b[22:], h.Reserved)
	return b
}

func (h ParameterArea) encode() []byte {
	b := make([]byte, sizeParameterArea)
	le.PutUint64(b[0:], h.NumberOfBytes)
	le.PutUint32(b[8:], h.Index)
	le.PutUint32(b[12:], h.FileOffset)
	return b
}

func (h ParameterInsert) encode() []byte {
	b := make([]byte, sizeParameterInsert)
	le.PutUint64(b[0:], h.GPA)
	le.PutUint32(b[8:], h.CompatibilityMask)
	le.PutUint32(b[12:], h.Index)
	return b
}

func (h Parameter) encode() []byte {
	b := make([]byte, sizeParameter)
	le.PutUint32(b[0:], h.AreaIndex)
	le.PutUint32(b[4:], h.ByteOffset)
	return b
}

func (h VPContext) encode() []byte {
	b := make([]byte, sizeVPContext)
	le.PutUint64(b[0:], h.GPA)
	le.PutUint32(b[8:], h.CompatibilityMask)
	le.PutUint32(b[12:], h.FileOffset)
	le.PutUint16(b[16:], h.VPIndex)
	le.PutUint16(b[18:], h.Reserved)
	return b
}

func (h RequiredMemory) encode() []byte {
	b := make([]byte, sizeRequiredMemory)
	le.PutUint64(b[0:], h.GPA)
	le.PutUint32(b[8:], h.CompatibilityMask)
	le.PutUint32(b[12:], h.NumberOfBytes)
	le.PutUint32(b[16:], h.Flags)
	le.PutUint32(b[20:], h.Reserved)
	return b
}

func (h ErrorRange) encode() []byte {
	b := make([]byte, sizeErrorRange)
	le.PutUint64(b[0:], h.GPA)
	le.PutUint32(b[8:], h.CompatibilityMask)
	le.PutUint32(b[12:], h.SizeBytes)
	return b
}

func (s SNPSignature) put(b []byte) {
	copy(b[0:72], s.R[:])
	copy(b[72:144], s.S[:])
}

func (k SNPPublicKey) put(b []byte) {
	le.PutUint32(b[0:], k.Curve)
	le.PutUint32(b[4:], k.Reserved)
	copy(b[8:80], k.QX[:])
	copy(b[80:152], k.QY[:])
}

func (h SNPIDBlock) encode() []byte {
	b := make([]byte, sizeSNPIDBlock)
	le.PutUint32(b[0:], h.CompatibilityMask)
	b[4] = h.AuthorKeyEnabled
	copy(b[5:8], h.Reserved[:])
	copy(b[8:56], h.LD[:])
	copy(b[56:72], h.FamilyID[:])
	copy(b[72:88], h.ImageID[:])
	le.PutUint32(b[88:], h.Version)
	le.PutUint32(b[92:], h.GuestSVN)
	le.PutUint32(b[96:], h.IDKeyAlgorithm)
	le.PutUint32(b[100:], h.AuthorKeyAlgorithm)
	h.IDKeySignature.put(b[104:248])
	h.IDPublicKey.put(b[248:400])
	h.AuthorKeySignature.put(b[400:544])
	h.AuthorPublicKey.put(b[544:696])
	return b
}

func (r Raw) encode() []byte { return r.Data }

// decodeBody decodes the body of a header of type t; b has exactly the header's length.
func decodeBody(t HeaderType, b []byte) (Body, error) {
	want := -1
	switch {
	case t == TypeSupportedPlatform:
		want = sizeSupportedPlatform
	case t == TypeGuestPolicy:
		want = sizeGuestPolicy
	case t == TypePageData:
		want = sizePageData
	case t == TypeParameterArea:
		want = sizeParameterArea
	case t == TypeParameterInsert:
		want = sizeParameterInsert
	case t.IsParameterUsage():
		want = sizeParameter
	case t == TypeVPContext:
		want = sizeVPContext
	case t == TypeRequiredMemory:
		want = sizeRequiredMemory
	case t == TypeErrorRange:
		want = sizeErrorRange
	case t == TypeSNPIDBlock:
		want = sizeSNPIDBlock
	default:
		return Raw{Kind: t, Data: append([]byte(nil), b...)}, nil
	}
	if len(b) != want {
		return nil, fmt.Errorf("%v header is %d bytes, want %d: %w", t, len(b), want, ErrHeaderSize)
	}
	switch {
	case t == TypeSupportedPlatform:
		return SupportedPlatform{
			CompatibilityMask: le.Uint32(b[0:]), HighestVTL: b[4], PlatformType: b[5],
			PlatformVersion: le.Uint16(b[6:]), SharedGPABoundary: le.Uint64(b[8:]),
		}, nil
	case t == TypeGuestPolicy:
		return GuestPolicy{Policy: le.Uint64(b[0:]), CompatibilityMask: le.Uint32(b[8:]), Reserved: le.Uint32(b[12:])}, nil
	case t == TypePageData:
		return PageData{
			GPA: le.Uint64(b[0:]), CompatibilityMask: le.Uint32(b[8:]), FileOffset: le.Uint32(b[12:]),
			Flags: le.Uint32(b[16:]), DataType: le.Uint16(b[20:]), Reserved: le.Uint16(b[22:]),
		}, nil
	case t == TypeParameterArea:
		return ParameterArea{NumberOfBytes: le.Uint64(b[0:]), Index: le.Uint32(b[8:]), FileOffset: le.Uint32(b[12:])}, nil
	case t == TypeParameterInsert:
		return ParameterInsert{GPA: le.Uint64(b[0:]), CompatibilityMask: le.Uint32(b[8:]), Index: le.Uint32(b[12:])}, nil
	case t.IsParameterUsage():
		return Parameter{Kind: t, AreaIndex: le.Uint32(b[0:]), ByteOffset: le.Uint32(b[4:])}, nil
	case t == TypeVPContext:
		return VPContext{
			GPA: le.Uint64(b[0:]), CompatibilityMask: le.Uint32(b[8:]), FileOffset: le.Uint32(b[12:]),
			VPIndex: le.Uint16(b[16:]), Reserved: le.Uint16(b[18:]),
		}, nil
	case t == TypeRequiredMemory:
		return RequiredMemory{
			GPA: le.Uint64(b[0:]), CompatibilityMask: le.Uint32(b[8:]), NumberOfBytes: le.Uint32(b[12:]),
			Flags: le.Uint32(b[16:]), Reserved: le.Uint32(b[20:]),
		}, nil
	case t == TypeErrorRange:
		return ErrorRange{GPA: le.Uint64(b[0:]), CompatibilityMask: le.Uint32(b[8:]), SizeBytes: le.Uint32(b[12:])}, nil
	default: // TypeSNPIDBlock
		var id SNPIDBlock
		id.CompatibilityMask = le.Uint32(b[0:])
		id.AuthorKeyEnabled = b[4]
		copy(id.Reserved[:], b[5:8])
		copy(id.LD[:], b[8:56])
		copy(id.FamilyID[:], b[56:72])
		copy(id.ImageID[:], b[72:88])
		id.Version = le.Uint32(b[88:])
		id.GuestSVN = le.Uint32(b[92:])
		id.IDKeyAlgorithm = le.Uint32(b[96:])
		id.AuthorKeyAlgorithm = le.Uint32(b[100:])
		id.IDKeySignature = getSignature(b[104:248])
		id.IDPublicKey = getPublicKey(b[248:400])
		id.AuthorKeySignature = getSignature(b[400:544])
		id.AuthorPublicKey = getPublicKey(b[544:696])
		return id, nil
	}
}

func getSignature(b []byte) SNPSignature {
	var s SNPSignature
	copy(s.R[:], b[0:72])
	copy(s.S[:], b[72:144])
	return s
}

func getPublicKey(b []byte) SNPPublicKey {
	var k SNPPublicKey
	k.Curve = le.Uint32(b[0:])
	k.Reserved = le.Uint32(b[4:])
	copy(k.QX[:], b[8:80])
	copy(k.QY[:], b[80:152])
	return k
}

// CompatibilityMask returns the compatibility mask of a header that has one: the platforms
// (by their SUPPORTED_PLATFORM masks) the header applies to.
func CompatibilityMask(b Body) (uint32, bool) {
	switch h := b.(type) {
	case SupportedPlatform:
		return h.CompatibilityMask, true
	case GuestPolicy:
		return h.CompatibilityMask, true
	case PageData:
		return h.CompatibilityMask, true
	case ParameterInsert:
		return h.CompatibilityMask, true
	case VPContext:
		return h.CompatibilityMask, true
	case RequiredMemory:
		return h.CompatibilityMask, true
	case ErrorRange:
		return h.CompatibilityMask, true
	case SNPIDBlock:
		return h.CompatibilityMask, true
	}
	return 0, false
}

func align8(n int) int { return (n + 7) &^ 7 }
