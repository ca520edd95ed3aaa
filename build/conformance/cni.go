package conformance

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// cniNetwork is the pod network: a bridge of its own with a private subnet, no masquerade
// (pods reach this machine only), host ports through the portmap plugin.
type cniNetwork struct {
	bridge  string
	subnet  string // CIDR
	dataDir string // host-local's address leases
}

// conflist is the CNI network configuration containerd reads from its conf_dir.
func (n cniNetwork) conflist() ([]byte, error) {
	return json.MarshalIndent(map[string]any{
		"cniVersion": "0.4.0",
		"name":       "confguest-conformance",
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": n.bridge, "isGateway": true, "ipMasq": false, "hairpinMode": true,
				"ipam": map[string]any{
					"type": "host-local", "dataDir": n.dataDir,
					"ranges": [][]map[string]string{{{"subnet": n.subnet}}},
					"routes": []map[string]string{{"dst": "0.0.0.0/0"}},
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}, "", "  ")
}

// checkFree fails when the bridge already exists or the subnet overlaps a route of this
// machine: the network must be new, so that removing it afterwards touches nothing else.
func (n cniNetwork) checkFree() error {
	if _, err := net.InterfaceByName(n.bridge); err == nil {
		return fmt.Errorf("network interface %s already exists: remove it (ip link del %s) or choose another -bridge", n.bridge, n.bridge)
	}
	_, want, err := net.ParseCIDR(n.subnet)
	if err != nil {
		return fmt.Errorf("-subnet %q: %w", n.subnet, err)
	}
	out, err := exec.Command("ip", "-o", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		return fmt.Errorf("list routes (ip route): %w", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] == "default" || f[0] == "local" || f[0] == "broadcast" {
			continue
		}
		dst := f[0]
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		if _, have, err := net.ParseCIDR(dst); err == nil && (have.Contains(want.IP) || want.Contains(have.IP)) {
			return fmt.Errorf("-subnet %s overlaps the route %q of this machine: choose another -subnet", n.subnet, strings.TrimSpace(l))
		}
	}
	return nil
}

// create makes the bridge with the subnet's first address (the gateway the bridge plugin
// gives the pods) and brings it up, after checkFree. The address is this machine's from then
// on, so a node can name it as its own before the first pod exists.
func (n cniNetwork) create() (net.IP, error) {
	if err := n.checkFree(); err != nil {
		return nil, err
	}
	_, subnet, err := net.ParseCIDR(n.subnet)
	if err != nil || subnet.IP.To4() == nil {
		return nil, fmt.Errorf("-subnet %q: want an IPv4 CIDR such as 10.88.77.0/24", n.subnet)
	}
	gw := slices.Clone(subnet.IP.To4())
	gw[3]++
	ones, _ := subnet.Mask.Size()
	for _, args := range [][]string{
		{"link", "add", n.bridge, "type", "bridge"},
		{"addr", "add", fmt.Sprintf("%s/%d", gw, ones), "dev", n.bridge},
		{"link", "set", n.bridge, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			n.remove()
			return nil, fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return gw, nil
}

// sysctl reads /proc/sys/<key> (dots as slashes).
func sysctl(key string) (string, error) {
	b, err := os.ReadFile(filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/")))
	return strings.TrimSpace(string(b)), err
}

func setSysctl(key, value string) error {
	return os.WriteFile(filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/")), []byte(value), 0o644)
}

// remove deletes the bridge (CNI's DEL leaves it).
func (n cniNetwork) remove() error {
	if _, err := net.InterfaceByName(n.bridge); err != nil {
		return nil
	}
	if out, err := exec.Command("ip", "link", "del", n.bridge).CombinedOutput(); err != nil {
		return fmt.Errorf("remove bridge %s: %v: %s", n.bridge, err, out)
	}
	return nil
}
