package imagesig

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"confguest/rootfs/verity"
)

const (
	testRepo   = "registry.example/team/app"
	testDigest = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
)

func testPredicate() *Predicate {
	return &Predicate{
		Image: testDigest,
		Rootfs: Disk{FSType: "erofs", Verity: verity.Params{
			RootHash: strings.Repeat("1", 64), Salt: strings.Repeat("2", 64), HashOffset: 4096 * 10, DataBlocks: 10,
			DataBlockSize: 4096, HashBlockSize: 4096, Algorithm: "sha256",
		}},
		Converter: Converter{Name: "confguest", Version: "test", Format: 1},
	}
}

func mustStatement(t testing.TB, repo, digest string, p *Predicate) []byte {
	t.Helper()
	st, err := NewStatement(repo, digest, p)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func mustSign(t testing.TB, statement []byte, key crypto.Signer) []byte {
	t.Helper()
	env, err := Sign(statement, key)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// signRaw signs any payload under any payload type, for envelopes Sign would not write.
func signRaw(t testing.TB, key crypto.Signer, payloadType string, payload []byte) []byte {
	t.Helper()
	env := mustSign(t, payload, key) // signs PAE(PayloadType, payload)
	if payloadType == PayloadType {
		return env
	}
	var e Envelope
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatal(err)
	}
	d := PAE(payloadType, payload)
	h := sha256Sum(d)
	sig, err := key.Sign(rand.Reader, h, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	e.PayloadType, e.Signatures[0].Sig = payloadType, base64.StdEncoding.EncodeToString(sig)
	b, _ := json.Marshal(e)
	return b
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

func editEnvelope(t testing.TB, env []byte, f func(*Envelope)) []byte {
	t.Helper()
	var e Envelope
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatal(err)
	}
	f(&e)
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func statementJSON(t testing.TB, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(mustStatement(t, testRepo, testDigest, testPredicate()), &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newECDSA(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestVerifyHostileEnvelopes: an envelope is accepted only when a trusted key signed it and
// it is a confguest disk statement about one image; each case names the check that refuses.
func TestVerifyHostileEnvelopes(t *testing.T) {
	key, other := newECDSA(t), newECDSA(t)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	trusted := []crypto.PublicKey{key.Public()}
	good := mustSign(t, mustStatement(t, testRepo, testDigest, testPredicate()), key)
	signedStatement := func(f func(m map[string]any)) []byte { return mustSign(t, statementJSON(t, f), key) }
	predicate := func(f func(p map[string]any)) []byte {
		return signedStatement(func(m map[string]any) { f(m["predicate"].(map[string]any)) })
	}

	cases := []struct {
		name     string
		envelope []byte
		keys     []crypto.PublicKey // nil: trusted
		want     error              // nil: accepted
		wantMsg  string
	}{
		{name: "ECDSA P-256, as cosign", envelope: good},
		{name: "Ed25519", envelope: mustSign(t, mustStatement(t, testRepo, testDigest, testPredicate()), edKey), keys: []crypto.PublicKey{edKey.Public()}},
		{name: "RSA 2048", envelope: mustSign(t, mustStatement(t, testRepo, testDigest, testPredicate()), rsaKey), keys: []crypto.PublicKey{rsaKey.Public()}},
		{name: "second of two keys", envelope: good, keys: []crypto.PublicKey{other.Public(), key.Public()}},
		{name: "a garbage signature beside a good one", envelope: editEnvelope(t, good, func(e *Envelope) {
			e.Signatures = append([]Signature{{Sig: base64.StdEncoding.EncodeToString([]byte("junk"))}}, e.Signatures...)
		})},

		{name: "empty", envelope: nil, want: ErrMalformed},
		{name: "too large", envelope: append(good, make([]byte, MaxEnvelopeBytes)...), want: ErrMalformed, wantMsg: "at most"},
		{name: "not JSON", envelope: []byte("DSSEv1 ..."), want: ErrMalformed},
		{name: "trailing data", envelope: append(append([]byte{}, good...), "{}"...), want: ErrMalformed},
		{name: "unknown field", envelope: []byte(strings.Replace(string(good), `{"payloadType"`, `{"x":1,"payloadType"`, 1)), want: ErrMalformed},
		{name: "no signature", envelope: editEnvelope(t, good, func(e *Envelope) { e.Signatures = nil }), want: ErrMalformed, wantMsg: "0 signatures"},
		{name: "too many signatures", envelope: editEnvelope(t, good, func(e *Envelope) {
			for len(e.Signatures) <= MaxSignatures {
				e.Signatures = append(e.Signatures, e.Signatures[0])
			}
		}), want: ErrMalformed, wantMsg: "signatures"},
		{name: "payload not base64", envelope: editEnvelope(t, good, func(e *Envelope) { e.Payload = "!!" + e.Payload }), want: ErrMalformed, wantMsg: "payload"},
		{name: "sig not base64", envelope: editEnvelope(t, good, func(e *Envelope) { e.Signatures[0].Sig = "%" }), want: ErrMalformed, wantMsg: "sig"},

		{name: "signed by another key", envelope: mustSign(t, mustStatement(t, testRepo, testDigest, testPredicate()), other), want: ErrSignature},
		{name: "no trusted key", envelope: good, keys: []crypto.PublicKey{}, want: ErrSignature},
		{name: "a changed byte in the payload", envelope: editEnvelope(t, good, func(e *Envelope) {
			p, _ := base64.StdEncoding.DecodeString(e.Payload)
			p[len(p)/2] ^= 1
			e.Payload = base64.StdEncoding.EncodeToString(p)
		}), want: ErrSignature},
		{name: "a changed byte in the signature", envelope: editEnvelope(t, good, func(e *Envelope) {
			s, _ := base64.StdEncoding.DecodeString(e.Signatures[0].Sig)
			s[len(s)-1] ^= 1
			e.Signatures[0].Sig = base64.StdEncoding.EncodeToString(s)
		}), want: ErrSignature},
		{name: "payloadType changed", envelope: editEnvelope(t, good, func(e *Envelope) { e.PayloadType = "application/json" }), want: ErrSignature},
		{name: "key ID names a trusted key", envelope: editEnvelope(t, mustSign(t, mustStatement(t, testRepo, testDigest, testPredicate()), other),
			func(e *Envelope) { e.Signatures[0].KeyID = "the trusted one" }), want: ErrSignature},

		{name: "signed, other payload type", envelope: signRaw(t, key, "application/json", mustStatement(t, testRepo, testDigest, testPredicate())), want: ErrStatement, wantMsg: "payloadType"},
		{name: "signed, not JSON", envelope: mustSign(t, []byte("hello"), key), want: ErrStatement},
		{name: "signed, not a statement", envelope: signedStatement(func(m map[string]any) { m["_type"] = "https://example/other" }), want: ErrStatement, wantMsg: "_type"},
		{name: "in-toto v1 statement", envelope: signedStatement(func(m map[string]any) { m["_type"] = StatementV1 })},
		{name: "other predicate type", envelope: signedStatement(func(m map[string]any) { m["predicateType"] = "https://slsa.dev/provenance/v1" }), want: ErrStatement, wantMsg: "predicateType"},
		{name: "no subject", envelope: signedStatement(func(m map[string]any) { m["subject"] = []any{} }), want: ErrStatement, wantMsg: "0 subjects"},
		{name: "two subjects", envelope: signedStatement(func(m map[string]any) {
			s := m["subject"].([]any)
			m["subject"] = append(s, s[0])
		}), want: ErrStatement, wantMsg: "2 subjects"},
		{name: "subject without sha256", envelope: signedStatement(func(m map[string]any) {
			m["subject"].([]any)[0].(map[string]any)["digest"] = map[string]any{"sha512": strings.Repeat("a", 128)}
		}), want: ErrStatement, wantMsg: "subject digest"},
		{name: "subject digest upper case", envelope: signedStatement(func(m map[string]any) {
			m["subject"].([]any)[0].(map[string]any)["digest"] = map[string]any{"sha256": strings.Repeat("A", 64)}
		}), want: ErrStatement, wantMsg: "subject digest"},
		{name: "subject without name", envelope: signedStatement(func(m map[string]any) { m["subject"].([]any)[0].(map[string]any)["name"] = "" }), want: ErrStatement, wantMsg: "subject name"},
		{name: "unknown statement field", envelope: signedStatement(func(m map[string]any) { m["extra"] = true }), want: ErrStatement},
		{name: "unknown predicate field", envelope: predicate(func(p map[string]any) { p["layers"] = []any{} }), want: ErrStatement, wantMsg: "predicate"},
		{name: "predicate of another image", envelope: predicate(func(p map[string]any) { p["image"] = "sha256:" + strings.Repeat("b", 64) }), want: ErrStatement, wantMsg: "another image"},
		{name: "predicate with a verity UUID", envelope: predicate(func(p map[string]any) {
			p["rootfs"].(map[string]any)["verity"].(map[string]any)["uuid"] = "12345678-1234-1234-1234-123456789abc"
		}), want: ErrStatement, wantMsg: "uuid"},
		{name: "predicate not an object", envelope: signedStatement(func(m map[string]any) { m["predicate"] = "disk" }), want: ErrStatement},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			keys := tc.keys
			if keys == nil {
				keys = trusted
			}
			v, err := Verify(tc.envelope, keys)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify(%s) = %v, want accepted", tc.name, err)
				}
				if v.Name != testRepo || v.Digest != testDigest || *v.Predicate != *testPredicate() {
					t.Errorf("Verify(%s) = %+v, want the statement about %s@%s", tc.name, v, testRepo, testDigest)
				}
				return
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrUnverified) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("Verify(%s) = %v, want %v containing %q", tc.name, err, tc.want, tc.wantMsg)
			}
			if v != nil {
				t.Errorf("Verify(%s) returned %+v with its error: nothing of a refused envelope may be used", tc.name, v)
			}
		})
	}
}

func pemOf(t testing.TB, typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pkix(t testing.TB, k crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf(t, "PUBLIC KEY", der)
}

func TestParsePublicKey(t *testing.T) {
	p256 := newECDSA(t)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	priv, _ := x509.MarshalPKCS8PrivateKey(p256)
	cases := []struct {
		name    string
		pem     []byte
		wantErr string // "": accepted
	}{
		{"P-256", pkix(t, p256.Public()), ""},
		{"P-256 with a trailing newline", append(pkix(t, p256.Public()), '\n'), ""},
		{"Ed25519", pkix(t, edPub), ""},
		{"RSA 2048", pkix(t, rsa2048.Public()), ""},
		{"P-384", pkix(t, p384.Public()), "only P-256"},
		{"RSA 1024", pkix(t, rsa1024.Public()), "at least 2048"},
		{"a private key", pemOf(t, "PRIVATE KEY", priv), "want PUBLIC KEY"},
		{"two keys", append(pkix(t, p256.Public()), pkix(t, edPub)...), "data after"},
		{"not PEM", []byte("MFkwEwYHKoZIzj0CAQ"), "not a PEM block"},
		{"garbage DER", pemOf(t, "PUBLIC KEY", []byte{0x30, 0x03, 1, 2, 3}), "public key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParsePublicKey(tc.pem)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("ParsePublicKey(%s) = %v, want %q", tc.name, err, tc.wantErr)
			}
			if err != nil {
				return
			}
			// The hand-written PKIX decoding agrees with crypto/x509's.
			blk, _ := pem.Decode(tc.pem)
			want, err := x509.ParsePKIXPublicKey(blk.Bytes)
			if err != nil || !want.(interface{ Equal(crypto.PublicKey) bool }).Equal(k) {
				t.Errorf("ParsePublicKey(%s) = %v, crypto/x509 reads %v (%v)", tc.name, k, want, err)
			}
		})
	}
}

// TestPAE checks the encoding against the DSSE spec's example.
func TestPAE(t *testing.T) {
	got := string(PAE("http://example.com/HelloWorld", []byte("hello world")))
	want := "DSSEv1 29 http://example.com/HelloWorld 11 hello world"
	if got != want {
		t.Fatalf("PAE = %q, want %q", got, want)
	}
}

// BenchmarkVerify is the agent's cost of checking one cosign-style envelope (ECDSA P-256)
// against one trusted key, decoding included.
func BenchmarkVerify(b *testing.B) {
	key := newECDSA(b)
	env := mustSign(b, mustStatement(b, testRepo, testDigest, testPredicate()), key)
	keys := []crypto.PublicKey{key.Public()}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Verify(env, keys); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzVerify: no input panics Verify, and whatever it accepts is the statement the trusted
// key signed (a forgery would have to break ECDSA).
func FuzzVerify(f *testing.F) {
	key := newECDSA(f)
	good := mustSign(f, mustStatement(f, testRepo, testDigest, testPredicate()), key)
	f.Add(good)
	f.Add([]byte(`{"payloadType":"","payload":"","signatures":[]}`))
	keys := []crypto.PublicKey{key.Public()}
	f.Fuzz(func(t *testing.T, env []byte) {
		v, err := Verify(env, keys)
		if err != nil {
			return
		}
		if v.Name != testRepo || v.Digest != testDigest || *v.Predicate != *testPredicate() {
			t.Fatalf("Verify accepted %q as %+v: not the signed statement", env, v)
		}
	})
}
