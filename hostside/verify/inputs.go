package verify

import (
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	"github.com/google/go-sev-guest/verify/trust"
)

// ParseMeasurement reads a launch measurement in hex (96 digits).
func ParseMeasurement(s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.TrimPrefix(strings.TrimSpace(s), "0x"))
	if err != nil || len(b) != abi.MeasurementSize {
		return nil, fmt.Errorf("measurement %q: %w: want %d hex digits (SHA-384), as confguest measure prints", s, ErrInput, 2*abi.MeasurementSize)
	}
	return b, nil
}

// Measurements reads the expected measurements from arg: hex digits, or
// the path of a build's measurement.json (every launch path it lists is
// acceptable).
func Measurements(arg string) ([]Measurement, error) {
	if b, err := ParseMeasurement(arg); err == nil {
		return []Measurement{{Name: "given", Value: b}}, nil
	}
	data, err := os.ReadFile(arg)
	if err != nil {
		return nil, fmt.Errorf("measurement %q: %w: neither 96 hex digits nor a readable measurement.json: %w", arg, ErrInput, err)
	}
	return MeasurementsJSON(arg, data)
}

// MeasurementsJSON reads measurement.json as make image writes it: an
// object whose members (one per launch path) each carry a
// "measurement" in hex.
func MeasurementsJSON(name string, data []byte) ([]Measurement, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w: not a measurement.json: %w", name, ErrInput, err)
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []Measurement
	for _, k := range keys {
		var m struct {
			Measurement string `json:"measurement"`
		}
		if json.Unmarshal(doc[k], &m) != nil || m.Measurement == "" {
			continue
		}
		b, err := ParseMeasurement(m.Measurement)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", name, k, err)
		}
		out = append(out, Measurement{Name: k, Value: b})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: %w: no launch path with a \"measurement\": give the measurement.json of make image", name, ErrInput)
	}
	return out, nil
}

// tcbParts names the TCB components in the order AMD lists them.
var tcbParts = []struct {
	name string
	get  func(*kds.TCBParts) *uint8
}{
	{"bl", func(t *kds.TCBParts) *uint8 { return &t.BlSpl }},
	{"tee", func(t *kds.TCBParts) *uint8 { return &t.TeeSpl }},
	{"snp", func(t *kds.TCBParts) *uint8 { return &t.SnpSpl }},
	{"ucode", func(t *kds.TCBParts) *uint8 { return &t.UcodeSpl }},
}

// ParseTCB reads a minimum TCB: "bl=3,tee=0,snp=8,ucode=115" (any subset,
// the rest 0), or a TCB_VERSION as one hex number ("0x7308000000000003").
func ParseTCB(s string) (kds.TCBParts, error) {
	var t kds.TCBParts
	if strings.HasPrefix(s, "0x") {
		v, err := strconv.ParseUint(s[2:], 16, 64)
		if err != nil {
			return t, fmt.Errorf("TCB %q: %w: want a 64-bit hex TCB_VERSION", s, ErrInput)
		}
		return kds.DecomposeTCBVersion(kds.TCBVersion(v)), nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		n, err := strconv.ParseUint(v, 10, 8)
		idx := -1
		for i, p := range tcbParts {
			if p.name == k {
				idx = i
			}
		}
		if !ok || err != nil || idx < 0 {
			return t, fmt.Errorf("TCB %q: %w: want bl=N,tee=N,snp=N,ucode=N (0-255 each) or 0x<TCB_VERSION>", s, ErrInput)
		}
		*tcbParts[idx].get(&t) = uint8(n)
	}
	return t, nil
}

// FormatTCB prints a TCB as ParseTCB reads it.
func FormatTCB(t kds.TCBParts) string {
	var parts []string
	for _, p := range tcbParts {
		parts = append(parts, fmt.Sprintf("%s=%d", p.name, *p.get(&t)))
	}
	return strings.Join(parts, ",")
}

// decodeCert returns the DER bytes of a PEM or DER certificate.
func decodeCert(b []byte) ([]byte, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q, want CERTIFICATE", blk.Type)
		}
		return blk.Bytes, nil
	}
	if len(b) == 0 || b[0] != 0x30 {
		return nil, fmt.Errorf("neither PEM nor DER")
	}
	return b, nil
}

// productLines are the SEV-SNP product lines a root bundle may serve.
var productLines = []string{"Milan", "Genoa", "Turin"}

// RootsFromPEM reads an ASK and ARK pair in PEM (the cert_chain format
// of AMD's key distribution service) and trusts it, instead of the roots
// embedded in go-sev-guest, for every product line. For private test
// chains and for pinning one product's roots.
func RootsFromPEM(data []byte) (map[string][]*trust.AMDRootCerts, error) {
	out := map[string][]*trust.AMDRootCerts{}
	for _, pl := range productLines {
		r := trust.AMDRootCertsProduct(pl)
		if err := r.FromKDSCertBytes(data); err != nil {
			return nil, fmt.Errorf("%w: trusted roots: %w: want the ASK then the ARK certificate in PEM", ErrInput, err)
		}
		if r.ProductCerts.Ark == nil {
			return nil, fmt.Errorf("%w: trusted roots: no ARK certificate: want the ASK then the ARK certificate in PEM", ErrInput)
		}
		out[pl] = []*trust.AMDRootCerts{r}
	}
	return out, nil
}
