package authz

import (
	"context"
	"errors"
	"testing"

	agentv1 "confguest/agent/api/v1/wire"
	"confguest/agent/request"
	"confguest/agent/ttrpcserver"
)

// testRequest is a message whose encoding is its ID.
type testRequest struct{ ID string }

func (r *testRequest) Marshal() ([]byte, error) { return []byte(r.ID), nil }

func (r *testRequest) Unmarshal(b []byte) error { r.ID = string(b); return nil }

type recorder struct {
	deny   bool
	ctx    context.Context
	method string
	req    any
}

func (r *recorder) Authorize(ctx context.Context, method string, req any) error {
	r.ctx, r.method, r.req = ctx, method, req
	if r.deny {
		return ErrDenied
	}
	return nil
}

func TestUnaryInterceptor(t *testing.T) {
	decode := func(v ttrpcserver.Message) error { return v.Unmarshal([]byte("c1")) }
	for _, deny := range []bool{false, true} {
		t.Run(map[bool]string{false: "allow", true: "deny"}[deny], func(t *testing.T) {
			r := &recorder{deny: deny}
			ran := false
			handler := func(ctx context.Context, unmarshal func(ttrpcserver.Message) error) (ttrpcserver.Message, error) {
				var req testRequest
				if err := unmarshal(&req); err != nil {
					return nil, err
				}
				ran = true
				return &req, nil
			}
			_, err := UnaryInterceptor(r)(context.Background(), decode, &ttrpcserver.UnaryInfo{FullMethod: "/s/M"}, handler)
			if r.method != "/s/M" {
				t.Errorf("authorizer saw method %q, want /s/M", r.method)
			}
			if got, ok := r.req.(*testRequest); !ok || got.ID != "c1" {
				t.Errorf("authorizer saw request %#v, want the decoded *testRequest{c1}", r.req)
			}
			if ran == deny || errors.Is(err, ErrDenied) != deny {
				t.Errorf("deny=%v: handler ran %v, err %v", deny, ran, err)
			}
		})
	}
}

type fakeStream struct {
	ttrpcserver.StreamServer
	msgs []string
}

func (f *fakeStream) RecvMsg(m ttrpcserver.Message) error {
	m.(*testRequest).ID, f.msgs = f.msgs[0], f.msgs[1:]
	return nil
}

func TestStreamAuthorizesEveryMessage(t *testing.T) {
	r := &recorder{}
	s := Stream(context.Background(), r, "/s/Stream", &fakeStream{msgs: []string{"a", "b"}})
	for i, want := range []string{"a", "b"} {
		var m testRequest
		if err := s.RecvMsg(&m); err != nil {
			t.Fatal(err)
		}
		if got := Continuation(r.ctx); got != (i > 0) {
			t.Errorf("message %d: Continuation = %v, want %v", i, got, i > 0)
		}
		if got := r.req.(*testRequest).ID; got != want || r.method != "/s/Stream" {
			t.Errorf("authorizer saw %s %q, want /s/Stream %q", r.method, got, want)
		}
	}
	r.deny = true
	s = Stream(context.Background(), r, "/s/Stream", &fakeStream{msgs: []string{"c"}})
	if err := s.RecvMsg(&testRequest{}); !errors.Is(err, ErrDenied) {
		t.Errorf("RecvMsg with a denying authorizer = %v, want ErrDenied", err)
	}
}

// TestUnaryInterceptorDecodesOnce checks that the authorizer and the
// handler see the same decoded request, and that a spec the strict
// decoder refuses reaches neither.
func TestUnaryInterceptorDecodesOnce(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		wantErr bool
	}{
		{"valid spec", `{"process":{"args":["/bin/sh"]}}`, false},
		{"duplicate key", `{"process":{"args":["/bin/true"]},"process":{"args":["/bin/sh"]}}`, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{}
			var handled any
			handler := func(ctx context.Context, unmarshal func(ttrpcserver.Message) error) (ttrpcserver.Message, error) {
				var req agentv1.CreateContainerRequest
				if err := unmarshal(&req); err != nil {
					return nil, err
				}
				handled = Decoded(ctx)
				return nil, nil
			}
			unmarshal := func(v ttrpcserver.Message) error {
				v.(*agentv1.CreateContainerRequest).SpecJson = []byte(tc.spec)
				return nil
			}
			_, err := UnaryInterceptor(r)(context.Background(), unmarshal, &ttrpcserver.UnaryInfo{FullMethod: "/s/Create"}, handler)
			if tc.wantErr {
				if !errors.Is(err, request.ErrMalformed) || r.req != nil || handled != nil {
					t.Fatalf("interceptor(%s) = %v (authorizer saw %v, handler %v), want ErrMalformed before both", tc.spec, err, r.req, handled)
				}
				return
			}
			cc, ok := r.req.(*request.CreateContainer)
			if err != nil || !ok || handled != r.req || cc.Spec.Process.Args[0] != "/bin/sh" {
				t.Fatalf("interceptor(%s) = %v: authorizer saw %#v, handler %#v, want one *request.CreateContainer", tc.spec, err, r.req, handled)
			}
		})
	}
}
