package conformance

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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
