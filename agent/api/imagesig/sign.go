package imagesig

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
)

// NewStatement returns the in-toto statement about image repo@digest ("sha256:<hex>") with
// predicate p, as cosign attest writes it: _type v0.1, one subject, PredicateType.
func NewStatement(repo, digest string, p *Predicate) ([]byte, error) {
	hexDigest, ok := strings.CutPrefix(digest, "sha256:")
	if !ok {
		return nil, fmt.Errorf("image digest %q: want sha256:<hex>", digest)
	}
	pred, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode predicate: %w", err)
	}
	st := Statement{
		Type:          StatementV01,
		Subject:       []Subject{{Name: repo, Digest: map[string]string{"sha256": hexDigest}}},
		PredicateType: PredicateType,
		Predicate:     pred,
	}
	b, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encode statement: %w", err)
	}
	return b, nil
}

// Sign wraps statement in a DSSE envelope signed with key as sigstore signs one (Verify's
// rules: ECDSA and RSA over SHA-256 of the PAE, Ed25519 over the PAE), with an empty key
// ID as cosign attest --key writes.
func Sign(statement []byte, key crypto.Signer) ([]byte, error) {
	pae := PAE(PayloadType, statement)
	var sig []byte
	var err error
	switch key.Public().(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey:
		d := sha256.Sum256(pae)
		sig, err = key.Sign(rand.Reader, d[:], crypto.SHA256)
	case ed25519.PublicKey:
		sig, err = key.Sign(rand.Reader, pae, crypto.Hash(0))
	default:
		return nil, fmt.Errorf("sign with a %T key: want ECDSA P-256, Ed25519 or RSA", key.Public())
	}
	if err != nil {
		return nil, fmt.Errorf("sign statement: %w", err)
	}
	env := Envelope{
		PayloadType: PayloadType,
		Payload:     base64.StdEncoding.EncodeToString(statement),
		Signatures:  []Signature{{Sig: base64.StdEncoding.EncodeToString(sig)}},
	}
	b, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("encode envelope: %w", err)
	}
	return b, nil
}

// Attest signs the statement that image repo@digest has the disk of predicate p: NewStatement
// then Sign, what confguest image attest --key writes.
func Attest(repo, digest string, p *Predicate, key crypto.Signer) ([]byte, error) {
	st, err := NewStatement(repo, digest, p)
	if err != nil {
		return nil, err
	}
	return Sign(st, key)
}
