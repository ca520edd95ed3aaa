package kbuild

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// BuilderVersion names the build recipe: the base config, the make invocation and the
// reproducibility environment. Change it whenever they change, so cached kernels built the
// old way are not reused. (The fixed PATH and the probe overrides came without a change:
// they alter only kernels whose .config differs from final.config, and a cache hit whose
// config differs is discarded; see Build.)
const BuilderVersion = "kbuild-1"

// CacheKey identifies one kernel build: the source package (name, version and .deb digest),
// the fragment's bytes, the compiler that builds it and the builder's recipe. The other
// pinned tools are checked on a cache hit against the entry's kernel.json (see Build). Each part is
// length-prefixed so no two different inputs can produce the same byte stream.
func CacheKey(src Source, fragment []byte, compiler string) string {
	h := sha256.New()
	for _, part := range [][]byte{
		[]byte(BuilderVersion),
		[]byte(src.Package),
		[]byte(src.Version),
		[]byte(src.DebSHA256),
		[]byte(compiler),
		fragment,
	} {
		fmt.Fprintf(h, "%d:", len(part))
		h.Write(part)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
