package attest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	sevtest "github.com/google/go-sev-guest/testing"
	"github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"

	"confguest/agent/api/evidence"
	"confguest/agent/policy"
)

var testPolicy = []byte(`{"version":1}` + "\n")

// fakeDevice returns go-sev-guest's fake quote provider, answering the
// given REPORT_DATA values with reports signed by the library's test AMD
// chain, HOST_DATA = SHA-256(testPolicy).
func fakeDevice(t *testing.T, reportData ...[64]byte) (*sevtest.QuoteProvider, *sevtest.AmdSigner) {
	t.Helper()
	s, err := sevtest.DefaultTestOnlyCertChain("Milan-B1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	hd := sha256.Sum256(testPolicy)
	var tcs []sevtest.TestCase
	for _, rd := range reportData {
		raw := sevtest.CreateRawReport(&sevtest.TestReportOptions{ReportData: rd[:]})
		binary.LittleEndian.PutUint64(raw[0x08:], abi.SnpPolicyToBytes(abi.SnpPolicy{SMT: true}))
		copy(raw[0xC0:0xE0], hd[:])
		tcs = append(tcs, sevtest.TestCase{Input: rd, Output: raw})
	}
	qp, err := sevtest.TcQuoteProvider(tcs, &sevtest.DeviceOptions{Now: time.Now(), Signer: s, Product: abi.DefaultSevProduct()})
	if err != nil {
		t.Fatal(err)
	}
	return qp, s
}

// checkSigned verifies ev with go-sev-guest's verifier against the test chain.
func checkSigned(t *testing.T, s *sevtest.AmdSigner, ev Evidence) {
	t.Helper()
	att, err := abi.ReportCertsToProto(ev.Raw())
	if err != nil {
		t.Fatalf("parse evidence: %v", err)
	}
	r := trust.AMDRootCertsProduct("Milan")
	r.ProductCerts = &trust.ProductCerts{Ark: s.Ark, Ask: s.Ask}
	opts := &verify.Options{DisableCertFetching: true, TrustedRoots: map[string][]*trust.AMDRootCerts{"Milan": {r}}, Now: time.Now()}
	if err := verify.SnpAttestation(att, opts); err != nil {
		t.Errorf("evidence does not verify: %v", err)
	}
}

func TestHostDataBindsPolicy(t *testing.T) {
	qp, _ := fakeDevice(t, evidence.ReportData(evidence.HostDataRead, evidence.NoPolicy, nil))
	a := New(qp)
	ctx := context.Background()
	hd, err := a.HostData(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if hd != sha256.Sum256(testPolicy) {
		t.Fatalf("HostData() = %x, want SHA-256 of the policy", hd)
	}
	changed := bytes.Clone(testPolicy)
	changed[len(changed)-1] = ' ' // the same policy, another hash
	tests := []struct {
		name    string
		doc     []byte
		wantErr error
	}{
		{"matching policy", testPolicy, nil},
		{"one changed byte", changed, policy.ErrNotBound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := policy.NewGate(a, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err := g.Install(ctx, tc.doc); !errors.Is(err, tc.wantErr) {
				t.Errorf("Install(%s) with the fake SEV-SNP device = %v, want %v", tc.name, err, tc.wantErr)
			}
		})
	}
}

// TestReport checks that the attester never signs caller data as given:
// REPORT_DATA is evidence.ReportData of the purpose, the policy in force
// and the data, different for each purpose and policy.
func TestReport(t *testing.T) {
	pol := sha256.Sum256(testPolicy)
	data := []byte("nonce")
	var raw [64]byte
	copy(raw[:], data)
	tests := []struct {
		purpose evidence.Purpose
		policy  [32]byte
	}{
		{evidence.HostReport, pol},
		{evidence.WorkloadEvidence, pol},
		{evidence.HostReport, evidence.NoPolicy},
		{evidence.WorkloadEvidence, evidence.NoPolicy},
	}
	var known [][64]byte
	for _, tc := range tests {
		known = append(known, evidence.ReportData(tc.purpose, tc.policy, data))
	}
	qp, s := fakeDevice(t, append(known, raw)...)
	a := New(qp)
	seen := map[string]bool{string(raw[:]): true}
	for _, tc := range tests {
		ev, err := a.Report(context.Background(), tc.purpose, tc.policy, data)
		if err != nil {
			t.Fatalf("Report(%q, %x, %q) = %v", tc.purpose, tc.policy[:4], data, err)
		}
		if len(ev.Report) != abi.ReportSize || len(ev.Certificates) == 0 {
			t.Fatalf("Report() = %d-byte report, %d bytes of certificates, want %d and some", len(ev.Report), len(ev.Certificates), abi.ReportSize)
		}
		checkSigned(t, s, ev)
		r, err := abi.ReportToProto(ev.Report)
		want := evidence.ReportData(tc.purpose, tc.policy, data)
		if err != nil || !bytes.Equal(r.GetReportData(), want[:]) || seen[string(want[:])] {
			t.Errorf("Report(%q, %x, %q): REPORT_DATA %x (%v), want %x, unlike the raw data and every other purpose or policy", tc.purpose, tc.policy[:4], data, r.GetReportData(), err, want)
		}
		seen[string(want[:])] = true
		again, err := Split(ev.Raw())
		if err != nil || !bytes.Equal(again.Report, ev.Report) || !bytes.Equal(again.Certificates, ev.Certificates) {
			t.Errorf("Split(Raw()) = %v, want the same evidence", err)
		}
	}
	if _, err := a.Report(context.Background(), evidence.HostReport, pol, []byte("other")); err == nil {
		t.Errorf("Report(unknown report data) = nil error, want the device's error")
	}
}

func TestNoDevice(t *testing.T) {
	for _, a := range []*Attester{nil, New(nil)} {
		if _, err := a.Report(context.Background(), evidence.HostReport, evidence.NoPolicy, nil); !errors.Is(err, ErrNoDevice) || !strings.Contains(err.Error(), "confguest.tee=none") {
			t.Errorf("Report() without a device = %v, want ErrNoDevice naming confguest.tee=none", err)
		}
		if _, err := a.HostData(context.Background()); !errors.Is(err, ErrNoDevice) {
			t.Errorf("HostData() without a device = %v, want ErrNoDevice", err)
		}
	}
}

// serveOn serves a's endpoint on a fresh unix socket and returns an HTTP
// client (Go's own) dialing it, and the socket path.
func serveOn(t *testing.T, a *Attester) (*http.Client, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "attestation.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, a, func() [32]byte { return sha256.Sum256(testPolicy) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve() after cancel = %v, want nil", err)
		}
	})
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}, sock
}

func TestEvidenceEndpoint(t *testing.T) {
	runtime := []byte("a workload's public key and nonce")
	want := evidence.ReportData(evidence.WorkloadEvidence, sha256.Sum256(testPolicy), runtime)
	qp, s := fakeDevice(t, want)
	hc, _ := serveOn(t, New(qp))
	noTEE, _ := serveOn(t, New(nil))
	b64 := base64.RawURLEncoding.EncodeToString(runtime)
	const base = "http://guest"
	tests := []struct {
		name     string
		client   *http.Client
		url      string
		method   string
		wantCode int
		wantBody string
	}{
		{"evidence", hc, base + EvidencePath + "?runtime_data=" + b64, "GET", 200, `"report_data"`},
		{"padded base64url", hc, base + EvidencePath + "?runtime_data=" + base64.URLEncoding.EncodeToString(runtime), "GET", 200, `"report_data"`},
		{"no runtime data", hc, base + EvidencePath, "GET", 400, "runtime_data: give exactly one"},
		{"twice", hc, base + EvidencePath + "?runtime_data=a&runtime_data=b", "GET", 400, "runtime_data: give exactly one"},
		{"bad query", hc, base + EvidencePath + "?runtime_data=%zz", "GET", 400, "runtime_data: give exactly one"},
		{"not base64url", hc, base + EvidencePath + "?runtime_data=a+b/", "GET", 400, "not base64url"},
		{"too large", hc, base + EvidencePath + "?runtime_data=" + base64.RawURLEncoding.EncodeToString(make([]byte, MaxRuntimeData+1)), "GET", 400, "at most"},
		{"post", hc, base + EvidencePath + "?runtime_data=" + b64, "POST", 405, "use GET"},
		{"other path", hc, base + "/aa/evidence", "GET", 404, "not found"},
		{"unknown report data", hc, base + EvidencePath + "?runtime_data=eHg", "GET", 500, "get SEV-SNP report"},
		{"no SEV-SNP device", noTEE, base + EvidencePath + "?runtime_data=" + b64, "GET", 503, "no SEV-SNP device"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, tc.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := tc.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantCode || !strings.Contains(string(body), tc.wantBody) || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("%s %s = %d %.300s, want %d with %q", tc.method, tc.name, resp.StatusCode, body, tc.wantCode, tc.wantBody)
			}
			if tc.wantCode != 200 {
				return
			}
			var er EvidenceResponse
			if err := json.Unmarshal(body, &er); err != nil {
				t.Fatal(err)
			}
			r, err := abi.ReportToProto(er.Report)
			pol := sha256.Sum256(testPolicy)
			if err != nil || !bytes.Equal(r.GetReportData(), want[:]) || er.ReportData != hex.EncodeToString(want[:]) || er.PolicySHA256 != hex.EncodeToString(pol[:]) {
				t.Errorf("evidence REPORT_DATA = %x (%v), fields %s and policy %s, want workload evidence %x under policy %x", r.GetReportData(), err, er.ReportData, er.PolicySHA256, want, pol)
			}
			checkSigned(t, s, Evidence{Report: er.Report, Certificates: er.Certificates})
		})
	}
}

// TestEvidenceEndpointRaw sends requests Go's client would not.
func TestEvidenceEndpointRaw(t *testing.T) {
	_, sock := serveOn(t, New(nil))
	tests := []struct {
		name, req, want string
	}{
		{"garbage", "hello\r\n\r\n", "HTTP/1.1 400 Bad Request"},
		{"no version", "GET /v1/evidence\r\n\r\n", "HTTP/1.1 400 Bad Request"},
		{"truncated head", "GET /v1/evidence?runtime_data=eA HTTP/1.1\r\nHost: x\r\n", "HTTP/1.1 400 Bad Request"},
		{"http/1.0", "GET /v1/evidence?runtime_data=eA HTTP/1.0\r\n\r\n", "HTTP/1.1 503 Service Unavailable"},
		{"bare newlines", "GET /v1/evidence?runtime_data=eA HTTP/1.1\nHost: x\n\n", "HTTP/1.1 503 Service Unavailable"},
		{"head too large", "GET /v1/evidence?runtime_data=" + strings.Repeat("A", maxRequestHead) + " HTTP/1.1\r\n\r\n", "HTTP/1.1 431 Request Header Fields Too Large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			go func() {
				// The server may answer and close before reading it all.
				io.WriteString(c, tc.req) //nolint:errcheck
				if uc, ok := c.(*net.UnixConn); ok {
					uc.CloseWrite()
				}
			}()
			got, _ := io.ReadAll(c)
			if !strings.HasPrefix(string(got), tc.want) {
				t.Errorf("answer to %.80q = %.200q, want %q...", tc.req, got, tc.want)
			}
		})
	}
}

// FuzzReadRequest checks the request parser never panics and only
// returns targets starting with "/".
func FuzzReadRequest(f *testing.F) {
	f.Add([]byte("GET /v1/evidence?runtime_data=eA HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.0\n\n"))
	f.Add([]byte("GET  HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, req []byte) {
		method, target, err := readRequest(bufio.NewReaderSize(bytes.NewReader(req), 16))
		if err == nil && (method == "" || !strings.HasPrefix(target, "/")) {
			t.Fatalf("readRequest(%q) = %q, %q, want a method and an absolute target", req, method, target)
		}
	})
}
