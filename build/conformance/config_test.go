package conformance

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
)

func TestRegistryHosts(t *testing.T) {
	imgs := []testImage{
		{refs: []string{e2ePrefix + "busybox:1.29-2", criToolsImage + "test-image-tags:1"}, image: empty.Image},
		{refs: []string{e2ePrefix + "nginx:1.14-2", "127.0.0.1:5000/confguest/pause:conformance"}, image: empty.Image},
	}
	got, err := registryHosts(imgs)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, " ") != "registry.k8s.io gcr.io 127.0.0.1:5000" {
		t.Errorf("registryHosts = %q, want each host once in order", got)
	}
}

func TestLocalRef(t *testing.T) {
	r := &localRegistry{addr: "127.0.0.1:5000"}
	for _, tc := range []struct{ in, want string }{
		{e2ePrefix + "busybox:1.29-2", "127.0.0.1:5000/e2e-test-images/busybox:1.29-2"},
		{criToolsImage + "test-image-latest", "127.0.0.1:5000/k8s-staging-cri-tools/test-image-latest:latest"},
	} {
		got, err := r.localRef(tc.in)
		if err != nil || got.String() != tc.want {
			t.Errorf("localRef(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestContainerdFiles(t *testing.T) {
	c := ctrdConfig{dir: "/tmp/cgconf1", pause: "127.0.0.1:5000/confguest/pause:conformance", registry: "127.0.0.1:5000",
		mirrored: []string{"registry.k8s.io"}, cniBinDir: "/usr/lib/cni", imageDir: "/img", vhostVsock: "/v", accel: "tcg"}
	files, err := c.files()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]string{
		"config.toml": {`address = "/tmp/cgconf1/c.sock"`, `root = "/tmp/cgconf1/root"`, `config_path = "/tmp/cgconf1/certs.d"`,
			`runtime_type = "io.containerd.confguest.v2"`, `runtime_type = "io.containerd.runc.v2"`, `sandbox_image = "127.0.0.1:5000/confguest/pause:conformance"`},
		// Pulls of a mirrored host go to the local registry and nowhere else (server too).
		"certs.d/registry.k8s.io/hosts.toml": {`server = "http://127.0.0.1:5000"`, `[host."http://127.0.0.1:5000"]`},
		"certs.d/127.0.0.1:5000/hosts.toml":  {`server = "http://127.0.0.1:5000"`},
	} {
		for _, w := range want {
			if !strings.Contains(files[name], w) {
				t.Errorf("containerd files: %s = %q, want it to contain %q", name, files[name], w)
			}
		}
	}
	var shim map[string]any
	if err := json.Unmarshal([]byte(files["shim.json"]), &shim); err != nil {
		t.Fatalf("shim.json: %v", err)
	}
	if shim["run_dir"] != "/tmp/cgconf1/vms" || shim["image_dir"] != "/img" || shim["accel"] != "tcg" {
		t.Errorf("shim.json = %v, want run_dir under the private directory, the image and accel", shim)
	}
	if _, ok := shim["cache_dir"]; ok {
		t.Errorf("shim.json = %v, want no cache_dir when none is given (the shim's default)", shim)
	}
	c.shimCache = "/tmp/cgconf1/cache"
	if files, err = c.files(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(files["shim.json"], `"cache_dir": "/tmp/cgconf1/cache"`) {
		t.Errorf("shim.json = %s, want the cache_dir given", files["shim.json"])
	}
}

func TestConflist(t *testing.T) {
	b, err := cniNetwork{bridge: "cgconform0", subnet: "10.88.77.0/24", dataDir: "/tmp/x/ipam"}.conflist()
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Plugins []struct {
			Type   string
			Bridge string
			IPMasq bool
			IPAM   struct{ DataDir string } `json:"ipam"`
		}
	}
	if err := json.Unmarshal(b, &conf); err != nil {
		t.Fatal(err)
	}
	if len(conf.Plugins) != 2 || conf.Plugins[0].Type != "bridge" || conf.Plugins[0].Bridge != "cgconform0" ||
		conf.Plugins[0].IPMasq || conf.Plugins[0].IPAM.DataDir != "/tmp/x/ipam" || conf.Plugins[1].Type != "portmap" {
		t.Errorf("conflist = %s; want a bridge cgconform0 without masquerade, private IPAM data, then portmap", b)
	}
	if !strings.Contains(string(b), `"subnet": "10.88.77.0/24"`) {
		t.Errorf("conflist = %s, want the subnet 10.88.77.0/24", b)
	}
}
