package igvm

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse: it must never panic, and whatever it accepts
// must marshal back to the same bytes and parse again.
func FuzzParse(f *testing.F) {
	hs := []rawHeader{platformHdr(1), policyHdr(), pageHdr(0, 1, 0, 0, 0), areaHdr(PageSize, 0, 0), insertHdr(0x1000, 1, 0)}
	f.Add(assemble(hs, nil))
	hs2 := []rawHeader{platformHdr(1), pageHdr(0x2000, 1, 0, 0, 0), vpHdr(0x3000, 1, 0)}
	hs2[2] = vpHdr(0x3000, 1, dataOffset(hs2))
	f.Add(assemble(hs2, make([]byte, PageSize)))
	if b, err := os.ReadFile(vectorPath); err == nil && len(b) > 4096 {
		// The headers of the real vector, without its file data (whose offsets then fail).
		f.Add(b[:4096])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse(b)
		if err != nil {
			return
		}
		out, err := file.Marshal()
		if err != nil {
			t.Fatalf("Marshal of an accepted file = %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("Marshal(Parse(b)) differs from b")
		}
	})
}

// FuzzParseFixedUp is FuzzParse past the fixed header: it sets the magic, version, sizes
// and checksum right so that mutations reach the variable headers and the directives.
func FuzzParseFixedUp(f *testing.F) {
	hs := []rawHeader{platformHdr(1), policyHdr(), pageHdr(0, 1, 0, 0, 0), areaHdr(PageSize, 0, 0),
		{uint32(TypeVPCount), make([]byte, 8)}, insertHdr(0x1000, 1, 0)}
	b := assemble(hs, nil)
	f.Add(b[24:], uint16(len(b)-24))
	hs2 := []rawHeader{platformHdr(1), pageHdr(0x2000, 1, 0, 0, 0), vpHdr(0x3000, 1, 0)}
	hs2[2] = vpHdr(0x3000, 1, dataOffset(hs2))
	b2 := assemble(hs2, make([]byte, PageSize))
	f.Add(b2[24:], uint16(dataOffset(hs2)-24))
	f.Fuzz(func(t *testing.T, rest []byte, vhSize uint16) {
		n := min(int(vhSize)&^7, len(rest)&^7)
		b := make([]byte, 24, 24+len(rest))
		binary.LittleEndian.PutUint32(b[0:], Magic)
		binary.LittleEndian.PutUint32(b[4:], FormatVersion)
		binary.LittleEndian.PutUint32(b[8:], 24)
		binary.LittleEndian.PutUint32(b[12:], uint32(n))
		binary.LittleEndian.PutUint32(b[16:], uint32(24+len(rest)))
		b = append(b, rest...)
		fixCRC(b)
		file, err := Parse(b)
		if err != nil {
			return
		}
		out, err := file.Marshal()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("Marshal(Parse(b)) differs from b (err %v)", err)
		}
	})
}
