package attest

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// The SEV-SNP report layout the agent reads (AMD SEV-SNP firmware ABI, ATTESTATION_REPORT):
// it checks REPORT_DATA and reads HOST_DATA; the relying party verifies the rest
// (go-sev-guest's verify and validate, on the host).
const (
	// ReportSize is the size of an SEV-SNP attestation report.
	ReportSize       = 0x4A0
	reportDataOffset = 0x50 // REPORT_DATA, 64 bytes
	hostDataOffset   = 0xC0 // HOST_DATA, 32 bytes
)

// reportField returns size bytes at off of an SEV-SNP report.
func reportField(report []byte, off, size int) ([]byte, error) {
	if len(report) != ReportSize {
		return nil, fmt.Errorf("SEV-SNP report: %d bytes, want %d", len(report), ReportSize)
	}
	return report[off : off+size], nil
}

// The certificate table of an extended report (GHCB specification, SNP extended guest
// request): entries of a GUID and the offset and length of its blob in the table, ended by
// an all-zero entry, then the blobs.
const certEntrySize = 24

var (
	// vcekGUID names the VCEK certificate.
	vcekGUID = [16]byte{0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd}
	// platformInfoGUID names go-sev-guest's ExtraPlatformInfo blob (ecae0c0f-9502-43b1-
	// afa2-0ae2e0d565b6): 4 bytes of its size (8), then CPUID[1].EAX masked to family,
	// model and stepping, by which a verifier without the VCEK finds the product.
	platformInfoGUID = [16]byte{0xec, 0xae, 0x0c, 0x0f, 0x95, 0x02, 0x43, 0xb1, 0xaf, 0xa2, 0x0a, 0xe2, 0xe0, 0xd5, 0x65, 0xb6}
)

// cpuidProductMask keeps CPUID[1].EAX's family, model and stepping fields.
const cpuidProductMask = 0x0fff0fff

type certEntry struct {
	guid [16]byte
	blob []byte
}

// parseCertTable reads a certificate table. An empty table has no terminator.
func parseCertTable(table []byte) ([]certEntry, error) {
	if len(table) == 0 {
		return nil, nil
	}
	var heads []certEntry
	var offs []uint64
	var zero [16]byte
	header := 0
	for {
		if len(table)-header < certEntrySize {
			return nil, fmt.Errorf("certificate table: entry %d: %d bytes left of the table, want %d", header/certEntrySize, len(table)-header, certEntrySize)
		}
		e := table[header : header+certEntrySize]
		header += certEntrySize
		var guid [16]byte
		copy(guid[:], e)
		off, n := binary.LittleEndian.Uint32(e[16:]), binary.LittleEndian.Uint32(e[20:])
		if guid == zero && off == 0 && n == 0 {
			break
		}
		heads = append(heads, certEntry{guid: guid})
		offs = append(offs, uint64(off)<<32|uint64(n))
	}
	for i := range heads {
		off, n := offs[i]>>32, offs[i]&0xffffffff
		if off < uint64(header) {
			return nil, fmt.Errorf("certificate table: entry %d: offset %d inside the %d-byte header", i, off, header)
		}
		if off+n > uint64(len(table)) {
			return nil, fmt.Errorf("certificate table: entry %d: bytes %d+%d outside the %d-byte table", i, off, n, len(table))
		}
		heads[i].blob = table[off : off+n]
	}
	return heads, nil
}

// extendCertTable adds the platform information entry (cpuid1EAX masked) to a certificate
// table that has no VCEK certificate, written anew with its blobs packed after the header;
// a table with the VCEK is returned as it is (the certificate names the product). It is
// go-sev-guest's abi.ExtendPlatformCertTable, which its quote providers apply to what the
// kernel returns, so the agent's evidence is what it was with those providers
// (TestExtendCertTable compares the two).
func extendCertTable(table []byte, cpuid1EAX uint32) ([]byte, error) {
	entries, err := parseCertTable(table)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.guid == vcekGUID {
			return table, nil
		}
	}
	info := make([]byte, 8)
	binary.LittleEndian.PutUint32(info[0:], 8)
	binary.LittleEndian.PutUint32(info[4:], cpuid1EAX&cpuidProductMask)
	entries = append(entries, certEntry{guid: platformInfoGUID, blob: info})
	header := (len(entries) + 1) * certEntrySize
	var out bytes.Buffer
	out.Grow(header)
	blobs := make([]byte, 0, 4096)
	for _, e := range entries {
		var h [certEntrySize]byte
		copy(h[:], e.guid[:])
		binary.LittleEndian.PutUint32(h[16:], uint32(header+len(blobs)))
		binary.LittleEndian.PutUint32(h[20:], uint32(len(e.blob)))
		out.Write(h[:])
		blobs = append(blobs, e.blob...)
	}
	out.Write(make([]byte, certEntrySize))
	out.Write(blobs)
	return out.Bytes(), nil
}
