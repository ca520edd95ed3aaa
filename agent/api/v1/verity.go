package agentv1

import "confguest/rootfs/verity"

// The verity parameters travel as the Verity message; verity.Params is their one type on
// both sides (the image builder, the host, the agent and the device-mapper table).

// Defaults the Verity message documents for fields left empty.
const (
	defaultVerityBlockSize = 4096
	defaultVerityAlgorithm = "sha256"
)

// NewVerity is the message that carries p.
func NewVerity(p verity.Params) *Verity {
	return &Verity{
		RootHash: p.RootHash, Salt: p.Salt, HashOffset: p.HashOffset, DataBlocks: p.DataBlocks,
		DataBlockSize: p.DataBlockSize, HashBlockSize: p.HashBlockSize, HashAlgorithm: p.Algorithm,
	}
}

// Params are the parameters v carries, with the message's defaults applied: a zero block
// size is 4096, an empty algorithm sha256, and a salt of "-" none.
func (v *Verity) Params() verity.Params {
	p := verity.Params{
		RootHash: v.GetRootHash(), Salt: v.GetSalt(), HashOffset: v.GetHashOffset(), DataBlocks: v.GetDataBlocks(),
		DataBlockSize: v.GetDataBlockSize(), HashBlockSize: v.GetHashBlockSize(), Algorithm: v.GetHashAlgorithm(),
	}
	if p.Salt == "-" {
		p.Salt = ""
	}
	if p.DataBlockSize == 0 {
		p.DataBlockSize = defaultVerityBlockSize
	}
	if p.HashBlockSize == 0 {
		p.HashBlockSize = defaultVerityBlockSize
	}
	if p.Algorithm == "" {
		p.Algorithm = defaultVerityAlgorithm
	}
	return p
}
