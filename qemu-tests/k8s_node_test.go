package qemutests

// A real Kubernetes node (build/k8snode: etcd, kube-apiserver, the kubelet, the private
// containerd) runs one pod spec under the RuntimeClass confguest and, without
// runtimeClassName, under runc, and every check goes through the API server with kubectl:
// Ready, logs, exec as the pod's policy says, a ConfigMap update seen in the container, a
// container killed in the guest restarted in the same sandbox, and deletion leaving nothing
// behind. It also measures kubectl apply to Ready under both runtimes.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"confguest/agent/api/policy"
	"confguest/build/conformance"
	"confguest/build/k8snode"
)

const (
	k8sAppScript     = `echo "app started"; cat /etc/config/greeting; echo ready > /tmp/ready; sleep 100000 & echo $! > /tmp/worker.pid; wait $!; echo "worker ended: $?"; exit 1`
	k8sSidecarScript = `echo "sidecar sees secret $(cat /etc/secret/password)"; echo from-sidecar > /cache/shared; exec sleep 100000`
	k8sKillWorker    = `kill -9 $(cat /tmp/worker.pid)`
)

// k8sEnv is the running node, the test image and the pod policy.
type k8sEnv struct {
	t      *testing.T
	node   *k8snode.Node
	image  string // the test image's reference, served by the node's registry
	policy string // the confguest.io/policy annotation of the test pods
}

func TestK8sNode(t *testing.T) {
	// Not in make test: building the Kubernetes binaries takes about 23 minutes of CPU when
	// they are not cached. .ci/run builds them beside its other steps, then runs this test
	// with make k8s-test.
	if os.Getenv("CONFGUEST_K8S") != "1" {
		t.Skip("set CONFGUEST_K8S=1 (make k8s-test) to run the Kubernetes node test")
	}
	if os.Geteuid() != 0 {
		missing(t, "the Kubernetes node test runs containerd, etcd, the API server and the kubelet: run it as root")
	}
	img := needImage(t)
	if _, err := exec.LookPath("etcd"); err != nil {
		missing(t, "etcd not found: apt-get install etcd-server (build/apt-packages.txt)")
	}
	if _, err := exec.LookPath("containerd"); err != nil {
		missing(t, "containerd not found: apt-get install containerd (build/apt-packages.txt)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()
	node, err := k8snode.Start(ctx, k8snode.Options{Host: conformance.Host{Repo: repoRoot(), ImageDir: img.Dir,
		Shim: filepath.Join(shimBinary(t), "containerd-shim-confguest-v2"), Accel: "tcg"}, Log: testLog{t}})
	if err != nil {
		t.Fatalf("start the node: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range []string{"kubelet", "kube-apiserver", "containerd"} {
				t.Logf("%s log (tail):\n%s", c, tail(readFile(filepath.Join(node.Logs(), c+".log")), 40))
			}
		}
		if err := node.Stop(); err != nil {
			t.Errorf("stop the node: %v", err)
		}
	})

	root := busyboxRoot(t)
	e := &k8sEnv{t: t, node: node, image: node.Runtime.Registry() + "/confguest/k8s-test:1"}
	if err := node.Runtime.Push(ctx, e.image, dirImage(t, root)); err != nil {
		t.Fatal(err)
	}
	e.policy = k8sPodPolicy(t, layerHash(t, root))
	// The node is labelled and tainted as an SEV-SNP node; the RuntimeClass selects and
	// tolerates that.
	for _, tc := range []struct{ path, want string }{
		{`{.metadata.labels.confguest\.io/sev-snp}`, "true"},
		{`{.spec.taints[?(@.key=="confguest.io/sev-snp")].effect}`, "NoSchedule"},
	} {
		if got, err := node.Kubectl(ctx, "", "get", "node", node.Name, "-o", "jsonpath="+tc.path); err != nil || got != tc.want {
			t.Errorf("node %s: %s = %q, %v; want %q", node.Name, tc.path, got, err, tc.want)
		}
	}
	if _, err := node.Kubectl(ctx, "", "apply", "-f", filepath.Join(repoRoot(), "deploy", "runtimeclass.yaml")); err != nil {
		t.Fatal(err)
	}

	medians := map[string]time.Duration{}
	for _, rc := range []string{"confguest", "runc"} {
		t.Run(rc, func(t *testing.T) {
			e.t = t
			ns := "cg-" + rc
			if err := node.PrepareNamespace(ctx, ns); err != nil {
				t.Fatal(err)
			}
			e.checkPod(ctx, ns, rc)
			e.checkExample(ctx, ns, rc)
			medians[rc] = e.measureReady(ctx, ns, rc, 5)
		})
	}
	if len(medians) == 2 {
		t.Logf("kubectl apply -> Ready, median of 5: confguest %.1fs, runc %.1fs", medians["confguest"].Seconds(), medians["runc"].Seconds())
	}
}

// checkPod runs the test pod under runtime class rc (runc: no runtimeClassName) in ns
// and checks it through the API server.
func (e *k8sEnv) checkPod(ctx context.Context, ns, rc string) {
	t := e.t
	const pod = "k8s-test"
	if err := e.node.Apply(ctx, e.objects(ns, pod, rc, "hello")...); err != nil {
		t.Fatal(err)
	}
	e.waitReady(ctx, ns, pod)
	if rc == "confguest" {
		// The RuntimeClass admission added the class's overhead and scheduling.
		if out := e.kubectl(ctx, "-n", ns, "get", "pod", pod, "-o", "jsonpath={.spec.overhead.memory}"); out == "" {
			t.Errorf("pod %s has no overhead: the RuntimeClass admission did not apply deploy/runtimeclass.yaml", pod)
		}
		for _, tc := range []struct{ path, want string }{
			{`{.spec.nodeSelector.confguest\.io/sev-snp}`, "true"},
			{`{.spec.tolerations[?(@.key=="confguest.io/sev-snp")].effect}`, "NoSchedule"},
		} {
			if got := e.kubectl(ctx, "-n", ns, "get", "pod", pod, "-o", "jsonpath="+tc.path); got != tc.want {
				t.Errorf("pod %s: %s = %q, want %q from deploy/runtimeclass.yaml", pod, tc.path, got, tc.want)
			}
		}
	}

	// Logs through the API server.
	if out := e.kubectl(ctx, "-n", ns, "logs", pod, "-c", "app"); !strings.Contains(out, "app started") || !strings.Contains(out, "greeting=hello") {
		t.Errorf("kubectl logs %s -c app = %q, want app started and the ConfigMap's greeting=hello", pod, out)
	}
	if out := e.kubectl(ctx, "-n", ns, "logs", pod, "-c", "sidecar"); !strings.Contains(out, "sidecar sees secret s3cret") {
		t.Errorf("kubectl logs %s -c sidecar = %q, want the Secret's value", pod, out)
	}

	// Exec: the policy lets the host run sh -c in app, and nothing in sidecar.
	execIn := func(container, script string) (string, error) {
		return e.node.Kubectl(ctx, "", "-n", ns, "exec", pod, "-c", container, "--", "sh", "-c", script)
	}
	if out, err := execIn("app", "cat /cache/shared"); err != nil || strings.TrimSpace(out) != "from-sidecar" {
		t.Errorf("exec in app: cat /cache/shared = %q, %v; want the emptyDir the sidecar wrote (from-sidecar)", out, err)
	}
	tok, err := execIn("app", "cat /var/run/secrets/kubernetes.io/serviceaccount/token")
	if err != nil || strings.Count(tok, ".") != 2 {
		t.Errorf("exec in app: the projected service-account token = %q, %v; want a JWT", tok, err)
	}
	// What the policy does not list: anything in sidecar, and in app a command other than
	// sh -c and the probe's. runc runs them.
	for _, tc := range []struct {
		container string
		cmd       []string
		want      string
	}{
		{"sidecar", []string{"sh", "-c", "echo should not run"}, "should not run"},
		{"app", []string{"echo", "should not run"}, "should not run"},
	} {
		out, err := e.node.Kubectl(ctx, "", append([]string{"-n", ns, "exec", pod, "-c", tc.container, "--"}, tc.cmd...)...)
		rule := "denied by policy rule containers[" + tc.container + "].exec"
		if rc == "confguest" {
			if err == nil || strings.Contains(out, tc.want) || !strings.Contains(err.Error(), rule) {
				t.Errorf("exec %q in %s under confguest = %q, %v; want the policy's denial (%s)", tc.cmd, tc.container, out, err, rule)
			}
		} else if err != nil || strings.TrimSpace(out) != tc.want {
			t.Errorf("exec %q in %s under runc = %q, %v; want it to run", tc.cmd, tc.container, out, err)
		}
	}

	// A ConfigMap update reaches the container when the kubelet next syncs the pod: within
	// its sync period, which the kubelet stretches by up to half (each pod's resync is
	// jittered), and under confguest at once after that (the shim watches the volume with
	// inotify); 10 s more for kubectl exec on a loaded machine.
	start := time.Now()
	if err := e.node.Apply(ctx, configMap(ns, "updated")); err != nil {
		t.Fatal(err)
	}
	bound := e.node.Sync*3/2 + 10*time.Second
	for {
		out, err := execIn("app", "cat /etc/config/greeting")
		if err == nil && strings.TrimSpace(out) == "greeting=updated" {
			seen := time.Since(start)
			t.Logf("%s: ConfigMap update seen in the container after %.1fs (kubelet sync period %s); %s",
				rc, seen.Seconds(), e.node.Sync, e.configMapWritten(ctx, ns, pod, start, seen))
			break
		}
		if time.Since(start) > bound {
			t.Errorf("ConfigMap update not seen in the container within %s: cat /etc/config/greeting = %q, %v", bound, out, err)
			break
		}
		time.Sleep(250 * time.Millisecond)
	}

	// A container killed in the guest is restarted by the kubelet in the same sandbox
	// (under confguest: the same VM).
	sandbox := e.sandboxID(ctx, ns, pod)
	vm := e.vmPIDs()
	if _, err := execIn("app", k8sKillWorker); err != nil {
		t.Fatalf("exec in app: %s: %v", k8sKillWorker, err)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		n, _ := strconv.Atoi(e.kubectl(ctx, "-n", ns, "get", "pod", pod, "-o", `jsonpath={.status.containerStatuses[?(@.name=="app")].restartCount}`))
		if n >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("app was not restarted within 3 minutes after its process was killed")
		}
		time.Sleep(time.Second)
	}
	e.waitReady(ctx, ns, pod)
	if prev := e.kubectl(ctx, "-n", ns, "logs", pod, "-c", "app", "--previous"); !strings.Contains(prev, "worker ended: 137") {
		t.Errorf("kubectl logs --previous -c app = %q, want the killed worker (worker ended: 137)", prev)
	}
	if got := e.sandboxID(ctx, ns, pod); got != sandbox {
		t.Errorf("after the restart the pod's sandbox is %s, want the same %s", got, sandbox)
	}
	if got := e.vmPIDs(); !slices.Equal(got, vm) {
		t.Errorf("after the restart the VM processes are %v, want the same %v", got, vm)
	}

	// Deleting the pod stops its VM and leaves nothing on the host.
	e.kubectl(ctx, "-n", ns, "delete", "pod", pod, "--wait=true", "--timeout=5m")
	e.checkGone(sandbox)
}

// checkExample runs deploy/examples/hello.yaml in ns, without its runtimeClassName under
// runc, and checks that it becomes Ready, its reader logs what its writer shared, and its
// deletion leaves nothing.
func (e *k8sEnv) checkExample(ctx context.Context, ns, rc string) {
	t := e.t
	out := e.kubectl(ctx, "create", "--dry-run=client", "-o", "json", "-f", filepath.Join(repoRoot(), "deploy", "examples", "hello.yaml"))
	var pod map[string]any
	if err := json.Unmarshal([]byte(out), &pod); err != nil {
		t.Fatalf("deploy/examples/hello.yaml as JSON: %v", err)
	}
	spec, _ := pod["spec"].(map[string]any)
	meta, _ := pod["metadata"].(map[string]any)
	if spec == nil || meta == nil || spec["runtimeClassName"] != "confguest" || spec["nodeName"] != e.node.Name {
		t.Fatalf("deploy/examples/hello.yaml: want a pod with runtimeClassName confguest and nodeName %s, got %s", e.node.Name, out)
	}
	if rc == "runc" {
		delete(spec, "runtimeClassName")
	}
	meta["namespace"] = ns
	name, _ := meta["name"].(string)
	if err := e.node.Apply(ctx, pod); err != nil {
		t.Fatal(err)
	}
	e.waitReady(ctx, ns, name)
	sandbox := e.sandboxID(ctx, ns, name)
	deadline := time.Now().Add(time.Minute)
	for {
		logs := e.kubectl(ctx, "-n", ns, "logs", name, "-c", "reader")
		if strings.Contains(logs, "hello from") && strings.Contains(logs, "token") {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("kubectl logs %s -c reader = %q, want the writer's greeting and the token file", name, logs)
			break
		}
		time.Sleep(time.Second)
	}
	e.kubectl(ctx, "-n", ns, "delete", "pod", name, "--wait=true", "--timeout=5m")
	e.checkGone(sandbox)
}

// measureReady applies n pods of the test spec one after another, each deleted once
// Ready, and returns the median time from kubectl apply to Ready.
func (e *k8sEnv) measureReady(ctx context.Context, ns, rc string, n int) time.Duration {
	var times []time.Duration
	for i := range n {
		pod := fmt.Sprintf("k8s-ready-%d", i)
		start := time.Now()
		if err := e.node.Apply(ctx, e.objects(ns, pod, rc, "hello")...); err != nil {
			e.t.Fatal(err)
		}
		e.waitReady(ctx, ns, pod)
		times = append(times, time.Since(start))
		e.kubectl(ctx, "-n", ns, "delete", "pod", pod, "--wait=true", "--timeout=5m")
	}
	slices.Sort(times)
	var s []string
	for _, d := range times {
		s = append(s, fmt.Sprintf("%.1fs", d.Seconds()))
	}
	e.t.Logf("%s: kubectl apply -> Ready: %s (median %.1fs)", rc, strings.Join(s, " "), times[n/2].Seconds())
	return times[n/2]
}

// configMapWritten says when, after start, the kubelet wrote the ConfigMap volume of pod
// (its ..data symlink's time), and so what the update took after that, of the seen it
// took in all: the runtime's share plus one kubectl exec.
func (e *k8sEnv) configMapWritten(ctx context.Context, ns, pod string, start time.Time, seen time.Duration) string {
	uid := e.kubectl(ctx, "-n", ns, "get", "pod", pod, "-o", "jsonpath={.metadata.uid}")
	data, err := filepath.Glob(filepath.Join(e.node.KubeletRoot(), "pods", uid, "volumes", "kubernetes.io~configmap", "*", "..data"))
	if err != nil || len(data) != 1 {
		return fmt.Sprintf("the kubelet's ..data of pod %s not found (%v)", uid, err)
	}
	fi, err := os.Lstat(data[0])
	if err != nil {
		return err.Error()
	}
	w := fi.ModTime().Sub(start)
	return fmt.Sprintf("the kubelet wrote it after %.1fs, seen %.1fs later", w.Seconds(), (seen - w).Seconds())
}

// objects are the test pod name under runtime class rc ("runc": none) with its ConfigMap
// (greeting=greeting) and Secret, as kubectl apply takes them.
func (e *k8sEnv) objects(ns, name, rc, greeting string) []any {
	mount := func(vol, path string, ro bool) map[string]any {
		return map[string]any{"name": vol, "mountPath": path, "readOnly": ro}
	}
	spec := map[string]any{
		"nodeName":                      e.node.Name,
		"terminationGracePeriodSeconds": 3,
		"containers": []any{
			map[string]any{
				"name": "app", "image": e.image, "imagePullPolicy": "IfNotPresent",
				"command":        []string{"sh", "-c", k8sAppScript},
				"ports":          []any{map[string]any{"containerPort": 8080, "name": "http"}},
				"readinessProbe": map[string]any{"exec": map[string]any{"command": []string{"cat", "/tmp/ready"}}, "periodSeconds": 3},
				"volumeMounts":   []any{mount("config", "/etc/config", true), mount("secret", "/etc/secret", true), mount("cache", "/cache", false)},
			},
			map[string]any{
				"name": "sidecar", "image": e.image, "imagePullPolicy": "IfNotPresent",
				"command":      []string{"sh", "-c", k8sSidecarScript},
				"volumeMounts": []any{mount("secret", "/etc/secret", true), mount("cache", "/cache", false)},
			},
		},
		"volumes": []any{
			map[string]any{"name": "config", "configMap": map[string]any{"name": "k8s-test-config"}},
			map[string]any{"name": "secret", "secret": map[string]any{"secretName": "k8s-test-secret"}},
			map[string]any{"name": "cache", "emptyDir": map[string]any{}},
		},
	}
	if rc != "runc" {
		spec["runtimeClassName"] = rc
	}
	pod := map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": name, "namespace": ns,
			"annotations": map[string]string{"confguest.io/policy": e.policy}},
		"spec": spec,
	}
	secret := map[string]any{"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": "k8s-test-secret", "namespace": ns}, "stringData": map[string]string{"password": "s3cret"}}
	return []any{configMap(ns, greeting), secret, pod}
}

func configMap(ns, greeting string) map[string]any {
	return map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "k8s-test-config", "namespace": ns},
		"data":     map[string]string{"greeting": "greeting=" + greeting + "\n"}}
}

// k8sPodPolicy is the policy annotation of the test pod: app may be exec'd with sh -c and
// its readiness probe, sidecar not at all; both take the kubelet's volumes.
func k8sPodPolicy(t *testing.T, layer string) string {
	t.Helper()
	sh := func(script policy.Match) []policy.Match { return []policy.Match{{Exact: "sh"}, {Exact: "-c"}, script} }
	app := criEntry("app", layer, sh(policy.Match{Exact: k8sAppScript}), []policy.Exec{
		{Args: []policy.Match{{Exact: "cat"}, {Exact: "/tmp/ready"}}, Env: []policy.Match{anything}},
		{Args: sh(anything), Env: []policy.Match{anything}},
	})
	sidecar := criEntry("sidecar", layer, sh(policy.Match{Exact: k8sSidecarScript}), nil)
	kubelet := []policy.Volume{
		{Destination: "/dev/termination-log", Kind: policy.VolumeFiles, ReadBack: true},
		{Destination: "/var/run/secrets/kubernetes.io/serviceaccount", Kind: policy.VolumeFiles},
		{Destination: "/etc/secret", Kind: policy.VolumeFiles},
		{Destination: "/cache", Kind: policy.VolumeEmptyDir},
	}
	app.Volumes = append(app.Volumes, append(kubelet, policy.Volume{Destination: "/etc/config", Kind: policy.VolumeFiles})...)
	sidecar.Volumes = append(sidecar.Volumes, kubelet...)
	for _, c := range []*policy.Container{&app, &sidecar} {
		// A pod that does not share its process namespace.
		c.PodNamespaces = []string{"network", "ipc", "uts"}
	}
	return encodeTestPolicy(t, policy.Policy{Version: 1, Agent: policy.AgentRules{Stats: true, Shutdown: true, PodNetwork: true},
		Containers: []policy.Container{app, sidecar}})
}

// kubectl runs kubectl and fails the test on an error.
func (e *k8sEnv) kubectl(ctx context.Context, args ...string) string {
	e.t.Helper()
	out, err := e.node.Kubectl(ctx, "", args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// waitReady waits until the pod's Ready condition is True.
func (e *k8sEnv) waitReady(ctx context.Context, ns, pod string) {
	e.t.Helper()
	if _, err := e.node.Kubectl(ctx, "", "-n", ns, "wait", "--for=condition=Ready", "pod/"+pod, "--timeout=5m"); err != nil {
		desc, _ := e.node.Kubectl(ctx, "", "-n", ns, "describe", "pod", pod)
		e.t.Fatalf("pod %s not Ready: %v\n%s", pod, err, desc)
	}
}

// sandboxID is the CRI sandbox of the pod, as containerd lists it.
func (e *k8sEnv) sandboxID(ctx context.Context, ns, pod string) string {
	e.t.Helper()
	cmd := exec.CommandContext(ctx, e.node.Runtime.Crictl, "--runtime-endpoint", e.node.Runtime.Endpoint,
		"pods", "--namespace", ns, "--name", "^"+pod+"$", "--state", "ready", "-q")
	cmd.Env = append(os.Environ(), "CRI_CONFIG_FILE=/dev/null")
	out, err := cmd.Output()
	ids := strings.Fields(string(out))
	if err != nil || len(ids) != 1 {
		e.t.Fatalf("crictl pods --name %s: %q, %v; want one ready sandbox", pod, out, err)
	}
	return ids[0]
}

// vmPIDs are the processes of the node's pod VMs (QEMU, vhost-device-vsock).
func (e *k8sEnv) vmPIDs() []string {
	var pids []string
	for _, p := range procsMentioning(e.node.Runtime.RunDir) {
		pids = append(pids, strings.SplitN(p, ":", 2)[0])
	}
	slices.Sort(pids)
	return pids
}

// checkGone fails when a process of the sandbox (its shim, its VM), a VM run directory
// (with the container disks) or the shim's socket is left a minute after the deletion.
func (e *k8sEnv) checkGone(sandbox string) {
	e.t.Helper()
	sock := strings.TrimPrefix(e.node.Runtime.Endpoint, "unix://")
	shimSock := shimSocketPath(sock, "k8s.io", sandbox)
	var left []string
	for deadline := time.Now().Add(time.Minute); ; {
		left = append(procsMentioning(e.node.Runtime.RunDir), procsMentioning(sandbox)...)
		ents, _ := os.ReadDir(e.node.Runtime.RunDir)
		for _, ent := range ents {
			left = append(left, "VM run directory "+ent.Name())
		}
		if _, err := os.Stat(shimSock); err == nil {
			left = append(left, "shim socket "+shimSock)
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	for _, l := range left {
		e.t.Errorf("left on the host a minute after the pod was deleted: %s", l)
	}
}

// testLog writes the node's progress lines to the test log.
type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
