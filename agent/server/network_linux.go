package server

import (
	"context"

	agentv1 "confguest/agent/api/v1/wire"
	"confguest/agent/podnet"
)

// ConfigureNetwork moves the virtio-net device the host names into the pod's network
// namespace and configures it there (agent/podnet). The request is checked whole before
// the pod's namespaces are created or a device is touched.
func (s *service) ConfigureNetwork(ctx context.Context, r *agentv1.ConfigureNetworkRequest) (*agentv1.ConfigureNetworkResponse, error) {
	c, err := podnet.Parse(r)
	if err != nil {
		return nil, err
	}
	ns, err := s.m.PodNetNamespace()
	if err != nil {
		return nil, err
	}
	if err := podnet.Apply(ctx, c, podnet.Target{PodNS: ns}); err != nil {
		return nil, err
	}
	return &agentv1.ConfigureNetworkResponse{}, nil
}
