package qemutests

import (
	"context"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"confguest/agent/api/policy"
	"confguest/hostside/image"
	"confguest/hostside/launcher"
)

// TestCapabilitiesAbsentInGuest boots the real guest under a policy whose entry pins no
// capabilities and creates a container whose spec has no process.capabilities: it must run
// with every capability set empty (libcontainer would leave it the agent's own). A spec
// that writes cgroup.procs through linux.resources.unified is refused naming the field.
func TestCapabilitiesAbsentInGuest(t *testing.T) {
	img := needImage(t)
	if _, err := exec.LookPath("mkfs.erofs"); err != nil {
		missing(t, "mkfs.erofs not found: install erofs-utils (build/setup.sh)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sb := newSandbox(ctx, t, img, 256)
	disk, err := sb.BuildDisk(ctx, image.Source{Kind: image.Dir, Ref: busyboxRoot(t)})
	if err != nil {
		t.Fatalf("BuildDisk: %v", err)
	}
	proc := launcher.Process{Args: []string{"cat", "/proc/self/status"}, Cwd: "/", Env: []string{"PATH=/bin"}}
	spec := launcher.ContainerSpec(proc, "caps")
	spec.Process.Capabilities = nil
	g := bootUnderPolicy(ctx, t, sb, policy.Policy{Version: policy.Version, Agent: policy.AgentRules{Shutdown: true},
		Containers: []policy.Container{launcher.PolicyEntry("caps", disk.Verity.RootHash, spec)}})

	unified := launcher.ContainerSpec(proc, "caps")
	unified.Process.Capabilities = nil
	unified.Linux.Resources = &specs.LinuxResources{Unified: map[string]string{"cgroup.procs": "1"}}
	_, err = g.CreateContainer(ctx, "unified", disk, unified, launcher.Stdio{})
	if status.Code(errors.Unwrap(err)) != codes.PermissionDenied || !strings.Contains(err.Error(), "spec.linux.resources.unified") {
		t.Errorf("CreateContainer(resources.unified cgroup.procs) = %v, want PermissionDenied naming spec.linux.resources.unified", err)
	}

	if _, err := g.CreateContainer(ctx, "caps", disk, spec, launcher.Stdio{}); err != nil {
		t.Fatalf("CreateContainer(no process.capabilities): %v", err)
	}
	var out strings.Builder
	logs := make(chan error, 1)
	go func() { logs <- g.Logs(ctx, "caps", launcher.IO{Stdout: &out, Stderr: io.Discard}, true, 0) }()
	if err := g.Start(ctx, "caps"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if _, err := g.Wait(ctx, launcher.ProcessRef{ContainerID: "caps"}); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if err := <-logs; err != nil {
		t.Fatalf("Logs: %v", err)
	}
	for _, set := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		if want := set + ":\t0000000000000000"; !strings.Contains(out.String(), want+"\n") {
			t.Errorf("/proc/self/status of a container without process.capabilities: want %q in\n%s", want, out.String())
		}
	}
}
