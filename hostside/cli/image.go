package cli

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"confguest/agent/api/imagesig"
	"confguest/hostside/image"
)

func init() {
	register(command{
		name:    "image",
		summary: "container images: write the statement that links an image to its disk (attest)",
		subs: []command{
			{name: "attest", summary: "write the confguest disk predicate of an image, for cosign attest (and sign it with --key)", run: runImageAttest},
		},
	})
}

// runImageAttest builds the disk of a registry image exactly as confguest run --pull and the
// shim's pulls do and writes the predicate (imagesig.Predicate) that cosign attest signs:
//
//	confguest image attest -o disk.json REF
//	cosign attest --key cosign.key --type urn:confguest:predicate:disk:v1 --predicate disk.json REF
//
// With --key it also signs the statement itself into --envelope, in the format cosign
// attest writes.
func runImageAttest(ctx context.Context, args []string, stdio Stdio) error {
	fs := newFlags("image attest", stdio)
	out := fs.String("o", "", "write the predicate to this file (default: standard output)")
	keyFile := fs.String("key", "", "also sign the in-toto statement with this private key (cosign.key, password in COSIGN_PASSWORD; or a PKCS #8 PEM key)")
	envFile := fs.String("envelope", "", "with --key: write the signed DSSE envelope here (confguest run --signed reads it)")
	fs.Usage = func() {
		fmt.Fprintln(stdio.Err, "usage: confguest image attest [-o PREDICATE.json] [--key KEY --envelope ENVELOPE.json] IMAGE-REFERENCE")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("give one image reference (registry/repository:tag or @sha256:...)")
	}
	if (*keyFile == "") != (*envFile == "") {
		return usagef("--key and --envelope go together: the envelope is what the key signs")
	}
	var key crypto.Signer
	if *keyFile != "" {
		pemKey, err := os.ReadFile(*keyFile)
		if err != nil {
			return fmt.Errorf("read --key: %w", err)
		}
		key, err = image.LoadSigningKey(pemKey, func() ([]byte, error) {
			pw, ok := os.LookupEnv("COSIGN_PASSWORD")
			if !ok {
				return nil, errors.New("--key is encrypted: set COSIGN_PASSWORD to its password")
			}
			return []byte(pw), nil
		})
		if err != nil {
			return fmt.Errorf("--key %s: %w", *keyFile, err)
		}
	}
	d, err := image.Resolve(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	disk, err := buildTempDisk(ctx, image.Source{Kind: image.Registry, Ref: d.String()})
	if err != nil {
		return err
	}
	pred := image.Predicate(d, disk)
	doc, err := json.MarshalIndent(pred, "", "  ")
	if err != nil {
		return fmt.Errorf("encode predicate: %w", err)
	}
	doc = append(doc, '\n')
	if *out == "" {
		if _, err := stdio.Out.Write(doc); err != nil {
			return err
		}
	} else if err := os.WriteFile(*out, doc, 0o644); err != nil {
		return fmt.Errorf("write predicate: %w", err)
	}
	fmt.Fprintf(stdio.Err, "%s: disk root hash %s\n", d, disk.Verity.RootHash)
	if key == nil {
		return nil
	}
	env, err := imagesig.Attest(d.Context().String(), d.DigestStr(), pred, key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*envFile, env, 0o644); err != nil {
		return fmt.Errorf("write envelope: %w", err)
	}
	fmt.Fprintf(stdio.Err, "wrote %s: signed statement of type %s about %s\n", *envFile, imagesig.PredicateType, d)
	return nil
}
