package qemutests

// The containers of a CRI pod share the pod's network, IPC and UTS namespaces in the guest,
// and its PID namespace when they ask (as under runc); a pod that asks for the host's PID
// or IPC namespace is refused, naming the field.

import (
	"path/filepath"
	"strings"
	"testing"
)

// podConfigNS is a host-network pod (podConfig) with the given namespace options (CRI
// NamespaceMode: 0 POD, 1 CONTAINER, 2 NODE) on top.
func podConfigNS(t *testing.T, name string, options map[string]int) string {
	ns := map[string]any{"network": 2}
	for k, v := range options {
		ns[k] = v
	}
	return writeJSONFile(t, name+"-pod.json", map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "default", "uid": "uid-" + name},
		"hostname":      name,
		"log_directory": filepath.Join(t.TempDir(), "logs"),
		"linux":         map[string]any{"security_context": map[string]any{"namespace_options": ns}},
	})
}

// containerConfigPID is containerConfig with the container's PID namespace mode (0: the
// pod's, 1: its own).
func containerConfigPID(t *testing.T, name, image string, pidMode int, cmd ...string) string {
	return writeJSONFile(t, name+"-ctr.json", map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": image},
		"command":  cmd,
		"log_path": name + ".log",
		"linux":    map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"pid": pidMode}}},
	})
}

// nsReport prints the shell's network, IPC, UTS and PID namespaces, its hostname and PID,
// and what runs as PID 1 of its PID namespace, with its resident memory.
const nsReport = `for n in net ipc uts pid; do echo "ns $n $(busybox readlink /proc/self/ns/$n)"; done; ` +
	`echo "hostname $(busybox hostname)"; echo "self $$"; echo "init $(cat /proc/1/cmdline)"; echo "initrss $(busybox grep -E "RssAnon|RssFile" /proc/1/status | busybox tr -s "\t\n " " ")"`

func TestShimCRIPodNamespaces(t *testing.T) {
	e, crictl, _, image := startCRI(t, "confguest/busybox:podns")

	t.Run("host namespaces refused", func(t *testing.T) {
		for _, tc := range []struct{ option, field string }{{"pid", "hostPID"}, {"ipc", "hostIPC"}} {
			r := e.crictl(crictl, "runp", "--runtime", "confguest", podConfigNS(t, "host"+tc.option, map[string]int{tc.option: 2}))
			if r.code == 0 || !strings.Contains(r.stderr, tc.field) {
				t.Errorf("crictl runp of a pod with namespace_options.%s = NODE = exit %d, stderr %q; want a refusal naming %s", tc.option, r.code, r.stderr, tc.field)
			}
		}
		e.checkNoLeftovers()
	})

	podCfg := podConfigNS(t, "podns", nil)
	pod := e.mustCrictl(crictl, "runp", "--runtime", "confguest", podCfg)
	// a serves on the pod's localhost; b, another container, connects to it; both share
	// the pod's PID namespace, c has its own.
	a := e.mustCrictl(crictl, "create", pod, containerConfigPID(t, "a", image, 0, "sh", "-c",
		nsReport+`; (echo pong; sleep 1) | busybox nc -l -p 8080; echo "a served"; exec sleep 1000`), podCfg)
	e.mustCrictl(crictl, "start", a)
	b := e.mustCrictl(crictl, "create", pod, containerConfigPID(t, "b", image, 0, "sh", "-c",
		nsReport+`; i=0; while [ $i -lt 300 ]; do (echo ping; sleep 1) | busybox nc 127.0.0.1 8080 && break; sleep 0.2; i=$((i+1)); done; echo "b done"; exec sleep 1000`), podCfg)
	e.mustCrictl(crictl, "start", b)
	c := e.mustCrictl(crictl, "create", pod, containerConfigPID(t, "c", image, 1, "sh", "-c", nsReport+`; echo "c done"; exec sleep 1000`), podCfg)
	e.mustCrictl(crictl, "start", c)
	outA, outB, outC := e.waitLogs(crictl, a, "a served"), e.waitLogs(crictl, b, "b done"), e.waitLogs(crictl, c, "c done")

	if !strings.Contains(outA, "ping") || !strings.Contains(outB, "pong") {
		t.Errorf("a and b over the pod's localhost: a got %q, b got %q; want ping and pong", outA, outB)
	}
	report := func(out string) map[string]string {
		m := map[string]string{}
		for _, l := range strings.Split(out, "\n") {
			if k, v, ok := strings.Cut(l, " "); ok && (k == "ns" || k == "hostname" || k == "self" || k == "init" || k == "initrss") {
				if k == "ns" {
					k, v, _ = strings.Cut(v, " ")
				}
				m[k] = strings.TrimSpace(v)
			}
		}
		return m
	}
	ra, rb, rc := report(outA), report(outB), report(outC)
	t.Logf("a: %v\nb: %v\nc: %v", ra, rb, rc)
	for _, n := range []string{"net", "ipc", "uts"} {
		if ra[n] == "" || ra[n] != rb[n] || ra[n] != rc[n] {
			t.Errorf("%s namespaces: a %q, b %q, c %q; want the pod's, one for all", n, ra[n], rb[n], rc[n])
		}
	}
	if ra["pid"] == "" || ra["pid"] != rb["pid"] || ra["pid"] == rc["pid"] {
		t.Errorf("pid namespaces: a %q, b %q (both the pod's), c %q (its own); want a = b != c", ra["pid"], rb["pid"], rc["pid"])
	}
	if !strings.Contains(ra["init"], "pod-holder") || ra["self"] == "1" {
		t.Errorf("in the pod's PID namespace a is PID %s and PID 1 runs %q; want the agent's pod holder as PID 1", ra["self"], ra["init"])
	}
	t.Logf("the pod's namespace holder (PID 1 of the pod's PID namespace): %s", ra["initrss"])
	if rc["self"] != "1" {
		t.Errorf("c, in a PID namespace of its own, is PID %s; want 1", rc["self"])
	}
	for name, r := range map[string]map[string]string{"a": ra, "b": rb, "c": rc} {
		if r["hostname"] != "podns" {
			t.Errorf("hostname in %s = %q, want the pod's, podns", name, r["hostname"])
		}
	}

	// SIGTERM right after the start: a process without a handler dies of it in the pod's
	// PID namespace (exit 143), but as PID 1 of a PID namespace of its own the kernel
	// drops it (the stop waits for its timeout, then SIGKILL: 137), under runc as here.
	for _, tc := range []struct {
		name    string
		pidMode int
		want    string
	}{{"in the pod's PID namespace", 0, "143"}, {"PID 1 of its own", 1, "137"}} {
		id := e.mustCrictl(crictl, "create", pod, containerConfigPID(t, "term"+tc.want, image, tc.pidMode, "sleep", "1000"), podCfg)
		e.mustCrictl(crictl, "start", id)
		e.mustCrictl(crictl, "stop", "--timeout", "5", id)
		got := e.mustCrictl(crictl, "inspect", "-o", "go-template", "--template", "{{.status.exitCode}}", id)
		if got != tc.want {
			t.Errorf("exit code of sleep stopped with SIGTERM right after start, %s = %s, want %s", tc.name, got, tc.want)
		}
	}
	e.removePod(crictl, pod)
}
