package wire_test

import (
	"context"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	agentv1 "confguest/agent/api/v1"
	"confguest/agent/api/v1/wire"
	"confguest/agent/ttrpcserver"

	"google.golang.org/protobuf/proto"
)

// TestMessages checks every message's name, and that its getters are protoc-gen-go's
// (the same names and result types) and nil-safe (the zero value on a nil message).
func TestMessages(t *testing.T) {
	for _, md := range allMessages() {
		name := string(md.FullName())
		w := wire.NewMessage(name)
		if w == nil {
			t.Errorf("NewMessage(%q) = nil", name)
			continue
		}
		if got := w.(interface{ ProtoName() string }).ProtoName(); got != name {
			t.Errorf("NewMessage(%q).ProtoName() = %q", name, got)
		}
		pbType, wireType := reflect.TypeOf(newPB(md)), reflect.TypeOf(w)
		getters := 0
		for i := range pbType.NumMethod() {
			pm := pbType.Method(i)
			if !strings.HasPrefix(pm.Name, "Get") {
				continue
			}
			getters++
			wm, ok := wireType.MethodByName(pm.Name)
			if !ok {
				t.Errorf("%s has no %s", wireType, pm.Name)
				continue
			}
			if typeName(wm.Type.Out(0)) != typeName(pm.Type.Out(0)) {
				t.Errorf("%s.%s returns %s, want %s", wireType, pm.Name, wm.Type.Out(0), pm.Type.Out(0))
			}
			if got := wm.Func.Call([]reflect.Value{reflect.Zero(wireType)})[0]; !got.IsZero() {
				t.Errorf("(%s)(nil).%s() = %v, want the zero value", wireType, pm.Name, got)
			}
		}
		for i := range wireType.NumMethod() {
			if strings.HasPrefix(wireType.Method(i).Name, "Get") {
				getters--
			}
		}
		if getters != 0 {
			t.Errorf("%s has getters agentv1's %s does not", wireType, pbType)
		}
	}
	if w := wire.NewMessage("confguest.agent.v1.Nothing"); w != nil {
		t.Errorf("NewMessage(%q) = %v, want nil", "confguest.agent.v1.Nothing", w)
	}
}

func TestEnumString(t *testing.T) {
	for _, n := range []int32{0, 1, 2, -3} {
		if got, want := wire.OutputStream(n).String(), agentv1.OutputStream(n).String(); got != want {
			t.Errorf("OutputStream(%d).String() = %q, want %q", n, got, want)
		}
	}
}

// TestOneof sets each member of Rootfs's oneof, or none, and checks the getters after a
// round trip and the encoding against protobuf's.
func TestOneof(t *testing.T) {
	block := &wire.BlockRootfs{Serial: "c0", Verity: &wire.Verity{RootHash: "ab"}}
	tests := []struct {
		name      string
		w         *wire.Rootfs
		pb        *agentv1.Rootfs
		wantBlock bool
		wantDir   string
	}{
		{"none", &wire.Rootfs{ScratchBytes: 5}, &agentv1.Rootfs{ScratchBytes: 5}, false, ""},
		{"block", &wire.Rootfs{Source: &wire.Rootfs_Block{Block: block}},
			&agentv1.Rootfs{Source: &agentv1.Rootfs_Block{Block: &agentv1.BlockRootfs{Serial: "c0", Verity: &agentv1.Verity{RootHash: "ab"}}}}, true, ""},
		{"empty block", &wire.Rootfs{Source: &wire.Rootfs_Block{Block: &wire.BlockRootfs{}}},
			&agentv1.Rootfs{Source: &agentv1.Rootfs_Block{Block: &agentv1.BlockRootfs{}}}, true, ""},
		{"nil block: encoded empty", &wire.Rootfs{Source: &wire.Rootfs_Block{}},
			&agentv1.Rootfs{Source: &agentv1.Rootfs_Block{}}, true, ""},
		{"directory", &wire.Rootfs{Source: &wire.Rootfs_GuestDirectory{GuestDirectory: "/img"}, ScratchBytes: 1},
			&agentv1.Rootfs{Source: &agentv1.Rootfs_GuestDirectory{GuestDirectory: "/img"}, ScratchBytes: 1}, false, "/img"},
		{"empty directory: encoded", &wire.Rootfs{Source: &wire.Rootfs_GuestDirectory{}},
			&agentv1.Rootfs{Source: &agentv1.Rootfs_GuestDirectory{}}, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want, err := deterministic.Marshal(tc.pb)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tc.w.Marshal()
			if err != nil || string(got) != string(want) {
				t.Fatalf("Marshal() = %x, %v, want %x", got, err, want)
			}
			var back wire.Rootfs
			if err := back.Unmarshal(got); err != nil {
				t.Fatalf("Unmarshal(%x): %v", got, err)
			}
			if (back.GetBlock() != nil) != tc.wantBlock || back.GetGuestDirectory() != tc.wantDir {
				t.Errorf("Unmarshal(%x) = block %v, directory %q; want block %v, directory %q",
					got, back.GetBlock(), back.GetGuestDirectory(), tc.wantBlock, tc.wantDir)
			}
			if (back.GetSource() == nil) != (tc.w.Source == nil) {
				t.Errorf("Unmarshal(%x).GetSource() = %v, want %T", got, back.GetSource(), tc.w.Source)
			}
		})
	}
}

// TestAgentMethods checks the method list against agent.proto's service.
func TestAgentMethods(t *testing.T) {
	sd := agentv1.File_v1_agent_proto.Services().ByName("Agent")
	if sd == nil || string(sd.FullName()) != wire.ServiceName {
		t.Fatalf("service descriptor %v, want %s", sd, wire.ServiceName)
	}
	if len(wire.AgentMethods) != sd.Methods().Len() {
		t.Fatalf("AgentMethods has %d methods, agent.proto %d", len(wire.AgentMethods), sd.Methods().Len())
	}
	for i, got := range wire.AgentMethods {
		md := sd.Methods().Get(i)
		want := wire.MethodInfo{Name: string(md.Name()), Request: string(md.Input().FullName()), Response: string(md.Output().FullName()),
			StreamingClient: md.IsStreamingClient(), StreamingServer: md.IsStreamingServer()}
		if got != want {
			t.Errorf("AgentMethods[%d] = %+v, want %+v", i, got, want)
		}
		if wire.NewMessage(got.Request) == nil || wire.NewMessage(got.Response) == nil {
			t.Errorf("AgentMethods[%d] = %+v: NewMessage knows no request or response", i, got)
		}
	}
}

// fakeAgent answers Version with its fields and ReadOutput by echoing its stream.
type fakeAgent struct {
	wire.AgentService // the methods a test does not call
	version           *wire.VersionResponse
	err               error
}

func (a *fakeAgent) Version(context.Context, *wire.VersionRequest) (*wire.VersionResponse, error) {
	return a.version, a.err
}

func (a *fakeAgent) ReadOutput(_ context.Context, s wire.Agent_ReadOutputServer) error {
	for {
		req, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.Send(&wire.OutputChunk{Offset: req.GetReceived()}); err != nil {
			return err
		}
	}
}

// fakeStream is a client that sends reqs and collects what the server sends.
type fakeStream struct {
	reqs []*agentv1.ReadOutputRequest
	sent []ttrpcserver.Message
}

func (s *fakeStream) SendMsg(m ttrpcserver.Message) error {
	s.sent = append(s.sent, m)
	return nil
}

func (s *fakeStream) RecvMsg(m ttrpcserver.Message) error {
	if len(s.reqs) == 0 {
		return io.EOF
	}
	b, err := proto.Marshal(s.reqs[0])
	if err != nil {
		return err
	}
	s.reqs = s.reqs[1:]
	return m.Unmarshal(b)
}

func TestAgentServiceDesc(t *testing.T) {
	ctx := context.Background()
	decode := func(b []byte) func(ttrpcserver.Message) error {
		return func(m ttrpcserver.Message) error { return m.Unmarshal(b) }
	}
	a := &fakeAgent{version: &wire.VersionResponse{Tee: "snp"}}
	desc := wire.AgentServiceDesc(a)
	for _, m := range wire.AgentMethods {
		_, unary := desc.Methods[m.Name]
		s, stream := desc.Streams[m.Name]
		if unary == (m.StreamingClient || m.StreamingServer) || stream == unary ||
			(stream && (s.StreamingClient != m.StreamingClient || s.StreamingServer != m.StreamingServer)) {
			t.Errorf("AgentServiceDesc: %s described wrong (unary %v, stream %+v), want %+v", m.Name, unary, s, m)
		}
	}

	resp, err := desc.Methods["Version"](ctx, decode(nil))
	if got, ok := resp.(*wire.VersionResponse); err != nil || !ok || got.GetTee() != "snp" {
		t.Errorf("Version() = %v, %v, want tee snp", resp, err)
	}
	a.version, a.err = nil, errors.New("refused")
	if resp, err := desc.Methods["Version"](ctx, decode(nil)); resp != nil || err != a.err {
		t.Errorf("Version() of a failing service = %#v, %v, want a nil Message and its error", resp, err)
	}
	if resp, err := desc.Methods["Version"](ctx, decode([]byte{0x0a})); resp != nil || err == nil {
		t.Errorf("Version(truncated request) = %#v, %v, want the decoding error", resp, err)
	}

	fs := &fakeStream{reqs: []*agentv1.ReadOutputRequest{{Credit: 1, Received: 7}, {Received: 9}}}
	if err := desc.Streams["ReadOutput"].Handler(ctx, fs); err != nil {
		t.Fatalf("ReadOutput: %v", err)
	}
	if len(fs.sent) != 2 || fs.sent[0].(*wire.OutputChunk).GetOffset() != 7 || fs.sent[1].(*wire.OutputChunk).GetOffset() != 9 {
		t.Errorf("ReadOutput sent %v, want chunks at 7 and 9", fs.sent)
	}

	var got string
	wire.RegisterAgentService(registerFunc(func(name string, d *ttrpcserver.ServiceDesc) {
		got = name
		if len(d.Methods)+len(d.Streams) != len(wire.AgentMethods) {
			t.Errorf("RegisterAgentService registered %d methods, want %d", len(d.Methods)+len(d.Streams), len(wire.AgentMethods))
		}
	}), a)
	if got != wire.ServiceName {
		t.Errorf("RegisterAgentService registered %q, want %q", got, wire.ServiceName)
	}
}

type registerFunc func(string, *ttrpcserver.ServiceDesc)

func (f registerFunc) Register(name string, d *ttrpcserver.ServiceDesc) { f(name, d) }
