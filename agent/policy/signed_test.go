package policy

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"confguest/agent/api/imagesig"
	agentv1 "confguest/agent/api/v1/wire"
)

const (
	signedRepo = "registry.example/team/web"
	v1Digest   = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	v2Digest   = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	v2Layer    = "2222222222222222222222222222222222222222222222222222222222222222"
)

func testKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func publicPEM(t testing.TB, k crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// signedWebPolicy is testdata/web.json with the web entry's rootfs pinned by signer: key,
// and image matching image (a JSON value).
func signedWebPolicy(t testing.TB, key crypto.Signer, image string) []byte {
	t.Helper()
	k, _ := json.Marshal(publicPEM(t, key))
	return edit(t, readTestdata(t, "web.json"), `"rootfs": {"layers": ["`+webLayer+`"]}`,
		`"rootfs": {"signed": {"keys": [`+string(k)+`], "image": `+image+`}}`)
}

// diskOf is the disk a create request's block rootfs names, with the message's defaults.
func diskOf(b *agentv1.BlockRootfs) imagesig.Disk {
	return imagesig.Disk{FSType: "erofs", Verity: b.GetVerity().Params()}
}

// attest signs a statement that image repo@digest has disk d.
func attest(t testing.TB, key crypto.Signer, repo, digest string, d imagesig.Disk) []byte {
	t.Helper()
	env, err := imagesig.Attest(repo, digest, &imagesig.Predicate{Image: digest, Rootfs: d, Converter: imagesig.Converter{Name: "confguest", Version: "test", Format: 1}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// TestSignedRootfs: an entry that trusts a signer admits exactly the disks its key signed
// for a matching image, new versions included, and refuses every other disk naming why.
func TestSignedRootfs(t *testing.T) {
	key, other := testKey(t), testKey(t)
	v1 := createWeb("w", nil)
	v2 := createWeb("w", nil)
	v2.Rootfs.GetBlock().Verity.RootHash = v2Layer
	disk1, disk2 := diskOf(v1.Rootfs.GetBlock()), diskOf(v2.Rootfs.GetBlock())
	good1 := attest(t, key, signedRepo, v1Digest, disk1)

	with := func(base *agentv1.CreateContainerRequest, env []byte, mod func(*agentv1.BlockRootfs)) *agentv1.CreateContainerRequest {
		r := createWeb("w", nil)
		r.Rootfs.GetBlock().Verity.RootHash = base.Rootfs.GetBlock().Verity.RootHash
		if mod != nil {
			mod(r.Rootfs.GetBlock())
		}
		r.RootfsAttestation = env
		return r
	}
	changedByte := func(env []byte) []byte {
		var e imagesig.Envelope
		if err := json.Unmarshal(env, &e); err != nil {
			t.Fatal(err)
		}
		p, _ := base64.StdEncoding.DecodeString(e.Payload)
		i := strings.Index(string(p), webLayer)
		p[i] = '3' // the signed root hash, one digit
		e.Payload = base64.StdEncoding.EncodeToString(p)
		b, _ := json.Marshal(e)
		return b
	}
	saltedDisk := disk1
	saltedDisk.Verity.Salt = "abcd"

	exact := `"` + signedRepo + `"`
	cases := []struct {
		name      string
		image     string // the entry's image matcher (JSON); "" exact
		req       *agentv1.CreateContainerRequest
		wantRule  string // "" admitted
		wantField string
		wantMsg   string
	}{
		{name: "signed image", req: with(v1, good1, nil)},
		{name: "second version, same key", req: with(v2, attest(t, key, signedRepo, v2Digest, disk2), nil)},
		{name: "image by pattern", image: `{"pattern": "registry\\.example/team/[a-z]+"}`, req: with(v1, good1, nil)},
		{name: "unsigned image", req: with(v1, nil, nil),
			wantRule: "containers[web].rootfs.signed", wantField: "rootfs_attestation", wantMsg: "missing"},
		{name: "signed by another key", req: with(v1, attest(t, other, signedRepo, v1Digest, disk1), nil),
			wantRule: "containers[web].rootfs.signed", wantField: "rootfs_attestation", wantMsg: "no signature verifies"},
		{name: "a changed byte in the envelope", req: with(v1, changedByte(good1), nil),
			wantRule: "containers[web].rootfs.signed", wantField: "rootfs_attestation", wantMsg: "no signature verifies"},
		{name: "statement for another image", req: with(v1, attest(t, key, "registry.example/team/other", v1Digest, disk1), nil),
			wantRule: "containers[web].rootfs.signed.image", wantField: "rootfs_attestation", wantMsg: "does not match"},
		{name: "root hash not the signed one", req: with(v2, good1, nil),
			wantRule: "containers[web].rootfs.signed", wantField: "rootfs.block.verity.root_hash", wantMsg: "the root hash is not the one signed"},
		{name: "salt not the signed one", req: with(v1, attest(t, key, signedRepo, v1Digest, saltedDisk), nil),
			wantRule: "containers[web].rootfs.signed", wantField: "rootfs.block.verity.salt"},
		{name: "sizes not the signed ones", req: with(v1, good1, func(b *agentv1.BlockRootfs) { b.Verity.DataBlocks, b.Verity.HashOffset = 2, 8192 }),
			wantRule: "containers[web].rootfs.signed", wantField: "rootfs.block.verity.data_blocks"},
		{name: "filesystem not the signed one", req: with(v1, attest(t, key, signedRepo, v1Digest, imagesig.Disk{FSType: "ext4", Verity: disk1.Verity}), nil),
			wantRule: "containers[web].rootfs.signed", wantField: "rootfs.block.fs_type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			image := tc.image
			if image == "" {
				image = exact
			}
			g := NewGate(nil, discardLogger())
			if err := g.Install(context.Background(), signedWebPolicy(t, key, image)); err != nil {
				t.Fatalf("Install = %v", err)
			}
			err := authorize(context.Background(), g, MethodCreateContainer, tc.req)
			if tc.wantRule == "" {
				if err != nil {
					t.Fatalf("CreateContainer(%s) = %v, want admitted", tc.name, err)
				}
				return
			}
			var d *Denial
			if !errors.As(err, &d) || d.Rule != tc.wantRule || d.Field != tc.wantField || !strings.Contains(d.Reason, tc.wantMsg) {
				t.Fatalf("CreateContainer(%s) = %v, want denial by %s on %s containing %q", tc.name, err, tc.wantRule, tc.wantField, tc.wantMsg)
			}
		})
	}
}

// TestSignedRootfsBesideLayers: an entry that pins the root hash admits its disk without
// reading the envelope; the signer entry is tried after it.
func TestSignedRootfsBesideLayers(t *testing.T) {
	key := testKey(t)
	doc := signedWebPolicy(t, key, `"`+signedRepo+`"`)
	doc = edit(t, doc, `"name": "tools",
      "rootfs": {"guest_directory": "/usr/share/confguest/busybox"}`, `"name": "tools",
      "rootfs": {"layers": ["`+v2Layer+`"]}`)
	g := NewGate(nil, discardLogger())
	if err := g.Install(context.Background(), doc); err != nil {
		t.Fatalf("Install = %v", err)
	}
	r := createWeb("t", nil)
	r.SpecJson = toolsSpec(nil)
	r.Stdio = &agentv1.StdioOptions{Stdin: true}
	r.Rootfs.GetBlock().Verity.RootHash = v2Layer
	r.RootfsAttestation = []byte("not an envelope")
	if err := authorize(context.Background(), g, MethodCreateContainer, r); err != nil {
		t.Fatalf("CreateContainer(tools by root hash, junk envelope) = %v, want admitted", err)
	}
}

func TestSignedPolicyFormat(t *testing.T) {
	key := testKey(t)
	pub, _ := json.Marshal(publicPEM(t, key))
	cases := []struct {
		name, rootfs, wantErr string
	}{
		{"keys and image", `{"signed": {"keys": [` + string(pub) + `], "image": "r/app"}}`, ""},
		{"no key", `{"signed": {"keys": [], "image": "r/app"}}`, "0 keys"},
		{"no image", `{"signed": {"keys": [` + string(pub) + `]}}`, "rootfs.signed.image: empty"},
		{"not a key", `{"signed": {"keys": ["hello"], "image": "r/app"}}`, "rootfs.signed.keys[0]"},
		{"signed and layers", `{"signed": {"keys": [` + string(pub) + `], "image": "r/app"}, "layers": ["` + webLayer + `"]}`, "exactly one"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := edit(t, readTestdata(t, "web.json"), `{"layers": ["`+webLayer+`"]}`, tc.rootfs)
			_, err := Parse(doc)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Parse(rootfs %s) = %v, want %q", tc.rootfs, err, tc.wantErr)
			}
		})
	}
}

// BenchmarkAuthorizeSigned is the agent's cost of admitting one create under an entry pinned
// by signer (one ECDSA P-256 key, as cosign's): envelope decoding, signature, statement,
// predicate and disk checks, then the entry's spec checks.
func BenchmarkAuthorizeSigned(b *testing.B) {
	key := testKey(b)
	p, err := Parse(signedWebPolicy(b, key, `"`+signedRepo+`"`))
	if err != nil {
		b.Fatal(err)
	}
	req := createWeb("w", nil)
	req.RootfsAttestation = attest(b, key, signedRepo, v1Digest, diskOf(req.Rootfs.GetBlock()))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		e := NewEvaluator(p)
		if err := authorize(ctx, e, MethodCreateContainer, req); err != nil {
			b.Fatal(err)
		}
	}
}
