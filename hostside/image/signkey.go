package image

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"

	"golang.org/x/crypto/nacl/secretbox"
	"golang.org/x/crypto/scrypt"
)

// PEM types of private keys LoadSigningKey reads: cosign generate-key-pair's encrypted key
// (scrypt + NaCl secretbox, as go-securesystemslib's encrypted package writes it; cosign
// before v2 named it COSIGN), and unencrypted PKCS #8 and SEC 1 keys.
const (
	pemSigstoreKey = "ENCRYPTED SIGSTORE PRIVATE KEY"
	pemCosignKey   = "ENCRYPTED COSIGN PRIVATE KEY"
	pemPKCS8       = "PRIVATE KEY"
	pemSEC1        = "EC PRIVATE KEY"
)

// encryptedKey is the JSON inside an encrypted cosign key's PEM block.
type encryptedKey struct {
	KDF struct {
		Name   string `json:"name"`
		Params struct {
			N int `json:"N"`
			R int `json:"r"`
			P int `json:"p"`
		} `json:"params"`
		Salt []byte `json:"salt"`
	} `json:"kdf"`
	Cipher struct {
		Name  string `json:"name"`
		Nonce []byte `json:"nonce"`
	} `json:"cipher"`
	Ciphertext []byte `json:"ciphertext"`
}

// LoadSigningKey reads a PEM private key for signing statements: cosign's encrypted
// cosign.key (password gives its password, as COSIGN_PASSWORD does for cosign) or an
// unencrypted PKCS #8 or EC key.
func LoadSigningKey(pemText []byte, password func() ([]byte, error)) (crypto.Signer, error) {
	blk, _ := pem.Decode(pemText)
	if blk == nil {
		return nil, errors.New("not a PEM private key: give cosign.key (cosign generate-key-pair) or a PKCS #8 key")
	}
	der := blk.Bytes
	switch blk.Type {
	case pemSigstoreKey, pemCosignKey:
		pw, err := password()
		if err != nil {
			return nil, err
		}
		if der, err = decryptKey(blk.Bytes, pw); err != nil {
			return nil, err
		}
	case pemPKCS8:
	case pemSEC1:
		k, err := x509.ParseECPrivateKey(der)
		if err != nil {
			return nil, fmt.Errorf("EC private key: %w", err)
		}
		return k, nil
	default:
		return nil, fmt.Errorf("PEM block %q: want %s, %s or %s", blk.Type, pemSigstoreKey, pemPKCS8, pemSEC1)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key of type %T cannot sign", k)
	}
	return s, nil
}

// decryptKey opens an encrypted cosign key with password.
func decryptKey(data, password []byte) ([]byte, error) {
	var e encryptedKey
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("encrypted key: %w", err)
	}
	if e.KDF.Name != "scrypt" || e.Cipher.Name != "nacl/secretbox" || len(e.Cipher.Nonce) != 24 {
		return nil, fmt.Errorf("encrypted key: kdf %q, cipher %q: want scrypt and nacl/secretbox", e.KDF.Name, e.Cipher.Name)
	}
	key, err := scrypt.Key(password, e.KDF.Salt, e.KDF.Params.N, e.KDF.Params.R, e.KDF.Params.P, 32)
	if err != nil {
		return nil, fmt.Errorf("encrypted key: %w", err)
	}
	var k [32]byte
	var nonce [24]byte
	copy(k[:], key)
	copy(nonce[:], e.Cipher.Nonce)
	plain, ok := secretbox.Open(nil, e.Ciphertext, &nonce, &k)
	if !ok {
		return nil, errors.New("encrypted key: wrong password (COSIGN_PASSWORD), or the key file is damaged")
	}
	return plain, nil
}
