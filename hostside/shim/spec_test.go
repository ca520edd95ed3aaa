package shim

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestGuestSpec(t *testing.T) {
	limit := int64(64 << 20)
	bundle := &specs.Spec{
		Hostname: "web",
		Process: &specs.Process{
			Args: []string{"sh", "-c", "echo hi"}, Env: []string{"PATH=/bin", "A=b"}, Cwd: "/srv",
			User: specs.User{UID: 1000, GID: 1000}, ApparmorProfile: "cri-containerd.apparmor.d", SelinuxLabel: "system_u:x",
		},
		Root: &specs.Root{Path: "rootfs", Readonly: true},
		Mounts: []specs.Mount{
			{Destination: "/etc/resolv.conf", Type: "bind", Source: "/var/lib/containerd/sandboxes/x/resolv.conf", Options: []string{"rbind"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: "/kubepods/pod1/abc",
			Namespaces:  []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/var/run/netns/cni-1"}, {Type: specs.PIDNamespace}},
			Sysctl:      map[string]string{"net.ipv4.ip_forward": "1"},
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}},
				Memory:  &specs.LinuxMemory{Limit: &limit},
			},
			MaskedPaths: []string{"/proc/kcore"},
		},
	}
	g, err := guestSpec(bundle, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"args", g.Process.Args, bundle.Process.Args},
		{"env", g.Process.Env, bundle.Process.Env},
		{"cwd", g.Process.Cwd, "/srv"},
		{"user", g.Process.User, bundle.Process.User},
		{"terminal from the request", g.Process.Terminal, true},
		{"no AppArmor profile", g.Process.ApparmorProfile, ""},
		{"no SELinux label", g.Process.SelinuxLabel, ""},
		{"hostname", g.Hostname, "web"},
		{"read-only root", g.Root.Readonly, true},
		{"sysctls", g.Linux.Sysctl, bundle.Linux.Sysctl},
		{"memory limit", *g.Linux.Resources.Memory.Limit, limit},
		{"no device rules", len(g.Linux.Resources.Devices), 0},
		{"no cgroups path", g.Linux.CgroupsPath, ""},
		{"masked paths", g.Linux.MaskedPaths, []string{"/proc/kcore"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !reflect.DeepEqual(tc.got, tc.want) {
				t.Errorf("guestSpec: %s = %v, want %v", tc.name, tc.got, tc.want)
			}
		})
	}
	t.Run("no namespace paths", func(t *testing.T) {
		for _, ns := range g.Linux.Namespaces {
			if ns.Path != "" {
				t.Errorf("guestSpec: namespace %s joins %s; the guest must get its own", ns.Type, ns.Path)
			}
		}
	})
	t.Run("no host bind mounts", func(t *testing.T) {
		for _, m := range g.Mounts {
			if m.Type == "bind" || m.Source == bundle.Mounts[0].Source {
				t.Errorf("guestSpec: mount %+v comes from the host", m)
			}
		}
	})
	t.Run("bundle unchanged", func(t *testing.T) {
		if bundle.Process.ApparmorProfile == "" || bundle.Process.Terminal {
			t.Errorf("guestSpec changed the bundle's process: %+v", bundle.Process)
		}
	})
	t.Run("no process", func(t *testing.T) {
		if _, err := guestSpec(&specs.Spec{}, false); err == nil {
			t.Errorf("guestSpec(spec without process) succeeded, want an error")
		}
	})
}

func TestGroupID(t *testing.T) {
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		want        string
	}{
		{"ctr container", nil, "c1"},
		{"CRI sandbox", map[string]string{AnnotationContainerType: "sandbox", AnnotationSandboxID: "c1"}, "c1"},
		{"CRI container", map[string]string{AnnotationContainerType: "container", AnnotationSandboxID: "pod9"}, "pod9"},
		{"CRI container without sandbox id", map[string]string{AnnotationContainerType: "container"}, "c1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := groupID("c1", &specs.Spec{Annotations: tc.annotations}); got != tc.want {
				t.Errorf("groupID(c1, %v) = %q, want %q", tc.annotations, got, tc.want)
			}
		})
	}
}

func TestVMName(t *testing.T) {
	a := VMName("/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc")
	for _, tc := range []struct {
		name, bundle string
		same         bool
	}{
		{"same bundle", "/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc", true},
		{"unclean path", "/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/", true},
		{"other namespace", "/run/containerd/io.containerd.runtime.v2.task/default/abc", false},
		{"other containerd", "/tmp/c2/io.containerd.runtime.v2.task/k8s.io/abc", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := VMName(tc.bundle); (got == a) != tc.same {
				t.Errorf("VMName(%q) = %q, VMName of the first bundle = %q; want same %v", tc.bundle, got, a, tc.same)
			}
		})
	}
	if len(a) > 63 {
		t.Errorf("VMName is %d bytes; launcher names are at most 63", len(a))
	}
}

func TestPodPolicy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		value   *string
		want    string
		wantErr bool
	}{
		{"none", nil, "", false},
		{"base64", ptr("eyJ2ZXJzaW9uIjogMX0="), `{"version": 1}`, false},
		{"surrounding space", ptr(" eyJ2ZXJzaW9uIjogMX0=\n"), `{"version": 1}`, false},
		{"not base64", ptr(`{"version": 1}`), "", true},
		{"empty", ptr(""), "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &specs.Spec{Annotations: map[string]string{}}
			if tc.value != nil {
				s.Annotations[AnnotationPolicy] = *tc.value
			}
			got, err := podPolicy(s)
			if (err != nil) != tc.wantErr || string(got) != tc.want {
				t.Errorf("podPolicy(%v) = %q, %v; want %q, error %v", tc.value, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func ptr(s string) *string { return &s }

// criSandboxSpec is a sandbox bundle spec as containerd's CRI writes it: every namespace
// of its own, less those the pod takes from the host.
func criSandboxSpec(hostNS ...specs.LinuxNamespaceType) *specs.Spec {
	s := &specs.Spec{Linux: &specs.Linux{}}
	for _, t := range []specs.LinuxNamespaceType{specs.PIDNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.MountNamespace, specs.NetworkNamespace} {
		if !slices.Contains(hostNS, t) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: t})
		}
	}
	return s
}

func TestCheckSandboxNamespaces(t *testing.T) {
	for _, tc := range []struct {
		name    string
		spec    *specs.Spec
		wantErr string
	}{
		{"pod network", criSandboxSpec(), ""},
		{"host network", criSandboxSpec(specs.NetworkNamespace, specs.UTSNamespace), ""},
		{"host PID", criSandboxSpec(specs.PIDNamespace), "asks for the host's pid namespace with hostPID (CRI namespace_options.pid = NODE)"},
		{"host IPC", criSandboxSpec(specs.IPCNamespace), "asks for the host's ipc namespace with hostIPC (CRI namespace_options.ipc = NODE)"},
		{"no linux section", &specs.Spec{}, "hostPID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkSandboxNamespaces("sb", tc.spec)
			if (tc.wantErr == "") != (err == nil) || (err != nil && (!strings.Contains(err.Error(), tc.wantErr) || !errdefs.IsInvalidArgument(err))) {
				t.Errorf("checkSandboxNamespaces(%s) = %v, want %q (InvalidArgument)", tc.name, err, tc.wantErr)
			}
		})
	}
}

func TestPodNamespaces(t *testing.T) {
	const vmm = 4242
	sandbox := func(kind string) string { return fmt.Sprintf("/proc/%d/ns/%s", vmm, kind) }
	// As containerd's CRI (WithPodNamespaces): the sandbox's network, IPC and UTS
	// namespaces, its PID namespace unless the container has its own.
	cri := func(pid string) *specs.Spec {
		s := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.NetworkNamespace, Path: sandbox("net")}, {Type: specs.IPCNamespace, Path: sandbox("ipc")},
			{Type: specs.UTSNamespace, Path: sandbox("uts")}, {Type: specs.MountNamespace}, {Type: specs.PIDNamespace, Path: pid},
		}}}
		return s
	}
	shared := []specs.LinuxNamespaceType{specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace}
	for _, tc := range []struct {
		name    string
		spec    *specs.Spec
		want    []specs.LinuxNamespaceType
		wantErr string
	}{
		{"own PID namespace", cri(""), shared, ""},
		{"the pod's PID namespace", cri(sandbox("pid")), append(slices.Clone(shared), specs.PIDNamespace), ""},
		{"another container's PID namespace", cri("/proc/77/ns/pid"), nil, "namespace_options.pid = TARGET"},
		{"not a CRI container", &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace}}}}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := podNamespaces("c", tc.spec, vmm)
			if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) || !slices.Equal(got, tc.want) {
				t.Errorf("podNamespaces(%s) = %v, %v; want %v, %q", tc.name, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestPodNetNamespace(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec *specs.Spec
		want string
	}{
		{"no linux section", &specs.Spec{}, ""},
		{"host network (no network namespace)", &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}}}}, ""},
		{"a namespace of its own without CNI", &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace}}}}, ""},
		{"CRI's namespace", &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace, Path: "/var/run/netns/cni-1234"},
		}}}, "/var/run/netns/cni-1234"},
	} {
		if got := podNetNamespace(tc.spec); got != tc.want {
			t.Errorf("podNetNamespace(%s) = %q, want %q", tc.name, got, tc.want)
		}
	}
}
