package podnet

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	agentv1 "confguest/agent/api/v1/wire"
)

func validRequest() *agentv1.ConfigureNetworkRequest {
	return &agentv1.ConfigureNetworkRequest{
		Interface: &agentv1.NetworkInterface{Mac: "02:42:0a:58:4d:05", Name: "eth0", Mtu: 1500, Addresses: []string{"10.88.77.5/24", "fd00:88::5/64"}},
		Routes: []*agentv1.NetworkRoute{
			{Gateway: "10.88.77.1"},
			{Destination: "10.96.0.0/12", Gateway: "10.88.77.1"},
			{Destination: "192.168.7.0/24"},
			{Gateway: "fe80::1"},
		},
	}
}

func TestParseValid(t *testing.T) {
	c, err := Parse(validRequest())
	if err != nil {
		t.Fatalf("Parse(valid) = %v, want nil", err)
	}
	if c.MAC.String() != "02:42:0a:58:4d:05" || c.Name != "eth0" || c.MTU != 1500 {
		t.Errorf("Parse(valid) = %s %s %d, want the request's MAC, name and MTU", c.MAC, c.Name, c.MTU)
	}
	wantRoutes := []Route{
		{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("10.88.77.1")},
		{Dst: netip.MustParsePrefix("10.96.0.0/12"), Gateway: netip.MustParseAddr("10.88.77.1")},
		{Dst: netip.MustParsePrefix("192.168.7.0/24")},
		{Dst: netip.MustParsePrefix("::/0"), Gateway: netip.MustParseAddr("fe80::1")},
	}
	if fmt.Sprint(c.Routes) != fmt.Sprint(wantRoutes) {
		t.Errorf("Parse(valid).Routes = %v, want %v", c.Routes, wantRoutes)
	}
	if len(c.Addresses) != 2 || c.Addresses[0] != netip.MustParsePrefix("10.88.77.5/24") {
		t.Errorf("Parse(valid).Addresses = %v, want the request's two", c.Addresses)
	}
}

// TestParseHostile: every field of a hostile request is refused with an error that names it.
func TestParseHostile(t *testing.T) {
	many := func(n int, f func(i int) string) []string {
		var out []string
		for i := range n {
			out = append(out, f(i))
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		edit      func(r *agentv1.ConfigureNetworkRequest)
		wantField string
	}{
		{"no interface", func(r *agentv1.ConfigureNetworkRequest) { r.Interface = nil }, "interface"},
		{"no MAC", func(r *agentv1.ConfigureNetworkRequest) { r.Interface.Mac = "" }, "interface.mac"},
		{"an 8-byte MAC", func(r *agentv1.ConfigureNetworkRequest) { r.Interface.Mac = "02:42:0a:58:4d:05:00:01" }, "interface.mac"},
		{"a multicast MAC", func(r *agentv1.ConfigureNetworkRequest) { r.Interface.Mac = "01:00:5e:00:00:01" }, "interface.mac"},
		{"the broadcast MAC", func(r *agentv1.ConfigureNetworkRequest) { r.Interface.Mac = "ff:ff:ff:ff:ff:ff" }, "interface.mac"},
		{"a zero MAC (loopback's)", func(r *agentv1.ConfigureNetworkRequest) { r.Interface.Mac = "00:00:00:00:00:00" }, "interface.mac"},
		{"name lo", func(r *agentv1.ConfigureNetworkRequest) { r.Interface.Name = "lo" }, "interface.name"},
		{"no name", func(r *agentv1.ConfigureNetworkRequest) { r.Interface.Name = "" }, "interface.name"},
		{"a name past IFNAMSIZ", func(r *agentv1.ConfigureNetworkRequest) { r.Interface.Name = "eth0123456789012" }, "interface.name"},
		{"a name with a slash", func(r *agentv1.ConfigureNetworkRequest) { r.Interface.Name = "../eth0" }, "interface.name"},
		{"a name with a space", func(r *agentv1.ConfigureNetworkRequest) { r.Interface.Name = "eth 0" }, "interface.name"},
		{"name ..", func(r *agentv1.ConfigureNetworkRequest) { r.Interface.Name = ".." }, "interface.name"},
		{"MTU 0", func(r *agentv1.ConfigureNetworkRequest) { r.Interface.Mtu = 0 }, "interface.mtu"},
		{"MTU 67", func(r *agentv1.ConfigureNetworkRequest) { r.Interface.Mtu = 67 }, "interface.mtu"},
		{"MTU past 65535", func(r *agentv1.ConfigureNetworkRequest) { r.Interface.Mtu = 1 << 20 }, "interface.mtu"},
		{"an address without a prefix", func(r *agentv1.ConfigureNetworkRequest) { r.Interface.Addresses = []string{"10.88.77.5"} }, "interface.addresses[0]"},
		{"an IPv4 prefix past 32", func(r *agentv1.ConfigureNetworkRequest) { r.Interface.Addresses = []string{"10.88.77.5/33"} }, "interface.addresses[0]"},
		{"an IPv6 prefix past 128", func(r *agentv1.ConfigureNetworkRequest) { r.Interface.Addresses[1] = "fd00::5/129" }, "interface.addresses[1]"},
		{"prefix length 0", func(r *agentv1.ConfigureNetworkRequest) { r.Interface.Addresses = []string{"10.88.77.5/0"} }, "interface.addresses[0]"},
		{"a loopback address", func(r *agentv1.ConfigureNetworkRequest) { r.Interface.Addresses = []string{"127.0.0.2/8"} }, "interface.addresses[0]"},
		{"IPv6 loopback", func(r *agentv1.ConfigureNetworkRequest) { r.Interface.Addresses = []string{"::1/128"} }, "interface.addresses[0]"},
		{"a multicast address", func(r *agentv1.ConfigureNetworkRequest) { r.Interface.Addresses = []string{"224.0.0.1/4"} }, "interface.addresses[0]"},
		{"the unspecified address", func(r *agentv1.ConfigureNetworkRequest) { r.Interface.Addresses = []string{"0.0.0.0/8"} }, "interface.addresses[0]"},
		{"a link-local address", func(r *agentv1.ConfigureNetworkRequest) { r.Interface.Addresses = []string{"fe80::5/64"} }, "interface.addresses[0]"},
		{"an IPv4-mapped address", func(r *agentv1.ConfigureNetworkRequest) { r.Interface.Addresses = []string{"::ffff:10.88.77.5/120"} }, "interface.addresses[0]"},
		{"an address with a zone", func(r *agentv1.ConfigureNetworkRequest) { r.Interface.Addresses = []string{"fd00::5%eth0/64"} }, "interface.addresses[0]"},
		{"an address twice", func(r *agentv1.ConfigureNetworkRequest) {
			r.Interface.Addresses = []string{"10.88.77.5/24", "10.88.77.5/16"}
		}, "interface.addresses[1]"},
		// Over a bound: ErrTooMany (ResourceExhausted at the RPC edge).
		{"too many addresses", func(r *agentv1.ConfigureNetworkRequest) {
			r.Interface.Addresses = many(MaxAddresses+1, func(i int) string { return fmt.Sprintf("10.88.77.%d/24", i+2) })
		}, "interface.addresses"},
		{"too many routes", func(r *agentv1.ConfigureNetworkRequest) {
			r.Routes = nil
			for i := range MaxRoutes + 1 {
				r.Routes = append(r.Routes, &agentv1.NetworkRoute{Destination: fmt.Sprintf("10.%d.0.0/16", i), Gateway: "10.88.77.1"})
			}
		}, "routes"},
		{"a default route without a gateway", func(r *agentv1.ConfigureNetworkRequest) { r.Routes[0].Gateway = "" }, "routes[0].destination"},
		{"a route to loopback", func(r *agentv1.ConfigureNetworkRequest) { r.Routes[1].Destination = "127.0.0.0/8" }, "routes[1].destination"},
		{"a route covering loopback", func(r *agentv1.ConfigureNetworkRequest) { r.Routes[1].Destination = "0.0.0.0/1" }, "routes[1].destination"},
		{"a route to IPv6 loopback", func(r *agentv1.ConfigureNetworkRequest) { r.Routes[1].Destination = "::1/128" }, "routes[1].destination"},
		{"a route to multicast", func(r *agentv1.ConfigureNetworkRequest) { r.Routes[1].Destination = "224.0.0.0/4" }, "routes[1].destination"},
		{"a destination with host bits", func(r *agentv1.ConfigureNetworkRequest) { r.Routes[1].Destination = "10.96.0.1/12" }, "routes[1].destination"},
		{"a destination that is no CIDR", func(r *agentv1.ConfigureNetworkRequest) { r.Routes[1].Destination = "10.96.0.0" }, "routes[1].destination"},
		{"a gateway that is no address", func(r *agentv1.ConfigureNetworkRequest) { r.Routes[0].Gateway = "gw.example" }, "routes[0].gateway"},
		{"a loopback gateway", func(r *agentv1.ConfigureNetworkRequest) { r.Routes[0].Gateway = "127.0.0.1" }, "routes[0].gateway"},
		{"a multicast gateway", func(r *agentv1.ConfigureNetworkRequest) { r.Routes[0].Gateway = "224.0.0.1" }, "routes[0].gateway"},
		{"a gateway of the other family", func(r *agentv1.ConfigureNetworkRequest) { r.Routes[1].Gateway = "fd00:88::1" }, "routes[1].gateway"},
		{"a gateway with a zone", func(r *agentv1.ConfigureNetworkRequest) { r.Routes[3].Gateway = "fe80::1%eth0" }, "routes[3].gateway"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := validRequest()
			tc.edit(r)
			_, err := Parse(r)
			want := ErrInvalid
			if strings.HasPrefix(tc.name, "too many") {
				want = ErrTooMany
			}
			if err == nil || !errors.Is(err, want) {
				t.Fatalf("Parse(%s) = %v, want %v", tc.name, err, want)
			}
			if !strings.HasPrefix(err.Error(), tc.wantField+": ") {
				t.Errorf("Parse(%s) = %q, want it to start with the field %q", tc.name, err, tc.wantField)
			}
		})
	}
}
