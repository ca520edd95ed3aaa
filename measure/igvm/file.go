package igvm

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"slices"
)

// File is a parsed IGVM file. Directive file offsets are absolute offsets into the file.
type File struct {
	// Headers are the variable headers in file order.
	Headers []Header

	gap       []byte // bytes between the fixed header and the variable headers
	dataStart uint32 // offset of the first byte after the variable headers
	data      []byte // the file's bytes from dataStart to the end
}

// DataStart is the offset of the file data, the first byte after the variable headers.
func (f *File) DataStart() uint32 { return f.dataStart }

// Size is the file's total size.
func (f *File) Size() int { return int(f.dataStart) + len(f.data) }

// Data returns n bytes of file data at the absolute offset off, or nil if off is 0 (no data).
func (f *File) Data(off uint32, n uint64) ([]byte, error) {
	if off == 0 {
		return nil, nil
	}
	if off < f.dataStart || uint64(off-f.dataStart)+n > uint64(len(f.data)) {
		return nil, fmt.Errorf("%d bytes at offset %d are outside the file data [%d, %d): %w",
			n, off, f.dataStart, f.Size(), ErrTruncated)
	}
	start := off - f.dataStart
	return f.data[start : uint64(start)+n : uint64(start)+n], nil
}

// PageContents returns the bytes of a page, or nil for a page without data (zeros).
func (f *File) PageContents(p PageData) ([]byte, error) {
	return f.Data(p.FileOffset, p.Size())
}

// VMSA returns the 4096-byte SEV-SNP VMSA of a VP context.
func (f *File) VMSA(vp VPContext) ([]byte, error) {
	if vp.FileOffset == 0 {
		return nil, fmt.Errorf("VP context %d has no data: %w", vp.VPIndex, ErrMalformed)
	}
	return f.Data(vp.FileOffset, PageSize)
}

// ParameterAreas returns the parameter areas by index.
func (f *File) ParameterAreas() map[uint32]ParameterArea {
	areas := map[uint32]ParameterArea{}
	for _, h := range f.Headers {
		if a, ok := h.Body.(ParameterArea); ok {
			areas[a.Index] = a
		}
	}
	return areas
}

// Platform returns the SUPPORTED_PLATFORM header of platform type pt.
func (f *File) Platform(pt uint8) (SupportedPlatform, bool) {
	for _, h := range f.Headers {
		if p, ok := h.Body.(SupportedPlatform); ok && p.PlatformType == pt {
			return p, true
		}
	}
	return SupportedPlatform{}, false
}

// Parse reads and validates an IGVM file. The returned File keeps references into b.
func Parse(b []byte) (*File, error) {
	f, err := parse(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return f, nil
}

func parse(b []byte) (*File, error) {
	if len(b) < FixedHeaderSize {
		return nil, fmt.Errorf("file is %d bytes, shorter than the %d-byte fixed header: %w", len(b), FixedHeaderSize, ErrTruncated)
	}
	if m := le.Uint32(b[0:]); m != Magic {
		return nil, fmt.Errorf("magic is 0x%08x, want 0x%08x (\"IGVM\"): %w", m, Magic, ErrBadMagic)
	}
	if v := le.Uint32(b[4:]); v != FormatVersion {
		return nil, fmt.Errorf("format version %d, this reader knows only %d: %w", v, FormatVersion, ErrUnsupportedVersion)
	}
	vhOff, vhSize, total := le.Uint32(b[8:]), le.Uint32(b[12:]), le.Uint32(b[16:])
	if uint64(total) != uint64(len(b)) {
		return nil, fmt.Errorf("header says the file is %d bytes, it is %d: %w", total, len(b), ErrTruncated)
	}
	if vhOff < FixedHeaderSize || vhOff%8 != 0 {
		return nil, fmt.Errorf("variable headers at offset %d, want a multiple of 8 that is at least %d: %w", vhOff, FixedHeaderSize, ErrAlignment)
	}
	if vhSize%8 != 0 {
		return nil, fmt.Errorf("variable header size %d is not a multiple of 8: %w", vhSize, ErrAlignment)
	}
	end := uint64(vhOff) + uint64(vhSize)
	if end > uint64(len(b)) {
		return nil, fmt.Errorf("variable headers [%d, %d) run past the end of the %d-byte file: %w", vhOff, end, len(b), ErrTruncated)
	}
	if got, want := le.Uint32(b[20:]), checksum(b[:FixedHeaderSize], b[vhOff:end]); got != want {
		return nil, fmt.Errorf("CRC32 is 0x%08x, the headers sum to 0x%08x: %w", got, want, ErrChecksum)
	}
	f := &File{
		gap:       b[FixedHeaderSize:vhOff:vhOff],
		dataStart: uint32(end),
		data:      b[end:],
	}
	if err := f.parseHeaders(b[vhOff:end], vhOff); err != nil {
		return nil, err
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	return f, nil
}

// checksum is the CRC32 of the fixed header with its checksum field zeroed, followed by
// the variable headers.
func checksum(fixed, vh []byte) uint32 {
	var h [FixedHeaderSize]byte
	copy(h[:], fixed)
	clear(h[20:24])
	c := crc32.Update(0, crc32.IEEETable, h[:])
	return crc32.Update(c, crc32.IEEETable, vh)
}

func (f *File) parseHeaders(vh []byte, base uint32) error {
	section := 0
	for p := 0; p < len(vh); {
		at := int(base) + p
		if len(vh)-p < 8 {
			return fmt.Errorf("variable header at offset %d: %d bytes left, need 8: %w", at, len(vh)-p, ErrTruncated)
		}
		t, n := HeaderType(le.Uint32(vh[p:])), le.Uint32(vh[p+4:])
		padded := uint64(align8(int(n&0x7fffffff))) + 8
		if n > 0x7fffffff || uint64(p)+padded > uint64(len(vh)) {
			return fmt.Errorf("%v header at offset %d: length %d runs past the variable headers (end %d): %w", t, at, n, int(base)+len(vh), ErrTruncated)
		}
		s := t.section()
		if s < 0 {
			return fmt.Errorf("header at offset %d has invalid type 0x%x: %w", at, uint32(t), ErrMalformed)
		}
		if s < section {
			return fmt.Errorf("%s header %v at offset %d follows a %s header: %w", sectionNames[s], t, at, sectionNames[section], ErrHeaderOrder)
		}
		section = s
		body, err := decodeBody(t, vh[p+8:p+8+int(n)])
		if err != nil {
			return fmt.Errorf("header at offset %d: %w", at, err)
		}
		h := Header{Body: body}
		if pad := vh[p+8+int(n) : p+int(padded)]; !allZero(pad) {
			h.pad = slices.Clone(pad)
		}
		f.Headers = append(f.Headers, h)
		p += int(padded)
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// span is a guest physical range placed by one directive, for the overlap check.
type span struct {
	start, end uint64
	mask       uint32
	what       string
}

// validate checks what the directives point to: data inside the file, aligned addresses,
// known parameter areas and platforms, no two pages at one address.
func (f *File) validate() error {
	var platforms uint32
	areas := map[uint32]ParameterArea{}
	inserted := map[uint32]bool{}
	var spans []span
	for i, h := range f.Headers {
		where := fmt.Sprintf("header %d (%v)", i, h.Body.Type())
		if p, ok := h.Body.(SupportedPlatform); ok {
			if p.CompatibilityMask == 0 || p.CompatibilityMask&(p.CompatibilityMask-1) != 0 {
				return fmt.Errorf("%s: compatibility mask 0x%x must have exactly one bit set: %w", where, p.CompatibilityMask, ErrMalformed)
			}
			if platforms&p.CompatibilityMask != 0 {
				return fmt.Errorf("%s: compatibility mask 0x%x is used by two platforms: %w", where, p.CompatibilityMask, ErrMalformed)
			}
			if p.HighestVTL != 0 && p.HighestVTL != 2 {
				return fmt.Errorf("%s: highest VTL %d, want 0 or 2: %w", where, p.HighestVTL, ErrMalformed)
			}
			if p.PlatformType > 5 || p.PlatformVersion != 1 {
				return fmt.Errorf("%s: platform type %d version %d, want a type from 0 to 5 at version 1: %w", where, p.PlatformType, p.PlatformVersion, ErrMalformed)
			}
			platforms |= p.CompatibilityMask
			continue
		}
		if r, ok := reservedField(h.Body); ok && r != 0 {
			return fmt.Errorf("%s: reserved field is 0x%x, want 0: %w", where, r, ErrMalformed)
		}
		if m, ok := CompatibilityMask(h.Body); ok && (m == 0 || m&^platforms != 0) {
			return fmt.Errorf("%s: compatibility mask 0x%x names no supported platform (have 0x%x): %w", where, m, platforms, ErrReference)
		}
		switch d := h.Body.(type) {
		case PageData:
			if d.Flags&^(PageFlag2M|PageFlagUnmeasured|PageFlagShared) != 0 {
				return fmt.Errorf("%s: unknown page flags 0x%x: %w", where, d.Flags, ErrMalformed)
			}
			if d.DataType > DataCPUIDXF {
				return fmt.Errorf("%s: unknown page data type %d: %w", where, d.DataType, ErrMalformed)
			}
			if d.GPA%d.Size() != 0 || d.GPA+d.Size() < d.GPA {
				return fmt.Errorf("%s: GPA 0x%x is not aligned to its %d-byte page: %w", where, d.GPA, d.Size(), ErrAlignment)
			}
			if _, err := f.PageContents(d); err != nil {
				return fmt.Errorf("%s at GPA 0x%x: %w", where, d.GPA, err)
			}
			spans = append(spans, span{d.GPA, d.GPA + d.Size(), d.CompatibilityMask, where})
		case ParameterArea:
			if _, dup := areas[d.Index]; dup {
				return fmt.Errorf("%s: parameter area %d declared twice: %w", where, d.Index, ErrMalformed)
			}
			if d.NumberOfBytes == 0 || d.NumberOfBytes%PageSize != 0 || d.NumberOfBytes > 1<<40 {
				return fmt.Errorf("%s: parameter area size %d is not a non-zero multiple of %d: %w", where, d.NumberOfBytes, PageSize, ErrAlignment)
			}
			if _, err := f.Data(d.FileOffset, d.NumberOfBytes); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			areas[d.Index] = d
		case Parameter:
			a, ok := areas[d.AreaIndex]
			if !ok {
				return fmt.Errorf("%s: parameter area %d is not declared before use: %w", where, d.AreaIndex, ErrReference)
			}
			if uint64(d.ByteOffset) >= a.NumberOfBytes {
				return fmt.Errorf("%s: byte offset %d is outside parameter area %d (%d bytes): %w", where, d.ByteOffset, d.AreaIndex, a.NumberOfBytes, ErrTruncated)
			}
		case ParameterInsert:
			a, ok := areas[d.Index]
			if !ok {
				return fmt.Errorf("%s: parameter area %d is not declared before its insert: %w", where, d.Index, ErrReference)
			}
			if inserted[d.Index] {
				return fmt.Errorf("%s: parameter area %d inserted twice: %w", where, d.Index, ErrMalformed)
			}
			inserted[d.Index] = true
			if d.GPA%PageSize != 0 || d.GPA+a.NumberOfBytes < d.GPA {
				return fmt.Errorf("%s: GPA 0x%x is not page-aligned: %w", where, d.GPA, ErrAlignment)
			}
			spans = append(spans, span{d.GPA, d.GPA + a.NumberOfBytes, d.CompatibilityMask, where})
		case VPContext:
			if d.GPA%PageSize != 0 {
				return fmt.Errorf("%s: GPA 0x%x is not page-aligned: %w", where, d.GPA, ErrAlignment)
			}
			if _, err := f.VMSA(d); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
		case RequiredMemory:
			if d.GPA%PageSize != 0 || d.NumberOfBytes%PageSize != 0 {
				return fmt.Errorf("%s: range 0x%x+0x%x is not page-aligned: %w", where, d.GPA, d.NumberOfBytes, ErrAlignment)
			}
		}
	}
	return checkOverlap(spans)
}

// checkOverlap reports two spans that share an address and a platform.
func checkOverlap(spans []span) error {
	for bit := uint32(1); bit != 0; bit <<= 1 {
		var s []span
		for _, sp := range spans {
			if sp.mask&bit != 0 {
				s = append(s, sp)
			}
		}
		if len(s) < 2 {
			continue
		}
		slices.SortStableFunc(s, func(a, b span) int {
			switch {
			case a.start < b.start:
				return -1
			case a.start > b.start:
				return 1
			}
			return 0
		})
		for i := 1; i < len(s); i++ {
			if s[i].start < s[i-1].end {
				return fmt.Errorf("%s and %s both place a page at GPA 0x%x: %w", s[i-1].what, s[i].what, s[i].start, ErrOverlap)
			}
		}
	}
	return nil
}

// Marshal encodes the file. For a parsed file whose headers were not changed in size, the
// result is byte-identical to the input of Parse.
func (f *File) Marshal() ([]byte, error) {
	var vh bytes.Buffer
	for _, h := range f.Headers {
		writeHeader(&vh, h)
	}
	start := FixedHeaderSize + len(f.gap) + vh.Len()
	if f.data != nil && uint32(start) != f.dataStart {
		return nil, fmt.Errorf("variable headers now end at %d but the file data's offsets assume %d: lay out changed files with a Builder", start, f.dataStart)
	}
	out := make([]byte, FixedHeaderSize, start+len(f.data))
	le.PutUint32(out[0:], Magic)
	le.PutUint32(out[4:], FormatVersion)
	le.PutUint32(out[8:], uint32(FixedHeaderSize+len(f.gap)))
	le.PutUint32(out[12:], uint32(vh.Len()))
	le.PutUint32(out[16:], uint32(start+len(f.data)))
	le.PutUint32(out[20:], checksum(out, vh.Bytes()))
	out = append(out, f.gap...)
	out = append(out, vh.Bytes()...)
	return append(out, f.data...), nil
}

func writeHeader(w *bytes.Buffer, h Header) {
	body := h.Body.encode()
	var th [8]byte
	le.PutUint32(th[0:], uint32(h.Body.Type()))
	le.PutUint32(th[4:], uint32(len(body)))
	w.Write(th[:])
	w.Write(body)
	pad := align8(len(body)) - len(body)
	if len(h.pad) == pad {
		w.Write(h.pad)
	} else {
		w.Write(make([]byte, pad))
	}
}

// reservedField returns the reserved field of headers whose reserved field must be zero.
func reservedField(b Body) (uint32, bool) {
	switch h := b.(type) {
	case GuestPolicy:
		return h.Reserved, true
	case PageData:
		return uint32(h.Reserved), true
	case RequiredMemory:
		return h.Reserved, true
	}
	return 0, false
}
