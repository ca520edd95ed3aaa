package qemutests

// A CRI pod on a CNI network: the shim carries the pod's veth into the VM (a tap in the
// pod's network namespace, tc redirects both ways, the guest's virtio-net device with the
// veth's MAC), the agent gives the guest's device the pod's address and routes, and the
// host reaches a server in the pod at the pod IP.

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// podNetns is the path of the network namespace containerd made for pod (CNI's).
func (e *ctrdEnv) podNetns(crictl, pod string) string {
	e.t.Helper()
	var out struct {
		Info struct {
			RuntimeSpec specs.Spec `json:"runtimeSpec"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(e.mustCrictl(crictl, "inspectp", "-o", "json", pod)), &out); err != nil {
		e.t.Fatalf("crictl inspectp %s: %v", pod, err)
	}
	if l := out.Info.RuntimeSpec.Linux; l != nil {
		for _, ns := range l.Namespaces {
			if ns.Type == specs.NetworkNamespace && ns.Path != "" {
				return ns.Path
			}
		}
	}
	e.t.Fatalf("crictl inspectp %s names no network namespace", pod)
	return ""
}

// inNetns runs a command in the network namespace at path and returns its output.
func inNetns(t *testing.T, path string, args ...string) string {
	t.Helper()
	out, err := exec.Command("nsenter", append([]string{"--net=" + path}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter --net=%s %q: %v: %s", path, args, err, out)
	}
	return string(out)
}

var etherRE = regexp.MustCompile(`link/ether ([0-9a-f:]{17})`)

func TestShimCRINetwork(t *testing.T) {
	crictl := crictlBinary(t)
	if _, err := exec.LookPath("nsenter"); err != nil {
		missing(t, "nsenter not found: apt-get install util-linux")
	}
	if _, err := exec.LookPath("tc"); err != nil {
		missing(t, "tc not found: apt-get install iproute2")
	}
	bridge := &cniBridge{bridge: "cgtest0", subnet: "10.88.79.0/24"}
	e := startContainerd(t, ctrdOptions{cri: true, cni: bridge})
	image := e.importDir("confguest/busybox:net", busyboxRoot(t))
	e.importBusybox("confguest/pause:test")

	t.Run("a policy without pod_network refuses the pod its network", func(t *testing.T) {
		doc := `{"version": 1, "agent": {"shutdown": true}, "containers": []}`
		cfg := podConfigOn(t, "nonet", map[string]string{"confguest.io/policy": base64.StdEncoding.EncodeToString([]byte(doc))}, false)
		r := e.crictl(crictl, "runp", "--runtime", "confguest", cfg)
		if r.code == 0 || !strings.Contains(r.stderr, "agent.pod_network") {
			t.Errorf("crictl runp of a pod on a network whose policy does not allow one = exit %d, stderr %q; want the denial naming agent.pod_network", r.code, r.stderr)
		}
		e.checkNoLeftovers()
	})

	podCfg := podConfigOn(t, "web", nil, false)
	pod := e.mustCrictl(crictl, "runp", "--runtime", "confguest", podCfg)
	podIP := e.mustCrictl(crictl, "inspectp", "-o", "go-template", "--template", "{{.status.network.ip}}", pod)
	netnsPath := e.podNetns(crictl, pod)
	veth := inNetns(t, netnsPath, "ip", "-o", "link", "show", "eth0")
	m := etherRE.FindStringSubmatch(veth)
	if m == nil || !strings.HasPrefix(podIP, "10.88.79.") {
		t.Fatalf("pod IP %q, veth %q: want an address of 10.88.79.0/24 and an Ethernet veth", podIP, veth)
	}
	vethMAC := m[1]
	// The tap beside the veth, and each one's ingress redirected to the other.
	for dev, to := range map[string]string{"eth0": "tap0_confguest", "tap0_confguest": "eth0"} {
		if f := inNetns(t, netnsPath, "tc", "filter", "show", "dev", dev, "ingress"); !strings.Contains(f, "Egress Redirect to device "+to) {
			t.Errorf("tc filters on %s's ingress = %q, want a mirred egress redirect to %s", dev, f, to)
		}
	}

	// a serves HTTP on the pod's network and reports the guest's view of its interface; b,
	// in the same pod, fetches from a over localhost.
	a := e.mustCrictl(crictl, "create", pod, containerConfig(t, "a", image, "sh", "-c",
		`busybox ip -o link show eth0; busybox ip -o -4 addr show eth0; busybox ip route; `+
			`mkdir -p /tmp/www && echo hello-from-a > /tmp/www/index.html && echo "a serving" && exec busybox httpd -f -p 8080 -h /tmp/www`), podCfg)
	e.mustCrictl(crictl, "start", a)
	outA := e.waitLogs(crictl, a, "a serving")
	b := e.mustCrictl(crictl, "create", pod, containerConfig(t, "b", image, "sh", "-c",
		`i=0; while [ $i -lt 100 ]; do busybox wget -q -O - http://127.0.0.1:8080/ && break; sleep 0.3; i=$((i+1)); done; echo "b done"; exec sleep 1000`), podCfg)
	e.mustCrictl(crictl, "start", b)
	if outB := e.waitLogs(crictl, b, "b done"); !strings.Contains(outB, "hello-from-a") {
		t.Errorf("b fetching from a on the pod's localhost got %q, want hello-from-a", outB)
	}
	t.Logf("the guest's view of the pod's interface:\n%s", outA)
	for _, want := range []string{"link/ether " + vethMAC, "inet " + podIP + "/24", "default via 10.88.79.1 dev eth0"} {
		if !strings.Contains(outA, want) {
			t.Errorf("the guest's eth0 and routes (a's log) = %q, want %q (the veth's MAC, the pod IP, CNI's default route)", outA, want)
		}
	}

	// The host reaches the pod at its IP through the CNI bridge, the veth and the tap.
	client := &http.Client{Timeout: 5 * time.Second}
	var body string
	var err error
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		var resp *http.Response
		if resp, err = client.Get("http://" + podIP + ":8080/"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if body = string(b); strings.Contains(body, "hello-from-a") {
				break
			}
		}
	}
	if !strings.Contains(body, "hello-from-a") {
		t.Errorf("GET http://%s:8080/ from the host = %q, %v; want hello-from-a", podIP, body, err)
	}

	e.removePod(crictl, pod)
	// CNI's DEL removed the namespace; had it not, it must hold neither tap nor redirect.
	if _, err := os.Stat(netnsPath); err == nil {
		if l := inNetns(t, netnsPath, "ip", "-o", "link"); strings.Contains(l, "tap0_confguest") {
			t.Errorf("the pod's network namespace keeps the tap after crictl rmp: %s", l)
		}
	}
	if out, _ := exec.Command("ip", "-o", "link", "show", "master", bridge.bridge).CombinedOutput(); strings.TrimSpace(string(out)) != "" {
		t.Errorf("interfaces left on %s after crictl rmp: %s", bridge.bridge, out)
	}

	t.Run("a host-network pod gets no network device", func(t *testing.T) {
		hostPod := e.mustCrictl(crictl, "runp", "--runtime", "confguest", podConfig(t, "hostnet", nil))
		for _, p := range procsMentioning(e.runDir) {
			if strings.Contains(p, "qemu-system") && strings.Contains(p, "-netdev") {
				t.Errorf("the VM of a host-network pod has a network device: %s", p)
			}
		}
		e.removePod(crictl, hostPod)
	})
}
