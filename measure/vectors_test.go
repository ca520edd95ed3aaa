package measure

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

// vectorsDir finds the shared reference vectors: ../shared/vectors from the repository
// root (the directory holding go.mod). Outside CI a missing directory skips the test.
func vectorsDir(t testing.TB) string {
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
			t.Fatalf("reference vectors missing under CI: %v", err)
		}
		t.Skipf("reference vectors not available: %v", err)
	}
	return v
}

type vectorFile struct {
	Inputs string       `json:"inputs"`
	Cases  []vectorCase `json:"cases"`
}

type vectorCase struct {
	VCPUs         int     `json:"vcpus"`
	VCPUType      string  `json:"vcpu_type"`
	Kernel        *string `json:"kernel"`
	Initrd        *string `json:"initrd"`
	Append        *string `json:"append"`
	GuestFeatures string  `json:"guest_features"`
	Measurement   string  `json:"measurement"`
}

// synthetic builds a file as the vectors describe it: SHA-256 of "seed:i" for i = 0, 1,
// ... concatenated and cut to size.
func synthetic(seed string, size int) []byte {
	b := make([]byte, 0, size+sha256.Size)
	for i := 0; len(b) < size; i++ {
		s := sha256.Sum256([]byte(seed + ":" + strconv.Itoa(i)))
		b = append(b, s[:]...)
	}
	return b[:size]
}

// digestMatches checks a sum against an abbreviated "prefix...suffix" form.
func digestMatches(sum []byte, abbrev string) bool {
	prefix, suffix, ok := strings.Cut(abbrev, "...")
	h := hex.EncodeToString(sum)
	return ok && strings.HasPrefix(h, prefix) && strings.HasSuffix(h, suffix)
}

var syntheticRE = regexp.MustCompile(`([\w.]+): seed '([^']*)', (\d+) bytes \(sha256 ([0-9a-f]+\.\.\.[0-9a-f]+)\)`)

// writeSynthetic creates the synthetic inputs the vectors' description names in dir.
func writeSynthetic(t *testing.T, description, dir string) map[string]string {
	t.Helper()
	paths := map[string]string{}
	for _, m := range syntheticRE.FindAllStringSubmatch(description, -1) {
		name, seed, abbrev := m[1], m[2], m[4]
		size, err := strconv.Atoi(m[3])
		if err != nil {
			t.Fatal(err)
		}
		data := synthetic(seed, size)
		if sum := sha256.Sum256(data); !digestMatches(sum[:], abbrev) {
			t.Fatalf("synthetic %s = sha256 %x, want %s", name, sum, abbrev)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		paths[name] = p
	}
	if len(paths) < 2 {
		t.Fatalf("found %d synthetic inputs in the vectors' description %q, want kernel and initrd", len(paths), description)
	}
	return paths
}

func TestReferenceVectors(t *testing.T) {
	dir := vectorsDir(t)
	raw, err := os.ReadFile(filepath.Join(dir, "snp-measure.json"))
	if err != nil {
		t.Fatal(err)
	}
	var vf vectorFile
	if err := json.Unmarshal(raw, &vf); err != nil {
		t.Fatalf("parse snp-measure.json: %v", err)
	}
	if len(vf.Cases) == 0 {
		t.Fatal("snp-measure.json has no cases")
	}
	ovmf := filepath.Join(dir, "OVMF.amdsev.fd")
	fwData, err := os.ReadFile(ovmf)
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`Firmware: .*?sha256 ([0-9a-f]+\.\.\.[0-9a-f]+)`).FindStringSubmatch(vf.Inputs); m == nil {
		t.Errorf("no firmware digest in the vectors' description")
	} else if sum := sha256.Sum256(fwData); !digestMatches(sum[:], m[1]) {
		t.Errorf("OVMF.amdsev.fd sha256 = %x, want %s", sum, m[1])
	}
	files := writeSynthetic(t, vf.Inputs, t.TempDir())

	for i, c := range vf.Cases {
		o := Options{OVMF: ovmf, VCPUs: c.VCPUs, VCPUType: c.VCPUType}
		if o.GuestFeatures, err = strconv.ParseUint(c.GuestFeatures, 0, 64); err != nil {
			t.Fatalf("case %d: guest_features %q: %v", i, c.GuestFeatures, err)
		}
		for _, f := range []struct {
			name *string
			dst  *string
		}{{c.Kernel, &o.Kernel}, {c.Initrd, &o.Initrd}} {
			if f.name == nil {
				continue
			}
			p, ok := files[*f.name]
			if !ok {
				t.Fatalf("case %d: input %q is not described in the vectors' inputs", i, *f.name)
			}
			*f.dst = p
		}
		if c.Append != nil {
			o.Append = *c.Append
		}
		name := fmt.Sprintf("%d-%s-%dvcpu-features%s-kernel%t-initrd%t-append%t",
			i, c.VCPUType, c.VCPUs, c.GuestFeatures, c.Kernel != nil, c.Initrd != nil, c.Append != nil)
		t.Run(name, func(t *testing.T) {
			got, err := SNP(o)
			if err != nil {
				t.Fatalf("SNP(%+v) error: %v", o, err)
			}
			if got.String() != c.Measurement {
				t.Errorf("SNP(%+v) = %s, want %s", o, got, c.Measurement)
			}
		})
	}
}
