package verity

import (
	"encoding/hex"
	"fmt"
)

// Defaults: what `veritysetup format` uses and what confguest images use.
const (
	Algorithm      = "sha256"
	BlockSize      = 4096
	SuperblockSize = 512
	digestSize     = 32
	maxSaltSize    = 256
)

// Params describe a dm-verity hash tree that lives in the same file as the
// data it protects: the data area is [0, DataBlocks*DataBlockSize), the
// 512-byte superblock sits at HashOffset and the tree starts one hash block
// after it. The JSON field names are the interface to the image pipeline,
// the manifest and the guest init; do not rename them.
type Params struct {
	RootHash      string `json:"root_hash"`       // hex, 64 chars for sha256
	Salt          string `json:"salt"`            // hex, may be empty
	HashOffset    uint64 `json:"hash_offset"`     // bytes from the start of the file to the superblock
	DataBlocks    uint64 `json:"data_blocks"`     // number of data blocks covered
	DataBlockSize uint32 `json:"data_block_size"` // bytes
	HashBlockSize uint32 `json:"hash_block_size"` // bytes
	Algorithm     string `json:"algorithm"`       // "sha256"
	UUID          string `json:"uuid,omitempty"`  // superblock UUID, canonical 8-4-4-4-12 form
}

// HashStartBlock is the dm-verity table's <hash_start_block>: the tree's
// first block, in hash blocks, skipping the superblock. This is the one
// place it is computed: PID 1 and the agent build their device-mapper
// tables (devmapper.VerityTarget) from Params.
func (p Params) HashStartBlock() uint64 {
	return p.HashOffset/uint64(p.HashBlockSize) + 1
}

// Sectors is the length of the dm-verity target in 512-byte sectors.
func (p Params) Sectors() uint64 {
	return p.DataBlocks * uint64(p.DataBlockSize) / 512
}

// TreeSize is the number of bytes the superblock and the hash tree occupy
// from HashOffset on; the whole image is HashOffset+TreeSize() bytes.
func (p Params) TreeSize() uint64 {
	g := newGeometry(p.DataBlocks, int(p.HashBlockSize))
	return uint64(p.HashBlockSize) * (1 + g.total)
}

// Validate checks that p is complete and self-consistent.
func (p Params) Validate() error {
	if p.Algorithm != Algorithm {
		return fmt.Errorf("%w: algorithm %q: only %q is supported", ErrBadParams, p.Algorithm, Algorithm)
	}
	for _, bs := range []struct {
		name string
		v    uint32
	}{{"data_block_size", p.DataBlockSize}, {"hash_block_size", p.HashBlockSize}} {
		if bs.v < 512 || bs.v > 1<<20 || bs.v&(bs.v-1) != 0 {
			return fmt.Errorf("%w: %s %d: want a power of two from 512 to 1048576", ErrBadParams, bs.name, bs.v)
		}
	}
	if p.DataBlocks == 0 {
		return fmt.Errorf("%w: data_blocks is 0", ErrBadParams)
	}
	if p.HashOffset%uint64(p.HashBlockSize) != 0 {
		return fmt.Errorf("%w: hash_offset %d is not a multiple of hash_block_size %d", ErrBadParams, p.HashOffset, p.HashBlockSize)
	}
	if end := p.DataBlocks * uint64(p.DataBlockSize); end/uint64(p.DataBlockSize) != p.DataBlocks || end > p.HashOffset {
		return fmt.Errorf("%w: data area (%d blocks of %d bytes) overlaps hash_offset %d", ErrBadParams, p.DataBlocks, p.DataBlockSize, p.HashOffset)
	}
	root, err := hex.DecodeString(p.RootHash)
	if err != nil || len(root) != digestSize {
		return fmt.Errorf("%w: root_hash %q: want %d hex digits", ErrBadParams, p.RootHash, 2*digestSize)
	}
	if _, err := p.salt(); err != nil {
		return err
	}
	if p.UUID != "" {
		if _, err := parseUUID(p.UUID); err != nil {
			return err
		}
	}
	return nil
}

func (p Params) salt() ([]byte, error) {
	s, err := hex.DecodeString(p.Salt)
	if err != nil || len(s) > maxSaltSize {
		return nil, fmt.Errorf("%w: salt %q: want at most %d bytes as hex", ErrBadParams, p.Salt, maxSaltSize)
	}
	return s, nil
}
