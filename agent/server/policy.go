package server

import (
	"context"
	"fmt"

	agentv1 "confguest/agent/api/v1/wire"
	"confguest/agent/policy"
)

func (s *service) SetPolicy(ctx context.Context, r *agentv1.SetPolicyRequest) (*agentv1.SetPolicyResponse, error) {
	if s.gate == nil {
		return nil, fmt.Errorf("set policy: %w: start the agent with a required policy", ErrNoPolicyGate)
	}
	_, replacing := s.gate.Installed()
	if err := s.gate.Install(ctx, r.GetPolicy()); err != nil {
		return nil, err
	}
	return &agentv1.SetPolicyResponse{Sha256: policy.HashHex(r.GetPolicy()), Bound: s.tee == TEESNP && !replacing}, nil
}
