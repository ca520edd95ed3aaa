package server

import (
	"context"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	agentv1 "confguest/agent/api/v1"
	"confguest/agent/container"
)

// FuzzHandlers sends decoded requests of every unary method (but Shutdown,
// which would end the agent under test) through the real server. Nothing
// a request carries may crash the agent: after each call it must still
// answer Version.
//
//	go test -run '^$' -fuzz FuzzHandlers -fuzztime 2m -fuzzminimizetime 5x ./agent/server
func FuzzHandlers(f *testing.F) {
	ta := startAgent(f, nil, container.Config{})
	svc := agentv1.File_v1_agent_proto.Services().ByName("Agent")
	var methods []protoreflect.MethodDescriptor
	for i := 0; i < svc.Methods().Len(); i++ {
		md := svc.Methods().Get(i)
		if md.IsStreamingClient() || md.IsStreamingServer() || md.Name() == "Shutdown" {
			continue
		}
		methods = append(methods, md)
	}
	seed := func(name string, m proto.Message) {
		for i, md := range methods {
			if string(md.Name()) == name {
				b, err := proto.Marshal(m)
				if err != nil {
					f.Fatal(err)
				}
				f.Add(uint8(i), b)
				return
			}
		}
		f.Fatalf("no method %s", name)
	}
	ref := &agentv1.ProcessRef{ContainerId: "fz"}
	seed("Version", &agentv1.VersionRequest{})
	seed("CreateContainer", &agentv1.CreateContainerRequest{ContainerId: "fz", SpecJson: spec(f, false, "sleep", "1"),
		Rootfs: &agentv1.Rootfs{Source: &agentv1.Rootfs_GuestDirectory{GuestDirectory: ta.image}}})
	seed("CreateContainer", &agentv1.CreateContainerRequest{ContainerId: "fz2", SpecJson: []byte(`{"process":{"args":["x"],"cwd":"/"},"linux":{},"mounts":[{"destination":"/a","type":"bind","source":"/"}]}`),
		Rootfs: &agentv1.Rootfs{Source: &agentv1.Rootfs_Block{Block: &agentv1.BlockRootfs{Serial: "s", Verity: &agentv1.Verity{RootHash: "00", DataBlocks: 1}}}}})
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

	f.Fuzz(func(t *testing.T, idx uint8, payload []byte) {
		md := methods[int(idx)%len(methods)]
		req := dynamicpb.NewMessage(md.Input())
		if err := proto.Unmarshal(payload, req); err != nil {
			return // not a request of this method; ttrpc would refuse it before any handler
		}
		c, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_ = ta.raw.Call(c, agentv1.ServiceName, string(md.Name()), req, dynamicpb.NewMessage(md.Output()))
		vc, vcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer vcancel()
		if _, err := ta.client.Version(vc, &agentv1.VersionRequest{}); err != nil {
			var stacks strings.Builder
			pprof.Lookup("goroutine").WriteTo(&stacks, 1)
			t.Fatalf("agent stopped answering after %s(%v): %v\n%s", md.Name(), req, err, stacks.String())
		}
	})
}
