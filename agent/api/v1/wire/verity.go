package wire

import "confguest/rootfs/verity"

// The verity parameters travel as the Verity message; verity.Params is their one type on
// both sides (the image builder, the host, the agent and the device-mapper table). The
// host builds the message with agentv1.NewVerity.

// Defaults the Verity message documents for fields left empty.
const (
	defaultVerityBlockSize = 4096
	defaultVerityAlgorithm = "sha256"
)

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

// Layer images have one format, whatever a request says: erofs, with its dm-verity hash
// tree (SHA-256, 4096-byte data and hash blocks) right after the data, as the image
// builder writes it. The root hash the policy pins then binds everything else: the salt is
// hashed into every node, and data_blocks fixes where the tree starts.
const (
	LayerFSType    = "erofs"
	layerBlockSize = 4096
)

// CheckLayerFormat refuses a block rootfs whose verity parameters or filesystem are not
// the one layer format (LayerFSType, SHA-256, 4096-byte blocks, tree after the data). It
// returns the offending request field and why ("" and "" when the format is the one).
func (b *BlockRootfs) CheckLayerFormat() (field, reason string) {
	if fs := b.GetFsType(); fs != "" && fs != LayerFSType {
		return "rootfs.block.fs_type", "layers are " + LayerFSType + " images: no other filesystem is mounted"
	}
	if b.GetVerity() == nil {
		return "rootfs.block.verity", "missing: a layer needs its verity parameters"
	}
	p := b.GetVerity().Params()
	switch {
	case p.Algorithm != defaultVerityAlgorithm:
		return "rootfs.block.verity.hash_algorithm", "layers are verified with " + defaultVerityAlgorithm + " only"
	case p.DataBlockSize != layerBlockSize:
		return "rootfs.block.verity.data_block_size", "layers have 4096-byte data blocks"
	case p.HashBlockSize != layerBlockSize:
		return "rootfs.block.verity.hash_block_size", "layers have 4096-byte hash blocks"
	case p.DataBlocks == 0:
		return "rootfs.block.verity.data_blocks", "must be positive"
	case p.DataBlocks > ^uint64(0)/layerBlockSize || p.HashOffset != p.DataBlocks*layerBlockSize:
		return "rootfs.block.verity.hash_offset", "the hash tree starts right after the data (data_blocks × 4096)"
	}
	if err := p.Validate(); err != nil {
		return "rootfs.block.verity", err.Error()
	}
	return "", ""
}
