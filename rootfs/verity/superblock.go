package verity

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// The on-disk superblock veritysetup writes at the hash offset (cryptsetup
// lib/verity, "struct verity_sb"), little-endian, 512 bytes:
//
//	0   signature[8]     "verity\0\0"
//	8   version u32      1
//	12  hash_type u32    1 = normal (salt prepended), 0 = Chrome OS
//	16  uuid[16]
//	32  algorithm[32]    NUL-padded name, "sha256"
//	64  data_block_size u32
//	68  hash_block_size u32
//	72  data_blocks u64
//	80  salt_size u16
//	82  pad[6]
//	88  salt[256]
//	344 pad[168]
const (
	sbSignature = "verity\x00\x00"
	sbVersion   = 1
	hashType    = 1
)

type superblock struct {
	uuid          [16]byte
	algorithm     string
	dataBlockSize uint32
	hashBlockSize uint32
	dataBlocks    uint64
	salt          []byte
}

func (s *superblock) marshal() []byte {
	b := make([]byte, SuperblockSize)
	copy(b[0:8], sbSignature)
	le := binary.LittleEndian
	le.PutUint32(b[8:], sbVersion)
	le.PutUint32(b[12:], hashType)
	copy(b[16:32], s.uuid[:])
	copy(b[32:64], s.algorithm)
	le.PutUint32(b[64:], s.dataBlockSize)
	le.PutUint32(b[68:], s.hashBlockSize)
	le.PutUint64(b[72:], s.dataBlocks)
	le.PutUint16(b[80:], uint16(len(s.salt)))
	copy(b[88:88+maxSaltSize], s.salt)
	return b
}

func parseSuperblock(b []byte) (*superblock, error) {
	if len(b) < SuperblockSize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrSuperblock, len(b), SuperblockSize)
	}
	if string(b[0:8]) != sbSignature {
		return nil, fmt.Errorf("%w: no \"verity\" signature (found %q)", ErrSuperblock, b[0:8])
	}
	le := binary.LittleEndian
	if v := le.Uint32(b[8:]); v != sbVersion {
		return nil, fmt.Errorf("%w: superblock version %d, want %d", ErrSuperblock, v, sbVersion)
	}
	if t := le.Uint32(b[12:]); t != hashType {
		return nil, fmt.Errorf("%w: hash type %d, want %d (normal)", ErrSuperblock, t, hashType)
	}
	s := &superblock{
		algorithm:     string(bytes.TrimRight(b[32:64], "\x00")),
		dataBlockSize: le.Uint32(b[64:]),
		hashBlockSize: le.Uint32(b[68:]),
		dataBlocks:    le.Uint64(b[72:]),
	}
	copy(s.uuid[:], b[16:32])
	n := int(le.Uint16(b[80:]))
	if n > maxSaltSize {
		return nil, fmt.Errorf("%w: salt size %d exceeds %d", ErrSuperblock, n, maxSaltSize)
	}
	s.salt = append([]byte(nil), b[88:88+n]...)
	return s, nil
}

// check compares the superblock with p and names the first field that
// differs.
func (s *superblock) check(p Params, salt []byte) error {
	mismatch := func(field string, got, want any) error {
		return fmt.Errorf("%w: %s is %v on disk, %v in the parameters", ErrSuperblock, field, got, want)
	}
	switch {
	case s.algorithm != p.Algorithm:
		return mismatch("algorithm", s.algorithm, p.Algorithm)
	case s.dataBlockSize != p.DataBlockSize:
		return mismatch("data_block_size", s.dataBlockSize, p.DataBlockSize)
	case s.hashBlockSize != p.HashBlockSize:
		return mismatch("hash_block_size", s.hashBlockSize, p.HashBlockSize)
	case s.dataBlocks != p.DataBlocks:
		return mismatch("data_blocks", s.dataBlocks, p.DataBlocks)
	case !bytes.Equal(s.salt, salt):
		return mismatch("salt", hex.EncodeToString(s.salt), p.Salt)
	}
	if p.UUID != "" {
		u, err := parseUUID(p.UUID)
		if err != nil {
			return err
		}
		if u != s.uuid {
			return mismatch("uuid", formatUUID(s.uuid), p.UUID)
		}
	}
	return nil
}

func formatUUID(u [16]byte) string {
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func parseUUID(s string) ([16]byte, error) {
	var u [16]byte
	h := strings.ReplaceAll(s, "-", "")
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 16 || len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, fmt.Errorf("%w: uuid %q: want the 8-4-4-4-12 hex form", ErrBadParams, s)
	}
	copy(u[:], b)
	return u, nil
}
