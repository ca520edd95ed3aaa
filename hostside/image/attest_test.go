package image

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/nacl/secretbox"
	"golang.org/x/crypto/scrypt"

	"confguest/agent/api/imagesig"
	"confguest/rootfs/verity"
)

func signedEnvelope(t *testing.T, key *ecdsa.PrivateKey, repo, digest, rootHash string) []byte {
	t.Helper()
	env, err := imagesig.Attest(repo, digest, &imagesig.Predicate{Image: digest, Rootfs: imagesig.Disk{FSType: "erofs", Verity: verity.Params{RootHash: rootHash}}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// TestFindAttestation lays attestations out in a registry as cosign attest does (tag
// sha256-<hex>.att, one DSSE layer per attestation annotated with its predicate type) and
// checks that the newest confguest one is found, and nothing for an image without any.
func TestFindAttestation(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	push := func(ref string) name.Digest {
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		tag, _ := name.NewTag(host + "/" + ref)
		if err := remote.Write(tag, img, remote.WithContext(ctx)); err != nil {
			t.Fatal(err)
		}
		d, err := Resolve(ctx, tag.String())
		if err != nil {
			t.Fatalf("Resolve(%s) = %v", tag, err)
		}
		return d
	}
	signed, unsigned := push("team/app:v1"), push("team/other:v1")
	repo := signed.Context().String()
	older := signedEnvelope(t, key, repo, signed.DigestStr(), strings.Repeat("1", 64))
	newer := signedEnvelope(t, key, repo, signed.DigestStr(), strings.Repeat("2", 64))
	att := empty.Image
	for _, l := range []struct {
		env           []byte
		predicateType string
	}{{older, imagesig.PredicateType}, {newer, imagesig.PredicateType}, {[]byte(`{"other":1}`), "https://slsa.dev/provenance/v1"}} {
		att, err = mutate.Append(att, mutate.Addendum{
			Layer:       static.NewLayer(l.env, types.MediaType("application/vnd.dsse.envelope.v1+json")),
			Annotations: map[string]string{"predicateType": l.predicateType},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	tag := signed.Context().Tag("sha256-" + strings.TrimPrefix(signed.DigestStr(), "sha256:") + ".att")
	if err := remote.Write(tag, att, remote.WithContext(ctx)); err != nil {
		t.Fatal(err)
	}

	got, err := FindAttestation(ctx, signed)
	if err != nil || !bytes.Equal(got, newer) {
		t.Errorf("FindAttestation(%s) = %.40q, %v; want the newest confguest envelope", signed, got, err)
	}
	if got, err := FindAttestation(ctx, unsigned); err != nil || got != nil {
		t.Errorf("FindAttestation(%s) = %.40q, %v; want none", unsigned, got, err)
	}
	if got := SelectAttestation([][]byte{[]byte("junk"), older, newer}, strings.Repeat("2", 64)); !bytes.Equal(got, newer) {
		t.Errorf("SelectAttestation(root hash 22...) = %.40q, want the envelope signing that disk", got)
	}
	if got := SelectAttestation([][]byte{older}, strings.Repeat("3", 64)); got != nil {
		t.Errorf("SelectAttestation(root hash 33...) = %.40q, want none", got)
	}
}

// TestLoadSigningKey reads an encrypted key in cosign's layout (scrypt, NaCl secretbox, as
// go-securesystemslib writes it) and an unencrypted PKCS #8 key, and refuses a wrong password.
func TestLoadSigningKey(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	salt, nonce := make([]byte, 32), make([]byte, 24)
	rand.Read(salt)
	rand.Read(nonce)
	var e encryptedKey
	e.KDF.Name, e.KDF.Salt = "scrypt", salt
	e.KDF.Params.N, e.KDF.Params.R, e.KDF.Params.P = 1<<10, 8, 1
	e.Cipher.Name, e.Cipher.Nonce = "nacl/secretbox", nonce
	boxKey, _ := scrypt.Key([]byte("pw"), salt, 1<<10, 8, 1, 32)
	var k [32]byte
	var n [24]byte
	copy(k[:], boxKey)
	copy(n[:], nonce)
	e.Ciphertext = secretbox.Seal(nil, der, &n, &k)
	body, _ := json.Marshal(e)
	encrypted := pem.EncodeToMemory(&pem.Block{Type: pemSigstoreKey, Bytes: body})
	plain := pem.EncodeToMemory(&pem.Block{Type: pemPKCS8, Bytes: der})

	cases := []struct {
		name, password string
		pem            []byte
		wantErr        string
	}{
		{"cosign encrypted", "pw", encrypted, ""},
		{"wrong password", "nope", encrypted, "wrong password"},
		{"PKCS #8", "", plain, ""},
		{"a public key", "", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), "want"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := LoadSigningKey(tc.pem, func() ([]byte, error) { return []byte(tc.password), nil })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("LoadSigningKey(%s) = %v, want %q", tc.name, err, tc.wantErr)
				}
				return
			}
			if err != nil || !key.PublicKey.Equal(s.Public()) {
				t.Fatalf("LoadSigningKey(%s) = %v, want the key", tc.name, err)
			}
		})
	}
}
