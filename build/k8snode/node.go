// Package k8snode runs a single-node Kubernetes cluster on this machine for confguest:
// etcd (Debian's etcd-server) and kube-apiserver on 127.0.0.1, the private containerd of
// build/conformance with the runtime handlers runc and confguest and its CNI bridge, and a
// kubelet registering the node. Certificates and the service-account signing key are made
// at start. There is no scheduler and no controller manager: pods name their node
// (spec.nodeName), and PrepareNamespace does the two things the controller manager would
// do for a namespace that pods need (its default ServiceAccount and the kube-root-ca.crt
// ConfigMap that every service-account token volume projects).
package k8snode

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"confguest/build/conformance"
)

// The defaults of Options, and of the k8s-node command's flags.
const (
	DefaultName   = "confguest-node"
	DefaultBridge = "cgk8s0"
	DefaultSubnet = "10.88.76.0/24" // the node's address is its first
	DefaultSync   = 10 * time.Second
)

// Options configure a node.
type Options struct {
	// Host: Bridge defaults to DefaultBridge, Subnet to DefaultSubnet, Accel to auto.
	conformance.Host
	BinDir string        // kube-apiserver, kubelet, kubectl; empty: built by deploy/build-k8s.sh
	Name   string        // node name; default DefaultName
	Sync   time.Duration // the kubelet's syncFrequency; default DefaultSync
	Log    io.Writer
}

// Node is a running single-node cluster.
type Node struct {
	Name       string
	IP         net.IP // the node's InternalIP: the pod bridge's address
	Dir        string // everything of the node: certificates, etcd, kubelet root, logs
	Kubeconfig string // an administrator's (system:masters) kubeconfig
	KubectlBin string
	Runtime    *conformance.Runtime
	Sync       time.Duration

	l         layout
	etcd      *process
	apiserver *process
	kubelet   *process
	log       io.Writer
}

// Start brings the node up and returns once the node is Ready and the default namespace
// is prepared. On an error everything started is stopped again.
func Start(ctx context.Context, o Options) (_ *Node, err error) {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.Bridge == "" {
		o.Bridge = DefaultBridge
	}
	if o.Subnet == "" {
		o.Subnet = DefaultSubnet
	}
	if o.Accel == "" {
		o.Accel = "auto"
	}
	if o.Sync == 0 {
		o.Sync = DefaultSync
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	step := func(format string, args ...any) { fmt.Fprintf(o.Log, "k8s-node: "+format+"\n", args...) }
	etcdBin, err := exec.LookPath("etcd")
	if err != nil {
		return nil, errors.New("etcd not found: install Debian's etcd-server (make setup, build/apt-packages.txt)")
	}
	if o.BinDir == "" {
		step("building kube-apiserver, kubelet and kubectl (cached under $CONFGUEST_CACHE)")
		if o.BinDir, err = buildKubernetes(ctx, o.Repo, o.Log); err != nil {
			return nil, err
		}
	}
	for _, b := range []string{"kube-apiserver", "kubelet", "kubectl"} {
		if _, err := os.Stat(filepath.Join(o.BinDir, b)); err != nil {
			return nil, fmt.Errorf("%w: run deploy/build-k8s.sh", err)
		}
	}
	dir, err := os.MkdirTemp("", "cgk8s")
	if err != nil {
		return nil, err
	}
	n := &Node{Name: o.Name, Dir: dir, l: layout{dir}, KubectlBin: filepath.Join(o.BinDir, "kubectl"), Sync: o.Sync, log: o.Log}
	n.Kubeconfig = n.l.kubeconfig("admin")
	defer func() {
		if err != nil {
			n.Stop()
		}
	}()
	if err := os.MkdirAll(n.l.logs(), 0o755); err != nil {
		return nil, err
	}

	n.Runtime, err = conformance.StartRuntime(ctx, conformance.RuntimeOptions{Host: o.Host,
		LogPath: filepath.Join(n.l.logs(), "containerd.log"), Log: o.Log})
	if err != nil {
		return nil, err
	}
	n.IP = n.Runtime.Gateway

	step("certificates and the service-account key in %s", n.l.pki())
	if _, err := newPKI(n.l.pki(), certSpecs(n.Name, n.IP), time.Now(), 7*24*time.Hour); err != nil {
		return nil, err
	}
	loopback, err := freePorts(net.IPv4(127, 0, 0, 1), 4)
	if err != nil {
		return nil, err
	}
	onNode, err := freePorts(n.IP, 1)
	if err != nil {
		return nil, err
	}
	p := ports{etcdClient: loopback[0], etcdPeer: loopback[1], apiserver: loopback[2], kubeletHealthz: loopback[3], kubelet: onNode[0]}
	for _, user := range []string{"admin", "kubelet-client"} {
		kc, err := kubeconfig(n.l, p, user)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(n.l.kubeconfig(user), kc, 0o600); err != nil {
			return nil, err
		}
	}

	step("etcd on 127.0.0.1:%d", p.etcdClient)
	if n.etcd, err = startProcess("etcd", etcdBin, etcdArgs(n.l, p), n.l.logs()); err != nil {
		return nil, err
	}
	health := fmt.Sprintf("http://127.0.0.1:%d/health", p.etcdClient)
	if err := n.etcd.waitFor(ctx, "healthy", time.Minute, func() error { return get(ctx, http.DefaultClient, health) }); err != nil {
		return nil, err
	}

	step("kube-apiserver on 127.0.0.1:%d", p.apiserver)
	if n.apiserver, err = startProcess("kube-apiserver", filepath.Join(o.BinDir, "kube-apiserver"), apiserverArgs(n.l, p, n.IP), n.l.logs()); err != nil {
		return nil, err
	}
	admin, err := n.client()
	if err != nil {
		return nil, err
	}
	readyz := fmt.Sprintf("https://127.0.0.1:%d/readyz", p.apiserver)
	if err := n.apiserver.waitFor(ctx, "ready", 3*time.Minute, func() error { return get(ctx, admin, readyz) }); err != nil {
		return nil, err
	}

	kc, err := kubeletConfig(n.l, p, n.IP, n.Runtime.Endpoint, o.Sync)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(n.l.kubeletConfig(), kc, 0o600); err != nil {
		return nil, err
	}
	step("kubelet registering node %s (%s:%d)", n.Name, n.IP, p.kubelet)
	if n.kubelet, err = startProcess("kubelet", filepath.Join(o.BinDir, "kubelet"), kubeletArgs(n.l, n.Name, n.IP), n.l.logs()); err != nil {
		return nil, err
	}
	if err := n.kubelet.waitFor(ctx, "Ready", 3*time.Minute, func() error { return n.nodeReady(ctx) }); err != nil {
		return nil, err
	}
	if err := n.PrepareNamespace(ctx, "default"); err != nil {
		return nil, err
	}
	step("node %s Ready; kubectl --kubeconfig %s", n.Name, n.Kubeconfig)
	return n, nil
}

// Stop stops the kubelet, removes every pod (their VMs) and stops containerd, the API
// server and etcd, then removes what the kubelet added to the firewall and the node's
// directory.
func (n *Node) Stop() error {
	n.kubelet.stop(15 * time.Second)
	var err error
	if n.Runtime != nil {
		err = n.Runtime.Close()
	}
	n.apiserver.stop(15 * time.Second)
	n.etcd.stop(15 * time.Second)
	if n.kubelet != nil {
		removeKubeletChains()
	}
	unmountUnder(n.Dir)
	if rmErr := os.RemoveAll(n.Dir); rmErr != nil && err == nil {
		err = rmErr
	}
	return err
}

// KubeletRoot is the kubelet's root directory (pods/<uid>/volumes/... under it).
func (n *Node) KubeletRoot() string { return n.l.kubeletRoot() }

// Logs is the folder holding every component's log.
func (n *Node) Logs() string { return n.l.logs() }

// Kubectl runs kubectl as the administrator with stdin and returns its standard output;
// the error carries its standard error.
func (n *Node) Kubectl(ctx context.Context, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, n.KubectlBin, append([]string{"--kubeconfig", n.Kubeconfig}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}

// Apply applies objects (each a Kubernetes object as a Go value) with kubectl apply.
func (n *Node) Apply(ctx context.Context, objects ...any) error {
	for _, o := range objects {
		b, err := json.Marshal(o)
		if err != nil {
			return err
		}
		if _, err := n.Kubectl(ctx, string(b), "apply", "-f", "-"); err != nil {
			return err
		}
	}
	return nil
}

// PrepareNamespace creates namespace ns (if it is new), its default ServiceAccount and the
// kube-root-ca.crt ConfigMap holding the node's CA: what the controller manager's
// service-account and root-CA publisher controllers do for every namespace.
func (n *Node) PrepareNamespace(ctx context.Context, ns string) error {
	ca, err := os.ReadFile(n.l.cert("ca"))
	if err != nil {
		return err
	}
	meta := func(name string) map[string]any { return map[string]any{"name": name, "namespace": ns} }
	return n.Apply(ctx,
		map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}},
		map[string]any{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("default")},
		map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("kube-root-ca.crt"), "data": map[string]string{"ca.crt": string(ca)}},
	)
}

// nodeReady is nil once the node's Ready condition is True.
func (n *Node) nodeReady(ctx context.Context) error {
	out, err := n.Kubectl(ctx, "", "get", "node", n.Name, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
	if err != nil {
		return err
	}
	if strings.TrimSpace(out) != "True" {
		return fmt.Errorf("node %s Ready=%q", n.Name, out)
	}
	return nil
}

// client is an HTTPS client with the administrator's certificate trusting the node's CA.
func (n *Node) client() (*http.Client, error) {
	cert, err := tls.LoadX509KeyPair(n.l.cert("admin"), n.l.key("admin"))
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(n.l.cert("ca"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool}}}, nil
}

// get is nil when url answers 200.
func get(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// buildKubernetes runs deploy/build-k8s.sh and returns the folder it printed.
func buildKubernetes(ctx context.Context, repo string, log io.Writer) (string, error) {
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(repo, "deploy", "build-k8s.sh"))
	cmd.Stderr = log
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("deploy/build-k8s.sh: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
}

// kubeletChains are the chains the kubelet creates: KUBE-FIREWALL (filter, jumped to from
// INPUT and OUTPUT) drops connections to 127.0.0.0/8 from other sources; the others let it
// notice a flushed firewall.
var kubeletChains = map[string][]string{
	"mangle": {"KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"},
	"nat":    {"KUBE-KUBELET-CANARY"},
	"filter": {"KUBE-FIREWALL", "KUBE-KUBELET-CANARY"},
}

// removeKubeletChains deletes the rules jumping to kubeletChains, then the chains (IPv4
// and IPv6), where they exist.
func removeKubeletChains() {
	for _, bin := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(bin); err != nil {
			continue
		}
		for table, chains := range kubeletChains {
			rules, _ := exec.Command(bin, "-w", "-t", table, "-S").Output()
			for _, args := range jumpsTo(string(rules), chains) {
				exec.Command(bin, append([]string{"-w", "-t", table}, args...)...).Run()
			}
			for _, c := range chains {
				exec.Command(bin, "-w", "-t", table, "-F", c).Run()
				exec.Command(bin, "-w", "-t", table, "-X", c).Run()
			}
		}
	}
}

// jumpsTo are the iptables arguments that delete the rules of rules (iptables -S output)
// that jump from another chain to one of chains.
func jumpsTo(rules string, chains []string) [][]string {
	var out [][]string
	for _, l := range strings.Split(rules, "\n") {
		f := strings.Fields(l)
		if len(f) < 4 || f[0] != "-A" || slices.Contains(chains, f[1]) {
			continue
		}
		if i := slices.Index(f, "-j"); i > 0 && i+1 < len(f) && slices.Contains(chains, f[i+1]) {
			out = append(out, append([]string{"-D"}, f[1:]...))
		}
	}
	return out
}
