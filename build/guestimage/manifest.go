package guestimage

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"confguest/build/toolpin"
	"confguest/rootfs"
)

// Manifest describes a built guest image: what it holds and what it was built from.
type Manifest struct {
	Artifacts []Artifact    `json:"artifacts"`
	Verity    rootfs.Params `json:"verity"`
	Cmdline   string        `json:"cmdline"`
	Kernel    KernelInfo    `json:"kernel"`
	GoVersion string        `json:"go_version"`
	Inputs    Inputs        `json:"inputs"`
}

// Artifact is one file of the image directory.
type Artifact struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// KernelInfo says which kernel source and configuration the bzImage was built from.
type KernelInfo struct {
	SourcePackage  string   `json:"source_package"`
	Version        string   `json:"version"`
	DebSHA256      string   `json:"deb_sha256"`
	ConfigSHA256   string   `json:"config_sha256"`
	FragmentSHA256 string   `json:"fragment_sha256"`
	Toolchain      []string `json:"toolchain"` // pins of the tools that built it (build/toolchain.lock)
}

// Inputs lists everything that went into the image.
type Inputs struct {
	DebianPackages []DebianPackage  `json:"debian_packages"`
	Toolchain      []toolpin.Pin    `json:"toolchain"` // build/toolchain.lock, checked against the machine
	GoToolchain    string           `json:"go_toolchain"`
	GoBinaries     []GoBinaryInputs `json:"go_binaries"`
}

// DebianPackage is one Debian package used by the build, pinned by its .deb digest.
type DebianPackage struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	SHA256  string `json:"sha256"`
	Suite   string `json:"suite,omitempty"`
	Use     string `json:"use"`
}

// fileSHA256 returns the size and hex SHA-256 of a file.
func fileSHA256(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", fmt.Errorf("hash %s: %w", path, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// describeArtifacts hashes the named files of dir, in name order.
func describeArtifacts(dir string, names []string) ([]Artifact, error) {
	names = append([]string(nil), names...)
	sort.Strings(names)
	var arts []Artifact
	for _, n := range names {
		size, sum, err := fileSHA256(filepath.Join(dir, n))
		if err != nil {
			return nil, fmt.Errorf("describe artifact %s: %w", n, err)
		}
		arts = append(arts, Artifact{Name: n, Size: size, SHA256: sum})
	}
	return arts, nil
}

// sha256Sums formats artifacts in the format of sha256sum(1).
func sha256Sums(arts []Artifact) string {
	var b strings.Builder
	for _, a := range arts {
		fmt.Fprintf(&b, "%s  %s\n", a.SHA256, a.Name)
	}
	return b.String()
}
