// Package podnet gives the guest's pod its network interface: the virtio-net device that
// carries the pod's CNI interface from the host (a tap joined to the pod's veth there) is
// moved into the pod's network namespace and set up with the name, MTU, addresses and
// routes CNI gave the veth. Everything in the request comes from the untrusted host, so
// Parse checks it all before anything is touched: the device is found by a unicast MAC
// among the guest's virtio-net devices only, and configured in the pod's namespace only,
// never in the agent's.
package podnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"sync"

	agentv1 "confguest/agent/api/v1/wire"
)

// Bounds of a request.
const (
	MaxAddresses = 16
	MaxRoutes    = 64
	MinMTU       = 68 // IPv4's minimum
	MaxMTU       = 65535
)

// ErrInvalid marks a request the agent refuses as malformed.
var ErrInvalid = errors.New("invalid network configuration")

// ErrTooMany marks a request over one of the bounds (MaxAddresses, MaxRoutes).
var ErrTooMany = errors.New("over a bound of the network configuration")

// Config is a checked ConfigureNetwork request.
type Config struct {
	MAC       net.HardwareAddr
	Name      string
	MTU       int
	Addresses []netip.Prefix // each an address with its prefix length
	Routes    []Route
}

// Route is a checked route: Dst is canonical; Gateway is invalid (the zero Addr) for a
// route on the link.
type Route struct {
	Dst     netip.Prefix
	Gateway netip.Addr
}

// nameRE is what the agent accepts as the interface's name: what CNI plugins use, within
// the kernel's IFNAMSIZ, and nothing a path or a shell could read differently.
var nameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`) })

func fieldErr(field, format string, args ...any) error {
	return fmt.Errorf("%s: %w: %s", field, ErrInvalid, fmt.Sprintf(format, args...))
}

// Parse checks r and returns its configuration. An error names the field and what the
// host should send instead.
func Parse(r *agentv1.ConfigureNetworkRequest) (Config, error) {
	in := r.GetInterface()
	if in == nil {
		return Config{}, fieldErr("interface", "missing: name the pod's interface by its MAC")
	}
	var c Config
	mac, err := net.ParseMAC(in.GetMac())
	switch {
	case err != nil || len(mac) != 6:
		return Config{}, fieldErr("interface.mac", "not a MAC address: want six hex bytes, aa:bb:cc:dd:ee:ff")
	case mac[0]&1 != 0:
		return Config{}, fieldErr("interface.mac", "a multicast address: send the MAC of the pod's veth, a unicast one")
	case string(mac) == "\x00\x00\x00\x00\x00\x00":
		return Config{}, fieldErr("interface.mac", "all zero: send the MAC of the pod's veth")
	}
	c.MAC = mac
	c.Name = in.GetName()
	switch {
	case !nameRE().MatchString(c.Name):
		return Config{}, fieldErr("interface.name", "want 1 to 15 bytes of [A-Za-z0-9_.-] (CNI's name, e.g. eth0)")
	case c.Name == "lo" || c.Name == "." || c.Name == "..":
		return Config{}, fieldErr("interface.name", "%q is reserved: name the interface as CNI did, e.g. eth0", c.Name)
	}
	if m := in.GetMtu(); m < MinMTU || m > MaxMTU {
		return Config{}, fieldErr("interface.mtu", "%d: want %d to %d (the veth's MTU)", m, MinMTU, MaxMTU)
	}
	c.MTU = int(in.GetMtu())
	if n := len(in.GetAddresses()); n > MaxAddresses {
		return Config{}, fmt.Errorf("interface.addresses: %w: %d addresses, at most %d (podnet.MaxAddresses)", ErrTooMany, n, MaxAddresses)
	}
	seen := map[netip.Addr]bool{}
	for i, s := range in.GetAddresses() {
		field := fmt.Sprintf("interface.addresses[%d]", i)
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return Config{}, fieldErr(field, "not an address in CIDR form (10.88.77.5/24, fd00::5/64)")
		}
		if err := checkUnicast(p.Addr()); err != nil {
			return Config{}, fieldErr(field, "%v", err)
		}
		if p.Bits() == 0 {
			return Config{}, fieldErr(field, "prefix length 0: send the subnet's prefix length")
		}
		if seen[p.Addr()] {
			return Config{}, fieldErr(field, "the address is listed twice")
		}
		seen[p.Addr()] = true
		c.Addresses = append(c.Addresses, p)
	}
	if n := len(r.GetRoutes()); n > MaxRoutes {
		return Config{}, fmt.Errorf("routes: %w: %d routes, at most %d (podnet.MaxRoutes)", ErrTooMany, n, MaxRoutes)
	}
	for i, rt := range r.GetRoutes() {
		route, err := parseRoute(rt)
		if err != nil {
			return Config{}, fmt.Errorf("routes[%d].%w", i, err)
		}
		c.Routes = append(c.Routes, route)
	}
	return c, nil
}

func parseRoute(r *agentv1.NetworkRoute) (Route, error) {
	var rt Route
	if g := r.GetGateway(); g != "" {
		a, err := netip.ParseAddr(g)
		if err != nil || a.Zone() != "" {
			return Route{}, fieldErr("gateway", "not an IP address (no zone): send the next hop, or leave it empty for a route on the link")
		}
		if err := checkUnicast(a); err != nil && !a.IsLinkLocalUnicast() {
			return Route{}, fieldErr("gateway", "%v", err)
		}
		rt.Gateway = a
	}
	switch d := r.GetDestination(); {
	case d == "" && !rt.Gateway.IsValid():
		return Route{}, fieldErr("destination", "empty with no gateway: a default route needs a gateway")
	case d == "" && rt.Gateway.Is4():
		rt.Dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	case d == "":
		rt.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	default:
		p, err := netip.ParsePrefix(d)
		if err != nil || p.Addr().Zone() != "" {
			return Route{}, fieldErr("destination", "not a network in CIDR form (10.96.0.0/12; empty for the default route)")
		}
		if p != p.Masked() {
			return Route{}, fieldErr("destination", "host bits set: send the network, %s", p.Masked())
		}
		if p.Addr().IsLoopback() || (p.Bits() > 0 && p.Contains(loopback(p.Addr().Is4()))) || p.Addr().IsMulticast() {
			return Route{}, fieldErr("destination", "covers loopback or multicast addresses, which stay the guest's own")
		}
		rt.Dst = p
	}
	if rt.Gateway.IsValid() && rt.Gateway.Is4() != rt.Dst.Addr().Is4() {
		return Route{}, fieldErr("gateway", "its address family differs from the destination's")
	}
	return rt, nil
}

func loopback(v4 bool) netip.Addr {
	if v4 {
		return netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	return netip.IPv6Loopback()
}

// checkUnicast refuses an address a pod interface must not hold.
func checkUnicast(a netip.Addr) error {
	switch {
	case a.Is4In6():
		return errors.New("an IPv4-mapped IPv6 address: send the IPv4 address")
	case a.IsUnspecified():
		return errors.New("the unspecified address")
	case a.IsLoopback():
		return errors.New("a loopback address: loopback stays the pod's own")
	case a.IsMulticast():
		return errors.New("a multicast address")
	case a.IsLinkLocalUnicast():
		return errors.New("a link-local address: the guest makes its own")
	case a.Is4() && a.As4()[0] == 255:
		return errors.New("a broadcast address")
	case a.Zone() != "":
		return errors.New("an address with a zone")
	}
	return nil
}
