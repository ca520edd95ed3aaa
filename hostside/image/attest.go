package image

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"confguest/agent/api/imagesig"
)

// ConverterFormat is the version of the conversion from image to disk (erofs options,
// ownership, timestamps, salt and UUID derivation in rootfs.Build) that makes a disk a
// function of its image. A change that alters the disk of an unchanged image bumps it:
// predicates written before no longer describe the disks built after.
const ConverterFormat = 1

// Resolve pins the registry reference ref to the digest it names now: the manifest (or
// index) digest, the subject cosign attest signs.
func Resolve(ctx context.Context, ref string, opts ...Option) (name.Digest, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return name.Digest{}, fmt.Errorf("image reference %q: %w: %w", ref, ErrSource, err)
	}
	if d, ok := r.(name.Digest); ok {
		return d, nil
	}
	desc, err := remote.Head(r, append([]remote.Option{remote.WithContext(ctx)}, o.remote...)...)
	if err != nil {
		return name.Digest{}, fmt.Errorf("resolve %s: %w: %w", ref, ErrSource, err)
	}
	return r.Context().Digest(desc.Digest.String()), nil
}

// Predicate is the confguest disk predicate of image d whose disk is disk (built from d by
// BuildDisk): what confguest image attest writes for cosign attest --predicate.
func Predicate(d name.Digest, disk Disk) *imagesig.Predicate {
	v := disk.Verity
	v.UUID = "" // not a parameter the agent can check (imagesig.Disk)
	return &imagesig.Predicate{
		Image:     d.DigestStr(),
		Rootfs:    imagesig.Disk{FSType: "erofs", Verity: v},
		Converter: imagesig.Converter{Name: "confguest", Version: converterVersion(), Format: ConverterFormat},
	}
}

// converterVersion is the version of the confguest module this program was built from.
func converterVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// Cosign's layout of attestations in a registry: an image tagged sha256-<hex>.att in the
// subject's repository, one layer per DSSE envelope, annotated with its predicate type.
const (
	attestationTagSuffix    = ".att"
	dsseLayerMediaType      = "application/vnd.dsse.envelope.v1+json"
	predicateTypeAnnotation = "predicateType"
)

// FindAttestation returns the newest DSSE envelope of the confguest predicate type that
// cosign attest attached to image d in its registry, or nil when d has none: from the tag
// sha256-<hex>.att of d's repository (cosign's default), else from a Sigstore bundle among
// d's OCI 1.1 referrers (cosign attest --new-bundle-format). The envelope is not verified
// here: the agent does that against its policy's keys.
func FindAttestation(ctx context.Context, d name.Digest, opts ...Option) ([]byte, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	ropts := append([]remote.Option{remote.WithContext(ctx)}, o.remote...)
	env, err := findAttestationTag(d, ropts)
	if env != nil || err != nil {
		return env, err
	}
	return findAttestationBundle(d, ropts)
}

// findAttestationTag reads cosign's attestation tag sha256-<hex>.att of image d.
func findAttestationTag(d name.Digest, ropts []remote.Option) ([]byte, error) {
	h, err := v1.NewHash(d.DigestStr())
	if err != nil {
		return nil, err
	}
	tag := d.Context().Tag(h.Algorithm + "-" + h.Hex + attestationTagSuffix)
	img, err := remote.Image(tag, ropts...)
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("attestations of %s (%s): %w", d, tag, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("attestations of %s (%s): %w", d, tag, err)
	}
	for i := len(m.Layers) - 1; i >= 0; i-- {
		l := m.Layers[i]
		if l.MediaType != dsseLayerMediaType || l.Annotations[predicateTypeAnnotation] != imagesig.PredicateType {
			continue
		}
		if l.Size > imagesig.MaxEnvelopeBytes {
			return nil, fmt.Errorf("attestation %s of %s: %d bytes, the agent reads at most %d", l.Digest, d, l.Size, imagesig.MaxEnvelopeBytes)
		}
		return readBlob(img, l, d)
	}
	return nil, nil
}

// readBlob reads the layer l of img, an attestation of d, as stored (cosign's layers are
// not compressed).
func readBlob(img v1.Image, l v1.Descriptor, d name.Digest) ([]byte, error) {
	layer, err := img.LayerByDigest(l.Digest)
	if err != nil {
		return nil, fmt.Errorf("attestation %s of %s: %w", l.Digest, d, err)
	}
	rc, err := layer.Compressed()
	if err != nil {
		return nil, fmt.Errorf("attestation %s of %s: %w", l.Digest, d, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, imagesig.MaxEnvelopeBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read attestation %s of %s: %w", l.Digest, d, err)
	}
	return b, nil
}

// Sigstore bundles among an image's OCI 1.1 referrers, as cosign attest --new-bundle-format
// writes them: an artifact manifest of this type, annotated with the predicate type, whose
// one layer is the bundle JSON holding the DSSE envelope.
const (
	bundleArtifactType      = "application/vnd.dev.sigstore.bundle.v0.3+json"
	bundlePredicateTypeAnno = "dev.sigstore.bundle.predicateType"
)

// findAttestationBundle returns the DSSE envelope of the newest confguest Sigstore bundle
// among d's referrers (the registry's referrers API, or the sha256-<hex> tag of registries
// without it), or nil.
func findAttestationBundle(d name.Digest, ropts []remote.Option) ([]byte, error) {
	idx, err := remote.Referrers(d, ropts...)
	if err != nil {
		return nil, fmt.Errorf("referrers of %s: %w", d, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("referrers of %s: %w", d, err)
	}
	for i := len(m.Manifests) - 1; i >= 0; i-- {
		desc := m.Manifests[i]
		img, err := remote.Image(d.Context().Digest(desc.Digest.String()), ropts...)
		if err != nil {
			return nil, fmt.Errorf("referrer %s of %s: %w", desc.Digest, d, err)
		}
		man, err := img.Manifest()
		if err != nil {
			return nil, fmt.Errorf("referrer %s of %s: %w", desc.Digest, d, err)
		}
		if man.Annotations[bundlePredicateTypeAnno] != imagesig.PredicateType || len(man.Layers) != 1 || man.Layers[0].MediaType != bundleArtifactType {
			continue
		}
		b, err := readBlob(img, man.Layers[0], d)
		if err != nil {
			return nil, err
		}
		var bundle struct {
			DSSEEnvelope *imagesig.Envelope `json:"dsseEnvelope"`
		}
		if err := json.Unmarshal(b, &bundle); err != nil || bundle.DSSEEnvelope == nil {
			return nil, fmt.Errorf("referrer %s of %s: not a Sigstore bundle with a DSSE envelope", desc.Digest, d)
		}
		return json.Marshal(bundle.DSSEEnvelope)
	}
	return nil, nil
}

// SelectAttestation returns the first of envelopes whose statement signs a disk with root
// hash rootHash, or nil. It reads the statements without verifying them, only to choose
// which one to send: the agent verifies the one it gets.
func SelectAttestation(envelopes [][]byte, rootHash string) []byte {
	for _, env := range envelopes {
		var e imagesig.Envelope
		if json.Unmarshal(env, &e) != nil {
			continue
		}
		payload, err := base64.StdEncoding.DecodeString(e.Payload)
		if err != nil {
			continue
		}
		var st imagesig.Statement
		if json.Unmarshal(payload, &st) != nil || st.PredicateType != imagesig.PredicateType {
			continue
		}
		var p imagesig.Predicate
		if json.Unmarshal(st.Predicate, &p) == nil && strings.EqualFold(p.Rootfs.Verity.RootHash, rootHash) {
			return env
		}
	}
	return nil
}
