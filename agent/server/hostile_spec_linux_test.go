package server

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	agentv1 "confguest/agent/api/v1"
	"confguest/agent/container"
)

// capLines returns the Cap* lines of a /proc/<pid>/status.
func capLines(status string) map[string]string {
	caps := map[string]string{}
	for _, line := range strings.Split(status, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.HasPrefix(k, "Cap") {
			caps[k] = strings.TrimSpace(v)
		}
	}
	return caps
}

// TestCapabilitiesAbsentMeansNone runs real containers as a hostile host
// would send them: a spec or exec process without process.capabilities
// must run with every capability set empty, never with the agent's own
// (libcontainer keeps its caller's capabilities when given none).
func TestCapabilitiesAbsentMeansNone(t *testing.T) {
	const zero = "0000000000000000"
	killOnly := "0000000000000020" // CAP_KILL is bit 5
	tests := []struct {
		name string
		caps *specs.LinuxCapabilities
		exec bool // read the status of an exec'd process without capabilities
		want map[string]string
	}{
		{"init without process.capabilities", nil, false,
			map[string]string{"CapInh": zero, "CapPrm": zero, "CapEff": zero, "CapBnd": zero, "CapAmb": zero}},
		{"init with bounding only", &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL"}}, false,
			map[string]string{"CapInh": zero, "CapPrm": zero, "CapEff": zero, "CapBnd": killOnly, "CapAmb": zero}},
		{"exec without process.capabilities", &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL"}, Effective: []string{"CAP_KILL"}, Permitted: []string{"CAP_KILL"}}, true,
			map[string]string{"CapInh": zero, "CapPrm": zero, "CapEff": zero, "CapBnd": zero, "CapAmb": zero}},
	}
	ta := startAgent(t, nil, container.Config{})
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := "caps-" + string(rune('a'+i))
			s := specconv.Example()
			s.Hostname = "caps"
			s.Process.Capabilities = tc.caps
			s.Process.Args = []string{"cat", "/proc/self/status"}
			if tc.exec {
				s.Process.Args = []string{"sleep", "30"}
			}
			b, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			ta.create(t, id, b, nil)
			ta.removeOnCleanup(t, id)
			exec := ""
			out := ta.readOutput(t, id, "", agentv1.OutputStream_OUTPUT_STREAM_STDOUT)
			if _, err := ta.client.StartContainer(ctx(t), &agentv1.StartContainerRequest{ContainerId: id}); err != nil {
				t.Fatalf("StartContainer = %v", err)
			}
			if tc.exec {
				exec = "status"
				p, err := json.Marshal(specs.Process{Args: []string{"cat", "/proc/self/status"}, Env: []string{"PATH=/bin"}, Cwd: "/"})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := ta.client.ExecProcess(ctx(t), &agentv1.ExecProcessRequest{ContainerId: id, ExecId: exec, ProcessJson: p}); err != nil {
					t.Fatalf("ExecProcess = %v", err)
				}
				out = ta.readOutput(t, id, exec, agentv1.OutputStream_OUTPUT_STREAM_STDOUT)
			}
			ta.wait(t, id, exec)
			status, _ := out()
			got := capLines(status)
			for k, want := range tc.want {
				if got[k] != want {
					t.Errorf("%s: %s = %q, want %q", tc.name, k, got[k], want)
				}
			}
		})
	}
}

// TestExecKeepsNoNewPrivileges execs a process asking for no_new_privileges
// off in a container that has it on, with no policy to refuse the request:
// what runs still has it on.
func TestExecKeepsNoNewPrivileges(t *testing.T) {
	ta := startAgent(t, nil, container.Config{})
	const id = "nnp"
	s := specconv.Example()
	s.Process.Args = []string{"sleep", "30"}
	s.Process.NoNewPrivileges = true
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	ta.createStarted(t, id, b)
	p, err := json.Marshal(specs.Process{Args: []string{"cat", "/proc/self/status"}, Env: []string{"PATH=/bin"}, Cwd: "/", NoNewPrivileges: false})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ta.client.ExecProcess(ctx(t), &agentv1.ExecProcessRequest{ContainerId: id, ExecId: "status", ProcessJson: p}); err != nil {
		t.Fatalf("ExecProcess = %v", err)
	}
	out := ta.readOutput(t, id, "status", agentv1.OutputStream_OUTPUT_STREAM_STDOUT)
	ta.wait(t, id, "status")
	if status, _ := out(); !strings.Contains(status, "NoNewPrivs:\t1\n") {
		t.Errorf("exec asking for noNewPrivileges false in a container with it on: /proc/self/status has no NoNewPrivs 1:\n%s", status)
	}
}
