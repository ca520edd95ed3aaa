package igvm

import (
	"bytes"
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
