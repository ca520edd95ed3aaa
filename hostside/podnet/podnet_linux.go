// Package podnet carries a pod's CNI interface into its VM, as VM runtimes do: in the pod's
// network namespace (the one containerd's CRI plugin created and CNI configured) it reads
// the pod's interface (a veth: addresses, MAC, MTU, routes), creates a tap beside it and
// joins the two with a tc ingress redirect each way, so every frame the veth receives
// leaves through the tap into the VMM, and every frame the guest sends leaves through the
// veth. The guest's virtio-net device takes the veth's MAC and the agent gives it the
// veth's addresses and routes (ConfigureNetwork), so the CNI bridge's view of the pod stays
// valid. The VMM gets the tap's open file, so it need not live in the pod's namespace.
package podnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	agentv1 "confguest/agent/api/v1"
)

// TapName is the name of the tap in the pod's network namespace.
const TapName = "tap0_confguest"

// Interface is the pod's interface as CNI configured it.
type Interface struct {
	Name      string
	MAC       net.HardwareAddr
	MTU       int
	Addresses []netip.Prefix
	Routes    []Route
}

// Route is a route through the interface; a Dst of zero bits is the default route, an
// invalid Gateway a route on the link.
type Route struct {
	Dst     netip.Prefix
	Gateway netip.Addr
}

// Tap is the pod's tap, joined to its interface. Close undoes Attach.
type Tap struct {
	// File is the open tap for the VMM (its descriptor is what QEMU and Cloud Hypervisor
	// take); the tap lives as long as a descriptor of it is open.
	File      *os.File
	Interface Interface
	nsPath    string
}

// Attach finds the pod's interface in the network namespace at nsPath (the only one
// besides loopback), creates the tap there and joins them. On failure nothing is left.
func Attach(nsPath string) (_ *Tap, err error) {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, fmt.Errorf("open the pod's network namespace %s: %w", nsPath, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink in the pod's network namespace %s: %w", nsPath, err)
	}
	defer h.Close()
	veth, err := podInterface(h, nsPath)
	if err != nil {
		return nil, err
	}
	in, err := describe(h, veth)
	if err != nil {
		return nil, err
	}
	t := &Tap{Interface: in, nsPath: nsPath}
	if t.File, err = openTap(ns, TapName); err != nil {
		return nil, fmt.Errorf("create the tap %s in the pod's network namespace %s: %w", TapName, nsPath, err)
	}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	tap, err := h.LinkByName(TapName)
	if err != nil {
		return nil, fmt.Errorf("find the tap %s: %w", TapName, err)
	}
	if err := h.LinkSetMTU(tap, in.MTU); err != nil {
		return nil, fmt.Errorf("set the MTU of %s to %s's (%d): %w", TapName, in.Name, in.MTU, err)
	}
	if err := h.LinkSetUp(tap); err != nil {
		return nil, fmt.Errorf("set %s up: %w", TapName, err)
	}
	if err := redirect(h, veth, tap); err != nil {
		return nil, err
	}
	if err := redirect(h, tap, veth); err != nil {
		return nil, err
	}
	return t, nil
}

// podInterface returns the one interface of the pod's namespace besides loopback (and a
// tap of an earlier attempt).
func podInterface(h *netlink.Handle, nsPath string) (netlink.Link, error) {
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list the interfaces of the pod's network namespace: %w", err)
	}
	var found []netlink.Link
	var names []string
	for _, l := range links {
		if l.Attrs().Flags&net.FlagLoopback != 0 || l.Attrs().Name == TapName {
			continue
		}
		found = append(found, l)
		names = append(names, l.Attrs().Name)
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("the pod's network namespace %s has %d interfaces besides loopback (%v): the pod VM carries exactly one (CNI's); configure the pod's network with one interface", nsPath, len(found), names)
	}
	if len(found[0].Attrs().HardwareAddr) != 6 {
		return nil, fmt.Errorf("the pod's interface %s has no Ethernet address: the pod VM carries an Ethernet interface (a veth)", names[0])
	}
	return found[0], nil
}

// describe reads what CNI configured on the pod's interface: the addresses the guest
// takes over (the guest makes its own link-local ones) and the routes CNI added (the
// kernel's own subnet routes follow the addresses in the guest too).
func describe(h *netlink.Handle, l netlink.Link) (Interface, error) {
	a := l.Attrs()
	in := Interface{Name: a.Name, MAC: a.HardwareAddr, MTU: a.MTU}
	addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return Interface{}, fmt.Errorf("list the addresses of %s: %w", a.Name, err)
	}
	for _, ad := range addrs {
		ip, ok := netip.AddrFromSlice(ad.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip.IsLinkLocalUnicast() {
			continue
		}
		bits, _ := ad.Mask.Size()
		in.Addresses = append(in.Addresses, netip.PrefixFrom(ip, bits))
	}
	routes, err := h.RouteList(l, netlink.FAMILY_ALL)
	if err != nil {
		return Interface{}, fmt.Errorf("list the routes of %s: %w", a.Name, err)
	}
	for _, r := range routes {
		if r.Protocol == unix.RTPROT_KERNEL || r.Protocol == unix.RTPROT_RA {
			continue
		}
		var rt Route
		if r.Gw != nil {
			gw, _ := netip.AddrFromSlice(r.Gw)
			rt.Gateway = gw.Unmap()
		}
		if r.Dst != nil {
			ip, _ := netip.AddrFromSlice(r.Dst.IP)
			bits, _ := r.Dst.Mask.Size()
			rt.Dst = netip.PrefixFrom(ip.Unmap(), bits)
		} else if rt.Gateway.IsValid() {
			rt.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
			if rt.Gateway.Is4() {
				rt.Dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
			}
		} else {
			continue
		}
		if rt.Dst.Addr().IsMulticast() || rt.Dst.Addr().IsLinkLocalUnicast() {
			continue
		}
		in.Routes = append(in.Routes, rt)
	}
	return in, nil
}

// openTap creates a tap named name in ns (TUNSETIFF acts in the calling thread's
// namespace) and returns it open. It is not persistent: it goes away with its last
// descriptor, the VMM's or the shim's.
func openTap(ns netns.NsHandle, name string) (*os.File, error) {
	type result struct {
		f   *os.File
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			res <- result{nil, err}
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			res <- result{nil, fmt.Errorf("enter the namespace: %w", err)}
			return
		}
		f, err := createTap(name)
		if netns.Set(orig) == nil {
			// Back in the shim's namespace; otherwise the thread stays locked and ends
			// with this goroutine.
			runtime.UnlockOSThread()
		}
		res <- result{f, err}
	}()
	r := <-res
	return r.f, r.err
}

func createTap(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	// The virtio-net header lets QEMU and Cloud Hypervisor pass offloads through.
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF: %w", err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}

// redirect sends every frame from arrives on (its ingress) out of to: an ingress qdisc
// on from with a match-all u32 filter whose action is a mirred egress redirect.
func redirect(h *netlink.Handle, from, to netlink.Link) error {
	q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: from.Attrs().Index, Parent: netlink.HANDLE_INGRESS}}
	if err := h.QdiscAdd(q); err != nil {
		return fmt.Errorf("add an ingress qdisc to %s: %w", from.Attrs().Name, err)
	}
	f := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: from.Attrs().Index,
			Parent:    netlink.MakeHandle(0xffff, 0),
			Protocol:  unix.ETH_P_ALL,
		},
		Actions: []netlink.Action{netlink.NewMirredAction(to.Attrs().Index)},
	}
	if err := h.FilterAdd(f); err != nil {
		return fmt.Errorf("redirect %s's ingress to %s: %w", from.Attrs().Name, to.Attrs().Name, err)
	}
	return nil
}

// Request is the agent's ConfigureNetwork request for the interface.
func (t *Tap) Request() *agentv1.ConfigureNetworkRequest {
	in := t.Interface
	r := &agentv1.ConfigureNetworkRequest{Interface: &agentv1.NetworkInterface{Mac: in.MAC.String(), Name: in.Name, Mtu: uint32(in.MTU)}}
	for _, a := range in.Addresses {
		r.Interface.Addresses = append(r.Interface.Addresses, a.String())
	}
	for _, rt := range in.Routes {
		nr := &agentv1.NetworkRoute{}
		if rt.Dst.Bits() > 0 {
			nr.Destination = rt.Dst.String()
		}
		if rt.Gateway.IsValid() {
			nr.Gateway = rt.Gateway.String()
		}
		r.Routes = append(r.Routes, nr)
	}
	return r
}

// Close removes the redirect from the pod's interface and the tap, and closes the shim's
// descriptor of it. A namespace that is gone already (CNI tore it down) had them removed
// with it.
func (t *Tap) Close() error {
	var errs []error
	if ns, err := netns.GetFromPath(t.nsPath); err == nil {
		errs = append(errs, t.undo(ns))
		ns.Close()
	} else if !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("open the pod's network namespace %s: %w", t.nsPath, err))
	}
	if t.File != nil {
		errs = append(errs, t.File.Close())
		t.File = nil
	}
	return errors.Join(errs...)
}

func (t *Tap) undo(ns netns.NsHandle) error {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink in the pod's network namespace: %w", err)
	}
	defer h.Close()
	var errs []error
	if l, err := h.LinkByName(t.Interface.Name); err == nil {
		q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: l.Attrs().Index, Parent: netlink.HANDLE_INGRESS}}
		if err := h.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("remove the redirect from %s: %w", t.Interface.Name, err))
		}
	}
	if l, err := h.LinkByName(TapName); err == nil {
		if err := h.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", TapName, err))
		}
	}
	return errors.Join(errs...)
}
