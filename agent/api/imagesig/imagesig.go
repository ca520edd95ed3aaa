// Package imagesig is the format of a signed statement that binds a container image to
// the disk the host builds from it: a DSSE envelope (payload type
// application/vnd.in-toto+json) around an in-toto statement whose subject is the image's
// manifest digest and whose predicate, of type PredicateType, lists the dm-verity
// parameters and filesystem of the image's erofs disk. It is the envelope
// `cosign attest --type <PredicateType> --predicate FILE IMAGE` writes, so users sign with
// the tools they already use and anyone can check it with `cosign verify-attestation`.
//
// The agent verifies an envelope with Verify (the Go standard library's crypto only) before
// it reads anything of it; the host writes predicates (confguest image attest) and may sign
// them with Sign. agent/policy/README.md documents the format with the policy entry that
// trusts a signer (rootfs.signed).
package imagesig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"confguest/rootfs/verity"
)

// PredicateType names version 1 of the confguest disk predicate (Predicate). A predicate
// whose meaning changes gets a new version.
const PredicateType = "urn:confguest:predicate:disk:v1"

// PayloadType is the DSSE payload type of an in-toto statement.
const PayloadType = "application/vnd.in-toto+json"

// The in-toto statement types read: cosign writes v0.1, in-toto's own tools v1. Both have
// the fields Statement reads with the same meaning.
const (
	StatementV01 = "https://in-toto.io/Statement/v0.1"
	StatementV1  = "https://in-toto.io/Statement/v1"
)

// Bounds of what Verify reads.
const (
	// MaxEnvelopeBytes bounds an envelope (cosign's is about 2 KiB with one signature).
	MaxEnvelopeBytes = 64 << 10
	// MaxSignatures bounds the signatures of one envelope.
	MaxSignatures = 4
)

// Envelope is a DSSE envelope as JSON (the DSSE spec's envelope.md): payload and sig are
// standard base64.
type Envelope struct {
	PayloadType string      `json:"payloadType"`
	Payload     string      `json:"payload"`
	Signatures  []Signature `json:"signatures"`
}

// Signature is one signature of an envelope; KeyID is a hint only and never trusted.
type Signature struct {
	KeyID string `json:"keyid,omitempty"`
	Sig   string `json:"sig"`
}

// PAE is DSSE's pre-authentication encoding of a payload, the bytes a signature covers:
// "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, lengths in ASCII decimal.
func PAE(payloadType string, payload []byte) []byte {
	var b bytes.Buffer
	b.Grow(len("DSSEv1") + len(payloadType) + len(payload) + 48)
	b.WriteString("DSSEv1 ")
	b.WriteString(strconv.Itoa(len(payloadType)))
	b.WriteByte(' ')
	b.WriteString(payloadType)
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(len(payload)))
	b.WriteByte(' ')
	b.Write(payload)
	return b.Bytes()
}

// Statement is an in-toto statement with the predicate left raw: it is decoded only once
// its type is known.
type Statement struct {
	Type          string          `json:"_type"`
	Subject       []Subject       `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

// Subject is what a statement is about: an image by repository name and manifest digest.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// Predicate is version 1 of the confguest disk predicate: the disk the host's conversion
// (hostside/image, reproducible) makes of the subject image. Rootfs is the one disk the
// agent mounts for the container; every field of it must equal the block rootfs of the
// create request.
type Predicate struct {
	// Image is the subject image's manifest digest ("sha256:<hex>") the disk was built
	// from; it must equal the statement's subject digest.
	Image     string    `json:"image"`
	Rootfs    Disk      `json:"rootfs"`
	Converter Converter `json:"converter"`
}

// Disk is a read-only filesystem image with its dm-verity tree appended.
type Disk struct {
	// FSType is the filesystem (erofs).
	FSType string `json:"fs_type"`
	// Verity are its dm-verity parameters; the superblock UUID is not one (the agent never
	// reads it), so a predicate has none.
	Verity verity.Params `json:"verity"`
}

// Converter says what made the disk (informational: the agent checks the disk, not this).
type Converter struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Format is the version of the conversion (erofs options, ownership, timestamps,
	// salt derivation) that makes the disk a function of the image.
	Format int `json:"format"`
}

// DecodePredicate reads a statement's predicate strictly: unknown fields and data after the
// object are errors.
func DecodePredicate(raw []byte) (*Predicate, error) {
	var p Predicate
	if err := decodeStrict(raw, &p); err != nil {
		return nil, fmt.Errorf("predicate: %w", err)
	}
	return &p, nil
}

// decodeStrict unmarshals one JSON object into v, refusing unknown fields and trailing data.
func decodeStrict(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON object")
	}
	return nil
}
