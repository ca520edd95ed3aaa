package podnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrNoDevice: the guest has no virtio-net device with the MAC the host named (or it was
// given to the pod already).
var ErrNoDevice = errors.New("no such network device")

// virtioDriver is the kernel driver of a virtio-net device.
const virtioDriver = "virtio_net"

// Target says where Apply finds the device and where it moves it.
type Target struct {
	// PodNS is the pod's network namespace (the holder's bind-mounted namespace file).
	PodNS string
	// SysClassNet is the sysfs directory of the agent's network namespace's devices
	// (default /sys/class/net), where the device's driver is read.
	SysClassNet string
}

// Apply finds the virtio-net device with c.MAC in the calling thread's network namespace
// (the agent's: every thread of the agent is in the guest's), moves it into the pod's and configures it there. On failure the device
// goes back to the agent's namespace, unconfigured, so the host may try again.
func Apply(ctx context.Context, c Config, t Target) (err error) {
	if t.SysClassNet == "" {
		t.SysClassNet = "/sys/class/net"
	}
	self, err := netns.GetFromPath("/proc/thread-self/ns/net")
	if err != nil {
		return fmt.Errorf("open the agent's network namespace: %w", err)
	}
	defer self.Close()
	pod, err := netns.GetFromPath(t.PodNS)
	if err != nil {
		return fmt.Errorf("open the pod's network namespace: %w", err)
	}
	defer pod.Close()
	if pod.Equal(self) {
		return fmt.Errorf("the pod's network namespace is the agent's own: refusing to configure it")
	}
	// Routing netlink only: the guest kernel has no XFRM or netfilter netlink, which a
	// handle opens by default.
	h, err := netlink.NewHandleAt(self, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink in the agent's namespace: %w", err)
	}
	defer h.Close()
	link, err := findDevice(h, c.MAC, t.SysClassNet)
	if err != nil {
		return err
	}
	ph, err := netlink.NewHandleAt(pod, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink in the pod's namespace: %w", err)
	}
	defer ph.Close()
	if err := h.LinkSetDown(link); err != nil {
		return fmt.Errorf("set %s down: %w", link.Attrs().Name, err)
	}
	if err := h.LinkSetNsFd(link, int(pod)); err != nil {
		return fmt.Errorf("move %s into the pod's network namespace: %w", link.Attrs().Name, err)
	}
	defer func() {
		if err == nil {
			return
		}
		// Back to the agent's namespace (which drops its addresses and routes).
		if l, ferr := byMAC(ph, c.MAC); ferr == nil {
			ph.LinkSetDown(l)
			ph.LinkSetNsFd(l, int(self))
		}
	}()
	if link, err = byMAC(ph, c.MAC); err != nil {
		return fmt.Errorf("find the device in the pod's namespace: %w", err)
	}
	return configure(ph, link, c)
}

// findDevice returns the one device with mac in h's namespace, checked to be a virtio-net
// device by the driver the kernel's sysfs names: nothing else of the guest (loopback, a
// bridge or veth a container built) is ever handed to the pod.
func findDevice(h *netlink.Handle, mac net.HardwareAddr, sysClassNet string) (netlink.Link, error) {
	link, err := byMAC(h, mac)
	if err != nil {
		return nil, err
	}
	a := link.Attrs()
	if a.Flags&net.FlagLoopback != 0 || a.EncapType != "ether" {
		return nil, fmt.Errorf("interface.mac: %w: the guest's device with MAC %s (%s) is a %s device, not a virtio-net one", ErrInvalid, mac, a.Name, a.EncapType)
	}
	drv, err := os.Readlink(filepath.Join(sysClassNet, a.Name, "device", "driver"))
	if err != nil || filepath.Base(drv) != virtioDriver {
		return nil, fmt.Errorf("interface.mac: %w: the guest's device with MAC %s (%s) is not driven by %s", ErrInvalid, mac, a.Name, virtioDriver)
	}
	return link, nil
}

// byMAC returns the one link with mac in h's namespace.
func byMAC(h *netlink.Handle, mac net.HardwareAddr) (netlink.Link, error) {
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list network devices: %w", err)
	}
	var found []netlink.Link
	for _, l := range links {
		if bytes.Equal(l.Attrs().HardwareAddr, mac) {
			found = append(found, l)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("interface.mac: %w: no network device of the guest has MAC %s (the VM has no such virtio-net device, or the pod has it already)", ErrNoDevice, mac)
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("interface.mac: %w: %d network devices of the guest have MAC %s", ErrInvalid, len(found), mac)
}

// configure names the device, sets its MTU and addresses, brings it up and adds the routes,
// in the pod's namespace (ph).
func configure(ph *netlink.Handle, link netlink.Link, c Config) error {
	if link.Attrs().Name != c.Name {
		if err := ph.LinkSetName(link, c.Name); err != nil {
			return fmt.Errorf("interface.name: name the device %s in the pod: %w", c.Name, err)
		}
	}
	if err := ph.LinkSetMTU(link, c.MTU); err != nil {
		return fmt.Errorf("interface.mtu: set MTU %d: %w", c.MTU, err)
	}
	for i, p := range c.Addresses {
		a := &netlink.Addr{IPNet: ipNet(p.Addr(), p.Bits())}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD // the host's veth held it; no duplicate to detect
		}
		if err := ph.AddrAdd(link, a); err != nil {
			return fmt.Errorf("interface.addresses[%d]: add %s: %w", i, p, err)
		}
	}
	if err := ph.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", c.Name, err)
	}
	for i, r := range c.Routes {
		nr := &netlink.Route{LinkIndex: link.Attrs().Index, Scope: netlink.SCOPE_UNIVERSE}
		if r.Dst.Bits() > 0 {
			nr.Dst = ipNet(r.Dst.Addr(), r.Dst.Bits())
		} else if r.Dst.Addr().Is6() {
			nr.Family = unix.AF_INET6
		} else {
			nr.Family = unix.AF_INET
		}
		if r.Gateway.IsValid() {
			nr.Gw = net.IP(r.Gateway.AsSlice())
		} else {
			nr.Scope = netlink.SCOPE_LINK
		}
		if err := ph.RouteAdd(nr); err != nil {
			return fmt.Errorf("routes[%d]: add the route to %s: %w (is its gateway on one of the interface's subnets?)", i, r.Dst, err)
		}
	}
	return nil
}

func ipNet(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(bits, a.BitLen())}
}
