package measure

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
)

// The firmware image is mapped so that it ends at 4 GiB (the x86 reset vector sits at
// 0xFFFFFFF0, in the last 16 bytes of the image).
const fourGiB = 1 << 32

// MaxFirmwareSize bounds the firmware images ReadOVMF accepts.
const MaxFirmwareSize = 64 << 20

// efiGUID is a GUID in the byte order EFI and OVMF store it: the first three fields
// little-endian, the last eight bytes as written.
type efiGUID [16]byte

// mustGUID converts the canonical text form "aabbccdd-eeff-gghh-iijj-kkllmmnnoopp".
func mustGUID(s string) efiGUID {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		panic("measure: malformed GUID " + s)
	}
	var raw [16]byte
	h := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(raw[:], []byte(h)); err != nil {
		panic("measure: malformed GUID " + s)
	}
	var g efiGUID
	g[0], g[1], g[2], g[3] = raw[3], raw[2], raw[1], raw[0]
	g[4], g[5] = raw[5], raw[4]
	g[6], g[7] = raw[7], raw[6]
	copy(g[8:], raw[8:])
	return g
}

func (g efiGUID) String() string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(g[0:]), binary.LittleEndian.Uint16(g[4:]),
		binary.LittleEndian.Uint16(g[6:]), g[8:10], g[10:16])
}

// GUIDs of the OVMF footer table (edk2 OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm).
var (
	guidFooterTable  = mustGUID("96b582de-1fb2-45f7-baea-a366c55a082d")
	guidSEVHashTable = mustGUID("7255371f-3a3b-4b04-927b-1da6efa8d454")
	guidSEVESReset   = mustGUID("00f771de-1a7e-4fcb-890e-68c77e2fb44e")
	guidSEVMetadata  = mustGUID("dc886566-984a-4798-a75e-5585a7bf67cc")
)

const (
	// The footer table's own entry ends 32 bytes before the end of the image.
	footerEnd = 32
	// Every table entry ends with a 2-byte length (covering the whole entry) and a GUID.
	entryHeaderSize = 2 + 16
	// The SEV metadata header: "ASEV", length, version, number of sections.
	metadataHeaderSize = 16
	// One section descriptor: GPA, size, type, each 32 bits.
	sectionDescSize = 12
	// OVMF declares a handful of sections; this bounds what a corrupt header can claim.
	maxSections = 256
)

// SectionType is the type of an OVMF SEV metadata section
// (edk2 OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm).
type SectionType uint32

// Section types of the OVMF SEV metadata.
const (
	SectionSNPSecMem       SectionType = 1
	SectionSNPSecrets      SectionType = 2
	SectionCPUID           SectionType = 3
	SectionSVSMCAA         SectionType = 4
	SectionSNPKernelHashes SectionType = 0x10
)

func (t SectionType) String() string {
	switch t {
	case SectionSNPSecMem:
		return "SEC_MEM"
	case SectionSNPSecrets:
		return "SECRETS"
	case SectionCPUID:
		return "CPUID"
	case SectionSVSMCAA:
		return "SVSM_CAA"
	case SectionSNPKernelHashes:
		return "KERNEL_HASHES"
	}
	return fmt.Sprintf("type 0x%x", uint32(t))
}

// Section is one OVMF SEV metadata section: guest memory the VMM must prepare (and the
// SNP firmware measure) before launch.
type Section struct {
	GPA  uint32
	Size uint32
	Type SectionType
}

// OVMF is a parsed OVMF firmware image built with SEV support.
type OVMF struct {
	data     []byte
	table    map[efiGUID][]byte
	sections []Section
}

// ReadOVMF reads and parses the firmware image at path.
func ReadOVMF(path string) (*OVMF, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read OVMF firmware: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFirmwareSize+1))
	if err != nil {
		return nil, fmt.Errorf("read OVMF firmware %s: %w", path, err)
	}
	if len(data) > MaxFirmwareSize {
		return nil, fmt.Errorf("OVMF firmware %s: larger than %d MiB, not a firmware image: %w",
			path, MaxFirmwareSize>>20, ErrOutOfRange)
	}
	fw, err := ParseOVMF(data)
	if err != nil {
		return nil, fmt.Errorf("OVMF firmware %s: %w (use an OVMF build with SEV-SNP support, such as OVMF.amdsev.fd from Debian's ovmf-amdsev)", path, err)
	}
	return fw, nil
}

// ParseOVMF parses a firmware image: its footer table and its SEV metadata sections. The
// image is used, not copied.
func ParseOVMF(data []byte) (*OVMF, error) {
	fw := &OVMF{data: data}
	if err := fw.parseTable(); err != nil {
		return nil, err
	}
	if err := fw.parseMetadata(); err != nil {
		return nil, err
	}
	if len(data)%PageSize != 0 {
		return nil, fmt.Errorf("image size %d is not a multiple of %d bytes: %w", len(data), PageSize, ErrTruncated)
	}
	if len(data) > fourGiB {
		return nil, fmt.Errorf("image size %d does not fit below 4 GiB: %w", len(data), ErrOutOfRange)
	}
	return fw, nil
}

// parseTable reads the GUID-tagged entries that end 32 bytes before the end of the image.
// Entries are laid out back to back, each as data, a 16-bit length of the whole entry, and
// the GUID; the last one is the footer, whose length covers the whole table.
func (fw *OVMF) parseTable() error {
	n := len(fw.data)
	if n < footerEnd+entryHeaderSize {
		return fmt.Errorf("%d bytes is too short for an OVMF footer table: %w", n, ErrTruncated)
	}
	end := n - footerEnd
	footerLen, guid := entryHeader(fw.data[end-entryHeaderSize : end])
	if guid != guidFooterTable {
		hint := ""
		if n%PageSize != 0 {
			hint = fmt.Sprintf(" (the image's %d bytes are not whole 4 KiB pages: truncated?)", n)
		}
		return fmt.Errorf("footer table GUID %s not found at offset 0x%x%s: %w", guidFooterTable, end-16, hint, ErrNoFooterTable)
	}
	if footerLen < entryHeaderSize || footerLen > end {
		return fmt.Errorf("footer table length %d at offset 0x%x is outside the image: %w", footerLen, end-entryHeaderSize, ErrOutOfRange)
	}
	table := fw.data[end-footerLen : end-entryHeaderSize]
	fw.table = map[efiGUID][]byte{}
	for len(table) > 0 {
		if len(table) < entryHeaderSize {
			return fmt.Errorf("footer table has %d stray bytes before its first entry: %w", len(table), ErrOutOfRange)
		}
		size, guid := entryHeader(table[len(table)-entryHeaderSize:])
		if size < entryHeaderSize || size > len(table) {
			return fmt.Errorf("footer table entry %s has length %d, outside the table's remaining %d bytes: %w",
				guid, size, len(table), ErrOutOfRange)
		}
		fw.table[guid] = table[len(table)-size : len(table)-entryHeaderSize]
		table = table[:len(table)-size]
	}
	return nil
}

func entryHeader(b []byte) (size int, guid efiGUID) {
	copy(guid[:], b[2:])
	return int(binary.LittleEndian.Uint16(b)), guid
}

// entryUint32 returns the first 32 bits of the table entry with guid.
func (fw *OVMF) entryUint32(guid efiGUID, what string) (uint32, error) {
	e, ok := fw.table[guid]
	if !ok {
		return 0, fmt.Errorf("%s (GUID %s): %w", what, guid, ErrMissingEntry)
	}
	if len(e) < 4 {
		return 0, fmt.Errorf("%s (GUID %s) holds %d bytes, want at least 4: %w", what, guid, len(e), ErrOutOfRange)
	}
	return binary.LittleEndian.Uint32(e), nil
}

// parseMetadata reads the SEV metadata sections the footer table points to.
func (fw *OVMF) parseMetadata() error {
	if _, ok := fw.table[guidSEVMetadata]; !ok {
		return nil // no sections: a firmware without SNP support measures pages only
	}
	fromEnd, err := fw.entryUint32(guidSEVMetadata, "SEV metadata offset")
	if err != nil {
		return err
	}
	n := len(fw.data)
	if int64(fromEnd) > int64(n) || int(fromEnd) < metadataHeaderSize {
		return fmt.Errorf("SEV metadata at %d bytes from the end lies outside the %d-byte image: %w", fromEnd, n, ErrOutOfRange)
	}
	start := n - int(fromEnd)
	h := fw.data[start : start+metadataHeaderSize]
	if string(h[0:4]) != "ASEV" {
		return fmt.Errorf("signature %q at offset 0x%x, want \"ASEV\": %w", h[0:4], start, ErrMetadata)
	}
	size := binary.LittleEndian.Uint32(h[4:])
	version := binary.LittleEndian.Uint32(h[8:])
	count := binary.LittleEndian.Uint32(h[12:])
	if version != 1 {
		return fmt.Errorf("version %d, want 1: %w", version, ErrMetadata)
	}
	if size < metadataHeaderSize || uint64(start)+uint64(size) > uint64(n) {
		return fmt.Errorf("length %d at offset 0x%x runs past the end of the image: %w", size, start, ErrOutOfRange)
	}
	if uint64(count)*sectionDescSize > uint64(size-metadataHeaderSize) {
		return fmt.Errorf("%d sections do not fit in its %d bytes: %w", count, size, ErrOutOfRange)
	}
	if count > maxSections {
		return fmt.Errorf("%d sections, more than the %d any firmware needs: %w", count, maxSections, ErrMetadata)
	}
	desc := fw.data[start+metadataHeaderSize : start+int(size)]
	fw.sections = make([]Section, count)
	for i := range fw.sections {
		d := desc[i*sectionDescSize:]
		s := Section{
			GPA:  binary.LittleEndian.Uint32(d[0:]),
			Size: binary.LittleEndian.Uint32(d[4:]),
			Type: SectionType(binary.LittleEndian.Uint32(d[8:])),
		}
		if err := s.check(); err != nil {
			return fmt.Errorf("SEV metadata section %d: %w", i, err)
		}
		fw.sections[i] = s
	}
	return checkOverlap(fw.sections)
}

// checkOverlap rejects sections that share memory: each page is prepared once, and
// disjoint sections below 4 GiB also bound the work of measuring them.
func checkOverlap(sections []Section) error {
	sorted := slices.Clone(sections)
	slices.SortFunc(sorted, func(a, b Section) int { return cmp.Compare(a.GPA, b.GPA) })
	for i := 1; i < len(sorted); i++ {
		a, b := sorted[i-1], sorted[i]
		if uint64(a.GPA)+uint64(a.Size) > uint64(b.GPA) {
			return fmt.Errorf("sections %s at 0x%x size 0x%x and %s at 0x%x overlap: %w", a.Type, a.GPA, a.Size, b.Type, b.GPA, ErrMetadata)
		}
	}
	return nil
}

func (s Section) check() error {
	switch s.Type {
	case SectionSNPSecMem, SectionSNPSecrets, SectionCPUID, SectionSVSMCAA, SectionSNPKernelHashes:
	default:
		return fmt.Errorf("unknown section %s at 0x%x: %w", s.Type, s.GPA, ErrMetadata)
	}
	if s.GPA%PageSize != 0 || s.Size%PageSize != 0 || s.Size == 0 {
		return fmt.Errorf("%s at 0x%x size 0x%x is not whole 4 KiB pages: %w", s.Type, s.GPA, s.Size, ErrMetadata)
	}
	if uint64(s.GPA)+uint64(s.Size) > fourGiB {
		return fmt.Errorf("%s at 0x%x size 0x%x extends past 4 GiB: %w", s.Type, s.GPA, s.Size, ErrOutOfRange)
	}
	return nil
}

// Size is the length of the image in bytes.
func (fw *OVMF) Size() int { return len(fw.data) }

// GPA is the guest physical address the image is mapped at (it ends at 4 GiB).
func (fw *OVMF) GPA() uint64 { return fourGiB - uint64(len(fw.data)) }

// Sections returns the SEV metadata sections in table order.
func (fw *OVMF) Sections() []Section { return append([]Section(nil), fw.sections...) }

// SHA256 returns the SHA-256 of the image file.
func (fw *OVMF) SHA256() [sha256.Size]byte { return sha256.Sum256(fw.data) }

// ResetEIP returns the entry point of the application processors (the SEV-ES reset
// block), which also determines their VMSA's CS base and RIP.
func (fw *OVMF) ResetEIP() (uint32, error) {
	return fw.entryUint32(guidSEVESReset, "SEV-ES AP reset block")
}

// HashesTableGPA returns where the firmware expects QEMU's SEV hashes table.
func (fw *OVMF) HashesTableGPA() (uint32, error) {
	return fw.entryUint32(guidSEVHashTable, "SEV hashes table location")
}

// Hash returns the launch digest after the firmware pages alone: the "OVMF hash" that a
// launch digest can start from (sev-snp-measure's snp:ovmf-hash mode).
func (fw *OVMF) Hash() Digest {
	var d Digest
	d.UpdateData(fw.GPA(), fw.data)
	return d
}
