// Package request decodes, once and strictly, the JSON documents that
// agent API requests carry: the OCI runtime spec of CreateContainer and
// the OCI process of ExecProcess. The RPC edge decodes every request with
// Decode before authorizing it; the policy check and the container
// manager then work on the same decoded value, so what the policy checked
// is what runs.
//
// Strict means: valid UTF-8, one JSON value with nothing after it, at
// most MaxDepth levels of nesting, and no object with two keys that
// encoding/json would store in the same place (equal keys, or keys equal
// but for case, which encoding/json matches to one struct field).
// Unknown fields are ignored, as the runtime spec requires: they are not
// in the decoded value, so nothing the agent does depends on them.
package request

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	agentv1 "confguest/agent/api/v1/wire"
)

// MaxJSONBytes bounds the OCI spec and process JSON a request may carry.
const MaxJSONBytes = 1 << 20

// CreateContainer is a CreateContainer request with its spec decoded.
// The agent adds what it sets itself (the root path, the cgroup, the
// attestation socket) to Spec after the policy check.
type CreateContainer struct {
	*agentv1.CreateContainerRequest
	Spec *specs.Spec
	// Admit, set by an authorizer that allowed the request, records the
	// admission: which policy entry the container runs under. The
	// container manager calls it once the container exists, while it
	// still holds the ID for this create, and rolls the create back if it
	// fails; a create that fails is never admitted. Nil: nothing to record.
	Admit func() error
	// Attestation, set by the authorizer, says that the policy entry that
	// allowed the request gives the container the workload evidence
	// endpoint.
	Attestation bool
}

// ExecProcess is an ExecProcess request with its process decoded.
type ExecProcess struct {
	*agentv1.ExecProcessRequest
	Process *specs.Process
	// Admit records the admission of the process, as for CreateContainer:
	// the manager calls it once the process runs.
	Admit func() error
}

// Decode returns the decoded form of a request message: a
// *CreateContainer or *ExecProcess for those two messages, msg itself
// for every other (they carry no JSON). An UpdateContainer request with a
// field the agent's API does not define is refused.
func Decode(msg any) (any, error) {
	switch r := msg.(type) {
	case *agentv1.CreateContainerRequest:
		s, err := Spec(r.GetSpecJson())
		if err != nil {
			return nil, err
		}
		return &CreateContainer{CreateContainerRequest: r, Spec: s}, nil
	case *agentv1.ExecProcessRequest:
		p, err := Process(r.GetProcessJson())
		if err != nil {
			return nil, err
		}
		return &ExecProcess{ExecProcessRequest: r, Process: p}, nil
	case *agentv1.UpdateContainerRequest:
		// Every limit it carries is classified (agent/policy updateFields);
		// one this agent does not know would be silently left out.
		if f := r.UnknownField(); f != "" {
			return nil, fmt.Errorf("%s: %w: a field this agent does not know: no policy can allow it; update the agent or leave the field out", f, ErrMalformed)
		}
	}
	return msg, nil
}

// Spec decodes the spec_json of a CreateContainer request.
func Spec(data []byte) (*specs.Spec, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("spec_json: %w: empty: send the container's OCI config.json", ErrMalformed)
	}
	var s specs.Spec
	if err := decode(data, &s); err != nil {
		return nil, fmt.Errorf("spec_json: %w: not an OCI runtime spec: %w", ErrMalformed, err)
	}
	return &s, nil
}

// Process decodes the process_json of an ExecProcess request.
func Process(data []byte) (*specs.Process, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("process_json: %w: empty: send an OCI process object", ErrMalformed)
	}
	var p specs.Process
	if err := decode(data, &p); err != nil {
		return nil, fmt.Errorf("process_json: %w: not an OCI process: %w", ErrMalformed, err)
	}
	return &p, nil
}

// Admit calls the Admit of d, a decoded CreateContainer or ExecProcess,
// if it has one: what the container manager does once the create or exec
// succeeded. Code that stands in for the agent (tests of the policy and
// of the host's policy tools) calls it after authz.Check.
func Admit(d any) error {
	switch r := d.(type) {
	case *CreateContainer:
		if r.Admit != nil {
			return r.Admit()
		}
	case *ExecProcess:
		if r.Admit != nil {
			return r.Admit()
		}
	}
	return nil
}
