package shim

import (
	"reflect"
	"testing"

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
