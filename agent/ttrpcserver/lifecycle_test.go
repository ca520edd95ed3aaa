package ttrpcserver

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// blocking is a unary Method that signals started and returns its request
// once release is closed.
func blocking(started chan<- struct{}, release <-chan struct{}) Method {
	return func(ctx context.Context, unmarshal func(Message) error) (Message, error) {
		started <- struct{}{}
		select {
		case <-release:
			return echo(ctx, unmarshal)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func TestShutdownWaitsForCalls(t *testing.T) {
	started, release := make(chan struct{}, 1), make(chan struct{})
	srv, addr, l, served := startServer(t, &ServiceDesc{Methods: map[string]Method{"Block": blocking(started, release)}})
	defer srv.Close()
	client := dialClient(t, addr)
	idle := dialClient(t, addr) // a connection with no call: closed at once

	called := make(chan error, 1)
	var out wrapperspb.StringValue
	go func() { called <- client.Call(testCtx(t), testService, "Block", wrapperspb.String("done"), &out) }()
	<-started

	// A Shutdown whose context has ended gives up while the call runs.
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	if err := srv.Shutdown(expired); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown(cancelled ctx) with a call in flight = %v, want context.Canceled", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve() after Shutdown = %v, want ErrServerClosed", err)
	}
	if _, err := net.Dial("unix", addr); err == nil {
		t.Errorf("Dial after Shutdown succeeded, want the listener closed")
	}
	if err := idle.UserOnCloseWait(testCtx(t)); err != nil {
		t.Errorf("the idle connection is still open after Shutdown: %v", err)
	}

	shutdown := make(chan error, 1)
	go func() { shutdown <- srv.Shutdown(testCtx(t)) }()
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned %v with a call in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-called; err != nil || out.GetValue() != "done" {
		t.Errorf("in-flight Call during Shutdown = %q, %v; want done, nil", out.GetValue(), err)
	}
	if err := <-shutdown; err != nil {
		t.Errorf("Shutdown() = %v, want nil", err)
	}
	if err := srv.Serve(context.Background(), l); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve() on a shut down server = %v, want ErrServerClosed", err)
	}
}

func TestCloseEndsStreams(t *testing.T) {
	started, ended := make(chan struct{}), make(chan error, 1)
	hold := func(ctx context.Context, ss StreamServer) error {
		close(started)
		<-ctx.Done()
		ended <- ctx.Err()
		return ctx.Err()
	}
	srv, addr := testServer(t, &ServiceDesc{Streams: map[string]StreamDesc{
		"Hold": {Handler: hold, StreamingClient: true, StreamingServer: true},
	}})
	client := dialClient(t, addr)
	s, err := client.NewStream(testCtx(t), bidi, testService, "Hold", nil)
	if err != nil {
		t.Fatalf("NewStream: %v", err)
	}
	<-started
	if err := srv.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("stream context ended with %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stream context still live 10s after Close")
	}
	var out wrapperspb.StringValue
	if err := s.RecvMsg(&out); !errors.Is(err, ttrpc.ErrClosed) {
		t.Errorf("client RecvMsg() after Close = %v, want ttrpc.ErrClosed", err)
	}
}
