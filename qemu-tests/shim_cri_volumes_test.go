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
