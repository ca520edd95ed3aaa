package igvm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"
)

// rawHeader is one variable header written by hand for the malformed-input tests.
type rawHeader struct {
	typ  uint32
	body []byte
}

// assemble writes an IGVM file by hand (independently of Marshal): fixed header with a
// correct size and CRC32, headers padded with zeros, then data.
func assemble(hs []rawHeader, data []byte) []byte {
	var vh []byte
	for _, h := range hs {
		vh = binary.LittleEndian.AppendUint32(vh, h.typ)
		vh = binary.LittleEndian.AppendUint32(vh, uint32(len(h.body)))
		vh = append(vh, h.body...)
		for len(vh)%8 != 0 {
			vh = append(vh, 0)
		}
	}
	out := make([]byte, 24)
	binary.LittleEndian.PutUint32(out[0:], 0x4D564749)
	binary.LittleEndian.PutUint32(out[4:], 1)
	binary.LittleEndian.PutUint32(out[8:], 24)
	binary.LittleEndian.PutUint32(out[12:], uint32(len(vh)))
	binary.LittleEndian.PutUint32(out[16:], uint32(24+len(vh)+len(data)))
	out = append(out, vh...)
	binary.LittleEndian.PutUint32(out[20:], crc32.ChecksumIEEE(out))
	return append(out, data...)
}

// fixCRC recomputes the checksum of a file edited by a test.
func fixCRC(b []byte) []byte {
	end := min(24+int(binary.LittleEndian.Uint32(b[12:])), len(b))
	h := bytes.Clone(b[:end])
	clear(h[20:24])
	binary.LittleEndian.PutUint32(b[20:], crc32.ChecksumIEEE(h))
	return b
}

func platformHdr(mask uint32) rawHeader {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint32(b[0:], mask)
	b[5] = PlatformSEVSNP
	binary.LittleEndian.PutUint16(b[6:], 1)
	return rawHeader{0x1, b}
}

func pageHdr(gpa uint64, mask, fileOffset, flags uint32, dataType uint16) rawHeader {
	b := make([]byte, 24)
	binary.LittleEndian.PutUint64(b[0:], gpa)
	binary.LittleEndian.PutUint32(b[8:], mask)
	binary.LittleEndian.PutUint32(b[12:], fileOffset)
	binary.LittleEndian.PutUint32(b[16:], flags)
	binary.LittleEndian.PutUint16(b[20:], dataType)
	return rawHeader{0x302, b}
}

func areaHdr(size uint64, index, fileOffset uint32) rawHeader {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint64(b[0:], size)
	binary.LittleEndian.PutUint32(b[8:], index)
	binary.LittleEndian.PutUint32(b[12:], fileOffset)
	return rawHeader{0x301, b}
}

func insertHdr(gpa uint64, mask, index uint32) rawHeader {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint64(b[0:], gpa)
	binary.LittleEndian.PutUint32(b[8:], mask)
	binary.LittleEndian.PutUint32(b[12:], index)
	return rawHeader{0x303, b}
}

func vpHdr(gpa uint64, mask, fileOffset uint32) rawHeader {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint64(b[0:], gpa)
	binary.LittleEndian.PutUint32(b[8:], mask)
	binary.LittleEndian.PutUint32(b[12:], fileOffset)
	return rawHeader{0x304, b}
}

func policyHdr() rawHeader {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint64(b[0:], 0x30000)
	binary.LittleEndian.PutUint32(b[8:], 1)
	return rawHeader{0x101, b}
}

// dataOffset is where the data of a file of hs starts.
func dataOffset(hs []rawHeader) uint32 {
	n := 24
	for _, h := range hs {
		n += 8 + (len(h.body)+7)&^7
	}
	return uint32(n)
}

func TestParseValid(t *testing.T) {
	hs := []rawHeader{platformHdr(1), policyHdr(), pageHdr(0, 1, 0, 0, 0), pageHdr(0x1000, 1, 0, 0, 0)}
	off := dataOffset(hs)
	hs[3] = pageHdr(0x1000, 1, off, 0, 0)
	page := bytes.Repeat([]byte{0xA5}, PageSize)
	b := assemble(hs, page)
	f, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse(valid file) = %v", err)
	}
	if len(f.Headers) != 4 {
		t.Fatalf("Parse(valid file) has %d headers, want 4", len(f.Headers))
	}
	p := f.Headers[3].Body.(PageData)
	got, err := f.PageContents(p)
	if err != nil || !bytes.Equal(got, page) {
		t.Errorf("PageContents(%+v) = %d bytes, %v; want the 0xA5 page", p, len(got), err)
	}
	if z, err := f.PageContents(f.Headers[2].Body.(PageData)); z != nil || err != nil {
		t.Errorf("PageContents(empty page) = %v, %v; want nil, nil", z, err)
	}
	out, err := f.Marshal()
	if err != nil || !bytes.Equal(out, b) {
		t.Errorf("Marshal(Parse(b)) = %d bytes, %v; want the %d input bytes", len(out), err, len(b))
	}
}

func TestParseMalformed(t *testing.T) {
	base := []rawHeader{platformHdr(1), policyHdr(), pageHdr(0, 1, 0, 0, 0)}
	good := assemble(base, nil)
	off := dataOffset(base)
	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"short fixed header", good[:20], ErrTruncated},
		{"bad magic", edit(func(b []byte) []byte { b[0] = 'X'; return fixCRC(b) }), ErrBadMagic},
		{"version 2", edit(func(b []byte) []byte { b[4] = 2; return fixCRC(b) }), ErrUnsupportedVersion},
		{"checksum", edit(func(b []byte) []byte { b[20] ^= 1; return b }), ErrChecksum},
		{"header byte flipped", edit(func(b []byte) []byte { b[40] ^= 1; return b }), ErrChecksum},
		{"total size too big", edit(func(b []byte) []byte { b[16]++; return fixCRC(b) }), ErrTruncated},
		{"trailing byte", edit(func(b []byte) []byte { return append(b, 0) }), ErrTruncated},
		{"header offset inside fixed header", edit(func(b []byte) []byte { b[8] = 16; return fixCRC(b) }), ErrAlignment},
		{"header offset misaligned", edit(func(b []byte) []byte { b[8] = 28; return fixCRC(b) }), ErrAlignment},
		{"header size past end", edit(func(b []byte) []byte { b[12] += 8; return fixCRC(b) }), ErrTruncated},
		{"header length past end", edit(func(b []byte) []byte { b[28] = 0xff; return fixCRC(b) }), ErrTruncated},
		{"invalid type 0", assemble([]rawHeader{platformHdr(1), {0, nil}}, nil), ErrMalformed},
		{"type in the gap 0x201", assemble([]rawHeader{platformHdr(1), {0x201, make([]byte, 8)}}, nil), ErrMalformed},
		{"platform after directive", assemble([]rawHeader{platformHdr(1), pageHdr(0, 1, 0, 0, 0), platformHdr(2)}, nil), ErrHeaderOrder},
		{"init after directive", assemble([]rawHeader{platformHdr(1), pageHdr(0, 1, 0, 0, 0), policyHdr()}, nil), ErrHeaderOrder},
		{"page header too short", assemble([]rawHeader{platformHdr(1), {0x302, make([]byte, 20)}}, nil), ErrHeaderSize},
		{"page data past end", assemble([]rawHeader{platformHdr(1), pageHdr(0, 1, off, 0, 0)}, make([]byte, 100)), ErrTruncated},
		{"page data inside headers", assemble([]rawHeader{platformHdr(1), pageHdr(0, 1, 8, 0, 0)}, make([]byte, PageSize)), ErrTruncated},
		{"page data offset huge", assemble([]rawHeader{platformHdr(1), pageHdr(0, 1, 0xfffff000, 0, 0)}, nil), ErrTruncated},
		{"overlapping pages", assemble([]rawHeader{platformHdr(1), pageHdr(0x1000, 1, 0, 0, 0), pageHdr(0x1000, 1, 0, 0, 0)}, nil), ErrOverlap},
		{"page inside 2M page", assemble([]rawHeader{platformHdr(1), pageHdr(0x200000, 1, 0, PageFlag2M, 0), pageHdr(0x3ff000, 1, 0, 0, 0)}, nil), ErrOverlap},
		{"insert over page", assemble([]rawHeader{platformHdr(1), pageHdr(0x2000, 1, 0, 0, 0), areaHdr(0x2000, 0, 0), insertHdr(0x1000, 1, 0)}, nil), ErrOverlap},
		{"misaligned page", assemble([]rawHeader{platformHdr(1), pageHdr(0x1800, 1, 0, 0, 0)}, nil), ErrAlignment},
		{"misaligned 2M page", assemble([]rawHeader{platformHdr(1), pageHdr(0x1000, 1, 0, PageFlag2M, 0)}, nil), ErrAlignment},
		{"misaligned area size", assemble([]rawHeader{platformHdr(1), areaHdr(100, 0, 0)}, nil), ErrAlignment},
		{"insert of unknown area", assemble([]rawHeader{platformHdr(1), insertHdr(0x1000, 1, 3)}, nil), ErrReference},
		{"mask of no platform", assemble([]rawHeader{platformHdr(1), pageHdr(0, 2, 0, 0, 0)}, nil), ErrReference},
		{"unknown page flags", assemble([]rawHeader{platformHdr(1), pageHdr(0, 1, 0, 0x10, 0)}, nil), ErrMalformed},
		{"unknown data type", assemble([]rawHeader{platformHdr(1), pageHdr(0, 1, 0, 0, 9)}, nil), ErrMalformed},
		{"platform version 2", assemble([]rawHeader{func() rawHeader { h := platformHdr(1); h.body[6] = 2; return h }()}, nil), ErrMalformed},
		{"platform VTL 1", assemble([]rawHeader{func() rawHeader { h := platformHdr(1); h.body[4] = 1; return h }()}, nil), ErrMalformed},
		{"policy reserved", assemble([]rawHeader{platformHdr(1), func() rawHeader { h := policyHdr(); h.body[12] = 1; return h }()}, nil), ErrMalformed},
		{"page reserved", assemble([]rawHeader{platformHdr(1), func() rawHeader { h := pageHdr(0, 1, 0, 0, 0); h.body[22] = 1; return h }()}, nil), ErrMalformed},
		{"VP context without data", assemble([]rawHeader{platformHdr(1), vpHdr(0x1000, 1, 0)}, nil), ErrMalformed},
		{"VP context data past end", assemble([]rawHeader{platformHdr(1), vpHdr(0x1000, 1, off)}, make([]byte, 100)), ErrTruncated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(tc.in)
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse(%s) = %v, %v; want an error wrapping %v and %v", tc.name, f, err, tc.want, ErrMalformed)
			}
		})
	}
}

func TestBuilderRoundTrip(t *testing.T) {
	var b Builder
	// Added out of section order: the Builder sorts headers into their sections.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.AddPage(PageData{GPA: 0x1000, CompatibilityMask: 1}, []byte("hello")))
	b.Add(SupportedPlatform{CompatibilityMask: 1, PlatformType: PlatformSEVSNP, PlatformVersion: 1})
	b.Add(GuestPolicy{Policy: 0x30000, CompatibilityMask: 1})
	must(b.AddPage(PageData{GPA: 0x2000, CompatibilityMask: 1}, nil))
	b.Add(ParameterArea{NumberOfBytes: PageSize, Index: 0})
	b.Add(Parameter{Kind: TypeVPCount, AreaIndex: 0})
	b.Add(ParameterInsert{GPA: 0x3000, CompatibilityMask: 1, Index: 0})
	var vmsa VMSA
	vmsa.SetU64(VMSARIP, 0x100000)
	must(b.AddVPContext(VPContext{GPA: 0x4000, CompatibilityMask: 1}, vmsa[:]))
	b.Add(Raw{Kind: 0x3ff, Data: []byte{1, 2, 3}})
	out, err := b.Bytes()
	if err != nil {
		t.Fatalf("Bytes() = %v", err)
	}
	f, err := Parse(out)
	if err != nil {
		t.Fatalf("Parse(Bytes()) = %v", err)
	}
	wantTypes := []HeaderType{TypeSupportedPlatform, TypeGuestPolicy, TypePageData, TypePageData,
		TypeParameterArea, TypeVPCount, TypeParameterInsert, TypeVPContext, 0x3ff}
	if len(f.Headers) != len(wantTypes) {
		t.Fatalf("Parse(Bytes()) has %d headers, want %d", len(f.Headers), len(wantTypes))
	}
	for i, h := range f.Headers {
		if h.Body.Type() != wantTypes[i] {
			t.Errorf("header %d is %v, want %v", i, h.Body.Type(), wantTypes[i])
		}
	}
	p := f.Headers[2].Body.(PageData)
	data, err := f.PageContents(p)
	if err != nil || len(data) != PageSize || string(data[:5]) != "hello" || !allZero(data[5:]) {
		t.Errorf("PageContents(page at 0x1000) = %q..., %v; want \"hello\" and zeros", data[:8], err)
	}
	vp := f.Headers[7].Body.(VPContext)
	got, err := f.VMSA(vp)
	if err != nil || !bytes.Equal(got, vmsa[:]) {
		t.Errorf("VMSA(%+v) differs from the VMSA added (err %v)", vp, err)
	}
	if r := f.Headers[8].Body.(Raw); !bytes.Equal(r.Data, []byte{1, 2, 3}) {
		t.Errorf("raw header = %v, want [1 2 3]", r.Data)
	}
	again, err := f.Marshal()
	if err != nil || !bytes.Equal(again, out) {
		t.Errorf("Marshal(Parse(Bytes())) differs from Bytes() (err %v)", err)
	}
}

func TestBuilderRejectsOverlap(t *testing.T) {
	var b Builder
	b.Add(SupportedPlatform{CompatibilityMask: 1, PlatformType: PlatformSEVSNP, PlatformVersion: 1})
	for range 2 {
		if err := b.AddPage(PageData{GPA: 0x1000, CompatibilityMask: 1}, []byte{1}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Bytes(); !errors.Is(err, ErrOverlap) {
		t.Errorf("Bytes() with two pages at 0x1000 = %v, want %v", err, ErrOverlap)
	}
}
