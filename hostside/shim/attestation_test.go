package shim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"confguest/agent/api/imagesig"
	"confguest/rootfs/verity"
)

// TestRootfsAttestation: each container gets, of the annotation's envelopes, the one that
// signs its disk's root hash.
func TestRootfsAttestation(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	envelope := func(rootHash string) []byte {
		digest := "sha256:" + strings.Repeat("a", 64)
		env, err := imagesig.Attest("registry.example/app", digest, &imagesig.Predicate{Image: digest, Rootfs: imagesig.Disk{FSType: "erofs", Verity: verity.Params{RootHash: rootHash}}}, key)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	h1, h2 := strings.Repeat("1", 64), strings.Repeat("2", 64)
	e1, e2 := envelope(h1), envelope(h2)
	b64 := base64.StdEncoding.EncodeToString
	cases := []struct {
		name       string
		annotation *string
		rootHash   string
		want       []byte
		wantErr    error
	}{
		{name: "no annotation", rootHash: h1},
		{name: "the one envelope", annotation: ptr(b64(e1)), rootHash: h1, want: e1},
		{name: "second of two", annotation: ptr(b64(e1) + ", " + b64(e2)), rootHash: h2, want: e2},
		{name: "none for this disk", annotation: ptr(b64(e1)), rootHash: h2},
		{name: "not base64", annotation: ptr("{}"), rootHash: h1, wantErr: errInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := &specs.Spec{Annotations: map[string]string{}}
			if tc.annotation != nil {
				spec.Annotations[AnnotationRootfsAttestation] = *tc.annotation
			}
			got, err := rootfsAttestation(spec, tc.rootHash)
			if !errors.Is(err, tc.wantErr) || string(got) != string(tc.want) {
				t.Fatalf("rootfsAttestation(%s) = %.40q, %v; want %.40q, %v", tc.name, got, err, tc.want, tc.wantErr)
			}
		})
	}
}
