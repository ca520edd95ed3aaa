package agentv1

import (
	"confguest/agent/api/v1/wire"
	"confguest/rootfs/verity"
)

// The verity parameters travel as the Verity message; verity.Params is their one type on
// both sides (the image builder, the host, the agent and the device-mapper table). The
// defaults and the one layer format are the agent's (wire); Params and CheckLayerFormat
// here convert the message and apply them.

// LayerFSType is the filesystem of every layer image.
const LayerFSType = wire.LayerFSType

// NewVerity is the message that carries p.
func NewVerity(p verity.Params) *Verity {
	return &Verity{
		RootHash: p.RootHash, Salt: p.Salt, HashOffset: p.HashOffset, DataBlocks: p.DataBlocks,
		DataBlockSize: p.DataBlockSize, HashBlockSize: p.HashBlockSize, HashAlgorithm: p.Algorithm,
	}
}

// Params are the parameters v carries, with the message's defaults applied, as the
// agent's (*wire.Verity).Params applies them.
func (v *Verity) Params() verity.Params { return v.toWire().Params() }

// CheckLayerFormat refuses a block rootfs that is not the one layer format, as the
// agent's (*wire.BlockRootfs).CheckLayerFormat does: it returns the offending request
// field and why ("" and "" when the format is the one).
func (b *BlockRootfs) CheckLayerFormat() (field, reason string) {
	w := &wire.BlockRootfs{Serial: b.GetSerial(), Path: b.GetPath(), Verity: b.GetVerity().toWire(), FsType: b.GetFsType()}
	return w.CheckLayerFormat()
}

// toWire is v as the agent's type (nil for nil).
func (v *Verity) toWire() *wire.Verity {
	if v == nil {
		return nil
	}
	return &wire.Verity{
		RootHash: v.RootHash, Salt: v.Salt, HashOffset: v.HashOffset, DataBlocks: v.DataBlocks,
		DataBlockSize: v.DataBlockSize, HashBlockSize: v.HashBlockSize, HashAlgorithm: v.HashAlgorithm,
	}
}
