package igvm

import (
	"fmt"
)

// Builder lays out a new IGVM file: headers go to their section (platform,
// initialization, directive) in the order they are added, and the data of each directive
// follows the headers in the same order, at offsets the Builder assigns.
type Builder struct {
	sections [3][]Header
	data     [3][][]byte // data of each header, nil for none
}

// Add appends a header without file data.
func (b *Builder) Add(h Body) {
	s := h.Type().section()
	if s < 0 {
		s = 2 // rejected with a clear error by Bytes
	}
	b.sections[s] = append(b.sections[s], Header{Body: h})
	b.data[s] = append(b.data[s], nil)
}

// AddPage appends a PAGE_DATA directive whose page holds data (zero-padded to the page
// size); with empty data the page is a page of zeros and gets no file data.
func (b *Builder) AddPage(p PageData, data []byte) error {
	if uint64(len(data)) > p.Size() {
		return fmt.Errorf("page at GPA 0x%x: %d bytes of data do not fit a %d-byte page", p.GPA, len(data), p.Size())
	}
	p.FileOffset = 0
	if len(data) == 0 {
		b.Add(p)
		return nil
	}
	page := make([]byte, p.Size())
	copy(page, data)
	b.sections[2] = append(b.sections[2], Header{Body: p})
	b.data[2] = append(b.data[2], page)
	return nil
}

// AddVPContext appends a VP_CONTEXT directive with its 4096-byte VMSA.
func (b *Builder) AddVPContext(vp VPContext, vmsa []byte) error {
	if len(vmsa) != PageSize {
		return fmt.Errorf("VP context %d: VMSA is %d bytes, want %d", vp.VPIndex, len(vmsa), PageSize)
	}
	b.sections[2] = append(b.sections[2], Header{Body: vp})
	b.data[2] = append(b.data[2], vmsa)
	return nil
}

// Bytes lays out and encodes the file and checks it with Parse.
func (b *Builder) Bytes() ([]byte, error) {
	var headers []Header
	var data [][]byte
	size := FixedHeaderSize
	for s := range b.sections {
		headers = append(headers, b.sections[s]...)
		data = append(data, b.data[s]...)
		for _, h := range b.sections[s] {
			size += 8 + align8(len(h.Body.encode()))
		}
	}
	off := uint64(size)
	var blob []byte
	for i, d := range data {
		if d == nil {
			continue
		}
		if off+uint64(len(d)) > 1<<32-1 {
			return nil, fmt.Errorf("IGVM file data exceeds 4 GiB at header %d", i)
		}
		switch h := headers[i].Body.(type) {
		case PageData:
			h.FileOffset = uint32(off)
			headers[i].Body = h
		case VPContext:
			h.FileOffset = uint32(off)
			headers[i].Body = h
		case ParameterArea:
			h.FileOffset = uint32(off)
			headers[i].Body = h
		}
		blob = append(blob, d...)
		off += uint64(len(d))
	}
	f := &File{Headers: headers, dataStart: uint32(size), data: blob}
	if blob == nil {
		f.data = []byte{}
	}
	out, err := f.Marshal()
	if err != nil {
		return nil, err
	}
	if _, err := Parse(out); err != nil {
		return nil, fmt.Errorf("built IGVM file is invalid: %w", err)
	}
	return out, nil
}
