package server

import (
	"context"
	"errors"

	agentv1 "confguest/agent/api/v1/wire"
	"confguest/agent/attest"
	"confguest/agent/authz"
	"confguest/agent/container"
	"confguest/agent/output"
	"confguest/agent/podnet"
	"confguest/agent/policy"
	"confguest/agent/request"
	"confguest/agent/ttrpcserver"
)

// toStatus is the RPC edge: it turns the agent's errors into ttrpc status
// codes. Nothing below the service layer knows about codes.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := ttrpcserver.StatusOf(err); ok {
		return err
	}
	code := ttrpcserver.Unknown
	switch {
	case errors.Is(err, container.ErrInvalid), errors.Is(err, ErrInvalidRequest), errors.Is(err, policy.ErrInvalidPolicy), errors.Is(err, request.ErrMalformed), errors.Is(err, podnet.ErrInvalid), errors.Is(err, output.ErrBeyondSent):
		code = ttrpcserver.InvalidArgument
	case errors.Is(err, container.ErrNotFound), errors.Is(err, podnet.ErrNoDevice):
		code = ttrpcserver.NotFound
	case errors.Is(err, container.ErrExists):
		code = ttrpcserver.AlreadyExists
	case errors.Is(err, container.ErrWrongState), errors.Is(err, output.ErrReaderAttached), errors.Is(err, attest.ErrNoDevice), errors.Is(err, ErrNoPolicyGate):
		code = ttrpcserver.FailedPrecondition
	case errors.Is(err, container.ErrLimit), errors.Is(err, podnet.ErrTooMany):
		code = ttrpcserver.ResourceExhausted
	case errors.Is(err, container.ErrIntegrity):
		code = ttrpcserver.DataLoss
	case errors.Is(err, container.ErrNoDeviceMapper):
		code = ttrpcserver.Unimplemented
	case errors.Is(err, ErrNotDecoded):
		code = ttrpcserver.Internal
	case errors.Is(err, authz.ErrDenied):
		code = ttrpcserver.PermissionDenied
	case errors.Is(err, context.Canceled):
		code = ttrpcserver.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = ttrpcserver.DeadlineExceeded
	}
	return &ttrpcserver.Status{Code: code, Message: err.Error()}
}

// edgeInterceptor puts the authorization point in front of every unary
// handler and converts what comes back to status codes.
func edgeInterceptor(a authz.Authorizer) ttrpcserver.Option {
	unary := authz.UnaryInterceptor(a)
	return ttrpcserver.WithUnaryInterceptor(func(ctx context.Context, u func(ttrpcserver.Message) error, info *ttrpcserver.UnaryInfo, m ttrpcserver.Method) (ttrpcserver.Message, error) {
		resp, err := unary(ctx, u, info, m)
		if err != nil {
			return nil, toStatus(err)
		}
		return resp, nil
	})
}

// edgeService does for the streaming methods what edgeInterceptor does
// for the unary ones.
type edgeService struct {
	agentv1.AgentService
	a authz.Authorizer
}

func (s edgeService) ReadOutput(ctx context.Context, ss agentv1.Agent_ReadOutputServer) error {
	const method = "/" + agentv1.ServiceName + "/ReadOutput"
	return toStatus(s.AgentService.ReadOutput(ctx, readOutputServer{authz.Stream(ctx, s.a, method, ss)}))
}

type readOutputServer struct{ ttrpcserver.StreamServer }

func (x readOutputServer) Send(m *agentv1.OutputChunk) error { return x.SendMsg(m) }

func (x readOutputServer) Recv() (*agentv1.ReadOutputRequest, error) {
	m := new(agentv1.ReadOutputRequest)
	if err := x.RecvMsg(m); err != nil {
		return nil, err
	}
	return m, nil
}
