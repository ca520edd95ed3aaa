package verity

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
)

// Verify checks, in userspace, every block of the image at path against p:
// the superblock, then the hash tree from the root hash down (top level
// first, each level's blocks in order), then every data block. It stops at
// the first mismatch and names it: "hash block at level L index I" (level 0
// holds the data blocks' digests; the highest level is the single block
// under the root hash) or "data block N". The error wraps ErrBadParams,
// ErrTruncated, ErrSuperblock, ErrHashBlock or ErrDataBlock.
func Verify(ctx context.Context, path string, p Params) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("verify %s: %w", path, err)
	}
	salt, _ := p.salt()
	root, _ := hex.DecodeString(p.RootHash)
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open image to verify: %w", err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd) // also right for block devices
	if err != nil {
		return fmt.Errorf("size of %s: %w", path, err)
	}
	hbs := int(p.HashBlockSize)
	g := newGeometry(p.DataBlocks, hbs)
	end := p.HashOffset + p.TreeSize()
	if uint64(size) < end {
		return fmt.Errorf("%s: %w: %d bytes, the hash tree ends at %d: the file was cut short: copy or rebuild it",
			path, ErrTruncated, size, end)
	}
	area := make([]byte, p.TreeSize())
	if _, err := f.ReadAt(area, int64(p.HashOffset)); err != nil {
		return fmt.Errorf("read hash area of %s: %w", path, err)
	}
	sb, err := parseSuperblock(area)
	if err == nil {
		err = sb.check(p, salt)
	}
	if err != nil {
		return fmt.Errorf("%s at offset %d: %w: the image does not belong to these parameters", path, p.HashOffset, err)
	}
	tree := area[hbs:]
	if err := checkTree(tree, p.HashOffset+uint64(hbs), g, hbs, salt, root); err != nil {
		return fmt.Errorf("%s: %w: the hash tree was modified or damaged; rebuild or re-fetch the image", path, err)
	}
	leaves := make([]byte, p.DataBlocks*digestSize)
	if err := hashData(ctx, f, p.DataBlocks, int(p.DataBlockSize), salt, leaves); err != nil {
		if errors.Is(err, ErrTruncated) || errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: %w", path, err)
		}
		return fmt.Errorf("verify data of %s: %w", path, err)
	}
	want := root
	if g.levels > 0 {
		want = tree[g.start[0]*uint64(hbs):][:len(leaves)]
	}
	if i := firstMismatch(leaves, want); i >= 0 {
		off := uint64(i) * uint64(p.DataBlockSize)
		return fmt.Errorf("%s: %w: data block %d (bytes %d to %d) does not match its digest; the image was modified or damaged: rebuild or re-fetch it",
			path, ErrDataBlock, i, off, off+uint64(p.DataBlockSize)-1)
	}
	return nil
}

// checkTree verifies the tree, which starts at file offset treeOff: the top block against root, then each level's blocks
// against the digests stored one level up.
func checkTree(tree []byte, treeOff uint64, g geometry, hbs int, salt, root []byte) error {
	h := newHasher(salt)
	sum := make([]byte, digestSize)
	block := func(level int, i uint64) []byte {
		off := (g.start[level] + i) * uint64(hbs)
		return tree[off : off+uint64(hbs)]
	}
	blockErr := func(level int, i uint64, parent string) error {
		return fmt.Errorf("%w: hash block at level %d index %d (file offset %d) does not match %s",
			ErrHashBlock, level, i, treeOff+(g.start[level]+i)*uint64(hbs), parent)
	}
	for level := g.levels - 1; level >= 0; level-- {
		for i := range g.blocks[level] {
			h.sum(sum, block(level, i))
			if level == g.levels-1 {
				if !bytes.Equal(sum, root) {
					return blockErr(level, i, "the root hash")
				}
				continue
			}
			parent := block(level+1, i/uint64(hbs/digestSize))
			slot := i % uint64(hbs/digestSize) * digestSize
			if !bytes.Equal(sum, parent[slot:slot+digestSize]) {
				return blockErr(level, i, fmt.Sprintf("its digest in level %d", level+1))
			}
		}
	}
	return nil
}

// firstMismatch returns the index of the first digest that differs between
// got and want, or -1.
func firstMismatch(got, want []byte) int {
	if bytes.Equal(got, want) {
		return -1
	}
	for i := 0; i*digestSize < len(got); i++ {
		if !bytes.Equal(got[i*digestSize:(i+1)*digestSize], want[i*digestSize:(i+1)*digestSize]) {
			return i
		}
	}
	return -1
}
