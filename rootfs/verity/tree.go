package verity

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
)

// readChunk is how many bytes one worker reads and hashes at a time: large
// sequential reads, few system calls, and a buffer that stays in the L2
// cache while it is hashed.
const readChunk = 1 << 20

// geometry is the shape of the tree for a number of data blocks, laid out
// as the kernel's dm-verity target expects: level 0 holds the digests of the
// data blocks, level levels-1 is a single block whose digest is the root
// hash, and on disk the top level comes first.
type geometry struct {
	levels int
	blocks []uint64 // hash blocks per level, index 0 = leaf level
	start  []uint64 // first block of each level, counted from the tree start
	total  uint64   // hash blocks in all levels
}

func newGeometry(dataBlocks uint64, hashBlockSize int) geometry {
	perBlock := uint64(hashBlockSize / digestSize)
	shift := bits.TrailingZeros64(perBlock)
	var g geometry
	if dataBlocks == 0 {
		return g
	}
	// Same rule as the kernel and veritysetup: the fewest levels whose
	// fan-out covers every data block (none for a single data block).
	for shift*g.levels < 64 && (dataBlocks-1)>>(shift*g.levels) != 0 {
		g.levels++
	}
	g.blocks = make([]uint64, g.levels)
	g.start = make([]uint64, g.levels)
	n := dataBlocks
	for i := range g.levels {
		n = (n + perBlock - 1) / perBlock
		g.blocks[i] = n
	}
	for i := g.levels - 1; i >= 0; i-- {
		g.start[i] = g.total
		g.total += g.blocks[i]
	}
	return g
}

// hasher computes salted digests the way format version 1 does:
// sha256(salt || block).
type hasher struct {
	h    hash.Hash
	salt []byte
}

func newHasher(salt []byte) *hasher { return &hasher{h: sha256.New(), salt: salt} }

// sum writes the digest of block into dst[:digestSize].
func (h *hasher) sum(dst, block []byte) {
	h.h.Reset()
	h.h.Write(h.salt)
	h.h.Write(block)
	h.h.Sum(dst[:0:digestSize])
}

// hashData reads n blocks of bs bytes from r, starting at offset 0, and
// writes the salted digest of block i to leaves[i*digestSize:]. Workers, one
// per usable CPU, take turns on consecutive chunks of readChunk bytes.
func hashData(ctx context.Context, r io.ReaderAt, n uint64, bs int, salt []byte, leaves []byte) error {
	perChunk := uint64(max(readChunk/bs, 1))
	chunks := (n + perChunk - 1) / perChunk
	workers := min(uint64(runtime.GOMAXPROCS(0)), chunks)
	var (
		next    atomic.Uint64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
		failed  atomic.Bool
	)
	fail := func(err error) {
		errOnce.Do(func() { first = err })
		failed.Store(true)
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := newHasher(salt)
			buf := make([]byte, perChunk*uint64(bs))
			for !failed.Load() {
				c := next.Add(1) - 1
				if c >= chunks {
					return
				}
				if err := ctx.Err(); err != nil {
					fail(err)
					return
				}
				from := c * perChunk
				cnt := min(perChunk, n-from)
				b := buf[:cnt*uint64(bs)]
				off := int64(from) * int64(bs)
				if _, err := r.ReadAt(b, off); err != nil {
					if errors.Is(err, io.EOF) {
						err = fmt.Errorf("%w: data area ends before block %d", ErrTruncated, n)
					} else {
						err = fmt.Errorf("read data at offset %d: %w", off, err)
					}
					fail(err)
					return
				}
				for i := range cnt {
					h.sum(leaves[(from+i)*digestSize:], b[i*uint64(bs):(i+1)*uint64(bs)])
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// buildTree lays the leaf digests and every level above them out as hash
// blocks and returns the tree (g.total blocks, top level first) and the root
// digest.
func buildTree(leaves []byte, g geometry, hbs int, salt []byte) (tree, root []byte) {
	tree = make([]byte, g.total*uint64(hbs))
	h := newHasher(salt)
	cur := leaves
	for i := range g.levels {
		lvl := tree[g.start[i]*uint64(hbs) : (g.start[i]+g.blocks[i])*uint64(hbs)]
		// hbs is a multiple of the digest size, so packing the digests
		// back to back fills each block and leaves the zero padding at
		// the end of the last one, as veritysetup does.
		copy(lvl, cur)
		next := make([]byte, g.blocks[i]*digestSize)
		for b := range g.blocks[i] {
			h.sum(next[b*digestSize:], lvl[b*uint64(hbs):(b+1)*uint64(hbs)])
		}
		cur = next
	}
	return tree, cur[:digestSize]
}
