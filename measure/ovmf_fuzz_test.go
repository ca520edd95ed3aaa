package measure

import (
	"errors"
	"os"
	"testing"
)

// sentinels are the errors every failure of the parser and the launch digest wraps.
var sentinels = []error{ErrTruncated, ErrNoFooterTable, ErrOutOfRange, ErrMissingEntry, ErrMetadata,
	ErrNoKernelHashes, ErrUnknownVCPUType, ErrInvalidOption}

func wrapsSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// FuzzParseOVMF feeds arbitrary images to the firmware parser and measures what it
// accepts. It must never panic, every error must wrap a sentinel, and what it accepts
// must satisfy the checks the launch digest relies on.
func FuzzParseOVMF(f *testing.F) {
	f.Add(goodFirmware().build())
	f.Add(make([]byte, PageSize))
	noMeta := goodFirmware()
	noMeta.meta = nil
	f.Add(noMeta.build())
	// The tail of the real firmware holds its whole footer table and metadata.
	if real, err := os.ReadFile("../../shared/vectors/OVMF.amdsev.fd"); err == nil && len(real) >= 4*PageSize {
		f.Add(real[len(real)-4*PageSize:])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Keep the end of the image, where everything is found, and make it whole pages.
		if r := len(data) % PageSize; r != 0 {
			data = append(make([]byte, PageSize-r), data...)
		}
		fw, err := ParseOVMF(data)
		if err != nil {
			if !wrapsSentinel(err) {
				t.Fatalf("ParseOVMF error %q wraps no sentinel", err)
			}
			return
		}
		var pages uint64
		for _, s := range fw.Sections() {
			if s.GPA%PageSize != 0 || s.Size%PageSize != 0 || uint64(s.GPA)+uint64(s.Size) > fourGiB {
				t.Fatalf("ParseOVMF accepted section %+v", s)
			}
			pages += uint64(s.Size) / PageSize
		}
		if pages > 1024 {
			return // valid but slow to measure; the digest code is the same for any count
		}
		for _, h := range []*KernelHashes{nil, {}} {
			l := Launch{Firmware: fw, Hashes: h, VCPUs: 3, VCPUSig: 0xa00f11, GuestFeatures: 1}
			if _, err := l.Digest(); err != nil && !wrapsSentinel(err) {
				t.Fatalf("Digest error %q wraps no sentinel", err)
			}
		}
	})
}
