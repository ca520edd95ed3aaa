package shim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		doc     string
		want    Config
		wantErr string
	}{
		{"defaults", `{}`, Config{ImageDir: DefaultImageDir, RunDir: DefaultRunDir, Accel: "auto", MaxCPUs: DefaultMaxCPUs, MaxMemoryMiB: DefaultMaxMemoryMiB}, ""},
		{"all fields", `{"image_dir": "/img", "vmm": "cloud-hypervisor", "accel": "tcg", "cpus": 2, "memory_mib": 1024,
			"run_dir": "/r", "boot_timeout_seconds": 9, "sev_snp": true, "qemu": "/q", "vhost_device_vsock": "/v",
			"cloud_hypervisor": "/ch", "cache_dir": "/c", "max_cpus": 3, "max_memory_mib": 2048}`,
			Config{ImageDir: "/img", VMM: "cloud-hypervisor", Accel: "tcg", CPUs: 2, MemoryMiB: 1024, MaxCPUs: 3, MaxMemoryMiB: 2048, RunDir: "/r",
				BootTimeoutSeconds: 9, SEVSNP: true, QEMU: "/q", VhostDeviceVsock: "/v", CloudHypervisor: "/ch", CacheDir: "/c"}, ""},
		{"unknown field", `{"image": "/img"}`, Config{}, `unknown field "image"`},
		{"unknown vmm", `{"vmm": "firecracker"}`, Config{}, "unknown VMM"},
		{"bad accel", `{"accel": "hvf"}`, Config{}, `accel "hvf"`},
		{"negative", `{"cpus": -1}`, Config{}, "must not be negative"},
		{"negative max", `{"max_memory_mib": -1}`, Config{}, "must not be negative"},
		{"max below the size", `{"cpus": 2, "max_cpus": 1}`, Config{}, "max_cpus 1: want cpus (2) to 255"},
		{"max above the VMM's", `{"max_cpus": 300}`, Config{}, "max_cpus 300"},
		{"max memory below the default size", `{"max_memory_mib": 256}`, Config{}, "max_memory_mib 256: want at least memory_mib (512)"},
		{"defaults of max follow a larger size", `{"cpus": 6, "memory_mib": 10000}`,
			Config{ImageDir: DefaultImageDir, RunDir: DefaultRunDir, Accel: "auto", CPUs: 6, MemoryMiB: 10000, MaxCPUs: 6, MaxMemoryMiB: 10000}, ""},
		{"trailing data", `{} {}`, Config{}, "data after"},
		{"not json", `image_dir = "/x"`, Config{}, "decode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseConfig(strings.NewReader(tc.doc))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseConfig(%q) error = %v, want one containing %q", tc.doc, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseConfig(%q): %v", tc.doc, err)
			}
			if got != tc.want {
				t.Errorf("ParseConfig(%q) = %+v, want %+v", tc.doc, got, tc.want)
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "shim.json")
	if err := os.WriteFile(good, []byte(`{"image_dir": "/from/file", "boot_timeout_seconds": 30}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, env string
		wantDir   string
		wantErr   bool
	}{
		{"named file", good, "/from/file", false},
		{"named file missing", filepath.Join(dir, "nope.json"), "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(ConfigEnv, tc.env)
			c, err := LoadConfig()
			if (err != nil) != tc.wantErr {
				t.Fatalf("LoadConfig() with %s=%s: error %v, want error %v", ConfigEnv, tc.env, err, tc.wantErr)
			}
			if err == nil && c.ImageDir != tc.wantDir {
				t.Errorf("LoadConfig() image_dir = %q, want %q", c.ImageDir, tc.wantDir)
			}
			if err == nil {
				if o := c.launcherOptions("pod-x", ""); o.BootTimeout != 30*time.Second || o.Name != "pod-x" || o.RunBase != DefaultRunDir {
					t.Errorf("launcherOptions = %+v, want BootTimeout 30s, Name pod-x, RunBase %s", o, DefaultRunDir)
				}
			}
		})
	}
}
