package k8snode

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"
)

// LabelSEVSNP labels, and taints with NoSchedule, a node whose runtime runs pods in
// SEV-SNP guests: deploy/runtimeclass.yaml selects and tolerates it, so a scheduler places
// only pods of that class there.
const LabelSEVSNP = "confguest.io/sev-snp"

// ports are the loopback and node ports of one node, chosen free at start.
type ports struct {
	etcdClient, etcdPeer, apiserver, kubelet, kubeletHealthz int
}

// layout names every file and folder of a node under its directory.
type layout struct{ dir string }

func (l layout) pki() string             { return filepath.Join(l.dir, "pki") }
func (l layout) cert(name string) string { return filepath.Join(l.dir, "pki", name+".crt") }
func (l layout) key(name string) string  { return filepath.Join(l.dir, "pki", name+".key") }
func (l layout) etcdData() string        { return filepath.Join(l.dir, "etcd") }
func (l layout) kubeletRoot() string     { return filepath.Join(l.dir, "kubelet") }
func (l layout) podLogs() string         { return filepath.Join(l.dir, "pod-logs") }
func (l layout) logs() string            { return filepath.Join(l.dir, "logs") }
func (l layout) kubeconfig(user string) string {
	return filepath.Join(l.dir, user+".kubeconfig")
}
func (l layout) kubeletConfig() string { return filepath.Join(l.dir, "kubelet-config.json") }

// etcdArgs run etcd with its client and peer URLs on loopback only.
func etcdArgs(l layout, p ports) []string {
	client := fmt.Sprintf("http://127.0.0.1:%d", p.etcdClient)
	peer := fmt.Sprintf("http://127.0.0.1:%d", p.etcdPeer)
	return []string{
		"--name", "node", "--data-dir", l.etcdData(),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "node=" + peer, "--initial-cluster-state", "new",
	}
}

// ServiceCIDR is the range service cluster IPs come from. Nothing routes it: the node runs
// no kube-proxy, so no pod reaches a service address.
const ServiceCIDR = "10.96.0.0/24"

// apiserverArgs serve the API on 127.0.0.1 only, with Node and RBAC authorization, the
// NodeRestriction admission plugin on top of the defaults (which include ServiceAccount
// and RuntimeClass), and service-account tokens signed with the node's key. advertise is
// the node's own address (the API server must not advertise loopback).
func apiserverArgs(l layout, p ports, advertise net.IP) []string {
	return []string{
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", p.etcdClient),
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(p.apiserver),
		"--advertise-address", advertise.String(),
		"--tls-cert-file", l.cert("apiserver"), "--tls-private-key-file", l.key("apiserver"),
		"--client-ca-file", l.cert("ca"),
		"--kubelet-client-certificate", l.cert("apiserver-kubelet-client"),
		"--kubelet-client-key", l.key("apiserver-kubelet-client"),
		"--kubelet-certificate-authority", l.cert("ca"),
		"--kubelet-preferred-address-types", "InternalIP",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", filepath.Join(l.pki(), "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(l.pki(), "sa.key"),
		"--service-cluster-ip-range", ServiceCIDR,
		"--authorization-mode", "Node,RBAC",
		"--enable-admission-plugins", "NodeRestriction",
		"--allow-privileged=true",
		"--profiling=false",
	}
}

// kubeconfig is a kubeconfig (JSON, which kubectl and the kubelet read as YAML) for the
// API server on 127.0.0.1 with the client certificate user.
func kubeconfig(l layout, p ports, user string) ([]byte, error) {
	return json.MarshalIndent(map[string]any{
		"apiVersion": "v1", "kind": "Config", "current-context": "confguest",
		"clusters": []any{map[string]any{"name": "confguest", "cluster": map[string]any{
			"server": fmt.Sprintf("https://127.0.0.1:%d", p.apiserver), "certificate-authority": l.cert("ca")}}},
		"users": []any{map[string]any{"name": user, "user": map[string]any{
			"client-certificate": l.cert(user), "client-key": l.key(user)}}},
		"contexts": []any{map[string]any{"name": "confguest", "context": map[string]any{"cluster": "confguest", "user": user}}},
	}, "", "  ")
}

// kubeletConfig is the kubelet's KubeletConfiguration: it serves on the node address with
// the node's certificate, authenticates the API server by the CA and authorizes through it
// (webhook), talks to containerd at endpoint, and keeps its pod logs under the node's
// directory. It runs without per-QoS cgroups and node-allocatable enforcement (this
// machine's cgroups are v1 under a container manager that is not the kubelet's), without
// swap checks, and syncs pods every sync.
func kubeletConfig(l layout, p ports, nodeIP net.IP, endpoint string, sync time.Duration) ([]byte, error) {
	return json.MarshalIndent(map[string]any{
		"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
		"address": nodeIP.String(), "port": p.kubelet, "readOnlyPort": 0,
		"healthzBindAddress": "127.0.0.1", "healthzPort": p.kubeletHealthz,
		"tlsCertFile": l.cert("kubelet"), "tlsPrivateKeyFile": l.key("kubelet"),
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": false},
			"webhook":   map[string]any{"enabled": true},
			"x509":      map[string]any{"clientCAFile": l.cert("ca")},
		},
		"authorization":            map[string]any{"mode": "Webhook"},
		"containerRuntimeEndpoint": endpoint,
		"imageServiceEndpoint":     endpoint,
		// A pod VM boots under TCG here in tens of seconds on a loaded machine.
		"runtimeRequestTimeout":  "10m",
		"cgroupDriver":           "cgroupfs",
		"cgroupsPerQOS":          false,
		"enforceNodeAllocatable": []string{},
		"failSwapOn":             false,
		"failCgroupV1":           false,
		"syncFrequency":          sync.String(),
		"podLogsDir":             l.podLogs(),
		"clusterDomain":          "cluster.local",
		"registerWithTaints":     []any{taint()},
		// Never evict or collect images because this shared machine's disk fills up.
		"evictionHard":                map[string]string{"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
		"imageGCHighThresholdPercent": 100,
		"imageGCLowThresholdPercent":  99,
	}, "", "  ")
}

// taint is the node's taint LabelSEVSNP=true:NoSchedule.
func taint() map[string]string {
	return map[string]string{"key": LabelSEVSNP, "value": "true", "effect": "NoSchedule"}
}

// kubeletArgs run the kubelet as node name with the SEV-SNP label.
func kubeletArgs(l layout, name string, nodeIP net.IP) []string {
	return []string{
		"--config", l.kubeletConfig(), "--kubeconfig", l.kubeconfig("kubelet-client"),
		"--root-dir", l.kubeletRoot(), "--hostname-override", name, "--node-ip", nodeIP.String(),
		"--node-labels", LabelSEVSNP + "=true",
		"--v", "2",
	}
}
