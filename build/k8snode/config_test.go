package k8snode

import (
	"encoding/json"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// flagValue is the value after flag in args, or "" when flag is absent.
func flagValue(args []string, flag string) string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

func TestComponentsListenOnLoopback(t *testing.T) {
	l := layout{"/tmp/cgk8s1"}
	p := ports{etcdClient: 2379, etcdPeer: 2380, apiserver: 6443, kubelet: 10250, kubeletHealthz: 10248}
	nodeIP := net.IPv4(10, 88, 76, 1)
	etcd, api := etcdArgs(l, p), apiserverArgs(l, p, nodeIP)
	for _, tc := range []struct {
		name string
		args []string
		flag string
		want string
	}{
		{"etcd", etcd, "--listen-client-urls", "http://127.0.0.1:2379"},
		{"etcd", etcd, "--listen-peer-urls", "http://127.0.0.1:2380"},
		{"etcd", etcd, "--data-dir", "/tmp/cgk8s1/etcd"},
		{"kube-apiserver", api, "--bind-address", "127.0.0.1"},
		{"kube-apiserver", api, "--secure-port", "6443"},
		{"kube-apiserver", api, "--etcd-servers", "http://127.0.0.1:2379"},
		{"kube-apiserver", api, "--advertise-address", "10.88.76.1"},
		{"kube-apiserver", api, "--authorization-mode", "Node,RBAC"},
		{"kube-apiserver", api, "--service-account-signing-key-file", "/tmp/cgk8s1/pki/sa.key"},
		{"kube-apiserver", api, "--kubelet-certificate-authority", "/tmp/cgk8s1/pki/ca.crt"},
	} {
		if got := flagValue(tc.args, tc.flag); got != tc.want {
			t.Errorf("%s %s = %q, want %q", tc.name, tc.flag, got, tc.want)
		}
	}
	kubelet := kubeletArgs(l, "node1", nodeIP)
	if got := flagValue(kubelet, "--node-labels"); got != LabelSEVSNP+"=true" {
		t.Errorf("kubelet --node-labels = %q, want %s=true", got, LabelSEVSNP)
	}
	if got := flagValue(kubelet, "--root-dir"); got != "/tmp/cgk8s1/kubelet" {
		t.Errorf("kubelet --root-dir = %q, want the node's folder", got)
	}
}

func TestKubeletConfig(t *testing.T) {
	l := layout{"/tmp/cgk8s1"}
	p := ports{apiserver: 6443, kubelet: 10250, kubeletHealthz: 10248}
	b, err := kubeletConfig(l, p, net.IPv4(10, 88, 76, 1), "unix:///tmp/c.sock", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key  string
		want any
	}{
		{"address", "10.88.76.1"},
		{"port", 10250.0},
		{"readOnlyPort", 0.0},
		{"healthzBindAddress", "127.0.0.1"},
		{"containerRuntimeEndpoint", "unix:///tmp/c.sock"},
		{"syncFrequency", "10s"},
		{"podLogsDir", "/tmp/cgk8s1/pod-logs"},
		{"tlsCertFile", "/tmp/cgk8s1/pki/kubelet.crt"},
	} {
		if got := cfg[tc.key]; got != tc.want {
			t.Errorf("kubelet config %s = %v, want %v", tc.key, got, tc.want)
		}
	}
	taints, _ := json.Marshal(cfg["registerWithTaints"])
	if want := `[{"effect":"NoSchedule","key":"confguest.io/sev-snp","value":"true"}]`; string(taints) != want {
		t.Errorf("kubelet config registerWithTaints = %s, want %s", taints, want)
	}
}

func TestKubeconfig(t *testing.T) {
	b, err := kubeconfig(layout{"/tmp/cgk8s1"}, ports{apiserver: 6443}, "admin")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"server": "https://127.0.0.1:6443"`, `"client-certificate": "/tmp/cgk8s1/pki/admin.crt"`, `"certificate-authority": "/tmp/cgk8s1/pki/ca.crt"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("kubeconfig(admin) lacks %s:\n%s", want, b)
		}
	}
}

func TestJumpsTo(t *testing.T) {
	rules := `-P INPUT ACCEPT
-N KUBE-FIREWALL
-A INPUT -j KUBE-FIREWALL
-A OUTPUT -j KUBE-FIREWALL
-A OUTPUT -j OTHER
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -j DROP
`
	got := jumpsTo(rules, []string{"KUBE-FIREWALL", "KUBE-KUBELET-CANARY"})
	want := [][]string{{"-D", "INPUT", "-j", "KUBE-FIREWALL"}, {"-D", "OUTPUT", "-j", "KUBE-FIREWALL"}}
	if len(got) != len(want) {
		t.Fatalf("jumpsTo = %q, want %q", got, want)
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("jumpsTo[%d] = %q, want %q", i, got[i], want[i])
		}
	}
}
