// Package wiretest turns the host's messages (agent/api/v1, protobuf's
// types) into the agent's (agent/api/v1/wire) the way the agent gets them:
// encoded by protobuf, decoded by wire, and decides on them as the agent's
// edge does. Tests of the host's policy tools and of the agent's policy
// that build requests with the host's types use it.
package wiretest

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"confguest/agent/api/v1/wire"
	"confguest/agent/authz"
	"confguest/agent/request"
)

// Convert returns the agent's decoding of m, a message of the host's API
// package; any other value is returned as it is.
func Convert(m any) (any, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return m, nil
	}
	name := string(pm.ProtoReflect().Descriptor().FullName())
	w := wire.NewMessage(name)
	if w == nil {
		return nil, fmt.Errorf("%s: not a message of the agent API", name)
	}
	b, err := proto.Marshal(pm)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := w.Unmarshal(b); err != nil {
		return nil, fmt.Errorf("%s: the agent cannot decode it: %w", name, err)
	}
	return w, nil
}

// Authorize decides on req, a request of the host's API package, as the
// agent does: decoded by wire, then authz.Check (its JSON decoded, then
// authorized), and an allowed create or exec recorded as the agent records
// it once it succeeded (request.Admit).
func Authorize(ctx context.Context, a authz.Authorizer, method string, req any) error {
	w, err := Convert(req)
	if err != nil {
		return err
	}
	d, err := authz.Check(ctx, a, method, w)
	if err != nil {
		return err
	}
	return request.Admit(d)
}
