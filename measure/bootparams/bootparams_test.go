package bootparams

import (
	"encoding/binary"
	"testing"
)

func TestHeader(t *testing.T) {
	page := func(magic string, flag uint16, ptr, ext uint32) []byte {
		b := make([]byte, 4096)
		copy(b[Magic:], magic)
		binary.LittleEndian.PutUint16(b[BootFlag:], flag)
		binary.LittleEndian.PutUint32(b[CmdLinePtr:], ptr)
		binary.LittleEndian.PutUint32(b[ExtCmdLinePtr:], ext)
		return b
	}
	tests := []struct {
		name     string
		b        []byte
		wantHdr  bool
		wantAddr uint64
	}{
		{"low command line", page("HdrS", 0xAA55, 0x3000, 0), true, 0x3000},
		{"high command line", page("HdrS", 0xAA55, 0x3000, 1), true, 1<<32 | 0x3000},
		{"no magic", page("HdrX", 0xAA55, 0x3000, 0), false, 0x3000},
		{"no boot flag", page("HdrS", 0x55AA, 0x3000, 0), false, 0x3000},
		{"too short", page("HdrS", 0xAA55, 0, 0)[:HeaderEnd-1], false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := HasHeader(tc.b); got != tc.wantHdr {
				t.Errorf("HasHeader() = %v, want %v", got, tc.wantHdr)
			}
			if len(tc.b) < HeaderEnd {
				return
			}
			if got := CmdLineAddress(tc.b); got != tc.wantAddr {
				t.Errorf("CmdLineAddress() = %#x, want %#x", got, tc.wantAddr)
			}
		})
	}
}
