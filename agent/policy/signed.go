package policy

import (
	"fmt"
	"strings"

	"confguest/agent/api/imagesig"
	agentv1 "confguest/agent/api/v1/wire"
)

// checkSigned admits the block rootfs b under entry c when c pins its rootfs by signer
// (rootfs.signed): envelope must verify with one of the entry's keys (imagesig.Verify reads
// nothing else of it before), its subject must match the entry's image, and the disk it
// signs must be exactly b: filesystem and every dm-verity parameter. An entry that pins
// layers by root hash or a guest directory needs no envelope (nil).
func checkSigned(c *Container, b *agentv1.BlockRootfs, envelope []byte) *Denial {
	s := c.Rootfs.Signed
	if s == nil {
		return nil
	}
	rule := "containers[" + c.Name + "].rootfs.signed"
	if len(envelope) == 0 {
		return deny(rule, "rootfs_attestation", "missing: this entry admits only an image whose disk a trusted key signed "+
			"(confguest run --signed ENVELOPE, or an image with a cosign attestation of type "+imagesig.PredicateType+")")
	}
	v, err := imagesig.Verify(envelope, s.PublicKeys())
	if err != nil {
		return deny(rule, "rootfs_attestation", err.Error())
	}
	if !s.Image.Matches(v.Name) {
		return deny(rule+".image", "rootfs_attestation", fmt.Sprintf("the statement is about image %s, which the entry's image does not match", v.Name))
	}
	if field, what := diskMismatch(v.Predicate.Rootfs, b); field != "" {
		return deny(rule, field, fmt.Sprintf("%s is not the one signed for %s@%s: the disk was changed after signing, or the statement is for another image",
			what, v.Name, v.Digest))
	}
	return nil
}

// diskMismatch returns the first request field of b whose value differs from the signed
// disk, and what it is ("" when b is exactly the signed disk). b passed CheckLayerFormat.
func diskMismatch(signed imagesig.Disk, b *agentv1.BlockRootfs) (field, what string) {
	fs := b.GetFsType()
	if fs == "" {
		fs = agentv1.LayerFSType
	}
	got, want := b.GetVerity().Params(), signed.Verity
	const v = "rootfs.block.verity."
	switch {
	case fs != signed.FSType:
		return "rootfs.block.fs_type", "the filesystem"
	case !strings.EqualFold(got.RootHash, want.RootHash):
		return v + "root_hash", "the root hash"
	case !strings.EqualFold(got.Salt, want.Salt):
		return v + "salt", "the salt"
	case got.DataBlocks != want.DataBlocks:
		return v + "data_blocks", "the number of data blocks"
	case got.HashOffset != want.HashOffset:
		return v + "hash_offset", "the hash offset"
	case got.DataBlockSize != want.DataBlockSize:
		return v + "data_block_size", "the data block size"
	case got.HashBlockSize != want.HashBlockSize:
		return v + "hash_block_size", "the hash block size"
	case got.Algorithm != want.Algorithm:
		return v + "hash_algorithm", "the hash algorithm"
	}
	return "", ""
}
