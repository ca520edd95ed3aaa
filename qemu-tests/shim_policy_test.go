package qemutests

// The pod annotation confguest.io/policy: the shim installs the pod's policy before
// anything else, and the agent enforces it (here: a policy without exec rules).

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"confguest/agent/api/policy"
	"confguest/hostside/launcher"
	"confguest/rootfs"
)

// podPolicy is the base64 policy annotation of a test pod: one entry admits every
// container running sh -c SCRIPT from the one-layer image of root, as containerd's CRI
// creates it, with readable output and the given exec rules.
func podPolicy(t *testing.T, root string, exec []policy.Exec) string {
	t.Helper()
	app := criEntry("app", layerHash(t, root), []policy.Match{{Exact: "sh"}, {Exact: "-c"}, anything}, exec)
	return encodeTestPolicy(t, policy.Policy{Version: 1, Agent: policy.AgentRules{Shutdown: true}, Containers: []policy.Container{app}})
}

// layerHash is the verity root hash of the layer the shim will build from the
// container's rootfs, the one-layer image of root: the build is reproducible, so
// building the same tree gives the same root hash.
func layerHash(t *testing.T, root string) string {
	t.Helper()
	params, err := rootfs.Build(context.Background(), root, filepath.Join(t.TempDir(), "layer.img"), rootfs.WithPreservedOwnership())
	if err != nil {
		t.Fatal(err)
	}
	return params.RootHash
}

// criEntry is the policy entry named name that admits a container containerd's CRI
// creates from the layer with args (any environment, as root in /), with readable output,
// the given exec rules and the files CRI gives every container of a pod.
func criEntry(name, layer string, args []policy.Match, exec []policy.Exec) policy.Container {
	var mounts []policy.Mount
	for _, m := range launcher.ContainerSpec(launcher.Process{}, "").Mounts {
		mounts = append(mounts, policy.Mount{Destination: m.Destination, Type: m.Type, Source: m.Source, Options: m.Options})
	}
	return policy.Container{
		Name:   name,
		Rootfs: policy.Rootfs{Layers: []string{layer}},
		Args:   args,
		Env:    []policy.Match{anything},
		Cwd:    "/",
		// containerd's CRI lists the primary group among the supplementary ones.
		User: policy.User{UID: 0, GID: 0, AdditionalGIDs: []uint32{0}},
		// containerd's CRI default: the same list in bounding, effective and permitted.
		Capabilities: policy.Capabilities{Bounding: criCaps, Effective: criCaps, Permitted: criCaps},
		// CRI turns no_new_privileges off unless the pod asks for it (checked with
		// containerd 1.6.20); the hostname is the pod's, or none.
		Hostname: anything,
		Mounts:   mounts,
		// A CRI container joins its pod's network, IPC and UTS namespaces, and its
		// PID namespace too: crictl's container config asks for none of its own.
		PodNamespaces: []string{"network", "ipc", "uts", "pid"},
		// containerd's CRI gives every container of a pod its hostname, hosts and
		// resolv.conf files, which the host copies in.
		Volumes: []policy.Volume{{Destination: "/etc/hostname", Kind: policy.VolumeFiles},
			{Destination: "/etc/hosts", Kind: policy.VolumeFiles}, {Destination: "/etc/resolv.conf", Kind: policy.VolumeFiles}},
		Stdout: true,
		Stderr: true,
		Exec:   exec,
	}
}

// encodeTestPolicy is p as the base64 of its JSON document, checked to parse.
func encodeTestPolicy(t *testing.T, p policy.Policy) string {
	t.Helper()
	doc, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := policy.Parse(doc); err != nil {
		t.Fatalf("the test's policy does not parse: %v", err)
	}
	return base64.StdEncoding.EncodeToString(doc)
}

var anything = policy.Match{Pattern: "(?s).*"}

// criCaps are the capabilities containerd's CRI gives a container that asks for none.
var criCaps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}

// predatesPolicies reports whether a failed runp says the image's agent enforces no policy.
func predatesPolicies(r cliResult) bool {
	return r.code != 0 && strings.Contains(r.stderr, "the image's agent enforces no policy")
}

func TestShimCRIPolicyDeniesExec(t *testing.T) {
	e, crictl, root, image := startCRI(t, "confguest/busybox:policy")
	// No exec rules: the host may not run anything in the container.
	podCfg := podConfig(t, "pol", map[string]string{"confguest.io/policy": podPolicy(t, root, nil)})
	r := e.crictl(crictl, "runp", "--runtime", "confguest", podCfg)
	if predatesPolicies(r) {
		t.Skipf("the image's agent enforces no policy (built before policies were required): rebuild it with make image\n%s", r.stderr)
	}
	if r.code != 0 {
		t.Fatalf("crictl runp with a policy: exit %d\n%s", r.code, r.stderr)
	}
	pod := strings.TrimSpace(r.stdout)
	c := e.mustCrictl(crictl, "create", pod, containerConfig(t, "app", image, "sh", "-c", "echo admitted; exec sleep 1000"), podCfg)
	e.mustCrictl(crictl, "start", c)
	e.waitLogs(crictl, c, "admitted")

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"sync", []string{"exec", "-s", c, "echo", "should not run"}},
		{"streaming", []string{"exec", c, "sh", "-c", "echo should not run"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.crictl(crictl, tc.args...)
			if r.code == 0 || strings.Contains(r.stdout, "should not run") {
				t.Fatalf("crictl %q under a policy without exec = exit %d, stdout %q; want a denial", tc.args, r.code, r.stdout)
			}
			if !strings.Contains(r.stderr, "denied by policy rule containers[app].exec") {
				t.Errorf("crictl %q: stderr %q; want the policy's reason (denied by policy rule containers[app].exec)", tc.args, r.stderr)
			}
		})
	}

	e.mustCrictl(crictl, "stop", "--timeout", "2", c)
	e.mustCrictl(crictl, "rm", c)
	e.mustCrictl(crictl, "stopp", pod)
	e.mustCrictl(crictl, "rmp", pod)
	e.checkNoLeftovers(pod)
}
