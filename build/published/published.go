// Package published reads and writes build/published.txt, the digests a build of the
// commit must reproduce: the SHA-256 of every artifact of the guest image and both expected
// SEV-SNP launch measurements. make verify-published rebuilds the image and compares it with
// the file; make publish-digests rewrites the file from a built image.
package published

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Kinds of entries.
const (
	SHA256    = "sha256"     // an artifact's SHA-256, named by its file name in the image directory
	SNPLaunch = "snp-launch" // an expected SEV-SNP launch measurement (SHA-384), named by launch path
)

// The launch paths of measurement.json.
const (
	LaunchQEMU            = "qemu_ovmf"
	LaunchCloudHypervisor = "cloud_hypervisor_igvm"
)

// Entry is one published digest.
type Entry struct {
	Kind  string
	Name  string
	Value string // lower-case hex
}

// Digests is the content of build/published.txt, in file order.
type Digests []Entry

var (
	hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)
	hex96 = regexp.MustCompile(`^[0-9a-f]{96}$`)
)

func (e Entry) check() error {
	switch e.Kind {
	case SHA256:
		if !hex64.MatchString(e.Value) {
			return fmt.Errorf("%s: %q is not a hex SHA-256", e.Name, e.Value)
		}
	case SNPLaunch:
		if e.Name != LaunchQEMU && e.Name != LaunchCloudHypervisor {
			return fmt.Errorf("unknown launch path %q (want %s or %s)", e.Name, LaunchQEMU, LaunchCloudHypervisor)
		}
		if !hex96.MatchString(e.Value) {
			return fmt.Errorf("%s: %q is not a hex SHA-384", e.Name, e.Value)
		}
	default:
		return fmt.Errorf("unknown kind %q (want %s or %s)", e.Kind, SHA256, SNPLaunch)
	}
	return nil
}

// Parse reads "kind name value" lines; # starts a comment. name names the input in errors.
func Parse(name string, r io.Reader) (Digests, error) {
	var d Digests
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(text)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("%s:%d: want \"kind name digest\", got %q", name, line, strings.TrimSpace(text))
		}
		e := Entry{Kind: f[0], Name: f[1], Value: f[2]}
		if err := e.check(); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		if seen[e.Kind+" "+e.Name] {
			return nil, fmt.Errorf("%s:%d: %s %s is listed twice", name, line, e.Kind, e.Name)
		}
		seen[e.Kind+" "+e.Name] = true
		d = append(d, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(d) == 0 {
		return nil, fmt.Errorf("%s: no digests: write it with make publish-digests", name)
	}
	return d, nil
}

// Read parses the file at path.
func Read(path string) (Digests, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read published digests: %w", err)
	}
	return Parse(path, bytes.NewReader(b))
}

const header = `# The digests a build of this commit reproduces: the SHA-256 of every artifact of the guest
# image (as in its SHA256SUMS) and the expected SEV-SNP launch measurements (SHA-384) of
# measurement.json. The build tools are pinned in build/toolchain.lock.
#   make verify-published   rebuilds the image and compares every entry
#   make publish-digests    rewrites this file from the built image (out/)
# A change that alters a guest artifact updates this file in the same commit
# (build/published's test fails otherwise). README: "Reproduce the published measurement".
`

// Format renders d as build/published.txt.
func Format(d Digests) []byte {
	var b bytes.Buffer
	b.WriteString(header)
	for _, e := range d {
		fmt.Fprintf(&b, "%-10s  %-21s  %s\n", e.Kind, e.Name, e.Value)
	}
	return b.Bytes()
}

// FromImage collects the digests of the image directory dir: every line of its SHA256SUMS
// and the two launch measurements of its measurement.json.
func FromImage(dir string) (Digests, error) {
	sums, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		return nil, fmt.Errorf("read the image's digests: %w: build it with make image", err)
	}
	var d Digests
	sc := bufio.NewScanner(bytes.NewReader(sums))
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			return nil, fmt.Errorf("%s/SHA256SUMS: %q is not \"sha256  name\"", dir, sc.Text())
		}
		d = append(d, Entry{Kind: SHA256, Name: name, Value: sum})
	}
	sort.SliceStable(d, func(i, j int) bool { return d[i].Name < d[j].Name })

	mj, err := os.ReadFile(filepath.Join(dir, "measurement.json"))
	if err != nil {
		return nil, fmt.Errorf("read the image's launch measurements: %w: build it with make image", err)
	}
	var m map[string]struct {
		Measurement string `json:"measurement"`
	}
	if err := json.Unmarshal(mj, &m); err != nil {
		return nil, fmt.Errorf("%s/measurement.json: %w", dir, err)
	}
	for _, launch := range []string{LaunchQEMU, LaunchCloudHypervisor} {
		d = append(d, Entry{Kind: SNPLaunch, Name: launch, Value: m[launch].Measurement})
	}
	for _, e := range d {
		if err := e.check(); err != nil {
			return nil, fmt.Errorf("image %s: %w", dir, err)
		}
	}
	return d, nil
}

// Difference is one entry that a build did not reproduce; an empty side is missing.
type Difference struct {
	Kind, Name string
	Published  string
	Built      string
}

func (d Difference) String() string {
	show := func(v string) string {
		if v == "" {
			return "(none)"
		}
		return v
	}
	return fmt.Sprintf("%s %s: published %s, built %s", d.Kind, d.Name, show(d.Published), show(d.Built))
}

// Compare lists every entry of published and built whose value differs or that one side
// lacks, in the published order followed by entries only the build has.
func Compare(pub, built Digests) []Difference {
	index := func(d Digests) map[string]string {
		m := map[string]string{}
		for _, e := range d {
			m[e.Kind+" "+e.Name] = e.Value
		}
		return m
	}
	p, b := index(pub), index(built)
	var diffs []Difference
	for _, e := range pub {
		if got := b[e.Kind+" "+e.Name]; got != e.Value {
			diffs = append(diffs, Difference{Kind: e.Kind, Name: e.Name, Published: e.Value, Built: got})
		}
	}
	for _, e := range built {
		if _, ok := p[e.Kind+" "+e.Name]; !ok {
			diffs = append(diffs, Difference{Kind: e.Kind, Name: e.Name, Built: e.Value})
		}
	}
	return diffs
}
