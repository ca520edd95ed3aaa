package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	agentv1 "confguest/agent/api/v1"
	"confguest/agent/authz"
	"confguest/agent/container"
)

// denyAll refuses everything and records what it saw.
type denyAll struct {
	mu   sync.Mutex
	seen map[string]string // method -> request message type
}

func (d *denyAll) Authorize(ctx context.Context, method string, req any) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	name := fmt.Sprintf("%T", req)
	if m, ok := req.(interface{ ProtoName() string }); ok {
		name = m.ProtoName()
	}
	d.seen[method] = name
	return fmt.Errorf("test rule denies %s: %w", method, authz.ErrDenied)
}

// nonEmpty returns a request of type md with one field set, so that even
// streaming calls carry a payload (ttrpc drops empty first messages), and
// its JSON fields (spec_json, process_json) holding "{}", which the edge
// decodes before it authorizes.
func nonEmpty(md protoreflect.MessageDescriptor) proto.Message {
	m := dynamicpb.NewMessage(md)
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		if f := fields.Get(i); f.Kind() == protoreflect.BytesKind && strings.HasSuffix(string(f.Name()), "_json") {
			m.Set(f, protoreflect.ValueOfBytes([]byte("{}")))
		}
	}
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if f.Cardinality() == protoreflect.Repeated || f.ContainingOneof() != nil {
			continue
		}
		switch f.Kind() {
		case protoreflect.StringKind:
			m.Set(f, protoreflect.ValueOfString("x"))
			return m
		case protoreflect.Uint32Kind:
			m.Set(f, protoreflect.ValueOfUint32(1))
			return m
		}
	}
	return m
}

// TestEveryMethodIsAuthorized calls every method of the service, taken
// from the generated descriptor, with an authorizer that refuses all: each
// call must come back PermissionDenied (only the authorizer produces it)
// after the authorizer saw the method with its decoded request type.
func TestEveryMethodIsAuthorized(t *testing.T) {
	d := &denyAll{seen: map[string]string{}}
	ta := startAgent(t, d, container.Config{})
	svc := agentv1.File_v1_agent_proto.Services().ByName("Agent")
	if svc == nil || string(svc.FullName()) != agentv1.ServiceName {
		t.Fatalf("service descriptor %v, want %s", svc, agentv1.ServiceName)
	}
	methods := svc.Methods()
	if methods.Len() < 15 {
		t.Fatalf("descriptor lists %d methods, want at least 15", methods.Len())
	}
	for i := 0; i < methods.Len(); i++ {
		md := methods.Get(i)
		full := "/" + agentv1.ServiceName + "/" + string(md.Name())
		t.Run(string(md.Name()), func(t *testing.T) {
			c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req := nonEmpty(md.Input())
			var err error
			if md.IsStreamingClient() || md.IsStreamingServer() {
				var s ttrpc.ClientStream
				s, err = ta.raw.NewStream(c, &ttrpc.StreamDesc{StreamingClient: md.IsStreamingClient(), StreamingServer: md.IsStreamingServer()},
					agentv1.ServiceName, string(md.Name()), req)
				if err == nil {
					err = s.RecvMsg(dynamicpb.NewMessage(md.Output()))
				}
			} else {
				err = ta.raw.Call(c, agentv1.ServiceName, string(md.Name()), req, dynamicpb.NewMessage(md.Output()))
			}
			if code(err) != codes.PermissionDenied {
				t.Errorf("%s with a deny-all authorizer = %v, want PermissionDenied", full, err)
			}
			d.mu.Lock()
			got, ok := d.seen[full]
			d.mu.Unlock()
			if want := string(md.Input().FullName()); !ok || got != want {
				t.Errorf("authorizer saw %s with %q (seen %v), want request type %q", full, got, ok, want)
			}
		})
	}
}

// TestAllowAllLogsDecisions checks that the default authorizer lets
// requests through and logs each decision.
func TestAllowAllLogsDecisions(t *testing.T) {
	ta := startAgent(t, nil, container.Config{})
	v, err := ta.client.Version(ctx(t), &agentv1.VersionRequest{})
	if err != nil {
		t.Fatalf("Version = %v", err)
	}
	if v.GetTee() != TEENone || v.GetAgentVersion() != AgentVersion || len(v.GetBuildDigest()) != 64 {
		t.Errorf("Version = %v, want tee none, version %s and a sha256 digest", v, AgentVersion)
	}
	want := `method=/confguest.agent.v1.Agent/Version decision=allow`
	if !containsLine(ta.logs.String(), want) {
		t.Errorf("agent log has no %q:\n%s", want, ta.logs.String())
	}
	if _, err := ta.client.State(ctx(t), &agentv1.StateRequest{ContainerId: "nope"}); code(err) != codes.NotFound {
		t.Errorf("State(unknown) = %v, want NotFound", err)
	}
	if !errors.Is(authz.AllowAll{}.Authorize(context.Background(), "/x/Y", nil), nil) {
		t.Errorf("AllowAll refused a request")
	}
}

func containsLine(logs, sub string) bool {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}
