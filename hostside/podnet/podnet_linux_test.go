package podnet

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// podNetns makes a network namespace as CNI's bridge plugin leaves it (eth0, one end of a
// veth pair whose other end, vethpeer, stays in a second namespace that stands for the
// host, with an address, a default route and one more route) and returns the paths of
// both (bind mounts).
func podNetns(t *testing.T) (pod, host string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	path := filepath.Join(t.TempDir(), "net")
	hostPath := filepath.Join(t.TempDir(), "hostnet")
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends in the test's namespaces
		errc <- func() error {
			if _, err := netns.New(); err != nil {
				return err
			}
			os.WriteFile(hostPath, nil, 0o600)
			if err := unix.Mount("/proc/thread-self/ns/net", hostPath, "", unix.MS_BIND, ""); err != nil {
				return err
			}
			mac, _ := net.ParseMAC("02:42:0a:58:4d:05")
			veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0", HardwareAddr: mac, MTU: 1400}, PeerName: "vethpeer"}
			if err := netlink.LinkAdd(veth); err != nil {
				return err
			}
			host, _ := netns.Get()
			pod, err := netns.New()
			if err != nil {
				return err
			}
			os.WriteFile(path, nil, 0o600)
			if err := unix.Mount("/proc/thread-self/ns/net", path, "", unix.MS_BIND, ""); err != nil {
				return err
			}
			hh, _ := netlink.NewHandleAt(host)
			l, err := hh.LinkByName("eth0")
			if err != nil {
				return err
			}
			if err := hh.LinkSetNsFd(l, int(pod)); err != nil {
				return err
			}
			if p, err := hh.LinkByName("vethpeer"); err != nil || hh.LinkSetUp(p) != nil {
				return fmt.Errorf("set vethpeer up: %v", err)
			}
			l, err = netlink.LinkByName("eth0")
			if err != nil {
				return err
			}
			addr, _ := netlink.ParseAddr("10.88.77.5/24")
			if err := netlink.AddrAdd(l, addr); err != nil {
				return err
			}
			if err := netlink.LinkSetUp(l); err != nil {
				return err
			}
			if err := netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP("10.88.77.1")}); err != nil {
				return err
			}
			_, dst, _ := net.ParseCIDR("10.96.0.0/12")
			return netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: dst, Gw: net.ParseIP("10.88.77.1")})
		}()
	}()
	if err := <-errc; err != nil {
		t.Fatalf("set up a pod network namespace: %v", err)
	}
	t.Cleanup(func() {
		unix.Unmount(path, unix.MNT_DETACH)
		unix.Unmount(hostPath, unix.MNT_DETACH)
	})
	return path, hostPath
}

// packetSocket opens a raw packet socket on device dev of the namespace at nsPath.
func packetSocket(t *testing.T, nsPath, dev string) int {
	t.Helper()
	type result struct {
		fd  int
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends in nsPath's namespace
		ns, err := netns.GetFromPath(nsPath)
		if err == nil {
			err = netns.Set(ns)
			ns.Close()
		}
		if err != nil {
			res <- result{-1, err}
			return
		}
		l, err := netlink.LinkByName(dev)
		if err != nil {
			res <- result{-1, err}
			return
		}
		proto := int(htons(unix.ETH_P_ALL))
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err == nil {
			err = unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l.Attrs().Index})
		}
		res <- result{fd, err}
	}()
	r := <-res
	if r.err != nil {
		t.Fatalf("packet socket on %s: %v", dev, r.err)
	}
	t.Cleanup(func() { unix.Close(r.fd) })
	tv := unix.NsecToTimeval(int64(3 * time.Second))
	unix.SetsockoptTimeval(r.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return r.fd
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// frame is an Ethernet frame of the local experimental ethertype carrying payload.
func frame(src net.HardwareAddr, payload string) []byte {
	f := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, src...)
	return append(append(f, 0x88, 0xb5), payload...)
}

// readUntil reads frames from fd until one carries payload; false after the socket's
// receive timeout.
func readUntil(fd int, payload string) bool {
	buf := make([]byte, 65536)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil {
			return false
		}
		if strings.Contains(string(buf[:n]), payload) {
			return true
		}
	}
}

// TestAttach joins a tap to a CNI-like pod interface and checks what the pod's namespace
// then holds, the request the agent gets, and that Close leaves nothing behind.
func TestAttach(t *testing.T) {
	path, _ := podNetns(t)
	tap, err := Attach(path)
	if err != nil {
		t.Fatalf("Attach = %v", err)
	}
	ns, _ := netns.GetFromPath(path)
	defer ns.Close()
	h, _ := netlink.NewHandleAt(ns)
	defer h.Close()
	for _, name := range []string{"eth0", TapName} {
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatalf("LinkByName(%s) after Attach = %v", name, err)
		}
		filters, err := h.FilterList(l, netlink.MakeHandle(0xffff, 0))
		if err != nil || len(filters) != 1 {
			t.Errorf("ingress filters of %s = %v, %v; want one", name, filters, err)
			continue
		}
		u, ok := filters[0].(*netlink.U32)
		if !ok || len(u.Actions) != 1 {
			t.Errorf("ingress filter of %s = %+v, want a u32 with one action", name, filters[0])
			continue
		}
		m, ok := u.Actions[0].(*netlink.MirredAction)
		other := map[string]string{"eth0": TapName, TapName: "eth0"}[name]
		ol, _ := h.LinkByName(other)
		if !ok || m.MirredAction != netlink.TCA_EGRESS_REDIR || m.Ifindex != ol.Attrs().Index {
			t.Errorf("ingress action of %s = %+v, want a mirred egress redirect to %s", name, u.Actions[0], other)
		}
		if name == TapName && (l.Attrs().MTU != 1400 || l.Attrs().Flags&net.FlagUp == 0) {
			t.Errorf("%s: MTU %d, flags %v; want eth0's MTU 1400 and up", name, l.Attrs().MTU, l.Attrs().Flags)
		}
	}
	got := fmt.Sprint(tap.Request())
	for _, want := range []string{`mac:"02:42:0a:58:4d:05"`, `name:"eth0"`, `mtu:1400`, `addresses:"10.88.77.5/24"`, `routes:{gateway:"10.88.77.1"}`, `routes:{destination:"10.96.0.0/12"  gateway:"10.88.77.1"}`} {
		if !strings.Contains(strings.ReplaceAll(got, "  ", " "), strings.ReplaceAll(want, "  ", " ")) {
			t.Errorf("Request() = %s, want %s", got, want)
		}
	}
	if strings.Contains(got, "10.88.77.0/24") {
		t.Errorf("Request() = %s: carries the kernel's subnet route, which the guest makes itself", got)
	}
	if err := tap.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if _, err := h.LinkByName(TapName); err == nil {
		t.Errorf("%s still exists after Close", TapName)
	}
	eth0, _ := h.LinkByName("eth0")
	if qs, _ := h.QdiscList(eth0); len(qs) > 0 {
		for _, q := range qs {
			if q.Type() == "ingress" {
				t.Errorf("eth0 keeps an ingress qdisc after Close: %+v", q)
			}
		}
	}
}

func TestAttachRefusesTwoInterfaces(t *testing.T) {
	path, _ := podNetns(t)
	ns, _ := netns.GetFromPath(path)
	defer ns.Close()
	h, _ := netlink.NewHandleAt(ns)
	defer h.Close()
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "net1"}, PeerName: "net1peer"}); err != nil {
		t.Fatal(err)
	}
	_, err := Attach(path)
	if err == nil || !strings.Contains(err.Error(), "interfaces besides loopback") {
		t.Fatalf("Attach(three interfaces) = %v, want a refusal naming them", err)
	}
	if _, err := h.LinkByName(TapName); err == nil {
		t.Errorf("a refused Attach left %s behind", TapName)
	}
}

// TestRedirectCarriesFrames: a frame the VMM writes into the tap leaves through the veth
// (seen on its peer, the host's side), and a frame sent to the veth from the host's side
// comes out of the tap (what the VMM reads), each with the virtio-net header the tap
// carries (IFF_VNET_HDR, 10 bytes).
func TestRedirectCarriesFrames(t *testing.T) {
	path, host := podNetns(t)
	tap, err := Attach(path)
	if err != nil {
		t.Fatalf("Attach = %v", err)
	}
	defer tap.Close()
	const vnetHdr = 10
	peer := packetSocket(t, host, "vethpeer")
	out := append(make([]byte, vnetHdr), frame(tap.Interface.MAC, "from the guest")...)
	if _, err := tap.File.Write(out); err != nil {
		t.Fatalf("write a frame into the tap: %v", err)
	}
	if !readUntil(peer, "from the guest") {
		t.Error("a frame written into the tap never left through the veth")
	}
	peerMAC, _ := net.ParseMAC("02:42:0a:58:4d:01")
	if _, err := unix.Write(peer, frame(peerMAC, "from the host")); err != nil {
		t.Fatalf("send a frame to the veth: %v", err)
	}
	raw, err := tap.File.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	got := false
	raw.Control(func(fd uintptr) {
		// A tap has no receive timeout: poll it.
		for deadline := time.Now().Add(3 * time.Second); !got && time.Now().Before(deadline); {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if n, _ := unix.Poll(fds, 3000); n <= 0 {
				break
			}
			got = readCarries(int(fd), vnetHdr, "from the host")
		}
	})
	if !got {
		t.Error("a frame sent to the veth never came out of the tap")
	}
}

// readCarries reads one frame from fd and reports whether it carries payload.
func readCarries(fd, skip int, payload string) bool {
	buf := make([]byte, 65536)
	n, err := unix.Read(fd, buf)
	return err == nil && n > skip && strings.Contains(string(buf[skip:n]), payload)
}
