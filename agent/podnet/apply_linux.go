package podnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

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
// (the agent's: every thread of the agent is in the guest's), moves it into the pod's and
// configures it there. On failure the device goes back to the agent's namespace,
// unconfigured, so the host may try again.
func Apply(ctx context.Context, c Config, t Target) (err error) {
	if t.SysClassNet == "" {
		t.SysClassNet = "/sys/class/net"
	}
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return fmt.Errorf("open the agent's network namespace: %w", err)
	}
	defer self.Close()
	pod, err := os.Open(t.PodNS)
	if err != nil {
		return fmt.Errorf("open the pod's network namespace: %w", err)
	}
	defer pod.Close()
	podInfo, err := pod.Stat()
	if err != nil {
		return fmt.Errorf("the pod's network namespace: %w", err)
	}
	selfInfo, err := self.Stat()
	if err != nil {
		return fmt.Errorf("the agent's network namespace: %w", err)
	}
	if os.SameFile(podInfo, selfInfo) {
		return fmt.Errorf("the pod's network namespace is the agent's own: refusing to configure it")
	}
	h, err := openRTNL(self)
	if err != nil {
		return fmt.Errorf("netlink in the agent's namespace: %w", err)
	}
	defer h.Close()
	l, err := findDevice(h, c.MAC, t.SysClassNet)
	if err != nil {
		return err
	}
	ph, err := openRTNL(pod)
	if err != nil {
		return fmt.Errorf("netlink in the pod's namespace: %w", err)
	}
	defer ph.Close()
	if err := h.setUp(l.index, false); err != nil {
		return fmt.Errorf("set %s down: %w", l.name, err)
	}
	if err := h.setNamespace(l.index, pod); err != nil {
		return fmt.Errorf("move %s into the pod's network namespace: %w", l.name, err)
	}
	defer func() {
		if err == nil {
			return
		}
		// Back to the agent's namespace (which drops its addresses and routes).
		if l, ferr := byMAC(ph, c.MAC); ferr == nil {
			ph.setUp(l.index, false)
			ph.setNamespace(l.index, self)
		}
	}()
	if l, err = byMAC(ph, c.MAC); err != nil {
		return fmt.Errorf("find the device in the pod's namespace: %w", err)
	}
	return configure(ph, l, c)
}

// findDevice returns the one device with mac in h's namespace, checked to be a virtio-net
// device by the driver the kernel's sysfs names: nothing else of the guest (loopback, a
// bridge or veth a container built) is ever handed to the pod.
func findDevice(h *rtnl, mac net.HardwareAddr, sysClassNet string) (link, error) {
	l, err := byMAC(h, mac)
	if err != nil {
		return link{}, err
	}
	if l.flags&unix.IFF_LOOPBACK != 0 || l.arp != unix.ARPHRD_ETHER {
		return link{}, fmt.Errorf("interface.mac: %w: the guest's device with MAC %s (%s) is a %s device, not a virtio-net one", ErrInvalid, mac, l.name, arpName(l.arp))
	}
	drv, err := os.Readlink(filepath.Join(sysClassNet, l.name, "device", "driver"))
	if err != nil || filepath.Base(drv) != virtioDriver {
		return link{}, fmt.Errorf("interface.mac: %w: the guest's device with MAC %s (%s) is not driven by %s", ErrInvalid, mac, l.name, virtioDriver)
	}
	return l, nil
}

// arpName names a device's hardware type for an error.
func arpName(t uint16) string {
	switch t {
	case unix.ARPHRD_ETHER:
		return "ether"
	case unix.ARPHRD_LOOPBACK:
		return "loopback"
	case unix.ARPHRD_NONE:
		return "none"
	}
	return fmt.Sprintf("ARPHRD %d", t)
}

// byMAC returns the one link with mac in h's namespace.
func byMAC(h *rtnl, mac net.HardwareAddr) (link, error) {
	links, err := h.links()
	if err != nil {
		return link{}, fmt.Errorf("list network devices: %w", err)
	}
	var found []link
	for _, l := range links {
		if bytes.Equal(l.mac, mac) {
			found = append(found, l)
		}
	}
	switch len(found) {
	case 0:
		return link{}, fmt.Errorf("interface.mac: %w: no network device of the guest has MAC %s (the VM has no such virtio-net device, or the pod has it already)", ErrNoDevice, mac)
	case 1:
		return found[0], nil
	}
	return link{}, fmt.Errorf("interface.mac: %w: %d network devices of the guest have MAC %s", ErrInvalid, len(found), mac)
}

// configure names the device, sets its MTU and addresses, brings it up and adds the routes,
// in the pod's namespace (ph).
func configure(ph *rtnl, l link, c Config) error {
	if l.name != c.Name {
		if err := ph.setName(l.index, c.Name); err != nil {
			return fmt.Errorf("interface.name: name the device %s in the pod: %w", c.Name, err)
		}
	}
	if err := ph.setMTU(l.index, uint32(c.MTU)); err != nil {
		return fmt.Errorf("interface.mtu: set MTU %d: %w", c.MTU, err)
	}
	for i, p := range c.Addresses {
		if err := ph.addAddr(l.index, p); err != nil {
			return fmt.Errorf("interface.addresses[%d]: add %s: %w", i, p, err)
		}
	}
	if err := ph.setUp(l.index, true); err != nil {
		return fmt.Errorf("set %s up: %w", c.Name, err)
	}
	for i, r := range c.Routes {
		if err := ph.addRoute(l.index, r.Dst, r.Gateway); err != nil {
			return fmt.Errorf("routes[%d]: add the route to %s: %w (is its gateway on one of the interface's subnets?)", i, r.Dst, err)
		}
	}
	return nil
}
