package devmapper

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
)

func TestVerityParams(t *testing.T) {
	root := bytes.Repeat([]byte{0xab}, 32)
	salt := []byte{0x01, 0x02, 0xff}
	tests := []struct {
		name    string
		target  VerityTarget
		want    string
		sectors uint64
	}{
		{
			name:    "appended tree with salt",
			target:  VerityTarget{DataDevice: "/dev/vda", DataBlocks: 1000, HashStartBlock: 1001, RootHash: root, Salt: salt},
			want:    "1 /dev/vda /dev/vda 4096 4096 1000 1001 sha256 " + strings.Repeat("ab", 32) + " 0102ff",
			sectors: 8000,
		},
		{
			name:    "separate hash device without salt",
			target:  VerityTarget{DataDevice: "/dev/vdb", HashDevice: "/dev/vdc", DataBlocks: 3, RootHash: root},
			want:    "1 /dev/vdb /dev/vdc 4096 4096 3 0 sha256 " + strings.Repeat("ab", 32) + " -",
			sectors: 24,
		},
		{
			name: "other sizes, sha1, panic on corruption",
			target: VerityTarget{DataDevice: "254:1", DataBlocks: 7, DataBlockSize: 1024, HashBlockSize: 512,
				HashStartBlock: 15, Algorithm: "sha1", RootHash: root[:20], OnCorruption: CorruptionPanic},
			want:    "1 254:1 254:1 1024 512 7 15 sha1 " + strings.Repeat("ab", 20) + " - 1 panic_on_corruption",
			sectors: 14,
		},
		{
			name: "restart on corruption, verify in tasklet",
			target: VerityTarget{DataDevice: "/dev/vda", DataBlocks: 2, RootHash: root, OnCorruption: CorruptionRestart,
				TryVerifyInTasklet: true},
			want:    "1 /dev/vda /dev/vda 4096 4096 2 0 sha256 " + strings.Repeat("ab", 32) + " - 2 restart_on_corruption try_verify_in_tasklet",
			sectors: 16,
		},
		{
			name:    "verify in tasklet only",
			target:  VerityTarget{DataDevice: "/dev/vda", DataBlocks: 1, RootHash: root, TryVerifyInTasklet: true},
			want:    "1 /dev/vda /dev/vda 4096 4096 1 0 sha256 " + strings.Repeat("ab", 32) + " - 1 try_verify_in_tasklet",
			sectors: 8,
		},
		{
			name:    "restart on corruption",
			target:  VerityTarget{DataDevice: "/dev/vda", DataBlocks: 1, RootHash: root, OnCorruption: CorruptionRestart},
			want:    "1 /dev/vda /dev/vda 4096 4096 1 0 sha256 " + strings.Repeat("ab", 32) + " - 1 restart_on_corruption",
			sectors: 8,
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
	root := bytes.Repeat([]byte{1}, 32)
	good := VerityTarget{DataDevice: "/dev/vda", DataBlocks: 10, RootHash: root}
	tests := []struct {
		name   string
		modify func(*VerityTarget)
		want   string // substring of the error
	}{
		{"no device", func(v *VerityTarget) { v.DataDevice = "" }, "data device is empty"},
		{"space in device", func(v *VerityTarget) { v.DataDevice = "/dev/vda 1" }, "whitespace"},
		{"zero blocks", func(v *VerityTarget) { v.DataBlocks = 0 }, "data blocks is 0"},
		{"huge blocks", func(v *VerityTarget) { v.DataBlocks = 1 << 62 }, "overflow"},
		{"odd data block size", func(v *VerityTarget) { v.DataBlockSize = 3000 }, "data block size 3000"},
		{"tiny hash block size", func(v *VerityTarget) { v.HashBlockSize = 256 }, "hash block size 256"},
		{"no root hash", func(v *VerityTarget) { v.RootHash = nil }, "root hash is empty"},
		{"short root hash", func(v *VerityTarget) { v.RootHash = root[:31] }, "root hash is 31 bytes, want 32"},
		{"long salt", func(v *VerityTarget) { v.Salt = make([]byte, 257) }, "salt is 257 bytes"},
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
