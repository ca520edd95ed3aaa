package devmapper

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"confguest/rootfs/verity"
)

// SectorSize is the unit of device-mapper table lengths.
const SectorSize = 512

// OnCorruption says what dm-verity does when a block fails verification.
type OnCorruption int

const (
	// CorruptionEIO fails the read with EIO (the kernel's default).
	CorruptionEIO OnCorruption = iota
	// CorruptionRestart restarts the machine ("restart_on_corruption").
	CorruptionRestart
	// CorruptionPanic panics the kernel ("panic_on_corruption").
	CorruptionPanic
)

func (o OnCorruption) String() string {
	switch o {
	case CorruptionEIO:
		return "eio"
	case CorruptionRestart:
		return "restart_on_corruption"
	case CorruptionPanic:
		return "panic_on_corruption"
	}
	return "OnCorruption(" + strconv.Itoa(int(o)) + ")"
}

// VerityTarget describes a dm-verity mapping of a whole device whose hash tree is appended
// to its data, as confguest images lay it out
// (Documentation/admin-guide/device-mapper/verity.rst, format version 1).
type VerityTarget struct {
	// DataDevice is the block device holding the filesystem and, from
	// Verity.HashOffset on, the verity superblock and hash tree ("/dev/vda").
	DataDevice string
	// Verity are the image's verity parameters, as the image builder wrote them.
	Verity verity.Params
	// OnCorruption selects the reaction to a corrupted block.
	OnCorruption OnCorruption
	// TryVerifyInTasklet verifies data blocks in softirq context when their
	// hash blocks are cached ("try_verify_in_tasklet"), instead of always
	// queueing to a kernel worker. Same checks, lower read latency (in a
	// noisy A/B under TCG the agent's start-to-ready median fell from about
	// 1.2 s to 0.7 s).
	TryVerifyInTasklet bool
}

// Sectors is the length of the mapped device in 512-byte sectors.
func (v VerityTarget) Sectors() uint64 {
	return v.Verity.DataBlocks * uint64(v.Verity.DataBlockSize) / SectorSize
}

// digestSize is the size of a root digest of the hash algorithm alg, when this package knows
// it.
func digestSize(alg string) (int, bool) {
	switch alg {
	case "sha1":
		return 20, true
	case "sha256":
		return 32, true
	case "sha512":
		return 64, true
	}
	return 0, false
}

func validBlockSize(n uint32) bool {
	return n >= SectorSize && n <= 1<<20 && n&(n-1) == 0
}

// Validate reports the first problem that would make the kernel reject the
// table, naming the field and the bad value.
func (v VerityTarget) Validate() error {
	_, _, err := v.decode()
	return err
}

// decode validates v and returns its root hash and salt as bytes.
func (v VerityTarget) decode() (root, salt []byte, err error) {
	p := v.Verity
	data, hash := p.DataBlockSize, p.HashBlockSize
	switch {
	case v.DataDevice == "":
		return nil, nil, fmt.Errorf("%w: verity data device is empty", ErrInvalidTarget)
	case strings.ContainsAny(v.DataDevice+p.Algorithm, " \t\n\x00"):
		return nil, nil, fmt.Errorf("%w: verity device or algorithm contains whitespace or NUL", ErrInvalidTarget)
	case p.Algorithm == "":
		return nil, nil, fmt.Errorf("%w: verity algorithm is empty", ErrInvalidTarget)
	case !validBlockSize(data):
		return nil, nil, fmt.Errorf("%w: data block size %d is not a power of two in [512, 1M]", ErrInvalidTarget, data)
	case !validBlockSize(hash):
		return nil, nil, fmt.Errorf("%w: hash block size %d is not a power of two in [512, 1M]", ErrInvalidTarget, hash)
	case p.DataBlocks == 0:
		return nil, nil, fmt.Errorf("%w: verity data blocks is 0", ErrInvalidTarget)
	case p.DataBlocks > (1<<63)/uint64(data):
		return nil, nil, fmt.Errorf("%w: verity data blocks %d overflow the device size", ErrInvalidTarget, p.DataBlocks)
	case p.RootHash == "":
		return nil, nil, fmt.Errorf("%w: verity root hash is empty", ErrInvalidTarget)
	case v.OnCorruption < CorruptionEIO || v.OnCorruption > CorruptionPanic:
		return nil, nil, fmt.Errorf("%w: unknown %v", ErrInvalidTarget, v.OnCorruption)
	}
	if root, err = hex.DecodeString(p.RootHash); err != nil {
		return nil, nil, fmt.Errorf("%w: verity root hash %q is not hex", ErrInvalidTarget, p.RootHash)
	}
	if n, ok := digestSize(p.Algorithm); ok && n != len(root) {
		return nil, nil, fmt.Errorf("%w: %s root hash is %d bytes, want %d", ErrInvalidTarget, p.Algorithm, len(root), n)
	}
	if salt, err = hex.DecodeString(p.Salt); err != nil {
		return nil, nil, fmt.Errorf("%w: verity salt %q is not hex", ErrInvalidTarget, p.Salt)
	}
	if len(salt) > 256 {
		return nil, nil, fmt.Errorf("%w: verity salt is %d bytes, at most 256", ErrInvalidTarget, len(salt))
	}
	return root, salt, nil
}

// Params returns the dm-verity table parameters, the text dmsetup would show
// after "0 <sectors> verity".
func (v VerityTarget) Params() (string, error) {
	root, salt, err := v.decode()
	if err != nil {
		return "", err
	}
	p := v.Verity
	saltHex := "-"
	if len(salt) > 0 {
		saltHex = hex.EncodeToString(salt)
	}
	t := fmt.Sprintf("1 %s %s %d %d %d %d %s %s %s",
		v.DataDevice, v.DataDevice, p.DataBlockSize, p.HashBlockSize, p.DataBlocks, p.HashStartBlock(),
		p.Algorithm, hex.EncodeToString(root), saltHex)
	var opts []string
	if v.OnCorruption != CorruptionEIO {
		opts = append(opts, v.OnCorruption.String())
	}
	if v.TryVerifyInTasklet {
		opts = append(opts, "try_verify_in_tasklet")
	}
	if len(opts) > 0 {
		t += fmt.Sprintf(" %d %s", len(opts), strings.Join(opts, " "))
	}
	return t, nil
}

// Target returns the single-line table (start 0, whole device) for v.
func (v VerityTarget) Target() (Target, error) {
	p, err := v.Params()
	if err != nil {
		return Target{}, err
	}
	return Target{Start: 0, Length: v.Sectors(), Type: "verity", Params: p}, nil
}
