package measure

import (
	"encoding/hex"
	"fmt"
	"path/filepath"
)

// Modes of a measurement, named as sev-snp-measure names them.
const (
	ModeSNP      = "snp"           // the full launch digest
	ModeOVMFHash = "snp:ovmf-hash" // the digest of the firmware pages alone
)

// Options are the inputs of a QEMU + OVMF SEV-SNP launch, by file path, as
// sev-snp-measure takes them.
type Options struct {
	Mode string // ModeSNP (the default when "") or ModeOVMFHash
	OVMF string // firmware image path; always needed (its metadata drives the layout)
	// OVMFHash, when not "", is a precomputed OVMF hash (96 hex digits) to start from
	// instead of hashing the firmware pages.
	OVMFHash string
	Kernel   string  // kernel image path; "" for a launch without kernel hashes
	Initrd   string  // initrd path; "" for none (needs Kernel)
	Append   string  // kernel command line, hashed with a trailing NUL (needs Kernel)
	VMM      VMMType // QEMU unless set
	VCPUs    int
	// VCPUType is a QEMU CPU model name (see VCPUTypes); when "", VCPUSig is used as is.
	VCPUType      string
	VCPUSig       uint32
	GuestFeatures uint64 // SEV_FEATURES of every VMSA; DefaultGuestFeatures normally
}

// FileDigest names an input file by its base name, size and SHA-256.
type FileDigest struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Measurement is a launch digest with every input it was computed from, for publishing
// beside a build (measurement.json) or printing as JSON.
type Measurement struct {
	Mode        string `json:"mode"`
	VMM         string `json:"vmm"`
	Measurement string `json:"measurement"` // hex SHA-384 launch digest
	// OVMFHash is the digest of the firmware pages alone, computed or given.
	OVMFHash string      `json:"ovmf_hash"`
	OVMF     FileDigest  `json:"ovmf"`
	Kernel   *FileDigest `json:"kernel,omitempty"`
	Initrd   *FileDigest `json:"initrd,omitempty"`
	// Append is the kernel command line and CmdlineSHA256 its hashes-table digest
	// (SHA-256 of the line and a NUL); both present only with a kernel.
	Append        *string `json:"append,omitempty"`
	CmdlineSHA256 string  `json:"cmdline_sha256,omitempty"`
	VCPUs         int     `json:"vcpus,omitempty"`
	VCPUType      string  `json:"vcpu_type,omitempty"`
	VCPUSig       string  `json:"vcpu_sig,omitempty"`
	GuestFeatures string  `json:"guest_features,omitempty"`

	Digest Digest `json:"-"`
}

// SNP computes the launch digest of o (or, in ModeOVMFHash, the OVMF hash).
func SNP(o Options) (Digest, error) {
	m, err := Measure(o)
	if err != nil {
		return Digest{}, err
	}
	return m.Digest, nil
}

// Measure computes the launch digest of o and records its inputs.
func Measure(o Options) (*Measurement, error) {
	switch o.Mode {
	case "", ModeSNP:
		o.Mode = ModeSNP
	case ModeOVMFHash:
	default:
		return nil, fmt.Errorf("mode %q: want %s or %s: %w", o.Mode, ModeSNP, ModeOVMFHash, ErrInvalidOption)
	}
	if o.OVMF == "" {
		return nil, fmt.Errorf("no OVMF firmware given: %w", ErrInvalidOption)
	}
	fw, err := ReadOVMF(o.OVMF)
	if err != nil {
		return nil, err
	}
	fwSum := fw.SHA256()
	m := &Measurement{
		Mode: o.Mode,
		VMM:  o.VMM.String(),
		OVMF: FileDigest{Name: filepath.Base(o.OVMF), Size: int64(fw.Size()), SHA256: hex.EncodeToString(fwSum[:])},
	}
	if o.Mode == ModeOVMFHash {
		m.Digest = fw.Hash()
		m.Measurement = m.Digest.String()
		m.OVMFHash = m.Measurement
		return m, nil
	}

	l := Launch{Firmware: fw, VMM: o.VMM, VCPUs: o.VCPUs, VCPUSig: o.VCPUSig, GuestFeatures: o.GuestFeatures}
	if o.VCPUType != "" {
		v, err := VCPUByName(o.VCPUType)
		if err != nil {
			return nil, err
		}
		l.VCPUSig = v.Sig
	}
	if o.OVMFHash != "" {
		start, err := ParseDigest(o.OVMFHash)
		if err != nil {
			return nil, fmt.Errorf("OVMF hash: %w", err)
		}
		l.Start = &start
		m.OVMFHash = start.String()
	} else {
		m.OVMFHash = fw.Hash().String()
	}
	if o.Kernel == "" && (o.Initrd != "" || o.Append != "") {
		return nil, fmt.Errorf("an initrd or command line without a kernel is not measured (QEMU hashes them only with -kernel): give the kernel too: %w", ErrInvalidOption)
	}
	if o.Kernel != "" {
		var h KernelHashes
		if m.Kernel, err = fileDigest(o.Kernel, &h.Kernel); err != nil {
			return nil, fmt.Errorf("hash kernel: %w", err)
		}
		if o.Initrd != "" {
			if m.Initrd, err = fileDigest(o.Initrd, &h.Initrd); err != nil {
				return nil, fmt.Errorf("hash initrd: %w", err)
			}
		} else {
			h.Initrd = emptySHA256
		}
		h.Cmdline = CmdlineHash(o.Append)
		l.Hashes = &h
		m.Append = &o.Append
		m.CmdlineSHA256 = hex.EncodeToString(h.Cmdline[:])
	}
	if m.Digest, err = l.Digest(); err != nil {
		return nil, fmt.Errorf("OVMF firmware %s: %w", o.OVMF, err)
	}
	m.Measurement = m.Digest.String()
	m.VCPUs = o.VCPUs
	m.VCPUType = o.VCPUType
	if o.VMM == VMMQEMU { // ec2 and gce put a fixed value in RDX
		m.VCPUSig = fmt.Sprintf("0x%x", l.VCPUSig)
	}
	m.GuestFeatures = fmt.Sprintf("0x%x", o.GuestFeatures)
	return m, nil
}

// ForImage measures a built guest image for a QEMU launch with the OVMF firmware at
// ovmf, vcpus vCPUs of QEMU CPU model vcpuType and the default guest features: the
// content of a build's measurement.json.
func ForImage(ovmf, kernel, initrd, cmdline string, vcpus int, vcpuType string) (*Measurement, error) {
	return Measure(Options{
		Mode: ModeSNP, OVMF: ovmf, Kernel: kernel, Initrd: initrd, Append: cmdline,
		VCPUs: vcpus, VCPUType: vcpuType, GuestFeatures: DefaultGuestFeatures,
	})
}

func fileDigest(path string, sum *[32]byte) (*FileDigest, error) {
	s, n, err := fileSHA256(path)
	if err != nil {
		return nil, err
	}
	*sum = s
	return &FileDigest{Name: filepath.Base(path), Size: n, SHA256: hex.EncodeToString(s[:])}, nil
}
