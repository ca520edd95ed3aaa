package server

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer/specconv"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentv1 "confguest/agent/api/v1"
	"confguest/agent/container"
)

func TestRequestValidation(t *testing.T) {
	ta := startAgent(t, nil, container.Config{})
	good := spec(t, false, "true")
	dirRootfs := &agentv1.Rootfs{Source: &agentv1.Rootfs_GuestDirectory{GuestDirectory: ta.image}}
	withSpec := func(edit func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		b, _ := json.Marshal(m)
		return b
	}
	tests := []struct {
		name     string
		req      *agentv1.CreateContainerRequest
		wantCode codes.Code
		wantText string // must appear in the message
	}{
		{"empty id", &agentv1.CreateContainerRequest{ContainerId: "", SpecJson: good, Rootfs: dirRootfs}, codes.InvalidArgument, "container_id"},
		{"dotdot id", &agentv1.CreateContainerRequest{ContainerId: "../x", SpecJson: good, Rootfs: dirRootfs}, codes.InvalidArgument, "container_id"},
		{"overlong id", &agentv1.CreateContainerRequest{ContainerId: strings.Repeat("a", 65), SpecJson: good, Rootfs: dirRootfs}, codes.InvalidArgument, "container_id"},
		{"nul id", &agentv1.CreateContainerRequest{ContainerId: "a\x00b", SpecJson: good, Rootfs: dirRootfs}, codes.InvalidArgument, "container_id"},
		{"no spec", &agentv1.CreateContainerRequest{ContainerId: "v1", Rootfs: dirRootfs}, codes.InvalidArgument, "spec_json"},
		{"spec not json", &agentv1.CreateContainerRequest{ContainerId: "v1", SpecJson: []byte("{"), Rootfs: dirRootfs}, codes.InvalidArgument, "spec_json"},
		{"no args", &agentv1.CreateContainerRequest{ContainerId: "v1", Rootfs: dirRootfs, SpecJson: withSpec(func(m map[string]any) {
			m["process"].(map[string]any)["args"] = []string{}
		})}, codes.InvalidArgument, "process.args"},
		{"bind from guest root", &agentv1.CreateContainerRequest{ContainerId: "v1", Rootfs: dirRootfs, SpecJson: withSpec(func(m map[string]any) {
			m["mounts"] = append(m["mounts"].([]any), map[string]any{"destination": "/host", "type": "bind", "source": "/etc", "options": []string{"rbind"}})
		})}, codes.InvalidArgument, "mounts[7].source"},
		{"no rootfs", &agentv1.CreateContainerRequest{ContainerId: "v1", SpecJson: good}, codes.InvalidArgument, "rootfs"},
		{"rootfs outside image dirs", &agentv1.CreateContainerRequest{ContainerId: "v1", SpecJson: good,
			Rootfs: &agentv1.Rootfs{Source: &agentv1.Rootfs_GuestDirectory{GuestDirectory: "/"}}}, codes.InvalidArgument, "rootfs.guest_directory"},
		{"block rootfs without verity", &agentv1.CreateContainerRequest{ContainerId: "v1", SpecJson: good,
			Rootfs: &agentv1.Rootfs{Source: &agentv1.Rootfs_Block{Block: &agentv1.BlockRootfs{Path: "/dev/vdb"}}}}, codes.InvalidArgument, "rootfs.block.verity"},
		{"block rootfs bad hash", &agentv1.CreateContainerRequest{ContainerId: "v1", SpecJson: good,
			Rootfs: &agentv1.Rootfs{Source: &agentv1.Rootfs_Block{Block: &agentv1.BlockRootfs{Path: "/dev/vdb",
				Verity: &agentv1.Verity{RootHash: "zz", DataBlocks: 1, HashOffset: 4096}}}}}, codes.InvalidArgument, "root_hash"},
		{"block rootfs path outside /dev", &agentv1.CreateContainerRequest{ContainerId: "v1", SpecJson: good,
			Rootfs: &agentv1.Rootfs{Source: &agentv1.Rootfs_Block{Block: &agentv1.BlockRootfs{Path: "/dev/../etc/passwd",
				Verity: &agentv1.Verity{RootHash: strings.Repeat("ab", 32), DataBlocks: 1, HashOffset: 4096}}}}}, codes.InvalidArgument, "rootfs.block.path"},
		{"invalid hostname without uts namespace", &agentv1.CreateContainerRequest{ContainerId: "v1", Rootfs: dirRootfs, SpecJson: withSpec(func(m map[string]any) {
			l := m["linux"].(map[string]any)
			var keep []any
			for _, ns := range l["namespaces"].([]any) {
				if ns.(map[string]any)["type"] != "uts" {
					keep = append(keep, ns)
				}
			}
			l["namespaces"] = keep
		})}, codes.InvalidArgument, "spec_json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ta.client.CreateContainer(ctx(t), tc.req)
			if code(err) != tc.wantCode || !strings.Contains(status.Convert(err).Message(), tc.wantText) {
				t.Fatalf("CreateContainer(%s) = %v, want %v naming %q", tc.name, err, tc.wantCode, tc.wantText)
			}
		})
	}
	if left := leftovers(t, ta.stateDir, "v1", 0); len(left) > 0 {
		t.Errorf("failed creates left behind:\n%s", strings.Join(left, "\n"))
	}

	refTests := []struct {
		name     string
		call     func() error
		wantCode codes.Code
	}{
		{"start unknown", func() error {
			_, err := ta.client.StartContainer(ctx(t), &agentv1.StartContainerRequest{ContainerId: "ghost"})
			return err
		}, codes.NotFound},
		{"wait unknown", func() error {
			_, err := ta.client.WaitProcess(ctx(t), &agentv1.WaitProcessRequest{Process: &agentv1.ProcessRef{ContainerId: "ghost"}})
			return err
		}, codes.NotFound},
		{"delete bad id", func() error {
			_, err := ta.client.DeleteContainer(ctx(t), &agentv1.DeleteContainerRequest{ContainerId: "a/b"})
			return err
		}, codes.InvalidArgument},
		{"exec into unknown", func() error {
			_, err := ta.client.ExecProcess(ctx(t), &agentv1.ExecProcessRequest{ContainerId: "ghost", ExecId: "e", ProcessJson: process(t, false, "true")})
			return err
		}, codes.NotFound},
		{"stdin too large", func() error {
			_, err := ta.client.WriteStdin(ctx(t), &agentv1.WriteStdinRequest{Process: &agentv1.ProcessRef{ContainerId: "ghost"}, Data: make([]byte, MaxStdinChunk+1)})
			return err
		}, codes.InvalidArgument},
		{"message above the ttrpc limit", func() error {
			_, err := ta.client.CreateContainer(ctx(t), &agentv1.CreateContainerRequest{ContainerId: "big", SpecJson: make([]byte, 5<<20)})
			return err
		}, codes.ResourceExhausted},
	}
	for _, tc := range refTests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); code(err) != tc.wantCode {
				t.Fatalf("%s = %v, want %v", tc.name, err, tc.wantCode)
			}
		})
	}
}

// A crashing container must not affect another one.
func TestCrashIsolation(t *testing.T) {
	ta := startAgent(t, nil, container.Config{})
	ta.create(t, "steady", spec(t, false, "sleep", "1000"), nil)
	ta.create(t, "crasher", spec(t, false, "sh", "-c", `sh -c 'kill -SEGV $$'; exit $?`), nil)
	for _, id := range []string{"steady", "crasher"} {
		if _, err := ta.client.StartContainer(ctx(t), &agentv1.StartContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("StartContainer(%s) = %v", id, err)
		}
	}
	if w := ta.wait(t, "crasher", ""); w.GetExitCode() != 128+11 {
		t.Errorf("crasher exit = %d, want %d (its child died of SIGSEGV)", w.GetExitCode(), 128+11)
	}
	st, err := ta.client.State(ctx(t), &agentv1.StateRequest{ContainerId: "steady"})
	if err != nil || st.GetContainer().GetStatus() != "running" {
		t.Fatalf("State(steady) after the other crashed = %v, %v, want running", st, err)
	}
	c, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	// The deadline ends the wait on whichever side notices first: the client's context, or
	// the agent, which ttrpc gives the same deadline and which answers DeadlineExceeded.
	if _, err := ta.client.WaitProcess(c, &agentv1.WaitProcessRequest{Process: &agentv1.ProcessRef{ContainerId: "steady"}}); !errors.Is(err, context.DeadlineExceeded) && code(err) != codes.DeadlineExceeded {
		t.Errorf("WaitProcess(steady) = %v, want it still running (DeadlineExceeded)", err)
	}
}

// A bind mount from the agent's shared directory works and is cleaned up.
func TestBindMountFromAgentDir(t *testing.T) {
	ta := startAgent(t, nil, container.Config{})
	vol := filepath.Join(ta.stateDir, "shared", "vol")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, "greeting"), []byte("from the agent\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := specconv.Example()
	s.Process.Terminal = false
	s.Process.Args = []string{"cat", "/data/greeting"}
	s.Mounts = append(s.Mounts, specsMount("/data", vol))
	b, _ := json.Marshal(s)
	ta.create(t, "bind", b, nil)
	out := ta.readOutput(t, "bind", "", agentv1.OutputStream_OUTPUT_STREAM_STDOUT)
	if _, err := ta.client.StartContainer(ctx(t), &agentv1.StartContainerRequest{ContainerId: "bind"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := out(); got != "from the agent\n" {
		t.Errorf("cat /data/greeting = %q, want %q", got, "from the agent\n")
	}
	if _, err := ta.client.DeleteContainer(ctx(t), &agentv1.DeleteContainerRequest{ContainerId: "bind"}); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(t, ta.stateDir, "bind", 0); len(left) > 0 {
		t.Errorf("left behind:\n%s", strings.Join(left, "\n"))
	}
}
