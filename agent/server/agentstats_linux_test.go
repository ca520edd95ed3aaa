package server

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	agentv1 "confguest/agent/api/v1"
	"confguest/agent/container"
)

func TestParseAgentStats(t *testing.T) {
	const status = "Name:\tagent\nVmHWM:\t   14020 kB\nVmRSS:\t   13312 kB\nRssAnon:\t    2448 kB\nRssFile:\t   10864 kB\nRssShmem:\t       0 kB\nThreads:\t7\n"
	tests := []struct {
		name    string
		status  string
		want    *agentv1.AgentStats
		wantErr string
	}{
		{"all fields", status, &agentv1.AgentStats{RssBytes: 13312 << 10, RssAnonBytes: 2448 << 10, RssFileBytes: 10864 << 10,
			PeakRssBytes: 14020 << 10, Threads: 7}, ""},
		{"no RssAnon", strings.Replace(status, "RssAnon:", "Rss_Anon:", 1), nil, "RssAnon missing"},
		{"not kB", strings.Replace(status, "13312 kB", "13312 MB", 1), nil, "VmRSS"},
		{"not a number", strings.Replace(status, "Threads:\t7", "Threads:\tseven", 1), nil, "Threads"},
		{"empty", "", nil, "RssAnon, RssFile, Threads, VmHWM, VmRSS missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseAgentStats(tc.status)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseAgentStats(%q) = %v, %v; want an error naming %q", tc.status, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got.String() != tc.want.String() {
				t.Fatalf("parseAgentStats(%q) = %v, %v; want %v", tc.status, got, err, tc.want)
			}
		})
	}
}

// TestAgentStats asks the agent for its own memory through the API: the
// agent of these tests runs in the test process, so its figures are this
// process's.
func TestAgentStats(t *testing.T) {
	ta := startAgent(t, nil, container.Config{})
	r, err := ta.client.Stats(ctx(t), &agentv1.StatsRequest{})
	if err != nil {
		t.Fatalf("Stats(agent) = %v", err)
	}
	a := r.GetAgent()
	if a.GetRssBytes() == 0 || a.GetRssAnonBytes() == 0 || a.GetRssFileBytes() == 0 || a.GetThreads() == 0 {
		t.Errorf("Stats(agent) = %v, want resident, anonymous and file memory and threads", r)
	}
	if a.GetRssAnonBytes()+a.GetRssFileBytes() > a.GetRssBytes() || a.GetPeakRssBytes() < a.GetRssBytes() {
		t.Errorf("Stats(agent) = %v, want RssAnon+RssFile <= VmRSS <= VmHWM", r)
	}
	if r.GetMemory() != nil || r.GetPids() != nil {
		t.Errorf("Stats(agent) = %v, want no container figures", r)
	}
	for _, id := range []string{"../x", "a/b", strings.Repeat("a", 65), "a\x00b"} {
		if _, err := ta.client.Stats(ctx(t), &agentv1.StatsRequest{ContainerId: id}); code(err) != codes.InvalidArgument {
			t.Errorf("Stats(%q) = %v, want InvalidArgument", id, err)
		}
	}
	if _, err := ta.client.Stats(ctx(t), &agentv1.StatsRequest{ContainerId: "none"}); code(err) != codes.NotFound {
		t.Errorf("Stats(%q) = %v, want NotFound", "none", err)
	}
}
