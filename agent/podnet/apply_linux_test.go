package podnet

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	agentv1 "confguest/agent/api/v1/wire"
)

// inNetns runs f on a thread in a fresh network namespace that stands for the guest's (the
// agent's), with a device of MAC mac, and a second fresh namespace for the pod,
// bind-mounted at the path f gets. The device is one end of a veth pair (the host kernel
// may have no dummy driver); sysfs is a directory where f's Target finds its driver:
// virtio_net when virtio is set.
func inNetns(t *testing.T, mac string, virtio bool, f func(pod, sysfs string)) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with its namespaces
		orig, err := netns.Get()
		if err != nil {
			t.Error(err)
			return
		}
		defer orig.Close()
		pod, err := netns.New()
		if err != nil {
			t.Error(err)
			return
		}
		defer pod.Close()
		podPath := filepath.Join(t.TempDir(), "net")
		os.WriteFile(podPath, nil, 0o600)
		if err := unix.Mount("/proc/thread-self/ns/net", podPath, "", unix.MS_BIND, ""); err != nil {
			t.Error(err)
			return
		}
		defer unix.Unmount(podPath, unix.MNT_DETACH)
		guest, err := netns.New()
		if err != nil {
			t.Error(err)
			return
		}
		defer guest.Close()
		hw, _ := net.ParseMAC(mac)
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth7", HardwareAddr: hw}, PeerName: "peer7"}); err != nil {
			t.Error(err)
			return
		}
		sysfs := t.TempDir()
		os.MkdirAll(filepath.Join(sysfs, "eth7", "device"), 0o755)
		drv := "veth"
		if virtio {
			drv = virtioDriver
		}
		os.Symlink("../../../bus/virtio/drivers/"+drv, filepath.Join(sysfs, "eth7", "device", "driver"))
		f(podPath, sysfs)
	}()
	<-done
}

// TestApply configures a (veth) device in a pod namespace the way the agent does with the
// guest's virtio-net one, and checks what the pod's namespace then has.
func TestApply(t *testing.T) {
	req := validRequest()
	req.Interface.Mac = "02:42:0a:58:4d:05"
	c, err := Parse(req)
	if err != nil {
		t.Fatal(err)
	}
	inNetns(t, "02:42:0a:58:4d:05", true, func(pod, sysfs string) {
		if err := Apply(context.Background(), c, Target{PodNS: pod, SysClassNet: sysfs}); err != nil {
			t.Errorf("Apply = %v, want nil", err)
			return
		}
		if _, err := netlink.LinkByName("eth7"); err == nil {
			t.Error("after Apply the device is still in the agent's namespace")
		}
		ns, _ := netns.GetFromPath(pod)
		defer ns.Close()
		h, _ := netlink.NewHandleAt(ns)
		defer h.Close()
		l, err := h.LinkByName("eth0")
		if err != nil {
			t.Errorf("the pod's namespace has no eth0: %v", err)
			return
		}
		if l.Attrs().MTU != 1500 || l.Attrs().HardwareAddr.String() != "02:42:0a:58:4d:05" || l.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("eth0 in the pod: MTU %d, MAC %s, flags %v; want 1500, the request's MAC, up", l.Attrs().MTU, l.Attrs().HardwareAddr, l.Attrs().Flags)
		}
		addrs, _ := h.AddrList(l, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != "10.88.77.5/24" || addrs[0].Broadcast.String() != "10.88.77.255" {
			t.Errorf("eth0's IPv4 addresses = %v, want 10.88.77.5/24 with broadcast 10.88.77.255", addrs)
		}
		addrs6, _ := h.AddrList(l, netlink.FAMILY_V6)
		var v6 []string
		for _, a := range addrs6 {
			if a.IPNet.String() == "fd00:88::5/64" && a.Flags&unix.IFA_F_NODAD == 0 {
				t.Errorf("fd00:88::5/64 was added with duplicate address detection (flags %#x)", a.Flags)
			}
			v6 = append(v6, a.IPNet.String())
		}
		if !slices.Contains(v6, "fd00:88::5/64") {
			t.Errorf("eth0's IPv6 addresses = %v, want fd00:88::5/64 among them", v6)
		}
		routes6, _ := h.RouteList(l, netlink.FAMILY_V6)
		var gw6 bool
		for _, r := range routes6 {
			gw6 = gw6 || (r.Dst == nil || r.Dst.String() == "::/0") && r.Gw.String() == "fe80::1"
		}
		if !gw6 {
			t.Errorf("eth0's IPv6 routes = %v, want a default route through fe80::1", routes6)
		}
		routes, _ := h.RouteList(l, netlink.FAMILY_V4)
		var got []string
		for _, r := range routes {
			got = append(got, r.String())
		}
		all := strings.Join(got, "\n")
		for _, want := range []string{"Gw: 10.88.77.1", "Dst: 10.96.0.0/12", "Dst: 192.168.7.0/24"} {
			if !strings.Contains(all, want) {
				t.Errorf("eth0's routes = %v, want one with %s", got, want)
			}
		}
	})
}

func TestApplyRefuses(t *testing.T) {
	c, err := Parse(validRequest())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		mac     string
		virtio  bool
		selfPod bool
		want    error
		wantMsg string
	}{
		{"a device of another driver", "02:42:0a:58:4d:05", false, false, ErrInvalid, "not driven by virtio_net"},
		{"no device with the MAC", "02:42:0a:58:4d:06", true, false, ErrNoDevice, "no network device of the guest has MAC"},
		{"the agent's own namespace as the pod's", "02:42:0a:58:4d:05", true, true, nil, "is the agent's own"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inNetns(t, tc.mac, tc.virtio, func(pod, sysfs string) {
				if tc.selfPod {
					pod = "/proc/thread-self/ns/net"
				}
				err := Apply(context.Background(), c, Target{PodNS: pod, SysClassNet: sysfs})
				if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.wantMsg) {
					t.Errorf("Apply(%s) = %v, want %v saying %q", tc.name, err, tc.want, tc.wantMsg)
				}
				if _, err := netlink.LinkByName("eth7"); err != nil {
					t.Errorf("after a refused Apply the device left the agent's namespace: %v", err)
				}
			})
		})
	}
}

// A request the kernel refuses halfway (a route through a gateway on none of the device's
// subnets) fails naming the route, and the device goes back to the agent's namespace, down
// and without the pod's addresses, for the host to try again.
func TestApplyFailureReturnsDevice(t *testing.T) {
	req := validRequest()
	req.Routes = append(req.Routes, &agentv1.NetworkRoute{Destination: "10.99.0.0/16", Gateway: "172.31.0.1"})
	c, err := Parse(req)
	if err != nil {
		t.Fatal(err)
	}
	inNetns(t, "02:42:0a:58:4d:05", true, func(pod, sysfs string) {
		err := Apply(context.Background(), c, Target{PodNS: pod, SysClassNet: sysfs})
		if err == nil || !strings.Contains(err.Error(), "routes[4]: add the route to 10.99.0.0/16") {
			t.Errorf("Apply = %v, want the refusal of routes[4]", err)
		}
		links, _ := netlink.LinkList()
		for _, l := range links {
			if l.Attrs().HardwareAddr.String() != "02:42:0a:58:4d:05" {
				continue
			}
			if l.Attrs().Flags&net.FlagUp != 0 {
				t.Errorf("the device came back up")
			}
			if addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4); len(addrs) != 0 {
				t.Errorf("the device came back with the pod's addresses %v", addrs)
			}
			return
		}
		t.Errorf("after the failed Apply the device is not back in the agent's namespace")
	})
}

// The netlink messages the kernel answers with are read within their bounds: a truncated
// or overlong message or attribute is an error, never a read past the datagram.
func TestRTNLParseBounds(t *testing.T) {
	s := &rtnl{seq: 7}
	hdr := func(n uint32, typ uint16, seq uint32) []byte {
		b := binary.NativeEndian.AppendUint32(nil, n)
		b = binary.NativeEndian.AppendUint16(b, typ)
		b = binary.NativeEndian.AppendUint16(b, 0)
		b = binary.NativeEndian.AppendUint32(b, seq)
		return binary.NativeEndian.AppendUint32(b, 0)
	}
	ack := append(hdr(20, unix.NLMSG_ERROR, 7), 0, 0, 0, 0)
	if done, err := s.parse(ack, nil); !done || err != nil {
		t.Errorf("parse(ack) = %v, %v; want done, nil", done, err)
	}
	eexist := append(hdr(20, unix.NLMSG_ERROR, 7), binary.NativeEndian.AppendUint32(nil, uint32(0xffffffef))...) // -EEXIST
	if _, err := s.parse(eexist, nil); !errors.Is(err, unix.EEXIST) {
		t.Errorf("parse(-EEXIST) = %v, want EEXIST", err)
	}
	if done, err := s.parse(append(hdr(20, unix.NLMSG_ERROR, 6), 0, 0, 0, 0), nil); done || err != nil {
		t.Errorf("parse(an earlier request's ack) = %v, %v; want not done, nil", done, err)
	}
	for name, b := range map[string][]byte{
		"length past the datagram": hdr(64, unix.NLMSG_DONE, 7),
		"length below the header":  hdr(8, unix.NLMSG_DONE, 7),
		"error without its number": hdr(16, unix.NLMSG_ERROR, 7),
	} {
		if _, err := s.parse(b, nil); err == nil {
			t.Errorf("parse(%s) = nil error", name)
		}
	}
	for name, b := range map[string][]byte{
		"short header":             make([]byte, 8),
		"attribute past its bytes": append(make([]byte, 16), 40, 0, 3, 0, 'e', 't', 'h', '0'),
		"attribute below its size": append(make([]byte, 16), 2, 0, 3, 0),
	} {
		if _, err := parseLink(b); err == nil {
			t.Errorf("parseLink(%s) = nil error", name)
		}
	}
	l, err := parseLink(append(make([]byte, 16), 9, 0, unix.IFLA_IFNAME, 0, 'e', 't', 'h', '0', 0, 0, 0, 0))
	if err != nil || l.name != "eth0" {
		t.Errorf("parseLink(IFLA_IFNAME eth0) = %+v, %v", l, err)
	}
}
