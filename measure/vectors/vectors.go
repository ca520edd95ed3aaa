// Package vectors (for tests only) loads the shared SEV-SNP measurement reference vectors
// (../shared/vectors from the repository root) for tests, and builds the synthetic
// kernel and initrd they describe.
package vectors

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// File is snp-measure.json.
type File struct {
	Inputs string `json:"inputs"`
	Cases  []Case `json:"cases"`
}

// Case is one launch and its expected measurement. Absent inputs are nil.
type Case struct {
	VMMType       string  `json:"vmm_type"` // "" is QEMU
	VCPUs         int     `json:"vcpus"`
	VCPUType      string  `json:"vcpu_type"`
	VCPUSig       string  `json:"vcpu_sig"`
	VCPUFamily    *int    `json:"vcpu_family"`
	VCPUModel     *int    `json:"vcpu_model"`
	VCPUStepping  *int    `json:"vcpu_stepping"`
	Kernel        *string `json:"kernel"`
	Initrd        *string `json:"initrd"`
	Append        *string `json:"append"`
	GuestFeatures string  `json:"guest_features"`
	SNPOVMFHash   string  `json:"snp_ovmf_hash"`
	Measurement   string  `json:"measurement"`
}

// Set is the loaded vectors: the cases, the firmware path and the synthetic inputs
// written to a temporary directory, by name.
type Set struct {
	File
	OVMF  string
	Files map[string]string
}

// Dir returns the vectors directory: ../shared/vectors from the repository root (the
// directory holding go.mod). When it is missing the test fails under CI=true and is
// skipped otherwise.
func Dir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
	v := filepath.Join(dir, "..", "shared", "vectors")
	if _, err := os.Stat(filepath.Join(v, "snp-measure.json")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("reference vectors missing under CI=true: %v", err)
		}
		t.Skipf("reference vectors not available: %v", err)
	}
	return v
}

// Load reads snp-measure.json, checks the firmware's digest against its description and
// writes the synthetic inputs into t.TempDir().
func Load(t testing.TB) *Set {
	t.Helper()
	dir := Dir(t)
	raw, err := os.ReadFile(filepath.Join(dir, "snp-measure.json"))
	if err != nil {
		t.Fatal(err)
	}
	s := &Set{OVMF: filepath.Join(dir, "OVMF.amdsev.fd")}
	if err := json.Unmarshal(raw, &s.File); err != nil {
		t.Fatalf("parse snp-measure.json: %v", err)
	}
	if len(s.Cases) == 0 {
		t.Fatal("snp-measure.json has no cases")
	}
	fw, err := os.ReadFile(s.OVMF)
	if err != nil {
		t.Fatal(err)
	}
	if m := firmwareRE.FindStringSubmatch(s.Inputs); m == nil {
		t.Fatalf("no firmware digest in the vectors' description %q", s.Inputs)
	} else if sum := sha256.Sum256(fw); !matches(sum[:], m[1]) {
		t.Fatalf("OVMF.amdsev.fd sha256 = %x, want %s", sum, m[1])
	}
	if s.Files, err = writeSynthetic(s.Inputs, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	return s
}

// Path returns the path of a named input, or "" for nil.
func (s *Set) Path(t testing.TB, name *string) string {
	t.Helper()
	if name == nil {
		return ""
	}
	p, ok := s.Files[*name]
	if !ok {
		t.Fatalf("input %q is not described in the vectors' inputs", *name)
	}
	return p
}

// Synthetic returns SHA-256("seed:0") || SHA-256("seed:1") || ... cut to size bytes.
func Synthetic(seed string, size int) []byte {
	b := make([]byte, 0, size+sha256.Size)
	for i := 0; len(b) < size; i++ {
		s := sha256.Sum256([]byte(seed + ":" + strconv.Itoa(i)))
		b = append(b, s[:]...)
	}
	return b[:size]
}

var (
	syntheticRE = regexp.MustCompile(`([\w.]+): seed '([^']*)', (\d+) bytes \(sha256 ([0-9a-f]+\.\.\.[0-9a-f]+)\)`)
	firmwareRE  = regexp.MustCompile(`Firmware: .*?sha256 ([0-9a-f]+\.\.\.[0-9a-f]+)`)
)

// matches checks a digest against an abbreviated "prefix...suffix" hex form.
func matches(sum []byte, abbrev string) bool {
	prefix, suffix, ok := strings.Cut(abbrev, "...")
	h := hex.EncodeToString(sum)
	return ok && strings.HasPrefix(h, prefix) && strings.HasSuffix(h, suffix)
}

// writeSynthetic creates in dir the synthetic inputs a description names.
func writeSynthetic(description, dir string) (map[string]string, error) {
	paths := map[string]string{}
	for _, m := range syntheticRE.FindAllStringSubmatch(description, -1) {
		name, seed, abbrev := m[1], m[2], m[4]
		size, err := strconv.Atoi(m[3])
		if err != nil {
			return nil, err
		}
		data := Synthetic(seed, size)
		if sum := sha256.Sum256(data); !matches(sum[:], abbrev) {
			return nil, fmt.Errorf("synthetic %s = sha256 %x, want %s", name, sum, abbrev)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return nil, err
		}
		paths[name] = p
	}
	if len(paths) < 2 {
		return nil, fmt.Errorf("found %d synthetic inputs in the vectors' description %q, want a kernel and an initrd", len(paths), description)
	}
	return paths, nil
}

// Extra reads a file of further cases in the same format (testdata computed with the
// reference tool on the same firmware and synthetic inputs).
func Extra(t testing.TB, path string) []Case {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f File
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	if len(f.Cases) == 0 {
		t.Fatalf("%s has no cases", path)
	}
	return f.Cases
}
