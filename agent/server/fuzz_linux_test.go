package server

import (
	"context"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer/specconv"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	agentv1 "confguest/agent/api/v1"
	"confguest/agent/container"
	"confguest/agent/policy"
)

// FuzzHandlers sends decoded requests of every unary method (but Shutdown,
// which would end the agent under test) through the real server, to one of
// two agents (the top bit of idx chooses): one that allows everything, and
// one under a policy admitting the seeds' container with its bounds
// lowered (2 containers, 2 exec'd processes), so that the strict spec
// decoding, admissions, the SIGKILL and delete rules and the bounds are
// all reached. (One request goes to one agent: container IDs name host
// cgroups, which two agents on one machine would share.) Nothing a
// request carries may crash either agent: after each call both must still
// answer Version.
//
//	go test -run '^$' -fuzz FuzzHandlers -fuzztime 2m -fuzzminimizetime 5x ./agent/server
func FuzzHandlers(f *testing.F) {
	gated := startPolicyAgentWith(f, Config{Cmdline: "confguest.tee=none", Containers: container.Config{Limits: container.Limits{Containers: 2, Execs: 2}}})
	// Both agents get the same requests, naming gated's image.
	ta := startAgent(f, nil, container.Config{ImageDirs: []string{gated.image}})
	sleep := withCgroupNS(f, spec(f, false, "sleep", "1"))
	ex := specconv.Example()
	ex.Hostname = "confguest-test" // as the spec helper sends it
	entry := entryFor("fz", gated.image, ex, []policy.Match{{Exact: "sleep"}, {Pattern: "[0-9]+"}})
	entry.Stdout, entry.Stdin = true, true
	entry.Exec = []policy.Exec{{Args: policy.Exactly("true"), Stdin: true}}
	doc := policyDoc(f, policy.Policy{Version: policy.Version, Agent: policy.AgentRules{Stats: true}, Containers: []policy.Container{entry}})
	if _, err := gated.client.SetPolicy(ctx(f), &agentv1.SetPolicyRequest{Policy: doc}); err != nil {
		f.Fatal(err)
	}

	svc := agentv1.File_v1_agent_proto.Services().ByName("Agent")
	var methods []protoreflect.MethodDescriptor
	for i := 0; i < svc.Methods().Len(); i++ {
		md := svc.Methods().Get(i)
		if md.IsStreamingClient() || md.IsStreamingServer() || md.Name() == "Shutdown" {
			continue
		}
		methods = append(methods, md)
	}
	const toGated = 0x80 // in idx: send to the gated agent
	seedTo := func(agent uint8, name string, m proto.Message) {
		for i, md := range methods {
			if string(md.Name()) == name {
				b, err := proto.Marshal(m)
				if err != nil {
					f.Fatal(err)
				}
				f.Add(agent|uint8(i), b)
				return
			}
		}
		f.Fatalf("no method %s", name)
	}
	seed := func(name string, m proto.Message) { seedTo(0, name, m) }
	seedGated := func(name string, m proto.Message) { seedTo(toGated, name, m) }
	ref := &agentv1.ProcessRef{ContainerId: "fz"}
	seed("Version", &agentv1.VersionRequest{})
	dir := &agentv1.Rootfs{Source: &agentv1.Rootfs_GuestDirectory{GuestDirectory: gated.image}}
	seed("CreateContainer", &agentv1.CreateContainerRequest{ContainerId: "fz", SpecJson: sleep, Rootfs: dir})
	seed("CreateContainer", &agentv1.CreateContainerRequest{ContainerId: "fz2", SpecJson: []byte(`{"process":{"args":["x"],"cwd":"/"},"linux":{},"mounts":[{"destination":"/a","type":"bind","source":"/"}]}`),
		Rootfs: &agentv1.Rootfs{Source: &agentv1.Rootfs_Block{Block: &agentv1.BlockRootfs{Serial: "s", Verity: &agentv1.Verity{RootHash: "00", DataBlocks: 1}}}}})
	// Joining the pod's namespaces: all of them, and one the spec leaves out.
	seed("CreateContainer", &agentv1.CreateContainerRequest{ContainerId: "fzp", SpecJson: sleep, Rootfs: dir,
		PodNamespaces: &agentv1.PodNamespaces{Network: true, Ipc: true, Uts: true, Pid: true}})
	seed("CreateContainer", &agentv1.CreateContainerRequest{ContainerId: "fzq", Rootfs: dir, PodNamespaces: &agentv1.PodNamespaces{Pid: true},
		SpecJson: []byte(`{"process":{"args":["x"],"cwd":"/"},"linux":{"namespaces":[{"type":"mount"}]}}`)})
	seedGated("CreateContainer", &agentv1.CreateContainerRequest{ContainerId: "gzp", SpecJson: sleep, Rootfs: dir,
		PodNamespaces: &agentv1.PodNamespaces{Network: true}})
	// A MAC no device has (the ungated agent runs on the test's host: never one it has).
	network := &agentv1.ConfigureNetworkRequest{
		Interface: &agentv1.NetworkInterface{Mac: "02:00:5e:10:00:01", Name: "eth0", Mtu: 1500, Addresses: []string{"10.88.77.5/24"}},
		Routes:    []*agentv1.NetworkRoute{{Gateway: "10.88.77.1"}},
	}
	seed("ConfigureNetwork", network)
	seedGated("ConfigureNetwork", network)
	seed("StartContainer", &agentv1.StartContainerRequest{ContainerId: "fz"})
	seed("ExecProcess", &agentv1.ExecProcessRequest{ContainerId: "fz", ExecId: "e", ProcessJson: process(f, true, "true"), Stdio: &agentv1.StdioOptions{Stdin: true, TtyWidth: 1 << 20}})
	seed("WaitProcess", &agentv1.WaitProcessRequest{Process: ref})
	seed("SignalProcess", &agentv1.SignalProcessRequest{Process: ref, Signal: 1 << 31, All: true})
	seed("ResizeTTY", &agentv1.ResizeTTYRequest{Process: ref, Width: 1 << 30})
	seed("WriteStdin", &agentv1.WriteStdinRequest{Process: &agentv1.ProcessRef{ContainerId: "fz", ExecId: "e"}, Data: []byte("x")})
	seed("CloseStdin", &agentv1.CloseStdinRequest{Process: &agentv1.ProcessRef{ContainerId: "fz", ExecId: "../e"}})
	seed("State", &agentv1.StateRequest{ContainerId: "fz"})
	seed("Stats", &agentv1.StatsRequest{ContainerId: "fz"})
	seed("ListContainers", &agentv1.ListContainersRequest{})
	seed("DeleteContainer", &agentv1.DeleteContainerRequest{ContainerId: "fz"})
	// The paths of issue 14 points 3, 9 and 10, under the policy: specs
	// two decoders would read differently, SIGKILL and delete of
	// containers never admitted, requests over the (lowered) bounds.
	gref := &agentv1.ProcessRef{ContainerId: "gz"}
	seedGated("CreateContainer", &agentv1.CreateContainerRequest{ContainerId: "gz", SpecJson: sleep, Rootfs: dir})
	seedGated("StartContainer", &agentv1.StartContainerRequest{ContainerId: "gz"})
	seedGated("CreateContainer", &agentv1.CreateContainerRequest{ContainerId: "gz", SpecJson: sleep, Rootfs: dir})
	seedGated("CreateContainer", &agentv1.CreateContainerRequest{ContainerId: "gz2", SpecJson: sleep, Rootfs: dir})
	seedGated("CreateContainer", &agentv1.CreateContainerRequest{ContainerId: "gz3", SpecJson: sleep, Rootfs: dir})
	seedGated("CreateContainer", &agentv1.CreateContainerRequest{ContainerId: "gz4", Rootfs: dir,
		SpecJson: append([]byte(`{"process":{"args":["/bin/sh"],"cwd":"/"},"Process":{"args":["x"]},`), sleep[1:]...)})
	seedGated("CreateContainer", &agentv1.CreateContainerRequest{ContainerId: "gz4", Rootfs: dir,
		SpecJson: append(append([]byte(nil), sleep...), "\xff{}"...)})
	seedGated("CreateContainer", &agentv1.CreateContainerRequest{ContainerId: "gz4", SpecJson: sleep,
		Rootfs: &agentv1.Rootfs{ScratchBytes: container.MaxScratchBytes + 1, Source: dir.Source}})
	for _, e := range []string{"e1", "e2", "e3"} {
		seedGated("ExecProcess", &agentv1.ExecProcessRequest{ContainerId: "gz", ExecId: e, ProcessJson: process(f, false, "true"), Stdio: &agentv1.StdioOptions{Stdin: true}})
	}
	seedGated("ExecProcess", &agentv1.ExecProcessRequest{ContainerId: "gz", ExecId: "e4",
		ProcessJson: append([]byte(`{"args":["/bin/sh"],`), process(f, false, "true")[1:]...)})
	seedGated("WriteStdin", &agentv1.WriteStdinRequest{Process: &agentv1.ProcessRef{ContainerId: "gz", ExecId: "e1"}, Data: []byte("x")})
	seedGated("SignalProcess", &agentv1.SignalProcessRequest{Process: &agentv1.ProcessRef{ContainerId: "zz"}, Signal: 9, All: true})
	seedGated("SignalProcess", &agentv1.SignalProcessRequest{Process: &agentv1.ProcessRef{ContainerId: "gz", ExecId: "e1"}, Signal: 9})
	seedGated("SignalProcess", &agentv1.SignalProcessRequest{Process: gref, Signal: 15})
	seedGated("DeleteContainer", &agentv1.DeleteContainerRequest{ContainerId: "zz"})
	seedGated("DeleteContainer", &agentv1.DeleteContainerRequest{ContainerId: "gz"})

	f.Fuzz(func(t *testing.T, idx uint8, payload []byte) {
		md := methods[int(idx&^toGated)%len(methods)]
		a := ta
		if idx&toGated != 0 {
			a = gated
		}
		req := dynamicpb.NewMessage(md.Input())
		if err := proto.Unmarshal(payload, req); err != nil {
			return // not a request of this method; ttrpc would refuse it before any handler
		}
		c, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_ = a.raw.Call(c, agentv1.ServiceName, string(md.Name()), req, dynamicpb.NewMessage(md.Output()))
		for name, a := range map[string]*testAgent{"allow-all": ta, "gated": gated} {
			vc, vcancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := a.client.Version(vc, &agentv1.VersionRequest{})
			vcancel()
			if err != nil {
				var stacks strings.Builder
				pprof.Lookup("goroutine").WriteTo(&stacks, 1)
				t.Fatalf("%s agent stopped answering after %s(%v): %v\n%s", name, md.Name(), req, err, stacks.String())
			}
		}
	})
}
