package launcher

import (
	"context"
	"net"

	"github.com/containerd/ttrpc"
)

// newAgentConn is a ttrpc client of the agent on conn whose calls end at their context's
// deadline or cancellation. ttrpc's client writes each request under one lock and without
// a deadline, so a write the guest stopped reading (stdin to a frozen guest) holds every
// later call, whatever its context: a Shutdown, a Kill, a probe's exec. Each call with a
// context that can end runs beside a wait for that end instead; a call left behind ends
// when the connection closes (its request and response are ttrpc's own, not the caller's).
func newAgentConn(conn net.Conn) *ttrpc.Client {
	return ttrpc.NewClient(conn, ttrpc.WithUnaryClientInterceptor(callWithinContext))
}

func callWithinContext(ctx context.Context, req *ttrpc.Request, resp *ttrpc.Response, _ *ttrpc.UnaryClientInfo, invoke ttrpc.Invoker) error {
	if ctx.Done() == nil {
		return invoke(ctx, req, resp)
	}
	done := make(chan error, 1)
	go func() { done <- invoke(ctx, req, resp) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
