package agentv1

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
		{"every field", NewVerity(full), full},
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
