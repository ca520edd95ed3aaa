// Package measure computes AMD SEV-SNP launch digests: the SHA-384 chain of PAGE_INFO
// records that the SNP firmware extends on every SNP_LAUNCH_UPDATE (AMD SEV-SNP firmware
// ABI specification, "PAGE_INFO"), for OVMF launches under QEMU and for IGVM launches.
package measure

import (
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// PageSize is the size of one launched page.
const PageSize = 4096

// DigestSize is the size of a launch digest (SHA-384).
const DigestSize = sha512.Size384

// PageType is the PAGE_TYPE field of a PAGE_INFO record.
type PageType uint8

// Page types of SNP_LAUNCH_UPDATE.
const (
	PageNormal     PageType = 0x1
	PageVMSA       PageType = 0x2
	PageZero       PageType = 0x3
	PageUnmeasured PageType = 0x4
	PageSecrets    PageType = 0x5
	PageCPUID      PageType = 0x6
)

func (t PageType) String() string {
	switch t {
	case PageNormal:
		return "normal"
	case PageVMSA:
		return "vmsa"
	case PageZero:
		return "zero"
	case PageUnmeasured:
		return "unmeasured"
	case PageSecrets:
		return "secrets"
	case PageCPUID:
		return "cpuid"
	}
	return "unknown"
}

// pageInfoSize is the length of a PAGE_INFO record.
const pageInfoSize = 0x70

// Digest is a running launch digest. The zero value is the digest before the first page.
type Digest [DigestSize]byte

// Update extends the digest with one PAGE_INFO record for a page of type t at gpa.
// For normal and VMSA pages, contents is the page's bytes (DigestSize of SHA-384 is taken
// here); for every other type the contents field is zero and contents is ignored.
func (d *Digest) Update(t PageType, gpa uint64, contents []byte) {
	var rec [pageInfoSize]byte
	copy(rec[0x00:0x30], d[:])
	if t == PageNormal || t == PageVMSA {
		sum := sha512.Sum384(contents)
		copy(rec[0x30:0x60], sum[:])
	}
	binary.LittleEndian.PutUint16(rec[0x60:], pageInfoSize)
	rec[0x62] = byte(t)
	// 0x63 IMI_PAGE, 0x64..0x66 VMPL3..1 permissions, 0x67 reserved: all zero for launch.
	binary.LittleEndian.PutUint64(rec[0x68:], gpa)
	*d = sha512.Sum384(rec[:])
}

// UpdateRange extends the digest with one record of type t per 4 KiB page of
// [gpa, gpa+length), for page types whose contents are not measured.
func (d *Digest) UpdateRange(t PageType, gpa, length uint64) {
	for off := uint64(0); off < length; off += PageSize {
		d.Update(t, gpa+off, nil)
	}
}

// UpdateData extends the digest with normal pages holding data at gpa; the last page is
// padded with zeros.
func (d *Digest) UpdateData(gpa uint64, data []byte) {
	var page [PageSize]byte
	for off := 0; off < len(data); off += PageSize {
		n := copy(page[:], data[off:])
		clear(page[n:])
		d.Update(PageNormal, gpa+uint64(off), page[:])
	}
}

// String returns the digest as 96 lowercase hex digits.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// ParseDigest parses 96 hex digits (an optional 0x prefix is accepted) into a Digest.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if len(s) != 2*DigestSize {
		return d, fmt.Errorf("digest %q: %d hex digits, want %d (a SHA-384): %w", s, len(s), 2*DigestSize, ErrInvalidOption)
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return d, fmt.Errorf("digest %q: %w: %w", s, ErrInvalidOption, err)
	}
	return d, nil
}
