package igvm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

// vectorPath is the igvmgen-made reference file, relative to this package.
var vectorPath = filepath.Join("..", "..", "..", "shared", "vectors", "igvm", "igvmgen-6.12.igvm")

const vectorSHA256 = "6944525027b4d4cf6d2978f7627b440c6ebc405a61ec534a8ca75486f667274f"

// readVector returns the igvmgen vector; it skips when the vector is absent, except under
// CI=true, where it fails.
func readVector(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(vectorPath)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("IGVM vector missing under CI=true: %v", err)
		}
		t.Skipf("IGVM vector not available: %v", err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != vectorSHA256 {
		t.Fatalf("%s: sha256 %x, want %s", vectorPath, sum, vectorSHA256)
	}
	return b
}

func TestVectorRoundTrip(t *testing.T) {
	b := readVector(t)
	f, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse(%s) = %v", vectorPath, err)
	}
	out, err := f.Marshal()
	if err != nil {
		t.Fatalf("Marshal() = %v", err)
	}
	if !bytes.Equal(out, b) {
		i := 0
		for i < len(out) && i < len(b) && out[i] == b[i] {
			i++
		}
		t.Fatalf("Marshal(Parse(vector)) differs from the vector at byte %d (len %d, want %d)", i, len(out), len(b))
	}
	counts := map[HeaderType]int{}
	for _, h := range f.Headers {
		counts[h.Body.Type()]++
	}
	want := map[HeaderType]int{
		TypeSupportedPlatform: 1, TypeGuestPolicy: 1, TypePageData: 723, TypeParameterArea: 1,
		TypeVPCount: 1, TypeMemoryMap: 1, TypeParameterInsert: 1, TypeVPContext: 1, TypeSNPIDBlock: 1,
	}
	for typ, n := range want {
		if counts[typ] != n {
			t.Errorf("vector has %d %v headers, want %d", counts[typ], typ, n)
		}
	}
	p, ok := f.Platform(PlatformSEVSNP)
	if !ok || p.CompatibilityMask != 1 || p.PlatformVersion != 1 {
		t.Errorf("Platform(SEV-SNP) = %+v, %v, want mask 1 version 1", p, ok)
	}
}
