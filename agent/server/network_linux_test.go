package server

import (
	"testing"

	"google.golang.org/grpc/codes"

	agentv1 "confguest/agent/api/v1"
	"confguest/agent/container"
)

// TestConfigureNetworkCodes: through the RPC edge, a malformed request is InvalidArgument
// naming the field, and a MAC no virtio-net device of the guest has is NotFound. (The
// agent runs on the test's host here: the MAC is one no device has.)
func TestConfigureNetworkCodes(t *testing.T) {
	ta := startAgent(t, nil, container.Config{})
	for _, tc := range []struct {
		name  string
		req   *agentv1.ConfigureNetworkRequest
		code  codes.Code
		field string
	}{
		{"a route to loopback", &agentv1.ConfigureNetworkRequest{
			Interface: &agentv1.NetworkInterface{Mac: "02:00:5e:10:00:01", Name: "eth0", Mtu: 1500},
			Routes:    []*agentv1.NetworkRoute{{Destination: "127.0.0.0/8"}},
		}, codes.InvalidArgument, "routes[0].destination"},
		{"no such device", &agentv1.ConfigureNetworkRequest{
			Interface: &agentv1.NetworkInterface{Mac: "02:00:5e:10:00:01", Name: "eth0", Mtu: 1500, Addresses: []string{"10.88.77.5/24"}},
		}, codes.NotFound, "interface.mac"},
	} {
		_, err := ta.client.ConfigureNetwork(ctx(t), tc.req)
		if code(err) != tc.code || err == nil || !containsLine(err.Error(), tc.field) {
			t.Errorf("ConfigureNetwork(%s) = %v, want %v naming %s", tc.name, err, tc.code, tc.field)
		}
	}
}
