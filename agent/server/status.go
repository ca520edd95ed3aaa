package server

import (
	"context"
	"errors"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentv1 "confguest/agent/api/v1"
	"confguest/agent/attest"
	"confguest/agent/authz"
	"confguest/agent/container"
	"confguest/agent/output"
	"confguest/agent/podnet"
	"confguest/agent/policy"
	"confguest/agent/request"
)

// toStatus is the RPC edge: it turns the agent's errors into ttrpc status
// codes. Nothing below the service layer knows about codes.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Unknown
	switch {
	case errors.Is(err, container.ErrInvalid), errors.Is(err, ErrInvalidRequest), errors.Is(err, policy.ErrInvalidPolicy), errors.Is(err, request.ErrMalformed), errors.Is(err, podnet.ErrInvalid), errors.Is(err, output.ErrBeyondSent):
		code = codes.InvalidArgument
	case errors.Is(err, container.ErrNotFound), errors.Is(err, podnet.ErrNoDevice):
		code = codes.NotFound
	case errors.Is(err, container.ErrExists):
		code = codes.AlreadyExists
	case errors.Is(err, container.ErrWrongState), errors.Is(err, output.ErrReaderAttached), errors.Is(err, attest.ErrNoDevice), errors.Is(err, ErrNoPolicyGate):
		code = codes.FailedPrecondition
	case errors.Is(err, container.ErrLimit), errors.Is(err, podnet.ErrTooMany):
		code = codes.ResourceExhausted
	case errors.Is(err, container.ErrIntegrity):
		code = codes.DataLoss
	case errors.Is(err, container.ErrNoDeviceMapper):
		code = codes.Unimplemented
	case errors.Is(err, ErrNotDecoded):
		code = codes.Internal
	case errors.Is(err, authz.ErrDenied):
		code = codes.PermissionDenied
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Error(code, err.Error())
}

// edgeInterceptor puts the authorization point in front of every unary
// handler and converts what comes back to status codes.
func edgeInterceptor(a authz.Authorizer) ttrpc.ServerOpt {
	unary := authz.UnaryInterceptor(a)
	return ttrpc.WithUnaryServerInterceptor(func(ctx context.Context, u ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, m ttrpc.Method) (any, error) {
		resp, err := unary(ctx, u, info, m)
		return resp, toStatus(err)
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

type readOutputServer struct{ ttrpc.StreamServer }

func (x readOutputServer) Send(m *agentv1.OutputChunk) error { return x.SendMsg(m) }

func (x readOutputServer) Recv() (*agentv1.ReadOutputRequest, error) {
	m := new(agentv1.ReadOutputRequest)
	if err := x.RecvMsg(m); err != nil {
		return nil, err
	}
	return m, nil
}
