package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"confguest/rootfs"
)

// Artifact is one file of the guest image as out/manifest.json lists it.
type Artifact struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Manifest is out/manifest.json, written by the image pipeline (make image).
type Manifest struct {
	Artifacts []Artifact    `json:"artifacts"`
	Verity    rootfs.Params `json:"verity"`
}

// GuestImage is a checked guest image directory.
type GuestImage struct {
	Dir      string
	Manifest Manifest
}

// Path returns the absolute path of an artifact.
func (g GuestImage) Path(name string) string { return filepath.Join(g.Dir, name) }

// Lists reports whether the manifest lists (and CheckGuest so checked) artifact name.
func (g GuestImage) Lists(name string) bool {
	for _, a := range g.Manifest.Artifacts {
		if a.Name == name {
			return true
		}
	}
	return false
}

// Cmdline returns the kernel command line of the image (out/cmdline), trimmed.
func (g GuestImage) Cmdline() (string, error) {
	b, err := os.ReadFile(g.Path("cmdline"))
	if err != nil {
		return "", fmt.Errorf("read kernel command line: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Files the launcher boots; each must be listed in the manifest.
var requiredArtifacts = []string{"bzImage", "initramfs.cpio.gz", "rootfs.img", "cmdline"}

const rebuildHint = "rebuild it with make image"

// CheckGuest checks the guest image in dir before boot: every artifact of manifest.json is
// present with its size and SHA-256, the files the launcher boots are all listed, and
// rootfs.img's dm-verity tree matches the manifest's verity parameters. An artifact that does
// not match is named in the error, which wraps ErrTampered.
func CheckGuest(ctx context.Context, dir string) (GuestImage, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return GuestImage{}, err
	}
	g := GuestImage{Dir: abs}
	data, err := os.ReadFile(g.Path("manifest.json"))
	if err != nil {
		return g, fmt.Errorf("guest image %s: %w: %s", dir, err, rebuildHint)
	}
	if err := json.Unmarshal(data, &g.Manifest); err != nil {
		return g, fmt.Errorf("guest image %s: manifest.json: %w: %s", dir, err, rebuildHint)
	}
	listed := map[string]bool{}
	for _, a := range g.Manifest.Artifacts {
		if a.Name == "" || a.Name != filepath.Base(a.Name) || a.Name == "manifest.json" {
			return g, fmt.Errorf("guest image %s: manifest.json lists artifact %q: %w", dir, a.Name, ErrTampered)
		}
		listed[a.Name] = true
	}
	for _, n := range requiredArtifacts {
		if !listed[n] {
			return g, fmt.Errorf("guest image %s: manifest.json does not list %s: %w: %s", dir, n, ErrTampered, rebuildHint)
		}
	}
	for _, a := range g.Manifest.Artifacts {
		if err := ctx.Err(); err != nil {
			return g, err
		}
		if err := checkArtifact(g.Path(a.Name), a); err != nil {
			return g, err
		}
	}
	if err := rootfs.VerifyContext(ctx, g.Path("rootfs.img"), g.Manifest.Verity); err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return g, err
		}
		return g, fmt.Errorf("%s: dm-verity check against manifest.json: %w (%w): %s", g.Path("rootfs.img"), err, ErrTampered, rebuildHint)
	}
	return g, nil
}

func checkArtifact(path string, a Artifact) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w (%w): %s", path, err, ErrTampered, rebuildHint)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("%s: read: %w", path, err)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if n != a.Size || !strings.EqualFold(got, a.SHA256) {
		return fmt.Errorf("%s: %w: manifest.json says %d bytes sha256 %s, the file has %d bytes sha256 %s: %s",
			path, ErrTampered, a.Size, short(a.SHA256), n, short(got), rebuildHint)
	}
	return nil
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "..."
	}
	return h
}
