package verity

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
)

// Option configures Format.
type Option func(*options)

type options struct {
	salt    []byte
	hasSalt bool
	uuid    string
}

// WithSalt sets the salt (at most 256 bytes; empty is allowed and means no
// salt). Without it, the salt is derived from the data; see the package doc.
func WithSalt(salt []byte) Option {
	return func(o *options) { o.salt, o.hasSalt = append([]byte(nil), salt...), true }
}

// WithUUID sets the superblock UUID (8-4-4-4-12 hex form). Without it, the
// UUID is derived from the root hash and the salt; see the package doc.
func WithUUID(uuid string) Option {
	return func(o *options) { o.uuid = uuid }
}

// Format appends a dm-verity superblock and hash tree to the file at path
// and returns the parameters that describe them. If the file's size is not a
// multiple of BlockSize it is first padded with zeros, so that every byte of
// the original data is covered. The hash offset is the (padded) data size.
// On failure the file is truncated back to its original size.
func Format(ctx context.Context, path string, opts ...Option) (p Params, err error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if len(o.salt) > maxSaltSize {
		return Params{}, fmt.Errorf("%w: salt of %d bytes: at most %d allowed", ErrBadParams, len(o.salt), maxSaltSize)
	}
	var uuid [16]byte
	if o.uuid != "" {
		if uuid, err = parseUUID(o.uuid); err != nil {
			return Params{}, err
		}
	}
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return Params{}, fmt.Errorf("%s: %w: not a regular file; give an image file", path, ErrBadParams)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return Params{}, fmt.Errorf("open image for verity format: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Params{}, fmt.Errorf("stat %s: %w", path, err)
	}
	size := fi.Size()
	if size == 0 {
		return Params{}, fmt.Errorf("%s: %w: the file is empty; give an image with data", path, ErrEmpty)
	}
	defer func() {
		if err != nil {
			f.Truncate(size) // roll back padding and a partial tree
		}
	}()
	const bs = BlockSize
	dataSize := (size + bs - 1) / bs * bs
	if dataSize != size {
		if err := f.Truncate(dataSize); err != nil {
			return Params{}, fmt.Errorf("pad %s to a multiple of %d bytes: %w", path, bs, err)
		}
	}
	n := uint64(dataSize / bs)
	salt := o.salt
	if !o.hasSalt {
		if salt, err = DeriveSalt(ctx, f, dataSize); err != nil {
			return Params{}, fmt.Errorf("derive salt from %s: %w", path, err)
		}
	}
	g := newGeometry(n, bs)
	leaves := make([]byte, n*digestSize)
	if err := hashData(ctx, f, n, bs, salt, leaves); err != nil {
		return Params{}, fmt.Errorf("hash data blocks of %s: %w", path, err)
	}
	tree, root := buildTree(leaves, g, bs, salt)
	if o.uuid == "" {
		uuid = deriveUUID(root, salt)
	}
	sb := superblock{uuid: uuid, algorithm: Algorithm, dataBlockSize: bs, hashBlockSize: bs, dataBlocks: n, salt: salt}
	out := make([]byte, bs, bs+len(tree))
	copy(out, sb.marshal())
	out = append(out, tree...)
	if _, err := f.WriteAt(out, dataSize); err != nil {
		return Params{}, fmt.Errorf("write hash tree to %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return Params{}, fmt.Errorf("close %s: %w", path, err)
	}
	return Params{
		RootHash:      hex.EncodeToString(root),
		Salt:          hex.EncodeToString(salt),
		HashOffset:    uint64(dataSize),
		DataBlocks:    n,
		DataBlockSize: bs,
		HashBlockSize: bs,
		Algorithm:     Algorithm,
		UUID:          formatUUID(uuid),
	}, nil
}

const (
	saltDomain = "confguest verity salt v1\n"
	uuidDomain = "confguest verity uuid v1\n"
)

// DeriveSalt returns the salt Format uses when none is given:
// SHA-256("confguest verity salt v1\n" || the first size bytes of r).
func DeriveSalt(ctx context.Context, r io.ReaderAt, size int64) ([]byte, error) {
	h := sha256.New()
	h.Write([]byte(saltDomain))
	buf := make([]byte, readChunk)
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b := buf[:min(int64(len(buf)), size-off)]
		if _, err := r.ReadAt(b, off); err != nil {
			return nil, fmt.Errorf("read at offset %d: %w", off, err)
		}
		h.Write(b)
		off += int64(len(b))
	}
	return h.Sum(nil), nil
}

// deriveUUID returns the first 16 bytes of
// SHA-256("confguest verity uuid v1\n" || root || salt), marked as an
// RFC 9562 version 8 (custom) UUID.
func deriveUUID(root, salt []byte) [16]byte {
	h := sha256.New()
	h.Write([]byte(uuidDomain))
	h.Write(root)
	h.Write(salt)
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x80
	u[8] = u[8]&0x3f | 0x80
	return u
}
