package kbuild

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// BuilderVersion names the build recipe: the base config, the make invocation and the
// reproducibility environment. Change it whenever they change, so cached kernels built the
// old way are not reused.
const BuilderVersion = "kbuild-2"

// CacheKey identifies one kernel build: the source package (name, version and .deb digest),
// the fragment's bytes, the compiler that builds it, the pinned toolchain and the builder's
// recipe. Each part is length-prefixed so no two different inputs can produce the same byte
// stream.
func CacheKey(src Source, fragment []byte, compiler string, toolchain []string) string {
	h := sha256.New()
	parts := [][]byte{
		[]byte(BuilderVersion),
		[]byte(src.Package),
		[]byte(src.Version),
		[]byte(src.DebSHA256),
		[]byte(compiler),
		fragment,
	}
	for _, t := range toolchain {
		parts = append(parts, []byte(t))
	}
	for _, part := range parts {
		fmt.Fprintf(h, "%d:", len(part))
		h.Write(part)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
