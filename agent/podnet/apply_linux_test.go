package podnet

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
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
		if len(addrs) != 1 || addrs[0].IPNet.String() != "10.88.77.5/24" {
			t.Errorf("eth0's IPv4 addresses = %v, want 10.88.77.5/24", addrs)
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
