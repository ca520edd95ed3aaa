package verity

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// needTool returns the path of a tool the test cross-checks against. Under
// CI=true a missing tool fails the test; elsewhere the test is skipped.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found: install the Debian package %s", name, pkg)
		}
		t.Skipf("%s not found (Debian package %s); skipping the cross-check", name, pkg)
	}
	return p
}

func veritysetup(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(needTool(t, "veritysetup", "cryptsetup-bin"), args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("veritysetup %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// dumpField extracts "Name: value" from veritysetup output.
func dumpField(out, name string) string {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `:\s*(\S+)`).FindStringSubmatch(out)
	if m == nil {
		return ""
	}
	return m[1]
}

func TestMatchesVeritysetup(t *testing.T) {
	needTool(t, "veritysetup", "cryptsetup-bin")
	ctx := context.Background()
	tests := []struct {
		name string
		size int
		opts []Option
	}{
		{"one block, 32-byte salt", BlockSize, []Option{WithSalt(bytes.Repeat([]byte{0x5a}, 32))}},
		{"two blocks, no salt", 2 * BlockSize, []Option{WithSalt(nil)}},
		{"partial last block, derived salt", 10*BlockSize + 100, nil},
		{"two levels, odd salt", 300 * BlockSize, []Option{WithSalt([]byte{1, 2, 3})}},
		{"three levels", (128*128 + 1) * BlockSize, []Option{WithUUID("12345678-9abc-4def-8123-456789abcdef")}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ours := writeRandom(t, "ours", tc.size, uint64(i))
			theirs := writeRandom(t, "theirs", tc.size, uint64(i))
			p, err := Format(ctx, ours, tc.opts...)
			if err != nil {
				t.Fatalf("Format(%s) = %v", tc.name, err)
			}
			// veritysetup formats the same (padded) data with our salt and UUID.
			if err := os.Truncate(theirs, int64(p.HashOffset)); err != nil {
				t.Fatal(err)
			}
			salt := p.Salt
			if salt == "" {
				salt = "-"
			}
			off := fmt.Sprintf("--hash-offset=%d", p.HashOffset)
			out, err := veritysetup(t, "format", off, fmt.Sprintf("--data-blocks=%d", p.DataBlocks),
				"--salt="+salt, "--uuid="+p.UUID, theirs, theirs)
			if err != nil {
				t.Fatal(err)
			}
			if got := dumpField(out, "Root hash"); got != p.RootHash {
				t.Errorf("veritysetup format root hash = %s, Format = %s", got, p.RootHash)
			}
			a, _ := os.ReadFile(ours)
			b, _ := os.ReadFile(theirs)
			if !bytes.Equal(a, b) {
				t.Errorf("Format wrote %d bytes, veritysetup %d; first difference at offset %d", len(a), len(b), firstDiff(a, b))
			}
			if _, err := veritysetup(t, "verify", off, ours, ours, p.RootHash); err != nil {
				t.Errorf("veritysetup verify rejects our image: %v", err)
			}
			dump, err := veritysetup(t, "dump", off, ours)
			if err != nil {
				t.Fatal(err)
			}
			for field, want := range map[string]string{
				"UUID": p.UUID, "Hash type": "1", "Data blocks": fmt.Sprint(p.DataBlocks),
				"Data block size": "4096", "Hash block size": "4096", "Hash algorithm": "sha256", "Salt": salt,
				"Hash blocks": fmt.Sprint(p.TreeSize()/BlockSize - 1),
			} {
				if got := dumpField(dump, field); got != want {
					t.Errorf("veritysetup dump %s = %q, want %q", field, got, want)
				}
			}
			if err := Verify(ctx, theirs, p); err != nil {
				t.Errorf("Verify(veritysetup's image) = %v, want nil", err)
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestVerifyNamesFirstBadBlock(t *testing.T) {
	ctx := context.Background()
	// 300 data blocks: level 0 has 3 hash blocks, level 1 (the top) one.
	// On disk: data, superblock block, level 1 block, level 0 blocks.
	const n = 300
	orig := writeRandom(t, "img", n*BlockSize, 42)
	p, err := Format(ctx, orig, WithSalt([]byte("salt")))
	if err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(orig)
	tree := int64(p.HashOffset) + BlockSize
	flip := func(off int64) func([]byte) []byte {
		return func(b []byte) []byte { b[off] ^= 0x40; return b }
	}
	tests := []struct {
		name    string
		corrupt func([]byte) []byte
		params  func(*Params)
		want    error
		msg     string
		tool    bool // veritysetup verify must reject it too
	}{
		{"data block 0", flip(0), nil, ErrDataBlock, "data block 0 ", true},
		{"data block 7", flip(7*BlockSize + 123), nil, ErrDataBlock, "data block 7 ", true},
		{"last data block", flip(n*BlockSize - 1), nil, ErrDataBlock, "data block 299 ", true},
		{"top hash block", flip(tree + 5), nil, ErrHashBlock, "level 1 index 0", true},
		{"leaf hash block 2", flip(tree + 3*BlockSize + 8), nil, ErrHashBlock, "level 0 index 2", true},
		{"padding of last leaf block", flip(tree + 4*BlockSize - 1), nil, ErrHashBlock, "level 0 index 2", true},
		{"superblock salt", flip(int64(p.HashOffset) + 88), nil, ErrSuperblock, "salt", false},
		{"superblock signature", flip(int64(p.HashOffset)), nil, ErrSuperblock, "signature", false},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }, nil, ErrTruncated, "cut short", false},
		{"wrong root hash", nil, func(p *Params) { p.RootHash = strings.Repeat("00", 32) }, ErrHashBlock, "root hash", false},
		{"wrong data_blocks", nil, func(p *Params) { p.DataBlocks = n - 1 }, ErrSuperblock, "data_blocks", false},
		{"wrong uuid", nil, func(p *Params) { p.UUID = "00000000-0000-8000-8000-000000000000" }, ErrSuperblock, "uuid", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := orig + "." + strings.ReplaceAll(tc.name, " ", "-")
			b := append([]byte(nil), good...)
			if tc.corrupt != nil {
				b = tc.corrupt(b)
			}
			if err := os.WriteFile(img, b, 0o644); err != nil {
				t.Fatal(err)
			}
			q := p
			if tc.params != nil {
				tc.params(&q)
			}
			err := Verify(ctx, img, q)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), img) {
				t.Errorf("Verify(%s) = %v, want %v naming %q and the file", tc.name, err, tc.want, tc.msg)
			}
			if tc.tool {
				if _, err := veritysetup(t, "verify", fmt.Sprintf("--hash-offset=%d", p.HashOffset), img, img, p.RootHash); err == nil {
					t.Errorf("veritysetup verify accepts the image with %s", tc.name)
				}
			}
		})
	}
}

func TestVerifyOneBlock(t *testing.T) {
	// One data block: no tree levels, the root hash is the block's digest.
	ctx := context.Background()
	img := writeRandom(t, "one", 1000, 3)
	p, err := Format(ctx, img, WithSalt([]byte{7}))
	if err != nil {
		t.Fatal(err)
	}
	h := newHasher([]byte{7})
	data, _ := os.ReadFile(img)
	sum := make([]byte, digestSize)
	h.sum(sum, data[:BlockSize])
	if p.RootHash != hex.EncodeToString(sum) || p.TreeSize() != BlockSize {
		t.Errorf("Format(one block) = root %s tree %d bytes, want root sha256(salt||block) = %x and only the superblock", p.RootHash, p.TreeSize(), sum)
	}
	data[999] ^= 1
	os.WriteFile(img, data, 0o644)
	if err := Verify(ctx, img, p); !errors.Is(err, ErrDataBlock) || !strings.Contains(err.Error(), "data block 0 ") {
		t.Errorf("Verify(one corrupt block) = %v, want ErrDataBlock naming data block 0", err)
	}
}
