package rootfs

import (
	"context"

	"confguest/rootfs/verity"
)

// Params describe the dm-verity tree of an image; see verity.Params for the
// JSON field names and the device-mapper table a consumer builds from them.
type Params = verity.Params

// Verify checks every data and hash block of the image against p in
// userspace and names the first bad one (see verity.Verify). The host
// launcher runs it before boot.
func Verify(imagePath string, p Params) error {
	return VerifyContext(context.Background(), imagePath, p)
}

// VerifyContext is Verify with a context that can cancel the check.
func VerifyContext(ctx context.Context, imagePath string, p Params) error {
	return verity.Verify(ctx, imagePath, p)
}

// AppendVerity appends a dm-verity superblock and hash tree to an existing
// image file (a container layer disk, say), padding it to a 4096-byte
// boundary first. Only WithSalt applies; without it the salt is derived
// from the data as in Build.
func AppendVerity(ctx context.Context, imagePath string, opts ...Option) (Params, error) {
	o := newOptions(opts)
	return verity.Format(ctx, imagePath, o.verityOptions()...)
}
