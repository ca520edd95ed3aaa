package qemutests

// Kubernetes volumes reach a CRI pod's guest without a shared filesystem: an emptyDir
// written by one container is read by another, /etc/resolv.conf carries the pod's DNS
// config, and a destination the default pod policy does not allow, or a hostPath, fails
// the container naming the destination.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// containerConfigMounts is containerConfig with CRI mounts (container path -> host path).
func containerConfigMounts(t *testing.T, name, image string, mounts map[string]string, cmd ...string) string {
	var ms []map[string]any
	for dst, src := range mounts {
		ms = append(ms, map[string]any{"container_path": dst, "host_path": src})
	}
	return writeJSONFile(t, name+"-ctr.json", map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": image},
		"command":  cmd,
		"log_path": name + ".log",
		"mounts":   ms,
		"linux":    map[string]any{},
	})
}

func TestShimCRIVolumes(t *testing.T) {
	e, crictl, _, image := startCRI(t, "confguest/busybox:volumes")
	// The kubelet's layout of a pod's volumes, which the shim recognises by path.
	kubelet := filepath.Join(t.TempDir(), "pods", "uid-volumes", "volumes")
	emptyDir := filepath.Join(kubelet, "kubernetes.io~empty-dir", "shared")
	configMap := filepath.Join(kubelet, "kubernetes.io~configmap", "cfg")
	for _, d := range []string{emptyDir, configMap} {
		if err := os.MkdirAll(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(configMap, "app.conf"), []byte("port=80\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	podCfg := writeJSONFile(t, "volumes-pod.json", map[string]any{
		"metadata":      map[string]any{"name": "volumes", "namespace": "default", "uid": "uid-volumes"},
		"hostname":      "volumes",
		"log_directory": filepath.Join(t.TempDir(), "logs"),
		"dns_config":    map[string]any{"servers": []string{"10.96.0.10", "192.0.2.53"}, "searches": []string{"default.svc.cluster.local"}, "options": []string{"ndots:5"}},
		"linux":         map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"network": 2}}},
	})
	pod := e.mustCrictl(crictl, "runp", "--runtime", "confguest", podCfg)

	a := e.mustCrictl(crictl, "create", pod, containerConfigMounts(t, "a", image, map[string]string{"/shared": emptyDir},
		"sh", "-c", `echo written-by-a > /shared/f && echo "a wrote"; exec sleep 1000`), podCfg)
	e.mustCrictl(crictl, "start", a)
	e.waitLogs(crictl, a, "a wrote")
	b := e.mustCrictl(crictl, "create", pod, containerConfigMounts(t, "b", image, map[string]string{"/data": emptyDir},
		"sh", "-c", `i=0; while [ ! -s /data/f ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; cat /data/f; cat /etc/resolv.conf; echo "b done"; exec sleep 1000`), podCfg)
	e.mustCrictl(crictl, "start", b)
	outB := e.waitLogs(crictl, b, "b done")
	if !strings.Contains(outB, "written-by-a") {
		t.Errorf("b read the emptyDir a wrote: %q, want written-by-a", outB)
	}
	for _, want := range []string{"nameserver 10.96.0.10", "nameserver 192.0.2.53", "search default.svc.cluster.local", "options ndots:5"} {
		if !strings.Contains(outB, want) {
			t.Errorf("/etc/resolv.conf in the pod's container: %q, want %q (the pod's dns_config)", outB, want)
		}
	}
	if _, err := os.Stat(filepath.Join(emptyDir, "f")); err == nil {
		t.Errorf("the guest's emptyDir reached the host directory %s", emptyDir)
	}

	// The service-account token, rotated by the kubelet's atomic writer (a new generation
	// directory, then ..data swapped to it), is seen rotated in the guest.
	token := filepath.Join(kubelet, "kubernetes.io~projected", "kube-api-access")
	writeGeneration := func(gen, tok string) {
		t.Helper()
		dir := filepath.Join(token, gen)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "token"), []byte(tok), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(gen, filepath.Join(token, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(token, "..data_tmp"), filepath.Join(token, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	writeGeneration("..1", "token-1")
	if err := os.Symlink("..data/token", filepath.Join(token, "token")); err != nil {
		t.Fatal(err)
	}
	const sa = "/var/run/secrets/kubernetes.io/serviceaccount"
	c := e.mustCrictl(crictl, "create", pod, containerConfigMounts(t, "c", image, map[string]string{sa: token},
		"sh", "-c", `echo "first $(cat `+sa+`/token)"; i=0; while ! grep -q token-2 `+sa+`/token && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; echo "then $(cat `+sa+`/token)"; exec sleep 1000`), podCfg)
	e.mustCrictl(crictl, "start", c)
	e.waitLogs(crictl, c, "first token-1")
	rotated := time.Now()
	writeGeneration("..2", "token-2")
	if out := e.waitLogs(crictl, c, "then "); !strings.Contains(out, "then token-2") {
		t.Errorf("the container's token after the kubelet rotated it: %q, want token-2", out)
	} else {
		t.Logf("rotated token seen in the guest after %v", time.Since(rotated).Round(100*time.Millisecond))
	}

	// The termination message the container writes reaches the kubelet's file once the
	// container exited.
	termLog := filepath.Join(filepath.Dir(kubelet), "containers", "d", "0001")
	if err := os.MkdirAll(filepath.Dir(termLog), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(termLog, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	d := e.mustCrictl(crictl, "create", pod, containerConfigMounts(t, "d", image, map[string]string{"/dev/termination-log": termLog},
		"sh", "-c", `echo "config missing: exiting" > /dev/termination-log; exit 3`), podCfg)
	e.mustCrictl(crictl, "start", d)
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, _ := os.ReadFile(termLog)
		if string(got) == "config missing: exiting\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the kubelet's termination log after the container exited: %q, want the message it wrote", got)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}

	// A ConfigMap at /etc/config is not among the destinations the default pod policy
	// allows; a hostPath never reaches the guest. Each fails naming the destination.
	for _, tc := range []struct {
		name, dst, src, want string
	}{
		{"configmap", "/etc/config", configMap, "may not take host-provided files"},
		{"hostpath", "/host", t.TempDir(), "is a hostPath or block volume"},
	} {
		id := e.mustCrictl(crictl, "create", pod, containerConfigMounts(t, tc.name, image, map[string]string{tc.dst: tc.src}, "sleep", "1000"), podCfg)
		if r := e.crictl(crictl, "start", id); r.code == 0 || !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, tc.dst) {
			t.Errorf("crictl start of a container with a %s at %s = exit %d, stderr %q; want a refusal naming %s: %q", tc.name, tc.dst, r.code, r.stderr, tc.dst, tc.want)
		}
	}
	e.removePod(crictl, pod)
}
