// Package toolpin reads build/toolchain.lock, the exact versions of the programs whose
// output becomes bytes of the guest image (compiler, assembler and linker, the compressor
// of the kernel payload, the host tools that generate kernel code and tables, mkfs.erofs,
// the Go toolchain), and checks a build machine against it. The image builders refuse to
// run on a machine that does not match, so two machines that build at all build the same
// bytes.
package toolpin

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
)

// The parts of the image a tool can reach, as named in the lock's "reaches" column.
const (
	Kernel = "kernel" // bzImage
	Init   = "init"   // /init in initramfs.cpio.gz
	Agent  = "agent"  // /sbin/agent in rootfs.img
	Rootfs = "rootfs" // the erofs filesystem of rootfs.img
)

var parts = []string{Kernel, Init, Agent, Rootfs}

// GoToolchain is the package name of the Go toolchain's pin. Its version is what
// `go env GOVERSION` prints and its digest is the h1 checksum of the golang.org/toolchain
// module of that version for linux-amd64 (the Go checksum database has it).
const GoToolchain = "go"

// Pin is one line of the lock: a Debian binary package (or the Go toolchain) at one version.
type Pin struct {
	Package  string   `json:"package"`
	Version  string   `json:"version"`
	Digest   string   `json:"digest"`             // sha256 of the .deb; for go, the toolchain module's h1 sum
	Reaches  []string `json:"reaches"`            // parts of the image its output becomes
	Programs []string `json:"programs,omitempty"` // commands the build runs that must be this package's files
	Use      string   `json:"use"`                // what it does in the build (the line's comment)
}

func (p Pin) String() string { return p.Package + " " + p.Version }

// reaches reports whether p's output becomes part of the image part.
func (p Pin) reaches(part string) bool { return slices.Contains(p.Reaches, part) }

// Lock is a parsed toolchain.lock.
type Lock struct {
	Path string // as given to Read, for messages
	Pins []Pin
}

// Read parses the lock file at path.
func Read(path string) (*Lock, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read tool pins: %w", err)
	}
	defer f.Close()
	pins, err := Parse(path, f)
	if err != nil {
		return nil, err
	}
	return &Lock{Path: path, Pins: pins}, nil
}

var (
	sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)
	h1Sum     = regexp.MustCompile(`^h1:[A-Za-z0-9+/]{43}=$`)
	goVersion = regexp.MustCompile(`^go1\.[0-9]+(\.[0-9]+)?$`)
)

// Parse reads lock lines: "package version digest reaches programs # use", where reaches
// and programs are comma-separated lists and programs may be "-". name names the input in
// errors.
func Parse(name string, r io.Reader) ([]Pin, error) {
	var pins []Pin
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text, use, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(text)
		if len(f) == 0 {
			continue
		}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%s:%d: %s", name, line, fmt.Sprintf(format, args...))
		}
		if len(f) != 5 {
			return nil, bad("want \"package version digest reaches programs # use\", got %d fields", len(f))
		}
		p := Pin{Package: f[0], Version: f[1], Digest: f[2], Reaches: strings.Split(f[3], ","), Use: strings.TrimSpace(use)}
		if f[4] != "-" {
			p.Programs = strings.Split(f[4], ",")
		}
		if seen[p.Package] {
			return nil, bad("%s is pinned twice", p.Package)
		}
		seen[p.Package] = true
		if p.Package == GoToolchain {
			if !goVersion.MatchString(p.Version) || !h1Sum.MatchString(p.Digest) {
				return nil, bad("go: want a version like go1.26.8 and the h1: sum of its golang.org/toolchain module, got %q %q", p.Version, p.Digest)
			}
		} else if !sha256Hex.MatchString(p.Digest) {
			return nil, bad("%s: digest %q is not the hex sha256 of a .deb", p.Package, p.Digest)
		}
		for _, part := range p.Reaches {
			if !slices.Contains(parts, part) {
				return nil, bad("%s: reaches %q: want some of %s", p.Package, part, strings.Join(parts, ","))
			}
		}
		if p.Use == "" {
			return nil, bad("%s: say what it does in a # comment", p.Package)
		}
		pins = append(pins, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(pins) == 0 {
		return nil, fmt.Errorf("%s: no pins", name)
	}
	return pins, nil
}

// For returns the pins whose output becomes the given parts of the image.
func (l *Lock) For(parts ...string) []Pin {
	var out []Pin
	for _, p := range l.Pins {
		if slices.ContainsFunc(parts, p.reaches) {
			out = append(out, p)
		}
	}
	return out
}

// Lines describes pins one per line ("package version digest"), the form the kernel's
// cache key and kernel.json use.
func Lines(pins []Pin) []string {
	out := make([]string, len(pins))
	for i, p := range pins {
		out[i] = p.Package + " " + p.Version + " " + p.Digest
	}
	return out
}
