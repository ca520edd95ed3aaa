package devmapper

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"confguest/rootfs/verity"
)

// params are verity parameters with 4096-byte blocks, SHA-256 and root hash root.
func params(root string, dataBlocks, hashOffset uint64) verity.Params {
	return verity.Params{RootHash: root, DataBlocks: dataBlocks, HashOffset: hashOffset,
		DataBlockSize: 4096, HashBlockSize: 4096, Algorithm: "sha256"}
}

func TestVerityParams(t *testing.T) {
	root := strings.Repeat("ab", 32)
	salted := params(root, 1000, 1000*4096)
	salted.Salt = "0102ff"
	other := verity.Params{DataBlocks: 7, DataBlockSize: 1024, HashBlockSize: 512, HashOffset: 14 * 512,
		Algorithm: "sha1", RootHash: strings.Repeat("ab", 20)}
	tests := []struct {
		name    string
		target  VerityTarget
		want    string
		sectors uint64
	}{
		{
			name:    "appended tree with salt",
			target:  VerityTarget{DataDevice: "/dev/vda", Verity: salted},
			want:    "1 /dev/vda /dev/vda 4096 4096 1000 1001 sha256 " + root + " 0102ff",
			sectors: 8000,
		},
		{
			name:    "without salt",
			target:  VerityTarget{DataDevice: "/dev/vdb", Verity: params(root, 3, 3*4096)},
			want:    "1 /dev/vdb /dev/vdb 4096 4096 3 4 sha256 " + root + " -",
			sectors: 24,
		},
		{
			name:    "other sizes, sha1, panic on corruption",
			target:  VerityTarget{DataDevice: "254:1", Verity: other, OnCorruption: CorruptionPanic},
			want:    "1 254:1 254:1 1024 512 7 15 sha1 " + strings.Repeat("ab", 20) + " - 1 panic_on_corruption",
			sectors: 14,
		},
		{
			name: "restart on corruption, verify in tasklet",
			target: VerityTarget{DataDevice: "/dev/vda", Verity: params(root, 2, 2*4096), OnCorruption: CorruptionRestart,
				TryVerifyInTasklet: true},
			want:    "1 /dev/vda /dev/vda 4096 4096 2 3 sha256 " + root + " - 2 restart_on_corruption try_verify_in_tasklet",
			sectors: 16,
		},
		{
			name:    "verify in tasklet only",
			target:  VerityTarget{DataDevice: "/dev/vda", Verity: params(root, 1, 4096), TryVerifyInTasklet: true},
			want:    "1 /dev/vda /dev/vda 4096 4096 1 2 sha256 " + root + " - 1 try_verify_in_tasklet",
			sectors: 8,
		},
		{
			name:    "restart on corruption",
			target:  VerityTarget{DataDevice: "/dev/vda", Verity: params(root, 1, 4096), OnCorruption: CorruptionRestart},
			want:    "1 /dev/vda /dev/vda 4096 4096 1 2 sha256 " + root + " - 1 restart_on_corruption",
			sectors: 8,
		},
		{
			// The image builder's parameters (verity.Params JSON) make the table as is.
			name:    "image builder's parameters",
			target:  VerityTarget{DataDevice: "/dev/vda", Verity: params(root, 10, 40960)},
			want:    "1 /dev/vda /dev/vda 4096 4096 10 11 sha256 " + root + " -",
			sectors: 80,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.target.Params()
			if err != nil || got != tc.want {
				t.Errorf("Params() = %q, %v, want %q, nil", got, err, tc.want)
			}
			if got := tc.target.Sectors(); got != tc.sectors {
				t.Errorf("Sectors() = %d, want %d", got, tc.sectors)
			}
			tg, err := tc.target.Target()
			if err != nil {
				t.Fatalf("Target() error %v", err)
			}
			if want := "0 " + strconv.FormatUint(tc.sectors, 10) + " verity " + tc.want; tg.String() != want {
				t.Errorf("Target().String() = %q, want %q", tg.String(), want)
			}
		})
	}
}

func TestVerityValidate(t *testing.T) {
	root := strings.Repeat("01", 32)
	good := VerityTarget{DataDevice: "/dev/vda", Verity: params(root, 10, 10*4096)}
	tests := []struct {
		name   string
		modify func(*VerityTarget)
		want   string // substring of the error
	}{
		{"no device", func(v *VerityTarget) { v.DataDevice = "" }, "data device is empty"},
		{"space in device", func(v *VerityTarget) { v.DataDevice = "/dev/vda 1" }, "whitespace"},
		{"zero blocks", func(v *VerityTarget) { v.Verity.DataBlocks = 0 }, "data blocks is 0"},
		{"huge blocks", func(v *VerityTarget) { v.Verity.DataBlocks = 1 << 62 }, "overflow"},
		{"odd data block size", func(v *VerityTarget) { v.Verity.DataBlockSize = 3000 }, "data block size 3000"},
		{"tiny hash block size", func(v *VerityTarget) { v.Verity.HashBlockSize = 256 }, "hash block size 256"},
		{"no hash block size", func(v *VerityTarget) { v.Verity.HashBlockSize = 0 }, "hash block size 0"},
		{"no algorithm", func(v *VerityTarget) { v.Verity.Algorithm = "" }, "algorithm is empty"},
		{"no root hash", func(v *VerityTarget) { v.Verity.RootHash = "" }, "root hash is empty"},
		{"root hash not hex", func(v *VerityTarget) { v.Verity.RootHash = "xy" }, "not hex"},
		{"short root hash", func(v *VerityTarget) { v.Verity.RootHash = root[:62] }, "root hash is 31 bytes, want 32"},
		{"salt not hex", func(v *VerityTarget) { v.Verity.Salt = "-" }, "salt \"-\" is not hex"},
		{"long salt", func(v *VerityTarget) { v.Verity.Salt = strings.Repeat("00", 257) }, "salt is 257 bytes"},
		{"bad corruption mode", func(v *VerityTarget) { v.OnCorruption = 9 }, "OnCorruption(9)"},
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(%+v) = %v, want nil", good, err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := good
			tc.modify(&v)
			err := v.Validate()
			if !errors.Is(err, ErrInvalidTarget) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want ErrInvalidTarget containing %q", err, tc.want)
			}
			if _, perr := v.Params(); perr == nil {
				t.Errorf("Params() accepted an invalid target")
			}
		})
	}
}
