package image

import "errors"

var (
	// ErrSource means a container rootfs source could not be read.
	ErrSource = errors.New("bad container image source")
	// ErrDigest means a blob's content does not match its digest.
	ErrDigest = errors.New("digest mismatch")
	// ErrUnsafePath means a layer entry would land outside the root.
	ErrUnsafePath = errors.New("layer entry escapes the root")
	// ErrTampered means a guest image artifact does not match out/manifest.json.
	ErrTampered = errors.New("guest image does not match its manifest")
)
