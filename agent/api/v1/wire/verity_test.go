package wire

import (
	"strings"
	"testing"

	"confguest/rootfs/verity"
)

func TestVerityRoundTrip(t *testing.T) {
	full := verity.Params{RootHash: strings.Repeat("ab", 32), Salt: "00ff", HashOffset: 8192, DataBlocks: 2,
		DataBlockSize: 1024, HashBlockSize: 512, Algorithm: "sha512"}
	tests := []struct {
		name string
		msg  *Verity
		want verity.Params
	}{
		{"every field", &Verity{RootHash: full.RootHash, Salt: full.Salt, HashOffset: full.HashOffset, DataBlocks: full.DataBlocks,
			DataBlockSize: full.DataBlockSize, HashBlockSize: full.HashBlockSize, HashAlgorithm: full.Algorithm}, full},
		{"defaults", &Verity{RootHash: full.RootHash, Salt: "-", HashOffset: 8192, DataBlocks: 2},
			verity.Params{RootHash: full.RootHash, HashOffset: 8192, DataBlocks: 2, DataBlockSize: 4096, HashBlockSize: 4096, Algorithm: "sha256"}},
		{"nil message", nil, verity.Params{DataBlockSize: 4096, HashBlockSize: 4096, Algorithm: "sha256"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.msg.Params(); got != tc.want {
				t.Errorf("%v.Params() = %+v, want %+v", tc.msg, got, tc.want)
			}
		})
	}
}

// TestCheckLayerFormat refuses every layer parameter a hostile host could
// choose other than the one format, naming the request field.
func TestCheckLayerFormat(t *testing.T) {
	root := strings.Repeat("ab", 32)
	good := func(mod func(*BlockRootfs)) *BlockRootfs {
		b := &BlockRootfs{Serial: "c0", Verity: &Verity{RootHash: root, Salt: "00ff", HashOffset: 3 * 4096, DataBlocks: 3}}
		if mod != nil {
			mod(b)
		}
		return b
	}
	tests := []struct {
		name      string
		b         *BlockRootfs
		wantField string
	}{
		{"the image builder's format", good(nil), ""},
		{"explicit defaults", good(func(b *BlockRootfs) {
			b.FsType, b.Verity.HashAlgorithm, b.Verity.DataBlockSize, b.Verity.HashBlockSize = "erofs", "sha256", 4096, 4096
		}), ""},
		{"ext4", good(func(b *BlockRootfs) { b.FsType = "ext4" }), "rootfs.block.fs_type"},
		{"squashfs", good(func(b *BlockRootfs) { b.FsType = "squashfs" }), "rootfs.block.fs_type"},
		{"no verity", good(func(b *BlockRootfs) { b.Verity = nil }), "rootfs.block.verity"},
		{"sha1", good(func(b *BlockRootfs) { b.Verity.HashAlgorithm = "sha1" }), "rootfs.block.verity.hash_algorithm"},
		{"512-byte data blocks", good(func(b *BlockRootfs) { b.Verity.DataBlockSize = 512 }), "rootfs.block.verity.data_block_size"},
		{"1 MiB hash blocks", good(func(b *BlockRootfs) { b.Verity.HashBlockSize = 1 << 20 }), "rootfs.block.verity.hash_block_size"},
		{"no data blocks", good(func(b *BlockRootfs) { b.Verity.DataBlocks = 0 }), "rootfs.block.verity.data_blocks"},
		{"tree elsewhere", good(func(b *BlockRootfs) { b.Verity.HashOffset = 16 * 4096 }), "rootfs.block.verity.hash_offset"},
		{"tree inside the data", good(func(b *BlockRootfs) { b.Verity.HashOffset = 4096 }), "rootfs.block.verity.hash_offset"},
		{"data blocks overflowing", good(func(b *BlockRootfs) { b.Verity.DataBlocks = 1 << 61 }), "rootfs.block.verity.hash_offset"},
		{"short root hash", good(func(b *BlockRootfs) { b.Verity.RootHash = "abcd" }), "rootfs.block.verity"},
		{"salt not hex", good(func(b *BlockRootfs) { b.Verity.Salt = "xyz" }), "rootfs.block.verity"},
	}
	for _, tc := range tests {
		if field, why := tc.b.CheckLayerFormat(); field != tc.wantField || (field != "" && why == "") {
			t.Errorf("CheckLayerFormat(%s) = %q, %q, want field %q", tc.name, field, why, tc.wantField)
		}
	}
}
