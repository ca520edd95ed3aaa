package agentv1

import (
	"confguest/agent/api/v1/wire"
	"confguest/rootfs/verity"
)

// The verity parameters travel as the Verity message; verity.Params is their one type on
// both sides (the image builder, the host, the agent and the device-mapper table). The
// defaults and the one layer format are the agent's: (*wire.Verity).Params and
// (*wire.BlockRootfs).CheckLayerFormat.

// LayerFSType is the filesystem of every layer image.
const LayerFSType = wire.LayerFSType

// NewVerity is the message that carries p.
func NewVerity(p verity.Params) *Verity {
	return &Verity{
		RootHash: p.RootHash, Salt: p.Salt, HashOffset: p.HashOffset, DataBlocks: p.DataBlocks,
		DataBlockSize: p.DataBlockSize, HashBlockSize: p.HashBlockSize, HashAlgorithm: p.Algorithm,
	}
}
