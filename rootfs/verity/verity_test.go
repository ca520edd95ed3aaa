package verity

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestGeometry(t *testing.T) {
	// Expected shapes follow the kernel's rule (dm-verity-target.c): 128
	// sha256 digests per 4096-byte hash block; the fewest levels that
	// cover every data block; top level stored first.
	tests := []struct {
		data   uint64
		blocks []uint64
		start  []uint64
	}{
		{1, []uint64{}, []uint64{}},
		{2, []uint64{1}, []uint64{0}},
		{128, []uint64{1}, []uint64{0}},
		{129, []uint64{2, 1}, []uint64{1, 0}},
		{128 * 128, []uint64{128, 1}, []uint64{1, 0}},
		{128*128 + 1, []uint64{129, 2, 1}, []uint64{3, 1, 0}},
		{262144, []uint64{2048, 16, 1}, []uint64{17, 1, 0}},
	}
	for _, tc := range tests {
		g := newGeometry(tc.data, BlockSize)
		var total uint64
		for _, b := range tc.blocks {
			total += b
		}
		if g.levels != len(tc.blocks) || !reflect.DeepEqual(append([]uint64{}, g.blocks...), tc.blocks) ||
			!reflect.DeepEqual(append([]uint64{}, g.start...), tc.start) || g.total != total {
			t.Errorf("newGeometry(%d) = levels %d blocks %v start %v total %d, want levels %d blocks %v start %v total %d",
				tc.data, g.levels, g.blocks, g.start, g.total, len(tc.blocks), tc.blocks, tc.start, total)
		}
	}
}

func TestParamsValidate(t *testing.T) {
	good := Params{
		RootHash: strings.Repeat("ab", 32), Salt: "0011", HashOffset: 8192, DataBlocks: 2,
		DataBlockSize: 4096, HashBlockSize: 4096, Algorithm: "sha256", UUID: "01234567-89ab-8def-8123-456789abcdef",
	}
	tests := []struct {
		name   string
		change func(*Params)
		ok     bool
	}{
		{"good", func(*Params) {}, true},
		{"no uuid", func(p *Params) { p.UUID = "" }, true},
		{"no salt", func(p *Params) { p.Salt = "" }, true},
		{"sha1", func(p *Params) { p.Algorithm = "sha1" }, false},
		{"block size 3000", func(p *Params) { p.DataBlockSize = 3000 }, false},
		{"hash block size 256", func(p *Params) { p.HashBlockSize = 256 }, false},
		{"zero blocks", func(p *Params) { p.DataBlocks = 0 }, false},
		{"offset inside data", func(p *Params) { p.HashOffset = 4096 }, false},
		{"unaligned offset", func(p *Params) { p.HashOffset = 8193 }, false},
		{"short root", func(p *Params) { p.RootHash = "abcd" }, false},
		{"bad salt hex", func(p *Params) { p.Salt = "xyz" }, false},
		{"long salt", func(p *Params) { p.Salt = strings.Repeat("00", 257) }, false},
		{"bad uuid", func(p *Params) { p.UUID = "0123456789ab8def8123456789abcdef" }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := good
			tc.change(&p)
			err := p.Validate()
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrBadParams)) {
				t.Errorf("%+v.Validate() = %v, want ok=%v or ErrBadParams", p, err, tc.ok)
			}
		})
	}
}

func TestTableGeometry(t *testing.T) {
	p := Params{RootHash: "aa", Salt: "", HashOffset: 40960, DataBlocks: 10, DataBlockSize: 4096, HashBlockSize: 4096, Algorithm: "sha256"}
	if got := p.HashStartBlock(); got != 11 {
		t.Errorf("HashStartBlock() = %d, want 11", got)
	}
	if got := p.Sectors(); got != 80 {
		t.Errorf("Sectors() = %d, want 80", got)
	}
}

func TestSuperblockRoundTrip(t *testing.T) {
	in := superblock{uuid: [16]byte{1, 2, 3}, algorithm: "sha256", dataBlockSize: 4096, hashBlockSize: 512, dataBlocks: 1 << 40, salt: []byte{9, 8, 7}}
	b := in.marshal()
	if len(b) != SuperblockSize || string(b[:8]) != "verity\x00\x00" {
		t.Fatalf("marshal() = %d bytes starting %q, want 512 starting \"verity\\0\\0\"", len(b), b[:8])
	}
	out, err := parseSuperblock(b)
	if err != nil || !reflect.DeepEqual(*out, in) {
		t.Errorf("parseSuperblock(marshal(%+v)) = %+v, %v", in, out, err)
	}
	b[12] = 0 // hash type 0 (Chrome OS)
	if _, err := parseSuperblock(b); !errors.Is(err, ErrSuperblock) {
		t.Errorf("parseSuperblock(hash type 0) = %v, want ErrSuperblock", err)
	}
}

// writeRandom writes n pseudo-random bytes (fixed seed) to a new file.
func writeRandom(t *testing.T, name string, n int, seed uint64) string {
	t.Helper()
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFormatDeterministic(t *testing.T) {
	ctx := context.Background()
	a := writeRandom(t, "a", 5*BlockSize+17, 7)
	b := writeRandom(t, "b", 5*BlockSize+17, 7)
	pa, err := Format(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := Format(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	ba, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if pa != pb || !bytes.Equal(ba, bb) {
		t.Errorf("Format of equal data: params %+v vs %+v, files equal %v; want identical", pa, pb, bytes.Equal(ba, bb))
	}
	if pa.HashOffset != 6*BlockSize || pa.DataBlocks != 6 || uint64(len(ba)) != pa.HashOffset+pa.TreeSize() {
		t.Errorf("Format(%d bytes) = offset %d blocks %d file %d bytes, want offset %d, 6 blocks, file %d bytes",
			5*BlockSize+17, pa.HashOffset, pa.DataBlocks, len(ba), 6*BlockSize, pa.HashOffset+pa.TreeSize())
	}
	if salt, _ := DeriveSalt(ctx, bytes.NewReader(ba), int64(pa.HashOffset)); hex.EncodeToString(salt) != pa.Salt {
		t.Errorf("salt = %s, want DeriveSalt(data) = %x", pa.Salt, salt)
	}
	if err := Verify(ctx, a, pa); err != nil {
		t.Errorf("Verify(fresh image) = %v, want nil", err)
	}
}

func TestFormatRejects(t *testing.T) {
	ctx := context.Background()
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, nil, 0o644)
	if _, err := Format(ctx, empty); !errors.Is(err, ErrEmpty) {
		t.Errorf("Format(empty file) = %v, want ErrEmpty", err)
	}
	if _, err := Format(ctx, t.TempDir()); !errors.Is(err, ErrBadParams) {
		t.Errorf("Format(directory) = %v, want ErrBadParams", err)
	}
	if _, err := Format(ctx, filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Format(missing) = %v, want ErrNotExist", err)
	}
	f := writeRandom(t, "f", 100, 1)
	if _, err := Format(ctx, f, WithSalt(make([]byte, 257))); !errors.Is(err, ErrBadParams) {
		t.Errorf("Format(salt of 257 bytes) = %v, want ErrBadParams", err)
	}
	if fi, _ := os.Stat(f); fi.Size() != 100 {
		t.Errorf("after a failed Format the file has %d bytes, want 100 (untouched)", fi.Size())
	}
}
