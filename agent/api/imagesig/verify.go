package imagesig

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
)

// Errors of Verify, by what failed; each wraps ErrUnverified, so nothing of the envelope
// may be used.
var (
	// ErrUnverified marks an envelope Verify refused.
	ErrUnverified = errors.New("attestation refused")
	// ErrMalformed: not a DSSE envelope within the bounds.
	ErrMalformed error = refusal("malformed envelope")
	// ErrSignature: no signature verifies with any trusted key.
	ErrSignature error = refusal("no signature verifies with a trusted key")
	// ErrStatement: signed, but not an in-toto statement of PredicateType about one image.
	ErrStatement error = refusal("not a confguest disk statement")
)

// refusal is an error of Verify that wraps ErrUnverified; a constant, so that nothing is
// formatted when the agent starts.
type refusal string

func (r refusal) Error() string { return ErrUnverified.Error() + ": " + string(r) }
func (refusal) Unwrap() error   { return ErrUnverified }

// MinRSABits is the smallest RSA key a policy may trust.
const MinRSABits = 2048

// Object identifiers of the public keys ParsePublicKey reads (RFC 5480, RFC 8410, RFC 8017).
var (
	oidECPublicKey = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidP256        = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidEd25519     = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidRSA         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
)

// subjectPublicKeyInfo is the PKIX structure of a "PUBLIC KEY" PEM block (RFC 5280 4.1).
type subjectPublicKeyInfo struct {
	Algorithm struct {
		Algorithm  asn1.ObjectIdentifier
		Parameters asn1.RawValue `asn1:"optional"`
	}
	PublicKey asn1.BitString
}

// ParsePublicKey reads a PEM public key (PKIX "PUBLIC KEY", as cosign.pub): ECDSA P-256
// (cosign's default), Ed25519, or RSA of at least MinRSABits. It decodes the PKIX structure
// itself with encoding/asn1 rather than with crypto/x509, which would add ~0.3 MB of
// certificate code to the agent for three key types.
func ParsePublicKey(pemText []byte) (crypto.PublicKey, error) {
	blk, rest := pem.Decode(pemText)
	if blk == nil {
		return nil, errors.New("not a PEM block: want -----BEGIN PUBLIC KEY-----, as cosign.pub")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("data after the PEM block: give one key per entry of keys")
	}
	if blk.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("PEM block %q: want PUBLIC KEY (PKIX)", blk.Type)
	}
	var spki subjectPublicKeyInfo
	if rest, err := asn1.Unmarshal(blk.Bytes, &spki); err != nil || len(rest) != 0 || spki.PublicKey.BitLength%8 != 0 {
		return nil, errors.New("public key: not a PKIX SubjectPublicKeyInfo")
	}
	alg, params, key := spki.Algorithm.Algorithm, spki.Algorithm.Parameters.FullBytes, spki.PublicKey.Bytes
	switch {
	case alg.Equal(oidECPublicKey):
		var curve asn1.ObjectIdentifier
		if rest, err := asn1.Unmarshal(params, &curve); err != nil || len(rest) != 0 || !curve.Equal(oidP256) {
			return nil, errors.New("ECDSA key not on P-256: only P-256 (cosign's default) is trusted")
		}
		k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), key)
		if err != nil {
			return nil, fmt.Errorf("ECDSA P-256 key: %w", err)
		}
		return k, nil
	case alg.Equal(oidEd25519):
		if len(params) != 0 || len(key) != ed25519.PublicKeySize {
			return nil, errors.New("Ed25519 key: want 32 bytes and no parameters")
		}
		return ed25519.PublicKey(key), nil
	case alg.Equal(oidRSA):
		var k struct {
			N *big.Int
			E int
		}
		if rest, err := asn1.Unmarshal(key, &k); err != nil || len(rest) != 0 || k.N.Sign() <= 0 || k.E < 3 || k.E%2 == 0 {
			return nil, errors.New("RSA key: not a valid PKCS #1 public key")
		}
		if k.N.BitLen() < MinRSABits {
			return nil, fmt.Errorf("RSA key of %d bits: want at least %d", k.N.BitLen(), MinRSABits)
		}
		return &rsa.PublicKey{N: k.N, E: k.E}, nil
	}
	return nil, fmt.Errorf("public key of algorithm %s: want ECDSA P-256, Ed25519 or RSA", alg)
}

// verifySig checks sig over the pre-authentication encoding pae with key, the way sigstore
// signs a DSSE envelope: ECDSA (ASN.1) and RSA PKCS #1 v1.5 over SHA-256 of pae, Ed25519
// over pae itself.
func verifySig(key crypto.PublicKey, pae []byte, sig []byte) bool {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		d := sha256.Sum256(pae)
		return ecdsa.VerifyASN1(k, d[:], sig)
	case ed25519.PublicKey:
		return ed25519.Verify(k, pae, sig)
	case *rsa.PublicKey:
		d := sha256.Sum256(pae)
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, d[:], sig) == nil
	}
	return false
}

// Verified is what Verify returns of an envelope: its statement about one image, signed by
// a trusted key.
type Verified struct {
	// Subject is the image: its repository name and manifest digest ("sha256:<hex>").
	Name, Digest string
	Predicate    *Predicate
	// Key is the index in the trusted keys of the key whose signature verified.
	Key int
}

// Verify checks envelope, a DSSE envelope as JSON, against the trusted keys and returns its
// statement. It first bounds and decodes the envelope, then checks each signature over
// PAE(payloadType, payload) against each key and reads nothing more unless one verifies;
// then it requires the in-toto payload type, an in-toto statement with exactly one subject
// with a sha256 digest, PredicateType, and a predicate that decodes strictly and names the
// subject's digest. Every refusal wraps ErrUnverified (ErrMalformed, ErrSignature or
// ErrStatement) and names what failed, never a value of the envelope.
func Verify(envelope []byte, keys []crypto.PublicKey) (*Verified, error) {
	if len(envelope) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrMalformed)
	}
	if len(envelope) > MaxEnvelopeBytes {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(envelope), MaxEnvelopeBytes)
	}
	var env Envelope
	if err := decodeStrict(envelope, &env); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if n := len(env.Signatures); n == 0 || n > MaxSignatures {
		return nil, fmt.Errorf("%w: %d signatures, want 1 to %d", ErrMalformed, n, MaxSignatures)
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil || len(payload) == 0 {
		return nil, fmt.Errorf("%w: payload: want non-empty standard base64", ErrMalformed)
	}
	sigs := make([][]byte, len(env.Signatures))
	for i, s := range env.Signatures {
		if sigs[i], err = base64.StdEncoding.DecodeString(s.Sig); err != nil || len(sigs[i]) == 0 {
			return nil, fmt.Errorf("%w: signatures[%d].sig: want non-empty standard base64", ErrMalformed, i)
		}
	}
	pae := PAE(env.PayloadType, payload)
	signer := -1
	for ki, k := range keys {
		for _, sig := range sigs {
			if verifySig(k, pae, sig) {
				signer = ki
				break
			}
		}
		if signer >= 0 {
			break
		}
	}
	if signer < 0 {
		return nil, fmt.Errorf("%w (%d signatures, %d keys): signed by another key, or changed after signing", ErrSignature, len(sigs), len(keys))
	}
	// From here on the bytes are the signer's.
	if env.PayloadType != PayloadType {
		return nil, fmt.Errorf("%w: payloadType is not %s", ErrStatement, PayloadType)
	}
	var st Statement
	if err := decodeStrict(payload, &st); err != nil {
		return nil, fmt.Errorf("%w: in-toto statement: %w", ErrStatement, err)
	}
	if st.Type != StatementV01 && st.Type != StatementV1 {
		return nil, fmt.Errorf("%w: _type is not an in-toto statement (%s or %s)", ErrStatement, StatementV01, StatementV1)
	}
	if st.PredicateType != PredicateType {
		return nil, fmt.Errorf("%w: predicateType is not %s (signed with cosign attest --type %s?)", ErrStatement, PredicateType, PredicateType)
	}
	if len(st.Subject) != 1 {
		return nil, fmt.Errorf("%w: %d subjects, want exactly one image", ErrStatement, len(st.Subject))
	}
	sub := st.Subject[0]
	hexDigest := sub.Digest["sha256"]
	if b, err := hex.DecodeString(hexDigest); err != nil || len(b) != sha256.Size || hex.EncodeToString(b) != hexDigest {
		return nil, fmt.Errorf("%w: subject digest: want sha256 as 64 lower-case hex digits", ErrStatement)
	}
	if sub.Name == "" {
		return nil, fmt.Errorf("%w: subject name: empty: want the image's repository", ErrStatement)
	}
	p, err := DecodePredicate(st.Predicate)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStatement, err)
	}
	digest := "sha256:" + hexDigest
	if p.Image != digest {
		return nil, fmt.Errorf("%w: predicate.image is not the subject's digest: the predicate was written for another image", ErrStatement)
	}
	if p.Rootfs.Verity.UUID != "" {
		return nil, fmt.Errorf("%w: predicate.rootfs.verity.uuid: set, and no disk parameter the agent can check", ErrStatement)
	}
	return &Verified{Name: sub.Name, Digest: digest, Predicate: p, Key: signer}, nil
}
