package ttrpcserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"testing"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

var bidi = &ttrpc.StreamDesc{StreamingClient: true, StreamingServer: true}

// echoStream echoes every message until the client closes its side, then
// ends with the status its first message names ("ok" for none).
func echoStream(ctx context.Context, ss StreamServer) error {
	var want Code
	for i := 0; ; i++ {
		var m text
		err := ss.RecvMsg(&m)
		if errors.Is(err, io.EOF) {
			if want == OK {
				return nil
			}
			return Errorf(want, "saw io.EOF after %d messages", i)
		}
		if err != nil {
			return err
		}
		if i == 0 && m.s != "ok" {
			c, err := strconv.Atoi(m.s)
			if err != nil {
				return Errorf(InvalidArgument, "first message %q is not a code", m.s)
			}
			want = Code(c)
		}
		if err := ss.SendMsg(&m); err != nil {
			return err
		}
	}
}

func TestBidiStream(t *testing.T) {
	svc := &ServiceDesc{Streams: map[string]StreamDesc{
		"Echo": {Handler: echoStream, StreamingClient: true, StreamingServer: true},
	}}
	_, addr := testServer(t, svc)
	client := dialClient(t, addr)
	tests := []struct {
		name  string
		first string
		code  codes.Code
		msg   string
	}{
		{"ok", "ok", codes.OK, ""},
		{"status", strconv.Itoa(int(DataLoss)), codes.DataLoss, "saw io.EOF after 4 messages"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := client.NewStream(testCtx(t), bidi, testService, "Echo", nil)
			if err != nil {
				t.Fatalf("NewStream: %v", err)
			}
			sent := []string{tc.first, "a", "", "ünï"}
			for _, m := range sent {
				if err := s.SendMsg(wrapperspb.String(m)); err != nil {
					t.Fatalf("SendMsg(%q): %v", m, err)
				}
				var out wrapperspb.StringValue
				if err := s.RecvMsg(&out); err != nil || out.GetValue() != m {
					t.Fatalf("RecvMsg() = %q, %v; want %q, nil", out.GetValue(), err, m)
				}
			}
			if err := s.CloseSend(); err != nil {
				t.Fatalf("CloseSend: %v", err)
			}
			var out wrapperspb.StringValue
			err = s.RecvMsg(&out)
			if tc.code == codes.OK {
				if !errors.Is(err, io.EOF) {
					t.Errorf("RecvMsg() after CloseSend = %v, want io.EOF", err)
				}
				return
			}
			if status.Code(err) != tc.code || status.Convert(err).Message() != tc.msg {
				t.Errorf("RecvMsg() after CloseSend = %v, want %v %q", err, tc.code, tc.msg)
			}
		})
	}
}

// TestServerStream calls a method whose client does not stream: the
// request is its one message and the handler sees io.EOF after it.
func TestServerStream(t *testing.T) {
	count := func(ctx context.Context, ss StreamServer) error {
		var m text
		if err := ss.RecvMsg(&m); err != nil {
			return err
		}
		if err := ss.RecvMsg(&text{}); !errors.Is(err, io.EOF) {
			return Errorf(FailedPrecondition, "second RecvMsg = %v, want io.EOF", err)
		}
		n, err := strconv.Atoi(m.s)
		if err != nil {
			return Errorf(InvalidArgument, "count %q: %v", m.s, err)
		}
		for i := range n {
			if err := ss.SendMsg(&text{strconv.Itoa(i)}); err != nil {
				return err
			}
		}
		return nil
	}
	svc := &ServiceDesc{Streams: map[string]StreamDesc{"Count": {Handler: count, StreamingServer: true}}}
	_, addr := testServer(t, svc)
	client := dialClient(t, addr)
	s, err := client.NewStream(testCtx(t), &ttrpc.StreamDesc{StreamingServer: true}, testService, "Count", wrapperspb.String("3"))
	if err != nil {
		t.Fatalf("NewStream: %v", err)
	}
	var got []string
	for {
		var out wrapperspb.StringValue
		err := s.RecvMsg(&out)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("RecvMsg() after %v = %v", got, err)
		}
		got = append(got, out.GetValue())
	}
	if fmt.Sprint(got) != "[0 1 2]" {
		t.Errorf("stream sent %v, want [0 1 2]", got)
	}
}

// TestClientStream calls a method whose server does not stream: the
// handler's one SendMsg is the payload of the Response that ends the call.
func TestClientStream(t *testing.T) {
	join := func(ctx context.Context, ss StreamServer) error {
		var all string
		for {
			var m text
			err := ss.RecvMsg(&m)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
			all += m.s
		}
		if err := ss.SendMsg(&text{all}); err != nil {
			return err
		}
		if err := ss.SendMsg(&text{"twice"}); err == nil {
			return Errorf(Internal, "a second SendMsg succeeded")
		}
		return nil
	}
	svc := &ServiceDesc{Streams: map[string]StreamDesc{"Join": {Handler: join, StreamingClient: true}}}
	_, addr := testServer(t, svc)
	client := dialClient(t, addr)
	s, err := client.NewStream(testCtx(t), &ttrpc.StreamDesc{StreamingClient: true}, testService, "Join", nil)
	if err != nil {
		t.Fatalf("NewStream: %v", err)
	}
	for _, m := range []string{"a", "b", "c"} {
		if err := s.SendMsg(wrapperspb.String(m)); err != nil {
			t.Fatalf("SendMsg(%q): %v", m, err)
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatalf("CloseSend: %v", err)
	}
	var out wrapperspb.StringValue
	if err := s.RecvMsg(&out); err != nil || out.GetValue() != "abc" {
		t.Errorf("RecvMsg() = %q, %v; want abc, nil", out.GetValue(), err)
	}
}

// TestStreamBufferFull leaves a stream's messages unreceived: the server
// fails that stream after a second and keeps serving the connection.
func TestStreamBufferFull(t *testing.T) {
	ended := make(chan error, 1)
	stall := func(ctx context.Context, ss StreamServer) error {
		<-ctx.Done()
		ended <- ctx.Err()
		return ctx.Err()
	}
	svc := &ServiceDesc{
		Methods: map[string]Method{"Echo": echo},
		Streams: map[string]StreamDesc{"Stall": {Handler: stall, StreamingClient: true, StreamingServer: true}},
	}
	_, addr := testServer(t, svc)
	client := dialClient(t, addr)
	s, err := client.NewStream(testCtx(t), bidi, testService, "Stall", nil)
	if err != nil {
		t.Fatalf("NewStream: %v", err)
	}
	for i := range streamRecvBuffer + 1 {
		if err := s.SendMsg(wrapperspb.String("m")); err != nil {
			t.Fatalf("SendMsg #%d: %v", i, err)
		}
	}
	var out wrapperspb.StringValue
	err = s.RecvMsg(&out)
	if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != "data handling error: "+errStreamFull.Error() {
		t.Errorf("RecvMsg() on the stalled stream = %v, want InvalidArgument, stream buffer full", err)
	}
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Errorf("stalled handler's context ended with %v, want context.Canceled", err)
	}
	if err := client.Call(testCtx(t), testService, "Echo", wrapperspb.String("next"), &out); err != nil || out.GetValue() != "next" {
		t.Errorf("Call(Echo) after the failed stream = %q, %v; want next, nil", out.GetValue(), err)
	}
}

func TestStreamHandlerPanic(t *testing.T) {
	svc := &ServiceDesc{Streams: map[string]StreamDesc{
		"Panic": {Handler: func(ctx context.Context, ss StreamServer) error { panic("stream bug") }, StreamingServer: true},
	}}
	_, addr := testServer(t, svc)
	client := dialClient(t, addr)
	s, err := client.NewStream(testCtx(t), &ttrpc.StreamDesc{StreamingServer: true}, testService, "Panic", wrapperspb.String("x"))
	if err != nil {
		t.Fatalf("NewStream: %v", err)
	}
	var out wrapperspb.StringValue
	err = s.RecvMsg(&out)
	if status.Code(err) != codes.Internal || status.Convert(err).Message() != "panic in /test.Echo/Panic: stream bug" {
		t.Errorf("RecvMsg() = %v, want Internal, panic in /test.Echo/Panic: stream bug", err)
	}
}

// TestStreamMethodCalledUnary calls streaming methods with Call. A server
// that streams ends with a data frame, which the client's Call refuses (as
// against ttrpc's server); one that does not answers with a Response, and
// the unary request closed the client's side (ttrpc's server would wait).
func TestStreamMethodCalledUnary(t *testing.T) {
	first := func(ctx context.Context, ss StreamServer) error {
		var m text
		if err := ss.RecvMsg(&m); err != nil {
			return err
		}
		if err := ss.RecvMsg(&text{}); !errors.Is(err, io.EOF) {
			return Errorf(FailedPrecondition, "second RecvMsg = %v, want io.EOF", err)
		}
		return ss.SendMsg(&m)
	}
	svc := &ServiceDesc{Streams: map[string]StreamDesc{
		"ServerStreams": {Handler: first, StreamingServer: true},
		"ClientStreams": {Handler: first, StreamingClient: true},
	}}
	_, addr := testServer(t, svc)
	client := dialClient(t, addr)
	var out wrapperspb.StringValue
	err := client.Call(testCtx(t), testService, "ServerStreams", wrapperspb.String("x"), &out)
	if !errors.Is(err, ttrpc.ErrProtocol) {
		t.Errorf("Call(ServerStreams) = %v, want ttrpc.ErrProtocol", err)
	}
	if err := client.Call(testCtx(t), testService, "ClientStreams", wrapperspb.String("y"), &out); err != nil || out.GetValue() != "y" {
		t.Errorf("Call(ClientStreams) = %q, %v; want y, nil", out.GetValue(), err)
	}
}
