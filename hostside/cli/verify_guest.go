package cli

import (
	"context"
	"crypto/rand"
	"fmt"

	agentv1 "confguest/agent/api/v1"
	"confguest/hostside/launcher"
)

// fetchReport asks the agent of a running guest for a fresh extended
// report bound to a random 64-byte nonce, and returns both.
func fetchReport(ctx context.Context, agent agentv1.AgentClient) (ext, nonce []byte, err error) {
	nonce = make([]byte, 64)
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, fmt.Errorf("nonce: %w", err)
	}
	r, err := agent.GetReport(ctx, &agentv1.GetReportRequest{ReportData: nonce})
	if err != nil {
		return nil, nil, fmt.Errorf("get report from the guest: %w", err)
	}
	return r.GetExtendedReport(), nonce, nil
}

// fetchGuestReport attaches to the running guest name and fetches a
// report from it.
func fetchGuestReport(ctx context.Context, runDir, name string) (ext, nonce []byte, err error) {
	g, _, err := launcher.Attach(ctx, runDir, name)
	if err != nil {
		return nil, nil, err
	}
	defer g.Release()
	return fetchReport(ctx, g.Agent())
}
