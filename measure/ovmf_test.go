package measure

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tableEntry is one footer table entry for testFirmware.
type tableEntry struct {
	guid efiGUID
	data []byte
}

func u32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// testFirmware lays out a firmware image of size bytes the way OVMF's reset vector does:
// the footer table ends 32 bytes before the end; when meta is not nil, an "ASEV" block
// with those sections sits at metaFromEnd bytes from the end and the table points to it.
type testFirmware struct {
	size        int
	entries     []tableEntry
	meta        []Section
	metaFromEnd int
}

func (f testFirmware) build() []byte {
	img := make([]byte, f.size)
	entries := f.entries
	if f.meta != nil {
		start := f.size - f.metaFromEnd
		b := []byte("ASEV")
		b = binary.LittleEndian.AppendUint32(b, uint32(metadataHeaderSize+sectionDescSize*len(f.meta)))
		b = binary.LittleEndian.AppendUint32(b, 1)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f.meta)))
		for _, s := range f.meta {
			b = binary.LittleEndian.AppendUint32(b, s.GPA)
			b = binary.LittleEndian.AppendUint32(b, s.Size)
			b = binary.LittleEndian.AppendUint32(b, uint32(s.Type))
		}
		copy(img[start:], b)
		entries = append(entries, tableEntry{guidSEVMetadata, u32(uint32(f.metaFromEnd))})
	}
	var table []byte
	for _, e := range entries {
		table = append(table, e.data...)
		table = binary.LittleEndian.AppendUint16(table, uint16(len(e.data)+entryHeaderSize))
		table = append(table, e.guid[:]...)
	}
	table = binary.LittleEndian.AppendUint16(table, uint16(len(table)+entryHeaderSize))
	table = append(table, guidFooterTable[:]...)
	copy(img[f.size-footerEnd-len(table):], table)
	return img
}

// goodFirmware is a small firmware with every section type, an AP reset block and a
// hashes table, modelled on OVMF's AmdSev build.
func goodFirmware() testFirmware {
	return testFirmware{
		size: 4 * PageSize,
		entries: []tableEntry{
			{guidSEVHashTable, append(u32(0x810c00), u32(0x400)...)},
			{guidSEVESReset, u32(0x80b004)},
		},
		meta: []Section{
			{0x800000, 0x9000, SectionSNPSecMem},
			{0x80d000, 0x1000, SectionSNPSecrets},
			{0x80e000, 0x1000, SectionCPUID},
			{0x80f000, 0x1000, SectionSVSMCAA},
			{0x810000, 0x1000, SectionSNPKernelHashes},
		},
		metaFromEnd: 0x400,
	}
}

func TestParseOVMF(t *testing.T) {
	f := goodFirmware()
	fw, err := ParseOVMF(f.build())
	if err != nil {
		t.Fatalf("ParseOVMF(goodFirmware) error: %v", err)
	}
	if got := fw.Sections(); len(got) != len(f.meta) {
		t.Fatalf("Sections() = %v, want %v", got, f.meta)
	} else {
		for i := range got {
			if got[i] != f.meta[i] {
				t.Errorf("Sections()[%d] = %+v, want %+v", i, got[i], f.meta[i])
			}
		}
	}
	if eip, err := fw.ResetEIP(); eip != 0x80b004 || err != nil {
		t.Errorf("ResetEIP() = 0x%x, %v, want 0x80b004", eip, err)
	}
	if gpa, err := fw.HashesTableGPA(); gpa != 0x810c00 || err != nil {
		t.Errorf("HashesTableGPA() = 0x%x, %v, want 0x810c00", gpa, err)
	}
	if gpa := fw.GPA(); gpa != fourGiB-4*PageSize {
		t.Errorf("GPA() = 0x%x, want 0x%x", gpa, fourGiB-4*PageSize)
	}
}

func TestParseOVMFBad(t *testing.T) {
	withFirmware := func(edit func(*testFirmware)) []byte {
		f := goodFirmware()
		edit(&f)
		return f.build()
	}
	withBytes := func(edit func([]byte)) []byte {
		img := goodFirmware().build()
		edit(img)
		return img
	}
	le := binary.LittleEndian
	footerLenAt := 4*PageSize - footerEnd - entryHeaderSize
	metaAt := 4*PageSize - 0x400
	for _, tc := range []struct {
		name string
		img  []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"too short for a footer", make([]byte, footerEnd+entryHeaderSize-1), ErrTruncated},
		{"zeros", make([]byte, 2*PageSize), ErrNoFooterTable},
		{"garbage", bytes.Repeat([]byte("garbage!"), PageSize), ErrNoFooterTable},
		{"footer length beyond image", withBytes(func(b []byte) { le.PutUint16(b[footerLenAt:], 0xffff) }), ErrOutOfRange},
		{"footer length below header", withBytes(func(b []byte) { le.PutUint16(b[footerLenAt:], 3) }), ErrOutOfRange},
		{"entry length beyond table", withBytes(func(b []byte) { le.PutUint16(b[footerLenAt-entryHeaderSize:], 0x7000) }), ErrOutOfRange},
		{"entry length below header", withBytes(func(b []byte) { le.PutUint16(b[footerLenAt-entryHeaderSize:], 1) }), ErrOutOfRange},
		{"metadata offset beyond image", withBytes(func(b []byte) { le.PutUint32(b[footerLenAt-entryHeaderSize-4:], 5*PageSize) }), ErrOutOfRange},
		{"metadata offset in last bytes", withBytes(func(b []byte) { le.PutUint32(b[footerLenAt-entryHeaderSize-4:], 8) }), ErrOutOfRange},
		{"metadata entry too short", withFirmware(func(f *testFirmware) {
			f.meta = nil
			f.entries = append(f.entries, tableEntry{guidSEVMetadata, []byte{1, 2}})
		}), ErrOutOfRange},
		{"metadata signature", withBytes(func(b []byte) { copy(b[metaAt:], "XSEV") }), ErrMetadata},
		{"metadata version", withBytes(func(b []byte) { le.PutUint32(b[metaAt+8:], 2) }), ErrMetadata},
		{"metadata length past end", withBytes(func(b []byte) { le.PutUint32(b[metaAt+4:], 0x401) }), ErrOutOfRange},
		{"metadata length below header", withBytes(func(b []byte) { le.PutUint32(b[metaAt+4:], 4) }), ErrOutOfRange},
		{"section count past length", withBytes(func(b []byte) { le.PutUint32(b[metaAt+12:], 6) }), ErrOutOfRange},
		{"section count huge", withBytes(func(b []byte) { le.PutUint32(b[metaAt+12:], 0xffffffff) }), ErrOutOfRange},
		{"unknown section type", withFirmware(func(f *testFirmware) { f.meta[1].Type = 7 }), ErrMetadata},
		{"unaligned section", withFirmware(func(f *testFirmware) { f.meta[0].GPA = 0x800010 }), ErrMetadata},
		{"empty section", withFirmware(func(f *testFirmware) { f.meta[0].Size = 0 }), ErrMetadata},
		{"section past 4 GiB", withFirmware(func(f *testFirmware) { f.meta[0].GPA = 0xfffff000; f.meta[0].Size = 0x2000 }), ErrOutOfRange},
		{"overlapping sections", withFirmware(func(f *testFirmware) { f.meta[2].GPA = 0x808000 }), ErrMetadata},
		{"too many sections", withFirmware(func(f *testFirmware) {
			f.size, f.metaFromEnd = 8*PageSize, 5*PageSize
			for len(f.meta) <= maxSections {
				f.meta = append(f.meta, Section{0x10000000 + uint32(len(f.meta))*PageSize, PageSize, SectionSNPSecMem})
			}
		}), ErrMetadata},
		{"size not whole pages", append(make([]byte, 100), goodFirmware().build()...), ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fw, err := ParseOVMF(tc.img)
			if err == nil {
				t.Fatalf("ParseOVMF(%s) = %+v, want an error", tc.name, fw.Sections())
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("ParseOVMF(%s) = %v, want %v", tc.name, err, tc.want)
			}
		})
	}
}

func TestReadOVMFErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.fd")
	huge := filepath.Join(dir, "huge.fd")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxFirmwareSize + PageSize); err != nil {
		t.Fatal(err)
	}
	f.Close()
	garbage := filepath.Join(dir, "garbage.fd")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte{0xa5}, 2*PageSize), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		want       error
	}{
		{"missing", missing, os.ErrNotExist},
		{"directory", dir, nil},
		{"too large", huge, ErrOutOfRange},
		{"garbage", garbage, ErrNoFooterTable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadOVMF(tc.path)
			if err == nil {
				t.Fatalf("ReadOVMF(%q) succeeded, want an error", tc.path)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("ReadOVMF(%q) = %v, want %v", tc.path, err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.path) {
				t.Errorf("ReadOVMF(%q) = %q, want the error to name the file", tc.path, err)
			}
		})
	}
}

func TestGUID(t *testing.T) {
	// The footer GUID as OVMF stores it (the last 16 bytes of its table entry).
	raw := []byte{0xde, 0x82, 0xb5, 0x96, 0xb2, 0x1f, 0xf7, 0x45, 0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d}
	const text = "96b582de-1fb2-45f7-baea-a366c55a082d"
	g := mustGUID(text)
	if !bytes.Equal(g[:], raw) {
		t.Errorf("mustGUID(%q) = % x, want % x", text, g[:], raw)
	}
	if g.String() != text {
		t.Errorf("mustGUID(%q).String() = %q", text, g.String())
	}
}
