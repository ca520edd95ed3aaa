package agentv1

import (
	"strings"
	"testing"

	"confguest/agent/api/v1/wire"
	"confguest/agent/api/v1/wiretest"
	"confguest/rootfs/verity"
)

// asAgent is b as the agent decodes it.
func asAgent(t *testing.T, b *BlockRootfs) *wire.BlockRootfs {
	t.Helper()
	if b == nil {
		return nil
	}
	w, err := wiretest.Convert(b)
	if err != nil {
		t.Fatal(err)
	}
	return w.(*wire.BlockRootfs)
}

// TestVerity checks the host's message against the agent's reading of it: NewVerity's
// message, encoded and decoded, gives back its parameters and keeps every field
// (wire/verity_test.go tests the defaults and the layer format themselves).
func TestVerity(t *testing.T) {
	full := verity.Params{RootHash: strings.Repeat("ab", 32), Salt: "00ff", HashOffset: 8192, DataBlocks: 2,
		DataBlockSize: 1024, HashBlockSize: 512, Algorithm: "sha512"}
	if got := asAgent(t, &BlockRootfs{Verity: NewVerity(full)}).GetVerity().Params(); got != full {
		t.Errorf("NewVerity(%+v).Params() = %+v, want it back", full, got)
	}
	layer := verity.Params{RootHash: full.RootHash, Salt: "00ff", HashOffset: 3 * 4096, DataBlocks: 3,
		DataBlockSize: 4096, HashBlockSize: 4096, Algorithm: "sha256"}
	tests := []struct {
		name      string
		b         *BlockRootfs
		wantField string
	}{
		{"a layer", &BlockRootfs{Serial: "c0", Verity: NewVerity(layer)}, ""},
		{"a layer of another filesystem", &BlockRootfs{Serial: "c0", FsType: "ext4", Verity: NewVerity(layer)}, "rootfs.block.fs_type"},
		{"no verity", &BlockRootfs{Serial: "c0"}, "rootfs.block.verity"},
		{"another algorithm", &BlockRootfs{Serial: "c0", Verity: NewVerity(full)}, "rootfs.block.verity.hash_algorithm"},
		{"nil", nil, "rootfs.block.verity"},
	}
	for _, tc := range tests {
		if field, _ := asAgent(t, tc.b).CheckLayerFormat(); field != tc.wantField {
			t.Errorf("CheckLayerFormat(%s) = %q, want %q", tc.name, field, tc.wantField)
		}
	}
}
