package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"confguest/agent/api/evidence"
	agentv1 "confguest/agent/api/v1"
)

// reportAgent serves GetReport from a go-sev-guest fake device; the
// other calls are not used (the embedded nil interface panics if one is).
type reportAgent struct {
	agentv1.AgentService
	report func(nonce []byte) []byte
}

func (a reportAgent) GetReport(_ context.Context, r *agentv1.GetReportRequest) (*agentv1.GetReportResponse, error) {
	if len(r.GetReportData()) != 64 {
		return nil, status.Errorf(codes.InvalidArgument, "want a 64-byte nonce")
	}
	return &agentv1.GetReportResponse{ExtendedReport: a.report(r.GetReportData())}, nil
}

func TestFetchReport(t *testing.T) {
	s := sevSigner(t, false)
	policyDoc := []byte(`{"version":1}`)
	hd := sha256.Sum256(policyDoc)
	m := bytes.Repeat([]byte{3}, 48)
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	agentv1.RegisterAgentService(srv, reportAgent{report: func(nonce []byte) []byte {
		rd := evidence.ReportData(evidence.HostReport, hd, nonce)
		b, err := os.ReadFile(signedReport(t, s, m, hd[:], rd[:], false))
		if err != nil {
			t.Error(err)
		}
		return b
	}})
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), l)
	defer srv.Close()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c := ttrpc.NewClient(conn)
	defer c.Close()
	ext, nonce, err := fetchReport(context.Background(), agentv1.NewAgentClient(c))
	if err != nil {
		t.Fatal(err)
	}
	_, nonce2, err := fetchReport(context.Background(), agentv1.NewAgentClient(c))
	if err != nil || bytes.Equal(nonce, nonce2) {
		t.Errorf("two fetches used the same nonce %x (%v): want a fresh random one each time", nonce, err)
	}
	dir := t.TempDir()
	rep := filepath.Join(dir, "report.bin")
	pol := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(rep, ext, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pol, policyDoc, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI("verify", "--report", rep, "--measurement", hex.EncodeToString(m), "--policy", pol, "--data", hex.EncodeToString(nonce))
	if code != 1 || !strings.Contains(out, "REJECTED: 1 violation") || !strings.Contains(out, "SIGNATURE") {
		t.Errorf("verify of the fetched report (test chain, built-in roots) = %d\n%s%s\nwant only the SIGNATURE violation", code, out, errOut)
	}
	if code, _, errOut := runCLI("verify", "--guest", "nosuch", "--run-dir", dir, "--measurement", hex.EncodeToString(m), "--policy", pol); code != 1 || !strings.Contains(errOut, `guest "nosuch"`) {
		t.Errorf("verify --guest nosuch = %d %s, want 1 naming the guest", code, errOut)
	}
	if code, _, errOut := runCLI("verify", "--guest", "g", "--report", rep, "--measurement", hex.EncodeToString(m), "--policy", pol); code != 2 || !strings.Contains(errOut, "give one of --report and --guest") {
		t.Errorf("verify --guest with --report = %d %s, want a usage error", code, errOut)
	}
	if code, _, errOut := runCLI("verify", "--guest", "g", "--purpose", "workload-evidence", "--measurement", hex.EncodeToString(m), "--policy", pol); code != 2 || !strings.Contains(errOut, "--guest fetches a host report") {
		t.Errorf("verify --guest --purpose workload-evidence = %d %s, want a usage error", code, errOut)
	}
}
